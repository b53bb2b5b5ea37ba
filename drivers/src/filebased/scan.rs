//! sr_scan and sr_update of a file-based SR: the images in the SR directory, read with one
//! directory listing and one 512-byte footer read per image, reconciled with the VDI records by
//! [`crate::scan`]. sm's snapshot chains are read as sm reads them: a differencing VHD's parents
//! are opened through its locators (and must be images of this SR), hidden parents (sm's base
//! copies) are not introduced and their records never forgotten, and a leaf gets
//! `sm_config:vhd-parent` with its sizes from its own footer and file. An image whose footer
//! cannot be read is logged and skipped, and its record (if any) kept (contrast sm, whose scan
//! fails with fault 40 on a single bad VHD). A directory holding sm content we do not handle
//! (a broken chain, a parent that is not hidden, raw/QCOW2 images, CBT logs) is refused whole
//! by sr_attach and sr_scan ([`refuse_sm_content`]), before any record is touched.

use std::collections::{BTreeMap, BTreeSet};
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
    /// Images by location: leaves (`Some`), and `None` for hidden parents and images whose
    /// footer cannot be read (their records are kept, nothing is introduced for them).
    found: BTreeMap<String, Option<Found>>,
    /// What of sm's formats is there that we do not handle: broken chains, parents that are
    /// not hidden, and sm's other image kinds.
    foreign: Vec<Item>,
}

/// Reads `dir`: one listing, one footer per image.
fn survey(dir: &Path) -> SmResult<Survey> {
    let listing_err = |e| SmError::new(SmCode::SRScan, e);
    let mut locs = Vec::new();
    let mut foreign = Vec::new();
    let mut found = BTreeMap::new();
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
    let mut images = BTreeMap::new();
    for loc in locs {
        match image(dir, &loc) {
            Ok(i) => {
                images.insert(loc.clone(), i);
            }
            Err(Unreadable::Footer(e)) => {
                tracing::warn!(location = %loc, "skipping unreadable image: {}", sm_core::errors::error_chain(&e));
            }
            Err(Unreadable::Chain(e)) => {
                tracing::warn!(location = %loc, "parent chain cannot be opened: {}", sm_core::errors::error_chain(&e));
                foreign.push(Item {
                    name: format!("{loc}{}", layout::VHD_EXT),
                    kind: "differencing VHD whose parent chain cannot be opened in this SR",
                });
                continue;
            }
        }
        found.entry(loc).or_insert(None);
    }
    let parents: BTreeSet<&String> = images.values().filter_map(|i| i.parent.as_ref()).collect();
    for (loc, i) in &images {
        if i.hidden {
            // sm's base copies: kept as they are, never introduced (nor forgotten).
            continue;
        }
        if parents.contains(loc) {
            foreign.push(Item {
                name: format!("{loc}{}", layout::VHD_EXT),
                kind: "VHD with children that is not hidden: writing it would change them",
            });
            continue;
        }
        let mut sm_config = BTreeMap::from([(
            SM_CONFIG_VDI_TYPE.0.to_string(),
            SM_CONFIG_VDI_TYPE.1.to_string(),
        )]);
        if let Some(p) = &i.parent {
            sm_config.insert(SM_CONFIG_VHD_PARENT.to_string(), p.clone());
        }
        found.insert(
            loc.clone(),
            Some(Found {
                virtual_size: i.virtual_size,
                physical_utilisation: i.file_size,
                sm_config,
            }),
        );
    }
    foreign.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Survey { found, foreign })
}

/// The sm_config key naming a leaf's parent image (sm's, for snapshot chains).
pub const SM_CONFIG_VHD_PARENT: &str = "vhd-parent";

/// One image of the SR directory, as the survey needs it.
struct Image {
    virtual_size: u64,
    file_size: u64,
    hidden: bool,
    /// The location of its parent, for a differencing image.
    parent: Option<String>,
}

enum Unreadable {
    Footer(hostio::vhd::VhdError),
    Chain(::vhd::VhdError),
}

/// Reads the image of `loc`: its footer, and for a differencing image its parent chain (each
/// parent opened through its locators and checked against the child's header), which must
/// stay inside `dir` under sm's names.
fn image(dir: &Path, loc: &str) -> Result<Image, Unreadable> {
    let path = layout::image_path(dir, loc);
    let info = hostio::vhd::read_info(&path).map_err(Unreadable::Footer)?;
    let mut img = Image {
        virtual_size: info.footer.current_size,
        file_size: info.file_size,
        hidden: info.footer.is_hidden(),
        parent: None,
    };
    if info.footer.disk_type != vhd::DiskType::Differencing {
        return Ok(img);
    }
    let chain = ::vhd::Chain::open(&path, false).map_err(Unreadable::Chain)?;
    let outside = |p: &Path| ::vhd::VhdError::Unsupported {
        what: "parent",
        value: format!("{} is not an image of this SR", p.display()),
    };
    let canon_dir = std::fs::canonicalize(dir).unwrap_or(dir.to_path_buf());
    let parent = chain.layers().get(1).map(|l| l.path().to_path_buf());
    if let Some(p) = parent {
        let real = std::fs::canonicalize(&p).unwrap_or(p.clone());
        let stem = real
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(layout::VHD_EXT))
            .filter(|s| layout::check_location(s).is_ok());
        match stem {
            Some(s) if real.parent() == Some(canon_dir.as_path()) => {
                img.parent = Some(s.to_string())
            }
            _ => return Err(Unreadable::Chain(outside(&p))),
        }
    }
    Ok(img)
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
