//! The `lvm` SR on the lab array's LUNs (multipath maps), for real: lvm2, device-mapper, the
//! datapath. Whole SMAPI calls go through `dispatch::run` with the system runner and the
//! in-test XenAPI server. Run with `xapi-tests/lab/run-suite lab lvm`.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::disallowed_methods,
    reason = "a test harness drives the host as an admin would; the rule is for driver code"
)]

mod lvm_lab;

use std::path::Path;
use std::time::Duration;

use drivers::testing::{fault_code, uuid_of};
use lvm_lab::{
    MIB, Plugged, Scrubbed, attached_sr, blkid, calls, fill, holds, lun_map, params, scrub, size_of,
};
use sm_core::host::SystemRunner;
use sm_core::host::block;
use sm_core::lvm::{Lvm, LvmOptions, VgCreate};
use xapi_tests::lab::Lab;

const SR: &str = "5a5a5a5a-1111-4222-8333-000000000001";
const VG: &str = "VG_XenStorage-5a5a5a5a-1111-4222-8333-000000000001";
const SR2: &str = "5a5a5a5a-1111-4222-8333-000000000002";

fn vdi_size(c: &drivers::testing::Calls, vdi: &str) -> u64 {
    c.xapi
        .vdi_field(vdi, "virtual_size")
        .unwrap()
        .parse()
        .unwrap()
}

/// Attaches and activates `vdi` read-write; the block device a dom0 VBD would get (the LV's
/// node, or the kernel NBD client on its tapdisk where blktap is installed).
fn plug(c: &drivers::testing::Calls, vdi: &str) -> Plugged {
    let info = c.vdi_call("vdi_attach", &["true"], vdi).unwrap();
    c.vdi_call("vdi_activate", &["true"], vdi).unwrap();
    let p = Plugged::of(&info);
    assert!(p.exists(), "{} exists once active", p.display());
    p
}

/// Disconnects the device, then deactivates and detaches `vdi`.
fn unplug(c: &drivers::testing::Calls, vdi: &str, p: Plugged) {
    drop(p);
    c.vdi_call("vdi_deactivate", &[], vdi).unwrap();
    c.vdi_call("vdi_detach", &[], vdi).unwrap();
}

