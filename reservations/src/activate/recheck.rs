//! [`Exclusive::recheck`]: an active LU is still ours; paths that appeared since are
//! registered, and a preemption racing with that is noticed.

use crate::error::PrError;

use super::{Exclusive, Report};

impl<'a> Exclusive<'a> {
    /// Checks an active LU: the reservation must still be ours (else we were fenced) and
    /// every usable path registered; paths that appeared since are registered, and the
    /// reservation is read again afterwards so that a preemption racing with the new
    /// registration is noticed and the registration undone (multipathd's rule).
    pub fn recheck(&self) -> Result<Report, PrError> {
        let usable = self.usable()?;
        let mut report = Report::default();
        let state = self.lu.state()?;
        if !state.held_by(self.me) {
            return Err(self.lu.not_verified(
                "reservation check",
                format!("the reservation is no longer ours (fenced?): {state}"),
            ));
        }
        let missing = self.unregistered(&state, &usable);
        if missing.is_empty() {
            report.unchanged = true;
            report.state = state;
            return Ok(report);
        }
        report
            .registered_late
            .extend(missing.iter().map(|p| p.name.clone()));
        self.register_on(&missing, self.me.get(), &mut report)?;
        let after = self.lu.state()?;
        if !after.held_by(self.me) {
            self.back_off(&missing);
            return Err(self.lu.not_verified(
                "reservation check",
                format!("preempted while registering new paths: {after}"),
            ));
        }
        report.state = self.verify_held(after, &usable)?;
        Ok(report)
    }
}
