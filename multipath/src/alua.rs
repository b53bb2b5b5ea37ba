//! ALUA operations: `MP_SetTPGAccess` (SET TARGET PORT GROUPS, then REPORT TARGET PORT GROUPS
//! until the states hold), failover to a chosen group, the per-port OFFLINE state, and waiting
//! for the host (the kernel's ALUA handler and multipathd's priorities) to follow.
//!
//! The state is always read back, never assumed: an STPG can be answered GOOD while the array
//! goes through TRANSITIONING, and the Linux ALUA handler may send an STPG of its own.
//!
//! [`optimize`] holds the policy of connecting an LU: which group to make active/optimized
//! when none serves it.

pub mod optimize;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use sm_core::scsi::{self, AccessState, Condition, RelTgtPortId, ScsiTransport, TpgId};

use crate::discovery::{self, Options, VpdSource};
use crate::dm;
use crate::error::{MultipathError, Result};
use crate::model::{MultipathLu, PathLu, PathState, Topology, TpgState};
use crate::system::System;

pub use optimize::{ServeError, Serving, choose, ensure_optimized};

/// How long to wait for states to settle.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// For the array to report the requested states (TRANSITIONING included).
    pub array: Duration,
    /// Between two RTPG polls.
    pub poll: Duration,
    /// For the kernel and multipathd to follow (0: do not wait).
    pub host: Duration,
}

impl Default for Deadlines {
    /// 60 s for the array (the kernel's `ALUA_FAILOVER_TIMEOUT`), 250 ms polls, 60 s for the
    /// host (multipathd re-reads priorities every `max_polling_interval`).
    fn default() -> Deadlines {
        Deadlines {
            array: Duration::from_secs(60),
            poll: Duration::from_millis(250),
            host: Duration::from_secs(60),
        }
    }
}

/// One group's change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupChange {
    /// Target port group.
    pub tpg_id: u16,
    /// State before.
    pub before: TpgState,
    /// State requested.
    pub requested: TpgState,
    /// State read back at the end.
    pub after: TpgState,
}

/// What a SetTPGAccess or failover did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessReport {
    /// The LU.
    pub lu: String,
    /// How it was done: `stpg via sdX`, or `switchgroup` for LUs without explicit ALUA.
    pub method: String,
    /// Per group.
    pub changes: Vec<GroupChange>,
    /// RTPG reads until the states held.
    pub rtpg_reads: u32,
    /// Whether the kernel and multipathd were seen following (false when not awaited).
    pub host_followed: bool,
    /// Milliseconds from the STPG to the array's states holding.
    pub array_ms: u64,
    /// Milliseconds until the host followed (0 when not awaited).
    pub host_ms: u64,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The state name parsed (`ao`, `active/optimized`, `0`, `an`, `ano`, `standby`, ...).
pub fn parse_state(s: &str) -> Option<AccessState> {
    Some(match s.to_ascii_lowercase().as_str() {
        "ao" | "active/optimized" | "active-optimized" | "optimized" | "0" => {
            AccessState::ActiveOptimized
        }
        "an" | "ano" | "active/non-optimized" | "active-non-optimized" | "non-optimized" | "1" => {
            AccessState::ActiveNonOptimized
        }
        "s" | "standby" | "2" => AccessState::Standby,
        "u" | "unavailable" | "3" => AccessState::Unavailable,
        "lbd" | "lba-dependent" | "4" => AccessState::LbaDependent,
        "o" | "offline" | "14" => AccessState::Offline,
        "t" | "transitioning" | "15" => AccessState::Transitioning,
        _ => return None,
    })
}

/// The LU's paths in the order commands are tried: usable paths first, optimized ports
/// before non-optimized ones before the others.
fn command_paths<'a>(topo: &'a Topology, lu: &MultipathLu) -> Vec<&'a PathLu> {
    let mut v: Vec<&PathLu> = topo.lu_paths(lu.oid).collect();
    v.sort_by_key(|p| {
        let rank = match p
            .tpg_id
            .and_then(|t| topo.lu_tpg(lu.oid, t))
            .map(|g| g.access_state)
        {
            Some(TpgState::Alua(AccessState::ActiveOptimized) | TpgState::Active) => 0,
            Some(TpgState::Alua(AccessState::ActiveNonOptimized)) => 1,
            Some(TpgState::Alua(AccessState::LbaDependent)) => 2,
            _ => 3,
        };
        (!p.state.is_usable(), rank, p.device.clone())
    });
    v
}

