//! The VDI calls of a file-based SR.
//!
//! **Snapshot and clone** are full copies (`qemu-img convert` into a new dynamic VHD, sparse):
//! the copy shares nothing with its source, so later writes to the source, or its deletion,
//! never reach it. Guarantees by the source's state:
//! - not attached, or attached read-only: nobody writes the image, so the copy is exactly the
//!   source at the moment of the call (qemu-img takes qemu's shared read lock, which a
//!   read-only qemu-nbd allows and a writer would refuse).
//! - attached read-write: the image is read *through the running NBD export*, i.e. as its
//!   server sees it, including every write acknowledged to the guest before each block is read.
//!   The copy is identical to the source at the moment of the call when the guest does not write
//!   during the copy (xapi quiesces or pauses a VM for a consistent snapshot); writes that race
//!   with the copy may or may not be in it, block by block, as with a crash-consistent snapshot.
//!
//! **Resize** grows only. qemu-img cannot resize VHDs, and growing in place means growing the
//! BAT, which sits in front of the data blocks and would force moving them: the same copy, with
//! more ways to fail half-way. We create a new, larger image beside the old one, copy the data in
//! (`qemu-img convert -n --target-is-zero`, zero blocks stay unallocated) and atomically rename
//! it over the old one: on any failure the temporary file is removed and the VDI is untouched.
//! The cost is proportional to the allocated data. An attached VDI is not resized (no
//! VDI_RESIZE_ONLINE).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sm_core::driver::{Ctx, VdiCreate};
use sm_core::errors::{SmCode, SmError, SmResult};
use sm_core::host::RunError;
use sm_core::host::clock::Utc;
use sm_core::ids::VdiUuid;
use sm_core::response::{AttachInfo, VdiLocation};
use sm_core::xenapi::VdiIntroduce;

use hostio::direct;
use hostio::nbd::Cache;
use hostio::serve::{self, Datapath};
use hostio::tapdisk::ImageType;
use hostio::vhd::{self, ImageInfo, VhdError, qemu_img};

use super::layout;
use crate::vdi_record::{
    check_xml_legal, forget, introduce_args, new_vdi_uuid, sm_config_with, sr_ref_without, vdi_ref,
};

/// sm_config key/value every VDI of ours carries (as sm's file SRs).
pub const SM_CONFIG_VDI_TYPE: (&str, &str) = ("vdi_type", "vhd");

/// Which copy `copy` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyKind {
    /// A snapshot (`is_a_snapshot`, `snapshot_of` the source).
    Snapshot,
    /// An independent writable clone.
    Clone,
}

/// The location of the VDI a call is about (`vdi_location`, else the VDI uuid), checked.
pub fn location(cx: &Ctx<'_>) -> SmResult<String> {
    let loc = match cx.req.vdi_location.as_deref().filter(|l| !l.is_empty()) {
        Some(l) => l.to_string(),
        None => cx.vdi_uuid()?.to_string(),
    };
    layout::check_location(&loc).map(str::to_string)
}

fn image_info(path: &Path) -> SmResult<ImageInfo> {
    vhd::read_info(path).map_err(|e| match &e {
        VhdError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            SmError::msg(SmCode::VDIMissing, format!("no image {}", path.display()))
        }
        _ => SmError::new(SmCode::VDILoad, e),
    })
}

/// The image of the call's VDI and what it holds; fault 144 VDIMissing when it is gone.
pub fn require_image(cx: &Ctx<'_>, dir: &Path) -> SmResult<(PathBuf, ImageInfo)> {
    let path = layout::image_path(dir, &location(cx)?);
    let info = image_info(&path)?;
    Ok((path, info))
}

/// Refuses `what` (fault `code`) on a differencing image: qemu-img reads a VHD without its
/// parents, so a copy or a resize through it would change what the disk holds.
fn refuse_chain(info: &ImageInfo, what: &str, code: SmCode) -> SmResult<()> {
    if info.footer.disk_type == vhd::DiskType::Differencing {
        return Err(SmError::msg(
            code,
            format!(
                "{what} of a VHD snapshot chain's leaf is not supported yet (sm's GC coalesces chains; its data is in its parents)"
            ),
        ));
    }
    Ok(())
}

