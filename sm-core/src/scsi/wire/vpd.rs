//! VPD pages (INQUIRY with EVPD=1): 0x00 supported pages, 0x80 unit serial number and
//! 0x83 device identification with every designator type of SPC-4 7.8.6.

use super::{ParseError, ascii_field, be16, byte, fit_u16, hex, slice, total};
use crate::scsi::alua::{RelTgtPortId, TpgId};

/// Page code of Supported VPD Pages.
pub const PAGE_SUPPORTED: u8 = 0x00;
/// Page code of Unit Serial Number.
pub const PAGE_UNIT_SERIAL: u8 = 0x80;
/// Page code of Device Identification.
pub const PAGE_DEVICE_ID: u8 = 0x83;

/// Offset of the page code in every VPD page.
const PAGE_CODE: usize = 1;
/// Offset of the big-endian PAGE LENGTH.
const PAGE_LENGTH: usize = 2;
/// Size of the page header; the payload follows.
pub const HEADER: usize = 4;
/// Size of a designation descriptor header.
const DESC_HEADER: usize = 4;
/// Descriptor byte 0: PROTOCOL IDENTIFIER (7:4) | CODE SET (3:0).
const DESC_PROTO_CODESET: usize = 0;
/// Descriptor byte 1: PIV (7) | ASSOCIATION (5:4) | DESIGNATOR TYPE (3:0).
const DESC_PIV_ASSOC_TYPE: usize = 1;
/// Descriptor byte 3: DESIGNATOR LENGTH.
const DESC_LENGTH: usize = 3;
/// PIV bit: the protocol identifier is valid.
const PIV: u8 = 0x80;

/// The bytes a VPD page occupies, from its header (for sizing the allocation length).
pub fn required_len(buf: &[u8]) -> Result<usize, ParseError> {
    total(
        HEADER,
        usize::from(be16(buf, PAGE_LENGTH, "VPD page length")?),
        "VPD page length",
    )
}

/// The payload of page `expected`, after checking the page code and that the declared length
/// is present.
pub fn payload(buf: &[u8], expected: u8) -> Result<&[u8], ParseError> {
    let got = byte(buf, PAGE_CODE, "VPD page code")?;
    if got != expected {
        return Err(ParseError::WrongPage { expected, got });
    }
    let len = usize::from(be16(buf, PAGE_LENGTH, "VPD page length")?);
    slice(buf, HEADER, len, "VPD page")
}

fn page(code: u8, body: &[u8]) -> Result<Vec<u8>, ParseError> {
    let len = fit_u16(body.len(), "VPD page length")?;
    let mut b = vec![0, code];
    b.extend_from_slice(&len.to_be_bytes());
    b.extend_from_slice(body);
    Ok(b)
}

/// Parses page 0x00: the list of supported page codes.
pub fn parse_supported(buf: &[u8]) -> Result<Vec<u8>, ParseError> {
    Ok(payload(buf, PAGE_SUPPORTED)?.to_vec())
}

/// Encodes page 0x00.
pub fn encode_supported(pages: &[u8]) -> Result<Vec<u8>, ParseError> {
    page(PAGE_SUPPORTED, pages)
}

/// Parses page 0x80: the unit serial number (ASCII; leading/trailing spaces and NULs removed,
/// as multipath does).
pub fn parse_unit_serial(buf: &[u8]) -> Result<String, ParseError> {
    let s = ascii_field(payload(buf, PAGE_UNIT_SERIAL)?, "unit serial number")?;
    Ok(s.trim_start_matches([' ', '\0']).to_string())
}

/// Encodes page 0x80 with LIO's layout (the serial followed by one NUL).
pub fn encode_unit_serial(serial: &str) -> Result<Vec<u8>, ParseError> {
    let mut body = serial.as_bytes().to_vec();
    body.push(0);
    page(PAGE_UNIT_SERIAL, &body)
}

/// CODE SET of a designation descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodeSet {
    /// 1: binary.
    Binary,
    /// 2: ASCII.
    Ascii,
    /// 3: UTF-8.
    Utf8,
    /// Any other (reserved) value.
    Other(u8),
}

impl CodeSet {
    fn from_nibble(v: u8) -> CodeSet {
        match v & 0x0f {
            1 => CodeSet::Binary,
            2 => CodeSet::Ascii,
            3 => CodeSet::Utf8,
            other => CodeSet::Other(other),
        }
    }

