//! `xapi-demo`: the main job. Installs the plugins into a scratch plugin directory with
//! install.sh, starts the xapi emulator, runs the SMAPI spec's appendix test script against the
//! `file` SR (and, as root, against `lvm` and `ext` on a fresh loop device; `lvm` only where the
//! kernel has device-mapper), prints what every `xe` command did at the SMAPI level, and checks
//! it all against appendix A. Exit status 0 only when every run passed.
//!
//! ```text
//! xapi-demo [--xsm PATH] [--work DIR] [--no-block] [--real-sleep] [--repo DIR]
//! xapi-demo --check-trace <state>/trace.jsonl    (summary and appendix A check of any trace)
//! ```
//! `xapi-tests/demo/run` builds what is needed and runs this.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use sm_core::host::{Cmd, Runner, SystemRunner};
use xapi_tests::appendix::{self, Outcome, Setup, Variant};

fn say(msg: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{msg}");
}

fn fail(msg: &str) -> ExitCode {
    let _ = writeln!(std::io::stderr().lock(), "xapi-demo: {msg}");
    ExitCode::FAILURE
}

struct Opts {
    check_trace: Option<PathBuf>,
    xsm: Option<PathBuf>,
    work: Option<PathBuf>,
    block: bool,
    real_sleep: bool,
    repo: PathBuf,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        check_trace: None,
        xsm: None,
        work: None,
        block: true,
        real_sleep: false,
        repo: Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--check-trace" => o.check_trace = Some(val()?.into()),
            "--xsm" => o.xsm = Some(val()?.into()),
            "--work" => o.work = Some(val()?.into()),
            "--repo" => o.repo = val()?.into(),
            "--no-block" => o.block = false,
            "--real-sleep" => o.real_sleep = true,
            "-h" | "--help" => return Err("usage: xapi-demo [--xsm PATH] [--work DIR] [--no-block] [--real-sleep] [--repo DIR] | xapi-demo --check-trace TRACE".into()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(o)
}

fn run(cmd: Cmd) -> Result<String, String> {
    SystemRunner::new()
        .run(&cmd)
        .map(|o| o.stdout_str().trim().to_string())
        .map_err(|e| e.to_string())
}

/// A fresh loop device over a sparse file; returns the device.
fn loop_device(file: &Path, size: u64) -> Result<String, String> {
    let f = std::fs::File::create(file).map_err(|e| e.to_string())?;
    f.set_len(size).map_err(|e| e.to_string())?;
    run(Cmd::new("losetup")
        .args(["--find", "--show"])
        .arg(file)
        .timeout(Duration::from_secs(30)))
}

fn report(o: &Outcome) {
    say(&o.summary);
    if o.passed() {
        say("PASSED\n");
    } else {
        for p in &o.problems {
            say(&format!("FAILED: {p}"));
        }
        say(&format!(
            "script output: {}\n",
            o.run.ran.with_file_name("script.out").display()
        ));
    }
}

fn check_trace(t: &Path) -> ExitCode {
    match xapi_tests::trace::read(t) {
        Ok(events) => {
            let verdicts = appendix::check::check(&events);
            say(&appendix::report::summary(
                "trace check",
                &verdicts,
                0,
                &t.display().to_string(),
            ));
            match appendix::check::first_mismatch(&verdicts) {
                None => ExitCode::SUCCESS,
                Some(m) => fail(&format!("first mismatch: {m}")),
            }
        }
        Err(e) => fail(&e.to_string()),
    }
}

fn main() -> ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => return fail(&e),
    };
    if let Some(t) = &o.check_trace {
        return check_trace(t);
    }
    let exe_dir = match std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        Some(d) => d,
        None => return fail("cannot find my own directory"),
    };
    let xsm = o.xsm.clone().unwrap_or_else(|| exe_dir.join("xsm"));
    if !exe_dir.join("xe").is_file() || !xsm.is_file() {
        return fail(&format!(
            "need xe in {} and xsm at {} (run xapi-tests/demo/run)",
            exe_dir.display(),
            xsm.display()
        ));
    }
    let work = match &o.work {
        Some(w) => w.clone(),
        None => match run(Cmd::new("mktemp").args(["-d", "/tmp/xapi-demo.XXXXXX"])) {
            Ok(d) => PathBuf::from(d),
            Err(e) => return fail(&e),
        },
    };
    say(&format!("work directory: {}", work.display()));
    let plugin_dir = match appendix::install_plugins(&o.repo, &xsm, &work.join("dest")) {
        Ok(p) => p,
        Err(e) => return fail(&e.to_string()),
    };
    say(&format!(
        "plugins installed by install.sh into {}",
        plugin_dir.display()
    ));
    let setup = Setup {
        repo: o.repo.clone(),
        bin_dir: exe_dir,
        plugin_dir,
        real_sleep: o.real_sleep,
    };
    let mut ok = true;
    let file = work.join("file");
    match appendix::run_variant(
        &setup,
        &file,
        &Variant::File {
            location: file.join("sr"),
        },
    ) {
        Ok(out) => {
            report(&out);
            ok &= out.passed();
        }
        Err(e) => {
            say(&format!("FAILED: file SR run: {e}"));
            ok = false;
        }
    }
    if o.block && nix::unistd::geteuid().is_root() {
        let dir = work.join("block");
        let _ = std::fs::create_dir_all(&dir);
        match loop_device(&dir.join("disk.img"), 2 << 30) {
            Ok(dev) => {
                let types = if appendix::lvm_usable() {
                    vec!["xsmlvm".into(), "xsmext".into()]
                } else {
                    say(
                        "lvm: skipped here (no device-mapper in this kernel or no lvm2); the storage lab runs it (run-suite lab appendix)",
                    );
                    vec!["xsmext".into()]
                };
                let v = Variant::Block {
                    device: dev.clone(),
                    types,
                };
                match appendix::run_variant(&setup, &dir, &v) {
                    Ok(out) => {
                        report(&out);
                        ok &= out.passed();
                    }
                    Err(e) => {
                        say(&format!("FAILED: block SR run on {dev}: {e}"));
                        ok = false;
                    }
                }
                for point in appendix::release_device(&dev) {
                    say(&format!(
                        "unmounted {point}, left mounted by the failed run"
                    ));
                }
                if let Err(e) = run(Cmd::new("losetup").args(["-d", &dev])) {
                    say(&format!("warning: losetup -d {dev}: {e}"));
                }
                let _ = std::fs::remove_file(dir.join("disk.img"));
            }
            Err(e) => {
                say(&format!("FAILED: no loop device: {e}"));
                ok = false;
            }
        }
    } else if o.block {
        say("not root: skipping the ext run on a loop device");
    }
    let _ = std::fs::remove_dir_all(work.join("file/sr"));
    say(&format!(
        "traces, logs and script output kept in {}",
        work.display()
    ));
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