/// The datapath of the call's VDI (a tapdisk where blktap is installed, else qemu-nbd) and its
/// server on this host, if one serves it.
fn datapath(cx: &Ctx<'_>, dir: &Path) -> SmResult<(Datapath, Option<serve::Open>)> {
    Datapath::lookup(
        cx.host.runner.as_ref(),
        &cx.host.paths,
        cx.sr_uuid()?.as_str(),
        cx.vdi_uuid()?.as_str(),
        ImageType::Vhd,
        &layout::image_path(dir, &location(cx)?),
    )
    .map_err(|e| SmError::new(SmCode::VDIUnavailable, e))
}

/// Rounds a requested size up to whole 512-byte sectors and checks it against the VHD limit.
fn checked_size(size: u64) -> SmResult<u64> {
    let rounded = size.div_ceil(512).saturating_mul(512);
    if size == 0 || rounded > vhd::MAX_SIZE {
        return Err(SmError::msg(
            SmCode::VDISize,
            format!(
                "{size} bytes: a VDI must be larger than 0 and at most {} bytes",
                vhd::MAX_SIZE
            ),
        ));
    }
    Ok(rounded)
}

fn remove_quietly(p: &Path) {
    if let Err(e) = std::fs::remove_file(p)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %p.display(), "cannot remove temporary file: {e}");
    }
}

/// Makes a new image at `dst` through the temporary `tmp` (`make` writes `tmp`), then renames it
/// into place: on any failure `tmp` is removed and `dst` never appears half-written.
fn build_image(
    dir: &Path,
    tmp: &Path,
    dst: &Path,
    code: SmCode,
    make: impl FnOnce(&Path) -> Result<(), RunError>,
) -> SmResult<ImageInfo> {
    let made = make(tmp)
        .map_err(|e| SmError::new(code, e))
        .and_then(|()| image_info(tmp))
        .and_then(|info| {
            std::fs::rename(tmp, dst).map_err(|e| SmError::new(code, e))?;
            layout::sync_dir(dir);
            Ok(info)
        });
    if made.is_err() {
        remove_quietly(tmp);
    }
    made
}

/// vdi_create: a new empty image, registered with `VDI.db_introduce`.
pub fn create(cx: &Ctx<'_>, dir: &Path, args: &VdiCreate) -> SmResult<VdiLocation> {
    check_xml_legal("name", &args.name_label)?;
    check_xml_legal("description", &args.name_description)?;
    let size = checked_size(args.size)?;
    let uuid = new_vdi_uuid(cx)?;
    let x = cx.xapi()?;
    let sr_ref = cx.sr_ref()?;
    let loc = uuid.to_string();
    let path = layout::image_path(dir, &loc);
    if path.exists() {
        return Err(SmError::msg(
            SmCode::VDIExists,
            format!("{} exists", path.display()),
        ));
    }
    let tmp = layout::temp_path(dir, &loc, "create", &layout::host_tag(&cx.req.host_ref));
    let runner = cx.host.runner.as_ref();
    let info = build_image(dir, &tmp, &path, SmCode::VDICreate, |t| {
        qemu_img::create(runner, t, size)
    })?;
    let mut rec = VdiIntroduce::new(&loc, &sr_ref, &loc);
    rec.name_label = args.name_label.clone();
    rec.name_description = args.name_description.clone();
    rec.ty = args.vdi_type.clone();
    rec.read_only = args.read_only;
    rec.sm_config = sm_config_with(&cx.req.vdi_sm_config, SM_CONFIG_VDI_TYPE);
    rec.virtual_size = info.footer.current_size;
    rec.physical_utilisation = info.file_size;
    rec.metadata_of_pool = args.metadata_of_pool.clone();
    rec.is_a_snapshot = args.is_a_snapshot;
    rec.snapshot_time = args.snapshot_time.clone();
    rec.snapshot_of = args.snapshot_of.clone();
    if let Err(e) = x.vdi_db_introduce(&rec) {
        remove_quietly(&path);
        return Err(SmError::new(SmCode::VDICreate, e));
    }
    Ok(VdiLocation {
        uuid: loc.clone(),
        location: loc,
    })
}

