//! Positioned I/O under an image: a file today, a block device (a VHD inside an LV) later.

use std::io;

/// Positioned reads and writes on the bytes of one image.
///
/// Reads take `&self` so a chain reads its layers without exclusive access; writes take `&mut
/// self` (only the leaf of a chain is written).
pub trait VhdIo {
    /// Fills `buf` from `offset`; fails with `UnexpectedEof` when the image ends first.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`, growing a file when it ends before.
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// The size of the image in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Whether the image holds no bytes.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Makes written bytes durable (fsync for a file).
    fn sync(&mut self) -> io::Result<()>;
}

impl VhdIo for std::fs::File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(self, buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        // A block device reports size 0 in its metadata: seek to its end instead.
        let meta = self.metadata()?;
        if meta.is_file() {
            return Ok(meta.len());
        }
        let mut f = self;
        io::Seek::seek(&mut f, io::SeekFrom::End(0))
    }

    fn sync(&mut self) -> io::Result<()> {
        self.sync_data()
    }
}

/// An image held in memory: tests, and images built before they are written out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemIo(pub Vec<u8>);

impl VhdIo for MemIo {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let end = start
            .checked_add(buf.len())
            .filter(|&e| e <= self.0.len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(&self.0[start..end]);
        Ok(())
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::FileTooLarge)?;
        let end = start
            .checked_add(buf.len())
            .ok_or(io::ErrorKind::FileTooLarge)?;
        if end > self.0.len() {
            self.0.resize(end, 0);
        }
        self.0[start..end].copy_from_slice(buf);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.len() as u64)
    }

    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_io_reads_what_was_written_and_grows() {
        let mut m = MemIo::default();
        m.write_at(b"abc", 5).unwrap();
        assert_eq!(m.len().unwrap(), 8);
        let mut buf = [9u8; 8];
        m.read_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"\0\0\0\0\0abc");
        let err = m.read_at(&mut buf, 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn file_io_round_trips() {
        let mut f = tempfile::tempfile().unwrap();
        VhdIo::write_at(&mut f, b"xyz", 512).unwrap();
        assert_eq!(VhdIo::len(&f).unwrap(), 515);
        let mut buf = [0u8; 3];
        VhdIo::read_at(&f, &mut buf, 512).unwrap();
        assert_eq!(&buf, b"xyz");
        assert!(VhdIo::read_at(&f, &mut buf, 513).is_err());
    }
}
