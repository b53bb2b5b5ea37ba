//! REPORT TARGET PORT GROUPS parameter data (SPC-4 6.36), standard and extended headers, and
//! the SET TARGET PORT GROUPS parameter list (SPC-4 6.44).

use super::{ParseError, be16, be32, byte, fit_u32, len_usize, slice, total};
use crate::scsi::alua::{AccessState, RelTgtPortId, SupportedStates, TpgId};

/// Offset of RETURN DATA LENGTH (bytes after these 4).
const RETURN_DATA_LENGTH: usize = 0;
/// Offset of FORMAT TYPE (bits 6:4) in the extended header.
const FORMAT_TYPE: usize = 4;
/// FORMAT TYPE value of the extended header.
const FORMAT_EXTENDED: u8 = 0x1;
/// Offset of IMPLICIT TRANSITION TIME in the extended header.
const IMPLICIT_TRANSITION_TIME: usize = 5;
/// First descriptor, standard header.
const STANDARD_HEADER: usize = 4;
/// First descriptor, extended header.
const EXTENDED_HEADER: usize = 8;
/// Size of a target port group descriptor before its port list.
const DESC_LEN: usize = 8;
/// Size of a target port descriptor.
const PORT_LEN: usize = 4;
/// STPG parameter list: 4 reserved bytes before the descriptors.
const STPG_HEADER: usize = 4;
/// Size of an STPG descriptor.
const STPG_DESC_LEN: usize = 4;

/// Header format of an RTPG response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RtpgFormat {
    /// Length only (4-byte header).
    Standard,
    /// Extended (8-byte header) with the implicit transition time.
    Extended {
        /// Seconds an implicit transition may take (0 = unspecified).
        implicit_transition_secs: u8,
    },
}

/// STATUS CODE of a target port group descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TpgStatus {
    /// 0: no status available.
    None,
    /// 1: the state was altered by SET TARGET PORT GROUPS.
    AlteredBySet,
    /// 2: the state was altered by implicit behaviour.
    AlteredImplicitly,
    /// Reserved values.
    Other(u8),
}

impl TpgStatus {
    fn from_code(v: u8) -> TpgStatus {
        match v {
            0 => TpgStatus::None,
            1 => TpgStatus::AlteredBySet,
            2 => TpgStatus::AlteredImplicitly,
            other => TpgStatus::Other(other),
        }
    }

    /// The status code.
    pub fn code(self) -> u8 {
        match self {
            TpgStatus::None => 0,
            TpgStatus::AlteredBySet => 1,
            TpgStatus::AlteredImplicitly => 2,
            TpgStatus::Other(v) => v,
        }
    }
}

/// One target port group descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TpgDescriptor {
    /// PREF: the preferred group.
    pub pref: bool,
    /// Asymmetric access state.
    pub state: AccessState,
    /// Which states the group supports.
    pub supported: SupportedStates,
    /// Target port group identifier.
    pub id: TpgId,
    /// Why the state is what it is.
    pub status: TpgStatus,
    /// Vendor-specific byte.
    pub vendor: u8,
    /// Relative target port identifiers in the group.
    pub ports: Vec<RelTgtPortId>,
}

/// Decoded RTPG parameter data.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TargetPortGroups {
    /// Header format the device used.
    pub format: RtpgFormat,
    /// The groups.
    pub groups: Vec<TpgDescriptor>,
}

impl TargetPortGroups {
    /// The group containing `port`.
    pub fn group_of_port(&self, port: RelTgtPortId) -> Option<&TpgDescriptor> {
        self.groups.iter().find(|g| g.ports.contains(&port))
    }

    /// The group with id `id`.
    pub fn group(&self, id: TpgId) -> Option<&TpgDescriptor> {
        self.groups.iter().find(|g| g.id == id)
    }

    /// The implicit transition time, when the extended header carried one.
    pub fn implicit_transition_secs(&self) -> Option<u8> {
        match self.format {
            RtpgFormat::Extended {
                implicit_transition_secs,
            } => Some(implicit_transition_secs),
            RtpgFormat::Standard => None,
        }
    }

    /// Encodes the parameter data as SPC-4 defines it (RETURN DATA LENGTH counts every byte
    /// after the first four, the extended header's included).
    pub fn encode(&self) -> Result<Vec<u8>, ParseError> {
        let mut b = vec![0u8; 4];
        if let RtpgFormat::Extended {
            implicit_transition_secs,
        } = self.format
        {
            b.extend_from_slice(&[FORMAT_EXTENDED << 4, implicit_transition_secs, 0, 0]);
        }
        for g in &self.groups {
            let count = u8::try_from(g.ports.len()).map_err(|_| ParseError::Invalid {
                what: "target port count",
                value: super::wide(g.ports.len()),
            })?;
            b.push((u8::from(g.pref) << 7) | g.state.code());
            b.push(g.supported.0);
            b.extend_from_slice(&g.id.0.to_be_bytes());
            b.extend_from_slice(&[0, g.status.code(), g.vendor, count]);
            for p in &g.ports {
                b.extend_from_slice(&[0, 0]);
                b.extend_from_slice(&p.0.to_be_bytes());
            }
        }
        let rdl = fit_u32(b.len() - 4, "RETURN DATA LENGTH")?;
        b[..4].copy_from_slice(&rdl.to_be_bytes());
        Ok(b)
    }
}

