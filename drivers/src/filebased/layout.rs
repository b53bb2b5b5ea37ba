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

/// How long an untagged temporary file (made by a version before host tags) must have been
/// left untouched before it counts as a dead call's.
pub const UNTAGGED_STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// The tag of the host writing a temporary file: the uuid part of its ref (only ASCII letters,
/// digits and `-`), `local` without one.
pub fn host_tag(host_ref: &str) -> String {
    let id = host_ref.rsplit(':').next().unwrap_or_default();
    let tag: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect();
    if tag.is_empty() { "local".into() } else { tag }
}

/// A temporary name beside the image of `loc` for an image host `host` ([`host_tag`]) is
/// writing (`purpose` tells apart concurrent kinds of work); it is dot-prefixed, so scans
/// ignore it.
pub fn temp_path(dir: &Path, loc: &str, purpose: &str, host: &str) -> PathBuf {
    dir.join(format!(".{loc}{VHD_EXT}.{purpose}@{host}"))
}

/// The temporary files in `dir` that a dead call left: every one tagged with `host` (the
/// caller holds the SR lock, so no call of this host is writing one), and untagged ones not
/// modified for [`UNTAGGED_STALE_AFTER`]. Another host's (a shared SR) are left to it.
pub fn stale_temp_files(dir: &Path, host: &str) -> std::io::Result<Vec<PathBuf>> {
    let mine = format!("@{host}");
    let mut out = Vec::new();
    for p in list_temp_files(dir)? {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let stale = match name.rsplit_once('@') {
            Some(_) => name.ends_with(&mine),
            None => std::fs::metadata(&p)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= UNTAGGED_STALE_AFTER),
        };
        if stale {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
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
    fn a_host_s_stale_temp_files_are_its_own_and_old_untagged_ones() {
        let d = tempfile::tempdir().unwrap();
        let me = host_tag("OpaqueRef:1111-aaaa");
        assert_eq!(me, "1111-aaaa");
        assert_eq!(host_tag(""), "local");
        assert_eq!(host_tag("OpaqueRef:../x y"), "xy");
        let mine = temp_path(d.path(), "a", "copy", &me);
        let other = temp_path(d.path(), "b", "copy", "2222-bbbb");
        let fresh = d.path().join(".c.vhd.copy");
        let old = d.path().join(".d.vhd.resize");
        for f in [&mine, &other, &fresh, &old] {
            std::fs::write(f, b"x").unwrap();
        }
        let hour_ago = std::time::SystemTime::now() - UNTAGGED_STALE_AFTER;
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();
        let mut want = vec![mine, old];
        want.sort();
        assert_eq!(stale_temp_files(d.path(), &me).unwrap(), want);
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
