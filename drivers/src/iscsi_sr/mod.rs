//! The iSCSI side of SR drivers on one LUN (`multipathlvmoiscsi`, `reservedlun`): sm's
//! device_config and probe UX, logging in on every portal, waiting for the LU and its
//! multipath map, making sure an active/optimized target port group serves it, recording path
//! counts, and logging out when no other SR needs the sessions. Drivers compose it:
//!
//! ```text
//! let sys = iscsi_sr::system(cx);
//! let sr = IscsiSr::load(cx, &sys, true)?;           // device_config: 95, 97, 20, 142, 140
//! let (target, scsi_id) = sr.require_complete()?;     // 96 + IQN listing, 107 + LUN listing
//! sr.ensure_scsi_id_unused(&sr_uuid)?;                // sr_create: 16 when another SR has it
//! let lun = sr.connect(&sr_uuid, &scsi_id)?;          // login, LU, map, ALUA: 141, 68, 83, 107, 432
//! sr.record_paths(&lun)?;                             // PBD mpath-<SCSIid>, SR multipathable
//! ... use lun.map (/dev/mapper/<SCSIid>) ...
//! sr.forget_paths(&scsi_id)?; sr.disconnect(&sr_uuid)?;   // sr_detach
//! ```
//!
//! Faults follow sm: missing `target` 95, no initiator IQN 97, bad `port` 142, a name that does
//! not resolve 140, unreachable portals 141, refused login (CHAP) 68, a target the portals do
//! not report 83 (with the IQN listing on stderr), a SCSI id the target does not expose 107,
//! no multipath map 432, an initiator name that cannot change 70, a SCSI id another SR uses 16.
//! Whatever a failing call logged in, it logs out again (unless another SR uses the target).

pub mod config;
pub mod pbd;
pub mod probe;

use std::path::PathBuf;
use std::time::Duration;

use multipath::alua::{self, AccessReport, Deadlines};
use multipath::discovery::{self, Options, VpdSource};
use multipath::iscsi::login::{self, TargetName, TargetSpec};
use multipath::iscsi::{Iqn, initiator, luns};
use multipath::{ErrorKind, MultipathError, System, Topology, TpgState, dm};
use sm_core::driver::Ctx;
use sm_core::errors::{SmCode, SmError, SmResult};
use sm_core::scsi::AccessState;

pub use config::{CONFIGURATION, IscsiConfig};

/// How long new sessions may take to report their LUNs (sm: 15 s; TCG labs are slower).
pub const LUN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the multipath map may take to appear with every path (sm: 60 s + 30 s).
pub const MAP_TIMEOUT: Duration = Duration::from_secs(90);

/// The multipath crate's view of this call's host.
pub fn system(cx: &Ctx<'_>) -> System {
    System::host(&cx.host.paths, cx.host.runner.clone())
}

/// A multipath error as an SMAPI fault: the iSCSI classes get sm's codes, the rest `default`.
pub fn fault(default: SmCode, e: MultipathError) -> SmError {
    if matches!(e, MultipathError::InitiatorInUse { .. }) {
        return SmError::new(SmCode::ISCSIInitiator, e);
    }
    let code = match e.kind() {
        ErrorKind::Unreachable => SmCode::ISCSITarget,
        ErrorKind::LoginRefused => SmCode::ISCSILogin,
        ErrorKind::Dns => SmCode::DNSError,
        ErrorKind::NotFound | ErrorKind::Invalid | ErrorKind::Timeout | ErrorKind::System => {
            default
        }
    };
    SmError::new(code, e)
}

/// An SR's LU, connected.
#[derive(Debug, Clone)]
pub struct Lun {
    /// The SCSI id (WWID).
    pub scsi_id: String,
    /// The multipath device (`/dev/mapper/<name>`).
    pub map: PathBuf,
    /// The targets logged in.
    pub targets: Vec<Iqn>,
    /// Usable paths.
    pub active_paths: usize,
    /// Every path.
    pub total_paths: usize,
    /// Logged-in sessions to the targets.
    pub sessions: usize,
    /// The ALUA change made to get an active/optimized group, if one was needed.
    pub alua: Option<AccessReport>,
}

