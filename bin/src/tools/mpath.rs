//! `xsm mpath`: the multipath admin tool, in the spirit of Solaris `mpathadm` (list, show,
//! modify the access of target port groups, enable/disable paths, fail over), over the
//! `multipath` crate's MMA model. Tables by default, `--json` for scripts. Exit status from
//! [`crate::exit`]: 0 done, 1 failed, 2 usage, 3 no such object, 4 timed out.
//!
//! | module | prints |
//! |---|---|
//! | [`table`] | aligned tables and key/value blocks, JSON, sizes |
//! | [`list`] | `list lu|path|tpg|initiator-port|target-port` |
//! | [`show`] | `show lu`, `show path`, `show mpath-support` |
//! | [`report`] | what a change did (`set-tpg-access`, `failover`, path and port changes) |

mod list;
mod report;
mod show;
mod table;

use std::io::Write;
use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use multipath::alua::{self, Deadlines};
use multipath::discovery::{self, Options, VpdSource};
use multipath::{MultipathError, Result, System, Topology, admin};
use sm_core::errors::error_chain;

use crate::exit::Exit;

/// `xsm mpath` options and subcommand.
#[derive(Debug, clap::Args)]
#[command(version, disable_help_subcommand = true)]
pub struct Args {
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Read each path's identity from the kernel's cached VPD page instead of asking the device.
    #[arg(long, global = true)]
    pub cached_vpd: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The objects `list` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListWhat {
    /// Multipath logical units.
    #[value(alias = "logical-unit", alias = "lus")]
    Lu,
    /// Paths.
    #[value(alias = "paths")]
    Path,
    /// Target port groups.
    #[value(alias = "tpgs")]
    Tpg,
    /// Initiator ports.
    #[value(alias = "initiator-ports")]
    InitiatorPort,
    /// Target ports.
    #[value(alias = "target-ports")]
    TargetPort,
}

/// The objects `show` shows.
#[derive(Debug, Subcommand)]
pub enum ShowWhat {
    /// One logical unit, its path groups, paths and target port groups.
    #[command(alias = "logical-unit")]
    Lu {
        /// WWID, map name, dm device or /dev/mapper path.
        name: String,
    },
    /// One path.
    Path {
        /// Device (sdb) or H:C:T:L.
        device: String,
    },
    /// What this plugin supports (MP_PLUGIN_PROPERTIES).
    MpathSupport,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List objects of one kind.
    List {
        /// lu, path, tpg, initiator-port or target-port.
        what: ListWhat,
    },
    /// Show one object.
    Show {
        /// What.
        #[command(subcommand)]
        what: ShowWhat,
    },
    /// Set target port group states of an LU (STPG), then read them back (RTPG).
    SetTpgAccess {
        /// The LU.
        lu: String,
        /// Pairs of target port group id and state (ao, an, standby, unavailable).
        #[arg(num_args = 2.., required = true, value_names = ["TPG", "STATE"])]
        pairs: Vec<String>,
        /// Seconds to wait for the array, then for the host.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Do not wait for the kernel and multipathd to follow.
        #[arg(long)]
        no_wait: bool,
    },
    /// Make another target port group active/optimized (or switch dm path groups).
    Failover {
        /// The LU.
        lu: String,
        /// The group to fail over to (default: the preferred, else the next).
        #[arg(long)]
        to_tpg: Option<u16>,
        /// Seconds to wait for the array, then for the host.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Do not wait for the kernel and multipathd to follow.
        #[arg(long)]
        no_wait: bool,
    },
    /// Let a path carry I/O again.
    EnablePath {
        /// Device (sdb) or H:C:T:L.
        device: String,
    },
    /// Stop a path from carrying I/O until enabled.
    DisablePath {
        /// Device (sdb) or H:C:T:L.
        device: String,
        /// Also the last usable path of its LU.
        #[arg(long)]
        force: bool,
    },
    /// Put one target port of an LU in the OFFLINE state (STPG); only the array clears it.
    SetPortOffline {
        /// The LU.
        lu: String,
        /// Relative target port id.
        relative_port: u16,
    },
}

/// Runs the parsed command on `sys`: output to `out`, the error (if any) to `err`.
pub fn run(args: &Args, sys: &System, out: &mut dyn Write, err: &mut dyn Write) -> Exit {
    match execute(args, sys, out) {
        Ok(()) => Exit::Done,
        Err(e) => {
            let _ = writeln!(err, "xsm mpath: {}", error_chain(&e));
            Exit::from(&e)
        }
    }
}

/// The whole topology, identities read as `--cached-vpd` says.
fn discover(args: &Args, sys: &System) -> Result<Topology> {
    let vpd = if args.cached_vpd {
        VpdSource::KernelCache
    } else {
        VpdSource::Device
    };
    discovery::discover(sys, &Options { vpd, only: None })
}

fn execute(args: &Args, sys: &System, out: &mut dyn Write) -> Result<()> {
    let json = args.json;
    match &args.command {
        Command::List { what } => list::write(&discover(args, sys)?, *what, json, out),
        Command::Show { what } => show_one(args, sys, what, out),
        Command::SetTpgAccess {
            lu,
            pairs,
            timeout,
            no_wait,
        } => set_tpg_access(args, sys, lu, pairs, deadlines(*timeout, *no_wait), out),
        Command::Failover {
            lu,
            to_tpg,
            timeout,
            no_wait,
        } => {
            let topo = discover(args, sys)?;
            let r = alua::failover(sys, &topo, lu, *to_tpg, deadlines(*timeout, *no_wait))?;
            report::access(out, &r, json)
        }
        Command::EnablePath { device } => {
            admin::enable_path(sys, &discover(args, sys)?, device)?;
            report::done(out, json, &format!("path {device} enabled"))
        }
        Command::DisablePath { device, force } => {
            admin::disable_path(sys, &discover(args, sys)?, device, *force)?;
            report::done(out, json, &format!("path {device} disabled"))
        }
        Command::SetPortOffline { lu, relative_port } => {
            let via = alua::set_port_offline(sys, &discover(args, sys)?, lu, *relative_port)?;
            let msg = format!(
                "relative target port {relative_port} of {lu} set offline (STPG via {via})"
            );
            report::done(out, json, &msg)
        }
    }
}

fn show_one(args: &Args, sys: &System, what: &ShowWhat, out: &mut dyn Write) -> Result<()> {
    match what {
        ShowWhat::MpathSupport => {
            show::plugin(&discovery::plugin_with_config(sys)?, args.json, out)
        }
        ShowWhat::Lu { name } => {
            let topo = discover(args, sys)?;
            let lu = topo
                .find_lu(name)
                .ok_or_else(|| MultipathError::not_found("logical unit", name.as_str()))?;
            show::lu(&topo, lu, args.json, out)
        }
        ShowWhat::Path { device } => {
            let topo = discover(args, sys)?;
            let p = topo
                .find_path(device)
                .ok_or_else(|| MultipathError::not_found("path", device.as_str()))?;
            show::path(&topo, p, args.json, out)
        }
    }
}

fn set_tpg_access(
    args: &Args,
    sys: &System,
    lu: &str,
    pairs: &[String],
    deadlines: Deadlines,
    out: &mut dyn Write,
) -> Result<()> {
    let parsed = parse_pairs(pairs)?;
    let topo = discover(args, sys)?;
    let r = alua::set_tpg_access(sys, &topo, lu, &parsed, deadlines)?;
    report::access(out, &r, args.json)
}

/// `TPG STATE` pairs of the command line.
fn parse_pairs(pairs: &[String]) -> Result<Vec<(u16, sm_core::scsi::AccessState)>> {
    if !pairs.len().is_multiple_of(2) {
        return Err(MultipathError::Invalid(
            "TPG and STATE come in pairs".into(),
        ));
    }
    pairs
        .chunks(2)
        .map(|pair| {
            let tpg: u16 = pair[0].parse().map_err(|_| {
                MultipathError::Invalid(format!("not a target port group id: {}", pair[0]))
            })?;
            let state = alua::parse_state(&pair[1]).ok_or_else(|| {
                MultipathError::Invalid(format!("not an ALUA state: {}", pair[1]))
            })?;
            Ok((tpg, state))
        })
        .collect()
}

fn deadlines(timeout: u64, no_wait: bool) -> Deadlines {
    let t = Duration::from_secs(timeout);
    Deadlines {
        array: t,
        host: if no_wait { Duration::ZERO } else { t },
        ..Deadlines::default()
    }
}

#[cfg(test)]
mod tests;
