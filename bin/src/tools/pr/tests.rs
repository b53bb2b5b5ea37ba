//! `xsm pr`'s command line, its confirmation rule, and its text.

use std::ffi::OsString;

use serde_json::json;

use super::*;
use crate::tools::{Tool, parse};

/// `xsm pr ARGS`, parsed; the exit status when parsing stops it.
fn pr(args: &[&str]) -> Result<Args, Exit> {
    let argv: Vec<OsString> = ["xsm", "pr"]
        .iter()
        .chain(args)
        .map(OsString::from)
        .collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    match parse(&argv, &mut out, &mut err)?.tool {
        Some(Tool::Pr(a)) => Ok(a),
        other => panic!("not the pr tool: {other:?}"),
    }
}

#[test]
fn parses_commands_and_options() {
    let a = pr(&[
        "acquire",
        "/dev/mapper/3600",
        "--yes",
        "--type",
        "6",
        "--fencing",
        "preempt-dead",
        "--key",
        "0x5853000000000001",
        "--json",
    ])
    .unwrap();
    assert_eq!(a.command.name(), "acquire");
    let Command::Change(op) = &a.command else {
        panic!("{a:?}")
    };
    assert_eq!(op.map(), "/dev/mapper/3600");
    assert!(a.yes && a.json && !a.abort);
    assert_eq!(a.pr_type.as_deref(), Some("6"));
    assert_eq!(policy(&a).unwrap().pr_type.code(), 6);
    assert_eq!(my_key(&a).unwrap().get(), 0x5853_0000_0000_0001);
    assert_eq!(pr(&["show", "--bogus"]).unwrap_err(), Exit::Usage);
    assert_eq!(pr(&["preempt", "m", "--victim"]).unwrap_err(), Exit::Usage);
    assert_eq!(pr(&[]).unwrap_err(), Exit::Usage);
    assert_eq!(pr(&["acquire", "a", "b"]).unwrap_err(), Exit::Usage);
    let k = pr(&["key", "--host-uuid", "11111111-2222-4333-8444-555555555555"]).unwrap();
    assert!(my_key(&k).unwrap().is_ours());
    let v = pr(&["preempt", "m", "--victim", "0xb2", "--abort"]).unwrap();
    assert!(v.abort && v.victim.as_deref() == Some("0xb2"));
}

#[test]
fn destructive_commands_need_yes() {
    let mut out = Vec::new();
    let a = pr(&["clear", "dm-99", "--key", "0xa1"]).unwrap();
    assert_eq!(run(&a, &mut out), Exit::NotConfirmed);
    assert_eq!(Exit::NotConfirmed.code(), 2);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("add --yes"), "{text}");
}

#[test]
fn show_text_lists_holders_and_hosts() {
    let d = json!({
        "lu": "3600", "generation": 3,
        "paths": [{"device": "/dev/sdb", "usable": true}, {"device": "/dev/sdc", "usable": false}],
        "reservation": {"type": 5, "type_name": "WE-RO", "key": "0x5853000000000001", "holder": "this host"},
        "registrations": [{"key": "0x5853000000000001", "holder": true, "nexus": "iqn.a,i,0x00023d000001 port 1", "host": "this host"}],
    });
    let t = show::text(&d);
    assert!(t.contains("/dev/sdc (down)"), "{t}");
    assert!(
        t.contains("reservation: WE-RO (5) key 0x5853000000000001 [this host]"),
        "{t}"
    );
    assert!(t.contains("iqn.a,i,0x00023d000001 port 1"), "{t}");
}
