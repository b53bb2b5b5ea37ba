//! ReservedLUNSR as whole plugin calls on the lab's two hosts: an emulated xapi in guest A
//! runs host A's plugins here and host B's through the lab agent (each host's own kernel,
//! iSCSI sessions and multipathd), against LIO. The engine-level cases are in
//! `reservations/tests/lab_pr.rs`; these check what the driver adds: faults xapi sees, the
//! activation records, vm-migrate's order, fencing through host_metrics, crash clean-up at
//! sr_attach, and the whole-call cost of vdi_activate/vdi_deactivate.
//!
//! Run with `xapi-tests/lab/run-suite lab2 reservedlun`; ignored under plain `cargo test`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed setup is a failed test
#![allow(
    clippy::disallowed_methods,
    reason = "a test harness drives the host as an admin would; the rule is for driver code"
)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use reservations::PrKey;
use reservations::slaves::paths_of_map;
use sm_core::errors::error_chain;
use sm_core::host::run::Cmd;
use sm_core::host::sysfs::Sysfs;
use xapi_tests::db::RecordExt;
use xapi_tests::lab::{AgentRequest, Lab, write_block_argv};

mod lab_pool;

use lab_pool::{TwoHosts, out, rw};

/// The two-host pool with one ReservedLUN SR on the lab's target.
struct Pool<'l> {
    two: TwoHosts<'l>,
    sr: String,
    /// WWIDs whose maps the driver flushed (vdi_detach): recreated when the test ends, on
    /// both hosts, so the lab's baseline holds for the next test.
    touched: std::cell::RefCell<Vec<String>>,
}

impl<'l> std::ops::Deref for Pool<'l> {
    type Target = TwoHosts<'l>;
    fn deref(&self) -> &TwoHosts<'l> {
        &self.two
    }
}

impl Drop for Pool<'_> {
    fn drop(&mut self) {
        for w in self.touched.borrow().iter() {
            let _ = self
                .lab
                .run(&Cmd::new("multipathd").args(["add", "map", w]));
            if let Ok(b) = self.lab.host_b() {
                let _ = b.run(&AgentRequest::new(["multipathd", "add", "map", w]));
            }
        }
        for w in self.touched.borrow().iter() {
            let dev = PathBuf::from(format!("/dev/mapper/{w}"));
            let t = Instant::now();
            while !dev.exists() && t.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

fn start(lab: &Lab) -> Pool<'_> {
    let mut pool = Pool {
        two: lab_pool::start(lab, "ReservedLUNSR", "reservedlun"),
        sr: String::new(),
        touched: Default::default(),
    };
    let target = lab_pool::portal_addresses(lab);
    pool.sr = pool.xe_ok(&[
        "sr-create",
        "type=reservedlun",
        "name-label=RL",
        "shared=true",
        &format!("device-config:target={target}"),
        &format!("device-config:targetIQN={}", lab.target_iqn()),
    ]);
    pool
}

impl Pool<'_> {
    fn key(&self, i: usize) -> u64 {
        PrKey::for_host(&self.host(i).1).unwrap().get()
    }

    /// The VDI's location (its LUN's SCSI id), remembered for the map clean-up at the end.
    fn location(&self, vdi_ref: &str) -> String {
        let l = self.location_of(vdi_ref);
        self.touched.borrow_mut().push(l.clone());
        l
    }

    fn lun_of(&self, wwid: &str) -> u32 {
        self.lab
            .luns()
            .iter()
            .find(|l| l.wwid == wwid)
            .map(|l| l.lun)
            .unwrap()
    }

    /// A new user VDI of `size` (`400MiB`): its ref, its LUN's SCSI id and LUN number.
    fn data_vdi(&self, size: &str) -> (String, String, u32) {
        let uuid = self.xe_ok(&[
            "vdi-create",
            &format!("sr-uuid={}", self.sr),
            "name-label=data",
            "type=user",
            &format!("virtual-size={size}"),
        ]);
        let vdi = self.vdi_ref(&uuid);
        let wwid = self.location(&vdi);
        let lun = self.lun_of(&wwid);
        (vdi, wwid, lun)
    }
}

fn write_on_a(lab: &Lab, lun: u32) -> Result<(), String> {
    let dev = lab.host_a_lun(lun).unwrap().paths[0].dev_path();
    write_on_a_dev(lab, &dev.display().to_string())
}

