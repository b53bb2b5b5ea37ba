//! PERSISTENT RESERVE OUT parameter lists (SPC-4 6.16.3, 6.16.4) and [`PrOut`], a whole
//! PR OUT command (service action, scope/type byte, parameter list) built from typed values.

use super::transport_id::{self, TransportId};
use super::{ParseError, be16, be32, be64, byte, fit_u32, len_usize, slice};
use crate::scsi::alua::RelTgtPortId;
use crate::scsi::cdb;
use crate::scsi::pr::{PrOutAction, PrType, SCOPE_LU};

/// Length of the basic parameter list (without SPEC_I_PT TransportIDs).
pub const BASIC_LEN: usize = 24;
/// Offset of RESERVATION KEY.
const KEY: usize = 0;
/// Offset of SERVICE ACTION RESERVATION KEY.
const SA_KEY: usize = 8;
/// Basic list: offset of SPEC_I_PT 0x08 | ALL_TG_PT 0x04 | APTPL 0x01.
const FLAGS: usize = 20;
/// SPEC_I_PT bit.
pub const SPEC_I_PT: u8 = 0x08;
/// ALL_TG_PT bit.
pub const ALL_TG_PT: u8 = 0x04;
/// APTPL bit.
pub const APTPL: u8 = 0x01;
/// Basic list with SPEC_I_PT: offset of TRANSPORTID PARAMETER DATA LENGTH.
const TPDL: usize = 24;
/// Basic list with SPEC_I_PT: first TransportID.
const SPEC_I_PT_TIDS: usize = 28;
/// REGISTER AND MOVE list: offset of UNREG 0x02 | APTPL 0x01.
const MOVE_FLAGS: usize = 17;
/// REGISTER AND MOVE list: UNREG bit.
const UNREG: u8 = 0x02;
/// REGISTER AND MOVE list: offset of RELATIVE TARGET PORT IDENTIFIER.
const MOVE_RTPI: usize = 18;
/// REGISTER AND MOVE list: offset of TRANSPORTID PARAMETER DATA LENGTH.
const MOVE_TID_LEN: usize = 20;
/// REGISTER AND MOVE list: the TransportID.
const MOVE_TID: usize = 24;

/// The basic PR OUT parameter list.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct BasicParams {
    /// RESERVATION KEY: the key registered for this I_T nexus (0 when unregistered).
    pub key: u64,
    /// SERVICE ACTION RESERVATION KEY: the new key (REGISTER) or the victim (PREEMPT).
    pub sa_key: u64,
    /// ALL_TG_PT: register on every target port of the LU.
    pub all_tg_pt: bool,
    /// APTPL: persist through power loss.
    pub aptpl: bool,
    /// SPEC_I_PT TransportIDs (REGISTER only); empty means SPEC_I_PT=0.
    pub spec_i_pt: Vec<TransportId>,
}

impl BasicParams {
    /// Encodes the list: exactly 24 bytes, or 28 + TransportIDs with SPEC_I_PT.
    pub fn encode(&self) -> Result<Vec<u8>, ParseError> {
        let mut b = vec![0u8; BASIC_LEN];
        b[KEY..KEY + 8].copy_from_slice(&self.key.to_be_bytes());
        b[SA_KEY..SA_KEY + 8].copy_from_slice(&self.sa_key.to_be_bytes());
        b[FLAGS] = (if self.spec_i_pt.is_empty() {
            0
        } else {
            SPEC_I_PT
        }) | (if self.all_tg_pt { ALL_TG_PT } else { 0 })
            | (if self.aptpl { APTPL } else { 0 });
        if !self.spec_i_pt.is_empty() {
            let mut tids = Vec::new();
            for t in &self.spec_i_pt {
                tids.extend_from_slice(&t.encode()?);
            }
            b.extend_from_slice(
                &fit_u32(tids.len(), "TRANSPORTID PARAMETER DATA LENGTH")?.to_be_bytes(),
            );
            b.extend_from_slice(&tids);
        }
        Ok(b)
    }
}

