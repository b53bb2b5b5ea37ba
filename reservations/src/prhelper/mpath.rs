//! A request on a dm-multipath map: the guest sees one LU, the target sees one I_T nexus per
//! path. Every command goes to the paths as raw CDBs (so the guest gets the target's real
//! status and sense, never a made-up one), with these rules:
//!
//! * PR IN, every service action: the first usable path that answers; a path failure
//!   (transport error, timeout, ALUA standby/unavailable/offline) moves to the next path;
//! * a unit attention is re-sent on the same path (a bounded number of times), as the kernel
//!   does for ordinary I/O: it reports an event on that one nexus, and the command was not run;
//! * REGISTER and REGISTER AND IGNORE EXISTING KEY: the guest's command on one path (its key
//!   checks decide), then REGISTER AND IGNORE EXISTING KEY with the same service action key on
//!   every other usable path, and multipathd told the map's key so that paths that appear
//!   later are registered before they carry I/O; with ALL_TG_PT or SPEC_I_PT the target
//!   registers the other ports itself and one path is enough;
//! * RELEASE on the path holding the reservation (READ FULL STATUS finds it; a RELEASE from a
//!   registered non-holder is GOOD and does nothing), else path by path until the reservation
//!   is gone; RESERVE on one path, read back;
//! * CLEAR, PREEMPT, PREEMPT AND ABORT, REGISTER AND MOVE and anything else: one path (they act
//!   on every nexus, or the target says it cannot); after CLEAR multipathd forgets the key.

use std::time::Duration;

use multipath::dm::Multipathd;
use nix::errno::Errno;
use sm_core::scsi::error::{Condition, STATUS_RESERVATION_CONFLICT};
use sm_core::scsi::{DataDir, PrOutAction, RawOutcome};

use super::protocol::{CDB_SIZE, DATA_SIZE, PERSISTENT_RESERVE_OUT, Reply, Request};
use super::sense;
use crate::engine::Lu;
use crate::key::PrKey;
use crate::mpathd;
use crate::path::PrPath;

/// Unit attentions re-sent on one path before its answer is handed on.
const UA_ATTEMPTS: u32 = 5;
/// The fixed part of a PR OUT parameter list.
const FIXED_PARAMS: usize = 24;

/// One multipath map and what acts on it.
pub struct Map<'a> {
    /// The dm name of the map (multipathd's name for it).
    pub name: &'a str,
    /// Its paths, usable ones first.
    pub paths: &'a [PrPath],
    /// multipathd, to keep the map's key; `None` to leave multipathd alone.
    pub multipathd: Option<&'a dyn Multipathd>,
    /// Per-command timeout.
    pub timeout: Duration,
}

/// One path's answer: the reply for the guest, and how the one classifier reads it.
struct Answer {
    reply: Reply,
    condition: Option<Condition>,
}

impl Answer {
    fn path_failed(&self) -> bool {
        self.condition
            .as_ref()
            .is_some_and(Condition::is_path_failure)
    }

    fn good(&self) -> bool {
        self.condition.is_none() && sense::is_good(&self.reply)
    }
}

fn condition_of(r: &Result<RawOutcome, Errno>) -> Option<Condition> {
    match r {
        Err(e) => Some(Condition::Io(*e)),
        Ok(raw) => raw.condition(),
    }
}

