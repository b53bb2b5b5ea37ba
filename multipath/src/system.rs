//! [`System`]: everything the crate works through on a host, injected so that tests replace
//! each part: sysfs under a root, the command runner, the SCSI device opener, multipathd,
//! sm's lock directory and our runtime state directory.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sm_core::host::{LockDir, Paths, Runner};
use sm_core::scsi::{ScsiError, ScsiTransport, SgDevice};

use crate::dm::{Multipathd, MultipathdAuto, MultipathdCli};
use crate::error::Result;
use crate::iscsi::Portal;
use sm_core::host::sysfs::Sysfs;

/// Name resolution and TCP reachability of portals.
pub trait Network: Send + Sync {
    /// The portal with its host resolved to an address (DNS).
    fn resolve(&self, portal: &Portal) -> Result<Portal>;
    /// Whether a TCP connection opens within `timeout`.
    fn check_reachable(&self, portal: &Portal, timeout: Duration) -> Result<()>;
}

/// The host's network.
#[derive(Debug, Clone, Default)]
pub struct TcpNetwork;

impl Network for TcpNetwork {
    fn resolve(&self, portal: &Portal) -> Result<Portal> {
        portal.resolved()
    }

    fn check_reachable(&self, portal: &Portal, timeout: Duration) -> Result<()> {
        portal.check_reachable(timeout)
    }
}

/// Opens a path's SCSI device (`sdb`) for SG_IO.
pub trait ScsiOpener: Send + Sync {
    /// The transport of device `name` (a kernel name such as `sdb`).
    fn open(&self, name: &str) -> Result<Box<dyn ScsiTransport>, ScsiError>;
}

/// Opens `/dev/<name>` (read-write when allowed: STPG needs it).
#[derive(Debug, Clone)]
pub struct DevOpener {
    dev_dir: PathBuf,
}

impl DevOpener {
    /// Devices in `dev_dir` (`/dev` on a host).
    pub fn new(dev_dir: impl Into<PathBuf>) -> DevOpener {
        DevOpener {
            dev_dir: dev_dir.into(),
        }
    }
}

impl ScsiOpener for DevOpener {
    fn open(&self, name: &str) -> Result<Box<dyn ScsiTransport>, ScsiError> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(ScsiError::Invalid(format!("not a device name: {name:?}")));
        }
        Ok(Box::new(SgDevice::open(self.dev_dir.join(name))?))
    }
}

/// The host the crate works on.
#[derive(Clone)]
pub struct System {
    /// sysfs.
    pub sysfs: Sysfs,
    /// Runs external tools.
    pub runner: Arc<dyn Runner>,
    /// Opens SCSI devices.
    pub scsi: Arc<dyn ScsiOpener>,
    /// The multipath daemon.
    pub multipathd: Arc<dyn Multipathd>,
    /// Name resolution and portal reachability.
    pub net: Arc<dyn Network>,
    /// sm's lock directory (`/var/lock/sm`).
    pub locks: LockDir,
    /// Host paths (iSCSI refcounts, initiator name file, device nodes).
    pub paths: Paths,
}

impl System {
    /// The host described by `paths`, with `runner`: SG_IO on `<root>/dev`, multipathd over
    /// its socket (falling back to its CLI) on a real host, through the runner's CLI under a
    /// test root.
    pub fn host(paths: &Paths, runner: Arc<dyn Runner>) -> System {
        let multipathd: Arc<dyn Multipathd> = if paths.is_real_host() {
            Arc::new(MultipathdAuto::new(runner.clone()))
        } else {
            Arc::new(MultipathdCli::new(runner.clone()))
        };
        System {
            sysfs: Sysfs::of(paths),
            scsi: Arc::new(DevOpener::new(paths.host("/dev"))),
            multipathd,
            net: Arc::new(TcpNetwork),
            locks: LockDir::new(paths.lock_dir()),
            paths: paths.clone(),
            runner,
        }
    }

    /// Where this crate keeps runtime state (`/run/sm-rs/mpath`).
    pub fn state_dir(&self) -> PathBuf {
        self.paths.run_dir().join("mpath")
    }

    /// The device node of `name` (`/dev/sdb`, `/dev/mapper/<wwid>`).
    pub fn dev_path(&self, name: &str) -> PathBuf {
        self.paths.host(&format!("/dev/{name}"))
    }

    /// Writes `value` to the sysfs attribute `p` (a host path).
    pub fn write_sysfs(&self, p: &str, value: &str) -> crate::Result<()> {
        self.sysfs
            .write(p, value)
            .map_err(|e| crate::MultipathError::file("write", self.sysfs.path(p), e))
    }
}
