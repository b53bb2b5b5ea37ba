//! The one SCSI error type and the one classification upper layers match on.
//!
//! Every command outcome goes through [`classify`]: SCSI status, host (transport) status,
//! driver status and sense data fold into a [`Condition`]. Sense is decoded once, by
//! [`crate::scsi::wire::sense::parse`]. [`Condition::retry`] says whether a command may be
//! re-sent; [`crate::scsi::RetryPolicy`] bounds how often.

use nix::errno::Errno;

use super::cdb::Op;
use super::wire::ParseError;
use super::wire::sense::{self, SenseInfo, SenseKey};

/// SCSI status GOOD.
pub const STATUS_GOOD: u8 = 0x00;
/// SCSI status CHECK CONDITION (sense data follows).
pub const STATUS_CHECK_CONDITION: u8 = 0x02;
/// SCSI status CONDITION MET.
pub const STATUS_CONDITION_MET: u8 = 0x04;
/// SCSI status BUSY.
pub const STATUS_BUSY: u8 = 0x08;
/// SCSI status RESERVATION CONFLICT (a status, never sense).
pub const STATUS_RESERVATION_CONFLICT: u8 = 0x18;
/// SCSI status TASK SET FULL.
pub const STATUS_TASK_SET_FULL: u8 = 0x28;
/// SCSI status ACA ACTIVE.
pub const STATUS_ACA_ACTIVE: u8 = 0x30;
/// SCSI status TASK ABORTED.
pub const STATUS_TASK_ABORTED: u8 = 0x40;

/// Linux host status: no error.
pub const DID_OK: u16 = 0x00;
/// Linux host status: could not connect (path gone).
pub const DID_NO_CONNECT: u16 = 0x01;
/// Linux host status: bus busy.
pub const DID_BUS_BUSY: u16 = 0x02;
/// Linux host status: the command timed out.
pub const DID_TIME_OUT: u16 = 0x03;
/// Linux host status: retry immediately.
pub const DID_IMM_RETRY: u16 = 0x0c;
/// Linux host status: requeue.
pub const DID_REQUEUE: u16 = 0x0d;
/// Linux host status: transport disrupted (e.g. iSCSI session recovery).
pub const DID_TRANSPORT_DISRUPTED: u16 = 0x0e;
/// Linux host status: transport failed fast (session down past its timeout).
pub const DID_TRANSPORT_FAILFAST: u16 = 0x0f;

/// Linux driver status (low nibble): the command timed out.
pub const DRIVER_TIMEOUT: u16 = 0x06;
/// Linux driver status (low nibble): sense data is valid.
pub const DRIVER_SENSE: u16 = 0x08;

/// Why a NOT READY came back: the ALUA subcodes and LIO's LU communication failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotReady {
    /// 04/0A: an asymmetric access state transition is in progress (retry within a deadline).
    Transitioning,
    /// 04/0B: the target port is in standby.
    Standby,
    /// 04/0C: the target port is unavailable.
    Unavailable,
    /// 04/12: the target port is offline (secondary state).
    Offline,
    /// 04/01: becoming ready (retry).
    BecomingReady,
    /// 08/00: LU communication failure. LIO answers this to RESERVE/RELEASE/CLEAR/REGISTER AND
    /// MOVE from an unregistered I_T nexus, and to a PR OUT that it applied but could not
    /// persist (missing PR state directory).
    LuCommunicationFailure,
    /// Any other ASC/ASCQ.
    Other {
        /// ASC.
        asc: u8,
        /// ASCQ.
        ascq: u8,
    },
}

impl NotReady {
    /// Classifies a NOT READY ASC/ASCQ.
    pub fn from_asc(asc: u8, ascq: u8) -> NotReady {
        match (asc, ascq) {
            (0x04, 0x0a) => NotReady::Transitioning,
            (0x04, 0x0b) => NotReady::Standby,
            (0x04, 0x0c) => NotReady::Unavailable,
            (0x04, 0x12) => NotReady::Offline,
            (0x04, 0x01) => NotReady::BecomingReady,
            (0x08, 0x00) => NotReady::LuCommunicationFailure,
            (asc, ascq) => NotReady::Other { asc, ascq },
        }
    }

