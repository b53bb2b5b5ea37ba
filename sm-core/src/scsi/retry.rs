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
use super::error::{Condition, Retry, ScsiError};
use super::transport::{Completion, DataDir, ScsiTransport};
use super::wire::hex;

/// Timeouts and retry bounds for one transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Per-attempt command timeout.
    pub timeout: Duration,
    /// Attempts in total for the bounded conditions (1 = no retry).
    pub max_attempts: u32,
    /// Pause before re-sending after a bounded condition.
    pub retry_delay: Duration,
    /// How long to keep re-sending while the LU reports a state transition.
    pub transition_deadline: Duration,
    /// Pause between attempts while transitioning.
    pub transition_poll: Duration,
}

impl Default for RetryPolicy {
    /// 30 s per command, 5 attempts (multipath's TUR checker also allows 5 unit attentions),
    /// 60 s of transitioning (the kernel's `ALUA_FAILOVER_TIMEOUT`).
    fn default() -> RetryPolicy {
        RetryPolicy {
            timeout: Duration::from_secs(30),
            max_attempts: 5,
            retry_delay: Duration::from_millis(50),
            transition_deadline: Duration::from_secs(60),
            transition_poll: Duration::from_millis(500),
        }
    }
}

impl RetryPolicy {
    /// Send once, never retry.
    pub fn no_retry(timeout: Duration) -> RetryPolicy {
        RetryPolicy {
            timeout,
            max_attempts: 1,
            retry_delay: Duration::ZERO,
            transition_deadline: Duration::ZERO,
            transition_poll: Duration::ZERO,
        }
    }

    /// The pause before attempt `attempt + 1`, or `None` to give up.
    pub fn next_delay(
        &self,
        condition: &Condition,
        attempt: u32,
        elapsed: Duration,
    ) -> Option<Duration> {
        match condition.retry() {
            Retry::Never => None,
            Retry::Bounded => (attempt < self.max_attempts).then_some(self.retry_delay),
            Retry::UntilDeadline => (elapsed + self.transition_poll < self.transition_deadline)
                .then_some(self.transition_poll),
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::error::NotReady;

    #[test]
    fn policy_decisions() {
        let p = RetryPolicy::default();
        let ua = Condition::UnitAttention {
            asc: 0x2a,
            ascq: 0x06,
        };
        assert_eq!(p.next_delay(&ua, 1, Duration::ZERO), Some(p.retry_delay));
        assert_eq!(p.next_delay(&ua, 5, Duration::ZERO), None);
        let tr = Condition::NotReady(NotReady::Transitioning);
        assert_eq!(
            p.next_delay(&tr, 50, Duration::from_secs(10)),
            Some(p.transition_poll)
        );
        assert_eq!(p.next_delay(&tr, 2, Duration::from_secs(60)), None);
        assert_eq!(
            p.next_delay(&Condition::ReservationConflict, 1, Duration::ZERO),
            None
        );
        assert_eq!(
            p.next_delay(
                &Condition::NotReady(NotReady::LuCommunicationFailure),
                1,
                Duration::ZERO
            ),
            None
        );
        assert_eq!(
            RetryPolicy::no_retry(Duration::from_secs(1)).next_delay(&ua, 1, Duration::ZERO),
            None
        );
    }
}
