//! The `xe` commands: each resolves its parameters and runs the XenAPI operation that real
//! xapi's CLI server would (`Cli_operations`), with the `xe` command recorded as the cause of
//! every SMAPI call in the trace.

use super::records;
use super::{CliError, CliResult, Params, parse_size};
use crate::db::{Db, RecordExt, is_null};
use crate::emulator::{Emulator, OpCtx};
use crate::error::{ApiError, ApiResult, names};
use crate::storage::{self, sr, vdi, vm};

fn line(s: impl AsRef<str>) -> String {
    format!("{}\n", s.as_ref())
}

fn uuid_of(emu: &Emulator, class: &str, r: &str) -> ApiResult<String> {
    emu.read(|db| Ok(db.get(class, r)?.s("uuid")))
}

fn by_uuid(emu: &Emulator, class: &str, uuid: &str) -> ApiResult<String> {
    emu.read(|db| db.by_uuid(class, uuid))
}

/// A host named by uuid, name-label or hostname.
fn host_ref(db: &Db, s: &str) -> ApiResult<String> {
    db.by_uuid("host", s).or_else(|_| {
        db.find("host", |h| h.s("name_label") == s || h.s("hostname") == s)
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::uuid_invalid("host", s))
    })
}

/// The host a command names with `key` (uuid or name), or the pool master.
fn host_or_master(emu: &Emulator, p: &Params, key: &str) -> ApiResult<String> {
    emu.read(|db| match p.kv.get(key) {
        Some(h) if !h.is_empty() => host_ref(db, h),
        _ => storage::master_ref(db),
    })
}

/// The host named by `on=` (uuid or name), if any.
fn on_host(emu: &Emulator, p: &Params) -> ApiResult<Option<String>> {
    p.kv.get("on")
        .map(|h| emu.read(|db| host_ref(db, h)))
        .transpose()
}

/// The VM a command names: `uuid=`, `vm=` (uuid or name) or `name-label=`.
fn vm_ref(emu: &Emulator, p: &Params) -> CliResult<String> {
    let found = emu.read(|db| {
        let pick = |refs: Vec<String>, what: &str| -> ApiResult<Option<String>> {
            match refs.len() {
                0 => Err(ApiError::uuid_invalid("VM", what)),
                1 => Ok(refs.into_iter().next()),
                _ => Err(ApiError::not_allowed(format!(
                    "{what} matches several VMs; use uuid="
                ))),
            }
        };
        if let Some(u) = p.kv.get("uuid") {
            return db.by_uuid("VM", u).map(Some);
        }
        if let Some(v) = p.kv.get("vm") {
            if let Ok(r) = db.by_uuid("VM", v) {
                return Ok(Some(r));
            }
            return pick(
                db.find("VM", |x| x.s("name_label") == *v && !x.b("is_a_template")),
                v,
            );
        }
        if let Some(n) = p.kv.get("name-label") {
            return pick(
                db.find("VM", |x| x.s("name_label") == *n && !x.b("is_a_template")),
                n,
            );
        }
        Ok(None)
    })?;
    found.ok_or_else(|| CliError::MissingParam("uuid".into()))
}

fn bool_param(p: &Params, k: &str, default: bool) -> CliResult<bool> {
    match p.kv.get(k) {
        None => Ok(default),
        Some(v) => crate::db::schema::parse_bool(v)
            .ok_or_else(|| CliError::Api(ApiError::invalid_value(k, v))),
    }
}

fn size_param(p: &Params, k: &str) -> CliResult<i64> {
    let v = p.req(k)?;
    parse_size(v).ok_or_else(|| CliError::Api(ApiError::invalid_value(k, v)))
}

/// Runs `f` as one operation of `xe` command `xe` with its own task.
fn op<T>(
    emu: &Emulator,
    name: &str,
    session: &str,
    xe: u64,
    f: impl FnOnce(&OpCtx) -> ApiResult<T>,
) -> CliResult<T> {
    let ctx = emu.begin_op(name, Some(xe), session);
    let out = f(&ctx);
    emu.end_op(&ctx);
    Ok(out?)
}

/// An operation on one object: `(class, XenAPI operation name, function)`.
type UuidOp = (
    &'static str,
    &'static str,
    fn(&Emulator, &OpCtx, &str) -> ApiResult<()>,
);

/// A command that names one object by `uuid=` and runs one operation on it with no output.
fn on_uuid(
    emu: &Emulator,
    p: &Params,
    session: &str,
    xe: u64,
    (class, name, f): UuidOp,
) -> CliResult<String> {
    let r = by_uuid(emu, class, p.req("uuid")?)?;
    op(emu, name, session, xe, |ctx| {
        f(emu, ctx, &r).map(|_| String::new())
    })
}

