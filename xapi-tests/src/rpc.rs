//! The XenAPI over XML-RPC: sessions, the generic record accessors every class has (`get_record`,
//! `get_by_uuid`, `get_all_records_where`, `get_<field>`, `set_<field>`, `add_to_<field>`,
//! `remove_from_<field>`), xapi's rule that only the SM session of an SR may call the internal
//! setters, and the storage and VM operations. Results use xapi's envelope
//! `{Status: Success, Value}` / `{Status: Failure, ErrorDescription}`.

use std::collections::BTreeMap;

use sm_core::xmlrpc::{Struct, Value};

use crate::db::schema::{self, Access, value_bool, value_int};
use crate::db::{RecordExt, filter::Expr};
use crate::emulator::{Emulator, OpCtx, SM_SESSION_KEY};
use crate::error::{ApiError, ApiResult, names};
use crate::storage::{sr, vdi, vm};

/// The envelope of a successful call.
pub fn success(v: Value) -> Value {
    let mut m = Struct::new();
    m.insert("Status".into(), Value::Str("Success".into()));
    m.insert("Value".into(), v);
    Value::Struct(m)
}

/// The envelope of a failed call.
pub fn failure(e: &ApiError) -> Value {
    let mut m = Struct::new();
    m.insert("Status".into(), Value::Str("Failure".into()));
    m.insert(
        "ErrorDescription".into(),
        Value::Array(e.description().into_iter().map(Value::Str).collect()),
    );
    Value::Struct(m)
}

/// Handles one methodCall and returns the envelope.
pub fn handle(emu: &Emulator, method: &str, params: &[Value]) -> Value {
    match dispatch(emu, method, params) {
        Ok(v) => success(v),
        Err(e) => {
            tracing::debug!(method, error = %e, "XenAPI call failed");
            failure(&e)
        }
    }
}

fn arity(method: &str, params: &[Value], n: usize) -> ApiResult<()> {
    if params.len() == n {
        Ok(())
    } else {
        Err(ApiError::new(
            names::MESSAGE_PARAMETER_COUNT_MISMATCH,
            [method.to_string(), n.to_string(), params.len().to_string()],
        ))
    }
}

/// Checks the argument count after the session; xapi's error counts the session too.
fn arity_after_session(method: &str, args: &[Value], n: usize) -> ApiResult<()> {
    if args.len() == n {
        Ok(())
    } else {
        Err(ApiError::new(
            names::MESSAGE_PARAMETER_COUNT_MISMATCH,
            [
                method.to_string(),
                (n + 1).to_string(),
                (args.len() + 1).to_string(),
            ],
        ))
    }
}

fn s(params: &[Value], i: usize) -> String {
    params.get(i).map(Value::to_text).unwrap_or_default()
}

fn i64_at(params: &[Value], i: usize, field: &str) -> ApiResult<i64> {
    params
        .get(i)
        .and_then(value_int)
        .ok_or_else(|| ApiError::new(names::FIELD_TYPE_ERROR, [field]))
}

fn bool_at(params: &[Value], i: usize, field: &str) -> ApiResult<bool> {
    params
        .get(i)
        .and_then(value_bool)
        .ok_or_else(|| ApiError::new(names::FIELD_TYPE_ERROR, [field]))
}

fn map_at(params: &[Value], i: usize, field: &str) -> ApiResult<BTreeMap<String, String>> {
    params
        .get(i)
        .and_then(Value::to_string_map)
        .ok_or_else(|| ApiError::new(names::FIELD_TYPE_ERROR, [field]))
}

fn record_at(params: &[Value], i: usize) -> ApiResult<Struct> {
    params
        .get(i)
        .and_then(Value::as_struct)
        .cloned()
        .ok_or_else(|| ApiError::new(names::FIELD_TYPE_ERROR, ["args"]))
}

fn rec_s(r: &Struct, k: &str) -> String {
    r.get(k).map(Value::to_text).unwrap_or_default()
}

fn rec_map(r: &Struct, k: &str) -> BTreeMap<String, String> {
    r.get(k).and_then(Value::to_string_map).unwrap_or_default()
}

fn rec_bool(r: &Struct, k: &str) -> bool {
    r.get(k).and_then(value_bool).unwrap_or(false)
}

