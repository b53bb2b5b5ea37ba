//! A small XML-RPC codec: values, methodCall / methodResponse parsing and writing.
//!
//! It accepts what xapi (ocaml-rpc) sends: untyped `<value>text</value>` strings, `<value/>`,
//! `<i8>`, `<nil/>`, dates with a trailing `Z`, entities and CDATA, any whitespace layout. It
//! writes responses in the layout of Python's `xmlrpc.client.dumps`, which is what sm prints and
//! what xapi has always parsed, and it never writes a character XML 1.0 forbids, so any input,
//! echoed into a fault, still yields a well-formed document.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use quick_xml::Reader;
use quick_xml::events::Event;

/// Nesting limit for values; deeper documents are rejected rather than overflowing the stack.
pub const MAX_DEPTH: usize = 64;

/// An XML-RPC struct: member name to value.
pub type Struct = BTreeMap<String, Value>;

/// An XML-RPC value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `<string>` or an untyped `<value>`.
    Str(String),
    /// `<int>` / `<i4>`.
    Int(i32),
    /// `<i8>` (an XenAPI extension).
    I8(i64),
    /// `<boolean>`.
    Bool(bool),
    /// `<double>`.
    Double(f64),
    /// `<dateTime.iso8601>`, kept as the text sent (e.g. `20260101T00:00:00Z`).
    DateTime(String),
    /// `<base64>`, kept encoded.
    Base64(String),
    /// `<struct>`.
    Struct(Struct),
    /// `<array>`.
    Array(Vec<Value>),
    /// `<nil/>`.
    Nil,
}

impl Value {
    /// The string inside a `Str`, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The map inside a `Struct`, if this is one.
    pub fn as_struct(&self) -> Option<&Struct> {
        match self {
            Value::Struct(m) => Some(m),
            _ => None,
        }
    }

    /// The items of an `Array`, if this is one.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// A struct built from string pairs.
    pub fn string_map<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Value {
        Value::Struct(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), Value::Str(v.into())))
                .collect(),
        )
    }

    /// Converts a struct of strings into a map; non-string members are rendered as text.
    pub fn to_string_map(&self) -> Option<BTreeMap<String, String>> {
        let m = self.as_struct()?;
        Some(m.iter().map(|(k, v)| (k.clone(), v.to_text())).collect())
    }

    /// A scalar rendered as text (strings as themselves, numbers in decimal, bool as true/false).
    pub fn to_text(&self) -> String {
        match self {
            Value::Str(s) | Value::DateTime(s) | Value::Base64(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::I8(i) => i.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Double(d) => d.to_string(),
            Value::Nil => String::new(),
            Value::Struct(_) | Value::Array(_) => String::new(),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

/// Why a document could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlRpcError {
    /// The XML itself is malformed.
    #[error("malformed XML at byte {position}: {reason}")]
    Xml {
        /// Byte offset where the reader stopped.
        position: u64,
        /// What the reader reported.
        reason: String,
    },
    /// Well-formed XML, but not the XML-RPC shape expected.
    #[error("unexpected {found} where {expected} was expected")]
    Shape {
        /// What the grammar wanted.
        expected: &'static str,
        /// What was there (truncated).
        found: String,
    },
    /// A scalar that does not parse as its type.
    #[error("invalid <{tag}> value {text:?}")]
    Scalar {
        /// The type tag.
        tag: &'static str,
        /// The text (truncated).
        text: String,
    },
    /// Values nested deeper than [`MAX_DEPTH`].
    #[error("values nested deeper than {MAX_DEPTH}")]
    TooDeep,
}

/// A decoded methodCall.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodCall {
    /// `<methodName>`.
    pub name: String,
    /// The `<param>` values in order.
    pub params: Vec<Value>,
}

/// A decoded methodResponse.
#[derive(Debug, Clone, PartialEq)]
pub enum MethodResponse {
    /// `<params><param>` holding one value.
    Success(Value),
    /// `<fault>` with its code and string.
    Fault {
        /// faultCode.
        code: i32,
        /// faultString.
        string: String,
    },
}

fn truncate(s: &str) -> String {
    const MAX: usize = 60;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// A token of the document. XML-RPC's element names are static and layout whitespace is kept in
/// the lexer's buffer, so a large response (1,000 VDI records) costs one allocation per string.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Open(Cow<'static, str>),
    Close(Cow<'static, str>),
    Text(String),
    /// Whitespace-only text (layout between elements, or a value of spaces: see
    /// [`Lexer::space`]).
    Space,
    Eof,
}

impl Tok {
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Open(n) => format!("<{n}>"),
            Tok::Close(n) => format!("</{n}>"),
            Tok::Text(t) => format!("text {:?}", truncate(t)),
            Tok::Space => "whitespace".to_string(),
            Tok::Eof => "end of document".to_string(),
        }
    }
}

