//! Login/logout flows on the lab's host A rebuilt from captures, with an iscsid played by the
//! runner: a login to target t2 brings its captured sessions, devices and maps into sysfs,
//! a logout takes the session away.

use std::sync::Arc;

use sm_core::secret::Secret;
use sm_core::testing::FakeRunner;

use super::*;
use crate::iscsi::Chap;
use crate::testing::{LabFake, fixture};
use sm_core::testing::materialize_sysfs;

const SR1: &str = "7f0e1c3a-1b2c-4d5e-8f90-a1b2c3d4e5f6";
const SR2: &str = "0a1b2c3d-0000-4000-8000-000000000001";
const T2: &str = "iqn.2026-01.test.lab:t2";
const ARRAY: &str = "iqn.2026-01.test.lab:array";

fn lab_with_sim() -> (LabFake, Arc<FakeRunner>) {
    let lab = LabFake::with_iscsid();
    let fake = lab.runner.clone();
    (lab, fake)
}

fn spec(name: &str) -> TargetSpec {
    TargetSpec {
        hosts: vec![
            Portal::new("10.99.0.1", 3260),
            Portal::new("10.99.0.2", 3260),
        ],
        name: TargetName::Exact(Iqn::new(name).unwrap()),
        auth: Auth::default(),
        multihomed: true,
    }
}

fn calls(sim: &FakeRunner) -> Vec<String> {
    sim.calls().into_iter().map(|c| c.join(" ")).collect()
}

#[test]
fn sessions_that_were_there_are_used_and_left_alone() {
    let (lab, sim) = lab_with_sim();
    sim.on(
        &["iscsiadm", "-m", "node"],
        0,
        &fixture("iscsiadm-node.stdout"),
        "",
    );
    let c = connect(&lab.sys, &spec(ARRAY), SR1).unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].portals.len(), 2);
    assert!(c[0].new_sessions.is_empty());
    assert_eq!(calls(&sim), ["iscsiadm -m node"]);
    let r = disconnect(&lab.sys, &c[0].target, SR1).unwrap();
    assert_eq!(r, Released::default());
    assert_eq!(calls(&sim).len(), 1, "no logout, no flush");
}

/// Scripts what a first login to t2 on both portals with CHAP runs.
fn script_t2_login(lab: &LabFake, sim: &FakeRunner) -> TargetSpec {
    sim.on(
        &["iscsiadm", "-m", "node"],
        0,
        &fixture("iscsiadm-node.stdout"),
        "",
    );
    sim.on(
        &["iscsiadm", "-m", "iface"],
        0,
        &fixture("iscsiadm-iface.stdout"),
        "",
    );
    lab.script_t2_discovery();
    sim.on(
        &["iscsiadm", "-m", "node", "-p", "10.99.0.1:3260", "-T", T2],
        0,
        "",
        "",
    );
    sim.on(
        &["iscsiadm", "-m", "node", "-p", "10.99.0.1:3260", "-T", T2],
        0,
        "node.session.timeo.replacement_timeout = 120\n",
        "",
    );
    let mut s = spec(T2);
    s.auth.chap = Some(Chap {
        user: "labuser".into(),
        secret: Secret::new("labsecret123"),
    });
    s
}

#[test]
fn new_sessions_are_counted_and_logged_out_by_the_last_sr() {
    let (lab, sim) = lab_with_sim();
    let s = script_t2_login(&lab, &sim);
    let c = connect(&lab.sys, &s, SR1).unwrap();
    assert_eq!(c[0].new_sessions.len(), 2);
    assert_eq!(c[0].portals.len(), 2);
    let cmds = calls(&sim);
    assert!(cmds.iter().all(|c| !c.contains("labsecret123")), "{cmds:?}");
    assert!(cmds.contains(&format!(
        "iscsiadm -m node -T {T2} -o update -n node.session.timeo.replacement_timeout -v 15"
    )));
    assert_eq!(
        cmds.iter().filter(|c| c.ends_with(" -l")).count(),
        2,
        "{cmds:?}"
    );
    // A second SR: counted, nothing run.
    sim.on(
        &["iscsiadm", "-m", "node"],
        0,
        &fixture("iscsiadm-discovery-t2.stdout"),
        "",
    );
    let n = calls(&sim).len();
    let second = connect(&lab.sys, &spec(T2), SR2);
    assert!(second.is_ok(), "{second:?} {:?}", calls(&sim));
    assert_eq!(calls(&sim).len(), n + 1, "only the node list");
    let r = disconnect(&lab.sys, &Iqn::new(T2).unwrap(), SR1).unwrap();
    assert_eq!((r.remaining, r.logged_out.len()), (1, 0));
    let r = disconnect(&lab.sys, &Iqn::new(T2).unwrap(), SR2).unwrap();
    assert_eq!(r.remaining, 0);
    assert_eq!(
        r.flushed,
        [
            "360014055ab0c1de00000000000000000",
            "360014055ab0c1de00010000000000000"
        ]
    );
    assert_eq!(r.logged_out.len(), 2);
    assert!(logged_in(&lab.sys, &Iqn::new(T2).unwrap()).is_empty());
    let tail: Vec<String> = calls(&sim).into_iter().skip(n + 1).collect();
    assert_eq!(
        tail,
        [
            "multipath -f 360014055ab0c1de00000000000000000".to_string(),
            "multipath -f 360014055ab0c1de00010000000000000".into(),
            format!("iscsiadm -m node -p 10.99.0.1:3260 -T {T2} -u"),
            format!("iscsiadm -m node -p 10.99.0.2:3260 -T {T2} -u"),
        ]
    );
}

