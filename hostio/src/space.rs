//! Free space: the size and usage of the filesystem holding a directory (statvfs).

use std::path::{Path, PathBuf};

/// Why the sizes could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SpaceError {
    /// statvfs failed.
    #[error("statvfs {path}")]
    Statvfs {
        /// The directory asked about.
        path: PathBuf,
        /// The OS error.
        #[source]
        errno: nix::errno::Errno,
    },
}

/// Size and usage of a filesystem, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsSizes {
    /// Every block of the filesystem.
    pub total: u64,
    /// Blocks in use (total minus free, reserved blocks counting as used).
    pub used: u64,
}

/// Size and usage of the filesystem holding `dir`.
pub fn fs_sizes(dir: &Path) -> Result<FsSizes, SpaceError> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(|errno| SpaceError::Statvfs {
        path: dir.to_path_buf(),
        errno,
    })?;
    let frag = st.fragment_size();
    Ok(FsSizes {
        total: st.blocks().saturating_mul(frag),
        used: st
            .blocks()
            .saturating_sub(st.blocks_free())
            .saturating_mul(frag),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_of_a_real_filesystem_and_a_missing_directory() {
        let d = tempfile::tempdir().unwrap();
        let s = fs_sizes(d.path()).unwrap();
        assert!(s.total > 0 && s.used <= s.total, "{s:?}");
        let err = fs_sizes(&d.path().join("none")).unwrap_err();
        assert!(matches!(
            err,
            SpaceError::Statvfs {
                errno: nix::errno::Errno::ENOENT,
                ..
            }
        ));
        assert!(err.to_string().ends_with("/none"), "{err}");
    }
}
