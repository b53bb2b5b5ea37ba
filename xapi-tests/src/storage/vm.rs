//! VBD and VM operations. There are no real guests: a VM is a record whose disks are attached
//! and activated while it "runs". What a guest would do with its disks is done for real on the
//! data path: the installer writes a boot sector, the PV bootloader reads it before every start,
//! suspend writes a memory image and resume reads it back.
//!
//! | operation | SMAPI calls per VDI (appendix A) |
//! |---|---|
//! | vm-install | `vdi_create` per template disk; then `vdi_attach`+`vdi_activate` each (the installer), then `vdi_deactivate`+`vdi_detach` (the installer is done) |
//! | vm-start | PV bootloader: attach, activate, deactivate, detach of the boot disk (read-only); then attach+activate each disk |
//! | vm-shutdown (clean or forced) | deactivate+detach each plugged disk |
//! | vm-suspend | suspend VDI: create, attach, activate, deactivate, detach; then deactivate+detach each disk |
//! | vm-resume | suspend VDI attach+activate; each disk attach+activate; suspend VDI deactivate, detach, delete |
//! | vm-migrate | attach on the target; deactivate on the source; activate on the target; detach on the source (within one host only the deactivate/activate pair changes anything) |
//! | vm-clone | `vdi_clone` each disk, or without VDI_CLONE: the vdi-copy sequence |
//! | vm-uninstall | detach, deactivate, delete each disk (appendix A's order) |
//! | vbd-plug / vbd-unplug | attach+activate / deactivate+detach |

use std::collections::BTreeMap;

use super::datapath::{DpState, dp_name};
use super::vdi::{self, VdiCreate};
use super::{assert_plugged, pool_ref};
use super::{backend, blockio};
use crate::db::schema::NULL_REF;
use crate::db::{Db, Record, RecordExt, is_null};
use crate::emulator::{Emulator, OpCtx};
use crate::error::{ApiError, ApiResult, names};

/// The byte the installer writes over the first MiB of a bootable disk; the PV bootloader looks
/// for it before every start.
pub const BOOT_PATTERN: u8 = 0xb0;
const BOOT_SECTOR: u64 = 1 << 20;
const BOOT_CHECK: u64 = 64 << 10;
/// How much of the memory image suspend writes and resume checks.
const IMAGE_MAX: u64 = 4 << 20;

/// The byte a VM's suspend image is made of (derived from its uuid, never 0).
pub fn image_pattern(vm_uuid: &str) -> u8 {
    let b = u8::from_str_radix(vm_uuid.get(..2).unwrap_or("a5"), 16).unwrap_or(0xa5);
    if b == 0 { 0xa5 } else { b }
}

fn power_state(db: &Db, vm: &str) -> ApiResult<String> {
    let rec = db.get("VM", vm)?;
    if rec.b("is_a_template") {
        return Err(ApiError::not_allowed(
            "this operation cannot be performed on a template",
        ));
    }
    Ok(rec.s("power_state"))
}

fn expect_state(db: &Db, vm: &str, want: &str) -> ApiResult<()> {
    let s = power_state(db, vm)?;
    if s.eq_ignore_ascii_case(want) {
        Ok(())
    } else {
        Err(ApiError::bad_power_state(vm, want, &s))
    }
}

/// A VM's disk VBDs (not empty, type Disk), in userdevice order: `(vbd, vbd uuid, vdi, rw)`.
fn disks(db: &Db, vm: &str) -> ApiResult<Vec<(String, String, String, bool)>> {
    let mut out = Vec::new();
    for vbd in db.where_eq("VBD", "VM", vm) {
        let v = db.get("VBD", &vbd)?;
        if v.b("empty") || v.s("type") != "Disk" || is_null(&v.s("VDI")) {
            continue;
        }
        out.push((
            v.s("userdevice"),
            vbd.clone(),
            v.s("uuid"),
            v.s("VDI"),
            v.s("mode") != "RO",
        ));
    }
    out.sort();
    Ok(out
        .into_iter()
        .map(|(_, a, b, c, d)| (a, b, c, d))
        .collect())
}

