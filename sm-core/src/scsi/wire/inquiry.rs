//! Standard INQUIRY data (SPC-4 6.6.2).

use super::{ParseError, ascii_field, byte, slice};
use crate::scsi::alua::Tpgs;

/// Bytes up to and including PRODUCT REVISION LEVEL; the least we accept.
pub const MIN_LEN: usize = 36;
/// Offset of ADDITIONAL LENGTH (the data is `5 + value` bytes).
const ADDITIONAL_LENGTH: usize = 4;
/// Offset of PERIPHERAL QUALIFIER (7:5) | PERIPHERAL DEVICE TYPE (4:0).
const PERIPHERAL: usize = 0;
/// Offset of RMB (bit 7).
const RMB: usize = 1;
/// Offset of VERSION.
const VERSION: usize = 2;
/// Offset of NORMACA 0x20 | HISUP 0x10 | RESPONSE DATA FORMAT (3:0).
const FLAGS3: usize = 3;
/// Offset of SCCS 0x80 | ACC 0x40 | TPGS (5:4) | 3PC 0x08 | PROTECT 0x01.
const FLAGS5: usize = 5;
/// Offset of ENCSERV 0x40 | MULTIP 0x10.
const FLAGS6: usize = 6;
/// Offset of CMDQUE 0x02.
const FLAGS7: usize = 7;
/// T10 VENDOR IDENTIFICATION (8 bytes).
const VENDOR: usize = 8;
/// PRODUCT IDENTIFICATION (16 bytes).
const PRODUCT: usize = 16;
/// PRODUCT REVISION LEVEL (4 bytes).
const REVISION: usize = 32;
/// First VERSION DESCRIPTOR (8 of them, 2 bytes each).
const VERSION_DESCRIPTORS: usize = 58;

/// Decoded standard INQUIRY data.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StandardInquiry {
    /// PERIPHERAL QUALIFIER (0 = LU connected).
    pub qualifier: u8,
    /// PERIPHERAL DEVICE TYPE (0 = disk).
    pub device_type: u8,
    /// Removable medium.
    pub removable: bool,
    /// VERSION (6 = SPC-4).
    pub version: u8,
    /// HISUP.
    pub hisup: bool,
    /// RESPONSE DATA FORMAT (2).
    pub response_format: u8,
    /// SCCS.
    pub sccs: bool,
    /// ACC.
    pub acc: bool,
    /// TPGS: ALUA support.
    pub tpgs: Tpgs,
    /// 3PC (third-party copy).
    pub three_pc: bool,
    /// PROTECT.
    pub protect: bool,
    /// ENCSERV.
    pub encserv: bool,
    /// MULTIP: the device has more than one port.
    pub multip: bool,
    /// CMDQUE.
    pub cmdque: bool,
    /// T10 vendor identification, trailing blanks removed (`LIO-ORG`).
    pub vendor: String,
    /// Product identification, trailing blanks removed (`FILEIO`).
    pub product: String,
    /// Product revision level.
    pub revision: String,
    /// Non-zero version descriptors (standards claimed), when returned.
    pub version_descriptors: Vec<u16>,
}

/// The length the device says its standard INQUIRY data has (`5 + ADDITIONAL LENGTH`).
pub fn required_len(buf: &[u8]) -> Result<usize, ParseError> {
    Ok(5 + usize::from(byte(buf, ADDITIONAL_LENGTH, "INQUIRY additional length")?))
}

