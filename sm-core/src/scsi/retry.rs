//! Sending a command with bounded retries, and the one place SCSI commands are logged.
//!
//! UNIT ATTENTION, BUSY, TASK SET FULL, ABORTED COMMAND and transient transport errors are
//! re-sent up to [`RetryPolicy::max_attempts`] times; ALUA TRANSITIONING (04/0A) and BECOMING
//! READY (04/01) are re-sent until [`RetryPolicy::transition_deadline`]; everything else
//! (reservation conflicts, illegal requests, LIO's 08/00, standby/unavailable ports, timeouts)
//! is returned at once. Each of those conditions means the target did not execute the command,
//! so a re-send cannot apply a PR OUT twice.

use std::time::{Duration, Instant};

use super::cdb::Op;
use super::error::ScsiError;
use super::transport::{Completion, DataDir, RetryPolicy, ScsiTransport};
use super::wire::hex;

/// Sends `cdb` on `t` under `t.policy()`, retrying as the policy allows.
pub fn exec(t: &dyn ScsiTransport, cdb: &[u8], data: DataDir<'_>) -> Result<Completion, ScsiError> {
    exec_with(t, cdb, data, &t.policy())
}

/// Sends `cdb` on `t` under an explicit policy.
pub fn exec_with(
    t: &dyn ScsiTransport,
    cdb: &[u8],
    mut data: DataDir<'_>,
    policy: &RetryPolicy,
) -> Result<Completion, ScsiError> {
    let started = Instant::now();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let t0 = Instant::now();
        let result = t.execute(cdb, data.reborrow(), policy.timeout);
        log(t, cdb, attempt, t0.elapsed(), &result);
        let err = match result {
            Ok(c) => return Ok(c),
            Err(e) => e,
        };
        match policy.next_delay(&err.condition(), attempt, started.elapsed()) {
            Some(d) => {
                if !d.is_zero() {
                    std::thread::sleep(d);
                }
            }
            None => return Err(with_attempts(err, attempt)),
        }
    }
}

fn with_attempts(err: ScsiError, n: u32) -> ScsiError {
    match err {
        ScsiError::Command {
            device,
            op,
            condition,
            sense,
            ..
        } => ScsiError::Command {
            device,
            op,
            condition,
            sense,
            attempts: n,
        },
        other => other,
    }
}

fn log(
    t: &dyn ScsiTransport,
    cdb: &[u8],
    attempt: u32,
    took: Duration,
    r: &Result<Completion, ScsiError>,
) {
    let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
    let op = Op::of(cdb);
    match r {
        Ok(c) => tracing::debug!(
            device = t.device(),
            %op,
            cdb = %hex(cdb),
            attempt,
            status = c.status,
            resid = c.resid,
            sense = ?c.sense.as_ref().map(ToString::to_string),
            ms,
            "scsi"
        ),
        Err(e) => tracing::debug!(
            device = t.device(),
            %op,
            cdb = %hex(cdb),
            attempt,
            condition = %e.condition(),
            sense = ?e.sense().map(ToString::to_string),
            ms,
            "scsi"
        ),
    }
}