/// Turns quick-xml events into open/close/text tokens, merging text, entity references and
/// CDATA, and dropping comments, declarations and processing instructions.
pub(crate) struct Lexer<'a> {
    reader: Reader<&'a [u8]>,
    peeked: Option<Tok>,
    /// The text being gathered; after a [`Tok::Space`], that whitespace.
    buf: String,
}

/// An element name: the XML-RPC ones without an allocation, any other one copied.
fn tag_name(name: &str) -> Cow<'static, str> {
    let known = match name {
        "value" => "value",
        "string" => "string",
        "struct" => "struct",
        "member" => "member",
        "name" => "name",
        "array" => "array",
        "data" => "data",
        "int" => "int",
        "i4" => "i4",
        "i8" => "i8",
        "boolean" => "boolean",
        "double" => "double",
        "dateTime.iso8601" => "dateTime.iso8601",
        "base64" => "base64",
        "nil" => "nil",
        "params" => "params",
        "param" => "param",
        "fault" => "fault",
        "methodCall" => "methodCall",
        "methodName" => "methodName",
        "methodResponse" => "methodResponse",
        other => return Cow::Owned(other.to_string()),
    };
    Cow::Borrowed(known)
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(xml: &'a str) -> Lexer<'a> {
        let mut reader = Reader::from_str(xml);
        let cfg = reader.config_mut();
        cfg.expand_empty_elements = true;
        cfg.check_end_names = true;
        cfg.trim_text(false);
        Lexer {
            reader,
            peeked: None,
            buf: String::new(),
        }
    }

    fn xml_err(&self, reason: impl std::fmt::Display) -> XmlRpcError {
        XmlRpcError::Xml {
            position: self.reader.buffer_position(),
            reason: reason.to_string(),
        }
    }

    /// The whitespace of the last [`Tok::Space`].
    pub(crate) fn space(&self) -> String {
        self.buf.clone()
    }

    pub(crate) fn next(&mut self) -> Result<Tok, XmlRpcError> {
        if let Some(t) = self.peeked.take() {
            return Ok(t);
        }
        self.buf.clear();
        let mut text = false;
        loop {
            let ev = self.reader.read_event().map_err(|e| self.xml_err(e))?;
            let tok = match ev {
                Event::Text(t) => {
                    self.buf.push_str(&t.xml10_content());
                    text = true;
                    continue;
                }
                Event::CData(c) => {
                    self.buf.push_str(&c.into_inner());
                    text = true;
                    continue;
                }
                Event::GeneralRef(r) => {
                    let ch = match r.resolve_char_ref().map_err(|e| self.xml_err(e))? {
                        Some(c) => c,
                        None => match r.xml10_content().as_ref() {
                            "amp" => '&',
                            "lt" => '<',
                            "gt" => '>',
                            "quot" => '"',
                            "apos" => '\'',
                            other => {
                                return Err(self.xml_err(format!("unknown entity &{other};")));
                            }
                        },
                    };
                    self.buf.push(ch);
                    text = true;
                    continue;
                }
                Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => continue,
                Event::Start(s) | Event::Empty(s) => Tok::Open(tag_name(s.name().as_ref())),
                Event::End(e) => Tok::Close(tag_name(e.name().as_ref())),
                Event::Eof => Tok::Eof,
            };
            if !text {
                return Ok(tok);
            }
            self.peeked = Some(tok);
            return Ok(if self.buf.trim().is_empty() {
                Tok::Space
            } else {
                Tok::Text(std::mem::take(&mut self.buf))
            });
        }
    }

    /// Next token that is not whitespace-only text.
    pub(crate) fn next_sig(&mut self) -> Result<Tok, XmlRpcError> {
        loop {
            match self.next()? {
                Tok::Space => continue,
                tok => return Ok(tok),
            }
        }
    }

    fn expect_open(&mut self, name: &'static str) -> Result<(), XmlRpcError> {
        match self.next_sig()? {
            Tok::Open(n) if n == name => Ok(()),
            other => Err(XmlRpcError::Shape {
                expected: name,
                found: other.describe(),
            }),
        }
    }

    fn expect_close(&mut self, name: &'static str) -> Result<(), XmlRpcError> {
        match self.next_sig()? {
            Tok::Close(n) if n == name => Ok(()),
            other => Err(XmlRpcError::Shape {
                expected: name,
                found: other.describe(),
            }),
        }
    }

    /// Text up to the closing tag `name` (possibly empty); nested elements are an error.
    fn text_until_close(&mut self, name: &'static str) -> Result<String, XmlRpcError> {
        match self.next()? {
            Tok::Close(n) if n == name => Ok(String::new()),
            Tok::Text(t) => {
                self.expect_close(name)?;
                Ok(t)
            }
            Tok::Space => {
                let t = self.space();
                self.expect_close(name)?;
                Ok(t)
            }
            other => Err(XmlRpcError::Shape {
                expected: "text",
                found: other.describe(),
            }),
        }
    }

    pub(crate) fn expect_eof(&mut self) -> Result<(), XmlRpcError> {
        match self.next_sig()? {
            Tok::Eof => Ok(()),
            other => Err(XmlRpcError::Shape {
                expected: "end of document",
                found: other.describe(),
            }),
        }
    }
}

