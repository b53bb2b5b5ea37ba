//! Benchmarks, in the lab: `sr_scan` of an `lvm` SR holding 1,000 VDIs, and one `vdi_create`,
//! timed as whole plugin calls (the `xsm` binary exec'd as `XSMLVMSR`, exec to exit) against the
//! in-test XenAPI server, inside the TCG guest. The SR is made by sr_create on a LUN added for
//! the purpose (4.2 GiB, sparse: 1,000 VDIs at lvm2's 4 MiB extent need 4 GB, more than any LUN
//! of the baseline array), its 1,000 LVs restored into the VG's metadata in one `vgcfgrestore`
//! (creating them one by one would take lvm2 20 minutes under TCG). The number of lvm2 commands
//! each call ran is counted from the plugin's SMlog (the runner logs every command).
//!
//! The plugin is the release build the lab runs (`lab.bin("xsm")`); the XenAPI server is this
//! test's own (a debug build in the same guest).
//!
//! Figures go to the test's output and to `<lab log dir>/bench-lvm.json`. Asserted: a scan runs
//! exactly one lvm2 command and writes nothing when the records match; the times are reported,
//! not asserted.
//!
//! The second benchmark times `vdi_attach` + `vdi_activate` (and `vdi_deactivate` +
//! `vdi_detach`) of one VDI with the tapdisk datapath and without it (the same plugin, its
//! `SM_TOOL_DIRS` emptied so that it finds no `tap-ctl`: the LV's node in `params`), into
//! `bench-lvm-datapath.json`. Asserted: which datapath each mode served.
//! Run with `xapi-tests/lab/run-suite lab bench_lvm`.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::disallowed_methods,
    reason = "a test harness drives the host as an admin would; the rule is for driver code"
)]

mod lvm_lab;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use drivers::testing::Calls;
use lvm_lab::{MIB, Scrubbed, calls, scrub};
use sm_core::host::{Cmd, Runner, SystemRunner};
use sm_core::lvm::{Lvm, LvmOptions};
use xapi_tests::lab::Lab;

const SR: &str = "b0b0b0b0-1111-4222-8333-000000001000";
const VG: &str = "VG_XenStorage-b0b0b0b0-1111-4222-8333-000000001000";
const VDIS: usize = 1000;
const LUN_MB: u64 = 4200;

