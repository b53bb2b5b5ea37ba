//! PERSISTENT RESERVE IN / OUT.

use super::{data_out, malformed, read_sized};
use crate::scsi::cdb;
use crate::scsi::error::ScsiError;
use crate::scsi::pr::{PrInAction, PrType};
use crate::scsi::transport::ScsiTransport;
use crate::scsi::wire::pr_in::{self, PrCapabilities, PrFullStatus, PrKeys, PrReservation};
use crate::scsi::wire::pr_out::{PrOut, RegisterOpts};

/// First PR IN allocation (sg_persist's default).
const PR_IN_INITIAL: usize = 8192;
/// PR IN ALLOCATION LENGTH is 16 bits.
const PR_IN_MAX: usize = u16::MAX as usize;
/// READ FULL STATUS: room kept free for one more descriptor (24 + the longest iSCSI
/// TransportID). LIO drops descriptors that do not fit and shrinks ADDITIONAL LENGTH to
/// match, so a response that comes within this of the allocation is re-read with twice as
/// much.
const FULL_STATUS_SLACK: usize = 24 + 4 + 256;

fn alloc16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

fn pr_in_raw(
    t: &dyn ScsiTransport,
    sa: PrInAction,
    initial: usize,
    needed: impl Fn(&[u8], usize) -> Result<usize, crate::scsi::wire::ParseError>,
) -> Result<Vec<u8>, ScsiError> {
    read_sized(
        t,
        initial,
        PR_IN_MAX,
        |n| cdb::pr_in(sa, alloc16(n)),
        needed,
    )
}

/// READ KEYS: PRgeneration and every registered key.
pub fn pr_read_keys(t: &dyn ScsiTransport) -> Result<PrKeys, ScsiError> {
    let sa = PrInAction::ReadKeys;
    let buf = pr_in_raw(t, sa, PR_IN_INITIAL, |b, _| pr_in::required_len(b))?;
    pr_in::parse_read_keys(&buf).map_err(|e| malformed(t, &cdb::pr_in(sa, alloc16(buf.len())), e))
}

/// READ RESERVATION: PRgeneration and the reservation, if any.
pub fn pr_read_reservation(t: &dyn ScsiTransport) -> Result<PrReservation, ScsiError> {
    let sa = PrInAction::ReadReservation;
    let buf = pr_in_raw(t, sa, 256, |b, _| pr_in::required_len(b))?;
    pr_in::parse_read_reservation(&buf)
        .map_err(|e| malformed(t, &cdb::pr_in(sa, alloc16(buf.len())), e))
}

/// REPORT CAPABILITIES.
pub fn pr_report_capabilities(t: &dyn ScsiTransport) -> Result<PrCapabilities, ScsiError> {
    let sa = PrInAction::ReportCapabilities;
    let buf = pr_in_raw(t, sa, 64, |_, _| Ok(pr_in::CAPABILITIES_LEN))?;
    pr_in::parse_report_capabilities(&buf)
        .map_err(|e| malformed(t, &cdb::pr_in(sa, alloc16(buf.len())), e))
}

/// READ FULL STATUS: every registration with its key, holder flag, target port and
/// TransportID.
pub fn pr_read_full_status(t: &dyn ScsiTransport) -> Result<PrFullStatus, ScsiError> {
    let sa = PrInAction::ReadFullStatus;
    let buf = pr_in_raw(t, sa, PR_IN_INITIAL, |b, alloc| {
        let declared = pr_in::required_len(b)?;
        Ok(if declared.saturating_add(FULL_STATUS_SLACK) > alloc {
            declared.max(alloc.saturating_mul(2))
        } else {
            declared
        })
    })?;
    pr_in::parse_read_full_status(&buf)
        .map_err(|e| malformed(t, &cdb::pr_in(sa, alloc16(buf.len())), e))
}

/// Sends one PERSISTENT RESERVE OUT command.
///
/// LIO answers NOT READY 08/00 (LU communication failure) both for RESERVE/RELEASE/CLEAR
/// from an unregistered nexus and for a REGISTER it applied but could not persist; callers
/// that need to know verify with [`pr_read_keys`].
pub fn pr_out(t: &dyn ScsiTransport, cmd: &PrOut) -> Result<(), ScsiError> {
    let (c, list) = cmd
        .build()
        .map_err(|e| ScsiError::Invalid(format!("{}: {e}", cmd.action().name())))?;
    data_out(t, &c, &list)
}

/// REGISTER `new_key` (0 unregisters) over `key` (0 when this nexus is unregistered).
pub fn pr_register(
    t: &dyn ScsiTransport,
    key: u64,
    new_key: u64,
    opts: RegisterOpts,
) -> Result<(), ScsiError> {
    pr_out(t, &PrOut::Register { key, new_key, opts })
}

/// REGISTER AND IGNORE EXISTING KEY.
pub fn pr_register_ignore(
    t: &dyn ScsiTransport,
    new_key: u64,
    opts: RegisterOpts,
) -> Result<(), ScsiError> {
    pr_out(t, &PrOut::RegisterAndIgnore { new_key, opts })
}

/// RESERVE with `key` (registered on this nexus).
pub fn pr_reserve(t: &dyn ScsiTransport, key: u64, pr_type: PrType) -> Result<(), ScsiError> {
    pr_out(t, &PrOut::Reserve { key, pr_type })
}

/// RELEASE. GOOD from a registered non-holder releases nothing: verify with
/// [`pr_read_reservation`].
pub fn pr_release(t: &dyn ScsiTransport, key: u64, pr_type: PrType) -> Result<(), ScsiError> {
    pr_out(t, &PrOut::Release { key, pr_type })
}

/// CLEAR: removes every registration and the reservation.
pub fn pr_clear(t: &dyn ScsiTransport, key: u64) -> Result<(), ScsiError> {
    pr_out(t, &PrOut::Clear { key })
}

/// PREEMPT (or PREEMPT AND ABORT) the registrations of `victim`, reserving with `pr_type`.
pub fn pr_preempt(
    t: &dyn ScsiTransport,
    key: u64,
    victim: u64,
    pr_type: PrType,
    abort: bool,
) -> Result<(), ScsiError> {
    pr_out(
        t,
        &PrOut::Preempt {
            key,
            victim,
            pr_type,
            abort,
        },
    )
}