#[test]
fn refused_login_leaves_nothing_behind() {
    let (lab, sim) = lab_with_sim();
    sim.on(
        &["iscsiadm", "-m", "node"],
        0,
        &fixture("iscsiadm-discovery-t2.stdout"),
        "",
    );
    sim.on(
        &[
            "iscsiadm",
            "-m",
            "node",
            "-p",
            "10.99.0.1:3260",
            "-T",
            T2,
            "-l",
        ],
        24,
        "",
        &fixture("iscsiadm-login-wrong-chap.stderr"),
    );
    let e = connect(&lab.sys, &spec(T2), SR1).unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::LoginRefused, "{e}");
    assert!(
        calls(&sim)
            .iter()
            .all(|c| !c.contains("10.99.0.2:3260 -T iqn.2026-01.test.lab:t2 -l"))
    );
    let counts = refcounts(&lab.sys);
    assert!(counts.holders(&Iqn::new(T2).unwrap()).is_empty());
    assert!(counts.adopted(&Iqn::new(T2).unwrap()).is_empty());
}

#[test]
fn unreachable_portals_and_unknown_targets() {
    let (lab, sim) = lab_with_sim();
    lab.net.set_up("10.99.0.1:3260", false);
    lab.net.set_up("10.99.0.2:3260", false);
    let e = connect(&lab.sys, &spec(T2), SR1).unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::Unreachable, "{e}");
    assert!(calls(&sim).is_empty());
    let mut bad = spec(T2);
    bad.hosts = vec![Portal::new("array.invalid", 3260)];
    let e = connect(&lab.sys, &bad, SR1).unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::Dns, "{e}");

    let (lab, sim) = lab_with_sim();
    lab.net.set_up("10.99.0.2:3260", false);
    sim.on(
        &["iscsiadm", "-m", "discovery"],
        0,
        &fixture("iscsiadm-discovery-t2.stdout"),
        "",
    );
    let e = connect(&lab.sys, &spec("iqn.2026-01.test.lab:nosuch"), SR1).unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::NotFound, "{e}");
    assert_eq!(lab.net.probes(), ["10.99.0.1:3260", "10.99.0.2:3260"]);
}

#[test]
fn not_multihomed_uses_only_the_listed_hosts() {
    let (lab, sim) = lab_with_sim();
    sim.on(
        &["iscsiadm", "-m", "node"],
        0,
        &fixture("iscsiadm-discovery-t2.stdout"),
        "",
    );
    let mut s = spec(T2);
    s.hosts.truncate(1);
    s.multihomed = false;
    let c = connect(&lab.sys, &s, SR1).unwrap();
    assert_eq!(c[0].new_sessions, [Portal::new("10.99.0.1", 3260)]);
}

#[test]
fn a_map_in_use_keeps_the_sessions() {
    let (lab, sim) = lab_with_sim();
    sim.on(
        &["iscsiadm", "-m", "node"],
        0,
        &fixture("iscsiadm-discovery-t2.stdout"),
        "",
    );
    connect(&lab.sys, &spec(T2), SR1).unwrap();
    let holders = lab
        .sys
        .sysfs
        .path("/sys/devices/virtual/block/dm-6/holders/dm-9");
    std::fs::create_dir_all(&holders).unwrap();
    let r = disconnect(&lab.sys, &Iqn::new(T2).unwrap(), SR1).unwrap();
    assert!(
        r.kept.as_deref().unwrap_or("").contains("in use by dm-9"),
        "{r:?}"
    );
    assert!(r.logged_out.is_empty());
    assert_eq!(logged_in(&lab.sys, &Iqn::new(T2).unwrap()).len(), 2);
}