    /// The ASC/ASCQ pair.
    pub fn asc_ascq(self) -> (u8, u8) {
        match self {
            NotReady::Transitioning => (0x04, 0x0a),
            NotReady::Standby => (0x04, 0x0b),
            NotReady::Unavailable => (0x04, 0x0c),
            NotReady::Offline => (0x04, 0x12),
            NotReady::BecomingReady => (0x04, 0x01),
            NotReady::LuCommunicationFailure => (0x08, 0x00),
            NotReady::Other { asc, ascq } => (asc, ascq),
        }
    }
}

/// What happened to a command, in the terms upper layers decide on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Status 0x18 (no sense): another I_T nexus holds a conflicting reservation, or a PR OUT
    /// key check failed. Never retried.
    ReservationConflict,
    /// UNIT ATTENTION: something changed (2A/03..07 PR and ALUA changes, 29/xx resets); the
    /// command was not executed. Retried a bounded number of times.
    UnitAttention {
        /// ASC.
        asc: u8,
        /// ASCQ.
        ascq: u8,
    },
    /// NOT READY, with the ALUA subcodes told apart.
    NotReady(NotReady),
    /// ILLEGAL REQUEST: invalid opcode (20/00), field in CDB (24/00) or parameter list (26/00),
    /// parameter list length (1A/00), ... Never retried.
    IllegalRequest {
        /// ASC.
        asc: u8,
        /// ASCQ.
        ascq: u8,
    },
    /// ABORTED COMMAND sense key: the target aborted it (retried, bounded).
    AbortedCommand {
        /// ASC.
        asc: u8,
        /// ASCQ.
        ascq: u8,
    },
    /// Any other sense key (MEDIUM ERROR, HARDWARE ERROR, DATA PROTECT, ...).
    Sense {
        /// Sense key.
        key: SenseKey,
        /// ASC.
        asc: u8,
        /// ASCQ.
        ascq: u8,
    },
    /// Status BUSY (retried, bounded).
    Busy,
    /// Status TASK SET FULL (retried, bounded).
    TaskSetFull,
    /// Status TASK ABORTED (another initiator's PREEMPT AND ABORT, a LUN reset, ...).
    TaskAborted,
    /// Any other status, or CHECK CONDITION without sense data.
    Status(u8),
    /// The initiator side failed the command (Linux host/driver status): path or session
    /// trouble rather than a target answer.
    Transport {
        /// Host status (`DID_*`).
        host_status: u16,
        /// Driver status (`DRIVER_*`).
        driver_status: u16,
    },
    /// No answer within the command timeout (whether the target executed it is unknown).
    Timeout,
    /// The ioctl or open failed (ENOTTY: not a SCSI device; EACCES; ENODEV, ...).
    Io(Errno),
    /// The device answered GOOD with data we cannot decode.
    Malformed(ParseError),
    /// The caller asked for something the protocol cannot express.
    Invalid(String),
}

/// Whether a condition may be retried on the same path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Do not re-send (conflicts, illegal requests, hard errors, timeouts).
    Never,
    /// Re-send a bounded number of times (unit attentions, busy, transient transport errors).
    Bounded,
    /// Re-send until a deadline (ALUA transitioning, becoming ready).
    UntilDeadline,
}

