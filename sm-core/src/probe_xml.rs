//! The XML listings sm answers sr_probe with and writes on stderr (`<SRlist>`,
//! `<iscsi-target-iqns>`, `<iscsi-target>`), byte for byte in sm's layout (Python minidom's
//! `toprettyxml`: the `<?xml version="1.0" ?>` declaration, tab indentation, one element a
//! line), because XenCenter, Xen Orchestra and xapi parse them.
//!
//! A [`Listing`] is a root element holding [`Record`]s, each an element of text fields. Text is
//! escaped by the XML-RPC codec's [`escape_text`](crate::xmlrpc::escape_text); [`read`] parses a
//! listing back with the codec's reader, the way the consumers read it.

use std::borrow::Cow;

use crate::xmlrpc::{Lexer, Tok, XmlRpcError, escape_text};

/// The declaration minidom writes.
const DECLARATION: &str = "<?xml version=\"1.0\" ?>\n";

/// How a listing without records is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmptyRoot {
    /// `<root/>` (minidom's `toprettyxml`).
    #[default]
    SelfClosing,
    /// `<root>` and `</root>` on two lines (sm's `srlist_toxml`).
    OpenAndClose,
}

/// One entry of a listing: `<name>` holding `<field>text</field>` lines, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    name: Cow<'static, str>,
    fields: Vec<(Cow<'static, str>, String)>,
}

impl Record {
    /// An entry named `name` (an element name fixed by the format, written as given).
    pub fn new(name: impl Into<Cow<'static, str>>) -> Record {
        Record {
            name: name.into(),
            fields: Vec::new(),
        }
    }

    /// Adds `<name>value</name>` (written `<name></name>` when `value` is empty).
    #[must_use]
    pub fn field(mut self, name: impl Into<Cow<'static, str>>, value: impl Into<String>) -> Record {
        self.fields.push((name.into(), value.into()));
        self
    }

    /// Adds `<name>value</name>` unless `value` is empty (sm leaves empty fields out of some
    /// listings).
    #[must_use]
    pub fn field_if_set(
        self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<String>,
    ) -> Record {
        let value = value.into();
        if value.is_empty() {
            self
        } else {
            self.field(name, value)
        }
    }

    /// The entry's element name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fields in document order, as (element name, text).
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(k, v)| (k.as_ref(), v.as_str()))
    }

    /// The text of the first field named `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields().find(|(k, _)| *k == name).map(|(_, v)| v)
    }
}

/// A listing document: the root element and its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    root: Cow<'static, str>,
    empty: EmptyRoot,
    records: Vec<Record>,
}

impl Listing {
    /// A listing with root element `root` (fixed by the format, written as given), `<root/>`
    /// while it has no record.
    pub fn new(root: impl Into<Cow<'static, str>>) -> Listing {
        Listing {
            root: root.into(),
            empty: EmptyRoot::default(),
            records: Vec::new(),
        }
    }

    /// Sets how the listing is written when it has no record.
    #[must_use]
    pub fn empty_as(mut self, empty: EmptyRoot) -> Listing {
        self.empty = empty;
        self
    }

    /// Appends `records`.
    #[must_use]
    pub fn with_records(mut self, records: impl IntoIterator<Item = Record>) -> Listing {
        self.records.extend(records);
        self
    }

    /// Appends one record.
    pub fn push(&mut self, record: Record) {
        self.records.push(record);
    }

    /// The root element's name.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// The records in document order.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// The document, in minidom's layout, ending with a newline.
    pub fn to_xml(&self) -> String {
        let root = self.root.as_ref();
        let mut out = String::from(DECLARATION);
        if self.records.is_empty() {
            match self.empty {
                EmptyRoot::SelfClosing => push_tag(&mut out, "", root, "/>\n"),
                EmptyRoot::OpenAndClose => {
                    push_tag(&mut out, "", root, ">\n");
                    push_tag(&mut out, "/", root, ">\n");
                }
            }
            return out;
        }
        push_tag(&mut out, "", root, ">\n");
        for r in &self.records {
            out.push('\t');
            push_tag(&mut out, "", &r.name, ">\n");
            for (k, v) in &r.fields {
                out.push_str("\t\t");
                push_tag(&mut out, "", k, ">");
                escape_text(&mut out, v);
                push_tag(&mut out, "/", k, ">\n");
            }
            out.push('\t');
            push_tag(&mut out, "/", &r.name, ">\n");
        }
        push_tag(&mut out, "/", root, ">\n");
        out
    }
}

/// Writes `<` + `slash` + `name` + `end`.
fn push_tag(out: &mut String, slash: &str, name: &str, end: &str) {
    out.push('<');
    out.push_str(slash);
    out.push_str(name);
    out.push_str(end);
}

