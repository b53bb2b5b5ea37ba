//! MultipathLVMoISCSISR shared by the lab's two hosts: one SR, a PBD per host (each logged in on
//! every portal, with its own multipath map), metadata changes only on the master, LV
//! activation following the VM between hosts, one host's sr_detach leaving the other working,
//! and the HA statefile attached on host B from a config generated on A with no xapi at all.
//!
//! Run with `xapi-tests/lab/run-suite lab2 mpath`; ignored under plain `cargo test`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed setup is a failed test
#![allow(
    clippy::disallowed_methods,
    reason = "a test harness drives the host as an admin would; the rule is for driver code"
)]

mod lab_pool;

use std::time::{Duration, Instant};

use lab_pool::{TwoHosts, out, rw};
use sm_core::errors::error_chain;
use sm_core::host::run::Cmd;
use sm_core::secret::Secret;
use xapi_tests::lab::{AgentRequest, Lab, wait_until};

const CHAP_USER: &str = "shuser";
/// Where the test's data goes in the root disk (MiB): past the boot sector the installer wrote,
/// which the bootloader reads at every vm-start.
const AT: u32 = 16;
const CHAP_SECRET: &str = "shsecret123456";

/// A target of the array made for one test, with one LUN; removed on drop, after both hosts
/// let go of it (maps flushed, sessions logged out, node records deleted).
struct Target<'a> {
    lab: &'a Lab,
    name: String,
    iqn: String,
    wwid: String,
}

impl<'a> Target<'a> {
    fn add(lab: &'a Lab, name: &str, size_mb: u64) -> Target<'a> {
        let secret = Secret::new(CHAP_SECRET);
        let (iqn, wwids) = lab
            .array()
            .add_target(name, 1, size_mb, Some((CHAP_USER, &secret)), None)
            .unwrap_or_else(|e| panic!("target-add {name}: {}", error_chain(&e)));
        Target {
            lab,
            name: name.into(),
            iqn,
            wwid: wwids[0].clone(),
        }
    }
}

impl Drop for Target<'_> {
    fn drop(&mut self) {
        let script = xapi_tests::lab::release_lun_script(&self.wwid, &self.iqn);
        if let Ok(b) = self.lab.host_b() {
            let _ = b.run(&AgentRequest::new(["sh", "-c", &script]));
        }
        let _ = self.lab.run(&Cmd::new("sh").args(["-c", &script]));
        let _ = self.lab.array().remove_target(&self.name);
    }
}

/// Runs `script` with `sh -c` on host A (`b` false) or host B; its stdout, or a panic with
/// everything it printed.
fn sh(lab: &Lab, on_b: bool, script: &str) -> String {
    if on_b {
        let r = lab
            .host_b()
            .unwrap()
            .run(&AgentRequest::new(["sh", "-c", script]).timeout(Duration::from_secs(300)))
            .unwrap();
        assert!(r.success(), "on B: {script}: {r:?}");
        r.stdout
    } else {
        let o = lab
            .run(
                &Cmd::new("sh")
                    .args(["-c", script])
                    .timeout(Duration::from_secs(300)),
            )
            .unwrap_or_else(|e| panic!("on A: {script}: {}", error_chain(&e)));
        o.stdout_str()
    }
}

/// The number of iSCSI sessions a host has to `iqn`.
fn sessions(lab: &Lab, on_b: bool, iqn: &str) -> usize {
    sh(lab, on_b, "iscsiadm -m session 2>/dev/null; true")
        .lines()
        .filter(|l| l.split_whitespace().any(|w| w == iqn))
        .count()
}

/// Whether a host has a multipath map of `wwid`.
fn has_map(lab: &Lab, on_b: bool, wwid: &str) -> bool {
    sh(lab, on_b, "multipathd show maps format %w")
        .lines()
        .any(|l| l.trim() == wwid)
}

