//! The block allocation table: one big-endian u32 per block, the sector in the file where the
//! block's bitmap starts, or [`UNUSED`].

use crate::VhdError;
use crate::be::{pad_to_sector, put_u32, u32_at};

/// The entry of a block that is not allocated.
pub const UNUSED: u32 = 0xFFFF_FFFF;

/// A parsed BAT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bat {
    entries: Vec<u32>,
}

impl Bat {
    /// A table of `count` unallocated entries.
    pub fn new(count: u32) -> Bat {
        Bat {
            entries: vec![UNUSED; count as usize],
        }
    }

    /// Parses `count` entries from `buf`.
    pub fn parse(buf: &[u8], count: u32) -> Result<Bat, VhdError> {
        let need = u64::from(count) * 4;
        if (buf.len() as u64) < need {
            return Err(VhdError::Short {
                what: "BAT",
                need,
                got: buf.len() as u64,
            });
        }
        Ok(Bat {
            entries: (0..count as usize).map(|i| u32_at(buf, i * 4)).collect(),
        })
    }

    /// The on-disk bytes, padded with [`UNUSED`] to a whole sector as libvhd writes them.
    pub fn to_bytes(&self) -> Vec<u8> {
        let len = Self::size_on_disk(self.len());
        let mut b = vec![0xFF; usize::try_from(len).unwrap_or(usize::MAX)];
        for (i, e) in self.entries.iter().enumerate() {
            put_u32(&mut b, i * 4, *e);
        }
        b
    }

    /// Bytes a table of `count` entries takes on disk (padded to a sector).
    pub fn size_on_disk(count: u32) -> u64 {
        pad_to_sector(u64::from(count) * 4)
    }

    /// Number of entries.
    pub fn len(&self) -> u32 {
        u32::try_from(self.entries.len()).unwrap_or(u32::MAX)
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry of `block` (`None` past the table).
    pub fn get(&self, block: u32) -> Option<u32> {
        self.entries.get(block as usize).copied()
    }

    /// The file sector of `block`'s bitmap if it is allocated.
    pub fn sector(&self, block: u32) -> Option<u32> {
        self.get(block).filter(|&e| e != UNUSED)
    }

    /// Sets the entry of `block` (which must be inside the table).
    pub(crate) fn set(&mut self, block: u32, sector: u32) {
        if let Some(e) = self.entries.get_mut(block as usize) {
            *e = sector;
        }
    }

    /// The allocated entries, as (block, sector).
    pub fn allocated(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        (0u32..)
            .zip(&self.entries)
            .filter(|(_, e)| **e != UNUSED)
            .map(|(b, e)| (b, *e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_padded_to_a_sector() {
        let mut bat = Bat::new(3);
        bat.set(1, 0x10);
        let b = bat.to_bytes();
        assert_eq!(b.len(), 512);
        assert_eq!(
            &b[..12],
            &[
                0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0x10, 0xff, 0xff, 0xff, 0xff
            ]
        );
        let p = Bat::parse(&b, 3).unwrap();
        assert_eq!(p, bat);
        assert_eq!(p.sector(0), None);
        assert_eq!(p.sector(1), Some(0x10));
        assert_eq!(p.get(3), None);
        assert_eq!(p.allocated().collect::<Vec<_>>(), vec![(1, 0x10)]);
        assert_eq!(Bat::size_on_disk(129), 1024);
    }

    #[test]
    fn short_table_is_an_error() {
        assert!(matches!(
            Bat::parse(&[0u8; 7], 2),
            Err(VhdError::Short {
                need: 8,
                got: 7,
                ..
            })
        ));
    }
}
