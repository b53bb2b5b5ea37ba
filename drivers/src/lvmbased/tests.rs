//! The LVM-based SR against a fake lvm2 (scripted reports and failures) and the fake XenAPI
//! server: the command sequences, the records written, every fault path and the undo of
//! half-done changes. The real thing runs in the lab (`drivers/tests/lab_lvm.rs`).

use std::sync::Arc;

use sm_core::testing::FakeRunner;

use crate::testing::{Calls, fault_code, uuid_of};

const SR: &str = "0a0a0a0a-1111-4222-8333-444455556666";
const VG: &str = "VG_XenStorage-0a0a0a0a-1111-4222-8333-444455556666";
const MIB: u64 = 1 << 20;
const EXT: u64 = 4 * MIB;
const A: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const B: &str = "aaaaaaaa-0000-4000-8000-000000000002";

/// A fullreport of the SR's VG: 100 extents, `free` of them free, and `lvs` as
/// `(name, bytes, attr, origin)`.
fn report(free: u64, lvs: &[(&str, u64, &str, &str)]) -> String {
    let lvs: Vec<String> = lvs
        .iter()
        .map(|(n, size, attr, origin)| {
            format!(
                r#"{{"lv_name":"{n}", "lv_uuid":"u-{n}", "lv_size":"{size}", "lv_attr":"{attr}", "origin":"{origin}", "snap_percent":"", "lv_tags":""}}"#
            )
        })
        .collect();
    format!(
        r#"{{"report": [{{"vg": [{{"vg_name":"{VG}", "vg_uuid":"v", "vg_attr":"wz--n-", "vg_size":"{}", "vg_free":"{}", "vg_extent_size":"{EXT}", "vg_extent_count":"100", "vg_free_count":"{free}", "vg_missing_pv_count":"0"}}], "pv": [{{"pv_name":"/dev/mapper/x", "pv_uuid":"p", "vg_name":"{VG}", "pv_size":"{}", "dev_size":"{}", "pv_attr":"a--", "pv_major":"253", "pv_minor":"9"}}], "lv": [{}], "pvseg": [], "seg": []}}]}}"#,
        100 * EXT,
        free * EXT,
        100 * EXT,
        101 * EXT,
        lvs.join(", ")
    )
}

fn lv(loc: &str) -> String {
    format!("LV-{loc}")
}

/// A host without blktap (the LV's device node is the datapath).
fn env() -> (Arc<FakeRunner>, Calls) {
    let (fake, calls) = env_with_tapdisk();
    fake.without("tap-ctl");
    (fake, calls)
}

/// A host with blktap's tap-ctl.
fn env_with_tapdisk() -> (Arc<FakeRunner>, Calls) {
    let fake = Arc::new(FakeRunner::new());
    let calls = Calls::new(
        &crate::lvm::DRIVER,
        fake.clone(),
        SR,
        &[("device", "/dev/mapper/x")],
    )
    .unwrap();
    (fake, calls)
}

/// Scripts the next `lvm fullreport` to print `json`.
fn on_report(fake: &FakeRunner, json: &str) {
    fake.on(&["lvm", "fullreport"], 0, json, "");
}

/// The lvm2 verbs run, in order (`fullreport`, `lvcreate`, ...).
fn verbs(fake: &FakeRunner) -> Vec<String> {
    fake.calls()
        .iter()
        .filter(|c| c[0] == "lvm")
        .map(|c| c[1].clone())
        .collect()
}

fn find(fake: &FakeRunner, verb: &str) -> Vec<Vec<String>> {
    fake.calls()
        .into_iter()
        .filter(|c| c.len() > 1 && c[0] == "lvm" && c[1] == verb)
        .collect()
}

/// Introduces a record for `loc` in the fake XenAPI (as vdi_create would have).
fn record(calls: &Calls, loc: &str, size: u64) {
    let x = sm_core::xenapi::XenApi::new(
        calls.host.xapi_endpoint.clone(),
        sm_core::secret::Secret::new("s"),
        None,
    );
    let mut r = sm_core::xenapi::VdiIntroduce::new(loc, crate::testing::SR_REF, loc);
    r.virtual_size = size;
    x.vdi_db_introduce(&r).unwrap();
}