/// Whether the LV of `vdi` is active on a host (its device node exists).
fn lv_active(lab: &Lab, on_b: bool, sr: &str, vdi: &str) -> bool {
    sh(
        lab,
        on_b,
        &format!("test -e /dev/VG_XenStorage-{sr}/LV-{vdi} && echo yes; true"),
    )
    .trim()
        == "yes"
}

/// Writes `mib` MiB of random data at MiB offset `at` of the VDI's LV on a host, and returns
/// their SHA-256.
fn write_lv(lab: &Lab, on_b: bool, sr: &str, vdi: &str, at: u32, mib: u32) -> String {
    let lv = format!("/dev/VG_XenStorage-{sr}/LV-{vdi}");
    sh(
        lab,
        on_b,
        &format!(
            "head -c {} /dev/urandom > /tmp/shared-data && dd if=/tmp/shared-data of={lv} bs=1M count={mib} seek={at} oflag=direct conv=fsync status=none && sha256sum < /tmp/shared-data",
            u64::from(mib) << 20
        ),
    )
    .split_whitespace()
    .next()
    .unwrap()
    .to_string()
}

/// The SHA-256 of `mib` MiB at MiB offset `at` of the VDI's LV, read on a host.
fn read_lv(lab: &Lab, on_b: bool, sr: &str, vdi: &str, at: u32, mib: u32) -> String {
    let lv = format!("/dev/VG_XenStorage-{sr}/LV-{vdi}");
    sh(
        lab,
        on_b,
        &format!("dd if={lv} bs=1M count={mib} skip={at} iflag=direct status=none | sha256sum"),
    )
    .split_whitespace()
    .next()
    .unwrap()
    .to_string()
}

/// The pool with one shared MultipathLVMoISCSISR on a new CHAP target, plugged on both hosts;
/// `extra` adds device_config (`fencing=pr`).
fn shared_sr<'l>(
    lab: &'l Lab,
    name: &str,
    size_mb: u64,
    extra: &[&str],
) -> (TwoHosts<'l>, Target<'l>, String) {
    let t = Target::add(lab, name, size_mb);
    let p = lab_pool::start(lab, "MultipathLVMoISCSISR", &format!("mpath-{name}"));
    let target = lab_pool::portal_addresses(lab);
    let started = Instant::now();
    let mut args = vec![
        "sr-create".to_string(),
        "type=multipathlvmoiscsi".into(),
        "name-label=shared".into(),
        "shared=true".into(),
        format!("device-config:target={target}"),
        format!("device-config:targetIQN={}", t.iqn),
        format!("device-config:SCSIid={}", t.wwid),
        format!("device-config:chapuser={CHAP_USER}"),
        format!("device-config:chappassword={CHAP_SECRET}"),
    ];
    args.extend(extra.iter().map(|e| format!("device-config:{e}")));
    let sr = p.xe_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    out(&format!(
        "MP-SHARED sr-create on two hosts: {} ms",
        started.elapsed().as_millis()
    ));
    (p, t, sr)
}

/// The registered keys of the LUN, read on host A (`sg_persist` READ KEYS on the map).
fn pr_keys(lab: &Lab, wwid: &str) -> Vec<u64> {
    sh(lab, false, &pr_in_script("--read-keys", wwid))
        .lines()
        .filter_map(|l| l.trim().strip_prefix("0x"))
        .filter_map(|k| u64::from_str_radix(k, 16).ok())
        .collect()
}

/// The LUN's reservation as `sg_persist` READ RESERVATION prints it, read on host A.
fn pr_reservation(lab: &Lab, wwid: &str) -> String {
    sh(lab, false, &pr_in_script("--read-reservation", wwid))
}

