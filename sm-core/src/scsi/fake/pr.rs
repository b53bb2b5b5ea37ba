//! Persistent reservation emulation, following LIO's `target_core_pr.c` decision by decision
//! (the order of checks decides which error a client sees, so it is kept).

use super::{
    ASC_INVALID_CDB_FIELD, ASC_INVALID_PARAM_LIST, ASC_PARAM_LIST_LENGTH, Answer, LOG_SENSE,
    MODE_SENSE_6, MODE_SENSE_10, Nexus, READ_BUFFER, RECEIVE_DIAGNOSTIC, Registration, Resv, State,
};
use crate::scsi::alua::RelTgtPortId;
use crate::scsi::cdb;
use crate::scsi::pr::{PrInAction, PrOutAction, PrType};
use crate::scsi::transport::DataDir;
use crate::scsi::wire::pr_in::{
    PrCapabilities, PrFullStatus, PrKeys, PrReservation, Registrant, Reservation,
};
use crate::scsi::wire::pr_out::{ALL_TG_PT, APTPL, SPEC_I_PT};
use crate::scsi::wire::sense::SenseKey;
use crate::scsi::wire::transport_id::{self, PROTO_ISCSI, TransportId};

/// SECURITY PROTOCOL IN, READ ATTRIBUTE, ACCESS CONTROL IN/OUT, SERVICE ACTION IN(12),
/// RESERVE/RELEASE(6/10): opcodes LIO's non-holder table names.
const SECURITY_PROTOCOL_IN: u8 = 0xa2;
const READ_ATTRIBUTE: u8 = 0x8c;
const ACCESS_CONTROL_IN: u8 = 0x86;
const ACCESS_CONTROL_OUT: u8 = 0x87;
const SERVICE_ACTION_IN_12: u8 = 0xab;
const RESERVE_6: u8 = 0x16;
const RESERVE_10: u8 = 0x56;
const RELEASE_6: u8 = 0x17;
const RELEASE_10: u8 = 0x57;

/// NOT READY 08/00 (LIO's TCM_LOGICAL_UNIT_COMMUNICATION_FAILURE).
fn lu_comm_failure() -> Answer {
    Answer::Check(SenseKey::NotReady, 0x08, 0x00)
}

fn be64(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8).map_or(0, |s| {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        u64::from_be_bytes(a)
    })
}

/// REGISTER or REGISTER AND IGNORE EXISTING KEY.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RegisterKind {
    Register,
    IgnoreExisting,
}

