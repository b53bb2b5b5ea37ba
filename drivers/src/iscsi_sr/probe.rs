//! The probe listings sm writes on stderr, byte for byte in sm's layout (Python minidom's
//! `toprettyxml`: XML declaration, tab indentation), because XenCenter and Xen Orchestra
//! parse them: `<iscsi-target-iqns>` (with fault 96) and `<iscsi-target>` (with fault 107).

use multipath::iscsi::DEFAULT_PORT;
use multipath::iscsi::iscsiadm::NodeRecord;
use multipath::iscsi::luns::TargetLun;
use sm_core::probe_xml::{Listing, Record};

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
    Listing::new("iscsi-target-iqns")
        .with_records(entries.iter().enumerate().map(|(i, e)| {
            let r = Record::new("TGT")
                .field("Index", i.to_string())
                .field("IPAddress", e.address.as_str());
            let r = if e.port == DEFAULT_PORT {
                r
            } else {
                r.field("Port", e.port.to_string())
            };
            r.field("TargetIQN", e.iqn.as_str())
        }))
        .to_xml()
}

/// `<iscsi-target>`: `<LUN><vendor/><serial/><LUNid/><size/><SCSIid/></LUN>...`; as sm, an
/// element whose value is empty is left out.
pub fn lun_listing(luns: &[TargetLun]) -> String {
    Listing::new("iscsi-target")
        .with_records(luns.iter().map(|l| {
            let size = if l.size == 0 {
                String::new()
            } else {
                l.size.to_string()
            };
            Record::new("LUN")
                .field_if_set("vendor", l.vendor.as_str())
                .field_if_set("serial", l.serial.as_str())
                .field_if_set("LUNid", l.lun.to_string())
                .field_if_set("size", size)
                .field_if_set("SCSIid", l.scsi_id.as_str())
        }))
        .to_xml()
}

#[cfg(test)]
mod tests {
    use super::*;
    use multipath::iscsi::Portal;

    /// Reads the listings the way their consumers do (Xen Orchestra's `sr.probeIscsiIqns` /
    /// `probeIscsiLuns`, XenCenter's `ISCSIPopulateIQNsAction` / `ISCSIPopulateLunsAction`):
    /// an XML reader, the root element by name, its children by name, each field by element
    /// name; unknown elements are an error here so that a misspelling cannot pass.
    fn consumer_parse(
        xml: &str,
        root: &str,
        entry: &str,
        fields: &[&str],
    ) -> Vec<Vec<(String, String)>> {
        assert!(
            xml.starts_with("<?xml version=\"1.0\" ?>\n"),
            "minidom's XML declaration: {xml}"
        );
        let listing = sm_core::probe_xml::read(xml).expect("well-formed listing");
        assert_eq!(listing.root(), root, "root element");
        listing
            .records()
            .iter()
            .map(|r| {
                assert_eq!(r.name(), entry, "entry element");
                r.fields()
                    .map(|(name, value)| {
                        assert!(fields.contains(&name), "unexpected element {name}");
                        (name.to_string(), value.to_string())
                    })
                    .collect()
            })
            .collect()
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

    /// The documents the hand-written writer produced before the listings moved to
    /// `sm_core::probe_xml`, byte for byte.
    #[test]
    fn listings_bytes_as_before() {
        let w = "a<b>c&d\"e'f\u{1}g\th\ni\u{7f}j\u{FFFE}k\r";
        let we = "a&lt;b&gt;c&amp;d\"e'f\u{FFFD}g\th\ni\u{7f}j\u{FFFD}k\r";
        assert_eq!(
            iqn_listing(&[]),
            "<?xml version=\"1.0\" ?>\n<iscsi-target-iqns/>\n"
        );
        assert_eq!(
            iqn_listing(&[
                TargetEntry {
                    address: "10.0.0.1".into(),
                    port: 3260,
                    iqn: "iqn.x:y".into()
                },
                TargetEntry {
                    address: w.into(),
                    port: 3261,
                    iqn: w.into()
                },
                TargetEntry {
                    address: String::new(),
                    port: 0,
                    iqn: "*".into()
                },
            ]),
            format!(
                "<?xml version=\"1.0\" ?>\n<iscsi-target-iqns>\n\t<TGT>\n\t\t<Index>0</Index>\n\t\t<IPAddress>10.0.0.1</IPAddress>\n\t\t<TargetIQN>iqn.x:y</TargetIQN>\n\t</TGT>\n\t<TGT>\n\t\t<Index>1</Index>\n\t\t<IPAddress>{we}</IPAddress>\n\t\t<Port>3261</Port>\n\t\t<TargetIQN>{we}</TargetIQN>\n\t</TGT>\n\t<TGT>\n\t\t<Index>2</Index>\n\t\t<IPAddress></IPAddress>\n\t\t<Port>0</Port>\n\t\t<TargetIQN>*</TargetIQN>\n\t</TGT>\n</iscsi-target-iqns>\n"
            )
        );
        let lun = |vendor: &str, serial: &str, lun: u64, size: u64, scsi_id: &str| TargetLun {
            vendor: vendor.into(),
            serial: serial.into(),
            lun,
            size,
            scsi_id: scsi_id.into(),
            devices: vec![],
        };
        assert_eq!(
            lun_listing(&[
                lun("LIO-ORG", "5ab", 0, 64 << 20, "3600"),
                lun(w, w, u64::MAX, 1, w),
                lun("", "", 7, 0, ""),
            ]),
            format!(
                "<?xml version=\"1.0\" ?>\n<iscsi-target>\n\t<LUN>\n\t\t<vendor>LIO-ORG</vendor>\n\t\t<serial>5ab</serial>\n\t\t<LUNid>0</LUNid>\n\t\t<size>67108864</size>\n\t\t<SCSIid>3600</SCSIid>\n\t</LUN>\n\t<LUN>\n\t\t<vendor>{we}</vendor>\n\t\t<serial>{we}</serial>\n\t\t<LUNid>18446744073709551615</LUNid>\n\t\t<size>1</size>\n\t\t<SCSIid>{we}</SCSIid>\n\t</LUN>\n\t<LUN>\n\t\t<LUNid>7</LUNid>\n\t</LUN>\n</iscsi-target>\n"
            )
        );
    }
}