/// Total bytes of the response, from its first four: `RETURN DATA LENGTH + 4`.
pub fn required_len(buf: &[u8]) -> Result<usize, ParseError> {
    let rdl = len_usize(
        be32(buf, RETURN_DATA_LENGTH, "RETURN DATA LENGTH")?,
        "RETURN DATA LENGTH",
    )?;
    total(STANDARD_HEADER, rdl, "RETURN DATA LENGTH")
}

/// Parses RTPG parameter data in either format (told apart by the FORMAT TYPE field). The
/// whole declared length must be present: re-issue with [`required_len`] bytes otherwise.
pub fn parse(buf: &[u8]) -> Result<TargetPortGroups, ParseError> {
    let end = required_len(buf)?;
    let data = slice(buf, 0, end, "target port groups")?;
    let (format, mut off) = match data.get(FORMAT_TYPE) {
        Some(b) if (b >> 4) & 0x07 == FORMAT_EXTENDED => {
            let implicit_transition_secs =
                byte(data, IMPLICIT_TRANSITION_TIME, "implicit transition time")?;
            slice(data, 0, EXTENDED_HEADER, "extended header")?;
            (
                RtpgFormat::Extended {
                    implicit_transition_secs,
                },
                EXTENDED_HEADER,
            )
        }
        _ => (RtpgFormat::Standard, STANDARD_HEADER),
    };
    let mut groups = Vec::new();
    while off < data.len() {
        let d = slice(data, off, DESC_LEN, "target port group descriptor")?;
        let state = AccessState::from_code(d[0] & 0x0f).ok_or(ParseError::Invalid {
            what: "asymmetric access state",
            value: u64::from(d[0] & 0x0f),
        })?;
        let count = usize::from(d[7]);
        let ports_off = off + DESC_LEN;
        let ports = (0..count)
            .map(|i| {
                be16(data, ports_off + i * PORT_LEN + 2, "target port descriptor").map(RelTgtPortId)
            })
            .collect::<Result<Vec<_>, _>>()?;
        groups.push(TpgDescriptor {
            pref: d[0] & 0x80 != 0,
            state,
            supported: SupportedStates(d[1]),
            id: TpgId(u16::from_be_bytes([d[2], d[3]])),
            status: TpgStatus::from_code(d[5]),
            vendor: d[6],
            ports,
        });
        off = ports_off + count * PORT_LEN;
    }
    Ok(TargetPortGroups { format, groups })
}

/// One descriptor of a SET TARGET PORT GROUPS parameter list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StpgDescriptor {
    /// Set a primary state (AO, AN, standby, unavailable, LBA-dependent) on a group.
    Group {
        /// The group.
        tpg: TpgId,
        /// The requested state.
        state: AccessState,
    },
    /// Put one target port in the secondary offline state.
    PortOffline {
        /// The port.
        port: RelTgtPortId,
    },
}

/// Encodes an STPG parameter list (4 reserved bytes, then 4 bytes per descriptor).
pub fn encode_stpg(descriptors: &[StpgDescriptor]) -> Vec<u8> {
    let mut b = vec![0u8; STPG_HEADER];
    for d in descriptors {
        let (state, id) = match *d {
            StpgDescriptor::Group { tpg, state } => (state, tpg.0),
            StpgDescriptor::PortOffline { port } => (AccessState::Offline, port.0),
        };
        b.extend_from_slice(&[state.code(), 0]);
        b.extend_from_slice(&id.to_be_bytes());
    }
    b
}