fn write_on_a_dev(lab: &Lab, dev: &str) -> Result<(), String> {
    let argv = write_block_argv(dev);
    lab.run(&Cmd::new(&argv[0]).args(&argv[1..]))
        .map(drop)
        .map_err(|e| error_chain(&e))
}

fn write_on_b(lab: &Lab, lun: u32) -> Result<(), String> {
    let dev = lab.host_b_lun(lun).unwrap().paths[0].dev_path();
    let r = lab
        .host_b()
        .unwrap()
        .run(&AgentRequest::new(write_block_argv(
            &dev.display().to_string(),
        )))
        .unwrap();
    if r.success() {
        Ok(())
    } else {
        Err(format!("{}{}", r.stdout, r.stderr))
    }
}

fn is_conflict(e: &str) -> bool {
    e.to_ascii_lowercase().contains("reservation conflict")
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The SCSI commands a plugin call logged (sm-core logs each at debug: `op=<name> cdb=<hex>`).
fn scsi_ops(smlog: &str) -> Vec<String> {
    smlog
        .lines()
        .filter_map(|l| {
            let rest = l.split(" op=").nth(1)?;
            Some(rest.split(" cdb=").next()?.trim_matches('"').to_string())
        })
        .collect()
}

/// One host at a time, the other refused with fault 24 naming the holder and its WRITEs
/// rejected by the array; vm-migrate moves the reservation from A to B; vm-shutdown releases
/// it; after a crash of A, sr_attach removes its stale registrations; then the whole-call
/// benchmark of vdi_activate / vdi_deactivate on a 2-path LUN.
#[test]
#[ignore = "lab2"]
fn lab2_reservedlun_exclusive_activation_migration_and_crash_cleanup() {
    let Some(lab) = Lab::from_env() else { return };
    let p = start(&lab);
    let (a_ref, _, a_name) = p.host(0);
    let b_name = p.host(1).2;
    let vm = p.xe_ok(&[
        "vm-install",
        "template=Debian Sarge 3.1",
        "new-name-label=V",
        &format!("sr-uuid={}", p.sr),
    ]);
    let disk = p.xe_ok(&[
        "vbd-list",
        &format!("vm-uuid={vm}"),
        "userdevice=0",
        "params=vdi-uuid",
        "--minimal",
    ]);
    let vdi = p.vdi_ref(&disk);
    let wwid = p.location(&vdi);
    let lun = p.lun_of(&wwid);
    p.xe_ok(&["vm-start", &format!("uuid={vm}"), &format!("on={a_name}")]);
    let view = lab.array().pr_view(lun).unwrap();
    assert_eq!(view.keys(), vec![p.key(0)], "{view:?}");
    assert_eq!(
        view.reservation.as_ref().map(|r| r.holder.as_str()),
        Some(lab.host_a().iqn.as_str())
    );
    assert_eq!(p.record_of(&vdi, 0).as_deref(), Some("RW"));

    // Host B: vdi_activate refused with VDIInUse naming A; the array rejects B's WRITE.
    // (xapi maps fault 24 to VDI_IN_USE; the plugin's fault text is in the emulator's trace.)
    let text = p.refused_in_use(1, &vdi, &a_name);
    out(&format!("RL-REFUSED {text}"));
    let w = write_on_b(&lab, lun).unwrap_err();
    assert!(is_conflict(&w), "{w}");
    write_on_a(&lab, lun).unwrap();

    // vm-migrate: attach on B, deactivate on A (release), activate on B (reserve).
    let t = Instant::now();
    p.xe_ok(&[
        "vm-migrate",
        &format!("uuid={vm}"),
        &format!("host={b_name}"),
    ]);
    out(&format!(
        "RL-MIGRATE ms={} (2 disks, xapi order: attach B, deactivate A, activate B, detach A)",
        t.elapsed().as_millis()
    ));
    let view = lab.array().pr_view(lun).unwrap();
    assert_eq!(view.keys(), vec![p.key(1)], "{view:?}");
    assert_eq!(
        view.reservation.as_ref().map(|r| r.holder.as_str()),
        Some(lab.host_b_desc().unwrap().iqn.as_str())
    );
    let w = write_on_a(&lab, lun).unwrap_err();
    assert!(is_conflict(&w), "{w}");
    write_on_b(&lab, lun).unwrap();
    let sm = p.sm_config(&vdi);
    assert!(!sm.contains_key(&format!("host_{a_ref}")), "{sm:?}");

    p.xe_ok(&["vm-shutdown", &format!("uuid={vm}")]);
    let view = lab.array().pr_view(lun).unwrap();
    assert!(
        view.keys().is_empty() && view.reservation.is_none(),
        "{view:?}"
    );

    // Benchmark: vdi_activate and vdi_deactivate as whole plugin calls on host A.
    p.dp(0, &vdi, "bench", rw(false)).unwrap();
    let rounds = 5;
    let (mut act_ms, mut deact_ms) = (Vec::new(), Vec::new());
    let (mut act_ops, mut deact_ops) = (Vec::new(), Vec::new());
    let mut plugin_ms = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        for (active, wall, ops, pms) in [
            (true, &mut act_ms, &mut act_ops, &mut plugin_ms.0),
            (false, &mut deact_ms, &mut deact_ops, &mut plugin_ms.1),
        ] {
            let before = std::fs::metadata(&p.smlog_a).map_or(0, |m| m.len());
            let t = Instant::now();
            p.dp(0, &vdi, "bench", rw(active)).unwrap();
            wall.push(t.elapsed().as_secs_f64() * 1000.0);
            let log = std::fs::read(&p.smlog_a).unwrap();
            *ops = scsi_ops(&String::from_utf8_lossy(
                &log[usize::try_from(before).unwrap()..],
            ));
            let last = p.last_call(if active {
                "vdi_activate"
            } else {
                "vdi_deactivate"
            });
            pms.push(last.ms as f64);
        }
    }
    let count = |ops: &[String]| {
        let mut m: BTreeMap<String, usize> = BTreeMap::new();
        for o in ops {
            *m.entry(o.clone()).or_default() += 1;
        }
        m
    };
    out(&format!(
        "RL-BENCH rounds={rounds} vdi_activate: median_ms={:.1} plugin_ms={:.1} scsi_cmds={} {:?}; vdi_deactivate: median_ms={:.1} plugin_ms={:.1} scsi_cmds={} {:?}",
        median(&mut act_ms),
        median(&mut plugin_ms.0),
        act_ops.len(),
        count(&act_ops),
        median(&mut deact_ms),
        median(&mut plugin_ms.1),
        deact_ops.len(),
        count(&deact_ops),
    ));
    assert!(
        !act_ops.is_empty() && !deact_ops.is_empty(),
        "SCSI commands logged"
    );

    // Crash: A holds the LUN, then "reboots": xapi forgets its activation, the registrations
    // stay on the array. Its next sr_attach removes them.
    p.dp(0, &vdi, "bench", rw(true)).unwrap();
    assert_eq!(lab.array().pr_view(lun).unwrap().keys(), vec![p.key(0)]);
    p.emu().datapaths.forget(&vdi);
    p.emu()
        .write(|db| {
            let mut sm = db.get("VDI", &vdi)?.map("sm_config");
            sm.remove(&format!("host_{a_ref}"));
            db.get_mut("VDI", &vdi)?.put_map("sm_config", &sm);
            Ok(())
        })
        .unwrap();
    let ctx = p.ctx();
    let (ty, call) = p
        .emu()
        .read(|db| {
            xapi_tests::storage::sr_call(db, &a_ref, &db.by_uuid("SR", &p.sr)?, "sr_attach", vec![])
        })
        .unwrap();
    p.emu().smapi(&ctx, &a_ref, &ty, call).unwrap();
    let view = lab.array().pr_view(lun).unwrap();
    assert!(
        view.keys().is_empty() && view.reservation.is_none(),
        "stale registrations removed: {view:?}\n{}",
        p.smlog_tail()
    );
    let smlog = std::fs::read_to_string(&p.smlog_a).unwrap();
    assert!(smlog.contains("stale registrations"), "logged");
}

