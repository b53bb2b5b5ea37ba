//! The file SR's datapath through a real tapdisk in the storage lab (run-suite shares a blktap
//! build, so tap-ctl is found and every VDI is served by a tapdisk, as on an XCP-ng host):
//! `params_nbd` satisfies tapback's rule, data written through the export is in the image,
//! a snapshot of the active VDI pauses and resumes its tapdisk, detach ends it. Run with
//! `xapi-tests/lab/run-suite lab file_tapdisk`.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::disallowed_methods,
    reason = "a test harness drives the host as an admin would; the rule is for driver code"
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drivers::testing::{Calls, uuid_of};
use hostio::tapdisk::{self, ImageType};
use sm_core::host::{Cmd, Runner, SystemRunner};
use sm_core::testing::nbd::NbdReader;

const SR: &str = "5d5d5d5d-1111-4222-8333-000000000001";
const MIB: u64 = 1 << 20;

/// `nbd:unix:<path>:exportname=<name>` split.
fn split_uri(uri: &str) -> (PathBuf, String) {
    let rest = uri.strip_prefix("nbd:unix:").unwrap();
    let (p, n) = rest.rsplit_once(":exportname=").unwrap();
    (PathBuf::from(p), n.to_string())
}

/// tapback's test (`physical_device_path_changed`): the realpath must read as
/// `/run/blktap-control/nbd<pid>.<minor>`.
fn tapback_accepts(link: &std::path::Path) -> Option<(u32, u32)> {
    let real = std::fs::canonicalize(link).ok()?;
    let rest = real.to_str()?.strip_prefix("/run/blktap-control/nbd")?;
    let (pid, minor) = rest.split_once('.')?;
    Some((pid.parse().ok()?, minor.parse().ok()?))
}

fn qemu_io(link: &std::path::Path, name: &str, cmd: &str) {
    let uri = format!("nbd+unix:///{name}?socket={}", link.display());
    SystemRunner::new()
        .run(
            &Cmd::new("qemu-io")
                .args(["-f", "raw", "-c", cmd, &uri])
                .timeout(Duration::from_secs(60)),
        )
        .unwrap_or_else(|e| panic!("qemu-io {cmd}: {e}"));
}

#[test]
#[ignore = "lab"]
fn lab_file_tapdisk_datapath_passes_tapback_s_rule_and_data_round_trips() {
    if std::env::var_os("LAB_JSON").is_none() {
        return;
    }
    let r = SystemRunner::new();
    tapdisk::list(&r).expect("the lab shares blktap: tap-ctl must run");
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
    let v = uuid_of(&c.call("vdi_create", &[&(8 * MIB).to_string()]).unwrap());
    let image = dir.join(format!("{v}.vhd"));

    let t0 = Instant::now();
    let info = c.vdi_call("vdi_attach", &["true"], &v).unwrap();
    c.vdi_call("vdi_activate", &["true"], &v).unwrap();
    let plug = t0.elapsed();
    let uri = info.as_struct().unwrap()["params_nbd"].to_text();
    let (link, name) = split_uri(&uri);
    assert_eq!(name, v);
    assert!(
        link.ends_with(format!("run/blktap-control/nbd/{SR}/{v}")),
        "sm's link layout: {}",
        link.display()
    );
    let (pid, minor) =
        tapback_accepts(&link).unwrap_or_else(|| panic!("tapback would refuse {}", link.display()));
    // On a host the link is 97 bytes, within sun_path; under this test's host root it is
    // longer, so clients here connect to what it resolves to (as tapback does).
    assert!(format!("/run/blktap-control/nbd/{SR}/{v}").len() < 108);
    let link = std::fs::canonicalize(&link).unwrap();
    let t = tapdisk::find(&r, ImageType::Vhd, &image)
        .unwrap()
        .expect("a tapdisk serves the image");
    assert_eq!((t.pid, t.minor), (pid, minor));

    qemu_io(&link, &v, &format!("write -P 0x6b 0 {}", 3 * MIB));
    qemu_io(&link, &v, &format!("write -P 0x6c {} 4096", 6 * MIB + 512));
    let served = NbdReader::connect(&link, &v).unwrap().read_all().unwrap();
    assert_eq!(served.len() as u64, 8 * MIB);
    assert_eq!(served[0], 0x6b);
    assert_eq!(served[(6 * MIB + 512) as usize], 0x6c);

    // A snapshot of the active VDI: the tapdisk is paused around the copy and serves on.
    let snap = uuid_of(&c.vdi_call("vdi_snapshot", &[], &v).unwrap());
    qemu_io(&link, &v, "write -P 0x6d 0 512");
    let snap_img = dir.join(format!("{snap}.vhd"));
    let mut copy = vec![0u8; served.len()];
    vhd::Chain::open(&snap_img, false)
        .unwrap()
        .read_at(&mut copy, 0)
        .unwrap();
    assert!(copy == served, "the snapshot holds the data as of the call");

    c.vdi_call("vdi_deactivate", &[], &v).unwrap();
    c.vdi_call("vdi_detach", &[], &v).unwrap();
    assert_eq!(
        tapdisk::find(&r, ImageType::Vhd, &image).unwrap(),
        None,
        "tapdisk ended"
    );
    let published = split_uri(&uri).0;
    assert!(
        std::fs::symlink_metadata(&published).is_err(),
        "link removed"
    );
    let mut ours = vec![0u8; served.len()];
    vhd::Chain::open(&image, false)
        .unwrap()
        .read_at(&mut ours, 0)
        .unwrap();
    assert_eq!(ours[0], 0x6d);
    assert!(
        ours[512..] == served[512..],
        "what went through tapdisk is in the image"
    );

    c.call("sr_detach", &[]).unwrap();
    // The figure, for the closing note: in the lab's log directory.
    if let Some(lab) = xapi_tests::lab::Lab::from_env() {
        let _ = std::fs::write(
            lab.desc().log_dir.join("file-tapdisk.json"),
            format!("{{\"attach_activate_ms\": {}}}\n", plug.as_millis()),
        );
    }
}
