//! VDI operations.
//!
//! | operation | SMAPI calls |
//! |---|---|
//! | VDI.create | `vdi_create` on the SR master (the plugin introduces the record) |
//! | VDI.destroy | `vdi_detach`, `vdi_delete` (appendix A, literally) |
//! | VDI.forget | none |
//! | VDI.introduce | `vdi_introduce` |
//! | VDI.copy | `vdi_create`; `vdi_attach`+`vdi_activate` of source and copy; the data copied; `vdi_deactivate`+`vdi_detach` of both |
//! | VDI.snapshot / VDI.clone | `vdi_snapshot` / `vdi_clone`, then `vdi_update` when the driver has VDI_UPDATE |
//! | VDI.resize | `vdi_resize` |

use std::collections::BTreeMap;

use sm_core::xmlrpc::Value;

use super::blockio;
use super::datapath::DpState;
use super::{assert_plugged, require_cap, sr_master_host, vdi_call, xapi_now};
use crate::db::schema::{EPOCH, NULL_REF};
use crate::db::{Db, Record, RecordExt};
use crate::emulator::{Emulator, OpCtx};
use crate::error::{ApiError, ApiResult, names};
use crate::smexec::SmCall;

/// What VDI.create takes.
#[derive(Debug, Clone, Default)]
pub struct VdiCreate {
    /// The SR.
    pub sr: String,
    /// virtual_size in bytes.
    pub virtual_size: i64,
    /// name_label.
    pub name_label: String,
    /// name_description.
    pub name_description: String,
    /// type (`user`, `system`, `suspend`, ...).
    pub ty: String,
    /// sharable.
    pub sharable: bool,
    /// read_only.
    pub read_only: bool,
    /// other_config.
    pub other_config: BTreeMap<String, String>,
    /// xenstore_data.
    pub xenstore_data: BTreeMap<String, String>,
    /// sm_config (passed as `vdi_sm_config`).
    pub sm_config: BTreeMap<String, String>,
}

fn location_result(v: &Value, command: &str) -> ApiResult<(String, String)> {
    let m = v.as_struct();
    let get = |k: &str| m.and_then(|m| m.get(k)).map(Value::to_text);
    match (get("uuid"), get("location")) {
        (Some(u), Some(l)) => Ok((u, l)),
        _ => Err(ApiError::new(
            names::SR_BACKEND_FAILURE,
            [
                String::new(),
                format!("XML parse failure: {command} result {v:?}"),
                "<struct> missing field: location".into(),
            ],
        )),
    }
}

/// The VDI of `sr` at `location`.
fn by_location(db: &Db, sr: &str, location: &str) -> ApiResult<String> {
    db.find("VDI", |v| v.s("SR") == sr && v.s("location") == location)
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::new("VDI_LOCATION_MISSING", [sr, location]))
}

fn master_for(emu: &Emulator, sr: &str) -> ApiResult<(String, String)> {
    emu.read(|db| {
        let host = sr_master_host(db, sr)?;
        assert_plugged(db, &host, sr)?;
        Ok((host, super::sr_type(db, sr)?))
    })
}

/// `VDI.create`: `vdi_create` on the SR master, then the fields the plugin does not set.
pub fn create(emu: &Emulator, ctx: &OpCtx, a: &VdiCreate) -> ApiResult<String> {
    let (host, ty) = master_for(emu, &a.sr)?;
    require_cap(emu, &ty, &a.sr, "VDI_CREATE")?;
    let (_, mut call) = emu.read(|db| {
        super::sr_call(
            db,
            &host,
            &a.sr,
            "vdi_create",
            vec![
                a.virtual_size.to_string(),
                a.name_label.clone(),
                a.name_description.clone(),
                NULL_REF.to_string(),
                "false".to_string(),
                EPOCH.to_string(),
                String::new(),
                a.read_only.to_string(),
            ],
        )
    })?;
    call.vdi_type = Some(if a.ty.is_empty() {
        "user".to_string()
    } else {
        a.ty.clone()
    });
    call.vdi_sm_config = Some(a.sm_config.clone());
    let v = emu.smapi(ctx, &host, &ty, call)?;
    let (uuid, _) = location_result(&v, "vdi_create")?;
    emu.write(|db| {
        let r = db.by_uuid("VDI", &uuid)?;
        let rec = db.get_mut("VDI", &r)?;
        if rec.s("name_label").is_empty() {
            rec.put_s("name_label", &a.name_label);
        }
        let mut oc = rec.map("other_config");
        oc.extend(a.other_config.clone());
        rec.put_map("other_config", &oc);
        rec.put_map("xenstore_data", &a.xenstore_data);
        rec.put_b("sharable", a.sharable);
        Ok(r)
    })
}

