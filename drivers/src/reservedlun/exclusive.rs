//! vdi_activate / vdi_deactivate of a ReservedLUN VDI: the SCSI-3 reservation is the lock.
//!
//! A writable activation takes the LUN with [`reservations::Exclusive::acquire`] under this
//! host's key (design §5): registered on every path, reserved with the SR's type (5 by
//! default), holders the pool reports dead fenced with PREEMPT AND ABORT, another live holder
//! refused with fault 24 naming it. multipathd then gets the key for the map, so paths that
//! appear later are registered before they carry I/O, and a re-check registers any path that
//! appeared meanwhile. The host is also recorded in the VDI's sm_config (`host_<ref>` = `RW`
//! or `RO`) as sm does, for xapi's tools; the reservation, not the record, decides.

use reservations::fence::PoolOwners;
use reservations::{Exclusive, Lu, Policy, PoolKeys, PrError, PrKey, mpathd};
use sm_core::driver::Ctx;
use sm_core::errors::{SmCode, SmError, SmResult};

use super::Storage;
use crate::activation::host_key;

/// The calling host's ref (fault 143 when xapi sent none).
fn host_ref<'a>(cx: &'a Ctx<'_>) -> SmResult<&'a str> {
    match cx.req.host_ref.as_str() {
        "" => Err(SmError::msg(
            SmCode::BadRequest,
            format!("{} needs host_ref", cx.req.command_name),
        )),
        h => Ok(h),
    }
}

/// The SR's reservation policy (device_config over SR sm_config).
pub fn policy(cx: &Ctx<'_>) -> SmResult<Policy> {
    Policy::from_config(cx.dconf().as_map(), &cx.req.sr_sm_config)
        .map_err(|e| SmError::new(SmCode::ConfigParamsMissing, e))
}

/// The SMAPI fault for a reservation failure on the VDI.
pub fn fault(vdi: &str, e: PrError) -> SmError {
    let code = match &e {
        PrError::InUse { .. } => SmCode::VDIInUse,
        PrError::Unsupported { .. } | PrError::TypeUnsupported { .. } => SmCode::VDIUnavailable,
        PrError::NoUsablePath { .. } => SmCode::MultipathDeviceNotAppeared,
        PrError::Pool(_) => SmCode::APIFailure,
        PrError::KeyCollision { .. }
        | PrError::NotVerified { .. }
        | PrError::Scsi { .. }
        | PrError::Key(_)
        | PrError::Multipathd { .. } => SmCode::NAPPExclActivate,
    };
    SmError::new(
        code,
        VdiPr {
            vdi: vdi.into(),
            source: e,
        },
    )
}

/// A reservation error about a VDI.
#[derive(Debug, thiserror::Error)]
#[error("VDI {vdi}")]
struct VdiPr {
    vdi: String,
    #[source]
    source: PrError,
}

/// This host's key and the pool (for owners of other keys).
fn me_and_pool(cx: &Ctx<'_>) -> SmResult<(PrKey, PoolKeys)> {
    let pool = PoolKeys::from_xapi(cx.xapi()?).map_err(|e| fault("?", e))?;
    let me = pool
        .by_ref(host_ref(cx)?)
        .map(|h| h.key)
        .ok_or_else(|| SmError::msg(SmCode::BadRequest, "this host is not in the pool"))?;
    Ok((me, pool))
}

/// Hands `key` for the LUN's map to multipathd (its socket on a host), so that it registers
/// new paths before they carry I/O; a failure is only a warning (our re-check registers).
fn set_map_key(cx: &Ctx<'_>, scsi_id: &str, key: Option<PrKey>) {
    let md = crate::iscsi_sr::system(cx).multipathd;
    if let Err(e) = mpathd::set_map_key(md.as_ref(), scsi_id, key) {
        tracing::warn!(
            scsi_id,
            "multipathd map key: {}",
            sm_core::errors::error_chain(&e)
        );
    }
}