/// Dispatches one call; `Err` is the XenAPI failure.
pub fn dispatch(emu: &Emulator, method: &str, params: &[Value]) -> ApiResult<Value> {
    match method {
        "session.login_with_password" | "session.slave_local_login_with_password" => {
            if params.len() < 2 {
                return Err(ApiError::new(
                    names::MESSAGE_PARAMETER_COUNT_MISMATCH,
                    [method, "2", &params.len().to_string()],
                ));
            }
            return Ok(Value::Str(emu.login(&s(params, 0), BTreeMap::new())));
        }
        "session.logout" | "session.local_logout" => {
            arity(method, params, 1)?;
            emu.session(&s(params, 0))?;
            emu.logout(&s(params, 0));
            return Ok(Value::Nil);
        }
        _ => {}
    }
    let session_ref = s(params, 0);
    let session = emu.session(&session_ref)?;
    let args = params.get(1..).unwrap_or_default();
    match method {
        "session.get_uuid" => return Ok(Value::Str(session.uuid)),
        "session.get_this_host" => return Ok(Value::Str(emu.master().r.clone())),
        "session.get_other_config" => {
            return Ok(Value::string_map(
                session
                    .other_config
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            ));
        }
        _ => {}
    }
    if let Some(v) = operation(emu, method, args, &session_ref)? {
        return Ok(v);
    }
    generic(emu, method, args, &session)
}

/// Runs `f` as a top-level operation with its own task.
fn op<T>(
    emu: &Emulator,
    method: &str,
    session: &str,
    f: impl FnOnce(&OpCtx) -> ApiResult<T>,
) -> ApiResult<T> {
    let ctx = emu.begin_op(method, None, session);
    let out = f(&ctx);
    emu.end_op(&ctx);
    out
}