/// Parses the inside of a `<value>` whose opening tag was consumed, including `</value>`.
fn parse_value(lx: &mut Lexer<'_>, depth: usize) -> Result<Value, XmlRpcError> {
    if depth > MAX_DEPTH {
        return Err(XmlRpcError::TooDeep);
    }
    let tok = lx.next()?;
    let tag = match tok {
        Tok::Close(n) if n == "value" => return Ok(Value::Str(String::new())),
        Tok::Text(t) => match lx.next()? {
            Tok::Close(n) if n == "value" => return Ok(Value::Str(t)),
            other => {
                return Err(XmlRpcError::Shape {
                    expected: "</value>",
                    found: other.describe(),
                });
            }
        },
        Tok::Space => {
            let space = lx.space();
            match lx.next()? {
                Tok::Close(n) if n == "value" => return Ok(Value::Str(space)),
                Tok::Open(tag) => tag,
                other => {
                    return Err(XmlRpcError::Shape {
                        expected: "</value>",
                        found: other.describe(),
                    });
                }
            }
        }
        Tok::Open(tag) => tag,
        other => {
            return Err(XmlRpcError::Shape {
                expected: "a value",
                found: other.describe(),
            });
        }
    };
    let v = parse_typed(lx, &tag, depth)?;
    lx.expect_close("value")?;
    Ok(v)
}

