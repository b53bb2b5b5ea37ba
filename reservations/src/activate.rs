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

use sm_core::scsi::PrOut;

use crate::engine::{Lu, OutResult};
use crate::error::PrError;
use crate::fence::{self, Owner, Owners};
use crate::key::PrKey;
use crate::path::Path;
use crate::policy::{Fencing, Policy};
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

impl<'a> Exclusive<'a> {
    fn usable(&self) -> Result<Vec<&'a Path>, PrError> {
        let v: Vec<&Path> = self.lu.usable().collect();
        if v.is_empty() {
            return Err(PrError::NoUsablePath {
                lu: self.lu.id().into(),
            });
        }
        Ok(v)
    }

    /// Our key registered by an initiator that none of our paths has: another host (or
    /// cluster) uses the same key.
    fn check_collision(&self, s: &LuState) -> Result<(), PrError> {
        let ours: Vec<&str> = self
            .lu
            .paths()
            .iter()
            .filter_map(|p| p.nexus.as_ref().map(|n| n.initiator.as_str()))
            .collect();
        if ours.is_empty() {
            return Ok(());
        }
        match s
            .registrations
            .iter()
            .filter(|r| r.key == self.me.get())
            .find_map(|r| r.initiator().filter(|i| !ours.contains(i)))
        {
            Some(other) => Err(PrError::KeyCollision {
                key: self.me,
                detail: format!(
                    "LUN {} has it registered by initiator {other}, which is not this host",
                    self.lu.id()
                ),
            }),
            None => Ok(()),
        }
    }

    fn note_unknown(
        &self,
        report: &mut Report,
        op: &str,
        path: &Path,
        e: Option<sm_core::scsi::ScsiError>,
    ) {
        let what = format!(
            "{op} through {}: {}",
            path.name,
            e.map(|e| e.to_string()).unwrap_or_default()
        );
        tracing::warn!(
            lu = self.lu.id(),
            "PR OUT reported a failure; reading back whether it applied: {what}"
        );
        report.applied_despite_error.push(what);
    }

    /// REGISTER AND IGNORE EXISTING KEY `key` (0 = unregister) on `paths`. Returns the paths
    /// where the device answered GOOD, and those where the outcome is unknown.
    #[allow(clippy::type_complexity)]
    fn register_on<'p>(
        &self,
        paths: &[&'p Path],
        key: u64,
        report: &mut Report,
    ) -> Result<(Vec<&'p Path>, Vec<&'p Path>), PrError> {
        let mut done = Vec::new();
        let mut unknown = Vec::new();
        let op = if key == 0 {
            "unregister"
        } else {
            "REGISTER AND IGNORE EXISTING KEY"
        };
        for p in paths {
            let cmd = PrOut::RegisterAndIgnore {
                new_key: key,
                opts: self.policy.register_opts(),
            };
            match self.lu.out(p, &cmd) {
                OutResult::Done => done.push(*p),
                OutResult::Unknown(e) => {
                    self.note_unknown(report, op, p, Some(e));
                    unknown.push(*p);
                }
                OutResult::PathFailed(e) => {
                    tracing::warn!(lu = self.lu.id(), path = %p.name, "{op} skipped a failed path (multipathd registers it when it returns): {e}");
                }
                r => return Err(self.lu.out_error(op, p, r)),
            }
        }
        Ok((done, unknown))
    }

    /// Whether `p` is registered with our key in `s` (`None` when the state cannot tell).
    fn is_registered(&self, s: &LuState, p: &Path) -> Option<bool> {
        p.nexus
            .as_ref()
            .and_then(|n| s.nexus_registered(n, self.me))
    }

    /// The usable paths that `s` shows unregistered (count-based when nexuses are unknown:
    /// all of them when fewer keys than paths are registered).
    fn unregistered(&self, s: &LuState, usable: &[&'a Path]) -> Vec<&'a Path> {
        let exact: Option<Vec<&Path>> = usable
            .iter()
            .map(|p| self.is_registered(s, p).map(|r| (p, r)))
            .collect::<Option<Vec<_>>>()
            .map(|v| v.into_iter().filter(|(_, r)| !r).map(|(p, _)| *p).collect());
        match exact {
            Some(v) => v,
            None if s.count(self.me) < usable.len() => usable.to_vec(),
            None => Vec::new(),
        }
    }

    /// Registers our key on every usable path and returns the paths known registered.
    fn register_all(
        &self,
        usable: &[&'a Path],
        report: &mut Report,
    ) -> Result<Vec<&'a Path>, PrError> {
        let (done, unknown) = self.register_on(usable, self.me.get(), report)?;
        if unknown.is_empty() && !done.is_empty() {
            return Ok(done);
        }
        let s = self.lu.state()?;
        let mut ok = done;
        for p in unknown {
            match self.is_registered(&s, p) {
                Some(true) => ok.push(p),
                None if s.has(self.me) => ok.push(p),
                _ => {
                    return Err(self.lu.not_verified(
                        "REGISTER AND IGNORE EXISTING KEY",
                        format!("{} is not registered after the command: {s}", p.name),
                    ));
                }
            }
        }
        if ok.is_empty() {
            return Err(PrError::NoUsablePath {
                lu: self.lu.id().into(),
            });
        }
        Ok(ok)
    }

    /// Removes our registrations from every usable path, without verifying (used when
    /// backing off).
    fn back_off(&self, usable: &[&'a Path]) {
        let mut r = Report::default();
        if let Err(e) = self.register_on(usable, 0, &mut r) {
            tracing::warn!(
                lu = self.lu.id(),
                "removing our registrations after losing: {e}"
            );
        }
    }

    fn in_use(&self, owner: &Owner, key: u64) -> PrError {
        match PrKey::new(key) {
            Ok(key) => PrError::InUse {
                lu: self.lu.id().into(),
                holder: owner.name().into(),
                key,
            },
            Err(_) => self.lu.not_verified(
                "reservation check",
                format!("held by {} (key 0)", owner.name()),
            ),
        }
    }

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
                return Err(self.in_use(&owner, r.key));
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
                        return Err(self.in_use(&owner, r.key));
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
    fn reserve(&self, registered: &[&'a Path], report: &mut Report) -> Result<(), PrError> {
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
    fn fence_key(
        &self,
        registered: &[&'a Path],
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

    /// PREEMPT of our own key through the first of `via` that takes it (each registered):
    /// the reservation moves there with the policy's type and every other registration of
    /// ours is dropped (trap 3), so the other usable paths are registered again at once.
    ///
    /// LIO refuses (RESERVATION CONFLICT) a PREEMPT from a new session of the holder's own
    /// initiator port whose ISID differs from the holder's, so candidates through another
    /// target port are tried first and conflicts move on to the next candidate.
    fn preempt_self<'p>(
        &self,
        via: &[&'p Path],
        usable: &[&'p Path],
        report: &mut Report,
    ) -> Result<&'p Path, PrError> {
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
        let others: Vec<&Path> = usable
            .iter()
            .copied()
            .filter(|p| p.name != used.name)
            .collect();
        self.register_on(&others, self.me.get(), report)?;
        Ok(used)
    }

    /// The paths to send a PREEMPT of our own key through: those of `paths` that `state` does
    /// not show unregistered, the ones on another target port than the holder first.
    fn takeover_candidates(
        &self,
        state: &LuState,
        paths: &[&'a Path],
        check_registered: bool,
    ) -> Vec<&'a Path> {
        let holder_port = state
            .holder()
            .and_then(|h| h.nexus.as_ref().and_then(|n| n.1));
        let mut v: Vec<&Path> = paths
            .iter()
            .copied()
            .filter(|p| !check_registered || self.is_registered(state, p) != Some(false))
            .collect();
        v.sort_by_key(|p| {
            holder_port.is_some() && p.nexus.as_ref().and_then(|n| n.rtpi) == holder_port
        });
        v
    }

    /// With the reservation ours: fixes the type, a holder nexus that is not one of our
    /// paths, stale nexuses of ours, other hosts' registrations and unregistered paths; then
    /// verifies the invariant.
    fn settle(
        &self,
        mut state: LuState,
        usable: &[&'a Path],
        registered: &[&'a Path],
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
                if matches!(owner, Owner::Live(_)) || self.policy.fencing != Fencing::Never {
                    self.fence_key(&[via], k, &owner, report)?;
                    changed = true;
                } else {
                    tracing::warn!(
                        lu = self.lu.id(),
                        "{} stays registered: fencing is off for this SR",
                        owner.name()
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

    fn verify_held(&self, state: LuState, usable: &[&'a Path]) -> Result<LuState, PrError> {
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

    fn release_reservation(
        &self,
        state: &LuState,
        usable: &[&'a Path],
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
        let candidates: Vec<&Path> = match holder_path {
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
    fn sweep_own_key(&self, usable: &[&'a Path], report: &mut Report) -> Result<LuState, PrError> {
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

#[cfg(test)]
pub(crate) mod tests;