/// `sg_persist --in <what>` on the LUN's map, asked again while it answers a unit attention
/// (exit code 6): after a preemption, the first command on each of a host's paths gets
/// "Registrations preempted" (SPC-4) instead of the data.
fn pr_in_script(what: &str, wwid: &str) -> String {
    format!(
        "for i in 1 2 3 4 5; do o=$(sg_persist --in {what} --no-inquiry /dev/mapper/{wwid} 2>&1); \
         rc=$?; [ $rc -eq 0 ] && {{ printf '%s\\n' \"$o\"; exit 0; }}; [ $rc -eq 6 ] || break; done; \
         printf '%s\\n' \"$o\" >&2; exit $rc"
    )
}

fn median(v: &[u64]) -> u64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    v[v.len() / 2]
}

/// The benchmark of the issue: sr_attach on host B (3 PBD re-plugs) and vdi_activate of `vdi`
/// on B (5 rounds), plugin time as the emulator traced it, printed with `label`.
fn bench_on_b(p: &TwoHosts<'_>, sr: &str, vdi: &str, label: &str) {
    let pbd_b = pbd_on(p, sr, 1);
    let attach: Vec<u64> = (0..3)
        .map(|_| {
            p.xe_ok(&["pbd-unplug", &format!("uuid={pbd_b}")]);
            p.xe_ok(&["pbd-plug", &format!("uuid={pbd_b}")]);
            p.calls_on(1, "sr_attach").last().unwrap().ms
        })
        .collect();
    let activate: Vec<u64> = (0..5)
        .map(|_| {
            p.dp(1, vdi, "bench", rw(true)).unwrap();
            let ms = p.calls_on(1, "vdi_activate").last().unwrap().ms;
            p.dp(1, vdi, "bench", None).unwrap();
            ms
        })
        .collect();
    out(&format!(
        "MP-BENCH fencing={label} sr_attach_on_B_ms median={} {attach:?}; vdi_activate_on_B_ms median={} {activate:?}",
        median(&attach),
        median(&activate)
    ));
}

/// The PBD of `sr` on host `i`.
fn pbd_on(p: &TwoHosts<'_>, sr: &str, i: usize) -> String {
    p.xe_ok(&[
        "pbd-list",
        &format!("sr-uuid={sr}"),
        &format!("host-uuid={}", p.host(i).1),
        "--minimal",
    ])
}

