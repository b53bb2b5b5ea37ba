//! The 1024-byte dynamic disk header of dynamic and differencing images: where the BAT is, the
//! block size, and for a differencing image its parent (uuid, timestamp, name, locators).

use uuid::Uuid;

use crate::VhdError;
use crate::be::{checksum, put_u32, put_u64, u32_at, u64_at};

/// Size of the header in bytes.
pub const HEADER_SIZE: usize = 1024;
/// Offset of the cookie (8 bytes, [`HEADER_COOKIE`]).
pub const OFF_COOKIE: usize = 0;
/// Offset of the next-structure offset (u64, unused: all ones).
pub const OFF_DATA_OFFSET: usize = 8;
/// Offset of the BAT's absolute file offset (u64).
pub const OFF_TABLE_OFFSET: usize = 16;
/// Offset of the header version (u32, [`HEADER_VERSION`]).
pub const OFF_VERSION: usize = 24;
/// Offset of the BAT entry count (u32).
pub const OFF_MAX_TABLE_ENTRIES: usize = 28;
/// Offset of the block size (u32, bytes, a power of two).
pub const OFF_BLOCK_SIZE: usize = 32;
/// Offset of the checksum (u32).
pub const OFF_CHECKSUM: usize = 36;
/// Offset of the parent's uuid (16 bytes; sm's `prt_uuid`).
pub const OFF_PARENT_UUID: usize = 40;
/// Offset of the parent's modification time (u32, VHD epoch).
pub const OFF_PARENT_TIMESTAMP: usize = 56;
/// Offset of a reserved u32.
pub const OFF_RESERVED1: usize = 60;
/// Offset of the parent's name (512 bytes, UTF-16BE, NUL padded).
pub const OFF_PARENT_NAME: usize = 64;
/// Size of the parent name field.
pub const PARENT_NAME_SIZE: usize = 512;
/// Offset of the 8 parent locator entries (24 bytes each).
pub const OFF_LOCATORS: usize = 576;
/// Size of one parent locator entry.
pub const LOCATOR_ENTRY_SIZE: usize = 24;
/// Number of parent locator entries.
pub const LOCATOR_COUNT: usize = 8;
/// Offset of the trailing reserved bytes (256).
pub const OFF_RESERVED2: usize = 768;
/// Offset of a locator entry's platform code (u32) inside the entry.
pub const LOC_OFF_CODE: usize = 0;
/// Offset of a locator entry's data space (u32: sectors, or bytes as libvhd writes it).
pub const LOC_OFF_DATA_SPACE: usize = 4;
/// Offset of a locator entry's data length (u32, bytes).
pub const LOC_OFF_DATA_LEN: usize = 8;
/// Offset of a locator entry's reserved u32.
pub const LOC_OFF_RESERVED: usize = 12;
/// Offset of a locator entry's data offset (u64, absolute).
pub const LOC_OFF_DATA_OFFSET: usize = 16;

/// The header cookie.
pub const HEADER_COOKIE: &[u8; 8] = b"cxsparse";
/// The only header version (1.0).
pub const HEADER_VERSION: u32 = 0x0001_0000;
/// The block size blktap, sm and qemu use (2 MiB).
pub const DEFAULT_BLOCK_SIZE: u32 = 2 << 20;
/// The largest block size this library accepts.
pub const MAX_BLOCK_SIZE: u32 = 256 << 20;

/// What a parent locator's data holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformCode {
    /// Unused entry.
    None,
    /// Deprecated Windows relative path.
    Wi2r,
    /// Deprecated Windows absolute path.
    Wi2k,
    /// Windows relative path, UTF-16LE (vhd-util writes `.\parent.vhd`).
    W2ru,
    /// Windows absolute path, UTF-16LE (vhd-util writes the relative path here too).
    W2ku,
    /// MacOS alias blob.
    Mac,
    /// File URL, UTF-8 (vhd-util writes `file://./parent.vhd`).
    Macx,
}

impl PlatformCode {
    /// The on-disk code.
    pub fn code(self) -> u32 {
        match self {
            PlatformCode::None => 0,
            PlatformCode::Wi2r => 0x5769_3272,
            PlatformCode::Wi2k => 0x5769_326B,
            PlatformCode::W2ru => 0x5732_7275,
            PlatformCode::W2ku => 0x5732_6B75,
            PlatformCode::Mac => 0x4D61_6320,
            PlatformCode::Macx => 0x4D61_6358,
        }
    }

