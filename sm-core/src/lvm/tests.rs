//! The LVM module against a fake runner: the command lines it builds, the scope it passes, the
//! reports it parses (lvm2 2.03.16 output captured in the lab) and the faults lvm2's failures
//! become.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use crate::errors::{SmCode, SmError};
use crate::testing::FakeRunner;

/// lvm2 2.03.16 output (Debian bookworm, the lab guest), captured with the columns of
/// [`report`]: see `tests/fixtures/lvm/README.md`.
fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lvm/lvm-2.03.16")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

const VG: &str = "VG_XenStorage-0a0a0a0a-1111-4222-8333-444455556666";

fn lvm_with<'a>(fake: &'a FakeRunner, devices: &[&str]) -> Lvm<'a> {
    Lvm::new(fake, LvmOptions::scoped(devices)).unwrap()
}

#[test]
fn every_command_carries_the_device_filter_and_no_other_device_is_seen() {
    let fake = FakeRunner::new();
    let lvm = lvm_with(&fake, &["/dev/mapper/3600a", "/dev/mapper/3600b"]);
    lvm.lv_activate(VG, "LV-x", true).unwrap();
    let argv = &fake.calls()[0];
    assert_eq!(&argv[..2], ["lvm", "lvchange"]);
    let cfg = &argv[argv.iter().position(|a| a == "--config").unwrap() + 1];
    assert_eq!(
        cfg,
        "devices { filter = [ \"a|^/dev/mapper/3600a$|\", \"a|^/dev/mapper/3600b$|\", \"r|.*|\" ] \
         global_filter = [ \"a|^/dev/mapper/3600a$|\", \"a|^/dev/mapper/3600b$|\", \"r|.*|\" ] }"
    );
    assert_eq!(argv[argv.len() - 2..], ["-ay", &format!("{VG}/LV-x")]);
    assert!(
        fake.envs()[0].contains(&("LVM_SUPPRESS_FD_WARNINGS".into(), "1".into())),
        "{:?}",
        fake.envs()
    );
}

#[test]
fn regex_metacharacters_in_paths_are_escaped_and_quotes_refused() {
    let fake = FakeRunner::new();
    let lvm = lvm_with(&fake, &["/dev/disk/by-id/scsi-3600.a+b"]);
    lvm.vg_remove("VG").unwrap();
    assert!(
        fake.calls()[0]
            .iter()
            .any(|a| a.contains(r"a|^/dev/disk/by-id/scsi-3600\.a\+b$|"))
    );
    for bad in [
        "relative",
        "/dev/a\"b",
        "/dev/a|b",
        "/dev/a\\b",
        "/dev/a\nb",
    ] {
        let e = Lvm::new(&fake, LvmOptions::scoped(&[bad])).unwrap_err();
        assert_eq!(e.sm_code(), SmCode::ConfigDeviceInvalid, "{bad:?}");
    }
}

#[test]
fn canonical_names_of_symlinked_devices_are_accepted_too() {
    let d = tempfile::tempdir().unwrap();
    let target = d.path().join("dm-3");
    std::fs::write(&target, b"").unwrap();
    let link = d.path().join("mpath-a");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let fake = FakeRunner::new();
    let lvm = Lvm::new(&fake, LvmOptions::scoped(&[&link])).unwrap();
    lvm.vg_activate("VG", false).unwrap();
    let argv = fake.calls()[0].join(" ");
    let accepts = |p: &Path| format!("a|^{}$|", regex_escape(&p.display().to_string()));
    assert!(argv.contains(&accepts(&link)), "{argv}");
    assert!(
        argv.contains(&accepts(&std::fs::canonicalize(&target).unwrap())),
        "{argv}"
    );
}

#[test]
fn system_and_locking_dirs_reach_lvm2() {
    let fake = FakeRunner::new();
    let opts = LvmOptions {
        system_dir: Some(PathBuf::from("/etc/lvm/master")),
        locking_dir: Some(PathBuf::from("/run/xsm/lvm-lock")),
        ..LvmOptions::default()
    };
    Lvm::new(&fake, opts)
        .unwrap()
        .vg_activate(VG, true)
        .unwrap();
    assert!(fake.envs()[0].contains(&("LVM_SYSTEM_DIR".into(), "/etc/lvm/master".into())));
    let argv = &fake.calls()[0];
    assert_eq!(
        argv[argv.iter().position(|a| a == "--config").unwrap() + 1],
        "global { locking_dir = \"/run/xsm/lvm-lock\" }"
    );
    let plain = FakeRunner::new();
    Lvm::new(&plain, LvmOptions::default())
        .unwrap()
        .vg_activate(VG, true)
        .unwrap();
    assert!(!plain.calls()[0].contains(&"--config".to_string()));
    assert_eq!(plain.calls()[0], ["lvm", "vgchange", "-ay", VG]);
}

