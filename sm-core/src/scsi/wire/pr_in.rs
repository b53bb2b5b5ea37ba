//! PERSISTENT RESERVE IN parameter data (SPC-4 6.15): READ KEYS, READ RESERVATION,
//! REPORT CAPABILITIES and READ FULL STATUS. Keys are plain `u64` (0 is a valid wire value:
//! an All-Registrants reservation reads as key 0).

use super::transport_id::{self, TransportId};
use super::{ParseError, be16, be32, be64, byte, fit_u32, len_usize, slice, total};
use crate::scsi::alua::RelTgtPortId;
use crate::scsi::pr::PrType;

/// Offset of PRGENERATION.
const GENERATION: usize = 0;
/// Offset of ADDITIONAL LENGTH.
const ADDITIONAL_LENGTH: usize = 4;
/// Header of READ KEYS / READ RESERVATION / READ FULL STATUS.
pub const HEADER: usize = 8;
/// Size of one key in READ KEYS.
const KEY_LEN: usize = 8;
/// READ RESERVATION ADDITIONAL LENGTH when a reservation exists.
const RESERVATION_LEN: usize = 16;
/// READ RESERVATION: offset of the reservation key.
const RES_KEY: usize = 8;
/// READ RESERVATION: offset of SCOPE (7:4) | TYPE (3:0).
const RES_SCOPE_TYPE: usize = 21;
/// REPORT CAPABILITIES: LENGTH (always 8).
const CAP_LENGTH: usize = 0;
/// REPORT CAPABILITIES: RLR_C 0x80 | CRH 0x10 | SIP_C 0x08 | ATP_C 0x04 | PTPL_C 0x01.
const CAP_FLAGS2: usize = 2;
/// REPORT CAPABILITIES: TMV 0x80 | ALLOW COMMANDS (6:4) | PTPL_A 0x01.
const CAP_FLAGS3: usize = 3;
/// REPORT CAPABILITIES: PERSISTENT RESERVATION TYPE MASK (2 bytes).
const CAP_TYPE_MASK: usize = 4;
/// READ FULL STATUS descriptor: fixed part before the TransportID.
const FULL_DESC: usize = 24;
/// Full status descriptor: ALL_TG_PT 0x02 | R_HOLDER 0x01.
const FULL_FLAGS: usize = 12;
/// Full status descriptor: SCOPE | TYPE (valid for holders).
const FULL_SCOPE_TYPE: usize = 13;
/// Full status descriptor: RELATIVE TARGET PORT IDENTIFIER.
const FULL_RTPI: usize = 18;
/// Full status descriptor: ADDITIONAL DESCRIPTOR LENGTH (of the TransportID).
const FULL_TID_LEN: usize = 20;

/// Total length of READ KEYS / READ RESERVATION / READ FULL STATUS data from its header.
pub fn required_len(buf: &[u8]) -> Result<usize, ParseError> {
    let add = len_usize(
        be32(buf, ADDITIONAL_LENGTH, "PR IN additional length")?,
        "PR IN additional length",
    )?;
    total(HEADER, add, "PR IN additional length")
}

fn header(buf: &[u8]) -> Result<(u32, &[u8]), ParseError> {
    let generation = be32(buf, GENERATION, "PRGENERATION")?;
    let add = required_len(buf)? - HEADER;
    Ok((generation, slice(buf, HEADER, add, "PR IN data")?))
}

fn with_header(generation: u32, body: &[u8]) -> Result<Vec<u8>, ParseError> {
    let mut b = generation.to_be_bytes().to_vec();
    b.extend_from_slice(&fit_u32(body.len(), "PR IN additional length")?.to_be_bytes());
    b.extend_from_slice(body);
    Ok(b)
}

/// READ KEYS: the generation and every registered key (one per registered I_T nexus).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PrKeys {
    /// PRGENERATION.
    pub generation: u32,
    /// The keys, in the device's order (duplicates mean several nexuses share a key).
    pub keys: Vec<u64>,
}

