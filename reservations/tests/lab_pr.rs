//! The reservation engine on the lab's real stack: LIO as the array, two hosts with their own
//! kernels, iSCSI sessions and multipathd (docs/lab.md, two-host topology). Host A runs the
//! engine in this process on its map's SCSI paths; host B runs `xsm pr` through the lab agent.
//!
//! Run with `xapi-tests/lab/run-suite lab2 pr`; ignored under plain `cargo test`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed setup is a failed test

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path as FsPath;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use multipath::dm::MultipathdSocket;
use reservations::fence::{Owner, Owners};
use reservations::slaves::paths_of_map;
use reservations::{Exclusive, Lu, Policy, PrError, PrKey, PrPath, mpathd};
use serde_json::Value;
use sm_core::errors::error_chain;
use sm_core::host::run::Cmd;
use sm_core::host::sysfs::Sysfs;
use xapi_tests::lab::{AgentRequest, ExtraSession, Lab, PrType, write_block_argv};

const UUID_A: &str = "a0a0a0a0-0000-4000-8000-00000000000a";
const UUID_B: &str = "b0b0b0b0-0000-4000-8000-00000000000b";

fn key(uuid: &str) -> PrKey {
    PrKey::for_host(uuid).unwrap()
}

/// Owners as host A sees them in these tests: host B live, everything else unknown.
struct Fixed(BTreeMap<u64, Owner>);

impl Owners for Fixed {
    fn owner(&self, k: u64) -> Result<Owner, PrError> {
        Ok(self
            .0
            .get(&k)
            .cloned()
            .unwrap_or_else(|| Owner::Unknown(format!("key {k:#x}"))))
    }
}

fn owners_b_live() -> Fixed {
    Fixed(BTreeMap::from([(
        key(UUID_B).get(),
        Owner::Live("hostB".into()),
    )]))
}

fn run(lab: &Lab, argv: &[&str]) -> String {
    let cmd = Cmd::new(argv[0])
        .args(&argv[1..])
        .timeout(Duration::from_secs(120));
    match lab.run(&cmd) {
        Ok(out) => out.stdout_str(),
        Err(e) => panic!("{}: {}", cmd.display(), error_chain(&e)),
    }
}

fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let note = match cond() {
            Ok(()) => return,
            Err(n) => n,
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}: {note}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Host A's map of LUN `lun`.
fn map_a(lab: &Lab, lun: u32) -> String {
    let v = lab.host_a_lun(lun).unwrap();
    v.map.as_ref().unwrap().display().to_string()
}

fn paths_a(map: &str) -> Vec<PrPath> {
    let p = paths_of_map(&Sysfs::host(), map).unwrap();
    assert!(p.len() >= 2, "two paths on {map}: {p:?}");
    assert!(
        p.iter().all(|p| p.nexus.is_some()),
        "nexus ids of {map}: {p:?}"
    );
    p
}

/// `xsm pr ARGS... --json` on host B; the exit code and the JSON it printed.
fn pr_b(lab: &Lab, args: &[&str], env: &[(&str, &str)]) -> (i32, Value) {
    let xsm = lab.bin("xsm").display().to_string();
    let mut argv = vec![xsm.as_str(), "pr"];
    argv.extend_from_slice(args);
    argv.push("--json");
    let mut req = AgentRequest::new(argv).timeout(Duration::from_secs(120));
    for (k, v) in env {
        req = req.env(*k, *v);
    }
    let r = lab.host_b().unwrap().run(&req).unwrap();
    let line = r.stdout.lines().last().unwrap_or_default().to_string();
    let v = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("host B xsm pr {args:?}: {e}: {r:?}"));
    (r.code, v)
}

/// WRITE(10) of one zero block through a raw path on host B: Ok or the sg_raw output.
fn write_b(lab: &Lab, dev: &str) -> Result<(), String> {
    let r = lab
        .host_b()
        .unwrap()
        .run(&AgentRequest::new(write_block_argv(dev)))
        .unwrap();
    if r.success() {
        Ok(())
    } else {
        Err(format!("{}{}", r.stdout, r.stderr))
    }
}