/// Both hosts attach the SR (each on every portal, each with the map); the master alone
/// changes metadata (fault 58 on B); B activates an LV created on A after B attached, and sees
/// a resize done on A; an LV active RW on one host is refused on the other; vm-migrate A→B→A
/// moves the LV's activation with data written on each side checksummed on the other; sr_detach
/// on B leaves A working; the SR is destroyed with nothing left on either host.
#[test]
#[ignore = "lab2"]
fn lab2_mpath_lvmoiscsi_one_sr_two_hosts_vms_move_between_them() {
    let Some(lab) = Lab::from_env() else { return };
    let (p, t, sr) = shared_sr(&lab, "mpshared", 1024, &[]);
    let portals = lab.portals().len();
    for b in [false, true] {
        assert_eq!(sessions(&lab, b, &t.iqn), portals, "host B: {b}");
        assert!(has_map(&lab, b, &t.wwid), "host B: {b}");
    }
    let attached = p.xe_ok(&[
        "pbd-list",
        &format!("sr-uuid={sr}"),
        "params=currently-attached",
        "--minimal",
    ]);
    assert_eq!(attached, "true,true", "a plugged PBD per host");
    assert!(
        pr_keys(&lab, &t.wwid).is_empty(),
        "without fencing=pr nothing is registered"
    );

    let (_, _, a_name) = p.host(0);
    let (b_ref, _, b_name) = p.host(1);
    let a_ref = p.host(0).0;
    let vm = p.xe_ok(&[
        "vm-install",
        "template=Debian Sarge 3.1",
        "new-name-label=V",
        &format!("sr-uuid={sr}"),
    ]);
    let disk = |dev: &str| {
        p.xe_ok(&[
            "vbd-list",
            &format!("vm-uuid={vm}"),
            &format!("userdevice={dev}"),
            "params=vdi-uuid",
            "--minimal",
        ])
    };
    let (root, swap) = (disk("0"), disk("1"));
    let root_ref = p.vdi_ref(&root);

    // Metadata changes run on the master only: the plugin on B refuses them (58).
    for (call, args) in [("vdi_resize", vec!["536870912"]), ("vdi_delete", vec![])] {
        let e = p.vdi_call_on(1, &root_ref, call, &args).unwrap_err();
        assert_eq!(e[0], "SR_BACKEND_FAILURE_58", "{call} on B: {e:?}");
    }
    assert!(
        p.xe_ok(&["vdi-list", &format!("uuid={root}"), "--minimal"]) == root,
        "the VDI is still there"
    );

    // Host B activates LVs created on A after B attached the SR.
    p.xe_ok(&["vm-start", &format!("uuid={vm}"), &format!("on={b_name}")]);
    assert!(lv_active(&lab, true, &sr, &root) && !lv_active(&lab, false, &sr, &root));
    let first = write_lv(&lab, true, &sr, &root, AT, 4);
    assert_eq!(p.record_of(&root_ref, 1).as_deref(), Some("RW"));

    // RW on B: A is refused (fault 24 naming B) and its LV stays inactive.
    let text = p.refused_in_use(0, &root_ref, &b_name);
    out(&format!("MP-SHARED refused on A: {text}"));
    assert!(!lv_active(&lab, false, &sr, &root));
    let _ = p.dp(0, &root_ref, "intruder", None);

    // vm-migrate B → A → B: the activation follows, data written on each side reads back on
    // the other.
    let started = Instant::now();
    p.xe_ok(&[
        "vm-migrate",
        &format!("uuid={vm}"),
        &format!("host={a_name}"),
    ]);
    out(&format!(
        "MP-SHARED vm-migrate B→A (2 disks): {} ms",
        started.elapsed().as_millis()
    ));
    assert!(lv_active(&lab, false, &sr, &root) && !lv_active(&lab, true, &sr, &root));
    let sm = p.sm_config(&root_ref);
    assert!(
        sm.get(&format!("host_{a_ref}")).map(String::as_str) == Some("RW")
            && !sm.contains_key(&format!("host_{b_ref}")),
        "{sm:?}"
    );
    assert_eq!(
        read_lv(&lab, false, &sr, &root, AT, 4),
        first,
        "B's data on A"
    );
    let second = write_lv(&lab, false, &sr, &root, AT + 4, 4);
    p.xe_ok(&[
        "vm-migrate",
        &format!("uuid={vm}"),
        &format!("host={b_name}"),
    ]);
    assert!(lv_active(&lab, true, &sr, &root) && !lv_active(&lab, false, &sr, &root));
    assert_eq!(read_lv(&lab, true, &sr, &root, AT, 4), first);
    assert_eq!(
        read_lv(&lab, true, &sr, &root, AT + 4, 4),
        second,
        "A's data on B"
    );
    p.xe_ok(&["vm-shutdown", &format!("uuid={vm}")]);
    assert!(!lv_active(&lab, true, &sr, &root));

    // A resize on the master is what B activates next (no stale LVM metadata on B).
    p.xe_ok(&["vdi-resize", &format!("uuid={swap}"), "disk-size=128MiB"]);
    p.xe_ok(&["vm-start", &format!("uuid={vm}"), &format!("on={b_name}")]);
    let size = sh(
        &lab,
        true,
        &format!("blockdev --getsize64 /dev/VG_XenStorage-{sr}/LV-{swap}"),
    );
    assert!(
        size.trim().parse::<u64>().unwrap() >= 128 << 20,
        "B sees the new size: {size}"
    );
    p.xe_ok(&["vm-shutdown", &format!("uuid={vm}")]);
    bench_on_b(&p, &sr, &p.vdi_ref(&swap), "off");

    // sr_detach on B: B lets go of the target, A keeps working.
    let pbd_b = pbd_on(&p, &sr, 1);
    p.xe_ok(&["pbd-unplug", &format!("uuid={pbd_b}")]);
    assert_eq!(sessions(&lab, true, &t.iqn), 0, "B logged out");
    assert!(!has_map(&lab, true, &t.wwid), "B's map flushed");
    assert_eq!(sessions(&lab, false, &t.iqn), portals, "A untouched");
    p.xe_ok(&["vm-start", &format!("uuid={vm}"), &format!("on={a_name}")]);
    assert_eq!(read_lv(&lab, false, &sr, &root, AT + 4, 4), second);
    p.xe_ok(&["vm-shutdown", &format!("uuid={vm}")]);
    p.xe_ok(&["pbd-plug", &format!("uuid={pbd_b}")]);
    assert_eq!(
        sessions(&lab, true, &t.iqn),
        portals,
        "B back on every portal"
    );

    p.xe_ok(&["vm-uninstall", &format!("uuid={vm}"), "--force"]);
    for i in [0, 1] {
        p.xe_ok(&["pbd-unplug", &format!("uuid={}", pbd_on(&p, &sr, i))]);
    }
    p.xe_ok(&["sr-destroy", &format!("uuid={sr}")]);
    for b in [false, true] {
        wait_until(30, "no sessions, no map", || {
            let (s, m) = (sessions(&lab, b, &t.iqn), has_map(&lab, b, &t.wwid));
            if s == 0 && !m {
                Ok(())
            } else {
                Err(format!("host B {b}: {s} sessions, map {m}"))
            }
        });
    }
}