impl Condition {
    /// The retry class of this condition (SPC-4 semantics; see mp-pr-anchor trap 7).
    pub fn retry(&self) -> Retry {
        match self {
            Condition::UnitAttention { .. }
            | Condition::AbortedCommand { .. }
            | Condition::Busy
            | Condition::TaskSetFull => Retry::Bounded,
            Condition::NotReady(NotReady::Transitioning | NotReady::BecomingReady) => {
                Retry::UntilDeadline
            }
            Condition::Transport { host_status, .. } => match *host_status {
                DID_BUS_BUSY | DID_IMM_RETRY | DID_REQUEUE | DID_TRANSPORT_DISRUPTED => {
                    Retry::Bounded
                }
                _ => Retry::Never,
            },
            Condition::ReservationConflict
            | Condition::NotReady(_)
            | Condition::IllegalRequest { .. }
            | Condition::Sense { .. }
            | Condition::TaskAborted
            | Condition::Status(_)
            | Condition::Timeout
            | Condition::Io(_)
            | Condition::Malformed(_)
            | Condition::Invalid(_) => Retry::Never,
        }
    }

    /// Whether this says "the path is unusable" rather than "the LU answered": transport and
    /// I/O failures, timeouts, and the ALUA states in which the port processes no I/O.
    pub fn is_path_failure(&self) -> bool {
        matches!(
            self,
            Condition::Transport { .. }
                | Condition::Timeout
                | Condition::Io(_)
                | Condition::NotReady(
                    NotReady::Standby | NotReady::Unavailable | NotReady::Offline
                )
        )
    }

    /// Whether the command is known not to have been executed by the device server, so that
    /// re-sending it cannot apply it twice.
    pub fn not_executed(&self) -> bool {
        !matches!(
            self,
            Condition::Timeout | Condition::Transport { .. } | Condition::Malformed(_)
        )
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let asc = |f: &mut std::fmt::Formatter<'_>, name: &str, a: u8, q: u8| {
            write!(f, "{name} {a:02x}/{q:02x}")?;
            match sense::asc_text(a, q) {
                Some(t) => write!(f, " ({t})"),
                None => Ok(()),
            }
        };
        match self {
            Condition::ReservationConflict => f.write_str("RESERVATION CONFLICT"),
            Condition::UnitAttention { asc: a, ascq: q } => asc(f, "UNIT ATTENTION", *a, *q),
            Condition::NotReady(n) => {
                let (a, q) = n.asc_ascq();
                asc(f, "NOT READY", a, q)
            }
            Condition::IllegalRequest { asc: a, ascq: q } => asc(f, "ILLEGAL REQUEST", *a, *q),
            Condition::AbortedCommand { asc: a, ascq: q } => asc(f, "ABORTED COMMAND", *a, *q),
            Condition::Sense {
                key,
                asc: a,
                ascq: q,
            } => asc(f, key.name(), *a, *q),
            Condition::Busy => f.write_str("BUSY"),
            Condition::TaskSetFull => f.write_str("TASK SET FULL"),
            Condition::TaskAborted => f.write_str("TASK ABORTED"),
            Condition::Status(s) => write!(f, "SCSI status {s:#04x}"),
            Condition::Transport {
                host_status,
                driver_status,
            } => write!(
                f,
                "transport failure (host status {host_status:#04x} {}, driver status {driver_status:#04x})",
                host_status_name(*host_status)
            ),
            Condition::Timeout => f.write_str("timed out"),
            Condition::Io(e) => write!(f, "I/O error: {e}"),
            Condition::Malformed(e) => write!(f, "malformed response: {e}"),
            Condition::Invalid(why) => write!(f, "invalid request: {why}"),
        }
    }
}