/// One call's iSCSI SR.
pub struct IscsiSr<'a> {
    cx: &'a Ctx<'a>,
    sys: &'a System,
    /// The parsed device_config.
    pub cfg: IscsiConfig,
    /// Deadlines of the ALUA change that makes a group active/optimized when none is.
    pub alua_deadlines: Deadlines,
}

impl<'a> IscsiSr<'a> {
    /// Reads device_config (sm's `load`); see [`IscsiConfig::load`].
    pub fn load(
        cx: &'a Ctx<'a>,
        sys: &'a System,
        multihomed_default: bool,
    ) -> SmResult<IscsiSr<'a>> {
        Ok(IscsiSr {
            cfg: IscsiConfig::load(cx, multihomed_default)?,
            cx,
            sys,
            alua_deadlines: Deadlines::default(),
        })
    }

    fn spec(&self, name: TargetName) -> TargetSpec {
        TargetSpec {
            hosts: self.cfg.hosts.clone(),
            name,
            auth: self.cfg.auth.clone(),
            multihomed: self.cfg.multihomed,
        }
    }

    fn ensure_initiator(&self) -> SmResult<()> {
        initiator::ensure(self.sys, &self.cfg.initiator)
            .map(drop)
            .map_err(|e| fault(SmCode::ISCSIDaemon, e))
    }

    /// Discovery on every reachable portal of `target`, and the IQN listing on stderr.
    fn emit_iqn_listing(&self) -> SmResult<()> {
        self.ensure_initiator()?;
        let records = login::discover(self.sys, &self.spec(TargetName::Any))
            .map_err(|e| fault(SmCode::ISCSILogin, e))?;
        let entries = probe::target_entries(&records, &self.cfg.target_text, self.cfg.port);
        self.cx.emit_stderr(&probe::iqn_listing(&entries));
        Ok(())
    }

    /// The target; without `targetIQN`, the IQN listing on stderr and fault 96.
    pub fn require_target(&self) -> SmResult<TargetName> {
        match &self.cfg.target_name {
            Some(t) => Ok(t.clone()),
            None => {
                self.emit_iqn_listing()?;
                Err(SmError::msg(
                    SmCode::ConfigTargetIQNMissing,
                    "device_config has no targetIQN",
                ))
            }
        }
    }

    /// The LUNs of the target(s): logs in (counted under a probe id), lists, logs out.
    pub fn list_luns(&self, target: TargetName) -> SmResult<Vec<luns::TargetLun>> {
        let probe_id = uuid::Uuid::new_v4().to_string();
        let conns = self.login(target, &probe_id)?;
        let mut all = Vec::new();
        for c in &conns {
            all.extend(luns::target_luns(self.sys, &c.target, LUN_TIMEOUT));
        }
        for c in &conns {
            if let Err(e) = login::disconnect(self.sys, &c.target, &probe_id) {
                tracing::warn!(target = %c.target, "logout after the LUN listing failed: {e}");
            }
        }
        all.sort_by(|a, b| (a.lun, &a.scsi_id).cmp(&(b.lun, &b.scsi_id)));
        all.dedup_by(|a, b| a.scsi_id == b.scsi_id);
        Ok(all)
    }

    /// The target and the SCSI id; without `targetIQN` the IQN listing and fault 96, without
    /// `SCSIid` the LUN listing (`<iscsi-target>`) on stderr and fault 107, as sm's `load`.
    pub fn require_complete(&self) -> SmResult<(TargetName, String)> {
        let target = self.require_target()?;
        match &self.cfg.scsi_id {
            Some(s) => Ok((target, s.clone())),
            None => {
                let luns = self.list_luns(target)?;
                self.cx.emit_stderr(&probe::lun_listing(&luns));
                Err(SmError::msg(
                    SmCode::ConfigSCSIid,
                    "device_config has no SCSIid",
                ))
            }
        }
    }

    /// Fault 16 when another SR's PBD names this SCSI id (sm's `test_SCSIid`, for sr_create).
    pub fn ensure_scsi_id_unused(&self, sr_uuid: &str) -> SmResult<()> {
        let Some(id) = &self.cfg.scsi_id else {
            return Ok(());
        };
        let own = self.cx.xapi()?.sr_get_by_uuid(sr_uuid).ok();
        for p in pbd::all(self.cx)? {
            if Some(&p.sr) != own.as_ref() && p.device_config.get("SCSIid") == Some(id) {
                return Err(SmError::msg(
                    SmCode::SRInUse,
                    format!("LUN {id} is used by SR {} (PBD {})", p.sr, p.pbd),
                ));
            }
        }
        Ok(())
    }

    /// Fault 16 when an SR attached on this host uses this SCSI id (sr_probe must not touch
    /// a LUN in use).
    pub fn ensure_not_attached_here(&self) -> SmResult<()> {
        let Some(id) = &self.cfg.scsi_id else {
            return Ok(());
        };
        for p in pbd::all(self.cx)? {
            if p.host == self.cx.req.host_ref
                && p.attached
                && p.device_config.get("SCSIid") == Some(id)
            {
                return Err(SmError::msg(
                    SmCode::SRInUse,
                    format!("LUN {id} is attached by SR {} on this host", p.sr),
                ));
            }
        }
        Ok(())
    }

    fn login(&self, target: TargetName, sr: &str) -> SmResult<Vec<login::Connection>> {
        self.ensure_initiator()?;
        match login::connect(self.sys, &self.spec(target), sr) {
            Ok(c) => Ok(c),
            Err(e @ MultipathError::NotFound { what: "target", .. }) => {
                self.emit_iqn_listing()?;
                Err(SmError::new(SmCode::ISCSIDiscovery, e))
            }
            Err(e) => Err(fault(SmCode::ISCSILogin, e)),
        }
    }

    /// Logs `sr` in, waits for LU `scsi_id` and its multipath map, and makes sure an
    /// active/optimized group serves it. On failure, what this call logged in is logged out.
    pub fn connect(&self, sr: &str, scsi_id: &str) -> SmResult<Lun> {
        let target = self.cfg.target_name.clone().ok_or_else(|| {
            SmError::msg(
                SmCode::ConfigTargetIQNMissing,
                "device_config has no targetIQN",
            )
        })?;
        let conns = self.login(target, sr)?;
        let targets: Vec<Iqn> = conns.iter().map(|c| c.target.clone()).collect();
        match self.settle(scsi_id, &targets) {
            Ok(lun) => Ok(lun),
            Err(e) => {
                for t in &targets {
                    if let Err(undo) = login::disconnect(self.sys, t, sr) {
                        tracing::warn!(target = %t, "logout after a failed attach: {undo}");
                    }
                }
                Err(e)
            }
        }
    }

    fn settle(&self, scsi_id: &str, targets: &[Iqn]) -> SmResult<Lun> {
        let mut disks = Vec::new();
        for t in targets {
            disks.extend(
                luns::lu_disks(self.sys, t, scsi_id, LUN_TIMEOUT)
                    .map_err(|e| fault(SmCode::ISCSIDevice, e))?,
            );
        }
        if disks.is_empty() {
            return Err(SmError::msg(
                SmCode::ConfigSCSIid,
                format!(
                    "no LUN with SCSIid {scsi_id} on {}",
                    targets
                        .iter()
                        .map(Iqn::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let map = dm::wait_for_map(self.sys, scsi_id, disks.len(), MAP_TIMEOUT)
            .map_err(|e| fault(SmCode::MultipathMapperPathMissing, e))?;
        let topo = discovery::discover(self.sys, &Options::only(&[scsi_id]))
            .map_err(|e| fault(SmCode::SRUnavailable, e))?;
        let alua = self.ensure_optimized(scsi_id, &topo)?;
        let topo = match alua {
            Some(_) => self.cached_topology(scsi_id)?,
            None => topo,
        };
        let (active, total) = topo
            .find_lu(scsi_id)
            .map_or((0, 0), |l| (l.active_paths, l.total_paths));
        Ok(Lun {
            scsi_id: scsi_id.to_string(),
            map: self.sys.dev_path(&format!("mapper/{}", map.name)),
            sessions: self.sessions(targets),
            targets: targets.to_vec(),
            active_paths: active,
            total_paths: total,
            alua,
        })
    }

    fn sessions(&self, targets: &[Iqn]) -> usize {
        targets
            .iter()
            .map(|t| login::logged_in(self.sys, t).len())
            .sum()
    }

    /// When the LU has target port groups and none of those with a usable path is
    /// active/optimized: with explicit ALUA, make one so (the preferred group first), and
    /// wait for multipathd to follow; without, carry on when a group is at least active, else
    /// fail (no path can carry I/O).
    fn ensure_optimized(&self, scsi_id: &str, topo: &Topology) -> SmResult<Option<AccessReport>> {
        let Some(lu) = topo.find_lu(scsi_id) else {
            return Err(SmError::msg(
                SmCode::MultipathMapperPathMissing,
                format!("no multipath LU {scsi_id}"),
            ));
        };
        if !lu.asymmetric {
            return Ok(None);
        }
        let reachable: Vec<_> = topo
            .lu_tpgs(lu.oid)
            .filter(|g| {
                topo.lu_paths(lu.oid)
                    .any(|p| p.tpg_id == Some(g.tpg_id) && p.state.is_usable())
            })
            .collect();
        if reachable
            .iter()
            .any(|g| g.access_state == TpgState::Alua(AccessState::ActiveOptimized))
        {
            return Ok(None);
        }
        let any_active = reachable.iter().any(|g| g.access_state.is_active());
        if !lu.explicit_alua {
            if any_active {
                tracing::warn!(
                    lu = scsi_id,
                    "no active/optimized target port group; using non-optimized paths"
                );
                return Ok(None);
            }
            return Err(SmError::msg(
                SmCode::SRUnavailable,
                format!(
                    "{scsi_id}: no active target port group, and the array does not allow setting one (implicit ALUA only)"
                ),
            ));
        }
        let mut candidates: Vec<_> = reachable
            .iter()
            .filter(|g| {
                g.supported_states.is_empty() || g.supported_states.contains(&"active/optimized")
            })
            .collect();
        candidates.sort_by_key(|g| (!g.preferred_lu_path, g.tpg_id));
        let Some(g) = candidates.first() else {
            return Err(SmError::msg(
                SmCode::SRUnavailable,
                format!("{scsi_id}: no target port group can be made active/optimized"),
            ));
        };
        tracing::info!(
            lu = scsi_id,
            tpg = g.tpg_id,
            "no active/optimized group: setting one"
        );
        match alua::set_tpg_access(
            self.sys,
            topo,
            scsi_id,
            &[(g.tpg_id, AccessState::ActiveOptimized)],
            self.alua_deadlines,
        ) {
            Ok(r) => Ok(Some(r)),
            Err(e) if any_active => {
                tracing::warn!(
                    lu = scsi_id,
                    "could not set an active/optimized group ({e}); using non-optimized paths"
                );
                Ok(None)
            }
            Err(e) => Err(fault(SmCode::SRUnavailable, e)),
        }
    }

    /// Discovery of LU `scsi_id` with the paths' identities from the kernel's VPD copy.
    fn cached_topology(&self, scsi_id: &str) -> SmResult<Topology> {
        discovery::discover(
            self.sys,
            &Options {
                vpd: VpdSource::KernelCache,
                only: Some(vec![scsi_id.to_string()]),
            },
        )
        .map_err(|e| fault(SmCode::SRUnavailable, e))
    }

    /// Records the LU's path counts and sessions on the PBD and marks the SR multipathable.
    pub fn record_paths(&self, lun: &Lun) -> SmResult<()> {
        pbd::record_paths(
            self.cx,
            &lun.scsi_id,
            lun.active_paths,
            lun.total_paths,
            lun.sessions,
        )?;
        pbd::mark_multipathable(self.cx)
    }

    /// Counts the LU's paths again (no SCSI command beyond one INQUIRY and RTPG) and records
    /// them; for sr_scan and sr_update. Returns `(active, max)`.
    pub fn refresh_paths(&self, scsi_id: &str) -> SmResult<Option<(usize, usize)>> {
        let topo = self.cached_topology(scsi_id)?;
        let Some(lu) = topo.find_lu(scsi_id) else {
            return Ok(None);
        };
        let sessions = match &self.cfg.target_name {
            Some(TargetName::Exact(i)) => login::logged_in(self.sys, i).len(),
            _ => topo.initiator_ports.len(),
        };
        pbd::record_paths(self.cx, scsi_id, lu.active_paths, lu.total_paths, sessions)
    }

    /// Removes the path keys from the PBD (sr_detach).
    pub fn forget_paths(&self, scsi_id: &str) -> SmResult<()> {
        pbd::forget_paths(self.cx, scsi_id)
    }

    /// Stops using the targets `sr` is counted on; the last SR out logs out (the sessions SRs
    /// made only) after flushing their maps.
    pub fn disconnect(&self, sr: &str) -> SmResult<()> {
        let targets = self.counted_targets(sr);
        for t in targets {
            let r =
                login::disconnect(self.sys, &t, sr).map_err(|e| fault(SmCode::ISCSILogout, e))?;
            if let Some(why) = r.kept {
                tracing::warn!(target = %t, "sessions kept: {why}");
            }
        }
        Ok(())
    }

    /// Logs `sr` in on the target's portals and waits for the sessions to report their LUNs
    /// (an SR using every LUN of the target: `reservedlun`). Returns the targets logged in.
    pub fn attach_target(&self, sr: &str) -> SmResult<Vec<Iqn>> {
        let target = self.require_target()?;
        let conns = self.login(target, sr)?;
        let targets: Vec<Iqn> = conns.into_iter().map(|c| c.target).collect();
        for t in &targets {
            luns::wait_scanned(self.sys, t, LUN_TIMEOUT);
        }
        Ok(targets)
    }

    /// The targets `sr` is counted on (logged in by [`IscsiSr::connect`] or
    /// [`IscsiSr::attach_target`] and not yet disconnected).
    pub fn counted_targets(&self, sr: &str) -> Vec<Iqn> {
        let counts = multipath::iscsi::refcount::RefCounts::new(
            self.sys.paths.iscsi_ref_dir(),
            self.sys.paths.run_dir().join("iscsi-adopted"),
        );
        std::fs::read_dir(self.sys.paths.iscsi_ref_dir())
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| Iqn::new(&e.file_name().to_string_lossy()).ok())
                    .filter(|t| counts.holders(t).iter().any(|h| h == sr))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The LUNs of the targets `sr` is logged in to (no login: after
    /// [`IscsiSr::attach_target`]).
    pub fn luns(&self, sr: &str) -> Vec<luns::TargetLun> {
        let mut all = Vec::new();
        for t in self.counted_targets(sr) {
            all.extend(luns::target_luns(self.sys, &t, LUN_TIMEOUT));
        }
        all.sort_by(|a, b| (a.lun, &a.scsi_id).cmp(&(b.lun, &b.scsi_id)));
        all.dedup_by(|a, b| a.scsi_id == b.scsi_id);
        all
    }

    /// Makes LU `scsi_id` of the targets `sr` is logged in to usable: its multipath map with
    /// every path, an active/optimized group serving it (see [`IscsiSr::connect`]). Fault 107
    /// when the sessions have no such LU.
    pub fn open(&self, sr: &str, scsi_id: &str) -> SmResult<Lun> {
        let targets = self.counted_targets(sr);
        if targets.is_empty() {
            return Err(SmError::msg(
                SmCode::SRUnavailable,
                "no iSCSI session to the SR's target: the SR is not attached on this host",
            ));
        }
        self.settle(scsi_id, &targets)
    }

    /// Removes LU `scsi_id`'s multipath map (`multipath -f`); no map is not an error, a map
    /// still open is (`SRUnavailable`).
    pub fn close(&self, scsi_id: &str) -> SmResult<()> {
        let map = dm::show_map(self.sys.multipathd.as_ref(), scsi_id)
            .map_err(|e| fault(SmCode::SRUnavailable, e))?;
        match map {
            None => Ok(()),
            Some(m) => dm::flush(self.sys.runner.as_ref(), &m.name)
                .map_err(|e| fault(SmCode::SRUnavailable, e)),
        }
    }

    /// Runs `f` with the LU connected under a temporary id, then disconnects (sr_create,
    /// sr_probe): the sessions are not kept.
    pub fn with_lun<T>(&self, scsi_id: &str, f: impl FnOnce(&Lun) -> SmResult<T>) -> SmResult<T> {
        let tmp = uuid::Uuid::new_v4().to_string();
        let lun = self.connect(&tmp, scsi_id)?;
        let out = f(&lun);
        if let Err(e) = self.disconnect(&tmp) {
            tracing::warn!("logout after a temporary connection failed: {e}");
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests;
