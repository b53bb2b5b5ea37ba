//! LVM-based SRs: a volume group on a set of block devices, one raw logical volume per VDI
//! ([`layout`]). The `lvm` SR takes its devices from device_config `device`; an LVM-over-iSCSI
//! SR from its iSCSI/multipath LUNs. Each is a [`Backing`] (which devices, and how they come to
//! be present on this host) wrapped in [`LvmBasedSr`], which does everything else:
//! - SR calls ([`sr`]): create (checks every device first: not root, not in a VG, no signature,
//!   not in use), delete (only when empty; erases the LVM labels), attach/detach (the VG present
//!   and complete; detach deactivates every LV and refuses while one is open), scan and update
//!   (one `lvm fullreport` per call), probe (`<SRlist>` of the VGs on the devices).
//! - VDI calls ([`vdi`]): create/delete/resize/introduce/update, attach (the LV's device node as
//!   `params`), activate/deactivate (`lvchange -ay/-an` plus the pool-wide `host_<ref>` record
//!   of [`crate::activation`]), generate_config/attach_from_config.
//! - snapshot and clone ([`copy`]): a full, independent copy read from a copy-on-write
//!   snapshot of the source.
//!
//! Every lvm2 command sees only the SR's devices (sm-core's [`sm_core::lvm`] scope), and runs
//! with sm's `/etc/lvm/master` configuration on the SR master where that exists. Changes to the
//! VG's metadata are refused on a host that is not the SR master (fault 58 LVMMaster).

pub mod copy;
pub mod layout;
pub mod sr;
pub mod vdi;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sm_core::driver::{Capability, Ctx, Driver, DriverInfo, VdiCreate};
use sm_core::errors::{SmCode, SmError, SmResult};
use sm_core::lvm::{Lvm, LvmOp, LvmOptions, Vg};
use sm_core::response::{AttachInfo, VdiLocation};

/// What every LVM-based SR implements (all of it in [`LvmBasedSr`]).
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
];

/// Where an LVM-based SR's devices come from: the SR-type-specific part.
pub trait Backing: Sync {
    /// The driver's contract.
    fn info(&self) -> &'static DriverInfo;
    /// The SR's devices as device_config names them, without side effects (fault 90/91 when
    /// missing or malformed).
    fn devices(&self, cx: &Ctx<'_>) -> SmResult<Vec<PathBuf>>;
    /// Makes the devices present on this host (iSCSI login, multipath map) before sr_create,
    /// sr_attach, sr_probe and vdi_attach_from_config use them. Local devices need nothing.
    fn connect(&self, _cx: &Ctx<'_>) -> SmResult<()> {
        Ok(())
    }
    /// Releases what [`Backing::connect`] set up, after sr_detach and sr_delete.
    fn disconnect(&self, _cx: &Ctx<'_>) -> SmResult<()> {
        Ok(())
    }
    /// device_config for a VDI's config that attaches with no xapi (`vdi_generate_config`):
    /// as the call had it, unless the storage needs secrets or host facts resolved into it.
    fn standalone_device_config(&self, cx: &Ctx<'_>) -> SmResult<BTreeMap<String, String>> {
        Ok(cx.dconf().as_map().clone())
    }
    /// sr_probe: by default, after [`Backing::connect`], the `<SRlist>` of our VGs on the
    /// devices. A backing whose device_config may be incomplete at probe time (no LUN chosen
    /// yet) lists targets or LUNs instead.
    fn sr_probe(&self, cx: &Ctx<'_>) -> SmResult<String> {
        self.connect(cx)?;
        sr::probe(cx, &self.devices(cx)?)
    }
}

/// An LVM-based SR driver: the backing's devices plus the shared SR and VDI handling.
pub struct LvmBasedSr<B>(pub B);

/// The lvm2 scope of a call on `devices`: only those devices, and sm's master configuration on
/// the SR master where the host has one.
pub fn lvm_options(cx: &Ctx<'_>, devices: &[PathBuf]) -> LvmOptions {
    let mut o = LvmOptions::scoped(devices);
    if cx.dconf().is_master() {
        o.system_dir = LvmOptions::sm_master_dir(cx.host.paths.root());
    }
    o
}

/// One call's view of the SR: its VG, its devices, and lvm2 scoped to them.
pub struct SrVg<'a> {
    /// The VG's name (`VG_XenStorage-<sr>`).
    pub name: String,
    /// The devices of the SR.
    pub devices: Vec<PathBuf>,
    /// lvm2 commands, seeing only those devices.
    pub lvm: Lvm<'a>,
    /// Whether this host is the SR master.
    pub master: bool,
}