/// The kernel's name for a host status.
pub fn host_status_name(h: u16) -> &'static str {
    match h {
        0x00 => "DID_OK",
        0x01 => "DID_NO_CONNECT",
        0x02 => "DID_BUS_BUSY",
        0x03 => "DID_TIME_OUT",
        0x04 => "DID_BAD_TARGET",
        0x05 => "DID_ABORT",
        0x06 => "DID_PARITY",
        0x07 => "DID_ERROR",
        0x08 => "DID_RESET",
        0x09 => "DID_BAD_INTR",
        0x0a => "DID_PASSTHROUGH",
        0x0b => "DID_SOFT_ERROR",
        0x0c => "DID_IMM_RETRY",
        0x0d => "DID_REQUEUE",
        0x0e => "DID_TRANSPORT_DISRUPTED",
        0x0f => "DID_TRANSPORT_FAILFAST",
        0x11 => "DID_NEXUS_FAILURE",
        0x12 => "DID_ALLOC_FAILURE",
        0x13 => "DID_MEDIUM_ERROR",
        0x14 => "DID_TRANSPORT_MARGINAL",
        _ => "unknown",
    }
}

/// Everything a transport learned about one finished command, before interpretation.
#[derive(Debug, Clone, Copy)]
pub struct RawStatus<'a> {
    /// SCSI status byte.
    pub status: u8,
    /// Linux host status (0 for transports without one).
    pub host_status: u16,
    /// Linux driver status.
    pub driver_status: u16,
    /// Sense bytes as returned (may be empty).
    pub sense: &'a [u8],
}

/// Folds a finished command into success (with recovered-error sense, if any) or a
/// [`Condition`] with its decoded sense. This is the only place statuses are interpreted.
pub fn classify(raw: RawStatus<'_>) -> Result<Option<SenseInfo>, (Condition, Option<SenseInfo>)> {
    let driver = raw.driver_status & 0x0f;
    if raw.host_status == DID_TIME_OUT || driver == DRIVER_TIMEOUT {
        return Err((Condition::Timeout, None));
    }
    if raw.host_status != DID_OK {
        return Err((
            Condition::Transport {
                host_status: raw.host_status,
                driver_status: raw.driver_status,
            },
            None,
        ));
    }
    let has_sense =
        !raw.sense.is_empty() && (raw.status == STATUS_CHECK_CONDITION || driver == DRIVER_SENSE);
    let decoded = if has_sense {
        sense::parse(raw.sense).ok()
    } else {
        None
    };
    match raw.status {
        STATUS_GOOD | STATUS_CONDITION_MET if decoded.is_none() => Ok(None),
        STATUS_GOOD | STATUS_CONDITION_MET | STATUS_CHECK_CONDITION => match decoded {
            Some(s) => classify_sense(s),
            None => Err((Condition::Status(raw.status), None)),
        },
        STATUS_BUSY => Err((Condition::Busy, None)),
        STATUS_RESERVATION_CONFLICT => Err((Condition::ReservationConflict, None)),
        STATUS_TASK_SET_FULL => Err((Condition::TaskSetFull, None)),
        STATUS_TASK_ABORTED => Err((Condition::TaskAborted, None)),
        other => Err((Condition::Status(other), decoded)),
    }
}

fn classify_sense(s: SenseInfo) -> Result<Option<SenseInfo>, (Condition, Option<SenseInfo>)> {
    let (asc, ascq) = (s.asc, s.ascq);
    let c = match s.key {
        SenseKey::NoSense | SenseKey::RecoveredError | SenseKey::Completed if !s.deferred => {
            return Ok(Some(s));
        }
        SenseKey::NotReady => Condition::NotReady(NotReady::from_asc(asc, ascq)),
        SenseKey::UnitAttention => Condition::UnitAttention { asc, ascq },
        SenseKey::IllegalRequest => Condition::IllegalRequest { asc, ascq },
        SenseKey::AbortedCommand => Condition::AbortedCommand { asc, ascq },
        key => Condition::Sense { key, asc, ascq },
    };
    Err((c, Some(s)))
}

