//! vdi_snapshot and vdi_clone: a full, independent copy of the source LV, read from a
//! copy-on-write snapshot taken at the moment of the call.
//!
//! Steps, all under the SR lock on the SR master:
//! 1. one report: the source LV, the extent size, the free space;
//! 2. `lvcreate xsm-copy-<new>`: a thick LV of the source's size (not zeroed: every byte is
//!    written);
//! 3. `lvcreate -s xsm-cow-<new>`: an LVM snapshot of the source, atomic even while a VM writes
//!    to it (lvm2 suspends the source's mapping for an instant); an inactive source is activated
//!    first (a snapshot is active exactly when its origin is) and deactivated again at the end;
//! 4. every byte copied from the snapshot into the new LV (direct I/O, progress reported to the
//!    xapi task when there is one);
//! 5. one report: the snapshot must still be valid (had writes to the source overflowed its
//!    copy-on-write area, it would be invalid, and reads from it fail; the call then fails with
//!    a fault that says so);
//! 6. the snapshot removed, `xsm-copy-<new>` renamed to `LV-<new>` (one atomic metadata commit)
//!    and deactivated, the record introduced.
//!
//! On any failure everything made so far is removed and the source is left as it was (also its
//! activation), so a failed call changes nothing. The new VDI shares nothing with its source:
//! later writes to the source, or its deletion, never reach it.
//!
//! The copy-on-write area is as large as the source can ever need (every chunk of it, plus
//! lvm2's exception tables: [`sm_core::lvm::extent::cow_max`]) when the VG has room for that
//! besides the copy; then no amount of writing during the copy can invalidate the snapshot.
//! Otherwise it takes the room there is, at least a tenth of the source when the source is open
//! (a running VM may write) and one extent when it is not (nobody writes: this call holds the
//! VDI's lock, so no activation can start), else fault 44 SRNoSpace. So a copy needs the
//! source's size free, plus up to the source's size again for the snapshot while it runs.

use std::time::{Duration, Instant};

use hostio::blockcopy;
use sm_core::driver::Ctx;
use sm_core::errors::{SmCode, SmError, SmResult};
use sm_core::host::clock::Utc;
use sm_core::ids::VdiUuid;
use sm_core::lvm::extent::{DEFAULT_CHUNK, cow_max};
use sm_core::lvm::{LvCreate, LvmOp, Vg};
use sm_core::response::VdiLocation;
use sm_core::xenapi::VdiIntroduce;

use super::vdi::{location, require_free, require_lv};
use super::{SrVg, layout};
use crate::vdi_record::{sm_config_with, task, vdi_ref};

/// Which copy [`copy`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyKind {
    /// A snapshot (`is_a_snapshot`, `snapshot_of` the source).
    Snapshot,
    /// An independent writable clone.
    Clone,
}

impl CopyKind {
    fn code(self) -> SmCode {
        match self {
            CopyKind::Snapshot => SmCode::VDISnapshot,
            CopyKind::Clone => SmCode::VDIClone,
        }
    }
}

/// How often progress goes to the xapi task at most.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// The size of the copy-on-write area for a copy of an `origin`-byte LV (see the module
/// documentation), or `None` when the VG lacks room.
pub fn cow_size(vg: &Vg, origin: u64, origin_open: bool) -> Option<u64> {
    let extent = vg.extent_size;
    let full = vg.round_up(cow_max(origin, DEFAULT_CHUNK))?;
    let room = vg.free.checked_sub(origin)? / extent * extent;
    let least = if origin_open {
        vg.round_up(origin / 10)?.max(extent)
    } else {
        extent
    };
    let cow = full.min(room);
    (cow >= least.min(full)).then_some(cow)
}

/// What a copy made so far, removed again on failure.
struct Made<'s, 'a> {
    sr: &'s SrVg<'a>,
    copy: Option<String>,
    cow: Option<String>,
    reactivated_source: Option<String>,
}

