//! sm-made content in front of our types, made by the real tools in the storage lab
//! (`vhd-util` and tapdisk from the blktap build run-suite shares): a file SR directory holding
//! sm snapshot chains scans to sm's VDIs and serves each as tapdisk reads its chain; a broken
//! chain or a visible parent is refused and forgets nothing. The LVHD volume group case is in
//! `lab_lvm.rs`. Run with `xapi-tests/lab/run-suite lab sm_content`.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::disallowed_methods,
    reason = "a test harness makes sm's content with sm's tools; the rule is for driver code"
)]

use std::path::Path;
use std::sync::Arc;

use drivers::testing::{Calls, uuid_of};
use hostio::testing::write_through_tapdisk;
use sm_core::host::SystemRunner;
use sm_core::testing::nbd::{self, NbdReader};
use sm_core::testing::run_ok as run;

const MIB: u64 = 1 << 20;

const SR: &str = "5c5c5c5c-1111-4222-8333-000000000001";

/// A created and attached `xsmfile` SR in a fresh directory holding one VDI of ours: the
/// temporary directory (keep it alive), the SR directory, the calls, our VDI's uuid.
fn file_sr_with_one_vdi() -> (tempfile::TempDir, std::path::PathBuf, Calls, String) {
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    let dir = d.path().join("sr");
    let loc = dir.display().to_string();
    let c = Calls::new(
        &drivers::file::DRIVER,
        Arc::new(SystemRunner::new()),
        SR,
        &[("location", &loc)],
    )
    .unwrap();
    c.call("sr_create", &["0"]).unwrap();
    c.call("sr_attach", &[]).unwrap();
    let ours = uuid_of(&c.call("vdi_create", &[&(4u64 << 20).to_string()]).unwrap());
    (d, dir, c, ours)
}

#[test]
#[ignore = "lab"]
fn lab_sm_content_vhd_util_chain_scans_to_sm_s_vdis_and_reads_as_tapdisk_reads_it() {
    if std::env::var_os("LAB_JSON").is_none() {
        return;
    }
    let (_d, dir, c, ours) = file_sr_with_one_vdi();

    // sm's layout after two snapshots of a VM's disk: hidden base <- hidden mid <- leaf (the
    // disk), with one snapshot VDI under each hidden parent.
    let base = "0d0d0d0d-0000-4000-8000-000000000001";
    let mid = "0d0d0d0d-0000-4000-8000-000000000002";
    let leaf = "0d0d0d0d-0000-4000-8000-000000000003";
    let snap1 = "0d0d0d0d-0000-4000-8000-000000000004";
    let snap2 = "0d0d0d0d-0000-4000-8000-000000000005";
    let f = |u: &str| dir.join(format!("{u}.vhd")).display().to_string();
    run(&["vhd-util", "create", "-n", &f(base), "-s", "8"]);
    write_through_tapdisk(Path::new(&f(base)), 0x11, 0, 8 * MIB).unwrap();
    run(&["vhd-util", "snapshot", "-n", &f(mid), "-p", &f(base)]);
    run(&["vhd-util", "snapshot", "-n", &f(snap1), "-p", &f(base)]);
    run(&["vhd-util", "set", "-n", &f(base), "-f", "hidden", "-v", "1"]);
    write_through_tapdisk(Path::new(&f(mid)), 0x22, 2 * MIB, MIB).unwrap();
    run(&["vhd-util", "snapshot", "-n", &f(leaf), "-p", &f(mid)]);
    run(&["vhd-util", "snapshot", "-n", &f(snap2), "-p", &f(mid)]);
    run(&["vhd-util", "set", "-n", &f(mid), "-f", "hidden", "-v", "1"]);
    write_through_tapdisk(Path::new(&f(leaf)), 0x33, 4 * MIB + 512, 3 * 512).unwrap();

    c.call("sr_scan", &[]).unwrap();
    c.call("sr_attach", &[]).unwrap();
    for u in [base, mid] {
        assert!(c.xapi.vdi(u).is_none(), "hidden {u} is not a VDI");
    }
    for (u, parent) in [(leaf, mid), (snap1, base), (snap2, mid)] {
        assert!(c.xapi.vdi(u).is_some(), "{u} introduced");
        assert_eq!(c.xapi.vdi_sm_config(u)["vhd-parent"], parent, "{u}");
        assert_eq!(
            c.xapi.vdi_field(u, "virtual_size").as_deref(),
            Some("8388608")
        );
    }
    assert!(c.xapi.vdi(&ours).is_some());
    assert_eq!(c.xapi.state().vdis.len(), 4, "sm's three VDIs and ours");

    // Each VDI through our datapath (its tapdisk's export) reads as the chain holds it.
    let expect = |u: &str| {
        let mut v = vec![0x11u8; 8 << 20];
        if u != snap1 {
            v[2 << 20..3 << 20].fill(0x22);
        }
        if u == leaf {
            v[(4 << 20) + 512..(4 << 20) + 2048].fill(0x33);
        }
        v
    };
    for u in [leaf, snap1, snap2] {
        let info = c.vdi_call("vdi_attach", &["false"], u).unwrap();
        c.vdi_call("vdi_activate", &["false"], u).unwrap();
        let uri = info.as_struct().unwrap()["params_nbd"].to_text();
        let (socket, name) = nbd::parse_uri(&uri).unwrap();
        let real = std::fs::canonicalize(socket).unwrap();
        let served = NbdReader::connect(&real, name).unwrap().read_all().unwrap();
        let chain = vhd::Chain::open(Path::new(&f(u)), false).unwrap();
        let mut ours = vec![0u8; 8 << 20];
        chain.read_at(&mut ours, 0).unwrap();
        assert!(served == expect(u), "{u}: tapdisk serves the chain's data");
        assert!(
            ours == served,
            "{u}: the vhd crate reads what tapdisk serves"
        );
        c.vdi_call("vdi_deactivate", &[], u).unwrap();
        c.vdi_call("vdi_detach", &[], u).unwrap();
    }
    // A snapshot of a chain's leaf would be read without its parents by qemu-img: refused.
    let (code, text) = c.vdi_call("vdi_snapshot", &[], leaf).unwrap_err();
    assert_eq!(code, 82, "{text}");
    assert!(Path::new(&f(base)).exists() && Path::new(&f(mid)).exists());
}