/// WRITE(10) through a raw path on host A.
fn write_a(lab: &Lab, dev: &str) -> Result<(), String> {
    let argv = write_block_argv(dev);
    let cmd = Cmd::new(&argv[0]).args(&argv[1..]);
    lab.run(&cmd).map(drop).map_err(|e| error_chain(&e))
}

fn b_path(lab: &Lab, lun: u32, tpg: u16) -> String {
    lab.host_b_lun(lun)
        .unwrap()
        .path_on(tpg)
        .unwrap()
        .dev_path()
        .display()
        .to_string()
}

fn b_map(lab: &Lab, lun: u32) -> String {
    lab.host_b_lun(lun)
        .unwrap()
        .map
        .as_ref()
        .unwrap()
        .display()
        .to_string()
}

fn exclusive<'a>(
    lu: &'a Lu<'a>,
    me: PrKey,
    policy: &'a Policy,
    owners: &'a dyn Owners,
) -> Exclusive<'a> {
    Exclusive {
        lu,
        me,
        policy,
        owners,
    }
}

#[test]
#[ignore = "lab2"]
fn lab2_pr_one_host_at_a_time_and_the_other_gets_conflicts() {
    let Some(lab) = Lab::from_env() else { return };
    let lun = 1;
    let map = map_a(&lab, lun);
    let paths = paths_a(&map);
    let lu = Lu::new(lab.lun(lun).unwrap().wwid.clone(), &paths);
    let policy = Policy::default();
    let owners = owners_b_live();
    let a = exclusive(&lu, key(UUID_A), &policy, &owners);
    let r = a.acquire().unwrap();
    assert!(r.state.detailed, "LIO has READ FULL STATUS: {}", r.state);

    let view = lab.array().pr_view(lun).unwrap();
    let iqn_a = lab.host_a().iqn.clone();
    assert_eq!(
        view.registrations_of(&iqn_a).count(),
        2,
        "both paths registered: {view:?}"
    );
    assert_eq!(view.keys(), vec![key(UUID_A).get()]);
    let resv = view.reservation.as_ref().unwrap();
    assert_eq!(
        (resv.pr_type, resv.holder.as_str()),
        (PrType::WriteExclusiveRegistrantsOnly, iqn_a.as_str())
    );
    for p in &paths {
        write_a(&lab, &p.name).unwrap_or_else(|e| panic!("host A writes through {}: {e}", p.name));
    }

    let (code, v) = pr_b(
        &lab,
        &["acquire", &b_map(&lab, lun), "--yes", "--host-uuid", UUID_B],
        &[],
    );
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["in_use"], true, "{v}");
    let b_dev = b_path(&lab, lun, 1);
    let e = write_b(&lab, &b_dev).unwrap_err();
    assert!(e.contains("Reservation Conflict"), "host B's WRITE: {e}");
    assert_eq!(
        lab.array().pr_view(lun).unwrap().keys(),
        vec![key(UUID_A).get()],
        "B left nothing"
    );

    let rel = a.release().unwrap();
    assert!(
        rel.state.registrations.is_empty() && rel.state.reservation.is_none(),
        "{}",
        rel.state
    );
    let (code, v) = pr_b(
        &lab,
        &["acquire", &b_map(&lab, lun), "--yes", "--host-uuid", UUID_B],
        &[],
    );
    assert_eq!(code, 0, "{v}");
    write_b(&lab, &b_dev).unwrap();
    let view = lab.array().pr_view(lun).unwrap();
    assert_eq!(view.keys(), vec![key(UUID_B).get()]);
    assert_eq!(
        view.registrations_of(&lab.host_b_desc().unwrap().iqn)
            .count(),
        2
    );
    let (code, v) = pr_b(
        &lab,
        &["release", &b_map(&lab, lun), "--yes", "--host-uuid", UUID_B],
        &[],
    );
    assert_eq!(code, 0, "{v}");
    assert!(lab.array().pr_view(lun).unwrap().registrations.is_empty());
}