/// Why a SCSI operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScsiError {
    /// The device node could not be opened.
    #[error("cannot open {path}: {errno}")]
    Open {
        /// The path.
        path: String,
        /// The OS error.
        errno: Errno,
    },
    /// A command failed (after any retries the policy allowed).
    #[error("{op} on {device}: {condition}{}", attempts_note(*attempts))]
    Command {
        /// Device path (or the fake's path name).
        device: String,
        /// The command.
        op: Op,
        /// What happened.
        condition: Condition,
        /// Decoded sense, when the device sent some.
        sense: Option<SenseInfo>,
        /// How many times the command was sent.
        attempts: u32,
    },
    /// The request cannot be expressed (e.g. STPG to TRANSITIONING, an oversized list).
    #[error("invalid SCSI request: {0}")]
    Invalid(String),
}

fn attempts_note(n: u32) -> String {
    if n > 1 {
        format!(" (after {n} attempts)")
    } else {
        String::new()
    }
}

impl ScsiError {
    /// A command failure with no sense.
    pub fn command(device: &str, cdb: &[u8], condition: Condition) -> ScsiError {
        ScsiError::Command {
            device: device.into(),
            op: Op::of(cdb),
            condition,
            sense: None,
            attempts: 1,
        }
    }

    /// The classification upper layers match on.
    pub fn condition(&self) -> Condition {
        match self {
            ScsiError::Open { errno, .. } => Condition::Io(*errno),
            ScsiError::Command { condition, .. } => condition.clone(),
            ScsiError::Invalid(why) => Condition::Invalid(why.clone()),
        }
    }

    /// The decoded sense, if the device sent any.
    pub fn sense(&self) -> Option<&SenseInfo> {
        match self {
            ScsiError::Command { sense, .. } => sense.as_ref(),
            _ => None,
        }
    }

