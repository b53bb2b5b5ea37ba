//! The SMAPI spec's appendix test script with `SR_TYPE=xsmlvm`, as written (only `DEV=`
//! substituted), on a LUN of the lab array, and on `xsmfile` and `xsmext`, each VDI served by a
//! tapdisk (blktap is in the lab guest): the emulator runs in guest A with the real plugins
//! installed by install.sh, our `xe` on PATH; every `xe` exit status is checked and the trace
//! is checked against appendix A. Run with `xapi-tests/lab/run-suite lab appendix`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use sm_core::host::{Cmd, Runner, SystemRunner};
use sm_core::lvm::{Lvm, LvmOptions};
use xapi_tests::appendix::{self, Setup, Variant};
use xapi_tests::lab::Lab;

/// Leaves `dev` without VGs, PV labels or signatures (the array's reset keeps LUN contents).
fn scrub(dev: &Path) {
    let runner = SystemRunner::new();
    let lvm = Lvm::new(&runner, LvmOptions::scoped(&[dev])).unwrap();
    if let Ok(r) = lvm.scan() {
        for vg in &r.vgs {
            let _ = lvm.vg_activate(&vg.name, false);
            for l in vg.lvs.iter().filter(|l| l.attr.is_snapshot()) {
                let _ = lvm.lv_remove(&vg.name, &l.name);
            }
            for l in vg.lvs.iter().filter(|l| !l.attr.is_snapshot()) {
                let _ = lvm.lv_remove(&vg.name, &l.name);
            }
            let _ = lvm.vg_remove(&vg.name);
        }
    }
    let _ = appendix::release_device(&dev.display().to_string());
    runner
        .run(&Cmd::new("wipefs").args(["-a", "-q"]).arg(dev))
        .unwrap();
}

#[test]
#[ignore = "lab"]
fn lab_appendix_script_on_lvm() {
    let Some(lab) = Lab::from_env() else { return };
    let dev = lab.host_a_lun(5).unwrap().map.clone().unwrap();
    scrub(&dev);
    let d = tempfile::tempdir().unwrap();
    let setup = Setup {
        repo: common::repo(),
        bin_dir: common::bin_dir(),
        plugin_dir: common::install(d.path()),
        real_sleep: false,
    };
    let out = appendix::run_variant(
        &setup,
        &d.path().join("lvm"),
        &Variant::Block {
            device: dev.display().to_string(),
            types: vec!["xsmlvm".into()],
        },
    );
    let left = SystemRunner::new()
        .run(
            &Cmd::new("blkid")
                .args(["-p", "-o", "export"])
                .arg(&dev)
                .ok_codes(&[0, 2]),
        )
        .map(|o| o.stdout_str())
        .unwrap_or_default();
    scrub(&dev);
    let out = out.unwrap();
    let smlog = std::fs::read_to_string(
        d.path()
            .join("lvm/state")
            .join(format!("SMlog.{}", xapi_tests::config::local_hostname())),
    )
    .unwrap_or_default();
    assert!(
        out.passed(),
        "{}\nproblems: {:#?}\nscript stdout:\n{}\nscript stderr:\n{}\nSMlog tail:\n{}",
        out.summary,
        out.problems,
        out.run.stdout,
        out.run.stderr,
        smlog
            .lines()
            .rev()
            .take(60)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(out.run.xe.len(), 50, "every xe command of run_ops ran once");
    let served: Vec<&str> = smlog
        .lines()
        .filter(|l| l.contains("vdi_attach: datapath"))
        .collect();
    assert!(
        !served.is_empty() && served.iter().all(|l| l.contains("tapdisk")),
        "every VDI through tapdisk: {served:#?}"
    );
    assert!(
        out.run.stdout.starts_with("---START on xsmlvm---\n"),
        "{}",
        out.run.stdout
    );
    assert!(out.run.stdout.contains("---FINISH on xsmlvm---"));
    let calls: usize = out.verdicts.iter().map(|v| v.cmd.calls.len()).sum();
    assert!(calls > 100, "{calls} SMAPI calls");
    assert_eq!(
        left, "",
        "the final sr-destroy leaves the LUN without LVM metadata"
    );
    assert_eq!(
        out.verdicts
            .iter()
            .filter(|v| v.cmd.name() == "sr-destroy")
            .count(),
        2,
        "{}",
        out.summary
    );
}

/// The script on `xsmfile` (a directory) and `xsmext` (a LUN of the lab array) with blktap in the
/// guest: every VDI is served by a tapdisk, and the emulator plugs VM disks only when the
/// result passes tapback's rule (`storage::backend`).
#[test]
#[ignore = "lab"]
fn lab_appendix_script_on_file_and_ext_through_tapdisk() {
    let Some(lab) = Lab::from_env() else { return };
    let dev = lab.host_a_lun(5).unwrap().map.clone().unwrap();
    scrub(&dev);
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    let setup = Setup {
        repo: common::repo(),
        bin_dir: common::bin_dir(),
        plugin_dir: common::install(d.path()),
        real_sleep: false,
    };
    let variants = [
        (
            "file",
            "xsmfile",
            Variant::File {
                location: d.path().join("filesr"),
            },
        ),
        (
            "ext",
            "xsmext",
            Variant::Block {
                device: dev.display().to_string(),
                types: vec!["xsmext".into()],
            },
        ),
    ];
    for (dir, ty, variant) in variants {
        let out = appendix::run_variant(&setup, &d.path().join(dir), &variant);
        if ty == "xsmext" {
            scrub(&dev);
        }
        let out = out.unwrap();
        let smlog = std::fs::read_to_string(
            d.path()
                .join(dir)
                .join("state")
                .join(format!("SMlog.{}", xapi_tests::config::local_hostname())),
        )
        .unwrap_or_default();
        assert!(
            out.passed(),
            "{ty}: {}\nproblems: {:#?}\nscript stdout:\n{}\nscript stderr:\n{}",
            out.summary,
            out.problems,
            out.run.stdout,
            out.run.stderr,
        );
        assert!(out.run.stdout.contains(&format!("---FINISH on {ty}---")));
        let served: Vec<&str> = smlog
            .lines()
            .filter(|l| l.contains("vdi_attach: datapath"))
            .collect();
        assert!(!served.is_empty(), "{ty}: no attach logged");
        assert!(
            served.iter().all(|l| l.contains("tapdisk")),
            "{ty}: every VDI through tapdisk: {served:#?}"
        );
    }
}
