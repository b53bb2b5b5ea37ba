//! The tool against the lab's host A rebuilt from captures, parsed as `xsm mpath ...`.

use std::ffi::OsString;

use multipath::PathState;
use multipath::discovery::{self, Options};
use multipath::testing::LabFake;

use crate::tools::{Tool, parse};

const LUN0: &str = "360014055ab0c0de00000000000000000";

fn xsm(lab: &LabFake, args: &[&str]) -> (u8, String, String) {
    let argv: Vec<OsString> = ["xsm", "mpath"]
        .iter()
        .chain(args)
        .map(OsString::from)
        .collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let exit = match parse(&argv, &mut out, &mut err) {
        Ok(cli) => match cli.tool {
            Some(Tool::Mpath(a)) => super::run(&a, &lab.sys, &mut out, &mut err),
            other => panic!("not the mpath tool: {other:?}"),
        },
        Err(exit) => exit,
    };
    (
        exit.code(),
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[test]
fn lists_as_tables_and_json() {
    let lab = LabFake::base();
    let (code, out, err) = xsm(&lab, &["list", "lu"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 7, "{out}");
    assert!(lines[0].starts_with("NAME"), "{out}");
    let lun0 = lines.iter().find(|l| l.starts_with(LUN0)).unwrap();
    for want in [
        "dm-0",
        "256M",
        "LIO-ORG FILEIO",
        "2/2",
        "1:AO 2:AN",
        "explicit+implicit",
        "service-time",
    ] {
        assert!(lun0.contains(want), "{want} in {lun0}");
    }
    let (code, out, _) = xsm(&lab, &["list", "lu", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 6);
    assert_eq!(v[0]["name"], LUN0);
    assert_eq!(v[0]["oid"]["type"], "multipath_lu");
    for what in [
        "path",
        "tpg",
        "initiator-port",
        "target-port",
        "lus",
        "logical-unit",
    ] {
        let (code, out, err) = xsm(&lab, &["--json", "list", what]);
        assert_eq!(code, 0, "{what}: {err}");
        assert!(
            serde_json::from_str::<serde_json::Value>(&out).is_ok(),
            "{what}"
        );
    }
    let (_, out, _) = xsm(&lab, &["list", "path"]);
    assert!(
        out.lines().any(|l| l.starts_with("sdb")
            && l.contains("6:0:0:0")
            && l.contains("OKAY")
            && l.contains("10.99.0.1:3260")),
        "{out}"
    );
    let (_, out, _) = xsm(&lab, &["list", "target-port"]);
    assert!(out.contains("iqn.2026-01.test.lab:array,t,0x0002"), "{out}");
}

#[test]
fn shows_an_lu_a_path_and_the_plugin() {
    let lab = LabFake::base();
    let (code, out, err) = xsm(&lab, &["show", "lu", "dm-0"]);
    assert_eq!(code, 0, "{err}");
    for want in [
        "Path groups",
        "Target port groups",
        "active/optimized",
        "sdb",
        "sda",
        "iqn.2026-01.test.lab:array,t,0x0001 (10.99.0.1:3260)",
    ] {
        assert!(out.contains(want), "{want} in\n{out}");
    }
    let (_, out, _) = xsm(&lab, &["show", "lu", LUN0, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["paths"].as_array().unwrap().len(), 2);
    assert_eq!(v["tpgs"][1]["access_state"], "active/non-optimized");
    assert_eq!(v["target_ports"].as_array().unwrap().len(), 2);
    let (code, out, _) = xsm(&lab, &["show", "path", "/dev/sda"]);
    assert_eq!(code, 0);
    assert!(out.contains("7:0:0:0"));
    let (code, out, _) = xsm(&lab, &["show", "mpath-support"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("canSetTPGAccess") && out.contains("yes") && out.contains("2s"),
        "{out}"
    );
    let (_, out, _) = xsm(&lab, &["show", "mpath-support", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["can_set_tpg_access"], true);
    assert_eq!(v["probing_polling_rate"], 2);
}

#[test]
fn changes_access_and_fails_over() {
    let lab = LabFake::base();
    let (code, out, err) = xsm(
        &lab,
        &["set-tpg-access", LUN0, "2", "ao", "1", "an", "--no-wait"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("stpg via sdb"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("2") && l.trim_end().ends_with("active/optimized")),
        "{out}"
    );
    let (code, out, err) = xsm(
        &lab,
        &["failover", "dm-0", "--to-tpg", "1", "--no-wait", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["changes"][0]["after"], "active/optimized");
    assert_eq!(v["host_followed"], false);
}

#[test]
fn disables_and_enables_a_path() {
    let lab = LabFake::base();
    let (code, _, err) = xsm(&lab, &["disable-path", "sdb"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        lab.sys.sysfs.read("/sys/block/sdb/device/state").as_deref(),
        Some("offline")
    );
    assert!(
        lab.multipathd
            .commands()
            .contains(&"fail path sdb".to_string())
    );
    let topo = discovery::discover(&lab.sys, &Options::only(&[LUN0])).unwrap();
    let sdb = topo.find_path("sdb").unwrap();
    assert!(sdb.disabled);
    assert_eq!(sdb.state, PathState::OperationalClosed);
    // The other path is now the last usable one.
    let (code, _, err) = xsm(&lab, &["disable-path", "7:0:0:0"]);
    assert_eq!(code, 1);
    assert!(err.contains("last usable path"), "{err}");
    let (code, _, err) = xsm(&lab, &["enable-path", "sdb"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        lab.sys.sysfs.read("/sys/block/sdb/device/state").as_deref(),
        Some("running")
    );
    let topo = discovery::discover(&lab.sys, &Options::only(&[LUN0])).unwrap();
    assert!(!topo.find_path("sdb").unwrap().disabled);
}

#[test]
fn errors_have_their_status() {
    let lab = LabFake::base();
    assert_eq!(xsm(&lab, &["show", "lu", "nosuch"]).0, 3);
    assert_eq!(xsm(&lab, &["list", "sideways"]).0, 2);
    assert_eq!(xsm(&lab, &["set-tpg-access", LUN0, "2"]).0, 2);
    let (code, _, err) = xsm(&lab, &["set-tpg-access", LUN0, "2", "sideways"]);
    assert_eq!(code, 1);
    assert!(err.contains("not an ALUA state"), "{err}");
    let (code, out, _) = xsm(&lab, &["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("set-tpg-access"), "{out}");
    lab.lu(LUN0)
        .script(None, &[0xa4], sm_core::testing::Reply::Good, 1);
    let (code, _, err) = xsm(
        &lab,
        &[
            "set-tpg-access",
            LUN0,
            "2",
            "standby",
            "--timeout",
            "0",
            "--no-wait",
        ],
    );
    assert_eq!(code, 4, "{err}");
}
