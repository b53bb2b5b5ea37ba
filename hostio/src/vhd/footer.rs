//! The VHD footer: 512 bytes at the end of every VHD file (a copy also opens dynamic images),
//! big-endian fields (Microsoft "Virtual Hard Disk Image Format Specification", "Hard Disk
//! Footer Format"). We read it ourselves to report the exact virtual size the image holds,
//! without a `qemu-img info` per VDI on every scan.

/// Length of the footer.
pub const FOOTER_LEN: usize = 512;
/// Offset and value of the cookie that marks a footer.
pub const COOKIE_OFFSET: usize = 0;
/// The cookie.
pub const COOKIE: &[u8; 8] = b"conectix";
/// Offset of the file-format version (`0x0001_0000`).
pub const VERSION_OFFSET: usize = 12;
/// Offset of the data offset (the dynamic header's position; all ones for fixed disks).
pub const DATA_OFFSET_OFFSET: usize = 16;
/// Offset of the original size in bytes.
pub const ORIGINAL_SIZE_OFFSET: usize = 40;
/// Offset of the current (virtual) size in bytes.
pub const CURRENT_SIZE_OFFSET: usize = 48;
/// Offset of the disk type.
pub const DISK_TYPE_OFFSET: usize = 60;
/// Offset of the checksum: the ones' complement of the byte sum of the footer without it.
pub const CHECKSUM_OFFSET: usize = 64;
/// Offset of the 16-byte unique id.
pub const UNIQUE_ID_OFFSET: usize = 68;

/// What kind of VHD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskType {
    /// Type 2: all data preallocated.
    Fixed,
    /// Type 3: sparse, blocks allocated through the BAT.
    Dynamic,
    /// Type 4: a child of a parent image.
    Differencing,
}

impl DiskType {
    fn from_code(code: u32) -> Option<DiskType> {
        match code {
            2 => Some(DiskType::Fixed),
            3 => Some(DiskType::Dynamic),
            4 => Some(DiskType::Differencing),
            _ => None,
        }
    }
}

/// Why a footer was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FooterError {
    /// Fewer than 512 bytes.
    #[error("VHD footer too short: need {FOOTER_LEN} bytes, got {got}")]
    Short {
        /// Bytes available.
        got: usize,
    },
    /// The cookie is not `conectix`.
    #[error("not a VHD footer (cookie {found:?})")]
    Cookie {
        /// What was there (lossy).
        found: String,
    },
    /// The checksum does not match.
    #[error("VHD footer checksum {stored:#010x} does not match computed {computed:#010x}")]
    Checksum {
        /// Stored value.
        stored: u32,
        /// Computed value.
        computed: u32,
    },
    /// An unknown disk type.
    #[error("unknown VHD disk type {0}")]
    DiskType(u32),
}

/// The fields of a footer we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footer {
    /// Virtual size in bytes (current size).
    pub current_size: u64,
    /// Size at creation.
    pub original_size: u64,
    /// Disk type.
    pub disk_type: DiskType,
    /// Offset of the dynamic header (dynamic and differencing disks).
    pub data_offset: u64,
    /// The image's unique id.
    pub unique_id: [u8; 16],
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

/// The footer checksum of `b` (the checksum field itself counts as zero).
pub fn checksum(b: &[u8]) -> u32 {
    let sum = b
        .iter()
        .take(FOOTER_LEN)
        .enumerate()
        .filter(|(i, _)| !(CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4).contains(i))
        .fold(0u32, |acc, (_, &x)| acc.wrapping_add(u32::from(x)));
    !sum
}

