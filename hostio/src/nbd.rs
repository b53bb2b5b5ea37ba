//! NBD exports of VDI images with qemu-nbd: the datapath `vdi_attach` hands to xapi as
//! `params_nbd = nbd:unix:<socket>:exportname=<name>`.
//!
//! One daemon per attached VDI, started with `--fork` (qemu-nbd returns once it listens) and
//! `--persistent` (it outlives client disconnects). The socket is `/run/sm-rs/nbd/<vdi_uuid>.sock`
//! (56 bytes, so a test root under `SM_ROOT` of up to 51 bytes still fits the kernel's 107-byte
//! limit for Unix socket paths) and the pid file `/run/sm-rs/nbd/<sr_uuid>/<vdi_uuid>.pid`, which
//! is how an SR's attached VDIs are listed. Stopping checks that the pid still belongs to
//! qemu-nbd serving this socket before signalling it, so a recycled pid is never hit.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sm_core::host::{Cmd, Paths, RunError, Runner};

/// The tool.
pub const QEMU_NBD: &str = "qemu-nbd";

/// Longest Unix socket path the kernel accepts (`sun_path` is 108 bytes with the NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// How many clients may share one export: the datapath plus our own readers (a snapshot of an
/// attached VDI reads through the export).
const MAX_CLIENTS: u32 = 8;

/// How long qemu-nbd gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Deadline for starting the daemon.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Why an export could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum NbdError {
    /// The socket path would not fit in `sun_path`.
    #[error("NBD socket path {0} is longer than {MAX_SOCKET_PATH} bytes")]
    SocketPathTooLong(PathBuf),
    /// A directory or file could not be made or removed.
    #[error("cannot prepare {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// qemu-nbd failed.
    #[error("qemu-nbd failed")]
    Run(#[from] RunError),
    /// qemu-nbd returned but no server is running.
    #[error("qemu-nbd did not leave a server on {0}")]
    NotRunning(PathBuf),
    /// The server did not exit.
    #[error("qemu-nbd (pid {pid}) did not exit after SIGKILL")]
    Stuck {
        /// Its pid.
        pid: i32,
    },
}

/// A running server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Running {
    /// Its pid.
    pub pid: i32,
    /// Whether it serves read-only.
    pub read_only: bool,
}

/// How the server caches image I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cache {
    /// `--cache=none`: O_DIRECT, no host page cache (the default where the filesystem allows).
    Direct,
    /// `--cache=writeback`: host page cache; guest flushes still reach the disk.
    Writeback,
}

/// One VDI's export: its socket, pid file and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// The Unix socket.
    pub socket: PathBuf,
    /// qemu-nbd's pid file.
    pub pid_file: PathBuf,
    /// The export name (the VDI uuid).
    pub name: String,
}

/// The directory holding an SR's exports.
pub fn sr_dir(paths: &Paths, sr_uuid: &str) -> PathBuf {
    paths.run_dir().join("nbd").join(sr_uuid)
}

/// Names (VDI uuids) of the exports of an SR that have a live server.
pub fn running_exports(paths: &Paths, sr_uuid: &str) -> Vec<String> {
    let dir = sr_dir(paths, sr_uuid);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".pid"))
                .map(str::to_string)
        })
        .filter(|n| Export::new(paths, sr_uuid, n).running().is_some())
        .collect();
    names.sort();
    names
}

fn read_cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

impl Export {
    /// The export of VDI `vdi_uuid` in SR `sr_uuid`.
    pub fn new(paths: &Paths, sr_uuid: &str, vdi_uuid: &str) -> Export {
        Export {
            socket: paths.run_dir().join("nbd").join(format!("{vdi_uuid}.sock")),
            pid_file: sr_dir(paths, sr_uuid).join(format!("{vdi_uuid}.pid")),
            name: vdi_uuid.to_string(),
        }
    }

    /// What xapi connects to: `nbd:unix:<socket>:exportname=<name>`.
    pub fn uri(&self) -> String {
        format!(
            "nbd:unix:{}:exportname={}",
            self.socket.display(),
            self.name
        )
    }

