//! What the `lvm` SR's lab tests share: whole plugin calls on a LUN of the lab array through
//! the real runner and lvm2, scrubbing a LUN before and after, and reading and writing an LV's
//! bytes.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use drivers::testing::Calls;
use sm_core::host::{Cmd, Runner, SystemRunner};
use sm_core::lvm::{Lvm, LvmOptions};
use sm_core::testing::nbd::{self, KernelNbd};
use sm_core::xmlrpc::Value;
use xapi_tests::lab::Lab;

/// MiB.
pub const MIB: u64 = 1 << 20;

/// Host A's multipath map of LUN `n`.
pub fn lun_map(lab: &Lab, n: u32) -> PathBuf {
    lab.host_a_lun(n).unwrap().map.clone().unwrap()
}

/// Runs a command on host A; its stdout.
pub fn sh(argv: &[&str]) -> String {
    SystemRunner::new()
        .run(&Cmd::new(argv[0]).args(&argv[1..]).ok_codes(&[0]))
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
        .stdout_str()
}

pub use hostio::testing::blkid;

/// Leaves `devs` without any VG, PV label or signature (what a test found, or left after a
/// failure: the array's reset does not wipe LUN contents).
pub fn scrub(devs: &[&Path]) {
    let runner = SystemRunner::new();
    let lvm = Lvm::new(&runner, LvmOptions::scoped(devs)).unwrap();
    if let Ok(r) = lvm.scan() {
        for vg in &r.vgs {
            let _ = lvm.vg_activate(&vg.name, false);
            // One command for the VG and all its LVs (the benchmark's VG holds 1,000).
            let _ = lvm_raw(devs, &["vgremove", "-ff", "-y", &vg.name]);
        }
    }
    for d in devs {
        let _ = runner.run(&Cmd::new("umount").arg(d).ok_codes(&[0, 1, 32]));
        let _ = runner.run(&Cmd::new("wipefs").args(["-a", "-q"]).arg(d));
    }
    for d in devs {
        assert_eq!(blkid(d), "", "{} is clean", d.display());
    }
}

/// Runs `lvm <argv>` seeing only `devs` (what the driver would refuse to do: test set-up and
/// clean-up).
pub fn lvm_raw(devs: &[&Path], argv: &[&str]) -> Result<String, sm_core::host::RunError> {
    let accept: Vec<String> = devs
        .iter()
        .map(|d| format!("\"a|^{}$|\"", d.display()))
        .collect();
    let filter = format!("[ {}, \"r|.*|\" ]", accept.join(", "));
    let config = format!("devices {{ filter = {filter} global_filter = {filter} }}");
    SystemRunner::new()
        .run(
            &Cmd::new("lvm")
                .arg(argv[0])
                .args(["--config", &config])
                .args(&argv[1..])
                .timeout(std::time::Duration::from_secs(300)),
        )
        .map(|o| o.stdout_str())
}

/// Scrubs its devices when dropped (also when the test failed half-way).
pub struct Scrubbed(pub Vec<PathBuf>);

impl Drop for Scrubbed {
    fn drop(&mut self) {
        let devs: Vec<&Path> = self.0.iter().map(PathBuf::as_path).collect();
        if std::thread::panicking() {
            let runner = SystemRunner::new();
            let lvm = Lvm::new(&runner, LvmOptions::scoped(&devs)).unwrap();
            if let Ok(r) = lvm.scan() {
                for vg in &r.vgs {
                    let _ = lvm.vg_activate(&vg.name, false);
                }
            }
        }
        scrub(&devs);
    }
}

/// Whole `XSMLVMSR` calls on SR `sr` with device_config `device` = `devs`, run for real.
pub fn calls(sr: &str, devs: &[&Path]) -> Calls {
    let device = devs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(",");
    Calls::new(
        &drivers::lvm::DRIVER,
        Arc::new(SystemRunner::new()),
        sr,
        &[("device", &device)],
    )
    .unwrap()
}

/// A created and attached SR on clean `devs`, scrubbed again when the guard drops.
pub fn attached_sr(sr: &str, devs: &[&Path]) -> (Scrubbed, Calls) {
    scrub(devs);
    let guard = Scrubbed(devs.iter().map(|d| d.to_path_buf()).collect());
    let c = calls(sr, devs);
    c.call("sr_create", &["0"]).unwrap();
    c.call("sr_attach", &[]).unwrap();
    (guard, c)
}

