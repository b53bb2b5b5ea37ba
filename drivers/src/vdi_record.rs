//! The XenAPI side of a VDI call, shared by every driver: finding the call's VDI record, the
//! uuid a new VDI gets, the names a record may carry, and the sm_config a driver writes.

use std::collections::BTreeMap;

use sm_core::driver::Ctx;
use sm_core::errors::{SmCode, SmError, SmResult};
use sm_core::ids::VdiUuid;

/// The XenAPI ref of the call's VDI (`vdi_ref`, else looked up by uuid).
pub fn vdi_ref(cx: &Ctx<'_>) -> SmResult<String> {
    match cx
        .req
        .vdi_ref
        .as_deref()
        .filter(|r| !r.is_empty() && *r != "OpaqueRef:NULL")
    {
        Some(r) => Ok(r.to_string()),
        None => Ok(cx.xapi()?.vdi_get_by_uuid(cx.vdi_uuid()?.as_str())?),
    }
}

/// Forgets the call's VDI record (`VDI.db_forget`); a record that is already gone is success.
pub fn forget(cx: &Ctx<'_>) -> SmResult<()> {
    let vdi = match vdi_ref(cx) {
        Ok(r) => r,
        Err(e) if e.code == SmCode::APIFailure => return Ok(()),
        Err(e) => return Err(e),
    };
    match cx.xapi()?.vdi_db_forget(&vdi) {
        Ok(()) => Ok(()),
        Err(e) if e.error_name() == Some("HANDLE_INVALID") => Ok(()),
        Err(e) => Err(SmError::new(SmCode::VDIDelete, e)),
    }
}

/// The uuid of the VDI vdi_create makes: the one xapi chose (`vdi_uuid`), or a fresh one.
pub fn new_vdi_uuid(cx: &Ctx<'_>) -> SmResult<VdiUuid> {
    match cx.req.vdi_uuid.as_deref().filter(|u| !u.is_empty()) {
        Some(u) => VdiUuid::new(u).map_err(|e| SmError::new(SmCode::BadRequest, e)),
        None => Ok(VdiUuid::random()),
    }
}

/// vdi_introduce's arguments: the uuid of the new record (`new_uuid`) and the location it
/// introduces (`vdi_location`); fault 143 when either is missing or malformed.
pub fn introduce_args<'a>(cx: &Ctx<'a>) -> SmResult<(VdiUuid, &'a str)> {
    let req = cx.req;
    let new_uuid = req
        .new_uuid
        .as_deref()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| SmError::msg(SmCode::BadRequest, "vdi_introduce needs new_uuid"))
        .and_then(|u| VdiUuid::new(u).map_err(|e| SmError::new(SmCode::BadRequest, e)))?;
    let loc = req
        .vdi_location
        .as_deref()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| SmError::msg(SmCode::BadRequest, "vdi_introduce needs vdi_location"))?;
    Ok((new_uuid, loc))
}

/// The SR's ref, after checking that no VDI record of the SR has `location` (fault 43).
pub fn sr_ref_without(cx: &Ctx<'_>, location: &str) -> SmResult<String> {
    let sr_ref = cx.sr_ref()?;
    if let Some(other) = cx
        .xapi()?
        .vdi_records_of_sr(&sr_ref)?
        .into_iter()
        .find(|r| r.location == location)
    {
        return Err(SmError::msg(
            SmCode::VDIExists,
            format!("location {location} is already VDI {}", other.uuid),
        ));
    }
    Ok(sr_ref)
}

/// Whether XML 1.0 can carry `s` (sm refuses names it could not store: fault 447).
pub fn check_xml_legal(what: &str, s: &str) -> SmResult<()> {
    let legal = |c: char| {
        matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && !matches!(c, '\u{FFFE}' | '\u{FFFF}'))
    };
    if s.chars().all(legal) {
        Ok(())
    } else {
        Err(SmError::msg(
            SmCode::IllegalXMLChar,
            format!("the {what} contains characters XML cannot carry"),
        ))
    }
}

/// `extra` (what xapi passed as `vdi_sm_config`) with the driver's `vdi_type` key set.
pub fn sm_config_with(
    extra: &BTreeMap<String, String>,
    vdi_type: (&str, &str),
) -> BTreeMap<String, String> {
    let mut m = extra.clone();
    m.insert(vdi_type.0.into(), vdi_type.1.into());
    m
}

/// The task xapi runs the call under (`subtask_of`), if any.
pub fn task<'a>(cx: &Ctx<'a>) -> Option<&'a str> {
    cx.req
        .subtask_of
        .as_deref()
        .filter(|t| !t.is_empty() && *t != "OpaqueRef:NULL")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_illegal_names_are_447() {
        assert!(check_xml_legal("name", "ok name\twith tab").is_ok());
        assert_eq!(
            check_xml_legal("name", "bad\u{1}").unwrap_err().code,
            SmCode::IllegalXMLChar
        );
    }

    #[test]
    fn the_driver_s_vdi_type_wins() {
        let extra = BTreeMap::from([("vdi_type".to_string(), "x".to_string())]);
        assert_eq!(
            sm_config_with(&extra, ("vdi_type", "aio"))["vdi_type"],
            "aio"
        );
    }
}