/// vdi_activate.
pub fn activate(
    cx: &Ctx<'_>,
    storage: &dyn Storage,
    vdi: &str,
    scsi_id: &str,
    writable: bool,
) -> SmResult<()> {
    let host = host_ref(cx)?;
    let x = cx.xapi()?;
    let mode = if writable { "RW" } else { "RO" };
    if writable {
        let policy = policy(cx)?;
        let (me, pool) = me_and_pool(cx)?;
        let owners = PoolOwners {
            pool: &pool,
            live: x,
        };
        let paths = storage.paths(cx, scsi_id)?;
        let lu = Lu::new(scsi_id, &paths);
        let ex = Exclusive {
            lu: &lu,
            me,
            policy: &policy,
            owners: &owners,
        };
        let report = ex.acquire().map_err(|e| fault(vdi, e))?;
        for f in &report.fenced {
            tracing::warn!(vdi, scsi_id, "FENCED {f} to activate the VDI");
        }
        set_map_key(cx, scsi_id, Some(me));
        // Paths that appeared while we were registering: register them now.
        let again = storage.paths(cx, scsi_id)?;
        let lu = Lu::new(scsi_id, &again);
        let ex = Exclusive {
            lu: &lu,
            me,
            policy: &policy,
            owners: &owners,
        };
        let checked = ex.recheck().map_err(|e| fault(vdi, e))?;
        if !checked.registered_late.is_empty() {
            tracing::warn!(vdi, paths = ?checked.registered_late, "registered paths that appeared during activation");
        }
        let sm_config = x.vdi_get_sm_config(vdi)?;
        for (k, m) in &sm_config {
            if k.starts_with("host_") && *k != host_key(host) && m == "RW" {
                tracing::warn!(vdi, record = %k, "removing a stale activation record: the reservation is ours");
                x.vdi_remove_sm_config_key(vdi, k)?;
            }
        }
    }
    let key = host_key(host);
    match x.vdi_get_sm_config(vdi)?.get(&key).map(String::as_str) {
        Some(m) if m == mode => {}
        Some(_) => x.vdi_set_sm_config_key(vdi, &key, mode)?,
        None => x.vdi_add_to_sm_config(vdi, &key, mode)?,
    }
    Ok(())
}

/// vdi_deactivate: release and unregister (verified), then forget the record. Idempotent.
pub fn deactivate(cx: &Ctx<'_>, storage: &dyn Storage, vdi: &str, scsi_id: &str) -> SmResult<()> {
    let host = host_ref(cx)?;
    let x = cx.xapi()?;
    let key = host_key(host);
    let mode = x.vdi_get_sm_config(vdi)?.get(&key).cloned();
    if mode.as_deref() != Some("RO") {
        let policy = policy(cx)?;
        let (me, pool) = me_and_pool(cx)?;
        let owners = PoolOwners {
            pool: &pool,
            live: x,
        };
        set_map_key(cx, scsi_id, None);
        let paths = storage.paths(cx, scsi_id)?;
        let lu = Lu::new(scsi_id, &paths);
        Exclusive {
            lu: &lu,
            me,
            policy: &policy,
            owners: &owners,
        }
        .release()
        .map_err(|e| fault(vdi, e))?;
    }
    if mode.is_some() {
        x.vdi_remove_sm_config_key(vdi, &key)?;
    }
    Ok(())
}

/// sr_attach's crash clean-up: registrations of this host's key on LUNs it does not have
/// active (no `host_<ref>` = `RW` record) are left from before a crash; they are removed,
/// verified. Failures are logged, never fatal: attaching the SR matters more.
pub fn clean_stale(
    cx: &Ctx<'_>,
    storage: &dyn Storage,
    active: &[String],
    luns: &[String],
) -> SmResult<Vec<String>> {
    let (me, pool) = me_and_pool(cx)?;
    let x = cx.xapi()?;
    let owners = PoolOwners {
        pool: &pool,
        live: x,
    };
    let policy = policy(cx)?;
    let mut cleaned = Vec::new();
    for scsi_id in luns.iter().filter(|l| !active.contains(l)) {
        let paths: Vec<reservations::Path> = match storage.paths(cx, scsi_id) {
            Ok(p) if p.iter().any(|p| p.usable) => p,
            _ => continue,
        };
        let lu = Lu::new(scsi_id.as_str(), &paths);
        match lu.state() {
            Ok(s) if s.has(me) || s.held_by(me) => {
                tracing::warn!(
                    scsi_id,
                    "stale registrations of this host (from before a crash?): {s}; removing them"
                );
                let ex = Exclusive {
                    lu: &lu,
                    me,
                    policy: &policy,
                    owners: &owners,
                };
                // multipathd would register the key again on the next path event.
                set_map_key(cx, scsi_id, None);
                match ex.release() {
                    Ok(_) => cleaned.push(scsi_id.clone()),
                    Err(e) => tracing::warn!(
                        scsi_id,
                        "cannot remove stale registrations: {}",
                        sm_core::errors::error_chain(&e)
                    ),
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(scsi_id, "no PR state: {e}"),
        }
    }
    Ok(cleaned)
}
