//! The VDI calls of an LVM-based SR (snapshot and clone are in [`super::copy`]).
//!
//! - **vdi_create** rounds the size up to whole extents and reports that real size; it checks the
//!   VG's free space first (44 SRNoSpace, as is lvm2's own "insufficient free space"), creates
//!   `LV-<uuid>` zeroed at its start (no stale partition table or filesystem signature of an
//!   earlier VDI shows through) and leaves it inactive, then introduces the record; if that
//!   fails the LV is removed again.
//! - **vdi_attach** returns where the VDI will be served once vdi_activate activated the LV:
//!   where blktap is installed, sm's `params_nbd` link to the tapdisk's NBD socket (no
//!   `params`), else the LV's device node as `params` (`params_nbd` is "", as sm returns for
//!   `phy` VDIs). **vdi_detach** has nothing to undo.
//! - **vdi_activate** records this host in the VDI's sm_config (refusing a conflicting use by
//!   another host, fault 24), activates the LV (`lvchange -ay`) and starts a tapdisk `aio:` on
//!   it where blktap is installed; if a step fails the earlier ones are undone.
//!   **vdi_deactivate** ends the tapdisk, deactivates the LV and refuses while it is still open
//!   (fault 24: a device still in use keeps its mapping and its record), then removes the
//!   record.
//! - **vdi_resize** grows only (79 VDISize for a smaller size), rounded up to extents, checked
//!   against the free space (44).
//! - **vdi_delete** refuses an open LV (24), removes the LV and forgets the record; idempotent.
//! - **vdi_generate_config** / **vdi_attach_from_config** / **vdi_detach_from_config** work
//!   without xapi: the config carries device_config, attach activates the LV.

use std::collections::BTreeMap;

use sm_core::driver::{Ctx, VdiCreate};
use sm_core::errors::{SmCode, SmError, SmResult};
use sm_core::ids::VdiUuid;
use sm_core::lvm::{Failure, Lv, LvCreate, LvmError, LvmOp, Vg};
use sm_core::response::{AttachInfo, VdiLocation};
use sm_core::xenapi::VdiIntroduce;

use hostio::nbd::Cache;
use hostio::serve::{Datapath, Kind, Open};
use hostio::tapdisk::ImageType;

use super::{SrVg, layout};
use crate::activation;
use crate::datapath;
use crate::static_vdi;
use crate::vdi_record::{
    check_xml_legal, forget, introduce_args, new_vdi_uuid, sm_config_with, sr_ref_without, vdi_ref,
};

/// The location of the call's VDI (`vdi_location`, else its uuid), checked.
pub fn location(cx: &Ctx<'_>) -> SmResult<VdiUuid> {
    match cx.req.vdi_location.as_deref().filter(|l| !l.is_empty()) {
        Some(l) => layout::check_location(l),
        None => cx.vdi_uuid(),
    }
}

/// Fault 144 VDIMissing for the LV of `loc`.
fn missing(sr: &SrVg<'_>, loc: &VdiUuid) -> SmError {
    SmError::msg(
        SmCode::VDIMissing,
        format!("no logical volume {}/{}", sr.name, layout::lv_name(loc)),
    )
}

/// The call's VDI's LV in `vg` (fault 144 when it is gone).
pub fn require_lv<'v>(sr: &SrVg<'_>, vg: &'v Vg, loc: &VdiUuid) -> SmResult<&'v Lv> {
    vg.lv(&layout::lv_name(loc)).ok_or_else(|| missing(sr, loc))
}

/// An lvm2 failure on the call's LV: a missing LV is fault 144, a busy one 24.
fn lv_error(sr: &SrVg<'_>, loc: &VdiUuid, e: LvmError) -> SmError {
    match e.failure() {
        Some(Failure::NotFound) => missing(sr, loc),
        Some(Failure::InUse) => SmError::new(SmCode::VDIInUse, e),
        _ => e.into(),
    }
}

/// `bytes` as a VDI size in this VG: more than 0, rounded up to whole extents (fault 79).
fn vdi_size(vg: &Vg, bytes: u64) -> SmResult<u64> {
    match vg.round_up(bytes) {
        Some(r) if bytes > 0 => Ok(r),
        _ => Err(SmError::msg(
            SmCode::VDISize,
            format!("{bytes} bytes: a VDI must be larger than 0 bytes and fit the volume group"),
        )),
    }
}