#[test]
#[ignore = "lab"]
fn lab_sm_content_broken_chain_or_visible_parent_in_a_file_sr_is_refused_and_nothing_is_forgotten()
{
    if std::env::var_os("LAB_JSON").is_none() {
        return;
    }
    let (d, dir, c, ours) = file_sr_with_one_vdi();
    c.call("sr_scan", &[]).unwrap();

    // A parent that is not hidden (writing it would change its child), and a child whose
    // parent is outside the SR.
    let base = "0d0d0d0d-0000-4000-8000-000000000001";
    let leaf = "0d0d0d0d-0000-4000-8000-000000000003";
    let orphan = "0d0d0d0d-0000-4000-8000-000000000006";
    let f = |u: &str| dir.join(format!("{u}.vhd")).display().to_string();
    let elsewhere = d.path().join("elsewhere.vhd").display().to_string();
    run(&["vhd-util", "create", "-n", &f(base), "-s", "8"]);
    run(&["vhd-util", "snapshot", "-n", &f(leaf), "-p", &f(base)]);
    run(&["vhd-util", "create", "-n", &elsewhere, "-s", "8"]);
    run(&["vhd-util", "snapshot", "-n", &f(orphan), "-p", &elsewhere]);
    let before = c.xapi.calls().len();

    for verb in ["sr_scan", "sr_attach"] {
        let (code, text) = c.call(verb, &[]).unwrap_err();
        assert_eq!(code, 47, "{verb}: {text}");
        assert!(
            text.contains(&format!("{base}.vhd (VHD with children that is not hidden")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "{orphan}.vhd (differencing VHD whose parent chain"
            )),
            "{text}"
        );
    }
    let writes: Vec<String> = c.xapi.calls()[before..]
        .iter()
        .filter(|x| x.starts_with("VDI.db_") || x.starts_with("VDI.set_"))
        .cloned()
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert!(c.xapi.vdi(&ours).is_some());
    for u in [base, leaf, orphan] {
        assert!(c.xapi.vdi(u).is_none(), "{u} not introduced");
    }
}
