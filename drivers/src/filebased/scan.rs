//! sr_scan and sr_update: reconcile the VDI records with the images in the SR directory, keyed
//! by location (sm's ScanRecord), and report the SR's sizes.
//!
//! One directory listing, one 512-byte footer read per image and one `VDI.get_all_records_where`
//! per scan; records are written only when something changed, because xapi rescans dirty and
//! auto-scan SRs every 30 s. An image whose footer cannot be read is logged and skipped, and its
//! record (if any) kept: one damaged file does not fail the scan or lose a record (contrast sm,
//! whose scan fails with fault 40 on a single bad VHD).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use sm_core::driver::Ctx;
use sm_core::errors::{SmCode, SmError, SmResult};
use sm_core::ids::VdiUuid;
use sm_core::xenapi::VdiIntroduce;

use super::layout;
use super::vdi::SM_CONFIG_VDI_TYPE;
use crate::vhd::{self, ImageInfo};

fn images(dir: &Path) -> SmResult<BTreeMap<String, Option<ImageInfo>>> {
    let locs = layout::list_images(dir).map_err(|e| SmError::new(SmCode::SRScan, e))?;
    Ok(locs
        .into_iter()
        .map(|loc| {
            let info = match vhd::read_info(&layout::image_path(dir, &loc)) {
                Ok(i) => Some(i),
                Err(e) => {
                    tracing::warn!(location = %loc, "skipping unreadable image: {}", sm_core::errors::error_chain(&e));
                    None
                }
            };
            (loc, info)
        })
        .collect())
}

fn set_sr_sizes(cx: &Ctx<'_>, dir: &Path, virtual_allocation: u64) -> SmResult<()> {
    let (size, used) = layout::fs_sizes(dir)?;
    let sr = cx.sr_ref()?;
    cx.xapi()?
        .sr_set_sizes(&sr, size, used, virtual_allocation)?;
    Ok(())
}

/// sr_scan.
pub fn scan(cx: &Ctx<'_>, dir: &Path) -> SmResult<()> {
    let x = cx.xapi()?;
    let sr = cx.sr_ref()?;
    let found = images(dir)?;
    let records = x
        .vdi_records_of_sr(&sr)
        .map_err(|e| SmError::new(SmCode::SRScan, e))?;
    let by_location: BTreeMap<&str, _> = records.iter().map(|r| (r.location.as_str(), r)).collect();
    let mut taken: BTreeSet<String> = records.iter().map(|r| r.uuid.clone()).collect();
    let mut virtual_allocation = 0u64;
    for (loc, info) in &found {
        let Some(info) = info else { continue };
        virtual_allocation = virtual_allocation.saturating_add(info.footer.current_size);
        match by_location.get(loc.as_str()) {
            Some(rec) => {
                if rec.virtual_size != info.footer.current_size {
                    x.vdi_set_virtual_size(&rec.ref_, info.footer.current_size)?;
                }
                if rec.physical_utilisation != info.file_size {
                    x.vdi_set_physical_utilisation(&rec.ref_, info.file_size)?;
                }
            }
            None => {
                let uuid = match VdiUuid::new(loc) {
                    Ok(u) if !taken.contains(u.as_str()) => u.to_string(),
                    _ => VdiUuid::random().to_string(),
                };
                taken.insert(uuid.clone());
                let mut rec = VdiIntroduce::new(&uuid, &sr, loc);
                rec.name_label = loc.clone();
                rec.sm_config
                    .insert(SM_CONFIG_VDI_TYPE.0.into(), SM_CONFIG_VDI_TYPE.1.into());
                rec.virtual_size = info.footer.current_size;
                rec.physical_utilisation = info.file_size;
                tracing::info!(location = %loc, %uuid, "scan: introducing a new VDI");
                x.vdi_db_introduce(&rec)
                    .map_err(|e| SmError::new(SmCode::SRScan, e))?;
            }
        }
    }
    for rec in &records {
        if !found.contains_key(&rec.location) {
            tracing::info!(location = %rec.location, uuid = %rec.uuid, "scan: forgetting a vanished VDI");
            x.vdi_db_forget(&rec.ref_)
                .map_err(|e| SmError::new(SmCode::SRScan, e))?;
        }
    }
    set_sr_sizes(cx, dir, virtual_allocation)
}

/// sr_update: the SR's physical size, utilisation and virtual allocation.
pub fn update_sizes(cx: &Ctx<'_>, dir: &Path) -> SmResult<()> {
    let va = images(dir)?
        .values()
        .flatten()
        .fold(0u64, |a, i| a.saturating_add(i.footer.current_size));
    set_sr_sizes(cx, dir, va)
}