#[test]
fn vdi_create_rounds_to_extents_leaves_the_lv_inactive_and_records_the_real_size() {
    let (fake, calls) = env();
    on_report(&fake, &report(50, &[]));
    let v = calls
        .call_with(
            "vdi_create",
            &[&(10 * MIB + 1).to_string(), "disk", "desc"],
            &[("vdi_uuid", A)],
        )
        .unwrap();
    assert_eq!(uuid_of(&v), A);
    assert_eq!(verbs(&fake), ["fullreport", "lvcreate", "lvchange"]);
    let create = &find(&fake, "lvcreate")[0];
    assert!(
        create
            .windows(2)
            .any(|w| w == ["-L", &format!("{}b", 3 * EXT)]),
        "{create:?}"
    );
    assert!(
        create.windows(2).any(|w| w == ["-Z", "y"]),
        "zeroed: {create:?}"
    );
    assert_eq!(
        find(&fake, "lvchange")[0].last().unwrap(),
        &format!("{VG}/{}", lv(A))
    );
    assert!(find(&fake, "lvchange")[0].contains(&"-an".to_string()));
    assert_eq!(
        calls.xapi.vdi_field(A, "virtual_size").as_deref(),
        Some((3 * EXT).to_string().as_str())
    );
    assert_eq!(calls.xapi.vdi_sm_config(A)["vdi_type"], "aio");
    assert_eq!(calls.xapi.vdi_field(A, "location").as_deref(), Some(A));
    // Every command saw only the SR's device.
    assert!(
        fake.calls()
            .iter()
            .all(|c| c.iter().any(|a| a.contains("a|^/dev/mapper/x$|")))
    );
}

#[test]
fn vdi_create_refuses_bad_sizes_and_a_full_vg_before_touching_lvm_metadata() {
    let (fake, calls) = env();
    on_report(&fake, &report(2, &[]));
    on_report(&fake, &report(2, &[]));
    on_report(&fake, &report(2, &[]));
    assert_eq!(fault_code(calls.call("vdi_create", &["0"])), 79);
    assert_eq!(
        fault_code(calls.call("vdi_create", &[&(8 * MIB + 1).to_string()])),
        44
    );
    assert_eq!(
        fault_code(calls.call("vdi_create", &[&u64::MAX.to_string()])),
        79
    );
    assert_eq!(fault_code(calls.call("vdi_create", &["-5"])), 79);
    assert!(find(&fake, "lvcreate").is_empty());
    assert!(calls.xapi.state().vdis.is_empty());
}

#[test]
fn lvm2_running_out_of_space_is_44_and_a_failed_introduce_removes_the_lv() {
    let (fake, calls) = env();
    on_report(&fake, &report(50, &[]));
    fake.on(
        &["lvm", "lvcreate"],
        5,
        "",
        &format!("  Volume group \"{VG}\" has insufficient free space (3 extents): 4 required."),
    );
    let (c, s) = calls.call("vdi_create", &["4194304"]).unwrap_err();
    assert_eq!(c, 44, "{s}");
    assert!(s.contains("insufficient free space (3 extents)"), "{s}");

    record(&calls, A, EXT);
    on_report(&fake, &report(50, &[]));
    assert_eq!(
        fault_code(calls.call_with("vdi_create", &["4194304"], &[("vdi_uuid", A)])),
        78
    );
    let removes = find(&fake, "lvremove");
    assert_eq!(removes.len(), 1);
    assert_eq!(removes[0].last().unwrap(), &format!("{VG}/{}", lv(A)));
}

#[test]
fn only_the_master_changes_the_vg() {
    let (fake, mut calls) = env();
    calls.master = false;
    for (cmd, args) in [
        ("vdi_create", vec!["4194304"]),
        ("vdi_resize", vec!["4194304"]),
        ("vdi_snapshot", vec![]),
        ("vdi_clone", vec![]),
        ("vdi_delete", vec![]),
        ("sr_delete", vec![]),
    ] {
        let r = if cmd.starts_with("vdi") && cmd != "vdi_create" {
            calls.vdi_call(cmd, &args, A)
        } else {
            calls.call(cmd, &args)
        };
        assert_eq!(fault_code(r), 58, "{cmd}");
    }
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
}

