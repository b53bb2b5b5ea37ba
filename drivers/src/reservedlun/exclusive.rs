//! vdi_activate / vdi_deactivate of a ReservedLUN VDI: the SCSI-3 reservation is the lock.
//!
//! A writable activation takes the LUN with [`reservations::Activation::activate`] under
//! this host's key (design §5): registered on every path, reserved with the SR's type (5 by
//! default), holders the pool reports dead fenced with PREEMPT AND ABORT, another live holder
//! refused with fault 24 naming it. multipathd then gets the key for the map, so paths that
//! appear later are registered before they carry I/O, and a re-check registers any path that
//! appeared meanwhile. The host is also recorded in the VDI's sm_config (`host_<ref>` = `RW`
//! or `RO`) as sm does, for xapi's tools; the reservation, not the record, decides.

use reservations::fence::PoolOwners;
use reservations::{Activation, PathSource, Policy, PoolKeys, PrError, PrKey, PrPath};
use sm_core::driver::Ctx;
use sm_core::errors::{SmCode, SmError, SmResult};
use sm_core::ids::ScsiId;

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
    let sm_config = crate::iscsi_sr::config::sr_sm_config(cx)?;
    Policy::from_config(cx.dconf().as_map(), &sm_config)
        .map_err(|e| SmError::new(SmCode::ConfigParamsMissing, e))
}

/// The SMAPI fault for a reservation failure on the VDI.
pub fn fault(vdi: &str, e: PrError) -> SmError {
    let code = match &e {
        PrError::InUse { .. } | PrError::Foreign { .. } | PrError::ReservedOtherwise { .. } => {
            SmCode::VDIInUse
        }
        PrError::Fenced { .. } => SmCode::VDIUnavailable,
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

/// The reservation engine for the SR's LUNs on this host: paths and multipathd from
/// `storage`, this host's key and the pool from XenAPI, the policy from the SR.
fn with_engine<T>(
    cx: &Ctx<'_>,
    storage: &dyn Storage,
    f: impl FnOnce(&Activation<'_>) -> SmResult<T>,
) -> SmResult<T> {
    let policy = policy(cx)?;
    let (me, pool) = me_and_pool(cx)?;
    let owners = PoolOwners {
        pool: &pool,
        live: cx.xapi()?,
    };
    let multipathd = storage.multipathd(cx);
    let paths = StoragePaths { cx, storage };
    f(&Activation {
        paths: &paths,
        multipathd: multipathd.as_ref(),
        me,
        policy: &policy,
        owners: &owners,
    })
}

/// The storage layer's paths of the SR's LUNs, for the engine.
struct StoragePaths<'a> {
    cx: &'a Ctx<'a>,
    storage: &'a dyn Storage,
}

impl PathSource for StoragePaths<'_> {
    fn paths(&self, lu: &ScsiId) -> Result<Vec<PrPath>, PrError> {
        self.storage.paths(self.cx, lu)
    }
}

/// vdi_activate.
pub fn activate(
    cx: &Ctx<'_>,
    storage: &dyn Storage,
    vdi: &str,
    scsi_id: &ScsiId,
    writable: bool,
) -> SmResult<()> {
    let host = host_ref(cx)?;
    let x = cx.xapi()?;
    let mode = if writable { "RW" } else { "RO" };
    if writable {
        let done = with_engine(cx, storage, |e| {
            e.activate(scsi_id).map_err(|e| fault(vdi, e))
        })?;
        for f in &done.acquired.fenced {
            tracing::warn!(vdi, %scsi_id, "FENCED {f} to activate the VDI");
        }
        let late = &done.rechecked.registered_late;
        if !late.is_empty() {
            tracing::warn!(vdi, paths = ?late, "registered paths that appeared during activation");
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
pub fn deactivate(
    cx: &Ctx<'_>,
    storage: &dyn Storage,
    vdi: &str,
    scsi_id: &ScsiId,
) -> SmResult<()> {
    let host = host_ref(cx)?;
    let x = cx.xapi()?;
    let key = host_key(host);
    let mode = x.vdi_get_sm_config(vdi)?.get(&key).cloned();
    if mode.as_deref() != Some("RO") {
        with_engine(cx, storage, |e| {
            e.deactivate(scsi_id).map_err(|e| fault(vdi, e))
        })?;
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
    with_engine(cx, storage, |e| Ok(e.clean_stale(luns, active).cleaned))
}
