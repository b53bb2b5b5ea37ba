//! What iSCSI SRs record in xapi's database: the path counts xapi's `mpathalert` reads
//! (PBD `other_config:mpath-<SCSIid>` = `[active, max]`, `multipathed`), the number of
//! sessions (`iscsi_sessions`), SR `sm_config:multipathable`; and which PBDs use a SCSI id.

use std::collections::BTreeMap;

use sm_core::driver::Ctx;
use sm_core::errors::{SmCode, SmError, SmResult};
use sm_core::ids::ScsiId;
use sm_core::xmlrpc::Value;

/// One PBD record, as far as iSCSI SRs care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pbd {
    /// OpaqueRef.
    pub pbd: String,
    /// The SR's OpaqueRef.
    pub sr: String,
    /// The host's OpaqueRef.
    pub host: String,
    /// device_config.
    pub device_config: BTreeMap<String, String>,
    /// currently_attached.
    pub attached: bool,
}

/// Every PBD of the pool.
pub fn all(cx: &Ctx<'_>) -> SmResult<Vec<Pbd>> {
    let v = cx
        .xapi()?
        .call("PBD.get_all_records", &[])
        .map_err(|e| SmError::new(SmCode::APIPBDQuery, e))?;
    let Some(m) = v.as_struct() else {
        return Ok(Vec::new());
    };
    Ok(m.iter()
        .filter_map(|(r, rec)| {
            let rec = rec.as_struct()?;
            let text = |k: &str| rec.get(k).map(Value::to_text).unwrap_or_default();
            Some(Pbd {
                pbd: r.clone(),
                sr: text("SR"),
                host: text("host"),
                device_config: rec
                    .get("device_config")
                    .and_then(Value::to_string_map)
                    .unwrap_or_default(),
                attached: matches!(rec.get("currently_attached"), Some(Value::Bool(true)))
                    || text("currently_attached") == "true",
            })
        })
        .collect())
}

/// The PBD of this SR on this host, if any.
pub fn mine(cx: &Ctx<'_>) -> SmResult<Option<String>> {
    let sr = cx.sr_ref()?;
    Ok(cx.xapi()?.pbd_of(&cx.req.host_ref, &sr)?)
}

/// The key holding the path counts of `scsi_id`.
pub fn mpath_key(scsi_id: &ScsiId) -> String {
    format!("mpath-{scsi_id}")
}

/// Parses `[active, max]` (mpathcount's format).
pub fn parse_counts(v: &str) -> Option<(usize, usize)> {
    let inner = v.trim().strip_prefix('[')?.strip_suffix(']')?;
    let (a, m) = inner.split_once(',')?;
    Some((a.trim().parse().ok()?, m.trim().parse().ok()?))
}

/// Records the path counts of `scsi_id` on this SR's PBD: `[active, max]` where max is the most
/// paths ever seen (as mpathcount keeps it), `multipathed=true`, and `iscsi_sessions`.
/// Returns what was written.
pub fn record_paths(
    cx: &Ctx<'_>,
    scsi_id: &ScsiId,
    active: usize,
    total: usize,
    sessions: usize,
) -> SmResult<Option<(usize, usize)>> {
    let Some(pbd) = mine(cx)? else {
        return Ok(None);
    };
    let xapi = cx.xapi()?;
    let key = mpath_key(scsi_id);
    let oc = xapi.pbd_get_other_config(&pbd)?;
    let max = oc
        .get(&key)
        .and_then(|v| parse_counts(v))
        .map_or(total, |(_, m)| m.max(total));
    let value = format!("[{active}, {max}]");
    if oc.get(&key) != Some(&value) {
        xapi.pbd_set_other_config_key(&pbd, &key, &value)?;
    }
    if oc.get("multipathed").map(String::as_str) != Some("true") {
        xapi.pbd_set_other_config_key(&pbd, "multipathed", "true")?;
    }
    let s = sessions.to_string();
    if oc.get("iscsi_sessions") != Some(&s) {
        xapi.pbd_set_other_config_key(&pbd, "iscsi_sessions", &s)?;
    }
    Ok(Some((active, max)))
}

/// Removes the keys [`record_paths`] wrote (sr_detach).
pub fn forget_paths(cx: &Ctx<'_>, scsi_id: &ScsiId) -> SmResult<()> {
    let Some(pbd) = mine(cx)? else {
        return Ok(());
    };
    let xapi = cx.xapi()?;
    for k in [
        mpath_key(scsi_id),
        "multipathed".into(),
        "iscsi_sessions".into(),
    ] {
        if let Err(e) = xapi.call(
            "PBD.remove_from_other_config",
            &[Value::from(pbd.as_str()), Value::from(k.as_str())],
        ) {
            tracing::debug!(key = %k, "PBD.remove_from_other_config: {e}");
        }
    }
    Ok(())
}

/// Marks the SR multipathable (`sm_config:multipathable=true`, as sm's attach does).
pub fn mark_multipathable(cx: &Ctx<'_>) -> SmResult<()> {
    let sr = cx.sr_ref()?;
    let xapi = cx.xapi()?;
    if xapi
        .sr_get_sm_config(&sr)?
        .get("multipathable")
        .map(String::as_str)
        != Some("true")
    {
        xapi.sr_set_sm_config_key(&sr, "multipathable", "true")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_format() {
        assert_eq!(parse_counts("[2, 2]"), Some((2, 2)));
        assert_eq!(parse_counts("[1,4]"), Some((1, 4)));
        assert_eq!(parse_counts("2/2"), None);
        assert_eq!(mpath_key(&ScsiId::new("3600").unwrap()), "mpath-3600");
    }
}
