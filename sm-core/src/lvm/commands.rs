//! One typed method per lvm2 verb. Every command goes through the runner as `lvm <verb> ...`
//! with the scope of [`Lvm`] (device filter, system and locking directories); sizes are passed
//! in bytes (`-L <n>b`) and reports read as JSON in bytes.

use std::path::Path;

use super::Lvm;
use super::error::{LvmError, LvmOp};
use super::report::{self, LV_COLUMNS, PV_COLUMNS, Report, VG_COLUMNS, Vg};
use crate::host::Output;
use crate::host::run::Cmd;

/// Options of `vgcreate`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VgCreate {
    /// Extent size in bytes (lvm2's default, 4 MiB, when `None`).
    pub extent_size: Option<u64>,
    /// Size of each PV's metadata area in bytes (lvm2's default when `None`).
    pub metadata_size: Option<u64>,
}

/// Options of `lvcreate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvCreate {
    /// Leave the new LV active (`-ay`) or not (`-an`, which implies no zeroing).
    pub activate: bool,
    /// Zero the LV's first 4 KiB and wipe any signature found in it (needs `activate`).
    pub zero: bool,
    /// Tags to add.
    pub tags: Vec<String>,
}

impl Default for LvCreate {
    /// Active, zeroed, untagged: lvm2's own default.
    fn default() -> LvCreate {
        LvCreate {
            activate: true,
            zero: true,
            tags: Vec::new(),
        }
    }
}

/// `-L <bytes>b`.
fn size_arg(bytes: u64) -> String {
    format!("{bytes}b")
}

fn lv_path(vg: &str, lv: &str) -> String {
    format!("{vg}/{lv}")
}

