//! `xsm pr-helper`: the persistent-reservation helper daemon for QEMU's `pr-manager-helper`
//! (`reservations::prhelper`).
//!
//! ```text
//! xsm pr-helper [--socket PATH] [--user U --group G] [--pidfile F] [--multipath auto|never]
//! xsm pr-helper [--socket PATH] --call CDB_HEX --device DEV [--params HEX]
//! ```
//!
//! The socket is systemd's when the unit is socket-activated (then `--socket` is refused),
//! else `--socket` (default `/run/xsm-pr-helper.sock`, beside qemu-pr-helper's own). After
//! binding and writing the pidfile, every capability but CAP_SYS_RAWIO is dropped (and the
//! bounding set cleared); `--user`/`--group` switch identities too, which costs multipathd
//! (it takes key changes from root only). Every PR OUT and every connection error is logged
//! to SMlog. SIGTERM, SIGINT, SIGHUP: no new connections, running commands finish, exit 0.
//! `--call` sends one command through a running helper as QEMU would (what `sg_persist` is to a
//! device, for the helper) and prints the reply as JSON.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use multipath::dm::MultipathdAuto;
use reservations::prhelper::server::{self, Activity, Identity, Listener};
use reservations::prhelper::{Dispatcher, MultipathMode};
use sm_core::errors::error_chain;
use sm_core::host::run::SystemRunner;
use sm_core::host::sysfs::Sysfs;

use crate::exit::Exit;

/// Where the socket is by default.
pub const DEFAULT_SOCKET: &str = "/run/xsm-pr-helper.sock";

/// `xsm pr-helper` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Unix socket to listen on (absolute; not with socket activation).
    #[arg(long, short = 'k')]
    pub socket: Option<PathBuf>,
    /// User to run as after start-up (name or number).
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// Group to run as after start-up (name or number).
    #[arg(long, short = 'g')]
    pub group: Option<String>,
    /// Write the daemon's pid here.
    #[arg(long, short = 'f')]
    pub pidfile: Option<PathBuf>,
    /// Multipath maps: `auto` (every path, the guest's key on each) or `never` (SG_IO on the
    /// map itself, as a helper built without multipath).
    #[arg(long, default_value = "auto", value_parser = ["auto", "never"])]
    pub multipath: String,
    /// Seconds per SCSI command.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// Instead of serving: send this CDB (hex) for `--device` to the helper on `--socket`, as
    /// QEMU would, and print the reply as JSON (status, sense, payload in hex).
    #[arg(long, value_name = "HEX", requires = "device")]
    pub call: Option<String>,
    /// The device whose descriptor `--call` sends (opened read-write).
    #[arg(long, value_name = "PATH")]
    pub device: Option<PathBuf>,
    /// The PR OUT parameter list `--call` sends (hex).
    #[arg(long, value_name = "HEX", default_value = "")]
    pub params: String,
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !s.len().is_multiple_of(2) {
        return Err(format!("odd number of hex digits in {s:?}"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| format!("not hex: {s:?}")))
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `--call`: one command through a running helper; the reply on stdout as one JSON object.
fn call(a: &Args, cdb: &str, out: &mut dyn Write) -> Result<(), (Exit, String)> {
    let usage = |m: String| (Exit::Usage, m);
    let cdb = unhex(cdb).map_err(usage)?;
    if cdb.is_empty() || cdb.len() > 16 {
        return Err(usage(format!("a CDB is 1 to 16 bytes, not {}", cdb.len())));
    }
    let params = unhex(&a.params).map_err(usage)?;
    let socket = a
        .socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    let device = a
        .device
        .as_ref()
        .ok_or_else(|| usage("--call needs --device".into()))?;
    let failed = |what: &str, e: std::io::Error| (Exit::Failed, format!("{what}: {e}"));
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
        .map_err(|e| failed(&device.display().to_string(), e))?;
    let mut c = reservations::prhelper::client::Client::connect(&socket, Duration::from_secs(120))
        .map_err(|e| failed(&socket.display().to_string(), e))?;
    let r = c
        .execute(&cdb, std::os::fd::AsFd::as_fd(&dev), &params)
        .map_err(|e| failed("the helper's reply", e))?;
    let doc = serde_json::json!({
        "status": r.status(),
        "sense": hex(r.sense()),
        "payload": hex(r.payload()),
    });
    writeln!(out, "{doc}").map_err(|e| failed("stdout", e))
}

fn uid_of(name: &str) -> Result<u32, String> {
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => Ok(u.uid.as_raw()),
        _ => name.parse().map_err(|_| format!("invalid user {name:?}")),
    }
}

fn gid_of(name: &str) -> Result<u32, String> {
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        _ => name.parse().map_err(|_| format!("invalid group {name:?}")),
    }
}

/// Runs the daemon until a stop signal (or, with `--call`, one command through a running
/// one, printed to `out`); errors go to stderr.
pub fn run(a: &Args, out: &mut dyn Write) -> Exit {
    let done = match &a.call {
        Some(cdb) => call(a, cdb, out),
        None => serve(a),
    };
    match done {
        Ok(()) => Exit::Done,
        Err((exit, msg)) => {
            tracing::error!("xsm pr-helper: {msg}");
            let _ = writeln!(std::io::stderr().lock(), "xsm pr-helper: {msg}");
            exit
        }
    }
}

fn serve(a: &Args) -> Result<(), (Exit, String)> {
    let usage = |m: String| (Exit::Usage, m);
    let failed = |e: &dyn std::error::Error| (Exit::Failed, error_chain(e));
    let who = Identity {
        uid: a.user.as_deref().map(uid_of).transpose().map_err(usage)?,
        gid: a.group.as_deref().map(gid_of).transpose().map_err(usage)?,
    };
    let mode = if a.multipath == "never" {
        MultipathMode::Never
    } else {
        MultipathMode::Auto
    };
    let listener = match Listener::from_systemd().map_err(|e| failed(&e))? {
        Some(_) if a.socket.is_some() => {
            return Err(usage(
                "--socket cannot be used with socket activation".into(),
            ));
        }
        Some(l) => l,
        None => {
            let path = a
                .socket
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
            Listener::bind(&path).map_err(|e| failed(&e))?
        }
    };
    if let Some(p) = &a.pidfile {
        server::write_pidfile(p).map_err(|e| failed(&e))?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    server::stop_on_signals(&stop).map_err(|e| failed(&e))?;
    if nix::unistd::geteuid().is_root() {
        server::drop_privileges(&who, mode == MultipathMode::Auto).map_err(|e| failed(&e))?;
        if who.uid.is_some_and(|u| u != 0) && mode == MultipathMode::Auto {
            tracing::warn!(
                "running as uid {}: multipathd refuses key changes from non-root, so paths added later are not registered by it",
                who.uid.unwrap_or_default()
            );
        }
    } else if who.uid.is_some() || who.gid.is_some() {
        return Err(usage(
            "--user/--group need the daemon to start as root".into(),
        ));
    }
    let backend = Arc::new(Dispatcher::new(
        mode,
        Sysfs::host(),
        Some(Arc::new(MultipathdAuto::new(Arc::new(SystemRunner::new())))),
        Duration::from_secs(a.timeout.max(1)),
    ));
    tracing::info!(multipath = ?mode, "pr-helper serving");
    server::run(&listener, backend, stop, Arc::new(Activity::default())).map_err(|e| failed(&e))?;
    if let Some(p) = &a.pidfile {
        let _ = std::fs::remove_file(p);
    }
    tracing::info!("pr-helper stopped");
    Ok(())
}
