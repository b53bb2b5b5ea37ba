//! `XSMEXTSR` (type `xsmext`): VHD files on an ext4 filesystem that sr_create makes on a local block
//! device (device_config `device`) and sr_attach mounts at `/var/run/sr-mount/<sr_uuid>`. The VDI
//! handling is the `xsmfile` SR's ([`crate::filebased`]) over that mount point.
//!
//! Safety rules for the device, checked before anything is written:
//! - never the device (or the disk of the partition) holding the root filesystem: fault 105;
//! - never a device that is mounted or claimed by another kernel user: fault 16 SRInUse;
//! - never a device with a foreign signature (filesystem, partition table, LVM PV, RAID): fault
//!   16 SRInUse naming it (`wipefs -a` clears it, deliberately, by hand). Our own filesystem
//!   (label [`LABEL`]) is re-created only when it holds no VDI (else fault 42 SRExists).
//!
//! sr_delete refuses while VDIs remain (fault 39), then unmounts and erases the signature, so
//! the device is left without any (blkid finds nothing).

use std::path::{Path, PathBuf};

use hostio::fs;

use sm_core::driver::{ConfigKey, Ctx, DriverInfo};
use sm_core::errors::{SmCode, SmError, SmResult};
use sm_core::host::Runner;
use sm_core::host::block as device;

use crate::filebased::{self, Backing, FileBasedSr, layout};

/// Filesystem label marking a filesystem made by this driver.
pub const LABEL: &str = "xsm-ext-sr";

/// The driver's contract.
pub static INFO: DriverInfo = DriverInfo {
    sr_type: "xsmext",
    plugin: "XSMEXTSR",
    name: "Local EXT4 VHD",
    description: "SR plugin which represents disks as VHD files stored on a local EXT4 filesystem, created on a local block device",
    vendor: "xsm project",
    copyright: "(C) xsm project contributors",
    driver_version: "1.0",
    required_api_version: "1.0",
    capabilities: filebased::CAPABILITIES,
    configuration: &[ConfigKey {
        key: "device",
        description: "local device path (required) (e.g. /dev/sda3)",
    }],
};

/// The `ext` SR type.
pub struct ExtBacking;

/// The `XSMEXTSR` driver.
pub type ExtSr = FileBasedSr<ExtBacking>;

/// The driver instance.
pub static DRIVER: ExtSr = FileBasedSr(ExtBacking);

/// device_config `device` (fault 90 when missing, 91 when it is not a block device), and its
/// device number.
fn device(cx: &Ctx<'_>) -> SmResult<(PathBuf, u64)> {
    let d = cx.dconf().require("device", SmCode::ConfigDeviceMissing)?;
    let p = PathBuf::from(d);
    let rdev = device::rdev(&p)
        .map_err(|e| SmError::msg(SmCode::ConfigDeviceInvalid, format!("{d}: {e}")))?;
    Ok((p, rdev))
}

fn run_err(code: SmCode) -> impl Fn(sm_core::host::RunError) -> SmError {
    move |e| SmError::new(code, e)
}

/// A scratch mount point for inspecting a device, removed when dropped.
struct Scratch<'a> {
    runner: &'a dyn Runner,
    point: PathBuf,
    mounted: bool,
}

impl<'a> Scratch<'a> {
    fn mount(cx: &'a Ctx<'_>, dev: &Path) -> SmResult<Scratch<'a>> {
        let point = cx
            .host
            .paths
            .run_dir()
            .join("ext-inspect")
            .join(std::process::id().to_string());
        std::fs::create_dir_all(&point).map_err(|e| SmError::new(SmCode::SRUnavailable, e))?;
        let mut s = Scratch {
            runner: cx.host.runner.as_ref(),
            point,
            mounted: false,
        };
        fs::mount(s.runner, dev, &s.point, true).map_err(run_err(SmCode::SRUnavailable))?;
        s.mounted = true;
        Ok(s)
    }
}

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        if self.mounted
            && let Err(e) = fs::umount(self.runner, &self.point)
        {
            tracing::warn!(point = %self.point.display(), "cannot unmount the inspection mount: {e}");
            return;
        }
        let _ = std::fs::remove_dir(&self.point);
    }
}

