//! Any byte string as argv[1] yields exactly one well-formed methodResponse and exit status 0.
//!
//! In-process through `sm_core::dispatch::run` (fast; a million cases with
//! `PROPTEST_CASES=1000000 cargo test --release -p xsm --test fuzz_argv in_process`), and through
//! the real binary (slower: a few hundred cases by default, `XSM_FUZZ_EXEC_CASES` to change).
//! Inputs are arbitrary bytes (argv cannot hold NUL) and mutations of real xapi calls, so the
//! parser is exercised deep inside the document too. Nothing touches real storage: the host
//! runner is a fake and paths live under a temporary root.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed setup is a failed test

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::sync::Arc;

use proptest::prelude::*;
use sm_core::dispatch;
use sm_core::driver::Host;
use sm_core::testing::FakeRunner;
use sm_core::xenapi::Endpoint;
use sm_core::xmlrpc::{MethodResponse, parse_method_response};

const SEEDS: &[&str] = &[
    include_str!("fixtures/sr_get_driver_info.xml"),
    "<?xml version=\"1.0\"?><methodCall><methodName>vdi_attach</methodName><params><param><value><struct><member><name>host_ref</name><value>OpaqueRef:h</value></member><member><name>command</name><value>vdi_attach</value></member><member><name>args</name><value><array><data><value>true</value></data></array></value></member><member><name>device_config</name><value><struct><member><name>location</name><value>/nonexistent/fuzz</value></member></struct></value></member><member><name>sr_uuid</name><value>11111111-2222-4333-8444-555555555555</value></member><member><name>vdi_uuid</name><value>aaaaaaaa-2222-4333-8444-555555555555</value></member><member><name>vdi_location</name><value>aaaaaaaa-2222-4333-8444-555555555555</value></member></struct></value></param></params></methodCall>",
    "<methodCall><methodName>sr_scan</methodName><params><param><value><struct><member><name>command</name><value>sr_scan</value></member><member><name>sr_uuid</name><value>11111111-2222-4333-8444-555555555555</value></member><member><name>device_config</name><value><struct><member><name>location</name><value>/nonexistent/fuzz</value></member></struct></value></member><member><name>args</name><value><array><data/></array></value></member><member><name>x</name><value><i8>-1</i8></value></member><member><name>y</name><value><nil/></value></member></struct></value></param></params></methodCall>",
];

/// Arbitrary argv bytes: random bytes, or a seed call with bytes flipped, cut or inserted.
fn argv_bytes() -> impl Strategy<Value = Vec<u8>> {
    let random = prop::collection::vec(1u8..=255, 0..512);
    let mutated = (
        0..SEEDS.len(),
        prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255, 0u8..3), 1..6),
    )
        .prop_map(|(i, edits)| {
            let mut b = SEEDS[i].as_bytes().to_vec();
            for (at, byte, op) in edits {
                let pos = at.index(b.len() + 1);
                match op {
                    0 if pos < b.len() => b[pos] = byte,
                    1 => b.insert(pos, byte),
                    _ => b.truncate(pos),
                }
            }
            b
        });
    prop_oneof![random, mutated]
}

fn check_one_response(stdout: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(stdout.matches("<methodResponse>").count(), 1, "{}", stdout);
    let parsed = parse_method_response(stdout);
    prop_assert!(parsed.is_ok(), "not well-formed: {:?}\n{}", parsed, stdout);
    if let Ok(MethodResponse::Fault { code, .. }) = parsed {
        prop_assert!(code > 0);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn in_process(bytes in argv_bytes()) {
        let d = tempfile::tempdir().unwrap();
        let host = Host::with(Arc::new(FakeRunner::new()), d.path(), Endpoint::Unix(d.path().join("xapi")));
        for driver in drivers::DRIVERS {
            let argv = vec![OsString::from(driver.info().plugin), OsString::from_vec(bytes.clone())];
            let out = dispatch::run(&argv, *driver, &host);
            check_one_response(&out.stdout)?;
        }
    }
}

#[test]
fn through_the_binary() {
    let cases: u32 = std::env::var("XSM_FUZZ_EXEC_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let d = tempfile::tempdir().unwrap();
    let link = d.path().join("XSMFileSR");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_xsm"), &link).unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&argv_bytes(), |bytes| {
            #[allow(clippy::disallowed_methods)] // executing the plugin as xapi does
            let out = std::process::Command::new(&link)
                .arg(OsString::from_vec(bytes))
                .env("SM_ROOT", d.path())
                .env(
                    "SM_XAPI",
                    format!("unix:{}", d.path().join("none").display()),
                )
                .env("SMLOG_FILE", d.path().join("SMlog"))
                .env("SM_TOOL_DIRS", d.path().join("no-tools"))
                .output()
                .unwrap();
            prop_assert_eq!(out.status.code(), Some(0));
            prop_assert!(
                out.stderr.is_empty(),
                "stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            check_one_response(&String::from_utf8_lossy(&out.stdout))
        })
        .unwrap();
}