fn open_first(sys: &System, paths: &[&PathLu]) -> Result<(String, Box<dyn ScsiTransport>)> {
    let mut last = None;
    for p in paths {
        if matches!(p.state, PathState::Removed | PathState::InvalidClosed) {
            continue;
        }
        match sys.scsi.open(&p.device) {
            Ok(t) => return Ok((p.device.clone(), t)),
            Err(e) => last = Some((p.device.clone(), e)),
        }
    }
    match last {
        Some((dev, e)) => Err(MultipathError::scsi("open", &dev, e)),
        None => Err(MultipathError::Invalid(
            "the LU has no path to send commands through".into(),
        )),
    }
}

/// Whether a failure means "try another path" rather than "the request is wrong".
fn is_path_failure(c: &Condition) -> bool {
    matches!(
        c,
        Condition::Transport { .. }
            | Condition::Timeout
            | Condition::Io(_)
            | Condition::NotReady(scsi::NotReady::Offline)
    )
}

/// Reads the groups through the LU's paths (first that answers).
fn read_groups(sys: &System, paths: &[&PathLu]) -> Result<scsi::TargetPortGroups> {
    let mut last = None;
    for p in paths {
        let r = sys
            .scsi
            .open(&p.device)
            .and_then(|t| scsi::report_target_port_groups_standard(t.as_ref()));
        match r {
            Ok(g) => return Ok(g),
            Err(e) => {
                last = Some(MultipathError::scsi(
                    "REPORT TARGET PORT GROUPS",
                    &p.device,
                    e,
                ))
            }
        }
    }
    Err(last.unwrap_or_else(|| MultipathError::Invalid("the LU has no path".into())))
}

/// `MP_SetTPGAccess`: asks the array (STPG through one of the LU's paths) to put each listed
/// group of `lu` in its state, then reads RTPG until every listed group reports it (waiting
/// out TRANSITIONING) or `deadlines.array` passes. With `deadlines.host` non-zero, waits until
/// the kernel's ALUA handler and multipathd's path priorities follow ([`wait_for_host`]).
pub fn set_tpg_access(
    sys: &System,
    topo: &Topology,
    lu_name: &str,
    pairs: &[(u16, AccessState)],
    deadlines: Deadlines,
) -> Result<AccessReport> {
    let lu = topo
        .find_lu(lu_name)
        .ok_or_else(|| MultipathError::not_found("logical unit", lu_name))?;
    let before = check_request(topo, lu, pairs)?;
    let paths = command_paths(topo, lu);
    let via = send_stpg(sys, &paths, pairs)?;
    tracing::info!(lu = %lu.name, via = %via, ?pairs, "SET TARGET PORT GROUPS sent");

    let started = Instant::now();
    let (settled, reads) = wait_for_states(sys, lu, &paths, pairs, deadlines)?;
    let array_ms = ms(started.elapsed());
    let changes = pairs
        .iter()
        .map(|&(id, st)| GroupChange {
            tpg_id: id,
            before: before.get(&id).copied().unwrap_or(TpgState::Active),
            requested: TpgState::Alua(st),
            after: settled
                .get(&id)
                .map_or(TpgState::Active, |s| TpgState::Alua(*s)),
        })
        .collect();
    let mut report = AccessReport {
        lu: lu.name.clone(),
        method: format!("stpg via {via}"),
        changes,
        rtpg_reads: reads,
        host_followed: false,
        array_ms,
        host_ms: 0,
    };
    if !deadlines.host.is_zero() {
        let t0 = Instant::now();
        wait_for_host(sys, &lu.name, deadlines.host, deadlines.poll)?;
        report.host_followed = true;
        report.host_ms = ms(t0.elapsed());
    }
    Ok(report)
}