#[test]
fn attach_returns_the_lv_node_and_activate_records_then_activates() {
    let (fake, calls) = env();
    record(&calls, A, EXT);
    on_report(&fake, &report(50, &[(&lv(A), EXT, "-wi-------", "")]));
    let info = calls.vdi_call("vdi_attach", &["true"], A).unwrap();
    let m = info.as_struct().unwrap();
    assert_eq!(m["params"].to_text(), format!("/dev/{VG}/{}", lv(A)));
    assert_eq!(m["params_nbd"].to_text(), "");
    calls.vdi_call("vdi_activate", &["true"], A).unwrap();
    assert_eq!(
        find(&fake, "lvchange").last().unwrap()[2..]
            .to_vec()
            .last()
            .unwrap(),
        &format!("{VG}/{}", lv(A))
    );
    assert!(find(&fake, "lvchange")[0].contains(&"-ay".to_string()));
    assert_eq!(
        calls
            .xapi
            .vdi_sm_config(A)
            .get("host_OpaqueRef:host-a")
            .map(String::as_str),
        Some("RW")
    );
    // The VDI is gone from the VG: attach is 144; activation undoes its record.
    on_report(&fake, &report(50, &[]));
    assert_eq!(fault_code(calls.vdi_call("vdi_attach", &["true"], B)), 144);
    record(&calls, B, EXT);
    fake.on(
        &["lvm", "lvchange"],
        5,
        "",
        &format!("  Failed to find logical volume \"{VG}/{}\"", lv(B)),
    );
    assert_eq!(
        fault_code(calls.vdi_call("vdi_activate", &["true"], B)),
        144
    );
    assert!(
        !calls
            .xapi
            .vdi_sm_config(B)
            .contains_key("host_OpaqueRef:host-a")
    );
}

#[test]
fn with_blktap_activate_serves_the_lv_by_tapdisk_and_deactivate_ends_it_first() {
    let (fake, calls) = env_with_tapdisk();
    record(&calls, A, EXT);
    let node = format!("/dev/{VG}/{}", lv(A));
    on_report(&fake, &report(50, &[(&lv(A), EXT, "-wi-------", "")]));
    fake.on(&["tap-ctl", "list"], 0, "", "");
    let info = calls.vdi_call("vdi_attach", &["true"], A).unwrap();
    let m = info.as_struct().unwrap();
    assert!(!m.contains_key("params"), "{m:?}");
    assert!(
        m["params_nbd"]
            .to_text()
            .ends_with(&format!("/run/blktap-control/nbd/{SR}/{A}:exportname={A}")),
        "{m:?}"
    );
    let listed = format!("pid=41 minor=3 state=0 args=aio:{node}\n");
    fake.on(&["tap-ctl", "list"], 0, "", "");
    fake.on(&["tap-ctl", "list"], 0, &listed, "");
    calls.vdi_call("vdi_activate", &["false"], A).unwrap();
    let tap: Vec<Vec<String>> = fake
        .calls()
        .into_iter()
        .filter(|c| c[0] == "tap-ctl" || (c[0] == "lvm" && c[1] == "lvchange"))
        .collect();
    let lvchange = tap.iter().position(|c| c[0] == "lvm").unwrap();
    let create = tap.iter().position(|c| c[1] == "create").unwrap();
    assert!(
        lvchange < create,
        "the LV is active before tapdisk opens it: {tap:?}"
    );
    assert_eq!(
        tap[create][..4],
        ["tap-ctl", "create", "-a", &format!("aio:{node}")]
    );
    assert!(
        tap[create].contains(&"-R".to_string()),
        "read-only: {:?}",
        tap[create]
    );
    let link = calls
        .host
        .paths
        .host("/run/blktap-control/nbd")
        .join(SR)
        .join(A);
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        std::path::Path::new("/run/blktap-control/nbd41.3")
    );
    // Read-only open: a writable activation on this host is refused before anything changes.
    fake.on(&["tap-ctl", "list"], 0, &listed, "");
    let before = fake.calls().len();
    assert_eq!(fault_code(calls.vdi_call("vdi_activate", &["true"], A)), 24);
    assert_eq!(
        fake.calls().len(),
        before + 1,
        "{:?}",
        &fake.calls()[before..]
    );
    fake.on(&["tap-ctl", "list"], 0, &listed, "");
    let before = fake.calls().len();
    calls.vdi_call("vdi_deactivate", &[], A).unwrap();
    let after: Vec<String> = fake.calls()[before..]
        .iter()
        .map(|c| c[..2].join(" "))
        .collect();
    assert_eq!(after, ["tap-ctl list", "tap-ctl destroy", "lvm lvchange"]);
    assert!(
        std::fs::symlink_metadata(&link).is_err(),
        "the link is gone"
    );
    assert!(
        !calls
            .xapi
            .vdi_sm_config(A)
            .contains_key("host_OpaqueRef:host-a")
    );
}

