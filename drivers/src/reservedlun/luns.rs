//! One LUN per VDI, as sm's LUN-per-VDI driver does it: the target's LUNs *are* the VDIs.
//!
//! A LUN's VDI has location = its SCSIid and uuid = the MD5 of the SCSIid formatted
//! 8-4-4-4-12 (sm's `gen_uuid_from_string(md5(SCSIid))`), so VDI uuids survive moving a LUN
//! between this driver and sm's. sr_scan introduces every LUN with `managed` false; vdi_create
//! marks the smallest unmanaged LUN that is large enough managed (SRNoSpace otherwise);
//! vdi_delete unmanages it. Nothing is ever created or destroyed on the array.

use std::collections::{BTreeMap, BTreeSet};

use md5::{Digest, Md5};
use sm_core::driver::{Ctx, VdiCreate};
use sm_core::errors::{SmCode, SmError, SmResult};
use sm_core::response::VdiLocation;
use sm_core::xenapi::{VdiIntroduce, VdiRecord};

/// sm_config key holding the LUN's SCSIid (as sm writes it).
pub const SM_SCSI_ID: &str = "SCSIid";
/// sm_config key holding the LUN number.
pub const SM_LUN_ID: &str = "LUNid";
/// sm_config key telling xapi the VDI is a raw block device (sm: `backend-kind` = `vbd`).
pub const SM_BACKEND_KIND: (&str, &str) = ("backend-kind", "vbd");

/// One LUN of the SR's target, as this host sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LunInfo {
    /// The SCSI id (`36001405...`), the VDI's location.
    pub scsi_id: String,
    /// Size in bytes.
    pub size: u64,
    /// LUN number on the target.
    pub lun: u32,
    /// T10 vendor.
    pub vendor: String,
    /// Unit serial number.
    pub serial: String,
}

