//! [`hostio::tapdisk`] against the real tap-ctl and tapdisk in the storage lab (run-suite shares a
//! blktap build with the guests): create on a VHD made by qemu-img, found again by `list`,
//! written through its NBD socket and read back both over NBD and through the vhd crate,
//! read-only refuses writes, pause/unpause, destroy ends it. Run with
//! `xapi-tests/lab/run-suite lab tapdisk`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use hostio::tapdisk::{self, ImageType};
use sm_core::host::{Cmd, Runner, SystemRunner};
use sm_core::testing::nbd::NbdReader;

const MIB: u64 = 1 << 20;

fn qemu_io(uri: &str, cmd: &str) -> Result<String, sm_core::host::RunError> {
    SystemRunner::new()
        .run(
            &Cmd::new("qemu-io")
                .args(["-f", "raw", "-c", cmd, uri])
                .timeout(Duration::from_secs(60)),
        )
        .map(|o| o.stdout_str())
}

#[test]
#[ignore = "lab"]
fn lab_tapdisk_serves_a_vhd_over_its_nbd_socket_and_goes_away() {
    if std::env::var_os("LAB_JSON").is_none() {
        return;
    }
    let r = SystemRunner::new();
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    let img = d.path().join("a.vhd");
    hostio::vhd::qemu_img::create(&r, &img, 8 * MIB).unwrap();

    let t = tapdisk::create(&r, ImageType::Vhd, &img, false, true).unwrap();
    assert_eq!(
        tapdisk::find(&r, ImageType::Vhd, &img).unwrap(),
        Some(t.clone())
    );
    assert!(t.nbd_socket().exists(), "{}", t.nbd_socket().display());
    let uri = format!("nbd+unix:///?socket={}", t.nbd_socket().display());
    // One whole 2 MiB block and a sector in the middle of another.
    qemu_io(&uri, &format!("write -P 0x5a 0 {}", 2 * MIB)).unwrap();
    qemu_io(&uri, &format!("write -P 0xa5 {} 512", 5 * MIB + 512)).unwrap();
    let served = NbdReader::connect(&t.nbd_socket(), "")
        .unwrap()
        .read_all()
        .unwrap();
    assert_eq!(served.len() as u64, 8 * MIB);
    assert!(served[..(2 * MIB) as usize].iter().all(|&b| b == 0x5a));
    assert_eq!(served[(5 * MIB + 512) as usize], 0xa5);
    assert_eq!(served[(5 * MIB) as usize], 0);

    tapdisk::pause(&r, &t).unwrap();
    tapdisk::unpause(&r, &t).unwrap();
    tapdisk::destroy(&r, &t).unwrap();
    assert_eq!(tapdisk::find(&r, ImageType::Vhd, &img).unwrap(), None);
    assert!(!t.nbd_socket().exists());
    tapdisk::destroy(&r, &t).unwrap();

    // What tapdisk wrote is a VHD the vhd crate reads the same.
    let chain = vhd::Chain::open(&img, false).unwrap();
    let mut ours = vec![0u8; served.len()];
    chain.read_at(&mut ours, 0).unwrap();
    assert!(ours == served, "the vhd crate reads what tapdisk served");

    let ro = tapdisk::create(&r, ImageType::Vhd, &img, true, true).unwrap();
    let uri = format!("nbd+unix:///?socket={}", ro.nbd_socket().display());
    assert!(
        qemu_io(&uri, "write -P 0x11 0 512").is_err(),
        "read-only tapdisk took a write"
    );
    tapdisk::destroy(&r, &ro).unwrap();
}
