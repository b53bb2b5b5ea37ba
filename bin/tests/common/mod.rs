//! Shared harness for tests that exec the real binary as xapi does: a `<Name>SR` link in a
//! temporary directory, a host root (`SM_ROOT`), an SMlog file, and a tiny XenAPI server.
//! Calls are written in xapi's own shape (ocaml-rpc: untyped `<value>` strings, `<value/>` for
//! "", no whitespace; sm-anchor §1.2), by hand, not with sm-core's serializer.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test harness: a failed setup is a failed test

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use drivers::testing::FakeXapi;
use sm_core::xmlrpc::Value;

pub const HOST_REF: &str = "OpaqueRef:7b1ce1a4-host-0001";
pub const SESSION: &str = "OpaqueRef:2f0a-session-0001";

/// One test environment.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub xapi: FakeXapi,
}

/// What one plugin run printed.
#[derive(Debug)]
pub struct Run {
    pub stdout: String,
    pub stderr: String,
    pub code: Option<i32>,
}

impl Run {
    /// The result value; panics with the fault otherwise.
    pub fn ok(&self) -> Value {
        assert_eq!(self.code, Some(0), "exit status");
        match drivers::testing::response(&self.stdout) {
            Ok(v) => v,
            Err((code, s)) => panic!("fault {code}: {s}"),
        }
    }
    /// The fault code; panics on success.
    pub fn fault(&self) -> i32 {
        assert_eq!(self.code, Some(0), "exit status must be 0 for faults too");
        match drivers::testing::response(&self.stdout) {
            Ok(v) => panic!("expected a fault, got {v:?}"),
            Err((code, _)) => code,
        }
    }
    pub fn fault_string(&self) -> String {
        drivers::testing::response(&self.stdout)
            .err()
            .map(|e| e.1)
            .unwrap_or_default()
    }
}

pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn xstr(s: &str) -> String {
    if s.is_empty() {
        "<value/>".into()
    } else {
        format!("<value>{}</value>", xml_escape(s))
    }
}

fn xstruct(m: &[(String, String)]) -> String {
    let members: String = m
        .iter()
        .map(|(k, v)| format!("<member><name>{}</name>{}</member>", xml_escape(k), v))
        .collect();
    format!("<value><struct>{members}</struct></value>")
}

/// A methodCall as xapi's `Sm_exec.xmlrpc_of_call` builds it.
#[derive(Clone, Debug)]
pub struct Call {
    cmd: String,
    args: Vec<String>,
    dconf: Vec<(String, String)>,
    fields: Vec<(String, String)>,
}