#[test]
fn with_blktap_a_tapdisk_that_fails_to_start_leaves_the_lv_inactive_and_no_record() {
    let (fake, calls) = env_with_tapdisk();
    record(&calls, A, EXT);
    fake.on(&["tap-ctl", "list"], 0, "", "");
    fake.on(&["tap-ctl", "create"], 1, "", "tap-ctl: open failed: -5");
    assert_eq!(fault_code(calls.vdi_call("vdi_activate", &["true"], A)), 46);
    let lvchange = find(&fake, "lvchange");
    assert_eq!(lvchange.len(), 2, "{lvchange:?}");
    assert!(lvchange[0].contains(&"-ay".to_string()) && lvchange[1].contains(&"-an".to_string()));
    assert!(
        !calls
            .xapi
            .vdi_sm_config(A)
            .contains_key("host_OpaqueRef:host-a")
    );
}

#[test]
fn another_host_using_the_vdi_read_write_refuses_activation_without_touching_the_lv() {
    let (fake, calls) = env();
    record(&calls, A, EXT);
    calls
        .xapi
        .set_vdi_sm_config(A, "host_OpaqueRef:host-b", "RW");
    assert_eq!(
        fault_code(calls.vdi_call("vdi_activate", &["false"], A)),
        24
    );
    assert!(find(&fake, "lvchange").is_empty());
}

#[test]
fn deactivating_an_open_lv_is_24_and_keeps_the_record() {
    let (fake, calls) = env();
    record(&calls, A, EXT);
    calls.vdi_call("vdi_activate", &["true"], A).unwrap();
    fake.on(
        &["lvm", "lvchange"],
        5,
        "",
        &format!("  Logical volume {VG}/{} in use.", lv(A)),
    );
    assert_eq!(fault_code(calls.vdi_call("vdi_deactivate", &[], A)), 24);
    assert!(
        calls
            .xapi
            .vdi_sm_config(A)
            .contains_key("host_OpaqueRef:host-a")
    );
    calls.vdi_call("vdi_deactivate", &[], A).unwrap();
    assert!(
        !calls
            .xapi
            .vdi_sm_config(A)
            .contains_key("host_OpaqueRef:host-a")
    );
}

#[test]
fn delete_refuses_an_open_lv_and_is_idempotent() {
    let (fake, calls) = env();
    record(&calls, A, EXT);
    on_report(&fake, &report(50, &[(&lv(A), EXT, "-wi-ao----", "")]));
    assert_eq!(fault_code(calls.vdi_call("vdi_delete", &[], A)), 24);
    assert!(find(&fake, "lvremove").is_empty());
    on_report(&fake, &report(50, &[(&lv(A), EXT, "-wi-a-----", "")]));
    calls.vdi_call("vdi_delete", &[], A).unwrap();
    assert_eq!(find(&fake, "lvremove").len(), 1);
    assert!(calls.xapi.vdi(A).is_none());
    on_report(&fake, &report(50, &[]));
    calls.vdi_call("vdi_delete", &[], A).unwrap();
    assert_eq!(find(&fake, "lvremove").len(), 1);
}

#[test]
fn resize_grows_in_whole_extents_and_refuses_shrinking_or_a_full_vg() {
    let (fake, calls) = env();
    record(&calls, A, 4 * EXT);
    let with_a = report(3, &[(&lv(A), 4 * EXT, "-wi-------", "")]);
    on_report(&fake, &with_a);
    assert_eq!(
        fault_code(calls.vdi_call("vdi_resize", &[&(EXT).to_string()], A)),
        79
    );
    on_report(&fake, &with_a);
    assert_eq!(
        fault_code(calls.vdi_call("vdi_resize", &[&(8 * EXT).to_string()], A)),
        44
    );
    on_report(&fake, &with_a);
    calls
        .vdi_call("vdi_resize", &[&(6 * EXT + 1).to_string()], A)
        .unwrap();
    let ext = find(&fake, "lvextend");
    assert_eq!(ext.len(), 1);
    assert!(
        ext[0]
            .windows(2)
            .any(|w| w == ["-L", &format!("{}b", 7 * EXT)])
    );
    assert_eq!(
        calls.xapi.vdi_field(A, "virtual_size").as_deref(),
        Some((7 * EXT).to_string().as_str())
    );
    // The same size again changes nothing.
    on_report(&fake, &with_a);
    calls
        .vdi_call("vdi_resize", &[&(4 * EXT).to_string()], A)
        .unwrap();
    assert_eq!(find(&fake, "lvextend").len(), 1);
}

