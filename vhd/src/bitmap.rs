//! Per-block sector bitmaps: one bit per sector of the block, most significant bit first
//! (libvhd `test_bit`), stored in the sectors in front of the block's data. A set bit means the
//! sector's data is in this image; a clear bit means zeros (dynamic) or the parent's sector
//! (differencing).

use std::ops::Range;

/// Whether bit `i` is set.
pub fn test(map: &[u8], i: u64) -> bool {
    usize::try_from(i / 8)
        .ok()
        .and_then(|byte| map.get(byte))
        .is_some_and(|b| b & (0x80 >> (i % 8)) != 0)
}

/// Sets bits `range`.
pub fn set_range(map: &mut [u8], range: Range<u64>) {
    for i in range {
        if let Some(b) = usize::try_from(i / 8)
            .ok()
            .and_then(|byte| map.get_mut(byte))
        {
            *b |= 0x80 >> (i % 8);
        }
    }
}

/// Whether bits `0..bits` are all set.
pub fn is_full(map: &[u8], bits: u64) -> bool {
    (0..bits).all(|i| test(map, i))
}

/// The runs of equal bits in `range`: `(run, set)`, in order, covering `range`.
pub fn runs(map: &[u8], range: Range<u64>) -> impl Iterator<Item = (Range<u64>, bool)> + '_ {
    let mut pos = range.start;
    std::iter::from_fn(move || {
        if pos >= range.end {
            return None;
        }
        let start = pos;
        let value = test(map, start);
        while pos < range.end && test(map, pos) == value {
            pos += 1;
        }
        Some((start..pos, value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msb_first_runs_and_fullness() {
        let mut map = [0u8; 2];
        set_range(&mut map, 1..3);
        assert_eq!(map, [0b0110_0000, 0]);
        assert!(test(&map, 1) && test(&map, 2) && !test(&map, 0) && !test(&map, 3));
        assert!(!test(&map, 1000));
        let r: Vec<_> = runs(&map, 0..10).collect();
        assert_eq!(r, vec![(0..1, false), (1..3, true), (3..10, false)]);
        assert_eq!(runs(&map, 2..2).count(), 0);
        set_range(&mut map, 0..16);
        assert!(is_full(&map, 16));
        assert!(!is_full(&map, 17));
    }
}
