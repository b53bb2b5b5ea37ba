//! TransportIDs (SPC-4 7.6.4): how PR commands name an initiator port, in READ FULL STATUS,
//! SPEC_I_PT lists and REGISTER AND MOVE. iSCSI (both formats), Fibre Channel and SAS are
//! decoded; other protocols are kept as bytes.

use super::{ParseError, be16, be64, byte, fit_u16, slice};

/// PROTOCOL IDENTIFIER: Fibre Channel.
pub const PROTO_FC: u8 = 0x0;
/// PROTOCOL IDENTIFIER: iSCSI.
pub const PROTO_ISCSI: u8 = 0x5;
/// PROTOCOL IDENTIFIER: SAS.
pub const PROTO_SAS: u8 = 0x6;
/// FC and SAS TransportIDs are 24 bytes.
const FIXED_LEN: usize = 24;
/// Offset of the FC N_PORT_NAME.
const FC_NAME: usize = 8;
/// Offset of the SAS address.
const SAS_ADDRESS: usize = 4;
/// Offset of the iSCSI ADDITIONAL LENGTH.
const ISCSI_LEN: usize = 2;
/// Offset of the iSCSI name.
const ISCSI_NAME: usize = 4;
/// Smallest iSCSI ADDITIONAL LENGTH SPC-4 allows.
const ISCSI_MIN_LEN: usize = 20;
/// Separator between iSCSI name and ISID in format 01b.
const ISID_SEPARATOR: &str = ",i,0x";

/// An initiator port (or device) identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TransportId {
    /// Fibre Channel: the N_Port name (WWPN).
    Fc {
        /// WWPN.
        n_port_name: u64,
    },
    /// SAS: the SAS address.
    Sas {
        /// SAS address.
        address: u64,
    },
    /// iSCSI: the initiator name, with the ISID for an initiator port (format 01b) or without
    /// for the whole initiator device (format 00b).
    Iscsi {
        /// iSCSI name, e.g. `iqn.2026-01.lab.host:hosta`.
        name: String,
        /// The 48-bit ISID, when the TransportID names one session's port.
        isid: Option<u64>,
    },
    /// Another protocol, kept as bytes.
    Other {
        /// PROTOCOL IDENTIFIER.
        protocol: u8,
        /// The whole TransportID.
        bytes: Vec<u8>,
    },
}

impl TransportId {
    /// An iSCSI initiator port (`name,i,0x<isid>`).
    pub fn iscsi_port(name: impl Into<String>, isid: u64) -> TransportId {
        TransportId::Iscsi {
            name: name.into(),
            isid: Some(isid),
        }
    }

    /// An iSCSI initiator device (name only).
    pub fn iscsi(name: impl Into<String>) -> TransportId {
        TransportId::Iscsi {
            name: name.into(),
            isid: None,
        }
    }

    /// PROTOCOL IDENTIFIER.
    pub fn protocol(&self) -> u8 {
        match self {
            TransportId::Fc { .. } => PROTO_FC,
            TransportId::Sas { .. } => PROTO_SAS,
            TransportId::Iscsi { .. } => PROTO_ISCSI,
            TransportId::Other { protocol, .. } => *protocol,
        }
    }

    /// Encodes the TransportID (iSCSI names are NUL-terminated and padded to 4 bytes).
    pub fn encode(&self) -> Result<Vec<u8>, ParseError> {
        match self {
            TransportId::Fc { n_port_name } => {
                let mut b = vec![0u8; FIXED_LEN];
                b[0] = PROTO_FC;
                b[FC_NAME..FC_NAME + 8].copy_from_slice(&n_port_name.to_be_bytes());
                Ok(b)
            }
            TransportId::Sas { address } => {
                let mut b = vec![0u8; FIXED_LEN];
                b[0] = PROTO_SAS;
                b[SAS_ADDRESS..SAS_ADDRESS + 8].copy_from_slice(&address.to_be_bytes());
                Ok(b)
            }
            TransportId::Iscsi { name, isid } => {
                if name.is_empty() || name.contains('\0') {
                    return Err(ParseError::Text { what: "iSCSI name" });
                }
                let (format, text) = match isid {
                    Some(i) if *i <= 0xffff_ffff_ffff => {
                        (0x40, format!("{name}{ISID_SEPARATOR}{i:012x}"))
                    }
                    Some(i) => {
                        return Err(ParseError::Invalid {
                            what: "ISID",
                            value: *i,
                        });
                    }
                    None => (0x00, name.clone()),
                };
                let mut body = text.into_bytes();
                body.push(0);
                while body.len() % 4 != 0 || body.len() < ISCSI_MIN_LEN {
                    body.push(0);
                }
                let len = fit_u16(body.len(), "iSCSI TransportID length")?;
                let mut b = vec![format | PROTO_ISCSI, 0];
                b.extend_from_slice(&len.to_be_bytes());
                b.extend_from_slice(&body);
                Ok(b)
            }
            TransportId::Other { bytes, .. } => Ok(bytes.clone()),
        }
    }
}

impl std::fmt::Display for TransportId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportId::Fc { n_port_name } => write!(f, "fc:{n_port_name:016x}"),
            TransportId::Sas { address } => write!(f, "sas:{address:016x}"),
            TransportId::Iscsi {
                name,
                isid: Some(i),
            } => write!(f, "{name}{ISID_SEPARATOR}{i:012x}"),
            TransportId::Iscsi { name, isid: None } => f.write_str(name),
            TransportId::Other { protocol, bytes } => {
                write!(f, "protocol {protocol:#x}: {}", super::hex(bytes))
            }
        }
    }
}