/// Parses READ KEYS data.
pub fn parse_read_keys(buf: &[u8]) -> Result<PrKeys, ParseError> {
    let (generation, body) = header(buf)?;
    if body.len() % KEY_LEN != 0 {
        return Err(ParseError::Invalid {
            what: "READ KEYS additional length",
            value: super::wide(body.len()),
        });
    }
    let keys = body
        .chunks_exact(KEY_LEN)
        .map(|c| be64(c, 0, "reservation key"))
        .collect::<Result<_, _>>()?;
    Ok(PrKeys { generation, keys })
}

impl PrKeys {
    /// Encodes READ KEYS data.
    pub fn encode(&self) -> Result<Vec<u8>, ParseError> {
        let body: Vec<u8> = self.keys.iter().flat_map(|k| k.to_be_bytes()).collect();
        with_header(self.generation, &body)
    }
}

/// The persistent reservation of a logical unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reservation {
    /// The holder's key (0 for All-Registrants types).
    pub key: u64,
    /// SCOPE (0 = LU).
    pub scope: u8,
    /// TYPE.
    pub pr_type: PrType,
}

/// READ RESERVATION: the generation and the reservation, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PrReservation {
    /// PRGENERATION.
    pub generation: u32,
    /// The reservation.
    pub reservation: Option<Reservation>,
}

fn pr_type(scope_type: u8) -> Result<(u8, PrType), ParseError> {
    let t = PrType::from_code(scope_type & 0x0f).ok_or(ParseError::Invalid {
        what: "reservation type",
        value: u64::from(scope_type & 0x0f),
    })?;
    Ok((scope_type >> 4, t))
}

/// Parses READ RESERVATION data.
pub fn parse_read_reservation(buf: &[u8]) -> Result<PrReservation, ParseError> {
    let (generation, body) = header(buf)?;
    let reservation = match body.len() {
        0 => None,
        RESERVATION_LEN => {
            let (scope, pr_type) = pr_type(byte(buf, RES_SCOPE_TYPE, "reservation scope/type")?)?;
            Some(Reservation {
                key: be64(buf, RES_KEY, "reservation key")?,
                scope,
                pr_type,
            })
        }
        other => {
            return Err(ParseError::Invalid {
                what: "READ RESERVATION additional length",
                value: super::wide(other),
            });
        }
    };
    Ok(PrReservation {
        generation,
        reservation,
    })
}

impl PrReservation {
    /// Encodes READ RESERVATION data.
    pub fn encode(&self) -> Result<Vec<u8>, ParseError> {
        match self.reservation {
            None => with_header(self.generation, &[]),
            Some(r) => {
                let mut body = [0u8; RESERVATION_LEN];
                body[..8].copy_from_slice(&r.key.to_be_bytes());
                body[RES_SCOPE_TYPE - HEADER] = (r.scope << 4) | r.pr_type.code();
                with_header(self.generation, &body)
            }
        }
    }
}

/// REPORT CAPABILITIES.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PrCapabilities {
    /// RLR_C: replace lost reservation capable.
    pub rlr_c: bool,
    /// CRH: compatible reservation handling.
    pub crh: bool,
    /// SIP_C: SPEC_I_PT capable.
    pub sip_c: bool,
    /// ATP_C: ALL_TG_PT capable.
    pub atp_c: bool,
    /// PTPL_C: persist through power loss capable.
    pub ptpl_c: bool,
    /// TMV: the type mask is valid.
    pub tmv: bool,
    /// ALLOW COMMANDS field.
    pub allow_commands: u8,
    /// PTPL_A: persistence through power loss is active.
    pub ptpl_a: bool,
    /// Supported types (when TMV is set).
    pub types: Vec<PrType>,
}

/// REPORT CAPABILITIES data length.
pub const CAPABILITIES_LEN: usize = 8;

