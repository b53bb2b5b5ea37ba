//! `xsm pr`: persistent reservations by hand, per multipath LU.
//!
//! ```text
//! xsm pr show [--json] [MAP...]          keys, reservation and holders (all multipath maps)
//! xsm pr key [--host-uuid U]             this host's key
//! xsm pr acquire MAP --yes [opts]        exclusive use: register every path, reserve, verify
//! xsm pr release MAP --yes [opts]        release on the holder path, unregister, verify
//! xsm pr recheck MAP [opts]              register paths that appeared; check we still hold it
//! xsm pr register MAP --yes [opts]       register this host's key on every path
//! xsm pr preempt MAP --victim KEY [--abort] --yes
//! xsm pr clear MAP --yes                 remove every registration and the reservation
//! opts: --key KEY | --host-uuid U, --type 5|6, --fencing never|preempt-dead[-no-abort], --json
//! ```
//!
//! A map is `/dev/mapper/<name>`, `<name>` or `dm-N`. This host's key comes from `--key`, or
//! `--host-uuid`, or the host uuid in `/etc/xensource-inventory`. Host names come from the
//! local XenAPI (`SM_XAPI`, as root) when it answers. Every command that changes the LU needs
//! `--yes`: without it the command says what it would do and exits 2. `acquire` and `release`
//! also set and unset multipathd's key for the map (`reservations::mpathd`). Every SCSI
//! command and every fencing decision is logged to SMlog, as in plugin mode. `acquire` fences
//! (PREEMPT AND ABORT) a holder only with `--fencing preempt-dead`, and only when the pool
//! reports the holder's host dead or no pool host owns the key. Everything, errors included,
//! goes to stdout (the lab reads one JSON line per call); only usage errors go to stderr.
//!
//! | module | prints |
//! |---|---|
//! | [`show`] | `show`: one document per LU, as text or JSON |
//! | [`report`] | what an operation did, as one line or one JSON object |

mod report;
mod show;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use clap::Subcommand;
use multipath::dm::MultipathdAuto;
use reservations::fence::{NoPool, Owners, PoolOwners};
use reservations::slaves::paths_of_map;
use reservations::{Exclusive, Fencing, Lu, Policy, PrError, PrKey, key, mpathd, policy, pool};
use sm_core::errors::error_chain;
use sm_core::host::run::SystemRunner;
use sm_core::host::sysfs::Sysfs;

use crate::exit::Exit;

/// `xsm pr` options (accepted by every command) and command.
#[derive(Debug, clap::Args)]
#[command(disable_help_subcommand = true)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Print JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// Do it (commands that change the LU only say what they would do without it).
    #[arg(long, global = true)]
    pub yes: bool,
    /// This host's key (hex), instead of the one derived from the host uuid.
    #[arg(long, global = true, value_name = "KEY")]
    pub key: Option<String>,
    /// The host uuid to derive this host's key from, instead of /etc/xensource-inventory's.
    #[arg(long, global = true, value_name = "U")]
    pub host_uuid: Option<String>,
    /// Reservation type: 5 (write exclusive, registrants only) or 6 (exclusive access, registrants only).
    #[arg(long = "type", global = true, value_name = "5|6")]
    pub pr_type: Option<String>,
    /// Fencing of a holder whose host is gone: never (default here), preempt-dead, preempt-dead-no-abort.
    #[arg(long, global = true, value_name = "POLICY")]
    pub fencing: Option<String>,
    /// preempt: the key to remove.
    #[arg(long, global = true, value_name = "KEY")]
    pub victim: Option<String>,
    /// preempt: PREEMPT AND ABORT (also abort the victim's outstanding commands).
    #[arg(long, global = true)]
    pub abort: bool,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Keys, reservation and holders of the maps (default: every multipath map).
    Show {
        /// `/dev/mapper/<name>`, `<name>` or `dm-N`.
        maps: Vec<String>,
    },
    /// This host's key.
    Key,
    /// An operation on one map.
    #[command(flatten)]
    Change(Change),
}