/// Parses an STPG parameter list (what a target receives).
pub fn parse_stpg(buf: &[u8]) -> Result<Vec<StpgDescriptor>, ParseError> {
    slice(buf, 0, STPG_HEADER, "STPG parameter list header")?;
    let body = &buf[STPG_HEADER..];
    if !body.len().is_multiple_of(STPG_DESC_LEN) {
        return Err(ParseError::Invalid {
            what: "STPG parameter list length",
            value: super::wide(buf.len()),
        });
    }
    body.chunks_exact(STPG_DESC_LEN)
        .map(|c| {
            let id = u16::from_be_bytes([c[2], c[3]]);
            match AccessState::from_code(c[0] & 0x0f) {
                Some(AccessState::Offline) => Ok(StpgDescriptor::PortOffline {
                    port: RelTgtPortId(id),
                }),
                Some(state) => Ok(StpgDescriptor::Group {
                    tpg: TpgId(id),
                    state,
                }),
                None => Err(ParseError::Invalid {
                    what: "requested access state",
                    value: u64::from(c[0] & 0x0f),
                }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::wire::fixtures::load;
    use AccessState::*;

    fn lio_group(id: u16, state: AccessState, status: TpgStatus) -> TpgDescriptor {
        TpgDescriptor {
            pref: false,
            state,
            supported: SupportedStates(0xcf),
            id: TpgId(id),
            status,
            vendor: 0,
            ports: vec![RelTgtPortId(id)],
        }
    }

    #[test]
    fn lio_standard_before_and_after_stpg() {
        let before = parse(&load("rtpg_std")).unwrap();
        assert_eq!(before.format, RtpgFormat::Standard);
        // The lab set group 2 to AN through configfs: an implicit transition.
        assert_eq!(
            before.groups,
            [
                lio_group(1, ActiveOptimized, TpgStatus::None),
                lio_group(2, ActiveNonOptimized, TpgStatus::AlteredImplicitly)
            ]
        );
        assert_eq!(before.encode().unwrap(), load("rtpg_std"));
        let after = parse(&load("rtpg_std_after_stpg")).unwrap();
        assert_eq!(
            after.groups,
            [
                lio_group(1, ActiveNonOptimized, TpgStatus::AlteredBySet),
                lio_group(2, ActiveOptimized, TpgStatus::AlteredBySet)
            ]
        );
        assert_eq!(
            after.group_of_port(RelTgtPortId(2)).map(|g| g.state),
            Some(ActiveOptimized)
        );
        let standby = parse(&load("rtpg_std_standby")).unwrap();
        assert_eq!(standby.group(TpgId(2)).map(|g| g.state), Some(Standby));
    }

    #[test]
    fn lio_extended_header_is_four_bytes_short() {
        // LIO 6.1 counts only the descriptors in RETURN DATA LENGTH under the extended header
        // and transfers RDL + 4 bytes, so the last target port descriptor is cut off.
        for name in ["rtpg_ext", "rtpg_ext_after_stpg"] {
            let raw = load(name);
            assert_eq!(raw.len(), 28);
            assert_eq!(raw[4], 0x10);
            assert!(
                matches!(parse(&raw), Err(ParseError::Short { .. })),
                "{name}"
            );
        }
        // A correct extended response parses, with the transition time.
        let ok = TargetPortGroups {
            format: RtpgFormat::Extended {
                implicit_transition_secs: 10,
            },
            groups: vec![lio_group(1, ActiveOptimized, TpgStatus::None)],
        };
        let enc = ok.encode().unwrap();
        assert_eq!(required_len(&enc).unwrap(), enc.len());
        assert_eq!(parse(&enc).unwrap(), ok);
        assert_eq!(ok.implicit_transition_secs(), Some(10));
    }

    #[test]
    fn short_allocation_tells_the_needed_length() {
        let raw = load("rtpg_std_alloc8");
        assert_eq!(required_len(&raw).unwrap(), 28);
        assert!(matches!(
            parse(&raw),
            Err(ParseError::Short {
                need: 28,
                got: 8,
                ..
            })
        ));
    }

    #[test]
    fn edge_cases() {
        assert_eq!(parse(&[0, 0, 0, 0]).unwrap().groups, []);
        // A port count pointing past the end.
        let b = [0, 0, 0, 8, 0, 0xcf, 0, 1, 0, 0, 0, 3];
        assert!(matches!(parse(&b), Err(ParseError::Short { .. })));
        // A reserved state code.
        let b = [0, 0, 0, 8, 0x07, 0xcf, 0, 1, 0, 0, 0, 0];
        assert!(matches!(parse(&b), Err(ParseError::Invalid { .. })));
        // RETURN DATA LENGTH of u32::MAX does not overflow.
        assert!(parse(&[0xff, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn stpg_lists() {
        let list = [
            StpgDescriptor::Group {
                tpg: TpgId(2),
                state: ActiveOptimized,
            },
            StpgDescriptor::Group {
                tpg: TpgId(1),
                state: ActiveNonOptimized,
            },
        ];
        let enc = encode_stpg(&list);
        // What sg_raw sent for `sg_stpg --tp=2,1 --state=0,1`.
        assert_eq!(enc, [0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 0, 1]);
        assert_eq!(parse_stpg(&enc).unwrap(), list);
        let off = [StpgDescriptor::PortOffline {
            port: RelTgtPortId(3),
        }];
        assert_eq!(parse_stpg(&encode_stpg(&off)).unwrap(), off);
        assert!(parse_stpg(&[0, 0, 0, 0, 1]).is_err());
        assert!(parse_stpg(&[0, 0, 0, 0, 9, 0, 0, 1]).is_err());
        assert_eq!(parse_stpg(&[0; 4]).unwrap(), []);
    }
}
