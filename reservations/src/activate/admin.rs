//! The administrator's operations (`xsm pr`): register everywhere, CLEAR, PREEMPT a key by
//! hand.

use sm_core::scsi::PrOut;

use crate::engine::OutResult;
use crate::error::PrError;
use crate::fence::Owner;
use crate::key::PrKey;
use crate::policy::{Fencing, Policy};

use super::{Exclusive, Report};

impl<'a> Exclusive<'a> {
    /// Registers our key on every usable path and verifies (no reservation is taken).
    pub fn register_everywhere(&self) -> Result<Report, PrError> {
        let usable = self.usable()?;
        let mut report = Report::default();
        self.register_all(&usable, &mut report)?;
        let state = self.lu.state()?;
        let missing = self.unregistered(&state, &usable);
        if !missing.is_empty() {
            return Err(self.lu.not_verified(
                "REGISTER AND IGNORE EXISTING KEY",
                format!("{} paths not registered: {state}", missing.len()),
            ));
        }
        report.state = state;
        Ok(report)
    }

    /// Removes every registration and the reservation (CLEAR through a path registered
    /// with our key). For the administrator only: it drops other hosts' registrations too.
    pub fn clear(&self) -> Result<Report, PrError> {
        let usable = self.usable()?;
        let mut report = Report::default();
        let registered = self.register_all(&usable, &mut report)?;
        let via = registered[0];
        match self.lu.out(via, &PrOut::Clear { key: self.me.get() }) {
            OutResult::Done => {}
            OutResult::Unknown(e) => self.note_unknown(&mut report, "CLEAR", via, Some(e)),
            r => return Err(self.lu.out_error("CLEAR", via, r)),
        }
        let state = self.lu.state()?;
        if !state.registrations.is_empty() || state.reservation.is_some() {
            return Err(self.lu.not_verified("CLEAR", state.to_string()));
        }
        report.state = state;
        Ok(report)
    }

    /// Removes `victim`'s registrations (taking its reservation if it holds one), by the
    /// administrator's order: registers our key first when needed, then verifies the victim
    /// is gone. Refuses to preempt our own key (use [`Exclusive::release`]).
    pub fn preempt(&self, victim: PrKey, abort: bool) -> Result<Report, PrError> {
        if victim == self.me {
            return Err(self
                .lu
                .not_verified("PREEMPT", "refusing to preempt this host's own key"));
        }
        let usable = self.usable()?;
        let mut report = Report::default();
        let registered = self.register_all(&usable, &mut report)?;
        let owner = Owner::Unknown(format!("key {victim} (by hand)"));
        let policy = Policy {
            fencing: if abort {
                Fencing::PreemptDead
            } else {
                Fencing::PreemptDeadNoAbort
            },
            ..self.policy.clone()
        };
        let me = Exclusive {
            policy: &policy,
            ..*self
        };
        me.fence_key(&registered, victim.get(), &owner, &mut report)?;
        let state = self.lu.state()?;
        if state.has(victim) {
            return Err(self
                .lu
                .not_verified("PREEMPT", format!("{victim} still registered: {state}")));
        }
        report.state = state;
        Ok(report)
    }
}
