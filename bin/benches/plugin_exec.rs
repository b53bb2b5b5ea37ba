//! Whole plugin calls, exec to exit, as xapi pays for them: `sr_get_driver_info` and
//! `vdi_activate` on a `file` SR (the latter with a XenAPI server in this process answering its
//! XenAPI round trips; each sample is a first activation as xapi makes it: an untimed
//! `vdi_deactivate`, `vdi_detach` and `vdi_attach` run before it). Also `/bin/true` as the
//! process-spawn floor of this machine.
//!
//! `cargo bench -p xsm --bench plugin_exec` (release profile). Prints min / median / p90 / max in
//! milliseconds and writes them as JSON to `$CARGO_TARGET_DIR/xsm-bench.json` (or `target/`).
//! `XSM_BENCH_ITERS` sets the sample count (default 300). Goal: median under 5 ms.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed setup is a failed test

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use drivers::testing::FakeXapi;

const SR: &str = "5e1f3c2a-8d4b-4e6f-9a0b-1c2d3e4f5a6b";

struct Stats {
    name: &'static str,
    ms: Vec<f64>,
}

impl Stats {
    fn pct(&self, p: f64) -> f64 {
        let i = ((self.ms.len() - 1) as f64 * p).round() as usize;
        self.ms[i]
    }
}

fn call_xml(cmd: &str, args: &[&str], dconf_loc: &str, extra: &[(&str, &str)]) -> String {
    let v = |s: &str| {
        if s.is_empty() {
            "<value/>".to_string()
        } else {
            format!("<value>{s}</value>")
        }
    };
    let mut members = format!(
        "<member><name>host_ref</name>{}</member><member><name>command</name>{}</member><member><name>args</name><value><array><data>{}</data></array></value></member><member><name>device_config</name><value><struct><member><name>SRmaster</name><value>true</value></member><member><name>location</name>{}</member></struct></value></member>",
        v("OpaqueRef:bench-host"),
        v(cmd),
        args.iter().map(|a| v(a)).collect::<String>(),
        v(dconf_loc)
    );
    for (k, val) in extra {
        members.push_str(&format!("<member><name>{k}</name>{}</member>", v(val)));
    }
    format!(
        "<?xml version=\"1.0\"?><methodCall><methodName>{cmd}</methodName><params><param><value><struct>{members}</struct></value></param></params></methodCall>"
    )
}

fn exec(prog: &Path, arg: Option<&str>, env: &[(&str, OsString)]) -> (Duration, String) {
    #[allow(clippy::disallowed_methods)] // the benchmark execs the plugin exactly as xapi does
    let mut c = Command::new(prog);
    if let Some(a) = arg {
        c.arg(a);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let t = Instant::now();
    let out = c.output().expect("exec");
    (
        t.elapsed(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn measure(name: &'static str, iters: usize, mut f: impl FnMut() -> Duration) -> Stats {
    for _ in 0..10 {
        f();
    }
    let mut ms: Vec<f64> = (0..iters).map(|_| f().as_secs_f64() * 1000.0).collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    Stats { name, ms }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let iters: usize = std::env::var("XSM_BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let d = tempfile::Builder::new()
        .prefix("b")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let xapi = FakeXapi::start(&d.path().join("xapi")).expect("fake xapi");
    let link = d.path().join("XSMFileSR");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_xsm"), &link).expect("link");
    let env: Vec<(&str, OsString)> = vec![
        ("SM_ROOT", d.path().join("root").into()),
        ("SM_XAPI", xapi.endpoint().into()),
        ("SMLOG_FILE", d.path().join("SMlog").into()),
    ];
    let loc = d.path().join("sr").display().to_string();
    let sr_keys = [
        ("session_ref", "OpaqueRef:s"),
        ("sr_ref", drivers::testing::SR_REF),
        ("sr_uuid", SR),
    ];

    let info = call_xml("sr_get_driver_info", &[], "", &[]);
    let (_, out) = exec(
        &link,
        Some(&call_xml("sr_create", &["0"], &loc, &sr_keys)),
        &env,
    );
    assert!(!out.contains("<fault>"), "{out}");
    let (_, out) = exec(
        &link,
        Some(&call_xml(
            "vdi_create",
            &["8388608", "bench", "", "", "false", "", "", "false"],
            &loc,
            &sr_keys,
        )),
        &env,
    );
    let vdi = drivers::testing::response(&out)
        .ok()
        .and_then(|v| {
            v.as_struct()
                .and_then(|m| m.get("uuid"))
                .map(|u| u.to_text())
        })
        .expect("vdi_create");
    let (vref, _) = xapi.vdi(&vdi).expect("record");
    let mut vdi_keys = sr_keys.to_vec();
    vdi_keys.extend([
        ("vdi_ref", vref.as_str()),
        ("vdi_uuid", vdi.as_str()),
        ("vdi_location", vdi.as_str()),
    ]);
    let activate = call_xml("vdi_activate", &["true"], &loc, &vdi_keys);
    let deactivate = call_xml("vdi_deactivate", &[], &loc, &vdi_keys);
    let detach = call_xml("vdi_detach", &[], &loc, &vdi_keys);
    let attach = call_xml("vdi_attach", &["true"], &loc, &vdi_keys);
    let (_, out) = exec(&link, Some(&activate), &env);
    assert!(!out.contains("<fault>"), "{out}");

    let results = [
        measure("spawn_floor_bin_true", iters, || {
            exec(Path::new("/bin/true"), None, &[]).0
        }),
        measure("sr_get_driver_info", iters, || {
            exec(&link, Some(&info), &env).0
        }),
        measure("vdi_activate_file_sr", iters, || {
            exec(&link, Some(&deactivate), &env);
            exec(&link, Some(&detach), &env);
            exec(&link, Some(&attach), &env);
            exec(&link, Some(&activate), &env).0
        }),
    ];
    let mut json = String::from("{\n");
    let mut stdout = std::io::stdout().lock();
    for (i, s) in results.iter().enumerate() {
        let _ = writeln!(
            stdout,
            "{:<24} n={:<5} min {:>6.2} ms  median {:>6.2} ms  p90 {:>6.2} ms  max {:>6.2} ms",
            s.name,
            s.ms.len(),
            s.ms[0],
            s.pct(0.5),
            s.pct(0.9),
            s.ms[s.ms.len() - 1]
        );
        json.push_str(&format!(
            "  \"{}\": {{\"n\": {}, \"min_ms\": {:.3}, \"median_ms\": {:.3}, \"p90_ms\": {:.3}, \"max_ms\": {:.3}}}{}\n",
            s.name,
            s.ms.len(),
            s.ms[0],
            s.pct(0.5),
            s.pct(0.9),
            s.ms[s.ms.len() - 1],
            if i + 1 < results.len() { "," } else { "" }
        ));
    }
    json.push_str("}\n");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    let _ = std::fs::write(target.join("xsm-bench.json"), json);
}