impl Footer {
    /// Parses and validates a footer.
    pub fn parse(b: &[u8]) -> Result<Footer, FooterError> {
        if b.len() < FOOTER_LEN {
            return Err(FooterError::Short { got: b.len() });
        }
        let b = &b[..FOOTER_LEN];
        if &b[COOKIE_OFFSET..COOKIE_OFFSET + 8] != COOKIE {
            return Err(FooterError::Cookie {
                found: String::from_utf8_lossy(&b[..8]).into_owned(),
            });
        }
        let stored = be_u32(b, CHECKSUM_OFFSET);
        let computed = checksum(b);
        if stored != computed {
            return Err(FooterError::Checksum { stored, computed });
        }
        let code = be_u32(b, DISK_TYPE_OFFSET);
        let disk_type = DiskType::from_code(code).ok_or(FooterError::DiskType(code))?;
        let mut unique_id = [0u8; 16];
        unique_id.copy_from_slice(&b[UNIQUE_ID_OFFSET..UNIQUE_ID_OFFSET + 16]);
        Ok(Footer {
            current_size: be_u64(b, CURRENT_SIZE_OFFSET),
            original_size: be_u64(b, ORIGINAL_SIZE_OFFSET),
            disk_type,
            data_offset: be_u64(b, DATA_OFFSET_OFFSET),
            unique_id,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid footer for a dynamic disk of `size` bytes.
    pub(crate) fn build(size: u64, disk_type: u32) -> [u8; FOOTER_LEN] {
        let mut b = [0u8; FOOTER_LEN];
        b[..8].copy_from_slice(COOKIE);
        b[VERSION_OFFSET..VERSION_OFFSET + 4].copy_from_slice(&0x0001_0000u32.to_be_bytes());
        b[DATA_OFFSET_OFFSET..DATA_OFFSET_OFFSET + 8].copy_from_slice(&512u64.to_be_bytes());
        b[ORIGINAL_SIZE_OFFSET..ORIGINAL_SIZE_OFFSET + 8].copy_from_slice(&size.to_be_bytes());
        b[CURRENT_SIZE_OFFSET..CURRENT_SIZE_OFFSET + 8].copy_from_slice(&size.to_be_bytes());
        b[DISK_TYPE_OFFSET..DISK_TYPE_OFFSET + 4].copy_from_slice(&disk_type.to_be_bytes());
        b[UNIQUE_ID_OFFSET] = 0xab;
        let c = checksum(&b);
        b[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4].copy_from_slice(&c.to_be_bytes());
        b
    }

    #[test]
    fn parses_a_valid_footer() {
        let f = Footer::parse(&build(104_857_600, 3)).unwrap();
        assert_eq!(f.current_size, 104_857_600);
        assert_eq!(f.disk_type, DiskType::Dynamic);
        assert_eq!(f.data_offset, 512);
        assert_eq!(f.unique_id[0], 0xab);
        assert_eq!(
            Footer::parse(&build(1, 2)).unwrap().disk_type,
            DiskType::Fixed
        );
        assert_eq!(
            Footer::parse(&build(1, 4)).unwrap().disk_type,
            DiskType::Differencing
        );
    }

    #[test]
    fn rejects_short_bad_cookie_bad_checksum_and_type() {
        assert_eq!(
            Footer::parse(&[0u8; 100]),
            Err(FooterError::Short { got: 100 })
        );
        let mut b = build(4096, 3);
        b[0] = b'C';
        assert!(matches!(Footer::parse(&b), Err(FooterError::Cookie { .. })));
        let mut b = build(4096, 3);
        b[CURRENT_SIZE_OFFSET + 7] ^= 1;
        assert!(matches!(
            Footer::parse(&b),
            Err(FooterError::Checksum { .. })
        ));
        let b = build(4096, 9);
        assert_eq!(Footer::parse(&b), Err(FooterError::DiskType(9)));
    }

    /// Known checksum: the cookie alone sums to 0x35d, so its complement is 0xfffffca2.
    #[test]
    fn checksum_is_ones_complement_of_byte_sum() {
        let mut b = [0u8; FOOTER_LEN];
        b[..8].copy_from_slice(COOKIE);
        assert_eq!(checksum(&b), !0x35d);
        b[CHECKSUM_OFFSET] = 0xff;
        assert_eq!(
            checksum(&b),
            !0x35d,
            "the checksum field itself is excluded"
        );
    }
}
