//! SCSI-3 persistent reservations for exclusive VDI activation with fencing.
//!
//! The engine sits on sm-core's SG_IO transport and PR commands (`sm_core::scsi`): it adds
//! host keys, multipath-aware operations on one LU reached through several paths (I_T
//! nexuses), verification of every step by reading the state back, and fencing of hosts the
//! pool reports dead.
//!
//! | module | holds |
//! |---|---|
//! | [`key`] | [`PrKey`]: this host's 8-byte key, derived from its uuid, prefix `XS` |
//! | [`pool`] | [`PoolKeys`]: which pool host owns a key (collisions detected), liveness |
//! | [`path`] | [`PrPath`]: one I_T nexus of the LU (transport, usable, who it is); [`PathSource`] |
//! | [`state`] | [`LuState`]: registrations and reservation (READ FULL STATUS or keys) |
//! | [`engine`] | [`Lu`]: PR IN with path fail-over, classified PR OUT |
//! | [`policy`] | [`Policy`]: reservation type and fencing policy of an SR |
//! | [`fence`] | who a key belongs to, PREEMPT [AND ABORT] |
//! | [`activate`] | [`Exclusive`]: acquire, recheck, release, clear, preempt |
//! | [`activation`] | [`Activation`]: activate, deactivate, clean stale, over a [`PathSource`] and multipathd |
//! | [`shared`] | [`shared::Member`]: one LU shared by the pool, fenced by registration (SR-level) |
//! | [`slaves`] | the paths of a dm-multipath map from sysfs (SG_IO devices, nexus ids) |
//! | [`mpathd`] | multipathd's per-map key, so it registers paths that appear later |
//! | [`prhelper`] | `xsm pr-helper`: QEMU's persistent-reservation helper protocol, multipath-aware |
//!
//! ```no_run
//! use std::sync::Arc;
//! use reservations::{Exclusive, Lu, Policy, PrKey, PrPath};
//! use reservations::fence::{Owner, Owners};
//! # struct Nobody;
//! # impl Owners for Nobody {
//! #     fn owner(&self, _k: u64) -> Result<Owner, reservations::PrError> {
//! #         Ok(Owner::Unknown("?".into()))
//! #     }
//! # }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sdb = sm_core::scsi::SgDevice::open("/dev/sdb")?;
//! let sdc = sm_core::scsi::SgDevice::open("/dev/sdc")?;
//! let paths = [PrPath::new(Arc::new(sdb), None), PrPath::new(Arc::new(sdc), None)];
//! let lu = Lu::new("36001405...", &paths);
//! let me = PrKey::for_host("5f6d1a0e-8c9b-4f3e-a2d1-0b9c8d7e6f5a")?;
//! let policy = Policy::default();
//! let x = Exclusive { lu: &lu, me, policy: &policy, owners: &Nobody };
//! let held = x.acquire()?;      // registered on both paths, reserved (type 5), verified
//! x.release()?;                 // released on the holder path, unregistered, verified
//! # let _ = held;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod activate;
pub mod activation;
pub mod engine;
pub mod error;
pub mod fence;
pub mod key;
pub mod mpathd;
pub mod path;
pub mod policy;
pub mod pool;
pub mod prhelper;
pub mod shared;
pub mod slaves;
pub mod state;

pub use activate::{Exclusive, Report};
pub use activation::{Activated, Activation, Cleanup, Deactivated};
pub use engine::Lu;
pub use error::PrError;
pub use key::PrKey;
pub use path::{NexusId, PathSource, PrPath};
pub use policy::{Fencing, Policy};
pub use pool::PoolKeys;
pub use state::LuState;
