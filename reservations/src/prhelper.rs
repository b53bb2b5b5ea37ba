//! `xsm pr-helper`: a daemon speaking QEMU's persistent-reservation helper protocol, so VMs
//! that pass a LUN through with `scsi-block` (guest clusters: Windows failover clusters,
//! Pacemaker with fence_scsi) get PERSISTENT RESERVE IN/OUT done on the host.
//!
//! On a plain device it answers byte for byte as qemu-pr-helper does. On a dm-multipath map it
//! does the multipath part itself, with this crate's path model: every PR IN service action,
//! the guest's own key on every path (no `reservation_key` in multipath.conf), RELEASE on the
//! holder path, the target's real sense. One thread per connection.
//!
//! | module | holds |
//! |---|---|
//! | [`protocol`] | the wire format: negotiation, [`Request`], [`Reply`], framing errors |
//! | [`sense`] | made-up sense and the SG_IO failure mapping (qemu's) |
//! | [`plain`] | SG_IO on the client's descriptor |
//! | [`mpath`] | a request on a multipath map, over its paths |
//! | [`dispatch`] | [`Dispatcher`]: which of the two, read-only refusal, the PR OUT log |
//! | [`server`] | the socket, threads, socket activation, privileges, signals |
//! | [`client`] | QEMU's side of the protocol, for tests, the lab and benchmarks |

pub mod client;
pub mod dispatch;
pub mod mpath;
pub mod plain;
pub mod protocol;
pub mod sense;
pub mod server;

#[cfg(test)]
mod tests;

pub use dispatch::{Backend, Dispatcher, MultipathMode};
pub use protocol::{Framing, Reply, Request};