impl Call {
    pub fn new(cmd: &str) -> Call {
        Call {
            cmd: cmd.into(),
            args: Vec::new(),
            dconf: Vec::new(),
            fields: Vec::new(),
        }
    }
    pub fn args(mut self, a: &[&str]) -> Call {
        self.args = a.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn dconf(mut self, k: &str, v: &str) -> Call {
        self.dconf.push((k.into(), v.into()));
        self
    }
    pub fn field(mut self, k: &str, v: &str) -> Call {
        self.fields.retain(|(fk, _)| fk != k);
        self.fields.push((k.into(), xstr(v)));
        self
    }
    pub fn map_field(mut self, k: &str, m: &[(&str, &str)]) -> Call {
        self.fields.retain(|(fk, _)| fk != k);
        let inner: Vec<(String, String)> =
            m.iter().map(|(a, b)| (a.to_string(), xstr(b))).collect();
        self.fields.push((k.into(), xstruct(&inner)));
        self
    }
    /// The keys of an SR-scoped call with a session.
    pub fn sr(self, sr_uuid: &str) -> Call {
        self.field("session_ref", SESSION)
            .field("sr_ref", drivers::testing::SR_REF)
            .field("sr_uuid", sr_uuid)
            .field("subtask_of", "OpaqueRef:NULL")
            .dconf("SRmaster", "true")
    }
    /// The keys of a VDI call (vdi_ref as the fake knows it, or NULL).
    pub fn vdi(self, env: &Env, vdi_uuid: &str) -> Call {
        let (r, loc) = match env.xapi.vdi(vdi_uuid) {
            Some((r, rec)) => (
                r,
                rec.get("location").map(Value::to_text).unwrap_or_default(),
            ),
            None => ("OpaqueRef:NULL".to_string(), vdi_uuid.to_string()),
        };
        self.field("vdi_ref", &r)
            .field("vdi_location", &loc)
            .field("vdi_uuid", vdi_uuid)
            .field("vdi_on_boot", "persist")
            .field("vdi_allow_caching", "false")
    }
    pub fn xml(&self) -> String {
        let mut m = vec![
            ("host_ref".to_string(), xstr(HOST_REF)),
            ("command".to_string(), xstr(&self.cmd)),
            (
                "args".to_string(),
                format!(
                    "<value><array><data>{}</data></array></value>",
                    self.args.iter().map(|a| xstr(a)).collect::<String>()
                ),
            ),
            (
                "device_config".to_string(),
                xstruct(
                    &self
                        .dconf
                        .iter()
                        .map(|(k, v)| (k.clone(), xstr(v)))
                        .collect::<Vec<_>>(),
                ),
            ),
        ];
        m.extend(self.fields.iter().cloned());
        format!(
            "<?xml version=\"1.0\"?><methodCall><methodName>{}</methodName><params><param>{}</param></params></methodCall>",
            self.cmd,
            xstruct(&m)
        )
    }
}

impl Env {
    /// A fresh environment under a short /tmp path (Unix socket paths are limited to 107 bytes).
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("x")
            .rand_bytes(5)
            .tempdir_in("/tmp")
            .unwrap();
        let root = dir.path().join("r");
        std::fs::create_dir_all(&root).unwrap();
        let xapi = FakeXapi::start(&dir.path().join("xapi")).unwrap();
        Env { dir, root, xapi }
    }

    /// The `<name>` link to the binary.
    pub fn plugin(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        if !p.exists() {
            std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_xsm"), &p).unwrap();
        }
        p
    }

    pub fn smlog(&self) -> PathBuf {
        self.dir.path().join("SMlog")
    }

    /// Runs `plugin` with the given argv (after argv[0]).
    pub fn exec<I, S>(&self, plugin: &str, argv: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        #[allow(clippy::disallowed_methods)] // the test execs the plugin exactly as xapi does
        let out = Command::new(self.plugin(plugin))
            .args(argv)
            .env("SM_ROOT", &self.root)
            .env("SM_XAPI", self.xapi.endpoint())
            .env("SMLOG_FILE", self.smlog())
            .env("SM_LOCK_TIMEOUT", "20")
            .output()
            .unwrap();
        Run {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            code: out.status.code(),
        }
    }

    /// Starts `plugin` on `c` without waiting (its output discarded), to kill it mid-call.
    pub fn spawn(&self, plugin: &str, c: &Call) -> std::process::Child {
        #[allow(clippy::disallowed_methods)] // the test execs the plugin exactly as xapi does
        Command::new(self.plugin(plugin))
            .arg(c.xml())
            .env("SM_ROOT", &self.root)
            .env("SM_XAPI", self.xapi.endpoint())
            .env("SMLOG_FILE", self.smlog())
            .env("SM_LOCK_TIMEOUT", "20")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    pub fn call(&self, plugin: &str, c: &Call) -> Run {
        self.exec(plugin, [c.xml()])
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        drivers::testing::stop_exports(&sm_core::host::Paths::new(&self.root));
    }
}

/// A struct member as text.
pub fn member(v: &Value, k: &str) -> String {
    v.as_struct()
        .and_then(|m| m.get(k))
        .map(Value::to_text)
        .unwrap_or_default()
}

/// Runs a host tool for checks (qemu-io, qemu-img).
pub fn tool(program: &str, args: &[&str]) -> sm_core::host::Output {
    use sm_core::host::{Cmd, Runner, SystemRunner};
    SystemRunner::new()
        .run(&Cmd::new(program).args(args))
        .unwrap_or_else(|e| panic!("{e}"))
}

pub fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}
