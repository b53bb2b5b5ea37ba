//! `xsm`: the one executable of the SR plugin suite.
//!
//! - **Plugin mode**: run as `<Name>SR` (a link in /opt/xensource/sm), it answers one SMAPI call:
//!   argv[1] is the methodCall, stdout gets exactly one methodResponse (a fault included), stderr
//!   only what xapi expects there (probe listings), and the exit status is always 0, because xapi
//!   turns any other status into an opaque SR_BACKEND_FAILURE and loses the fault code. Logs go
//!   to SMlog. An unknown `<Name>SR` answers fault 48 SRUnknownType.
//! - **Tool mode**: under any other name, `xsm --help` lists the drivers and the admin tools
//!   (subcommands from [`tools::TOOLS`]); `xsm --list-plugins` prints `<plugin> <type>` lines for
//!   install.sh.
//!
//! This file is the only writer of the plugin's stdout and stderr.
#![forbid(unsafe_code)]

mod tools;

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use sm_core::dispatch::{self, Outcome};
use sm_core::driver::Host;
use sm_core::errors::{SmCode, SmError};
use sm_core::response;

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let name = argv
        .first()
        .and_then(|a| Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("xsm")
        .to_string();
    if name.ends_with("SR") {
        plugin(&name, &argv);
        return ExitCode::SUCCESS;
    }
    tool(&argv)
}

/// Answers one SMAPI call and writes the response; never fails the process.
fn plugin(name: &str, argv: &[OsString]) {
    let host = Host::from_env();
    sm_core::host::log::init("SM", host.paths.smlog_file());
    let outcome = match drivers::by_plugin_name(name) {
        Some(driver) => dispatch::run(argv, driver, &host),
        None => {
            let e = SmError::msg(
                SmCode::SRUnknownType,
                format!("no driver for plugin {name}"),
            );
            tracing::error!(plugin = name, "fault: {e}");
            Outcome {
                stdout: response::fault_xml(&e),
                stderr: String::new(),
                fault: Some(e.code.value()),
            }
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = out
        .write_all(outcome.stdout.as_bytes())
        .and_then(|()| out.flush());
    if !outcome.stderr.is_empty() {
        let mut err = std::io::stderr().lock();
        let _ = err
            .write_all(outcome.stderr.as_bytes())
            .and_then(|()| err.flush());
    }
}

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
    tools::write_drivers(out)?;
    writeln!(out, "\nTOOLS")?;
    for t in tools::TOOLS {
        writeln!(out, "  {:<14} {}", t.name, t.summary)?;
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

fn tool(argv: &[OsString]) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let first = argv.get(1).and_then(|a| a.to_str());
    let written = match first {
        None | Some("-h" | "--help" | "help") => help(&mut out),
        Some("-V" | "--version") => writeln!(out, "xsm {}", env!("CARGO_PKG_VERSION")),
        Some("--list-plugins") => drivers::DRIVERS
            .iter()
            .try_for_each(|d| writeln!(out, "{} {}", d.info().plugin, d.info().sr_type)),
        Some(name) => match tools::find(name) {
            Some(t) => {
                drop(out);
                return (t.run)(&argv[2..]);
            }
            None => {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "xsm: unknown tool {name:?}; see xsm --help");
                return ExitCode::from(2);
            }
        },
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