/// Host A holds a VDI and dies (its sessions cut, the pool marks it dead): host B's
/// vdi_activate preempts it within a measured time; A's later writes are rejected; what B
/// wrote survives (checksums). Then a LUN without PR support fails vdi_attach clearly.
#[test]
#[ignore = "lab2"]
fn lab2_reservedlun_dead_host_is_fenced_and_a_lun_without_pr_is_refused() {
    let Some(lab) = Lab::from_env() else { return };
    let p = start(&lab);
    let (vdi, wwid, lun) = p.data_vdi("400MiB");
    p.dp(0, &vdi, "vm-a", rw(true)).unwrap();
    write_on_a(&lab, lun).unwrap();

    let iqn = lab.target_iqn().to_string();
    let sessions_a = |op: &str| {
        lab.run(
            &Cmd::new("iscsiadm")
                .args(["-m", "node", "-T", &iqn, op])
                .timeout(Duration::from_secs(120)),
        )
        .unwrap();
    };
    sessions_a("--logout");
    p.emu().set_host_live(&p.host(0).0, false).unwrap();
    let t = Instant::now();
    p.dp(1, &vdi, "vm-b", rw(true))
        .unwrap_or_else(|e| panic!("B's activation: {e:?}"));
    let fence_ms = t.elapsed().as_millis();
    let plugin_ms = p.last_call("vdi_activate").ms;
    out(&format!(
        "RL-FENCE vdi_attach+vdi_activate on B wall_ms={fence_ms} vdi_activate_ms={plugin_ms}"
    ));
    assert!(fence_ms < 60_000, "bounded: {fence_ms} ms");
    let view = lab.array().pr_view(lun).unwrap();
    assert_eq!(view.keys(), vec![p.key(1)], "{view:?}");

    let bmap = format!("/dev/mapper/{wwid}");
    let b = lab.host_b().unwrap();
    let w = b
        .run(&AgentRequest::new([
            "sh",
            "-c",
            &format!("head -c 1048576 /dev/urandom > /tmp/rl-data && dd if=/tmp/rl-data of={bmap} bs=1M count=1 seek=2 oflag=direct conv=fsync status=none && sha256sum < /tmp/rl-data"),
        ]))
        .unwrap();
    assert!(w.success(), "{w:?}");
    let written = w.stdout.split_whitespace().next().unwrap().to_string();

    // A comes back: every write of A is rejected, B's data stays.
    let amap = format!("/dev/mapper/{wwid}");
    sessions_a("--login");
    let t = Instant::now();
    let mut last;
    let rejected = loop {
        let _ = lab.run(&Cmd::new("udevadm").args(["settle", "--timeout=10"]));
        // Device names change with the new sessions: the map's slaves now.
        let paths = paths_of_map(&Sysfs::host(), &amap).unwrap_or_default();
        let results: Vec<Result<(), String>> = paths
            .iter()
            .filter(|p| p.usable)
            .map(|p| write_on_a_dev(&lab, &p.name))
            .collect();
        if results.len() >= 2 {
            if results.iter().any(Result::is_ok) {
                break false;
            }
            if results
                .iter()
                .all(|r| r.as_ref().is_err_and(|e| is_conflict(e)))
            {
                break true;
            }
        }
        last = format!("{results:?}");
        assert!(t.elapsed() < Duration::from_secs(60), "A's path: {last}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(rejected, "host A's write after fencing must be rejected");
    let r = b
        .run(&AgentRequest::new([
            "sh",
            "-c",
            &format!("dd if={bmap} bs=1M count=1 skip=2 iflag=direct status=none | sha256sum"),
        ]))
        .unwrap();
    assert_eq!(r.stdout.split_whitespace().next(), Some(written.as_str()));
    assert_eq!(lab.array().pr_view(lun).unwrap().keys(), vec![p.key(1)]);
    p.emu().set_host_live(&p.host(0).0, true).unwrap();
    p.dp(1, &vdi, "vm-b", None).unwrap();
    assert!(lab.array().pr_view(lun).unwrap().keys().is_empty());

    // A LUN without PR support: sr-scan finds it, vdi_attach refuses it (fault 46).
    let nopr = lab.array().add_lun_without_pr(64).unwrap();
    lab.run(&Cmd::new("iscsiadm").args(["-m", "session", "--rescan"]))
        .unwrap();
    let _ = lab.run(&Cmd::new("udevadm").args(["settle", "--timeout=30"]));
    p.xe_ok(&["sr-scan", &format!("uuid={}", p.sr)]);
    let known: Vec<String> = lab.luns().iter().map(|l| l.wwid.clone()).collect();
    let new_vdi = p
        .emu()
        .read(|db| {
            let sr = db.by_uuid("SR", &p.sr)?;
            Ok(db.where_eq("VDI", "SR", &sr).into_iter().find(|v| {
                db.get("VDI", v)
                    .is_ok_and(|r| !known.contains(&r.s("location")))
            }))
        })
        .unwrap()
        .unwrap_or_else(|| panic!("sr-scan introduced LUN {nopr}"));
    let _ = p.location(&new_vdi);
    let e = p.dp(0, &new_vdi, "vm-a", rw(true)).unwrap_err();
    assert_eq!(e[0], "SR_BACKEND_FAILURE_46", "{e:?}");
    assert!(
        e.join(" ")
            .contains("does not support SCSI-3 persistent reservations"),
        "{e:?}"
    );
}

/// A LUN reserved by an initiator with a key no pool host owns (another cluster's node: here
/// host B's initiator with a key of its own, made with sg_persist) is not ours to break:
/// vdi_activate on A is refused with fault 24 naming the key and the initiator, and the array
/// is left exactly as it was; with the SR's sm_config `foreign-keys=preempt` the activation
/// fences it and A's key holds the LUN.
#[test]
#[ignore = "lab2"]
fn lab2_reservedlun_a_foreign_reservation_is_not_ours_to_break() {
    let Some(lab) = Lab::from_env() else { return };
    let p = start(&lab);
    let (vdi, _, lun) = p.data_vdi("200MiB");
    let bdev = lab.host_b_lun(lun).unwrap().paths[0]
        .dev_path()
        .display()
        .to_string();
    let foreign = "0xf0f00000000000a1";
    let b = lab.host_b().unwrap();
    for args in [
        vec!["--register", "--param-sark", foreign],
        vec!["--reserve", "--param-rk", foreign, "--prout-type=5"],
    ] {
        let mut argv = vec!["sg_persist", "--out"];
        argv.extend(args);
        argv.push(&bdev);
        b.check(&AgentRequest::new(argv)).unwrap();
    }
    let before = lab.array().pr_view(lun).unwrap();
    assert_eq!(before.keys(), vec![0xf0f0_0000_0000_00a1], "{before:?}");

    let e = p.dp(0, &vdi, "vm-a", rw(true)).unwrap_err();
    assert_eq!(e[0], "VDI_IN_USE", "{e:?}\n{}", p.smlog_tail());
    let (code, text) = p.last_call("vdi_activate").fault.unwrap();
    assert_eq!(code, 24, "{text}");
    let b_iqn = lab.host_b_desc().unwrap().iqn.clone();
    assert!(
        text.contains("foreign key 0xf0f00000000000a1")
            && text.contains(&b_iqn)
            && text.contains("foreign-keys=preempt"),
        "names the key and its initiator: {text}"
    );
    out(&format!("RL-FOREIGN {text}"));
    let after = lab.array().pr_view(lun).unwrap();
    assert_eq!(
        (after.generation, &after.registrations, &after.reservation),
        (
            before.generation,
            &before.registrations,
            &before.reservation
        ),
        "nothing sent to the LUN"
    );
    assert!(
        !p.sm_config(&vdi)
            .contains_key(&format!("host_{}", p.host(0).0)),
        "no activation record"
    );

    // SR.sm_config is read-only for xe (set at sr-create, or through XenAPI as here).
    p.emu()
        .write(|db| {
            let sr = db.by_uuid("SR", &p.sr)?;
            let rec = db.get_mut("SR", &sr)?;
            let mut sm = rec.map("sm_config");
            sm.insert("foreign-keys".into(), "preempt".into());
            rec.put_map("sm_config", &sm);
            Ok(())
        })
        .unwrap();
    p.dp(0, &vdi, "vm-a", rw(true))
        .unwrap_or_else(|e| panic!("with foreign-keys=preempt: {e:?}\n{}", p.smlog_tail()));
    let view = lab.array().pr_view(lun).unwrap();
    assert_eq!(view.keys(), vec![p.key(0)], "{view:?}");
    // The preempted initiator's next command gets the unit attention SPC-4 owes it
    // (REGISTRATIONS PREEMPTED); every write after that is a reservation conflict.
    let first = write_on_b(&lab, lun).unwrap_err();
    assert!(
        is_conflict(&first) || first.contains("Registrations preempted"),
        "the foreign initiator is told it was preempted: {first}"
    );
    let w = write_on_b(&lab, lun).unwrap_err();
    assert!(is_conflict(&w), "the foreign initiator is fenced: {w}");
    write_on_a(&lab, lun).unwrap();
    p.dp(0, &vdi, "vm-a", None).unwrap();
    assert!(lab.array().pr_view(lun).unwrap().keys().is_empty());
}
