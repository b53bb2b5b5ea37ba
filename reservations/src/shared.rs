//! One LU shared by every host of a pool and fenced by registration: SR-level fencing of a
//! shared LVM SR (research notes wave2 §5.4).
//!
//! Each host registers its key on every path of the LU ([`Member::join`]); the LU holds a
//! Write Exclusive – All Registrants reservation ([`SHARED_TYPE`]), so every registered I_T
//! nexus writes and no other does, and the reservation outlives any one host leaving. Fencing a
//! host is PREEMPT AND ABORT of its key ([`Member::fence`]): its queued commands are aborted and
//! its later writes get RESERVATION CONFLICT, on every path, until it registers a new key. A host
//! checks its own standing ([`Member::standing`]) before it writes, so a fenced host refuses
//! instead of failing half-way.
//!
//! Every operation reads the state back and verifies it; a PR OUT that reports a failure but
//! applied (LIO without its PR state directory) is settled by that read-back.

use sm_core::scsi::{PrOut, PrType};

use crate::activate::{Exclusive, Report};
use crate::engine::{Lu, OutResult};
use crate::error::PrError;
use crate::fence::{self, NoPool};
use crate::key::PrKey;
use crate::path::PrPath;
use crate::policy::{Fencing, Foreign, Policy};
use crate::state::LuState;

/// The reservation type of a shared LU: Write Exclusive – All Registrants (type 7). Types
/// with a single holder nexus break dm-multipath writes (research notes lab item 4), and LVM's
/// own PR support uses this type for shared VGs.
pub const SHARED_TYPE: PrType = PrType::WriteExclusiveAllRegistrants;

/// Where a host stands on a shared LU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Our key is registered (on `paths` of the usable paths) and the LU is reserved with
    /// [`SHARED_TYPE`].
    Member {
        /// Registrations of our key.
        paths: usize,
    },
    /// Other keys are registered but ours is not: another host fenced us, or we never joined.
    Outside,
    /// No key at all is registered: nobody joined yet, or the LU forgot its PR state (a target
    /// restarted without APTPL).
    Empty,
}

/// This host on one shared LU.
pub struct Member<'a> {
    /// The LU and its paths.
    pub lu: &'a Lu<'a>,
    /// This host's key.
    pub me: PrKey,
    /// Register with APTPL (the registrations survive a target power loss).
    pub aptpl: bool,
}

/// What [`Member::join`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The state read back (verified).
    pub state: LuState,
    /// Whether this host made the reservation (the first host to join).
    pub reserved: bool,
    /// Keys of other software registered on the LU (logged; they may write).
    pub others: Vec<u64>,
}

