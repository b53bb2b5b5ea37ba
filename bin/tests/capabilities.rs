//! Each driver's declared capabilities match what it implements: every declared capability's
//! command is answered by the driver (anything but fault 38 when called against a fake host),
//! and every command a capability stands for that is *not* declared answers fault 38.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed setup is a failed test

use std::sync::Arc;

use drivers::testing::FakeXapi;
use sm_core::dispatch;
use sm_core::driver::{Capability, Host};
use sm_core::request::Command;
use sm_core::testing::FakeRunner;
use sm_core::xenapi::Endpoint;
use sm_core::xmlrpc::{self, StringStyle, Value};

const SR: &str = "11111111-2222-4333-8444-555555555555";
const VDI: &str = "aaaaaaaa-2222-4333-8444-555555555555";

/// A full request for `cmd` with plausible keys; device_config points nowhere real.
fn request(cmd: Command, dir: &std::path::Path) -> String {
    let mut m = xmlrpc::Struct::new();
    let s = |v: &str| Value::from(v);
    m.insert("host_ref".into(), s("OpaqueRef:h"));
    m.insert("command".into(), s(cmd.as_str()));
    let args = match cmd {
        Command::VdiCreate => vec!["1048576", "l", "d", "", "false", "", "", "false"],
        Command::VdiAttach | Command::VdiActivate => vec!["true"],
        Command::VdiResize => vec!["2097152"],
        Command::SrCreate => vec!["0"],
        _ => vec![],
    };
    m.insert(
        "args".into(),
        Value::Array(args.into_iter().map(s).collect()),
    );
    let loc = dir.join("sr").display().to_string();
    m.insert(
        "device_config".into(),
        Value::string_map([
            ("SRmaster", "true"),
            ("location", loc.as_str()),
            ("device", "/nonexistent/dev"),
        ]),
    );
    for (k, v) in [
        ("session_ref", "OpaqueRef:s"),
        ("sr_ref", drivers::testing::SR_REF),
        ("sr_uuid", SR),
        ("vdi_ref", "OpaqueRef:v"),
        ("vdi_uuid", VDI),
        ("vdi_location", VDI),
        ("new_uuid", "bbbbbbbb-2222-4333-8444-555555555555"),
    ] {
        m.insert(k.into(), s(v));
    }
    xmlrpc::write_call(cmd.as_str(), &[Value::Struct(m)], StringStyle::Untyped)
}

fn fault_of(stdout: &str) -> Option<i32> {
    drivers::testing::response(stdout).err().map(|(c, _)| c)
}

/// The commands a declared capability promises.
fn promised(c: Capability) -> Vec<Command> {
    match c {
        Capability::VdiGenerateConfig => {
            vec![
                Command::VdiGenerateConfig,
                Command::VdiAttachFromConfig,
                Command::VdiDetachFromConfig,
            ]
        }
        other => other.command().into_iter().collect(),
    }
}

#[test]
fn capabilities_match_implementation() {
    for driver in drivers::DRIVERS {
        let info = driver.info();
        let d = tempfile::Builder::new()
            .prefix("c")
            .tempdir_in("/tmp")
            .unwrap();
        let xapi = FakeXapi::start(&d.path().join("xapi")).unwrap();
        let host = Host::with(
            Arc::new(FakeRunner::new()),
            d.path(),
            Endpoint::Unix(xapi.socket.clone()),
        );
        let run = |cmd: Command| {
            let argv = vec![info.plugin.into(), request(cmd, d.path()).into()];
            fault_of(&dispatch::run(&argv, *driver, &host).stdout)
        };
        for cap in Capability::WITH_COMMAND
            .iter()
            .copied()
            .chain([Capability::VdiAttachOffline])
        {
            let declared = info.has(cap);
            for cmd in promised(cap) {
                let fault = run(cmd);
                if declared {
                    assert_ne!(
                        fault,
                        Some(38),
                        "{}: {} declared but {cmd} is unimplemented",
                        info.plugin,
                        cap.as_str()
                    );
                } else if cap.command().is_some() {
                    assert_eq!(
                        fault,
                        Some(38),
                        "{}: {cmd} answers although {} is not declared",
                        info.plugin,
                        cap.as_str()
                    );
                }
            }
        }
        assert!(
            !info.has(Capability::VdiAttachOffline),
            "VDI_ATTACH_OFFLINE would route static-vdis to SMAPIv3"
        );
    }
}