    fn nibble(self) -> u8 {
        match self {
            CodeSet::Binary => 1,
            CodeSet::Ascii => 2,
            CodeSet::Utf8 => 3,
            CodeSet::Other(v) => v & 0x0f,
        }
    }
}

/// ASSOCIATION of a designation descriptor: what the designator names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Association {
    /// 0: the logical unit.
    LogicalUnit,
    /// 1: the target port the command came through.
    TargetPort,
    /// 2: the SCSI target device.
    TargetDevice,
    /// 3: reserved.
    Reserved,
}

impl Association {
    fn from_bits(v: u8) -> Association {
        match v & 0x03 {
            0 => Association::LogicalUnit,
            1 => Association::TargetPort,
            2 => Association::TargetDevice,
            _ => Association::Reserved,
        }
    }

    fn bits(self) -> u8 {
        match self {
            Association::LogicalUnit => 0,
            Association::TargetPort => 1,
            Association::TargetDevice => 2,
            Association::Reserved => 3,
        }
    }
}

/// NAA field of an NAA designator (high nibble of its first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NaaFormat {
    /// 2: IEEE extended (8 bytes).
    IeeeExtended,
    /// 3: locally assigned (8 bytes).
    LocallyAssigned,
    /// 5: IEEE registered (8 bytes).
    IeeeRegistered,
    /// 6: IEEE registered extended (16 bytes); LIO uses this with company id 0x001405.
    IeeeRegisteredExtended,
}

impl NaaFormat {
    /// The NAA nibble.
    pub fn code(self) -> u8 {
        match self {
            NaaFormat::IeeeExtended => 2,
            NaaFormat::LocallyAssigned => 3,
            NaaFormat::IeeeRegistered => 5,
            NaaFormat::IeeeRegisteredExtended => 6,
        }
    }

    /// Designator length for this format.
    pub fn designator_len(self) -> usize {
        if self == NaaFormat::IeeeRegisteredExtended {
            16
        } else {
            8
        }
    }

    /// multipath-tools' preference among NAA formats (higher wins).
    fn priority(self) -> u8 {
        match self {
            NaaFormat::IeeeRegisteredExtended => 8,
            NaaFormat::IeeeRegistered => 7,
            NaaFormat::IeeeExtended => 6,
            NaaFormat::LocallyAssigned => 1,
        }
    }
}

/// A designator value, by DESIGNATOR TYPE.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Designator {
    /// 0: vendor specific.
    VendorSpecific(Vec<u8>),
    /// 1: T10 vendor ID (8-byte vendor, then vendor-specific bytes, often ASCII).
    T10VendorId {
        /// T10 vendor identification (trailing spaces removed).
        vendor: String,
        /// The vendor-specific identifier bytes, as sent.
        id: Vec<u8>,
    },
    /// 2: EUI-64 based (8, 12 or 16 bytes).
    Eui64(Vec<u8>),
    /// 3: NAA.
    Naa {
        /// NAA format.
        format: NaaFormat,
        /// The whole designator (8 or 16 bytes, NAA nibble included).
        bytes: Vec<u8>,
    },
    /// 4: relative target port identifier.
    RelativeTargetPort(RelTgtPortId),
    /// 5: target port group.
    TargetPortGroup(TpgId),
    /// 6: logical unit group.
    LogicalUnitGroup(u16),
    /// 7: MD5 logical unit identifier.
    Md5([u8; 16]),
    /// 8: SCSI name string (UTF-8; trailing NULs removed).
    ScsiName(String),
    /// 9: protocol-specific port identifier.
    ProtocolSpecificPort(Vec<u8>),
    /// 0xA: UUID (RFC 4122 bytes).
    Uuid([u8; 16]),
    /// 0xB..=0xF: reserved types, kept as bytes.
    Reserved {
        /// Designator type.
        kind: u8,
        /// Value.
        value: Vec<u8>,
    },
}

impl Designator {
    /// The DESIGNATOR TYPE code.
    pub fn type_code(&self) -> u8 {
        match self {
            Designator::VendorSpecific(_) => 0x0,
            Designator::T10VendorId { .. } => 0x1,
            Designator::Eui64(_) => 0x2,
            Designator::Naa { .. } => 0x3,
            Designator::RelativeTargetPort(_) => 0x4,
            Designator::TargetPortGroup(_) => 0x5,
            Designator::LogicalUnitGroup(_) => 0x6,
            Designator::Md5(_) => 0x7,
            Designator::ScsiName(_) => 0x8,
            Designator::ProtocolSpecificPort(_) => 0x9,
            Designator::Uuid(_) => 0xa,
            Designator::Reserved { kind, .. } => *kind & 0x0f,
        }
    }

