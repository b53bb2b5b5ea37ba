//! The vhd crate against the real thing, in the storage lab (run-suite shares a build of
//! xapi-project/blktap with the guests): chains made by `vhd-util` and written through tapdisk
//! read back through [`vhd::Chain`] exactly as tapdisk serves them, and the footer flags agree
//! with `vhd-util query`. It lives here, beside [`hostio::tapdisk`], because
//! vhd cannot depend on hostio. Run with `xapi-tests/lab/run-suite lab blktap`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use hostio::testing::{Served, write_through_tapdisk};
use sm_core::testing::nbd::NbdReader;
use sm_core::testing::run_ok as run;
use vhd::{Chain, DiskType, Vhd};

const MIB: u64 = 1 << 20;

/// The whole disk as tapdisk serves `image`, read over its NBD socket.
fn read_through_tapdisk(image: &Path) -> Vec<u8> {
    let t = Served::start(image).unwrap();
    let mut r = NbdReader::connect(&t.0.nbd_socket(), "").unwrap();
    r.read_all().unwrap()
}

fn hidden_per_vhd_util(image: &Path) -> bool {
    let text = run(&[
        "vhd-util",
        "query",
        "-n",
        &image.display().to_string(),
        "-f",
    ]);
    text.trim() == "hidden: 1"
}

#[test]
#[ignore = "lab"]
fn lab_blktap_vhd_util_chain_reads_as_tapdisk_serves_it() {
    if std::env::var_os("LAB_JSON").is_none() {
        return;
    }
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    let p = |n: &str| d.path().join(n);
    let s = |n: &str| p(n).display().to_string();
    // Base 16 MiB with data, then two snapshots, each written through tapdisk: whole blocks,
    // a partial block over a block boundary, single sectors (bitmaps).
    run(&["vhd-util", "create", "-n", &s("base.vhd"), "-s", "16"]);
    write_through_tapdisk(&p("base.vhd"), 0x11, 0, 3 * MIB).unwrap();
    run(&[
        "vhd-util",
        "snapshot",
        "-n",
        &s("c1.vhd"),
        "-p",
        &s("base.vhd"),
    ]);
    run(&[
        "vhd-util",
        "set",
        "-n",
        &s("base.vhd"),
        "-f",
        "hidden",
        "-v",
        "1",
    ]);
    write_through_tapdisk(&p("c1.vhd"), 0x22, MIB + MIB / 2, MIB).unwrap();
    run(&[
        "vhd-util",
        "snapshot",
        "-n",
        &s("c2.vhd"),
        "-p",
        &s("c1.vhd"),
    ]);
    run(&[
        "vhd-util",
        "set",
        "-n",
        &s("c1.vhd"),
        "-f",
        "hidden",
        "-v",
        "1",
    ]);
    write_through_tapdisk(&p("c2.vhd"), 0x33, 2 * MIB + 512, 4096).unwrap();
    write_through_tapdisk(&p("c2.vhd"), 0x44, 10 * MIB, 512).unwrap();

    let served = read_through_tapdisk(&p("c2.vhd"));
    assert_eq!(served.len() as u64, 16 * MIB);

    let chain = Chain::open(&p("c2.vhd"), false).unwrap();
    assert_eq!(chain.layers().len(), 3);
    assert_eq!(chain.virtual_size(), 16 * MIB);
    let names = |v: Vec<PathBuf>| -> Vec<String> {
        v.iter()
            .map(|x| x.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(names(chain.hidden()), ["c1.vhd", "base.vhd"]);
    let mut ours = vec![0u8; served.len()];
    chain.read_at(&mut ours, 0).unwrap();
    let first_diff = ours.iter().zip(&served).position(|(a, b)| a != b);
    assert_eq!(
        first_diff, None,
        "our read of the chain differs from tapdisk's"
    );
    // The data really is spread over the three layers.
    assert_eq!(served[0], 0x11);
    assert_eq!(served[(MIB + MIB / 2) as usize], 0x22);
    assert_eq!(served[(2 * MIB + 512) as usize], 0x33);
    assert_eq!(served[(2 * MIB) as usize], 0x22);
    assert_eq!(served[(2 * MIB + MIB / 2) as usize], 0x11);
    assert_eq!(served[(3 * MIB) as usize], 0);
    assert_eq!(served[(10 * MIB) as usize], 0x44);

    for (name, kind, hidden) in [
        ("base.vhd", DiskType::Dynamic, true),
        ("c1.vhd", DiskType::Differencing, true),
        ("c2.vhd", DiskType::Differencing, false),
    ] {
        let v = Vhd::open(&p(name), false).unwrap();
        assert_eq!(v.disk_type(), kind, "{name}");
        assert_eq!(v.is_hidden(), hidden, "{name}");
        assert_eq!(hidden_per_vhd_util(&p(name)), hidden, "vhd-util on {name}");
    }
    let parent = run(&["vhd-util", "query", "-n", &s("c2.vhd"), "-p"]);
    assert_eq!(names(vec![PathBuf::from(parent.trim())]), ["c1.vhd"]);
}