impl Map<'_> {
    /// The paths in the order they are tried: usable ones, then the rest.
    fn ordered(&self) -> impl Iterator<Item = &PrPath> {
        let usable = self.paths.iter().filter(|p| p.usable);
        usable.chain(self.paths.iter().filter(|p| !p.usable))
    }

    /// Sends `cdb` on `path`, again while it answers a unit attention.
    fn send(&self, path: &PrPath, cdb: &[u8], mut data: DataDir<'_>) -> Answer {
        let mut attempt = 1;
        loop {
            let raw = path
                .transport
                .execute_raw(cdb, data.reborrow(), self.timeout);
            let condition = condition_of(&raw);
            if matches!(condition, Some(Condition::UnitAttention { .. })) && attempt < UA_ATTEMPTS {
                tracing::debug!(map = self.name, path = %path.name, "unit attention, sent again");
                attempt += 1;
                continue;
            }
            tracing::debug!(
                map = self.name,
                path = %path.name,
                "{:02x}/{:02x} on the path: {}",
                cdb.first().copied().unwrap_or(0),
                cdb.get(1).copied().unwrap_or(0) & 0x1f,
                condition.as_ref().map_or_else(|| "done".to_string(), ToString::to_string)
            );
            let mut reply = match &raw {
                Err(e) => sense::from_errno(*e),
                Ok(r) => sense::from_raw(r),
            };
            if let (Ok(r), DataDir::FromDevice(buf)) = (&raw, &data)
                && sense::is_good(&reply)
            {
                let n = buf.len().saturating_sub(r.resid);
                reply.payload = buf[..n].to_vec();
            }
            return Answer { reply, condition };
        }
    }

    /// Sends the guest's command on the first path that does not fail as a path; returns the
    /// answer and the path it came from.
    fn first(&self, req: &Request) -> (Answer, Option<&PrPath>) {
        let mut last = None;
        for p in self.ordered() {
            let mut buf = vec![0u8; DATA_SIZE];
            let data = if req.is_out() {
                DataDir::ToDevice(&req.params)
            } else {
                DataDir::FromDevice(&mut buf)
            };
            let a = self.send(p, &req.cdb, data);
            if a.path_failed() {
                tracing::warn!(map = self.name, path = %p.name, "path failed: {}", a.condition.as_ref().map_or(String::new(), ToString::to_string));
                last = Some(a);
                continue;
            }
            return (a, Some(p));
        }
        let a = last.unwrap_or(Answer {
            reply: sense::check(sense::LUN_COMM_FAILURE),
            condition: None,
        });
        (a, None)
    }

    /// Executes `req` on the map.
    pub fn execute(&self, req: &Request) -> Reply {
        if !req.is_out() {
            return self.first(req).0.reply;
        }
        let flags = req.flags();
        let action = PrOutAction::from_code(req.service_action());
        match action {
            Some(PrOutAction::Register | PrOutAction::RegisterAndIgnoreExistingKey)
                if req.params.len() >= FIXED_PARAMS && flags & 0x0c == 0 =>
            {
                self.register(req, flags)
            }
            Some(PrOutAction::Release) => self.release(req),
            Some(PrOutAction::Reserve) => {
                let (a, _) = self.first(req);
                if a.good() {
                    self.read_back_reservation(req);
                }
                a.reply
            }
            _ => {
                let (a, _) = self.first(req);
                if a.good() && action == Some(PrOutAction::Clear) {
                    self.map_key(None);
                }
                a.reply
            }
        }
    }

    /// REGISTER [AND IGNORE EXISTING KEY] on every path.
    fn register(&self, req: &Request, flags: u8) -> Reply {
        let (a, via) = self.first(req);
        let Some(via) = via.filter(|_| a.good()) else {
            return a.reply;
        };
        let sa_key = req.sa_key();
        let mut cdb = [0u8; CDB_SIZE];
        cdb[0] = PERSISTENT_RESERVE_OUT;
        cdb[1] = PrOutAction::RegisterAndIgnoreExistingKey.code();
        cdb[8] = FIXED_PARAMS as u8;
        let mut params = [0u8; FIXED_PARAMS];
        params[8..16].copy_from_slice(&sa_key.to_be_bytes());
        params[20] = flags & 0x01;
        for p in self.ordered().filter(|p| p.name != via.name) {
            let other = self.send(p, &cdb, DataDir::ToDevice(&params));
            if other.path_failed() {
                tracing::warn!(map = self.name, path = %p.name, "not registered on a failed path; multipathd registers it when it returns");
                continue;
            }
            if !other.good() {
                tracing::error!(map = self.name, path = %p.name, status = other.reply.status, "REGISTER AND IGNORE EXISTING KEY refused on a second path");
                return other.reply;
            }
        }
        self.map_key(PrKey::new(sa_key).ok());
        a.reply
    }

    /// RELEASE on the holder path, else on each path until the reservation is gone.
    fn release(&self, req: &Request) -> Reply {
        let lu = Lu::new(self.name, self.paths);
        let state = lu.state();
        let holder = state.as_ref().ok().and_then(|s| {
            let h = s.holder()?.clone();
            self.paths
                .iter()
                .find(|p| p.usable && p.nexus.as_ref().is_some_and(|n| h.is(n)))
                .cloned()
        });
        match (&state, &holder) {
            (Ok(s), Some(p)) => tracing::debug!(
                map = self.name,
                "{s}; RELEASE on the holder path {}",
                p.name
            ),
            (Ok(s), None) => tracing::debug!(
                map = self.name,
                "{s}; no holder path known, RELEASE path by path"
            ),
            (Err(e), _) => {
                tracing::debug!(map = self.name, "state unknown ({e}); RELEASE path by path")
            }
        }
        if let Some(p) = holder {
            let a = self.send(&p, &req.cdb, DataDir::ToDevice(&req.params));
            if !a.path_failed() {
                return a.reply;
            }
        }
        let key = req.key();
        let mut last = None;
        for p in self.ordered() {
            let a = self.send(p, &req.cdb, DataDir::ToDevice(&req.params));
            // A failed path, or one that is not the holder's (LIO answers RESERVATION
            // CONFLICT there for some types): the next path may be the holder's.
            if a.path_failed() || a.reply.status == STATUS_RESERVATION_CONFLICT {
                last = Some(a);
                continue;
            }
            if !a.good() {
                return a.reply;
            }
            let gone = lu
                .read_reservation()
                .map(|r| r.reservation.is_none_or(|r| r.key != key))
                .unwrap_or(true);
            if gone {
                return a.reply;
            }
            last = Some(a);
        }
        last.map_or_else(|| sense::check(sense::LUN_COMM_FAILURE), |a| a.reply)
    }

    /// After a RESERVE: the reservation read back, a mismatch logged.
    fn read_back_reservation(&self, req: &Request) {
        let key = req.key();
        match Lu::new(self.name, self.paths).read_reservation() {
            Ok(r) if r.reservation.is_some_and(|r| r.key == key) => {}
            Ok(r) => tracing::warn!(
                map = self.name,
                "RESERVE was GOOD but the LU reads back {:?}",
                r.reservation
            ),
            Err(e) => tracing::warn!(
                map = self.name,
                "RESERVE was GOOD; reading it back failed: {e}"
            ),
        }
    }

    /// multipathd's key for the map: set after a registration, unset after CLEAR or
    /// unregistering.
    fn map_key(&self, key: Option<PrKey>) {
        if let Some(md) = self.multipathd
            && let Err(e) = mpathd::set_map_key(md, self.name, key)
        {
            tracing::warn!(map = self.name, "multipathd: {e}");
        }
    }
}