    fn parse(kind: u8, v: &[u8]) -> Result<Designator, ParseError> {
        let fixed = |n: usize, what: &'static str| {
            if v.len() == n {
                Ok(())
            } else {
                Err(ParseError::Invalid {
                    what,
                    value: super::wide(v.len()),
                })
            }
        };
        Ok(match kind {
            0x0 => Designator::VendorSpecific(v.to_vec()),
            0x1 => {
                let vendor = ascii_field(
                    slice(v, 0, 8.min(v.len()), "T10 vendor id")?,
                    "T10 vendor id",
                )?;
                Designator::T10VendorId {
                    vendor,
                    id: v.get(8..).unwrap_or(&[]).to_vec(),
                }
            }
            0x2 => {
                if !matches!(v.len(), 8 | 12 | 16) {
                    return Err(ParseError::Invalid {
                        what: "EUI-64 designator length",
                        value: super::wide(v.len()),
                    });
                }
                Designator::Eui64(v.to_vec())
            }
            0x3 => {
                let nibble = byte(v, 0, "NAA designator")? >> 4;
                let format = match nibble {
                    2 => NaaFormat::IeeeExtended,
                    3 => NaaFormat::LocallyAssigned,
                    5 => NaaFormat::IeeeRegistered,
                    6 => NaaFormat::IeeeRegisteredExtended,
                    other => {
                        return Err(ParseError::Invalid {
                            what: "NAA field",
                            value: u64::from(other),
                        });
                    }
                };
                fixed(format.designator_len(), "NAA designator length")?;
                Designator::Naa {
                    format,
                    bytes: v.to_vec(),
                }
            }
            0x4 => {
                fixed(4, "relative target port designator length")?;
                Designator::RelativeTargetPort(RelTgtPortId(be16(v, 2, "relative target port")?))
            }
            0x5 => {
                fixed(4, "target port group designator length")?;
                Designator::TargetPortGroup(TpgId(be16(v, 2, "target port group")?))
            }
            0x6 => {
                fixed(4, "logical unit group designator length")?;
                Designator::LogicalUnitGroup(be16(v, 2, "logical unit group")?)
            }
            0x7 => {
                fixed(16, "MD5 designator length")?;
                let mut a = [0u8; 16];
                a.copy_from_slice(v);
                Designator::Md5(a)
            }
            0x8 => {
                let end = v.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
                let s = std::str::from_utf8(&v[..end]).map_err(|_| ParseError::Text {
                    what: "SCSI name string",
                })?;
                Designator::ScsiName(s.to_string())
            }
            0x9 => Designator::ProtocolSpecificPort(v.to_vec()),
            0xa => {
                // Byte 0 bits 7:4 = 1 (UUID), byte 1 reserved, then the 16-byte UUID.
                fixed(18, "UUID designator length")?;
                let mut a = [0u8; 16];
                a.copy_from_slice(&v[2..]);
                Designator::Uuid(a)
            }
            kind => Designator::Reserved {
                kind,
                value: v.to_vec(),
            },
        })
    }

    fn encode(&self) -> Vec<u8> {
        match self {
            Designator::VendorSpecific(v)
            | Designator::Eui64(v)
            | Designator::ProtocolSpecificPort(v)
            | Designator::Reserved { value: v, .. } => v.clone(),
            Designator::T10VendorId { vendor, id } => {
                let mut b = format!("{vendor:<8}").into_bytes();
                b.truncate(8);
                b.extend_from_slice(id);
                b
            }
            Designator::Naa { bytes, .. } => bytes.clone(),
            Designator::RelativeTargetPort(RelTgtPortId(v))
            | Designator::TargetPortGroup(TpgId(v))
            | Designator::LogicalUnitGroup(v) => {
                let [hi, lo] = v.to_be_bytes();
                vec![0, 0, hi, lo]
            }
            Designator::Md5(a) => a.to_vec(),
            Designator::ScsiName(s) => {
                // NUL-terminated and padded to a multiple of 4 (SPC-4 7.8.6.11).
                let mut b = s.as_bytes().to_vec();
                b.push(0);
                while b.len() % 4 != 0 {
                    b.push(0);
                }
                b
            }
            Designator::Uuid(a) => {
                let mut b = vec![0x10, 0];
                b.extend_from_slice(a);
                b
            }
        }
    }
}

