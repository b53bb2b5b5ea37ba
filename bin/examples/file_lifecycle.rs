//! The main job, for now: a `file` SR lifecycle driven through the plugin exactly as xapi calls
//! it (one exec of `XSMFileSR` per SMAPI call, argv[1] = the methodCall in xapi's wire shape,
//! stdout = the methodResponse), printing each call, the XenAPI calls the plugin made back, and
//! the response. A tiny in-process XenAPI server stands in for xapi; no root needed.
//!
//! `xapi-tests/demo/file-lifecycle.sh` builds and runs it. Arguments: `[path/to/xsm]` (default:
//! the `xsm` built beside this example).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use drivers::testing::{FakeXapi, SR_REF};
use sm_core::xmlrpc::Value;

const HOST: &str = "OpaqueRef:demo-host";

fn v(s: &str) -> String {
    if s.is_empty() {
        "<value/>".into()
    } else {
        format!(
            "<value>{}</value>",
            s.replace('&', "&amp;").replace('<', "&lt;")
        )
    }
}

/// A methodCall in xapi's shape (untyped strings, no whitespace).
fn call(cmd: &str, args: &[&str], loc: &str, sr: &str, extra: &[(&str, &str)]) -> String {
    let mut m = format!(
        "<member><name>host_ref</name>{}</member><member><name>command</name>{}</member><member><name>args</name><value><array><data>{}</data></array></value></member><member><name>device_config</name><value><struct><member><name>SRmaster</name><value>true</value></member><member><name>location</name>{}</member></struct></value></member><member><name>session_ref</name>{}</member><member><name>sr_ref</name>{}</member><member><name>sr_uuid</name>{}</member>",
        v(HOST),
        v(cmd),
        args.iter().map(|a| v(a)).collect::<String>(),
        v(loc),
        v("OpaqueRef:demo-session"),
        v(SR_REF),
        v(sr)
    );
    for (k, val) in extra {
        m.push_str(&format!("<member><name>{k}</name>{}</member>", v(val)));
    }
    format!(
        "<?xml version=\"1.0\"?><methodCall><methodName>{cmd}</methodName><params><param><value><struct>{m}</struct></value></param></params></methodCall>"
    )
}

struct Demo {
    plugin: PathBuf,
    root: PathBuf,
    smlog: PathBuf,
    xapi: FakeXapi,
    loc: String,
    sr: String,
    out: std::io::Stdout,
}