fn parse_typed(lx: &mut Lexer<'_>, tag: &str, depth: usize) -> Result<Value, XmlRpcError> {
    fn scalar(tag: &'static str, text: &str) -> XmlRpcError {
        XmlRpcError::Scalar {
            tag,
            text: truncate(text),
        }
    }
    Ok(match tag {
        "string" => Value::Str(lx.text_until_close("string")?),
        "int" | "i4" => {
            let close = if tag == "int" { "int" } else { "i4" };
            let t = lx.text_until_close(close)?;
            Value::Int(t.trim().parse().map_err(|_| scalar(close, &t))?)
        }
        "i8" => {
            let t = lx.text_until_close("i8")?;
            Value::I8(t.trim().parse().map_err(|_| scalar("i8", &t))?)
        }
        "boolean" => {
            let t = lx.text_until_close("boolean")?;
            Value::Bool(match t.trim() {
                "1" | "true" => true,
                "0" | "false" => false,
                _ => return Err(scalar("boolean", &t)),
            })
        }
        "double" => {
            let t = lx.text_until_close("double")?;
            Value::Double(t.trim().parse().map_err(|_| scalar("double", &t))?)
        }
        "dateTime.iso8601" => {
            Value::DateTime(lx.text_until_close("dateTime.iso8601")?.trim().into())
        }
        "base64" => Value::Base64(lx.text_until_close("base64")?.trim().into()),
        "nil" => {
            lx.expect_close("nil")?;
            Value::Nil
        }
        "struct" => {
            let mut m = Struct::new();
            loop {
                match lx.next_sig()? {
                    Tok::Close(n) if n == "struct" => break,
                    Tok::Open(n) if n == "member" => {
                        lx.expect_open("name")?;
                        let name = lx.text_until_close("name")?;
                        lx.expect_open("value")?;
                        let v = parse_value(lx, depth + 1)?;
                        lx.expect_close("member")?;
                        m.insert(name, v);
                    }
                    other => {
                        return Err(XmlRpcError::Shape {
                            expected: "<member>",
                            found: other.describe(),
                        });
                    }
                }
            }
            Value::Struct(m)
        }
        "array" => {
            lx.expect_open("data")?;
            let mut items = Vec::new();
            loop {
                match lx.next_sig()? {
                    Tok::Close(n) if n == "data" => break,
                    Tok::Open(n) if n == "value" => items.push(parse_value(lx, depth + 1)?),
                    other => {
                        return Err(XmlRpcError::Shape {
                            expected: "<value>",
                            found: other.describe(),
                        });
                    }
                }
            }
            lx.expect_close("array")?;
            Value::Array(items)
        }
        other => {
            return Err(XmlRpcError::Shape {
                expected: "a value type",
                found: format!("<{}>", truncate(other)),
            });
        }
    })
}

/// Parses a methodCall document.
pub fn parse_method_call(xml: &str) -> Result<MethodCall, XmlRpcError> {
    let mut lx = Lexer::new(xml);
    lx.expect_open("methodCall")?;
    lx.expect_open("methodName")?;
    let name = lx.text_until_close("methodName")?.trim().to_string();
    let mut params = Vec::new();
    match lx.next_sig()? {
        Tok::Close(n) if n == "methodCall" => {}
        Tok::Open(n) if n == "params" => {
            loop {
                match lx.next_sig()? {
                    Tok::Close(n) if n == "params" => break,
                    Tok::Open(n) if n == "param" => {
                        lx.expect_open("value")?;
                        params.push(parse_value(&mut lx, 0)?);
                        lx.expect_close("param")?;
                    }
                    other => {
                        return Err(XmlRpcError::Shape {
                            expected: "<param>",
                            found: other.describe(),
                        });
                    }
                }
            }
            lx.expect_close("methodCall")?;
        }
        other => {
            return Err(XmlRpcError::Shape {
                expected: "<params>",
                found: other.describe(),
            });
        }
    }
    lx.expect_eof()?;
    Ok(MethodCall { name, params })
}