#[test]
#[ignore = "lab"]
fn lab_lvm_lifecycle_with_data_snapshot_clone_resize_scan() {
    let Some(lab) = Lab::from_env() else { return };
    let dev = lun_map(&lab, 4);
    scrub(&[&dev]);
    let _clean = Scrubbed(vec![dev.clone()]);
    let c = calls(SR, &[&dev]);

    c.call("sr_create", &["0"]).unwrap();
    assert!(blkid(&dev).contains("TYPE=LVM2_member"), "{}", blkid(&dev));
    c.call("sr_attach", &[]).unwrap();
    c.call("sr_attach", &[]).unwrap();
    let probe = c.call("sr_probe", &[]).unwrap().to_text();
    assert!(probe.contains(&format!("<UUID>{SR}</UUID>")), "{probe}");
    assert!(
        probe.contains(&format!("<Devlist>{}</Devlist>", dev.display())),
        "{probe}"
    );

    // vdi_create reports the real (extent-rounded) size.
    let odd = uuid_of(
        &c.call("vdi_create", &[&(10 * MIB + 1).to_string(), "odd"])
            .unwrap(),
    );
    assert_eq!(vdi_size(&c, &odd), 12 * MIB);
    let a = uuid_of(
        &c.call("vdi_create", &[&(100 * MIB).to_string(), "src"])
            .unwrap(),
    );
    assert_eq!(vdi_size(&c, &a), 100 * MIB);
    assert_eq!(c.xapi.vdi_sm_config(&a)["vdi_type"], "aio");
    let lv_a = Path::new("/dev").join(VG).join(format!("LV-{a}"));
    assert!(!lv_a.exists(), "a new VDI's LV is inactive");

    // Pattern P1, then a snapshot while the device is held open (as by a running VM).
    let pa = plug(&c, &a);
    assert!(pa.by_tapdisk() || *pa == *lv_a, "{}", pa.display());
    assert_eq!(size_of(&pa), 100 * MIB);
    fill(&pa, 0, 8 * MIB, 0x5a);
    fill(&pa, 96 * MIB, 4 * MIB, 0x5a);
    // What the datapath wrote is in the LV, and what is written to the LV reads through it.
    assert!(
        holds(&lv_a, 96 * MIB, 4 * MIB, 0x5a),
        "written through {}",
        pa.display()
    );
    fill(&lv_a, 50 * MIB, MIB, 0x3c);
    assert!(
        holds(&pa, 50 * MIB, MIB, 0x3c),
        "read through {}",
        pa.display()
    );
    let held = std::fs::File::open(&pa).unwrap();
    let s = uuid_of(&c.vdi_call("vdi_snapshot", &[], &a).unwrap());
    assert_eq!(
        c.xapi.vdi_field(&s, "is_a_snapshot").as_deref(),
        Some("true")
    );
    assert_eq!(vdi_size(&c, &s), 100 * MIB);
    // Pattern P2 over the start of the source; a clone sees P2.
    fill(&pa, 0, 8 * MIB, 0xa5);
    let cl = uuid_of(&c.vdi_call("vdi_clone", &[], &a).unwrap());
    drop(held);
    unplug(&c, &a, pa);
    assert!(!lv_a.exists(), "deactivated");
    let names = lvm_lab::lv_names(&[&dev], VG);
    assert!(
        names.iter().all(|n| n.starts_with("LV-")),
        "no temporary LV left: {names:?}"
    );

    // A copy of an inactive source (a shut-down VM's disk, as xe vm-clone makes).
    let cl_off = uuid_of(&c.vdi_call("vdi_clone", &[], &a).unwrap());
    assert!(!lv_a.exists(), "the source is inactive again");
    let p_off = plug(&c, &cl_off);
    assert!(holds(&p_off, 0, 8 * MIB, 0xa5));
    assert!(holds(&p_off, 96 * MIB, 4 * MIB, 0x5a));
    unplug(&c, &cl_off, p_off);
    c.vdi_call("vdi_delete", &[], &cl_off).unwrap();

    let ps = plug(&c, &s);
    assert!(
        holds(&ps, 0, 8 * MIB, 0x5a),
        "the snapshot has the data of its moment"
    );
    assert!(holds(&ps, 96 * MIB, 4 * MIB, 0x5a));
    let pc = plug(&c, &cl);
    assert!(
        holds(&pc, 0, 8 * MIB, 0xa5),
        "the clone has the data of its moment"
    );
    assert!(holds(&pc, 96 * MIB, 4 * MIB, 0x5a));

    // The source goes; the copies stay as they were.
    c.vdi_call("vdi_delete", &[], &a).unwrap();
    assert!(c.xapi.vdi(&a).is_none());
    assert!(holds(&ps, 0, 8 * MIB, 0x5a));
    assert!(holds(&pc, 0, 8 * MIB, 0xa5));
    unplug(&c, &s, ps);
    unplug(&c, &cl, pc);

    // Resize grows (offline), keeps the data, reports the real size.
    c.vdi_call("vdi_resize", &[&(150 * MIB + 1).to_string()], &cl)
        .unwrap();
    assert_eq!(vdi_size(&c, &cl), 152 * MIB);
    let pc = plug(&c, &cl);
    assert_eq!(size_of(&pc), 152 * MIB);
    assert!(holds(&pc, 0, 8 * MIB, 0xa5));
    unplug(&c, &cl, pc);

    // Scan: a forgotten record comes back, an LV made behind our back is introduced, sizes.
    let (odd_ref, _) = c.xapi.vdi(&odd).unwrap();
    c.xapi.state().vdis.remove(&odd_ref);
    let extra = "5a5a5a5a-2222-4333-8444-000000000099";
    sh_lvm(
        &dev,
        &[
            "lvcreate",
            "-y",
            "-an",
            "-Zn",
            "-n",
            &format!("LV-{extra}"),
            "-L",
            "8m",
            VG,
        ],
    );
    c.call("sr_scan", &[]).unwrap();
    assert!(c.xapi.vdi(&odd).is_some(), "re-introduced by location");
    assert_eq!(vdi_size(&c, extra), 8 * MIB);
    let st = c.xapi.state();
    let phys: u64 = st.sr["physical_size"].parse().unwrap();
    assert!(phys > 900 * MIB && phys < 1024 * MIB, "{phys}");
    assert_eq!(
        st.sr["virtual_allocation"],
        (12 * MIB + 100 * MIB + 152 * MIB + 8 * MIB).to_string()
    );
    drop(st);
    c.call("sr_update", &[]).unwrap();

    // Teardown: every VDI, then the SR; every step idempotent.
    for v in [&odd, &s, &cl, &extra.to_string()] {
        c.vdi_call("vdi_delete", &[], v).unwrap();
        c.vdi_call("vdi_delete", &[], v).unwrap();
    }
    c.call("sr_detach", &[]).unwrap();
    c.call("sr_detach", &[]).unwrap();
    c.call("sr_delete", &[]).unwrap();
    assert_eq!(blkid(&dev), "", "no LVM metadata left");
    c.call("sr_delete", &[]).unwrap();
    c.call("sr_detach", &[]).unwrap();
    assert_eq!(fault_code(c.call("sr_attach", &[])), 47);
}

