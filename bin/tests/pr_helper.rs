//! `xsm pr-helper` as a process on a real Unix socket, driven by a client written to QEMU's
//! side of the protocol: replies, bad clients that must not disturb the others, a clean stop on
//! SIGTERM; as root, the capabilities left and QEMU itself connecting.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed setup is a failed test
#![allow(
    clippy::disallowed_methods,
    reason = "the test starts the daemon and QEMU as an admin would"
)]

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reservations::prhelper::client::Client;

/// The daemon on a socket in a temporary directory, killed on drop.
struct Daemon {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(extra: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("prh.sock");
        let log = dir.path().join("SMlog");
        let child = Command::new(assert_cmd::cargo::cargo_bin!("xsm"))
            .arg("pr-helper")
            .arg("--socket")
            .arg(&socket)
            .args(extra)
            .env("SMLOG_FILE", &log)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let t = Instant::now();
        while UnixStream::connect(&socket).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "the daemon never listened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon {
            child,
            socket,
            log,
            _dir: dir,
        }
    }

    fn client(&self) -> Client {
        Client::connect(&self.socket, Duration::from_secs(10)).unwrap()
    }

    /// SIGTERM, then the exit status within 10 s.
    fn stop(&mut self) -> std::process::ExitStatus {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let t = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "no exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pr_in_read_keys(alloc: u16) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = 0x5e;
    c[7..9].copy_from_slice(&alloc.to_be_bytes());
    c
}

fn devnull() -> std::fs::File {
    std::fs::File::open("/dev/null").unwrap()
}

#[test]
fn pr_helper_answers_over_its_socket_survives_bad_clients_and_stops_on_sigterm() {
    let mut d = Daemon::start(&[]);
    let mut c = d.client();
    assert_eq!(c.offered, 0);
    // /dev/null is no SCSI device: SG_IO fails with ENOTTY, answered as qemu does.
    let r = c
        .execute(&pr_in_read_keys(64), devnull().as_fd(), &[])
        .unwrap();
    assert_eq!(r.status(), 2);
    assert_eq!(
        (r.sense()[0], r.sense()[2], r.sense()[12], r.sense()[13]),
        (0x70, 0x0b, 0, 6)
    );
    assert!(r.payload().is_empty());

    // Bad clients: another opcode, no descriptor, half a CDB then gone. Each is closed.
    let mut bad = d.client();
    let mut inquiry = [0u8; 10];
    inquiry[0] = 0x12;
    bad.send(&inquiry, Some(devnull().as_fd()), &[]).unwrap();
    assert!(bad.closed(), "closed after an invalid opcode");
    let mut nofd = d.client();
    nofd.send(&pr_in_read_keys(8), None, &[]).unwrap();
    assert!(nofd.closed(), "closed without a descriptor");
    {
        let mut s = UnixStream::connect(&d.socket).unwrap();
        s.write_all(&[0, 0, 0, 0, 0x5e, 0]).unwrap();
    }
    // The first client is still served.
    let r = c
        .execute(&pr_in_read_keys(8), devnull().as_fd(), &[])
        .unwrap();
    assert_eq!(r.status(), 2);

    let status = d.stop();
    assert!(status.success(), "{status:?}");
    assert!(!Path::new(&d.socket).exists(), "socket removed");
    let log = std::fs::read_to_string(&d.log).unwrap();
    assert!(
        log.contains("pr-helper serving") && log.contains("pr-helper stopped"),
        "{log}"
    );
    assert!(log.contains("is not PERSISTENT RESERVE IN or OUT"), "{log}");
}

#[test]
fn pr_helper_call_sends_one_command_and_prints_the_reply() {
    let d = Daemon::start(&[]);
    let out = Command::new(assert_cmd::cargo::cargo_bin!("xsm"))
        .arg("pr-helper")
        .arg("--socket")
        .arg(&d.socket)
        .args([
            "--call",
            "5e 00 00 00 00 00 00 00 40 00",
            "--device",
            "/dev/null",
        ])
        .env("SMLOG_FILE", "/dev/null")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], 2);
    assert!(v["sense"].as_str().unwrap().starts_with("70000b"), "{v}");
    assert_eq!(v["payload"], "");
    let bad = Command::new(assert_cmd::cargo::cargo_bin!("xsm"))
        .arg("pr-helper")
        .arg("--socket")
        .arg(&d.socket)
        .args(["--call", "5e0", "--device", "/dev/null"])
        .env("SMLOG_FILE", "/dev/null")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("odd number of hex digits"));
}

#[test]
fn pr_helper_refuses_a_relative_socket_and_a_live_one() {
    let out = Command::new(assert_cmd::cargo::cargo_bin!("xsm"))
        .args(["pr-helper", "--socket", "relative.sock"])
        .env("SMLOG_FILE", "/dev/null")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not absolute"));
    let d = Daemon::start(&[]);
    let out = Command::new(assert_cmd::cargo::cargo_bin!("xsm"))
        .arg("pr-helper")
        .arg("--socket")
        .arg(&d.socket)
        .env("SMLOG_FILE", "/dev/null")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("served by a running helper"));
    assert!(
        UnixStream::connect(&d.socket).is_ok(),
        "the first one untouched"
    );
}

/// As root: only CAP_SYS_RAWIO is left (bounding set too), and QEMU (`-object
/// pr-manager-helper`) connects, negotiates and reports the manager connected over QMP.
#[test]
#[ignore = "root: needs root and qemu-system-x86_64"]
fn root_pr_helper_drops_capabilities_and_qemu_reports_it_connected() {
    assert!(nix::unistd::geteuid().is_root(), "run as root");
    let d = Daemon::start(&[]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.child.id())).unwrap();
    for field in ["CapEff", "CapPrm", "CapBnd"] {
        let line = status
            .lines()
            .find(|l| l.starts_with(field))
            .unwrap_or_else(|| panic!("{field} in {status}"));
        assert!(
            line.ends_with("0000000000020000"),
            "only CAP_SYS_RAWIO: {line}"
        );
    }
    let mut qemu = Command::new("qemu-system-x86_64")
        .args([
            "-machine",
            "none",
            "-nodefaults",
            "-display",
            "none",
            "-qmp",
            "stdio",
        ])
        .arg("-object")
        .arg(format!(
            "pr-manager-helper,id=pr0,path={}",
            d.socket.display()
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64");
    let mut stdin = qemu.stdin.take().unwrap();
    writeln!(stdin, r#"{{"execute":"qmp_capabilities"}}"#).unwrap();
    writeln!(stdin, r#"{{"execute":"query-pr-managers"}}"#).unwrap();
    writeln!(stdin, r#"{{"execute":"quit"}}"#).unwrap();
    drop(stdin);
    let out = qemu.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(r#"[{"connected": true, "id": "pr0"}]"#),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