impl<'a> SrVg<'a> {
    /// The SR of the call `cx` on `devices`.
    pub fn open(cx: &'a Ctx<'_>, devices: Vec<PathBuf>) -> SmResult<SrVg<'a>> {
        let name = layout::vg_name(&cx.sr_uuid()?);
        let lvm = Lvm::new(cx.host.runner.as_ref(), lvm_options(cx, &devices))?;
        Ok(SrVg {
            name,
            devices,
            lvm,
            master: cx.dconf().is_master(),
        })
    }

    /// The VG with its PVs and LVs (one lvm2 report), or `None` when it does not exist.
    pub fn report(&self) -> SmResult<Option<Vg>> {
        Ok(self.lvm.vg(&self.name)?)
    }

    /// The VG, which must exist and be complete (fault 47 SRUnavailable otherwise).
    pub fn require(&self) -> SmResult<Vg> {
        let vg = self.report()?.ok_or_else(|| {
            SmError::msg(
                SmCode::SRUnavailable,
                format!("no volume group {} on {}", self.name, self.devices_text()),
            )
        })?;
        if vg.is_partial() {
            return Err(SmError::msg(
                SmCode::SRUnavailable,
                format!(
                    "volume group {} is missing {} of its physical volumes (device_config lists {})",
                    self.name,
                    vg.missing_pvs.max(1),
                    self.devices_text()
                ),
            ));
        }
        Ok(vg)
    }

    /// Refuses `op` unless this host is the SR master (fault 58).
    pub fn require_master(&self, op: LvmOp) -> SmResult<()> {
        Ok(sm_core::lvm::require_master(self.master, op)?)
    }

    /// The device node of LV `lv`.
    pub fn lv_path(&self, lv: &str) -> PathBuf {
        layout::lv_path(&self.name, lv)
    }

    /// The devices, comma-separated.
    pub fn devices_text(&self) -> String {
        join_paths(&self.devices)
    }
}

/// Paths joined with ",".
pub fn join_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// device_config `device`: one or more absolute device paths, comma-separated (fault 90 when
/// missing, 91 when malformed or repeated).
pub fn devices_from_config(cx: &Ctx<'_>) -> SmResult<Vec<PathBuf>> {
    let raw = cx.dconf().require("device", SmCode::ConfigDeviceMissing)?;
    let mut out: Vec<PathBuf> = Vec::new();
    for d in raw.split(',').map(str::trim) {
        let p = Path::new(d);
        if d.is_empty() || !p.is_absolute() {
            return Err(SmError::msg(
                SmCode::ConfigDeviceInvalid,
                format!("device {d:?} is not an absolute device path"),
            ));
        }
        if out.iter().any(|o| o == p) {
            return Err(SmError::msg(
                SmCode::ConfigDeviceInvalid,
                format!("device {d} is listed twice"),
            ));
        }
        out.push(p.to_path_buf());
    }
    Ok(out)
}

impl<B: Backing> LvmBasedSr<B> {
    fn sr_vg<'a>(&self, cx: &'a Ctx<'_>) -> SmResult<SrVg<'a>> {
        SrVg::open(cx, self.0.devices(cx)?)
    }
}

