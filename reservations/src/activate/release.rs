//! [`Exclusive::release`]: RELEASE on the holder path, unregister every path, remove what is
//! left of our key.

use sm_core::scsi::PrOut;

use crate::engine::OutResult;
use crate::error::PrError;
use crate::path::PrPath;
use crate::policy::Policy;
use crate::state::LuState;

use super::{Exclusive, Report};

impl<'a> Exclusive<'a> {
    /// Gives the LU up: RELEASE on the holder path, unregister every path, remove what is
    /// left of our key (down paths, stale nexuses), verify. Idempotent; also the clean-up of
    /// registrations a crashed host left behind.
    pub fn release(&self) -> Result<Report, PrError> {
        let usable = self.usable()?;
        let mut report = Report::default();
        let mut state = self.lu.state()?;
        if !state.has(self.me) && !state.held_by(self.me) {
            report.unchanged = true;
            report.state = state;
            return Ok(report);
        }
        if state.held_by(self.me) && state.holder().is_none() && state.detailed {
            // Held by key only (All-Registrants): unregistering releases it.
        } else if state.held_by(self.me) {
            self.release_reservation(&state, &usable, &mut report)?;
            state = self.lu.state()?;
            if state.held_by(self.me) {
                return Err(self
                    .lu
                    .not_verified("RELEASE", format!("still reserved by us: {state}")));
            }
        }
        self.register_on(&usable, 0, &mut report)?;
        state = self.lu.state()?;
        if state.has(self.me) {
            tracing::warn!(
                lu = self.lu.id(),
                "our key is still registered on nexuses we cannot reach; removing it with PREEMPT: {state}"
            );
            state = self.sweep_own_key(&usable, &mut report)?;
        }
        if state.has(self.me) || state.held_by(self.me) {
            return Err(self.lu.not_verified(
                "unregister",
                format!("key {} still registered: {state}", self.me),
            ));
        }
        report.state = state;
        Ok(report)
    }

    pub(super) fn release_reservation(
        &self,
        state: &LuState,
        usable: &[&'a PrPath],
        report: &mut Report,
    ) -> Result<(), PrError> {
        let Some(r) = state.reservation else {
            return Ok(());
        };
        let cmd = PrOut::Release {
            key: self.me.get(),
            pr_type: r.pr_type,
        };
        let holder_path = state.holder().and_then(|h| {
            usable
                .iter()
                .copied()
                .find(|p| p.nexus.as_ref().is_some_and(|n| h.is(n)))
        });
        let candidates: Vec<&PrPath> = match holder_path {
            Some(p) => vec![p],
            None if state.detailed => {
                // The holder nexus is down or gone: take the reservation over through a
                // usable path (libmpathpersist's do_preempt_self), then release it there.
                let missing = self.unregistered(state, usable);
                self.register_on(&missing, self.me.get(), report)?;
                let policy = Policy {
                    pr_type: r.pr_type,
                    ..self.policy.clone()
                };
                let me = Exclusive {
                    policy: &policy,
                    ..*self
                };
                let candidates = self.takeover_candidates(state, usable, false);
                vec![me.preempt_self(&candidates, &[], report)?]
            }
            None => usable.to_vec(),
        };
        for p in candidates {
            match self.lu.out(p, &cmd) {
                OutResult::Done => {}
                OutResult::Unknown(e) => self.note_unknown(report, "RELEASE", p, Some(e)),
                OutResult::PathFailed(e) => {
                    tracing::warn!(lu = self.lu.id(), path = %p.name, "RELEASE on a failed path: {e}");
                    continue;
                }
                r => return Err(self.lu.out_error("RELEASE", p, r)),
            }
            if holder_path.is_some() {
                return Ok(());
            }
            let still_ours = self
                .lu
                .read_reservation()?
                .reservation
                .is_some_and(|r| r.key == self.me.get());
            if !still_ours {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Registers one usable path and PREEMPTs our own key: with no reservation of ours this
    /// removes every registration carrying it (the caller's too, on LIO); then unregisters
    /// that path in case the device kept it.
    pub(super) fn sweep_own_key(
        &self,
        usable: &[&'a PrPath],
        report: &mut Report,
    ) -> Result<LuState, PrError> {
        let via = usable[0];
        self.register_on(&[via], self.me.get(), report)?;
        let cmd = PrOut::Preempt {
            key: self.me.get(),
            victim: self.me.get(),
            pr_type: self.policy.pr_type,
            abort: false,
        };
        match self.lu.out(via, &cmd) {
            OutResult::Done | OutResult::Conflict(_) => {}
            OutResult::Unknown(e) => self.note_unknown(report, "PREEMPT (own key)", via, Some(e)),
            r => return Err(self.lu.out_error("PREEMPT (own key)", via, r)),
        }
        self.register_on(&[via], 0, report)?;
        self.lu.state()
    }
}