impl Lvm<'_> {
    /// Runs `lvm <verb> <args>` as `op`.
    fn exec(&self, op: LvmOp, verb: &str, args: &[&str]) -> Result<Output, LvmError> {
        let cmd = self.cmd(verb).args(args.iter().copied());
        self.runner.run(&cmd).map_err(|e| LvmError::from_run(op, e))
    }

    fn report(&self, op: LvmOp, vgs: &[&str]) -> Result<Report, LvmError> {
        let mut args = vec![
            "--reportformat",
            "json",
            "--units",
            "b",
            "--nosuffix",
            "--configreport",
            "vg",
            "-o",
            VG_COLUMNS,
            "--configreport",
            "pv",
            "-o",
            PV_COLUMNS,
            "--configreport",
            "lv",
            "-o",
            LV_COLUMNS,
            "--configreport",
            "pvseg",
            "-o",
            "pvseg_start",
            "-S",
            "pvseg_start<0",
            "--configreport",
            "seg",
            "-o",
            "seg_size",
            "-S",
            "seg_size<0",
        ];
        args.extend(vgs);
        let out = self.exec(op, "fullreport", &args)?;
        report::parse(op, &out.stdout_str())
    }

    /// Every VG on the devices in scope with its PVs and LVs, and the orphan PVs: one
    /// `lvm fullreport` (failures are fault 93 PVSfailed, as sm's `pvs`).
    pub fn scan(&self) -> Result<Report, LvmError> {
        self.report(LvmOp::PvReport, &[])
    }

    /// The VG called `vg` with its PVs and LVs, or `None` when it does not exist: one
    /// `lvm fullreport` (failures are fault 117 LVMRead).
    pub fn vg(&self, vg: &str) -> Result<Option<Vg>, LvmError> {
        match self.report(LvmOp::Report, &[vg]) {
            Ok(mut r) => Ok(r
                .vgs
                .iter()
                .position(|v| v.name == vg)
                .map(|i| r.vgs.swap_remove(i))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `pvcreate -ff -y [--metadatasize <n>b] <dev>`: labels a device as a PV, overwriting an
    /// orphan PV label (callers check first that the device holds nothing else).
    pub fn pv_create(&self, dev: &Path, metadata_size: Option<u64>) -> Result<(), LvmError> {
        let dev = dev.to_string_lossy();
        let mda = metadata_size.map(size_arg);
        let mut args = vec!["-ff", "-y"];
        if let Some(m) = &mda {
            args.extend(["--metadatasize", m.as_str()]);
        }
        args.push(&dev);
        self.exec(LvmOp::PvCreate, "pvcreate", &args).map(|_| ())
    }

    /// `pvremove -y <dev>`: erases the PV label of a device that belongs to no VG.
    pub fn pv_remove(&self, dev: &Path) -> Result<(), LvmError> {
        let dev = dev.to_string_lossy();
        self.exec(LvmOp::PvRemove, "pvremove", &["-y", &dev])
            .map(|_| ())
    }

    /// `vgcreate [-s <n>b] [--metadatasize <n>b] <vg> <devs>...` on devices that are PVs.
    pub fn vg_create(&self, vg: &str, devs: &[&Path], o: &VgCreate) -> Result<(), LvmError> {
        let extent = o.extent_size.map(size_arg);
        let mda = o.metadata_size.map(size_arg);
        let devs: Vec<String> = devs.iter().map(|d| d.to_string_lossy().into()).collect();
        let mut args = Vec::new();
        if let Some(e) = &extent {
            args.extend(["-s", e.as_str()]);
        }
        if let Some(m) = &mda {
            args.extend(["--metadatasize", m.as_str()]);
        }
        args.push(vg);
        args.extend(devs.iter().map(String::as_str));
        self.exec(LvmOp::VgCreate, "vgcreate", &args).map(|_| ())
    }

    /// `vgremove <vg>`: lvm2 itself refuses (without `-f`) a VG that still holds LVs.
    pub fn vg_remove(&self, vg: &str) -> Result<(), LvmError> {
        self.exec(LvmOp::VgRemove, "vgremove", &[vg]).map(|_| ())
    }

    /// `vgchange -ay|-an <vg>`: activates or deactivates every LV of the VG.
    pub fn vg_activate(&self, vg: &str, active: bool) -> Result<(), LvmError> {
        let (op, flag) = if active {
            (LvmOp::VgActivate, "-ay")
        } else {
            (LvmOp::VgDeactivate, "-an")
        };
        self.exec(op, "vgchange", &[flag, vg]).map(|_| ())
    }

    /// `lvcreate -y -n <lv> -L <bytes>b ... <vg>`; lvm2 rounds the size up to whole extents.
    pub fn lv_create(&self, vg: &str, lv: &str, bytes: u64, o: &LvCreate) -> Result<(), LvmError> {
        let size = size_arg(bytes);
        let mut args = vec!["-y", "-n", lv, "-L", size.as_str()];
        if o.activate {
            let z = if o.zero { "y" } else { "n" };
            args.extend(["-ay", "-Z", z, "-W", z]);
        } else {
            args.extend(["-an", "-Z", "n", "-W", "n"]);
        }
        for t in &o.tags {
            args.extend(["--addtag", t.as_str()]);
        }
        args.push(vg);
        self.exec(LvmOp::LvCreate, "lvcreate", &args).map(|_| ())
    }

    /// `lvcreate -y -s -n <snap> -L <cow>b <vg>/<origin>`: a copy-on-write snapshot of
    /// `origin` whose copy-on-write area holds `cow_bytes` (lvm2 trims a request larger than
    /// the origin can ever need). lvm2 activates it, and with it the origin.
    pub fn lv_snapshot(
        &self,
        vg: &str,
        origin: &str,
        snap: &str,
        cow_bytes: u64,
    ) -> Result<(), LvmError> {
        let size = size_arg(cow_bytes);
        let origin = lv_path(vg, origin);
        self.exec(
            LvmOp::LvSnapshot,
            "lvcreate",
            &["-y", "-s", "-n", snap, "-L", &size, &origin],
        )
        .map(|_| ())
    }

    /// `lvremove -f <vg>/<lv>`: removes an LV that is not open (active or not).
    pub fn lv_remove(&self, vg: &str, lv: &str) -> Result<(), LvmError> {
        self.exec(LvmOp::LvRemove, "lvremove", &["-f", &lv_path(vg, lv)])
            .map(|_| ())
    }

    /// `lvchange -ay|-an <vg>/<lv>`. Deactivating an open LV fails (InUse).
    pub fn lv_activate(&self, vg: &str, lv: &str, active: bool) -> Result<(), LvmError> {
        let (op, flag) = if active {
            (LvmOp::LvActivate, "-ay")
        } else {
            (LvmOp::LvDeactivate, "-an")
        };
        self.exec(op, "lvchange", &[flag, &lv_path(vg, lv)])
            .map(|_| ())
    }

    /// `dmsetup remove <name>`: a device-mapper mapping of an LV that lvm2 no longer knows (it
    /// was removed on another host while active here). Fails while the mapping is open.
    pub fn remove_mapping(&self, name: &str) -> Result<(), LvmError> {
        let cmd = Cmd::new("dmsetup")
            .args(["remove", name])
            .timeout(std::time::Duration::from_secs(30));
        self.runner
            .run(&cmd)
            .map(|_| ())
            .map_err(|e| LvmError::from_run(LvmOp::MappingRemove, e))
    }

    /// `udevadm settle` (10 s at most): lvm2's udev rules activate a VG whose PV just appeared,
    /// and those events must be over before LV states are read. A failure is only logged.
    pub fn settle_udev(&self) {
        let cmd = Cmd::new("udevadm")
            .args(["settle", "--timeout=10"])
            .timeout(std::time::Duration::from_secs(15));
        if let Err(e) = self.runner.run(&cmd) {
            tracing::debug!("udevadm settle: {e}");
        }
    }

    /// `lvextend -L <bytes>b <vg>/<lv>`: grows an LV (lvm2 rounds up to whole extents and
    /// refuses a size that is not larger).
    pub fn lv_extend(&self, vg: &str, lv: &str, bytes: u64) -> Result<(), LvmError> {
        let size = size_arg(bytes);
        self.exec(
            LvmOp::LvResize,
            "lvextend",
            &["-L", &size, &lv_path(vg, lv)],
        )
        .map(|_| ())
    }

    /// `lvrename <vg> <from> <to>`: one atomic metadata commit.
    pub fn lv_rename(&self, vg: &str, from: &str, to: &str) -> Result<(), LvmError> {
        self.exec(LvmOp::LvRename, "lvrename", &[vg, from, to])
            .map(|_| ())
    }
}
