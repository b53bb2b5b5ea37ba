//! sr_scan and sr_update of a file-based SR: the images in the SR directory, read with one
//! directory listing and one 512-byte footer read per image, reconciled with the VDI records by
//! [`crate::scan`]. An image whose footer cannot be read is logged and skipped, and its record
//! (if any) kept (contrast sm, whose scan fails with fault 40 on a single bad VHD). A directory
//! holding sm content we do not handle (VHD chains, hidden base copies, raw/QCOW2 images, CBT
//! logs) is refused whole by sr_attach and sr_scan ([`refuse_sm_content`]), before any record is
//! touched.

use std::collections::BTreeMap;
use std::path::Path;

use hostio::vhd;
use sm_core::driver::Ctx;
use sm_core::errors::{SmCode, SmError, SmResult};

use super::layout;
use super::vdi::SM_CONFIG_VDI_TYPE;
use crate::foreign::Item;
use crate::scan::{self, Found, SrSizes};

/// Extensions of sm's other image kinds in a file SR (raw, QCOW2, CBT logs).
const SM_ONLY_EXTS: [(&str, &str); 3] = [
    (".raw", "raw image of sm's"),
    (".qcow2", "QCOW2 image"),
    (".cbtlog", "changed-block-tracking log of sm's"),
];

/// What a survey of an SR directory found.
struct Survey {
    /// Our images by location (`None` for one whose footer cannot be read).
    found: BTreeMap<String, Option<Found>>,
    /// What of sm's formats is there that we do not handle: differencing or hidden VHDs
    /// (snapshot chains and their base copies) and sm's other image kinds.
    foreign: Vec<Item>,
}

/// Reads `dir`: one listing, one footer per image.
fn survey(dir: &Path) -> SmResult<Survey> {
    let listing_err = |e| SmError::new(SmCode::SRScan, e);
    let mut locs = Vec::new();
    let mut foreign = Vec::new();
    for e in std::fs::read_dir(dir).map_err(listing_err)? {
        let name = e.map_err(listing_err)?.file_name();
        let Some(name) = name.to_str() else { continue };
        let with_stem = |ext: &str| {
            name.strip_suffix(ext)
                .filter(|stem| layout::check_location(stem).is_ok())
        };
        if let Some(loc) = with_stem(layout::VHD_EXT) {
            locs.push(loc.to_string());
        } else if let Some((_, kind)) = SM_ONLY_EXTS
            .iter()
            .find(|(ext, _)| with_stem(ext).is_some())
        {
            foreign.push(Item {
                name: name.to_string(),
                kind,
            });
        }
    }
    locs.sort();
    let sm_config = BTreeMap::from([(
        SM_CONFIG_VDI_TYPE.0.to_string(),
        SM_CONFIG_VDI_TYPE.1.to_string(),
    )]);
    let mut found = BTreeMap::new();
    for loc in locs {
        let info = match vhd::read_info(&layout::image_path(dir, &loc)) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(location = %loc, "skipping unreadable image: {}", sm_core::errors::error_chain(&e));
                found.insert(loc, None);
                continue;
            }
        };
        let kind = if info.footer.disk_type == vhd::DiskType::Differencing {
            Some("differencing VHD: its data continues in a parent image")
        } else if info.footer.is_hidden() {
            Some("hidden VHD: sm's base copy of a snapshot chain")
        } else {
            None
        };
        if let Some(kind) = kind {
            foreign.push(Item {
                name: format!("{loc}{}", layout::VHD_EXT),
                kind,
            });
            continue;
        }
        found.insert(
            loc,
            Some(Found {
                virtual_size: info.footer.current_size,
                physical_utilisation: info.file_size,
                sm_config: sm_config.clone(),
            }),
        );
    }
    foreign.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Survey { found, foreign })
}

impl Survey {
    /// Fault 47 naming what of sm's `dir` holds, if anything.
    fn refuse_foreign(&self, dir: &Path) -> SmResult<()> {
        crate::foreign::refuse(&format!("SR directory {}", dir.display()), &self.foreign)
    }
}

/// Fault 47 when `dir` holds sm content we do not handle (see [`survey`]); nothing is changed.
pub fn refuse_sm_content(dir: &Path) -> SmResult<()> {
    survey(dir)?.refuse_foreign(dir)
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
    let s = survey(dir)?;
    s.refuse_foreign(dir)?;
    scan::reconcile(cx, &s.found, sizes(dir, &s.found)?)
}

/// sr_update: the SR's physical size, utilisation and virtual allocation.
pub fn update_sizes(cx: &Ctx<'_>, dir: &Path) -> SmResult<()> {
    let found = survey(dir)?.found;
    scan::set_sr_sizes(cx, sizes(dir, &found)?)
}
