//! The LUNs a target exposes through this host's sessions: for the LUN listing of sr_probe and
//! for finding an SR's LU after login.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Iqn;
use crate::error::Result;
use crate::system::System;
use sm_core::host::sysfs::ScsiDisk;

/// One LU of a target, as sm lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetLun {
    /// T10 vendor.
    pub vendor: String,
    /// Unit serial number (VPD 0x80).
    pub serial: String,
    /// LUN.
    pub lun: u64,
    /// Size in bytes.
    pub size: u64,
    /// The SCSI id (WWID).
    pub scsi_id: String,
    /// Its devices (one per path).
    pub devices: Vec<String>,
}

fn target_sessions(sys: &System, target: &Iqn) -> Vec<sm_core::host::sysfs::IscsiSession> {
    sys.sysfs
        .iscsi_sessions()
        .into_iter()
        .filter(|s| s.target == target.as_str() && s.is_logged_in())
        .collect()
}

/// Waits (up to `deadline`) until every logged-in session of `target` has scanned its LUNs.
pub fn wait_scanned(sys: &System, target: &Iqn, deadline: Duration) {
    let started = Instant::now();
    loop {
        let pending = target_sessions(sys, target).iter().any(|s| {
            sys.sysfs
                .read(&format!(
                    "/sys/class/iscsi_session/session{}/target_state",
                    s.sid
                ))
                .is_some_and(|st| st != "SCANNED")
        });
        if !pending || started.elapsed() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn disks_of(sys: &System, target: &Iqn) -> Vec<ScsiDisk> {
    let sids: BTreeSet<u32> = target_sessions(sys, target).iter().map(|s| s.sid).collect();
    sys.sysfs
        .scsi_disks()
        .into_iter()
        .filter(|d| d.session.is_some_and(|s| sids.contains(&s)))
        .collect()
}

/// Every LU of `targets` on this host's sessions, by LUN then SCSI id; an LU that two
/// targets expose under the same LUN is listed once.
pub fn targets_luns(sys: &System, targets: &[Iqn], deadline: Duration) -> Vec<TargetLun> {
    let mut all: Vec<TargetLun> = targets
        .iter()
        .flat_map(|t| target_luns(sys, t, deadline))
        .collect();
    all.sort_by(|a, b| (a.lun, &a.scsi_id).cmp(&(b.lun, &b.scsi_id)));
    all.dedup_by(|a, b| a.scsi_id == b.scsi_id);
    all
}

/// Every LU of `target` on this host's sessions, by LUN (sessions scanned first).
pub fn target_luns(sys: &System, target: &Iqn, deadline: Duration) -> Vec<TargetLun> {
    wait_scanned(sys, target, deadline);
    let mut by_id: BTreeMap<String, TargetLun> = BTreeMap::new();
    for d in disks_of(sys, target) {
        let Some(id) = crate::discovery::disk_wwid(sys, &d) else {
            continue;
        };
        let serial = sys
            .sysfs
            .read_bytes(&format!("/sys/block/{}/device/vpd_pg80", d.name))
            .and_then(|b| sm_core::scsi::wire::vpd::parse_unit_serial(&b).ok())
            .or_else(|| {
                sys.scsi
                    .open(&d.name)
                    .and_then(|t| sm_core::scsi::vpd_unit_serial(t.as_ref()))
                    .ok()
            })
            .unwrap_or_default();
        let e = by_id.entry(id.clone()).or_insert_with(|| TargetLun {
            vendor: d.vendor.clone(),
            serial,
            lun: d.lun,
            size: d.size,
            scsi_id: id,
            devices: Vec::new(),
        });
        e.devices.push(d.name.clone());
    }
    let mut v: Vec<TargetLun> = by_id.into_values().collect();
    v.sort_by(|a, b| (a.lun, &a.scsi_id).cmp(&(b.lun, &b.scsi_id)));
    v
}

/// Waits until every logged-in session of `target` has scanned its LUNs, then returns the
/// disks of LU `wwid` on them. When the LU is missing, rescans the sessions once (a LUN added
/// since login). An empty result means the target has no such LU.
pub fn lu_disks(sys: &System, target: &Iqn, wwid: &str, deadline: Duration) -> Result<Vec<String>> {
    let started = Instant::now();
    let sessions = || {
        sys.sysfs
            .iscsi_sessions()
            .into_iter()
            .filter(|s| s.target == target.as_str() && s.is_logged_in())
            .collect::<Vec<_>>()
    };
    loop {
        let pending: Vec<u32> = sessions()
            .iter()
            .filter(|s| {
                sys.sysfs
                    .read(&format!(
                        "/sys/class/iscsi_session/session{}/target_state",
                        s.sid
                    ))
                    .is_some_and(|st| st != "SCANNED")
            })
            .map(|s| s.sid)
            .collect();
        if pending.is_empty() || started.elapsed() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let find = || -> Vec<String> {
        let sids: BTreeSet<u32> = sessions().iter().map(|s| s.sid).collect();
        sys.sysfs
            .scsi_disks()
            .into_iter()
            .filter(|d| d.session.is_some_and(|s| sids.contains(&s)))
            .filter(|d| crate::discovery::disk_wwid(sys, d).as_deref() == Some(wwid))
            .map(|d| d.name)
            .collect()
    };
    let found = find();
    if !found.is_empty() {
        return Ok(found);
    }
    for s in target_sessions(sys, target) {
        if let Some(h) = s.host {
            sys.write_sysfs(&format!("/sys/class/scsi_host/host{h}/scan"), "- - -")?;
        }
    }
    Ok(find())
}