/// The HA statefile path across hosts: `VDI.generate_config` for host B (CHAP secret resolved,
/// B's initiator recorded); with B's PBD unplugged and xapi stopped, the plugin on B run on
/// that config alone logs in, waits for the map and activates the LV; what A wrote reads back
/// on B; vdi_detach_from_config deactivates it.
#[test]
#[ignore = "lab2"]
fn lab2_mpath_lvmoiscsi_host_b_attaches_the_statefile_from_its_config_with_no_xapi() {
    let Some(lab) = Lab::from_env() else { return };
    let (mut p, t, sr) = shared_sr(&lab, "mpstate", 256, &[]);
    let vdi = p.xe_ok(&[
        "vdi-create",
        &format!("sr-uuid={sr}"),
        "name-label=statefile",
        "type=ha_statefile",
        "virtual-size=16MiB",
    ]);
    let vdi_ref = p.vdi_ref(&vdi);
    p.dp(0, &vdi_ref, "ha", rw(true)).unwrap();
    let written = write_lv(&lab, false, &sr, &vdi, 0, 1);
    p.dp(0, &vdi_ref, "ha", None).unwrap();

    let (b_ref, _, _) = p.host(1);
    let cfg = p.generate_config(&b_ref, &vdi_ref);
    let b_iqn = lab.host_b_desc().unwrap().iqn.clone();
    assert!(
        cfg.contains("vdi_attach_from_config")
            && cfg.contains(CHAP_SECRET)
            && !cfg.contains("_secret")
            && cfg.contains(&b_iqn)
            && !cfg.contains("session_ref"),
        "{cfg}"
    );
    p.xe_ok(&["pbd-unplug", &format!("uuid={}", pbd_on(&p, &sr, 1))]);
    assert_eq!(sessions(&lab, true, &t.iqn), 0);
    p.stop_xapi();

    let detach = cfg.replace("vdi_attach_from_config", "vdi_detach_from_config");
    let started = Instant::now();
    let info = p.plugin_on_b_without_xapi(&cfg);
    out(&format!(
        "MP-SHARED attach_from_config on B with no xapi: {} ms",
        started.elapsed().as_millis()
    ));
    assert!(info.contains(&format!("LV-{vdi}")), "the LV: {info}");
    assert_eq!(
        read_lv(&lab, true, &sr, &vdi, 0, 1),
        written,
        "A's statefile on B"
    );
    p.plugin_on_b_without_xapi(&detach);
    assert!(!lv_active(&lab, true, &sr, &vdi), "deactivated");
}

