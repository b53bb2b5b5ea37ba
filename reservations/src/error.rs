//! `PrError`: why a reservation operation failed, with the LU, the path and the SCSI cause.

use sm_core::scsi::{PrType, ScsiError};
use sm_core::xenapi::XenApiError;

use crate::key::{KeyError, PrKey};

/// A failed persistent reservation operation.
#[derive(Debug, thiserror::Error)]
pub enum PrError {
    /// The LU refuses PERSISTENT RESERVE IN/OUT (ILLEGAL REQUEST: invalid opcode or field).
    #[error("LUN {lu} does not support SCSI-3 persistent reservations")]
    Unsupported {
        /// The LU (WWID).
        lu: String,
        /// The refusal.
        #[source]
        source: Box<ScsiError>,
    },
    /// REPORT CAPABILITIES does not list the reservation type the SR is configured for.
    #[error(
        "LUN {lu} does not support reservation type {wanted} (it supports: {})",
        list_types(supported)
    )]
    TypeUnsupported {
        /// The LU.
        lu: String,
        /// The configured type.
        wanted: PrType,
        /// The types in the device's mask.
        supported: Vec<PrType>,
    },
    /// Every path of the LU is down (or none was given).
    #[error("LUN {lu} has no usable path")]
    NoUsablePath {
        /// The LU.
        lu: String,
    },
    /// Another live host holds the LU.
    #[error("LUN {lu} is reserved by {holder} (key {key})")]
    InUse {
        /// The LU.
        lu: String,
        /// Who holds it: a pool host's name, or a description of the key.
        holder: String,
        /// The holder's key.
        key: PrKey,
    },
    /// A key no pool host owns (another cluster's, a guest cluster's) is registered on the LU,
    /// and the SR's policy does not let us break it.
    #[error(
        "LUN {lu} {} foreign key {key} from {from}: not ours to break (the SR's {}=preempt would preempt it)",
        if *.holds { "is reserved by" } else { "carries a registration of" },
        crate::policy::KEY_FOREIGN
    )]
    Foreign {
        /// The LU.
        lu: String,
        /// The foreign key.
        key: PrKey,
        /// Where it is registered from (`iqn,i,0x<isid> port N`, or `?` without READ FULL
        /// STATUS).
        from: String,
        /// Whether it holds the reservation.
        holds: bool,
    },
    /// This host's key is no longer registered on a shared LU that other hosts hold: another
    /// host fenced it.
    #[error(
        "LUN {lu} no longer has this host's key {key} registered while other hosts hold it: this host was fenced"
    )]
    Fenced {
        /// The LU.
        lu: String,
        /// Our key.
        key: PrKey,
    },
    /// A shared LU is reserved with a type other than Write Exclusive – All Registrants: some
    /// other scheme (another product, an exclusive VDI reservation) holds it.
    #[error(
        "LUN {lu} is reserved {pr_type} by key {key:#018x}, not by a shared SR's All Registrants reservation: refusing to join"
    )]
    ReservedOtherwise {
        /// The LU.
        lu: String,
        /// The reservation's type.
        pr_type: PrType,
        /// The holder's key (0 under All-Registrants types).
        key: u64,
    },
    /// Two hosts of the pool derive the same key, or another initiator uses ours.
    #[error("reservation key {key} collision: {detail}")]
    KeyCollision {
        /// The key.
        key: PrKey,
        /// Who else uses it.
        detail: String,
    },
    /// The state read back after an operation is not the expected one.
    #[error("LUN {lu}: {op} did not take effect: {detail}")]
    NotVerified {
        /// The LU.
        lu: String,
        /// The operation.
        op: &'static str,
        /// What the read-back showed.
        detail: String,
    },
    /// A SCSI command failed on a path.
    #[error("LUN {lu}: {op} through {path}")]
    Scsi {
        /// The LU.
        lu: String,
        /// The operation.
        op: &'static str,
        /// The path.
        path: String,
        /// The command's failure.
        #[source]
        source: Box<ScsiError>,
    },
    /// A bad key.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The pool could not be asked who owns a key, or whether a host is live.
    #[error("cannot ask the pool about its hosts")]
    Pool(#[source] Box<XenApiError>),
    /// A command of the multipath daemon failed.
    #[error("multipathd {action} for map {map}")]
    Multipathd {
        /// What was asked.
        action: String,
        /// The map.
        map: String,
        /// The failure.
        #[source]
        source: Box<multipath::MultipathError>,
    },
}

fn list_types(types: &[PrType]) -> String {
    if types.is_empty() {
        return "none reported".into();
    }
    types
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl PrError {
    /// Whether this is a refusal because another live host holds the LU.
    pub fn is_in_use(&self) -> bool {
        matches!(self, PrError::InUse { .. } | PrError::Foreign { .. })
    }
}