/// The storage and VM operations; `Ok(None)` when `method` is not one of them.
fn operation(emu: &Emulator, method: &str, a: &[Value], session: &str) -> ApiResult<Option<Value>> {
    let full = |n: usize| arity_after_session(method, a, n);
    let nil = |r: ApiResult<()>| r.map(|_| Some(Value::Nil));
    let r = |r: ApiResult<String>| r.map(|x| Some(Value::Str(x)));
    match method {
        "SR.create" => {
            full(9)?;
            let c = sr::SrCreate {
                host: s(a, 0),
                device_config: map_at(a, 1, "device_config")?,
                physical_size: i64_at(a, 2, "physical_size")?,
                name_label: s(a, 3),
                name_description: s(a, 4),
                ty: s(a, 5),
                content_type: s(a, 6),
                shared: bool_at(a, 7, "shared")?,
                sm_config: map_at(a, 8, "sm_config")?,
            };
            r(op(emu, method, session, |ctx| sr::create(emu, ctx, &c)))
        }
        "SR.introduce" => {
            full(7)?;
            let c = sr::SrCreate {
                name_label: s(a, 1),
                name_description: s(a, 2),
                ty: s(a, 3),
                content_type: s(a, 4),
                shared: bool_at(a, 5, "shared")?,
                sm_config: map_at(a, 6, "sm_config")?,
                ..sr::SrCreate::default()
            };
            r(sr::introduce(emu, &c, &s(a, 0)))
        }
        "SR.forget" => {
            full(1)?;
            nil(sr::forget(emu, &s(a, 0)))
        }
        "SR.destroy" => {
            full(1)?;
            nil(op(emu, method, session, |ctx| {
                sr::destroy(emu, ctx, &s(a, 0))
            }))
        }
        "SR.scan" => {
            full(1)?;
            nil(op(emu, method, session, |ctx| sr::scan(emu, ctx, &s(a, 0))))
        }
        "SR.update" => {
            full(1)?;
            nil(op(emu, method, session, |ctx| {
                sr::update(emu, ctx, &s(a, 0))
            }))
        }
        "SR.probe" => {
            full(4)?;
            let (dc, sm) = (map_at(a, 1, "device_config")?, map_at(a, 3, "sm_config")?);
            op(emu, method, session, |ctx| {
                sr::probe(emu, ctx, &s(a, 0), &dc, &s(a, 2), &sm)
            })
            .map(|x| Some(Value::Str(x)))
        }
        "PBD.create" => {
            full(1)?;
            let rec = record_at(a, 0)?;
            r(sr::pbd_create(
                emu,
                &rec_s(&rec, "host"),
                &rec_s(&rec, "SR"),
                &rec_map(&rec, "device_config"),
                &rec_map(&rec, "other_config"),
            ))
        }
        "PBD.plug" => {
            full(1)?;
            nil(op(emu, method, session, |ctx| {
                sr::pbd_plug(emu, ctx, &s(a, 0))
            }))
        }
        "PBD.unplug" => {
            full(1)?;
            nil(op(emu, method, session, |ctx| {
                sr::pbd_unplug(emu, ctx, &s(a, 0))
            }))
        }
        "PBD.destroy" => {
            full(1)?;
            nil(sr::pbd_destroy(emu, &s(a, 0)))
        }
        "VDI.create" => {
            full(1)?;
            let rec = record_at(a, 0)?;
            let c = vdi::VdiCreate {
                sr: rec_s(&rec, "SR"),
                virtual_size: rec.get("virtual_size").and_then(value_int).unwrap_or(0),
                name_label: rec_s(&rec, "name_label"),
                name_description: rec_s(&rec, "name_description"),
                ty: rec_s(&rec, "type"),
                sharable: rec_bool(&rec, "sharable"),
                read_only: rec_bool(&rec, "read_only"),
                other_config: rec_map(&rec, "other_config"),
                xenstore_data: rec_map(&rec, "xenstore_data"),
                sm_config: rec_map(&rec, "sm_config"),
            };
            r(op(emu, method, session, |ctx| vdi::create(emu, ctx, &c)))
        }
        "VDI.destroy" => {
            full(1)?;
            nil(op(emu, method, session, |ctx| {
                vdi::destroy(emu, ctx, &s(a, 0))
            }))
        }
        "VDI.forget" => {
            full(1)?;
            nil(vdi::forget(emu, &s(a, 0)))
        }
        "VDI.copy" => {
            if a.len() != 2 && a.len() != 4 {
                full(4)?;
            }
            r(op(emu, method, session, |ctx| {
                vdi::copy(emu, ctx, &s(a, 0), &s(a, 1))
            }))
        }
        "VDI.snapshot" | "VDI.clone" => {
            let dp = if a.len() == 2 {
                map_at(a, 1, "driver_params")?
            } else {
                full(1).map(|_| BTreeMap::new())?
            };
            let snap = method == "VDI.snapshot";
            r(op(emu, method, session, |ctx| {
                vdi::snapshot_or_clone(emu, ctx, &s(a, 0), &dp, snap)
            }))
        }
        "VDI.generate_config" => {
            full(2)?;
            r(op(emu, method, session, |ctx| {
                vdi::generate_config(emu, ctx, &s(a, 0), &s(a, 1))
            }))
        }
        "VDI.resize" | "VDI.resize_online" => {
            full(2)?;
            let size = i64_at(a, 1, "size")?;
            nil(op(emu, method, session, |ctx| {
                vdi::resize(emu, ctx, &s(a, 0), size)
            }))
        }
        "VDI.introduce" => {
            full(18)?;
            let c = vdi::VdiIntroduce {
                uuid: s(a, 0),
                name_label: s(a, 1),
                name_description: s(a, 2),
                sr: s(a, 3),
                ty: s(a, 4),
                other_config: map_at(a, 7, "other_config")?,
                location: s(a, 8),
                sm_config: map_at(a, 10, "sm_config")?,
            };
            r(op(emu, method, session, |ctx| vdi::introduce(emu, ctx, &c)))
        }
        "VDI.db_introduce" => {
            full(19)?;
            r(vdi::db_introduce(emu, a))
        }
        "VDI.db_forget" => {
            full(1)?;
            let v = s(a, 0);
            emu.write(|db| db.destroy("VDI", &v).map(|_| ()))?;
            emu.datapaths.forget(&v);
            Ok(Some(Value::Nil))
        }
        "VBD.create" => {
            full(1)?;
            let rec = record_at(a, 0)?;
            let c = vm::VbdCreate {
                vm: rec_s(&rec, "VM"),
                vdi: rec_s(&rec, "VDI"),
                userdevice: rec_s(&rec, "userdevice"),
                bootable: rec_bool(&rec, "bootable"),
                mode: rec_s(&rec, "mode"),
                ty: rec_s(&rec, "type"),
            };
            r(vm::vbd_create(emu, &c))
        }
        "VBD.plug" => {
            full(1)?;
            nil(op(emu, method, session, |ctx| {
                vm::vbd_plug(emu, ctx, &s(a, 0))
            }))
        }
        "VBD.unplug" | "VBD.unplug_force" => {
            full(1)?;
            nil(op(emu, method, session, |ctx| {
                vm::vbd_unplug(emu, ctx, &s(a, 0))
            }))
        }
        "VBD.destroy" => {
            full(1)?;
            nil(vm::vbd_destroy(emu, &s(a, 0)))
        }
        "VM.start" => {
            full(3)?;
            nil(op(emu, method, session, |ctx| {
                vm::start(emu, ctx, &s(a, 0), None)
            }))
        }
        "VM.start_on" => {
            full(4)?;
            nil(op(emu, method, session, |ctx| {
                vm::start(emu, ctx, &s(a, 0), Some(&s(a, 1)))
            }))
        }
        "VM.clean_shutdown" | "VM.hard_shutdown" => {
            full(1)?;
            nil(op(emu, method, session, |ctx| {
                vm::shutdown(emu, ctx, &s(a, 0))
            }))
        }
        "VM.suspend" => {
            full(1)?;
            nil(op(emu, method, session, |ctx| {
                vm::suspend(emu, ctx, &s(a, 0))
            }))
        }
        "VM.resume" => {
            full(3)?;
            nil(op(emu, method, session, |ctx| {
                vm::resume(emu, ctx, &s(a, 0), None)
            }))
        }
        "VM.resume_on" => {
            full(4)?;
            nil(op(emu, method, session, |ctx| {
                vm::resume(emu, ctx, &s(a, 0), Some(&s(a, 1)))
            }))
        }
        "VM.pool_migrate" => {
            full(3)?;
            nil(op(emu, method, session, |ctx| {
                vm::migrate(emu, ctx, &s(a, 0), &s(a, 1))
            }))
        }
        "VM.clone" | "VM.copy" => {
            if method == "VM.clone" {
                full(2)?;
            }
            r(op(emu, method, session, |ctx| {
                vm::clone(emu, ctx, &s(a, 0), &s(a, 1))
            }))
        }
        "VM.provision" => {
            full(1)?;
            let sr = emu.read(|db| {
                let pool = db.get("pool", &crate::storage::pool_ref(db)?)?;
                Ok(pool.s("default_SR"))
            })?;
            nil(op(emu, method, session, |ctx| {
                vm::provision(emu, ctx, &s(a, 0), &sr)
            }))
        }
        "VM.destroy" => {
            full(1)?;
            nil(vm::destroy(emu, &s(a, 0)))
        }
        "secret.create" => {
            full(1)?;
            let rec = record_at(a, 0)?;
            r(emu.write(|db| {
                let mut sec = crate::db::Record::new();
                sec.put_s("value", rec_s(&rec, "value"));
                sec.put_map("other_config", &rec_map(&rec, "other_config"));
                db.create("secret", sec)
            }))
        }
        "task.create" => {
            full(2)?;
            r(emu.write(|db| {
                let mut t = crate::db::Record::new();
                t.put_s("name_label", s(a, 0));
                t.put_s("name_description", s(a, 1));
                t.put_s("created", crate::storage::xapi_now());
                db.create("task", t)
            }))
        }
        "message.create" => {
            full(5)?;
            let priority = i64_at(a, 1, "priority")?;
            r(emu.write(|db| {
                let mut m = crate::db::Record::new();
                m.put_s("name", s(a, 0));
                m.put_i("priority", priority);
                m.put_s("cls", s(a, 2));
                m.put_s("obj_uuid", s(a, 3));
                m.put_s("body", s(a, 4));
                m.put_s("timestamp", crate::storage::xapi_now());
                db.create("message", m)
            }))
        }
        "secret.destroy" | "task.destroy" | "message.destroy" => {
            full(1)?;
            let class = method.split('.').next().unwrap_or("");
            emu.write(|db| db.destroy(class, &s(a, 0)).map(|_| ()))?;
            Ok(Some(Value::Nil))
        }
        _ => Ok(None),
    }
}

