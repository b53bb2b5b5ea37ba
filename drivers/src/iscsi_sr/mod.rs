//! The iSCSI side of SR drivers on one LUN (`multipathlvmoiscsi`, `reservedlun`): sm's
//! device_config and probe UX, the SMAPI codes of [`multipath::connect`] (which logs in on
//! every portal, waits for the LU and its multipath map, makes sure an active/optimized
//! target port group serves it and logs out when no other SR needs the sessions), and the
//! path counts on the PBD. Drivers compose it:
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

use multipath::alua::ServeError;
use multipath::connect::{self, ConnectError, ConnectedLu, Settings};
use multipath::iscsi::login::{self, TargetName, TargetSpec};
use multipath::iscsi::{Iqn, initiator, luns};
use multipath::{ErrorKind, MultipathError, System, dm};
use sm_core::driver::Ctx;
use sm_core::errors::{SmCode, SmError, SmResult};
use sm_core::ids::ScsiId;

pub use config::{CONFIGURATION, IscsiConfig};

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

/// A failed step of connecting an LU as an SMAPI fault (the cause's text is the opterr);
/// `login` maps a failed login.
pub fn connect_fault(e: ConnectError, login: impl FnOnce(MultipathError) -> SmError) -> SmError {
    match e {
        ConnectError::Login(e) => login(*e),
        ConnectError::LuDisks { source, .. } => fault(SmCode::ISCSIDevice, *source),
        e @ ConnectError::NoDisk { .. } => SmError::new(SmCode::ConfigSCSIid, e),
        ConnectError::Map { source, .. } => fault(SmCode::MultipathMapperPathMissing, *source),
        ConnectError::Discover { source, .. } => fault(SmCode::SRUnavailable, *source),
        e @ ConnectError::NotDiscovered { .. } => {
            SmError::new(SmCode::MultipathMapperPathMissing, e)
        }
        ConnectError::Serve { source, .. } => match source {
            e @ (ServeError::NoActiveGroup { .. } | ServeError::NoCandidate { .. }) => {
                SmError::new(SmCode::SRUnavailable, e)
            }
            ServeError::SetAccess { source, .. } => fault(SmCode::SRUnavailable, *source),
        },
    }
}