#[test]
fn lu_disks_on_the_target() {
    let (lab, _sim) = lab_with_sim();
    materialize_sysfs(&fixture("sysfs-t2.tree"), lab.dir.path()).unwrap();
    let t2 = Iqn::new(T2).unwrap();
    let d = crate::iscsi::luns::lu_disks(
        &lab.sys,
        &t2,
        "360014055ab0c1de00010000000000000",
        Duration::from_secs(1),
    )
    .unwrap();
    assert_eq!(d, ["sdn", "sdp"]);
    // A LU of another target is not found through t2's sessions (and the hosts are rescanned).
    let scan = lab.sys.sysfs.path("/sys/class/scsi_host/host8/scan");
    std::fs::create_dir_all(scan.parent().unwrap()).unwrap();
    let scan9 = lab.sys.sysfs.path("/sys/class/scsi_host/host9/scan");
    std::fs::create_dir_all(scan9.parent().unwrap()).unwrap();
    let none = crate::iscsi::luns::lu_disks(
        &lab.sys,
        &t2,
        "360014055ab0c0de00000000000000000",
        Duration::from_secs(1),
    )
    .unwrap();
    assert!(none.is_empty());
    assert_eq!(std::fs::read_to_string(scan).unwrap(), "- - -");
}

#[test]
fn target_luns_list_each_lu_once() {
    let (lab, _sim) = lab_with_sim();
    materialize_sysfs(&fixture("sysfs-t2.tree"), lab.dir.path()).unwrap();
    let luns =
        crate::iscsi::luns::target_luns(&lab.sys, &Iqn::new(T2).unwrap(), Duration::from_secs(1));
    assert_eq!(luns.len(), 2);
    assert_eq!(luns[1].lun, 1);
    assert_eq!(luns[1].serial, "5ab0c1de0001");
    assert_eq!(luns[1].size, 64 << 20);
    assert_eq!(luns[1].vendor, "LIO-ORG");
    assert_eq!(luns[1].devices, ["sdn", "sdp"]);
    let main = crate::iscsi::luns::target_luns(
        &lab.sys,
        &Iqn::new(ARRAY).unwrap(),
        Duration::from_secs(1),
    );
    assert_eq!(main.len(), 6);
}

/// A multipathd that builds a map of the target again between the flush and the logout: the
/// map of LUN 0 reappears after the last logout, with the logged-out disks as its paths.
struct RacingMultipathd {
    inner: Arc<dyn sm_core::host::Runner>,
    root: std::path::PathBuf,
    reappeared: std::sync::atomic::AtomicBool,
}

impl sm_core::host::Runner for RacingMultipathd {
    fn run(
        &self,
        cmd: &sm_core::host::Cmd,
    ) -> std::result::Result<sm_core::host::Output, sm_core::host::RunError> {
        let out = self.inner.run(cmd)?;
        let argv = cmd.masked_argv().join(" ");
        let link = self.root.join("sys/block/dm-6");
        if argv == format!("iscsiadm -m node -p 10.99.0.2:3260 -T {T2} -u")
            && !self
                .reappeared
                .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            std::os::unix::fs::symlink("../devices/virtual/block/dm-6", &link).unwrap();
        } else if argv == "multipath -f 360014055ab0c1de00000000000000000" {
            let _ = std::fs::remove_file(&link);
        }
        Ok(out)
    }
}

#[test]
fn a_map_built_again_during_the_logout_is_flushed_after_it() {
    let (mut lab, sim) = lab_with_sim();
    let s = script_t2_login(&lab, &sim);
    connect(&lab.sys, &s, SR1).unwrap();
    lab.sys.runner = Arc::new(RacingMultipathd {
        inner: lab.sys.runner.clone(),
        root: lab.dir.path().to_path_buf(),
        reappeared: false.into(),
    });
    let n = calls(&sim).len();
    let r = disconnect(&lab.sys, &Iqn::new(T2).unwrap(), SR1).unwrap();
    assert_eq!(r.logged_out.len(), 2);
    let tail: Vec<String> = calls(&sim).into_iter().skip(n).collect();
    assert_eq!(
        tail.last().map(String::as_str),
        Some("multipath -f 360014055ab0c1de00000000000000000"),
        "{tail:?}"
    );
    assert_eq!(
        r.flushed,
        [
            "360014055ab0c1de00000000000000000",
            "360014055ab0c1de00010000000000000",
            "360014055ab0c1de00000000000000000"
        ]
    );
    assert!(!lab.dir.path().join("sys/block/dm-6").exists());
    assert!(
        lab.multipathd
            .commands()
            .contains(&"disablequeueing map 360014055ab0c1de00000000000000000".to_string()),
        "queued I/O of the pathless map fails before the flush: {:?}",
        lab.multipathd.commands()
    );
    assert!(
        lab.sys
            .sysfs
            .dm_devices()
            .iter()
            .all(|m| !m.name.starts_with("360014055ab0c1de")),
        "no map of the target is left"
    );
}