/// What VBD.create takes.
#[derive(Debug, Clone, Default)]
pub struct VbdCreate {
    /// The VM.
    pub vm: String,
    /// The VDI.
    pub vdi: String,
    /// userdevice (`0`, `1`, `xvdc`, ...).
    pub userdevice: String,
    /// bootable.
    pub bootable: bool,
    /// `RW` or `RO`.
    pub mode: String,
    /// `Disk` or `CD`.
    pub ty: String,
}

/// `VBD.create`: a record; no SMAPI call.
pub fn vbd_create(emu: &Emulator, a: &VbdCreate) -> ApiResult<String> {
    emu.write(|db| {
        db.get("VM", &a.vm)?;
        let backend_kind = db
            .get("VDI", &a.vdi)?
            .map("sm_config")
            .get("backend-kind")
            .cloned();
        for other in db.where_eq("VBD", "VM", &a.vm) {
            if db.get("VBD", &other)?.s("userdevice") == a.userdevice {
                return Err(ApiError::new(
                    names::DEVICE_ALREADY_EXISTS,
                    [a.userdevice.as_str()],
                ));
            }
        }
        let mut r = Record::new();
        r.put_s("VM", &a.vm);
        r.put_s("VDI", &a.vdi);
        r.put_s("userdevice", &a.userdevice);
        r.put_s("device", &a.userdevice);
        r.put_b("bootable", a.bootable);
        r.put_s(
            "mode",
            if a.mode.is_empty() {
                "RW"
            } else {
                a.mode.as_str()
            },
        );
        r.put_s(
            "type",
            if a.ty.is_empty() {
                "Disk"
            } else {
                a.ty.as_str()
            },
        );
        // xapi_vbd.ml: the SM driver chooses the VBD backend kind through the VDI's sm_config.
        if let Some(kind) = backend_kind {
            r.put_map(
                "other_config",
                &BTreeMap::from([("backend-kind".to_string(), kind)]),
            );
        }
        db.create("VBD", r)
    })
}

/// `VBD.destroy`: the VBD must be unplugged.
pub fn vbd_destroy(emu: &Emulator, vbd: &str) -> ApiResult<()> {
    emu.write(|db| {
        if db.get("VBD", vbd)?.b("currently_attached") {
            return Err(ApiError::not_allowed("VBD is currently attached"));
        }
        db.destroy("VBD", vbd).map(|_| ())
    })
}

/// `VBD.plug`: attach and activate the VDI on the VM's host.
pub fn vbd_plug(emu: &Emulator, ctx: &OpCtx, vbd: &str) -> ApiResult<()> {
    let (vm, vdi, uuid, rw) = emu.read(|db| {
        let v = db.get("VBD", vbd)?;
        Ok((v.s("VM"), v.s("VDI"), v.s("uuid"), v.s("mode") != "RO"))
    })?;
    let _g = emu.locks.lock(&format!("vm:{vm}"));
    let (host, domid) = emu.read(|db| {
        expect_state(db, &vm, "Running")?;
        if db.get("VBD", vbd)?.b("currently_attached") {
            return Err(ApiError::new(names::DEVICE_ALREADY_ATTACHED, [vbd]));
        }
        let rec = db.get("VM", &vm)?;
        let host = rec.s("resident_on");
        assert_plugged(db, &host, &db.get("VDI", &vdi)?.s("SR"))?;
        Ok((host, rec.i("domid")))
    })?;
    emu.datapaths.set(
        emu,
        ctx,
        &host,
        &vdi,
        &dp_name(&uuid, domid),
        Some(DpState::Activated { rw }),
    )?;
    if let Err(e) = check_backend(emu, &host, vbd, &vdi) {
        if let Err(u_err) = emu
            .datapaths
            .set(emu, ctx, &host, &vdi, &dp_name(&uuid, domid), None)
        {
            tracing::warn!("releasing {vdi} after a refused plug: {u_err}");
        }
        return Err(e);
    }
    emu.write(|db| {
        db.get_mut("VBD", vbd)?.put_b("currently_attached", true);
        Ok(())
    })
}