impl Member<'_> {
    fn policy(&self) -> Policy {
        Policy {
            pr_type: SHARED_TYPE,
            fencing: Fencing::PreemptDead,
            aptpl: self.aptpl,
            foreign: Foreign::Refuse,
        }
    }

    fn with_exclusive<T>(&self, f: impl FnOnce(&Exclusive<'_>) -> T) -> T {
        let policy = self.policy();
        f(&Exclusive {
            lu: self.lu,
            me: self.me,
            policy: &policy,
            owners: &NoPool,
        })
    }

    /// Reads where this host stands.
    pub fn standing(&self) -> Result<(Standing, LuState), PrError> {
        let s = self.lu.state()?;
        let standing = if s.has(self.me) && s.pr_type() == Some(SHARED_TYPE) {
            Standing::Member {
                paths: s.count(self.me),
            }
        } else if s.registrations.is_empty() {
            Standing::Empty
        } else {
            Standing::Outside
        };
        Ok((standing, s))
    }

    /// Registers our key on every usable path and, unless the LU already is, reserves it with
    /// [`SHARED_TYPE`]; verified. A reservation of another type (another product's, or a
    /// ReservedLUN-style exclusive one) is refused before anything is sent.
    pub fn join(&self) -> Result<Joined, PrError> {
        self.lu.check_type(SHARED_TYPE)?;
        let before = self.lu.state()?;
        self.refuse_other_reservation(&before)?;
        self.with_exclusive(|x| {
            x.check_collision(&before)?;
            let usable = x.usable()?;
            let mut report = Report::default();
            let registered = x.register_all(&usable, &mut report)?;
            let mut reserved = false;
            if self.lu.state()?.reservation.is_none() {
                reserved = self.reserve(registered[0])?;
            }
            let state = self.lu.state()?;
            self.refuse_other_reservation(&state)?;
            let missing = x.unregistered(&state, &usable);
            if state.pr_type() != Some(SHARED_TYPE) || !missing.is_empty() {
                return Err(self.lu.not_verified(
                    "join",
                    format!(
                        "after registering on every path and reserving: {state} (unregistered: {})",
                        missing
                            .iter()
                            .map(|p| p.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            let others = state.other_keys(self.me);
            Ok(Joined {
                state,
                reserved,
                others,
            })
        })
    }

    fn refuse_other_reservation(&self, s: &LuState) -> Result<(), PrError> {
        match s.reservation {
            Some(r) if r.pr_type != SHARED_TYPE => Err(PrError::ReservedOtherwise {
                lu: self.lu.id().into(),
                pr_type: r.pr_type,
                key: r.key,
            }),
            _ => Ok(()),
        }
    }

    /// RESERVE with [`SHARED_TYPE`] through `path`. A conflict or an unknown outcome is fine
    /// when another host's reservation of the same type won: the caller reads back.
    fn reserve(&self, path: &PrPath) -> Result<bool, PrError> {
        let cmd = PrOut::Reserve {
            key: self.me.get(),
            pr_type: SHARED_TYPE,
        };
        match self.lu.out(path, &cmd) {
            OutResult::Done => Ok(true),
            OutResult::Conflict(e) | OutResult::Unknown(e) => {
                tracing::info!(lu = self.lu.id(), path = %path.name, "RESERVE did not report success ({e}); reading back");
                Ok(false)
            }
            r => Err(self.lu.out_error("RESERVE", path, r)),
        }
    }

    /// PREEMPT AND ABORT (PREEMPT when `abort` is false, for arrays without it) of every
    /// registration of `victim`, through a path of ours; verified gone, the reservation still
    /// [`SHARED_TYPE`]. Our own key is refused; a key not registered is nothing to do.
    pub fn fence(&self, victim: PrKey, abort: bool, why: &str) -> Result<LuState, PrError> {
        if victim == self.me {
            return Err(self
                .lu
                .not_verified("fence", "refusing to fence this host's own key"));
        }
        let (standing, s) = self.standing()?;
        if !matches!(standing, Standing::Member { .. }) {
            return Err(PrError::Fenced {
                lu: self.lu.id().into(),
                key: self.me,
            });
        }
        if !s.has(victim) {
            tracing::info!(lu = self.lu.id(), victim = %victim, "{why}: its key is not registered, nothing to fence");
            return Ok(s);
        }
        let path = self
            .lu
            .usable()
            .find(|p| {
                p.nexus
                    .as_ref()
                    .and_then(|n| s.nexus_registered(n, self.me))
                    != Some(false)
            })
            .ok_or_else(|| PrError::NoUsablePath {
                lu: self.lu.id().into(),
            })?;
        let policy = self.policy();
        match fence::preempt(self.lu, path, self.me, victim.get(), &policy, abort, why)? {
            OutResult::Done | OutResult::Unknown(_) => {}
            r => return Err(self.lu.out_error("PREEMPT AND ABORT", path, r)),
        }
        let after = self.lu.state()?;
        if after.has(victim) || after.pr_type() != Some(SHARED_TYPE) || !after.has(self.me) {
            return Err(self.lu.not_verified(
                "PREEMPT AND ABORT",
                format!("after fencing {victim}: {after}"),
            ));
        }
        tracing::warn!(lu = self.lu.id(), victim = %victim, "FENCED {why}: key {victim} removed from every path, its writes are refused");
        Ok(after)
    }

    /// Removes our registrations from every usable path (the reservation ends with the last
    /// registrant); verified. A key still registered on a path that is down is reported.
    pub fn leave(&self) -> Result<LuState, PrError> {
        self.with_exclusive(|x| {
            let usable = x.usable()?;
            let mut report = Report::default();
            x.register_on(&usable, 0, &mut report)?;
            let s = self.lu.state()?;
            if s.has(self.me) {
                let down = self.lu.paths().len() - usable.len();
                if s.count(self.me) > down {
                    return Err(self.lu.not_verified("unregister", format!("{s}")));
                }
                tracing::warn!(
                    lu = self.lu.id(),
                    "our key stays registered on {down} path(s) that are down"
                );
            }
            Ok(s)
        })
    }
}

#[cfg(test)]
mod tests;
