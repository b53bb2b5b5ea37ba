//! Where things live on a host. Every path is under an optional root (`SM_ROOT`), so tests run
//! whole plugin calls in a temporary directory without root.

use std::path::{Path, PathBuf};

/// Environment variable that prefixes every host path (tests only).
pub const ROOT_ENV: &str = "SM_ROOT";

/// Host paths used by drivers.
#[derive(Debug, Clone)]
pub struct Paths {
    root: PathBuf,
}

impl Paths {
    /// Paths under `root` (`/` on a real host).
    pub fn new(root: impl Into<PathBuf>) -> Paths {
        Paths { root: root.into() }
    }

    /// Paths under `$SM_ROOT`, or `/`.
    pub fn from_env() -> Paths {
        Paths::new(
            std::env::var_os(ROOT_ENV)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/")),
        )
    }

    /// The root every path is under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether these are the real host paths (root `/`).
    pub fn is_real_host(&self) -> bool {
        self.root == Path::new("/")
    }

    fn under(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    /// sm's lock directory, `/var/lock/sm`.
    pub fn lock_dir(&self) -> PathBuf {
        self.under("/var/lock/sm")
    }

    /// Where file-based SRs are mounted: `/var/run/sr-mount`.
    pub fn sr_mount_dir(&self) -> PathBuf {
        self.under("/var/run/sr-mount")
    }

    /// The mount point of one SR.
    pub fn sr_mount(&self, sr_uuid: &str) -> PathBuf {
        self.sr_mount_dir().join(sr_uuid)
    }

    /// Our runtime state directory (NBD sockets, pid files, refcounts): `/run/sm-rs`.
    pub fn run_dir(&self) -> PathBuf {
        self.under("/run/sm-rs")
    }

    /// sm's iSCSI session refcount directory, `/run/sr-ref`.
    pub fn iscsi_ref_dir(&self) -> PathBuf {
        self.under("/run/sr-ref")
    }

    /// The SMlog file used when there is no syslog socket.
    pub fn smlog_file(&self) -> PathBuf {
        self.under("/var/log/SMlog")
    }

    /// Any other absolute host path, under the root.
    pub fn host(&self, p: &str) -> PathBuf {
        self.under(p)
    }
}