/// Parses standard INQUIRY data. At least 36 bytes must be present; version descriptors are
/// read from what the device declared and sent.
pub fn parse(buf: &[u8]) -> Result<StandardInquiry, ParseError> {
    slice(buf, 0, MIN_LEN, "standard INQUIRY data")?;
    let end = required_len(buf)?.min(buf.len());
    let version_descriptors = buf
        .get(VERSION_DESCRIPTORS..end.max(VERSION_DESCRIPTORS))
        .unwrap_or(&[])
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .take(8)
        .filter(|v| *v != 0)
        .collect();
    Ok(StandardInquiry {
        qualifier: buf[PERIPHERAL] >> 5,
        device_type: buf[PERIPHERAL] & 0x1f,
        removable: buf[RMB] & 0x80 != 0,
        version: buf[VERSION],
        hisup: buf[FLAGS3] & 0x10 != 0,
        response_format: buf[FLAGS3] & 0x0f,
        sccs: buf[FLAGS5] & 0x80 != 0,
        acc: buf[FLAGS5] & 0x40 != 0,
        tpgs: Tpgs::from_bits(buf[FLAGS5] >> 4),
        three_pc: buf[FLAGS5] & 0x08 != 0,
        protect: buf[FLAGS5] & 0x01 != 0,
        encserv: buf[FLAGS6] & 0x40 != 0,
        multip: buf[FLAGS6] & 0x10 != 0,
        cmdque: buf[FLAGS7] & 0x02 != 0,
        vendor: ascii_field(&buf[VENDOR..PRODUCT], "vendor identification")?,
        product: ascii_field(&buf[PRODUCT..REVISION], "product identification")?,
        revision: ascii_field(&buf[REVISION..MIN_LEN], "product revision level")?,
        version_descriptors,
    })
}

impl StandardInquiry {
    /// Encodes the data in LIO's 96-byte layout (version descriptors at byte 58).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; 96];
        b[PERIPHERAL] = (self.qualifier << 5) | (self.device_type & 0x1f);
        b[RMB] = if self.removable { 0x80 } else { 0 };
        b[VERSION] = self.version;
        b[FLAGS3] = if self.hisup { 0x10 } else { 0 } | (self.response_format & 0x0f);
        b[ADDITIONAL_LENGTH] = 91;
        b[FLAGS5] = (u8::from(self.sccs) << 7)
            | (u8::from(self.acc) << 6)
            | (self.tpgs.bits() << 4)
            | (u8::from(self.three_pc) << 3)
            | u8::from(self.protect);
        b[FLAGS6] = (u8::from(self.encserv) << 6) | (u8::from(self.multip) << 4);
        b[FLAGS7] = u8::from(self.cmdque) << 1;
        let mut put = |off: usize, len: usize, s: &str| {
            let field = format!("{s:<len$}");
            b[off..off + len].copy_from_slice(&field.as_bytes()[..len]);
        };
        put(VENDOR, 8, &self.vendor);
        put(PRODUCT, 16, &self.product);
        put(REVISION, 4, &self.revision);
        for (i, v) in self.version_descriptors.iter().take(8).enumerate() {
            b[VERSION_DESCRIPTORS + 2 * i..VERSION_DESCRIPTORS + 2 * i + 2]
                .copy_from_slice(&v.to_be_bytes());
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::wire::fixtures::load;

    #[test]
    fn lio_standard_inquiry() {
        let raw = load("inquiry_std");
        let inq = parse(&raw).unwrap();
        assert_eq!(
            (
                inq.vendor.as_str(),
                inq.product.as_str(),
                inq.revision.as_str()
            ),
            ("LIO-ORG", "FILEIO", "4.0")
        );
        assert_eq!(inq.tpgs, Tpgs::Both);
        assert!(inq.sccs && inq.three_pc && inq.multip && inq.cmdque && !inq.protect);
        assert_eq!(
            (
                inq.qualifier,
                inq.device_type,
                inq.version,
                inq.response_format
            ),
            (0, 0, 6, 2)
        );
        assert_eq!(inq.version_descriptors, [0x00a0, 0x0960, 0x0460, 0x04c0]);
        assert_eq!(required_len(&raw).unwrap(), 96);
        assert_eq!(inq.encode(), raw);
        // The same device answered through /dev/sg: identical bytes.
        assert_eq!(load("inquiry_std_sg"), raw);
    }

    #[test]
    fn short_allocation_still_parses_the_identity() {
        let inq = parse(&load("inquiry_std_short36")).unwrap();
        assert_eq!(inq.vendor, "LIO-ORG");
        assert!(inq.version_descriptors.is_empty());
    }

    #[test]
    fn rejects_short_and_binary_fields() {
        assert!(matches!(
            parse(&[0; 35]),
            Err(ParseError::Short {
                need: 36,
                got: 35,
                ..
            })
        ));
        let mut b = load("inquiry_std");
        b[9] = 0x07;
        assert!(matches!(parse(&b), Err(ParseError::Text { .. })));
    }
}
