//! The answers the helper makes up itself, byte for byte what qemu-pr-helper sends: fixed-format
//! sense (`70 00 KEY .. 0A .. ASC ASCQ`, 18 bytes, the rest of the 96 zero) and the mapping of
//! SG_IO failures (the ioctl's errno, the Linux host status, a driver timeout) to a SCSI status
//! and sense. The one deliberate difference: a host status qemu does not list (DID_ERROR, ...)
//! is an ABORTED COMMAND here, where qemu reports GOOD for a command that never ran.

use nix::errno::Errno;
use sm_core::scsi::RawOutcome;
use sm_core::scsi::error::{
    STATUS_BUSY, STATUS_CHECK_CONDITION, STATUS_GOOD, STATUS_RESERVATION_CONFLICT,
    STATUS_TASK_SET_FULL,
};

use super::protocol::Reply;

/// A sense key with its additional sense code and qualifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    /// Sense key.
    pub key: u8,
    /// Additional sense code.
    pub asc: u8,
    /// Its qualifier.
    pub ascq: u8,
}

const fn code(key: u8, asc: u8, ascq: u8) -> Code {
    Code { key, asc, ascq }
}

/// ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE (PR OUT on a read-only descriptor).
pub const INVALID_OPCODE: Code = code(0x05, 0x20, 0x00);
/// ILLEGAL REQUEST, INVALID FIELD IN CDB.
pub const INVALID_FIELD: Code = code(0x05, 0x24, 0x00);
/// ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST.
pub const INVALID_PARAM: Code = code(0x05, 0x26, 0x00);
/// ILLEGAL REQUEST, PARAMETER LIST LENGTH ERROR.
pub const INVALID_PARAM_LEN: Code = code(0x05, 0x1a, 0x00);
/// ABORTED COMMAND, I/O PROCESS TERMINATED (qemu's catch-all).
pub const IO_ERROR: Code = code(0x0b, 0x00, 0x06);
/// ABORTED COMMAND, LOGICAL UNIT COMMUNICATION FAILURE.
pub const LUN_COMM_FAILURE: Code = code(0x0b, 0x08, 0x00);
/// HARDWARE ERROR, INTERNAL TARGET FAILURE.
pub const TARGET_FAILURE: Code = code(0x04, 0x44, 0x00);
/// MEDIUM ERROR, UNRECOVERED READ ERROR.
pub const READ_ERROR: Code = code(0x03, 0x11, 0x00);
/// NOT READY, MEDIUM NOT PRESENT.
pub const NO_MEDIUM: Code = code(0x02, 0x3a, 0x00);
/// DATA PROTECT, SPACE ALLOCATION FAILED WRITE PROTECT.
pub const SPACE_ALLOC_FAILED: Code = code(0x07, 0x27, 0x07);
/// ABORTED COMMAND, LOGICAL UNIT DOES NOT RESPOND TO SELECTION.
pub const LUN_NOT_RESPONDING: Code = code(0x0b, 0x05, 0x00);
/// ABORTED COMMAND, COMMAND TIMEOUT DURING PROCESSING.
pub const COMMAND_TIMEOUT: Code = code(0x0b, 0x2e, 0x02);
/// ABORTED COMMAND, COMMANDS CLEARED BY DEVICE SERVER.
pub const COMMAND_ABORTED: Code = code(0x0b, 0x2f, 0x02);
/// UNIT ATTENTION, POWER ON, RESET, OR BUS DEVICE RESET OCCURRED.
pub const RESET: Code = code(0x06, 0x29, 0x00);
/// ABORTED COMMAND, I_T NEXUS LOSS OCCURRED.
pub const I_T_NEXUS_LOSS: Code = code(0x0b, 0x29, 0x07);

/// Fixed-format sense data for `c`, as qemu builds it (18 bytes).
pub fn fixed(c: Code) -> [u8; 18] {
    let mut s = [0u8; 18];
    s[0] = 0x70;
    s[2] = c.key;
    s[7] = 10;
    s[12] = c.asc;
    s[13] = c.ascq;
    s
}

/// CHECK CONDITION with made-up sense `c`.
pub fn check(c: Code) -> Reply {
    Reply::new(STATUS_CHECK_CONDITION, &fixed(c))
}

/// A status without sense.
pub fn status(s: u8) -> Reply {
    Reply::new(s, &[])
}