/// One call's iSCSI SR.
pub struct IscsiSr<'a> {
    cx: &'a Ctx<'a>,
    sys: &'a System,
    /// The parsed device_config.
    pub cfg: IscsiConfig,
    /// Deadlines of connecting an LU (LUN scan, multipath map, ALUA change).
    pub settings: Settings,
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
            settings: Settings::default(),
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

    /// A failed login as sm answers it: a target the portals do not report is 83 with the
    /// IQN listing on stderr; the iSCSI classes get their codes, the rest 68.
    fn login_fault(&self, e: MultipathError) -> SmError {
        match e {
            e @ MultipathError::NotFound { what: "target", .. } => {
                if let Err(listing) = self.emit_iqn_listing() {
                    return listing;
                }
                SmError::new(SmCode::ISCSIDiscovery, e)
            }
            e => fault(SmCode::ISCSILogin, e),
        }
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
        self.ensure_initiator()?;
        let probe_id = uuid::Uuid::new_v4().to_string();
        connect::list_luns(
            self.sys,
            &self.spec(target),
            &probe_id,
            self.settings.lun_timeout,
        )
        .map_err(|e| self.login_fault(e))
    }

    /// The target and the SCSI id; without `targetIQN` the IQN listing and fault 96, without
    /// `SCSIid` the LUN listing (`<iscsi-target>`) on stderr and fault 107, as sm's `load`.
    pub fn require_complete(&self) -> SmResult<(TargetName, ScsiId)> {
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
            if Some(&p.sr) != own.as_ref()
                && p.device_config.get("SCSIid").map(String::as_str) == Some(id.as_str())
            {
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
                && p.device_config.get("SCSIid").map(String::as_str) == Some(id.as_str())
            {
                return Err(SmError::msg(
                    SmCode::SRInUse,
                    format!("LUN {id} is attached by SR {} on this host", p.sr),
                ));
            }
        }
        Ok(())
    }

    /// Logs `sr` in, waits for LU `scsi_id` and its multipath map, and makes sure an
    /// active/optimized group serves it ([`connect::connect`]). On failure, what this call
    /// logged in is logged out.
    pub fn connect(&self, sr: &str, scsi_id: &ScsiId) -> SmResult<ConnectedLu> {
        let target = self.cfg.target_name.clone().ok_or_else(|| {
            SmError::msg(
                SmCode::ConfigTargetIQNMissing,
                "device_config has no targetIQN",
            )
        })?;
        self.ensure_initiator()?;
        connect::connect(self.sys, &self.spec(target), sr, scsi_id, &self.settings)
            .map_err(|e| connect_fault(e, |e| self.login_fault(e)))
    }

    /// Records the LU's path counts and sessions on the PBD and marks the SR multipathable.
    pub fn record_paths(&self, lun: &ConnectedLu) -> SmResult<()> {
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
    pub fn refresh_paths(&self, scsi_id: &ScsiId) -> SmResult<Option<(usize, usize)>> {
        let target = match &self.cfg.target_name {
            Some(TargetName::Exact(i)) => Some(i),
            _ => None,
        };
        let Some(c) = connect::path_counts(self.sys, scsi_id, target)
            .map_err(|e| fault(SmCode::SRUnavailable, e))?
        else {
            return Ok(None);
        };
        pbd::record_paths(self.cx, scsi_id, c.active, c.total, c.sessions)
    }

    /// Removes the path keys from the PBD (sr_detach).
    pub fn forget_paths(&self, scsi_id: &ScsiId) -> SmResult<()> {
        pbd::forget_paths(self.cx, scsi_id)
    }

    /// Stops using the targets `sr` is counted on; the last SR out logs out (the sessions SRs
    /// made only) after flushing their maps.
    pub fn disconnect(&self, sr: &str) -> SmResult<()> {
        connect::disconnect(self.sys, sr).map_err(|e| fault(SmCode::ISCSILogout, e))
    }

    /// Logs `sr` in on the target's portals and waits for the sessions to report their LUNs
    /// (an SR using every LUN of the target: `reservedlun`). Returns the targets logged in.
    pub fn attach_target(&self, sr: &str) -> SmResult<Vec<Iqn>> {
        let target = self.require_target()?;
        self.ensure_initiator()?;
        connect::attach_target(self.sys, &self.spec(target), sr, self.settings.lun_timeout)
            .map_err(|e| self.login_fault(e))
    }

    /// The targets `sr` is counted on (logged in by [`IscsiSr::connect`] or
    /// [`IscsiSr::attach_target`] and not yet disconnected).
    pub fn counted_targets(&self, sr: &str) -> Vec<Iqn> {
        login::counted_targets(self.sys, sr)
    }

    /// The LUNs of the targets `sr` is logged in to (no login: after
    /// [`IscsiSr::attach_target`]).
    pub fn luns(&self, sr: &str) -> Vec<luns::TargetLun> {
        luns::targets_luns(
            self.sys,
            &self.counted_targets(sr),
            self.settings.lun_timeout,
        )
    }

    /// Makes LU `scsi_id` of the targets `sr` is logged in to usable: its multipath map with
    /// every path, an active/optimized group serving it (see [`IscsiSr::connect`]). Fault 107
    /// when the sessions have no such LU.
    pub fn open(&self, sr: &str, scsi_id: &ScsiId) -> SmResult<ConnectedLu> {
        let targets = self.counted_targets(sr);
        if targets.is_empty() {
            return Err(SmError::msg(
                SmCode::SRUnavailable,
                "no iSCSI session to the SR's target: the SR is not attached on this host",
            ));
        }
        connect::settle(self.sys, scsi_id, &targets, &self.settings)
            .map_err(|e| connect_fault(e, |e| self.login_fault(e)))
    }

    /// Removes LU `scsi_id`'s multipath map (`multipath -f`); no map is not an error, a map
    /// still open is (`SRUnavailable`).
    pub fn close(&self, scsi_id: &ScsiId) -> SmResult<()> {
        dm::flush_map_of(
            self.sys.multipathd.as_ref(),
            self.sys.runner.as_ref(),
            scsi_id.as_str(),
        )
        .map_err(|e| fault(SmCode::SRUnavailable, e))
    }

    /// Runs `f` with the LU connected under a temporary id, then disconnects (sr_create,
    /// sr_probe): the sessions are not kept.
    pub fn with_lun<T>(
        &self,
        scsi_id: &ScsiId,
        f: impl FnOnce(&ConnectedLu) -> SmResult<T>,
    ) -> SmResult<T> {
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