/// The SR a field of this object belongs to, for the internal-setter check.
fn owning_sr(emu: &Emulator, class: &str, r: &str) -> ApiResult<String> {
    emu.read(|db| {
        Ok(match class {
            "SR" => r.to_string(),
            "VDI" => db.get("VDI", r)?.s("SR"),
            _ => String::new(),
        })
    })
}

/// The generic accessors.
fn generic(
    emu: &Emulator,
    method: &str,
    a: &[Value],
    session: &crate::emulator::Session,
) -> ApiResult<Value> {
    let unknown = || ApiError::new(names::MESSAGE_METHOD_UNKNOWN, [method]);
    let (class_name, call) = method.split_once('.').ok_or_else(unknown)?;
    let class = schema::class(class_name).ok_or_else(unknown)?;
    let argc = |n: usize| arity_after_session(method, a, n);
    match call {
        "get_all" => {
            argc(0)?;
            return emu.read(|db| {
                Ok(Value::Array(
                    db.refs(class.name).into_iter().map(Value::Str).collect(),
                ))
            });
        }
        "get_all_records" => {
            argc(0)?;
            return emu.read(|db| db.records_where(class.name, &Expr::True));
        }
        "get_all_records_where" => {
            argc(1)?;
            let e = Expr::parse(&s(a, 0))?;
            return emu.read(|db| db.records_where(class.name, &e));
        }
        "get_by_uuid" => {
            argc(1)?;
            return emu.read(|db| db.by_uuid(class.name, &s(a, 0)).map(Value::Str));
        }
        "get_by_name_label" => {
            argc(1)?;
            let n = s(a, 0);
            return emu.read(|db| {
                Ok(Value::Array(
                    db.where_eq(class.name, "name_label", &n)
                        .into_iter()
                        .map(Value::Str)
                        .collect(),
                ))
            });
        }
        "get_record" => {
            argc(1)?;
            return emu.read(|db| db.record_value(class.name, &s(a, 0)));
        }
        _ => {}
    }
    let self_ref = s(a, 0);
    if let Some(field) = call.strip_prefix("get_") {
        if class.field(field).is_none() && class.reverse_field(field).is_none() {
            return Err(unknown());
        }
        argc(1)?;
        return emu.read(|db| db.field_value(class.name, &self_ref, field));
    }
    let (field_name, kind) = if let Some(f) = call.strip_prefix("set_") {
        (f, "set")
    } else if let Some(f) = call.strip_prefix("add_to_") {
        (f, "add_to")
    } else if let Some(f) = call.strip_prefix("remove_from_") {
        (f, "remove_from")
    } else {
        return Err(unknown());
    };
    let field = class.field(field_name).ok_or_else(unknown)?;
    if field.access == Access::Ro || (kind != "set" && field.ty != schema::Ty::Map) {
        return Err(unknown());
    }
    if field.access == Access::Internal {
        let sr = owning_sr(emu, class.name, &self_ref)?;
        if session.other_config.get(SM_SESSION_KEY) != Some(&sr) {
            return Err(ApiError::new(names::PERMISSION_DENIED, [""]));
        }
    }
    match kind {
        "set" => {
            argc(2)?;
            let v = field.from_value(class.name, &a[1])?;
            emu.write(|db| {
                db.get_mut(class.name, &self_ref)?
                    .insert(field.name.to_string(), v);
                Ok(Value::Nil)
            })
        }
        "add_to" => {
            argc(3)?;
            let (k, v) = (s(a, 1), s(a, 2));
            emu.write(|db| {
                let rec = db.get_mut(class.name, &self_ref)?;
                let mut m = rec.map(field.name);
                if m.contains_key(&k) {
                    let uuid = rec.s("uuid");
                    return Err(ApiError::new(
                        names::MAP_DUPLICATE_KEY,
                        [class.name, field.name, uuid.as_str(), k.as_str()],
                    ));
                }
                m.insert(k, v);
                rec.put_map(field.name, &m);
                Ok(Value::Nil)
            })
        }
        _ => {
            argc(2)?;
            let k = s(a, 1);
            emu.write(|db| {
                let rec = db.get_mut(class.name, &self_ref)?;
                let mut m = rec.map(field.name);
                m.remove(&k);
                rec.put_map(field.name, &m);
                Ok(Value::Nil)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::db::Record;

    fn emulator() -> (tempfile::TempDir, Emulator) {
        let d = tempfile::tempdir().unwrap();
        let plugins = d.path().join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        let cfg = Config::two_local_hosts(&d.path().join("state"), &plugins, None);
        let emu = Emulator::open(cfg, d.path().join("x.sock"), "127.0.0.1:1".into()).unwrap();
        (d, emu)
    }

    fn sr_with_vdi(emu: &Emulator) -> (String, String) {
        emu.write(|db| {
            let sr = db.create("SR", Record::new())?;
            let mut v = Record::new();
            v.put_s("SR", &sr);
            v.put_s("location", "loc-1");
            let vdi = db.create("VDI", v)?;
            Ok((sr, vdi))
        })
        .unwrap()
    }

    fn call(emu: &Emulator, method: &str, args: &[&str]) -> ApiResult<Value> {
        let params: Vec<Value> = args.iter().map(|a| Value::Str(a.to_string())).collect();
        dispatch(emu, method, &params)
    }

    #[test]
    fn only_the_sm_session_of_the_sr_may_call_internal_setters() {
        let (_d, emu) = emulator();
        let (sr, vdi) = sr_with_vdi(&emu);
        let (other_sr, _) = sr_with_vdi(&emu);
        let user = call(&emu, "session.login_with_password", &["root", ""])
            .unwrap()
            .to_text();
        let denied = ApiError::new(names::PERMISSION_DENIED, [""]);
        assert_eq!(
            call(&emu, "VDI.set_virtual_size", &[&user, &vdi, "42"]),
            Err(denied.clone())
        );
        assert_eq!(
            call(&emu, "SR.set_physical_size", &[&user, &sr, "42"]),
            Err(denied.clone())
        );
        let sm = |sr: &str| {
            emu.login(
                crate::emulator::SM_USER,
                BTreeMap::from([(SM_SESSION_KEY.to_string(), sr.to_string())]),
            )
        };
        assert_eq!(
            call(&emu, "VDI.set_virtual_size", &[&sm(&other_sr), &vdi, "42"]),
            Err(denied)
        );
        call(&emu, "VDI.set_virtual_size", &[&sm(&sr), &vdi, "42"]).unwrap();
        call(&emu, "SR.set_physical_utilisation", &[&sm(&sr), &sr, "7"]).unwrap();
        assert_eq!(
            call(&emu, "VDI.get_virtual_size", &[&user, &vdi]).unwrap(),
            Value::Str("42".into())
        );
        call(&emu, "VDI.set_name_label", &[&user, &vdi, "renamed"]).unwrap();
        assert_eq!(
            call(&emu, "VDI.set_uuid", &[&user, &vdi, "x"])
                .unwrap_err()
                .code,
            names::MESSAGE_METHOD_UNKNOWN
        );
    }

    #[test]
    fn sessions_arity_maps_and_queries() {
        let (_d, emu) = emulator();
        let (sr, vdi) = sr_with_vdi(&emu);
        assert_eq!(
            call(&emu, "VDI.get_record", &["OpaqueRef:nope", &vdi]),
            Err(ApiError::new(names::SESSION_INVALID, ["OpaqueRef:nope"]))
        );
        let s = call(
            &emu,
            "session.login_with_password",
            &["root", "", "2.20", "test"],
        )
        .unwrap()
        .to_text();
        assert_eq!(
            call(&emu, "VDI.get_record", &[&s]),
            Err(ApiError::new(
                names::MESSAGE_PARAMETER_COUNT_MISMATCH,
                ["VDI.get_record", "2", "1"]
            ))
        );
        call(
            &emu,
            "VDI.add_to_sm_config",
            &[&s, &vdi, "activating", "h1"],
        )
        .unwrap();
        let dup = call(
            &emu,
            "VDI.add_to_sm_config",
            &[&s, &vdi, "activating", "h2"],
        )
        .unwrap_err();
        assert_eq!(dup.code, names::MAP_DUPLICATE_KEY);
        call(&emu, "VDI.remove_from_sm_config", &[&s, &vdi, "activating"]).unwrap();
        call(&emu, "VDI.remove_from_sm_config", &[&s, &vdi, "absent"]).unwrap();
        let recs = call(
            &emu,
            "VDI.get_all_records_where",
            &[
                &s,
                &format!("field \"SR\" = \"{sr}\" and field \"location\" = \"loc-1\""),
            ],
        )
        .unwrap();
        assert_eq!(
            recs.as_struct().unwrap().keys().collect::<Vec<_>>(),
            vec![&vdi]
        );
        assert_eq!(
            call(&emu, "VDI.get_by_uuid", &[&s, "no-such"])
                .unwrap_err()
                .code,
            names::UUID_INVALID
        );
        assert_eq!(
            call(&emu, "VDI.get_SR", &[&s, "OpaqueRef:gone"]).unwrap_err(),
            ApiError::handle_invalid("VDI", "OpaqueRef:gone")
        );
        let host = emu.master().r.clone();
        let oc = call(&emu, "host.get_other_config", &[&s, &host]).unwrap();
        assert!(oc.to_string_map().unwrap()["iscsi_iqn"].starts_with("iqn."));
        let m = call(&emu, "host.get_metrics", &[&s, &host])
            .unwrap()
            .to_text();
        assert_eq!(
            call(&emu, "host_metrics.get_live", &[&s, &m]).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            call(&emu, "VM.frobnicate", &[&s]).unwrap_err().code,
            names::MESSAGE_METHOD_UNKNOWN
        );
        let msg = call(
            &emu,
            "message.create",
            &[&s, "POST_ATTACH_SCAN_FAILED", "2", "SR", "u", "scan failed"],
        )
        .unwrap();
        assert_eq!(
            call(&emu, "message.get_body", &[&s, &msg.to_text()]).unwrap(),
            Value::Str("scan failed".into())
        );
        call(&emu, "session.logout", &[&s]).unwrap();
        assert_eq!(
            call(&emu, "host.get_all", &[&s]).unwrap_err().code,
            names::SESSION_INVALID
        );
    }

    #[test]
    fn db_introduce_takes_nineteen_arguments_and_unique_locations() {
        let (_d, emu) = emulator();
        let (sr, _) = sr_with_vdi(&emu);
        let s = emu.login("root", BTreeMap::new());
        let args = |uuid: &str, loc: &str| -> Vec<Value> {
            let mut a: Vec<Value> = vec![
                Value::Str(s.clone()),
                uuid.into(),
                "n".into(),
                "d".into(),
                sr.as_str().into(),
                "user".into(),
            ];
            a.extend([
                false.into(),
                false.into(),
                Value::string_map::<&str, &str>([]),
                loc.into(),
            ]);
            a.extend([
                Value::string_map::<&str, &str>([]),
                Value::string_map([("vhd-parent", "")]),
                true.into(),
            ]);
            a.extend(["1048576".into(), "4096".into(), "".into(), false.into()]);
            a.extend([
                Value::DateTime("19700101T00:00:00Z".into()),
                "".into(),
                false.into(),
            ]);
            a
        };
        let u = crate::db::new_uuid();
        let r = dispatch(&emu, "VDI.db_introduce", &args(&u, "loc-2"))
            .unwrap()
            .to_text();
        assert_eq!(call(&emu, "VDI.get_uuid", &[&s, &r]).unwrap().to_text(), u);
        assert_eq!(
            call(&emu, "VDI.get_virtual_size", &[&s, &r]).unwrap(),
            Value::Str("1048576".into())
        );
        let dup = dispatch(
            &emu,
            "VDI.db_introduce",
            &args(&crate::db::new_uuid(), "loc-2"),
        )
        .unwrap_err();
        assert_eq!(
            dup,
            ApiError::new(names::LOCATION_NOT_UNIQUE, [sr.as_str(), "loc-2"])
        );
        let short = &args("x", "y")[..10];
        assert_eq!(
            dispatch(&emu, "VDI.db_introduce", short).unwrap_err().code,
            names::MESSAGE_PARAMETER_COUNT_MISMATCH
        );
        call(&emu, "VDI.db_forget", &[&s, &r]).unwrap();
        assert_eq!(
            call(&emu, "VDI.get_uuid", &[&s, &r]).unwrap_err().code,
            names::HANDLE_INVALID
        );
    }

    #[test]
    fn envelopes_are_xapi_s() {
        let ok = success(Value::Str("x".into()));
        assert_eq!(
            ok.as_struct().unwrap()["Status"],
            Value::Str("Success".into())
        );
        let f = failure(&ApiError::uuid_invalid("VM", "u"));
        assert_eq!(
            f.as_struct().unwrap()["ErrorDescription"],
            Value::Array(vec![
                Value::Str("UUID_INVALID".into()),
                Value::Str("VM".into()),
                Value::Str("u".into())
            ])
        );
    }
}
