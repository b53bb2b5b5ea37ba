//! Copies one block device (or file) into another, every byte, reporting progress: the data path
//! of full-copy snapshots and clones.
//!
//! Both ends are opened with `O_DIRECT` when the length allows it (whole 4 KiB blocks), so the
//! copy neither fills the page cache with a VM's disk nor reads stale cached blocks of a device
//! another host may have written; a buffer aligned for direct I/O is carved out of an ordinary
//! allocation (no unsafe code). Where the kernel refuses direct I/O (tmpfs, some filesystems) the
//! copy falls back to buffered I/O and syncs the target at the end in both cases.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::direct::open;

/// Bytes moved per read/write.
pub const CHUNK: usize = 4 << 20;
/// Alignment of direct I/O buffers, offsets and lengths.
const ALIGN: usize = 4096;

/// Why a copy failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A device could not be opened.
    #[error("cannot open {path}")]
    Open {
        /// The device.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Reading the source failed.
    #[error("reading {path} at byte {offset}")]
    Read {
        /// The source.
        path: PathBuf,
        /// Where.
        offset: u64,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Writing the target failed.
    #[error("writing {path} at byte {offset}")]
    Write {
        /// The target.
        path: PathBuf,
        /// Where.
        offset: u64,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The target is smaller than what is to be copied.
    #[error("{path} holds {have} bytes, {need} are to be copied")]
    TooSmall {
        /// The target.
        path: PathBuf,
        /// Its size.
        have: u64,
        /// The copy's length.
        need: u64,
    },
}

/// Opens both ends, direct when possible; returns them and whether I/O is direct.
fn open_pair(src: &Path, dst: &Path, len: u64) -> Result<(File, File, bool), CopyError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CopyError::Open { path, source }
    };
    if len.is_multiple_of(ALIGN as u64)
        && let (Ok(s), Ok(d)) = (open(src, false, true), open(dst, true, true))
    {
        return Ok((s, d, true));
    }
    Ok((
        open(src, false, false).map_err(err(src))?,
        open(dst, true, false).map_err(err(dst))?,
        false,
    ))
}

/// A `CHUNK`-byte slice of `buf` aligned for direct I/O.
fn aligned(buf: &mut [u8]) -> &mut [u8] {
    let off = buf.as_ptr().align_offset(ALIGN).min(ALIGN);
    &mut buf[off..off + CHUNK]
}

/// Copies the first `len` bytes of `src` over the start of `dst`, then syncs `dst`. `progress`
/// is called with the bytes copied so far after each chunk.
pub fn copy(
    src: &Path,
    dst: &Path,
    len: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<(), CopyError> {
    let (mut s, mut d, direct) = open_pair(src, dst, len)?;
    let have = d
        .seek(SeekFrom::End(0))
        .map_err(|source| CopyError::Write {
            path: dst.into(),
            offset: 0,
            source,
        })?;
    if have < len {
        return Err(CopyError::TooSmall {
            path: dst.into(),
            have,
            need: len,
        });
    }
    d.seek(SeekFrom::Start(0))
        .map_err(|source| CopyError::Write {
            path: dst.into(),
            offset: 0,
            source,
        })?;
    tracing::debug!(src = %src.display(), dst = %dst.display(), len, direct, "block copy");
    let mut storage = vec![0u8; CHUNK + ALIGN];
    let buf = aligned(&mut storage);
    let mut done = 0u64;
    while done < len {
        let n = usize::try_from(len - done).map_or(CHUNK, |r| r.min(CHUNK));
        s.read_exact(&mut buf[..n])
            .map_err(|source| CopyError::Read {
                path: src.into(),
                offset: done,
                source,
            })?;
        d.write_all(&buf[..n]).map_err(|source| CopyError::Write {
            path: dst.into(),
            offset: done,
            source,
        })?;
        done += n as u64;
        progress(done);
    }
    d.sync_all().map_err(|source| CopyError::Write {
        path: dst.into(),
        offset: done,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn copies_every_byte_and_reports_progress() {
        let d = tempfile::tempdir().unwrap();
        let (src, dst) = (d.path().join("s"), d.path().join("d"));
        let data = pattern(CHUNK * 2 + 8192);
        std::fs::write(&src, &data).unwrap();
        std::fs::write(&dst, vec![0xffu8; data.len() + 100]).unwrap();
        let mut seen = Vec::new();
        copy(&src, &dst, data.len() as u64, &mut |n| seen.push(n)).unwrap();
        let out = std::fs::read(&dst).unwrap();
        assert_eq!(&out[..data.len()], &data[..]);
        assert!(out[data.len()..].iter().all(|b| *b == 0xff));
        assert_eq!(
            seen,
            vec![CHUNK as u64, 2 * CHUNK as u64, data.len() as u64]
        );
    }

    #[test]
    fn unaligned_lengths_use_buffered_io() {
        let d = tempfile::tempdir().unwrap();
        let (src, dst) = (d.path().join("s"), d.path().join("d"));
        let data = pattern(1000);
        std::fs::write(&src, &data).unwrap();
        std::fs::write(&dst, vec![0u8; 1000]).unwrap();
        copy(&src, &dst, 1000, &mut |_| {}).unwrap();
        assert_eq!(std::fs::read(&dst).unwrap(), data);
    }

    #[test]
    fn a_small_target_or_short_source_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let (src, dst) = (d.path().join("s"), d.path().join("d"));
        std::fs::write(&src, pattern(4096)).unwrap();
        std::fs::write(&dst, vec![0u8; 100]).unwrap();
        assert!(matches!(
            copy(&src, &dst, 4096, &mut |_| {}),
            Err(CopyError::TooSmall { .. })
        ));
        std::fs::write(&dst, vec![0u8; 8192]).unwrap();
        assert!(matches!(
            copy(&src, &dst, 8192, &mut |_| {}),
            Err(CopyError::Read { .. })
        ));
        assert!(matches!(
            copy(&d.path().join("none"), &dst, 10, &mut |_| {}),
            Err(CopyError::Open { .. })
        ));
    }
}
