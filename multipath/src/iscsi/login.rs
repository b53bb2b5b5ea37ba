//! Logging SRs in to and out of a target's portals.
//!
//! [`connect`]: every portal in the SR's `target` list is tested (TCP, bounded), the node
//! records iscsid has are used when they cover those hosts (else SendTargets discovery runs on
//! each reachable one), and the host logs in to every portal of the target (only the listed
//! hosts' portals when not multihomed), with CHAP as configured. The SR is then counted as a
//! user of the target (sm's `/run/sr-ref`). A call that fails logs out what it logged in when
//! no other SR uses the target: nothing is left behind.
//!
//! [`disconnect`]: the SR stops counting; the last one out flushes the multipath maps that
//! sit only on the target's sessions and logs out, but only of the sessions SRs made: sessions
//! that were there before the first SR came (the host's own, an administrator's) stay.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;

use super::iscsiadm::{Iscsiadm, Login, NodeRecord};
use super::refcount::RefCounts;
use super::{Auth, Iqn, Portal};
use crate::dm;
use crate::error::{MultipathError, Result};
use crate::system::System;

/// How long a TCP connect test may take (sm: 2 s).
pub const REACH_TIMEOUT: Duration = Duration::from_secs(2);
/// How long new sessions may take to scan their LUNs.
pub const SCAN_TIMEOUT: Duration = Duration::from_secs(30);
/// Our lock namespace serialising connect/disconnect per target.
const LOCK_NS: &str = "iscsi-target";
const LOCK_WAIT: Duration = Duration::from_secs(300);
/// The replacement timeout sm sets when multipathing (seconds), and the defaults it replaces.
const REPLACEMENT_TMO_MPATH: &str = "15";
const REPLACEMENT_TMO_DEFAULTS: [&str; 2] = ["120", "144"];

/// Which target(s) on the portals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetName {
    /// This IQN.
    Exact(Iqn),
    /// Every target the portals report (`targetIQN=*`).
    Any,
}

impl TargetName {
    /// Whether a discovered target name matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            TargetName::Exact(i) => i.as_str() == name,
            TargetName::Any => true,
        }
    }
}

/// What an SR connects to.
#[derive(Debug, Clone)]
pub struct TargetSpec {
    /// The hosts of device_config `target` with the port.
    pub hosts: Vec<Portal>,
    /// The target.
    pub name: TargetName,
    /// Authentication.
    pub auth: Auth,
    /// Log in to every portal discovery reports (else only to the listed hosts' portals).
    pub multihomed: bool,
}

/// One target's sessions as held by an SR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Connection {
    /// The target.
    pub target: Iqn,
    /// Portals with a logged-in session.
    pub portals: Vec<Portal>,
    /// Portals this call logged in to.
    pub new_sessions: Vec<Portal>,
    /// Portals that could not be used, with why.
    pub failed: Vec<(Portal, String)>,
}

/// What [`disconnect`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Released {
    /// SRs still using the target.
    pub remaining: usize,
    /// Portals logged out.
    pub logged_out: Vec<Portal>,
    /// Maps flushed.
    pub flushed: Vec<String>,
    /// Why sessions were kept although no SR uses them.
    pub kept: Option<String>,
}

/// The targets SR `sr` is counted on ([`connect`]ed and not yet [`disconnect`]ed).
pub fn counted_targets(sys: &System, sr: &str) -> Vec<Iqn> {
    refcounts(sys).targets_of(sr)
}

fn refcounts(sys: &System) -> RefCounts {
    RefCounts::new(
        sys.paths.iscsi_ref_dir(),
        sys.paths.run_dir().join("iscsi-adopted"),
    )
}

fn iscsiadm(sys: &System) -> Iscsiadm<'_> {
    Iscsiadm::new(sys.runner.as_ref(), &sys.locks)
}

