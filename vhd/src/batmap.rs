//! blktap's batmap (`tdbatmap`): a header sector after the BAT and a bitmap with one bit per
//! block, set when the block is fully allocated (every bitmap bit set). libvhd expects one in
//! every image whose creator is `tap` 1.2 or later; tapdisk then skips a full block's bitmap.

use crate::VhdError;
use crate::be::{put_u32, put_u64, u32_at, u64_at};

/// Size of the batmap header on disk (one sector).
pub const BATMAP_HEADER_SIZE: usize = 512;
/// Offset of the cookie (8 bytes, [`BATMAP_COOKIE`]).
pub const OFF_COOKIE: usize = 0;
/// Offset of the map's absolute file offset (u64).
pub const OFF_MAP_OFFSET: usize = 8;
/// Offset of the map's size in sectors (u32).
pub const OFF_MAP_SECTORS: usize = 16;
/// Offset of the batmap version (u32).
pub const OFF_VERSION: usize = 20;
/// Offset of the map checksum (u32, ones' complement of the map's byte sum).
pub const OFF_CHECKSUM: usize = 24;
/// Offset of the marker byte.
pub const OFF_MARKER: usize = 28;
/// Offset of the key hash cookie byte (1 when the image is encrypted).
pub const OFF_KEYHASH: usize = 29;

/// The batmap cookie.
pub const BATMAP_COOKIE: &[u8; 8] = b"tdbatmap";
/// The batmap version libvhd writes (1.2: checksum over unsigned bytes).
pub const BATMAP_VERSION: u32 = 0x0001_0002;
/// Version 1.1, whose checksum summed signed bytes.
pub const BATMAP_VERSION_1_1: u32 = 0x0001_0001;

/// A batmap: its header sector (kept whole, so the marker and key hash survive a rewrite) and
/// its map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batmap {
    header: Vec<u8>,
    /// Absolute file offset of the map.
    pub map_offset: u64,
    /// Size of the map in sectors.
    pub map_sectors: u32,
    /// Batmap version.
    pub version: u32,
    /// The map, `map_sectors` sectors.
    pub map: Vec<u8>,
}

impl Batmap {
    /// An empty batmap for `blocks` blocks with its map at `map_offset` (libvhd
    /// `vhd_create_batmap`).
    pub fn new(blocks: u32, map_offset: u64) -> Batmap {
        let map_sectors =
            u32::try_from(u64::from(blocks).div_ceil(8).div_ceil(512).max(1)).unwrap_or(u32::MAX);
        let mut header = vec![0u8; BATMAP_HEADER_SIZE];
        header[..8].copy_from_slice(BATMAP_COOKIE);
        Batmap {
            header,
            map_offset,
            map_sectors,
            version: BATMAP_VERSION,
            map: vec![0; map_sectors as usize * 512],
        }
    }

    /// Parses a batmap header; the map is read separately ([`Batmap::set_map`]).
    pub fn parse_header(buf: &[u8]) -> Result<Batmap, VhdError> {
        let b = buf.get(..BATMAP_HEADER_SIZE).ok_or(VhdError::Short {
            what: "batmap header",
            need: BATMAP_HEADER_SIZE as u64,
            got: buf.len() as u64,
        })?;
        if &b[..8] != BATMAP_COOKIE {
            return Err(VhdError::BadCookie {
                what: "batmap header",
                expected: "tdbatmap",
                found: String::from_utf8_lossy(&b[..8]).into_owned(),
            });
        }
        let version = u32_at(b, OFF_VERSION);
        if version > BATMAP_VERSION {
            return Err(VhdError::Unsupported {
                what: "batmap version",
                value: format!("{version:#010x}"),
            });
        }
        if b[OFF_KEYHASH] != 0 {
            return Err(VhdError::Unsupported {
                what: "image",
                value: "encrypted (batmap key hash set)".into(),
            });
        }
        Ok(Batmap {
            header: b.to_vec(),
            map_offset: u64_at(b, OFF_MAP_OFFSET),
            map_sectors: u32_at(b, OFF_MAP_SECTORS),
            version,
            map: Vec::new(),
        })
    }