/// Parses a methodResponse document (a value or a fault).
pub fn parse_method_response(xml: &str) -> Result<MethodResponse, XmlRpcError> {
    let mut lx = Lexer::new(xml);
    lx.expect_open("methodResponse")?;
    let resp = match lx.next_sig()? {
        Tok::Open(n) if n == "params" => {
            lx.expect_open("param")?;
            lx.expect_open("value")?;
            let v = parse_value(&mut lx, 0)?;
            lx.expect_close("param")?;
            lx.expect_close("params")?;
            MethodResponse::Success(v)
        }
        Tok::Open(n) if n == "fault" => {
            lx.expect_open("value")?;
            let v = parse_value(&mut lx, 0)?;
            lx.expect_close("fault")?;
            let m = v.as_struct().ok_or(XmlRpcError::Shape {
                expected: "fault struct",
                found: "another value".into(),
            })?;
            let code = match m.get("faultCode") {
                Some(Value::Int(i)) => *i,
                Some(Value::I8(i)) => i32::try_from(*i).unwrap_or(i32::MAX),
                Some(Value::Str(s)) => s.trim().parse().unwrap_or(0),
                _ => {
                    return Err(XmlRpcError::Shape {
                        expected: "faultCode",
                        found: "nothing".into(),
                    });
                }
            };
            let string = m.get("faultString").map(Value::to_text).unwrap_or_default();
            MethodResponse::Fault { code, string }
        }
        other => {
            return Err(XmlRpcError::Shape {
                expected: "<params> or <fault>",
                found: other.describe(),
            });
        }
    };
    lx.expect_close("methodResponse")?;
    lx.expect_eof()?;
    Ok(resp)
}

/// How strings are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringStyle {
    /// `<value><string>x</string></value>` (Python xmlrpc.client, sm).
    Typed,
    /// `<value>x</value>`, empty as `<value/>` (ocaml-rpc, xapi).
    Untyped,
}