/// `VBD.unplug`: deactivate and detach.
pub fn vbd_unplug(emu: &Emulator, ctx: &OpCtx, vbd: &str) -> ApiResult<()> {
    let (vm, vdi, uuid) = emu.read(|db| {
        let v = db.get("VBD", vbd)?;
        Ok((v.s("VM"), v.s("VDI"), v.s("uuid")))
    })?;
    let _g = emu.locks.lock(&format!("vm:{vm}"));
    let (host, domid) = emu.read(|db| {
        if !db.get("VBD", vbd)?.b("currently_attached") {
            return Err(ApiError::new(names::DEVICE_ALREADY_DETACHED, [vbd]));
        }
        let rec = db.get("VM", &vm)?;
        Ok((rec.s("resident_on"), rec.i("domid")))
    })?;
    emu.datapaths
        .set(emu, ctx, &host, &vdi, &dp_name(&uuid, domid), None)?;
    emu.write(|db| {
        db.get_mut("VBD", vbd)?.put_b("currently_attached", false);
        Ok(())
    })
}

fn next_domid(db: &Db) -> i64 {
    db.refs("VM")
        .iter()
        .filter_map(|v| db.get("VM", v).ok())
        .map(|v| v.i("domid"))
        .max()
        .unwrap_or(0)
        .max(0)
        + 1
}

fn assert_host_sees_disks(db: &Db, vm: &str, host: &str) -> ApiResult<()> {
    for (_, _, vdi, _) in disks(db, vm)? {
        let sr = db.get("VDI", &vdi)?.s("SR");
        if assert_plugged(db, host, &sr).is_err() {
            return Err(ApiError::new(names::VM_REQUIRES_SR, [vm, sr.as_str()]));
        }
    }
    Ok(())
}

/// Attaches and activates every disk for domain `domid` on `host`; on failure the ones already
/// done are released again.
fn plug_all(emu: &Emulator, ctx: &OpCtx, vm: &str, host: &str, domid: i64) -> ApiResult<()> {
    let ds = emu.read(|db| disks(db, vm))?;
    for (i, (vbd, uuid, vdi, rw)) in ds.iter().enumerate() {
        if let Err(e) = emu.datapaths.set(
            emu,
            ctx,
            host,
            vdi,
            &dp_name(uuid, domid),
            Some(DpState::Activated { rw: *rw }),
        ) {
            for (_, u, v, _) in &ds[..i] {
                if let Err(u_err) = emu
                    .datapaths
                    .set(emu, ctx, host, v, &dp_name(u, domid), None)
                {
                    tracing::warn!("releasing {v} after a failed start: {u_err}");
                }
            }
            return Err(e);
        }
        if let Err(e) = check_backend(emu, host, vbd, vdi) {
            for (_, u, v, _) in &ds[..=i] {
                if let Err(u_err) = emu
                    .datapaths
                    .set(emu, ctx, host, v, &dp_name(u, domid), None)
                {
                    tracing::warn!("releasing {v} after a failed start: {u_err}");
                }
            }
            return Err(e);
        }
    }
    emu.write(|db| {
        for (vbd, _, _, _) in &ds {
            db.get_mut("VBD", vbd)?.put_b("currently_attached", true);
        }
        Ok(())
    })
}

/// Checks `vdi`'s attach result on `host` as the backend of VBD `vbd` would take it
/// ([`backend::check`]).
fn check_backend(emu: &Emulator, host: &str, vbd: &str, vdi: &str) -> ApiResult<()> {
    let kind = emu.read(|db| {
        Ok(db
            .get("VBD", vbd)?
            .map("other_config")
            .get("backend-kind")
            .cloned())
    })?;
    let info = emu
        .datapaths
        .attach_info(host, vdi)
        .ok_or_else(|| ApiError::internal("no attach result"))?;
    backend::check(
        emu.host(host)?,
        kind.as_deref().unwrap_or(backend::DEFAULT_KIND),
        &info,
    )
}