fn assert_not_plugged(db: &Db, vdi: &str, op: &str) -> ApiResult<()> {
    for vbd in db.where_eq("VBD", "VDI", vdi) {
        if db.get("VBD", &vbd)?.b("currently_attached") {
            return Err(ApiError::new(names::VDI_IN_USE, [vdi, op]));
        }
    }
    Ok(())
}

/// Removes a VDI's record, its VBDs and its datapath state (after a successful delete).
fn drop_record(emu: &Emulator, vdi: &str) -> ApiResult<()> {
    emu.write(|db| {
        for vbd in db.where_eq("VBD", "VDI", vdi) {
            db.destroy("VBD", &vbd)?;
        }
        if db.exists("VDI", vdi) {
            db.destroy("VDI", vdi)?;
        }
        Ok(())
    })?;
    emu.datapaths.forget(vdi);
    Ok(())
}

/// Deletes a VDI on the SR master after the calls in `before` (`vdi_detach`, `vdi_deactivate`
/// as appendix A lists them for vdi-destroy and vm-uninstall; `vdi_deactivate` only with the
/// VDI_DEACTIVATE capability).
pub fn delete_after(emu: &Emulator, ctx: &OpCtx, vdi: &str, before: &[&str]) -> ApiResult<()> {
    let (sr, managed) = emu.read(|db| {
        let v = db.get("VDI", vdi)?;
        assert_not_plugged(db, vdi, "destroy")?;
        Ok((v.s("SR"), v.b("managed")))
    })?;
    if !managed {
        return Err(ApiError::new(names::VDI_NOT_MANAGED, [vdi]));
    }
    let (host, ty) = master_for(emu, &sr)?;
    require_cap(emu, &ty, &sr, "VDI_DELETE")?;
    if !emu.datapaths.hosts_using(vdi).is_empty() {
        return Err(ApiError::new(names::VDI_IN_USE, [vdi, "destroy"]));
    }
    let driver = emu.driver(&ty)?;
    let _g = emu.locks.lock(&format!("vdi:{host}:{vdi}"));
    for command in before.iter().copied().chain(["vdi_delete"]) {
        if command == "vdi_deactivate" && !driver.has("VDI_DEACTIVATE") {
            continue;
        }
        let (ty, c) = emu.read(|db| vdi_call(db, &host, vdi, command, vec![]))?;
        emu.smapi(ctx, &host, &ty, c)?;
    }
    drop(_g);
    drop_record(emu, vdi)
}

/// `VDI.destroy`: `vdi_detach` then `vdi_delete`, as appendix A says.
pub fn destroy(emu: &Emulator, ctx: &OpCtx, vdi: &str) -> ApiResult<()> {
    delete_after(emu, ctx, vdi, &["vdi_detach"])
}

/// `VDI.forget`: the record goes, the data stays.
pub fn forget(emu: &Emulator, vdi: &str) -> ApiResult<()> {
    emu.read(|db| {
        db.get("VDI", vdi)?;
        assert_not_plugged(db, vdi, "forget")
    })?;
    drop_record(emu, vdi)
}

/// What VDI.introduce takes (beyond the SR and location).
#[derive(Debug, Clone, Default)]
pub struct VdiIntroduce {
    /// uuid to use ("" for a fresh one).
    pub uuid: String,
    /// The SR.
    pub sr: String,
    /// location.
    pub location: String,
    /// name_label.
    pub name_label: String,
    /// name_description.
    pub name_description: String,
    /// type.
    pub ty: String,
    /// sm_config (passed as `vdi_sm_config`).
    pub sm_config: BTreeMap<String, String>,
    /// other_config.
    pub other_config: BTreeMap<String, String>,
}