fn sh_lvm(dev: &Path, argv: &[&str]) {
    lvm_lab::lvm_raw(&[dev], argv).unwrap_or_else(|e| panic!("lvm {argv:?}: {e}"));
}

#[test]
#[ignore = "lab"]
fn lab_lvm_refuses_devices_in_use_and_leaves_them_untouched() {
    let Some(lab) = Lab::from_env() else { return };
    let (d2, d3) = (lun_map(&lab, 2), lun_map(&lab, 3));
    scrub(&[&d2, &d3]);
    let _clean = Scrubbed(vec![d2.clone(), d3.clone()]);

    // The root filesystem's device.
    let root = block::root_device(&block::mounts()).expect("the guest's root is a block device");
    let root_dev = Path::new("/dev/block").join(format!("{}:{}", root.0, root.1));
    let (code, msg) = calls(SR, &[&root_dev])
        .call("sr_create", &["0"])
        .unwrap_err();
    assert_eq!(code, 105, "{msg}");

    // A path under a multipath map is held by the map.
    let path = lab.host_a_lun(3).unwrap().paths[0].dev_path();
    let (code, msg) = calls(SR, &[&path]).call("sr_create", &["0"]).unwrap_err();
    assert_eq!(code, 16, "{msg}");
    assert!(msg.contains("held by dm-"), "{msg}");

    // A filesystem, then the same mounted.
    sh(&["mkfs.ext4", "-q", "-F", &d3.display().to_string()]);
    let (code, msg) = calls(SR, &[&d3]).call("sr_create", &["0"]).unwrap_err();
    assert_eq!(code, 16, "{msg}");
    assert!(msg.contains("ext4"), "{msg}");
    let point = tempfile::tempdir().unwrap();
    sh(&[
        "mount",
        &d3.display().to_string(),
        &point.path().display().to_string(),
    ]);
    let r = calls(SR, &[&d3]).call("sr_create", &["0"]);
    sh(&["umount", &point.path().display().to_string()]);
    assert_eq!(fault_code(r), 16);
    assert!(blkid(&d3).contains("TYPE=ext4"), "untouched");
    sh(&["wipefs", "-a", "-q", &d3.display().to_string()]);

    // A device of another VG: 42, also when listed with a clean one, which stays clean.
    let c1 = calls(SR, &[&d2]);
    c1.call("sr_create", &["0"]).unwrap();
    c1.call("sr_attach", &[]).unwrap();
    let (code, msg) = calls(SR2, &[&d3, &d2])
        .call("sr_create", &["0"])
        .unwrap_err();
    assert_eq!(code, 42, "{msg}");
    assert_eq!(blkid(&d3), "", "the clean device was not labelled");
    assert_eq!(fault_code(calls(SR, &[&d3]).call("sr_create", &["0"])), 42);
    let missing = Path::new("/dev/mapper/no-such-device");
    assert_eq!(
        fault_code(calls(SR2, &[missing]).call("sr_create", &["0"])),
        91
    );

    // Sizes: zero, more than the VG holds, shrinking.
    assert_eq!(fault_code(c1.call("vdi_create", &["0"])), 79);
    assert_eq!(
        fault_code(c1.call("vdi_create", &[&(10u64 << 30).to_string()])),
        44
    );
    let v = uuid_of(&c1.call("vdi_create", &[&(16 * MIB).to_string()]).unwrap());
    assert_eq!(
        fault_code(c1.vdi_call("vdi_resize", &[&(8 * MIB).to_string()], &v)),
        79
    );

    // Not empty.
    assert_eq!(fault_code(c1.call("sr_delete", &[])), 39);

    // Open: deactivate, delete and detach refuse; nothing changes.
    let p = plug(&c1, &v);
    let held = std::fs::File::open(&p).unwrap();
    assert_eq!(fault_code(c1.vdi_call("vdi_deactivate", &[], &v)), 24);
    assert_eq!(fault_code(c1.vdi_call("vdi_delete", &[], &v)), 24);
    assert_eq!(fault_code(c1.call("sr_detach", &[])), 16);
    assert!(p.exists());
    assert!(
        c1.xapi
            .vdi_sm_config(&v)
            .contains_key("host_OpaqueRef:host-a"),
        "still recorded as active"
    );
    drop(held);
    unplug(&c1, &v, p);

    // Not the master.
    let mut slave = calls(SR, &[&d2]);
    slave.master = false;
    assert_eq!(
        fault_code(slave.call("vdi_create", &[&MIB.to_string()])),
        58
    );

    c1.vdi_call("vdi_delete", &[], &v).unwrap();
    c1.call("sr_detach", &[]).unwrap();
    c1.call("sr_delete", &[]).unwrap();
    assert_eq!(blkid(&d2), "");
}

