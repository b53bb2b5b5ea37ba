//! The SR calls of an LVM-based SR.
//!
//! - **sr_create** checks every device before writing anything (sm-core's
//!   [`sm_core::lvm::devices`]: not the root stack (105), not a PV of any VG (42 SRExists), no
//!   filesystem/partition table/RAID signature and not mounted or held (16 SRInUse)), then labels
//!   each as a PV (10 MiB metadata area, as sm) and creates `VG_XenStorage-<sr>`. If vgcreate
//!   fails, the PV labels just written are erased again. A replayed create that finds this SR's
//!   own empty VG on exactly these devices succeeds.
//! - **sr_delete** refuses while VDIs remain (39 SRNotEmpty) or an LV is open (16), removes
//!   leftover temporary LVs, the VG and every PV label, so the devices are left without LVM
//!   metadata. A VG that is already gone is success (a PV label left by an interrupted delete is
//!   erased).
//! - **sr_attach** and **sr_scan** refuse a VG holding sm's LVHD content (`VHD-`/`QCOW2-` LVs,
//!   `MGT`, journals, hidden LVs: 47 SRUnavailable naming them) before touching anything, so no
//!   record of sm's VDIs is ever forgotten.
//! - **sr_attach** checks that the VG is present and complete (47 SRUnavailable otherwise) and,
//!   on the master, removes temporary LVs a crash left. It activates nothing: each VDI's LV is
//!   activated by vdi_activate, so an SR with a thousand VDIs attaches in one report, and an LV
//!   is active only where it is used (on shared storage an LV active elsewhere would keep a
//!   stale mapping when the master resizes it).
//! - **sr_detach** refuses while any LV is open (16 SRInUse, naming them) and otherwise
//!   deactivates every active LV. Both are idempotent; a VG that is gone detaches.
//! - **sr_scan** / **sr_update**: one lvm2 report, then [`crate::scan`]; the SR's sizes are the
//!   VG's size, its allocated bytes and the sum of the VDIs' sizes.
//! - **sr_probe**: the `<SRlist>` of `VG_XenStorage-*` VGs with a PV on the devices.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sm_core::driver::Ctx;
use sm_core::errors::{SmCode, SmError, SmResult};
use sm_core::host::block;
use sm_core::lvm::devices;
use sm_core::lvm::{Lvm, LvmOp, Report, Vg, VgCreate};

use super::{SrVg, join_paths, layout, lvm_options};
use crate::probe::{self, ProbedSr};
use crate::scan::{self, Found, SrSizes};

/// Whether `vg` is exactly this SR's VG on exactly `devices` and holds no VDI (a replayed
/// sr_create).
fn is_own_empty_vg(vg: &Vg, devices: &[PathBuf]) -> bool {
    let pv_devs: Vec<(u64, u64)> = vg.pvs.iter().map(|p| p.devno).collect();
    let ours: Vec<Option<(u64, u64)>> = devices
        .iter()
        .map(|d| block::rdev(d).ok().map(block::dev_pair))
        .collect();
    pv_devs.len() == ours.len()
        && ours.iter().all(|d| d.is_some_and(|d| pv_devs.contains(&d)))
        && vg.lvs.iter().all(|l| layout::is_temp(&l.name))
}

/// sr_create.
pub fn create(cx: &Ctx<'_>, sr: &SrVg<'_>) -> SmResult<()> {
    sr.require_master(LvmOp::VgCreate)?;
    let scan = sr.lvm.scan()?;
    if let Some(vg) = scan.vg(&sr.name) {
        if is_own_empty_vg(vg, &sr.devices) {
            tracing::info!(vg = %sr.name, "sr_create: the SR's own empty VG exists already");
            return Ok(());
        }
        return Err(SmError::msg(
            SmCode::SRExists,
            format!(
                "volume group {} exists on {}",
                sr.name,
                join_paths(&vg.pvs.iter().map(|p| p.name.clone()).collect::<Vec<_>>())
            ),
        ));
    }
    // The same VG name on other devices of this host would make both SRs unusable: lvm2
    // refuses to act on duplicate VG names. Only this check looks beyond the SR's devices.
    let mut everywhere = lvm_options(cx, &[]);
    everywhere.devices.clear();
    if let Some(vg) = Lvm::new(cx.host.runner.as_ref(), everywhere)?.vg(&sr.name)? {
        return Err(SmError::msg(
            SmCode::SRExists,
            format!(
                "volume group {} exists on other devices of this host ({})",
                sr.name,
                join_paths(&vg.pvs.iter().map(|p| p.name.clone()).collect::<Vec<_>>())
            ),
        ));
    }
    let mut seen = Vec::new();
    for dev in &sr.devices {
        let devno = block::rdev(dev).map(block::dev_pair).map_err(|e| {
            SmError::msg(
                SmCode::ConfigDeviceInvalid,
                format!("{}: {e}", dev.display()),
            )
        })?;
        if seen.contains(&devno) {
            return Err(SmError::msg(
                SmCode::ConfigDeviceInvalid,
                format!("{} names a device listed already", dev.display()),
            ));
        }
        seen.push(devno);
        let state = devices::check_new_pv(cx.host.runner.as_ref(), dev, &scan)?;
        tracing::info!(dev = %dev.display(), ?state, "sr_create: device accepted");
    }
    let mut labelled: Vec<&Path> = Vec::new();
    let made = (|| {
        for dev in &sr.devices {
            sr.lvm.pv_create(dev, Some(layout::PV_METADATA_SIZE))?;
            labelled.push(dev);
        }
        sr.lvm.vg_create(
            &sr.name,
            &labelled,
            &VgCreate {
                extent_size: None,
                metadata_size: Some(layout::PV_METADATA_SIZE),
            },
        )
    })();
    if let Err(e) = made {
        for dev in &labelled {
            if let Err(undo) = sr.lvm.pv_remove(dev) {
                tracing::warn!(dev = %dev.display(), "cannot erase the PV label after a failed create: {undo}");
            }
        }
        return Err(e.into());
    }
    Ok(())
}

