//! One SMAPI call from argv to the methodResponse: parse, validate, lock, call the driver,
//! render. Panics become faults. The caller (the binary) writes [`Outcome::stdout`] and
//! [`Outcome::stderr`] and exits 0, also for faults: xapi turns a non-zero exit into an opaque
//! SR_BACKEND_FAILURE and loses the code.

use std::ffi::OsString;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use crate::driver::{Ctx, Driver, Host, VdiCreate};
use crate::errors::{SmCode, SmError, SmResult};
use crate::host::LockGuard;
use crate::ids::{SrUuid, VdiUuid};
use crate::request::{Command, Request};
use crate::response::{self, Response};

/// Environment variable overriding how long a call waits for the SR or VDI lock (seconds).
pub const LOCK_TIMEOUT_ENV: &str = "SM_LOCK_TIMEOUT";
const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(300);

/// What the plugin prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Exactly one methodResponse document.
    pub stdout: String,
    /// Data for xapi (probe listings), usually empty.
    pub stderr: String,
    /// The fault code, when the call failed.
    pub fault: Option<i32>,
}

/// Commands that hold the SR lock for the whole call (sm's `ops_exclusive`).
fn needs_sr_lock(c: Command) -> bool {
    matches!(
        c,
        Command::SrCreate
            | Command::SrDelete
            | Command::SrAttach
            | Command::SrDetach
            | Command::SrScan
            | Command::SrUpdate
            | Command::VdiCreate
            | Command::VdiDelete
            | Command::VdiResize
            | Command::VdiSnapshot
            | Command::VdiClone
            | Command::VdiIntroduce
    )
}

fn lock_timeout() -> Duration {
    std::env::var(LOCK_TIMEOUT_ENV)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_LOCK_TIMEOUT)
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

/// Runs one plugin invocation: `argv` is the process's full argv (program name first).
pub fn run(argv: &[OsString], driver: &dyn Driver, host: &Host) -> Outcome {
    let started = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| handle(argv, driver, host)));
    let (resp, stderr, label) = match result {
        Ok((r, stderr, label)) => (r, stderr, label),
        Err(p) => {
            let msg = panic_message(p.as_ref());
            (
                Err(SmError::msg(
                    SmCode::SMGeneral,
                    format!("internal error: {msg}"),
                )),
                String::new(),
                String::from("?"),
            )
        }
    };
    let ms = started.elapsed().as_millis() as u64;
    match resp {
        Ok(r) => {
            tracing::info!(call = %label, ms, "ok");
            Outcome {
                stdout: r.to_xml(),
                stderr,
                fault: None,
            }
        }
        Err(e) => {
            tracing::error!(call = %label, ms, code = e.code.value(), "fault: {}", e);
            Outcome {
                stdout: response::fault_xml(&e),
                stderr,
                fault: Some(e.code.value()),
            }
        }
    }
}

fn handle(
    argv: &[OsString],
    driver: &dyn Driver,
    host: &Host,
) -> (SmResult<Response>, String, String) {
    if argv.len() != 2 {
        let e = SmError::msg(
            SmCode::BadRequest,
            format!(
                "expected exactly one argument (the methodCall), got {}",
                argv.len().saturating_sub(1)
            ),
        );
        return (Err(e), String::new(), "-".into());
    }
    let Some(xml) = argv[1].to_str() else {
        return (
            Err(SmError::msg(
                SmCode::BadRequest,
                "the methodCall is not valid UTF-8",
            )),
            String::new(),
            "-".into(),
        );
    };
    let req = match Request::parse(xml) {
        Ok(r) => r,
        Err(e) => return (Err(e), String::new(), "-".into()),
    };
    tracing::info!("{}", req.log_line());
    let label = format!(
        "{} sr={} vdi={}",
        req.command_name,
        req.sr_uuid.as_deref().unwrap_or("-"),
        req.vdi_uuid.as_deref().unwrap_or("-")
    );
    let cx = Ctx::new(&req, host);
    let r = call(&cx, driver);
    let stderr = cx.take_stderr();
    (r, stderr, label)
}

fn call(cx: &Ctx<'_>, driver: &dyn Driver) -> SmResult<Response> {
    let req = cx.req;
    let Some(cmd) = req.command else {
        return Err(SmError::msg(
            SmCode::Unimplemented,
            req.command_name.clone(),
        ));
    };
    if cmd == Command::SrGetDriverInfo {
        return Ok(Response::DriverInfo(driver.info()));
    }
    req.device_config.validate()?;
    let _locks = take_locks(cx, cmd)?;
    dispatch(cx, driver, cmd)
}