/// Escapes text for element content, replacing characters XML 1.0 forbids with U+FFFD.
pub fn escape_text(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// Writes one `<value>...</value>`.
pub fn write_value(out: &mut String, v: &Value, style: StringStyle) {
    match v {
        Value::Str(s) => match style {
            StringStyle::Typed => {
                out.push_str("<value><string>");
                escape_text(out, s);
                out.push_str("</string></value>");
            }
            StringStyle::Untyped if s.is_empty() => out.push_str("<value/>"),
            StringStyle::Untyped => {
                out.push_str("<value>");
                escape_text(out, s);
                out.push_str("</value>");
            }
        },
        Value::Int(i) => {
            let _ = write!(out, "<value><int>{i}</int></value>");
        }
        Value::I8(i) => {
            let _ = write!(out, "<value><i8>{i}</i8></value>");
        }
        Value::Bool(b) => {
            let _ = write!(out, "<value><boolean>{}</boolean></value>", u8::from(*b));
        }
        Value::Double(d) => {
            let _ = write!(out, "<value><double>{d:?}</double></value>");
        }
        Value::DateTime(s) => {
            out.push_str("<value><dateTime.iso8601>");
            escape_text(out, s);
            out.push_str("</dateTime.iso8601></value>");
        }
        Value::Base64(s) => {
            out.push_str("<value><base64>");
            escape_text(out, s);
            out.push_str("</base64></value>");
        }
        Value::Nil => out.push_str("<value><nil/></value>"),
        Value::Struct(m) => {
            out.push_str("<value><struct>\n");
            for (k, v) in m {
                out.push_str("<member>\n<name>");
                escape_text(out, k);
                out.push_str("</name>\n");
                write_value(out, v, style);
                out.push_str("\n</member>\n");
            }
            out.push_str("</struct></value>");
        }
        Value::Array(items) => {
            out.push_str("<value><array><data>\n");
            for v in items {
                write_value(out, v, style);
                out.push('\n');
            }
            out.push_str("</data></array></value>");
        }
    }
}

/// A methodResponse carrying one value, in Python's `dumps(methodresponse=True)` layout.
pub fn write_response(v: &Value) -> String {
    let mut out = String::from("<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n");
    write_value(&mut out, v, StringStyle::Typed);
    out.push_str("\n</param>\n</params>\n</methodResponse>\n");
    out
}

/// A methodResponse carrying a fault.
pub fn write_fault(code: i32, string: &str) -> String {
    let mut out = String::from("<?xml version='1.0'?>\n<methodResponse>\n<fault>\n");
    let mut m = Struct::new();
    m.insert("faultCode".into(), Value::Int(code));
    m.insert("faultString".into(), Value::Str(string.to_string()));
    write_value(&mut out, &Value::Struct(m), StringStyle::Typed);
    out.push_str("\n</fault>\n</methodResponse>\n");
    out
}

/// A methodCall document.
pub fn write_call(name: &str, params: &[Value], style: StringStyle) -> String {
    let mut out = String::from("<?xml version='1.0'?>\n<methodCall>\n<methodName>");
    escape_text(&mut out, name);
    out.push_str("</methodName>\n<params>\n");
    for p in params {
        out.push_str("<param>\n");
        write_value(&mut out, p, style);
        out.push_str("\n</param>\n");
    }
    out.push_str("</params>\n</methodCall>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Shape of what xapi sends (sm-anchor §1.2, upstream `drivers/SRTest.txt`).
    const DRIVER_INFO: &str = "<methodCall><methodName>sr_get_driver_info</methodName><params><param><value><struct><member><name>host_ref</name><value>OpaqueRef:NULL</value></member><member><name>command</name><value>sr_get_driver_info</value></member><member><name>args</name><value><array><data/></array></value></member><member><name>device_config</name><value><struct/></value></member></struct></value></param></params></methodCall>";

    #[test]
    fn parses_xapi_untyped_call() {
        let c = parse_method_call(DRIVER_INFO).unwrap();
        assert_eq!(c.name, "sr_get_driver_info");
        let m = c.params[0].as_struct().unwrap();
        assert_eq!(m["host_ref"], Value::Str("OpaqueRef:NULL".into()));
        assert_eq!(m["args"], Value::Array(vec![]));
        assert_eq!(m["device_config"], Value::Struct(Struct::new()));
    }

    #[test]
    fn parses_every_scalar_and_quirk() {
        let xml = "<?xml version=\"1.0\"?>\r\n<!-- hi -->\n<methodCall>\n  <methodName> x </methodName>\n<params><param><value><struct>\n\
            <member><name>a</name><value/></member>\n\
            <member><name>b</name><value> spaced &amp; &lt;ok&gt; &#65;&#x42; </value></member>\n\
            <member><name>c</name><value><i8>-9000000000</i8></value></member>\n\
            <member><name>d</name><value><nil/></value></member>\n\
            <member><name>e</name><value><dateTime.iso8601>19700101T00:00:00Z</dateTime.iso8601></value></member>\n\
            <member><name>f</name><value> <boolean>1</boolean> </value></member>\n\
            <member><name>g</name><value><string><![CDATA[<raw>]]></string></value></member>\n\
            <member><name>h</name><value><i4>7</i4></value></member>\n\
            <member><name>i</name><value><double>1.5</double></value></member>\n\
            <member><name>j</name><value><string/></value></member>\n\
            <member><name>k</name><value>   </value></member>\n\
            <member><name>l</name><value><string> \t </string></value></member>\n\
            <member><name>m</name><value>&#32;</value></member>\n\
            <member><name>n</name><value><unknown>x</unknown></value></member>\n\
            </struct></value></param></params></methodCall>\n";
        let e = parse_method_call(xml).unwrap_err();
        assert!(e.to_string().contains("<unknown>"), "{e}");
        let xml = xml.replace("<value><unknown>x</unknown></value>", "<value/>");
        let c = parse_method_call(&xml).unwrap();
        assert_eq!(c.name, "x");
        let m = c.params[0].as_struct().unwrap();
        assert_eq!(m["a"], Value::Str(String::new()));
        assert_eq!(m["b"], Value::Str(" spaced & <ok> AB ".into()));
        assert_eq!(m["c"], Value::I8(-9_000_000_000));
        assert_eq!(m["d"], Value::Nil);
        assert_eq!(m["e"], Value::DateTime("19700101T00:00:00Z".into()));
        assert_eq!(m["f"], Value::Bool(true));
        assert_eq!(m["g"], Value::Str("<raw>".into()));
        assert_eq!(m["h"], Value::Int(7));
        assert_eq!(m["i"], Value::Double(1.5));
        assert_eq!(m["j"], Value::Str(String::new()));
        assert_eq!(
            m["k"],
            Value::Str("   ".into()),
            "a value of spaces is kept"
        );
        assert_eq!(m["l"], Value::Str(" \t ".into()));
        assert_eq!(m["m"], Value::Str(" ".into()));
    }

    #[test]
    fn rejects_bad_documents() {
        for bad in [
            "",
            "not xml",
            "<methodCall>",
            "<methodCall><methodName>x</methodName><params><param><value><int>z</int></value></param></params></methodCall>",
            "<methodCall><methodName>x</methodName></methodCall><extra/>",
            "<methodCall><methodName>x</methodName><params><param><value><bogus/></value></param></params></methodCall>",
            "<methodCall><methodName>x</methodName><params><param><value>a<b/></value></param></params></methodCall>",
            "<methodCall><methodName>x</methodName><params><param><value>&nope;</value></param></params></methodCall>",
        ] {
            assert!(parse_method_call(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn rejects_deep_nesting_without_overflow() {
        let depth = 100_000;
        let xml = format!(
            "<methodCall><methodName>x</methodName><params><param><value>{}{}</value></param></params></methodCall>",
            "<array><data><value>".repeat(depth),
            "</value></data></array>".repeat(depth)
        );
        assert_eq!(parse_method_call(&xml), Err(XmlRpcError::TooDeep));
    }

    #[test]
    fn fault_layout_matches_python_and_parses_back() {
        let xml = write_fault(16, "The SR device is currently in use [opterr=x\u{1} & y]");
        assert!(xml.contains("<name>faultCode</name>\n<value><int>16</int></value>"));
        match parse_method_response(&xml).unwrap() {
            MethodResponse::Fault { code, string } => {
                assert_eq!(code, 16);
                assert_eq!(
                    string,
                    "The SR device is currently in use [opterr=x\u{FFFD} & y]"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nil_response_is_python_shape() {
        assert_eq!(
            write_response(&Value::Nil),
            "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><nil/></value>\n</param>\n</params>\n</methodResponse>\n"
        );
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<String>().prop_map(|s| Value::Str(
                s.chars()
                    .filter(|c| (!c.is_control() || *c == '\n' || *c == '\t')
                        && !matches!(c, '\u{FFFE}' | '\u{FFFF}'))
                    .collect()
            )),
            any::<i32>().prop_map(Value::Int),
            any::<i64>().prop_map(Value::I8),
            any::<bool>().prop_map(Value::Bool),
            Just(Value::Nil),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map("[a-z_]{1,8}", inner, 0..5).prop_map(Value::Struct),
            ]
        })
    }

    proptest! {
        #[test]
        fn roundtrip_both_styles(v in arb_value()) {
            for style in [StringStyle::Typed, StringStyle::Untyped] {
                let xml = write_call("m", std::slice::from_ref(&v), style);
                let c = parse_method_call(&xml).unwrap();
                prop_assert_eq!(&c.params[0], &v);
            }
            let r = write_response(&v);
            prop_assert_eq!(parse_method_response(&r).unwrap(), MethodResponse::Success(v.clone()));
        }

        #[test]
        fn arbitrary_input_never_panics(s in any::<String>()) {
            let _ = parse_method_call(&s);
            let _ = parse_method_response(&s);
        }
    }
}