/// One designation descriptor of page 0x83.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Designation {
    /// PROTOCOL IDENTIFIER when PIV is set (5 = iSCSI, 0 = FC, 6 = SAS).
    pub protocol: Option<u8>,
    /// CODE SET.
    pub code_set: CodeSet,
    /// ASSOCIATION.
    pub association: Association,
    /// The value.
    pub designator: Designator,
}

/// Page 0x83: every designation descriptor, in the device's order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct DeviceId {
    /// The descriptors.
    pub designations: Vec<Designation>,
}

impl DeviceId {
    /// Designators naming the logical unit.
    pub fn lu_designators(&self) -> impl Iterator<Item = &Designator> {
        self.designations
            .iter()
            .filter(|d| d.association == Association::LogicalUnit)
            .map(|d| &d.designator)
    }

    /// The target port group of the port this page came through (designator type 5).
    pub fn target_port_group(&self) -> Option<TpgId> {
        self.designations.iter().find_map(|d| match d.designator {
            Designator::TargetPortGroup(t) => Some(t),
            _ => None,
        })
    }

    /// The relative target port of the port this page came through (designator type 4).
    pub fn relative_target_port(&self) -> Option<RelTgtPortId> {
        self.designations.iter().find_map(|d| match d.designator {
            Designator::RelativeTargetPort(p) => Some(p),
            _ => None,
        })
    }

    /// The target port's SCSI name (e.g. `iqn...,t,0x0001`), association target port.
    pub fn target_port_name(&self) -> Option<&str> {
        self.designations
            .iter()
            .find_map(|d| match (&d.designator, d.association) {
                (Designator::ScsiName(s), Association::TargetPort) => Some(s.as_str()),
                _ => None,
            })
    }

    /// The target device's SCSI name (e.g. the target IQN), association target device.
    pub fn target_device_name(&self) -> Option<&str> {
        self.designations
            .iter()
            .find_map(|d| match (&d.designator, d.association) {
                (Designator::ScsiName(s), Association::TargetDevice) => Some(s.as_str()),
                _ => None,
            })
    }

    /// The WWID as `scsi_id -g` and multipath print it for an NAA-identified LU: `3` followed
    /// by the lowercase hex of the best NAA designator (IEEE registered extended first).
    pub fn naa_wwid(&self) -> Option<String> {
        self.lu_designators()
            .filter_map(|d| match d {
                Designator::Naa { format, bytes } => Some((format.priority(), bytes)),
                _ => None,
            })
            .max_by_key(|(p, _)| *p)
            .map(|(_, bytes)| format!("3{}", hex(bytes)))
    }

    /// The WWID multipath-tools derives from this page (`parse_vpd_pg83`): among LU
    /// designators, NAA 6 > NAA 5 > NAA 2 > EUI-64 > SCSI name `eui.`/`naa.`/`iqn.` >
    /// T10 vendor ID > NAA 3 (multipath-tools 0.14), formatted as the type digit followed by hex (NAA, EUI-64) or
    /// text (T10 vendor ID with blanks folded to `_`, SCSI name string).
    pub fn wwid(&self) -> Option<String> {
        let mut best: Option<(u8, String)> = None;
        for d in self.lu_designators() {
            let cand = match d {
                Designator::Naa { format, bytes } => {
                    Some((format.priority(), format!("3{}", hex(bytes))))
                }
                Designator::ScsiName(s) => {
                    let lower = s.get(..4).map(str::to_ascii_lowercase);
                    match (lower.as_deref(), s.get(4..)) {
                        (Some("eui."), Some(rest)) => {
                            Some((3, format!("2{}", rest.to_ascii_lowercase())))
                        }
                        (Some("naa."), Some(rest)) => {
                            Some((3, format!("3{}", rest.to_ascii_lowercase())))
                        }
                        (Some("iqn."), Some(rest)) => Some((3, format!("8{rest}"))),
                        _ => None,
                    }
                }
                Designator::Eui64(bytes) => Some((4, format!("2{}", hex(bytes)))),
                Designator::T10VendorId { vendor, id } => {
                    let mut raw = format!("{vendor:<8}").into_bytes();
                    raw.truncate(8);
                    raw.extend(id.iter().copied().filter(|b| *b != 0));
                    let text = String::from_utf8_lossy(&raw).into_owned();
                    let folded = text
                        .split(' ')
                        .filter(|p| !p.is_empty())
                        .collect::<Vec<_>>()
                        .join("_");
                    Some((2, format!("1{folded}")))
                }
                _ => None,
            };
            if let Some((p, s)) = cand
                && best.as_ref().is_none_or(|(bp, _)| p > *bp)
            {
                best = Some((p, s));
            }
        }
        best.map(|(_, s)| s)
    }

