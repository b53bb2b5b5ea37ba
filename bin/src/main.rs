//! `xsm`: the one executable of the SR plugin suite.
//!
//! - **Plugin mode**: run as `<Name>SR` (a link in /opt/xensource/sm), it answers one SMAPI call:
//!   argv[1] is the methodCall, stdout gets exactly one methodResponse (a fault included), stderr
//!   only what xapi expects there (probe listings), and the exit status is always 0, because xapi
//!   turns any other status into an opaque SR_BACKEND_FAILURE and loses the fault code. Logs go
//!   to SMlog. An unknown `<Name>SR` answers fault 48 SRUnknownType.
//! - **Tool mode**: under any other name, `xsm <tool> ...` runs an admin tool ([`tools`]: one
//!   clap parser, a subcommand per tool; exit codes from [`exit`]); `xsm --help` lists the
//!   drivers and the tools; `xsm --list-plugins` prints `<plugin> <type>` lines for install.sh.
//!
//! | module | holds |
//! |---|---|
//! | [`tools`] | tool mode: the parser, `--help`, and one module per tool |
//! | [`exit`] | the tools' exit codes, mapped from each library's error kinds |
//!
//! This file is the only writer of the plugin's stdout and stderr.
#![forbid(unsafe_code)]

mod exit;
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
    tools::run(&argv).into()
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