#[test]
fn sm_master_dir_is_used_only_when_it_has_an_lvm_conf() {
    let d = tempfile::tempdir().unwrap();
    assert_eq!(LvmOptions::sm_master_dir(d.path()), None);
    let m = d.path().join("etc/lvm/master");
    std::fs::create_dir_all(&m).unwrap();
    assert_eq!(LvmOptions::sm_master_dir(d.path()), None);
    std::fs::write(m.join("lvm.conf"), "global {}\n").unwrap();
    assert_eq!(LvmOptions::sm_master_dir(d.path()), Some(m));
}

#[test]
fn verbs_build_the_documented_command_lines() {
    let fake = FakeRunner::new();
    let lvm = Lvm::new(&fake, LvmOptions::default()).unwrap();
    let dev = Path::new("/dev/sdz");
    lvm.pv_create(dev, Some(10 << 20)).unwrap();
    lvm.vg_create(
        VG,
        &[dev],
        &VgCreate {
            extent_size: Some(1 << 20),
            metadata_size: None,
        },
    )
    .unwrap();
    lvm.lv_create(VG, "LV-a", 100 << 20, &LvCreate::default())
        .unwrap();
    lvm.lv_create(
        VG,
        "LV-b",
        5,
        &LvCreate {
            activate: false,
            zero: true,
            tags: vec!["t1".into()],
        },
    )
    .unwrap();
    lvm.lv_snapshot(VG, "LV-a", "xsm-cow", 8 << 20).unwrap();
    lvm.lv_extend(VG, "LV-a", 200 << 20).unwrap();
    lvm.lv_rename(VG, "xsm-copy", "LV-c").unwrap();
    lvm.lv_remove(VG, "LV-b").unwrap();
    lvm.lv_activate(VG, "LV-a", false).unwrap();
    lvm.pv_remove(dev).unwrap();
    let lines: Vec<String> = fake.calls().iter().map(|c| c.join(" ")).collect();
    let want = [
        "lvm pvcreate -ff -y --metadatasize 10485760b /dev/sdz".to_string(),
        format!("lvm vgcreate -s 1048576b {VG} /dev/sdz"),
        format!("lvm lvcreate -y -n LV-a -L 104857600b -ay -Z y -W y {VG}"),
        format!("lvm lvcreate -y -n LV-b -L 5b -an -Z n -W n --addtag t1 {VG}"),
        format!("lvm lvcreate -y -s -n xsm-cow -L 8388608b {VG}/LV-a"),
        format!("lvm lvextend -L 209715200b {VG}/LV-a"),
        format!("lvm lvrename {VG} xsm-copy LV-c"),
        format!("lvm lvremove -f {VG}/LV-b"),
        format!("lvm lvchange -an {VG}/LV-a"),
        "lvm pvremove -y /dev/sdz".to_string(),
    ];
    assert_eq!(lines, want);
}

#[test]
fn a_vg_report_is_one_fullreport_call() {
    let fake = FakeRunner::new();
    fake.on(
        &["lvm", "fullreport"],
        0,
        &fixture("fullreport-snap.json"),
        "",
    );
    let lvm = lvm_with(&fake, &["/dev/mapper/x"]);
    let vg = lvm.vg(VG).unwrap().unwrap();
    assert_eq!(fake.calls().len(), 1);
    let argv = &fake.calls()[0];
    assert_eq!(argv.last().unwrap(), VG);
    for cols in [report::VG_COLUMNS, report::PV_COLUMNS, report::LV_COLUMNS] {
        assert!(argv.iter().any(|a| a == cols), "{cols}");
    }
    assert!(argv.windows(2).any(|w| w == ["--units", "b"]));
    assert_eq!(vg.name, VG);
    assert_eq!(vg.extent_size, 4 << 20);
    assert_eq!(vg.pvs.len(), 1);
    let a = vg.lv("LV-aaaaaaaa-0000-4000-8000-000000000001").unwrap();
    assert_eq!(a.size, 64 << 20);
    assert!(a.attr.is_origin() && a.attr.is_active() && a.attr.is_open());
    let cow = vg.lv("xsm-cow-1").unwrap();
    assert!(cow.attr.is_snapshot() && !cow.attr.is_invalid_snapshot());
    assert_eq!(
        cow.origin.as_deref(),
        Some("LV-aaaaaaaa-0000-4000-8000-000000000001")
    );
    assert!(cow.snap_percent.is_some());
    let b = vg.lv("LV-aaaaaaaa-0000-4000-8000-000000000002").unwrap();
    assert!(b.attr.is_origin(), "{:?}", b.attr);
}

#[test]
fn an_overflowed_snapshot_reads_as_invalid() {
    let fake = FakeRunner::new();
    fake.on(
        &["lvm", "fullreport"],
        0,
        &fixture("fullreport-invalid.json"),
        "",
    );
    let vg = lvm_with(&fake, &["/dev/x"]).vg(VG).unwrap().unwrap();
    let cow = vg.lv("xsm-cow-1").unwrap();
    assert!(cow.attr.is_invalid_snapshot(), "{:?}", cow.attr);
}

