//! With the reservation ours: fix what keeps the invariant from holding (type, holder nexus,
//! stale nexuses, other keys, unregistered paths), then verify it.

use crate::error::PrError;
use crate::fence::{self, Owner};
use crate::path::PrPath;
use crate::state::LuState;

use super::{Exclusive, MAX_ROUNDS, Report};

impl<'a> Exclusive<'a> {
    /// With the reservation ours: fixes the type, a holder nexus that is not one of our
    /// paths, stale nexuses of ours, other hosts' registrations and unregistered paths; then
    /// verifies the invariant.
    pub(super) fn settle(
        &self,
        mut state: LuState,
        usable: &[&'a PrPath],
        registered: &[&'a PrPath],
        report: &mut Report,
    ) -> Result<LuState, PrError> {
        for _ in 0..MAX_ROUNDS {
            let via = registered
                .iter()
                .copied()
                .find(|p| self.is_registered(&state, p) != Some(false))
                .or_else(|| usable.first().copied())
                .ok_or_else(|| PrError::NoUsablePath {
                    lu: self.lu.id().into(),
                })?;
            let known: Vec<_> = self
                .lu
                .paths()
                .iter()
                .filter_map(|p| p.nexus.as_ref())
                .collect();
            let wrong_type = state.pr_type() != Some(self.policy.pr_type);
            let stale_holder = state.holder().is_some_and(|h| {
                h.nexus.is_some()
                    && !usable
                        .iter()
                        .any(|p| p.nexus.as_ref().is_some_and(|n| h.is(n)))
            });
            let stale_own = state.detailed
                && known.len() == self.lu.paths().len()
                && state
                    .registrations
                    .iter()
                    .any(|r| r.key == self.me.get() && !known.iter().any(|n| r.is(n)));
            if wrong_type || stale_holder || stale_own {
                tracing::warn!(
                    lu = self.lu.id(),
                    wrong_type,
                    stale_holder,
                    stale_own,
                    "taking the reservation over from our own key: {state}"
                );
                let candidates = self.takeover_candidates(&state, registered, true);
                self.preempt_self(&candidates, usable, report)?;
                state = self.lu.state()?;
                continue;
            }
            let others = state.other_keys(self.me);
            let mut changed = false;
            for k in others {
                let owner = self.owners.owner(k)?;
                if matches!(owner, Owner::Live(_)) || fence::may_fence(self.policy, &owner) {
                    self.fence_key(&[via], k, &owner, report)?;
                    changed = true;
                } else {
                    tracing::warn!(
                        lu = self.lu.id(),
                        "{} stays registered: this SR's policy does not fence it ({})",
                        owner.name(),
                        self.policy
                    );
                }
            }
            let missing = self.unregistered(&state, usable);
            if !missing.is_empty() && !changed {
                report
                    .registered_late
                    .extend(missing.iter().map(|p| p.name.clone()));
                self.register_on(&missing, self.me.get(), report)?;
                changed = true;
            }
            if !changed {
                return self.verify_held(state, usable);
            }
            state = self.lu.state()?;
        }
        self.verify_held(state, usable)
    }

    pub(super) fn verify_held(
        &self,
        state: LuState,
        usable: &[&'a PrPath],
    ) -> Result<LuState, PrError> {
        if !state.held_by(self.me) || state.pr_type() != Some(self.policy.pr_type) {
            return Err(self.lu.not_verified(
                "exclusive activation",
                format!(
                    "want {} reserved by {}: {state}",
                    self.policy.pr_type, self.me
                ),
            ));
        }
        let missing = self.unregistered(&state, usable);
        if !missing.is_empty() {
            return Err(self.lu.not_verified(
                "registration",
                format!(
                    "paths {} not registered: {state}",
                    missing
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        Ok(state)
    }
}
