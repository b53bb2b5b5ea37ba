//! The transport seam: one trait every SCSI command goes through. [`crate::scsi::SgDevice`]
//! implements it with SG_IO; `FakeScsi` (feature `test-utils`) implements it in memory.

use std::time::Duration;

use super::error::{Condition, Retry, ScsiError};
use super::wire::sense::SenseInfo;

/// Data transfer of one command, with the caller's buffer.
#[derive(Debug)]
pub enum DataDir<'a> {
    /// No data phase.
    None,
    /// Data-in: the device fills (a prefix of) this buffer.
    FromDevice(&'a mut [u8]),
    /// Data-out: these bytes go to the device.
    ToDevice(&'a [u8]),
}

impl DataDir<'_> {
    /// A shorter-lived view of the same buffer (to re-send a command).
    pub fn reborrow(&mut self) -> DataDir<'_> {
        match self {
            DataDir::None => DataDir::None,
            DataDir::FromDevice(b) => DataDir::FromDevice(b),
            DataDir::ToDevice(b) => DataDir::ToDevice(b),
        }
    }

    /// Bytes in the data phase.
    pub fn len(&self) -> usize {
        match self {
            DataDir::None => 0,
            DataDir::FromDevice(b) => b.len(),
            DataDir::ToDevice(b) => b.len(),
        }
    }

    /// Whether there is no data phase (or an empty one).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A command that completed with GOOD (or CONDITION MET, or a recovered error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// SCSI status (GOOD or CONDITION MET).
    pub status: u8,
    /// Residual count: bytes of the data phase that were not transferred.
    pub resid: usize,
    /// Sense data that came with a successful completion (RECOVERED ERROR).
    pub sense: Option<SenseInfo>,
    /// Time the command took.
    pub duration: Duration,
}

impl Completion {
    /// Bytes actually transferred out of a data phase of `len` bytes.
    pub fn transferred(&self, len: usize) -> usize {
        len.saturating_sub(self.resid)
    }
}

/// One command as the device and the initiator answered it, before any interpretation: what
/// a pass-through (the QEMU pr-helper protocol) hands on unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawOutcome {
    /// SCSI status byte.
    pub status: u8,
    /// Linux host status (`DID_*`).
    pub host_status: u16,
    /// Linux driver status (`DRIVER_*`).
    pub driver_status: u16,
    /// Residual count of the data phase.
    pub resid: usize,
    /// Sense bytes exactly as the device wrote them (at most 96).
    pub sense: Vec<u8>,
    /// Time the command took.
    pub duration: Duration,
}

impl RawOutcome {
    /// What the one classifier makes of this outcome: `None` for success (GOOD, CONDITION MET,
    /// a recovered error), else the condition.
    pub fn condition(&self) -> Option<Condition> {
        super::error::classify(super::error::RawStatus {
            status: self.status,
            host_status: self.host_status,
            driver_status: self.driver_status,
            sense: &self.sense,
        })
        .err()
        .map(|(c, _)| c)
    }
}

/// Executes CDBs on one I_T_L nexus (a path to a logical unit).
///
/// Implementations send the command once and classify the outcome with
/// [`crate::scsi::error::classify`]; retries belong to [`crate::scsi::exec`].
pub trait ScsiTransport: Send + Sync {
    /// Sends `cdb` with `data` and waits at most `timeout`.
    fn execute(
        &self,
        cdb: &[u8],
        data: DataDir<'_>,
        timeout: Duration,
    ) -> Result<Completion, ScsiError>;

    /// Sends `cdb` once and returns the outcome uninterpreted (status, host and driver status,
    /// sense bytes as written). `Err` when the command could not be issued at all (the ioctl's
    /// errno). Transports that only report classified outcomes answer `EOPNOTSUPP`.
    fn execute_raw(
        &self,
        cdb: &[u8],
        data: DataDir<'_>,
        timeout: Duration,
    ) -> Result<RawOutcome, nix::errno::Errno> {
        let _ = (cdb, data, timeout);
        Err(nix::errno::Errno::EOPNOTSUPP)
    }

    /// The device path (or a fake's name), for logs and errors.
    fn device(&self) -> &str;

    /// How commands on this transport are timed and retried. The default suits real devices;
    /// test doubles return a policy without sleeps.
    fn policy(&self) -> RetryPolicy {
        RetryPolicy::default()
    }
}

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