/// Parses REPORT CAPABILITIES data.
pub fn parse_report_capabilities(buf: &[u8]) -> Result<PrCapabilities, ParseError> {
    let len = be16(buf, CAP_LENGTH, "REPORT CAPABILITIES length")?;
    if usize::from(len) != CAPABILITIES_LEN {
        return Err(ParseError::Invalid {
            what: "REPORT CAPABILITIES length",
            value: u64::from(len),
        });
    }
    let b = slice(buf, 0, CAPABILITIES_LEN, "REPORT CAPABILITIES")?;
    let tmv = b[CAP_FLAGS3] & 0x80 != 0;
    let mask = u16::from_be_bytes([b[CAP_TYPE_MASK], b[CAP_TYPE_MASK + 1]]);
    Ok(PrCapabilities {
        rlr_c: b[CAP_FLAGS2] & 0x80 != 0,
        crh: b[CAP_FLAGS2] & 0x10 != 0,
        sip_c: b[CAP_FLAGS2] & 0x08 != 0,
        atp_c: b[CAP_FLAGS2] & 0x04 != 0,
        ptpl_c: b[CAP_FLAGS2] & 0x01 != 0,
        tmv,
        allow_commands: (b[CAP_FLAGS3] >> 4) & 0x07,
        ptpl_a: b[CAP_FLAGS3] & 0x01 != 0,
        types: if tmv {
            PrType::ALL
                .into_iter()
                .filter(|t| mask & t.mask_bit() != 0)
                .collect()
        } else {
            Vec::new()
        },
    })
}

impl PrCapabilities {
    /// Encodes REPORT CAPABILITIES data.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; CAPABILITIES_LEN];
        b[1] = 8;
        b[CAP_FLAGS2] = (u8::from(self.rlr_c) << 7)
            | (u8::from(self.crh) << 4)
            | (u8::from(self.sip_c) << 3)
            | (u8::from(self.atp_c) << 2)
            | u8::from(self.ptpl_c);
        b[CAP_FLAGS3] =
            (u8::from(self.tmv) << 7) | ((self.allow_commands & 0x07) << 4) | u8::from(self.ptpl_a);
        let mask = self.types.iter().fold(0u16, |m, t| m | t.mask_bit());
        b[CAP_TYPE_MASK..CAP_TYPE_MASK + 2].copy_from_slice(&mask.to_be_bytes());
        b
    }
}

/// One READ FULL STATUS descriptor: a registered I_T nexus.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Registrant {
    /// The registered key.
    pub key: u64,
    /// Registered with ALL_TG_PT (on every target port).
    pub all_tg_pt: bool,
    /// This nexus holds the reservation (every registrant under an All-Registrants type).
    pub holder: bool,
    /// Scope and type of the reservation, for holders.
    pub reservation: Option<(u8, PrType)>,
    /// The target port of the nexus (not defined when `all_tg_pt`).
    pub rel_tgt_port: Option<RelTgtPortId>,
    /// The initiator port.
    pub transport_id: TransportId,
}

/// READ FULL STATUS.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PrFullStatus {
    /// PRGENERATION.
    pub generation: u32,
    /// The registrations.
    pub registrants: Vec<Registrant>,
}

/// Parses READ FULL STATUS data.
pub fn parse_read_full_status(buf: &[u8]) -> Result<PrFullStatus, ParseError> {
    let (generation, body) = header(buf)?;
    let mut registrants = Vec::new();
    let mut off = 0usize;
    while off < body.len() {
        let d = slice(body, off, FULL_DESC, "full status descriptor")?;
        let tid_len = len_usize(
            be32(d, FULL_TID_LEN, "additional descriptor length")?,
            "additional descriptor length",
        )?;
        let tid = slice(body, off + FULL_DESC, tid_len, "full status TransportID")?;
        let holder = d[FULL_FLAGS] & 0x01 != 0;
        let all_tg_pt = d[FULL_FLAGS] & 0x02 != 0;
        registrants.push(Registrant {
            key: be64(d, 0, "registrant key")?,
            all_tg_pt,
            holder,
            reservation: if holder {
                Some(pr_type(d[FULL_SCOPE_TYPE])?)
            } else {
                None
            },
            rel_tgt_port: (!all_tg_pt)
                .then(|| RelTgtPortId(u16::from_be_bytes([d[FULL_RTPI], d[FULL_RTPI + 1]]))),
            transport_id: transport_id::parse_exact(tid)?,
        });
        off += FULL_DESC + tid_len;
    }
    Ok(PrFullStatus {
        generation,
        registrants,
    })
}