/// vdi_delete: removes the image and forgets the record. Idempotent.
pub fn delete(cx: &Ctx<'_>, dir: &Path) -> SmResult<()> {
    cx.xapi()?;
    if let (dp, Some(r)) = datapath(cx, dir)? {
        return Err(SmError::msg(
            SmCode::VDIInUse,
            format!("attached on this host ({} pid {})", dp.kind().name(), r.pid),
        ));
    }
    let path = layout::image_path(dir, &location(cx)?);
    match std::fs::remove_file(&path) {
        Ok(()) => layout::sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(SmError::new(SmCode::VDIDelete, e)),
    }
    forget(cx)
}

/// vdi_attach: prepares the datapath and returns where it is. The image is opened here (the
/// export started) only when no other host has the VDI active: xapi attaches a VDI on a
/// migration target while the source host still has it open read-write, and opening it then
/// would both fail on the image lock and cache a block table the source is still changing. In
/// that case vdi_activate opens it, after the source's vdi_deactivate closed it (what blktap
/// does for every VDI). In the common case activation is then only bookkeeping. Idempotent.
pub fn attach(cx: &Ctx<'_>, dir: &Path, writable: bool) -> SmResult<AttachInfo> {
    let (path, info) = require_image(cx, dir)?;
    let (dp, open) = datapath(cx, dir)?;
    if info.footer.disk_type == vhd::DiskType::Differencing && dp.kind() != serve::Kind::Tapdisk {
        return Err(SmError::msg(
            SmCode::VDIUnavailable,
            format!(
                "a differencing VHD is served only by tapdisk, which reads its parents; {} would show the leaf alone",
                dp.kind().name()
            ),
        ));
    }
    let elsewhere = match cx.has_session() {
        true => crate::activation::active_elsewhere(cx)?,
        false => None,
    };
    match elsewhere {
        Some(host) => {
            tracing::info!(%host, "the VDI is active on another host: opening it at vdi_activate")
        }
        None => open_image(cx, &dp, open.as_ref(), &path, writable)?,
    }
    tracing::info!(server = dp.kind().name(), params = ?dp.params(), params_nbd = %dp.uri(), "vdi_attach: datapath");
    let (o_direct, o_direct_reason) = if direct::supported(&path) {
        (true, String::new())
    } else {
        (
            false,
            format!(
                "the SR's filesystem does not support O_DIRECT; {} uses the page cache",
                dp.kind().name()
            ),
        )
    };
    Ok(AttachInfo {
        params: dp.params(),
        params_nbd: dp.uri(),
        o_direct,
        o_direct_reason,
        xenstore_data: BTreeMap::new(),
    })
}

/// Opens the image: starts the tapdisk or qemu-nbd behind the `params_nbd` socket (read-only
/// unless `writable`). Idempotent; an image open read-only cannot be re-opened writable (24).
pub fn start_export(cx: &Ctx<'_>, dir: &Path, writable: bool) -> SmResult<()> {
    let (dp, open) = datapath(cx, dir)?;
    open_image(
        cx,
        &dp,
        open.as_ref(),
        &layout::image_path(dir, &location(cx)?),
        writable,
    )
}

/// [`start_export`] on a datapath already looked up (`open`: its server, if any).
fn open_image(
    cx: &Ctx<'_>,
    dp: &Datapath,
    open: Option<&serve::Open>,
    path: &Path,
    writable: bool,
) -> SmResult<()> {
    match open {
        Some(r) if r.read_only && writable => Err(SmError::msg(
            SmCode::VDIInUse,
            "already open read-only on this host",
        )),
        Some(_) => Ok(()),
        None => {
            let cache = if direct::supported(path) {
                Cache::Direct
            } else {
                Cache::Writeback
            };
            let open = dp
                .start(cx.host.runner.as_ref(), !writable, cache)
                .map_err(|err| SmError::new(SmCode::VDIUnavailable, err))?;
            tracing::info!(server = dp.kind().name(), pid = open.pid, socket = %open.socket.display(), "image opened");
            Ok(())
        }
    }
}

