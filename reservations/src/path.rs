//! The paths of one multipath LU, as the engine sees them: a name, a [`ScsiTransport`] (one
//! I_T nexus), whether it may be used, and who the nexus is (to match READ FULL STATUS).
//!
//! In production the paths come from the multipath map's slaves (`SgDevice` on `/dev/sdX`,
//! initiator name and ISID from the iSCSI session, relative target port from VPD 0x83); in
//! tests from `FakeLu::path`. A [`PathSource`] gives them per LU, read again on each call.

use std::fmt;
use std::sync::Arc;

use sm_core::ids::ScsiId;
use sm_core::scsi::{RelTgtPortId, ScsiTransport, TransportId};

use crate::error::PrError;

/// Where an LU's paths come from: the slaves of its multipath map on a host, fakes in tests.
/// Asked again whenever an operation needs the current set (paths appear while one runs).
pub trait PathSource {
    /// The current paths of the LU `lu` (its WWID).
    fn paths(&self, lu: &ScsiId) -> Result<Vec<PrPath>, PrError>;
}

/// Who an I_T nexus is, in the terms READ FULL STATUS reports.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NexusId {
    /// Initiator port name (iSCSI initiator IQN).
    pub initiator: String,
    /// iSCSI ISID of the session, when known.
    pub isid: Option<u64>,
    /// Relative target port identifier, when known.
    pub rtpi: Option<RelTgtPortId>,
}

impl NexusId {
    /// Whether a registration reported as (`tid`, `rtpi`) is this nexus. Unknown parts match
    /// anything; a registration without ISID (format 00b, or an ALL_TG_PT copy) matches every
    /// session of its initiator.
    pub fn matches(&self, tid: &TransportId, rtpi: Option<RelTgtPortId>) -> bool {
        let TransportId::Iscsi { name, isid } = tid else {
            return false;
        };
        name == &self.initiator
            && match (isid, self.isid) {
                (Some(a), Some(b)) => *a == b,
                _ => true,
            }
            && match (rtpi, self.rtpi) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl fmt::Display for NexusId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.initiator)?;
        if let Some(i) = self.isid {
            write!(f, ",i,0x{i:012x}")?;
        }
        if let Some(p) = self.rtpi {
            write!(f, " port {}", p.0)?;
        }
        Ok(())
    }
}

/// One path (I_T nexus) to the LU.
#[derive(Clone)]
pub struct PrPath {
    /// Device name (`/dev/sdb`), for logs and errors.
    pub name: String,
    /// Where commands for this path go.
    pub transport: Arc<dyn ScsiTransport>,
    /// Whether the path may carry commands (multipathd's checker says up or ghost).
    pub usable: bool,
    /// The nexus, when known.
    pub nexus: Option<NexusId>,
}

impl fmt::Debug for PrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrPath")
            .field("name", &self.name)
            .field("usable", &self.usable)
            .field("nexus", &self.nexus)
            .finish()
    }
}

impl PrPath {
    /// A usable path named after its transport's device.
    pub fn new(transport: Arc<dyn ScsiTransport>, nexus: Option<NexusId>) -> PrPath {
        PrPath {
            name: transport.device().to_string(),
            transport,
            usable: true,
            nexus,
        }
    }

    /// The same path marked (un)usable.
    pub fn with_usable(mut self, usable: bool) -> PrPath {
        self.usable = usable;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nexus_matching() {
        let n = NexusId {
            initiator: "iqn.a".into(),
            isid: Some(0x23d000001),
            rtpi: Some(RelTgtPortId(2)),
        };
        let tid = TransportId::iscsi_port("iqn.a", 0x23d000001);
        assert!(n.matches(&tid, Some(RelTgtPortId(2))));
        assert!(!n.matches(&tid, Some(RelTgtPortId(1))));
        assert!(n.matches(&tid, None));
        assert!(!n.matches(&TransportId::iscsi_port("iqn.a", 0x23d000002), None));
        assert!(n.matches(&TransportId::iscsi("iqn.a"), Some(RelTgtPortId(2))));
        assert!(!n.matches(&TransportId::iscsi("iqn.b"), None));
        assert!(!n.matches(&TransportId::Fc { n_port_name: 1 }, None));
        assert_eq!(n.to_string(), "iqn.a,i,0x00023d000001 port 2");
    }
}