fn sh(argv: &[&str]) -> String {
    lvm_lab::sh(argv)
}

#[test]
#[ignore = "lab"]
fn lab_lvm_sr_spans_devices_and_probe_finds_it() {
    let Some(lab) = Lab::from_env() else { return };
    let (d0, d1) = (lun_map(&lab, 0), lun_map(&lab, 1));
    scrub(&[&d0, &d1]);
    let _clean = Scrubbed(vec![d0.clone(), d1.clone()]);
    let c = calls(SR, &[&d0, &d1]);
    c.call("sr_create", &["0"]).unwrap();
    // A replayed create of the same empty SR on the same devices succeeds.
    c.call("sr_create", &["0"]).unwrap();
    c.call("sr_attach", &[]).unwrap();
    // A VDI larger than either device alone.
    let v = uuid_of(&c.call("vdi_create", &[&(300 * MIB).to_string()]).unwrap());
    assert_eq!(vdi_size(&c, &v), 300 * MIB);
    let one = calls(SR2, &[&d1]);
    let probe = one.call("sr_probe", &[]).unwrap().to_text();
    assert!(probe.contains(&format!("<UUID>{SR}</UUID>")), "{probe}");
    // Probing one device sees only that one: the other PV has no name in its scope.
    assert!(
        probe.contains(&format!("<Devlist>{}</Devlist>", d1.display())),
        "{probe}"
    );
    let both = c.call("sr_probe", &[]).unwrap().to_text();
    assert!(
        both.contains(&d0.display().to_string())
            && both.contains(&d1.display().to_string())
            && !both.contains("unknown"),
        "{both}"
    );
    let size: u64 = probe
        .split("<size>")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(size > 440 * MIB && size < 512 * MIB, "{size}");
    c.vdi_call("vdi_delete", &[], &v).unwrap();
    c.call("sr_detach", &[]).unwrap();
    c.call("sr_delete", &[]).unwrap();
    assert_eq!(blkid(&d0), "");
    assert_eq!(blkid(&d1), "");
    let empty = one.call("sr_probe", &[]).unwrap().to_text();
    assert!(!empty.contains("<SR>"), "{empty}");
}