    /// The live server, if the pid file names a qemu-nbd serving this socket.
    pub fn running(&self) -> Option<Running> {
        let pid: i32 = std::fs::read_to_string(&self.pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let argv = read_cmdline(pid)?;
        let is_nbd = argv
            .first()
            .is_some_and(|a| Path::new(a).file_name().is_some_and(|n| n == QEMU_NBD));
        let sock = self.socket.display().to_string();
        let serves = argv
            .iter()
            .any(|a| *a == sock || a.strip_prefix("--socket=") == Some(sock.as_str()));
        (is_nbd && serves).then(|| Running {
            pid,
            read_only: argv.iter().any(|a| a == "--read-only" || a == "-r"),
        })
    }

    /// Starts a server for `image`; the caller checked that none is running.
    pub fn start(
        &self,
        runner: &dyn Runner,
        image: &Path,
        read_only: bool,
        cache: Cache,
    ) -> Result<Running, NbdError> {
        if self.socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(NbdError::SocketPathTooLong(self.socket.clone()));
        }
        for dir in [self.socket.parent(), self.pid_file.parent()]
            .into_iter()
            .flatten()
        {
            std::fs::create_dir_all(dir).map_err(|source| NbdError::Io {
                path: dir.into(),
                source,
            })?;
        }
        self.remove_files()?;
        let mut cmd = Cmd::new(QEMU_NBD)
            .args(["--fork", "--persistent", "--format=vpc"])
            .arg(format!("--shared={MAX_CLIENTS}"))
            .arg(match cache {
                Cache::Direct => "--cache=none",
                Cache::Writeback => "--cache=writeback",
            })
            .arg(format!("--export-name={}", self.name))
            .arg("--pid-file")
            .arg(&self.pid_file)
            .arg("--socket")
            .arg(&self.socket);
        if read_only {
            cmd = cmd.arg("--read-only");
        }
        runner.run(&cmd.arg(image).timeout(START_TIMEOUT).daemonizes())?;
        self.running()
            .ok_or_else(|| NbdError::NotRunning(self.socket.clone()))
    }

    /// Stops the server (if any) and removes the socket and pid file. Idempotent.
    pub fn stop(&self) -> Result<(), NbdError> {
        if let Some(r) = self.running() {
            let pid = Pid::from_raw(r.pid);
            let _ = kill(pid, Signal::SIGTERM);
            if !self.wait_gone(r.pid, STOP_GRACE) {
                let _ = kill(pid, Signal::SIGKILL);
                if !self.wait_gone(r.pid, Duration::from_secs(5)) {
                    return Err(NbdError::Stuck { pid: r.pid });
                }
            }
        }
        self.remove_files()
    }

    /// Removes the socket and pid file (absent is fine).
    fn remove_files(&self) -> Result<(), NbdError> {
        for f in [&self.socket, &self.pid_file] {
            match std::fs::remove_file(f) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(NbdError::Io {
                        path: f.clone(),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    fn wait_gone(&self, pid: i32, within: Duration) -> bool {
        let start = Instant::now();
        let sock = self.socket.display().to_string();
        loop {
            match read_cmdline(pid) {
                None => return true,
                Some(argv) if !argv.contains(&sock) => return true,
                Some(_) => {}
            }
            if start.elapsed() >= within {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vhd::qemu_img;
    use sm_core::host::SystemRunner;

    #[test]
    fn start_serve_and_stop() {
        let d = tempfile::Builder::new()
            .prefix("n")
            .tempdir_in("/tmp")
            .unwrap();
        let paths = Paths::new(d.path());
        let img = d.path().join("v.vhd");
        let r = SystemRunner::new();
        qemu_img::create(&r, &img, 8 << 20).unwrap();
        let sr = "11111111-2222-4333-8444-555555555555";
        let vdi = "aaaaaaaa-2222-4333-8444-555555555555";
        let e = Export::new(&paths, sr, vdi);
        assert_eq!(e.running(), None);
        let run = e.start(&r, &img, true, Cache::Writeback).unwrap();
        assert!(run.read_only);
        assert_eq!(e.running(), Some(run));
        assert_eq!(running_exports(&paths, sr), vec![vdi.to_string()]);
        assert!(
            e.uri().starts_with("nbd:unix:/") && e.uri().ends_with(&format!(":exportname={vdi}"))
        );
        let nbd = qemu_img::Source::Nbd {
            socket: &e.socket,
            export: &e.name,
        };
        assert!(qemu_img::same_content(&r, nbd, qemu_img::Source::Vhd(&img)).unwrap());
        e.stop().unwrap();
        assert_eq!(e.running(), None);
        assert!(!e.socket.exists() && !e.pid_file.exists());
        e.stop().unwrap();
        assert!(running_exports(&paths, sr).is_empty());
    }

    #[test]
    fn stale_pid_file_is_not_running() {
        let d = tempfile::tempdir().unwrap();
        let e = Export::new(&Paths::new(d.path()), "s", "v");
        std::fs::create_dir_all(e.pid_file.parent().unwrap()).unwrap();
        std::fs::write(&e.pid_file, std::process::id().to_string()).unwrap();
        assert_eq!(e.running(), None, "our own pid is not a qemu-nbd");
        e.stop().unwrap();
        assert!(!e.pid_file.exists());
    }

    #[test]
    fn refuses_overlong_socket_paths() {
        let e = Export::new(
            &Paths::new(format!("/tmp/{}", "x".repeat(60))),
            "s",
            "aaaaaaaa-2222-4333-8444-555555555555",
        );
        let err = e
            .start(
                &SystemRunner::new(),
                Path::new("/nonexistent"),
                false,
                Cache::Direct,
            )
            .unwrap_err();
        assert!(matches!(err, NbdError::SocketPathTooLong(_)));
    }
}