/// Closes the image: ends its tapdisk or qemu-nbd. Idempotent.
pub fn stop_export(cx: &Ctx<'_>, dir: &Path) -> SmResult<()> {
    let (dp, open) = datapath(cx, dir)?;
    crate::datapath::refuse_if_served(&dp, open.as_ref())?;
    dp.stop(cx.host.runner.as_ref(), open.as_ref())
        .map_err(|e| SmError::new(SmCode::VDIUnavailable, e))
}

/// vdi_detach: closes the image if it is still open (attached but never activated, or a host
/// that crashed between activate and deactivate). Idempotent.
pub fn detach(cx: &Ctx<'_>, dir: &Path) -> SmResult<()> {
    stop_export(cx, dir)
}

/// vdi_snapshot / vdi_clone: a full, independent copy registered as a new VDI (see the module
/// documentation for what it guarantees when the source is attached).
pub fn copy(cx: &Ctx<'_>, dir: &Path, kind: CopyKind) -> SmResult<VdiLocation> {
    let code = match kind {
        CopyKind::Snapshot => SmCode::VDISnapshot,
        CopyKind::Clone => SmCode::VDIClone,
    };
    let (src_path, src_info) = require_image(cx, dir)?;
    refuse_chain(&src_info, "a copy", code)?;
    let x = cx.xapi()?;
    let sr_ref = cx.sr_ref()?;
    let src_ref = vdi_ref(cx)?;
    let src = x
        .vdi_get_record(&src_ref)
        .map_err(|e| SmError::new(code, e))?;
    let new = VdiUuid::random().to_string();
    let dst = layout::image_path(dir, &new);
    let tmp = layout::temp_path(dir, &new, "copy", &layout::host_tag(&cx.req.host_ref));
    let (dp, open) = datapath(cx, dir)?;
    let runner = cx.host.runner.as_ref();
    let info = match (&open, dp.kind()) {
        // qemu-nbd holds the image's writes in its own state: read through it.
        (Some(r), serve::Kind::QemuNbd) if !r.read_only => {
            let source = qemu_img::Source::Nbd {
                socket: &r.socket,
                export: &r.export,
            };
            build_image(dir, &tmp, &dst, code, |t| {
                qemu_img::convert_to_new(runner, source, t)
            })?
        }
        // tapdisk writes through to the file: pause its I/O while the file is copied, so the
        // copy is one point in time.
        (Some(r), serve::Kind::Tapdisk) => Datapath::with_paused(runner, r, || {
            build_image(dir, &tmp, &dst, code, |t| {
                qemu_img::convert_to_new(runner, qemu_img::Source::Vhd(&src_path), t)
            })
        })
        .map_err(|e| SmError::new(code, e))??,
        _ => build_image(dir, &tmp, &dst, code, |t| {
            qemu_img::convert_to_new(runner, qemu_img::Source::Vhd(&src_path), t)
        })?,
    };
    let mut rec = VdiIntroduce::new(&new, &sr_ref, &new);
    rec.name_label = src.name_label.clone();
    rec.name_description = src.name_description.clone();
    rec.ty = if src.ty.is_empty() {
        "user".into()
    } else {
        src.ty.clone()
    };
    rec.sm_config = sm_config_with(&BTreeMap::new(), SM_CONFIG_VDI_TYPE);
    rec.virtual_size = info.footer.current_size;
    rec.physical_utilisation = info.file_size;
    if kind == CopyKind::Snapshot {
        rec.is_a_snapshot = true;
        rec.snapshot_of = src_ref;
        rec.snapshot_time = Utc::now().xenapi();
        rec.read_only = false;
    }
    if let Err(err) = x.vdi_db_introduce(&rec) {
        remove_quietly(&dst);
        return Err(SmError::new(code, err));
    }
    Ok(VdiLocation {
        uuid: new.clone(),
        location: new,
    })
}