/// Fault 44 unless the VG has `need` free bytes.
pub fn require_free(vg: &Vg, need: u64, what: &str) -> SmResult<()> {
    if need <= vg.free {
        Ok(())
    } else {
        Err(SmError::msg(
            SmCode::SRNoSpace,
            format!(
                "{what} needs {need} bytes; volume group {} has {} bytes free",
                vg.name, vg.free
            ),
        ))
    }
}

fn sm_config(extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    sm_config_with(extra, layout::SM_CONFIG_VDI_TYPE)
}

/// vdi_create.
pub fn create(cx: &Ctx<'_>, sr: &SrVg<'_>, args: &VdiCreate) -> SmResult<VdiLocation> {
    check_xml_legal("name", &args.name_label)?;
    check_xml_legal("description", &args.name_description)?;
    sr.require_master(LvmOp::LvCreate)?;
    let x = cx.xapi()?;
    let sr_ref = cx.sr_ref()?;
    let vg = sr.require()?;
    let size = vdi_size(&vg, args.size)?;
    let uuid = new_vdi_uuid(cx)?;
    let lv = layout::lv_name(&uuid);
    if vg.lv(&lv).is_some() {
        return Err(SmError::msg(
            SmCode::VDIExists,
            format!("logical volume {}/{lv} exists", sr.name),
        ));
    }
    require_free(&vg, size, "the new VDI")?;
    sr.lvm
        .lv_create(&sr.name, &lv, size, &LvCreate::default())?;
    let made = sr
        .lvm
        .lv_activate(&sr.name, &lv, false)
        .map_err(SmError::from)
        .and_then(|()| {
            let mut rec = VdiIntroduce::new(uuid.as_str(), &sr_ref, uuid.as_str());
            rec.name_label = args.name_label.clone();
            rec.name_description = args.name_description.clone();
            rec.ty = args.vdi_type.clone();
            rec.read_only = args.read_only;
            rec.sm_config = sm_config(&cx.req.vdi_sm_config);
            rec.virtual_size = size;
            rec.physical_utilisation = size;
            rec.metadata_of_pool = args.metadata_of_pool.clone();
            rec.is_a_snapshot = args.is_a_snapshot;
            rec.snapshot_time = args.snapshot_time.clone();
            rec.snapshot_of = args.snapshot_of.clone();
            x.vdi_db_introduce(&rec)
                .map_err(|e| SmError::new(SmCode::VDICreate, e))
        });
    if let Err(e) = made {
        if let Err(undo) = sr.lvm.lv_remove(&sr.name, &lv) {
            tracing::warn!(lv, "cannot remove the new LV after a failed create: {undo}");
        }
        return Err(e);
    }
    Ok(VdiLocation {
        uuid: uuid.to_string(),
        location: uuid.to_string(),
    })
}

/// vdi_delete.
pub fn delete(cx: &Ctx<'_>, sr: &SrVg<'_>) -> SmResult<()> {
    sr.require_master(LvmOp::LvRemove)?;
    cx.xapi()?;
    let loc = location(cx)?;
    let lv = layout::lv_name(&loc);
    let vg = sr.require()?;
    if let Some(l) = vg.lv(&lv) {
        if l.attr.is_open() {
            return Err(SmError::msg(
                SmCode::VDIInUse,
                format!("{}/{lv} is open on this host", sr.name),
            ));
        }
        sr.lvm
            .lv_remove(&sr.name, &lv)
            .map_err(|e| lv_error(sr, &loc, e))?;
    }
    forget(cx)
}

fn attach_info(sr: &SrVg<'_>, loc: &VdiUuid) -> AttachInfo {
    AttachInfo {
        params: Some(sr.lv_path(&layout::lv_name(loc)).display().to_string()),
        params_nbd: String::new(),
        o_direct: true,
        o_direct_reason: String::new(),
        xenstore_data: BTreeMap::new(),
    }
}

/// The datapath of the LV of `loc` (a tapdisk `aio:` on its device node where blktap is
/// installed, else the node itself) and the tapdisk serving it, if one does.
fn datapath(cx: &Ctx<'_>, sr: &SrVg<'_>, loc: &VdiUuid) -> SmResult<(Datapath, Option<Open>)> {
    Datapath::lookup(
        cx.host.runner.as_ref(),
        &cx.host.paths,
        cx.sr_uuid()?.as_str(),
        cx.vdi_uuid()?.as_str(),
        ImageType::Aio,
        &sr.lv_path(&layout::lv_name(loc)),
    )
    .map_err(|e| SmError::new(SmCode::VDIUnavailable, e))
}

