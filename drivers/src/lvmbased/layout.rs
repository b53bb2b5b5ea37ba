//! How an LVM-based SR lays out its volume group, as sm does (design.md §3): the VG
//! `VG_XenStorage-<sr_uuid>`, one raw LV `LV-<vdi_uuid>` per VDI (the VDI's location is its
//! uuid), device nodes `/dev/<vg>/<lv>`. Our own short-lived LVs start with `xsm-` and exist only
//! while a call holds the SR lock; a scan never takes them for VDIs, and one left behind by a
//! crash is removed by the next sr_attach or sr_scan on the master.

use std::path::PathBuf;

use sm_core::errors::{SmCode, SmError, SmResult};
use sm_core::ids::{SrUuid, VdiUuid};

/// Prefix of an SR's VG name.
pub const VG_PREFIX: &str = "VG_XenStorage-";
/// Prefix of a VDI's LV name.
pub const LV_PREFIX: &str = "LV-";
/// Prefix of our temporary LVs.
pub const TEMP_PREFIX: &str = "xsm-";
/// Metadata area per PV (sm's `--metadatasize 10M`): room for thousands of LVs.
pub const PV_METADATA_SIZE: u64 = 10 << 20;
/// sm_config `vdi_type` of a raw VDI (sm's name for raw, tapdisk's `aio`).
pub const SM_CONFIG_VDI_TYPE: (&str, &str) = ("vdi_type", "aio");

/// The VG of SR `sr`.
pub fn vg_name(sr: &SrUuid) -> String {
    format!("{VG_PREFIX}{sr}")
}

/// The SR uuid of a VG of ours.
pub fn sr_of_vg(vg: &str) -> Option<SrUuid> {
    SrUuid::new(vg.strip_prefix(VG_PREFIX)?).ok()
}

/// sm's LVHD content in `vg` (`research/datapath.md` §8.2), which this layout does not handle:
/// `VHD-`/`QCOW2-` image LVs, the `MGT` metadata volume, journal LVs, LVs tagged hidden.
pub fn sm_content(vg: &sm_core::lvm::Vg) -> Vec<crate::foreign::Item> {
    vg.lvs
        .iter()
        .filter_map(|l| {
            let tagged = |t: &str| l.tags.iter().any(|x| x == t);
            let kind = if l.name == "MGT" {
                "sm's SR metadata volume"
            } else if l.name.starts_with("VHD-") {
                "VHD image in an LV, sm's LVHD"
            } else if l.name.starts_with("QCOW2-") {
                "QCOW2 image in an LV"
            } else if tagged("journaler") || tagged("jvhd") || l.name.starts_with("jvhd_") {
                "sm journal of an interrupted operation"
            } else if tagged("hidden") {
                "LV tagged hidden: a base copy of a snapshot chain"
            } else {
                return None;
            };
            Some(crate::foreign::Item {
                name: l.name.clone(),
                kind,
            })
        })
        .collect()
}

/// The LV of the VDI at `location`.
pub fn lv_name(location: &VdiUuid) -> String {
    format!("{LV_PREFIX}{location}")
}

/// The location of the VDI an LV holds, when the LV is a VDI's (`LV-` and a lowercase uuid).
pub fn location_of(lv: &str) -> Option<VdiUuid> {
    let loc = lv.strip_prefix(LV_PREFIX)?;
    VdiUuid::new(loc).ok().filter(|u| u.as_str() == loc)
}

/// A VDI location from a request: the uuid of its LV.
pub fn check_location(loc: &str) -> SmResult<VdiUuid> {
    VdiUuid::new(loc).map_err(|_| {
        SmError::msg(
            SmCode::BadRequest,
            format!("invalid VDI location {loc:?}: an LVM SR's locations are VDI uuids"),
        )
    })
}

/// The LV a copy is written to before it becomes `LV-<new>`.
pub fn copy_name(new: &VdiUuid) -> String {
    format!("{TEMP_PREFIX}copy-{new}")
}

/// The copy-on-write snapshot a copy is read from.
pub fn cow_name(new: &VdiUuid) -> String {
    format!("{TEMP_PREFIX}cow-{new}")
}

/// The tag a copy's temporary LV carries when the copy activated its inactive source `lv`
/// (lvm2 activates a snapshot only with its origin): what a killed copy left tells which
/// source to deactivate again.
pub fn reactivated_tag(lv: &str) -> String {
    format!("{TEMP_PREFIX}reactivated:{lv}")
}

/// The source LV a [`reactivated_tag`] names.
pub fn reactivated_source(tag: &str) -> Option<&str> {
    tag.strip_prefix(TEMP_PREFIX)?.strip_prefix("reactivated:")
}

/// Whether an LV is one of our temporary ones.
pub fn is_temp(lv: &str) -> bool {
    lv.starts_with(TEMP_PREFIX)
}

/// The device node of an LV.
pub fn lv_path(vg: &str, lv: &str) -> PathBuf {
    PathBuf::from(format!("/dev/{vg}/{lv}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let sr = SrUuid::new("0a0a0a0a-1111-4222-8333-444455556666").unwrap();
        let vg = vg_name(&sr);
        assert_eq!(vg, "VG_XenStorage-0a0a0a0a-1111-4222-8333-444455556666");
        assert_eq!(sr_of_vg(&vg), Some(sr));
        assert_eq!(sr_of_vg("vg0"), None);
        let v = VdiUuid::new("aaaaaaaa-0000-4000-8000-000000000001").unwrap();
        assert_eq!(location_of(&lv_name(&v)), Some(v.clone()));
        assert_eq!(location_of("LV-notauuid"), None);
        assert_eq!(location_of("LV-AAAAAAAA-0000-4000-8000-000000000001"), None);
        assert_eq!(location_of(&copy_name(&v)), None);
        assert!(is_temp(&copy_name(&v)) && is_temp(&cow_name(&v)));
        assert!(!is_temp(&lv_name(&v)));
        assert_eq!(
            lv_path(&vg, "LV-x"),
            PathBuf::from(format!("/dev/{vg}/LV-x"))
        );
        assert_eq!(check_location("../x").unwrap_err().code, SmCode::BadRequest);
    }
}