/// The groups `pairs` asks for, checked against `lu` (explicit ALUA, known groups, states a
/// group supports and may be asked for, each group once); returns each group's state before.
fn check_request(
    topo: &Topology,
    lu: &MultipathLu,
    pairs: &[(u16, AccessState)],
) -> Result<BTreeMap<u16, TpgState>> {
    if !lu.explicit_alua {
        return Err(MultipathError::Invalid(format!(
            "{}: the LU does not support explicit ALUA (SET TARGET PORT GROUPS); TPGS: implicit={}",
            lu.name, lu.implicit_alua
        )));
    }
    if pairs.is_empty() {
        return Err(MultipathError::Invalid("no target port group given".into()));
    }
    let mut before = BTreeMap::new();
    for &(id, state) in pairs {
        let g = topo.lu_tpg(lu.oid, id).ok_or_else(|| {
            MultipathError::not_found("target port group", format!("{id} of {}", lu.name))
        })?;
        if matches!(state, AccessState::Transitioning | AccessState::Offline) {
            return Err(MultipathError::Invalid(format!(
                "{state} cannot be requested for a group (offline is a per-port state: set-port-offline)"
            )));
        }
        if !g.supported_states.is_empty() && !g.supported_states.contains(&state.name()) {
            return Err(MultipathError::Invalid(format!(
                "target port group {id} does not support {state} (supports {})",
                g.supported_states.join(", ")
            )));
        }
        if before.insert(id, g.access_state).is_some() {
            return Err(MultipathError::Invalid(format!(
                "target port group {id} listed twice"
            )));
        }
    }
    Ok(before)
}

/// Sends SET TARGET PORT GROUPS for `pairs` through the first of `paths` that takes it (a path
/// failure moves on to the next path); returns the device it went through.
fn send_stpg(sys: &System, paths: &[&PathLu], pairs: &[(u16, AccessState)]) -> Result<String> {
    let request: Vec<(TpgId, AccessState)> = pairs.iter().map(|&(i, s)| (TpgId(i), s)).collect();
    let mut via = None;
    let mut last_err = None;
    for p in paths {
        if matches!(p.state, PathState::Removed | PathState::InvalidClosed) {
            continue;
        }
        let r = sys
            .scsi
            .open(&p.device)
            .and_then(|t| scsi::set_target_port_groups(t.as_ref(), &request));
        match r {
            Ok(()) => {
                via = Some(p.device.clone());
                break;
            }
            Err(e) if is_path_failure(&e.condition()) => {
                tracing::warn!(device = %p.device, "STPG failed on this path ({e}); trying another");
                last_err = Some(MultipathError::scsi("SET TARGET PORT GROUPS", &p.device, e));
            }
            Err(e) => return Err(MultipathError::scsi("SET TARGET PORT GROUPS", &p.device, e)),
        }
    }
    via.ok_or_else(|| {
        last_err.unwrap_or_else(|| MultipathError::Invalid("the LU has no usable path".into()))
    })
}

/// Reads RTPG through `paths` until every group of `pairs` reports its requested state
/// (waiting out TRANSITIONING) or `deadlines.array` passes; returns the states and the reads.
fn wait_for_states(
    sys: &System,
    lu: &MultipathLu,
    paths: &[&PathLu],
    pairs: &[(u16, AccessState)],
    deadlines: Deadlines,
) -> Result<(BTreeMap<u16, AccessState>, u32)> {
    let started = Instant::now();
    let mut reads = 0u32;
    loop {
        reads += 1;
        let groups = read_groups(sys, paths)?;
        let now: BTreeMap<u16, AccessState> =
            groups.groups.iter().map(|g| (g.id.0, g.state)).collect();
        if pairs.iter().all(|(id, st)| now.get(id) == Some(st)) {
            return Ok((now, reads));
        }
        if started.elapsed() >= deadlines.array {
            return Err(MultipathError::Timeout {
                what: format!("{}: the requested ALUA states", lu.name),
                after: deadlines.array,
                last: format!("{now:?}"),
            });
        }
        std::thread::sleep(deadlines.poll);
    }
}

