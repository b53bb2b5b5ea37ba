//! sr_scan's reconciliation, shared by every driver: the VDI records of the SR are made to match
//! what the storage holds, keyed by location (sm's `ScanRecord`), and the SR's sizes reported.
//!
//! One `VDI.get_all_records_where` per scan; records are written only where something differs
//! (a new location is introduced, a vanished one forgotten, changed sizes set), because xapi
//! rescans dirty and auto-scan SRs every 30 s. A VDI the driver found but could not read is
//! passed as `None`: its record (if any) is kept and nothing is introduced for it, so one damaged
//! item neither fails the scan nor loses a record.

use std::collections::{BTreeMap, BTreeSet};

use sm_core::driver::Ctx;
use sm_core::errors::{SmCode, SmError, SmResult};
use sm_core::ids::VdiUuid;
use sm_core::xenapi::VdiIntroduce;

/// One VDI found on the storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its virtual size in bytes.
    pub virtual_size: u64,
    /// The bytes it occupies.
    pub physical_utilisation: u64,
    /// sm_config of a record introduced for it.
    pub sm_config: BTreeMap<String, String>,
}

/// The SR's sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrSizes {
    /// Bytes of storage.
    pub physical_size: u64,
    /// Bytes used.
    pub physical_utilisation: u64,
    /// Sum of the VDIs' virtual sizes.
    pub virtual_allocation: u64,
}

/// Writes the SR's sizes into its record.
pub fn set_sr_sizes(cx: &Ctx<'_>, s: SrSizes) -> SmResult<()> {
    let sr = cx.sr_ref()?;
    cx.xapi()?.sr_set_sizes(
        &sr,
        s.physical_size,
        s.physical_utilisation,
        s.virtual_allocation,
    )?;
    Ok(())
}

/// The sum of the virtual sizes of what was found (readable items only).
pub fn virtual_allocation(found: &BTreeMap<String, Option<Found>>) -> u64 {
    found
        .values()
        .flatten()
        .fold(0u64, |a, f| a.saturating_add(f.virtual_size))
}

/// Reconciles the SR's VDI records with `found` (by location) and sets the SR's sizes. A new
/// location that is a uuid not yet used becomes the new record's uuid (sm's locations are
/// uuids); otherwise a fresh uuid is chosen.
pub fn reconcile(
    cx: &Ctx<'_>,
    found: &BTreeMap<String, Option<Found>>,
    sizes: SrSizes,
) -> SmResult<()> {
    let x = cx.xapi()?;
    let sr = cx.sr_ref()?;
    let records = x
        .vdi_records_of_sr(&sr)
        .map_err(|e| SmError::new(SmCode::SRScan, e))?;
    let by_location: BTreeMap<&str, _> = records.iter().map(|r| (r.location.as_str(), r)).collect();
    let mut taken: BTreeSet<String> = records.iter().map(|r| r.uuid.clone()).collect();
    for (loc, f) in found {
        let Some(f) = f else { continue };
        match by_location.get(loc.as_str()) {
            Some(rec) => {
                if rec.virtual_size != f.virtual_size {
                    x.vdi_set_virtual_size(&rec.ref_, f.virtual_size)?;
                }
                if rec.physical_utilisation != f.physical_utilisation {
                    x.vdi_set_physical_utilisation(&rec.ref_, f.physical_utilisation)?;
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
                rec.sm_config = f.sm_config.clone();
                rec.virtual_size = f.virtual_size;
                rec.physical_utilisation = f.physical_utilisation;
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
    set_sr_sizes(cx, sizes)
}
