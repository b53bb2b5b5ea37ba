//! Tool mode: `xsm <tool> [args...]`, one clap parser ([`Cli`], a subcommand per tool) and
//! one exit-code table ([`crate::exit`]). `xsm --help` lists the drivers and the tools (each
//! tool's line is its subcommand's `about`); `xsm --list-plugins` prints `<plugin> <type>`
//! lines for install.sh. Tools write to an explicit `std::io::stdout().lock()`; plugin mode
//! never reaches this module. A new tool is one variant of [`Tool`] and one module here.
//!
//! | module | holds |
//! |---|---|
//! | [`drivers`] | `xsm drivers`, `--list-plugins` |
//! | [`mpath`] | `xsm mpath`: multipath LUs, paths, target port groups (the `multipath` crate) |
//! | [`pr`] | `xsm pr`: persistent reservations by hand (the `reservations` crate) |
//! | [`pr_helper`] | `xsm pr-helper`: QEMU's persistent-reservation helper daemon |

pub mod drivers;
pub mod mpath;
pub mod pr;
pub mod pr_helper;

use std::ffi::OsString;
use std::io::Write;
use std::sync::Arc;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use sm_core::host::{Paths, SystemRunner};

use crate::exit::Exit;

/// `xsm` in tool mode (`--help` prints [`help`]).
#[derive(Debug, Parser)]
#[command(name = "xsm", version, disable_help_subcommand = true)]
pub struct Cli {
    /// Print `<plugin> <type>` per driver (used by install.sh).
    #[arg(long)]
    pub list_plugins: bool,
    /// The tool to run.
    #[command(subcommand)]
    pub tool: Option<Tool>,
}

/// Every admin tool, in `--help` order; the doc line of each is its summary there.
#[derive(Debug, Subcommand)]
pub enum Tool {
    /// list the SR drivers (plugin name, SR type, description)
    Drivers,
    /// SCSI-3 persistent reservations per multipath LU: show keys, reservation, holders; acquire/release/preempt/clear by hand
    Pr(pr::Args),
    /// QEMU persistent-reservation helper daemon (pr-manager-helper protocol), multipath-aware
    #[command(name = "pr-helper")]
    PrHelper(pr_helper::Args),
    /// multipath LUs, paths, ALUA target port groups: list, show, set-tpg-access, failover, enable/disable-path
    #[command(display_name = "xsm mpath")]
    Mpath(mpath::Args),
    /// The same as --help.
    #[command(hide = true)]
    Help,
}

/// Parses `argv` (argv[0] is ignored), writing what clap has to say (help, version, usage
/// errors) to `out` or `err`; `Err` carries the exit status then.
pub fn parse(argv: &[OsString], out: &mut dyn Write, err: &mut dyn Write) -> Result<Cli, Exit> {
    let args = std::iter::once(OsString::from("xsm")).chain(argv.iter().skip(1).cloned());
    let mut text = Vec::new();
    let _ = help(&mut text);
    let cmd = Cli::command().override_help(String::from_utf8_lossy(&text).into_owned());
    let parsed = cmd
        .try_get_matches_from(args)
        .and_then(|m| Cli::from_arg_matches(&m));
    parsed.map_err(|e| {
        let exit = Exit::from(&e);
        if let Some(first) = unknown_tool(argv) {
            let _ = writeln!(err, "xsm: unknown tool {first:?}; see xsm --help");
        } else if exit == Exit::Done {
            let _ = out.write_all(e.render().to_string().as_bytes());
        } else {
            let _ = err.write_all(e.render().to_string().as_bytes());
        }
        exit
    })
}

/// The first argument, when it names neither a tool nor an option of `xsm` itself.
fn unknown_tool(argv: &[OsString]) -> Option<String> {
    let first = argv.get(1)?.to_string_lossy().to_string();
    let cmd = Cli::command();
    let tool = cmd.get_subcommands().any(|t| t.get_name() == first);
    let flag = ["-h", "--help", "-V", "--version"].contains(&first.as_str())
        || cmd.get_arguments().any(|a| {
            a.get_long().is_some_and(|l| first == format!("--{l}"))
                || a.get_short().is_some_and(|s| first == format!("-{s}"))
        });
    (!tool && !flag).then_some(first)
}