#[test]
#[ignore = "lab2"]
fn lab2_pr_race_between_two_hosts_has_one_winner_every_time() {
    let Some(lab) = Lab::from_env() else { return };
    let lun = 2;
    let map = map_a(&lab, lun);
    let paths = paths_a(&map);
    let wwid = lab.lun(lun).unwrap().wwid.clone();
    let lu = Lu::new(wwid.clone(), &paths);
    let policy = Policy::default();
    let owners = owners_b_live();
    let a = exclusive(&lu, key(UUID_A), &policy, &owners);
    let acquire_a = || {
        let lu = Lu::new(wwid.clone(), &paths);
        exclusive(&lu, key(UUID_A), &policy, &owners).acquire()
    };
    let bmap = b_map(&lab, lun);
    let rounds: u32 = std::env::var("PR_RACE_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    // Host B's acquire is a process started through the lab agent: it reaches the LUN about
    // `lead` after it is asked to, host A's in-process engine at once. Calibrated uncontended,
    // host A is then held back by 0 to 1.6 x `lead` (a sweep over the rounds), so that in some
    // rounds A gets there first, in others B, and in between their PR commands interleave.
    let mut leads = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let (c, v) = pr_b(
            &lab,
            &["acquire", &bmap, "--yes", "--host-uuid", UUID_B],
            &[],
        );
        leads.push(t.elapsed());
        assert_eq!(c, 0, "uncontended acquire on B: {v}");
        let (c, v) = pr_b(
            &lab,
            &["release", &bmap, "--yes", "--host-uuid", UUID_B],
            &[],
        );
        assert_eq!(c, 0, "{v}");
    }
    leads.sort();
    let lead = leads[1];
    let (mut wins_a, mut wins_b) = (0u32, 0u32);
    let started = Instant::now();
    for round in 0..rounds {
        let barrier = Barrier::new(2);
        let skew = lead.mul_f64(1.6 * f64::from(round % 21) / 20.0);
        let (ra, (code_b, vb)) = std::thread::scope(|s| {
            let ta = s.spawn(|| {
                barrier.wait();
                std::thread::sleep(skew);
                acquire_a()
            });
            let tb = s.spawn(|| {
                barrier.wait();
                pr_b(
                    &lab,
                    &["acquire", &bmap, "--yes", "--host-uuid", UUID_B],
                    &[],
                )
            });
            (ta.join().unwrap(), tb.join().unwrap())
        });
        let view = lab.array().pr_view(lun).unwrap();
        match (&ra, code_b) {
            (Ok(_), 1) if vb["in_use"] == true => {
                wins_a += 1;
                assert_eq!(
                    view.keys(),
                    vec![key(UUID_A).get()],
                    "round {round}: {view:?}"
                );
                a.release().unwrap();
            }
            (Err(e), 0) if e.is_in_use() => {
                wins_b += 1;
                assert_eq!(
                    view.keys(),
                    vec![key(UUID_B).get()],
                    "round {round}: {view:?}"
                );
                let (c, v) = pr_b(
                    &lab,
                    &["release", &bmap, "--yes", "--host-uuid", UUID_B],
                    &[],
                );
                assert_eq!(c, 0, "{v}");
            }
            other => panic!(
                "round {round}: not exactly one winner: A {:?}, B {code_b} {vb}",
                other.0
            ),
        }
        let after = lab.array().pr_view(lun).unwrap();
        assert!(
            after.registrations.is_empty() && after.reservation.is_none(),
            "round {round}: {after:?}"
        );
    }
    let _ = writeln!(
        std::io::stdout().lock(),
        "PR-RACE rounds={rounds} wins_a={wins_a} wins_b={wins_b} host_b_lead_ms={} seconds={:.1}",
        lead.as_millis(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(wins_a + wins_b, rounds);
    if rounds >= 20 {
        assert!(
            wins_a >= rounds / 20 && wins_b >= rounds / 20,
            "both hosts must win some rounds, or the hosts did not contend: A {wins_a}, B {wins_b}"
        );
    }
}

/// Logs host A's sessions to the target out (its paths vanish), or back in.
fn sessions_a(lab: &Lab, up: bool) {
    let iqn = lab.target_iqn().to_string();
    let op = if up { "--login" } else { "--logout" };
    run(lab, &["iscsiadm", "-m", "node", "-T", &iqn, op]);
}

#[test]
#[ignore = "lab2"]
fn lab2_pr_dead_host_is_fenced_and_its_later_writes_are_rejected() {
    let Some(lab) = Lab::from_env() else { return };
    let lun = 3;
    let map = map_a(&lab, lun);
    let paths = paths_a(&map);
    let wwid = lab.lun(lun).unwrap().wwid.clone();
    let lu = Lu::new(wwid.clone(), &paths);
    let policy = Policy::default();

    // The pool: an emulated xapi in guest A, host B reached through the agent, serving
    // XenAPI on the lab network so that host B's `xsm pr` asks it who is alive.
    let state = tempfile::tempdir().unwrap();
    let plugins = state.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let mut cfg =
        xapi_tests::config::Config::two_local_hosts(&state.path().join("emu"), &plugins, None);
    cfg.tcp_listen = "0.0.0.0:8080".into();
    let running = xapi_tests::server::start(cfg).unwrap();
    let emu = running.emulator().clone();
    let host_a = (emu.hosts()[0].r.clone(), emu.hosts()[0].uuid.clone());
    let host_b = (emu.hosts()[1].r.clone(), emu.hosts()[1].uuid.clone());
    let owners = owners_b_live();
    let a = exclusive(&lu, key(&host_a.1), &policy, &owners);
    a.acquire().unwrap();
    mpathd::set_map_key(&MultipathdSocket::new(), &wwid, Some(key(&host_a.1))).unwrap();
    write_a(&lab, &paths[0].name).unwrap();

    // Host A dies: its sessions are cut, and the pool marks it dead.
    sessions_a(&lab, false);
    emu.set_host_live(&host_a.0, false).unwrap();
    let xapi = format!(
        "tcp:{}:8080",
        lab.portal(1).unwrap().address.split(':').next().unwrap()
    );
    let bmap = b_map(&lab, lun);
    let t0 = Instant::now();
    let (code, v) = pr_b(
        &lab,
        &[
            "acquire",
            &bmap,
            "--yes",
            "--host-uuid",
            &host_b.1,
            "--fencing",
            "preempt-dead",
        ],
        &[("SM_XAPI", &xapi)],
    );
    let fence_ms = t0.elapsed().as_millis();
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["fenced"].as_array().map(Vec::len), Some(1), "{v}");
    let _ = writeln!(
        std::io::stdout().lock(),
        "PR-FENCE wall_ms={fence_ms} engine_ms={}",
        v["ms"]
    );
    let view = lab.array().pr_view(lun).unwrap();
    assert_eq!(view.keys(), vec![key(&host_b.1).get()], "{view:?}");

    // B writes data and checksums it.
    let b = lab.host_b().unwrap();
    let w = b
        .run(&AgentRequest::new([
            "sh", "-c",
            &format!("head -c 1048576 /dev/urandom > /tmp/pr-data && dd if=/tmp/pr-data of={bmap} bs=1M count=1 seek=1 oflag=direct conv=fsync status=none && sha256sum < /tmp/pr-data"),
        ]))
        .unwrap();
    assert!(w.success(), "{w:?}");
    let sum_written = w.stdout.split_whitespace().next().unwrap().to_string();

    // A comes back (new sessions); multipathd must not re-register it (its key is gone from
    // the LU), and every write of A is rejected.
    sessions_a(&lab, true);
    let mut new_paths = Vec::new();
    wait_until(60, "host A's paths of the map to return", || {
        new_paths = paths_of_map(&Sysfs::host(), &map).map_err(|e| e.to_string())?;
        if new_paths.iter().filter(|p| p.usable).count() >= 2 {
            Ok(())
        } else {
            Err(format!("{new_paths:?}"))
        }
    });
    std::thread::sleep(Duration::from_secs(3));
    for p in &new_paths {
        let e = write_a(&lab, &p.name).unwrap_err();
        assert!(
            e.contains("Reservation Conflict") || e.contains("conflict"),
            "host A's write through {}: {e}",
            p.name
        );
    }
    let dd = lab.run(
        &Cmd::new("dd")
            .args([
                "if=/dev/zero",
                &format!("of={map}"),
                "bs=1M",
                "count=1",
                "seek=1",
                "oflag=direct",
                "status=none",
            ])
            .timeout(Duration::from_secs(60)),
    );
    assert!(dd.is_err(), "host A's write through its map must fail");
    let view = lab.array().pr_view(lun).unwrap();
    assert_eq!(
        view.keys(),
        vec![key(&host_b.1).get()],
        "multipathd did not re-register A: {view:?}"
    );
    let lu_new = Lu::new(wwid.clone(), &new_paths);
    let e = exclusive(&lu_new, key(&host_a.1), &policy, &owners)
        .recheck()
        .unwrap_err();
    assert!(e.to_string().contains("no longer ours"), "{e}");
    mpathd::set_map_key(&MultipathdSocket::new(), &wwid, None).unwrap();

    // No data written by B is lost.
    let r = b
        .run(&AgentRequest::new([
            "sh",
            "-c",
            &format!("dd if={bmap} bs=1M count=1 skip=1 iflag=direct status=none | sha256sum"),
        ]))
        .unwrap();
    assert_eq!(
        r.stdout.split_whitespace().next(),
        Some(sum_written.as_str()),
        "{r:?}"
    );
    let from_a = run(
        &lab,
        &[
            "sh",
            "-c",
            &format!("dd if={map} bs=1M count=1 skip=1 iflag=direct status=none | sha256sum"),
        ],
    );
    assert_eq!(from_a.split_whitespace().next(), Some(sum_written.as_str()));

    let (code, v) = pr_b(
        &lab,
        &["release", &bmap, "--yes", "--host-uuid", &host_b.1],
        &[],
    );
    assert_eq!(code, 0, "{v}");
    running.stop();
}

/// The iSCSI iface the test adds (a second session to portal 1).
const EXTRA_IFACE: &str = "pr-extra";

#[test]
#[ignore = "lab2"]
fn lab2_pr_a_new_path_is_registered_before_it_carries_io() {
    let Some(lab) = Lab::from_env() else { return };
    let lun = 4;
    let map = map_a(&lab, lun);
    let paths = paths_a(&map);
    let wwid = lab.lun(lun).unwrap().wwid.clone();
    let lu = Lu::new(wwid.clone(), &paths);
    let policy = Policy::default();
    let owners = owners_b_live();
    let me = key(UUID_A);
    exclusive(&lu, me, &policy, &owners).acquire().unwrap();
    assert!(
        mpathd::set_map_key(&MultipathdSocket::new(), &wwid, Some(me)).unwrap(),
        "multipathd takes the map key"
    );
    assert_eq!(
        mpathd::map_key(&MultipathdSocket::new(), &wwid).unwrap(),
        Some(me)
    );
    let before: Vec<String> = paths.iter().map(|p| p.name.clone()).collect();

    // A new I_T nexus: a second session to portal 1 through another iface.
    let extra = ExtraSession::login(&lab, 1, EXTRA_IFACE).unwrap();
    let mut new_dev = String::new();
    wait_until(60, "the new path in the map", || {
        let now = paths_of_map(&Sysfs::host(), &map).map_err(|e| e.to_string())?;
        match now.iter().find(|p| !before.contains(&p.name)) {
            Some(p) => {
                new_dev = p.name.clone();
                Ok(())
            }
            None => Err(format!("{now:?}")),
        }
    });
    // As soon as the path is in the map, the array has its registration.
    let view = lab.array().pr_view(lun).unwrap();
    let iqn_a = lab.host_a().iqn.clone();
    assert_eq!(
        view.registrations_of(&iqn_a).count(),
        3,
        "the new nexus is registered: {view:?}"
    );
    assert_eq!(view.keys(), vec![me.get()]);
    write_a(&lab, &new_dev).unwrap_or_else(|e| panic!("write through the new path {new_dev}: {e}"));
    let now = paths_of_map(&Sysfs::host(), &map).unwrap();
    let lu_now = Lu::new(wwid.clone(), &now);
    let r = exclusive(&lu_now, me, &policy, &owners).recheck().unwrap();
    assert!(
        r.unchanged,
        "nothing left for the re-check: {:?}",
        r.registered_late
    );

    // A path lost and restored (portal 2 down, then up) keeps its registration and works.
    lab.array().portal_down(2).unwrap();
    std::thread::sleep(Duration::from_secs(8));
    lab.array().portal_up(2).unwrap();
    let p2 = lab
        .host_a_lun(lun)
        .unwrap()
        .path_on(2)
        .unwrap()
        .dev_path()
        .display()
        .to_string();
    wait_until(90, "portal 2's path to come back", || write_a(&lab, &p2));
    let view = lab.array().pr_view(lun).unwrap();
    assert_eq!(view.registrations_of(&iqn_a).count(), 3, "{view:?}");

    // Clean up: the extra session goes, then the reservation.
    drop(extra);
    mpathd::set_map_key(&MultipathdSocket::new(), &wwid, None).unwrap();
    let now = paths_of_map(&Sysfs::host(), &map).unwrap();
    let lu_now = Lu::new(wwid, &now);
    exclusive(&lu_now, me, &policy, &owners).release().unwrap();
    assert!(lab.array().pr_view(lun).unwrap().registrations.is_empty());
}

#[test]
#[ignore = "lab2"]
fn lab2_pr_out_that_fails_yet_applies_is_caught_by_the_read_back() {
    let Some(lab) = Lab::from_env() else { return };
    let lun = 5;
    let map = map_a(&lab, lun);
    let paths = paths_a(&map);
    let lu = Lu::new(lab.lun(lun).unwrap().wwid.clone(), &paths);
    let policy = Policy::default();
    let owners = owners_b_live();
    let a = exclusive(&lu, key(UUID_A), &policy, &owners);
    lab.array().set_pr_dirs(false).unwrap();
    let r = a.acquire().unwrap();
    assert_eq!(
        r.applied_despite_error.len(),
        2,
        "both REGISTERs answered 08/00: {:?}",
        r.applied_despite_error
    );
    assert!(
        r.applied_despite_error.iter().all(|n| n.contains("08/00")),
        "{:?}",
        r.applied_despite_error
    );
    let view = lab.array().pr_view(lun).unwrap();
    assert_eq!(view.keys(), vec![key(UUID_A).get()]);
    assert!(view.reservation.is_some());
    let r = a.release().unwrap();
    assert!(!r.applied_despite_error.is_empty());
    assert!(lab.array().pr_view(lun).unwrap().registrations.is_empty());
    lab.array().set_pr_dirs(true).unwrap();
}

#[test]
#[ignore = "lab2"]
fn lab2_pr_a_lun_without_pr_support_gives_a_clear_error() {
    let Some(lab) = Lab::from_env() else { return };
    let lun = lab.array().add_lun_without_pr(64).unwrap();
    run(&lab, &["iscsiadm", "-m", "session", "--rescan"]);
    let mut map = String::new();
    wait_until(60, "a map for the new LUN", || {
        let _ = lab.run(&Cmd::new("udevadm").args(["settle", "--timeout=10"]));
        let out = run(&lab, &["multipathd", "show", "paths", "format", "%d %w %i"]);
        let wwids: Vec<&str> = out
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 3 && f[2].ends_with(&format!(":{lun}"))).then_some(f[1])
            })
            .collect();
        match wwids.first() {
            Some(w) if FsPath::new(&format!("/dev/mapper/{w}")).exists() => {
                map = format!("/dev/mapper/{w}");
                Ok(())
            }
            _ => Err(out),
        }
    });
    let paths = paths_of_map(&Sysfs::host(), &map).unwrap();
    let lu = Lu::new(map.trim_start_matches("/dev/mapper/"), &paths);
    let e = lu
        .check_type(PrType::WriteExclusiveRegistrantsOnly)
        .unwrap_err();
    assert!(matches!(e, PrError::Unsupported { .. }), "{e:?}");
    let text = error_chain(&e);
    assert!(
        text.contains("does not support SCSI-3 persistent reservations"),
        "{text}"
    );
    assert!(text.contains("ILLEGAL REQUEST"), "{text}");
    let policy = Policy::default();
    let owners = owners_b_live();
    let e = exclusive(&lu, key(UUID_A), &policy, &owners)
        .acquire()
        .unwrap_err();
    assert!(matches!(e, PrError::Unsupported { .. }), "{e:?}");
}