#[test]
fn scan_is_one_report_and_writes_only_differences() {
    let (fake, calls) = env();
    record(&calls, A, 2 * EXT);
    record(&calls, "gone-0000", EXT);
    let snap = format!("xsm-cow-{B}");
    on_report(
        &fake,
        &report(
            40,
            &[
                (&lv(A), 2 * EXT, "-wi-------", ""),
                (&lv(B), 3 * EXT, "-wi-------", ""),
                ("LV-not-a-uuid", EXT, "-wi-------", ""),
                ("unrelated", EXT, "-wi-------", ""),
            ],
        ),
    );
    calls.call("sr_scan", &[]).unwrap();
    assert_eq!(verbs(&fake), ["fullreport"]);
    assert!(calls.xapi.vdi(B).is_some(), "introduced");
    assert!(calls.xapi.vdi("gone-0000").is_none(), "forgotten");
    let x = calls.xapi.calls();
    assert!(!x.contains(&"VDI.set_virtual_size".to_string()), "{x:?}");
    let st = calls.xapi.state();
    assert_eq!(st.sr["physical_size"], (100 * EXT).to_string());
    assert_eq!(st.sr["physical_utilisation"], (60 * EXT).to_string());
    assert_eq!(st.sr["virtual_allocation"], (5 * EXT).to_string());
    drop(st);
    // A temporary LV left by a crash is removed on the master before reconciling.
    on_report(
        &fake,
        &report(
            40,
            &[
                (&snap, EXT, "swi-a-s---", &lv(A)),
                (&lv(A), 2 * EXT, "owi-a-s---", ""),
            ],
        ),
    );
    on_report(&fake, &report(40, &[(&lv(A), 2 * EXT, "-wi-------", "")]));
    calls.call("sr_scan", &[]).unwrap();
    assert_eq!(
        find(&fake, "lvremove")[0].last().unwrap(),
        &format!("{VG}/{snap}")
    );
    assert!(calls.xapi.vdi(B).is_none());
}

#[test]
fn detach_refuses_open_lvs_and_deactivates_the_rest() {
    let (fake, calls) = env();
    on_report(&fake, &report(40, &[(&lv(A), EXT, "-wi-ao----", "")]));
    let (c, s) = calls.call("sr_detach", &[]).unwrap_err();
    assert_eq!(c, 16, "{s}");
    assert!(s.contains(&lv(A)), "{s}");
    on_report(&fake, &report(40, &[(&lv(A), EXT, "-wi-a-----", "")]));
    calls.call("sr_detach", &[]).unwrap();
    let vgchange = find(&fake, "vgchange");
    assert_eq!(vgchange.len(), 1);
    assert_eq!(vgchange[0][vgchange[0].len() - 2..], ["-an", VG]);
    // A VG that is gone detaches.
    fake.on(
        &["lvm", "fullreport"],
        5,
        "",
        &format!("  Volume group \"{VG}\" not found"),
    );
    calls.call("sr_detach", &[]).unwrap();
    // Attach needs the VG, complete.
    fake.on(
        &["lvm", "fullreport"],
        5,
        "",
        &format!("  Volume group \"{VG}\" not found"),
    );
    assert_eq!(fault_code(calls.call("sr_attach", &[])), 47);
    on_report(
        &fake,
        &report(40, &[]).replace(
            "\"vg_missing_pv_count\":\"0\"",
            "\"vg_missing_pv_count\":\"1\"",
        ),
    );
    assert_eq!(fault_code(calls.call("sr_attach", &[])), 47);
}

#[test]
fn delete_refuses_a_vg_with_vdis() {
    let (fake, calls) = env();
    on_report(&fake, &report(40, &[(&lv(A), EXT, "-wi-------", "")]));
    let (c, s) = calls.call("sr_delete", &[]).unwrap_err();
    assert_eq!(c, 39, "{s}");
    assert!(s.contains(A));
    assert!(find(&fake, "vgremove").is_empty());
}