impl Demo {
    fn run(&mut self, title: &str, xml: &str) -> Result<Value, (i32, String)> {
        let before = self.xapi.calls().len();
        #[allow(clippy::disallowed_methods)] // the demo execs the plugin exactly as xapi does
        let out = Command::new(&self.plugin)
            .arg(xml)
            .env("SM_ROOT", &self.root)
            .env("SM_XAPI", self.xapi.endpoint())
            .env("SMLOG_FILE", &self.smlog)
            .output();
        let mut o = self.out.lock();
        let _ = writeln!(
            o,
            "\n=== {title}\n--> {} {xml}",
            self.plugin
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("XSMFileSR")
        );
        let out = match out {
            Ok(out) => out,
            Err(e) => return Err((-1, format!("cannot exec the plugin: {e}"))),
        };
        let calls = self.xapi.calls();
        if calls.len() > before {
            let _ = writeln!(
                o,
                "    XenAPI calls by the plugin: {}",
                calls[before..].join(", ")
            );
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let _ = writeln!(
            o,
            "<-- exit {} stdout:\n{}",
            out.status.code().unwrap_or(-1),
            stdout.trim_end()
        );
        if !out.stderr.is_empty() {
            let _ = writeln!(o, "<-- stderr: {}", String::from_utf8_lossy(&out.stderr));
        }
        drivers::testing::response(&stdout)
    }

    fn sr_call(&mut self, cmd: &str, args: &[&str]) -> Result<Value, (i32, String)> {
        let xml = call(cmd, args, &self.loc, &self.sr, &[]);
        self.run(cmd, &xml)
    }

    fn vdi_call(&mut self, cmd: &str, args: &[&str], vdi: &str) -> Result<Value, (i32, String)> {
        let r = self.xapi.vdi(vdi).map(|(r, _)| r).unwrap_or_default();
        let xml = call(
            cmd,
            args,
            &self.loc,
            &self.sr,
            &[
                ("vdi_ref", &r),
                ("vdi_location", vdi),
                ("vdi_uuid", vdi),
                ("vdi_on_boot", "persist"),
                ("vdi_allow_caching", "false"),
            ],
        );
        self.run(&format!("{cmd} {vdi}"), &xml)
    }
}

fn uuid(v: &Value) -> String {
    v.as_struct()
        .and_then(|m| m.get("uuid"))
        .map(Value::to_text)
        .unwrap_or_default()
}

fn lifecycle(d: &mut Demo) -> Result<(), (i32, String)> {
    d.sr_call("sr_create", &["0"])?;
    d.sr_call("sr_attach", &[])?;
    let vdi = uuid(&d.sr_call(
        "vdi_create",
        &[
            "104857600",
            "demo disk",
            "made by the demo",
            "",
            "false",
            "",
            "",
            "false",
        ],
    )?);
    d.vdi_call("vdi_epoch_begin", &[], &vdi)?;
    let a = d.vdi_call("vdi_attach", &["true"], &vdi)?;
    d.vdi_call("vdi_activate", &["true"], &vdi)?;
    let nbd = a
        .as_struct()
        .and_then(|m| m.get("params_nbd"))
        .map(Value::to_text)
        .unwrap_or_default();
    if let Some((sock, name)) = nbd
        .strip_prefix("nbd:unix:")
        .and_then(|r| r.rsplit_once(":exportname="))
    {
        let uri = format!("nbd+unix:///{name}?socket={sock}");
        #[allow(clippy::disallowed_methods)] // the demo plays the datapath: a guest writing data
        let w = Command::new("qemu-io")
            .args(["-f", "raw", "-c", "write -P 0x42 0 4M", &uri])
            .output();
        let _ = writeln!(
            d.out.lock(),
            "\n=== the datapath writes 4 MiB through {nbd}: {}",
            if w.is_ok_and(|o| o.status.success()) {
                "ok"
            } else {
                "failed"
            }
        );
    }
    let snap = uuid(&d.vdi_call("vdi_snapshot", &[], &vdi)?);
    d.vdi_call("vdi_deactivate", &[], &vdi)?;
    d.vdi_call("vdi_detach", &[], &vdi)?;
    d.vdi_call("vdi_epoch_end", &[], &vdi)?;
    let clone = uuid(&d.vdi_call("vdi_clone", &[], &vdi)?);
    d.vdi_call("vdi_resize", &["209715200"], &vdi)?;
    d.sr_call("sr_scan", &[])?;
    match d.sr_call("sr_delete", &[]) {
        Err((39, _)) => {}
        other => {
            return Err((
                -1,
                format!("sr_delete of a non-empty SR should be fault 39, got {other:?}"),
            ));
        }
    }
    for x in [&snap, &clone, &vdi] {
        d.vdi_call("vdi_delete", &[], x)?;
    }
    d.sr_call("sr_detach", &[])?;
    d.sr_call("sr_delete", &[])?;
    Ok(())
}

fn main() -> ExitCode {
    let plugin_bin = std::env::args().nth(1).map(PathBuf::from).or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().and_then(Path::parent).map(|p| p.join("xsm")))
    });
    let mut err = std::io::stderr().lock();
    let Some(bin) = plugin_bin.filter(|p| p.exists()) else {
        let _ = writeln!(err, "file_lifecycle: no xsm binary found; pass its path");
        return ExitCode::FAILURE;
    };
    let Ok(dir) = tempfile::Builder::new()
        .prefix("xsm-demo")
        .tempdir_in("/tmp")
    else {
        return ExitCode::FAILURE;
    };
    let plugin = dir.path().join("XSMFileSR");
    let Ok(xapi) = FakeXapi::start(&dir.path().join("xapi")) else {
        return ExitCode::FAILURE;
    };
    if std::os::unix::fs::symlink(&bin, &plugin).is_err() {
        return ExitCode::FAILURE;
    }
    let mut d = Demo {
        plugin,
        root: dir.path().join("root"),
        smlog: dir.path().join("SMlog"),
        xapi,
        loc: dir.path().join("sr").display().to_string(),
        sr: "d3a0d3a0-0000-4000-8000-000000000001".to_string(),
        out: std::io::stdout(),
    };
    let result = lifecycle(&mut d);
    let log = std::fs::read_to_string(&d.smlog).unwrap_or_default();
    let _ = writeln!(
        d.out.lock(),
        "\n=== SMlog ({} lines), last 5:\n{}",
        log.lines().count(),
        log.lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    match result {
        Ok(()) => {
            let _ = writeln!(
                d.out.lock(),
                "\nfile SR lifecycle: every call answered as xapi expects"
            );
            ExitCode::SUCCESS
        }
        Err((code, s)) => {
            let _ = writeln!(err, "file SR lifecycle FAILED: fault {code}: {s}");
            ExitCode::FAILURE
        }
    }
}
