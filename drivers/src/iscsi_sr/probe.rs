//! The probe listings sm writes on stderr, byte for byte in sm's layout (Python minidom's
//! `toprettyxml`: XML declaration, tab indentation), because XenCenter and Xen Orchestra
//! parse them: `<iscsi-target-iqns>` (with fault 96) and `<iscsi-target>` (with fault 107).

use multipath::iscsi::DEFAULT_PORT;
use multipath::iscsi::iscsiadm::NodeRecord;
use multipath::iscsi::luns::TargetLun;

/// One `<TGT>` of the IQN listing: a portal and a target (`*` for the catch-all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetEntry {
    /// `IPAddress` (sm writes the host part of the portal; for the catch-all, `target` as given).
    pub address: String,
    /// `Port` (written only when not 3260).
    pub port: u16,
    /// `TargetIQN`.
    pub iqn: String,
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    sm_core::xmlrpc::escape_text(&mut out, s);
    out
}

/// A minidom-style document: `<root>` with one child element per entry, each holding text
/// elements; `<root/>` when empty.
fn document(root: &str, entry: &str, entries: &[Vec<(&str, String)>]) -> String {
    let mut s = String::from("<?xml version=\"1.0\" ?>\n");
    if entries.is_empty() {
        s.push_str(&format!("<{root}/>\n"));
        return s;
    }
    s.push_str(&format!("<{root}>\n"));
    for e in entries {
        s.push_str(&format!("\t<{entry}>\n"));
        for (k, v) in e {
            s.push_str(&format!("\t\t<{k}>{}</{k}>\n", escape(v)));
        }
        s.push_str(&format!("\t</{entry}>\n"));
    }
    s.push_str(&format!("</{root}>\n"));
    s
}

/// The entries of the IQN listing: what discovery reported, then sm's catch-all entry
/// (`target` as given, port, IQN `*`).
pub fn target_entries(records: &[NodeRecord], target_text: &str, port: u16) -> Vec<TargetEntry> {
    let mut v: Vec<TargetEntry> = records
        .iter()
        .map(|r| TargetEntry {
            address: r.portal.host().to_string(),
            port: r.portal.port,
            iqn: r.target.clone(),
        })
        .collect();
    v.push(TargetEntry {
        address: target_text.to_string(),
        port,
        iqn: "*".into(),
    });
    v
}

/// `<iscsi-target-iqns>`: `<TGT><Index/><IPAddress/>[<Port/>]<TargetIQN/></TGT>...`.
pub fn iqn_listing(entries: &[TargetEntry]) -> String {
    let rows: Vec<Vec<(&str, String)>> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut r = vec![("Index", i.to_string()), ("IPAddress", e.address.clone())];
            if e.port != DEFAULT_PORT {
                r.push(("Port", e.port.to_string()));
            }
            r.push(("TargetIQN", e.iqn.clone()));
            r
        })
        .collect();
    document("iscsi-target-iqns", "TGT", &rows)
}