/// The `params` of a vdi_attach result.
pub fn params(v: &Value) -> PathBuf {
    PathBuf::from(v.as_struct().unwrap()["params"].to_text())
}

/// An activated VDI as a block device, the way a dom0 VBD gets it: `params` when the attach
/// result has one, else the kernel NBD client on `params_nbd` (a tapdisk's export, whose
/// socket must be the `nbd<pid>.<minor>` tapback accepts). Derefs to the device's path.
pub struct Plugged {
    path: PathBuf,
    nbd: Option<KernelNbd>,
}

impl Plugged {
    /// The device for attach result `info` (call after vdi_activate).
    pub fn of(info: &Value) -> Plugged {
        let m = info.as_struct().unwrap();
        let text = |k: &str| m.get(k).map(Value::to_text).unwrap_or_default();
        if !text("params").is_empty() {
            return Plugged {
                path: PathBuf::from(text("params")),
                nbd: None,
            };
        }
        let uri = text("params_nbd");
        let (socket, _) = nbd::parse_uri(&uri).unwrap_or_else(|| panic!("params_nbd {uri:?}"));
        let real = std::fs::canonicalize(socket).unwrap();
        assert!(
            xapi_tests::storage::backend::tapback_path(&real.display().to_string()),
            "{} resolves to {}, not a tapdisk socket tapback accepts",
            socket.display(),
            real.display()
        );
        let nbd = KernelNbd::connect(&uri).unwrap();
        Plugged {
            path: nbd.device().to_path_buf(),
            nbd: Some(nbd),
        }
    }

    /// Whether a tapdisk serves it (through the kernel NBD client).
    pub fn by_tapdisk(&self) -> bool {
        self.nbd.is_some()
    }
}

impl AsRef<Path> for Plugged {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl std::ops::Deref for Plugged {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

fn open(dev: &Path, write: bool) -> std::fs::File {
    hostio::direct::open(dev, write, true).unwrap_or_else(|e| panic!("{}: {e}", dev.display()))
}

/// A buffer aligned for direct I/O holding `len` bytes of `byte`.
fn aligned(len: usize, byte: u8) -> (Vec<u8>, usize) {
    let mut v = vec![byte; len + 4096];
    let off = v.as_ptr().align_offset(4096);
    v[off..off + len].fill(byte);
    (v, off)
}

/// Writes `len` bytes of `byte` at `offset` (direct I/O, synced).
pub fn fill(dev: &Path, offset: u64, len: u64, byte: u8) {
    let mut f = open(dev, true);
    let (buf, off) = aligned(MIB as usize, byte);
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut left = len;
    while left > 0 {
        let n = left.min(MIB) as usize;
        f.write_all(&buf[off..off + n]).unwrap();
        left -= n as u64;
    }
    f.sync_all().unwrap();
}

/// Whether `[offset, offset+len)` of `dev` holds only `byte` (direct I/O).
pub fn holds(dev: &Path, offset: u64, len: u64, byte: u8) -> bool {
    let mut f = open(dev, false);
    let (mut buf, off) = aligned(MIB as usize, 0);
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut left = len;
    while left > 0 {
        let n = left.min(MIB) as usize;
        f.read_exact(&mut buf[off..off + n]).unwrap();
        if buf[off..off + n].iter().any(|b| *b != byte) {
            return false;
        }
        left -= n as u64;
    }
    true
}

/// The size of a block device.
pub fn size_of(dev: &Path) -> u64 {
    sm_core::host::block::size(dev).unwrap()
}

/// The LVs of `vg` on `devs`, by name.
pub fn lv_names(devs: &[&Path], vg: &str) -> Vec<String> {
    let runner = SystemRunner::new();
    let lvm = Lvm::new(&runner, LvmOptions::scoped(devs)).unwrap();
    lvm.vg(vg)
        .unwrap()
        .map(|v| v.lvs.into_iter().map(|l| l.name).collect())
        .unwrap_or_default()
}
