//! The `<SRlist>` document sr_probe returns when the storage is named completely (sm-anchor
//! §1.7, sm's `srlist_toxml`): one `<SR>` per SR found, with its uuid, the devices it lives on
//! and its size.

use sm_core::probe_xml::{EmptyRoot, Listing, Record};

/// One SR found by a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbedSr {
    /// Its uuid.
    pub uuid: String,
    /// The device(s) or directory it lives on (devices comma-separated).
    pub devlist: String,
    /// Size of the storage in bytes.
    pub size: u64,
}

/// The `<SRlist>` document.
pub fn srlist_xml(srs: &[ProbedSr]) -> String {
    Listing::new("SRlist")
        .empty_as(EmptyRoot::OpenAndClose)
        .with_records(srs.iter().map(|sr| {
            Record::new("SR")
                .field("UUID", sr.uuid.as_str())
                .field("Devlist", sr.devlist.as_str())
                .field("size", sr.size.to_string())
        }))
        .to_xml()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srlist_shape() {
        let x = srlist_xml(&[ProbedSr {
            uuid: "u".into(),
            devlist: "/dev/a&b".into(),
            size: 5,
        }]);
        assert!(x.contains("<SRlist>\n\t<SR>\n\t\t<UUID>u</UUID>\n\t\t<Devlist>/dev/a&amp;b</Devlist>\n\t\t<size>5</size>"), "{x}");
        assert_eq!(
            srlist_xml(&[]),
            "<?xml version=\"1.0\" ?>\n<SRlist>\n</SRlist>\n"
        );
    }

    /// The documents the hand-written writer produced before the listing moved to
    /// `sm_core::probe_xml`, byte for byte.
    #[test]
    fn srlist_bytes_as_before() {
        let w = "a<b>c&d\"e'f\u{1}g\th\ni\u{7f}j\u{FFFE}k\r";
        assert_eq!(
            srlist_xml(&[ProbedSr {
                uuid: "u1".into(),
                devlist: "/dev/sda,/dev/sdb".into(),
                size: 5
            }]),
            "<?xml version=\"1.0\" ?>\n<SRlist>\n\t<SR>\n\t\t<UUID>u1</UUID>\n\t\t<Devlist>/dev/sda,/dev/sdb</Devlist>\n\t\t<size>5</size>\n\t</SR>\n</SRlist>\n"
        );
        assert_eq!(
            srlist_xml(&[
                ProbedSr {
                    uuid: w.into(),
                    devlist: w.into(),
                    size: u64::MAX
                },
                ProbedSr {
                    uuid: String::new(),
                    devlist: String::new(),
                    size: 0
                },
            ]),
            "<?xml version=\"1.0\" ?>\n<SRlist>\n\t<SR>\n\t\t<UUID>a&lt;b&gt;c&amp;d\"e'f\u{FFFD}g\th\ni\u{7f}j\u{FFFD}k\r</UUID>\n\t\t<Devlist>a&lt;b&gt;c&amp;d\"e'f\u{FFFD}g\th\ni\u{7f}j\u{FFFD}k\r</Devlist>\n\t\t<size>18446744073709551615</size>\n\t</SR>\n\t<SR>\n\t\t<UUID></UUID>\n\t\t<Devlist></Devlist>\n\t\t<size>0</size>\n\t</SR>\n</SRlist>\n"
        );
    }
}