/// The operations on one map (all but `recheck` need `--yes`).
#[derive(Debug, Subcommand)]
pub enum Change {
    /// Exclusive use: register every path, reserve, verify; set multipathd's key for the map.
    Acquire {
        /// The map.
        map: String,
    },
    /// Unset multipathd's key; release on the holder path, unregister, verify.
    Release {
        /// The map.
        map: String,
    },
    /// Register paths that appeared; check this host still holds the LU.
    Recheck {
        /// The map.
        map: String,
    },
    /// Register this host's key on every path.
    Register {
        /// The map.
        map: String,
    },
    /// Remove the registrations of --victim (and take its reservation).
    Preempt {
        /// The map.
        map: String,
    },
    /// Remove every registration and the reservation.
    Clear {
        /// The map.
        map: String,
    },
}

impl Command {
    /// The command's name, as typed.
    fn name(&self) -> &'static str {
        match self {
            Command::Show { .. } => "show",
            Command::Key => "key",
            Command::Change(c) => c.name(),
        }
    }
}

impl Change {
    /// The operation's name, as typed.
    fn name(&self) -> &'static str {
        match self {
            Change::Acquire { .. } => "acquire",
            Change::Release { .. } => "release",
            Change::Recheck { .. } => "recheck",
            Change::Register { .. } => "register",
            Change::Preempt { .. } => "preempt",
            Change::Clear { .. } => "clear",
        }
    }

    /// The map it works on.
    fn map(&self) -> &str {
        match self {
            Change::Acquire { map }
            | Change::Release { map }
            | Change::Recheck { map }
            | Change::Register { map }
            | Change::Preempt { map }
            | Change::Clear { map } => map,
        }
    }
}

/// Runs the parsed command on this host; everything it prints goes to `out`.
pub fn run(a: &Args, out: &mut dyn Write) -> Exit {
    let sysfs = Sysfs::host();
    let (printed, exit) = match &a.command {
        Command::Key => match my_key(a) {
            Ok(k) => (writeln!(out, "{k}"), Exit::Done),
            Err(e) => (writeln!(out, "xsm pr key: {e}"), Exit::Failed),
        },
        Command::Show { maps } => match show(a, &sysfs, maps) {
            Ok(text) => (writeln!(out, "{text}"), Exit::Done),
            Err(e) => failed(a, &e, out),
        },
        Command::Change(c) => match change(a, c, &sysfs, out) {
            Ok(exit) => return exit,
            Err(e) => failed(a, &e, out),
        },
    };
    printed.map_or(Exit::Failed, |()| exit)
}

/// `xsm pr CMD: <error chain>` for an error before the operation ran.
fn failed(a: &Args, e: &PrError, out: &mut dyn Write) -> (std::io::Result<()>, Exit) {
    let msg = format!("xsm pr {}: {}", a.command.name(), error_chain(e));
    (writeln!(out, "{msg}"), Exit::from(e))
}

/// This host's key: `--key`, else derived from `--host-uuid` or the inventory's uuid.
fn my_key(a: &Args) -> Result<PrKey, String> {
    if let Some(k) = &a.key {
        return k.parse().map_err(|e| format!("{e}"));
    }
    let uuid = a
        .host_uuid
        .clone()
        .or_else(key::inventory_host_uuid)
        .ok_or("no --key, no --host-uuid and no host uuid in /etc/xensource-inventory")?;
    PrKey::for_host(&uuid).map_err(|e| e.to_string())
}

/// The `show` text or JSON of `maps` (every multipath map when none is named).
fn show(a: &Args, sysfs: &Sysfs, maps: &[String]) -> Result<String, PrError> {
    let maps = if maps.is_empty() {
        sysfs.multipath_map_names()
    } else {
        maps.to_vec()
    };
    let pool = pool::local_pool();
    let me = my_key(a).ok();
    let mut docs = Vec::new();
    for m in &maps {
        let paths = paths_of_map(sysfs, m)?;
        let lu = Lu::new(m.trim_start_matches("/dev/mapper/"), &paths);
        docs.push(match lu.state() {
            Ok(s) => show::doc(&lu, &s, pool.as_ref().map(|p| &p.1), me),
            Err(e) => show::error_doc(&lu, &e),
        });
    }
    Ok(if a.json {
        serde_json::to_string_pretty(&docs).unwrap_or_default()
    } else {
        docs.iter().map(show::text).collect::<Vec<_>>().join("\n")
    })
}