    /// The platform code of an on-disk value (libvhd rejects a header with any other).
    pub fn from_code(code: u32) -> Result<PlatformCode, VhdError> {
        [
            PlatformCode::None,
            PlatformCode::Wi2r,
            PlatformCode::Wi2k,
            PlatformCode::W2ru,
            PlatformCode::W2ku,
            PlatformCode::Mac,
            PlatformCode::Macx,
        ]
        .into_iter()
        .find(|p| p.code() == code)
        .ok_or(VhdError::Unsupported {
            what: "parent locator platform code",
            value: format!("{code:#010x}"),
        })
    }
}

/// One parent locator entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParentLocator {
    /// What the data holds.
    pub code: PlatformCode,
    /// Space reserved for the data: sectors per the specification, bytes as libvhd writes it
    /// (values of 512 and more); see [`ParentLocator::space_bytes`].
    pub data_space: u32,
    /// Length of the data in bytes.
    pub data_len: u32,
    /// Absolute file offset of the data.
    pub data_offset: u64,
}

impl ParentLocator {
    /// An unused entry.
    pub const EMPTY: ParentLocator = ParentLocator {
        code: PlatformCode::None,
        data_space: 0,
        data_len: 0,
        data_offset: 0,
    };

    /// The reserved space in bytes, as libvhd reads `data_space` (`vhd_parent_locator_size`):
    /// below 512 it counts sectors, otherwise bytes (then a multiple of 512, else 0).
    pub fn space_bytes(&self) -> u64 {
        let s = u64::from(self.data_space);
        if s < 512 {
            s * 512
        } else if s % 512 == 0 {
            s
        } else {
            0
        }
    }
}

/// A parsed dynamic disk header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicHeader {
    /// Absolute file offset of the BAT.
    pub table_offset: u64,
    /// Number of BAT entries.
    pub max_table_entries: u32,
    /// Block size in bytes.
    pub block_size: u32,
    /// The parent's footer uuid (nil for a dynamic image).
    pub parent_uuid: Uuid,
    /// The parent's modification time when the child was made (VHD epoch).
    pub parent_timestamp: u32,
    /// The parent's name field, raw (UTF-16BE, NUL padded; see [`DynamicHeader::parent_name`]).
    pub parent_name_raw: [u8; PARENT_NAME_SIZE],
    /// The parent locators.
    pub locators: [ParentLocator; LOCATOR_COUNT],
}

impl DynamicHeader {
    /// A header for an image with `entries` blocks of `block_size` bytes, the BAT at
    /// `table_offset`, no parent.
    pub fn new(table_offset: u64, entries: u32, block_size: u32) -> DynamicHeader {
        DynamicHeader {
            table_offset,
            max_table_entries: entries,
            block_size,
            parent_uuid: Uuid::nil(),
            parent_timestamp: 0,
            parent_name_raw: [0; PARENT_NAME_SIZE],
            locators: [ParentLocator::EMPTY; LOCATOR_COUNT],
        }
    }