/// Failover of `lu` to group `to` (or, without `to`, to the best other group: the preferred
/// one first, then by id). With explicit ALUA: STPG making `to` active/optimized and the
/// groups that were active/optimized take `to`'s old state (active/non-optimized when that
/// was not an active state the group supports), as sg_stpg does. Without explicit ALUA:
/// multipathd switches to the path group holding `to`'s paths.
pub fn failover(
    sys: &System,
    topo: &Topology,
    lu_name: &str,
    to: Option<u16>,
    deadlines: Deadlines,
) -> Result<AccessReport> {
    let lu = topo
        .find_lu(lu_name)
        .ok_or_else(|| MultipathError::not_found("logical unit", lu_name))?;
    let groups: Vec<_> = topo.lu_tpgs(lu.oid).collect();
    let target = match to {
        Some(id) => groups
            .iter()
            .find(|g| g.tpg_id == id)
            .copied()
            .ok_or_else(|| {
                MultipathError::not_found("target port group", format!("{id} of {}", lu.name))
            })?,
        None => {
            let mut candidates: Vec<_> = groups
                .iter()
                .filter(|g| g.access_state != TpgState::Alua(AccessState::ActiveOptimized))
                .filter(|g| {
                    g.supported_states.is_empty()
                        || g.supported_states.contains(&"active/optimized")
                })
                .copied()
                .collect();
            candidates.sort_by_key(|g| (!g.preferred_lu_path, g.tpg_id));
            candidates.first().copied().ok_or_else(|| {
                MultipathError::Invalid(format!(
                    "{}: no other target port group to fail over to",
                    lu.name
                ))
            })?
        }
    };
    if !lu.explicit_alua {
        return switch_to_group(sys, topo, lu, target.tpg_id);
    }
    let old = match target.access_state {
        TpgState::Alua(s)
            if s != AccessState::ActiveOptimized && s != AccessState::Transitioning =>
        {
            s
        }
        _ => AccessState::ActiveNonOptimized,
    };
    let mut pairs = vec![(target.tpg_id, AccessState::ActiveOptimized)];
    for g in &groups {
        if g.tpg_id != target.tpg_id
            && g.access_state == TpgState::Alua(AccessState::ActiveOptimized)
        {
            let demoted =
                if g.supported_states.is_empty() || g.supported_states.contains(&old.name()) {
                    old
                } else {
                    AccessState::ActiveNonOptimized
                };
            pairs.push((g.tpg_id, demoted));
        }
    }
    set_tpg_access(sys, topo, lu_name, &pairs, deadlines)
}

/// Failover without explicit ALUA: the dm path group holding the group's paths becomes active.
fn switch_to_group(
    sys: &System,
    topo: &Topology,
    lu: &MultipathLu,
    tpg_id: u16,
) -> Result<AccessReport> {
    let devs: Vec<_> = topo
        .lu_paths(lu.oid)
        .filter(|p| p.tpg_id == Some(tpg_id))
        .map(|p| p.oid)
        .collect();
    let group = lu
        .path_groups
        .iter()
        .find(|g| g.paths.iter().any(|p| devs.contains(p)))
        .ok_or_else(|| {
            MultipathError::Invalid(format!(
                "{}: no path group holds group {tpg_id}'s paths",
                lu.name
            ))
        })?;
    let map = lu
        .device_file_name
        .as_deref()
        .and_then(|d| d.strip_prefix("/dev/mapper/"))
        .unwrap_or(&lu.name);
    dm::switch_group(sys.multipathd.as_ref(), map, group.group)?;
    Ok(AccessReport {
        lu: lu.name.clone(),
        method: format!("switchgroup {}", group.group),
        changes: Vec::new(),
        rtpg_reads: 0,
        host_followed: false,
        array_ms: 0,
        host_ms: 0,
    })
}