/// Parses a basic parameter list (what a device server receives).
pub fn parse_basic(buf: &[u8]) -> Result<BasicParams, ParseError> {
    slice(buf, 0, BASIC_LEN, "PR OUT parameter list")?;
    let flags = buf[FLAGS];
    let mut spec_i_pt = Vec::new();
    if flags & SPEC_I_PT != 0 {
        let tpdl = len_usize(
            be32(buf, TPDL, "TRANSPORTID PARAMETER DATA LENGTH")?,
            "TRANSPORTID PARAMETER DATA LENGTH",
        )?;
        let mut list = slice(buf, SPEC_I_PT_TIDS, tpdl, "SPEC_I_PT TransportIDs")?;
        while !list.is_empty() {
            let (tid, n) = transport_id::parse(list)?;
            spec_i_pt.push(tid);
            list = &list[n..];
        }
        if spec_i_pt.is_empty() {
            return Err(ParseError::Invalid {
                what: "SPEC_I_PT without TransportIDs",
                value: 0,
            });
        }
    }
    Ok(BasicParams {
        key: be64(buf, KEY, "reservation key")?,
        sa_key: be64(buf, SA_KEY, "service action reservation key")?,
        all_tg_pt: flags & ALL_TG_PT != 0,
        aptpl: flags & APTPL != 0,
        spec_i_pt,
    })
}

/// The REGISTER AND MOVE parameter list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MoveParams {
    /// RESERVATION KEY of the sending (holder) nexus.
    pub key: u64,
    /// Key to register for the destination nexus (non-zero).
    pub sa_key: u64,
    /// UNREG: unregister the sending nexus afterwards.
    pub unreg: bool,
    /// APTPL.
    pub aptpl: bool,
    /// Target port of the destination nexus.
    pub rel_tgt_port: RelTgtPortId,
    /// Initiator port of the destination nexus.
    pub transport_id: TransportId,
}

impl MoveParams {
    /// Encodes the list.
    pub fn encode(&self) -> Result<Vec<u8>, ParseError> {
        let tid = self.transport_id.encode()?;
        let mut b = vec![0u8; MOVE_TID];
        b[KEY..KEY + 8].copy_from_slice(&self.key.to_be_bytes());
        b[SA_KEY..SA_KEY + 8].copy_from_slice(&self.sa_key.to_be_bytes());
        b[MOVE_FLAGS] = (if self.unreg { UNREG } else { 0 }) | (if self.aptpl { APTPL } else { 0 });
        b[MOVE_RTPI..MOVE_RTPI + 2].copy_from_slice(&self.rel_tgt_port.0.to_be_bytes());
        b[MOVE_TID_LEN..MOVE_TID].copy_from_slice(
            &fit_u32(tid.len(), "TRANSPORTID PARAMETER DATA LENGTH")?.to_be_bytes(),
        );
        b.extend_from_slice(&tid);
        Ok(b)
    }
}

/// Parses a REGISTER AND MOVE parameter list.
pub fn parse_move(buf: &[u8]) -> Result<MoveParams, ParseError> {
    let tid_len = len_usize(
        be32(buf, MOVE_TID_LEN, "TRANSPORTID PARAMETER DATA LENGTH")?,
        "TRANSPORTID PARAMETER DATA LENGTH",
    )?;
    let tid = slice(buf, MOVE_TID, tid_len, "REGISTER AND MOVE TransportID")?;
    let flags = byte(buf, MOVE_FLAGS, "REGISTER AND MOVE flags")?;
    Ok(MoveParams {
        key: be64(buf, KEY, "reservation key")?,
        sa_key: be64(buf, SA_KEY, "service action reservation key")?,
        unreg: flags & UNREG != 0,
        aptpl: flags & APTPL != 0,
        rel_tgt_port: RelTgtPortId(be16(buf, MOVE_RTPI, "relative target port")?),
        transport_id: transport_id::parse(tid)?.0,
    })
}

/// Options of REGISTER and REGISTER AND IGNORE EXISTING KEY.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct RegisterOpts {
    /// ALL_TG_PT.
    pub all_tg_pt: bool,
    /// APTPL.
    pub aptpl: bool,
    /// SPEC_I_PT TransportIDs (empty: only this nexus).
    pub spec_i_pt: Vec<TransportId>,
}

/// A whole PERSISTENT RESERVE OUT command, typed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PrOut {
    /// REGISTER: `key` is this nexus's current key (0 if unregistered); `new_key` 0 unregisters.
    Register {
        /// Current key.
        key: u64,
        /// New key (0 = unregister).
        new_key: u64,
        /// Options.
        opts: RegisterOpts,
    },
    /// REGISTER AND IGNORE EXISTING KEY.
    RegisterAndIgnore {
        /// New key (0 = unregister).
        new_key: u64,
        /// Options.
        opts: RegisterOpts,
    },
    /// RESERVE.
    Reserve {
        /// This nexus's key.
        key: u64,
        /// Type.
        pr_type: PrType,
    },
    /// RELEASE.
    Release {
        /// This nexus's key.
        key: u64,
        /// Type of the reservation being released.
        pr_type: PrType,
    },
    /// CLEAR.
    Clear {
        /// This nexus's key.
        key: u64,
    },
    /// PREEMPT, or PREEMPT AND ABORT when `abort`.
    Preempt {
        /// This nexus's key.
        key: u64,
        /// Key whose registrations are removed (0 only under All-Registrants types).
        victim: u64,
        /// Type of the new reservation.
        pr_type: PrType,
        /// Also abort the preempted nexuses' tasks.
        abort: bool,
    },
    /// REGISTER AND MOVE (type/scope in the CDB are ignored by the device server).
    RegisterAndMove(MoveParams),
}

