//! How plugin outcomes become XenAPI errors, as `sm_exec` maps them: with a fake plugin for
//! every fault code the issue lists, and with the real plugin binary where the real drivers
//! produce the fault (SR not empty, VDI missing, backend failure with its fault string).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Pool, fake_plugin, fake_reply};
use sm_core::xenapi::XenApiError;
use sm_core::xmlrpc::{Value, write_fault};

fn fake_pool() -> Pool {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    fake_plugin(&plugins, "FakeSR", &["SR_PROBE", "VDI_CREATE"]);
    Pool::start_with(dir, plugins, |_| {})
}

/// SR.create through the XenAPI; returns the ErrorDescription.
fn sr_create_error(p: &Pool) -> Vec<String> {
    let x = p.xenapi();
    let host = p.emu().master().r.clone();
    let args: Vec<Value> = vec![
        host.into(),
        Value::string_map([("path", "/x")]),
        "0".into(),
        "F".into(),
        "".into(),
        "fake".into(),
        "user".into(),
        false.into(),
        Value::string_map::<&str, &str>([]),
    ];
    match x.call("SR.create", &args) {
        Err(XenApiError::Failure { description, .. }) => description,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn every_fault_code_maps_as_sm_exec_maps_it() {
    let p = fake_pool();
    let dir = p.plugin_dir.clone();
    let fault = |code: i32| write_fault(code, "The thing failed [opterr=why]");
    let cases: Vec<(i32, Vec<&str>)> = vec![
        (38, vec!["UNIMPLEMENTED_IN_SM_BACKEND", "sr_create"]),
        (24, vec!["VDI_IN_USE"]),
        (16, vec!["SR_DEVICE_IN_USE"]),
        (39, vec!["SR_NOT_EMPTY"]),
        (
            47,
            vec![
                "SR_BACKEND_FAILURE_47",
                "",
                "The thing failed [opterr=why]",
                "<listing/>",
            ],
        ),
        (
            96,
            vec![
                "SR_BACKEND_FAILURE_96",
                "",
                "The thing failed [opterr=why]",
                "<listing/>",
            ],
        ),
    ];
    for (code, want) in cases {
        fake_reply(&dir, "sr_create", &fault(code), "<listing/>", 0);
        assert_eq!(sr_create_error(&p), want, "fault {code}");
        assert_eq!(
            p.xe_ok(&["sr-list", "--minimal"]),
            "",
            "a failed sr_create leaves no SR record"
        );
    }
    fake_reply(&dir, "sr_create", &fault(144), "", 0);
    let d = sr_create_error(&p);
    assert_eq!(d[0], "VDI_MISSING");
    assert!(
        d[1].starts_with("OpaqueRef:") && d[2].is_empty(),
        "[sr_ref; vdi_ref] of the call: {d:?}"
    );

    fake_reply(&dir, "sr_create", "half a response", "Traceback: boom", 3);
    assert_eq!(
        sr_create_error(&p),
        [
            "SR_BACKEND_FAILURE",
            "non-zero exit",
            "half a response",
            "Traceback: boom"
        ]
    );
    fake_reply(
        &dir,
        "sr_create",
        "log line before the response\n<methodResponse/>",
        "",
        0,
    );
    let d = sr_create_error(&p);
    assert_eq!(d[0], "SR_BACKEND_FAILURE");
    assert_eq!(
        d[2], "log line before the response\n<methodResponse/>",
        "stdout that is not one methodResponse is a failure"
    );

    fake_reply(&dir, "sr_create", &fault(47), "probe output", 0);
    let (code, out, err) = p.xe(&[
        "sr-create",
        "type=fake",
        "name-label=F",
        "device-config:path=/x",
    ]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(
        err,
        "Error code: SR_BACKEND_FAILURE_47\nError parameters: , The thing failed [opterr=why], probe output\n"
    );
    let smapi: Vec<_> = p
        .events()
        .into_iter()
        .filter_map(|e| {
            if let xapi_tests::trace::Event::Smapi(c) = e {
                Some(c)
            } else {
                None
            }
        })
        .collect();
    let last = smapi.last().unwrap();
    assert_eq!(
        (last.fault.clone(), last.stderr.as_str(), last.ok),
        (
            Some((47, "The thing failed [opterr=why]".into())),
            "probe output",
            false
        )
    );
}

#[test]
fn sr_probe_needs_the_capability() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    fake_plugin(&plugins, "NoprobeSR", &["VDI_CREATE"]);
    let p = Pool::start_with(dir, plugins, |_| {});
    let (code, _, err) = p.xe(&["sr-probe", "type=noprobe", "device-config:x=y"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "There was an SR backend failure.\nstatus: Operation 'sr_probe' not supported by this SR type\nstdout: \nstderr: \n"
    );
    assert!(
        common::fake_calls(&p.plugin_dir)
            .iter()
            .all(|r| r.command_name != "sr_probe"),
        "no sr_probe was sent"
    );
}

#[test]
fn real_driver_sr_not_empty_on_destroy() {
    let p = Pool::real();
    let sr = p.file_sr("sr", false);
    p.xe_ok(&[
        "vdi-create",
        &format!("sr-uuid={sr}"),
        "name-label=keep",
        "virtual-size=1MiB",
    ]);
    let pbd = p.xe_ok(&["pbd-list", &format!("sr-uuid={sr}"), "--minimal"]);
    p.xe_ok(&["pbd-unplug", &format!("uuid={pbd}")]);
    let (code, _, err) = p.xe(&["sr-destroy", &format!("uuid={sr}")]);
    assert_eq!(
        (code, err.as_str()),
        (
            1,
            "The SR operation cannot be performed because the SR is not empty.\n"
        )
    );
    let calls = p.last_calls();
    let seq: Vec<(&str, bool)> = calls.iter().map(|c| (c.command.as_str(), c.ok)).collect();
    assert_eq!(
        seq,
        [
            ("sr_attach", true),
            ("sr_delete", false),
            ("sr_detach", true)
        ]
    );
    assert_eq!(calls[1].fault.as_ref().map(|f| f.0), Some(39));
    assert_eq!(
        p.xe_ok(&["sr-list", "--minimal"]),
        sr,
        "the SR is still there"
    );
}

#[test]
fn real_driver_vdi_missing_and_the_failed_copy_is_removed() {
    let p = Pool::real();
    let sr = p.file_sr("sr", false);
    let v = p.xe_ok(&[
        "vdi-create",
        &format!("sr-uuid={sr}"),
        "name-label=gone",
        "virtual-size=1MiB",
    ]);
    let loc = p.xe_ok(&["vdi-param-get", &format!("uuid={v}"), "param-name=location"]);
    let file = std::fs::read_dir(p.sr_dir("sr"))
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().contains(&loc))
        .unwrap();
    std::fs::remove_file(file.path()).unwrap();
    let (code, _, err) = p.xe(&["vdi-copy", &format!("uuid={v}"), &format!("sr-uuid={sr}")]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        format!(
            "This operation cannot be performed because the specified VDI could not be found on the storage substrate\nsr: {sr} (S)\nvdi: {v} (gone)\n"
        )
    );
    let cmds: Vec<String> = p.last_calls().iter().map(|c| c.command.clone()).collect();
    assert_eq!(cmds.first().map(String::as_str), Some("vdi_create"));
    assert_eq!(
        cmds.last().map(String::as_str),
        Some("vdi_delete"),
        "the half-made copy is deleted: {cmds:?}"
    );
    assert_eq!(
        p.xe_ok(&["vdi-list", &format!("sr-uuid={sr}"), "--minimal"]),
        v,
        "only the (missing) source remains"
    );
}

#[test]
fn real_driver_backend_failure_carries_the_fault_string() {
    let p = Pool::real();
    let (code, _, err) = p.xe(&["sr-create", "type=xsmfile", "name-label=S"]);
    assert_eq!(code, 1);
    let mut lines = err.lines();
    let first = lines.next().unwrap();
    assert!(
        first.starts_with("Error code: SR_BACKEND_FAILURE_"),
        "{err}"
    );
    let params = lines
        .next()
        .unwrap()
        .strip_prefix("Error parameters: , ")
        .unwrap();
    assert!(
        params.contains("location"),
        "the driver's description and opterr: {params}"
    );
    let (code, _, err) = p.xe(&["sr-create", "type=nosuch", "name-label=S"]);
    assert_eq!(
        (code, err.as_str()),
        (
            1,
            "The SR could not be connected because the driver was not recognised.\ndriver: nosuch\n"
        )
    );
}
