//! `xsm pr-helper` on the lab's real LIO LUN, driven by a client written to QEMU's side of the
//! protocol (`reservations::prhelper::client`): byte for byte the same replies as Debian's
//! `qemu-pr-helper` on plain paths, the multipath rules on a two-path map, and the benchmark.
//!
//! Run with `xapi-tests/lab/run-suite lab pr_helper`; ignored under plain `cargo test`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed setup is a failed test
#![allow(
    clippy::disallowed_methods,
    reason = "a test harness starts the daemons and drives the host as an admin would"
)]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use multipath::dm::MultipathdSocket;
use reservations::mpathd;
use reservations::prhelper::client::{Client, RawReply};
use sm_core::host::run::Cmd;
use sm_core::scsi::{self, RegisterOpts, SgDevice};
use xapi_tests::lab::{AgentRequest, ExtraSession, Lab};

/// The LUN these tests use (no other lab test names it; its PR state is cleared before and after).
const LUN: u32 = 4;
const K1: u64 = 0x1111_0000_0000_00a1;
const K2: u64 = 0x2222_0000_0000_00b2;
const RESET_KEY: u64 = 0x7e57_0000_0000_0001;
/// Where the daemons started here log.
const HELPER_LOG: &str = "/var/log/xsm-pr-helper.log";