impl PrOut {
    /// The service action.
    pub fn action(&self) -> PrOutAction {
        match self {
            PrOut::Register { .. } => PrOutAction::Register,
            PrOut::RegisterAndIgnore { .. } => PrOutAction::RegisterAndIgnoreExistingKey,
            PrOut::Reserve { .. } => PrOutAction::Reserve,
            PrOut::Release { .. } => PrOutAction::Release,
            PrOut::Clear { .. } => PrOutAction::Clear,
            PrOut::Preempt { abort: false, .. } => PrOutAction::Preempt,
            PrOut::Preempt { abort: true, .. } => PrOutAction::PreemptAndAbort,
            PrOut::RegisterAndMove(_) => PrOutAction::RegisterAndMove,
        }
    }

    /// CDB byte 2 (scope/type): LU scope and the type where the action takes one, else 0.
    pub fn scope_type(&self) -> u8 {
        match self {
            PrOut::Reserve { pr_type, .. }
            | PrOut::Release { pr_type, .. }
            | PrOut::Preempt { pr_type, .. } => pr_type.scope_type(),
            _ => SCOPE_LU << 4,
        }
    }

    /// The parameter list.
    pub fn param_list(&self) -> Result<Vec<u8>, ParseError> {
        let basic = |key, sa_key, opts: &RegisterOpts| BasicParams {
            key,
            sa_key,
            all_tg_pt: opts.all_tg_pt,
            aptpl: opts.aptpl,
            spec_i_pt: opts.spec_i_pt.clone(),
        };
        let plain = |key, sa_key| BasicParams {
            key,
            sa_key,
            ..BasicParams::default()
        };
        match self {
            PrOut::Register { key, new_key, opts } => basic(*key, *new_key, opts).encode(),
            PrOut::RegisterAndIgnore { new_key, opts } => basic(0, *new_key, opts).encode(),
            PrOut::Reserve { key, .. } | PrOut::Release { key, .. } | PrOut::Clear { key } => {
                plain(*key, 0).encode()
            }
            PrOut::Preempt { key, victim, .. } => plain(*key, *victim).encode(),
            PrOut::RegisterAndMove(m) => m.encode(),
        }
    }

    /// The CDB and the parameter list, ready to send.
    pub fn build(&self) -> Result<([u8; 10], Vec<u8>), ParseError> {
        let list = self.param_list()?;
        let len = fit_u32(list.len(), "PR OUT parameter list length")?;
        Ok((cdb::pr_out(self.action(), self.scope_type(), len), list))
    }

    /// Decodes a PR OUT CDB and its parameter list (the inverse of [`build`](Self::build)).
    pub fn decode(cdb: &[u8], params: &[u8]) -> Result<PrOut, ParseError> {
        let c = slice(cdb, 0, 10, "PR OUT CDB")?;
        if c[0] != cdb::PERSISTENT_RESERVE_OUT {
            return Err(ParseError::Invalid {
                what: "PR OUT opcode",
                value: u64::from(c[0]),
            });
        }
        let action = PrOutAction::from_code(c[1]).ok_or(ParseError::Invalid {
            what: "PR OUT service action",
            value: u64::from(c[1] & 0x1f),
        })?;
        let len = len_usize(
            u32::from_be_bytes([c[5], c[6], c[7], c[8]]),
            "parameter list length",
        )?;
        let params = slice(params, 0, len, "PR OUT parameter list")?;
        let pr_type = || {
            PrType::from_code(c[2] & 0x0f).ok_or(ParseError::Invalid {
                what: "reservation type",
                value: u64::from(c[2] & 0x0f),
            })
        };
        let basic = || parse_basic(params);
        Ok(match action {
            PrOutAction::RegisterAndMove => PrOut::RegisterAndMove(parse_move(params)?),
            PrOutAction::Register => {
                let (key, new_key, opts) = split(basic()?);
                PrOut::Register { key, new_key, opts }
            }
            PrOutAction::RegisterAndIgnoreExistingKey => {
                let (_, new_key, opts) = split(basic()?);
                PrOut::RegisterAndIgnore { new_key, opts }
            }
            PrOutAction::Reserve => PrOut::Reserve {
                key: basic()?.key,
                pr_type: pr_type()?,
            },
            PrOutAction::Release => PrOut::Release {
                key: basic()?.key,
                pr_type: pr_type()?,
            },
            PrOutAction::Clear => PrOut::Clear { key: basic()?.key },
            PrOutAction::Preempt | PrOutAction::PreemptAndAbort => {
                let p = basic()?;
                PrOut::Preempt {
                    key: p.key,
                    victim: p.sa_key,
                    pr_type: pr_type()?,
                    abort: action == PrOutAction::PreemptAndAbort,
                }
            }
        })
    }
}