/// The SR lock (sm's `ops_exclusive`) then the VDI lock, in that order, so no two calls can wait
/// on each other in a cycle.
fn take_locks(cx: &Ctx<'_>, cmd: Command) -> SmResult<Vec<LockGuard>> {
    let req = cx.req;
    let timeout = lock_timeout();
    let lock_err = |e| SmError::new(SmCode::LockErr, e);
    let mut held = Vec::new();
    let sr_uuid = match req.sr_uuid.as_deref() {
        Some(s) => Some(SrUuid::new(s).map_err(|e| SmError::new(SmCode::BadRequest, e))?),
        None => None,
    };
    let from_config = matches!(
        cmd,
        Command::VdiAttachFromConfig | Command::VdiDetachFromConfig
    );
    if (needs_sr_lock(cmd) || cmd.is_vdi()) && sr_uuid.is_none() && !from_config {
        return Err(SmError::msg(
            SmCode::BadRequest,
            format!("{cmd} needs sr_uuid"),
        ));
    }
    if needs_sr_lock(cmd)
        && let Some(sr) = &sr_uuid
    {
        held.push(
            cx.host
                .locks
                .acquire(sr.as_str(), "sr", timeout)
                .map_err(lock_err)?,
        );
    }
    if cmd.is_vdi()
        && cmd != Command::VdiCreate
        && let Some(v) = req.vdi_uuid.as_deref().filter(|v| !v.is_empty())
    {
        let v = VdiUuid::new(v).map_err(|e| SmError::new(SmCode::BadRequest, e))?;
        held.push(
            cx.host
                .locks
                .acquire(v.as_str(), "vdi", timeout)
                .map_err(lock_err)?,
        );
    }
    Ok(held)
}