fn out(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// A helper process on its socket, killed on drop.
struct Helper {
    child: Child,
    socket: PathBuf,
}

impl Helper {
    fn start(program: &Path, args: &[&str], socket: &Path) -> Helper {
        let _ = std::fs::remove_file(socket);
        let child = Command::new(program)
            .args(args)
            .env("SMLOG_FILE", HELPER_LOG)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
        let t = Instant::now();
        while UnixStream::connect(socket).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "{} never listened on {}",
                program.display(),
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Helper {
            child,
            socket: socket.into(),
        }
    }

    fn qemu(lab: &Lab) -> Helper {
        let sock = Path::new("/run/qemu-prh-oracle.sock");
        let bin = lab.bin("qemu-pr-helper");
        assert!(
            bin.exists(),
            "Debian's qemu-pr-helper in the lab's bin dir (run-suite copies it)"
        );
        let s = sock.to_str().unwrap();
        Helper::start(&bin, &["-k", s, "-f", "/run/qemu-prh-oracle.pid"], sock)
    }

    fn ours(lab: &Lab) -> Helper {
        let sock = Path::new("/run/xsm-prh-test.sock");
        let s = sock.to_str().unwrap();
        Helper::start(&lab.bin("xsm"), &["pr-helper", "--socket", s], sock)
    }

    fn client(&self) -> Client {
        Client::connect(&self.socket, Duration::from_secs(60)).unwrap()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// The descriptor a step sends.
#[derive(Debug, Clone, Copy)]
enum Fd {
    /// Host A's path `i` of the LUN, read-write.
    Rw(usize),
    /// The same, read-only.
    Ro(usize),
    /// `/dev/null`, read-write: no SCSI device.
    DevNull,
    /// No descriptor at all.
    Missing,
    /// Not a request: the unit attentions pending on the LU are taken (READ KEYS on every
    /// path, outside the helpers).
    Drain,
}

#[derive(Debug, Clone)]
struct Step {
    fd: Fd,
    cdb: Vec<u8>,
    params: Vec<u8>,
}

fn pr_in(fd: Fd, sa: u8, alloc: u16) -> Step {
    let mut c = vec![0u8; 10];
    c[0] = 0x5e;
    c[1] = sa;
    c[7..9].copy_from_slice(&alloc.to_be_bytes());
    Step {
        fd,
        cdb: c,
        params: Vec::new(),
    }
}

fn pr_out_raw(fd: Fd, sa: u8, scope_type: u8, params: Vec<u8>, len: u16) -> Step {
    let mut c = vec![0u8; 10];
    c[0] = 0x5f;
    c[1] = sa;
    c[2] = scope_type;
    c[7..9].copy_from_slice(&len.to_be_bytes());
    Step { fd, cdb: c, params }
}

fn list(key: u64, sa_key: u64, flags: u8) -> Vec<u8> {
    let mut p = vec![0u8; 24];
    p[..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    p[20] = flags;
    p
}

fn pr_out(fd: Fd, sa: u8, pr_type: u8, key: u64, sa_key: u64, flags: u8) -> Step {
    pr_out_raw(fd, sa, pr_type, list(key, sa_key, flags), 24)
}

fn reg(fd: Fd, key: u64, new: u64) -> Step {
    pr_out(fd, 0, 0, key, new, 0)
}

fn reserve(fd: Fd, t: u8, key: u64) -> Step {
    pr_out(fd, 1, t, key, 0, 0)
}

fn release(fd: Fd, t: u8, key: u64) -> Step {
    pr_out(fd, 2, t, key, 0, 0)
}

/// LIO queues the unit attentions a CLEAR or PREEMPT [AND ABORT] makes in its own time, so
/// whether the next command meets one varies from run to run: the sequences take them before
/// reading the state back.
fn drain() -> Step {
    Step {
        fd: Fd::Drain,
        cdb: Vec::new(),
        params: Vec::new(),
    }
}

const P0: Fd = Fd::Rw(0);
const P1: Fd = Fd::Rw(1);

/// The fixed list of sequences, each from a LUN with no registration and no reservation.
fn sequences() -> Vec<(&'static str, Vec<Step>)> {
    let mut s: Vec<(&'static str, Vec<Step>)> = vec![
        ("read keys, 8 KiB", vec![pr_in(P0, 0, 8192)]),
        ("read keys, allocation 0", vec![pr_in(P0, 0, 0)]),
        ("read keys, allocation 4", vec![pr_in(P0, 0, 4)]),
        ("read reservation", vec![pr_in(P0, 1, 8192)]),
        ("report capabilities", vec![pr_in(P0, 2, 8)]),
        ("report capabilities, allocation 2", vec![pr_in(P0, 2, 2)]),
        ("read full status", vec![pr_in(P0, 3, 8192)]),
        ("PR IN service action 4", vec![pr_in(P0, 4, 8192)]),
        ("PR IN service action 0x1f", vec![pr_in(P0, 0x1f, 8192)]),
        (
            "read keys on a read-only fd",
            vec![pr_in(Fd::Ro(0), 0, 8192)],
        ),
        (
            "allocation 8193 closes",
            vec![pr_in(P0, 0, 8193), pr_in(P0, 0, 64)],
        ),
        (
            "register, read keys",
            vec![reg(P0, 0, K1), pr_in(P0, 0, 8192)],
        ),
        (
            "register twice from key 0",
            vec![reg(P0, 0, K1), reg(P0, 0, K1)],
        ),
        (
            "register, change key",
            vec![reg(P0, 0, K1), reg(P0, K1, K2), pr_in(P0, 0, 8192)],
        ),
        (
            "register and ignore on the second path",
            vec![
                reg(P0, 0, K1),
                pr_out(P1, 6, 0, 0, K2, 0),
                pr_in(P0, 3, 8192),
            ],
        ),
        (
            "reserve type 1 twice",
            vec![
                reg(P0, 0, K1),
                reserve(P0, 1, K1),
                pr_in(P0, 1, 8192),
                reserve(P0, 1, K1),
            ],
        ),
        (
            "reserve from the other nexus conflicts",
            vec![
                reg(P0, 0, K1),
                reg(P1, 0, K2),
                reserve(P0, 1, K1),
                reserve(P1, 1, K2),
            ],
        ),
        (
            "reserve with a wrong key",
            vec![reg(P0, 0, K1), reserve(P0, 1, K2)],
        ),
        (
            "release from a non-holder does nothing",
            vec![
                reg(P0, 0, K1),
                reg(P1, 0, K1),
                reserve(P0, 1, K1),
                release(P1, 1, K1),
                pr_in(P0, 1, 8192),
            ],
        ),
        (
            "release with the wrong type",
            vec![reg(P0, 0, K1), reserve(P0, 1, K1), release(P0, 3, K1)],
        ),
        (
            "reserve, release",
            vec![
                reg(P0, 0, K1),
                reserve(P0, 1, K1),
                release(P0, 1, K1),
                pr_in(P0, 1, 8192),
            ],
        ),
        (
            "preempt",
            vec![
                reg(P0, 0, K1),
                reg(P1, 0, K2),
                reserve(P0, 5, K1),
                pr_out(P1, 4, 5, K2, K1, 0),
                drain(),
                pr_in(P1, 3, 8192),
                pr_in(P0, 0, 8192),
                pr_in(P0, 0, 8192),
            ],
        ),
        (
            "preempt and abort",
            vec![
                reg(P0, 0, K1),
                reg(P1, 0, K2),
                reserve(P0, 5, K1),
                pr_out(P1, 5, 5, K2, K1, 0),
                drain(),
                pr_in(P1, 1, 8192),
                pr_in(P0, 1, 8192),
            ],
        ),
        (
            "clear",
            vec![
                reg(P0, 0, K1),
                reg(P1, 0, K2),
                pr_out(P1, 3, 0, K2, 0, 0),
                drain(),
                pr_in(P0, 0, 8192),
            ],
        ),
        (
            "clear with a wrong key",
            vec![reg(P0, 0, K1), pr_out(P0, 3, 0, K2, 0, 0)],
        ),
        (
            "register and move with a bad transport id",
            vec![
                reg(P0, 0, K1),
                reserve(P0, 1, K1),
                pr_out_raw(
                    P0,
                    7,
                    1,
                    {
                        let mut p = list(K1, K2, 0);
                        p.extend_from_slice(&[0, 0, 0, 8, 0xff, 0, 0, 0, 0, 0, 0, 0]);
                        p
                    },
                    36,
                ),
            ],
        ),
        (
            "parameter list length 0",
            vec![pr_out_raw(P0, 0, 0, Vec::new(), 0)],
        ),
        (
            "parameter list length 8",
            vec![pr_out_raw(P0, 0, 0, vec![0; 8], 8)],
        ),
        (
            "SPEC_I_PT with a junk transport id",
            vec![pr_out_raw(
                P0,
                0,
                0,
                {
                    let mut p = list(0, K1, 0x08);
                    p.extend_from_slice(&[0, 0, 0, 0]);
                    p
                },
                28,
            )],
        ),
        (
            "register on a read-only fd",
            vec![pr_out(Fd::Ro(0), 0, 0, 0, K1, 0)],
        ),
        ("PR OUT service action 8", vec![pr_out(P0, 8, 0, 0, K1, 0)]),
        ("reserve unregistered", vec![reserve(P0, 1, K1)]),
        (
            "register with ALL_TG_PT",
            vec![
                pr_out(P0, 0, 0, 0, K1, 0x04),
                pr_in(P1, 3, 8192),
                pr_in(P1, 0, 8192),
            ],
        ),
        (
            "an invalid opcode closes",
            vec![
                Step {
                    fd: P0,
                    cdb: vec![0x12, 0, 0, 0, 36, 0],
                    params: Vec::new(),
                },
                pr_in(P0, 0, 64),
            ],
        ),
        (
            "no descriptor closes",
            vec![pr_in(Fd::Missing, 0, 64), pr_in(P0, 0, 64)],
        ),
        ("read keys on /dev/null", vec![pr_in(Fd::DevNull, 0, 64)]),
        ("register on /dev/null", vec![reg(Fd::DevNull, 0, K1)]),
        (
            "reserve with element scope",
            vec![reg(P0, 0, K1), reserve(P0, 0x21, K1)],
        ),
        ("reserve type 0", vec![reg(P0, 0, K1), reserve(P0, 0, K1)]),
        ("reserve type 2", vec![reg(P0, 0, K1), reserve(P0, 2, K1)]),
        (
            "two keys, short allocation",
            vec![
                reg(P0, 0, K1),
                reg(P1, 0, K2),
                pr_in(P0, 0, 8192),
                pr_in(P0, 0, 12),
            ],
        ),
        (
            "junk in the CDB's last bytes",
            vec![Step {
                fd: P0,
                cdb: {
                    let mut c = pr_in(P0, 0, 64).cdb;
                    c.extend_from_slice(&[0, 0, 0xde, 0xad, 0xbe, 0xef]);
                    c
                },
                params: Vec::new(),
            }],
        ),
    ];
    for (name, t) in [
        ("reserve type 3", 3u8),
        ("reserve type 5", 5),
        ("reserve type 6", 6),
        ("reserve type 7", 7),
        ("reserve type 8", 8),
    ] {
        s.push((
            name,
            vec![
                reg(P0, 0, K1),
                reg(P1, 0, K1),
                reserve(P0, t, K1),
                pr_in(P1, 1, 8192),
                pr_in(P1, 3, 8192),
                release(P0, t, K1),
                pr_in(P0, 1, 8192),
            ],
        ));
    }
    s
}

/// Host A's two paths of the LUN.
fn paths(lab: &Lab) -> Vec<String> {
    let v = lab.host_a_lun(LUN).unwrap();
    let p: Vec<String> = v.paths.iter().map(|p| format!("/dev/{}", p.dev)).collect();
    assert!(p.len() >= 2, "two paths to LUN {LUN}: {p:?}");
    p
}

/// No registration, no reservation, no unit attention pending on either path; returns the
/// PR generation now.
fn reset(paths: &[String]) -> u32 {
    let devs: Vec<SgDevice> = paths.iter().map(|p| SgDevice::open(p).unwrap()).collect();
    // LIO refuses a REGISTER without ALL_TG_PT over an ALL_TG_PT registration (24/00).
    if scsi::pr_register_ignore(&devs[0], RESET_KEY, RegisterOpts::default()).is_err() {
        let all = RegisterOpts {
            all_tg_pt: true,
            ..RegisterOpts::default()
        };
        scsi::pr_register_ignore(&devs[0], RESET_KEY, all).unwrap();
    }
    scsi::pr_clear(&devs[0], RESET_KEY).unwrap();
    for d in &devs {
        scsi::pr_read_keys(d).unwrap();
    }
    scsi::pr_read_keys(&devs[0]).unwrap().generation
}

/// What a helper did with one step: its reply, or that it closed the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Reply(Vec<u8>),
    Closed,
}

fn open(paths: &[String], fd: Fd) -> Option<File> {
    match fd {
        Fd::Rw(i) => Some(
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&paths[i])
                .unwrap(),
        ),
        Fd::Ro(i) => Some(File::open(&paths[i]).unwrap()),
        Fd::DevNull => Some(
            OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .unwrap(),
        ),
        Fd::Missing | Fd::Drain => None,
    }
}

/// Runs `steps` through `h`; PRGENERATION in PR IN data is made relative to `base`.
fn run(h: &Helper, paths: &[String], steps: &[Step], base: u32) -> Vec<Got> {
    let mut c = h.client();
    let mut got = Vec::new();
    for s in steps {
        if matches!(s.fd, Fd::Drain) {
            for p in paths {
                scsi::pr_read_keys(&SgDevice::open(p).unwrap()).unwrap();
            }
            continue;
        }
        let f = open(paths, s.fd);
        let sent = c.send(&s.cdb, f.as_ref().map(|f| f.as_fd()), &s.params);
        let r: Option<RawReply> = sent.ok().and_then(|()| c.receive().ok());
        match r {
            Some(mut r) => {
                let sa = s.cdb[1] & 0x1f;
                if s.cdb[0] == 0x5e
                    && r.status() == 0
                    && [0, 1, 3].contains(&sa)
                    && r.payload().len() >= 4
                {
                    let at = reservations::prhelper::protocol::REPLY_HEADER_SIZE;
                    let g = u32::from_be_bytes(r.bytes[at..at + 4].try_into().unwrap());
                    r.bytes[at..at + 4].copy_from_slice(&g.wrapping_sub(base).to_be_bytes());
                }
                got.push(Got::Reply(r.bytes));
            }
            None => {
                got.push(Got::Closed);
                c = h.client();
            }
        }
    }
    got
}

fn hex(g: &Got) -> String {
    match g {
        Got::Closed => "closed".into(),
        Got::Reply(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
    }
}

/// Nothing but the helpers sends commands to the LUN while it lives: its paths are out of
/// multipathd's hands (its checker's TEST UNIT READY) and udev runs no events (closing a path
/// opened for writing makes a "change" event whose blkid READs the LU). LIO keeps one unit
/// attention queue per initiator and LU, so any of those would consume a unit attention a
/// sequence expects, at a random moment. Everything is put back on drop.
struct Unchecked<'a> {
    lab: &'a Lab,
    paths: Vec<String>,
}

impl<'a> Unchecked<'a> {
    fn new(lab: &'a Lab, paths: &[String]) -> Unchecked<'a> {
        lab.run(&Cmd::new("udevadm").args(["control", "--stop-exec-queue"]))
            .unwrap();
        for p in paths {
            let sd = p.trim_start_matches("/dev/");
            lab.run(&Cmd::new("multipathd").args(["del", "path", sd]))
                .unwrap();
        }
        Unchecked {
            lab,
            paths: paths.to_vec(),
        }
    }
}

impl Drop for Unchecked<'_> {
    fn drop(&mut self) {
        for p in &self.paths {
            let sd = p.trim_start_matches("/dev/");
            let _ = self
                .lab
                .run(&Cmd::new("multipathd").args(["add", "path", sd]));
        }
        let _ = self
            .lab
            .run(&Cmd::new("udevadm").args(["control", "--start-exec-queue"]));
    }
}

#[test]
#[ignore = "lab"]
fn lab_pr_helper_plain_paths_answer_byte_for_byte_as_qemu_pr_helper() {
    let Some(lab) = Lab::from_env() else { return };
    let paths = paths(&lab);
    let _unchecked = Unchecked::new(&lab, &paths);
    let qemu = Helper::qemu(&lab);
    let ours = Helper::ours(&lab);
    let seqs = sequences();
    assert!(seqs.len() >= 40, "{} sequences", seqs.len());
    let mut mismatches = Vec::new();
    let (mut steps, mut replies, mut closed) = (0, 0, 0);
    for (name, seq) in &seqs {
        let base = reset(&paths);
        let theirs = run(&qemu, &paths, seq, base);
        let base = reset(&paths);
        let mine = run(&ours, &paths, seq, base);
        steps += theirs.len();
        for (i, (a, b)) in theirs.iter().zip(&mine).enumerate() {
            match a {
                Got::Closed => closed += 1,
                Got::Reply(_) => replies += 1,
            }
            if a != b {
                mismatches.push(format!(
                    "{name}, step {i}:\n  qemu-pr-helper {}\n  xsm pr-helper  {}",
                    hex(a),
                    hex(b)
                ));
            }
        }
    }
    reset(&paths);
    out(&format!(
        "PRH-COMPARE {} sequences, {steps} steps ({replies} replies, {closed} closed): {} differ",
        seqs.len(),
        mismatches.len()
    ));
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// The end of the daemons' SMlog, for failure messages.
fn helper_log() -> String {
    let text = std::fs::read_to_string(HELPER_LOG).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// READ FULL STATUS registrations of `key` as the array sees them, through path `dev`.
fn registrations_of(dev: &str, key: u64) -> usize {
    let d = SgDevice::open(dev).unwrap();
    scsi::pr_read_full_status(&d)
        .unwrap()
        .registrants
        .iter()
        .filter(|r| r.key == key)
        .count()
}

fn status_of(r: &RawReply) -> (u32, u8, u8, u8) {
    let s = r.sense();
    (r.status(), s[2] & 0x0f, s[12], s[13])
}

#[test]
#[ignore = "lab"]
fn lab_pr_helper_on_a_multipath_map_registers_every_path_and_keeps_the_target_s_sense() {
    let Some(lab) = Lab::from_env() else { return };
    let paths = paths(&lab);
    let map = lab.host_a_lun(LUN).unwrap().map.clone().unwrap();
    let wwid = lab.lun(LUN).unwrap().wwid.clone();
    reset(&paths);
    let ours = Helper::ours(&lab);
    let mut c = ours.client();
    let dev = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(&map)
            .unwrap()
    };
    let send = |c: &mut Client, s: &Step| c.execute(&s.cdb, dev().as_fd(), &s.params).unwrap();

    // The guest's key, whatever it is, on every path; multipathd keeps it for later paths.
    let r = send(&mut c, &reg(P0, 0, K1));
    assert_eq!(status_of(&r), (0, 0, 0, 0), "{r:?}");
    for p in &paths {
        assert_eq!(
            registrations_of(p, K1),
            paths.len(),
            "every nexus registered, seen from {p}"
        );
    }
    assert_eq!(
        mpathd::map_key(&MultipathdSocket::new(), &wwid)
            .unwrap()
            .map(|k| k.get()),
        Some(K1),
        "multipathd registers paths that appear later with the guest's key"
    );
    // A path that appears later (a new session, a new I_T nexus) is registered with the
    // guest's key as soon as it is in the map.
    let iqn_a = lab.host_a().iqn.clone();
    let dm = lab.host_a_lun(LUN).unwrap().dm.clone().unwrap();
    let slaves = || std::fs::read_dir(format!("/sys/block/{dm}/slaves")).map_or(0, |d| d.count());
    let before = slaves();
    let extra = ExtraSession::login(&lab, 1, "prh-extra").unwrap();
    xapi_tests::lab::wait_until(60, "the new path in the map", || {
        (slaves() > before)
            .then_some(())
            .ok_or(format!("{} slaves", slaves()))
    });
    let v = lab.array().pr_view(LUN).unwrap();
    assert_eq!(
        v.registrations_of(&iqn_a).filter(|r| r.key == K1).count(),
        paths.len() + 1,
        "the new nexus carries the guest's key: {v:?}"
    );
    // The extra nexus lets go of its registration before it goes (LIO would keep it).
    let new_sd = std::fs::read_dir(format!("/sys/block/{dm}/slaves"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .find(|sd| !paths.iter().any(|p| p.ends_with(sd.as_str())))
        .unwrap();
    let extra_dev = SgDevice::open(format!("/dev/{new_sd}")).unwrap();
    scsi::pr_register(&extra_dev, K1, 0, RegisterOpts::default()).unwrap();
    drop(extra_dev);
    drop(extra);
    // Reserve (type 5) and read it back, READ FULL STATUS included.
    assert_eq!(send(&mut c, &reserve(P0, 5, K1)).status(), 0);
    let rr = send(&mut c, &pr_in(P0, 1, 8192));
    assert_eq!(&rr.payload()[8..16], &K1.to_be_bytes());
    let full = send(&mut c, &pr_in(P0, 3, 8192));
    assert_eq!(full.status(), 0);
    let fs = sm_core::scsi::wire::pr_in::parse_read_full_status(full.payload()).unwrap();
    assert_eq!(fs.registrants.len(), paths.len());
    assert!(fs.registrants.iter().any(|r| r.holder));

    // The target's own answers come back: a wrong key conflicts, wrong RELEASE and RESERVE types are
    // refused by the target itself (libmpathpersist would have made these up).
    let r = send(&mut c, &reg(P0, K2, K2));
    assert_eq!(r.status(), 0x18, "{r:?}\n{}", helper_log());
    // This LIO answers a RELEASE of the wrong type with RESERVATION CONFLICT (its log says
    // so), a RESERVE of type 0 with its own ILLEGAL REQUEST sense.
    let r = send(&mut c, &release(P0, 6, K1));
    assert_eq!(r.status(), 0x18, "{r:?}\n{}", helper_log());
    let r = send(&mut c, &reserve(P0, 0, K1));
    let sense = r.sense();
    assert_eq!(
        (r.status(), sense[0] & 0x7f, sense[2] & 0x0f),
        (2, 0x70, 5),
        "{r:?}\n{}",
        helper_log()
    );
    out(&format!(
        "PRH-MPATH RESERVE type 0 on the map: the target's sense {:02x}/{:02x}",
        sense[12], sense[13]
    ));

    // A path fails: the reservation holds, PR IN is answered from the other path.
    lab.array().portal_down(2).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let t = Instant::now();
    let rr = send(&mut c, &pr_in(P0, 1, 8192));
    out(&format!(
        "PRH-MPATH read reservation with a portal down: {} ms",
        t.elapsed().as_millis()
    ));
    assert_eq!(rr.status(), 0, "{rr:?}");
    assert_eq!(&rr.payload()[8..16], &K1.to_be_bytes());
    lab.array().portal_up(2).unwrap();
    xapi_tests::lab::wait_until(120, "both paths back", || {
        let o = lab
            .run(&Cmd::new("multipathd").args(["show", "paths", "format", "%d %t %T"]))
            .map_err(|e| e.to_string())?
            .stdout_str();
        let up = paths
            .iter()
            .filter(|p| {
                o.lines().any(|l| {
                    l.starts_with(p.trim_start_matches("/dev/"))
                        && l.contains("active")
                        && l.contains("ready")
                })
            })
            .count();
        (up == paths.len()).then_some(()).ok_or(o)
    });

    // RELEASE is sent on the holder path whichever path the map would pick.
    let r = send(&mut c, &release(P0, 5, K1));
    assert_eq!(r.status(), 0, "{r:?}\n{}", helper_log());
    let rr = send(&mut c, &pr_in(P0, 1, 8192));
    assert_eq!(&rr.payload()[4..8], &[0, 0, 0, 0], "released: {rr:?}");
    // Unregister: every path let go, multipathd's key gone.
    assert_eq!(send(&mut c, &reg(P0, K1, 0)).status(), 0);
    assert_eq!(registrations_of(&paths[0], K1), 0);
    assert_eq!(
        mpathd::map_key(&MultipathdSocket::new(), &wwid).unwrap(),
        None
    );
    reset(&paths);
}

fn percentile(v: &mut [u128], p: usize) -> u128 {
    v.sort_unstable();
    v[(v.len() - 1) * p / 100]
}

/// Round trips of `steps` on `fd` through `h`, `n` times; microseconds each.
fn round_trips(h: &Helper, n: usize, step: &Step, dev: &Path) -> Vec<u128> {
    let mut c = h.client();
    (0..n)
        .map(|_| {
            let f = OpenOptions::new().read(true).write(true).open(dev).unwrap();
            let t = Instant::now();
            let r = c.execute(&step.cdb, f.as_fd(), &step.params).unwrap();
            assert_eq!(r.status(), 0, "{r:?}");
            t.elapsed().as_micros()
        })
        .collect()
}

#[test]
#[ignore = "lab"]
fn lab_pr_helper_bench_round_trips_and_a_slow_lun_stalls_no_one_else() {
    let Some(lab) = Lab::from_env() else { return };
    let paths = paths(&lab);
    let map = lab.host_a_lun(LUN).unwrap().map.clone().unwrap();
    reset(&paths);
    let qemu = Helper::qemu(&lab);
    let ours = Helper::ours(&lab);
    let read_keys = pr_in(P0, 0, 8192);
    let n = 200;
    let mut q_in = round_trips(&qemu, n, &read_keys, Path::new(&paths[0]));
    let mut x_in = round_trips(&ours, n, &read_keys, &map);
    let ign = pr_out(P0, 6, 0, 0, K1, 0);
    let mut q_out = round_trips(&qemu, n / 4, &ign, Path::new(&paths[0]));
    reset(&paths);
    let mut x_out = round_trips(&ours, n / 4, &ign, &map);
    out(&format!(
        "PRH-BENCH PR IN (READ KEYS) p50/p99 us: qemu-pr-helper 1 path {}/{}, xsm pr-helper 2-path map {}/{} (1 SCSI command each)",
        percentile(&mut q_in, 50),
        percentile(&mut q_in, 99),
        percentile(&mut x_in, 50),
        percentile(&mut x_in, 99)
    ));
    out(&format!(
        "PRH-BENCH PR OUT (REGISTER AND IGNORE) p50/p99 us: qemu-pr-helper 1 path {}/{} (1 command), xsm pr-helper 2-path map {}/{} ({} commands: one per path + multipathd setprkey/setprstatus)",
        percentile(&mut q_out, 50),
        percentile(&mut q_out, 99),
        percentile(&mut x_out, 50),
        percentile(&mut x_out, 99),
        paths.len()
    ));
    reset(&paths);

    // 15 clients on the fast path while a 16th works a path slowed by 300 ms (netem on the
    // traffic to portal 2): the 15 must not wait for it.
    let fast = Path::new(&paths[0]).to_path_buf();
    let slow = Path::new(&paths[1]).to_path_buf();
    let sixteen = |with_slow: bool| -> (u128, u128, usize) {
        let barrier = Arc::new(Barrier::new(16));
        let mut handles = Vec::new();
        for i in 0..16 {
            let (b, sock) = (barrier.clone(), ours.socket.clone());
            let dev = if i == 0 && with_slow {
                slow.clone()
            } else {
                fast.clone()
            };
            let step = read_keys.clone();
            handles.push(std::thread::spawn(move || {
                let mut c = Client::connect(&sock, Duration::from_secs(60)).unwrap();
                b.wait();
                let mut v = Vec::new();
                for _ in 0..20 {
                    let f = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(&dev)
                        .unwrap();
                    let t = Instant::now();
                    let r = c.execute(&step.cdb, f.as_fd(), &step.params).unwrap();
                    assert_eq!(r.status(), 0);
                    v.push(t.elapsed().as_micros());
                }
                v
            }));
        }
        let mut all = Vec::new();
        let mut slow_p50 = 0;
        for (i, h) in handles.into_iter().enumerate() {
            let mut v = h.join().unwrap();
            if i == 0 && with_slow {
                slow_p50 = percentile(&mut v, 50);
            } else {
                all.extend(v);
            }
        }
        let n = all.len();
        (percentile(&mut all, 50), slow_p50, n)
    };
    let (alone, _, _) = sixteen(false);
    let slow_ip = lab.portal(2).unwrap().address.clone();
    let slow_ip = slow_ip.split(':').next().unwrap().to_string();
    let netem = format!(
        "tc qdisc add dev lo root handle 1: prio bands 4 && \
         tc qdisc add dev lo parent 1:4 handle 40: netem delay 300ms && \
         tc filter add dev lo parent 1:0 protocol ip u32 match ip dst {slow_ip}/32 flowid 1:4"
    );
    lab.run(&Cmd::new("sh").args(["-c", &netem])).unwrap();
    let measured = std::panic::catch_unwind(|| sixteen(true));
    let _ = lab.run(&Cmd::new("tc").args(["qdisc", "del", "dev", "lo", "root"]));
    let (with, slow_p50, n) = measured.unwrap();
    out(&format!(
        "PRH-BENCH 16 connections: 15 fast clients p50 {alone} us alone, {with} us beside a client whose path is slowed (its p50 {slow_p50} us; {n} samples)"
    ));
    reset(&paths);
    assert!(
        slow_p50 > 250_000,
        "the slow path was slowed: {slow_p50} us"
    );
    assert!(
        with < alone.max(1_000) * 3 + 20_000,
        "the slow LUN stalled the others: {with} us vs {alone} us"
    );
}

/// Host B's daemon on its own socket, stopped on drop.
struct HelperOnB<'a> {
    lab: &'a Lab,
    socket: &'static str,
}

impl<'a> HelperOnB<'a> {
    fn start(lab: &'a Lab) -> HelperOnB<'a> {
        let socket = "/run/xsm-prh-b.sock";
        let xsm = lab.bin("xsm").display().to_string();
        let script = format!(
            "rm -f {socket}; SMLOG_FILE=/var/log/xsm-pr-helper.log setsid {xsm} pr-helper --socket {socket} </dev/null >/dev/null 2>&1 & \
             for i in $(seq 100); do [ -S {socket} ] && exit 0; sleep 0.1; done; exit 1"
        );
        let r = lab
            .host_b()
            .unwrap()
            .run(&AgentRequest::new(["sh", "-c", &script]).timeout(Duration::from_secs(60)))
            .unwrap();
        assert!(r.success(), "B's daemon: {r:?}");
        HelperOnB { lab, socket }
    }

    /// One command through B's daemon on B's map of the LUN (`xsm pr-helper --call`).
    fn call(&self, s: &Step) -> serde_json::Value {
        let map = self.lab.host_b_lun(LUN).unwrap().map.clone().unwrap();
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let xsm = self.lab.bin("xsm").display().to_string();
        let argv = [
            xsm.as_str(),
            "pr-helper",
            "--socket",
            self.socket,
            "--call",
            &hex(&s.cdb),
            "--device",
            &map.display().to_string(),
            "--params",
            &hex(&s.params),
        ];
        let r = self
            .lab
            .host_b()
            .unwrap()
            .run(&AgentRequest::new(argv).timeout(Duration::from_secs(120)))
            .unwrap();
        assert!(r.success(), "on B: {r:?}");
        serde_json::from_str(r.stdout.trim()).unwrap()
    }
}

impl Drop for HelperOnB<'_> {
    fn drop(&mut self) {
        if let Ok(b) = self.lab.host_b() {
            let _ = b.run(&AgentRequest::new([
                "pkill",
                "-f",
                &format!("pr-helper --socket {}", self.socket),
            ]));
        }
    }
}

/// `sg_persist --in --read-reservation` on host A's map, asked again while it answers a unit
/// attention (exit 6: the first command on a path after a preemption).
fn sg_reservation(lab: &Lab, map: &Path) -> String {
    let mut last = String::new();
    for _ in 0..5 {
        let o = lab
            .run(
                &Cmd::new("sg_persist")
                    .args(["--in", "--read-reservation", "--no-inquiry"])
                    .arg(map.display().to_string())
                    .ok_codes(&[0, 6]),
            )
            .unwrap();
        last = format!("{}{}", o.stdout_str(), o.stderr_str());
        if o.code == 0 {
            return last;
        }
    }
    panic!("sg_persist kept answering a unit attention: {last}")
}

/// Host A's and host B's daemons, each for a "guest" on its own multipath map of one LUN:
/// register, reserve, a conflicting reserve, a preemption, a clear; after each, the array's
/// registrations and `sg_persist` say what the replies said.
#[test]
#[ignore = "lab2"]
fn lab2_pr_helper_two_hosts_daemons_reserve_preempt_and_clear() {
    let Some(lab) = Lab::from_env() else { return };
    let paths = paths(&lab);
    let map_a = lab.host_a_lun(LUN).unwrap().map.clone().unwrap();
    reset(&paths);
    let a = Helper::ours(&lab);
    let b = HelperOnB::start(&lab);
    let mut ca = a.client();
    let on_a = |c: &mut Client, s: &Step| {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&map_a)
            .unwrap();
        c.execute(&s.cdb, f.as_fd(), &s.params).unwrap()
    };
    let (iqn_a, iqn_b) = (
        lab.host_a().iqn.clone(),
        lab.host_b_desc().unwrap().iqn.clone(),
    );
    let view = || lab.array().pr_view(LUN).unwrap();
    let (ka, kb) = (K1, K2);

    assert_eq!(on_a(&mut ca, &reg(P0, 0, ka)).status(), 0);
    assert_eq!(b.call(&reg(P0, 0, kb))["status"], 0);
    let v = view();
    assert_eq!(
        v.registrations_of(&iqn_a).filter(|r| r.key == ka).count(),
        paths.len()
    );
    assert_eq!(
        v.registrations_of(&iqn_b).filter(|r| r.key == kb).count(),
        paths.len()
    );

    assert_eq!(on_a(&mut ca, &reserve(P0, 5, ka)).status(), 0);
    let r = sg_reservation(&lab, &map_a);
    assert!(
        r.contains(&format!("{ka:#x}")) && r.contains("Write Exclusive, registrants only"),
        "{r}"
    );
    assert_eq!(b.call(&reserve(P0, 5, kb))["status"], 0x18, "B conflicts");

    // B preempts A: A's registrations and reservation go, B holds it.
    assert_eq!(b.call(&pr_out(P0, 4, 5, kb, ka, 0))["status"], 0);
    let v = view();
    assert_eq!(v.keys(), vec![kb], "{v:?}");
    assert_eq!(v.registrations_of(&iqn_a).count(), 0);
    assert_eq!(
        v.reservation.as_ref().map(|r| r.holder.clone()),
        Some(iqn_b.clone())
    );
    let r = sg_reservation(&lab, &map_a);
    assert!(r.contains(&format!("{kb:#x}")), "{r}");
    // A's guest reads the new state (its paths' unit attentions are not its answer).
    let keys = on_a(&mut ca, &pr_in(P0, 0, 8192));
    assert_eq!(keys.status(), 0, "{keys:?}");
    assert_eq!(keys.payload().len(), 8 + 8 * paths.len());
    assert!(keys.payload()[8..].chunks(8).all(|k| k == kb.to_be_bytes()));
    // A's reserve now conflicts; B clears everything.
    assert_eq!(
        on_a(&mut ca, &reg(P0, 0, ka)).status(),
        0,
        "A registers again"
    );
    assert_eq!(on_a(&mut ca, &reserve(P0, 5, ka)).status(), 0x18);
    assert_eq!(b.call(&pr_out(P0, 3, 0, kb, 0, 0))["status"], 0);
    let v = view();
    assert!(
        v.registrations.is_empty() && v.reservation.is_none(),
        "{v:?}"
    );
    assert!(
        sg_reservation(&lab, &map_a).contains("NO reservation"),
        "cleared"
    );
    drop(b);
    reset(&paths);
}
