//! Multipath in the SNIA Multipath Management API (MMA) model, on Linux dm-multipath, with
//! ALUA over SG_IO and iSCSI sessions through open-iscsi.
//!
//! | module | holds |
//! |---|---|
//! | [`model`] | MMA objects: object ids, properties, associations ([`Topology`]) |
//! | [`discovery`] | sysfs + SG_IO (VPD 0x83, INQUIRY, RTPG) + multipathd joined into a [`Topology`] |
//! | [`alua`] | `MP_SetTPGAccess` (STPG, RTPG until it holds), failover, port offline, the TPG choice when connecting ([`alua::optimize`]) |
//! | [`connect`] | connecting an LU for an SR: login, LU disks, multipath map, an active/optimized group, path counts |
//! | [`admin`] | `MP_EnablePath` / `MP_DisablePath` |
//! | [`dm`] | multipathd (socket or CLI), `show maps json`, `multipath -a/-r/-f` |
//! | [`iscsi`] | iscsiadm (sm's lock), initiator name, per-target refcounts, login/logout |
//! | [`system`] | [`System`]: the host, with every part injectable |
//!
//! Data in: sysfs (read by `sm_core::host::sysfs`), SCSI answers (through `sm_core::scsi`, the one SG_IO transport), multipathd
//! replies, iscsiadm. Data out: typed objects, and SCSI/daemon/iscsiadm commands. Nothing here
//! knows about SMAPI or prints: drivers map [`MultipathError`] to fault codes, and the `xsm mpath`
//! admin tool (in `bin`) formats the objects.
//!
//! Discover, look at an LU's target port groups, make the other group active/optimized and
//! read it back (against the lab's host A rebuilt from captures, with LIO-like fake LUs):
//!
//! ```
//! use multipath::{alua, discovery, testing::LabFake, TpgState};
//! use sm_core::scsi::AccessState;
//!
//! let lab = LabFake::base();
//! let topo = discovery::discover(&lab.sys, &discovery::Options::default()).unwrap();
//! let lu = topo.find_lu("360014055ab0c0de00000000000000000").unwrap();
//! let states: Vec<_> = topo.lu_tpgs(lu.oid).map(|g| (g.tpg_id, g.access_state)).collect();
//! assert_eq!(states, [(1, TpgState::Alua(AccessState::ActiveOptimized)),
//!                     (2, TpgState::Alua(AccessState::ActiveNonOptimized))]);
//!
//! let deadlines = alua::Deadlines { host: std::time::Duration::ZERO, ..Default::default() };
//! let report = alua::failover(&lab.sys, &topo, &lu.name, Some(2), deadlines).unwrap();
//! assert_eq!(report.changes[0].after, TpgState::Alua(AccessState::ActiveOptimized));
//!
//! let again = discovery::discover(&lab.sys, &discovery::Options::only(&[&lu.name])).unwrap();
//! let g2 = again.lu_tpg(again.lus[0].oid, 2).unwrap();
//! assert_eq!(g2.access_state, TpgState::Alua(AccessState::ActiveOptimized));
//! ```
#![forbid(unsafe_code)]

pub mod admin;
pub mod alua;
pub mod connect;
pub mod discovery;
pub mod dm;
pub mod error;
pub mod iscsi;
pub mod model;
pub mod system;

#[cfg(any(test, feature = "test-utils"))]
pub mod testing;

pub use error::{ErrorKind, MultipathError, Result};
pub use model::{
    InitiatorPort, MultipathLu, ObjectType, Oid, PathGroup, PathLu, PathState, Plugin, TargetPort,
    TargetPortGroup, Topology, TpgState,
};
pub use system::{DevOpener, ScsiOpener, System};