/// The portals with a logged-in session to `target` (sysfs).
pub fn logged_in(sys: &System, target: &Iqn) -> Vec<Portal> {
    let mut v: Vec<Portal> = sys
        .sysfs
        .iscsi_sessions()
        .into_iter()
        .filter(|s| s.target == target.as_str() && s.is_logged_in())
        .filter_map(|s| Portal::parse(&s.portal()?, super::DEFAULT_PORT).ok())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The hosts that answer a TCP connect, resolved; `Unreachable` when none does. A name that
/// does not resolve is an error of its own (sm: DNSError).
pub fn reachable(sys: &System, hosts: &[Portal]) -> Result<Vec<Portal>> {
    let mut ok = Vec::new();
    let mut last = None;
    for h in hosts {
        let r = sys.net.resolve(h)?;
        match sys.net.check_reachable(&r, REACH_TIMEOUT) {
            Ok(()) => ok.push(r),
            Err(e) => {
                tracing::warn!(portal = %h, "portal unreachable: {e}");
                last = Some(e);
            }
        }
    }
    if ok.is_empty() {
        return Err(
            last.unwrap_or_else(|| MultipathError::Invalid("no target portal given".into()))
        );
    }
    Ok(ok)
}

/// SendTargets discovery on every reachable host (for the target listing of sr_probe).
pub fn discover(sys: &System, spec: &TargetSpec) -> Result<Vec<NodeRecord>> {
    let hosts = reachable(sys, &spec.hosts)?;
    let adm = iscsiadm(sys);
    let ifaces = adm.ifaces()?;
    let mut out: Vec<NodeRecord> = Vec::new();
    for h in &hosts {
        for r in adm.discover(h, &spec.auth, &ifaces)? {
            if !out.contains(&r) {
                out.push(r);
            }
        }
    }
    Ok(out)
}

/// The node records to log in through: iscsid's records when they cover every reachable host
/// for the target, else a fresh discovery.
fn records_for(sys: &System, spec: &TargetSpec, hosts: &[Portal]) -> Result<Vec<NodeRecord>> {
    let adm = iscsiadm(sys);
    let known: Vec<NodeRecord> = adm
        .nodes()?
        .into_iter()
        .filter(|r| spec.name.matches(&r.target))
        .collect();
    let covered = matches!(spec.name, TargetName::Exact(_))
        && hosts.iter().all(|h| known.iter().any(|r| r.portal == *h));
    if covered {
        return Ok(known);
    }
    let ifaces = adm.ifaces()?;
    let mut found: Vec<NodeRecord> = Vec::new();
    for h in hosts {
        for r in adm.discover(h, &spec.auth, &ifaces)? {
            if spec.name.matches(&r.target) && !found.contains(&r) {
                found.push(r);
            }
        }
    }
    Ok(found)
}

/// Logs `sr` in to the target(s) of `spec` (see the module doc). Fails with
/// [`MultipathError::NotFound`] (`target`) when discovery does not report the target.
pub fn connect(sys: &System, spec: &TargetSpec, sr: &str) -> Result<Vec<Connection>> {
    let hosts = reachable(sys, &spec.hosts)?;
    let records = records_for(sys, spec, &hosts)?;
    let mut targets: BTreeSet<String> = records.iter().map(|r| r.target.clone()).collect();
    if let TargetName::Exact(i) = &spec.name
        && !targets.contains(i.as_str())
    {
        return Err(MultipathError::not_found("target", i.as_str()));
    }
    if targets.is_empty() {
        return Err(MultipathError::not_found("target", "*"));
    }
    let mut done: Vec<Connection> = Vec::new();
    for t in std::mem::take(&mut targets) {
        let iqn = Iqn::new(&t)?;
        let portals: Vec<Portal> = records
            .iter()
            .filter(|r| r.target == t)
            .filter(|r| spec.multihomed || hosts.contains(&r.portal))
            .map(|r| r.portal.clone())
            .collect();
        match connect_one(sys, spec, &iqn, &portals, sr) {
            Ok(c) => done.push(c),
            Err(e) => {
                for c in &done {
                    if let Err(undo) = disconnect(sys, &c.target, sr) {
                        tracing::warn!(target = %c.target, "undoing the login failed: {undo}");
                    }
                }
                return Err(e);
            }
        }
    }
    Ok(done)
}

fn connect_one(
    sys: &System,
    spec: &TargetSpec,
    iqn: &Iqn,
    portals: &[Portal],
    sr: &str,
) -> Result<Connection> {
    let _lock = sys.locks.acquire(LOCK_NS, iqn.as_str(), LOCK_WAIT)?;
    let counts = refcounts(sys);
    let before = logged_in(sys, iqn);
    let holders = counts.holders(iqn);
    let others: Vec<String> = holders.iter().filter(|h| *h != sr).cloned().collect();
    // The first user records the sessions that were there before SRs came; an SR connecting
    // again (pbd-plug twice) must not adopt the sessions it made itself.
    if holders.is_empty() {
        counts.set_adopted(iqn, &before)?;
    }
    let adm = iscsiadm(sys);
    let mut new_sessions = Vec::new();
    let mut failed = Vec::new();
    let mut fatal = None;
    let mut tmo_checked = false;
    for p in portals {
        if before.contains(p) {
            continue;
        }
        if let Err(e) = sys.net.check_reachable(p, REACH_TIMEOUT) {
            failed.push((p.clone(), e.to_string()));
            continue;
        }
        let step = (|| -> Result<Login> {
            adm.set_auth(p, iqn, &spec.auth)?;
            if !tmo_checked {
                let key = "node.session.timeo.replacement_timeout";
                if adm
                    .node_setting(p, iqn, key)?
                    .is_some_and(|v| REPLACEMENT_TMO_DEFAULTS.contains(&v.as_str()))
                {
                    adm.set_target_setting(iqn, key, REPLACEMENT_TMO_MPATH)?;
                }
            }
            adm.login(p, iqn)
        })();
        tmo_checked = true;
        match step {
            Ok(Login::New) => new_sessions.push(p.clone()),
            Ok(Login::Existing) => {}
            Err(e) => {
                let refused = e.kind() == crate::error::ErrorKind::LoginRefused;
                failed.push((p.clone(), e.to_string()));
                if refused {
                    fatal = Some(e);
                    break;
                }
            }
        }
    }
    let now = logged_in(sys, iqn);
    let usable = !now.is_empty() && fatal.is_none();
    if !usable {
        if others.is_empty() {
            for p in &new_sessions {
                if let Err(e) = adm.logout(p, iqn) {
                    tracing::warn!(portal = %p, "logout after a failed login: {e}");
                }
            }
            if holders.is_empty() {
                counts.clear_adopted(iqn)?;
            }
        }
        return Err(fatal.unwrap_or_else(|| match failed.first() {
            Some((p, why)) => MultipathError::Unreachable {
                portal: p.to_string(),
                reason: why.clone(),
            },
            None => MultipathError::Invalid(format!("no portal of {iqn} to log in to")),
        }));
    }
    counts.add(iqn, sr)?;
    tracing::info!(target = %iqn, sr, new = new_sessions.len(), sessions = now.len(), "target connected");
    Ok(Connection {
        target: iqn.clone(),
        portals: now,
        new_sessions,
        failed,
    })
}

/// Stops counting `sr` as a user of `target`; the last user out logs out (see the module doc).
/// An SR that is not counted changes nothing.
pub fn disconnect(sys: &System, target: &Iqn, sr: &str) -> Result<Released> {
    let _lock = sys.locks.acquire(LOCK_NS, target.as_str(), LOCK_WAIT)?;
    let counts = refcounts(sys);
    if !counts.holders(target).iter().any(|h| h == sr) {
        return Ok(Released {
            remaining: counts.holders(target).len(),
            ..Released::default()
        });
    }
    let remaining = counts.remove(target, sr)?;
    if remaining > 0 {
        return Ok(Released {
            remaining,
            ..Released::default()
        });
    }
    let adopted = counts.adopted(target);
    let ours: Vec<Portal> = logged_in(sys, target)
        .into_iter()
        .filter(|p| !adopted.contains(&p.to_string()))
        .collect();
    let mut out = Released::default();
    if ours.is_empty() {
        counts.clear_adopted(target)?;
        return Ok(out);
    }
    // Maps whose paths all sit on sessions about to go.
    let going: BTreeSet<u32> = sys
        .sysfs
        .iscsi_sessions()
        .into_iter()
        .filter(|s| s.target == target.as_str())
        .filter(|s| {
            s.portal()
                .is_some_and(|p| ours.iter().any(|o| o.to_string() == p))
        })
        .map(|s| s.sid)
        .collect();
    let disk_session: std::collections::BTreeMap<String, Option<u32>> = sys
        .sysfs
        .scsi_disks()
        .into_iter()
        .map(|d| (d.name, d.session))
        .collect();
    for m in sys.sysfs.dm_devices() {
        let Some(wwid) = m.multipath_wwid() else {
            continue;
        };
        let on_going = !m.slaves.is_empty()
            && m.slaves.iter().all(|s| {
                disk_session
                    .get(s)
                    .copied()
                    .flatten()
                    .is_some_and(|sid| going.contains(&sid))
            });
        if !on_going {
            continue;
        }
        if !m.holders.is_empty() {
            let why = format!("map {wwid} is in use by {}", m.holders.join(","));
            tracing::warn!(target = %target, "keeping the sessions: {why}");
            out.kept = Some(why);
            return Ok(out);
        }
        dm::flush(sys.runner.as_ref(), &m.name)?;
        out.flushed.push(wwid.to_string());
    }
    let (going_disks, going_wwids): (BTreeSet<String>, BTreeSet<String>) = sys
        .sysfs
        .scsi_disks()
        .into_iter()
        .filter(|d| d.session.is_some_and(|sid| going.contains(&sid)))
        .map(|d| {
            let wwid = crate::discovery::disk_wwid(sys, &d).unwrap_or_default();
            (d.name, wwid)
        })
        .unzip();
    let adm = iscsiadm(sys);
    for p in &ours {
        if adm.logout(p, target)? {
            out.logged_out.push(p.clone());
        }
    }
    counts.clear_adopted(target)?;
    sweep_orphan_maps(sys, &going_disks, &going_wwids, &mut out.flushed);
    tracing::info!(target = %target, logged_out = out.logged_out.len(), "target disconnected");
    Ok(out)
}

/// How long a disconnect waits for multipathd to let go of maps of the sessions it logged out.
const SWEEP_TIMEOUT: Duration = Duration::from_secs(10);

/// After a logout: removes the multipath maps left without paths by it. multipathd may have
/// built a map of the target's LUNs between the flush and the logout (it still handles the
/// login's uevents when a probe logs out at once); it removes such a map only once its last
/// path is gone, later. Such a map queues the I/O sent to it (`queue_if_no_path`), so whoever
/// opened it (udev's blkid, an lvm2 scan) hangs and holds it open: queueing is switched off
/// first, so that I/O fails and the opener lets go, then the map is flushed, retried for up to
/// [`SWEEP_TIMEOUT`].
fn sweep_orphan_maps(
    sys: &System,
    going_disks: &BTreeSet<String>,
    going_wwids: &BTreeSet<String>,
    flushed: &mut Vec<String>,
) {
    let deadline = std::time::Instant::now() + SWEEP_TIMEOUT;
    loop {
        let orphans: Vec<_> = sys
            .sysfs
            .dm_devices()
            .into_iter()
            .filter(|m| m.multipath_wwid().is_some_and(|w| going_wwids.contains(w)))
            .filter(|m| m.slaves.iter().all(|s| going_disks.contains(s)))
            .collect();
        if orphans.is_empty() {
            return;
        }
        for m in &orphans {
            if !m.holders.is_empty() {
                tracing::warn!(map = %m.name, holders = ?m.holders, "a map of the logged-out sessions is in use: kept");
                continue;
            }
            if let Err(e) = dm::disable_queueing(sys.multipathd.as_ref(), &m.name) {
                tracing::debug!(map = %m.name, "disablequeueing after logout: {e}");
            }
            match dm::flush(sys.runner.as_ref(), &m.name) {
                Ok(()) => flushed.push(m.multipath_wwid().unwrap_or(&m.name).to_string()),
                Err(e) => tracing::debug!(map = %m.name, "flush after logout: {e}"),
            }
        }
        if orphans.iter().all(|m| !m.holders.is_empty()) || std::time::Instant::now() >= deadline {
            let left: Vec<&str> = orphans.iter().map(|m| m.name.as_str()).collect();
            tracing::warn!(maps = ?left, "maps of the logged-out sessions left behind");
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests;
