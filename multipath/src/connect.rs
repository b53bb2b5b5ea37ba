//! Connecting an LU over iSCSI for an SR: log in on the target's portals (counted for the
//! SR), wait for the LU's disks and its multipath map with every path, make sure an
//! active/optimized group serves it ([`alua::ensure_optimized`]), count its paths and the
//! sessions. Whatever a failing [`connect`] logged in, it logs out again.
//!
//! ```text
//! login::connect -> luns::lu_disks (per target) -> dm::wait_for_map -> discover
//!   -> alua::ensure_optimized -> discover again from the kernel's VPD copy (after a change)
//!   -> ConnectedLu { map, paths, sessions }
//! ```
//!
//! Each step's failure is its own [`ConnectError`] variant, so a driver maps each to its
//! SMAPI code in one place.

use std::path::PathBuf;
use std::time::Duration;

use sm_core::ids::ScsiId;

use crate::alua::{self, AccessReport, Deadlines, ServeError};
use crate::discovery::{self, Options, VpdSource};
use crate::dm;
use crate::error::{MultipathError, Result};
use crate::iscsi::Iqn;
use crate::iscsi::login::{self, TargetSpec};
use crate::iscsi::luns::{self, TargetLun};
use crate::model::Topology;
use crate::system::System;

/// How long new sessions may take to report their LUNs (sm: 15 s; TCG labs are slower).
pub const LUN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the multipath map may take to appear with every path (sm: 60 s + 30 s).
pub const MAP_TIMEOUT: Duration = Duration::from_secs(90);

/// The deadlines of the workflow.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// For the sessions to report their LUNs ([`LUN_TIMEOUT`]).
    pub lun_timeout: Duration,
    /// For the multipath map to appear with every path ([`MAP_TIMEOUT`]).
    pub map_timeout: Duration,
    /// Of the ALUA change that makes a group active/optimized when none is.
    pub alua: Deadlines,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            lun_timeout: LUN_TIMEOUT,
            map_timeout: MAP_TIMEOUT,
            alua: Deadlines::default(),
        }
    }
}

