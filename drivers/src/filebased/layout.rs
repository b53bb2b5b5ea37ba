//! What a file-based SR directory holds and how its files are named: `<location>.vhd` per VDI,
//! the SR marker `.xsm-sr` (which SR this directory is), and dot-prefixed temporary files that a
//! scan never sees.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use hostio::space::SpaceError;
use sm_core::errors::{SmCode, SmError, SmResult};

/// Extension of VDI images.
pub const VHD_EXT: &str = ".vhd";
/// The marker naming the SR a directory belongs to (`sr_uuid=<uuid>` lines).
pub const MARKER: &str = ".xsm-sr";
/// Longest location we accept (a file name stem).
const MAX_LOCATION: usize = 200;

/// Checks a VDI location: a plain file stem (letters, digits, `-`, `_`, `.`), not hidden, so it
/// can never name a path outside the SR directory.
pub fn check_location(loc: &str) -> SmResult<&str> {
    let ok = !loc.is_empty()
        && loc.len() <= MAX_LOCATION
        && !loc.starts_with('.')
        && loc
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(loc)
    } else {
        Err(SmError::msg(
            SmCode::BadRequest,
            format!("invalid VDI location {loc:?}"),
        ))
    }
}

/// The image of location `loc` in `dir`.
pub fn image_path(dir: &Path, loc: &str) -> PathBuf {
    dir.join(format!("{loc}{VHD_EXT}"))
}

/// A temporary name beside the image of `loc` for an image being written (`purpose` tells apart
/// concurrent kinds of work); it is dot-prefixed, so scans ignore it.
pub fn temp_path(dir: &Path, loc: &str, purpose: &str) -> PathBuf {
    dir.join(format!(".{loc}{VHD_EXT}.{purpose}"))
}

/// The locations of the images in `dir`, sorted.
pub fn list_images(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let name = e?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(VHD_EXT)
            && check_location(stem).is_ok()
        {
            out.push(stem.to_string());
        }
    }
    out.sort();
    Ok(out)
}

/// Our leftover temporary files in `dir` (from a crashed call).
pub fn list_temp_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') && name.contains(&format!("{VHD_EXT}.")) {
            out.push(e.path());
        }
    }
    Ok(out)
}

/// The SR uuid recorded in `dir`'s marker, if there is one.
pub fn read_marker(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(MARKER)).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("sr_uuid="))
        .map(|s| s.trim().to_string())
}

/// Records `sr_uuid` as the owner of `dir` (written to a temporary file, synced, renamed).
pub fn write_marker(dir: &Path, sr_uuid: &str) -> std::io::Result<()> {
    let tmp = dir.join(format!("{MARKER}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    writeln!(f, "sr_uuid={sr_uuid}")?;
    writeln!(f, "format=1")?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(MARKER))?;
    sync_dir(dir);
    Ok(())
}

/// Flushes a directory's entries (after a rename), best effort.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Filesystem size and usage of the filesystem holding `dir` (fault 47 SRUnavailable with the
/// OS error when statvfs fails).
pub fn fs_sizes(dir: &Path) -> SmResult<(u64, u64)> {
    match hostio::space::fs_sizes(dir) {
        Ok(s) => Ok((s.total, s.used)),
        Err(SpaceError::Statvfs { errno, .. }) => Err(SmError::new(SmCode::SRUnavailable, errno)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_cannot_escape_the_directory() {
        for ok in ["0a1b2c3d-0000-4000-8000-000000000001", "disk_1.v2"] {
            assert!(check_location(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "a/b", ".hidden", "a b", "x\n", &"a".repeat(201)] {
            assert_eq!(
                check_location(bad).unwrap_err().code,
                SmCode::BadRequest,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn lists_images_and_temp_files_apart() {
        let d = tempfile::tempdir().unwrap();
        for f in ["a.vhd", "b.vhd", ".c.vhd.copy", "notes.txt", MARKER] {
            std::fs::write(d.path().join(f), b"").unwrap();
        }
        assert_eq!(list_images(d.path()).unwrap(), vec!["a", "b"]);
        assert_eq!(
            list_temp_files(d.path()).unwrap(),
            vec![d.path().join(".c.vhd.copy")]
        );
    }

    #[test]
    fn marker_roundtrip() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read_marker(d.path()), None);
        write_marker(d.path(), "11111111-2222-4333-8444-555555555555").unwrap();
        assert_eq!(
            read_marker(d.path()).as_deref(),
            Some("11111111-2222-4333-8444-555555555555")
        );
    }
}
