use super::*;
use crate::testing::{block_tree, materialize_sysfs};

fn sysfs_of(tree: &str) -> (tempfile::TempDir, Sysfs) {
    let d = tempfile::tempdir().unwrap();
    materialize_sysfs(tree, d.path()).unwrap();
    let s = Sysfs::new(d.path());
    (d, s)
}

#[test]
fn hctl_and_natural_order() {
    assert_eq!(parse_hctl("6:0:0:12"), Some((6, 0, 0, 12)));
    assert_eq!(parse_hctl("target6:0:0"), None);
    assert_eq!(parse_hctl("1:2:3:4:5"), None);
    let mut v = vec!["sdaa", "sdb", "sda", "session10", "session2"];
    v.sort_by_key(|n| natural(n));
    assert_eq!(v, ["sda", "sdb", "sdaa", "session2", "session10"]);
}

#[test]
fn walks_the_block_stack_down_and_finds_partition_disks() {
    // sda1 + sdb1 -> md0 -> dm-0; dm-5 over sdb.
    let (_d, sys) = sysfs_of(&block_tree(
        &[
            ("sda", (8, 0), None),
            ("sda1", (8, 1), Some("sda")),
            ("sdb", (8, 16), None),
            ("sdb1", (8, 17), Some("sdb")),
            ("md0", (9, 0), None),
            ("dm-0", (253, 0), None),
            ("dm-5", (253, 5), None),
        ],
        &[
            ("md0", "sda1"),
            ("md0", "sdb1"),
            ("dm-0", "md0"),
            ("dm-5", "sdb"),
        ],
    ));
    assert_eq!(sys.name((253, 5)).as_deref(), Some("dm-5"));
    assert_eq!(sys.name((8, 1)).as_deref(), Some("sda1"));
    assert_eq!(sys.name((7, 7)), None);
    assert_eq!(sys.slaves((9, 0)), vec![(8, 1), (8, 17)]);
    assert_eq!(sys.holders((8, 16)), vec!["dm-5"]);
    assert_eq!(sys.disk_of_partition((8, 17)), Some((8, 16)));
    assert_eq!(sys.disk_of_partition((8, 16)), None);
    assert_eq!(
        sys.stack_below((253, 0)),
        vec![(253, 0), (9, 0), (8, 1), (8, 17)]
    );
    let stack = sys.root_stack((253, 0));
    assert!(stack.contains(&(8, 0)) && stack.contains(&(8, 16)));
    assert!(!stack.contains(&(253, 5)));
}

#[test]
fn reads_maps_slaves_and_sessions_from_a_sysfs_tree() {
    let dev = "/sys/devices/platform/host6/session4/target6:0:0/6:0:0:1";
    let tree = format!(
        "F /sys/block/dm-3/dm/name\t36001405aa\n\
         F /sys/block/dm-3/dm/uuid\tmpath-36001405aa\n\
         D /sys/block/dm-3/slaves/sdb\n\
         D /sys/block/dm-3/slaves/sdc\n\
         L /sys/block/sdb\t../devices/platform/host6/session4/target6:0:0/6:0:0:1/block/sdb\n\
         L {dev}/block/sdb/device\t../../../6:0:0:1\n\
         F {dev}/state\trunning\n\
         D /sys/block/sdc/device\n\
         F /sys/block/sdc/device/state\toffline\n\
         F /sys/class/iscsi_session/session4/targetname\tiqn.2026-01.test.lab:array\n\
         F /sys/class/iscsi_session/session4/initiatorname\tiqn.2026-01.test.lab:host-a\n\
         F /sys/class/iscsi_session/session4/isid\t00023d000004\n"
    );
    let (_d, s) = sysfs_of(&tree);
    let dm = s.dm_by_name("/dev/mapper/36001405aa").unwrap();
    assert_eq!(dm.kernel, "dm-3");
    assert_eq!(dm.slaves, ["sdb", "sdc"]);
    assert_eq!(dm.multipath_wwid(), Some("36001405aa"));
    assert_eq!(
        s.dm_by_name("dm-3").map(|d| d.name).as_deref(),
        Some("36001405aa")
    );
    assert_eq!(
        s.dm_by_name("/dev/dm-3").map(|d| d.kernel).as_deref(),
        Some("dm-3")
    );
    assert_eq!(s.dm_by_name("nope"), None);
    assert_eq!(
        s.multipath_map("36001405aa").map(|d| d.kernel).as_deref(),
        Some("dm-3")
    );
    assert!(s.running("sdb"));
    assert!(!s.running("sdc"));
    assert!(!s.running("sdz"));
    let sess = s.session_of("sdb").unwrap();
    assert_eq!(sess.sid, 4);
    assert_eq!(sess.host, None);
    assert_eq!(sess.initiator, "iqn.2026-01.test.lab:host-a");
    assert_eq!(sess.isid_value(), Some(0x23d000004));
    assert_eq!(s.session_of("sdc"), None);
    let disk = s.scsi_disk("sdb").unwrap();
    assert_eq!(
        (disk.hctl(), disk.session),
        ("6:0:0:1".to_string(), Some(4))
    );
}

#[test]
fn reads_the_lab_capture() {
    let tree = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../multipath/tests/fixtures/lab-6.1/sysfs-base.tree"
    ))
    .unwrap();
    let (_d, s) = sysfs_of(&tree);
    let disks = s.scsi_disks();
    assert!(disks.len() >= 2, "{disks:?}");
    assert!(
        disks
            .iter()
            .all(|d| d.session.is_some() && d.vpd_pg83.is_some())
    );
    let sessions = s.iscsi_sessions();
    assert!(
        sessions.iter().all(IscsiSession::is_logged_in),
        "{sessions:?}"
    );
    let map = s
        .dm_devices()
        .into_iter()
        .find(|d| d.multipath_wwid().is_some())
        .unwrap();
    assert!(map.slaves.len() >= 2);
    assert_eq!(
        s.session_of(&map.slaves[0]).map(|x| x.target.is_empty()),
        Some(false)
    );
}

#[test]
fn writes_go_under_the_root() {
    let (d, s) = sysfs_of("F /sys/block/sdb/device/timeout\t30\n");
    s.write("/sys/block/sdb/device/timeout", "60").unwrap();
    assert_eq!(
        s.read("/sys/block/sdb/device/timeout").as_deref(),
        Some("60")
    );
    assert!(d.path().join("sys/block/sdb/device/timeout").exists());
    assert!(s.write("/sys/nope/x", "1").is_err());
}
