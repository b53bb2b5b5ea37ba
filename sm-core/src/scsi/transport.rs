//! The transport seam: one trait every SCSI command goes through. [`crate::scsi::SgDevice`]
//! implements it with SG_IO; `FakeScsi` (feature `test-utils`) implements it in memory.

use std::time::Duration;

use super::error::ScsiError;
use super::retry::RetryPolicy;
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

    /// The device path (or a fake's name), for logs and errors.
    fn device(&self) -> &str;

    /// How commands on this transport are timed and retried. The default suits real devices;
    /// test doubles return a policy without sleeps.
    fn policy(&self) -> RetryPolicy {
        RetryPolicy::default()
    }
}
