//! [`Exclusive::acquire`]: register every path, reserve (or fence a holder the policy lets us
//! fence), then settle.

use sm_core::scsi::PrOut;

use crate::engine::OutResult;
use crate::error::PrError;
use crate::fence::{self, Owner};
use crate::path::PrPath;

use super::{Exclusive, MAX_ROUNDS, Report};

impl<'a> Exclusive<'a> {
    /// Takes the LU: registers every usable path, reserves (fencing a dead holder when the
    /// policy allows), removes other hosts' registrations, and verifies. Idempotent.
    pub fn acquire(&self) -> Result<Report, PrError> {
        let usable = self.usable()?;
        let mut report = Report::default();
        let s0 = self.lu.state()?;
        self.check_collision(&s0)?;
        if let Some(r) = s0.reservation
            && !s0.held_by(self.me)
        {
            let owner = self.owners.owner(r.key)?;
            if !fence::may_fence(self.policy, &owner) {
                if s0.has(self.me) {
                    self.back_off(&usable);
                }
                return Err(self.in_use(&owner, r.key, &s0));
            }
        }
        // A key no pool host owns is another cluster's or a guest cluster's: registered
        // alone it can still write under our reservation, and preempting it breaks theirs.
        for k in s0.other_keys(self.me) {
            let owner = self.owners.owner(k)?;
            if matches!(owner, Owner::Unknown(_)) && !fence::may_fence(self.policy, &owner) {
                if s0.has(self.me) && !s0.held_by(self.me) {
                    self.back_off(&usable);
                }
                return Err(self.in_use(&owner, k, &s0));
            }
        }
        if s0.held_by(self.me) && self.unregistered(&s0, &usable).is_empty() {
            report.unchanged = true;
        }
        let registered = if report.unchanged {
            usable.clone()
        } else {
            self.register_all(&usable, &mut report)?
        };
        let mut state = if report.unchanged {
            s0
        } else {
            self.lu.state()?
        };
        let mut round = 0;
        while !state.held_by(self.me) {
            if round == MAX_ROUNDS {
                return Err(self
                    .lu
                    .not_verified("RESERVE", format!("after {MAX_ROUNDS} rounds: {state}")));
            }
            round += 1;
            match state.reservation {
                Some(r) => {
                    let owner = self.owners.owner(r.key)?;
                    if !fence::may_fence(self.policy, &owner) {
                        self.back_off(&usable);
                        return Err(self.in_use(&owner, r.key, &state));
                    }
                    self.fence_key(&registered, r.key, &owner, &mut report)?;
                }
                None => self.reserve(&registered, &mut report)?,
            }
            state = self.lu.state()?;
        }
        report.state = self.settle(state, &usable, &registered, &mut report)?;
        Ok(report)
    }

    /// RESERVE through the first registered path that takes it; conflicts and ambiguous
    /// answers are settled by the caller's read-back.
    pub(super) fn reserve(
        &self,
        registered: &[&'a PrPath],
        report: &mut Report,
    ) -> Result<(), PrError> {
        let cmd = PrOut::Reserve {
            key: self.me.get(),
            pr_type: self.policy.pr_type,
        };
        let mut last = None;
        for p in registered {
            match self.lu.out(p, &cmd) {
                OutResult::Done | OutResult::Conflict(_) => return Ok(()),
                OutResult::Unknown(e) => {
                    self.note_unknown(report, "RESERVE", p, Some(e));
                    return Ok(());
                }
                OutResult::PathFailed(e) => {
                    last = Some(self.lu.out_error("RESERVE", p, OutResult::PathFailed(e)))
                }
                r => return Err(self.lu.out_error("RESERVE", p, r)),
            }
        }
        Err(last.unwrap_or_else(|| PrError::NoUsablePath {
            lu: self.lu.id().into(),
        }))
    }

    /// PREEMPT [AND ABORT] `victim` through the first registered path that takes it.
    pub(super) fn fence_key(
        &self,
        registered: &[&'a PrPath],
        victim: u64,
        owner: &Owner,
        report: &mut Report,
    ) -> Result<(), PrError> {
        let (abort, why) = match owner {
            Owner::Live(n) => (false, format!("a registration of live {n}")),
            Owner::Dead(n) => (
                fence::aborts(self.policy),
                format!("{n}, which the pool reports dead"),
            ),
            Owner::Unknown(n) => (fence::aborts(self.policy), n.clone()),
        };
        let mut last = None;
        for p in registered {
            match fence::preempt(self.lu, p, self.me, victim, self.policy, abort, &why)? {
                OutResult::Done | OutResult::Conflict(_) => {
                    match owner {
                        Owner::Live(n) => report.preempted.push(n.clone()),
                        _ => report.fenced.push(owner.name().into()),
                    }
                    return Ok(());
                }
                OutResult::Unknown(e) => {
                    self.note_unknown(report, "PREEMPT", p, Some(e));
                    report.fenced.push(owner.name().into());
                    return Ok(());
                }
                OutResult::PathFailed(e) => {
                    last = Some(self.lu.out_error("PREEMPT", p, OutResult::PathFailed(e)))
                }
                r => return Err(self.lu.out_error("PREEMPT", p, r)),
            }
        }
        Err(last.unwrap_or_else(|| PrError::NoUsablePath {
            lu: self.lu.id().into(),
        }))
    }
}