/// The policy of the command line: `--type` and `--fencing` over the SR defaults, except
/// that fencing is off unless `--fencing` asks for it.
fn policy(a: &Args) -> Result<Policy, policy::PolicyError> {
    let mut options = BTreeMap::new();
    if let Some(t) = &a.pr_type {
        options.insert(policy::KEY_TYPE.to_string(), t.clone());
    }
    if let Some(f) = &a.fencing {
        options.insert(policy::KEY_FENCING.to_string(), f.clone());
    }
    let mut p = Policy::from_config(&options, &BTreeMap::new())?;
    if a.fencing.is_none() {
        p.fencing = Fencing::Never;
    }
    Ok(p)
}

/// Runs an operation that changes (or rechecks) the reservations of `map`, once confirmed.
fn change(a: &Args, op: &Change, sysfs: &Sysfs, out: &mut dyn Write) -> Result<Exit, PrError> {
    let (cmd, map) = (op.name(), op.map());
    let me = match my_key(a) {
        Ok(k) => k,
        Err(e) => {
            let _ = writeln!(out, "xsm pr {cmd}: {e}");
            return Ok(Exit::Usage);
        }
    };
    let policy = match policy(a) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(out, "xsm pr {cmd}: {e}");
            return Ok(Exit::Usage);
        }
    };
    if !matches!(op, Change::Recheck { .. }) && !a.yes {
        let _ = writeln!(
            out,
            "xsm pr {cmd}: would change the reservations of {map} with key {me} ({policy}); add --yes to do it"
        );
        return Ok(Exit::NotConfirmed);
    }
    let paths = paths_of_map(sysfs, map)?;
    let lu = Lu::new(map.trim_start_matches("/dev/mapper/"), &paths);
    let pool = pool::local_pool();
    let owners: Box<dyn Owners> = match &pool {
        Some((x, keys)) => Box::new(PoolOwners {
            pool: keys,
            live: x,
        }),
        None => Box::new(NoPool),
    };
    let ex = Exclusive {
        lu: &lu,
        me,
        policy: &policy,
        owners: owners.as_ref(),
    };
    let md = MultipathdAuto::new(Arc::new(SystemRunner::new()));
    let map_name = sysfs
        .dm_by_name(map)
        .map_or_else(|| lu.id().to_string(), |d| d.name);
    let started = std::time::Instant::now();
    let result = match op {
        Change::Acquire { .. } => ex.acquire().and_then(|r| {
            mpathd::set_map_key(&md, &map_name, Some(me))?;
            Ok(r)
        }),
        Change::Release { .. } => {
            mpathd::set_map_key(&md, &map_name, None).and_then(|_| ex.release())
        }
        Change::Recheck { .. } => ex.recheck(),
        Change::Clear { .. } => ex.clear(),
        Change::Register { .. } => ex.register_everywhere(),
        Change::Preempt { .. } => match a.victim.as_deref().map(str::parse::<PrKey>) {
            Some(Ok(v)) => ex.preempt(v, a.abort),
            Some(Err(e)) => Err(PrError::Key(e)),
            None => {
                let _ = writeln!(out, "xsm pr preempt: --victim KEY is required");
                return Ok(Exit::Usage);
            }
        },
    };
    let ms = started.elapsed().as_millis();
    let done = report::Done {
        command: cmd,
        lu: lu.id(),
        key: me,
        ms,
    };
    let text = if a.json {
        done.json(&result).to_string()
    } else {
        done.line(&result)
    };
    let exit = match &result {
        Ok(_) => Exit::Done,
        Err(e) => Exit::from(e),
    };
    Ok(writeln!(out, "{text}").map_or(Exit::Failed, |()| exit))
}

#[cfg(test)]
mod tests;
