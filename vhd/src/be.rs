//! Big-endian fields of the on-disk structures and their ones' complement checksum.
//!
//! Callers check the buffer length once (returning [`crate::VhdError::Short`]) before reading
//! fields at fixed offsets inside it.

/// Reads the big-endian `u32` at `off`.
pub(crate) fn u32_at(buf: &[u8], off: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[off..off + 4]);
    u32::from_be_bytes(b)
}

/// Reads the big-endian `u64` at `off`.
pub(crate) fn u64_at(buf: &[u8], off: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[off..off + 8]);
    u64::from_be_bytes(b)
}

/// Writes `v` big-endian at `off`.
pub(crate) fn put_u32(buf: &mut [u8], off: usize, v: u32) {
    buf[off..off + 4].copy_from_slice(&v.to_be_bytes());
}

/// Writes `v` big-endian at `off`.
pub(crate) fn put_u64(buf: &mut [u8], off: usize, v: u64) {
    buf[off..off + 8].copy_from_slice(&v.to_be_bytes());
}

/// The VHD checksum: the ones' complement of the byte sum of `buf`, the 4-byte checksum field
/// at `field` counted as zeros.
pub(crate) fn checksum(buf: &[u8], field: usize) -> u32 {
    let sum = buf
        .iter()
        .enumerate()
        .filter(|(i, _)| !(field..field + 4).contains(i))
        .fold(0u32, |s, (_, &b)| s.wrapping_add(u32::from(b)));
    !sum
}

/// `n` rounded up to a whole number of 512-byte sectors, in bytes.
pub(crate) fn pad_to_sector(n: u64) -> u64 {
    n.div_ceil(crate::SECTOR_SIZE) * crate::SECTOR_SIZE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_checksum_skips_its_field() {
        let mut b = [0u8; 16];
        put_u32(&mut b, 0, 0x0102_0304);
        put_u64(&mut b, 8, 0x1122_3344_5566_7788);
        assert_eq!(u32_at(&b, 0), 0x0102_0304);
        assert_eq!(u64_at(&b, 8), 0x1122_3344_5566_7788);
        let c = checksum(&b, 4);
        put_u32(&mut b, 4, 0xdead_beef);
        assert_eq!(checksum(&b, 4), c);
        assert_eq!(
            c,
            !(1u32 + 2 + 3 + 4 + 0x11 + 0x22 + 0x33 + 0x44 + 0x55 + 0x66 + 0x77 + 0x88)
        );
        assert_eq!(pad_to_sector(0), 0);
        assert_eq!(pad_to_sector(1), 512);
        assert_eq!(pad_to_sector(1024), 1024);
    }
}
