//! VDI attach state per host, as xapi keeps it (`Vdi_automaton` in the SMAPIv1 wrapper): every
//! user of a VDI on a host (a VM's VBD, the bootloader, a copy, the installer) holds a datapath in
//! state attached or activated; the plugin sees the maximum over the datapaths, and only changes
//! of that maximum become SMAPI calls. Hence a VDI attached twice is attached once, and a
//! migration within one host is `vdi_deactivate` + `vdi_activate` only.
//!
//! This module holds the state table; `storage::datapath` turns its changes into SMAPI calls.

use std::collections::BTreeMap;
use std::sync::Mutex;

use sm_core::xmlrpc::Value;

use crate::db::{Db, RecordExt};
use crate::error::ApiResult;

/// One datapath's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpState {
    /// Attached (read-write or read-only).
    Attached {
        /// Read-write.
        rw: bool,
    },
    /// Attached and activated.
    Activated {
        /// Read-write.
        rw: bool,
    },
}

impl DpState {
    fn rw(self) -> bool {
        match self {
            DpState::Attached { rw } | DpState::Activated { rw } => rw,
        }
    }

    fn active(self) -> bool {
        matches!(self, DpState::Activated { .. })
    }
}

/// What the plugin has been told about one VDI on one host, and who uses it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Entry {
    pub(crate) dps: BTreeMap<String, DpState>,
    pub(crate) attached: Option<bool>,
    pub(crate) active: bool,
    pub(crate) attach_info: Option<Value>,
}

/// Datapaths of every VDI on every host.
#[derive(Debug, Default)]
pub struct Datapaths {
    map: Mutex<BTreeMap<(String, String), Entry>>,
}

/// The superstate the plugin must see for a set of datapaths: `None` (detached) or
/// `(rw, active)`.
pub(crate) fn superstate(dps: &BTreeMap<String, DpState>) -> Option<(bool, bool)> {
    if dps.is_empty() {
        return None;
    }
    Some((
        dps.values().any(|d| d.rw()),
        dps.values().any(|d| d.active()),
    ))
}

impl Datapaths {
    pub(crate) fn entry(&self, host: &str, vdi: &str) -> Entry {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(host.to_string(), vdi.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn store(&self, host: &str, vdi: &str, e: Entry) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let key = (host.to_string(), vdi.to_string());
        if e.dps.is_empty() && e.attached.is_none() {
            map.remove(&key);
        } else {
            map.insert(key, e);
        }
    }

    /// Rebuilds the state after a restart from the VBDs the database says are plugged.
    pub fn restore(&self, db: &Db) {
        let plugged = (|| -> ApiResult<_> {
            let mut out = Vec::new();
            for vbd in db.find("VBD", |v| v.b("currently_attached")) {
                let v = db.get("VBD", &vbd)?;
                let vm = db.get("VM", &v.s("VM"))?;
                out.push((
                    vm.s("resident_on"),
                    v.s("VDI"),
                    dp_name(&v.s("uuid"), vm.i("domid")),
                    v.s("mode") == "RW",
                ));
            }
            Ok(out)
        })();
        for (host, vdi, dp, rw) in plugged.unwrap_or_default() {
            let mut e = self.entry(&host, &vdi);
            e.dps.insert(dp, DpState::Activated { rw });
            e.attached = Some(rw);
            e.active = true;
            self.store(&host, &vdi, e);
        }
    }

    /// The attach result (`params`, `params_nbd`, ...) of a VDI attached on a host.
    pub fn attach_info(&self, host: &str, vdi: &str) -> Option<Value> {
        self.entry(host, vdi).attach_info
    }

    /// Hosts on which the VDI has at least one datapath.
    pub fn hosts_using(&self, vdi: &str) -> Vec<String> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .filter(|((_, v), e)| v == vdi && !e.dps.is_empty())
            .map(|((h, _), _)| h.clone())
            .collect()
    }

    /// Whether any VDI in `vdis` has a datapath on `host`.
    pub fn any_on(&self, host: &str, vdis: &[String]) -> Option<String> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        vdis.iter()
            .find(|v| {
                map.get(&(host.to_string(), (*v).clone()))
                    .is_some_and(|e| !e.dps.is_empty())
            })
            .cloned()
    }

    /// Drops all state of a VDI (after it was deleted or forgotten).
    pub fn forget(&self, vdi: &str) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|(_, v), _| v != vdi);
    }
}

/// The datapath name of a VM's VBD for one domain (a migration creates a new domain id).
pub fn dp_name(vbd_uuid: &str, domid: i64) -> String {
    format!("vbd/{domid}/{vbd_uuid}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superstate_is_the_maximum() {
        let mut d = BTreeMap::new();
        assert_eq!(superstate(&d), None);
        d.insert("a".to_string(), DpState::Attached { rw: false });
        assert_eq!(superstate(&d), Some((false, false)));
        d.insert("b".to_string(), DpState::Activated { rw: true });
        assert_eq!(superstate(&d), Some((true, true)));
    }
}
