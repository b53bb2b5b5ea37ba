//! The SMAPI spec's appendix test script, end to end, against the real plugin binary:
//! the `file` variant (no root) and the verbatim script on a loop device (root).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use sm_core::host::{Cmd, Runner, SystemRunner};
use xapi_tests::appendix::{self, Setup, Variant};

fn setup(dir: &std::path::Path) -> Setup {
    Setup {
        repo: common::repo(),
        bin_dir: common::bin_dir(),
        plugin_dir: common::install(dir),
        real_sleep: false,
    }
}

/// Runs the file variant in a fresh directory; `prepare` may touch the work directory first.
fn run_file(
    prepare: impl FnOnce(&std::path::Path),
) -> (tempfile::TempDir, std::path::PathBuf, appendix::Outcome) {
    let d = tempfile::tempdir().unwrap();
    let s = setup(d.path());
    let work = d.path().join("file");
    prepare(&work);
    let out = appendix::run_variant(
        &s,
        &work,
        &Variant::File {
            location: work.join("sr"),
        },
    )
    .unwrap();
    (d, work, out)
}

/// Asserts a clean run of `run_ops` once per SR type (50 `xe` commands each).
fn assert_passed(out: &appendix::Outcome, types: usize) {
    assert!(
        out.passed(),
        "{}\nproblems: {:#?}\nscript stderr:\n{}",
        out.summary,
        out.problems,
        out.run.stderr
    );
    assert_eq!(
        out.run.xe.len(),
        50 * types,
        "every xe command of run_ops ran once per SR type"
    );
    assert!(out.run.xe.iter().all(|(c, _)| *c == 0));
}

#[test]
fn appendix_script_passes_on_the_file_sr() {
    let (_d, work, out) = run_file(|_| {});
    assert_passed(&out, 1);
    let log = std::fs::read_to_string(work.join("CMDlog")).unwrap();
    assert!(
        log.starts_with("---START on xsmfile---\nsr-create\n"),
        "{log}"
    );
    assert!(log.contains("---FINISH on xsmfile---"));
    let calls: usize = out.verdicts.iter().map(|v| v.cmd.calls.len()).sum();
    assert!(calls > 100, "{calls} SMAPI calls");
    let left = std::fs::read_dir(work.join("sr"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(
        left, 0,
        "nothing is left of the SR after the final sr-destroy"
    );
}

#[test]
fn a_failing_xe_command_fails_the_run() {
    let (_d, _work, out) = run_file(|work| {
        std::fs::create_dir_all(work.join("sr")).unwrap();
        std::fs::write(work.join("sr/occupied"), "not an SR").unwrap();
    });
    assert!(!out.passed());
    assert!(
        out.problems
            .iter()
            .any(|p| p.starts_with("xe sr-create ") && p.ends_with("exited with 1")),
        "{:#?}",
        out.problems
    );
    assert!(
        out.run.code == 0,
        "the script itself exits with its last command's status, which hides the failure"
    );
}

#[test]
#[ignore = "root: loop devices"]
fn root_appendix_script_passes_on_a_loop_device() {
    let d = tempfile::tempdir().unwrap();
    let s = setup(d.path());
    let img = d.path().join("disk.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let r = SystemRunner::new();
    let dev = r
        .run(&Cmd::new("losetup").args(["--find", "--show"]).arg(&img))
        .unwrap()
        .stdout_str()
        .trim()
        .to_string();
    let types: Vec<String> = if appendix::lvm_usable() {
        vec!["xsmlvm".into(), "xsmext".into()]
    } else {
        vec!["xsmext".into()]
    };
    let out = appendix::run_variant(
        &s,
        &d.path().join("block"),
        &Variant::Block {
            device: dev.clone(),
            types: types.clone(),
        },
    );
    appendix::release_device(&dev);
    let detached = r.run(
        &Cmd::new("losetup")
            .args(["-d", &dev])
            .timeout(Duration::from_secs(30)),
    );
    let out = out.unwrap();
    assert_passed(&out, types.len());
    detached.unwrap();
}