/// What our filesystem at `dir` holds: its SR uuid and its VDI images.
fn contents(dir: &Path) -> SmResult<(Option<String>, Vec<String>)> {
    let vdis = layout::list_images(dir).map_err(|e| SmError::new(SmCode::SRUnavailable, e))?;
    Ok((layout::read_marker(dir), vdis))
}

fn mount_point(cx: &Ctx<'_>) -> SmResult<PathBuf> {
    Ok(cx.host.paths.sr_mount(cx.sr_uuid()?.as_str()))
}

/// Whether `point` has the device `rdev` mounted (fault 16 when something else is).
fn is_mounted_here(point: &Path, rdev: u64) -> SmResult<bool> {
    match device::mounted_at(point) {
        None => Ok(false),
        Some(dev) if dev == device::dev_pair(rdev) => Ok(true),
        Some((maj, min)) => Err(SmError::msg(
            SmCode::SRInUse,
            format!(
                "{} has another device ({maj}:{min}) mounted",
                point.display()
            ),
        )),
    }
}

impl Backing for ExtBacking {
    fn info(&self) -> &'static DriverInfo {
        &INFO
    }

    fn vdi_dir(&self, cx: &Ctx<'_>) -> SmResult<PathBuf> {
        let point = mount_point(cx)?;
        if device::mounted_at(&point).is_none() {
            return Err(SmError::msg(
                SmCode::SRUnavailable,
                format!(
                    "the SR is not attached ({} is not mounted)",
                    point.display()
                ),
            ));
        }
        Ok(point)
    }

    fn sr_create(&self, cx: &Ctx<'_>, _size: u64) -> SmResult<()> {
        let (dev, rdev) = device(cx)?;
        let sr = cx.sr_uuid()?;
        if let Some(on) = device::holds_root(rdev) {
            return Err(SmError::msg(
                SmCode::Rootdev,
                format!(
                    "{} is part of the root filesystem's device stack ({on})",
                    dev.display()
                ),
            ));
        }
        let mounts = device::mount_points_of(rdev);
        if !mounts.is_empty() || device::is_claimed(&dev) {
            let at = mounts
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(SmError::msg(
                SmCode::SRInUse,
                format!(
                    "{} is in use{}",
                    dev.display(),
                    if at.is_empty() {
                        String::new()
                    } else {
                        format!(" (mounted at {at})")
                    }
                ),
            ));
        }
        let runner = cx.host.runner.as_ref();
        let sigs = device::signatures(runner, &dev).map_err(run_err(SmCode::SRUnavailable))?;
        if let Some(what) = device::describe(&sigs) {
            if sigs.get("LABEL").map(String::as_str) != Some(LABEL) {
                return Err(SmError::msg(
                    SmCode::SRInUse,
                    format!(
                        "{} holds {what}; erase it first (wipefs -a) if it is no longer needed",
                        dev.display()
                    ),
                ));
            }
            let scratch = Scratch::mount(cx, &dev)?;
            let (owner, vdis) = contents(&scratch.point)?;
            drop(scratch);
            if !vdis.is_empty() {
                return Err(SmError::msg(
                    SmCode::SRExists,
                    format!(
                        "{} holds SR {} with {} VDIs",
                        dev.display(),
                        owner.unwrap_or_default(),
                        vdis.len()
                    ),
                ));
            }
        }
        fs::mkfs(runner, &dev, LABEL, sr.as_str()).map_err(run_err(SmCode::LVMFilesystem))?;
        let point = mount_point(cx)?;
        std::fs::create_dir_all(&point).map_err(|e| SmError::new(SmCode::LVMFilesystem, e))?;
        fs::mount(runner, &dev, &point, false).map_err(run_err(SmCode::LVMMount))?;
        let marked = layout::write_marker(&point, sr.as_str())
            .map_err(|e| SmError::new(SmCode::LVMFilesystem, e));
        fs::umount(runner, &point).map_err(run_err(SmCode::LVMUnMount))?;
        let _ = std::fs::remove_dir(&point);
        marked
    }

    fn sr_delete(&self, cx: &Ctx<'_>) -> SmResult<()> {
        let (dev, rdev) = device(cx)?;
        let sr = cx.sr_uuid()?;
        let runner = cx.host.runner.as_ref();
        let point = mount_point(cx)?;
        let (owner, vdis) = if is_mounted_here(&point, rdev)? {
            contents(&point)?
        } else {
            let sigs = device::signatures(runner, &dev).map_err(run_err(SmCode::SRUnavailable))?;
            match device::describe(&sigs) {
                None => return Ok(()),
                Some(what) if sigs.get("LABEL").map(String::as_str) != Some(LABEL) => {
                    return Err(SmError::msg(
                        SmCode::SRUnavailable,
                        format!("{} holds {what}, not SR {sr}", dev.display()),
                    ));
                }
                Some(_) => {
                    let scratch = Scratch::mount(cx, &dev)?;
                    contents(&scratch.point)?
                }
            }
        };
        if let Some(o) = owner.filter(|o| o != sr.as_str()) {
            return Err(SmError::msg(
                SmCode::SRUnavailable,
                format!("{} holds SR {o}, not {sr}", dev.display()),
            ));
        }
        if !vdis.is_empty() {
            return Err(SmError::msg(
                SmCode::SRNotEmpty,
                format!("{} VDIs remain: {}", vdis.len(), vdis.join(", ")),
            ));
        }
        self.sr_detach(cx)?;
        fs::wipe(runner, &dev).map_err(run_err(SmCode::WipefsFailure))
    }

    fn sr_attach(&self, cx: &Ctx<'_>) -> SmResult<()> {
        let (dev, rdev) = device(cx)?;
        let sr = cx.sr_uuid()?;
        let point = mount_point(cx)?;
        if !is_mounted_here(&point, rdev)? {
            std::fs::create_dir_all(&point).map_err(|e| SmError::new(SmCode::SRUnavailable, e))?;
            if let Err(e) = fs::mount(cx.host.runner.as_ref(), &dev, &point, false) {
                let _ = std::fs::remove_dir(&point);
                return Err(SmError::new(SmCode::SRUnavailable, e));
            }
        }
        match layout::read_marker(&point) {
            Some(owner) if owner == sr.as_str() => Ok(()),
            other => {
                let _ = fs::umount(cx.host.runner.as_ref(), &point);
                let _ = std::fs::remove_dir(&point);
                Err(SmError::msg(
                    SmCode::SRUnavailable,
                    format!(
                        "{} holds {}, not SR {sr}",
                        dev.display(),
                        other.map_or("no SR of ours".into(), |o| format!("SR {o}"))
                    ),
                ))
            }
        }
    }

    fn sr_detach(&self, cx: &Ctx<'_>) -> SmResult<()> {
        let point = mount_point(cx)?;
        if device::mounted_at(&point).is_some() {
            fs::umount(cx.host.runner.as_ref(), &point).map_err(run_err(SmCode::SRInUse))?;
        }
        match std::fs::remove_dir(&point) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(SmError::new(SmCode::SRInUse, e)),
        }
    }

    fn sr_probe(&self, cx: &Ctx<'_>) -> SmResult<String> {
        let (dev, _) = device(cx)?;
        let sigs = device::signatures(cx.host.runner.as_ref(), &dev)
            .map_err(run_err(SmCode::SRUnavailable))?;
        let mut found = Vec::new();
        if sigs.get("LABEL").map(String::as_str) == Some(LABEL)
            && let Some(uuid) = sigs.get("UUID")
        {
            let size = device::size(&dev).unwrap_or(0);
            found.push(crate::probe::ProbedSr {
                uuid: uuid.clone(),
                devlist: dev.display().to_string(),
                size,
            });
        }
        Ok(crate::probe::srlist_xml(&found))
    }
}