#[test]
#[ignore = "lab"]
fn lab_lvm_static_config_attaches_without_xapi() {
    let Some(lab) = Lab::from_env() else { return };
    let dev = lun_map(&lab, 0);
    let (_clean, c) = attached_sr(SR, &[&dev]);
    let v = uuid_of(&c.call("vdi_create", &[&(8 * MIB).to_string()]).unwrap());
    let cfg = c
        .vdi_call("vdi_generate_config", &[], &v)
        .unwrap()
        .to_text();
    assert!(!cfg.contains("session_ref"), "{cfg}");
    let info = c.run_xml(&cfg).unwrap();
    let p = params(&info);
    assert!(p.exists());
    fill(&p, 0, MIB, 0x11);
    c.run_xml(&cfg.replace("vdi_attach_from_config", "vdi_detach_from_config"))
        .unwrap();
    assert!(!p.exists(), "deactivated");
    c.vdi_call("vdi_delete", &[], &v).unwrap();
    c.call("sr_delete", &[]).unwrap();
}

#[test]
#[ignore = "lab"]
fn lab_lvm_snapshot_overflow_is_a_clear_fault_and_leaves_nothing_behind() {
    let Some(lab) = Lab::from_env() else { return };
    let dev = lun_map(&lab, 0);
    let (_clean, c) = attached_sr(SR, &[&dev]);
    let a = uuid_of(&c.call("vdi_create", &[&(100 * MIB).to_string()]).unwrap());
    // Leave room for the copy and only 3 extents (12 MiB) of copy-on-write area.
    let runner = SystemRunner::new();
    let lvm = Lvm::new(&runner, LvmOptions::scoped(&[&dev])).unwrap();
    let free = lvm.vg(VG).unwrap().unwrap().free;
    let filler = free - 100 * MIB - 12 * MIB;
    let f = uuid_of(&c.call("vdi_create", &[&filler.to_string()]).unwrap());
    let pa = plug(&c, &a);
    fill(&pa, 0, 100 * MIB, 0x01);
    // A VM writing all over the source while the copy runs.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, pa) = (stop.clone(), pa.to_path_buf());
        std::thread::spawn(move || {
            let mut b = 2u8;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                fill(&pa, 0, 100 * MIB, b);
                b = b.wrapping_add(1);
            }
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    let r = c.vdi_call("vdi_clone", &[], &a);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    let (code, msg) = r.unwrap_err();
    assert_eq!(code, 81, "{msg}");
    assert!(msg.contains("overflowed"), "{msg}");
    let names = lvm_lab::lv_names(&[&dev], VG);
    assert_eq!(names.len(), 2, "nothing left behind: {names:?}");
    assert_eq!(
        c.xapi.state().vdis.len(),
        2,
        "no record for the failed clone"
    );
    unplug(&c, &a, pa);
    for v in [&a, &f] {
        c.vdi_call("vdi_delete", &[], v).unwrap();
    }
    c.call("sr_delete", &[]).unwrap();
}

#[test]
#[ignore = "lab"]
fn lab_lvm_module_private_system_and_locking_dirs() {
    let Some(lab) = Lab::from_env() else { return };
    let dev = lun_map(&lab, 1);
    scrub(&[&dev]);
    let _clean = Scrubbed(vec![dev.clone()]);
    let sys = tempfile::tempdir().unwrap();
    let locks = tempfile::tempdir().unwrap();
    std::fs::copy("/etc/lvm/lvm.conf", sys.path().join("lvm.conf")).unwrap();
    let runner = SystemRunner::new();
    let mut opts = LvmOptions::scoped(&[&dev]);
    opts.system_dir = Some(sys.path().to_path_buf());
    opts.locking_dir = Some(locks.path().to_path_buf());
    let lvm = Lvm::new(&runner, opts).unwrap();
    let vg = "VG_XenStorage-5a5a5a5a-1111-4222-8333-0000000000aa";
    lvm.pv_create(&dev, None).unwrap();
    lvm.vg_create(vg, &[&dev], &VgCreate::default()).unwrap();
    assert!(
        sys.path().join("backup").join(vg).is_file(),
        "metadata backed up under the private system directory"
    );
    assert!(!Path::new("/etc/lvm/backup").join(vg).exists());
    // A scope without the device does not see it.
    let other = Lvm::new(&runner, LvmOptions::scoped(&[&lun_map(&lab, 0)])).unwrap();
    assert!(other.vg(vg).unwrap().is_none());
    assert!(lvm.vg(vg).unwrap().is_some());
    lvm.vg_remove(vg).unwrap();
    lvm.pv_remove(&dev).unwrap();
}

/// A volume group laid out as sm's LVHD on a lab LUN (real lvm2): `MGT`, `VHD-<uuid>` LVs, a
/// journal, and a raw `LV-<uuid>` tagged hidden, plus a raw VDI of ours. sr_attach and sr_scan
/// of our type refuse it with fault 47 naming sm's volumes; no VDI record is introduced or
/// forgotten and no LV changes.
#[test]
#[ignore = "lab"]
fn lab_lvm_sm_s_lvhd_volume_group_is_refused_and_nothing_is_forgotten() {
    let Some(lab) = Lab::from_env() else { return };
    let dev = lun_map(&lab, 0);
    let (_clean, c) = attached_sr(SR, &[&dev]);
    let ours = uuid_of(&c.call("vdi_create", &[&(8 * MIB).to_string()]).unwrap());
    let vhd_vdi = "0c0c0c0c-0000-4000-8000-000000000001";
    let base_vdi = "0c0c0c0c-0000-4000-8000-000000000002";
    let devs = [dev.as_path()];
    for argv in [
        vec!["lvcreate", "-an", "-Zn", "-L", "4m", "-n", "MGT", VG],
        vec![
            "lvcreate",
            "-an",
            "-Zn",
            "-L",
            "8m",
            "-n",
            &format!("VHD-{vhd_vdi}")[..],
            VG,
        ],
        vec![
            "lvcreate",
            "-an",
            "-Zn",
            "-L",
            "8m",
            "-n",
            &format!("LV-{base_vdi}")[..],
            "--addtag",
            "hidden",
            VG,
        ],
        vec![
            "lvcreate",
            "-an",
            "-Zn",
            "-L",
            "4m",
            "-n",
            "clone_x_1",
            "--addtag",
            "journaler",
            VG,
        ],
    ] {
        lvm_lab::lvm_raw(&devs, &argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    }
    let lvs_before = lvm_lab::lv_names(&devs, VG);
    let calls_before = c.xapi.calls().len();

    for verb in ["sr_scan", "sr_attach"] {
        let (code, text) = c.call(verb, &[]).unwrap_err();
        assert_eq!(code, 47, "{verb}: {text}");
        for name in [
            "MGT",
            &format!("VHD-{vhd_vdi}"),
            &format!("LV-{base_vdi}"),
            "clone_x_1",
        ] {
            assert!(text.contains(name), "{verb} names {name}: {text}");
        }
    }
    let writes: Vec<String> = c.xapi.calls()[calls_before..]
        .iter()
        .filter(|x| x.starts_with("VDI.db_") || x.starts_with("VDI.set_"))
        .cloned()
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert!(c.xapi.vdi(&ours).is_some(), "our VDI's record is kept");
    assert!(c.xapi.vdi(vhd_vdi).is_none() && c.xapi.vdi(base_vdi).is_none());
    assert_eq!(lvm_lab::lv_names(&devs, VG), lvs_before, "no LV changed");
}

/// The uuids of the VDI records other than `vdi`'s.
fn others(c: &drivers::testing::Calls, vdi: &str) -> Vec<String> {
    c.xapi
        .state()
        .vdis
        .values()
        .filter_map(|r| r.get("uuid").map(sm_core::xmlrpc::Value::to_text))
        .filter(|u| u != vdi)
        .collect()
}

/// vdi_snapshot of a 64 MiB VDI full of data, exec'd as xapi execs the plugin and killed
/// (SIGKILL) at 1/10, 3/10, 5/10, 7/10 and 9/10 of a whole snapshot's time: no process of the
/// call survives it, and after the next sr_scan the VG holds exactly what it held before (a
/// snapshot that completed before the kill is a VDI with its record, deleted for the next
/// round). The issue asks for 2 GiB; the lab's LUNs hold 256 MiB (a copy needs the source's
/// size twice), and the copy's time, not its size, is what the kill points divide.
#[test]
#[ignore = "lab"]
fn lab_lvm_a_snapshot_killed_at_any_point_leaves_nothing_after_the_next_scan() {
    let Some(lab) = Lab::from_env() else { return };
    let dev = lun_map(&lab, 0);
    let (_clean, c) = attached_sr(SR, &[&dev]);
    let a = uuid_of(&c.call("vdi_create", &[&(64 * MIB).to_string()]).unwrap());
    let pa = plug(&c, &a);
    fill(&pa, 0, 64 * MIB, 0x5a);
    unplug(&c, &a, pa);
    let runner = SystemRunner::new();
    let lvm = Lvm::new(&runner, LvmOptions::scoped(&[&dev])).unwrap();
    let free = || lvm.vg(VG).unwrap().unwrap().free;
    let (names, free_before) = (lvm_lab::lv_names(&[&dev], VG), free());

    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("XSMLVMSR");
    std::os::unix::fs::symlink(lab.bin("xsm"), &plugin).unwrap();
    let vdi_ref = c.xapi.vdi(&a).map(|(r, _)| r).unwrap();
    let xml = c.method_call(
        "vdi_snapshot",
        &[],
        &[
            ("vdi_ref", &vdi_ref),
            ("vdi_uuid", &a),
            ("vdi_location", &a),
        ],
    );
    let spawn = || {
        std::process::Command::new(&plugin)
            .arg(&xml)
            .env("SM_XAPI", c.xapi.endpoint())
            .env("SM_ROOT", c.host.paths.root())
            .env("SMLOG_FILE", dir.path().join("SMlog"))
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let started = std::time::Instant::now();
    assert!(spawn().wait().unwrap().success());
    let whole = started.elapsed();
    let extra = others(&c, &a);
    assert_eq!(extra.len(), 1, "the whole snapshot made one VDI");
    c.vdi_call("vdi_delete", &[], &extra[0]).unwrap();
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("whole snapshot: {} ms\n", whole.as_millis()).as_bytes(),
    );

    for tenth in [1u32, 3, 5, 7, 9] {
        let mut p = spawn();
        std::thread::sleep(whole * tenth / 10);
        p.kill().unwrap();
        p.wait().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = sm_core::testing::processes_mentioning(VG);
            if left.is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "killed at {tenth}/10: still running: {left:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c.call("sr_scan", &[]).unwrap();
        let done = others(&c, &a);
        for u in &done {
            c.vdi_call("vdi_delete", &[], u).unwrap();
        }
        assert_eq!(
            (lvm_lab::lv_names(&[&dev], VG), free()),
            (names.clone(), free_before),
            "killed at {tenth}/10 ({} snapshot completed): the VG after the next scan",
            done.len()
        );
    }
    c.vdi_call("vdi_delete", &[], &a).unwrap();
    c.call("sr_delete", &[]).unwrap();
}
