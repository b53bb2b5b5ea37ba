//! Size arithmetic of LVM: extents, and how large a copy-on-write snapshot must be so that it can
//! never overflow.

/// lvm2's default snapshot chunk size (4 KiB).
pub const DEFAULT_CHUNK: u64 = 4096;

/// `bytes` rounded up to a whole number of `extent` bytes (`None` on overflow or a zero extent).
pub fn round_up(bytes: u64, extent: u64) -> Option<u64> {
    if extent == 0 {
        return None;
    }
    bytes.div_ceil(extent).checked_mul(extent)
}

/// The copy-on-write area a snapshot of an `origin`-byte LV needs to hold a copy of every chunk
/// of the origin: one header chunk, the exception-table chunks (16 bytes per chunk, plus one
/// terminating table chunk), and the data chunks. lvm2 trims a larger request to this size
/// (`_cow_max_size` in lvm2's `lib/metadata/snapshot_manip.c`); a snapshot this large cannot be
/// invalidated by writes to its origin.
pub fn cow_max(origin: u64, chunk: u64) -> u64 {
    let chunk = chunk.max(512);
    let origin_chunks = origin.div_ceil(chunk);
    let per_table_chunk = chunk / 16;
    let table_chunks = (origin_chunks + per_table_chunk) / per_table_chunk;
    (1 + table_chunks + origin_chunks).saturating_mul(chunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_extents() {
        let e = 4 << 20;
        assert_eq!(round_up(0, e), Some(0));
        assert_eq!(round_up(1, e), Some(e));
        assert_eq!(round_up(e, e), Some(e));
        assert_eq!(round_up(e + 1, e), Some(2 * e));
        assert_eq!(round_up(u64::MAX, e), None);
        assert_eq!(round_up(5, 0), None);
    }

    #[test]
    fn full_cow_covers_every_chunk_and_its_table() {
        // 1 GiB origin, 4 KiB chunks: 262144 data chunks, 256 exceptions per table chunk ->
        // 1025 table chunks (1024 + the terminator), 1 header.
        assert_eq!(cow_max(1 << 30, DEFAULT_CHUNK), (1 + 1025 + 262_144) * 4096);
        // A partial chunk counts as a chunk.
        assert_eq!(cow_max(1, DEFAULT_CHUNK), 3 * 4096);
        assert!(cow_max(100 << 20, DEFAULT_CHUNK) > 100 << 20);
    }
}
