//! The storage operations behind the XenAPI calls and `xe` commands: SR and PBD life cycle,
//! VDI operations, VBD plugging and VM life cycle, each mapped to SMAPI calls as the spec's
//! appendix A says (see `appendix::rules` for the table the trace is checked against).
//!
//! Where the appendix is silent, xapi's real behaviour is followed: VDI attach state is tracked
//! per host with one datapath per user (xapi's `Vdi_automaton`), so a second user of an attached
//! VDI causes no SMAPI call ([`datapath`]).

pub mod backend;
pub mod blockio;
pub mod datapath;
pub mod sr;
pub mod vdi;
pub mod vm;

use std::collections::BTreeMap;

use crate::db::{Db, RecordExt, is_null};
use crate::emulator::Emulator;
use crate::error::{ApiError, ApiResult, names};
use crate::smexec::SmCall;

pub use crate::db::xapi_now;

/// The pool's ref.
pub fn pool_ref(db: &Db) -> ApiResult<String> {
    db.refs("pool")
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("no pool record"))
}

/// The pool master's ref.
pub fn master_ref(db: &Db) -> ApiResult<String> {
    Ok(db.get("pool", &pool_ref(db)?)?.s("master"))
}

/// The PBD connecting `host` to `sr`, if any.
pub fn pbd_of(db: &Db, host: &str, sr: &str) -> Option<String> {
    db.find("PBD", |p| p.s("host") == host && p.s("SR") == sr)
        .into_iter()
        .next()
}

/// Whether `host` is the SR master of `sr` (`Helpers.i_am_srmaster`): the pool master for a
/// shared SR, the host of the only PBD otherwise.
pub fn is_srmaster(db: &Db, host: &str, sr: &str) -> ApiResult<bool> {
    let shared = db.get("SR", sr)?.b("shared");
    Ok(if shared {
        master_ref(db)? == host
    } else {
        pbd_of(db, host, sr).is_some()
    })
}

/// The host that runs master-only calls for `sr`.
pub fn sr_master_host(db: &Db, sr: &str) -> ApiResult<String> {
    let rec = db.get("SR", sr)?;
    if rec.b("shared") {
        return master_ref(db);
    }
    db.where_eq("PBD", "SR", sr)
        .into_iter()
        .next()
        .map(|p| db.get("PBD", &p).map(|p| p.s("host")))
        .transpose()?
        .ok_or_else(|| ApiError::new(names::SR_NO_PBDS, [sr]))
}

/// `device_config` of the host's PBD for `sr` plus `SRmaster` (`__get_my_devconf_for_sr`).
pub fn dconf(db: &Db, host: &str, sr: &str) -> ApiResult<BTreeMap<String, String>> {
    let pbd = pbd_of(db, host, sr).ok_or_else(|| ApiError::new(names::SR_NO_PBDS, [sr]))?;
    let mut dc = db.get("PBD", &pbd)?.map("device_config");
    dc.insert("SRmaster".into(), is_srmaster(db, host, sr)?.to_string());
    Ok(dc)
}

/// Fails with `SR_NO_PBDS` unless the host's PBD for `sr` is plugged (`assert_pbd_is_plugged`).
pub fn assert_plugged(db: &Db, host: &str, sr: &str) -> ApiResult<()> {
    match pbd_of(db, host, sr) {
        Some(p) if db.get("PBD", &p)?.b("currently_attached") => Ok(()),
        _ => Err(ApiError::new(names::SR_NO_PBDS, [sr])),
    }
}

/// An SR-level call for `host` (device_config from its PBD), with the SR's type.
pub fn sr_call(
    db: &Db,
    host: &str,
    sr: &str,
    command: &str,
    args: Vec<String>,
) -> ApiResult<(String, SmCall)> {
    let rec = db.get("SR", sr)?;
    let mut c = SmCall::new(command, host, args);
    c.device_config = dconf(db, host, sr)?;
    c.sr_ref = Some(sr.to_string());
    c.sr_uuid = Some(rec.s("uuid"));
    Ok((rec.s("type"), c))
}

/// A VDI-level call for `host`: the SR keys plus vdi_ref, location, uuid, on_boot and caching.
pub fn vdi_call(
    db: &Db,
    host: &str,
    vdi: &str,
    command: &str,
    args: Vec<String>,
) -> ApiResult<(String, SmCall)> {
    let v = db.get("VDI", vdi)?;
    let (ty, mut c) = sr_call(db, host, &v.s("SR"), command, args)?;
    c.vdi_ref = Some(vdi.to_string());
    c.vdi_location = Some(v.s("location"));
    c.vdi_uuid = Some(v.s("uuid"));
    c.vdi_on_boot = Some(v.s("on_boot"));
    c.vdi_allow_caching = Some(v.b("allow_caching").to_string());
    Ok((ty, c))
}

/// Gates an operation on a driver capability as xapi does (`SR_OPERATION_NOT_SUPPORTED [sr]`).
pub fn require_cap(emu: &Emulator, sr_type: &str, sr: &str, cap: &str) -> ApiResult<()> {
    if emu.driver(sr_type)?.has(cap) {
        Ok(())
    } else {
        Err(ApiError::new(names::SR_OPERATION_NOT_SUPPORTED, [sr]))
    }
}

/// The SR type of an SR.
pub fn sr_type(db: &Db, sr: &str) -> ApiResult<String> {
    Ok(db.get("SR", sr)?.s("type"))
}

/// Resolves `ref` or fails with `HANDLE_INVALID` when it is null.
pub fn non_null(class: &str, r: &str) -> ApiResult<String> {
    if is_null(r) {
        Err(ApiError::handle_invalid(class, r))
    } else {
        Ok(r.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_has_xapi_shape() {
        let t = xapi_now();
        assert_eq!(t.len(), 18, "{t}");
        assert!(t.starts_with("20"));
        assert_eq!(&t[8..9], "T");
        assert!(t.ends_with('Z'));
    }
}
