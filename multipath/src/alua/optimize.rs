//! The ALUA policy of connecting an LU: an LU is served when a target port group reachable
//! through a usable path is active/optimized. When none is, with explicit ALUA one is made so
//! (the preferred group first, then by id); with implicit ALUA only, an active
//! (non-optimized) group is used as it is; with no active group at all, no path can carry
//! I/O. [`choose`] decides from discovery alone, [`ensure_optimized`] carries it out.

use sm_core::scsi::AccessState;

use super::{AccessReport, Deadlines, set_tpg_access};
use crate::error::MultipathError;
use crate::model::{MultipathLu, TargetPortGroup, Topology, TpgState};
use crate::system::System;

/// What it takes for an active/optimized group to serve an LU, as [`choose`] decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serving {
    /// Nothing: symmetric access, or a reachable group is active/optimized.
    Optimized,
    /// Nothing can be done (implicit ALUA only), but a reachable group is active
    /// (non-optimized): its paths carry the I/O.
    NonOptimized,
    /// Explicit ALUA: make group `tpg_id` active/optimized. `active_fallback`: a reachable
    /// group is already active (non-optimized), so a failed change is not fatal.
    Set {
        /// The group to make active/optimized.
        tpg_id: u16,
        /// Whether an active group could carry the I/O should the change fail.
        active_fallback: bool,
    },
}

/// Why no active/optimized group serves an LU.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Implicit ALUA only, and no reachable group is active.
    #[error(
        "{lu}: no active target port group, and the array does not allow setting one (implicit ALUA only)"
    )]
    NoActiveGroup {
        /// The LU.
        lu: String,
    },
    /// Explicit ALUA, but no reachable group supports active/optimized.
    #[error("{lu}: no target port group can be made active/optimized")]
    NoCandidate {
        /// The LU.
        lu: String,
    },
    /// The change failed, and no reachable group is active.
    #[error("{lu}: setting target port group {tpg_id} active/optimized")]
    SetAccess {
        /// The LU.
        lu: String,
        /// The group asked for.
        tpg_id: u16,
        /// Why [`set_tpg_access`] failed.
        #[source]
        source: Box<MultipathError>,
    },
}

/// The LU's groups that a usable path reaches.
fn reachable<'a>(topo: &'a Topology, lu: &MultipathLu) -> Vec<&'a TargetPortGroup> {
    topo.lu_tpgs(lu.oid)
        .filter(|g| {
            topo.lu_paths(lu.oid)
                .any(|p| p.tpg_id == Some(g.tpg_id) && p.state.is_usable())
        })
        .collect()
}

/// Decides, from discovery, what makes an active/optimized group serve `lu` (see the module
/// doc). Sends no command.
pub fn choose(topo: &Topology, lu: &MultipathLu) -> Result<Serving, ServeError> {
    if !lu.asymmetric {
        return Ok(Serving::Optimized);
    }
    let reachable = reachable(topo, lu);
    if reachable
        .iter()
        .any(|g| g.access_state == TpgState::Alua(AccessState::ActiveOptimized))
    {
        return Ok(Serving::Optimized);
    }
    let any_active = reachable.iter().any(|g| g.access_state.is_active());
    if !lu.explicit_alua {
        return if any_active {
            Ok(Serving::NonOptimized)
        } else {
            Err(ServeError::NoActiveGroup {
                lu: lu.name.clone(),
            })
        };
    }
    reachable
        .iter()
        .filter(|g| {
            g.supported_states.is_empty() || g.supported_states.contains(&"active/optimized")
        })
        .min_by_key(|g| (!g.preferred_lu_path, g.tpg_id))
        .map(|g| Serving::Set {
            tpg_id: g.tpg_id,
            active_fallback: any_active,
        })
        .ok_or_else(|| ServeError::NoCandidate {
            lu: lu.name.clone(),
        })
}

/// Makes sure an active/optimized group serves `lu` ([`choose`]); when a group has to be made
/// so, sets it ([`set_tpg_access`], waiting for the host as `deadlines` say) and returns the
/// change. A failed change with an active group to fall back on is logged, not returned.
pub fn ensure_optimized(
    sys: &System,
    topo: &Topology,
    lu: &MultipathLu,
    deadlines: Deadlines,
) -> Result<Option<AccessReport>, ServeError> {
    let (tpg_id, active_fallback) = match choose(topo, lu)? {
        Serving::Optimized => return Ok(None),
        Serving::NonOptimized => {
            tracing::warn!(
                lu = %lu.name,
                "no active/optimized target port group; using non-optimized paths"
            );
            return Ok(None);
        }
        Serving::Set {
            tpg_id,
            active_fallback,
        } => (tpg_id, active_fallback),
    };
    tracing::info!(lu = %lu.name, tpg = tpg_id, "no active/optimized group: setting one");
    match set_tpg_access(
        sys,
        topo,
        &lu.name,
        &[(tpg_id, AccessState::ActiveOptimized)],
        deadlines,
    ) {
        Ok(r) => Ok(Some(r)),
        Err(e) if active_fallback => {
            tracing::warn!(
                lu = %lu.name,
                "could not set an active/optimized group ({e}); using non-optimized paths"
            );
            Ok(None)
        }
        Err(source) => Err(ServeError::SetAccess {
            lu: lu.name.clone(),
            tpg_id,
            source: Box::new(source),
        }),
    }
}

#[cfg(test)]
mod tests;
