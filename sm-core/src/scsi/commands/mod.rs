//! Typed SCSI operations on any [`ScsiTransport`]: each builds the CDB, sends it through
//! [`exec`] (bounded retries, one debug line per attempt), re-issues data-in commands whose
//! response is longer than the first allocation, and returns the parsed structure.

mod alua;
mod identity;
mod pr;

pub use alua::{
    report_target_port_groups, report_target_port_groups_standard, set_target_port_groups,
    set_target_ports_offline,
};
pub use identity::{
    inquiry_standard, read_blocks, read_capacity16, test_unit_ready, vpd_device_id, vpd_page,
    vpd_supported_pages, vpd_unit_serial, write_blocks,
};
pub use pr::{
    pr_clear, pr_out, pr_preempt, pr_read_full_status, pr_read_keys, pr_read_reservation,
    pr_register, pr_register_ignore, pr_release, pr_report_capabilities, pr_reserve,
};

use super::error::{Condition, ScsiError};
use super::retry::exec;
use super::transport::{DataDir, ScsiTransport};
use super::wire::ParseError;

/// Re-issues at most this many times when a response keeps growing.
const MAX_REISSUE: usize = 4;

/// A GOOD response we could not decode.
fn malformed(t: &dyn ScsiTransport, cdb: &[u8], e: ParseError) -> ScsiError {
    ScsiError::command(t.device(), cdb, Condition::Malformed(e))
}

/// Sends the data-in command `cdb(alloc)`; when the response declares more bytes than were
/// allocated (`needed` reads that from the header), sends it again with that allocation, up
/// to `max`. Returns the bytes transferred by the last command.
fn read_sized<C: AsRef<[u8]>>(
    t: &dyn ScsiTransport,
    initial: usize,
    max: usize,
    cdb: impl Fn(usize) -> C,
    needed: impl Fn(&[u8], usize) -> Result<usize, ParseError>,
) -> Result<Vec<u8>, ScsiError> {
    let mut alloc = initial.min(max);
    for _ in 0..MAX_REISSUE {
        let c = cdb(alloc);
        let mut buf = vec![0u8; alloc];
        let done = exec(t, c.as_ref(), DataDir::FromDevice(&mut buf))?;
        buf.truncate(done.transferred(alloc));
        let need = needed(&buf, alloc).map_err(|e| malformed(t, c.as_ref(), e))?;
        if need <= alloc || alloc >= max {
            return Ok(buf);
        }
        tracing::debug!(
            device = t.device(),
            alloc,
            need,
            "scsi: response longer than allocation, re-issuing"
        );
        alloc = need.min(max);
    }
    let c = cdb(alloc);
    Err(ScsiError::command(
        t.device(),
        c.as_ref(),
        Condition::Malformed(ParseError::Invalid {
            what: "response length kept growing",
            value: super::wire::wide(alloc),
        }),
    ))
}

/// Sends a command without data.
fn no_data(t: &dyn ScsiTransport, cdb: &[u8]) -> Result<(), ScsiError> {
    exec(t, cdb, DataDir::None).map(|_| ())
}

/// Sends a data-out command.
fn data_out(t: &dyn ScsiTransport, cdb: &[u8], data: &[u8]) -> Result<(), ScsiError> {
    exec(t, cdb, DataDir::ToDevice(data)).map(|_| ())
}
