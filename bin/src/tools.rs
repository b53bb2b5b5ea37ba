//! Admin tools: `xsm <tool> [args...]`. One table, [`TOOLS`]; a crate adds its tool with one
//! entry here (e.g. `Tool { name: "mpath", summary: "...", run: multipath::cli::main }`).
//! Tools write to an explicit `std::io::stdout().lock()`; plugin mode never reaches this file.

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

/// One admin tool.
pub struct Tool {
    /// The subcommand name.
    pub name: &'static str,
    /// One line for `--help`.
    pub summary: &'static str,
    /// Runs the tool with the arguments after its name; returns the process exit code.
    pub run: fn(&[OsString]) -> ExitCode,
}

/// Every admin tool, in `--help` order.
pub static TOOLS: &[Tool] = &[
    Tool {
        name: "drivers",
        summary: "list the SR drivers (plugin name, SR type, description)",
        run: drivers_tool,
    },
    Tool {
        name: "pr",
        summary: "SCSI-3 persistent reservations per multipath LU: show keys, reservation, holders; acquire/release/preempt/clear by hand",
        run: reservations::cli::main,
    },
    Tool {
        name: "mpath",
        summary: "multipath LUs, paths, ALUA target port groups: list, show, set-tpg-access, failover, enable/disable-path",
        run: multipath::cli::main,
    },
];

/// The tool named `name`.
pub fn find(name: &str) -> Option<&'static Tool> {
    TOOLS.iter().find(|t| t.name == name)
}

/// Writes the drivers table: `<plugin> <type> <description>` per line.
pub fn write_drivers(out: &mut dyn Write) -> std::io::Result<()> {
    for d in drivers::DRIVERS {
        let i = d.info();
        writeln!(
            out,
            "  {:<14} {:<10} {}",
            i.plugin, i.sr_type, i.description
        )?;
    }
    Ok(())
}

fn drivers_tool(_args: &[OsString]) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match write_drivers(&mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
