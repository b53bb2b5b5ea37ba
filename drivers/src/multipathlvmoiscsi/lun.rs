//! The iSCSI half of `MultipathLVMoISCSISR`: where the SR's one LUN is, how it comes to be
//! present (login on every portal, the multipath map, an active/optimized group, path counts
//! on the PBD), how it goes away, and sm's probe answers when device_config is incomplete.

use std::borrow::Cow;
use std::path::PathBuf;

use multipath::System;
use sm_core::driver::Ctx;
use sm_core::errors::{SmCode, SmError, SmResult};
use sm_core::ids::ScsiId;

use crate::iscsi_sr::{self, IscsiSr};

/// sm's multipath LVM-over-iSCSI SR logs in on every portal the target reports unless
/// `multihomed=false`.
const MULTIHOMED_DEFAULT: bool = true;

/// The SR's SCSI id from device_config (fault 107 when missing or malformed).
pub fn scsi_id(cx: &Ctx<'_>) -> SmResult<ScsiId> {
    match cx.dconf().get_nonempty("SCSIid").map(str::trim) {
        Some(s) => iscsi_sr::config::scsi_id(s),
        None => Err(SmError::msg(
            SmCode::ConfigSCSIid,
            "device_config has no SCSIid",
        )),
    }
}

/// The SR's LUN on a host: the host of the call, or a given [`System`] (tests).
pub struct IscsiLun {
    system: Option<System>,
}

impl IscsiLun {
    /// The LUN on the host of each call.
    pub const fn host() -> IscsiLun {
        IscsiLun { system: None }
    }

    /// The LUN on `sys` (a fake host in tests).
    pub fn on(sys: System) -> IscsiLun {
        IscsiLun { system: Some(sys) }
    }

    fn sys(&self, cx: &Ctx<'_>) -> Cow<'_, System> {
        match &self.system {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(iscsi_sr::system(cx)),
        }
    }

    /// The name of the LUN's map: its SCSI id unless multipathd has an alias for it.
    fn map_name(sys: &System, id: &ScsiId) -> String {
        multipath::dm::show_map(sys.multipathd.as_ref(), id.as_str())
            .ok()
            .flatten()
            .map_or_else(|| id.to_string(), |m| m.name)
    }

    /// The LUN's multipath device (`/dev/mapper/<map>`). No side effects.
    pub fn device(&self, cx: &Ctx<'_>) -> SmResult<PathBuf> {
        let sys = self.sys(cx);
        let name = Self::map_name(&sys, &scsi_id(cx)?);
        Ok(sys.dev_path(&format!("mapper/{name}")))
    }

    /// The LUN's map name and its paths as persistent-reservation paths (SG_IO devices with
    /// their I_T nexus), for SR-level fencing.
    pub fn pr_paths(&self, cx: &Ctx<'_>) -> SmResult<(String, Vec<reservations::PrPath>)> {
        let sys = self.sys(cx);
        let map = Self::map_name(&sys, &scsi_id(cx)?);
        let paths = reservations::slaves::paths_of_map(&sys.sysfs, &map)
            .map_err(|e| SmError::new(SmCode::MultipathDeviceNotAppeared, e))?;
        Ok((map, paths))
    }

    /// The host's multipathd.
    pub fn multipathd(&self, cx: &Ctx<'_>) -> std::sync::Arc<dyn multipath::dm::Multipathd> {
        self.sys(cx).multipathd.clone()
    }

    fn load<'a>(cx: &'a Ctx<'a>, sys: &'a System) -> SmResult<IscsiSr<'a>> {
        IscsiSr::load(cx, sys, MULTIHOMED_DEFAULT)
    }

    /// Makes the LUN present for SR `cx.sr_uuid` (sr_create, sr_attach, vdi_attach_from_config):
    /// device_config complete (96/107 with sm's listings otherwise), for sr_create a SCSI id no
    /// other SR uses (16), login on every portal, the map with every path, an active/optimized
    /// group, and the path counts on the PBD when xapi is reachable. Returns the map's device.
    pub fn connect(&self, cx: &Ctx<'_>) -> SmResult<PathBuf> {
        let sys = self.sys(cx);
        let sr = Self::load(cx, &sys)?;
        let (_, id) = sr.require_complete()?;
        let uuid = cx.sr_uuid()?.to_string();
        if cx.req.command_name == "sr_create" {
            sr.ensure_scsi_id_unused(&uuid)?;
        }
        let lun = sr.connect(&uuid, &id)?;
        if cx.has_session()
            && let Err(e) = sr.record_paths(&lun)
        {
            tracing::warn!(lun = %id, "recording the path counts failed: {e}");
        }
        Ok(lun.map)
    }

    /// Releases the LUN after sr_detach/sr_delete: the path keys leave the PBD, the map is
    /// flushed (as sm's detach does), and the sessions are logged out when no other SR uses the
    /// target. A map still open (an LV active) is an error; the sessions then stay.
    pub fn disconnect(&self, cx: &Ctx<'_>) -> SmResult<()> {
        let sys = self.sys(cx);
        let sr = Self::load(cx, &sys)?;
        let id = scsi_id(cx)?;
        let uuid = cx.sr_uuid()?.to_string();
        if cx.has_session()
            && let Err(e) = sr.forget_paths(&id)
        {
            tracing::warn!(lun = %id, "removing the path counts failed: {e}");
        }
        if sr.counted_targets(&uuid).is_empty() {
            return Ok(());
        }
        sr.close(&id)?;
        sr.disconnect(&uuid)
    }

    /// Counts the paths again and records them on the PBD (sr_scan, sr_update), as sm's
    /// mpathcount does. Failures are logged, not returned: the counts are advisory.
    pub fn refresh_paths(&self, cx: &Ctx<'_>) {
        let sys = self.sys(cx);
        let r = Self::load(cx, &sys).and_then(|sr| sr.refresh_paths(&scsi_id(cx)?));
        if let Err(e) = r {
            tracing::warn!("refreshing the path counts failed: {e}");
        }
    }

    /// sr_probe: without `targetIQN` the target listing (96), without `SCSIid` the LUN listing
    /// (107), both on stderr as sm writes them; with both, `f` runs on the LUN's map while it is
    /// connected under a temporary id (an SR attached here keeps its sessions) and its answer
    /// (`<SRlist>`) is returned. An unreachable target is 141.
    pub fn probe(
        &self,
        cx: &Ctx<'_>,
        f: impl FnOnce(&PathBuf) -> SmResult<String>,
    ) -> SmResult<String> {
        let sys = self.sys(cx);
        let sr = Self::load(cx, &sys)?;
        let (_, id) = sr.require_complete()?;
        sr.with_lun(&id, |lun| f(&lun.map))
    }
}

#[cfg(test)]
mod tests;