/// Key, service action key and REGISTER options of a basic list.
fn split(p: BasicParams) -> (u64, u64, RegisterOpts) {
    (
        p.key,
        p.sa_key,
        RegisterOpts {
            all_tg_pt: p.all_tg_pt,
            aptpl: p.aptpl,
            spec_i_pt: p.spec_i_pt,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::wire::fixtures::from_hex;

    #[test]
    fn basic_list_layout() {
        let reg = PrOut::Register {
            key: 0,
            new_key: 0xa1,
            opts: RegisterOpts::default(),
        };
        let (c, list) = reg.build().unwrap();
        assert_eq!(c, [0x5f, 0, 0, 0, 0, 0, 0, 0, 24, 0]);
        assert_eq!(list.len(), 24);
        assert_eq!(&list[8..16], &0xa1u64.to_be_bytes());
        let res = PrOut::Reserve {
            key: 0xa1,
            pr_type: PrType::WriteExclusiveRegistrantsOnly,
        };
        let (c, list) = res.build().unwrap();
        assert_eq!(&c[..3], &[0x5f, 0x01, 0x05]);
        assert_eq!(&list[..8], &0xa1u64.to_be_bytes());
        let atp = PrOut::RegisterAndIgnore {
            new_key: 0xb2,
            opts: RegisterOpts {
                all_tg_pt: true,
                aptpl: true,
                spec_i_pt: vec![],
            },
        };
        assert_eq!(atp.param_list().unwrap()[20], ALL_TG_PT | APTPL);
    }

    #[test]
    fn spec_i_pt_list() {
        let reg = PrOut::Register {
            key: 0,
            new_key: 7,
            opts: RegisterOpts {
                spec_i_pt: vec![TransportId::iscsi("iqn.2026-01.lab.host:hostb")],
                ..RegisterOpts::default()
            },
        };
        let (c, list) = reg.build().unwrap();
        assert_eq!(list.len(), 28 + 32);
        assert_eq!(list[20], SPEC_I_PT);
        assert_eq!(&list[24..28], &32u32.to_be_bytes());
        assert_eq!(PrOut::decode(&c, &list).unwrap(), reg);
    }

    #[test]
    fn register_and_move_matches_the_lab_list() {
        // The list sent in the lab capture (README: pr_register_and_move).
        let lab = from_hex(
            "00 00 00 00 00 00 00 a1 00 00 00 00 00 00 00 c1 00 00 00 01 00 00 00 20 05 00 00 1c 69 71 6e 2e
             32 30 32 36 2d 30 31 2e 6c 61 62 2e 68 6f 73 74 3a 68 6f 73 74 62 00 00",
        );
        let m = parse_move(&lab).unwrap();
        assert_eq!(m.rel_tgt_port, RelTgtPortId(1));
        assert_eq!(
            m.transport_id,
            TransportId::iscsi("iqn.2026-01.lab.host:hostb")
        );
        assert_eq!(
            (m.key, m.sa_key, m.unreg, m.aptpl),
            (0xa1, 0xc1, false, false)
        );
        assert_eq!(m.encode().unwrap(), lab);
    }

    #[test]
    fn decode_rejects() {
        let (mut c, list) = PrOut::Clear { key: 1 }.build().unwrap();
        assert!(
            PrOut::decode(&c, &list[..20]).is_err(),
            "list shorter than the CDB says"
        );
        c[1] = 0x08;
        assert!(
            PrOut::decode(&c, &list).is_err(),
            "REPLACE LOST RESERVATION is not ours"
        );
        let (mut c, list) = PrOut::Reserve {
            key: 1,
            pr_type: PrType::ExclusiveAccess,
        }
        .build()
        .unwrap();
        c[2] = 0x02;
        assert!(PrOut::decode(&c, &list).is_err(), "obsolete type");
        let mut bad = list.clone();
        bad[20] = SPEC_I_PT;
        assert!(parse_basic(&bad).is_err(), "SPEC_I_PT without a length");
    }
}
