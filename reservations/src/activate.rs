//! Exclusive use of a multipath LU by one host: register this host's key on every path,
//! reserve through one, fence a dead holder, release on the holder path, unregister
//! everywhere, and verify every step by reading the state back.
//!
//! The invariant [`Exclusive::acquire`] establishes and verifies: the LU is reserved with the
//! SR's type (Registrants Only) under our key, every usable path of ours is registered, and no
//! other key is registered (under a Registrants Only type every registrant may write, so a
//! registration left by another host is a hole in the fence). Exactly one of several hosts
//! racing for the LU wins, because the array grants one RESERVE and the holder never backs
//! off; the others find the reservation held by a live host, remove their registrations and
//! report the LU in use.
//!
//! The traps of SCSI-3 PR on multipath (research notes §10) and where they are handled:
//! registrations are per I_T nexus (every path registers; stale nexuses of an old session are
//! found in READ FULL STATUS and removed); RELEASE from a non-holder path is a silent no-op
//! (release goes to the holder path, and the result is read back); PREEMPT of our own key
//! drops our other paths' registrations (they are registered again at once); a PR OUT can fail
//! yet apply (LIO without its PR state directory answers NOT READY 08/00; every ambiguous
//! failure is settled by reading the state back).
//!
//! | file | holds |
//! |---|---|
//! | `activate/acquire.rs` | [`Exclusive::acquire`]: register, reserve or fence the holder |
//! | `activate/settle.rs` | with the reservation ours: repair, then verify the invariant |
//! | `activate/takeover.rs` | PREEMPT of our own key (type change, stale holder nexus) |
//! | `activate/recheck.rs` | [`Exclusive::recheck`]: still ours; paths that appeared registered |
//! | `activate/release.rs` | [`Exclusive::release`]: RELEASE on the holder path, unregister, sweep |
//! | `activate/admin.rs` | by hand: register everywhere, CLEAR, PREEMPT |
//! | `activate/register.rs` | registering paths, and the checks every operation shares |

mod acquire;
mod admin;
mod recheck;
mod register;
mod release;
mod settle;
mod takeover;

use crate::engine::Lu;
use crate::fence::Owners;
use crate::key::PrKey;
use crate::policy::Policy;
use crate::state::LuState;

/// Rounds of reserve / fence / re-read before giving up (another host keeps changing it).
const MAX_ROUNDS: usize = 4;

/// What an operation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The state read back at the end (verified).
    pub state: LuState,
    /// Keys preempted because their host is dead or unknown (descriptions).
    pub fenced: Vec<String>,
    /// Registrations of live hosts removed (racing activations, strays).
    pub preempted: Vec<String>,
    /// Nothing had to change (already held, already released).
    pub unchanged: bool,
    /// PR OUT commands that reported a failure but were found applied.
    pub applied_despite_error: Vec<String>,
    /// Paths registered after the fact (paths that appeared, or lost their registration).
    pub registered_late: Vec<String>,
}

/// One host's exclusive use of one LU under an SR's policy.
pub struct Exclusive<'a> {
    /// The LU and its paths.
    pub lu: &'a Lu<'a>,
    /// This host's key.
    pub me: PrKey,
    /// The SR's policy.
    pub policy: &'a Policy,
    /// Who owns other keys.
    pub owners: &'a dyn Owners,
}

#[cfg(test)]
pub(crate) mod tests;