    /// Shorthand: status RESERVATION CONFLICT.
    pub fn is_reservation_conflict(&self) -> bool {
        matches!(
            self,
            ScsiError::Command {
                condition: Condition::ReservationConflict,
                ..
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::wire::fixtures::load;

    fn raw(status: u8, sense: &[u8]) -> RawStatus<'_> {
        RawStatus {
            status,
            host_status: 0,
            driver_status: if sense.is_empty() { 0 } else { DRIVER_SENSE },
            sense,
        }
    }

    fn cond(status: u8, sense: &[u8]) -> Condition {
        classify(raw(status, sense)).unwrap_err().0
    }

    #[test]
    fn reservation_conflict_is_a_status() {
        assert_eq!(
            cond(STATUS_RESERVATION_CONFLICT, &[]),
            Condition::ReservationConflict
        );
        assert_eq!(Condition::ReservationConflict.retry(), Retry::Never);
    }

    #[test]
    fn lio_sense_classification() {
        let cases: &[(&str, Condition)] = &[
            (
                "tur_standby_hostb_p2_1.sense",
                Condition::NotReady(NotReady::Standby),
            ),
            (
                "tur_transitioning_hostb_p2.sense",
                Condition::NotReady(NotReady::Transitioning),
            ),
            (
                "tur_unavailable_hostb_p2.sense",
                Condition::NotReady(NotReady::Unavailable),
            ),
            (
                "tur_offline_hostb_p2.sense",
                Condition::NotReady(NotReady::Offline),
            ),
            (
                "sense_reserve_unregistered.sense",
                Condition::NotReady(NotReady::LuCommunicationFailure),
            ),
            (
                "big_sense_reserve_unregistered.sense",
                Condition::NotReady(NotReady::LuCommunicationFailure),
            ),
            (
                "sense_invalid_opcode.sense",
                Condition::IllegalRequest { asc: 0x20, ascq: 0 },
            ),
            (
                "big_sense_invalid_opcode.sense",
                Condition::IllegalRequest { asc: 0x20, ascq: 0 },
            ),
            (
                "sense_reserve_bad_scope.sense",
                Condition::IllegalRequest { asc: 0x26, ascq: 0 },
            ),
            (
                "sense_prout_len20.sense",
                Condition::IllegalRequest { asc: 0x1a, ascq: 0 },
            ),
            (
                "ua_registrations_preempted.sense",
                Condition::UnitAttention {
                    asc: 0x2a,
                    ascq: 0x05,
                },
            ),
            (
                "ua_reservations_released.sense",
                Condition::UnitAttention {
                    asc: 0x2a,
                    ascq: 0x04,
                },
            ),
            (
                "ua_reservations_preempted_clear.sense",
                Condition::UnitAttention {
                    asc: 0x2a,
                    ascq: 0x03,
                },
            ),
        ];
        for (name, want) in cases {
            assert_eq!(&cond(STATUS_CHECK_CONDITION, &load(name)), want, "{name}");
        }
    }

    #[test]
    fn retry_classes() {
        assert_eq!(
            Condition::UnitAttention { asc: 0x2a, ascq: 6 }.retry(),
            Retry::Bounded
        );
        assert_eq!(
            Condition::NotReady(NotReady::Transitioning).retry(),
            Retry::UntilDeadline
        );
        assert_eq!(
            Condition::NotReady(NotReady::LuCommunicationFailure).retry(),
            Retry::Never
        );
        assert_eq!(
            Condition::NotReady(NotReady::Unavailable).retry(),
            Retry::Never
        );
        assert_eq!(
            Condition::IllegalRequest { asc: 0x24, ascq: 0 }.retry(),
            Retry::Never
        );
        assert_eq!(Condition::Timeout.retry(), Retry::Never);
        assert!(!Condition::Timeout.not_executed());
        assert!(Condition::NotReady(NotReady::Standby).is_path_failure());
    }

    #[test]
    fn host_and_driver_status() {
        let r = RawStatus {
            status: 0,
            host_status: DID_TRANSPORT_FAILFAST,
            driver_status: 0,
            sense: &[],
        };
        assert!(matches!(
            classify(r),
            Err((
                Condition::Transport {
                    host_status: 0x0f,
                    ..
                },
                None
            ))
        ));
        let r = RawStatus {
            status: 0,
            host_status: DID_TIME_OUT,
            driver_status: 0,
            sense: &[],
        };
        assert!(matches!(classify(r), Err((Condition::Timeout, None))));
        let r = RawStatus {
            status: 0,
            host_status: 0,
            driver_status: DRIVER_TIMEOUT,
            sense: &[],
        };
        assert!(matches!(classify(r), Err((Condition::Timeout, None))));
    }

    #[test]
    fn recovered_error_and_odd_statuses() {
        let rec = SenseInfo::new(SenseKey::RecoveredError, 0x17, 0x01).encode();
        assert!(matches!(
            classify(raw(STATUS_CHECK_CONDITION, &rec)),
            Ok(Some(_))
        ));
        assert!(matches!(classify(raw(STATUS_GOOD, &[])), Ok(None)));
        assert_eq!(
            cond(STATUS_CHECK_CONDITION, &[]),
            Condition::Status(STATUS_CHECK_CONDITION)
        );
        assert_eq!(cond(STATUS_BUSY, &[]), Condition::Busy);
        assert_eq!(cond(STATUS_TASK_SET_FULL, &[]), Condition::TaskSetFull);
        assert_eq!(cond(0x22, &[]), Condition::Status(0x22));
        // Garbage sense with CHECK CONDITION is reported as a bare status, not a panic.
        assert_eq!(
            cond(STATUS_CHECK_CONDITION, &[0x01, 0x02]),
            Condition::Status(STATUS_CHECK_CONDITION)
        );
    }

    #[test]
    fn display() {
        let e = ScsiError::Command {
            device: "/dev/sdb".into(),
            op: Op::of(&[0x00, 0, 0, 0, 0, 0]),
            condition: Condition::NotReady(NotReady::Standby),
            sense: None,
            attempts: 3,
        };
        assert_eq!(
            e.to_string(),
            "TEST UNIT READY on /dev/sdb: NOT READY 04/0b (logical unit not accessible, target port in standby state) (after 3 attempts)"
        );
    }
}