#[test]
fn a_copy_first_removes_what_a_killed_copy_left() {
    let (fake, calls) = env();
    record(&calls, A, 2 * EXT);
    let (cow, copy) = (format!("xsm-cow-{B}"), format!("xsm-copy-{B}"));
    on_report(
        &fake,
        &report(
            40,
            &[
                (&lv(A), 2 * EXT, "owi-a-----", ""),
                (&copy, 2 * EXT, "-wi-a-----", ""),
                (&cow, 3 * EXT, "swi-a-s---", &lv(A)),
            ],
        ),
    );
    on_report(&fake, &report(50, &[(&lv(A), 2 * EXT, "-wi-------", "")]));
    on_report(&fake, &report(50, &[(&lv(A), 2 * EXT, "-wi-------", "")]));
    // The fake lvm makes no device nodes, so the copy itself then fails (fault 82).
    let _ = calls.vdi_call("vdi_snapshot", &[], A);
    let lvm: Vec<String> = fake
        .calls()
        .iter()
        .filter(|c| c[0] == "lvm")
        .map(|c| format!("{} {}", c[1], c.last().unwrap().rsplit('/').next().unwrap()))
        .collect();
    assert!(lvm[0].starts_with("fullreport"), "{lvm:?}");
    assert_eq!(
        lvm[1..3],
        [format!("lvremove {cow}"), format!("lvremove {copy}")],
        "the snapshot before its copy: {lvm:?}"
    );
    assert!(lvm[3].starts_with("fullreport"), "read again: {lvm:?}");
    assert!(lvm[4].starts_with("lvcreate"), "then the new copy: {lvm:?}");
}