/// `<iscsi-target>`: `<LUN><vendor/><serial/><LUNid/><size/><SCSIid/></LUN>...`; as sm, an
/// element whose value is empty is left out.
pub fn lun_listing(luns: &[TargetLun]) -> String {
    let rows: Vec<Vec<(&str, String)>> = luns
        .iter()
        .map(|l| {
            [
                ("vendor", l.vendor.clone()),
                ("serial", l.serial.clone()),
                ("LUNid", l.lun.to_string()),
                (
                    "size",
                    if l.size == 0 {
                        String::new()
                    } else {
                        l.size.to_string()
                    },
                ),
                ("SCSIid", l.scsi_id.clone()),
            ]
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .collect()
        })
        .collect();
    document("iscsi-target", "LUN", &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use multipath::iscsi::Portal;

    /// Reads the listings the way their consumers do (Xen Orchestra's `sr.probeIscsiIqns` /
    /// `probeIscsiLuns`, XenCenter's `ISCSIPopulateIQNsAction` / `ISCSIPopulateLunsAction`):
    /// the root element by name, its children by name, each field by element name; unknown
    /// elements are an error here so that a misspelling cannot pass.
    fn consumer_parse(
        xml: &str,
        root: &str,
        entry: &str,
        fields: &[&str],
    ) -> Vec<Vec<(String, String)>> {
        let body = xml
            .strip_prefix("<?xml version=\"1.0\" ?>\n")
            .expect("minidom's XML declaration");
        if body.trim() == format!("<{root}/>") {
            return Vec::new();
        }
        let inner = body
            .trim()
            .strip_prefix(&format!("<{root}>"))
            .and_then(|b| b.strip_suffix(&format!("</{root}>")))
            .expect("root element");
        let mut out = Vec::new();
        for chunk in inner
            .split(&format!("</{entry}>"))
            .filter(|c| !c.trim().is_empty())
        {
            let c = chunk
                .trim()
                .strip_prefix(&format!("<{entry}>"))
                .expect("entry element");
            let mut rec = Vec::new();
            for line in c.lines().map(str::trim).filter(|l| !l.is_empty()) {
                let name = &line[1..line.find('>').unwrap()];
                assert!(fields.contains(&name), "unexpected element {name}");
                let value = line
                    .strip_prefix(&format!("<{name}>"))
                    .and_then(|l| l.strip_suffix(&format!("</{name}>")))
                    .expect("text element");
                rec.push((
                    name.to_string(),
                    value
                        .replace("&amp;", "&")
                        .replace("&lt;", "<")
                        .replace("&gt;", ">"),
                ));
            }
            out.push(rec);
        }
        out
    }

    #[test]
    fn iqn_listing_as_sm_writes_it() {
        let records = multipath::iscsi::iscsiadm::parse_records(
            "10.99.0.1:3260,1 iqn.2026-01.test.lab:t2\n10.99.0.2:3261,2 iqn.2026-01.test.lab:t2\n",
        )
        .unwrap();
        let xml = iqn_listing(&target_entries(&records, "10.99.0.1,10.99.0.2", 3260));
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" ?>\n<iscsi-target-iqns>\n\
             \t<TGT>\n\t\t<Index>0</Index>\n\t\t<IPAddress>10.99.0.1</IPAddress>\n\t\t<TargetIQN>iqn.2026-01.test.lab:t2</TargetIQN>\n\t</TGT>\n\
             \t<TGT>\n\t\t<Index>1</Index>\n\t\t<IPAddress>10.99.0.2</IPAddress>\n\t\t<Port>3261</Port>\n\t\t<TargetIQN>iqn.2026-01.test.lab:t2</TargetIQN>\n\t</TGT>\n\
             \t<TGT>\n\t\t<Index>2</Index>\n\t\t<IPAddress>10.99.0.1,10.99.0.2</IPAddress>\n\t\t<TargetIQN>*</TargetIQN>\n\t</TGT>\n\
             </iscsi-target-iqns>\n"
        );
        let parsed = consumer_parse(
            &xml,
            "iscsi-target-iqns",
            "TGT",
            &["Index", "IPAddress", "Port", "TargetIQN"],
        );
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed[1][2], ("Port".to_string(), "3261".to_string()));
        // XenCenter sorts the '*' entry last; it is last already.
        assert_eq!(parsed[2].last().unwrap().1, "*");
        let v6 = target_entries(
            &[NodeRecord {
                portal: Portal::new("fe80::1", 3260),
                tpgt: 1,
                target: "iqn.x:y".into(),
            }],
            "fe80::1",
            3260,
        );
        assert!(iqn_listing(&v6).contains("<IPAddress>fe80::1</IPAddress>"));
    }

    #[test]
    fn lun_listing_as_sm_writes_it() {
        let luns = vec![
            TargetLun {
                vendor: "LIO-ORG".into(),
                serial: "5ab0c1de0000".into(),
                lun: 0,
                size: 64 << 20,
                scsi_id: "360014055ab0c1de00000000000000000".into(),
                devices: vec!["sdm".into()],
            },
            TargetLun {
                vendor: "A&B <co>".into(),
                serial: String::new(),
                lun: 1,
                size: 0,
                scsi_id: "360014055ab0c1de00010000000000000".into(),
                devices: vec![],
            },
        ];
        let xml = lun_listing(&luns);
        assert!(xml.starts_with(
            "<?xml version=\"1.0\" ?>\n<iscsi-target>\n\t<LUN>\n\t\t<vendor>LIO-ORG</vendor>\n\t\t<serial>5ab0c1de0000</serial>\n\t\t<LUNid>0</LUNid>\n\t\t<size>67108864</size>\n\t\t<SCSIid>360014055ab0c1de00000000000000000</SCSIid>\n\t</LUN>\n"
        ), "{xml}");
        let parsed = consumer_parse(
            &xml,
            "iscsi-target",
            "LUN",
            &["vendor", "serial", "LUNid", "size", "SCSIid"],
        );
        assert_eq!(parsed.len(), 2);
        assert_eq!(
            parsed[1],
            vec![
                ("vendor".to_string(), "A&B <co>".to_string()),
                ("LUNid".to_string(), "1".to_string()),
                (
                    "SCSIid".to_string(),
                    "360014055ab0c1de00010000000000000".to_string()
                ),
            ]
        );
        assert_eq!(
            lun_listing(&[]),
            "<?xml version=\"1.0\" ?>\n<iscsi-target/>\n"
        );
        assert!(consumer_parse(&lun_listing(&[]), "iscsi-target", "LUN", &[]).is_empty());
    }
}
