//! File-based SRs: every VDI is a dynamic VHD file `<location>.vhd` in one directory, made and
//! copied with qemu-img, served to the datapath by qemu-nbd. The `file` SR keeps that directory
//! at device_config `location`; the `ext` SR on an ext4 filesystem it mounts at
//! `/var/run/sr-mount/<sr_uuid>`. Both are a [`Backing`] (how the directory comes to exist)
//! wrapped in [`FileBasedSr`] (everything done to the VDIs in it).

pub mod layout;
pub mod scan;
pub mod vdi;

use std::path::PathBuf;

use sm_core::driver::{Capability, Ctx, Driver, DriverInfo, VdiCreate};
use sm_core::errors::{SmCode, SmError, SmResult};
use sm_core::response::{AttachInfo, VdiLocation};

use crate::{activation, static_vdi};

/// What every file-based SR implements (all of it in [`FileBasedSr`]); `THIN_PROVISIONING`
/// because images are sparse.
pub const CAPABILITIES: &[Capability] = &[
    Capability::SrCreate,
    Capability::SrDelete,
    Capability::SrAttach,
    Capability::SrDetach,
    Capability::SrScan,
    Capability::SrProbe,
    Capability::SrUpdate,
    Capability::VdiCreate,
    Capability::VdiDelete,
    Capability::VdiAttach,
    Capability::VdiDetach,
    Capability::VdiActivate,
    Capability::VdiDeactivate,
    Capability::VdiClone,
    Capability::VdiSnapshot,
    Capability::VdiResize,
    Capability::VdiUpdate,
    Capability::VdiIntroduce,
    Capability::VdiGenerateConfig,
    Capability::ThinProvisioning,
];