    /// Encodes the page.
    pub fn encode(&self) -> Result<Vec<u8>, ParseError> {
        let mut body = Vec::new();
        for d in &self.designations {
            let value = d.designator.encode();
            let len = u8::try_from(value.len()).map_err(|_| ParseError::Invalid {
                what: "designator length",
                value: super::wide(value.len()),
            })?;
            let (proto, piv) = match d.protocol {
                Some(p) => (p & 0x0f, PIV),
                None => (0, 0),
            };
            body.push((proto << 4) | d.code_set.nibble());
            body.push(piv | (d.association.bits() << 4) | d.designator.type_code());
            body.push(0);
            body.push(len);
            body.extend_from_slice(&value);
        }
        page(PAGE_DEVICE_ID, &body)
    }
}

/// Parses page 0x83. A descriptor that runs past the page end is an error.
pub fn parse_device_id(buf: &[u8]) -> Result<DeviceId, ParseError> {
    let body = payload(buf, PAGE_DEVICE_ID)?;
    let mut designations = Vec::new();
    let mut off = 0usize;
    while off < body.len() {
        let head = slice(body, off, DESC_HEADER, "designation descriptor header")?;
        let len = usize::from(head[DESC_LENGTH]);
        let value = slice(body, off + DESC_HEADER, len, "designator")?;
        let piv = head[DESC_PIV_ASSOC_TYPE] & PIV != 0;
        let association = Association::from_bits(head[DESC_PIV_ASSOC_TYPE] >> 4);
        // PIV is only meaningful for target port / target device associations.
        let protocol = (piv && association != Association::LogicalUnit)
            .then_some(head[DESC_PROTO_CODESET] >> 4);
        designations.push(Designation {
            protocol,
            code_set: CodeSet::from_nibble(head[DESC_PROTO_CODESET]),
            association,
            designator: Designator::parse(head[DESC_PIV_ASSOC_TYPE] & 0x0f, value)?,
        });
        off += DESC_HEADER + len;
    }
    Ok(DeviceId { designations })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::wire::fixtures::load;

    #[test]
    fn lio_supported_and_serial() {
        assert_eq!(
            parse_supported(&load("vpd00")).unwrap(),
            [0x00, 0x80, 0x83, 0x86, 0xb0, 0xb1, 0xb2, 0xb3]
        );
        assert_eq!(parse_unit_serial(&load("vpd80")).unwrap(), "labserial0");
        assert_eq!(encode_unit_serial("labserial0").unwrap(), load("vpd80"));
        assert!(matches!(
            parse_unit_serial(&load("vpd00")),
            Err(ParseError::WrongPage {
                expected: 0x80,
                got: 0
            })
        ));
    }

    #[test]
    fn lio_device_id_both_ports() {
        for (name, port) in [("vpd83_port1", 1), ("vpd83_port2", 2)] {
            let raw = load(name);
            let id = parse_device_id(&raw).unwrap();
            assert_eq!(id.designations.len(), 7, "{name}");
            assert_eq!(
                id.naa_wwid().as_deref(),
                Some("36001405abea000000000000000000000")
            );
            assert_eq!(id.wwid(), id.naa_wwid());
            assert_eq!(id.relative_target_port(), Some(RelTgtPortId(port)));
            assert_eq!(id.target_port_group(), Some(TpgId(port)));
            assert_eq!(
                id.target_port_name(),
                Some(format!("iqn.2026-01.lab.storage:tgt1,t,0x000{port}").as_str())
            );
            assert_eq!(
                id.target_device_name(),
                Some("iqn.2026-01.lab.storage:tgt1")
            );
            assert!(
                id.designations
                    .iter()
                    .any(|d| d.designator == Designator::LogicalUnitGroup(0))
            );
            assert!(id.designations.iter().any(|d| matches!(
                &d.designator,
                Designator::T10VendorId { vendor, id } if vendor == "LIO-ORG" && id.starts_with(b"FILEIO:labserial0")
            )));
            assert_eq!(id.encode().unwrap(), raw, "{name} re-encodes byte for byte");
        }
        // The 4 TiB LU sits in the default group (id 0) on port 1.
        let big = parse_device_id(&load("big_vpd83")).unwrap();
        assert_eq!(big.target_port_group(), Some(TpgId(0)));
        assert_eq!(
            big.naa_wwid().as_deref(),
            Some("36001405abea300000000000000000000")
        );
    }

    #[test]
    fn truncated_page_reports_needed_length() {
        let short = load("vpd83_short8");
        assert_eq!(required_len(&short).unwrap(), 158);
        assert!(matches!(
            parse_device_id(&short),
            Err(ParseError::Short {
                need: 158,
                got: 8,
                ..
            })
        ));
    }

    #[test]
    fn designator_edge_cases() {
        // A designator whose length runs past the page.
        let mut b = vec![0, 0x83, 0, 8, 0x01, 0x03, 0, 0x10, 0x60, 1, 2, 3];
        assert!(matches!(parse_device_id(&b), Err(ParseError::Short { .. })));
        // Wrong length for the NAA format.
        b = vec![0, 0x83, 0, 12, 0x01, 0x03, 0, 8, 0x60, 1, 2, 3, 4, 5, 6, 7];
        assert!(matches!(
            parse_device_id(&b),
            Err(ParseError::Invalid {
                what: "NAA designator length",
                ..
            })
        ));
        // TPG designator must be 4 bytes.
        b = vec![0, 0x83, 0, 6, 0x01, 0x15, 0, 2, 0, 1];
        assert!(matches!(
            parse_device_id(&b),
            Err(ParseError::Invalid { .. })
        ));
        // Empty page.
        assert_eq!(
            parse_device_id(&[0, 0x83, 0, 0]).unwrap(),
            DeviceId::default()
        );
    }

    #[test]
    fn wwid_priorities_follow_multipath() {
        let d = |designator| Designation {
            protocol: None,
            code_set: CodeSet::Binary,
            association: Association::LogicalUnit,
            designator,
        };
        let mut id = DeviceId {
            designations: vec![
                d(Designator::T10VendorId {
                    vendor: "ACME".into(),
                    id: b"BIG  DISK  42".to_vec(),
                }),
                d(Designator::Naa {
                    format: NaaFormat::LocallyAssigned,
                    bytes: vec![0x3a; 8],
                }),
            ],
        };
        assert_eq!(id.wwid().as_deref(), Some("1ACME_BIG_DISK_42"));
        id.designations
            .push(d(Designator::ScsiName("naa.600A0B80".into())));
        assert_eq!(id.wwid().as_deref(), Some("3600a0b80"));
        id.designations.push(d(Designator::Eui64(vec![0xab; 8])));
        assert_eq!(id.wwid().as_deref(), Some("2abababababababab"));
        id.designations.push(d(Designator::Naa {
            format: NaaFormat::IeeeRegistered,
            bytes: vec![0x50, 1, 2, 3, 4, 5, 6, 7],
        }));
        assert_eq!(id.wwid().as_deref(), Some("35001020304050607"));
        assert_eq!(id.naa_wwid().as_deref(), Some("35001020304050607"));
        // Target-port designators never become the WWID.
        let tp = DeviceId {
            designations: vec![Designation {
                protocol: Some(5),
                code_set: CodeSet::Binary,
                association: Association::TargetPort,
                designator: Designator::Naa {
                    format: NaaFormat::IeeeRegistered,
                    bytes: vec![0x50; 8],
                },
            }],
        };
        assert_eq!(tp.wwid(), None);
    }

    #[test]
    fn every_designator_type_round_trips() {
        let all = vec![
            Designator::VendorSpecific(vec![1, 2, 3]),
            Designator::T10VendorId {
                vendor: "LIO-ORG".into(),
                id: b"FILEIO:x\0".to_vec(),
            },
            Designator::Eui64(vec![9; 12]),
            Designator::Naa {
                format: NaaFormat::IeeeRegisteredExtended,
                bytes: vec![0x60; 16],
            },
            Designator::RelativeTargetPort(RelTgtPortId(7)),
            Designator::TargetPortGroup(TpgId(0xffff)),
            Designator::LogicalUnitGroup(3),
            Designator::Md5([5; 16]),
            Designator::ScsiName("iqn.2026-01.x:y,t,0x0001".into()),
            Designator::ProtocolSpecificPort(vec![0, 0, 0, 1]),
            Designator::Uuid([0xee; 16]),
            Designator::Reserved {
                kind: 0xc,
                value: vec![1],
            },
        ];
        let id = DeviceId {
            designations: all
                .into_iter()
                .map(|designator| Designation {
                    protocol: Some(5),
                    code_set: CodeSet::Binary,
                    association: Association::TargetPort,
                    designator,
                })
                .collect(),
        };
        assert_eq!(parse_device_id(&id.encode().unwrap()).unwrap(), id);
    }
}