/// SR-level fencing (`fencing=pr`): both hosts registered on every path under an All
/// Registrants reservation; A holds a VDI and "hangs" (its sessions stay, xapi marks it dead);
/// B's activation PREEMPT AND ABORTs A's key (timed), B's data reads back, A's writes through its
/// own map and paths are refused by the array; A back alive refuses to activate and says why;
/// after a "reboot" (its boot state gone, the PBD re-plugged) it rejoins with a new key.
#[test]
#[ignore = "lab2"]
fn lab2_mpath_lvmoiscsi_fencing_a_dead_host_s_writes_are_refused_by_the_array() {
    let Some(lab) = Lab::from_env() else { return };
    let (p, t, sr) = shared_sr(&lab, "mpfence", 512, &["fencing=pr"]);
    let w = t.wwid.clone();
    let keys = pr_keys(&lab, &w);
    let published = |i: usize| -> u64 {
        let oc = p.xe_ok(&[
            "pbd-param-get",
            &format!("uuid={}", pbd_on(&p, &sr, i)),
            "param-name=other-config",
            "param-key=fencing-key",
        ]);
        u64::from_str_radix(oc.trim().trim_start_matches("0x"), 16)
            .unwrap_or_else(|_| panic!("host {i} published no key: {oc:?}"))
    };
    let (key_a, key_b) = (published(0), published(1));
    assert_ne!(key_a, key_b);
    let portals = lab.portals().len();
    for k in [key_a, key_b] {
        assert_eq!(
            keys.iter().filter(|x| **x == k).count(),
            portals,
            "every path registered: {keys:x?}"
        );
    }
    let resv = pr_reservation(&lab, &w);
    assert!(resv.contains("Write Exclusive, all registrants"), "{resv}");

    let mk = |name: &str| {
        let uuid = p.xe_ok(&[
            "vdi-create",
            &format!("sr-uuid={sr}"),
            &format!("name-label={name}"),
            "type=user",
            "virtual-size=32MiB",
        ]);
        (p.vdi_ref(&uuid), uuid)
    };
    let ((data, data_uuid), (other, other_uuid)) = (mk("data"), mk("other"));
    bench_on_b(&p, &sr, &other, "pr");
    p.dp(0, &data, "vm-a", rw(true)).unwrap();
    write_lv(&lab, false, &sr, &data_uuid, 0, 1);

    // A hangs: its sessions and its map stay, xapi declares it dead.
    let a_ref = p.host(0).0;
    p.emu().set_host_live(&a_ref, false).unwrap();
    let started = Instant::now();
    p.dp(1, &data, "vm-b", rw(true))
        .unwrap_or_else(|e| panic!("B's activation: {e:?}\n{}", p.smlog_tail()));
    let took = started.elapsed().as_millis();
    out(&format!(
        "MP-FENCE from dead to B active: {took} ms (vdi_attach+vdi_activate on B; vdi_activate {} ms)",
        p.calls_on(1, "vdi_activate").last().unwrap().ms
    ));
    let keys = pr_keys(&lab, &w);
    assert!(
        !keys.contains(&key_a) && keys.iter().filter(|k| **k == key_b).count() == portals,
        "{keys:x?}"
    );
    assert!(pr_reservation(&lab, &w).contains("all registrants"));
    let smlog_b = sh(&lab, true, &format!("cat {}", p.smlog_b));
    assert!(
        smlog_b.contains("FENCING") && smlog_b.contains("FENCED host"),
        "logged on B"
    );
    let written = write_lv(&lab, true, &sr, &data_uuid, 1, 1);
    assert!(
        !p.sm_config(&data).contains_key(&format!("host_{a_ref}")),
        "A's record dropped"
    );

    // A's writes: through its map (the LV, still active there) and through each path.
    let lv = format!("/dev/VG_XenStorage-{sr}/LV-{data_uuid}");
    let via_map = lab
        .run(
            &Cmd::new("dd")
                .args([
                    "if=/dev/zero",
                    &format!("of={lv}"),
                    "bs=64k",
                    "count=1",
                    "seek=64",
                    "oflag=direct",
                    "conv=fsync",
                ])
                .timeout(Duration::from_secs(120))
                .ok_codes(&[0, 1]),
        )
        .unwrap();
    assert_ne!(
        via_map.code,
        0,
        "A's write through its map must fail: {}",
        via_map.stderr_str()
    );
    let slaves = sh(
        &lab,
        false,
        &format!("ls /sys/block/$(basename $(readlink -f /dev/mapper/{w}))/slaves"),
    );
    let mut refused = 0;
    for sd in slaves.split_whitespace() {
        let argv = xapi_tests::lab::write_block_argv(&format!("/dev/{sd}"));
        let once = |_: u8| {
            lab.run(
                &Cmd::new(&argv[0])
                    .args(argv[1..].iter().cloned())
                    .ok_codes(&(0..=255).collect::<Vec<_>>()),
            )
            .map(|o| format!("{}{}", o.stdout_str(), o.stderr_str()))
            .unwrap_or_default()
        };
        // The first command after the preemption may get the unit attention instead.
        let r = [once(0), once(1)];
        assert!(
            r[1].to_ascii_lowercase().contains("reservation conflict"),
            "A's path {sd}: {r:?}"
        );
        refused += 1;
    }
    assert_eq!(refused, portals);
    assert_eq!(
        read_lv(&lab, true, &sr, &data_uuid, 1, 1),
        written,
        "B's data"
    );

    // A comes back alive: it refuses to activate anything and says why.
    p.emu().set_host_live(&a_ref, true).unwrap();
    let e = p.dp(0, &other, "vm-a2", rw(true)).unwrap_err();
    assert_eq!(e[0], "SR_BACKEND_FAILURE_46", "{e:?}");
    let (_, text) = p.last_call("vdi_activate").fault.unwrap();
    assert!(text.contains("fenced") && text.contains("reboot"), "{text}");
    out(&format!("MP-FENCE A refuses: {text}"));

    // A "reboots": xapi resets its VDIs, its boot state (tmpfs) is gone, its PBD is plugged again.
    p.dp(0, &data, "vm-a", None).unwrap();
    sh(&lab, false, "rm -rf /run/sm-rs/fencing");
    let pbd_a = pbd_on(&p, &sr, 0);
    p.xe_ok(&["pbd-unplug", &format!("uuid={pbd_a}")]);
    p.xe_ok(&["pbd-plug", &format!("uuid={pbd_a}")]);
    let new_a = published(0);
    assert_ne!(new_a, key_a, "a new key after the reboot");
    let keys = pr_keys(&lab, &w);
    assert!(!keys.contains(&key_a) && keys.contains(&new_a), "{keys:x?}");
    p.dp(0, &other, "vm-a2", rw(true)).unwrap();
    write_lv(&lab, false, &sr, &other_uuid, 0, 1);
    p.dp(0, &other, "vm-a2", None).unwrap();
    p.dp(1, &data, "vm-b", None).unwrap();

    // Each host's sr_detach takes its registrations away.
    p.xe_ok(&["pbd-unplug", &format!("uuid={}", pbd_on(&p, &sr, 1))]);
    let keys = pr_keys(&lab, &w);
    assert_eq!(keys, vec![new_a; portals], "only A's paths: {keys:x?}");
    p.xe_ok(&["pbd-unplug", &format!("uuid={pbd_a}")]);
}