/// The reply for an SG_IO ioctl that failed with `e` (qemu's `scsi_sense_from_errno`).
pub fn from_errno(e: Errno) -> Reply {
    match e {
        Errno::EDOM => status(STATUS_TASK_SET_FULL),
        Errno::EBADE => status(STATUS_RESERVATION_CONFLICT),
        Errno::ENODEV | Errno::EREMOTEIO | Errno::ENOMEM => check(TARGET_FAILURE),
        Errno::ENODATA => check(READ_ERROR),
        Errno::ENOMEDIUM => check(NO_MEDIUM),
        Errno::EINVAL => check(INVALID_FIELD),
        Errno::ENOSPC => check(SPACE_ALLOC_FAILED),
        _ => check(IO_ERROR),
    }
}

/// The reply for a command the initiator failed with host status `h` (not 0), as qemu's
/// `scsi_sense_from_host_status` has it; unlisted codes are ABORTED COMMAND, I/O PROCESS
/// TERMINATED rather than qemu's GOOD.
pub fn from_host_status(h: u16) -> Reply {
    match h {
        0x01 => check(LUN_NOT_RESPONDING),
        0x02 => status(STATUS_BUSY),
        0x03 => check(COMMAND_TIMEOUT),
        0x04 => check(LUN_COMM_FAILURE),
        0x05 => check(COMMAND_ABORTED),
        0x08 => check(RESET),
        0x0e => check(I_T_NEXUS_LOSS),
        0x10 => check(TARGET_FAILURE),
        0x11 => status(STATUS_RESERVATION_CONFLICT),
        0x12 => check(SPACE_ALLOC_FAILED),
        0x13 => check(READ_ERROR),
        _ => check(IO_ERROR),
    }
}

/// The reply for a finished SG_IO call, before any payload: a host status or driver timeout
/// mapped, otherwise the device's own status and sense exactly as it sent them.
pub fn from_raw(r: &RawOutcome) -> Reply {
    if r.host_status != 0 {
        return from_host_status(r.host_status);
    }
    // qemu tests SG_ERR_DRIVER_TIMEOUT (6) as a mask.
    if r.driver_status & 0x06 != 0 {
        return Reply::new(STATUS_BUSY, &r.sense);
    }
    Reply::new(r.status, &r.sense)
}

/// Whether `r` is GOOD.
pub fn is_good(r: &Reply) -> bool {
    r.status == STATUS_GOOD
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn synthetic_sense_is_fixed_format_and_zero_padded() {
        let r = check(INVALID_OPCODE);
        assert_eq!(r.status, 2);
        assert_eq!(
            &r.sense[..18],
            &[
                0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0
            ]
        );
        assert!(r.sense[18..].iter().all(|b| *b == 0));
    }

    #[test]
    fn errno_and_host_status_map_as_qemu_does() {
        assert_eq!(from_errno(Errno::EBADE).status, 0x18);
        assert_eq!(from_errno(Errno::EDOM).status, 0x28);
        assert_eq!(from_errno(Errno::ENOTTY).sense[2], 0x0b);
        assert_eq!(from_errno(Errno::EINVAL).sense[12], 0x24);
        assert_eq!(from_errno(Errno::ENODEV).sense[12], 0x44);
        assert_eq!(from_host_status(0x02).status, STATUS_BUSY);
        assert_eq!(from_host_status(0x0e).sense[12..14], [0x29, 0x07]);
        // DID_ERROR: qemu says GOOD; a command that never ran is not a success.
        let r = from_host_status(0x07);
        assert_eq!((r.status, r.sense[2], r.sense[13]), (2, 0x0b, 0x06));
    }

    #[test]
    fn device_answers_pass_through_unchanged() {
        let sense = vec![0x72, 0x06, 0x2a, 0x05, 0, 0, 0, 0];
        let raw = RawOutcome {
            status: 2,
            host_status: 0,
            driver_status: 0x08,
            resid: 0,
            sense: sense.clone(),
            duration: Duration::ZERO,
        };
        let r = from_raw(&raw);
        assert_eq!(r.status, 2);
        assert_eq!(&r.sense[..8], &sense[..]);
        let timeout = RawOutcome {
            driver_status: 0x06,
            ..raw
        };
        assert_eq!(from_raw(&timeout).status, STATUS_BUSY);
    }
}