/// vdi_resize: grows the image (see the module documentation for how).
pub fn resize(cx: &Ctx<'_>, dir: &Path, new_size: u64) -> SmResult<VdiLocation> {
    let size = checked_size(new_size)?;
    let loc = location(cx)?;
    let (path, info) = require_image(cx, dir)?;
    refuse_chain(&info, "resizing", SmCode::VDISize)?;
    let current = info.footer.current_size;
    let uuid = cx.vdi_uuid()?.to_string();
    if size < current {
        return Err(SmError::msg(
            SmCode::VDISize,
            format!("shrinking from {current} to {size} bytes is not supported"),
        ));
    }
    if let (dp, Some(r)) = datapath(cx, dir)? {
        return Err(SmError::msg(
            SmCode::VDIInUse,
            format!(
                "attached on this host ({} pid {}); detach to resize",
                dp.kind().name(),
                r.pid
            ),
        ));
    }
    if size > current {
        let tmp = layout::temp_path(dir, &loc, "resize", &layout::host_tag(&cx.req.host_ref));
        let runner = cx.host.runner.as_ref();
        let grown = qemu_img::create(runner, &tmp, size)
            .and_then(|()| qemu_img::convert_into_existing(runner, &path, &tmp))
            .map_err(|e| SmError::new(SmCode::VDIResize, e))
            .and_then(|()| {
                std::fs::File::open(&tmp)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| SmError::new(SmCode::VDIResize, e))?;
                std::fs::rename(&tmp, &path).map_err(|e| SmError::new(SmCode::VDIResize, e))?;
                layout::sync_dir(dir);
                Ok(())
            });
        if let Err(e) = grown {
            remove_quietly(&tmp);
            return Err(e);
        }
    }
    if cx.has_session() {
        refresh_record(cx, &path)?;
    }
    Ok(VdiLocation {
        uuid,
        location: loc,
    })
}

/// Writes the image's sizes into the VDI record.
fn refresh_record(cx: &Ctx<'_>, path: &Path) -> SmResult<()> {
    let info = image_info(path)?;
    let x = cx.xapi()?;
    let vdi = vdi_ref(cx)?;
    x.vdi_set_virtual_size(&vdi, info.footer.current_size)?;
    x.vdi_set_physical_utilisation(&vdi, info.file_size)?;
    Ok(())
}

/// vdi_update: the record's sizes from the image.
pub fn update(cx: &Ctx<'_>, dir: &Path) -> SmResult<()> {
    let (path, _) = require_image(cx, dir)?;
    refresh_record(cx, &path)
}

/// vdi_introduce: registers the image at `vdi_location` under `new_uuid`.
pub fn introduce(cx: &Ctx<'_>, dir: &Path) -> SmResult<VdiLocation> {
    let (new_uuid, loc) = introduce_args(cx)?;
    let loc = layout::check_location(loc)?.to_string();
    let path = layout::image_path(dir, &loc);
    let info = vhd::read_info(&path).map_err(|e| SmError::new(SmCode::VDILoad, e))?;
    let x = cx.xapi()?;
    let sr_ref = sr_ref_without(cx, &loc)?;
    let mut rec = VdiIntroduce::new(new_uuid.as_str(), &sr_ref, &loc);
    rec.sm_config = sm_config_with(&cx.req.vdi_sm_config, SM_CONFIG_VDI_TYPE);
    rec.virtual_size = info.footer.current_size;
    rec.physical_utilisation = info.file_size;
    x.vdi_db_introduce(&rec)
        .map_err(|e| SmError::new(SmCode::VDICreate, e))?;
    Ok(VdiLocation {
        uuid: new_uuid.to_string(),
        location: loc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_to_sectors_and_respect_the_limit() {
        assert_eq!(checked_size(1).unwrap(), 512);
        assert_eq!(checked_size(100 << 20).unwrap(), 100 << 20);
        assert_eq!(checked_size(0).unwrap_err().code, SmCode::VDISize);
        assert_eq!(
            checked_size(vhd::MAX_SIZE + 1).unwrap_err().code,
            SmCode::VDISize
        );
        assert_eq!(checked_size(u64::MAX).unwrap_err().code, SmCode::VDISize);
    }
}