    /// Installs the map read from disk, checking its checksum as libvhd does for an image of
    /// `current_size` virtual bytes.
    pub fn set_map(&mut self, map: Vec<u8>, current_size: u64) -> Result<(), VhdError> {
        let stored = u32_at(&self.header, OFF_CHECKSUM);
        let computed = Self::checksum(&map, current_size, self.version);
        if stored != computed {
            return Err(VhdError::BadChecksum {
                what: "batmap",
                stored,
                computed,
            });
        }
        self.map = map;
        Ok(())
    }

    /// libvhd's `vhd_checksum_batmap`: over `max(1, ceil((current_size >> 24) / 512))` sectors of
    /// the map (one byte per 8 blocks of 2 MiB, rounded down, then up to a sector).
    pub fn checksum(map: &[u8], current_size: u64, version: u32) -> u32 {
        let len = (current_size >> 24).div_ceil(512).max(1) * 512;
        let len = usize::try_from(len).unwrap_or(usize::MAX).min(map.len());
        let sum = map[..len].iter().fold(0u32, |s, &b| {
            if version == BATMAP_VERSION_1_1 {
                // Version 1.1 summed `char`s, signed on x86.
                s.wrapping_add(i32::from(b.cast_signed()).cast_unsigned())
            } else {
                s.wrapping_add(u32::from(b))
            }
        });
        !sum
    }

    /// The header sector with its fields and a checksum of the current map.
    pub fn header_bytes(&self, current_size: u64) -> Vec<u8> {
        let mut h = self.header.clone();
        put_u64(&mut h, OFF_MAP_OFFSET, self.map_offset);
        put_u32(&mut h, OFF_MAP_SECTORS, self.map_sectors);
        put_u32(&mut h, OFF_VERSION, self.version);
        put_u32(
            &mut h,
            OFF_CHECKSUM,
            Self::checksum(&self.map, current_size, self.version),
        );
        h
    }

    /// Bytes of the map on disk.
    pub fn map_len(&self) -> u64 {
        u64::from(self.map_sectors) * 512
    }

    /// Whether `block` is marked fully allocated.
    pub fn is_full(&self, block: u32) -> bool {
        crate::bitmap::test(&self.map, u64::from(block))
    }

    /// Marks `block` fully allocated.
    pub fn set_full(&mut self, block: u32) {
        let b = u64::from(block);
        crate::bitmap::set_range(&mut self.map, b..b + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_checksum() {
        let mut m = Batmap::new(50, 2560);
        assert_eq!(m.map_sectors, 1);
        m.set_full(3);
        let h = m.header_bytes(100 << 20);
        let mut p = Batmap::parse_header(&h).unwrap();
        assert_eq!(p.map_offset, 2560);
        p.set_map(m.map.clone(), 100 << 20).unwrap();
        assert!(p.is_full(3) && !p.is_full(2));
        assert!(matches!(
            p.set_map(vec![0; 512], 100 << 20),
            Err(VhdError::BadChecksum { what: "batmap", .. })
        ));
    }

    #[test]
    fn error_paths() {
        let h = Batmap::new(1, 1024).header_bytes(2 << 20);
        assert!(matches!(
            Batmap::parse_header(&h[..100]),
            Err(VhdError::Short { .. })
        ));
        let mut c = h.clone();
        c[0] = b'x';
        assert!(matches!(
            Batmap::parse_header(&c),
            Err(VhdError::BadCookie { .. })
        ));
        let mut c = h.clone();
        put_u32(&mut c, OFF_VERSION, 0x0001_0003);
        assert!(matches!(
            Batmap::parse_header(&c),
            Err(VhdError::Unsupported { .. })
        ));
        let mut c = h;
        c[OFF_KEYHASH] = 1;
        assert!(matches!(
            Batmap::parse_header(&c),
            Err(VhdError::Unsupported { .. })
        ));
    }

    #[test]
    fn version_1_1_sums_signed_bytes() {
        let map = vec![0x80u8; 512];
        let v12 = Batmap::checksum(&map, 1 << 20, BATMAP_VERSION);
        let v11 = Batmap::checksum(&map, 1 << 20, BATMAP_VERSION_1_1);
        assert_eq!(v12, !(0x80u32 * 512));
        assert_eq!(v11, !((-128i32 * 512).cast_unsigned()));
    }
}
