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
        if let Ok(b) = self.lab.host_b() {
            let (w, iqn) = (&self.wwid, &self.iqn);
            let _ = b.run(&AgentRequest::new([
                "sh",
                "-c",
                &format!(
                    "multipath -f {w}; iscsiadm -m node -T {iqn} --logout; iscsiadm -m node -T {iqn} -o delete; true"
                ),
            ]));
        }
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

/// The pool with one shared MultipathLVMoISCSISR on a new CHAP target: plugged on both hosts.
fn shared_sr<'l>(lab: &'l Lab, name: &str, size_mb: u64) -> (TwoHosts<'l>, Target<'l>, String) {
    let t = Target::add(lab, name, size_mb);
    let p = lab_pool::start(lab, "MultipathLVMoISCSISR", &format!("mpath-{name}"));
    let target = lab
        .portals()
        .iter()
        .map(|p| p.address.split(':').next().unwrap().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let started = Instant::now();
    let sr = p.xe_ok(&[
        "sr-create",
        "type=multipathlvmoiscsi",
        "name-label=shared",
        "shared=true",
        &format!("device-config:target={target}"),
        &format!("device-config:targetIQN={}", t.iqn),
        &format!("device-config:SCSIid={}", t.wwid),
        &format!("device-config:chapuser={CHAP_USER}"),
        &format!("device-config:chappassword={CHAP_SECRET}"),
    ]);
    out(&format!(
        "MP-SHARED sr-create on two hosts: {} ms",
        started.elapsed().as_millis()
    ));
    (p, t, sr)
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
    let (p, t, sr) = shared_sr(&lab, "mpshared", 1024);
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
    let first = write_lv(&lab, true, &sr, &root, 0, 4);
    assert_eq!(
        p.sm_config(&root_ref)
            .get(&format!("host_{b_ref}"))
            .map(String::as_str),
        Some("RW")
    );

    // RW on B: A is refused (fault 24 naming B) and its LV stays inactive.
    let e = p.dp(0, &root_ref, "intruder", rw(true)).unwrap_err();
    assert_eq!(e[0], "VDI_IN_USE", "{e:?}\n{}", p.smlog_tail());
    let (code, text) = p.last_call("vdi_activate").fault.unwrap();
    assert_eq!(code, 24, "{text}");
    assert!(text.contains(&b_name), "names the holder: {text}");
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
        read_lv(&lab, false, &sr, &root, 0, 4),
        first,
        "B's data on A"
    );
    let second = write_lv(&lab, false, &sr, &root, 4, 4);
    p.xe_ok(&[
        "vm-migrate",
        &format!("uuid={vm}"),
        &format!("host={b_name}"),
    ]);
    assert!(lv_active(&lab, true, &sr, &root) && !lv_active(&lab, false, &sr, &root));
    assert_eq!(read_lv(&lab, true, &sr, &root, 0, 4), first);
    assert_eq!(
        read_lv(&lab, true, &sr, &root, 4, 4),
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

    // sr_detach on B: B lets go of the target, A keeps working.
    let pbd_b = pbd_on(&p, &sr, 1);
    p.xe_ok(&["pbd-unplug", &format!("uuid={pbd_b}")]);
    assert_eq!(sessions(&lab, true, &t.iqn), 0, "B logged out");
    assert!(!has_map(&lab, true, &t.wwid), "B's map flushed");
    assert_eq!(sessions(&lab, false, &t.iqn), portals, "A untouched");
    p.xe_ok(&["vm-start", &format!("uuid={vm}"), &format!("on={a_name}")]);
    assert_eq!(read_lv(&lab, false, &sr, &root, 4, 4), second);
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
    let (mut p, t, sr) = shared_sr(&lab, "mpstate", 256);
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