    /// Parses and validates a header (cookie, checksum, version, block size, platform codes)
    /// from the first 1024 bytes of `buf`.
    pub fn parse(buf: &[u8]) -> Result<DynamicHeader, VhdError> {
        let b = buf.get(..HEADER_SIZE).ok_or(VhdError::Short {
            what: "dynamic header",
            need: HEADER_SIZE as u64,
            got: buf.len() as u64,
        })?;
        if &b[OFF_COOKIE..OFF_COOKIE + 8] != HEADER_COOKIE {
            return Err(VhdError::BadCookie {
                what: "dynamic header",
                expected: "cxsparse",
                found: String::from_utf8_lossy(&b[OFF_COOKIE..OFF_COOKIE + 8]).into_owned(),
            });
        }
        let stored = u32_at(b, OFF_CHECKSUM);
        let computed = checksum(b, OFF_CHECKSUM);
        if stored != computed {
            return Err(VhdError::BadChecksum {
                what: "dynamic header",
                stored,
                computed,
            });
        }
        let version = u32_at(b, OFF_VERSION);
        if version != HEADER_VERSION {
            return Err(VhdError::Unsupported {
                what: "dynamic header version",
                value: format!("{version:#010x}"),
            });
        }
        let block_size = u32_at(b, OFF_BLOCK_SIZE);
        if !block_size.is_power_of_two() || !(512..=MAX_BLOCK_SIZE).contains(&block_size) {
            return Err(VhdError::Unsupported {
                what: "block size",
                value: block_size.to_string(),
            });
        }
        let mut locators = [ParentLocator::EMPTY; LOCATOR_COUNT];
        for (i, l) in locators.iter_mut().enumerate() {
            let e = OFF_LOCATORS + i * LOCATOR_ENTRY_SIZE;
            *l = ParentLocator {
                code: PlatformCode::from_code(u32_at(b, e + LOC_OFF_CODE))?,
                data_space: u32_at(b, e + LOC_OFF_DATA_SPACE),
                data_len: u32_at(b, e + LOC_OFF_DATA_LEN),
                data_offset: u64_at(b, e + LOC_OFF_DATA_OFFSET),
            };
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&b[OFF_PARENT_UUID..OFF_PARENT_UUID + 16]);
        let mut parent_name_raw = [0u8; PARENT_NAME_SIZE];
        parent_name_raw.copy_from_slice(&b[OFF_PARENT_NAME..OFF_PARENT_NAME + PARENT_NAME_SIZE]);
        Ok(DynamicHeader {
            table_offset: u64_at(b, OFF_TABLE_OFFSET),
            max_table_entries: u32_at(b, OFF_MAX_TABLE_ENTRIES),
            block_size,
            parent_uuid: Uuid::from_bytes(uuid),
            parent_timestamp: u32_at(b, OFF_PARENT_TIMESTAMP),
            parent_name_raw,
            locators,
        })
    }