impl Made<'_, '_> {
    /// Removes what was made and restores the source's activation; best effort, logged.
    fn undo(&mut self) {
        for lv in [self.cow.take(), self.copy.take()].into_iter().flatten() {
            if let Err(e) = self.sr.lvm.lv_remove(&self.sr.name, &lv) {
                tracing::warn!(lv, "cannot remove {lv} after a failed copy: {e}");
            }
        }
        self.restore_source();
    }

    fn restore_source(&mut self) {
        if let Some(src) = self.reactivated_source.take()
            && let Err(e) = self.sr.lvm.lv_activate(&self.sr.name, &src, false)
        {
            tracing::warn!(lv = src, "cannot deactivate the source again: {e}");
        }
    }
}

/// vdi_snapshot / vdi_clone (see the module documentation).
pub fn copy(cx: &Ctx<'_>, sr: &SrVg<'_>, kind: CopyKind) -> SmResult<VdiLocation> {
    sr.require_master(LvmOp::LvSnapshot)?;
    let code = kind.code();
    let loc = location(cx)?;
    let x = cx.xapi()?;
    let sr_ref = cx.sr_ref()?;
    let src_ref = vdi_ref(cx)?;
    let src_rec = x
        .vdi_get_record(&src_ref)
        .map_err(|e| SmError::new(code, e))?;
    let mut vg = sr.require()?;
    // A copy killed earlier left its copy and its copy-on-write snapshot of a source: the
    // snapshot slows that source's writes and takes room until it is gone.
    if super::sr::remove_stale_temporaries(cx, sr, &vg)? {
        vg = sr.require()?;
    }
    let src = require_lv(sr, &vg, &loc)?.clone();
    let size = src.size;
    require_free(&vg, size, "the copy")?;
    let cow_bytes = cow_size(&vg, size, src.attr.is_open()).ok_or_else(|| {
        SmError::msg(
            SmCode::SRNoSpace,
            format!(
                "copying {} bytes needs them free plus room for a copy-on-write snapshot of the \
                 source while the copy runs; volume group {} has {} bytes free",
                size, vg.name, vg.free
            ),
        )
    })?;
    let new = VdiUuid::random();
    let (copy_lv, cow_lv, new_lv) = (
        layout::copy_name(&new),
        layout::cow_name(&new),
        layout::lv_name(&new),
    );
    let mut made = Made {
        sr,
        copy: None,
        cow: None,
        reactivated_source: None,
    };
    let result = (|| -> SmResult<()> {
        sr.lvm.lv_create(
            &sr.name,
            &copy_lv,
            size,
            &LvCreate {
                activate: true,
                zero: false,
                tags: if src.attr.is_active() {
                    Vec::new()
                } else {
                    vec![layout::reactivated_tag(&src.name)]
                },
            },
        )?;
        made.copy = Some(copy_lv.clone());
        // A snapshot shares its origin's activation: lvm2 will not activate one alone. An
        // inactive source is activated first (nobody writes to it: this call holds its lock),
        // so the snapshot is created active, and deactivated again afterwards.
        if !src.attr.is_active() {
            sr.lvm.lv_activate(&sr.name, &src.name, true)?;
            made.reactivated_source = Some(src.name.clone());
        }
        sr.lvm
            .lv_snapshot(&sr.name, &src.name, &cow_lv, cow_bytes)?;
        made.cow = Some(cow_lv.clone());
        let started = Instant::now();
        let mut last = Instant::now();
        let progress_task = task(cx);
        let copied = blockcopy::copy(
            &sr.lv_path(&cow_lv),
            &sr.lv_path(&copy_lv),
            size,
            &mut |done| {
                if let Some(t) = progress_task
                    && last.elapsed() >= PROGRESS_EVERY
                {
                    last = Instant::now();
                    let p = done as f64 / size.max(1) as f64;
                    if let Err(e) = x.task_set_progress(t, p) {
                        tracing::warn!("cannot report progress: {e}");
                    }
                }
            },
        );
        // An overflowing snapshot turns invalid and its reads fail (EIO): the validity check
        // comes first, so such a failure is reported as what it is.
        let after = sr.require()?;
        match after.lv(&cow_lv) {
            Some(c) if !c.attr.is_invalid_snapshot() => {
                copied.map_err(|e| SmError::new(code, e))?;
            }
            None => {
                copied.map_err(|e| SmError::new(code, e))?;
                return Err(SmError::msg(
                    code,
                    format!("the copy-on-write snapshot {cow_lv} vanished during the copy"),
                ));
            }
            Some(_) => {
                return Err(SmError::msg(
                    code,
                    format!(
                        "the copy-on-write snapshot of {} overflowed: more than {cow_bytes} bytes \
                         were written to the source during the copy; try again when it is \
                         written less, or with more free space in the SR",
                        src.name
                    ),
                ));
            }
        }
        tracing::info!(
            bytes = size,
            ms = started.elapsed().as_millis() as u64,
            "copied from a copy-on-write snapshot"
        );
        sr.lvm.lv_remove(&sr.name, &cow_lv)?;
        made.cow = None;
        made.restore_source();
        sr.lvm.lv_rename(&sr.name, &copy_lv, &new_lv)?;
        made.copy = Some(new_lv.clone());
        sr.lvm.lv_activate(&sr.name, &new_lv, false)?;
        let mut rec = VdiIntroduce::new(new.as_str(), &sr_ref, new.as_str());
        rec.name_label = src_rec.name_label.clone();
        rec.name_description = src_rec.name_description.clone();
        rec.ty = if src_rec.ty.is_empty() {
            "user".into()
        } else {
            src_rec.ty.clone()
        };
        rec.sm_config = sm_config_with(&Default::default(), layout::SM_CONFIG_VDI_TYPE);
        rec.virtual_size = size;
        rec.physical_utilisation = size;
        if kind == CopyKind::Snapshot {
            rec.is_a_snapshot = true;
            rec.snapshot_of = src_ref.clone();
            rec.snapshot_time = Utc::now().xenapi();
        }
        x.vdi_db_introduce(&rec)
            .map_err(|e| SmError::new(code, e))?;
        made.copy = None;
        Ok(())
    })();
    if let Err(e) = result {
        made.undo();
        return Err(e);
    }
    if let Some(t) = task(cx)
        && let Err(e) = x.task_set_progress(t, 1.0)
    {
        tracing::warn!("cannot report progress: {e}");
    }
    Ok(VdiLocation {
        uuid: new.to_string(),
        location: new.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sm_core::lvm::Vg;

    fn vg(free_extents: u64) -> Vg {
        Vg {
            name: "VG".into(),
            uuid: "u".into(),
            attr: "wz--n-".into(),
            size: 1000 * (4 << 20),
            free: free_extents * (4 << 20),
            extent_size: 4 << 20,
            extent_count: 1000,
            free_count: free_extents,
            missing_pvs: 0,
            pvs: Vec::new(),
            lvs: Vec::new(),
        }
    }

    #[test]
    fn cow_is_full_size_when_there_is_room() {
        let origin = 100 << 20; // 25 extents; full COW = 26 extents
        assert_eq!(cow_size(&vg(100), origin, true), Some(26 * (4 << 20)));
    }

    #[test]
    fn cow_shrinks_to_the_room_left_but_not_below_the_floor() {
        let origin = 100 << 20;
        // 25 for the copy, 5 left: open needs 3 (a tenth, rounded up), closed 1.
        assert_eq!(cow_size(&vg(30), origin, true), Some(5 * (4 << 20)));
        assert_eq!(cow_size(&vg(27), origin, true), None);
        assert_eq!(cow_size(&vg(27), origin, false), Some(2 * (4 << 20)));
        assert_eq!(cow_size(&vg(25), origin, false), None);
        assert_eq!(cow_size(&vg(10), origin, false), None);
    }
}