/// The VDI uuid of the LUN with this SCSI id.
pub fn vdi_uuid(scsi_id: &str) -> String {
    let hex: String = Md5::digest(scsi_id.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn sm_config(l: &LunInfo) -> BTreeMap<String, String> {
    BTreeMap::from([
        (SM_SCSI_ID.to_string(), l.scsi_id.clone()),
        (SM_LUN_ID.to_string(), l.lun.to_string()),
        (SM_BACKEND_KIND.0.to_string(), SM_BACKEND_KIND.1.to_string()),
    ])
}

fn introduce(cx: &Ctx<'_>, sr: &str, l: &LunInfo, uuid: &str, managed: bool) -> SmResult<String> {
    let mut rec = VdiIntroduce::new(uuid, sr, &l.scsi_id);
    rec.name_label = format!("LUN {} ({})", l.lun, l.serial);
    rec.sm_config = sm_config(l);
    rec.managed = managed;
    rec.virtual_size = l.size;
    rec.physical_utilisation = l.size;
    Ok(cx.xapi()?.vdi_db_introduce(&rec)?)
}

/// sr_scan: a record per LUN (introduced unmanaged), sizes and sm_config kept current,
/// records of LUNs gone from the target forgotten unless managed (those are marked missing
/// by keeping them: a LUN unmapped by mistake must not lose its VDI's metadata). Reports the
/// SR's sizes: physical = every LUN, utilisation = managed LUNs.
pub fn scan(cx: &Ctx<'_>, luns: &[LunInfo]) -> SmResult<Vec<VdiRecord>> {
    let x = cx.xapi()?;
    let sr = cx.sr_ref()?;
    let records = x
        .vdi_records_of_sr(&sr)
        .map_err(|e| SmError::new(SmCode::SRScan, e))?;
    let by_location: BTreeMap<&str, &VdiRecord> =
        records.iter().map(|r| (r.location.as_str(), r)).collect();
    let present: BTreeSet<&str> = luns.iter().map(|l| l.scsi_id.as_str()).collect();
    for l in luns {
        match by_location.get(l.scsi_id.as_str()) {
            Some(rec) => {
                if rec.virtual_size != l.size {
                    x.vdi_set_virtual_size(&rec.ref_, l.size)?;
                    x.vdi_set_physical_utilisation(&rec.ref_, l.size)?;
                }
                for (k, v) in sm_config(l) {
                    if rec.sm_config.get(&k) != Some(&v) {
                        x.vdi_set_sm_config_key(&rec.ref_, &k, &v)?;
                    }
                }
            }
            None => {
                introduce(cx, &sr, l, &vdi_uuid(&l.scsi_id), false)?;
            }
        }
    }
    for rec in &records {
        if !present.contains(rec.location.as_str()) {
            if rec.managed {
                tracing::warn!(vdi = %rec.uuid, location = %rec.location, "a managed VDI's LUN is not on the target; keeping its record");
            } else {
                x.vdi_db_forget(&rec.ref_)?;
            }
        }
    }
    let records = x
        .vdi_records_of_sr(&sr)
        .map_err(|e| SmError::new(SmCode::SRScan, e))?;
    let physical: u64 = luns.iter().map(|l| l.size).sum();
    let used: u64 = records
        .iter()
        .filter(|r| r.managed && present.contains(r.location.as_str()))
        .map(|r| r.virtual_size)
        .sum();
    x.sr_set_sizes(&sr, physical, used, used)?;
    Ok(records)
}

/// vdi_create: the smallest unmanaged LUN of at least `args.size` bytes becomes the VDI.
pub fn create(cx: &Ctx<'_>, luns: &[LunInfo], args: &VdiCreate) -> SmResult<VdiLocation> {
    let records = scan(cx, luns)?;
    let x = cx.xapi()?;
    let free = luns
        .iter()
        .filter(|l| l.size >= args.size)
        .filter_map(|l| {
            records
                .iter()
                .find(|r| r.location == l.scsi_id && !r.managed)
                .map(|r| (l, r))
        })
        .min_by_key(|(l, _)| (l.size, l.lun));
    let Some((lun, rec)) = free else {
        return Err(SmError::msg(
            SmCode::SRNoSpace,
            format!(
                "no unmanaged LUN of at least {} bytes on the target ({} LUNs, {} unmanaged)",
                args.size,
                luns.len(),
                records.iter().filter(|r| !r.managed).count()
            ),
        ));
    };
    x.vdi_set_managed(&rec.ref_, true)?;
    if !args.name_label.is_empty() {
        x.call(
            "VDI.set_name_label",
            &[rec.ref_.as_str().into(), args.name_label.as_str().into()],
        )?;
    }
    if !args.name_description.is_empty() {
        x.call(
            "VDI.set_name_description",
            &[
                rec.ref_.as_str().into(),
                args.name_description.as_str().into(),
            ],
        )?;
    }
    let sr = cx.sr_ref()?;
    let used: u64 = records
        .iter()
        .filter(|r| r.managed || r.ref_ == rec.ref_)
        .map(|r| r.virtual_size)
        .sum();
    x.sr_set_sizes(&sr, luns.iter().map(|l| l.size).sum(), used, used)?;
    Ok(VdiLocation {
        uuid: rec.uuid.clone(),
        location: lun.scsi_id.clone(),
    })
}

/// vdi_delete: the LUN stays, its VDI becomes unmanaged.
pub fn delete(cx: &Ctx<'_>, vdi: &str) -> SmResult<()> {
    cx.xapi()?.vdi_set_managed(vdi, false)?;
    Ok(())
}

/// vdi_introduce by SCSIid (the request's location): the LUN must be on the target.
pub fn introduce_by_scsi_id(cx: &Ctx<'_>, luns: &[LunInfo]) -> SmResult<VdiLocation> {
    let scsi_id = cx
        .req
        .vdi_location
        .as_deref()
        .filter(|l| !l.is_empty())
        .or_else(|| cx.req.vdi_sm_config.get(SM_SCSI_ID).map(String::as_str))
        .ok_or_else(|| {
            SmError::msg(
                SmCode::ConfigSCSIid,
                "vdi_introduce needs the LUN's SCSIid as location",
            )
        })?;
    let lun = luns.iter().find(|l| l.scsi_id == scsi_id).ok_or_else(|| {
        SmError::msg(
            SmCode::ConfigSCSIid,
            format!("no LUN with SCSIid {scsi_id} on the target"),
        )
    })?;
    let x = cx.xapi()?;
    let sr = cx.sr_ref()?;
    if let Some(rec) = x
        .vdi_records_of_sr(&sr)?
        .into_iter()
        .find(|r| r.location == scsi_id)
    {
        if !rec.managed {
            x.vdi_set_managed(&rec.ref_, true)?;
        }
        return Ok(VdiLocation {
            uuid: rec.uuid,
            location: scsi_id.to_string(),
        });
    }
    let uuid = cx
        .req
        .new_uuid
        .clone()
        .filter(|u| sm_core::ids::VdiUuid::new(u).is_ok())
        .unwrap_or_else(|| vdi_uuid(scsi_id));
    introduce(cx, &sr, lun, &uuid, true)?;
    Ok(VdiLocation {
        uuid,
        location: scsi_id.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_is_the_md5_of_the_scsi_id_as_sm_makes_it() {
        // `printf %s 360014055ab0c0de00000000000000000 | md5sum`
        let u = vdi_uuid("360014055ab0c0de00000000000000000");
        assert_eq!(u, "063a873f-0947-a098-c7c6-d2b6bcccff29");
        assert_eq!(u.len(), 36);
        assert!(sm_core::ids::VdiUuid::new(&u).is_ok());
        assert_ne!(u, vdi_uuid("360014055ab0c0de00000000000000001"));
    }
}
