//! `xapi-emulator`: runs the XenAPI emulator.
//!
//! ```text
//! xapi-emulator serve  [--state-dir D] [--plugin-dir P] [--sm-root R] [--tcp ADDR] [--config FILE]
//! xapi-emulator start  (same options; serves in the background, returns when it listens)
//! xapi-emulator stop   [--state-dir D]
//! xapi-emulator status [--state-dir D]
//! ```
//! Without `--config`, an existing `<state>/config.json` is reused, else a two-host pool on this
//! machine is created (`Config::two_local_hosts`) with plugins from `--plugin-dir` (default
//! `/opt/xensource/sm`). The state directory holds `xapi.sock`, `xapi.port`, `xapi.pid`,
//! `db.json`, `trace.jsonl`, `xapi.log` and the plugins' `SMlog.<host>` files.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use sm_core::host::{Cmd, Runner, SystemRunner};
use xapi_tests::config::{Config, default_state_dir};
use xapi_tests::server;

#[derive(Debug, Default)]
struct Opts {
    state_dir: Option<PathBuf>,
    plugin_dir: Option<PathBuf>,
    sm_root: Option<PathBuf>,
    tcp: Option<String>,
    config: Option<PathBuf>,
}

fn say(msg: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{msg}");
}

fn fail(msg: &str) -> ExitCode {
    let _ = writeln!(std::io::stderr().lock(), "xapi-emulator: {msg}");
    ExitCode::FAILURE
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "--state-dir" => o.state_dir = Some(val()?.into()),
            "--plugin-dir" => o.plugin_dir = Some(val()?.into()),
            "--sm-root" => o.sm_root = Some(val()?.into()),
            "--tcp" => o.tcp = Some(val()?),
            "--config" => o.config = Some(val()?.into()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(o)
}

fn state_dir(o: &Opts) -> PathBuf {
    o.state_dir.clone().unwrap_or_else(default_state_dir)
}

fn config(o: &Opts) -> Result<Config, String> {
    let state = state_dir(o);
    let mut c = if let Some(f) = &o.config {
        let mut c = Config::load(f).map_err(|e| e.to_string())?;
        if o.state_dir.is_some() {
            c.state_dir = state.clone();
        }
        c
    } else if Config::path(&state).exists() && o.plugin_dir.is_none() {
        Config::load(&Config::path(&state)).map_err(|e| e.to_string())?
    } else {
        let plugins = o
            .plugin_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/opt/xensource/sm"));
        Config::two_local_hosts(&state, &plugins, o.sm_root.as_deref())
    };
    if let Some(t) = &o.tcp {
        c.tcp_listen = t.clone();
    }
    Ok(c)
}

fn init_log(state: &Path) -> Result<(), String> {
    std::fs::create_dir_all(state).map_err(|e| e.to_string())?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.join("xapi.log"))
        .map_err(|e| e.to_string())?;
    let level = std::env::var("XAPI_EMULATOR_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(f))
        .with_ansi(false)
        .with_env_filter(tracing_subscriber::EnvFilter::new(level))
        .init();
    Ok(())
}

fn serve(o: &Opts) -> ExitCode {
    let c = match config(o) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    if let Err(e) = init_log(&c.state_dir) {
        return fail(&e);
    }
    let state = c.state_dir.clone();
    let running = match server::start(c) {
        Ok(r) => r,
        Err(e) => return fail(&e.to_string()),
    };
    if let Err(e) = std::fs::write(state.join("xapi.pid"), std::process::id().to_string()) {
        return fail(&format!("writing xapi.pid: {e}"));
    }
    say(&format!(
        "listening on {} and {}",
        running.socket().display(),
        running.tcp_addr()
    ));
    running.wait();
    ExitCode::SUCCESS
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

fn pid_of(state: &Path) -> Option<i32> {
    std::fs::read_to_string(state.join("xapi.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|p| alive(*p))
}

fn start(o: &Opts, args: &[String]) -> ExitCode {
    let state = state_dir(o);
    if let Some(pid) = pid_of(&state) {
        return fail(&format!(
            "already running (pid {pid}) in {}",
            state.display()
        ));
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return fail(&format!("cannot find myself: {e}")),
    };
    let _ = std::fs::remove_file(state.join("xapi.pid"));
    let mut argv = vec![exe.display().to_string(), "serve".to_string()];
    argv.extend(args.iter().cloned());
    if o.state_dir.is_none() {
        argv.extend(["--state-dir".to_string(), state.display().to_string()]);
    }
    let cmd = Cmd::new("setsid")
        .arg("-f")
        .args(argv)
        .daemonizes()
        .timeout(Duration::from_secs(30));
    if let Err(e) = SystemRunner::new().run(&cmd) {
        return fail(&format!("cannot start: {e}"));
    }
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(120) {
        if let Some(pid) = pid_of(&state)
            && std::os::unix::net::UnixStream::connect(state.join("xapi.sock")).is_ok()
        {
            let port = std::fs::read_to_string(state.join("xapi.port")).unwrap_or_default();
            say(&format!(
                "xapi emulator running: pid {pid}, socket {}, tcp port {port}",
                state.join("xapi.sock").display()
            ));
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    fail(&format!(
        "did not come up; see {}",
        state.join("xapi.log").display()
    ))
}

fn stop(o: &Opts) -> ExitCode {
    let state = state_dir(o);
    let Some(pid) = pid_of(&state) else {
        say("not running");
        return ExitCode::SUCCESS;
    };
    let p = nix::unistd::Pid::from_raw(pid);
    if let Err(e) = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGTERM) {
        return fail(&format!("cannot signal pid {pid}: {e}"));
    }
    let t0 = Instant::now();
    while alive(pid) && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    if alive(pid) {
        return fail(&format!("pid {pid} did not exit"));
    }
    let _ = std::fs::remove_file(state.join("xapi.sock"));
    let _ = std::fs::remove_file(state.join("xapi.pid"));
    say(&format!("stopped pid {pid}"));
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        return fail(
            "usage: xapi-emulator serve|start|stop|status [--state-dir D] [--plugin-dir P] [--sm-root R] [--tcp ADDR] [--config FILE]",
        );
    };
    let o = match parse(rest) {
        Ok(o) => o,
        Err(e) => return fail(&e),
    };
    match cmd.as_str() {
        "serve" => serve(&o),
        "start" => start(&o, rest),
        "stop" => stop(&o),
        "status" => match pid_of(&state_dir(&o)) {
            Some(pid) => {
                say(&format!("running (pid {pid})"));
                ExitCode::SUCCESS
            }
            None => {
                say("not running");
                ExitCode::FAILURE
            }
        },
        other => fail(&format!("unknown command {other}")),
    }
}