/// Parses a listing the way its consumers read it: the root element, each child element a
/// record, each grandchild a text field; whitespace between elements, the declaration and
/// comments are ignored, entities are resolved. Anything nested deeper, or text beside the
/// elements, is a [`XmlRpcError::Shape`].
pub fn read(xml: &str) -> Result<Listing, XmlRpcError> {
    let mut lx = Lexer::new(xml);
    let mut listing = match lx.next_sig()? {
        Tok::Open(root) => Listing::new(root),
        other => return Err(shape("the root element", &other)),
    };
    loop {
        match lx.next_sig()? {
            Tok::Close(n) if n == listing.root => break,
            Tok::Open(name) => {
                let mut record = Record::new(name);
                loop {
                    match lx.next_sig()? {
                        Tok::Close(n) if n == record.name => break,
                        Tok::Open(field) => {
                            let text = field_text(&mut lx, &field)?;
                            record.fields.push((field, text));
                        }
                        other => return Err(shape("a field element", &other)),
                    }
                }
                listing.records.push(record);
            }
            other => return Err(shape("a record element", &other)),
        }
    }
    lx.expect_eof()?;
    Ok(listing)
}

/// The text of the field `name` whose opening tag was read, through its closing tag.
fn field_text(lx: &mut Lexer<'_>, name: &str) -> Result<String, XmlRpcError> {
    let text = match lx.next()? {
        Tok::Close(n) if n == name => return Ok(String::new()),
        Tok::Text(t) => t,
        Tok::Space => lx.space(),
        other => return Err(shape("a field's text", &other)),
    };
    match lx.next()? {
        Tok::Close(n) if n == name => Ok(text),
        other => Err(shape("the field's closing tag", &other)),
    }
}

fn shape(expected: &'static str, found: &Tok) -> XmlRpcError {
    XmlRpcError::Shape {
        expected,
        found: found.describe(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every character class the codec treats specially.
    const AWKWARD: &str = "a<b>c&d\"e'f\u{1}g\th\ni\u{7f}j\u{FFFE}k\r";

    #[test]
    fn layout_is_minidoms() {
        let l = Listing::new("iscsi-target").with_records([
            Record::new("LUN")
                .field("LUNid", "0")
                .field("SCSIid", "3600"),
            Record::new("LUN"),
        ]);
        assert_eq!(
            l.to_xml(),
            "<?xml version=\"1.0\" ?>\n<iscsi-target>\n\t<LUN>\n\t\t<LUNid>0</LUNid>\n\t\t<SCSIid>3600</SCSIid>\n\t</LUN>\n\t<LUN>\n\t</LUN>\n</iscsi-target>\n"
        );
        assert_eq!(
            Listing::new("iscsi-target").to_xml(),
            "<?xml version=\"1.0\" ?>\n<iscsi-target/>\n"
        );
        assert_eq!(
            Listing::new("SRlist")
                .empty_as(EmptyRoot::OpenAndClose)
                .to_xml(),
            "<?xml version=\"1.0\" ?>\n<SRlist>\n</SRlist>\n"
        );
        let r = Record::new("SR").field("UUID", "").field_if_set("x", "");
        assert_eq!(r.fields().collect::<Vec<_>>(), [("UUID", "")]);
    }

    #[test]
    fn text_is_escaped_as_the_codec_escapes() {
        let mut codec = String::new();
        escape_text(&mut codec, AWKWARD);
        assert_eq!(
            codec,
            "a&lt;b&gt;c&amp;d\"e'f\u{FFFD}g\th\ni\u{7f}j\u{FFFD}k\r"
        );
        let xml = Listing::new("r")
            .with_records([Record::new("e").field("f", AWKWARD)])
            .to_xml();
        assert_eq!(
            xml,
            format!("<?xml version=\"1.0\" ?>\n<r>\n\t<e>\n\t\t<f>{codec}</f>\n\t</e>\n</r>\n")
        );
        // A real XML reader gets the text back, with the characters XML 1.0 forbids replaced.
        let back = read(&xml).unwrap();
        assert_eq!(
            back.records()[0].get("f"),
            Some("a<b>c&d\"e'f\u{FFFD}g\th\ni\u{7f}j\u{FFFD}k\n")
        );
    }

    #[test]
    fn read_gives_back_what_was_written() {
        let l = Listing::new("iscsi-target-iqns").with_records([
            Record::new("TGT")
                .field("Index", "0")
                .field("IPAddress", "10.0.0.1")
                .field("TargetIQN", "iqn.x:a&b"),
            Record::new("TGT")
                .field("Index", "1")
                .field("TargetIQN", "*"),
        ]);
        assert_eq!(read(&l.to_xml()).unwrap(), l);
        assert_eq!(
            read("<?xml version=\"1.0\" ?>\n<SRlist>\n</SRlist>\n").unwrap(),
            Listing::new("SRlist")
        );
        assert_eq!(read("<SRlist/>").unwrap(), Listing::new("SRlist"));
        assert!(
            read("<r><e><f><g/></f></e></r>").is_err(),
            "nested too deep"
        );
        assert!(read("<r>text</r>").is_err(), "text beside records");
        assert!(read("<r><e>").is_err(), "unterminated");
        assert!(read("<r></r><r></r>").is_err(), "two roots");
    }
}