/// vdi_attach: where the VDI will be once vdi_activate activated its LV (checked to exist in
/// the VG): the `params_nbd` link to its tapdisk where blktap is installed (and sm's backend
/// node in `params` on a blktap2 host), else the LV's device node in `params`.
pub fn attach(cx: &Ctx<'_>, sr: &SrVg<'_>) -> SmResult<AttachInfo> {
    let loc = location(cx)?;
    let vg = sr.require()?;
    require_lv(sr, &vg, &loc)?;
    let (dp, _) = datapath(cx, sr, &loc)?;
    tracing::info!(server = dp.kind().name(), params = ?dp.params(), params_nbd = %dp.uri(), "vdi_attach: datapath");
    Ok(AttachInfo {
        params: dp.params(),
        params_nbd: dp.uri(),
        ..attach_info(sr, &loc)
    })
}

/// vdi_detach: nothing to undo (activation is vdi_activate's).
pub fn detach(cx: &Ctx<'_>) -> SmResult<()> {
    location(cx).map(|_| ())
}

/// Deactivates the LV and removes the activation record after a failed activation.
fn undo_activation(cx: &Ctx<'_>, sr: &SrVg<'_>, lv: &str, record: bool) {
    if let Err(undo) = sr.lvm.lv_activate(&sr.name, lv, false) {
        tracing::warn!(
            lv,
            "cannot deactivate the LV after a failed activation: {undo}"
        );
    }
    if record && let Err(undo) = activation::deactivate(cx) {
        tracing::warn!("cannot undo the activation record after a failed activation: {undo}");
    }
}

/// vdi_activate: the activation record, the LV active, and its tapdisk started (read-only
/// unless `writable`) where blktap is installed. A VDI open read-only on this host is not
/// re-opened writable (24).
pub fn activate(cx: &Ctx<'_>, sr: &SrVg<'_>, writable: bool) -> SmResult<()> {
    let loc = location(cx)?;
    let lv = layout::lv_name(&loc);
    let (dp, open) = datapath(cx, sr, &loc)?;
    if open.as_ref().is_some_and(|o| o.read_only && writable) {
        return Err(SmError::msg(
            SmCode::VDIInUse,
            "already open read-only on this host",
        ));
    }
    let record = cx.has_session();
    if record {
        activation::activate(cx, writable)?;
    }
    if let Err(e) = sr.lvm.lv_activate(&sr.name, &lv, true) {
        if record && let Err(undo) = activation::deactivate(cx) {
            tracing::warn!("cannot undo the activation record after a failed activation: {undo}");
        }
        return Err(lv_error(sr, &loc, e));
    }
    if dp.kind() == Kind::Tapdisk && open.is_none() {
        match dp.start(cx.host.runner.as_ref(), !writable, Cache::Direct) {
            Ok(o) => tracing::info!(pid = o.pid, socket = %o.socket.display(), "tapdisk started"),
            Err(e) => {
                undo_activation(cx, sr, &lv, record);
                return Err(SmError::new(SmCode::VDIUnavailable, e));
            }
        }
    }
    Ok(())
}

/// vdi_deactivate: refused while the tapdisk has clients (24); the tapdisk ended (if one serves
/// the LV), the LV deactivated (refused while
/// something else still holds it open, fault 24), then the activation record removed.
pub fn deactivate(cx: &Ctx<'_>, sr: &SrVg<'_>) -> SmResult<()> {
    let loc = location(cx)?;
    let lv = layout::lv_name(&loc);
    let (dp, open) = datapath(cx, sr, &loc)?;
    datapath::refuse_if_served(&dp, open.as_ref())?;
    dp.stop(cx.host.runner.as_ref(), open.as_ref())
        .map_err(|e| SmError::new(SmCode::VDIUnavailable, e))?;
    match sr.lvm.lv_activate(&sr.name, &lv, false) {
        Ok(()) => {}
        Err(e) if e.is_not_found() => {
            tracing::warn!(lv, "deactivating a VDI whose LV is gone");
        }
        Err(e) => return Err(lv_error(sr, &loc, e)),
    }
    if cx.has_session() {
        activation::deactivate(cx)?;
    }
    Ok(())
}