/// `xe` commands that are one operation on the object named by `uuid=`.
const UUID_OPS: &[(&str, UuidOp)] = &[
    ("sr-destroy", ("SR", "SR.destroy", sr::destroy)),
    ("sr-scan", ("SR", "SR.scan", sr::scan)),
    ("sr-update", ("SR", "SR.update", sr::update)),
    ("pbd-plug", ("PBD", "PBD.plug", sr::pbd_plug)),
    ("pbd-unplug", ("PBD", "PBD.unplug", sr::pbd_unplug)),
    ("vdi-destroy", ("VDI", "VDI.destroy", vdi::destroy)),
    ("vbd-plug", ("VBD", "VBD.plug", vm::vbd_plug)),
    ("vbd-unplug", ("VBD", "VBD.unplug", vm::vbd_unplug)),
];

/// Runs one parsed command; returns its stdout.
pub fn dispatch(emu: &Emulator, p: &Params, session: &str, xe: u64) -> CliResult<String> {
    let cmd = p.cmd.as_str();
    if let Some((cls, verb)) = cmd.split_once('-')
        && records::known(cls)
    {
        match verb {
            "list" => {
                return emu
                    .read(|db| Ok(records::list(db, cls, p)))
                    .map_err(CliError::Api)?;
            }
            "param-list" => {
                return emu
                    .read(|db| Ok(records::param_list(db, cls, p)))
                    .map_err(CliError::Api)?;
            }
            "param-get" => {
                return emu
                    .read(|db| Ok(records::param_get(db, cls, p)))
                    .map_err(CliError::Api)?;
            }
            "param-set" => {
                let mut res = Ok(());
                emu.write(|db| {
                    res = records::param_set(db, cls, p);
                    match &res {
                        Err(CliError::Api(e)) => Err(e.clone()),
                        _ => Ok(()),
                    }
                })?;
                return res.map(|_| String::new());
            }
            _ => {}
        }
    }
    if cmd == "template-list" {
        let mut q = p.clone();
        q.cmd = "vm-list".into();
        q.kv.insert("is-a-template".into(), "true".into());
        return emu
            .read(|db| Ok(records::list(db, "vm", &q)))
            .map_err(CliError::Api)?;
    }
    if let Some((_, spec)) = UUID_OPS.iter().find(|(c, _)| *c == cmd) {
        return on_uuid(emu, p, session, xe, *spec);
    }
    let run = |name: &str, f: &dyn Fn(&OpCtx) -> ApiResult<String>| op(emu, name, session, xe, f);
    match cmd {
        "sr-create" => {
            let c = sr::SrCreate {
                host: host_or_master(emu, p, "host-uuid")?,
                device_config: p.map("device-config"),
                physical_size: p
                    .kv
                    .get("physical-size")
                    .map(|v| {
                        parse_size(v).ok_or_else(|| ApiError::invalid_value("physical-size", v))
                    })
                    .transpose()?
                    .unwrap_or(0),
                name_label: p.req("name-label")?.to_string(),
                name_description: p.opt("name-description").to_string(),
                ty: p.req("type")?.to_string(),
                content_type: p.opt("content-type").to_string(),
                shared: bool_param(p, "shared", false)?,
                sm_config: p.map("sm-config"),
            };
            run("SR.create", &|ctx| {
                sr::create(emu, ctx, &c)
                    .and_then(|r| uuid_of(emu, "SR", &r))
                    .map(line)
            })
        }
        "sr-introduce" => {
            let c = sr::SrCreate {
                name_label: p.req("name-label")?.to_string(),
                name_description: p.opt("name-description").to_string(),
                ty: p.req("type")?.to_string(),
                content_type: p.opt("content-type").to_string(),
                shared: bool_param(p, "shared", false)?,
                sm_config: p.map("sm-config"),
                ..sr::SrCreate::default()
            };
            let r = sr::introduce(emu, &c, p.req("uuid")?)?;
            Ok(line(uuid_of(emu, "SR", &r)?))
        }
        "sr-forget" => {
            sr::forget(emu, &by_uuid(emu, "SR", p.req("uuid")?)?)?;
            Ok(String::new())
        }
        "sr-probe" => {
            let host = host_or_master(emu, p, "host-uuid")?;
            let (dc, sm, ty) = (
                p.map("device-config"),
                p.map("sm-config"),
                p.req("type")?.to_string(),
            );
            run("SR.probe", &|ctx| {
                sr::probe(emu, ctx, &host, &dc, &ty, &sm).map(line)
            })
        }
        "pbd-create" => {
            let (h, s) = (p.req("host-uuid")?, p.req("sr-uuid")?);
            let (host, srr) = emu.read(|db| Ok((host_ref(db, h)?, db.by_uuid("SR", s)?)))?;
            let r = sr::pbd_create(
                emu,
                &host,
                &srr,
                &p.map("device-config"),
                &p.map("other-config"),
            )?;
            Ok(line(uuid_of(emu, "PBD", &r)?))
        }
        "pbd-destroy" => {
            sr::pbd_destroy(emu, &by_uuid(emu, "PBD", p.req("uuid")?)?)?;
            Ok(String::new())
        }
        "vdi-create" => {
            let c = vdi::VdiCreate {
                sr: by_uuid(emu, "SR", p.req("sr-uuid")?)?,
                virtual_size: size_param(p, "virtual-size")?,
                name_label: p.req("name-label")?.to_string(),
                name_description: p.opt("name-description").to_string(),
                ty: if p.opt("type").is_empty() {
                    "user".into()
                } else {
                    p.opt("type").to_string()
                },
                sharable: bool_param(p, "sharable", false)?,
                read_only: bool_param(p, "read-only", false)?,
                other_config: p.map("other-config"),
                xenstore_data: p.map("xenstore-data"),
                sm_config: p.map("sm-config"),
            };
            run("VDI.create", &|ctx| {
                vdi::create(emu, ctx, &c)
                    .and_then(|r| uuid_of(emu, "VDI", &r))
                    .map(line)
            })
        }
        "vdi-forget" => {
            vdi::forget(emu, &by_uuid(emu, "VDI", p.req("uuid")?)?)?;
            Ok(String::new())
        }
        "vdi-introduce" => {
            let c = vdi::VdiIntroduce {
                uuid: p.opt("uuid").to_string(),
                sr: by_uuid(emu, "SR", p.req("sr-uuid")?)?,
                location: p.req("location")?.to_string(),
                name_label: p.opt("name-label").to_string(),
                name_description: p.opt("name-description").to_string(),
                ty: p.opt("type").to_string(),
                sm_config: p.map("sm-config"),
                other_config: p.map("other-config"),
            };
            run("VDI.introduce", &|ctx| {
                vdi::introduce(emu, ctx, &c)
                    .and_then(|r| uuid_of(emu, "VDI", &r))
                    .map(line)
            })
        }
        "vdi-copy" => {
            let src = by_uuid(emu, "VDI", p.req("uuid")?)?;
            let dst = by_uuid(emu, "SR", p.req("sr-uuid")?)?;
            run("VDI.copy", &|ctx| {
                vdi::copy(emu, ctx, &src, &dst)
                    .and_then(|r| uuid_of(emu, "VDI", &r))
                    .map(line)
            })
        }
        "vdi-snapshot" | "vdi-clone" => {
            let src = by_uuid(emu, "VDI", p.req("uuid")?)?;
            let dp = p.map("driver-params");
            let snap = cmd == "vdi-snapshot";
            let new_name = p.opt("new-name-label").to_string();
            run(if snap { "VDI.snapshot" } else { "VDI.clone" }, &|ctx| {
                let r = vdi::snapshot_or_clone(emu, ctx, &src, &dp, snap)?;
                if !new_name.is_empty() {
                    emu.write(|db| {
                        db.get_mut("VDI", &r)?.put_s("name_label", &new_name);
                        Ok(())
                    })?;
                }
                uuid_of(emu, "VDI", &r).map(line)
            })
        }
        "vdi-resize" => {
            let r = by_uuid(emu, "VDI", p.req("uuid")?)?;
            let size = size_param(p, "disk-size")?;
            run("VDI.resize", &|ctx| {
                vdi::resize(emu, ctx, &r, size).map(|_| String::new())
            })
        }
        "vbd-create" => {
            let c = vm::VbdCreate {
                vm: by_uuid(emu, "VM", p.req("vm-uuid")?)?,
                vdi: by_uuid(emu, "VDI", p.req("vdi-uuid")?)?,
                userdevice: p.req("device")?.to_string(),
                bootable: bool_param(p, "bootable", false)?,
                mode: p.opt("mode").to_uppercase(),
                ty: p.opt("type").to_string(),
            };
            let r = vm::vbd_create(emu, &c)?;
            Ok(line(uuid_of(emu, "VBD", &r)?))
        }
        "vbd-destroy" => {
            vm::vbd_destroy(emu, &by_uuid(emu, "VBD", p.req("uuid")?)?)?;
            Ok(String::new())
        }
        "vm-install" => {
            let t =
                p.kv.get("template")
                    .or(p.kv.get("template-uuid"))
                    .or(p.kv.get("template-name"))
                    .cloned()
                    .ok_or_else(|| CliError::MissingParam("template".into()))?;
            let (template, srr) = emu.read(|db| {
                let tr = db.by_uuid("VM", &t).or_else(|_| {
                    db.find("VM", |v| v.b("is_a_template") && v.s("name_label") == t)
                        .into_iter()
                        .next()
                        .ok_or_else(|| ApiError::uuid_invalid("VM", &t))
                })?;
                let srr = match p.kv.get("sr-uuid") {
                    Some(u) => db.by_uuid("SR", u)?,
                    None => {
                        let d = db.get("pool", &storage::pool_ref(db)?)?.s("default_SR");
                        if is_null(&d) || !db.exists("SR", &d) {
                            return Err(ApiError::new(names::DEFAULT_SR_NOT_FOUND, [d]));
                        }
                        d
                    }
                };
                Ok((tr, srr))
            })?;
            let name = p.req("new-name-label")?.to_string();
            run("VM.install", &|ctx| {
                vm::install(emu, ctx, &template, &name, &srr)
                    .and_then(|r| uuid_of(emu, "VM", &r))
                    .map(line)
            })
        }
        "vm-start" => {
            let r = vm_ref(emu, p)?;
            let host = on_host(emu, p)?;
            run("VM.start", &|ctx| {
                vm::start(emu, ctx, &r, host.as_deref()).map(|_| String::new())
            })
        }
        "vm-shutdown" => {
            let r = vm_ref(emu, p)?;
            let name = if p.flag("force") {
                "VM.hard_shutdown"
            } else {
                "VM.clean_shutdown"
            };
            run(name, &|ctx| {
                vm::shutdown(emu, ctx, &r).map(|_| String::new())
            })
        }
        "vm-suspend" => {
            let r = vm_ref(emu, p)?;
            run("VM.suspend", &|ctx| {
                vm::suspend(emu, ctx, &r).map(|_| String::new())
            })
        }
        "vm-resume" => {
            let r = vm_ref(emu, p)?;
            let host = on_host(emu, p)?;
            run("VM.resume", &|ctx| {
                vm::resume(emu, ctx, &r, host.as_deref()).map(|_| String::new())
            })
        }
        "vm-migrate" => {
            let r = vm_ref(emu, p)?;
            let h = p.req("host")?;
            let target = emu.read(|db| host_ref(db, h))?;
            run("VM.pool_migrate", &|ctx| {
                vm::migrate(emu, ctx, &r, &target).map(|_| String::new())
            })
        }
        "vm-clone" => {
            let r = vm_ref(emu, p)?;
            let name = p.req("new-name-label")?.to_string();
            run("VM.clone", &|ctx| {
                vm::clone(emu, ctx, &r, &name)
                    .and_then(|n| uuid_of(emu, "VM", &n))
                    .map(line)
            })
        }
        "vm-uninstall" => {
            let r = vm_ref(emu, p)?;
            if !p.flag("force") {
                return Err(CliError::Other(
                    "vm-uninstall destroys the VM and its disks; add --force to confirm".into(),
                ));
            }
            run("VM.uninstall", &|ctx| {
                vm::uninstall(emu, ctx, &r, true).map(|_| String::new())
            })
        }
        "vm-destroy" => {
            vm::destroy(emu, &by_uuid(emu, "VM", p.req("uuid")?)?)?;
            Ok(String::new())
        }
        "help" => Ok(line(format!("Commands: {}", COMMANDS.join(", ")))),
        other => Err(CliError::UnknownCommand(other.to_string())),
    }
}

/// Every command besides `<class>-list`, `-param-get`, `-param-set` and `-param-list`.
pub const COMMANDS: &[&str] = &[
    "sr-create",
    "sr-introduce",
    "sr-forget",
    "sr-destroy",
    "sr-scan",
    "sr-update",
    "sr-probe",
    "pbd-create",
    "pbd-plug",
    "pbd-unplug",
    "pbd-destroy",
    "vdi-create",
    "vdi-destroy",
    "vdi-forget",
    "vdi-introduce",
    "vdi-copy",
    "vdi-snapshot",
    "vdi-clone",
    "vdi-resize",
    "vbd-create",
    "vbd-plug",
    "vbd-unplug",
    "vbd-destroy",
    "vm-install",
    "vm-start",
    "vm-shutdown",
    "vm-suspend",
    "vm-resume",
    "vm-migrate",
    "vm-clone",
    "vm-uninstall",
    "vm-destroy",
    "template-list",
];