impl<B: Backing> Driver for LvmBasedSr<B> {
    fn info(&self) -> &'static DriverInfo {
        self.0.info()
    }
    fn sr_create(&self, cx: &Ctx<'_>, _size: u64) -> SmResult<()> {
        self.0.connect(cx)?;
        sr::create(cx, &self.sr_vg(cx)?)
    }
    fn sr_delete(&self, cx: &Ctx<'_>) -> SmResult<()> {
        sr::delete(cx, &self.sr_vg(cx)?)?;
        self.0.disconnect(cx)
    }
    fn sr_attach(&self, cx: &Ctx<'_>) -> SmResult<()> {
        self.0.connect(cx)?;
        sr::attach(cx, &self.sr_vg(cx)?)
    }
    fn sr_detach(&self, cx: &Ctx<'_>) -> SmResult<()> {
        sr::detach(cx, &self.sr_vg(cx)?)?;
        self.0.disconnect(cx)
    }
    fn sr_scan(&self, cx: &Ctx<'_>) -> SmResult<()> {
        sr::scan(cx, &self.sr_vg(cx)?)
    }
    fn sr_update(&self, cx: &Ctx<'_>) -> SmResult<()> {
        sr::update(cx, &self.sr_vg(cx)?)
    }
    fn sr_probe(&self, cx: &Ctx<'_>) -> SmResult<String> {
        self.0.sr_probe(cx)
    }
    fn vdi_create(&self, cx: &Ctx<'_>, args: &VdiCreate) -> SmResult<VdiLocation> {
        vdi::create(cx, &self.sr_vg(cx)?, args)
    }
    fn vdi_delete(&self, cx: &Ctx<'_>) -> SmResult<()> {
        vdi::delete(cx, &self.sr_vg(cx)?)
    }
    fn vdi_attach(&self, cx: &Ctx<'_>, _writable: bool) -> SmResult<AttachInfo> {
        vdi::attach(cx, &self.sr_vg(cx)?)
    }
    fn vdi_detach(&self, cx: &Ctx<'_>) -> SmResult<()> {
        vdi::detach(cx)
    }
    fn vdi_activate(&self, cx: &Ctx<'_>, writable: bool) -> SmResult<()> {
        vdi::activate(cx, &self.sr_vg(cx)?, writable)
    }
    fn vdi_deactivate(&self, cx: &Ctx<'_>) -> SmResult<()> {
        vdi::deactivate(cx, &self.sr_vg(cx)?)
    }
    fn vdi_snapshot(&self, cx: &Ctx<'_>) -> SmResult<VdiLocation> {
        copy::copy(cx, &self.sr_vg(cx)?, copy::CopyKind::Snapshot)
    }
    fn vdi_clone(&self, cx: &Ctx<'_>) -> SmResult<VdiLocation> {
        copy::copy(cx, &self.sr_vg(cx)?, copy::CopyKind::Clone)
    }
    fn vdi_resize(&self, cx: &Ctx<'_>, new_size: u64) -> SmResult<VdiLocation> {
        vdi::resize(cx, &self.sr_vg(cx)?, new_size)
    }
    fn vdi_update(&self, cx: &Ctx<'_>) -> SmResult<()> {
        vdi::update(cx, &self.sr_vg(cx)?)
    }
    fn vdi_introduce(&self, cx: &Ctx<'_>) -> SmResult<VdiLocation> {
        vdi::introduce(cx, &self.sr_vg(cx)?)
    }
    fn vdi_generate_config(&self, cx: &Ctx<'_>) -> SmResult<String> {
        vdi::generate_config(cx, &self.sr_vg(cx)?, &self.0.standalone_device_config(cx)?)
    }
    /// Runs at boot without xapi (static VDIs, HA statefile): connects the devices and
    /// activates the LV.
    fn vdi_attach_from_config(&self, cx: &Ctx<'_>) -> SmResult<AttachInfo> {
        self.0.connect(cx)?;
        vdi::attach_from_config(cx, &self.sr_vg(cx)?)
    }
    fn vdi_detach_from_config(&self, cx: &Ctx<'_>) -> SmResult<()> {
        vdi::detach_from_config(cx, &self.sr_vg(cx)?)
    }
}