#[test]
fn a_missing_vg_is_none_and_other_failures_are_faults() {
    let fake = FakeRunner::new();
    fake.on(
        &["lvm", "fullreport"],
        5,
        "",
        &fixture("err-vg-notfound.txt"),
    );
    fake.on(&["lvm", "fullreport"], 0, "{\"report\": [", "");
    fake.on(
        &["lvm", "fullreport"],
        3,
        "",
        "  Internal error: something odd",
    );
    let lvm = lvm_with(&fake, &["/dev/x"]);
    assert_eq!(lvm.vg("VG_XenStorage-nonexist").unwrap(), None);
    assert_eq!(lvm.vg(VG).unwrap_err().sm_code(), SmCode::LVMRead);
    let e = lvm.scan().unwrap_err();
    assert_eq!(e.sm_code(), SmCode::PVSfailed);
    assert!(
        e.to_string().contains("Internal error: something odd"),
        "{e}"
    );
}

#[test]
fn a_scan_lists_vgs_and_orphan_pvs() {
    let fake = FakeRunner::new();
    fake.on(
        &["lvm", "fullreport"],
        0,
        &fixture("fullreport-all.json"),
        "",
    );
    let r = lvm_with(&fake, &["/dev/x"]).scan().unwrap();
    assert_eq!(r.vgs.len(), 1);
    assert_eq!(r.orphans.len(), 1);
    assert!(r.orphans[0].vg_name.is_none());
    assert_eq!(fake.calls()[0].last().unwrap(), "seg_size<0");
}

#[test]
fn captured_lvm2_failures_map_to_their_faults() {
    for (file, op, code) in [
        ("err-nospace.txt", LvmOp::LvCreate, SmCode::SRNoSpace),
        ("err-remove-open.txt", LvmOp::LvRemove, SmCode::LVMPartInUse),
        (
            "err-deactivate-open.txt",
            LvmOp::LvDeactivate,
            SmCode::LVMPartInUse,
        ),
        (
            "err-lv-notfound.txt",
            LvmOp::LvActivate,
            SmCode::LVMNoVolume,
        ),
        ("err-vg-notfound.txt", LvmOp::VgRemove, SmCode::LVMNoVolume),
        ("err-extend-smaller.txt", LvmOp::LvResize, SmCode::LVMSize),
        (
            "err-vgchange-an-open.txt",
            LvmOp::VgDeactivate,
            SmCode::LVMPartInUse,
        ),
    ] {
        let text = fixture(file);
        let fake = FakeRunner::new();
        fake.on(&["lvm"], 5, "", &text);
        let lvm = Lvm::new(&fake, LvmOptions::default()).unwrap();
        let r = match op {
            LvmOp::LvCreate => lvm.lv_create(VG, "LV-big", 10 << 30, &LvCreate::default()),
            LvmOp::LvRemove => lvm.lv_remove(VG, "LV-a"),
            LvmOp::LvDeactivate => lvm.lv_activate(VG, "LV-a", false),
            LvmOp::LvActivate => lvm.lv_activate(VG, "LV-nonexist", true),
            LvmOp::VgRemove => lvm.vg_remove("VG_XenStorage-nonexist"),
            LvmOp::LvResize => lvm.lv_extend(VG, "LV-a", 16 << 20),
            LvmOp::VgDeactivate => lvm.vg_activate(VG, false),
            other => panic!("{other:?}"),
        };
        let e = r.unwrap_err();
        assert_eq!(e.sm_code(), code, "{file}: {e}");
        let fault = SmError::from(e).to_fault().string;
        let first = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("rc="))
            .unwrap();
        assert!(fault.contains(first), "{file}: {fault}");
    }
}

#[test]
fn only_the_master_changes_metadata() {
    assert!(require_master(true, LvmOp::LvCreate).is_ok());
    let e = require_master(false, LvmOp::LvSnapshot).unwrap_err();
    assert_eq!(e.sm_code(), SmCode::LVMMaster);
}

#[test]
fn timeouts_are_runner_errors_with_the_operation_s_code() {
    struct Slow;
    impl crate::host::Runner for Slow {
        fn run(
            &self,
            cmd: &crate::host::Cmd,
        ) -> Result<crate::host::Output, crate::host::RunError> {
            Err(crate::host::RunError::Timeout {
                cmd: cmd.display(),
                after: cmd.deadline(),
            })
        }
    }
    let slow = Arc::new(Slow);
    let lvm = Lvm::new(slow.as_ref(), LvmOptions::default()).unwrap();
    let e = lvm.lv_create(VG, "x", 1, &LvCreate::default()).unwrap_err();
    assert_eq!(e.sm_code(), SmCode::LVMCreate);
    assert!(e.to_string().contains("timed out"), "{e}");
}
