//! What a change printed: the access report of `set-tpg-access` / `failover`, and the one
//! line of the path and port changes.

use std::io::Write;

use multipath::Result;
use multipath::alua::AccessReport;

use super::table::{self, io};

/// `msg`, or `{"ok": true, "message": msg}`.
pub fn done(out: &mut dyn Write, json: bool, msg: &str) -> Result<()> {
    if json {
        return table::json(out, &serde_json::json!({"ok": true, "message": msg}));
    }
    writeln!(out, "{msg}").map_err(io)
}

/// How the change was made, each group's state before / requested / after, and the timings.
pub fn access(out: &mut dyn Write, r: &AccessReport, json: bool) -> Result<()> {
    if json {
        return table::json(out, r);
    }
    writeln!(out, "{}: {}", r.lu, r.method).map_err(io)?;
    let rows = r
        .changes
        .iter()
        .map(|c| {
            vec![
                c.tpg_id.to_string(),
                c.before.to_string(),
                c.requested.to_string(),
                c.after.to_string(),
            ]
        })
        .collect();
    table::rows(out, &["TPG", "BEFORE", "REQUESTED", "AFTER"], rows)?;
    writeln!(
        out,
        "array: {} ms ({} RTPG reads); host {}",
        r.array_ms,
        r.rtpg_reads,
        if r.host_followed {
            format!("followed in {} ms", r.host_ms)
        } else {
            "not awaited".into()
        }
    )
    .map_err(io)
}