/// The LVs of `vg` that hold VDIs (not snapshots, not our temporary ones), by location.
fn vdi_lvs(vg: &Vg) -> BTreeMap<String, &sm_core::lvm::Lv> {
    vg.lvs
        .iter()
        .filter(|l| !l.attr.is_snapshot())
        .filter_map(|l| layout::location_of(&l.name).map(|loc| (loc.to_string(), l)))
        .collect()
}

/// Fault 16 SRInUse when any LV of `vg` is open on this host.
fn refuse_open_lvs(vg: &Vg) -> SmResult<()> {
    let open: Vec<&str> = vg
        .lvs
        .iter()
        .filter(|l| l.attr.is_open())
        .map(|l| l.name.as_str())
        .collect();
    if open.is_empty() {
        Ok(())
    } else {
        Err(SmError::msg(
            SmCode::SRInUse,
            format!(
                "logical volumes still open on this host: {}",
                open.join(", ")
            ),
        ))
    }
}

/// Removes our temporary LVs that a crashed call left (only on the master, which alone makes
/// them, and only while the caller holds the SR lock), then deactivates a source such a copy
/// had activated, unless it is open or this host has it active for xapi (its `host_<ref>`
/// record). Returns whether it removed any.
pub(super) fn remove_stale_temporaries(cx: &Ctx<'_>, sr: &SrVg<'_>, vg: &Vg) -> SmResult<bool> {
    if !sr.master {
        return Ok(false);
    }
    let mut stale: Vec<&sm_core::lvm::Lv> = vg
        .lvs
        .iter()
        .filter(|l| layout::is_temp(&l.name) && !l.attr.is_open())
        .collect();
    // Snapshots first: a copy-on-write snapshot must go before its origin could.
    stale.sort_by_key(|l| !l.attr.is_snapshot());
    for l in &stale {
        tracing::warn!(vg = %sr.name, lv = %l.name, "removing a temporary LV left by an interrupted call");
        sr.lvm.lv_remove(&sr.name, &l.name)?;
    }
    let sources = stale
        .iter()
        .flat_map(|l| l.tags.iter().filter_map(|t| layout::reactivated_source(t)));
    for src in sources {
        let Some(lv) = vg.lvs.iter().find(|l| l.name == src) else {
            continue;
        };
        if !lv.attr.is_active() || lv.attr.is_open() || active_here_for_xapi(cx, src) {
            continue;
        }
        tracing::warn!(vg = %sr.name, lv = src, "deactivating the source an interrupted copy activated");
        if let Err(e) = sr.lvm.lv_activate(&sr.name, src, false) {
            tracing::warn!(lv = src, "cannot deactivate it: {e}");
        }
    }
    Ok(!stale.is_empty())
}

/// Whether xapi records VDI LV `lv` as active on this host; `true` when it cannot tell (no
/// session, no such VDI record): then nothing is deactivated.
fn active_here_for_xapi(cx: &Ctx<'_>, lv: &str) -> bool {
    let Some(loc) = layout::location_of(lv) else {
        return true;
    };
    if !cx.has_session() {
        return true;
    }
    let mine = crate::activation::host_key(&cx.req.host_ref);
    let r = cx.xapi().and_then(|x| {
        let vdi = x.vdi_get_by_uuid(loc.as_str())?;
        Ok(x.vdi_get_sm_config(&vdi)?.contains_key(&mine))
    });
    r.unwrap_or(true)
}