fn report(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Adds a LUN to the array and waits for host A's multipath map of it; `(lun, map, paths)`.
fn add_lun(lab: &Lab, mb: u64) -> (u32, PathBuf, Vec<String>) {
    let lun = lab.array().add_lun(mb).unwrap();
    lvm_lab::sh(&["iscsiadm", "-m", "session", "--rescan"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let _ = SystemRunner::new().run(&Cmd::new("udevadm").args(["settle", "--timeout=10"]));
        let paths = lvm_lab::sh(&["multipathd", "show", "paths", "format", "%d %w %i"]);
        let mine: Vec<(String, String)> = paths
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 3 && f[2].ends_with(&format!(":{lun}")))
                    .then(|| (f[0].to_string(), f[1].to_string()))
            })
            .collect();
        if mine.len() == 2 && mine[0].1 == mine[1].1 {
            let map = Path::new("/dev/mapper").join(&mine[0].1);
            if map.exists() && sm_core::host::block::size(&map).ok() == Some(mb * MIB) {
                return (lun, map, mine.into_iter().map(|m| m.0).collect());
            }
        }
        assert!(Instant::now() < deadline, "no map for LUN {lun}: {paths}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Forgets the added LUN on host A and removes it from the array.
fn remove_lun(lab: &Lab, lun: u32, map: &Path, paths: &[String]) {
    let _ = SystemRunner::new().run(&Cmd::new("multipath").arg("-f").arg(map));
    for d in paths {
        let _ = std::fs::write(format!("/sys/block/{d}/device/delete"), "1");
    }
    let _ = lab.array().remove_lun(lun);
}

/// A random lvm2 id (`xxxxxx-xxxx-xxxx-xxxx-xxxx-xxxx-xxxxxx`).
fn lvm_id() -> String {
    let hex =
        uuid::Uuid::new_v4().simple().to_string() + &uuid::Uuid::new_v4().simple().to_string();
    let c: Vec<char> = hex.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    for (k, n) in [6, 4, 4, 4, 4, 4, 6].into_iter().enumerate() {
        if k > 0 {
            out.push('-');
        }
        out.extend(&c[i..i + n]);
        i += n;
    }
    out
}

/// Adds `n` one-extent LVs `LV-<uuid>` to the VG with one `vgcfgrestore` of its metadata.
fn add_lvs_by_metadata(dev: &Path, n: usize) -> Vec<String> {
    let runner = SystemRunner::new();
    let lvm = Lvm::new(&runner, LvmOptions::scoped(&[dev])).unwrap();
    let vg = lvm.vg(VG).unwrap().unwrap();
    assert!(vg.lvs.is_empty() && vg.free_count as usize >= n, "{vg:?}");
    let filter = format!(
        "devices {{ filter = [ \"a|^{0}$|\", \"r|.*|\" ] global_filter = [ \"a|^{0}$|\", \"r|.*|\" ] }}",
        dev.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vg.txt");
    let lvm_cmd = |args: &[&str]| {
        runner
            .run(
                &Cmd::new("lvm")
                    .arg(args[0])
                    .args(["--config", &filter])
                    .args(&args[1..])
                    .timeout(Duration::from_secs(600)),
            )
            .unwrap()
    };
    lvm_cmd(&["vgcfgbackup", "-f", &file.display().to_string(), VG]);
    let text = std::fs::read_to_string(&file).unwrap();
    let mut lvs = String::from("\n\tlogical_volumes {\n");
    let mut locs = Vec::new();
    for i in 0..n {
        let loc = uuid::Uuid::new_v4().to_string();
        lvs.push_str(&format!(
            "\n\t\tLV-{loc} {{\n\t\t\tid = \"{}\"\n\t\t\tstatus = [\"READ\", \"WRITE\", \"VISIBLE\"]\n\t\t\tflags = []\n\t\t\tsegment_count = 1\n\n\t\t\tsegment1 {{\n\t\t\t\tstart_extent = 0\n\t\t\t\textent_count = 1\n\n\t\t\t\ttype = \"striped\"\n\t\t\t\tstripe_count = 1\n\n\t\t\t\tstripes = [\n\t\t\t\t\t\"pv0\", {i}\n\t\t\t\t]\n\t\t\t}}\n\t\t}}\n",
            lvm_id()
        ));
        locs.push(loc);
    }
    lvs.push_str("\t}\n");
    // The VG section of the backup ends with its physical_volumes block; the LVs follow it.
    let pv_end = {
        let start = text.find("physical_volumes {").unwrap();
        let mut depth = 0;
        let mut end = start;
        for (i, ch) in text[start..].char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = start + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        end
    };
    let restored = format!("{}{lvs}{}", &text[..pv_end], &text[pv_end..]);
    std::fs::write(&file, restored).unwrap();
    lvm_cmd(&["vgcfgrestore", "-f", &file.display().to_string(), VG]);
    locs
}

/// One whole plugin call: `<dir>/XSMLVMSR <xml>` exec'd, with its own SMlog file.
struct Exec {
    plugin: PathBuf,
    env: Vec<(String, String)>,
}

impl Exec {
    fn new(lab: &Lab, c: &Calls, dir: &Path) -> Exec {
        let plugin = dir.join("XSMLVMSR");
        std::os::unix::fs::symlink(lab.bin("xsm"), &plugin).unwrap();
        Exec {
            plugin,
            env: vec![
                ("SM_XAPI".into(), c.xapi.endpoint()),
                ("SM_ROOT".into(), c.host.paths.root().display().to_string()),
                ("SMLOG_LEVEL".into(), "debug".into()),
            ],
        }
    }

    /// The same plugin finding no tool outside the system directories (blktap's build is in
    /// the lab's `SM_TOOL_DIRS`): no `tap-ctl`, so no tapdisk.
    fn without_blktap(&self) -> Exec {
        let mut env = self.env.clone();
        env.push(("SM_TOOL_DIRS".into(), String::new()));
        Exec {
            plugin: self.plugin.clone(),
            env,
        }
    }

    /// Runs `xml`; the wall time, the lvm2 commands it ran, and its stdout.
    fn run(&self, xml: &str, log: &Path) -> (Duration, Vec<String>, String) {
        let mut cmd = Cmd::new(self.plugin.display().to_string())
            .arg(xml)
            .timeout(Duration::from_secs(600))
            .env("SMLOG_FILE", log.display().to_string());
        for (k, v) in &self.env {
            cmd = cmd.env(k.clone(), v.clone());
        }
        let t = Instant::now();
        let out = SystemRunner::new().run(&cmd).unwrap();
        let took = t.elapsed();
        let lines: Vec<String> = std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("cmd=lvm "))
            .map(str::to_string)
            .collect();
        let lvm: Vec<String> = lines
            .iter()
            .map(|l| {
                l.split("cmd=lvm ")
                    .nth(1)
                    .unwrap_or("")
                    .split(' ')
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        let lvm_ms: Vec<String> = lines
            .iter()
            .zip(&lvm)
            .map(|(l, verb)| {
                let ms = l.rsplit(" ms=").next().unwrap_or("?");
                format!("{verb} {ms} ms")
            })
            .collect();
        let log_text = std::fs::read_to_string(log).unwrap_or_default();
        let field = |l: &str, key: &str| -> Option<String> {
            let at = l.find(&format!(" {key}="))? + key.len() + 2;
            let v = l[at..].split_whitespace().next()?;
            Some(v.trim_matches('"').to_string())
        };
        let xenapi_ms: Vec<String> = log_text
            .lines()
            .filter(|l| l.contains(" xenapi"))
            .filter_map(|l| Some(format!("{} {} ms", field(l, "method")?, field(l, "ms")?)))
            .collect();
        let in_process = log_text
            .lines()
            .filter(|l| l.contains(" ok ") || l.contains(" fault: "))
            .find_map(|l| field(l, "ms"))
            .unwrap_or_else(|| "?".into());
        report(&format!(
            "  {} ms (in the plugin process {in_process} ms); lvm2: {lvm_ms:?}; XenAPI: {xenapi_ms:?}",
            took.as_millis()
        ));
        (took, lvm, out.stdout_str())
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
#[ignore = "lab"]
fn lab_bench_lvm_scan_1000_vdis() {
    let Some(lab) = Lab::from_env() else { return };
    let (lun, dev, paths) = add_lun(&lab, LUN_MB);
    scrub(&[&dev]);
    let clean = Scrubbed(vec![dev.clone()]);
    let c = calls(SR, &[&dev]);
    c.call("sr_create", &["0"]).unwrap();
    c.call("sr_attach", &[]).unwrap();
    let t = Instant::now();
    let locs = add_lvs_by_metadata(&dev, VDIS);
    report(&format!(
        "populated {VDIS} LVs with one vgcfgrestore in {:.1} s",
        t.elapsed().as_secs_f64()
    ));
    let dir = tempfile::tempdir().unwrap();
    let exec = Exec::new(&lab, &c, dir.path());

    // The first scan introduces every VDI.
    report("first sr_scan (introduces every VDI):");
    let (first, first_lvm, out) = exec.run(
        &c.method_call("sr_scan", &[], &[]),
        &dir.path().join("scan0.log"),
    );
    assert!(!out.contains("<fault>"), "{out}");
    assert_eq!(c.xapi.state().vdis.len(), VDIS);
    assert!(locs.iter().all(|l| c.xapi.vdi(l).is_some()));

    // Steady state: the records match, the scan reads and writes nothing else.
    let mut scans = Vec::new();
    for i in 0..3 {
        report(&format!("steady sr_scan {}:", i + 1));
        let before = c.xapi.calls().len();
        let (took, lvm, out) = exec.run(
            &c.method_call("sr_scan", &[], &[]),
            &dir.path().join(format!("scan{}.log", i + 1)),
        );
        assert!(!out.contains("<fault>"), "{out}");
        assert_eq!(lvm, ["fullreport"], "one lvm2 report call per scan");
        let xapi: Vec<String> = c.xapi.calls()[before..].to_vec();
        assert!(
            !xapi
                .iter()
                .any(|m| m.starts_with("VDI.db_") || m.starts_with("VDI.set_")),
            "{xapi:?}"
        );
        scans.push(took);
        if i == 0 {
            report(&format!("steady sr_scan XenAPI calls: {xapi:?}"));
        }
    }

    let mut creates = Vec::new();
    let mut create_lvm = Vec::new();
    for i in 0..2 {
        report(&format!("vdi_create {}:", i + 1));
        let (took, lvm, out) = exec.run(
            &c.method_call("vdi_create", &[&(64 * MIB).to_string(), "bench"], &[]),
            &dir.path().join(format!("create{i}.log")),
        );
        assert!(!out.contains("<fault>"), "{out}");
        creates.push(took);
        create_lvm = lvm;
    }

    let scan_ms: Vec<f64> = scans.iter().map(|d| ms(*d)).collect();
    let create_ms: Vec<f64> = creates.iter().map(|d| ms(*d)).collect();
    let summary = serde_json::json!({
        "vdis": VDIS,
        "extent_bytes": 4 * MIB,
        "first_scan_ms": ms(first),
        "first_scan_lvm_commands": first_lvm,
        "scan_ms": scan_ms,
        "scan_median_ms": ms(median(scans.clone())),
        "scan_lvm_commands": ["fullreport"],
        "vdi_create_ms": create_ms,
        "vdi_create_median_ms": ms(median(creates.clone())),
        "vdi_create_lvm_commands": create_lvm,
    });
    report(&format!("bench-lvm: {summary}"));
    let _ = std::fs::write(
        lab.desc().log_dir.join("bench-lvm.json"),
        serde_json::to_string_pretty(&summary).unwrap(),
    );

    drop(clean);
    remove_lun(&lab, lun, &dev, &paths);
}

/// `vdi`'s VDI-level methodCall of `cmd`.
fn vdi_xml(c: &Calls, cmd: &str, args: &[&str], vdi: &str) -> String {
    let r = c.xapi.vdi(vdi).map(|(r, _)| r).unwrap();
    c.method_call(
        cmd,
        args,
        &[("vdi_ref", &r), ("vdi_uuid", vdi), ("vdi_location", vdi)],
    )
}

#[test]
#[ignore = "lab"]
fn lab_bench_lvm_attach_activate_with_and_without_tapdisk() {
    const ROUNDS: usize = 5;
    let Some(lab) = Lab::from_env() else { return };
    let (lun, dev, paths) = add_lun(&lab, 512);
    scrub(&[&dev]);
    let clean = Scrubbed(vec![dev.clone()]);
    let c = calls(SR, &[&dev]);
    c.call("sr_create", &["0"]).unwrap();
    c.call("sr_attach", &[]).unwrap();
    let vdi = drivers::testing::uuid_of(&c.call("vdi_create", &[&(64 * MIB).to_string()]).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let with = Exec::new(&lab, &c, dir.path());
    let without = with.without_blktap();
    let mut summary = serde_json::Map::new();
    for (mode, exec, served) in [
        ("tapdisk", &with, "/run/blktap-control/nbd/"),
        ("device", &without, "/dev/VG_XenStorage-"),
    ] {
        let (mut up, mut down) = (Vec::new(), Vec::new());
        for i in 0..ROUNDS {
            report(&format!("{mode} round {}:", i + 1));
            let log = |n: &str| dir.path().join(format!("{mode}-{i}-{n}.log"));
            let (a, _, out) = exec.run(&vdi_xml(&c, "vdi_attach", &["true"], &vdi), &log("attach"));
            assert!(
                !out.contains("<fault>") && out.contains(served),
                "{mode}: {out}"
            );
            let (b, _, out) = exec.run(
                &vdi_xml(&c, "vdi_activate", &["true"], &vdi),
                &log("activate"),
            );
            assert!(!out.contains("<fault>"), "{mode}: {out}");
            up.push(a + b);
            let (d, _, out) = exec.run(
                &vdi_xml(&c, "vdi_deactivate", &[], &vdi),
                &log("deactivate"),
            );
            assert!(!out.contains("<fault>"), "{mode}: {out}");
            let (e, _, out) = exec.run(&vdi_xml(&c, "vdi_detach", &[], &vdi), &log("detach"));
            assert!(!out.contains("<fault>"), "{mode}: {out}");
            down.push(d + e);
        }
        summary.insert(
            mode.into(),
            serde_json::json!({
                "attach_activate_ms": up.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
                "attach_activate_median_ms": ms(median(up.clone())),
                "deactivate_detach_ms": down.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
                "deactivate_detach_median_ms": ms(median(down.clone())),
            }),
        );
    }
    let summary = serde_json::Value::Object(summary);
    report(&format!("bench-lvm-datapath: {summary}"));
    let _ = std::fs::write(
        lab.desc().log_dir.join("bench-lvm-datapath.json"),
        serde_json::to_string_pretty(&summary).unwrap(),
    );
    c.call("sr_detach", &[]).unwrap();
    drop(clean);
    remove_lun(&lab, lun, &dev, &paths);
}