/// `VDI.introduce`: `vdi_introduce` with `new_uuid`, `vdi_location` and `vdi_sm_config`; the
/// plugin registers the record.
pub fn introduce(emu: &Emulator, ctx: &OpCtx, a: &VdiIntroduce) -> ApiResult<String> {
    let (host, ty) = master_for(emu, &a.sr)?;
    require_cap(emu, &ty, &a.sr, "VDI_INTRODUCE")?;
    let uuid = if a.uuid.is_empty() {
        crate::db::new_uuid()
    } else {
        a.uuid.clone()
    };
    if emu.read(|db| Ok(db.by_uuid("VDI", &uuid).is_ok()))? {
        return Err(ApiError::new(names::INVALID_VALUE, ["uuid", uuid.as_str()]));
    }
    let (_, mut call) = emu.read(|db| super::sr_call(db, &host, &a.sr, "vdi_introduce", vec![]))?;
    call.new_uuid = Some(uuid.clone());
    call.vdi_location = Some(a.location.clone());
    call.vdi_sm_config = Some(a.sm_config.clone());
    let v = emu.smapi(ctx, &host, &ty, call)?;
    let (new_uuid, location) = location_result(&v, "vdi_introduce")?;
    emu.write(|db| {
        let r = db
            .by_uuid("VDI", &new_uuid)
            .or_else(|_| by_location(db, &a.sr, &location))?;
        let rec = db.get_mut("VDI", &r)?;
        if !a.name_label.is_empty() {
            rec.put_s("name_label", &a.name_label);
        }
        if !a.name_description.is_empty() {
            rec.put_s("name_description", &a.name_description);
        }
        if !a.ty.is_empty() {
            rec.put_s("type", &a.ty);
        }
        let mut oc = rec.map("other_config");
        oc.extend(a.other_config.clone());
        rec.put_map("other_config", &oc);
        Ok(r)
    })
}

/// `VDI.snapshot` (`snapshot = true`) or `VDI.clone`: the plugin's call with `driver_params`,
/// the new record found by location and named after its source, then `vdi_update`.
pub fn snapshot_or_clone(
    emu: &Emulator,
    ctx: &OpCtx,
    vdi: &str,
    driver_params: &BTreeMap<String, String>,
    snapshot: bool,
) -> ApiResult<String> {
    let (sr, src) = emu.read(|db| {
        let v = db.get("VDI", vdi)?;
        Ok((v.s("SR"), v.clone()))
    })?;
    let (host, ty) = master_for(emu, &sr)?;
    let (cap, command) = if snapshot {
        ("VDI_SNAPSHOT", "vdi_snapshot")
    } else {
        ("VDI_CLONE", "vdi_clone")
    };
    require_cap(emu, &ty, &sr, cap)?;
    let (_, mut call) = emu.read(|db| vdi_call(db, &host, vdi, command, vec![]))?;
    call.driver_params = Some(driver_params.clone());
    let v = emu.smapi(ctx, &host, &ty, call)?;
    let (_, location) = location_result(&v, command)?;
    let new = emu.write(|db| {
        let r = by_location(db, &sr, &location)?;
        let rec = db.get_mut("VDI", &r)?;
        rec.put_s("name_label", src.s("name_label"));
        rec.put_s("name_description", src.s("name_description"));
        if snapshot {
            rec.put_b("is_a_snapshot", true);
            rec.put_s("snapshot_of", vdi);
            rec.put_s("snapshot_time", xapi_now());
        }
        Ok(r)
    })?;
    if emu.driver(&ty)?.has("VDI_UPDATE") {
        let (ty, c) = emu.read(|db| vdi_call(db, &host, &new, "vdi_update", vec![]))?;
        match emu.smapi(ctx, &host, &ty, c) {
            Err(e) if e.code == names::UNIMPLEMENTED_IN_SM_BACKEND => {}
            other => {
                other?;
            }
        }
    }
    Ok(new)
}

/// `VDI.generate_config(host, vdi)`: `vdi_generate_config` on `host`, which must have the SR
/// plugged; the plugin's string (a `vdi_attach_from_config` methodCall) is returned as is, as
/// static-vdis and HA store it.
pub fn generate_config(emu: &Emulator, ctx: &OpCtx, host: &str, vdi: &str) -> ApiResult<String> {
    let (sr, (ty, call)) = emu.read(|db| {
        let sr = db.get("VDI", vdi)?.s("SR");
        assert_plugged(db, host, &sr)?;
        Ok((
            sr,
            vdi_call(db, host, vdi, "vdi_generate_config", Vec::new())?,
        ))
    })?;
    require_cap(emu, &ty, &sr, "VDI_GENERATE_CONFIG")?;
    Ok(emu.smapi(ctx, host, &ty, call)?.to_text())
}

/// `VDI.resize`: `vdi_resize` on the SR master; the plugin updates virtual_size.
pub fn resize(emu: &Emulator, ctx: &OpCtx, vdi: &str, size: i64) -> ApiResult<()> {
    let sr = emu.read(|db| Ok(db.get("VDI", vdi)?.s("SR")))?;
    let (host, ty) = master_for(emu, &sr)?;
    require_cap(emu, &ty, &sr, "VDI_RESIZE")?;
    let (_, call) =
        emu.read(|db| vdi_call(db, &host, vdi, "vdi_resize", vec![size.to_string()]))?;
    let v = emu.smapi(ctx, &host, &ty, call)?;
    location_result(&v, "vdi_resize").map(|_| ())
}

