//! The persistent reservation state of one LU, read in one command when the device supports
//! READ FULL STATUS (every registration with its nexus and the holder), or from READ KEYS and
//! READ RESERVATION otherwise.

use std::fmt;

use sm_core::scsi::{
    PrFullStatus, PrKeys, PrReservation, PrType, RelTgtPortId, Reservation, TransportId,
};

use crate::key::PrKey;
use crate::path::NexusId;

/// One registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The key.
    pub key: u64,
    /// Whether this nexus holds the reservation (every registrant under All-Registrants).
    pub holder: bool,
    /// Registered with ALL_TG_PT.
    pub all_tg_pt: bool,
    /// The initiator port and target port, when READ FULL STATUS said.
    pub nexus: Option<(TransportId, Option<RelTgtPortId>)>,
}

impl Registered {
    /// Whether this registration is the nexus `n` (false when the nexus is unknown).
    pub fn is(&self, n: &NexusId) -> bool {
        self.nexus
            .as_ref()
            .is_some_and(|(tid, rtpi)| n.matches(tid, *rtpi))
    }

    /// The initiator name of the nexus, when known.
    pub fn initiator(&self) -> Option<&str> {
        match &self.nexus {
            Some((TransportId::Iscsi { name, .. }, _)) => Some(name),
            _ => None,
        }
    }

    /// The nexus as text (`iqn,i,0x<isid> port N`), or `?`.
    pub fn describe_nexus(&self) -> String {
        match &self.nexus {
            Some((TransportId::Iscsi { name, isid }, rtpi)) => NexusId {
                initiator: name.clone(),
                isid: *isid,
                rtpi: *rtpi,
            }
            .to_string(),
            Some((tid, _)) => format!("{tid:?}"),
            None => "?".into(),
        }
    }
}

/// Registrations and reservation of an LU at one PRgeneration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LuState {
    /// PRgeneration.
    pub generation: u32,
    /// Every registration (one per registered I_T nexus).
    pub registrations: Vec<Registered>,
    /// The reservation (key 0 under All-Registrants types).
    pub reservation: Option<Reservation>,
    /// Whether nexuses are known (READ FULL STATUS).
    pub detailed: bool,
}

impl LuState {
    /// From READ FULL STATUS.
    pub fn from_full_status(fs: &PrFullStatus) -> LuState {
        let reservation = fs.registrants.iter().find_map(|r| {
            r.reservation.map(|(scope, pr_type)| Reservation {
                key: if pr_type.all_registrants() { 0 } else { r.key },
                scope,
                pr_type,
            })
        });
        LuState {
            generation: fs.generation,
            registrations: fs
                .registrants
                .iter()
                .map(|r| Registered {
                    key: r.key,
                    holder: r.holder,
                    all_tg_pt: r.all_tg_pt,
                    nexus: Some((r.transport_id.clone(), r.rel_tgt_port)),
                })
                .collect(),
            reservation,
            detailed: true,
        }
    }

    /// From READ KEYS and READ RESERVATION (holders unknown).
    pub fn from_keys(keys: &PrKeys, resv: &PrReservation) -> LuState {
        LuState {
            generation: keys.generation.max(resv.generation),
            registrations: keys
                .keys
                .iter()
                .map(|&key| Registered {
                    key,
                    holder: false,
                    all_tg_pt: false,
                    nexus: None,
                })
                .collect(),
            reservation: resv.reservation,
            detailed: false,
        }
    }

    /// How many nexuses are registered with `key`.
    pub fn count(&self, key: PrKey) -> usize {
        self.registrations
            .iter()
            .filter(|r| r.key == key.get())
            .count()
    }

    /// Whether `key` is registered anywhere.
    pub fn has(&self, key: PrKey) -> bool {
        self.count(key) > 0
    }

    /// The distinct registered keys other than `mine`, in order.
    pub fn other_keys(&self, mine: PrKey) -> Vec<u64> {
        let mut out = Vec::new();
        for r in &self.registrations {
            if r.key != mine.get() && !out.contains(&r.key) {
                out.push(r.key);
            }
        }
        out
    }

    /// Whether `key` holds the reservation (for All-Registrants types: is registered).
    pub fn held_by(&self, key: PrKey) -> bool {
        match self.reservation {
            Some(r) if r.pr_type.all_registrants() => self.has(key),
            Some(r) => r.key == key.get(),
            None => false,
        }
    }

    /// The reservation type, if reserved.
    pub fn pr_type(&self) -> Option<PrType> {
        self.reservation.map(|r| r.pr_type)
    }

    /// Whether nexus `n` is registered with `key`: `None` when nexuses are unknown.
    pub fn nexus_registered(&self, n: &NexusId, key: PrKey) -> Option<bool> {
        self.detailed.then(|| {
            self.registrations
                .iter()
                .any(|r| r.key == key.get() && r.is(n))
        })
    }

    /// The registration holding a non-All-Registrants reservation, when nexuses are known.
    pub fn holder(&self) -> Option<&Registered> {
        match self.reservation {
            Some(r) if !r.pr_type.all_registrants() => self.registrations.iter().find(|g| g.holder),
            _ => None,
        }
    }
}

impl fmt::Display for LuState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "generation {}, ", self.generation)?;
        match self.reservation {
            Some(r) => write!(f, "reserved {} by {:#018x}", r.pr_type, r.key)?,
            None => f.write_str("not reserved")?,
        }
        f.write_str(", keys [")?;
        for (i, r) in self.registrations.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{:#018x}", r.key)?;
            if self.detailed {
                write!(f, "@{}", r.describe_nexus())?;
            }
        }
        f.write_str("]")
    }
}
