//! The `<SRlist>` document sr_probe returns when the storage is named completely (sm-anchor
//! §1.7, sm's `srlist_toxml`): one `<SR>` per SR found, with its uuid, the devices it lives on
//! and its size.

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

/// Escapes text for an XML element.
fn xml_text(s: &str) -> String {
    let mut out = String::new();
    sm_core::xmlrpc::escape_text(&mut out, s);
    out
}

/// The `<SRlist>` document.
pub fn srlist_xml(srs: &[ProbedSr]) -> String {
    let mut out = String::from("<?xml version=\"1.0\" ?>\n<SRlist>\n");
    for sr in srs {
        out.push_str(&format!(
            "\t<SR>\n\t\t<UUID>{}</UUID>\n\t\t<Devlist>{}</Devlist>\n\t\t<size>{}</size>\n\t</SR>\n",
            xml_text(&sr.uuid),
            xml_text(&sr.devlist),
            sr.size
        ));
    }
    out.push_str("</SRlist>\n");
    out
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
}