/// Writes the LV's size into the VDI record.
fn refresh_record(cx: &Ctx<'_>, size: u64) -> SmResult<()> {
    let x = cx.xapi()?;
    let vdi = vdi_ref(cx)?;
    x.vdi_set_virtual_size(&vdi, size)?;
    x.vdi_set_physical_utilisation(&vdi, size)?;
    Ok(())
}

/// vdi_resize: grows the LV.
pub fn resize(cx: &Ctx<'_>, sr: &SrVg<'_>, new_size: u64) -> SmResult<VdiLocation> {
    sr.require_master(LvmOp::LvResize)?;
    let loc = location(cx)?;
    let lv = layout::lv_name(&loc);
    let vg = sr.require()?;
    let current = require_lv(sr, &vg, &loc)?.size;
    let size = vdi_size(&vg, new_size)?;
    if size < current {
        return Err(SmError::msg(
            SmCode::VDISize,
            format!("shrinking from {current} to {new_size} bytes is not supported"),
        ));
    }
    if size > current {
        require_free(&vg, size - current, "growing the VDI")?;
        sr.lvm
            .lv_extend(&sr.name, &lv, size)
            .map_err(|e| lv_error(sr, &loc, e))?;
    }
    if cx.has_session() {
        refresh_record(cx, size)?;
    }
    Ok(VdiLocation {
        uuid: cx.vdi_uuid()?.to_string(),
        location: loc.to_string(),
    })
}

/// vdi_update: the record's sizes from the LV.
pub fn update(cx: &Ctx<'_>, sr: &SrVg<'_>) -> SmResult<()> {
    let loc = location(cx)?;
    let vg = sr.require()?;
    let size = require_lv(sr, &vg, &loc)?.size;
    refresh_record(cx, size)
}

/// vdi_introduce: registers the LV of `vdi_location` under `new_uuid`.
pub fn introduce(cx: &Ctx<'_>, sr: &SrVg<'_>) -> SmResult<VdiLocation> {
    let (new_uuid, loc) = introduce_args(cx)?;
    let loc = layout::check_location(loc)?;
    let vg = sr.require()?;
    let size = match vg.lv(&layout::lv_name(&loc)) {
        Some(l) if !l.attr.is_snapshot() => l.size,
        _ => {
            return Err(SmError::msg(
                SmCode::VDILoad,
                format!("no logical volume {}/{}", sr.name, layout::lv_name(&loc)),
            ));
        }
    };
    let x = cx.xapi()?;
    let sr_ref = sr_ref_without(cx, loc.as_str())?;
    let mut rec = VdiIntroduce::new(new_uuid.as_str(), &sr_ref, loc.as_str());
    rec.sm_config = sm_config(&cx.req.vdi_sm_config);
    rec.virtual_size = size;
    rec.physical_utilisation = size;
    x.vdi_db_introduce(&rec)
        .map_err(|e| SmError::new(SmCode::VDICreate, e))?;
    Ok(VdiLocation {
        uuid: new_uuid.to_string(),
        location: loc.to_string(),
    })
}

/// vdi_generate_config.
pub fn generate_config(
    cx: &Ctx<'_>,
    sr: &SrVg<'_>,
    device_config: &std::collections::BTreeMap<String, String>,
) -> SmResult<String> {
    let loc = location(cx)?;
    let vg = sr.require()?;
    require_lv(sr, &vg, &loc)?;
    static_vdi::generate_config_with(cx, loc.as_str(), device_config)
}

/// vdi_attach_from_config: activates the LV and returns its device node (no session).
pub fn attach_from_config(cx: &Ctx<'_>, sr: &SrVg<'_>) -> SmResult<AttachInfo> {
    let loc = location(cx)?;
    sr.lvm
        .lv_activate(&sr.name, &layout::lv_name(&loc), true)
        .map_err(|e| lv_error(sr, &loc, e))?;
    Ok(attach_info(sr, &loc))
}

/// vdi_detach_from_config: deactivates the LV. Idempotent.
pub fn detach_from_config(cx: &Ctx<'_>, sr: &SrVg<'_>) -> SmResult<()> {
    let loc = location(cx)?;
    match sr.lvm.lv_activate(&sr.name, &layout::lv_name(&loc), false) {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(lv_error(sr, &loc, e)),
    }
}