impl Registrant {
    /// Encodes one full status descriptor.
    pub fn encode(&self) -> Result<Vec<u8>, ParseError> {
        let tid = self.transport_id.encode()?;
        let mut d = vec![0u8; FULL_DESC];
        d[..8].copy_from_slice(&self.key.to_be_bytes());
        d[FULL_FLAGS] = (u8::from(self.all_tg_pt) << 1) | u8::from(self.holder);
        if let Some((scope, t)) = self.reservation {
            d[FULL_SCOPE_TYPE] = (scope << 4) | t.code();
        }
        if let Some(p) = self.rel_tgt_port {
            d[FULL_RTPI..FULL_RTPI + 2].copy_from_slice(&p.0.to_be_bytes());
        }
        d[FULL_TID_LEN..FULL_DESC]
            .copy_from_slice(&fit_u32(tid.len(), "additional descriptor length")?.to_be_bytes());
        d.extend_from_slice(&tid);
        Ok(d)
    }
}

impl PrFullStatus {
    /// Encodes READ FULL STATUS data.
    pub fn encode(&self) -> Result<Vec<u8>, ParseError> {
        let mut body = Vec::new();
        for r in &self.registrants {
            body.extend_from_slice(&r.encode()?);
        }
        with_header(self.generation, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::wire::fixtures::load;
    use PrType::*;

    #[test]
    fn lio_read_keys() {
        assert_eq!(
            parse_read_keys(&load("pr_read_keys_empty")).unwrap(),
            PrKeys::default()
        );
        let three = parse_read_keys(&load("pr_read_keys_three")).unwrap();
        assert_eq!(
            three,
            PrKeys {
                generation: 3,
                keys: vec![0xa1, 0xa1, 0xb1]
            }
        );
        assert_eq!(three.encode().unwrap(), load("pr_read_keys_three"));
        // LIO 6.1 reports the full ADDITIONAL LENGTH even when the allocation cut the list.
        let cut = load("pr_read_keys_three_alloc16");
        assert_eq!(required_len(&cut).unwrap(), 32);
        assert!(matches!(
            parse_read_keys(&cut),
            Err(ParseError::Short {
                need: 32,
                got: 16,
                ..
            })
        ));
    }

    #[test]
    fn lio_read_reservation() {
        assert_eq!(
            parse_read_reservation(&load("pr_read_reservation_none")).unwrap(),
            PrReservation::default()
        );
        let wero = parse_read_reservation(&load("pr_read_reservation_wero")).unwrap();
        assert_eq!(
            wero.reservation,
            Some(Reservation {
                key: 0xa1,
                scope: 0,
                pr_type: WriteExclusiveRegistrantsOnly
            })
        );
        assert_eq!(wero.encode().unwrap(), load("pr_read_reservation_wero"));
        // All-Registrants: key 0.
        let wear = parse_read_reservation(&load("pr_read_reservation_wear")).unwrap();
        assert_eq!(
            wear.reservation,
            Some(Reservation {
                key: 0,
                scope: 0,
                pr_type: WriteExclusiveAllRegistrants
            })
        );
        let ea = parse_read_reservation(&load("pr_read_reservation_ea")).unwrap();
        assert_eq!(ea.reservation.map(|r| r.pr_type), Some(ExclusiveAccess));
    }

    #[test]
    fn lio_report_capabilities() {
        let raw = load("pr_report_capabilities");
        let c = parse_report_capabilities(&raw).unwrap();
        assert!(c.crh && c.sip_c && c.atp_c && c.ptpl_c && c.tmv && !c.rlr_c && !c.ptpl_a);
        assert_eq!(c.allow_commands, 1);
        assert_eq!(c.types, PrType::ALL);
        assert_eq!(c.encode(), raw);
    }

    #[test]
    fn lio_read_full_status() {
        let raw = load("pr_read_full_status_resv");
        let fs = parse_read_full_status(&raw).unwrap();
        assert_eq!(fs.generation, 3);
        assert_eq!(fs.registrants.len(), 3);
        let holder = &fs.registrants[0];
        assert!(holder.holder && !holder.all_tg_pt);
        assert_eq!(holder.reservation, Some((0, WriteExclusiveRegistrantsOnly)));
        assert_eq!(holder.rel_tgt_port, Some(RelTgtPortId(1)));
        assert_eq!(
            holder.transport_id,
            TransportId::iscsi_port("iqn.2026-01.lab.host:hosta", 0x0002_3d00_0002)
        );
        assert_eq!(
            fs.registrants[2].transport_id,
            TransportId::iscsi_port("iqn.2026-01.lab.host:hostb", 0x0002_3d00_0004)
        );
        assert_eq!(fs.encode().unwrap(), raw);
        // ALL_TG_PT registrations: the extra port's registration has no ISID.
        let atp = parse_read_full_status(&load("pr_read_full_status_all_tg_pt")).unwrap();
        assert_eq!(atp.registrants.iter().filter(|r| r.all_tg_pt).count(), 2);
        assert_eq!(
            atp.registrants[2].transport_id,
            TransportId::iscsi("iqn.2026-01.lab.host:hostb")
        );
        assert_eq!(atp.registrants[2].rel_tgt_port, None);
        assert_eq!(atp.encode().unwrap(), load("pr_read_full_status_all_tg_pt"));
        // Every registrant is a holder under WE-AR.
        let wear = parse_read_full_status(&load("pr_read_full_status_wear")).unwrap();
        assert!(
            wear.registrants
                .iter()
                .all(|r| r.holder && r.reservation == Some((0, WriteExclusiveAllRegistrants)))
        );
        // LIO drops descriptors that do not fit and shrinks ADDITIONAL LENGTH to match.
        let cut = parse_read_full_status(&load("pr_read_full_status_alloc40")).unwrap();
        assert_eq!((cut.generation, cut.registrants.len()), (3, 0));
        for name in [
            "pr_read_full_status_empty",
            "pr_read_full_status_one",
            "pr_read_full_status_three",
            "pr_read_full_status_after_preempt_self",
            "pr_read_full_status_after_move",
        ] {
            let raw = load(name);
            assert_eq!(
                parse_read_full_status(&raw).unwrap().encode().unwrap(),
                raw,
                "{name}"
            );
        }
    }

    #[test]
    fn lying_lengths() {
        // ADDITIONAL LENGTH not a multiple of 8.
        assert!(parse_read_keys(&[0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0, 0]).is_err());
        // ADDITIONAL LENGTH of 0xffffffff.
        assert!(parse_read_keys(&[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]).is_err());
        // READ RESERVATION with 8 additional bytes.
        assert!(
            parse_read_reservation(
                &[0; 16]
                    .iter()
                    .enumerate()
                    .map(|(i, _)| if i == 7 { 8 } else { 0 })
                    .collect::<Vec<_>>()
            )
            .is_err()
        );
        // Holder with an obsolete type.
        let mut r = load("pr_read_reservation_wero");
        r[21] = 0x02;
        assert!(matches!(
            parse_read_reservation(&r),
            Err(ParseError::Invalid {
                what: "reservation type",
                ..
            })
        ));
        // A TransportID length pointing past the end.
        let mut f = load("pr_read_full_status_one");
        f[31] = 0x60;
        assert!(matches!(
            parse_read_full_status(&f),
            Err(ParseError::Short { .. })
        ));
        // REPORT CAPABILITIES with another LENGTH.
        assert!(parse_report_capabilities(&[0, 9, 0, 0, 0, 0, 0, 0]).is_err());
    }
}
