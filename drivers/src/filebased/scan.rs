//! sr_scan and sr_update of a file-based SR: the images in the SR directory, read with one
//! directory listing and one 512-byte footer read per image, reconciled with the VDI records by
//! [`crate::scan`]. An image whose footer cannot be read is logged and skipped, and its record
//! (if any) kept (contrast sm, whose scan fails with fault 40 on a single bad VHD).

use std::collections::BTreeMap;
use std::path::Path;

use hostio::vhd;
use sm_core::driver::Ctx;
use sm_core::errors::{SmCode, SmError, SmResult};

use super::layout;
use super::vdi::SM_CONFIG_VDI_TYPE;
use crate::scan::{self, Found, SrSizes};

fn images(dir: &Path) -> SmResult<BTreeMap<String, Option<Found>>> {
    let locs = layout::list_images(dir).map_err(|e| SmError::new(SmCode::SRScan, e))?;
    let sm_config = BTreeMap::from([(
        SM_CONFIG_VDI_TYPE.0.to_string(),
        SM_CONFIG_VDI_TYPE.1.to_string(),
    )]);
    Ok(locs
        .into_iter()
        .map(|loc| {
            let found = match vhd::read_info(&layout::image_path(dir, &loc)) {
                Ok(i) => Some(Found {
                    virtual_size: i.footer.current_size,
                    physical_utilisation: i.file_size,
                    sm_config: sm_config.clone(),
                }),
                Err(e) => {
                    tracing::warn!(location = %loc, "skipping unreadable image: {}", sm_core::errors::error_chain(&e));
                    None
                }
            };
            (loc, found)
        })
        .collect())
}

fn sizes(dir: &Path, found: &BTreeMap<String, Option<Found>>) -> SmResult<SrSizes> {
    let (physical_size, physical_utilisation) = layout::fs_sizes(dir)?;
    Ok(SrSizes {
        physical_size,
        physical_utilisation,
        virtual_allocation: scan::virtual_allocation(found),
    })
}

/// sr_scan.
pub fn scan(cx: &Ctx<'_>, dir: &Path) -> SmResult<()> {
    let found = images(dir)?;
    scan::reconcile(cx, &found, sizes(dir, &found)?)
}

/// sr_update: the SR's physical size, utilisation and virtual allocation.
pub fn update_sizes(cx: &Ctx<'_>, dir: &Path) -> SmResult<()> {
    let found = images(dir)?;
    scan::set_sr_sizes(cx, sizes(dir, &found)?)
}
