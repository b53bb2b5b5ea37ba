//! A host's exclusive use of LUs, one operation per SMAPI verb, over a [`PathSource`] (the
//! LU's current paths, read again when they may have changed) and multipathd (the map's
//! reservation key, so that multipathd registers paths that appear later before they carry
//! I/O).
//!
//! - [`Activation::activate`]: [`Exclusive::acquire`] on the paths, the key handed to
//!   multipathd, the paths read again and [`Exclusive::recheck`] (paths that appeared while
//!   we were registering get registered; a preemption meanwhile is an error).
//! - [`Activation::deactivate`]: multipathd forgets the key first (else it registers a
//!   returning path again), then [`Exclusive::release`] on the current paths.
//! - [`Activation::clean_stale`]: the crash clean-up: on LUs not active here, registrations
//!   of our key are released; failures are logged and reported, never returned.
//!
//! multipathd failing or refusing the key is only a warning: the re-check registers new
//! paths.

use multipath::dm::Multipathd;
use sm_core::ids::ScsiId;

use crate::activate::{Exclusive, Report};
use crate::engine::Lu;
use crate::error::PrError;
use crate::fence::Owners;
use crate::key::PrKey;
use crate::mpathd;
use crate::path::PathSource;
use crate::policy::Policy;

/// One host's reservations on the LUs of one SR.
pub struct Activation<'a> {
    /// Where each LU's current paths come from.
    pub paths: &'a dyn PathSource,
    /// The host's multipathd (map keys).
    pub multipathd: &'a dyn Multipathd,
    /// This host's key.
    pub me: PrKey,
    /// The SR's policy.
    pub policy: &'a Policy,
    /// Who owns other keys.
    pub owners: &'a dyn Owners,
}

/// What [`Activation::activate`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Activated {
    /// The acquisition (keys fenced or preempted, commands found applied despite an error).
    pub acquired: Report,
    /// The re-check on the paths read again (`registered_late`: paths that appeared).
    pub rechecked: Report,
    /// Whether multipathd took the map's key (false: it failed or refused; a warning was
    /// logged).
    pub map_key: bool,
}

/// What [`Activation::deactivate`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deactivated {
    /// The release.
    pub released: Report,
    /// Whether multipathd forgot the map's key (false: it failed or refused; a warning was
    /// logged).
    pub map_key: bool,
}

/// What [`Activation::clean_stale`] did.
#[derive(Debug, Default)]
pub struct Cleanup {
    /// LUs whose stale registrations of our key were removed (verified).
    pub cleaned: Vec<String>,
    /// LUs where removing them failed (logged at `warn!`).
    pub failed: Vec<(String, PrError)>,
}

impl Activation<'_> {
    fn exclusive<'l>(&'l self, lu: &'l Lu<'l>) -> Exclusive<'l> {
        Exclusive {
            lu,
            me: self.me,
            policy: self.policy,
            owners: self.owners,
        }
    }

    /// Hands `key` for the map `lu` to multipathd (`None`: takes it back). A failure is only a
    /// warning: our re-check registers new paths.
    fn map_key(&self, lu: &str, key: Option<PrKey>) -> bool {
        match mpathd::set_map_key(self.multipathd, lu, key) {
            Ok(taken) => taken,
            Err(e) => {
                tracing::warn!(
                    scsi_id = lu,
                    "multipathd map key: {}",
                    sm_core::errors::error_chain(&e)
                );
                false
            }
        }
    }

    /// Takes `lu` exclusively (see [`Exclusive::acquire`]), hands our key to multipathd for
    /// its map, reads the paths again and re-checks, registering the paths that appeared.
    pub fn activate(&self, lu: &ScsiId) -> Result<Activated, PrError> {
        let paths = self.paths.paths(lu)?;
        let acquired = self.exclusive(&Lu::new(lu.as_str(), &paths)).acquire()?;
        let map_key = self.map_key(lu.as_str(), Some(self.me));
        let again = self.paths.paths(lu)?;
        let rechecked = self.exclusive(&Lu::new(lu.as_str(), &again)).recheck()?;
        Ok(Activated {
            acquired,
            rechecked,
            map_key,
        })
    }

    /// Gives `lu` up: multipathd forgets our key for the map first, then
    /// [`Exclusive::release`] on the current paths (verified). Idempotent.
    pub fn deactivate(&self, lu: &ScsiId) -> Result<Deactivated, PrError> {
        let map_key = self.map_key(lu.as_str(), None);
        let paths = self.paths.paths(lu)?;
        let released = self.exclusive(&Lu::new(lu.as_str(), &paths)).release()?;
        Ok(Deactivated { released, map_key })
    }

    /// The crash clean-up: on each of `luns` not in `active` (the LUs this host has active),
    /// registrations or a reservation of our key are left from before a crash; multipathd
    /// forgets the key (it would register it again on the next path event) and they are
    /// released, verified. LUs without a usable path or PR state are skipped; failures are
    /// logged and reported, never returned: attaching the SR matters more.
    pub fn clean_stale(&self, luns: &[String], active: &[String]) -> Cleanup {
        let mut done = Cleanup::default();
        for scsi_id in luns.iter().filter(|l| !active.contains(l)) {
            let Ok(id) = ScsiId::new(scsi_id) else {
                tracing::debug!(scsi_id, "not a SCSI id: skipped");
                continue;
            };
            let paths = match self.paths.paths(&id) {
                Ok(p) if p.iter().any(|p| p.usable) => p,
                _ => continue,
            };
            let lu = Lu::new(scsi_id.as_str(), &paths);
            match lu.state() {
                Ok(s) if s.has(self.me) || s.held_by(self.me) => {
                    tracing::warn!(
                        scsi_id,
                        "stale registrations of this host (from before a crash?): {s}; removing them"
                    );
                    self.map_key(scsi_id, None);
                    match self.exclusive(&lu).release() {
                        Ok(_) => done.cleaned.push(scsi_id.clone()),
                        Err(e) => {
                            tracing::warn!(
                                scsi_id,
                                "cannot remove stale registrations: {}",
                                sm_core::errors::error_chain(&e)
                            );
                            done.failed.push((scsi_id.clone(), e));
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(scsi_id, "no PR state: {e}"),
            }
        }
        done
    }
}

#[cfg(test)]
mod tests;