/// Parses one TransportID at the start of `buf`; returns it and its length. Protocols other
/// than FC, SAS and iSCSI have no self-describing length and are refused here (see
/// [`parse_exact`]).
pub fn parse(buf: &[u8]) -> Result<(TransportId, usize), ParseError> {
    let b0 = byte(buf, 0, "TransportID")?;
    let format = b0 >> 6;
    match b0 & 0x0f {
        PROTO_FC => {
            slice(buf, 0, FIXED_LEN, "FC TransportID")?;
            Ok((
                TransportId::Fc {
                    n_port_name: be64(buf, FC_NAME, "FC N_PORT_NAME")?,
                },
                FIXED_LEN,
            ))
        }
        PROTO_SAS => {
            slice(buf, 0, FIXED_LEN, "SAS TransportID")?;
            Ok((
                TransportId::Sas {
                    address: be64(buf, SAS_ADDRESS, "SAS address")?,
                },
                FIXED_LEN,
            ))
        }
        PROTO_ISCSI => {
            let len = usize::from(be16(buf, ISCSI_LEN, "iSCSI TransportID length")?);
            let body = slice(buf, ISCSI_NAME, len, "iSCSI TransportID")?;
            let end = body.iter().position(|b| *b == 0).unwrap_or(body.len());
            let text = std::str::from_utf8(&body[..end])
                .map_err(|_| ParseError::Text { what: "iSCSI name" })?;
            let id = match format {
                0 => TransportId::iscsi(text),
                1 => {
                    let lower = text.to_ascii_lowercase();
                    let at = lower.find(ISID_SEPARATOR).ok_or(ParseError::Text {
                        what: "iSCSI port name",
                    })?;
                    let isid = u64::from_str_radix(&text[at + ISID_SEPARATOR.len()..], 16)
                        .map_err(|_| ParseError::Text { what: "ISID" })?;
                    TransportId::iscsi_port(&text[..at], isid)
                }
                other => {
                    return Err(ParseError::Invalid {
                        what: "iSCSI TransportID format",
                        value: u64::from(other),
                    });
                }
            };
            Ok((id, ISCSI_NAME + len))
        }
        other => Err(ParseError::Invalid {
            what: "TransportID protocol",
            value: u64::from(other),
        }),
    }
}

/// Parses a TransportID that occupies exactly `buf` (READ FULL STATUS gives its length);
/// unknown protocols become [`TransportId::Other`].
pub fn parse_exact(buf: &[u8]) -> Result<TransportId, ParseError> {
    match parse(buf) {
        Ok((id, _)) => Ok(id),
        Err(ParseError::Invalid {
            what: "TransportID protocol",
            value,
        }) => Ok(TransportId::Other {
            protocol: u8::try_from(value).unwrap_or(0x0f),
            bytes: buf.to_vec(),
        }),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lio_iscsi_formats() {
        // From READ FULL STATUS in the lab capture (pr_read_full_status_all_tg_pt).
        let port = crate::scsi::wire::fixtures::from_hex(
            "45 00 00 2c 69 71 6e 2e 32 30 32 36 2d 30 31 2e 6c 61 62 2e 68 6f 73 74 3a 68 6f 73 74 61 2c 69
             2c 30 78 30 30 30 32 33 64 30 30 30 30 30 31 00",
        );
        let (id, n) = parse(&port).unwrap();
        assert_eq!(
            id,
            TransportId::iscsi_port("iqn.2026-01.lab.host:hosta", 0x0002_3d00_0001)
        );
        assert_eq!(n, 48);
        assert_eq!(id.encode().unwrap(), port);
        assert_eq!(
            id.to_string(),
            "iqn.2026-01.lab.host:hosta,i,0x00023d000001"
        );
        let device = crate::scsi::wire::fixtures::from_hex(
            "05 00 00 1c 69 71 6e 2e 32 30 32 36 2d 30 31 2e 6c 61 62 2e 68 6f 73 74 3a 68 6f 73 74 62 00 00",
        );
        let (id, n) = parse(&device).unwrap();
        assert_eq!(
            (id.clone(), n),
            (TransportId::iscsi("iqn.2026-01.lab.host:hostb"), 32)
        );
        assert_eq!(id.encode().unwrap(), device);
    }

    #[test]
    fn fc_sas_and_others() {
        for id in [
            TransportId::Fc {
                n_port_name: 0x2100_0024_ff00_0001,
            },
            TransportId::Sas {
                address: 0x5000_c500_0000_0001,
            },
        ] {
            let b = id.encode().unwrap();
            assert_eq!(b.len(), 24);
            assert_eq!(parse(&b).unwrap(), (id, 24));
        }
        let srp = [0x04u8; 40];
        assert!(parse(&srp).is_err());
        assert_eq!(
            parse_exact(&srp).unwrap(),
            TransportId::Other {
                protocol: 4,
                bytes: srp.to_vec()
            }
        );
    }

    #[test]
    fn bad_iscsi_ids() {
        assert!(matches!(
            parse(&[0x05, 0, 0, 40, b'i']),
            Err(ParseError::Short { .. })
        ));
        assert!(
            parse(&[0x45, 0, 0, 4, b'i', b'q', b'n', 0]).is_err(),
            "format 01 without ISID"
        );
        assert!(
            parse(&[0x85, 0, 0, 4, b'i', b'q', b'n', 0]).is_err(),
            "format 10"
        );
        assert!(TransportId::iscsi("").encode().is_err());
        assert!(TransportId::iscsi_port("iqn.x", 1 << 48).encode().is_err());
        // Short names are padded to the minimum additional length of 20.
        assert_eq!(TransportId::iscsi("iqn.a").encode().unwrap().len(), 24);
    }
}