impl State {
    fn bump(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    /// `core_scsi3_locate_pr_reg`: the first registration of the nexus's ACL whose ISID, if
    /// it has one, is the session's.
    fn locate(&self, n: &Nexus) -> Option<usize> {
        self.registrations.iter().position(|r| r.matches(n))
    }

    fn reg_index(&self, id: u64) -> Option<usize> {
        self.registrations.iter().position(|r| r.id == id)
    }

    /// `is_reservation_holder`: the holder itself, or any registrant under All-Registrants.
    fn is_holder(&self, id: u64) -> bool {
        self.reservation
            .is_some_and(|r| r.holder == id || r.pr_type.all_registrants())
    }

    fn acl_exists(&self, initiator: &str, port: RelTgtPortId) -> bool {
        self.nexuses
            .iter()
            .any(|n| n.initiator == initiator && n.port == port)
    }

    fn all_ports(&self) -> Vec<RelTgtPortId> {
        self.groups
            .iter()
            .flat_map(|g| g.ports.iter().map(|p| p.rtpi))
            .collect()
    }

    fn push_registration(
        &mut self,
        initiator: &str,
        port: RelTgtPortId,
        isid: Option<u64>,
        key: u64,
        all_tg_pt: bool,
    ) -> u64 {
        let id = self.next_reg_id;
        self.next_reg_id += 1;
        self.registrations.push(Registration {
            id,
            initiator: initiator.into(),
            port,
            isid,
            key,
            all_tg_pt,
        });
        self.bump();
        id
    }

    /// Registers the nexus, and with ALL_TG_PT the same initiator (no ISID) on every other
    /// port where it has an ACL; each registration bumps PRgeneration.
    fn add_registration(&mut self, n: &Nexus, key: u64, all_tg_pt: bool) {
        self.push_registration(&n.initiator, n.port, Some(n.isid), key, all_tg_pt);
        if all_tg_pt {
            for port in self.all_ports() {
                if port != n.port && self.acl_exists(&n.initiator, port) {
                    self.push_registration(&n.initiator, port, None, key, true);
                }
            }
        }
    }

    /// `__core_scsi3_complete_pro_release`: drops the reservation; when the holder is being
    /// unregistered under an All-Registrants type, another registrant inherits it.
    fn release_reservation(&mut self, unregistering: Option<u64>) {
        let Some(r) = self.reservation.take() else {
            return;
        };
        if let Some(gone) = unregistering
            && r.pr_type.all_registrants()
            && let Some(next) = self.registrations.iter().find(|g| g.id != gone)
        {
            self.reservation = Some(Resv {
                holder: next.id,
                ..r
            });
        }
    }

    fn ua_to_registration(&mut self, idx: usize, asc: u8, ascq: u8) {
        let acl = (
            self.registrations[idx].initiator.clone(),
            self.registrations[idx].port,
        );
        self.unit_attention(acl, asc, ascq);
    }

    /// `core_scsi3_update_and_write_aptpl`: persisting fails with 08/00 when the PR state
    /// directory is missing (the change itself stays applied).
    fn write_aptpl(&mut self, aptpl: bool) -> Answer {
        if !aptpl {
            self.aptpl_active = false;
        }
        if self.pr_dir_missing {
            return lu_comm_failure();
        }
        self.aptpl_active = aptpl;
        Answer::Good
    }

    /// `target_scsi3_pr_reservation_check` + `core_scsi3_pr_seq_non_holder`.
    pub(super) fn reservation_conflict(&self, n: &Nexus, c: &[u8], data: &DataDir<'_>) -> bool {
        let Some(res) = self.reservation else {
            return false;
        };
        let Some(holder) = self.reg_index(res.holder).map(|i| &self.registrations[i]) else {
            return false;
        };
        let mut isid_mismatch = false;
        if holder.initiator == n.initiator && holder.port == n.port {
            match holder.isid {
                Some(i) if i != n.isid => isid_mismatch = true,
                _ => return false,
            }
        }
        let registered = !isid_mismatch
            && self
                .registrations
                .iter()
                .any(|r| r.initiator == n.initiator && r.port == n.port);
        let t = res.pr_type;
        let we = t.write_exclusive();
        let reg_only = matches!(
            t,
            PrType::WriteExclusiveRegistrantsOnly | PrType::ExclusiveAccessRegistrantsOnly
        );
        let all_reg = t.all_registrants();
        let sa = c.get(1).map_or(0xff, |b| b & 0x1f);
        let reg_or_we = registered || we;
        let explicit = match c.first().copied().unwrap_or(0xff) {
            SECURITY_PROTOCOL_IN | READ_ATTRIBUTE | READ_BUFFER | RECEIVE_DIAGNOSTIC
            | MODE_SENSE_6 | MODE_SENSE_10 => Some(reg_or_we),
            cdb::PERSISTENT_RESERVE_OUT => Some(match PrOutAction::from_code(sa) {
                Some(
                    PrOutAction::Clear
                    | PrOutAction::Preempt
                    | PrOutAction::PreemptAndAbort
                    | PrOutAction::Release,
                ) => registered,
                Some(PrOutAction::Register | PrOutAction::RegisterAndIgnoreExistingKey) => true,
                Some(PrOutAction::RegisterAndMove | PrOutAction::Reserve) | None => false,
            }),
            RELEASE_6 | RELEASE_10 | RESERVE_6 | RESERVE_10 | cdb::TEST_UNIT_READY => Some(true),
            cdb::MAINTENANCE_IN => Some(match sa {
                0x10 | 0x0c | 0x0d => reg_or_we,
                0x0b | 0x05 | 0x0e | cdb::SA_TARGET_PORT_GROUPS | 0x0f => true,
                _ => false,
            }),
            ACCESS_CONTROL_IN
            | ACCESS_CONTROL_OUT
            | cdb::INQUIRY
            | LOG_SENSE
            | SERVICE_ACTION_IN_12
            | cdb::REPORT_LUNS
            | cdb::REQUEST_SENSE
            | cdb::PERSISTENT_RESERVE_IN => Some(true),
            _ => None,
        };
        if let Some(allowed) = explicit {
            return !allowed;
        }
        if we && !registered {
            return matches!(data, DataDir::ToDevice(_));
        }
        if (reg_only || all_reg) && registered {
            return false;
        }
        if we && registered && matches!(data, DataDir::FromDevice(_)) {
            return false;
        }
        true
    }

    pub(super) fn pr_in(&self, c: &[u8]) -> Answer {
        let alloc = c
            .get(7..9)
            .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
        let sa = c.get(1).map_or(0xff, |b| b & 0x1f);
        let Some(action) = PrInAction::from_code(sa) else {
            return Answer::illegal(ASC_INVALID_CDB_FIELD);
        };
        let min = if action == PrInAction::ReportCapabilities {
            6
        } else {
            8
        };
        if alloc < min {
            return Answer::illegal(ASC_INVALID_CDB_FIELD);
        }
        let encoded = match action {
            PrInAction::ReadKeys => PrKeys {
                generation: self.generation,
                keys: self.registrations.iter().map(|r| r.key).collect(),
            }
            .encode(),
            PrInAction::ReadReservation => PrReservation {
                generation: self.generation,
                reservation: self.reservation.map(|r| Reservation {
                    key: self.reservation_key(&r),
                    scope: r.scope,
                    pr_type: r.pr_type,
                }),
            }
            .encode(),
            PrInAction::ReportCapabilities => Ok(PrCapabilities {
                rlr_c: false,
                crh: true,
                sip_c: true,
                atp_c: true,
                ptpl_c: true,
                tmv: true,
                allow_commands: 1,
                ptpl_a: self.aptpl_active,
                types: PrType::ALL.to_vec(),
            }
            .encode()),
            PrInAction::ReadFullStatus => self.full_status(alloc).encode(),
        };
        encoded.map_or_else(|_| Answer::illegal(ASC_INVALID_CDB_FIELD), Answer::Data)
    }

    /// READ FULL STATUS with LIO's rule: a descriptor is included only while the descriptors
    /// so far plus it fit in the allocation length (the 8-byte header is not counted).
    fn full_status(&self, alloc: usize) -> PrFullStatus {
        let mut registrants = Vec::new();
        let mut used = 0usize;
        for r in &self.registrations {
            let holder = self.is_holder(r.id);
            let reg = Registrant {
                key: r.key,
                all_tg_pt: r.all_tg_pt,
                holder,
                reservation: if holder {
                    self.reservation.map(|v| (v.scope, v.pr_type))
                } else {
                    None
                },
                rel_tgt_port: (!r.all_tg_pt).then_some(r.port),
                transport_id: TransportId::Iscsi {
                    name: r.initiator.clone(),
                    isid: r.isid,
                },
            };
            let len = reg.encode().map_or(usize::MAX, |b| b.len());
            if used.saturating_add(len) > alloc {
                break;
            }
            used += len;
            registrants.push(reg);
        }
        PrFullStatus {
            generation: self.generation,
            registrants,
        }
    }

    pub(super) fn pr_out(&mut self, n: &Nexus, c: &[u8], data: &DataDir<'_>) -> Answer {
        let buf: &[u8] = match data {
            DataDir::ToDevice(b) => b,
            _ => &[],
        };
        if buf.len() < 24 || c.len() < 3 {
            return Answer::illegal(ASC_PARAM_LIST_LENGTH);
        }
        let sa = c[1] & 0x1f;
        let scope_raw = c[2] & 0xf0;
        let type_code = c[2] & 0x0f;
        let res_key = be64(buf, 0);
        let sa_key = be64(buf, 8);
        let action = PrOutAction::from_code(sa);
        let (spec_i_pt, all_tg_pt, aptpl, unreg) = if action == Some(PrOutAction::RegisterAndMove) {
            (false, false, buf[17] & APTPL != 0, buf[17] & 0x02 != 0)
        } else {
            (
                buf[20] & SPEC_I_PT != 0,
                buf[20] & ALL_TG_PT != 0,
                buf[20] & APTPL != 0,
                false,
            )
        };
        if spec_i_pt && action != Some(PrOutAction::Register) {
            return Answer::illegal(ASC_INVALID_PARAM_LIST);
        }
        if !spec_i_pt && action != Some(PrOutAction::RegisterAndMove) && buf.len() != 24 {
            return Answer::illegal(ASC_PARAM_LIST_LENGTH);
        }
        let pr_type = PrType::from_code(type_code);
        match action {
            Some(PrOutAction::Register) => self.register(
                n,
                res_key,
                sa_key,
                aptpl,
                all_tg_pt,
                spec_i_pt,
                buf,
                RegisterKind::Register,
            ),
            Some(PrOutAction::RegisterAndIgnoreExistingKey) => self.register(
                n,
                0,
                sa_key,
                aptpl,
                all_tg_pt,
                spec_i_pt,
                buf,
                RegisterKind::IgnoreExisting,
            ),
            Some(PrOutAction::Reserve) => match pr_type {
                Some(t) => self.reserve(n, t, scope_raw, res_key),
                None => Answer::illegal(ASC_INVALID_CDB_FIELD),
            },
            Some(PrOutAction::Release) => self.release(n, type_code, scope_raw, res_key),
            Some(PrOutAction::Clear) => self.clear(n, res_key),
            Some(a @ (PrOutAction::Preempt | PrOutAction::PreemptAndAbort)) => match pr_type {
                Some(t) => self.preempt(
                    n,
                    t,
                    scope_raw,
                    res_key,
                    sa_key,
                    a == PrOutAction::PreemptAndAbort,
                ),
                None => Answer::illegal(ASC_INVALID_CDB_FIELD),
            },
            Some(PrOutAction::RegisterAndMove) => {
                self.register_and_move(n, res_key, sa_key, aptpl, unreg, buf)
            }
            None => Answer::illegal(ASC_INVALID_CDB_FIELD),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn register(
        &mut self,
        n: &Nexus,
        res_key: u64,
        sa_key: u64,
        aptpl: bool,
        all_tg_pt: bool,
        spec_i_pt: bool,
        buf: &[u8],
        kind: RegisterKind,
    ) -> Answer {
        let Some(idx) = self.locate(n) else {
            if res_key != 0 {
                return Answer::Conflict;
            }
            if sa_key == 0 {
                return Answer::Good;
            }
            if spec_i_pt {
                if let Err(a) = self.register_spec_i_pt(n, sa_key, all_tg_pt, buf) {
                    return a;
                }
            } else {
                self.add_registration(n, sa_key, all_tg_pt);
            }
            return self.write_aptpl(aptpl);
        };
        let reg = self.registrations[idx].clone();
        if kind == RegisterKind::Register && res_key != reg.key {
            return Answer::Conflict;
        }
        if spec_i_pt {
            return Answer::illegal(ASC_INVALID_PARAM_LIST);
        }
        if reg.all_tg_pt && !all_tg_pt {
            return Answer::illegal(ASC_INVALID_CDB_FIELD);
        }
        if sa_key != 0 {
            self.registrations[idx].key = sa_key;
            self.bump();
            return self.write_aptpl(aptpl);
        }
        // Unregister: an implicit release when this registration holds the reservation.
        let mut was_holder = None;
        if let Some(r) = self.reservation {
            if r.holder == reg.id {
                was_holder = Some(r.pr_type);
                self.release_reservation(Some(reg.id));
            } else if reg.all_tg_pt
                && let Some(h) = self.reg_index(r.holder).map(|i| &self.registrations[i])
                && h.initiator == reg.initiator
                && h.key == reg.key
            {
                return Answer::Conflict;
            }
        }
        if reg.all_tg_pt {
            self.registrations.retain(|r| {
                !(r.all_tg_pt && r.key == res_key && r.id != reg.id && r.initiator == reg.initiator)
            });
        }
        self.registrations.retain(|r| r.id != reg.id);
        if matches!(
            was_holder,
            Some(PrType::WriteExclusiveRegistrantsOnly | PrType::ExclusiveAccessRegistrantsOnly)
        ) {
            for i in 0..self.registrations.len() {
                self.ua_to_registration(i, 0x2a, 0x04);
            }
        }
        self.write_aptpl(aptpl)
    }

    /// `core_scsi3_decode_spec_i_port`: every TransportID is checked before anything is
    /// registered. LIO's default `enforce_pr_isids=1` requires an ISID in each.
    fn register_spec_i_pt(
        &mut self,
        n: &Nexus,
        sa_key: u64,
        all_tg_pt: bool,
        buf: &[u8],
    ) -> Result<(), Answer> {
        let bad = || Answer::illegal(ASC_INVALID_PARAM_LIST);
        if buf.len() < 28 {
            return Err(bad());
        }
        let tpdl = usize::try_from(u32::from_be_bytes([buf[24], buf[25], buf[26], buf[27]]))
            .map_err(|_| bad())?;
        if tpdl.checked_add(28) != Some(buf.len()) {
            return Err(bad());
        }
        let mut list = &buf[28..];
        let mut dests = Vec::new();
        while !list.is_empty() {
            let (tid, used) = transport_id::parse(list).map_err(|_| bad())?;
            list = &list[used..];
            let TransportId::Iscsi {
                name,
                isid: Some(isid),
            } = tid
            else {
                return Err(bad());
            };
            let port = self
                .all_ports()
                .into_iter()
                .find(|p| self.acl_exists(&name, *p))
                .ok_or_else(bad)?;
            dests.push((name, port, isid));
        }
        self.add_registration(n, sa_key, all_tg_pt);
        for (name, port, isid) in dests {
            let dest = Nexus {
                initiator: name,
                isid,
                port,
            };
            if self.locate(&dest).is_none() {
                self.push_registration(&dest.initiator, port, Some(isid), sa_key, all_tg_pt);
            }
        }
        Ok(())
    }

    fn reserve(&mut self, n: &Nexus, t: PrType, scope_raw: u8, res_key: u64) -> Answer {
        let Some(idx) = self.locate(n) else {
            return lu_comm_failure();
        };
        let reg = &self.registrations[idx];
        if res_key != reg.key {
            return Answer::Conflict;
        }
        if scope_raw != 0 {
            return Answer::illegal(ASC_INVALID_PARAM_LIST);
        }
        let id = reg.id;
        if let Some(r) = self.reservation {
            if !self.is_holder(id) || r.pr_type != t || r.scope != 0 {
                return Answer::Conflict;
            }
            return Answer::Good;
        }
        self.reservation = Some(Resv {
            holder: id,
            pr_type: t,
            scope: 0,
        });
        if self.aptpl_active {
            let _ = self.write_aptpl(true);
        }
        Answer::Good
    }

    fn release(&mut self, n: &Nexus, type_code: u8, scope_raw: u8, res_key: u64) -> Answer {
        let Some(idx) = self.locate(n) else {
            return lu_comm_failure();
        };
        let Some(r) = self.reservation else {
            return Answer::Good;
        };
        let reg = self.registrations[idx].clone();
        if !self.is_holder(reg.id) {
            return Answer::Good;
        }
        if res_key != reg.key || r.pr_type.code() != type_code || scope_raw != r.scope << 4 {
            return Answer::Conflict;
        }
        self.release_reservation(None);
        if r.pr_type.registrants_access() {
            for i in 0..self.registrations.len() {
                if self.registrations[i].id != reg.id {
                    self.ua_to_registration(i, 0x2a, 0x04);
                }
            }
        }
        if self.aptpl_active {
            let _ = self.write_aptpl(true);
        }
        Answer::Good
    }

    fn clear(&mut self, n: &Nexus, res_key: u64) -> Answer {
        let Some(idx) = self.locate(n) else {
            return lu_comm_failure();
        };
        if res_key != self.registrations[idx].key {
            return Answer::Conflict;
        }
        let caller = self.registrations[idx].id;
        self.reservation = None;
        for i in 0..self.registrations.len() {
            if self.registrations[i].id != caller {
                self.ua_to_registration(i, 0x2a, 0x03);
            }
        }
        self.registrations.clear();
        // LIO ignores the result of writing the (empty) APTPL state here.
        let _ = self.write_aptpl(false);
        self.bump();
        Answer::Good
    }

    fn preempt(
        &mut self,
        n: &Nexus,
        t: PrType,
        scope_raw: u8,
        res_key: u64,
        sa_key: u64,
        _abort: bool,
    ) -> Answer {
        let Some(idx) = self.locate(n) else {
            return Answer::Conflict;
        };
        let caller = self.registrations[idx].id;
        if self.registrations[idx].key != res_key {
            return Answer::Conflict;
        }
        if scope_raw != 0 {
            return Answer::illegal(ASC_INVALID_PARAM_LIST);
        }
        let all_reg = self
            .reservation
            .is_some_and(|r| r.pr_type.all_registrants());
        if !all_reg && sa_key == 0 {
            return Answer::illegal(ASC_INVALID_PARAM_LIST);
        }
        let holder_key = self
            .reservation
            .and_then(|r| self.reg_index(r.holder))
            .map(|i| self.registrations[i].key);
        if holder_key != Some(sa_key) {
            // No reservation, or the victim key is not the holder's: remove registrations.
            let victims: Vec<usize> = (0..self.registrations.len())
                .filter(|&i| {
                    let r = &self.registrations[i];
                    if all_reg {
                        (sa_key == 0 || r.key == sa_key) && r.id != caller
                    } else {
                        r.key == sa_key
                    }
                })
                .collect();
            let matched = victims.len()
                + usize::from(
                    all_reg
                        && self
                            .registrations
                            .iter()
                            .any(|r| r.id == caller && (sa_key == 0 || r.key == sa_key)),
                );
            if matched == 0 && sa_key != 0 {
                return Answer::Conflict;
            }
            for &i in &victims {
                if self.registrations[i].id != caller {
                    self.ua_to_registration(i, 0x2a, 0x05);
                }
            }
            let gone: Vec<u64> = victims.iter().map(|&i| self.registrations[i].id).collect();
            self.registrations.retain(|r| !gone.contains(&r.id));
            if all_reg && sa_key == 0 {
                self.reservation = Some(Resv {
                    holder: caller,
                    pr_type: t,
                    scope: 0,
                });
            } else if let Some(r) = self.reservation
                && gone.contains(&r.holder)
            {
                self.reservation = None;
            }
            self.bump();
            return Answer::Good;
        }
        // The victim key is the holder's: take the reservation over.
        let Some(old) = self.reservation else {
            return Answer::Conflict;
        };
        let victims: Vec<usize> = (0..self.registrations.len())
            .filter(|&i| {
                self.registrations[i].id != caller
                    && (sa_key == 0 || self.registrations[i].key == sa_key)
            })
            .collect();
        for &i in &victims {
            self.ua_to_registration(i, 0x2a, 0x05);
        }
        let gone: Vec<u64> = victims.iter().map(|&i| self.registrations[i].id).collect();
        self.registrations.retain(|r| !gone.contains(&r.id));
        self.reservation = Some(Resv {
            holder: caller,
            pr_type: t,
            scope: 0,
        });
        if old.pr_type != t || old.scope != 0 {
            for i in 0..self.registrations.len() {
                if self.registrations[i].id != caller {
                    self.ua_to_registration(i, 0x2a, 0x04);
                }
            }
        }
        self.bump();
        Answer::Good
    }

    fn register_and_move(
        &mut self,
        n: &Nexus,
        res_key: u64,
        sa_key: u64,
        aptpl: bool,
        unreg: bool,
        buf: &[u8],
    ) -> Answer {
        let bad = Answer::illegal(ASC_INVALID_PARAM_LIST);
        let Some(idx) = self.locate(n) else {
            return lu_comm_failure();
        };
        let reg = self.registrations[idx].clone();
        if res_key != reg.key {
            return Answer::Conflict;
        }
        if sa_key == 0 || buf.len() < 24 {
            return bad;
        }
        let rtpi = RelTgtPortId(u16::from_be_bytes([buf[18], buf[19]]));
        let tid_len = usize::try_from(u32::from_be_bytes([buf[20], buf[21], buf[22], buf[23]]))
            .unwrap_or(usize::MAX);
        if tid_len.checked_add(24) != Some(buf.len()) || !self.all_ports().contains(&rtpi) {
            return bad;
        }
        if buf.get(24).map(|b| b & 0x0f) != Some(PROTO_ISCSI) {
            return bad;
        }
        let Ok((TransportId::Iscsi { name, isid }, _)) = transport_id::parse(&buf[24..]) else {
            return bad;
        };
        if name == reg.initiator && (isid.is_none() || reg.isid.is_none() || isid == reg.isid) {
            return bad;
        }
        if !self.acl_exists(&name, rtpi) {
            return bad;
        }
        let Some(r) = self.reservation else {
            return Answer::illegal(ASC_INVALID_CDB_FIELD);
        };
        if !self.is_holder(reg.id) || r.pr_type.all_registrants() {
            return Answer::Conflict;
        }
        let dest = self.registrations.iter().position(|g| {
            g.initiator == name
                && g.port == rtpi
                && match (g.isid, isid) {
                    (None, _) => true,
                    (Some(_), None) => false,
                    (Some(a), Some(b)) => a == b,
                }
        });
        let dest_id = match dest {
            Some(i) => {
                self.registrations[i].key = sa_key;
                self.bump();
                self.registrations[i].id
            }
            None => self.push_registration(&name, rtpi, isid, sa_key, false),
        };
        self.reservation = Some(Resv {
            holder: dest_id,
            pr_type: r.pr_type,
            scope: r.scope,
        });
        if unreg {
            self.registrations.retain(|g| g.id != reg.id);
        }
        let _ = self.write_aptpl(aptpl);
        Answer::Good
    }
}