/// Deactivates and detaches every plugged disk of `vm`; returns the first error after trying all.
fn unplug_all(emu: &Emulator, ctx: &OpCtx, vm: &str) -> ApiResult<()> {
    let (host, domid, ds) = emu.read(|db| {
        let rec = db.get("VM", vm)?;
        let plugged: Vec<_> = disks(db, vm)?
            .into_iter()
            .filter(|(vbd, _, _, _)| db.get("VBD", vbd).is_ok_and(|v| v.b("currently_attached")))
            .collect();
        Ok((rec.s("resident_on"), rec.i("domid"), plugged))
    })?;
    let mut first_err = None;
    for (vbd, uuid, vdi, _) in ds {
        match emu
            .datapaths
            .set(emu, ctx, &host, &vdi, &dp_name(&uuid, domid), None)
        {
            Ok(()) => emu.write(|db| {
                db.get_mut("VBD", &vbd)?.put_b("currently_attached", false);
                Ok(())
            })?,
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Runs `f` with `vdi` attached and activated on `host` under datapath `dp`, then releases it.
fn with_disk<T>(
    emu: &Emulator,
    ctx: &OpCtx,
    host: &str,
    vdi: &str,
    dp: &str,
    rw: bool,
    f: impl FnOnce(&str) -> ApiResult<T>,
) -> ApiResult<T> {
    emu.datapaths
        .set(emu, ctx, host, vdi, dp, Some(DpState::Activated { rw }))?;
    let out = emu
        .datapaths
        .attach_info(host, vdi)
        .ok_or_else(|| ApiError::internal("no attach result"))
        .and_then(|info| blockio::target(&info))
        .and_then(|t| f(&t));
    let released = emu.datapaths.set(emu, ctx, host, vdi, dp, None);
    let v = out?;
    released?;
    Ok(v)
}

/// `VM.start` (`VM.start_on` with a host): the PV bootloader reads the boot disk, then every
/// disk is attached and activated.
pub fn start(emu: &Emulator, ctx: &OpCtx, vm: &str, host: Option<&str>) -> ApiResult<()> {
    let _g = emu.locks.lock(&format!("vm:{vm}"));
    let (host, bootloader, uuid, boot_disk) = emu.read(|db| {
        expect_state(db, vm, "Halted")?;
        let host = match host {
            Some(h) => {
                db.get("host", h)?;
                h.to_string()
            }
            None => super::master_ref(db)?,
        };
        assert_host_sees_disks(db, vm, &host)?;
        let rec = db.get("VM", vm)?;
        let ds = disks(db, vm)?;
        let boot = ds
            .iter()
            .find(|(vbd, _, _, _)| db.get("VBD", vbd).is_ok_and(|v| v.b("bootable")))
            .or(ds.first())
            .map(|(_, _, vdi, _)| vdi.clone());
        Ok((host, rec.s("PV_bootloader"), rec.s("uuid"), boot))
    })?;
    if !bootloader.is_empty()
        && let Some(boot) = boot_disk
    {
        let found = with_disk(
            emu,
            ctx,
            &host,
            &boot,
            &format!("bootloader/{uuid}"),
            false,
            |t| blockio::verify(emu, ctx, &host, t, BOOT_PATTERN, 0, BOOT_CHECK),
        )?;
        if !found {
            return Err(ApiError::new(
                names::BOOTLOADER_FAILED,
                [
                    vm.to_string(),
                    "no boot sector on the boot disk (was the VM installed?)".to_string(),
                ],
            ));
        }
    }
    let domid = emu.read(|db| Ok(next_domid(db)))?;
    plug_all(emu, ctx, vm, &host, domid)?;
    emu.write(|db| {
        let rec = db.get_mut("VM", vm)?;
        rec.put_s("power_state", "Running");
        rec.put_s("resident_on", &host);
        rec.put_i("domid", domid);
        Ok(())
    })
}

fn set_halted(emu: &Emulator, vm: &str) -> ApiResult<()> {
    emu.write(|db| {
        let rec = db.get_mut("VM", vm)?;
        rec.put_s("power_state", "Halted");
        rec.put_s("resident_on", NULL_REF);
        rec.put_i("domid", -1);
        Ok(())
    })
}

/// `VM.clean_shutdown` / `VM.hard_shutdown`: every plugged disk deactivated and detached.
pub fn shutdown(emu: &Emulator, ctx: &OpCtx, vm: &str) -> ApiResult<()> {
    let _g = emu.locks.lock(&format!("vm:{vm}"));
    emu.read(|db| expect_state(db, vm, "Running"))?;
    unplug_all(emu, ctx, vm)?;
    set_halted(emu, vm)
}

/// The SR for suspend images: the pool's suspend_image_SR, else its default SR, else the SR of
/// the VM's first disk.
fn suspend_sr(db: &Db, vm: &str) -> ApiResult<String> {
    let pool = db.get("pool", &pool_ref(db)?)?;
    for k in ["suspend_image_SR", "default_SR"] {
        let sr = pool.s(k);
        if !is_null(&sr) && db.exists("SR", &sr) {
            return Ok(sr);
        }
    }
    match disks(db, vm)?.first() {
        Some((_, _, vdi, _)) => Ok(db.get("VDI", vdi)?.s("SR")),
        None => Err(ApiError::new(names::DEFAULT_SR_NOT_FOUND, [NULL_REF])),
    }
}

/// `VM.suspend`: a suspend VDI is created and the memory image written to it; then every disk
/// is released.
pub fn suspend(emu: &Emulator, ctx: &OpCtx, vm: &str) -> ApiResult<()> {
    let _g = emu.locks.lock(&format!("vm:{vm}"));
    let (sr, host, mem, uuid, name) = emu.read(|db| {
        expect_state(db, vm, "Running")?;
        let rec = db.get("VM", vm)?;
        Ok((
            suspend_sr(db, vm)?,
            rec.s("resident_on"),
            rec.i("memory_static_max"),
            rec.s("uuid"),
            rec.s("name_label"),
        ))
    })?;
    let size = (mem.max(1 << 20) + (1 << 20) - 1) / (1 << 20) * (1 << 20);
    let image = vdi::create(
        emu,
        ctx,
        &VdiCreate {
            sr,
            virtual_size: size,
            name_label: format!("Suspend image for {name}"),
            ty: "suspend".into(),
            ..VdiCreate::default()
        },
    )?;
    let len = (size as u64).min(IMAGE_MAX);
    let written = with_disk(
        emu,
        ctx,
        &host,
        &image,
        &format!("suspend/{uuid}"),
        true,
        |t| blockio::fill(emu, ctx, &host, t, image_pattern(&uuid), 0, len),
    );
    if let Err(e) = written {
        if let Err(d) = vdi::delete_after(emu, ctx, &image, &[]) {
            tracing::warn!("removing the unused suspend image failed: {d}");
        }
        return Err(e);
    }
    unplug_all(emu, ctx, vm)?;
    emu.write(|db| {
        let rec = db.get_mut("VM", vm)?;
        rec.put_s("power_state", "Suspended");
        rec.put_s("suspend_VDI", &image);
        rec.put_s("resident_on", NULL_REF);
        rec.put_i("domid", -1);
        Ok(())
    })
}

/// `VM.resume` (`VM.resume_on`): the memory image is read back from the suspend VDI, the disks
/// are attached and activated, and the suspend VDI is released and deleted.
pub fn resume(emu: &Emulator, ctx: &OpCtx, vm: &str, host: Option<&str>) -> ApiResult<()> {
    let _g = emu.locks.lock(&format!("vm:{vm}"));
    let (host, image, uuid) = emu.read(|db| {
        expect_state(db, vm, "Suspended")?;
        let rec = db.get("VM", vm)?;
        let image = rec.s("suspend_VDI");
        if is_null(&image) || !db.exists("VDI", &image) {
            return Err(ApiError::new(names::VM_HAS_NO_SUSPEND_VDI, [vm]));
        }
        let host = match host {
            Some(h) => h.to_string(),
            None => super::master_ref(db)?,
        };
        assert_host_sees_disks(db, vm, &host)?;
        Ok((host, image, rec.s("uuid")))
    })?;
    let size = emu.read(|db| Ok(db.get("VDI", &image)?.i("virtual_size")))?;
    let len = (size.max(0) as u64).min(IMAGE_MAX);
    let dp = format!("suspend/{uuid}");
    emu.datapaths.set(
        emu,
        ctx,
        &host,
        &image,
        &dp,
        Some(DpState::Activated { rw: false }),
    )?;
    let check = emu
        .datapaths
        .attach_info(&host, &image)
        .ok_or_else(|| ApiError::internal("no attach result"))
        .and_then(|i| blockio::target(&i))
        .and_then(|t| blockio::verify(emu, ctx, &host, &t, image_pattern(&uuid), 0, len));
    let domid = emu.read(|db| Ok(next_domid(db)))?;
    let plugged = match check {
        Ok(true) => plug_all(emu, ctx, vm, &host, domid),
        Ok(false) => Err(ApiError::internal(format!(
            "the memory image on suspend VDI {image} is not what suspend wrote"
        ))),
        Err(e) => Err(e),
    };
    let released = emu.datapaths.set(emu, ctx, &host, &image, &dp, None);
    plugged?;
    released?;
    emu.write(|db| {
        let rec = db.get_mut("VM", vm)?;
        rec.put_s("power_state", "Running");
        rec.put_s("resident_on", &host);
        rec.put_i("domid", domid);
        rec.put_s("suspend_VDI", NULL_REF);
        Ok(())
    })?;
    vdi::delete_after(emu, ctx, &image, &[])
}

/// `VM.pool_migrate`: per disk, attach on the target; then deactivate on the source and
/// activate on the target; then detach on the source.
pub fn migrate(emu: &Emulator, ctx: &OpCtx, vm: &str, target: &str) -> ApiResult<()> {
    let _g = emu.locks.lock(&format!("vm:{vm}"));
    let (source, old, ds) = emu.read(|db| {
        expect_state(db, vm, "Running")?;
        db.get("host", target)?;
        assert_host_sees_disks(db, vm, target)?;
        let rec = db.get("VM", vm)?;
        Ok((rec.s("resident_on"), rec.i("domid"), disks(db, vm)?))
    })?;
    let new = emu.read(|db| Ok(next_domid(db)))?;
    let plugged: Vec<_> = emu.read(|db| {
        Ok(ds
            .into_iter()
            .filter(|(vbd, _, _, _)| db.get("VBD", vbd).is_ok_and(|v| v.b("currently_attached")))
            .collect())
    })?;
    // One phase: every plugged disk's datapath for domain `dom` on `host` set to `state`.
    let phase = |host: &str, dom: i64, state: fn(bool) -> Option<DpState>| -> ApiResult<()> {
        for (_, u, v, rw) in &plugged {
            emu.datapaths
                .set(emu, ctx, host, v, &dp_name(u, dom), state(*rw))?;
        }
        Ok(())
    };
    let attached = |rw| Some(DpState::Attached { rw });
    let activated = |rw| Some(DpState::Activated { rw });
    let moved = phase(target, new, attached)
        .and_then(|_| phase(&source, old, attached))
        .and_then(|_| phase(target, new, activated));
    if let Err(e) = moved {
        let undo = phase(target, new, |_| None).and_then(|_| phase(&source, old, activated));
        if let Err(u) = undo {
            tracing::warn!(
                vm,
                "after a failed migration ({e}), restoring the source failed too: {u}"
            );
        }
        return Err(e);
    }
    emu.write(|db| {
        let rec = db.get_mut("VM", vm)?;
        rec.put_s("resident_on", target);
        rec.put_i("domid", new);
        Ok(())
    })?;
    phase(&source, old, |_| None)
}

fn copy_vm_record(db: &mut Db, vm: &str, name: &str) -> ApiResult<String> {
    let mut rec = db.get("VM", vm)?.clone();
    rec.remove("uuid");
    rec.put_s("name_label", name);
    rec.put_s("power_state", "Halted");
    rec.put_s("resident_on", NULL_REF);
    rec.put_s("suspend_VDI", NULL_REF);
    rec.put_i("domid", -1);
    db.create("VM", rec)
}

/// `VM.clone`: every disk cloned with `vdi_clone`, or copied (vdi-copy sequence) when the SR's
/// driver lacks VDI_CLONE; VBDs recreated for the new VM.
pub fn clone(emu: &Emulator, ctx: &OpCtx, vm: &str, new_name: &str) -> ApiResult<String> {
    let _g = emu.locks.lock(&format!("vm:{vm}"));
    let ds = emu.read(|db| {
        let rec = db.get("VM", vm)?;
        if !rec.b("is_a_template") {
            expect_state(db, vm, "Halted")?;
        }
        disks(db, vm)
    })?;
    let mut new_disks = Vec::new();
    for (vbd, _, v, _) in &ds {
        let (sr, ty) = emu.read(|db| {
            let sr = db.get("VDI", v)?.s("SR");
            Ok((sr.clone(), super::sr_type(db, &sr)?))
        })?;
        let new = if emu.driver(&ty)?.has("VDI_CLONE") {
            vdi::snapshot_or_clone(emu, ctx, v, &BTreeMap::new(), false)?
        } else {
            vdi::copy(emu, ctx, v, &sr)?
        };
        new_disks.push((vbd.clone(), new));
    }
    emu.write(|db| {
        let new_vm = copy_vm_record(db, vm, new_name)?;
        for (vbd, vdi) in &new_disks {
            let mut rec = db.get("VBD", vbd)?.clone();
            rec.remove("uuid");
            rec.put_s("VM", &new_vm);
            rec.put_s("VDI", vdi);
            rec.put_b("currently_attached", false);
            db.create("VBD", rec)?;
        }
        Ok(new_vm)
    })
}

/// One `<disk .../>` of a template's `other_config:disks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionDisk {
    /// userdevice.
    pub device: String,
    /// Size in bytes.
    pub size: i64,
    /// bootable.
    pub bootable: bool,
    /// VDI type.
    pub ty: String,
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!("{name}=\"");
    let start = tag.find(&key)? + key.len();
    let end = tag[start..].find('"')? + start;
    Some(tag[start..end].to_string())
}

/// Parses `<provision><disk device=".." size=".." sr="" bootable=".." type=".."/>...</provision>`.
pub fn parse_provision(xml: &str) -> ApiResult<Vec<ProvisionDisk>> {
    let mut out = Vec::new();
    for tag in xml.split("<disk").skip(1) {
        let tag = tag.split('>').next().unwrap_or("");
        let bad = || ApiError::invalid_value("other_config:disks", xml);
        out.push(ProvisionDisk {
            device: attr(tag, "device").ok_or_else(bad)?,
            size: attr(tag, "size")
                .and_then(|s| s.parse().ok())
                .ok_or_else(bad)?,
            bootable: attr(tag, "bootable").is_some_and(|b| b == "true"),
            ty: attr(tag, "type").unwrap_or_else(|| "system".into()),
        });
    }
    Ok(out)
}

/// `VM.provision`: one VDI per template disk on `sr`, its VBD, then the installer: every disk
/// attached and activated, the boot sector written, every disk released.
pub fn provision(emu: &Emulator, ctx: &OpCtx, vm: &str, sr: &str) -> ApiResult<()> {
    let (spec, name, uuid) = emu.read(|db| {
        let rec = db.get("VM", vm)?;
        db.get("SR", sr)?;
        Ok((
            rec.map("other_config")
                .get("disks")
                .cloned()
                .unwrap_or_default(),
            rec.s("name_label"),
            rec.s("uuid"),
        ))
    })?;
    let wanted = parse_provision(&spec)?;
    let mut made = Vec::new();
    for d in &wanted {
        let v = vdi::create(
            emu,
            ctx,
            &VdiCreate {
                sr: sr.to_string(),
                virtual_size: d.size,
                name_label: format!("{name} {}", d.device),
                ty: d.ty.clone(),
                ..VdiCreate::default()
            },
        )?;
        vbd_create(
            emu,
            &VbdCreate {
                vm: vm.into(),
                vdi: v.clone(),
                userdevice: d.device.clone(),
                bootable: d.bootable,
                ..VbdCreate::default()
            },
        )?;
        made.push((v, d.bootable));
    }
    let host = emu.read(|db| super::sr_master_host(db, sr))?;
    let dp = format!("install/{uuid}");
    let mut result = Ok(());
    let mut attached = Vec::new();
    for (v, _) in &made {
        match emu.datapaths.set(
            emu,
            ctx,
            &host,
            v,
            &dp,
            Some(DpState::Activated { rw: true }),
        ) {
            Ok(()) => attached.push(v.clone()),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    if result.is_ok() {
        for (v, bootable) in &made {
            if *bootable {
                result = emu
                    .datapaths
                    .attach_info(&host, v)
                    .ok_or_else(|| ApiError::internal("no attach result"))
                    .and_then(|i| blockio::target(&i))
                    .and_then(|t| blockio::fill(emu, ctx, &host, &t, BOOT_PATTERN, 0, BOOT_SECTOR));
            }
        }
    }
    for v in attached {
        let r = emu.datapaths.set(emu, ctx, &host, &v, &dp, None);
        if result.is_ok() {
            result = r;
        }
    }
    result?;
    emu.write(|db| {
        let rec = db.get_mut("VM", vm)?;
        let mut oc = rec.map("other_config");
        oc.remove("disks");
        rec.put_map("other_config", &oc);
        Ok(())
    })
}

/// `xe vm-install`: the template cloned, provisioned on `sr`, and made a VM.
pub fn install(
    emu: &Emulator,
    ctx: &OpCtx,
    template: &str,
    new_name: &str,
    sr: &str,
) -> ApiResult<String> {
    let vm = emu.write(|db| {
        if !db.get("VM", template)?.b("is_a_template") {
            return Err(ApiError::not_allowed("vm-install needs a template"));
        }
        copy_vm_record(db, template, new_name)
    })?;
    if let Err(e) = provision(emu, ctx, &vm, sr) {
        if let Err(d) = destroy(emu, &vm) {
            tracing::warn!("removing the half-installed VM failed: {d}");
        }
        return Err(e);
    }
    emu.write(|db| {
        db.get_mut("VM", &vm)?.put_b("is_a_template", false);
        Ok(vm)
    })
}

/// `VM.destroy`: the record and its VBDs (disks stay).
pub fn destroy(emu: &Emulator, vm: &str) -> ApiResult<()> {
    emu.write(|db| {
        let s = db.get("VM", vm)?.s("power_state");
        if s != "Halted" {
            return Err(ApiError::bad_power_state(vm, "Halted", &s));
        }
        for vbd in db.where_eq("VBD", "VM", vm) {
            db.destroy("VBD", &vbd)?;
        }
        db.destroy("VM", vm).map(|_| ())
    })
}

/// `xe vm-uninstall`: a running VM is shut down first (`--force`), a suspended one loses its
/// image; then each disk no other VM uses is detached, deactivated and deleted (appendix A's
/// order), and the VM destroyed.
pub fn uninstall(emu: &Emulator, ctx: &OpCtx, vm: &str, force: bool) -> ApiResult<()> {
    let state = emu.read(|db| power_state(db, vm))?;
    match state.as_str() {
        "Halted" => {}
        "Running" if force => shutdown(emu, ctx, vm)?,
        "Suspended" if force => {
            let image = emu.read(|db| Ok(db.get("VM", vm)?.s("suspend_VDI")))?;
            if !is_null(&image) {
                vdi::delete_after(emu, ctx, &image, &[])?;
            }
            set_halted(emu, vm)?;
        }
        other => return Err(ApiError::bad_power_state(vm, "Halted", other)),
    }
    let own: Vec<String> = emu.read(|db| {
        let mut out = Vec::new();
        for (_, _, v, _) in disks(db, vm)? {
            let users: Vec<String> = db
                .where_eq("VBD", "VDI", &v)
                .into_iter()
                .filter_map(|b| db.get("VBD", &b).ok().map(|b| b.s("VM")))
                .collect();
            if users.iter().all(|u| u == vm) {
                out.push(v);
            }
        }
        Ok(out)
    })?;
    for v in own {
        vdi::delete_after(emu, ctx, &v, &["vdi_detach", "vdi_deactivate"])?;
    }
    destroy(emu, vm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_template_disks() {
        let d = parse_provision(
            r#"<provision><disk device="0" size="268435456" sr="" bootable="true" type="system"/><disk device="1" size="67108864" sr="" bootable="false" type="system"/></provision>"#,
        )
        .unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(
            d[0],
            ProvisionDisk {
                device: "0".into(),
                size: 256 << 20,
                bootable: true,
                ty: "system".into()
            }
        );
        assert!(!d[1].bootable);
        assert!(parse_provision(r#"<provision><disk size="x"/></provision>"#).is_err());
        assert!(parse_provision("").unwrap().is_empty());
    }

    #[test]
    fn image_pattern_is_never_zero() {
        assert_eq!(image_pattern("00ab"), 0xa5);
        assert_eq!(image_pattern("7f00"), 0x7f);
        assert_eq!(image_pattern(""), 0xa5);
    }
}