/// Puts target port `rtpi` of `lu` in the OFFLINE secondary state (STPG, sent through a path
/// on another port). Every command through that port then fails with NOT READY 04/12 until
/// the array clears the state; the path checker fails the path.
pub fn set_port_offline(sys: &System, topo: &Topology, lu_name: &str, rtpi: u16) -> Result<String> {
    let lu = topo
        .find_lu(lu_name)
        .ok_or_else(|| MultipathError::not_found("logical unit", lu_name))?;
    if !lu.explicit_alua {
        return Err(MultipathError::Invalid(format!(
            "{}: no explicit ALUA",
            lu.name
        )));
    }
    if !topo
        .lu_paths(lu.oid)
        .any(|p| p.relative_port_id == Some(rtpi))
    {
        return Err(MultipathError::not_found(
            "relative target port",
            format!("{rtpi} of {}", lu.name),
        ));
    }
    let others: Vec<&PathLu> = command_paths(topo, lu)
        .into_iter()
        .filter(|p| p.relative_port_id != Some(rtpi))
        .collect();
    let (dev, t) = open_first(sys, &others)?;
    scsi::set_target_ports_offline(t.as_ref(), &[RelTgtPortId(rtpi)])
        .map_err(|e| MultipathError::scsi("SET TARGET PORT GROUPS (offline)", &dev, e))?;
    Ok(dev)
}

/// What the host shows for one LU, compared with the array's groups.
fn host_view_matches(topo: &Topology, lu: &MultipathLu) -> std::result::Result<(), String> {
    let state_of = |p: &PathLu| {
        p.tpg_id
            .and_then(|t| topo.lu_tpg(lu.oid, t))
            .map(|g| g.access_state)
    };
    let mut best_other = i64::MIN;
    let mut worst_ao = i64::MAX;
    for p in topo.lu_paths(lu.oid).filter(|p| p.state.is_usable()) {
        let Some(TpgState::Alua(s)) = state_of(p) else {
            continue;
        };
        if p.kernel_access_state
            .as_deref()
            .is_some_and(|k| k != s.name())
        {
            return Err(format!(
                "{}: kernel says {}, array says {s}",
                p.device,
                p.kernel_access_state.as_deref().unwrap_or("-")
            ));
        }
        if s == AccessState::ActiveOptimized {
            worst_ao = worst_ao.min(p.weight);
        } else {
            best_other = best_other.max(p.weight);
        }
    }
    if worst_ao != i64::MAX && best_other != i64::MIN && worst_ao <= best_other {
        return Err(format!(
            "multipathd priorities: optimized paths {worst_ao}, others {best_other}"
        ));
    }
    if worst_ao != i64::MAX {
        let active_group = lu.path_groups.iter().find(|g| g.dm_state == "active");
        let ao_in_active = active_group.is_some_and(|g| {
            g.paths.iter().any(|o| {
                topo.path(*o).and_then(state_of)
                    == Some(TpgState::Alua(AccessState::ActiveOptimized))
            })
        });
        if !ao_in_active {
            return Err("the active dm path group holds no active/optimized path".into());
        }
    }
    Ok(())
}

/// Waits until the kernel's ALUA handler reports, for every usable path of `lu`, the state the
/// array reports for its group, and multipathd ranks every active/optimized path above every
/// other and uses a group holding one. Discovery reads the kernel's cached VPD, so each poll
/// costs one INQUIRY and one RTPG.
pub fn wait_for_host(
    sys: &System,
    lu_name: &str,
    deadline: Duration,
    poll: Duration,
) -> Result<()> {
    let started = Instant::now();
    let opts = Options {
        vpd: VpdSource::KernelCache,
        only: Some(vec![lu_name.to_string()]),
    };
    loop {
        let topo = discovery::discover(sys, &opts)?;
        let lu = topo
            .find_lu(lu_name)
            .ok_or_else(|| MultipathError::not_found("logical unit", lu_name))?;
        let note = match host_view_matches(&topo, lu) {
            Ok(()) => return Ok(()),
            Err(note) => note,
        };
        if started.elapsed() >= deadline {
            return Err(MultipathError::Timeout {
                what: format!("{lu_name}: the kernel and multipathd to follow the ALUA change"),
                after: deadline,
                last: note,
            });
        }
        std::thread::sleep(poll.max(Duration::from_millis(200)));
    }
}

#[cfg(test)]
mod tests;
