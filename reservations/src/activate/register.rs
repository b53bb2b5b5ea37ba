//! Registering our key on paths, and what every operation shares: the usable paths, key
//! collisions, which paths a state shows unregistered, PR OUT failures that may have applied.

use sm_core::scsi::PrOut;

use crate::engine::OutResult;
use crate::error::PrError;
use crate::fence::Owner;
use crate::key::PrKey;
use crate::path::PrPath;
use crate::state::LuState;

use super::{Exclusive, Report};

impl<'a> Exclusive<'a> {
    pub(crate) fn usable(&self) -> Result<Vec<&'a PrPath>, PrError> {
        let v: Vec<&PrPath> = self.lu.usable().collect();
        if v.is_empty() {
            return Err(PrError::NoUsablePath {
                lu: self.lu.id().into(),
            });
        }
        Ok(v)
    }

    /// Our key registered by an initiator that none of our paths has: another host (or
    /// cluster) uses the same key.
    pub(crate) fn check_collision(&self, s: &LuState) -> Result<(), PrError> {
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

    pub(super) fn note_unknown(
        &self,
        report: &mut Report,
        op: &str,
        path: &PrPath,
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
    pub(crate) fn register_on<'p>(
        &self,
        paths: &[&'p PrPath],
        key: u64,
        report: &mut Report,
    ) -> Result<(Vec<&'p PrPath>, Vec<&'p PrPath>), PrError> {
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
    pub(crate) fn is_registered(&self, s: &LuState, p: &PrPath) -> Option<bool> {
        p.nexus
            .as_ref()
            .and_then(|n| s.nexus_registered(n, self.me))
    }

    /// The usable paths that `s` shows unregistered (count-based when nexuses are unknown:
    /// all of them when fewer keys than paths are registered).
    pub(crate) fn unregistered(&self, s: &LuState, usable: &[&'a PrPath]) -> Vec<&'a PrPath> {
        let exact: Option<Vec<&PrPath>> = usable
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
    pub(crate) fn register_all(
        &self,
        usable: &[&'a PrPath],
        report: &mut Report,
    ) -> Result<Vec<&'a PrPath>, PrError> {
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
    pub(super) fn back_off(&self, usable: &[&'a PrPath]) {
        let mut r = Report::default();
        if let Err(e) = self.register_on(usable, 0, &mut r) {
            tracing::warn!(
                lu = self.lu.id(),
                "removing our registrations after losing: {e}"
            );
        }
    }

    /// The refusal for `key` of `owner` in `state`: a foreign key is named with where it is
    /// registered from.
    pub(super) fn in_use(&self, owner: &Owner, key: u64, state: &LuState) -> PrError {
        match PrKey::new(key) {
            Ok(k) if matches!(owner, Owner::Unknown(_)) => PrError::Foreign {
                lu: self.lu.id().into(),
                key: k,
                from: state
                    .registrations
                    .iter()
                    .find(|r| r.key == key)
                    .map(|r| r.describe_nexus())
                    .unwrap_or_else(|| "?".into()),
                holds: state.reservation.is_some_and(|r| r.key == key),
            },
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
}
