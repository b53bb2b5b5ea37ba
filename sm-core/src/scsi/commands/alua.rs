//! REPORT / SET TARGET PORT GROUPS.

use super::{data_out, malformed, read_sized};
use crate::scsi::alua::{AccessState, RelTgtPortId, TpgId};
use crate::scsi::cdb;
use crate::scsi::error::{Condition, ScsiError};
use crate::scsi::wire::ParseError;
use crate::scsi::wire::rtpg::{self, RtpgFormat, StpgDescriptor, TargetPortGroups};

/// First RTPG allocation (LIO needs 28 bytes for two groups of one port).
const RTPG_INITIAL: usize = 1024;
/// Largest RTPG allocation we send.
const RTPG_MAX: usize = 1 << 20;

fn alloc32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn rtpg_raw(t: &dyn crate::scsi::ScsiTransport, extended: bool) -> Result<Vec<u8>, ScsiError> {
    read_sized(
        t,
        RTPG_INITIAL,
        RTPG_MAX,
        |n| cdb::rtpg(extended, alloc32(n)),
        |b, _| rtpg::required_len(b),
    )
}

/// REPORT TARGET PORT GROUPS with the standard (4-byte) header, as multipath's alua
/// prioritizer sends it.
pub fn report_target_port_groups_standard(
    t: &dyn crate::scsi::ScsiTransport,
) -> Result<TargetPortGroups, ScsiError> {
    let buf = rtpg_raw(t, false)?;
    rtpg::parse(&buf).map_err(|e| malformed(t, &cdb::rtpg(false, alloc32(buf.len())), e))
}

/// REPORT TARGET PORT GROUPS, asking for the extended header (for the implicit transition
/// time) and falling back to the standard header when the device rejects the format
/// (ILLEGAL REQUEST) or answers with a length that does not cover its descriptors (LIO 6.1
/// leaves the extended header out of RETURN DATA LENGTH and drops the last 4 bytes). The
/// response is re-issued with a larger allocation whenever RETURN DATA LENGTH + 4 exceeds
/// the first one. When the fallback was needed, the result keeps the extended header's
/// transition time.
pub fn report_target_port_groups(
    t: &dyn crate::scsi::ScsiTransport,
) -> Result<TargetPortGroups, ScsiError> {
    let ext = match rtpg_raw(t, true) {
        Ok(buf) => buf,
        Err(e) if matches!(e.condition(), Condition::IllegalRequest { .. }) => {
            return report_target_port_groups_standard(t);
        }
        Err(e) => return Err(e),
    };
    match rtpg::parse(&ext) {
        Ok(groups) => Ok(groups),
        Err(ParseError::Short { .. }) if ext.get(4).is_some_and(|b| b >> 4 == 1) => {
            tracing::warn!(
                device = t.device(),
                "scsi: extended RTPG response shorter than its descriptors (LIO quirk); re-reading with the standard header"
            );
            let mut groups = report_target_port_groups_standard(t)?;
            groups.format = RtpgFormat::Extended {
                implicit_transition_secs: ext[5],
            };
            Ok(groups)
        }
        Err(e) => Err(malformed(t, &cdb::rtpg(true, alloc32(ext.len())), e)),
    }
}

/// SET TARGET PORT GROUPS: request a primary state for each listed group. TRANSITIONING
/// cannot be requested and OFFLINE is a per-port secondary state; both are refused here, as
/// are an empty list and a group listed twice.
pub fn set_target_port_groups(
    t: &dyn crate::scsi::ScsiTransport,
    groups: &[(TpgId, AccessState)],
) -> Result<(), ScsiError> {
    if groups.is_empty() {
        return Err(ScsiError::Invalid(
            "SET TARGET PORT GROUPS with no groups".into(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    let mut descriptors = Vec::with_capacity(groups.len());
    for &(tpg, state) in groups {
        if matches!(state, AccessState::Transitioning | AccessState::Offline) {
            return Err(ScsiError::Invalid(format!(
                "target port group {tpg}: {state} cannot be requested"
            )));
        }
        if !seen.insert(tpg) {
            return Err(ScsiError::Invalid(format!(
                "target port group {tpg} listed twice"
            )));
        }
        descriptors.push(StpgDescriptor::Group { tpg, state });
    }
    let list = rtpg::encode_stpg(&descriptors);
    let len =
        u32::try_from(list.len()).map_err(|_| ScsiError::Invalid("STPG list too long".into()))?;
    data_out(t, &cdb::stpg(len), &list)
}

/// SET TARGET PORT GROUPS with one OFFLINE descriptor per listed relative target port: the
/// secondary, per-port OFFLINE state (SPC-4 5.15.2.7). Send it through another port: every
/// command through an offline port fails with NOT READY 04/12 until the target clears the
/// state (LIO only clears it through configfs). Refuses an empty list and a port listed twice.
pub fn set_target_ports_offline(
    t: &dyn crate::scsi::ScsiTransport,
    ports: &[RelTgtPortId],
) -> Result<(), ScsiError> {
    if ports.is_empty() {
        return Err(ScsiError::Invalid(
            "SET TARGET PORT GROUPS with no ports".into(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    let mut descriptors = Vec::with_capacity(ports.len());
    for &port in ports {
        if !seen.insert(port) {
            return Err(ScsiError::Invalid(format!(
                "relative target port {port} listed twice"
            )));
        }
        descriptors.push(StpgDescriptor::PortOffline { port });
    }
    let list = rtpg::encode_stpg(&descriptors);
    let len =
        u32::try_from(list.len()).map_err(|_| ScsiError::Invalid("STPG list too long".into()))?;
    data_out(t, &cdb::stpg(len), &list)
}
