//! SR and PBD operations.
//!
//! | operation | SMAPI calls (appendix A) |
//! |---|---|
//! | SR.create | `sr_create` on the chosen host, then `sr_attach` per PBD |
//! | SR.introduce, SR.forget, PBD.create, PBD.destroy | none |
//! | SR.destroy | `sr_attach`, `sr_delete` on the SR master (`sr_detach` only if the delete failed) |
//! | SR.scan / SR.probe / SR.update | `sr_scan` / `sr_probe` / `sr_update` |
//! | PBD.plug | `sr_attach`; none when already plugged |
//! | PBD.unplug | `sr_detach`; none when already unplugged |

use std::collections::BTreeMap;

use sm_core::xmlrpc::Value;

use super::{assert_plugged, pbd_of, require_cap, sr_call, sr_master_host};
use crate::db::{Db, Record, RecordExt};
use crate::emulator::{Emulator, OpCtx};
use crate::error::{ApiError, ApiResult, names};
use crate::smexec::SmCall;

/// Moves every device_config key ending in `password` into a secret, leaving
/// `<key>_secret = <secret uuid>` (`Xapi_secret.move_passwds_to_secrets`).
pub fn move_passwords_to_secrets(
    db: &mut Db,
    dc: &BTreeMap<String, String>,
) -> ApiResult<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (k, v) in dc {
        if k.ends_with("password") {
            let mut s = Record::new();
            s.put_s("value", v);
            let r = db.create("secret", s)?;
            out.insert(format!("{k}_secret"), db.get("secret", &r)?.s("uuid"));
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    Ok(out)
}

/// What SR.create takes.
#[derive(Debug, Clone, Default)]
pub struct SrCreate {
    /// The host that runs `sr_create`.
    pub host: String,
    /// device_config.
    pub device_config: BTreeMap<String, String>,
    /// physical_size (passed to sr_create).
    pub physical_size: i64,
    /// name_label.
    pub name_label: String,
    /// name_description.
    pub name_description: String,
    /// SR type.
    pub ty: String,
    /// content_type.
    pub content_type: String,
    /// Whether every host gets a PBD.
    pub shared: bool,
    /// sm_config.
    pub sm_config: BTreeMap<String, String>,
}

/// `SR.create`: the record, `sr_create`, one PBD per host (all hosts when shared), each plugged.
pub fn create(emu: &Emulator, ctx: &OpCtx, a: &SrCreate) -> ApiResult<String> {
    emu.driver(&a.ty)?;
    emu.host(&a.host)?;
    let (sr, dc) = emu.write(|db| {
        let dc = move_passwords_to_secrets(db, &a.device_config)?;
        let mut rec = Record::new();
        rec.put_s("name_label", &a.name_label);
        rec.put_s("name_description", &a.name_description);
        rec.put_s("type", &a.ty);
        rec.put_s("content_type", &a.content_type);
        rec.put_b("shared", a.shared);
        rec.put_i("physical_size", a.physical_size);
        rec.put_map("sm_config", &a.sm_config);
        Ok((db.create("SR", rec)?, dc))
    })?;
    let sr_uuid = emu.read(|db| Ok(db.get("SR", &sr)?.s("uuid")))?;
    let mut call = SmCall::new("sr_create", &a.host, vec![a.physical_size.to_string()]);
    call.device_config = dc.clone();
    call.device_config.insert("SRmaster".into(), "true".into());
    call.sr_ref = Some(sr.clone());
    call.sr_uuid = Some(sr_uuid);
    if let Err(e) = emu.smapi(ctx, &a.host, &a.ty, call) {
        emu.write(|db| db.destroy("SR", &sr).map(|_| ()))?;
        return Err(e);
    }
    let hosts: Vec<String> = if a.shared {
        emu.hosts().iter().map(|h| h.r.clone()).collect()
    } else {
        vec![a.host.clone()]
    };
    let pbds = emu.write(|db| {
        hosts
            .iter()
            .map(|h| {
                let mut p = Record::new();
                p.put_s("host", h);
                p.put_s("SR", &sr);
                p.put_map("device_config", &dc);
                db.create("PBD", p)
            })
            .collect::<ApiResult<Vec<_>>>()
    })?;
    for p in pbds {
        pbd_plug(emu, ctx, &p)?;
    }
    Ok(sr)
}

/// `SR.introduce`: a record only.
pub fn introduce(emu: &Emulator, a: &SrCreate, uuid: &str) -> ApiResult<String> {
    emu.write(|db| {
        if !uuid.is_empty() && db.by_uuid("SR", uuid).is_ok() {
            return Err(ApiError::new(names::SR_UUID_EXISTS, [uuid]));
        }
        let mut rec = Record::new();
        if !uuid.is_empty() {
            rec.put_s("uuid", uuid);
        }
        rec.put_s("name_label", &a.name_label);
        rec.put_s("name_description", &a.name_description);
        rec.put_s("type", &a.ty);
        rec.put_s("content_type", &a.content_type);
        rec.put_b("shared", a.shared);
        rec.put_map("sm_config", &a.sm_config);
        db.create("SR", rec)
    })
}

fn assert_no_plugged_pbd(db: &Db, sr: &str) -> ApiResult<()> {
    if db
        .where_eq("PBD", "SR", sr)
        .iter()
        .any(|p| db.get("PBD", p).is_ok_and(|p| p.b("currently_attached")))
    {
        return Err(ApiError::new(names::SR_HAS_PBD, [sr]));
    }
    Ok(())
}

/// Removes the SR's records: its VDIs (and their VBDs), PBDs, the SR itself, and pool
/// references to it.
fn drop_records(emu: &Emulator, sr: &str) -> ApiResult<()> {
    let vdis = emu.write(|db| {
        let vdis = db.where_eq("VDI", "SR", sr);
        for v in &vdis {
            for vbd in db.where_eq("VBD", "VDI", v) {
                db.destroy("VBD", &vbd)?;
            }
            db.destroy("VDI", v)?;
        }
        for p in db.where_eq("PBD", "SR", sr) {
            db.destroy("PBD", &p)?;
        }
        db.destroy("SR", sr)?;
        for p in db.refs("pool") {
            let rec = db.get_mut("pool", &p)?;
            for k in ["default_SR", "suspend_image_SR", "crash_dump_SR"] {
                if rec.s(k) == sr {
                    rec.put_s(k, crate::db::schema::NULL_REF);
                }
            }
        }
        Ok(vdis)
    })?;
    for v in vdis {
        emu.datapaths.forget(&v);
    }
    Ok(())
}

/// `SR.forget`: no SMAPI call; every PBD must be unplugged.
pub fn forget(emu: &Emulator, sr: &str) -> ApiResult<()> {
    emu.read(|db| {
        db.get("SR", sr)?;
        assert_no_plugged_pbd(db, sr)
    })?;
    drop_records(emu, sr)
}

/// `SR.destroy`: `sr_attach` then `sr_delete` on the SR master; every PBD must be unplugged.
pub fn destroy(emu: &Emulator, ctx: &OpCtx, sr: &str) -> ApiResult<()> {
    let (host, ty) = emu.read(|db| {
        assert_no_plugged_pbd(db, sr)?;
        Ok((sr_master_host(db, sr)?, super::sr_type(db, sr)?))
    })?;
    require_cap(emu, &ty, sr, "SR_DELETE")?;
    let _g = emu.locks.lock(&format!("srattach:{host}"));
    let call = |command: &str| -> ApiResult<Value> {
        let (ty, c) = emu.read(|db| sr_call(db, &host, sr, command, vec![]))?;
        emu.smapi(ctx, &host, &ty, c)
    };
    call("sr_attach")?;
    if let Err(e) = call("sr_delete") {
        if let Err(d) = call("sr_detach") {
            tracing::warn!("sr_detach after a failed sr_delete also failed: {d}");
        }
        return Err(e);
    }
    drop_records(emu, sr)
}

/// `SR.scan`: `sr_scan` on the SR master; the plugin updates the VDI records itself.
pub fn scan(emu: &Emulator, ctx: &OpCtx, sr: &str) -> ApiResult<()> {
    let (host, ty) = emu.read(|db| Ok((sr_master_host(db, sr)?, super::sr_type(db, sr)?)))?;
    require_cap(emu, &ty, sr, "SR_SCAN")?;
    emu.read(|db| assert_plugged(db, &host, sr))?;
    let (ty, c) = emu.read(|db| sr_call(db, &host, sr, "sr_scan", vec![]))?;
    emu.smapi(ctx, &host, &ty, c).map(|_| ())
}

/// `SR.update`: `sr_update` on the SR master (the plugin writes the sizes itself).
pub fn update(emu: &Emulator, ctx: &OpCtx, sr: &str) -> ApiResult<()> {
    let (host, ty) = emu.read(|db| Ok((sr_master_host(db, sr)?, super::sr_type(db, sr)?)))?;
    require_cap(emu, &ty, sr, "SR_UPDATE")?;
    emu.read(|db| assert_plugged(db, &host, sr))?;
    let (ty, c) = emu.read(|db| sr_call(db, &host, sr, "sr_update", vec![]))?;
    emu.smapi(ctx, &host, &ty, c).map(|_| ())
}

/// `SR.probe`: `sr_probe` with `SRmaster=true` and `sr_sm_config`; returns the XML text.
pub fn probe(
    emu: &Emulator,
    ctx: &OpCtx,
    host: &str,
    device_config: &BTreeMap<String, String>,
    ty: &str,
    sm_config: &BTreeMap<String, String>,
) -> ApiResult<String> {
    if !emu.driver(ty)?.has("SR_PROBE") {
        return Err(ApiError::new(
            names::SR_BACKEND_FAILURE,
            ["Operation 'sr_probe' not supported by this SR type", "", ""],
        ));
    }
    let _g = emu.locks.lock(&format!("srattach:{host}"));
    let mut call = SmCall::new("sr_probe", host, vec![]);
    call.device_config = device_config.clone();
    call.device_config.insert("SRmaster".into(), "true".into());
    call.sr_sm_config = Some(sm_config.clone());
    match emu.smapi(ctx, host, ty, call)? {
        Value::Str(s) => Ok(s),
        other => Err(ApiError::new(
            names::SR_BACKEND_FAILURE,
            [
                String::new(),
                format!("sr_probe returned {other:?}, not a string"),
                String::new(),
            ],
        )),
    }
}

/// `PBD.create`: a record (passwords moved into secrets).
pub fn pbd_create(
    emu: &Emulator,
    host: &str,
    sr: &str,
    device_config: &BTreeMap<String, String>,
    other_config: &BTreeMap<String, String>,
) -> ApiResult<String> {
    emu.write(|db| {
        db.get("host", host)?;
        db.get("SR", sr)?;
        if let Some(p) = pbd_of(db, host, sr) {
            return Err(ApiError::new(names::PBD_EXISTS, [sr, host, p.as_str()]));
        }
        let dc = move_passwords_to_secrets(db, device_config)?;
        let mut p = Record::new();
        p.put_s("host", host);
        p.put_s("SR", sr);
        p.put_map("device_config", &dc);
        p.put_map("other_config", other_config);
        db.create("PBD", p)
    })
}

/// `PBD.destroy`: the PBD must be unplugged.
pub fn pbd_destroy(emu: &Emulator, pbd: &str) -> ApiResult<()> {
    emu.write(|db| {
        if db.get("PBD", pbd)?.b("currently_attached") {
            return Err(ApiError::not_allowed("PBD is currently attached"));
        }
        db.destroy("PBD", pbd).map(|_| ())
    })
}

/// `PBD.plug`: `sr_attach` on the PBD's host unless already plugged.
pub fn pbd_plug(emu: &Emulator, ctx: &OpCtx, pbd: &str) -> ApiResult<()> {
    let (host, sr) = emu.read(|db| {
        let p = db.get("PBD", pbd)?;
        Ok((p.s("host"), p.s("SR")))
    })?;
    let _g = emu.locks.lock(&format!("srattach:{host}"));
    let attached = emu.read(|db| {
        let shared = db.get("SR", &sr)?.b("shared");
        if !shared {
            for other in db.where_eq("PBD", "SR", &sr) {
                let o = db.get("PBD", &other)?;
                if other != pbd && o.b("currently_attached") {
                    return Err(ApiError::new(
                        names::SR_NOT_SHARABLE,
                        [sr.as_str(), o.s("host").as_str()],
                    ));
                }
            }
        }
        Ok(db.get("PBD", pbd)?.b("currently_attached"))
    })?;
    if attached {
        return Ok(());
    }
    let (ty, c) = emu.read(|db| sr_call(db, &host, &sr, "sr_attach", vec![]))?;
    emu.smapi(ctx, &host, &ty, c)?;
    emu.write(|db| {
        db.get_mut("PBD", pbd)?.put_b("currently_attached", true);
        Ok(())
    })
}

/// `PBD.unplug`: `sr_detach` unless already unplugged; fails while a VDI of the SR is in use
/// on that host.
pub fn pbd_unplug(emu: &Emulator, ctx: &OpCtx, pbd: &str) -> ApiResult<()> {
    let (host, sr) = emu.read(|db| {
        let p = db.get("PBD", pbd)?;
        Ok((p.s("host"), p.s("SR")))
    })?;
    let _g = emu.locks.lock(&format!("srattach:{host}"));
    let (attached, vdis) = emu.read(|db| {
        Ok((
            db.get("PBD", pbd)?.b("currently_attached"),
            db.where_eq("VDI", "SR", &sr),
        ))
    })?;
    if !attached {
        return Ok(());
    }
    if let Some(v) = emu.datapaths.any_on(&host, &vdis) {
        return Err(ApiError::new(names::VDI_IN_USE, [v.as_str(), "PBD.unplug"]));
    }
    let (ty, c) = emu.read(|db| sr_call(db, &host, &sr, "sr_detach", vec![]))?;
    emu.smapi(ctx, &host, &ty, c)?;
    emu.write(|db| {
        db.get_mut("PBD", pbd)?.put_b("currently_attached", false);
        Ok(())
    })
}
