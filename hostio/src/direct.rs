//! Direct I/O (`O_DIRECT`): opening files and devices around the host page cache, and finding
//! out whether a filesystem allows it (tmpfs does not).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Opens `path` for reading (and writing when `write`), with `O_DIRECT` when `direct`.
pub fn open(path: &Path, write: bool, direct: bool) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(write);
    if direct {
        o.custom_flags(libc::O_DIRECT);
    }
    o.open(path)
}

/// Whether the filesystem holding `path` accepts `O_DIRECT` (an open of `path` with it works).
pub fn supported(path: &Path) -> bool {
    open(path, false, true).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_buffered_and_reports_direct_support() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, [0u8; 4096]).unwrap();
        assert!(open(&p, true, false).is_ok());
        assert_eq!(supported(&p), open(&p, false, true).is_ok());
        assert!(!supported(&d.path().join("none")));
    }
}