/// A host on which both SRs are plugged, the pool master preferred.
fn host_seeing(emu: &Emulator, a: &str, b: &str) -> ApiResult<String> {
    emu.read(|db| {
        emu.hosts()
            .iter()
            .map(|h| h.r.clone())
            .find(|h| assert_plugged(db, h, a).is_ok() && assert_plugged(db, h, b).is_ok())
            .ok_or_else(|| ApiError::new(names::SR_NO_PBDS, [a]))
    })
}

/// Copies a VDI into a new VDI of `sr` (appendix A's vdi-copy, and vm-clone without VDI_CLONE):
/// `vdi_create`; attach and activate the source (read-only) and the copy; the data copied with
/// `qemu-img convert`; deactivate and detach both. Returns the new VDI.
pub fn copy(emu: &Emulator, ctx: &OpCtx, vdi: &str, sr: &str) -> ApiResult<String> {
    let src = emu.read(|db| db.get("VDI", vdi).cloned())?;
    let host = host_seeing(emu, &src.s("SR"), sr)?;
    let dst = create(
        emu,
        ctx,
        &VdiCreate {
            sr: sr.to_string(),
            virtual_size: src.i("virtual_size"),
            name_label: src.s("name_label"),
            name_description: src.s("name_description"),
            ty: src.s("type"),
            ..VdiCreate::default()
        },
    )?;
    let dp = format!(
        "copy/{}",
        ctx.task.clone().unwrap_or_else(crate::db::new_ref)
    );
    let dps = &emu.datapaths;
    let attached = (|| -> ApiResult<(String, String)> {
        dps.set(
            emu,
            ctx,
            &host,
            vdi,
            &dp,
            Some(DpState::Activated { rw: false }),
        )?;
        dps.set(
            emu,
            ctx,
            &host,
            &dst,
            &dp,
            Some(DpState::Activated { rw: true }),
        )?;
        let s = dps
            .attach_info(&host, vdi)
            .ok_or_else(|| ApiError::internal("source has no attach result"))?;
        let d = dps
            .attach_info(&host, &dst)
            .ok_or_else(|| ApiError::internal("copy has no attach result"))?;
        Ok((blockio::target(&s)?, blockio::target(&d)?))
    })();
    let copied = attached.and_then(|(s, d)| blockio::copy(emu, ctx, &host, &s, &d));
    let released_dst = dps.set(emu, ctx, &host, &dst, &dp, None);
    let released_src = dps.set(emu, ctx, &host, vdi, &dp, None);
    if let Err(e) = copied.and(released_dst).and(released_src) {
        if let Err(d) = delete_after(emu, ctx, &dst, &[]) {
            tracing::warn!("removing the failed copy {dst} failed: {d}");
        }
        return Err(e);
    }
    Ok(dst)
}

/// `VDI.db_introduce`: a record built from the 19 positional arguments; the location must be
/// unique within the SR.
pub fn db_introduce(emu: &Emulator, args: &[Value]) -> ApiResult<String> {
    let class =
        crate::db::schema::class("VDI").ok_or_else(|| ApiError::internal("no VDI class"))?;
    let mut rec = Record::new();
    for (name, v) in sm_core::xenapi::DB_INTRODUCE_FIELDS.iter().zip(args) {
        let f = class
            .field(name)
            .ok_or_else(|| ApiError::internal(format!("no VDI field {name}")))?;
        rec.insert((*name).to_string(), f.from_value("VDI", v)?);
    }
    emu.write(|db| {
        let sr = rec.s("SR");
        db.get("SR", &sr)?;
        let uuid = rec.s("uuid");
        if !uuid.is_empty() && db.by_uuid("VDI", &uuid).is_ok() {
            return Err(ApiError::new(names::INVALID_VALUE, ["uuid", uuid.as_str()]));
        }
        let loc = rec.s("location");
        if by_location(db, &sr, &loc).is_ok() {
            return Err(ApiError::new(
                names::LOCATION_NOT_UNIQUE,
                [sr.as_str(), loc.as_str()],
            ));
        }
        db.create("VDI", rec)
    })
}

/// A call that is not tied to a VDI record (used by tests to drive plugins directly).
pub fn raw_call(
    emu: &Emulator,
    ctx: &OpCtx,
    host: &str,
    vdi: &str,
    command: &str,
    args: Vec<String>,
) -> ApiResult<Value> {
    let (ty, c): (String, SmCall) = emu.read(|db| vdi_call(db, host, vdi, command, args))?;
    emu.smapi(ctx, host, &ty, c)
}
