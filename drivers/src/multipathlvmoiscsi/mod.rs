//! `MultipathLVMoISCSISR` (type `multipathlvmoiscsi`): sm's LVM-over-iSCSI SR with
//! dm-multipath. One LUN of an iSCSI target (device_config `target`, `targetIQN`, `SCSIid`,
//! CHAP) holds the volume group; VDIs are raw LVs exactly as the `lvm` SR keeps them
//! ([`crate::lvmbased`]). The iSCSI half is [`lun`] over the shared [`crate::iscsi_sr`] layer:
//! - sr_probe answers as sm's does at each stage: without `targetIQN` the target listing on
//!   stderr and fault 96, without `SCSIid` the LUN listing and fault 107, complete the
//!   `<SRlist>` of the VG on the LUN; 141 when no portal answers.
//! - sr_create/sr_attach log in on every portal of the target, wait for `/dev/mapper/<SCSIid>`
//!   with every path, make sure an active/optimized target port group serves the LUN (setting
//!   one with SET TARGET PORT GROUPS when the array offers none and allows it), and record the
//!   path counts (`mpath-<SCSIid>` = `[active, max]`) on the PBD for xapi's multipath alerts.
//!   sr_create refuses a LUN another SR's PBD names (16).
//! - sr_detach deactivates the LVs, flushes the map and logs out unless another SR uses the
//!   target; sr_scan and sr_update count the paths again.
//!
//! - With `fencing=pr` ([`fencing`]) each host registers a per-boot key on every path at
//!   sr_attach, checks it before each vdi_activate, and fences a dead holder of the VDI with
//!   PREEMPT AND ABORT.
//!
//! A failing sr_create leaves nothing logged in or mapped.

pub mod fencing;
pub mod lun;

use std::collections::BTreeMap;
use std::path::PathBuf;

use sm_core::driver::{Ctx, Driver, DriverInfo, VdiCreate};
use sm_core::errors::SmResult;
use sm_core::response::{AttachInfo, VdiLocation};

use crate::lvmbased::{self, Backing, LvmBasedSr};
use lun::IscsiLun;

/// The driver's contract.
pub static INFO: DriverInfo = DriverInfo {
    sr_type: "multipathlvmoiscsi",
    plugin: "MultipathLVMoISCSISR",
    name: "LVM over multipath iSCSI",
    description: "SR plugin which represents disks as Logical Volumes within a Volume Group created on one iSCSI LUN, reached on every portal of the target through dm-multipath with ALUA",
    vendor: "xsm project",
    copyright: "(C) xsm project contributors",
    driver_version: "1.0",
    required_api_version: "1.0",
    capabilities: lvmbased::CAPABILITIES,
    configuration: crate::iscsi_sr::CONFIGURATION,
};

impl Backing for IscsiLun {
    fn info(&self) -> &'static DriverInfo {
        &INFO
    }

    fn devices(&self, cx: &Ctx<'_>) -> SmResult<Vec<PathBuf>> {
        Ok(vec![self.device(cx)?])
    }

    /// Login, the map, and (with `fencing=pr`) this host's registration before any write.
    fn connect(&self, cx: &Ctx<'_>) -> SmResult<()> {
        IscsiLun::connect(self, cx)?;
        fencing::join(cx, self)
    }

    /// This host's registration gone (with `fencing=pr`), then the map and the sessions.
    fn disconnect(&self, cx: &Ctx<'_>) -> SmResult<()> {
        fencing::leave(cx, self)?;
        IscsiLun::disconnect(self, cx)
    }

    fn sr_probe(&self, cx: &Ctx<'_>) -> SmResult<String> {
        self.probe(cx, |map| lvmbased::sr::probe(cx, std::slice::from_ref(map)))
    }

    /// CHAP secrets resolved and the initiator recorded: at boot there is no xapi to ask.
    /// The SR's `fencing` mode goes with it (SR sm_config is not there at boot).
    fn standalone_device_config(&self, cx: &Ctx<'_>) -> SmResult<BTreeMap<String, String>> {
        let mut dc = crate::iscsi_sr::config::standalone_device_config(cx)?;
        if let Some(v) = crate::iscsi_sr::config::sr_sm_config(cx)?.get(fencing::KEY)
            && !dc.contains_key(fencing::KEY)
        {
            dc.insert(fencing::KEY.into(), v.clone());
        }
        Ok(dc)
    }
}