/// `report` with `tags` on LV `lv`.
fn tagged(report: String, lv: &str, tags: &str) -> String {
    let at = report.find(&format!(r#""lv_name":"{lv}""#)).unwrap();
    let t = at + report[at..].find(r#""lv_tags":"""#).unwrap();
    format!(
        "{}\"lv_tags\":\"{tags}\"{}",
        &report[..t],
        &report[t + r#""lv_tags":"""#.len()..]
    )
}

/// A copy killed after it activated its inactive source left the source active: the clean-up
/// deactivates it again, unless xapi records the VDI active on this host.
#[test]
fn the_clean_up_deactivates_the_source_a_killed_copy_activated_unless_it_is_in_use() {
    for recorded in [false, true] {
        let (fake, calls) = env();
        record(&calls, A, 2 * EXT);
        if recorded {
            calls
                .xapi
                .set_vdi_sm_config(A, &format!("host_{}", calls.host_ref), "RW");
        }
        let copy = format!("xsm-copy-{B}");
        let left = tagged(
            report(
                40,
                &[
                    (&lv(A), 2 * EXT, "owi-a-----", ""),
                    (&copy, 2 * EXT, "-wi-a-----", ""),
                    (&format!("xsm-cow-{B}"), 3 * EXT, "swi-a-s---", &lv(A)),
                ],
            ),
            &copy,
            &format!("xsm-reactivated:{}", lv(A)),
        );
        on_report(&fake, &left);
        on_report(&fake, &report(50, &[(&lv(A), 2 * EXT, "-wi-a-----", "")]));
        calls.call("sr_scan", &[]).unwrap();
        let deactivated = fake
            .calls()
            .iter()
            .any(|c| c[0] == "lvm" && c[1] == "lvchange" && c.contains(&"-an".to_string()));
        assert_eq!(deactivated, !recorded, "recorded active here: {recorded}");
    }
}

/// lvm2's event activation left every LV active: sr_attach deactivates those neither open nor
/// recorded active on this host, and leaves the others.
#[test]
fn sr_attach_deactivates_what_autoactivation_left_and_nothing_in_use() {
    let (fake, calls) = env();
    let c = "3c0f7a52-7d1e-4a35-9d3b-2b8c1e0d4f6a";
    for v in [A, B, c] {
        record(&calls, v, 2 * EXT);
    }
    calls
        .xapi
        .set_vdi_sm_config(B, &format!("host_{}", calls.host_ref), "RW");
    on_report(
        &fake,
        &report(
            40,
            &[
                (&lv(A), 2 * EXT, "-wi-a-----", ""),
                (&lv(B), 2 * EXT, "-wi-a-----", ""),
                (&lv(c), 2 * EXT, "-wi-ao----", ""),
            ],
        ),
    );
    calls.call("sr_attach", &[]).unwrap();
    let off: Vec<String> = fake
        .calls()
        .iter()
        .filter(|c| c[0] == "lvm" && c[1] == "lvchange" && c.contains(&"-an".to_string()))
        .map(|c| c.last().unwrap().rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(off, vec![lv(A)], "only the idle, unrecorded LV");
}

#[test]
fn a_copy_tags_its_temporary_lv_with_the_source_it_activated() {
    let (fake, calls) = env();
    record(&calls, A, 2 * EXT);
    on_report(&fake, &report(50, &[(&lv(A), 2 * EXT, "-wi-------", "")]));
    on_report(&fake, &report(50, &[(&lv(A), 2 * EXT, "-wi-------", "")]));
    let _ = calls.vdi_call("vdi_snapshot", &[], A);
    let create = fake
        .calls()
        .into_iter()
        .find(|c| c[0] == "lvm" && c[1] == "lvcreate")
        .unwrap();
    assert!(
        create.contains(&format!("xsm-reactivated:{}", lv(A))),
        "{create:?}"
    );
}

#[test]
fn a_failed_copy_removes_what_it_made_and_restores_the_source() {
    let (fake, calls) = env();
    record(&calls, A, 2 * EXT);
    on_report(&fake, &report(50, &[(&lv(A), 2 * EXT, "-wi-------", "")]));
    // The fake lvm makes no device nodes, so the copy cannot open the snapshot; the report
    // after it (the snapshot's validity) shows no snapshot, and the copy's error is the fault.
    on_report(&fake, &report(50, &[(&lv(A), 2 * EXT, "-wi-------", "")]));
    let (c, s) = calls.vdi_call("vdi_snapshot", &[], A).unwrap_err();
    assert_eq!(c, 82, "{s}");
    let seq: Vec<String> = fake
        .calls()
        .iter()
        .filter(|c| c[0] == "lvm")
        .map(|c| {
            let last = c.last().unwrap().rsplit('/').next().unwrap().to_string();
            let flags: Vec<&str> = c
                .iter()
                .map(String::as_str)
                .filter(|a| matches!(*a, "-s" | "-ay" | "-an"))
                .collect();
            format!("{} {} {}", c[1], flags.join(""), last)
        })
        .collect();
    assert_eq!(seq.len(), 8, "{seq:?}");
    assert!(seq[0].starts_with("fullreport"));
    assert!(
        seq[1].starts_with("lvcreate -ay VG_XenStorage"),
        "copy LV: {seq:?}"
    );
    assert_eq!(
        seq[2],
        format!("lvchange -ay {}", lv(A)),
        "an inactive source is activated before its snapshot is taken: {seq:?}"
    );
    assert!(
        seq[3].starts_with("lvcreate -s") && seq[3].ends_with(&lv(A)),
        "{seq:?}"
    );
    assert!(seq[4].starts_with("fullreport"), "{seq:?}");
    assert!(seq[5].starts_with("lvremove  xsm-cow-"), "{seq:?}");
    assert!(seq[6].starts_with("lvremove  xsm-copy-"), "{seq:?}");
    assert_eq!(seq[7], format!("lvchange -an {}", lv(A)));
    assert_eq!(
        calls.xapi.state().vdis.len(),
        1,
        "no record for a failed copy"
    );
    let create = &find(&fake, "lvcreate")[0];
    assert!(
        create.windows(2).any(|w| w == ["-Z", "n"]),
        "the copy is not zeroed: {create:?}"
    );
    let snap = &find(&fake, "lvcreate")[1];
    // The whole copy-on-write area fits: 2 extents of origin need 3 with the tables.
    assert!(
        snap.windows(2)
            .any(|w| w == ["-L", &format!("{}b", 3 * EXT)]),
        "{snap:?}"
    );
}

#[test]
fn a_copy_without_room_for_it_is_44() {
    let (fake, calls) = env();
    record(&calls, A, 4 * EXT);
    on_report(&fake, &report(4, &[(&lv(A), 4 * EXT, "-wi-ao----", "")]));
    assert_eq!(fault_code(calls.vdi_call("vdi_clone", &[], A)), 44);
    assert!(find(&fake, "lvcreate").is_empty());
}

#[test]
fn generate_config_carries_device_config_and_attach_from_config_activates() {
    let (fake, calls) = env();
    record(&calls, A, EXT);
    on_report(&fake, &report(50, &[(&lv(A), EXT, "-wi-------", "")]));
    let cfg = calls
        .vdi_call("vdi_generate_config", &[], A)
        .unwrap()
        .to_text();
    let call = sm_core::xmlrpc::parse_method_call(&cfg).unwrap();
    assert_eq!(call.name, "vdi_attach_from_config");
    let info = calls.run_xml(&cfg).unwrap();
    assert_eq!(
        info.as_struct().unwrap()["params"].to_text(),
        format!("/dev/{VG}/{}", lv(A))
    );
    assert!(
        find(&fake, "lvchange")
            .last()
            .unwrap()
            .contains(&"-ay".to_string())
    );
    let detach = cfg.replace("vdi_attach_from_config", "vdi_detach_from_config");
    calls.run_xml(&detach).unwrap();
    assert!(
        find(&fake, "lvchange")
            .last()
            .unwrap()
            .contains(&"-an".to_string())
    );
}

#[test]
fn introduce_needs_the_lv_and_a_free_location() {
    let (fake, calls) = env();
    on_report(&fake, &report(50, &[(&lv(A), EXT, "-wi-------", "")]));
    let v = calls
        .call_with(
            "vdi_introduce",
            &[],
            &[("new_uuid", B), ("vdi_location", A), ("vdi_uuid", B)],
        )
        .unwrap();
    assert_eq!(uuid_of(&v), B);
    assert_eq!(calls.xapi.vdi_field(B, "location").as_deref(), Some(A));
    on_report(&fake, &report(50, &[(&lv(A), EXT, "-wi-------", "")]));
    let other = "aaaaaaaa-0000-4000-8000-000000000003";
    assert_eq!(
        fault_code(calls.call_with(
            "vdi_introduce",
            &[],
            &[
                ("new_uuid", other),
                ("vdi_location", A),
                ("vdi_uuid", other)
            ],
        )),
        43
    );
    on_report(&fake, &report(50, &[]));
    assert_eq!(
        fault_code(calls.call_with(
            "vdi_introduce",
            &[],
            &[
                ("new_uuid", other),
                ("vdi_location", other),
                ("vdi_uuid", other)
            ],
        )),
        65
    );
}

#[test]
fn device_config_device_is_required_and_checked() {
    let fake = Arc::new(FakeRunner::new());
    for (dconf, code) in [
        (vec![], 90),
        (vec![("device", "")], 90),
        (vec![("device", "relative")], 91),
        (vec![("device", "/dev/a,/dev/a")], 91),
        (vec![("device", "/dev/a|b")], 91),
    ] {
        let calls = Calls::new(&crate::lvm::DRIVER, fake.clone(), SR, &dconf).unwrap();
        assert_eq!(fault_code(calls.call("sr_attach", &[])), code, "{dconf:?}");
    }
    assert!(fake.calls().is_empty());
}

#[test]
fn sm_s_lvhd_content_is_refused_by_attach_and_scan_and_no_record_is_forgotten() {
    let (fake, calls) = env();
    record(&calls, A, 2 * EXT);
    record(&calls, B, 2 * EXT);
    let setup_calls = calls.xapi.calls().len();
    let vhd_lv = format!("VHD-{B}");
    let lvhd = report(
        40,
        &[
            ("MGT", EXT, "-wi-------", ""),
            (&vhd_lv, 2 * EXT, "-wi-------", ""),
            (&lv(A), 2 * EXT, "-wi-------", ""),
        ],
    );
    for verb in ["sr_attach", "sr_scan"] {
        on_report(&fake, &lvhd);
        let (code, text) = calls.call(verb, &[]).unwrap_err();
        assert_eq!(code, 47, "{verb}: {text}");
        assert!(text.contains("MGT (sm's SR metadata volume)"), "{text}");
        assert!(text.contains(&vhd_lv), "{text}");
    }
    assert_eq!(
        verbs(&fake),
        ["fullreport", "fullreport"],
        "nothing but reads"
    );
    assert!(calls.xapi.vdi(A).is_some() && calls.xapi.vdi(B).is_some());
    let x = calls.xapi.calls();
    assert!(
        !x[setup_calls..].iter().any(|c| c.starts_with("VDI.db_")),
        "{x:?}"
    );

    // A raw LV that sm hid (a base copy) and a journal are sm's too.
    let hidden = report(
        40,
        &[
            (&lv(A), 2 * EXT, "-wi-------", ""),
            ("clone_x_1", EXT, "-wi-------", ""),
        ],
    )
    .replacen(r#""lv_tags":"""#, r#""lv_tags":"hidden""#, 1)
    .replacen(r#""lv_tags":"""#, r#""lv_tags":"journaler""#, 1);
    on_report(&fake, &hidden);
    let (code, text) = calls.call("sr_scan", &[]).unwrap_err();
    assert_eq!(code, 47, "{text}");
    assert!(
        text.contains("tagged hidden") && text.contains("clone_x_1 (sm journal"),
        "{text}"
    );
    assert!(calls.xapi.vdi(A).is_some() && calls.xapi.vdi(B).is_some());
}
