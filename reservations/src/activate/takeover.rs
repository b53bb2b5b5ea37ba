//! Taking the reservation over from our own key: PREEMPT of our key through another path
//! (trap 3: the other paths are registered again at once).

use sm_core::scsi::PrOut;

use crate::engine::OutResult;
use crate::error::PrError;
use crate::path::PrPath;
use crate::state::LuState;

use super::{Exclusive, Report};

impl<'a> Exclusive<'a> {
    /// PREEMPT of our own key through the first of `via` that takes it (each registered):
    /// the reservation moves there with the policy's type and every other registration of
    /// ours is dropped (trap 3), so the other usable paths are registered again at once.
    ///
    /// LIO refuses (RESERVATION CONFLICT) a PREEMPT from a new session of the holder's own
    /// initiator port whose ISID differs from the holder's, so candidates through another
    /// target port are tried first and conflicts move on to the next candidate.
    pub(super) fn preempt_self<'p>(
        &self,
        via: &[&'p PrPath],
        usable: &[&'p PrPath],
        report: &mut Report,
    ) -> Result<&'p PrPath, PrError> {
        let cmd = PrOut::Preempt {
            key: self.me.get(),
            victim: self.me.get(),
            pr_type: self.policy.pr_type,
            abort: false,
        };
        let mut last = None;
        let mut used = None;
        for p in via {
            match self.lu.out(p, &cmd) {
                OutResult::Done => {}
                OutResult::Unknown(e) => self.note_unknown(report, "PREEMPT (own key)", p, Some(e)),
                r @ (OutResult::Conflict(_) | OutResult::PathFailed(_)) => {
                    last = Some(self.lu.out_error("PREEMPT (own key)", p, r));
                    continue;
                }
                r => return Err(self.lu.out_error("PREEMPT (own key)", p, r)),
            }
            used = Some(*p);
            break;
        }
        let Some(used) = used else {
            return Err(last.unwrap_or_else(|| PrError::NoUsablePath {
                lu: self.lu.id().into(),
            }));
        };
        let others: Vec<&PrPath> = usable
            .iter()
            .copied()
            .filter(|p| p.name != used.name)
            .collect();
        self.register_on(&others, self.me.get(), report)?;
        Ok(used)
    }

    /// The paths to send a PREEMPT of our own key through: those of `paths` that `state` does
    /// not show unregistered, the ones on another target port than the holder first.
    pub(super) fn takeover_candidates(
        &self,
        state: &LuState,
        paths: &[&'a PrPath],
        check_registered: bool,
    ) -> Vec<&'a PrPath> {
        let holder_port = state
            .holder()
            .and_then(|h| h.nexus.as_ref().and_then(|n| n.1));
        let mut v: Vec<&PrPath> = paths
            .iter()
            .copied()
            .filter(|p| !check_registered || self.is_registered(state, p) != Some(false))
            .collect();
        v.sort_by_key(|p| {
            holder_port.is_some() && p.nexus.as_ref().and_then(|n| n.rtpi) == holder_port
        });
        v
    }
}
