//! READ CAPACITY(16) parameter data (SBC-3 5.16).

use super::{ParseError, be16, be32, be64, byte};

/// Bytes of READ CAPACITY(16) data we read (the standard defines 32).
pub const LEN: usize = 32;
/// RETURNED LOGICAL BLOCK ADDRESS: the last LBA.
const LAST_LBA: usize = 0;
/// LOGICAL BLOCK LENGTH IN BYTES.
const BLOCK_LEN: usize = 8;
/// P_TYPE (3:1) | PROT_EN (0).
const PROT: usize = 12;
/// P_I_EXPONENT (7:4) | LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT (3:0).
const EXPONENTS: usize = 13;
/// LBPME 0x8000 | LBPRZ 0x4000 | LOWEST ALIGNED LBA (13:0).
const LBP: usize = 14;

/// A logical block address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lba(pub u64);

/// Decoded READ CAPACITY(16) data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Capacity {
    /// The last addressable block.
    pub last_lba: Lba,
    /// Bytes per logical block.
    pub block_len: u32,
    /// Protection information enabled.
    pub prot_en: bool,
    /// Protection type (P_TYPE).
    pub p_type: u8,
    /// Logical blocks per physical block, as a power of two.
    pub lbppbe: u8,
    /// Logical block provisioning management (thin provisioning) enabled.
    pub lbpme: bool,
    /// Unmapped blocks read as zeros.
    pub lbprz: bool,
    /// Lowest aligned LBA.
    pub lowest_aligned: u16,
}

impl Capacity {
    /// Number of logical blocks.
    pub fn blocks(&self) -> u64 {
        self.last_lba.0.saturating_add(1)
    }

    /// Size in bytes (saturating).
    pub fn bytes(&self) -> u64 {
        self.blocks().saturating_mul(u64::from(self.block_len))
    }

    /// Encodes the 32-byte parameter data.
    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[LAST_LBA..LAST_LBA + 8].copy_from_slice(&self.last_lba.0.to_be_bytes());
        b[BLOCK_LEN..BLOCK_LEN + 4].copy_from_slice(&self.block_len.to_be_bytes());
        b[PROT] = ((self.p_type & 0x07) << 1) | u8::from(self.prot_en);
        b[EXPONENTS] = self.lbppbe & 0x0f;
        let lbp = (u16::from(self.lbpme) << 15)
            | (u16::from(self.lbprz) << 14)
            | (self.lowest_aligned & 0x3fff);
        b[LBP..LBP + 2].copy_from_slice(&lbp.to_be_bytes());
        b
    }
}

/// Parses READ CAPACITY(16) data (the first 16 bytes must be present).
pub fn parse(buf: &[u8]) -> Result<Capacity, ParseError> {
    let prot = byte(buf, PROT, "READ CAPACITY(16) protection")?;
    let lbp = be16(buf, LBP, "READ CAPACITY(16) provisioning")?;
    let block_len = be32(buf, BLOCK_LEN, "READ CAPACITY(16) block length")?;
    if block_len == 0 {
        return Err(ParseError::Invalid {
            what: "logical block length",
            value: 0,
        });
    }
    Ok(Capacity {
        last_lba: Lba(be64(buf, LAST_LBA, "READ CAPACITY(16) last LBA")?),
        block_len,
        prot_en: prot & 0x01 != 0,
        p_type: (prot >> 1) & 0x07,
        lbppbe: byte(buf, EXPONENTS, "READ CAPACITY(16) exponents")? & 0x0f,
        lbpme: lbp & 0x8000 != 0,
        lbprz: lbp & 0x4000 != 0,
        lowest_aligned: lbp & 0x3fff,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::wire::fixtures::load;

    #[test]
    fn lio_capacities() {
        let c = parse(&load("read_capacity16")).unwrap();
        assert_eq!(
            (c.last_lba, c.block_len, c.bytes()),
            (Lba(0x7ffff), 512, 256 << 20)
        );
        assert_eq!(c.encode().to_vec(), load("read_capacity16"));
        let big = parse(&load("big_read_capacity16")).unwrap();
        assert_eq!(big.bytes(), 4 << 40);
        assert!(big.last_lba.0 > u64::from(u32::MAX));
    }

    #[test]
    fn edge_cases() {
        assert!(matches!(parse(&[0; 15]), Err(ParseError::Short { .. })));
        assert!(matches!(parse(&[0; 32]), Err(ParseError::Invalid { .. })));
        let max = Capacity {
            last_lba: Lba(u64::MAX),
            block_len: u32::MAX,
            prot_en: true,
            p_type: 7,
            lbppbe: 15,
            lbpme: true,
            lbprz: true,
            lowest_aligned: 0x3fff,
        };
        assert_eq!(parse(&max.encode()).unwrap(), max);
        assert_eq!(max.bytes(), u64::MAX);
    }
}
