//! ALUA emulation: target port groups, RTPG, STPG, per-state command filtering.

use super::{ASC_INVALID_OPCODE, ASC_INVALID_PARAM_LIST, Answer, Group, Nexus, State};
use crate::scsi::alua::{AccessState, RelTgtPortId, TpgId};
use crate::scsi::cdb;
use crate::scsi::transport::DataDir;
use crate::scsi::wire::rtpg::{
    self, RtpgFormat, StpgDescriptor, TargetPortGroups, TpgDescriptor, TpgStatus,
};
use crate::scsi::wire::sense::SenseKey;

use super::{
    LOG_SELECT, LOG_SENSE, MODE_SELECT_6, MODE_SELECT_10, MODE_SENSE_6, MODE_SENSE_10, READ_BUFFER,
    RECEIVE_DIAGNOSTIC, SEND_DIAGNOSTIC, WRITE_BUFFER,
};

fn not_ready(ascq: u8) -> Answer {
    Answer::Check(SenseKey::NotReady, 0x04, ascq)
}

fn is_rtpg(c: &[u8]) -> bool {
    c.first() == Some(&cdb::MAINTENANCE_IN)
        && c.get(1).map(|b| b & 0x1f) == Some(cdb::SA_TARGET_PORT_GROUPS)
}

fn is_stpg(c: &[u8]) -> bool {
    c.first() == Some(&cdb::MAINTENANCE_OUT)
        && c.get(1).map(|b| b & 0x1f) == Some(cdb::SA_TARGET_PORT_GROUPS)
}

impl State {
    pub(super) fn group_of(&self, port: RelTgtPortId) -> Option<&Group> {
        self.groups
            .iter()
            .find(|g| g.ports.iter().any(|p| p.rtpi == port))
    }

    /// Moves a group to `state`, records why, and queues UNIT ATTENTION 2A/06 for every known
    /// nexus through the group's ports except `except` (the nexus that sent an STPG).
    pub(super) fn transition_group(
        &mut self,
        tpg: TpgId,
        state: AccessState,
        status: TpgStatus,
        except: Option<(String, RelTgtPortId)>,
    ) {
        let Some(g) = self.groups.iter_mut().find(|g| g.id == tpg) else {
            return;
        };
        g.state = state;
        g.status = status;
        g.transition = None;
        let ports: Vec<RelTgtPortId> = g.ports.iter().map(|p| p.rtpi).collect();
        let acls: Vec<(String, RelTgtPortId)> = self
            .nexuses
            .iter()
            .filter(|n| ports.contains(&n.port))
            .map(Nexus::acl)
            .filter(|a| Some(a) != except.as_ref())
            .collect();
        for acl in acls {
            self.unit_attention(acl, 0x2a, 0x06);
        }
    }

    /// Advances pending transitions by one command.
    pub(super) fn tick_transitions(&mut self) {
        let mut done = Vec::new();
        for g in &mut self.groups {
            if let Some((left, to)) = g.transition.as_mut() {
                if *left == 0 {
                    done.push((g.id, *to));
                } else {
                    *left -= 1;
                }
            }
        }
        for (id, to) in done {
            self.transition_group(id, to, TpgStatus::AlteredImplicitly, None);
        }
    }

    /// LIO's `target_alua_state_check`: what a port in a non-active state refuses.
    pub(super) fn alua_filter(&self, n: &Nexus, c: &[u8]) -> Option<Answer> {
        if self.offline_ports.contains(&n.port) {
            return Some(not_ready(0x12));
        }
        let op = *c.first()?;
        let always = matches!(
            op,
            cdb::INQUIRY | cdb::REPORT_LUNS | cdb::REQUEST_SENSE | READ_BUFFER | WRITE_BUFFER
        ) || is_rtpg(c);
        match self.group_of(n.port)?.state {
            AccessState::ActiveOptimized
            | AccessState::ActiveNonOptimized
            | AccessState::LbaDependent => None,
            AccessState::Standby => {
                let ok = always
                    || is_stpg(c)
                    || matches!(
                        op,
                        LOG_SELECT
                            | LOG_SENSE
                            | MODE_SELECT_6
                            | MODE_SELECT_10
                            | MODE_SENSE_6
                            | MODE_SENSE_10
                            | RECEIVE_DIAGNOSTIC
                            | SEND_DIAGNOSTIC
                            | cdb::READ_CAPACITY_10
                            | cdb::PERSISTENT_RESERVE_IN
                            | cdb::PERSISTENT_RESERVE_OUT
                    )
                    || (op == cdb::SERVICE_ACTION_IN_16
                        && c.get(1).map(|b| b & 0x1f) == Some(cdb::SA_READ_CAPACITY_16));
                (!ok).then(|| not_ready(0x0b))
            }
            AccessState::Unavailable => (!(always || is_stpg(c))).then(|| not_ready(0x0c)),
            AccessState::Transitioning => (!always).then(|| not_ready(0x0a)),
            AccessState::Offline => Some(not_ready(0x12)),
        }
    }

