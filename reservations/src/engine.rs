//! The PR engine on one multipath LU: PERSISTENT RESERVE IN through the first path that
//! answers, PERSISTENT RESERVE OUT on a chosen path, each failure classified.
//!
//! PR IN goes to the first usable path and moves on only when that path itself failed
//! (transport errors, timeouts, standby/unavailable/offline ALUA ports, as libmpathpersist's
//! `mpath_prin_activepath`); an ILLEGAL REQUEST means the LU does not support the command and
//! is final. Unit attentions and ALUA transitions are retried by `sm_core::scsi::exec`.

use std::cell::Cell;

use sm_core::scsi::{
    self, Condition, PrCapabilities, PrFullStatus, PrKeys, PrOut, PrReservation, PrType, ScsiError,
    ScsiTransport,
};

use crate::error::PrError;
use crate::path::PrPath;
use crate::state::LuState;

/// How a PR OUT on one path ended.
#[derive(Debug)]
pub enum OutResult {
    /// GOOD.
    Done,
    /// RESERVATION CONFLICT: the device refused it on key or reservation grounds.
    Conflict(ScsiError),
    /// The path failed (transport, timeout, port not accessible): try another path.
    PathFailed(ScsiError),
    /// The device reported a failure after which the command may still have been applied
    /// (LIO's NOT READY 08/00 when it cannot persist PR state, a lost response): read back.
    Unknown(ScsiError),
    /// Refused as invalid (ILLEGAL REQUEST) or any other definite failure.
    Failed(ScsiError),
}

impl OutResult {
    fn of(r: Result<(), ScsiError>) -> OutResult {
        match r {
            Ok(()) => OutResult::Done,
            Err(e) => match e.condition() {
                Condition::ReservationConflict => OutResult::Conflict(e),
                c if c.is_path_failure() && c.not_executed() => OutResult::PathFailed(e),
                Condition::NotReady(sm_core::scsi::NotReady::LuCommunicationFailure)
                | Condition::Timeout
                | Condition::Transport { .. }
                | Condition::UnitAttention { .. }
                | Condition::TaskAborted => OutResult::Unknown(e),
                _ => OutResult::Failed(e),
            },
        }
    }

    /// The SCSI error, if any.
    pub fn error(self) -> Option<ScsiError> {
        match self {
            OutResult::Done => None,
            OutResult::Conflict(e)
            | OutResult::PathFailed(e)
            | OutResult::Unknown(e)
            | OutResult::Failed(e) => Some(e),
        }
    }
}

/// One multipath LU and its paths.
pub struct Lu<'a> {
    id: String,
    paths: &'a [PrPath],
    /// `Some(false)` once READ FULL STATUS was refused (tgt has none).
    full_status: Cell<Option<bool>>,
}

impl<'a> Lu<'a> {
    /// The LU `id` (its WWID) reached through `paths`.
    pub fn new(id: impl Into<String>, paths: &'a [PrPath]) -> Lu<'a> {
        Lu {
            id: id.into(),
            paths,
            full_status: Cell::new(None),
        }
    }

    /// The LU's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Every path, usable or not.
    pub fn paths(&self) -> &'a [PrPath] {
        self.paths
    }

    /// The usable paths, in order.
    pub fn usable(&self) -> impl Iterator<Item = &'a PrPath> + 'a {
        self.paths.iter().filter(|p| p.usable)
    }

    fn scsi_err(&self, op: &'static str, path: &PrPath, source: ScsiError) -> PrError {
        PrError::Scsi {
            lu: self.id.clone(),
            op,
            path: path.name.clone(),
            source: Box::new(source),
        }
    }