/// An LU, connected.
#[derive(Debug, Clone)]
pub struct ConnectedLu {
    /// The SCSI id (WWID).
    pub scsi_id: ScsiId,
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

/// Which step of connecting an LU failed. Display names the step; the cause is the source.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Logging in on the target's portals.
    #[error("login")]
    Login(#[source] Box<MultipathError>),
    /// Reading the LU's disks on a target's sessions.
    #[error("the disks of {scsi_id} on {target}")]
    LuDisks {
        /// The LU.
        scsi_id: ScsiId,
        /// The target.
        target: Iqn,
        /// Why.
        #[source]
        source: Box<MultipathError>,
    },
    /// No session of the targets has the LU.
    #[error("no LUN with SCSIid {scsi_id} on {}", join(targets))]
    NoDisk {
        /// The LU asked for.
        scsi_id: ScsiId,
        /// The targets logged in.
        targets: Vec<Iqn>,
    },
    /// Waiting for the LU's multipath map.
    #[error("the multipath map of {scsi_id}")]
    Map {
        /// The LU.
        scsi_id: ScsiId,
        /// Why.
        #[source]
        source: Box<MultipathError>,
    },
    /// Discovering the LU (first, or again from the kernel's VPD copy after an ALUA change).
    #[error("discovery of {scsi_id}")]
    Discover {
        /// The LU.
        scsi_id: ScsiId,
        /// Why.
        #[source]
        source: Box<MultipathError>,
    },
    /// Discovery has no multipath LU by that name.
    #[error("no multipath LU {scsi_id}")]
    NotDiscovered {
        /// The LU.
        scsi_id: ScsiId,
    },
    /// No active/optimized group serves the LU, and none could be made so.
    #[error("serving {scsi_id} through an active/optimized group")]
    Serve {
        /// The LU.
        scsi_id: ScsiId,
        /// Why.
        #[source]
        source: ServeError,
    },
}

fn join(targets: &[Iqn]) -> String {
    targets
        .iter()
        .map(Iqn::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Logs SR `sr` in on `spec`'s portals, then [`settle`]s LU `scsi_id` on the targets logged
/// in. On failure, what this call counted for `sr` is released again (the last SR out logs out).
pub fn connect(
    sys: &System,
    spec: &TargetSpec,
    sr: &str,
    scsi_id: &ScsiId,
    settings: &Settings,
) -> Result<ConnectedLu, ConnectError> {
    let conns = login::connect(sys, spec, sr).map_err(|e| ConnectError::Login(Box::new(e)))?;
    let targets: Vec<Iqn> = conns.into_iter().map(|c| c.target).collect();
    settle(sys, scsi_id, &targets, settings).inspect_err(|_| {
        for t in &targets {
            if let Err(undo) = login::disconnect(sys, t, sr) {
                tracing::warn!(target = %t, "logout after a failed attach: {undo}");
            }
        }
    })
}

/// Makes LU `scsi_id` of `targets` (already logged in) usable: its disks on the sessions,
/// its multipath map with a path per disk, an active/optimized group serving it; returns its
/// map, path counts and the sessions.
pub fn settle(
    sys: &System,
    scsi_id: &ScsiId,
    targets: &[Iqn],
    settings: &Settings,
) -> Result<ConnectedLu, ConnectError> {
    let mut disks = Vec::new();
    for t in targets {
        let found =
            luns::lu_disks(sys, t, scsi_id.as_str(), settings.lun_timeout).map_err(|source| {
                ConnectError::LuDisks {
                    scsi_id: scsi_id.clone(),
                    target: t.clone(),
                    source: Box::new(source),
                }
            })?;
        disks.extend(found);
    }
    if disks.is_empty() {
        return Err(ConnectError::NoDisk {
            scsi_id: scsi_id.clone(),
            targets: targets.to_vec(),
        });
    }
    let map = dm::wait_for_map(
        sys.multipathd.as_ref(),
        sys.runner.as_ref(),
        &sys.paths.host("/dev"),
        scsi_id.as_str(),
        disks.len(),
        settings.map_timeout,
    )
    .map_err(|source| ConnectError::Map {
        scsi_id: scsi_id.clone(),
        source: Box::new(source),
    })?;
    let discover_error = |source| ConnectError::Discover {
        scsi_id: scsi_id.clone(),
        source: Box::new(source),
    };
    let topo =
        discovery::discover(sys, &Options::only(&[scsi_id.as_str()])).map_err(discover_error)?;
    let lu = topo
        .find_lu(scsi_id.as_str())
        .ok_or_else(|| ConnectError::NotDiscovered {
            scsi_id: scsi_id.clone(),
        })?;
    let alua = alua::ensure_optimized(sys, &topo, lu, settings.alua).map_err(|source| {
        ConnectError::Serve {
            scsi_id: scsi_id.clone(),
            source,
        }
    })?;
    let topo = match alua {
        Some(_) => cached_topology(sys, scsi_id).map_err(discover_error)?,
        None => topo,
    };
    let (active_paths, total_paths) = topo
        .find_lu(scsi_id.as_str())
        .map_or((0, 0), |l| (l.active_paths, l.total_paths));
    Ok(ConnectedLu {
        scsi_id: scsi_id.clone(),
        map: sys.dev_path(&format!("mapper/{}", map.name)),
        sessions: sessions(sys, targets),
        targets: targets.to_vec(),
        active_paths,
        total_paths,
        alua,
    })
}

/// Logged-in sessions to `targets`.
pub fn sessions(sys: &System, targets: &[Iqn]) -> usize {
    targets.iter().map(|t| login::logged_in(sys, t).len()).sum()
}

/// Discovery of LU `scsi_id` with the paths' identities from the kernel's VPD copy (one
/// INQUIRY and one RTPG per path, no VPD page read).
pub fn cached_topology(sys: &System, scsi_id: &ScsiId) -> Result<Topology> {
    discovery::discover(
        sys,
        &Options {
            vpd: VpdSource::KernelCache,
            only: Some(vec![scsi_id.to_string()]),
        },
    )
}

/// An LU's path counts and the sessions serving it, as recorded on a PBD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathCounts {
    /// Usable paths.
    pub active: usize,
    /// Every path.
    pub total: usize,
    /// Logged-in sessions: to `target` when given, else every initiator port discovered.
    pub sessions: usize,
}

/// Counts LU `scsi_id`'s paths again ([`cached_topology`]); `None` when there is no such
/// multipath LU.
pub fn path_counts(
    sys: &System,
    scsi_id: &ScsiId,
    target: Option<&Iqn>,
) -> Result<Option<PathCounts>> {
    let topo = cached_topology(sys, scsi_id)?;
    let Some(lu) = topo.find_lu(scsi_id.as_str()) else {
        return Ok(None);
    };
    let sessions = match target {
        Some(t) => login::logged_in(sys, t).len(),
        None => topo.initiator_ports.len(),
    };
    Ok(Some(PathCounts {
        active: lu.active_paths,
        total: lu.total_paths,
        sessions,
    }))
}

/// Logs SR `sr` in on `spec`'s portals and waits for the sessions to report their LUNs (an SR
/// using every LUN of the target). Returns the targets logged in.
pub fn attach_target(
    sys: &System,
    spec: &TargetSpec,
    sr: &str,
    lun_timeout: Duration,
) -> Result<Vec<Iqn>> {
    let conns = login::connect(sys, spec, sr)?;
    let targets: Vec<Iqn> = conns.into_iter().map(|c| c.target).collect();
    for t in &targets {
        luns::wait_scanned(sys, t, lun_timeout);
    }
    Ok(targets)
}

/// The LUNs `spec`'s target(s) expose: logs in counted under `holder` (a probe's own id),
/// lists ([`luns::targets_luns`]), logs out again.
pub fn list_luns(
    sys: &System,
    spec: &TargetSpec,
    holder: &str,
    lun_timeout: Duration,
) -> Result<Vec<TargetLun>> {
    let conns = login::connect(sys, spec, holder)?;
    let targets: Vec<Iqn> = conns.into_iter().map(|c| c.target).collect();
    let all = luns::targets_luns(sys, &targets, lun_timeout);
    for t in &targets {
        if let Err(e) = login::disconnect(sys, t, holder) {
            tracing::warn!(target = %t, "logout after the LUN listing failed: {e}");
        }
    }
    Ok(all)
}

/// Stops counting SR `sr` on every target it is counted on; the last SR out logs out (the
/// sessions SRs made only) after flushing their maps.
pub fn disconnect(sys: &System, sr: &str) -> Result<()> {
    for t in login::counted_targets(sys, sr) {
        let r = login::disconnect(sys, &t, sr)?;
        if let Some(why) = r.kept {
            tracing::warn!(target = %t, "sessions kept: {why}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
