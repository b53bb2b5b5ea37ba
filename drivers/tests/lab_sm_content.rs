//! sm-made content in front of our types, made by the real tools in the storage lab
//! (`vhd-util` from the blktap build run-suite shares): a file SR directory holding an sm
//! snapshot chain is refused and forgets nothing. The LVHD volume group case is in
//! `lab_lvm.rs`. Run with `xapi-tests/lab/run-suite lab sm_content`.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::disallowed_methods,
    reason = "a test harness makes sm's content with sm's tools; the rule is for driver code"
)]

use std::sync::Arc;

use drivers::testing::{Calls, uuid_of};
use sm_core::host::SystemRunner;
use sm_core::testing::run_ok as run;

const SR: &str = "5c5c5c5c-1111-4222-8333-000000000001";

#[test]
#[ignore = "lab"]
fn lab_sm_content_vhd_util_chain_in_a_file_sr_is_refused_and_nothing_is_forgotten() {
    if std::env::var_os("LAB_JSON").is_none() {
        return;
    }
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
    c.call("sr_scan", &[]).unwrap();

    // sm's layout: base, snapshot, leaf; the base and the snapshot's parent hidden.
    let base = "0d0d0d0d-0000-4000-8000-000000000001";
    let mid = "0d0d0d0d-0000-4000-8000-000000000002";
    let leaf = "0d0d0d0d-0000-4000-8000-000000000003";
    let f = |u: &str| dir.join(format!("{u}.vhd")).display().to_string();
    run(&["vhd-util", "create", "-n", &f(base), "-s", "8"]);
    run(&["vhd-util", "snapshot", "-n", &f(mid), "-p", &f(base)]);
    run(&["vhd-util", "set", "-n", &f(base), "-f", "hidden", "-v", "1"]);
    run(&["vhd-util", "snapshot", "-n", &f(leaf), "-p", &f(mid)]);
    run(&["vhd-util", "set", "-n", &f(mid), "-f", "hidden", "-v", "1"]);
    let before = c.xapi.calls().len();

    for verb in ["sr_scan", "sr_attach"] {
        let (code, text) = c.call(verb, &[]).unwrap_err();
        assert_eq!(code, 47, "{verb}: {text}");
        assert!(
            text.contains(&format!("{leaf}.vhd (differencing VHD")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{mid}.vhd (differencing VHD")),
            "{text}"
        );
        assert!(text.contains(&format!("{base}.vhd (hidden VHD")), "{text}");
    }
    let writes: Vec<String> = c.xapi.calls()[before..]
        .iter()
        .filter(|x| x.starts_with("VDI.db_") || x.starts_with("VDI.set_"))
        .cloned()
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert!(c.xapi.vdi(&ours).is_some());
    for u in [base, mid, leaf] {
        assert!(c.xapi.vdi(u).is_none(), "{u} not introduced");
    }
}