/// Counts the commands sent through a path.
/// Counts the commands sent on a path, and of them those answered with a UNIT ATTENTION (not
/// executed: the engine sends them again).
struct Counting {
    inner: std::sync::Arc<dyn sm_core::scsi::ScsiTransport>,
    n: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ua: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl sm_core::scsi::ScsiTransport for Counting {
    fn execute(
        &self,
        cdb: &[u8],
        data: sm_core::scsi::DataDir<'_>,
        timeout: Duration,
    ) -> Result<sm_core::scsi::Completion, sm_core::scsi::ScsiError> {
        self.n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let r = self.inner.execute(cdb, data, timeout);
        if let Err(e) = &r
            && matches!(
                e.condition(),
                sm_core::scsi::Condition::UnitAttention { .. }
            )
        {
            self.ua.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        r
    }
    fn device(&self) -> &str {
        self.inner.device()
    }
    fn policy(&self) -> sm_core::scsi::RetryPolicy {
        self.inner.policy()
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Benchmark of the engine on a real 2-path LUN: acquire and release, latency and SCSI
/// commands (the driver's vdi_activate/vdi_deactivate add their XenAPI round trips).
#[test]
#[ignore = "lab2"]
fn lab2_pr_bench_acquire_release_on_a_two_path_lun() {
    let Some(lab) = Lab::from_env() else { return };
    let lun = 0;
    let map = map_a(&lab, lun);
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ua = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let paths: Vec<PrPath> = paths_a(&map)
        .into_iter()
        .map(|p| PrPath {
            transport: std::sync::Arc::new(Counting {
                inner: p.transport.clone(),
                n: n.clone(),
                ua: ua.clone(),
            }),
            ..p
        })
        .collect();
    let lu = Lu::new(lab.lun(lun).unwrap().wwid.clone(), &paths);
    let policy = Policy::default();
    let owners = owners_b_live();
    let a = exclusive(&lu, key(UUID_A), &policy, &owners);
    let rounds = 30;
    let (mut acq_ms, mut rel_ms) = (Vec::new(), Vec::new());
    // (commands sent, of them answered with a unit attention and sent again) per call.
    let (mut acq, mut rel, mut again) = (Vec::new(), Vec::new(), (0, 0));
    let take = || {
        (
            n.swap(0, std::sync::atomic::Ordering::SeqCst),
            ua.swap(0, std::sync::atomic::Ordering::SeqCst),
        )
    };
    for i in 0..rounds {
        take();
        let t = Instant::now();
        a.acquire().unwrap();
        acq_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        acq.push(take());
        if i == 0 {
            a.acquire().unwrap();
            again = take();
        }
        let t = Instant::now();
        a.release().unwrap();
        rel_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        rel.push(take());
    }
    let executed = |v: &[(usize, usize)]| v.iter().map(|(n, ua)| n - ua).collect::<Vec<_>>();
    let max_ua = |v: &[(usize, usize)]| v.iter().map(|c| c.1).max().unwrap_or(0);
    let line = format!(
        "PR-BENCH rounds={rounds} acquire_median_ms={:.2} acquire_cmds={} (+ up to {} unit-attention retries) acquire_again_cmds={} release_median_ms={:.2} release_cmds={} (+ up to {} unit-attention retries)",
        median(&mut acq_ms),
        executed(&acq)[0],
        max_ua(&acq),
        again.0,
        median(&mut rel_ms),
        executed(&rel)[0],
        max_ua(&rel),
    );
    let _ = writeln!(std::io::stdout().lock(), "{line}");
    // Every step is read back (LIO can fail a PR OUT yet apply it, and the reverse).
    assert!(
        executed(&acq).iter().all(|&c| c == 6),
        "READ FULL STATUS, 2 REGISTER AND IGNORE, READ FULL STATUS, RESERVE, READ FULL STATUS: {acq:?}"
    );
    assert!(
        executed(&rel).iter().all(|&c| c == 6),
        "READ FULL STATUS, RELEASE, READ FULL STATUS, 2 unregister, READ FULL STATUS: {rel:?}"
    );
    assert!(
        acq.iter().chain(&rel).all(|c| c.1 <= 2),
        "at most one unit attention per path and call: {acq:?} {rel:?}"
    );
    assert_eq!(again, (1, 0), "an idempotent acquire only reads the state");
}
