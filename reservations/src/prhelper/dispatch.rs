//! Where a request goes: PR OUT on a read-only descriptor is refused as qemu-pr-helper refuses
//! it (INVALID OPERATION CODE), a descriptor of a dm-multipath map goes to [`super::mpath`]
//! (its paths read from sysfs, cached while the map's slaves stay the same), anything else
//! to [`super::plain`] on the descriptor itself. Every PR OUT is logged with its keys and
//! result (keys are not secrets).

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use multipath::dm::Multipathd;
use sm_core::host::sysfs::{DmDevice, Sysfs};
use sm_core::scsi::{PrOutAction, SgDevice};

use super::mpath::Map;
use super::plain;
use super::protocol::{Reply, Request};
use super::sense;
use crate::path::PrPath;
use crate::slaves::paths_of_map;

/// Whether descriptors of multipath maps get the multipath treatment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultipathMode {
    /// Yes, when the descriptor is a dm-multipath map.
    Auto,
    /// Never: SG_IO on the descriptor itself, as a helper built without multipath does.
    Never,
}

/// What answers requests (the daemon's, or a test's).
pub trait Backend: Send + Sync {
    /// The reply to `req` (its descriptor is closed when `req` is dropped). The connection
    /// cuts it to what the client may receive ([`Reply::fit`]).
    fn execute(&self, req: Request) -> Reply;
}

/// The paths of one map, as last read.
struct Cached {
    slaves: Vec<String>,
    paths: Arc<Vec<PrPath>>,
}

/// The daemon's backend.
pub struct Dispatcher {
    mode: MultipathMode,
    sysfs: Sysfs,
    multipathd: Option<Arc<dyn Multipathd>>,
    timeout: Duration,
    maps: Mutex<HashMap<String, Cached>>,
}

impl Dispatcher {
    /// A dispatcher reading `sysfs`, telling `multipathd` the keys of maps, `timeout` per command.
    pub fn new(
        mode: MultipathMode,
        sysfs: Sysfs,
        multipathd: Option<Arc<dyn Multipathd>>,
        timeout: Duration,
    ) -> Dispatcher {
        Dispatcher {
            mode,
            sysfs,
            multipathd,
            timeout,
            maps: Mutex::new(HashMap::new()),
        }
    }

    /// The multipath map `fd` is a descriptor of, if it is one.
    fn multipath_map(&self, fd: &OwnedFd) -> Option<DmDevice> {
        let st = rustix::fs::fstat(fd).ok()?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::BlockDevice {
            return None;
        }
        let dev = (
            u64::from(rustix::fs::major(st.st_rdev)),
            u64::from(rustix::fs::minor(st.st_rdev)),
        );
        let kernel = self.sysfs.name(dev)?;
        let dm = self.sysfs.dm_device(&kernel)?;
        dm.multipath_wwid().is_some().then_some(dm)
    }

    /// The paths of `dm`, read again when its slaves changed.
    fn paths(&self, dm: DmDevice) -> Option<Arc<Vec<PrPath>>> {
        let (map, slaves) = (dm.name.as_str(), dm.slaves);
        let mut maps = self
            .maps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = maps.get(map)
            && c.slaves == slaves
        {
            let mut paths = (*c.paths).clone();
            for p in &mut paths {
                let sd = p.name.trim_start_matches("/dev/");
                p.usable = self.sysfs.running(sd);
            }
            paths.sort_by_key(|p| !p.usable);
            return Some(Arc::new(paths));
        }
        let mut paths = match paths_of_map(&self.sysfs, map) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(map, "cannot read the paths of the map: {e}");
                return None;
            }
        };
        paths.sort_by_key(|p| !p.usable);
        let paths = Arc::new(paths);
        maps.insert(
            map.to_string(),
            Cached {
                slaves,
                paths: paths.clone(),
            },
        );
        Some(paths)
    }

    fn route(&self, req: Request) -> (Reply, String) {
        if req.is_out() && !sm_core::scsi::device::is_writable(req.fd.as_fd()) {
            return (sense::check(sense::INVALID_OPCODE), "read-only fd".into());
        }
        if self.mode == MultipathMode::Auto
            && let Some(dm) = self.multipath_map(&req.fd)
        {
            let map = dm.name.clone();
            let Some(paths) = self.paths(dm) else {
                return (sense::check(sense::LUN_COMM_FAILURE), map);
            };
            let m = Map {
                name: &map,
                paths: &paths,
                multipathd: self.multipathd.as_deref(),
                timeout: self.timeout,
            };
            return (m.execute(&req), map);
        }
        let Ok(fd) = req.fd.try_clone() else {
            return (sense::check(sense::IO_ERROR), "fd".into());
        };
        let dev = SgDevice::from_fd(fd, "client fd");
        (plain::pass_through(&dev, &req, self.timeout), "fd".into())
    }
}

impl Backend for Dispatcher {
    fn execute(&self, req: Request) -> Reply {
        let out = req.is_out().then(|| OutSummary::of(&req));
        let (reply, target) = self.route(req);
        if let Some(o) = out {
            tracing::info!(
                target: "pr-helper",
                "PR OUT {} on {target}: type {} scope {} key {:#018x} sa-key {:#018x} flags {:#04x}: {}",
                o.action,
                o.pr_type,
                o.scope,
                o.key,
                o.sa_key,
                o.flags,
                describe(&reply)
            );
        }
        reply
    }
}

/// What a PR OUT asked, for the log.
struct OutSummary {
    action: &'static str,
    pr_type: u8,
    scope: u8,
    key: u64,
    sa_key: u64,
    flags: u8,
}

impl OutSummary {
    fn of(req: &Request) -> OutSummary {
        OutSummary {
            action: PrOutAction::from_code(req.service_action())
                .map_or("(reserved service action)", PrOutAction::name),
            pr_type: req.cdb[2] & 0x0f,
            scope: req.cdb[2] >> 4,
            key: req.key(),
            sa_key: req.sa_key(),
            flags: req.flags(),
        }
    }
}

/// A reply in words: GOOD, a status, or CHECK CONDITION with its sense.
pub fn describe(r: &Reply) -> String {
    match r.status {
        0x00 => "GOOD".into(),
        0x02 => match sm_core::scsi::wire::sense::parse(&r.sense) {
            Ok(s) => format!(
                "CHECK CONDITION {} {:02x}/{:02x}{}",
                s.key.name(),
                s.asc,
                s.ascq,
                s.asc_text().map_or(String::new(), |t| format!(" ({t})"))
            ),
            Err(_) => "CHECK CONDITION (no sense)".into(),
        },
        0x08 => "BUSY".into(),
        0x18 => "RESERVATION CONFLICT".into(),
        s => format!("status {s:#04x}"),
    }
}