    /// RTPG as LIO builds it: descriptors that do not fit in the allocation length are left
    /// out (zeros follow) but still counted in RETURN DATA LENGTH.
    pub(super) fn rtpg(&self, c: &[u8]) -> Answer {
        let extended = c.get(1).is_some_and(|b| b & 0xe0 == cdb::RTPG_EXTENDED);
        let alloc = c
            .get(6..10)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let alloc = usize::try_from(alloc).unwrap_or(usize::MAX);
        let format = if extended {
            RtpgFormat::Extended {
                implicit_transition_secs: self.cfg.implicit_transition_secs,
            }
        } else {
            RtpgFormat::Standard
        };
        let mut off = if extended { 8 } else { 4 };
        let mut descriptors_len = 0usize;
        let mut groups = Vec::new();
        for g in &self.groups {
            let len = 8 + 4 * g.ports.len();
            descriptors_len += len;
            if off + len > alloc {
                continue;
            }
            off += len;
            groups.push(TpgDescriptor {
                pref: g.pref,
                state: g.state,
                supported: g.supported,
                id: g.id,
                status: g.status,
                vendor: 0,
                ports: g.ports.iter().map(|p| p.rtpi).collect(),
            });
        }
        let Ok(mut b) = (TargetPortGroups { format, groups }).encode() else {
            return Answer::illegal(super::ASC_INVALID_CDB_FIELD);
        };
        // LIO 6.1 (quirk): under the extended header RETURN DATA LENGTH still counts only the
        // descriptors, and only that + 4 bytes are transferred.
        let header_extra = if extended && !self.cfg.lio_rtpg_extended_quirk {
            4
        } else {
            0
        };
        let rdl = u32::try_from(descriptors_len + header_extra).unwrap_or(u32::MAX);
        b[..4].copy_from_slice(&rdl.to_be_bytes());
        let sent = usize::try_from(rdl).unwrap_or(usize::MAX).saturating_add(4);
        b.resize(sent, 0);
        Answer::Data(b)
    }

    pub(super) fn stpg(&mut self, n: &Nexus, data: &DataDir<'_>) -> Answer {
        if !self.cfg.tpgs.explicit() || self.group_of(n.port).is_none() {
            return Answer::illegal(ASC_INVALID_OPCODE);
        }
        let DataDir::ToDevice(list) = data else {
            return Answer::illegal(ASC_INVALID_PARAM_LIST);
        };
        let Ok(descriptors) = rtpg::parse_stpg(list) else {
            return Answer::illegal(ASC_INVALID_PARAM_LIST);
        };
        // LIO checks and applies one descriptor at a time.
        for d in descriptors {
            match d {
                StpgDescriptor::Group { tpg, state } => {
                    let ok = self.groups.iter().find(|g| g.id == tpg).is_some_and(|g| {
                        state != AccessState::Transitioning && g.supported.supports(state)
                    });
                    if !ok {
                        return Answer::illegal(ASC_INVALID_PARAM_LIST);
                    }
                    self.transition_group(tpg, state, TpgStatus::AlteredBySet, Some(n.acl()));
                }
                StpgDescriptor::PortOffline { port } => {
                    let ok = self
                        .group_of(port)
                        .is_some_and(|g| g.supported.supports(AccessState::Offline));
                    if !ok {
                        return Answer::illegal(ASC_INVALID_PARAM_LIST);
                    }
                    if !self.offline_ports.contains(&port) {
                        self.offline_ports.push(port);
                    }
                }
            }
        }
        Answer::Good
    }
}