    /// The 1024 on-disk bytes, with a fresh checksum.
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[OFF_COOKIE..OFF_COOKIE + 8].copy_from_slice(HEADER_COOKIE);
        put_u64(&mut b, OFF_DATA_OFFSET, u64::MAX);
        put_u64(&mut b, OFF_TABLE_OFFSET, self.table_offset);
        put_u32(&mut b, OFF_VERSION, HEADER_VERSION);
        put_u32(&mut b, OFF_MAX_TABLE_ENTRIES, self.max_table_entries);
        put_u32(&mut b, OFF_BLOCK_SIZE, self.block_size);
        b[OFF_PARENT_UUID..OFF_PARENT_UUID + 16].copy_from_slice(self.parent_uuid.as_bytes());
        put_u32(&mut b, OFF_PARENT_TIMESTAMP, self.parent_timestamp);
        b[OFF_PARENT_NAME..OFF_PARENT_NAME + PARENT_NAME_SIZE]
            .copy_from_slice(&self.parent_name_raw);
        for (i, l) in self.locators.iter().enumerate() {
            let e = OFF_LOCATORS + i * LOCATOR_ENTRY_SIZE;
            put_u32(&mut b, e + LOC_OFF_CODE, l.code.code());
            put_u32(&mut b, e + LOC_OFF_DATA_SPACE, l.data_space);
            put_u32(&mut b, e + LOC_OFF_DATA_LEN, l.data_len);
            put_u64(&mut b, e + LOC_OFF_DATA_OFFSET, l.data_offset);
        }
        let c = checksum(&b, OFF_CHECKSUM);
        put_u32(&mut b, OFF_CHECKSUM, c);
        b
    }

    /// Sectors per block.
    pub fn sectors_per_block(&self) -> u64 {
        u64::from(self.block_size) / crate::SECTOR_SIZE
    }

    /// Size of a block's sector bitmap on disk, in sectors (one bit per sector, padded).
    pub fn bitmap_sectors(&self) -> u64 {
        self.sectors_per_block()
            .div_ceil(8)
            .div_ceil(crate::SECTOR_SIZE)
    }

    /// The parent's name (UTF-16BE as libvhd writes it), `None` when the field is empty.
    pub fn parent_name(&self) -> Option<String> {
        crate::locator::decode_utf16(&self.parent_name_raw, true).filter(|s| !s.is_empty())
    }

    /// Sets the parent name field to `name`, UTF-16BE (the basename of the parent's path).
    pub fn set_parent_name(&mut self, name: &str) -> Result<(), VhdError> {
        let units: Vec<u16> = name.encode_utf16().collect();
        if units.len() * 2 > PARENT_NAME_SIZE {
            return Err(VhdError::NotPossible {
                op: "set parent name",
                what: format!("a name of {} UTF-16 units (at most 256)", units.len()),
            });
        }
        self.parent_name_raw = [0; PARENT_NAME_SIZE];
        for (i, u) in units.iter().enumerate() {
            self.parent_name_raw[2 * i..2 * i + 2].copy_from_slice(&u.to_be_bytes());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DynamicHeader {
        let mut h = DynamicHeader::new(1536, 50, DEFAULT_BLOCK_SIZE);
        h.parent_uuid = Uuid::from_u128(0x1234);
        h.parent_timestamp = 77;
        h.set_parent_name("base.vhd").unwrap();
        h.locators[0] = ParentLocator {
            code: PlatformCode::Macx,
            data_space: 512,
            data_len: 19,
            data_offset: 4096,
        };
        h
    }

    #[test]
    fn round_trips_with_parent_fields_at_their_offsets() {
        let h = sample();
        let b = h.to_bytes();
        assert_eq!(&b[..8], b"cxsparse");
        assert_eq!(
            &b[OFF_PARENT_UUID..OFF_PARENT_UUID + 16],
            Uuid::from_u128(0x1234).as_bytes()
        );
        assert_eq!(
            &b[OFF_PARENT_NAME..OFF_PARENT_NAME + 4],
            &[0, b'b', 0, b'a']
        );
        assert_eq!(u32_at(&b, OFF_LOCATORS), 0x4D61_6358);
        let p = DynamicHeader::parse(&b).unwrap();
        assert_eq!(p, h);
        assert_eq!(p.parent_name().as_deref(), Some("base.vhd"));
        assert_eq!(p.sectors_per_block(), 4096);
        assert_eq!(p.bitmap_sectors(), 1);
    }

    #[test]
    fn error_paths() {
        let b = sample().to_bytes();
        assert!(matches!(
            DynamicHeader::parse(&b[..1000]),
            Err(VhdError::Short {
                need: 1024,
                got: 1000,
                ..
            })
        ));
        let mut c = b;
        c[3] = 0;
        assert!(matches!(
            DynamicHeader::parse(&c),
            Err(VhdError::BadCookie { .. })
        ));
        let mut c = b;
        c[OFF_TABLE_OFFSET] = 1;
        assert!(matches!(
            DynamicHeader::parse(&c),
            Err(VhdError::BadChecksum { .. })
        ));
        for (field, value, what) in [
            (OFF_BLOCK_SIZE, 3000u32, "block size"),
            (OFF_VERSION, 0x0002_0000, "dynamic header version"),
            (
                OFF_LOCATORS + LOCATOR_ENTRY_SIZE,
                0x4142_4344,
                "parent locator platform code",
            ),
        ] {
            let mut c = b;
            put_u32(&mut c, field, value);
            let sum = checksum(&c, OFF_CHECKSUM);
            put_u32(&mut c, OFF_CHECKSUM, sum);
            match DynamicHeader::parse(&c) {
                Err(VhdError::Unsupported { what: w, .. }) => assert_eq!(w, what),
                other => panic!("{what}: {other:?}"),
            }
        }
    }

    #[test]
    fn locator_space_reads_sectors_or_bytes_like_libvhd() {
        let mut l = ParentLocator::EMPTY;
        l.data_space = 1;
        assert_eq!(l.space_bytes(), 512);
        l.data_space = 1024;
        assert_eq!(l.space_bytes(), 1024);
        l.data_space = 1000;
        assert_eq!(l.space_bytes(), 0);
    }

    #[test]
    fn bitmap_size_pads_to_a_sector() {
        assert_eq!(DynamicHeader::new(1536, 1, 4096).bitmap_sectors(), 1);
        assert_eq!(DynamicHeader::new(1536, 1, 8 << 20).bitmap_sectors(), 4);
    }
}