/// How a file-based SR's directory is provided: the SR-level calls of one SR type.
pub trait Backing: Sync {
    /// The driver's contract.
    fn info(&self) -> &'static DriverInfo;
    /// The directory holding the VDIs of this SR; fault 47 SRUnavailable when it cannot be used.
    fn vdi_dir(&self, cx: &Ctx<'_>) -> SmResult<PathBuf>;
    /// Prepares the storage (leaves the SR detached).
    fn sr_create(&self, cx: &Ctx<'_>, size: u64) -> SmResult<()>;
    /// Removes an SR that holds no VDI, leaving the storage clean. Idempotent.
    fn sr_delete(&self, cx: &Ctx<'_>) -> SmResult<()>;
    /// Makes the directory available at the SR's mount point. Idempotent.
    fn sr_attach(&self, cx: &Ctx<'_>) -> SmResult<()>;
    /// Undoes `sr_attach`. Idempotent.
    fn sr_detach(&self, cx: &Ctx<'_>) -> SmResult<()>;
    /// The `<SRlist>` document of SRs found on the storage named by device_config.
    fn sr_probe(&self, cx: &Ctx<'_>) -> SmResult<String>;
}

/// A file-based SR driver: the backing's SR calls plus the shared VDI handling.
pub struct FileBasedSr<B>(pub B);

impl<B: Backing> FileBasedSr<B> {
    /// The VDI directory, after removing the temporary images a killed call of this host
    /// left there ([`layout::stale_temp_files`]). For calls that hold the SR lock only.
    fn reaped_dir(&self, cx: &Ctx<'_>) -> SmResult<PathBuf> {
        let dir = self.0.vdi_dir(cx)?;
        reap(cx, &dir);
        Ok(dir)
    }
}

/// Removes the temporary images a killed call of this host left in `dir` (a snapshot's
/// full-size copy, a resize's new image); failures are logged, never returned.
fn reap(cx: &Ctx<'_>, dir: &std::path::Path) {
    let stale = match layout::stale_temp_files(dir, &layout::host_tag(&cx.req.host_ref)) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), "cannot list temporary files: {e}");
            return;
        }
    };
    for f in stale {
        let bytes = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
        match std::fs::remove_file(&f) {
            Ok(()) => tracing::warn!(
                file = %f.display(),
                bytes,
                "removed a temporary image left by a call that died"
            ),
            Err(e) => {
                tracing::warn!(file = %f.display(), "cannot remove a dead call's temporary image: {e}")
            }
        }
    }
}

/// Fault 16 SRInUse when any VDI of the SR still has a datapath on this host.
fn refuse_if_vdis_attached(cx: &Ctx<'_>) -> SmResult<()> {
    let sr = cx.sr_uuid()?;
    let attached = hostio::serve::open_vdis(&cx.host.paths, sr.as_str());
    if attached.is_empty() {
        Ok(())
    } else {
        Err(SmError::msg(
            SmCode::SRInUse,
            format!("VDIs still attached on this host: {}", attached.join(", ")),
        ))
    }
}

impl<B: Backing> Driver for FileBasedSr<B> {
    fn info(&self) -> &'static DriverInfo {
        self.0.info()
    }
    fn sr_create(&self, cx: &Ctx<'_>, size: u64) -> SmResult<()> {
        cx.sr_uuid()?;
        self.0.sr_create(cx, size)
    }
    fn sr_delete(&self, cx: &Ctx<'_>) -> SmResult<()> {
        refuse_if_vdis_attached(cx)?;
        self.0.sr_delete(cx)
    }
    fn sr_attach(&self, cx: &Ctx<'_>) -> SmResult<()> {
        cx.sr_uuid()?;
        self.0.sr_attach(cx)?;
        let refused = self
            .0
            .vdi_dir(cx)
            .and_then(|dir| scan::refuse_sm_content(&dir));
        match refused {
            Err(e) => {
                if let Err(undo) = self.0.sr_detach(cx) {
                    tracing::warn!("cannot undo sr_attach after refusing the SR: {undo}");
                }
                Err(e)
            }
            Ok(()) => self.reaped_dir(cx).map(drop),
        }
    }
    fn sr_detach(&self, cx: &Ctx<'_>) -> SmResult<()> {
        refuse_if_vdis_attached(cx)?;
        self.0.sr_detach(cx)
    }
    fn sr_scan(&self, cx: &Ctx<'_>) -> SmResult<()> {
        scan::scan(cx, &self.reaped_dir(cx)?)
    }
    fn sr_update(&self, cx: &Ctx<'_>) -> SmResult<()> {
        scan::update_sizes(cx, &self.0.vdi_dir(cx)?)
    }
    fn sr_probe(&self, cx: &Ctx<'_>) -> SmResult<String> {
        self.0.sr_probe(cx)
    }
    fn vdi_create(&self, cx: &Ctx<'_>, args: &VdiCreate) -> SmResult<VdiLocation> {
        vdi::create(cx, &self.reaped_dir(cx)?, args)
    }
    fn vdi_delete(&self, cx: &Ctx<'_>) -> SmResult<()> {
        vdi::delete(cx, &self.reaped_dir(cx)?)
    }
    fn vdi_attach(&self, cx: &Ctx<'_>, writable: bool) -> SmResult<AttachInfo> {
        vdi::attach(cx, &self.0.vdi_dir(cx)?, writable)
    }
    fn vdi_detach(&self, cx: &Ctx<'_>) -> SmResult<()> {
        vdi::detach(cx, &self.0.vdi_dir(cx)?)
    }
    fn vdi_activate(&self, cx: &Ctx<'_>, writable: bool) -> SmResult<()> {
        let dir = self.0.vdi_dir(cx)?;
        vdi::require_image(cx, &dir)?;
        activation::activate(cx, writable)?;
        if let Err(e) = vdi::start_export(cx, &dir, writable) {
            if let Err(undo) = activation::deactivate(cx) {
                tracing::warn!("cannot undo the activation record after a failed open: {undo}");
            }
            return Err(e);
        }
        Ok(())
    }
    fn vdi_deactivate(&self, cx: &Ctx<'_>) -> SmResult<()> {
        vdi::stop_export(cx, &self.0.vdi_dir(cx)?)?;
        activation::deactivate(cx)
    }
    fn vdi_snapshot(&self, cx: &Ctx<'_>) -> SmResult<VdiLocation> {
        vdi::copy(cx, &self.reaped_dir(cx)?, vdi::CopyKind::Snapshot)
    }
    fn vdi_clone(&self, cx: &Ctx<'_>) -> SmResult<VdiLocation> {
        vdi::copy(cx, &self.reaped_dir(cx)?, vdi::CopyKind::Clone)
    }
    fn vdi_resize(&self, cx: &Ctx<'_>, new_size: u64) -> SmResult<VdiLocation> {
        vdi::resize(cx, &self.reaped_dir(cx)?, new_size)
    }
    fn vdi_update(&self, cx: &Ctx<'_>) -> SmResult<()> {
        vdi::update(cx, &self.0.vdi_dir(cx)?)
    }
    fn vdi_introduce(&self, cx: &Ctx<'_>) -> SmResult<VdiLocation> {
        vdi::introduce(cx, &self.0.vdi_dir(cx)?)
    }
    fn vdi_generate_config(&self, cx: &Ctx<'_>) -> SmResult<String> {
        vdi::require_image(cx, &self.0.vdi_dir(cx)?)?;
        static_vdi::generate_config(cx, &vdi::location(cx)?)
    }
    /// Runs at boot without xapi (static VDIs, HA statefile): attaches the SR first.
    fn vdi_attach_from_config(&self, cx: &Ctx<'_>) -> SmResult<AttachInfo> {
        self.0.sr_attach(cx)?;
        vdi::attach(cx, &self.0.vdi_dir(cx)?, true)
    }
    fn vdi_detach_from_config(&self, cx: &Ctx<'_>) -> SmResult<()> {
        vdi::detach(cx, &self.0.vdi_dir(cx)?)
    }
}