/// Runs tool mode on this host; returns the exit status.
pub fn run(argv: &[OsString]) -> Exit {
    let mut out = std::io::stdout().lock();
    let cli = match parse(argv, &mut out, &mut std::io::stderr().lock()) {
        Ok(c) => c,
        Err(exit) => return exit,
    };
    let written = match cli.tool {
        _ if cli.list_plugins => drivers::write_plugins(&mut out),
        None | Some(Tool::Help) => help(&mut out),
        Some(Tool::Drivers) => drivers::write(&mut out),
        Some(Tool::Pr(args)) => {
            let paths = Paths::from_env();
            sm_core::host::log::init("SM", paths.smlog_file());
            return pr::run(&args, &mut out);
        }
        Some(Tool::PrHelper(args)) => {
            let paths = Paths::from_env();
            sm_core::host::log::init("SM", paths.smlog_file());
            return pr_helper::run(&args, &mut out);
        }
        Some(Tool::Mpath(args)) => {
            let paths = Paths::from_env();
            sm_core::host::log::init("SM", paths.smlog_file());
            let sys = multipath::System::host(&paths, Arc::new(SystemRunner::new()));
            return mpath::run(&args, &sys, &mut out, &mut std::io::stderr().lock());
        }
    };
    written.map_or(Exit::Failed, |()| Exit::Done)
}

/// `xsm --help`: usage, the drivers, the tools, the environment.
fn help(out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "xsm {}: Xen storage-repository plugins for xapi (SMAPIv1) and admin tools\n",
        env!("CARGO_PKG_VERSION")
    )?;
    writeln!(out, "USAGE")?;
    writeln!(
        out,
        "  <Name>SR '<methodCall>'   plugin mode: xapi runs /opt/xensource/sm/<Name>SR, a link to xsm"
    )?;
    writeln!(out, "  xsm <tool> [ARGS...]      run an admin tool")?;
    writeln!(
        out,
        "  xsm --list-plugins        print '<plugin> <type>' per driver (used by install.sh)"
    )?;
    writeln!(out, "  xsm --help | --version\n")?;
    writeln!(out, "DRIVERS (plugin, SR type, description)")?;
    drivers::write(out)?;
    writeln!(out, "\nTOOLS")?;
    for t in Cli::command()
        .get_subcommands()
        .filter(|t| !t.is_hide_set())
    {
        let summary = t.get_about().map(ToString::to_string).unwrap_or_default();
        writeln!(out, "  {:<14} {summary}", t.get_name())?;
    }
    writeln!(out, "\nENVIRONMENT (tests; production sets none)")?;
    for (k, v) in [
        (
            "SM_ROOT",
            "prefix for every host path (/var/lock/sm, /var/run/sr-mount, /run/sm-rs, ...)",
        ),
        (
            "SM_XAPI",
            "XenAPI endpoint: unix:/path, tcp:host:port or http://host:port (default /var/lib/xcp/xapi)",
        ),
        (
            "SMLOG_FILE",
            "append SMlog lines to this file instead of syslog (LOCAL2, ident SM)",
        ),
        ("SMLOG_LEVEL", "log filter (default debug)"),
        (
            "SM_TOOL_DIRS",
            "extra directories searched first for external tools",
        ),
        (
            "SM_LOCK_TIMEOUT",
            "seconds a call waits for its SR/VDI lock (default 300)",
        ),
    ] {
        writeln!(out, "  {k:<16} {v}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_tool_with_its_summary() {
        let mut out = Vec::new();
        help(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        for tool in ["drivers", "pr", "pr-helper", "mpath"] {
            assert!(
                text.lines()
                    .any(|l| l.trim_start().starts_with(tool) && l.len() > 20),
                "{tool} in\n{text}"
            );
        }
        assert!(!text.contains("  help "), "{text}");
        Cli::command().debug_assert();
    }
}