    /// Runs a PR IN command on the first usable path that answers.
    fn pr_in<T>(
        &self,
        op: &'static str,
        f: impl Fn(&dyn ScsiTransport) -> Result<T, ScsiError>,
    ) -> Result<T, PrError> {
        let mut last = None;
        for p in self.usable() {
            match f(p.transport.as_ref()) {
                Ok(v) => return Ok(v),
                Err(e) => match e.condition() {
                    Condition::IllegalRequest { .. } => {
                        return Err(PrError::Unsupported {
                            lu: self.id.clone(),
                            source: Box::new(e),
                        });
                    }
                    c if c.is_path_failure() || c.retry() != scsi::Retry::Never => {
                        tracing::warn!(lu = %self.id, path = %p.name, op, "PR IN failed on this path, trying the next: {e}");
                        last = Some(self.scsi_err(op, p, e));
                    }
                    _ => return Err(self.scsi_err(op, p, e)),
                },
            }
        }
        Err(last.unwrap_or_else(|| PrError::NoUsablePath {
            lu: self.id.clone(),
        }))
    }

    /// REPORT CAPABILITIES.
    pub fn capabilities(&self) -> Result<PrCapabilities, PrError> {
        self.pr_in("REPORT CAPABILITIES", scsi::pr_report_capabilities)
    }

    /// REPORT CAPABILITIES, and a clear error when `wanted` is not in the type mask.
    pub fn check_type(&self, wanted: PrType) -> Result<PrCapabilities, PrError> {
        let caps = self.capabilities()?;
        if caps.tmv && !caps.types.contains(&wanted) {
            return Err(PrError::TypeUnsupported {
                lu: self.id.clone(),
                wanted,
                supported: caps.types,
            });
        }
        Ok(caps)
    }

    /// READ KEYS.
    pub fn read_keys(&self) -> Result<PrKeys, PrError> {
        self.pr_in("READ KEYS", scsi::pr_read_keys)
    }

    /// READ RESERVATION.
    pub fn read_reservation(&self) -> Result<PrReservation, PrError> {
        self.pr_in("READ RESERVATION", scsi::pr_read_reservation)
    }

    /// READ FULL STATUS.
    pub fn read_full_status(&self) -> Result<PrFullStatus, PrError> {
        self.pr_in("READ FULL STATUS", scsi::pr_read_full_status)
    }

    /// The registrations and the reservation: READ FULL STATUS (one command), or READ KEYS +
    /// READ RESERVATION on devices without it.
    pub fn state(&self) -> Result<LuState, PrError> {
        if self.full_status.get() != Some(false) {
            match self.read_full_status() {
                Ok(fs) => {
                    self.full_status.set(Some(true));
                    return Ok(LuState::from_full_status(&fs));
                }
                Err(PrError::Unsupported { source, .. }) => {
                    tracing::debug!(lu = %self.id, "no READ FULL STATUS ({source}); reading keys and reservation");
                    self.full_status.set(Some(false));
                }
                Err(e) => return Err(e),
            }
        }
        let keys = self.read_keys()?;
        let resv = self.read_reservation()?;
        Ok(LuState::from_keys(&keys, &resv))
    }

    /// Sends one PR OUT on `path`; the outcome classified, never retried here.
    pub fn out(&self, path: &PrPath, cmd: &PrOut) -> OutResult {
        OutResult::of(scsi::pr_out(path.transport.as_ref(), cmd))
    }

    /// The error for a PR OUT that failed on `path`.
    pub fn out_error(&self, op: &'static str, path: &PrPath, r: OutResult) -> PrError {
        match r.error() {
            Some(e) if matches!(e.condition(), Condition::IllegalRequest { asc: 0x20, .. }) => {
                PrError::Unsupported {
                    lu: self.id.clone(),
                    source: Box::new(e),
                }
            }
            Some(e) => self.scsi_err(op, path, e),
            None => PrError::NotVerified {
                lu: self.id.clone(),
                op,
                detail: "no error to report".into(),
            },
        }
    }

    /// A "did not take effect" error.
    pub fn not_verified(&self, op: &'static str, detail: impl Into<String>) -> PrError {
        PrError::NotVerified {
            lu: self.id.clone(),
            op,
            detail: detail.into(),
        }
    }
}