/// The driver: the LVM SR on the iSCSI LUN, with sr_create undone on failure and the path
/// counts refreshed by sr_scan and sr_update.
pub struct MultipathLvmOIscsiSr(pub LvmBasedSr<IscsiLun>);

/// The driver instance.
pub static DRIVER: MultipathLvmOIscsiSr = MultipathLvmOIscsiSr(LvmBasedSr(IscsiLun::host()));

impl Driver for MultipathLvmOIscsiSr {
    fn info(&self) -> &'static DriverInfo {
        &INFO
    }
    fn sr_create(&self, cx: &Ctx<'_>, size: u64) -> SmResult<()> {
        let r = self.0.sr_create(cx, size);
        if r.is_err()
            && let Err(e) = self.0.0.disconnect(cx)
        {
            tracing::warn!("logging out after the failed sr_create: {e}");
        }
        r
    }
    /// xapi calls sr_delete with the SR detached (sm's `load` logs in for it): the LUN is
    /// connected first, and released whatever the outcome.
    fn sr_delete(&self, cx: &Ctx<'_>) -> SmResult<()> {
        Backing::connect(&self.0.0, cx)?;
        let r = self.0.sr_delete(cx);
        if r.is_err()
            && let Err(e) = self.0.0.disconnect(cx)
        {
            tracing::warn!("logging out after the failed sr_delete: {e}");
        }
        r
    }
    fn sr_attach(&self, cx: &Ctx<'_>) -> SmResult<()> {
        self.0.sr_attach(cx)
    }
    fn sr_detach(&self, cx: &Ctx<'_>) -> SmResult<()> {
        self.0.sr_detach(cx)
    }
    fn sr_scan(&self, cx: &Ctx<'_>) -> SmResult<()> {
        self.0.sr_scan(cx)?;
        self.0.0.refresh_paths(cx);
        Ok(())
    }
    fn sr_update(&self, cx: &Ctx<'_>) -> SmResult<()> {
        self.0.sr_update(cx)?;
        self.0.0.refresh_paths(cx);
        Ok(())
    }
    fn sr_probe(&self, cx: &Ctx<'_>) -> SmResult<String> {
        self.0.sr_probe(cx)
    }
    fn vdi_create(&self, cx: &Ctx<'_>, args: &VdiCreate) -> SmResult<VdiLocation> {
        self.0.vdi_create(cx, args)
    }
    fn vdi_delete(&self, cx: &Ctx<'_>) -> SmResult<()> {
        self.0.vdi_delete(cx)
    }
    fn vdi_attach(&self, cx: &Ctx<'_>, writable: bool) -> SmResult<AttachInfo> {
        self.0.vdi_attach(cx, writable)
    }
    fn vdi_detach(&self, cx: &Ctx<'_>) -> SmResult<()> {
        self.0.vdi_detach(cx)
    }
    /// With `fencing=pr`: this host still registered (46 when fenced), dead holders fenced.
    fn vdi_activate(&self, cx: &Ctx<'_>, writable: bool) -> SmResult<()> {
        fencing::before_activate(cx, &self.0.0, writable)?;
        self.0.vdi_activate(cx, writable)
    }
    fn vdi_deactivate(&self, cx: &Ctx<'_>) -> SmResult<()> {
        self.0.vdi_deactivate(cx)
    }
    fn vdi_snapshot(&self, cx: &Ctx<'_>) -> SmResult<VdiLocation> {
        self.0.vdi_snapshot(cx)
    }
    fn vdi_clone(&self, cx: &Ctx<'_>) -> SmResult<VdiLocation> {
        self.0.vdi_clone(cx)
    }
    fn vdi_resize(&self, cx: &Ctx<'_>, new_size: u64) -> SmResult<VdiLocation> {
        self.0.vdi_resize(cx, new_size)
    }
    fn vdi_update(&self, cx: &Ctx<'_>) -> SmResult<()> {
        self.0.vdi_update(cx)
    }
    fn vdi_introduce(&self, cx: &Ctx<'_>) -> SmResult<VdiLocation> {
        self.0.vdi_introduce(cx)
    }
    fn vdi_generate_config(&self, cx: &Ctx<'_>) -> SmResult<String> {
        self.0.vdi_generate_config(cx)
    }
    fn vdi_attach_from_config(&self, cx: &Ctx<'_>) -> SmResult<AttachInfo> {
        self.0.vdi_attach_from_config(cx)
    }
    fn vdi_detach_from_config(&self, cx: &Ctx<'_>) -> SmResult<()> {
        self.0.vdi_detach_from_config(cx)
    }
}
