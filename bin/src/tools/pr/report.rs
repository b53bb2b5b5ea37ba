//! What an `xsm pr` operation did: one line of text, or one JSON object (the lab parses it).

use reservations::{PrError, PrKey, Report};
use serde_json::{Value, json};
use sm_core::errors::error_chain;

/// The operation that ran, on which LU, with which key, in how long.
pub struct Done<'a> {
    /// The command (`acquire`, ...).
    pub command: &'a str,
    /// The LU.
    pub lu: &'a str,
    /// This host's key.
    pub key: PrKey,
    /// Milliseconds it took.
    pub ms: u128,
}

impl Done<'_> {
    /// `{"command", "lu", "key", "ok", "ms", ...}`: the report's fields, or `in_use` and `error`.
    pub fn json(&self, result: &Result<Report, PrError>) -> Value {
        let (cmd, lu, key, ms) = (self.command, self.lu, self.key.to_string(), self.ms);
        match result {
            Ok(r) => json!({
                "command": cmd, "lu": lu, "key": key, "ok": true, "ms": ms,
                "unchanged": r.unchanged, "fenced": r.fenced, "preempted": r.preempted,
                "applied_despite_error": r.applied_despite_error,
                "registered_late": r.registered_late,
                "state": r.state.to_string(),
            }),
            Err(e) => json!({
                "command": cmd, "lu": lu, "key": key, "ok": false,
                "in_use": e.is_in_use(), "error": error_chain(e), "ms": ms,
            }),
        }
    }

    /// `acquire LU: done in N ms; <state>`, or `xsm pr acquire LU: <error chain>`.
    pub fn line(&self, result: &Result<Report, PrError>) -> String {
        match result {
            Ok(r) => format!(
                "{} {}: done in {} ms; {}",
                self.command, self.lu, self.ms, r.state
            ),
            Err(e) => format!("xsm pr {} {}: {}", self.command, self.lu, error_chain(e)),
        }
    }
}