/// sr_delete.
pub fn delete(cx: &Ctx<'_>, sr: &SrVg<'_>) -> SmResult<()> {
    sr.require_master(LvmOp::VgRemove)?;
    let scan = sr.lvm.scan()?;
    let Some(vg) = scan.vg(&sr.name) else {
        return erase_orphan_labels(sr, &scan);
    };
    let vdis = vdi_lvs(vg);
    if !vdis.is_empty() {
        return Err(SmError::msg(
            SmCode::SRNotEmpty,
            format!(
                "{} VDIs remain: {}",
                vdis.len(),
                vdis.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    refuse_open_lvs(vg)?;
    let others: Vec<&str> = vg
        .lvs
        .iter()
        .filter(|l| !layout::is_temp(&l.name))
        .map(|l| l.name.as_str())
        .collect();
    if !others.is_empty() {
        return Err(SmError::msg(
            SmCode::SRNotEmpty,
            format!(
                "the volume group holds logical volumes that are not VDIs: {}",
                others.join(", ")
            ),
        ));
    }
    remove_stale_temporaries(cx, sr, vg)?;
    if vg.lvs.iter().any(|l| l.attr.is_active()) {
        sr.lvm.vg_activate(&sr.name, false)?;
    }
    sr.lvm.vg_remove(&sr.name)?;
    for pv in &vg.pvs {
        sr.lvm.pv_remove(&pv.name)?;
    }
    Ok(())
}

/// Erases PV labels that belong to no VG on the SR's devices (an sr_delete interrupted after
/// vgremove); devices without one are left alone.
fn erase_orphan_labels(sr: &SrVg<'_>, scan: &Report) -> SmResult<()> {
    for dev in &sr.devices {
        if let Some(pv) = devices::pv_of(scan, dev).filter(|p| p.vg_name.is_none()) {
            tracing::info!(dev = %dev.display(), "sr_delete: erasing the PV label left behind");
            sr.lvm.pv_remove(&pv.name)?;
        }
    }
    Ok(())
}

/// Fault 47 when `vg` holds sm's LVHD content ([`layout::sm_content`]).
fn refuse_sm_content(vg: &Vg) -> SmResult<()> {
    crate::foreign::refuse(
        &format!("volume group {}", vg.name),
        &layout::sm_content(vg),
    )
}

/// sr_attach.
pub fn attach(cx: &Ctx<'_>, sr: &SrVg<'_>) -> SmResult<()> {
    sr.lvm.settle_udev();
    let vg = sr.require()?;
    refuse_sm_content(&vg)?;
    remove_stale_temporaries(cx, sr, &vg)?;
    deactivate_unused(cx, sr, &vg);
    Ok(())
}

/// Deactivates the VDI LVs active on this host that nothing uses here: not open, and not
/// active here for xapi (no `host_<ref>` record). lvm2's event activation activates every LV
/// of the VG on every host whose map appears, and such a mapping goes stale when the master
/// resizes or removes the LV. Nothing is touched while a copy is at work (temporary LVs),
/// without a session, or when xapi cannot be asked; failures are logged.
fn deactivate_unused(cx: &Ctx<'_>, sr: &SrVg<'_>, vg: &Vg) {
    let idle: Vec<&sm_core::lvm::Lv> = vg
        .lvs
        .iter()
        .filter(|l| {
            layout::location_of(&l.name).is_some() && l.attr.is_active() && !l.attr.is_open()
        })
        .collect();
    if idle.is_empty() || !cx.has_session() || vg.lvs.iter().any(|l| layout::is_temp(&l.name)) {
        return;
    }
    let mine = crate::activation::host_key(&cx.req.host_ref);
    let records = cx
        .sr_ref()
        .and_then(|sr_ref| Ok(cx.xapi()?.vdi_records_of_sr(&sr_ref)?));
    let used: Vec<String> = match records {
        Ok(r) => r
            .into_iter()
            .filter(|v| v.sm_config.contains_key(&mine))
            .map(|v| v.location)
            .collect(),
        Err(e) => {
            tracing::warn!("cannot tell which active LVs are in use here: {e}");
            return;
        }
    };
    for l in idle {
        if layout::location_of(&l.name).is_some_and(|loc| used.contains(&loc.to_string())) {
            continue;
        }
        tracing::info!(lv = %l.name, "deactivating an LV active on this host that nothing uses here (lvm2 autoactivation)");
        if let Err(e) = sr.lvm.lv_activate(&sr.name, &l.name, false) {
            tracing::warn!(lv = %l.name, "cannot deactivate it: {e}");
        }
    }
}

/// sr_detach: every LV deactivated (refused while one is open), then the mappings lvm2 no
/// longer knows removed.
pub fn detach(cx: &Ctx<'_>, sr: &SrVg<'_>) -> SmResult<()> {
    let Some(vg) = sr.report()? else {
        return Ok(());
    };
    refuse_open_lvs(&vg)?;
    if vg.lvs.iter().any(|l| l.attr.is_active()) {
        sr.lvm
            .vg_activate(&sr.name, false)
            .map_err(|e| SmError::new(SmCode::SRInUse, e))?;
    }
    remove_stale_mappings(cx, sr)
}

/// Removes the device-mapper devices of the VG still built on the SR's devices once its LVs
/// are deactivated: LVs removed or renamed on the master while active here, which lvm2 no
/// longer knows. Only mappings named after our VG are touched; one still open is fault 16.
fn remove_stale_mappings(cx: &Ctx<'_>, sr: &SrVg<'_>) -> SmResult<()> {
    let sysfs = sm_core::host::sysfs::Sysfs::of(&cx.host.paths);
    let prefix = format!("{}-", sr.name.replace('-', "--"));
    for dev in &sr.devices {
        let Ok(rdev) = block::rdev(&cx.host.paths.host(&dev.display().to_string())) else {
            continue;
        };
        for holder in sysfs.holders(block::dev_pair(rdev)) {
            let Some(name) = sysfs.read(&format!("/sys/block/{holder}/dm/name")) else {
                continue;
            };
            if !name.starts_with(&prefix) {
                continue;
            }
            tracing::warn!(mapping = %name, "removing a mapping of an LV lvm2 no longer knows (removed elsewhere while active here)");
            sr.lvm.remove_mapping(&name)?;
        }
    }
    Ok(())
}

/// What the VG holds, as the scan sees it.
fn found(vg: &Vg) -> BTreeMap<String, Option<Found>> {
    let sm_config = BTreeMap::from([(
        layout::SM_CONFIG_VDI_TYPE.0.to_string(),
        layout::SM_CONFIG_VDI_TYPE.1.to_string(),
    )]);
    vdi_lvs(vg)
        .into_iter()
        .map(|(loc, lv)| {
            (
                loc,
                Some(Found {
                    virtual_size: lv.size,
                    physical_utilisation: lv.size,
                    sm_config: sm_config.clone(),
                }),
            )
        })
        .collect()
}

fn sizes(vg: &Vg, found: &BTreeMap<String, Option<Found>>) -> SrSizes {
    SrSizes {
        physical_size: vg.size,
        physical_utilisation: vg.size.saturating_sub(vg.free),
        virtual_allocation: scan::virtual_allocation(found),
    }
}

/// sr_scan: one lvm2 report, then the records reconciled.
pub fn scan(cx: &Ctx<'_>, sr: &SrVg<'_>) -> SmResult<()> {
    let mut vg = sr.require()?;
    refuse_sm_content(&vg)?;
    if remove_stale_temporaries(cx, sr, &vg)? {
        vg = sr.require()?;
    }
    let found = found(&vg);
    scan::reconcile(cx, &found, sizes(&vg, &found))
}

/// sr_update: the SR's sizes.
pub fn update(cx: &Ctx<'_>, sr: &SrVg<'_>) -> SmResult<()> {
    let vg = sr.require()?;
    let found = found(&vg);
    scan::set_sr_sizes(cx, sizes(&vg, &found))
}

/// sr_probe on `devices`: our VGs with a PV on any of them.
pub fn probe(cx: &Ctx<'_>, devices: &[PathBuf]) -> SmResult<String> {
    let lvm = Lvm::new(cx.host.runner.as_ref(), lvm_options(cx, devices))?;
    let scan = lvm.scan()?;
    let wanted: Vec<(u64, u64)> = devices
        .iter()
        .filter_map(|d| block::rdev(d).ok().map(block::dev_pair))
        .collect();
    let found: Vec<ProbedSr> = scan
        .vgs
        .iter()
        .filter(|vg| vg.pvs.iter().any(|p| wanted.contains(&p.devno)))
        .filter_map(|vg| {
            let uuid = layout::sr_of_vg(&vg.name)?;
            Some(ProbedSr {
                uuid: uuid.to_string(),
                // A PV on a device outside the probed ones has no name in this scope.
                devlist: join_paths(
                    &vg.pvs
                        .iter()
                        .filter(|p| p.name.is_absolute())
                        .map(|p| p.name.clone())
                        .collect::<Vec<_>>(),
                ),
                size: vg.size,
            })
        })
        .collect();
    Ok(probe::srlist_xml(&found))
}