fn dispatch(cx: &Ctx<'_>, d: &dyn Driver, cmd: Command) -> SmResult<Response> {
    let req = cx.req;
    let nil = |r: SmResult<()>| r.map(|_| Response::Nil);
    match cmd {
        Command::SrGetDriverInfo => Ok(Response::DriverInfo(d.info())),
        Command::SrCreate => {
            let size = match req.args.first().map(|s| s.trim()) {
                None | Some("") => 0,
                Some(s) => s.parse().map_err(|_| {
                    SmError::msg(SmCode::BadRequest, format!("SR size {s:?} is not a number"))
                })?,
            };
            nil(d.sr_create(cx, size))
        }
        Command::SrDelete => nil(d.sr_delete(cx)),
        Command::SrAttach => nil(d.sr_attach(cx)),
        Command::SrDetach => nil(d.sr_detach(cx)),
        Command::SrScan => nil(d.sr_scan(cx)),
        Command::SrUpdate => nil(d.sr_update(cx)),
        Command::SrProbe => d.sr_probe(cx).map(Response::Str),
        Command::SrContentType => d.sr_content_type(cx).map(Response::Str),
        Command::VdiCreate => d
            .vdi_create(cx, &VdiCreate::from_request(req)?)
            .map(Response::Vdi),
        Command::VdiDelete => nil(d.vdi_delete(cx)),
        Command::VdiAttach => d
            .vdi_attach(cx, req.arg_bool(0, "writable")?)
            .map(Response::Attach),
        Command::VdiDetach => nil(d.vdi_detach(cx)),
        Command::VdiActivate => nil(d.vdi_activate(cx, req.arg_bool(0, "writable")?)),
        Command::VdiDeactivate => nil(d.vdi_deactivate(cx)),
        Command::VdiSnapshot => d.vdi_snapshot(cx).map(Response::Vdi),
        Command::VdiClone => d.vdi_clone(cx).map(Response::Vdi),
        Command::VdiResize => d
            .vdi_resize(cx, req.arg_size(0, "new size")?)
            .map(Response::Vdi),
        Command::VdiUpdate => nil(d.vdi_update(cx)),
        Command::VdiIntroduce => d.vdi_introduce(cx).map(Response::Vdi),
        Command::VdiGenerateConfig => d.vdi_generate_config(cx).map(Response::Str),
        Command::VdiAttachFromConfig => d.vdi_attach_from_config(cx).map(Response::Attach),
        Command::VdiDetachFromConfig => nil(d.vdi_detach_from_config(cx)),
        Command::VdiEpochBegin => nil(d.vdi_epoch_begin(cx)),
        Command::VdiEpochEnd => nil(d.vdi_epoch_end(cx)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{Capability, ConfigKey, DriverInfo};
    use crate::response::AttachInfo;
    use crate::xenapi::Endpoint;
    use crate::xmlrpc::{MethodResponse, Value, parse_method_response};
    use std::sync::Arc;

    struct Toy;
    static TOY: DriverInfo = DriverInfo {
        sr_type: "toy",
        plugin: "ToySR",
        name: "Toy",
        description: "test driver",
        vendor: "us",
        copyright: "(C) us",
        driver_version: "1.0",
        required_api_version: "1.0",
        capabilities: &[Capability::VdiAttach],
        configuration: &[ConfigKey {
            key: "location",
            description: "where",
        }],
    };
    impl Driver for Toy {
        fn info(&self) -> &'static DriverInfo {
            &TOY
        }
        fn vdi_attach(&self, cx: &Ctx<'_>, writable: bool) -> SmResult<AttachInfo> {
            if cx.req.vdi_uuid.as_deref() == Some("00000000-0000-0000-0000-00000000dead") {
                panic!("boom");
            }
            cx.emit_stderr("<probe/>");
            Ok(AttachInfo {
                params: Some(format!("/dev/toy{}", u8::from(writable))),
                ..Default::default()
            })
        }
    }

    fn host(d: &tempfile::TempDir) -> Host {
        Host::with(
            Arc::new(crate::host::SystemRunner::new()),
            d.path(),
            Endpoint::Unix(d.path().join("xapi")),
        )
    }

    fn call_xml(name: &str, extra: &str) -> OsString {
        OsString::from(format!(
            "<methodCall><methodName>{name}</methodName><params><param><value><struct><member><name>command</name><value>{name}</value></member>{extra}</struct></value></param></params></methodCall>"
        ))
    }

    fn fault_code(o: &Outcome) -> Option<i32> {
        match parse_method_response(&o.stdout).unwrap() {
            MethodResponse::Fault { code, .. } => Some(code),
            MethodResponse::Success(_) => None,
        }
    }

    const SR: &str =
        "<member><name>sr_uuid</name><value>11111111-2222-4333-8444-555555555555</value></member>";

    #[test]
    fn driver_info_without_anything_else() {
        let d = tempfile::tempdir().unwrap();
        let o = run(
            &["ToySR".into(), call_xml("sr_get_driver_info", "")],
            &Toy,
            &host(&d),
        );
        let MethodResponse::Success(Value::Struct(m)) = parse_method_response(&o.stdout).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            m["capabilities"],
            Value::Array(vec![Value::Str("VDI_ATTACH".into())])
        );
        assert!(
            !d.path().join("var").exists(),
            "driver_info must not touch the host"
        );
    }

    #[test]
    fn argv_count_and_garbage_are_bad_request() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            fault_code(&run(&["ToySR".into()], &Toy, &host(&d))),
            Some(143)
        );
        assert_eq!(
            fault_code(&run(
                &["ToySR".into(), "a".into(), "b".into()],
                &Toy,
                &host(&d)
            )),
            Some(143)
        );
        assert_eq!(
            fault_code(&run(&["ToySR".into(), "<x".into()], &Toy, &host(&d))),
            Some(143)
        );
    }

    #[test]
    fn unimplemented_and_unknown_are_38() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            fault_code(&run(
                &["ToySR".into(), call_xml("sr_scan", SR)],
                &Toy,
                &host(&d)
            )),
            Some(38)
        );
        assert_eq!(
            fault_code(&run(
                &["ToySR".into(), call_xml("vdi_compose", SR)],
                &Toy,
                &host(&d)
            )),
            Some(38)
        );
    }

    #[test]
    fn panic_becomes_fault_and_stderr_is_passed_through() {
        let d = tempfile::tempdir().unwrap();
        let args = "<member><name>args</name><value><array><data><value>true</value></data></array></value></member>";
        let ok = run(
            &[
                "ToySR".into(),
                call_xml(
                    "vdi_attach",
                    &format!(
                        "{SR}{args}<member><name>vdi_uuid</name><value>00000000-0000-0000-0000-000000000001</value></member>"
                    ),
                ),
            ],
            &Toy,
            &host(&d),
        );
        assert_eq!(fault_code(&ok), None, "{}", ok.stdout);
        assert_eq!(ok.stderr, "<probe/>");
        let boom = run(
            &[
                "ToySR".into(),
                call_xml(
                    "vdi_attach",
                    &format!(
                        "{SR}{args}<member><name>vdi_uuid</name><value>00000000-0000-0000-0000-00000000dead</value></member>"
                    ),
                ),
            ],
            &Toy,
            &host(&d),
        );
        assert_eq!(fault_code(&boom), Some(202));
        assert!(boom.stdout.contains("internal error: boom"));
    }

    #[test]
    fn path_traversal_in_uuids_is_rejected_before_locking() {
        let d = tempfile::tempdir().unwrap();
        let evil = "<member><name>sr_uuid</name><value>../../etc</value></member>";
        assert_eq!(
            fault_code(&run(
                &["ToySR".into(), call_xml("sr_scan", evil)],
                &Toy,
                &host(&d)
            )),
            Some(143)
        );
    }

    #[test]
    fn bad_character_in_device_config() {
        let d = tempfile::tempdir().unwrap();
        let dc = "<member><name>device_config</name><value><struct><member><name>location</name><value>/a&#10;b</value></member></struct></value></member>";
        assert_eq!(
            fault_code(&run(
                &["ToySR".into(), call_xml("sr_scan", &format!("{SR}{dc}"))],
                &Toy,
                &host(&d)
            )),
            Some(2)
        );
    }
}
