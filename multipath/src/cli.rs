//! `xsm mpath`: the admin tool, in the spirit of Solaris `mpathadm` (list, show, modify the
//! access of target port groups, enable/disable paths, fail over), over this crate's MMA
//! model. Tables by default, `--json` for scripts. Exit status: 0 done, 1 failed, 2 usage,
//! 3 no such object, 4 timed out.

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;
use sm_core::host::{Paths, SystemRunner};

use crate::alua::{self, AccessReport, Deadlines};
use crate::discovery::{self, Options, VpdSource};
use crate::error::{ErrorKind, MultipathError, Result};
use crate::model::{MultipathLu, PathLu, TargetPortGroup, Topology, load_balance};
use crate::{System, admin};

/// `xsm mpath`: multipath LUs, paths, target port groups and ports (SNIA MMA model).
#[derive(Debug, Parser)]
#[command(name = "xsm mpath", version, about, disable_help_subcommand = true)]
pub struct Cli {
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

/// Runs the tool with `args` (after `mpath`) on the real host; the `xsm mpath` entry point.
pub fn main(args: &[OsString]) -> ExitCode {
    let paths = Paths::from_env();
    sm_core::host::log::init("SM", paths.smlog_file());
    let sys = System::host(&paths, Arc::new(SystemRunner::new()));
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    ExitCode::from(run(args, &sys, &mut out, &mut err))
}

fn kind_status(k: ErrorKind) -> u8 {
    match k {
        ErrorKind::NotFound => 3,
        ErrorKind::Timeout => 4,
        ErrorKind::Invalid
        | ErrorKind::System
        | ErrorKind::LoginRefused
        | ErrorKind::Dns
        | ErrorKind::Unreachable => 1,
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Parses `args` and runs the command on `sys`; returns the exit status.
pub fn run(args: &[OsString], sys: &System, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let argv = std::iter::once(OsString::from("xsm mpath")).chain(args.iter().cloned());
    let cli = match Cli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            let status = if e.use_stderr() { 2 } else { 0 };
            let text = e.render().to_string();
            let _ = if status == 0 {
                out.write_all(text.as_bytes())
            } else {
                err.write_all(text.as_bytes())
            };
            return status;
        }
    };
    match execute(&cli, sys, out) {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(err, "xsm mpath: {}", chain(&e));
            kind_status(e.kind())
        }
    }
}

fn write_json<T: Serialize>(out: &mut dyn Write, v: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| MultipathError::Parse {
        what: "json output",
        detail: e.to_string(),
    })?;
    writeln!(out, "{text}").map_err(|e| MultipathError::file("write", "stdout", e))
}

fn io(e: std::io::Error) -> MultipathError {
    MultipathError::file("write", "stdout", e)
}

fn deadlines(timeout: u64, no_wait: bool) -> Deadlines {
    let t = Duration::from_secs(timeout);
    Deadlines {
        array: t,
        host: if no_wait { Duration::ZERO } else { t },
        ..Deadlines::default()
    }
}

fn execute(cli: &Cli, sys: &System, out: &mut dyn Write) -> Result<()> {
    let vpd = if cli.cached_vpd {
        VpdSource::KernelCache
    } else {
        VpdSource::Device
    };
    let all = || discovery::discover(sys, &Options { vpd, only: None });
    match &cli.command {
        Command::List { what } => {
            let topo = all()?;
            list(&topo, *what, cli.json, out)
        }
        Command::Show {
            what: ShowWhat::MpathSupport,
        } => {
            let p = discovery::plugin_with_config(sys)?;
            if cli.json {
                return write_json(out, &p);
            }
            let rows: Vec<(&str, String)> = vec![
                ("Vendor", p.vendor.clone()),
                ("Driver", p.driver_vendor.clone()),
                ("Version", p.implementation_version.clone()),
                ("File", p.file_name.clone()),
                (
                    "Supported load-balance types",
                    p.supported_load_balance_names.join(", "),
                ),
                ("canSetTPGAccess", yes(p.can_set_tpg_access)),
                ("canOverridePaths", yes(p.can_override_paths)),
                ("exposesPathDeviceFiles", yes(p.exposes_path_device_files)),
                ("deviceFileNamespace", p.device_file_namespace.clone()),
                (
                    "onlySupportsSpecifiedProducts",
                    yes(p.only_supports_specified_products),
                ),
                ("Auto-failback support", yes(p.auto_failback_support)),
                ("Auto-probing support", yes(p.auto_probing_support)),
                (
                    "Probing polling rate",
                    p.probing_polling_rate
                        .map_or("-".into(), |s| format!("{s}s")),
                ),
            ];
            key_values(out, "mpath-support: xsm", &rows)
        }
        Command::Show {
            what: ShowWhat::Lu { name },
        } => {
            let topo = all()?;
            let lu = topo
                .find_lu(name)
                .ok_or_else(|| MultipathError::not_found("logical unit", name.as_str()))?;
            show_lu(&topo, lu, cli.json, out)
        }
        Command::Show {
            what: ShowWhat::Path { device },
        } => {
            let topo = all()?;
            let p = topo
                .find_path(device)
                .ok_or_else(|| MultipathError::not_found("path", device.as_str()))?;
            if cli.json {
                return write_json(out, p);
            }
            table(out, PATH_HEADER, vec![path_row(&topo, p)])
        }
        Command::SetTpgAccess {
            lu,
            pairs,
            timeout,
            no_wait,
        } => {
            if pairs.len() % 2 != 0 {
                return Err(MultipathError::Invalid(
                    "TPG and STATE come in pairs".into(),
                ));
            }
            let mut parsed = Vec::new();
            for pair in pairs.chunks(2) {
                let tpg: u16 = pair[0].parse().map_err(|_| {
                    MultipathError::Invalid(format!("not a target port group id: {}", pair[0]))
                })?;
                let state = alua::parse_state(&pair[1]).ok_or_else(|| {
                    MultipathError::Invalid(format!("not an ALUA state: {}", pair[1]))
                })?;
                parsed.push((tpg, state));
            }
            let topo = all()?;
            let r = alua::set_tpg_access(sys, &topo, lu, &parsed, deadlines(*timeout, *no_wait))?;
            report(out, &r, cli.json)
        }
        Command::Failover {
            lu,
            to_tpg,
            timeout,
            no_wait,
        } => {
            let topo = all()?;
            let r = alua::failover(sys, &topo, lu, *to_tpg, deadlines(*timeout, *no_wait))?;
            report(out, &r, cli.json)
        }
        Command::EnablePath { device } => {
            admin::enable_path(sys, &all()?, device)?;
            done(out, cli.json, &format!("path {device} enabled"))
        }
        Command::DisablePath { device, force } => {
            admin::disable_path(sys, &all()?, device, *force)?;
            done(out, cli.json, &format!("path {device} disabled"))
        }
        Command::SetPortOffline { lu, relative_port } => {
            let via = alua::set_port_offline(sys, &all()?, lu, *relative_port)?;
            done(
                out,
                cli.json,
                &format!(
                    "relative target port {relative_port} of {lu} set offline (STPG via {via})"
                ),
            )
        }
    }
}

fn yes(b: bool) -> String {
    if b { "yes".into() } else { "no".into() }
}

fn done(out: &mut dyn Write, json: bool, msg: &str) -> Result<()> {
    if json {
        return write_json(out, &serde_json::json!({"ok": true, "message": msg}));
    }
    writeln!(out, "{msg}").map_err(io)
}

fn report(out: &mut dyn Write, r: &AccessReport, json: bool) -> Result<()> {
    if json {
        return write_json(out, r);
    }
    writeln!(out, "{}: {}", r.lu, r.method).map_err(io)?;
    let rows = r
        .changes
        .iter()
        .map(|c| {
            vec![
                c.tpg_id.to_string(),
                c.before.to_string(),
                c.requested.to_string(),
                c.after.to_string(),
            ]
        })
        .collect();
    table(out, &["TPG", "BEFORE", "REQUESTED", "AFTER"], rows)?;
    writeln!(
        out,
        "array: {} ms ({} RTPG reads); host {}",
        r.array_ms,
        r.rtpg_reads,
        if r.host_followed {
            format!("followed in {} ms", r.host_ms)
        } else {
            "not awaited".into()
        }
    )
    .map_err(io)
}

fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut v = bytes;
    let mut u = 0;
    while v >= 1024 && v.is_multiple_of(1024) && u < UNITS.len() - 1 {
        v /= 1024;
        u += 1;
    }
    format!("{v}{}", UNITS[u])
}

fn key_values(out: &mut dyn Write, title: &str, rows: &[(&str, String)]) -> Result<()> {
    writeln!(out, "{title}").map_err(io)?;
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        writeln!(out, "  {k:<w$}  {v}").map_err(io)?;
    }
    Ok(())
}

fn table(out: &mut dyn Write, header: &[&str], rows: Vec<Vec<String>>) -> Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.len());
            }
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    writeln!(out, "{}", line(header.to_vec())).map_err(io)?;
    for r in &rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect())).map_err(io)?;
    }
    Ok(())
}

fn tpg_summary(topo: &Topology, lu: &MultipathLu) -> String {
    topo.lu_tpgs(lu.oid)
        .map(|g| format!("{}:{}", g.tpg_id, short_state(g)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn short_state(g: &TargetPortGroup) -> &'static str {
    use sm_core::scsi::AccessState as A;
    match g.access_state {
        crate::TpgState::Active => "active",
        crate::TpgState::Alua(A::ActiveOptimized) => "AO",
        crate::TpgState::Alua(A::ActiveNonOptimized) => "AN",
        crate::TpgState::Alua(A::Standby) => "S",
        crate::TpgState::Alua(A::Unavailable) => "U",
        crate::TpgState::Alua(A::LbaDependent) => "LBD",
        crate::TpgState::Alua(A::Offline) => "O",
        crate::TpgState::Alua(A::Transitioning) => "T",
    }
}

const LU_HEADER: &[&str] = &[
    "NAME", "DM", "SIZE", "PRODUCT", "PATHS", "TPGS", "ALUA", "POLICY",
];
const PATH_HEADER: &[&str] = &[
    "DEVICE",
    "HCTL",
    "STATE",
    "DM",
    "CHECKER",
    "PRIO",
    "TPG",
    "RTPI",
    "KERNEL-ALUA",
    "PORTAL",
    "LU",
];

fn lu_row(topo: &Topology, lu: &MultipathLu) -> Vec<String> {
    vec![
        lu.name.clone(),
        lu.dm_device.clone().unwrap_or_else(|| "-".into()),
        size(lu.size),
        format!("{} {}", lu.vendor, lu.product),
        format!("{}/{}", lu.active_paths, lu.total_paths),
        tpg_summary(topo, lu),
        match (lu.explicit_alua, lu.implicit_alua) {
            (true, true) => "explicit+implicit".into(),
            (true, false) => "explicit".into(),
            (false, true) => "implicit".into(),
            (false, false) => "none".into(),
        },
        load_balance::names(lu.current_load_balance_type).join(","),
    ]
}

fn path_row(topo: &Topology, p: &PathLu) -> Vec<String> {
    let dash = |o: Option<String>| o.unwrap_or_else(|| "-".into());
    vec![
        p.device.clone(),
        if p.hctl.is_empty() {
            "-".into()
        } else {
            p.hctl.clone()
        },
        p.state.to_string(),
        dash(p.dm_state.clone()),
        dash(p.checker_state.clone()),
        p.weight.to_string(),
        dash(p.tpg_id.map(|t| t.to_string())),
        dash(p.relative_port_id.map(|t| t.to_string())),
        dash(p.kernel_access_state.clone()),
        dash(p.portal.clone()),
        topo.lu(p.lu).map_or("-".into(), |l| l.name.clone()),
    ]
}

fn list(topo: &Topology, what: ListWhat, json: bool, out: &mut dyn Write) -> Result<()> {
    match what {
        ListWhat::Lu => {
            if json {
                return write_json(out, &topo.lus);
            }
            table(
                out,
                LU_HEADER,
                topo.lus.iter().map(|l| lu_row(topo, l)).collect(),
            )
        }
        ListWhat::Path => {
            if json {
                return write_json(out, &topo.paths);
            }
            table(
                out,
                PATH_HEADER,
                topo.paths.iter().map(|p| path_row(topo, p)).collect(),
            )
        }
        ListWhat::Tpg => {
            if json {
                return write_json(out, &topo.tpgs);
            }
            let rows = topo
                .tpgs
                .iter()
                .map(|g| {
                    vec![
                        topo.lu(g.lu).map_or("-".into(), |l| l.name.clone()),
                        g.tpg_id.to_string(),
                        g.access_state.to_string(),
                        yes(g.preferred_lu_path),
                        yes(g.explicit_failover),
                        g.status.to_string(),
                        g.target_ports
                            .iter()
                            .filter_map(|o| topo.target_port(*o))
                            .map(|t| t.relative_port_id.to_string())
                            .collect::<Vec<_>>()
                            .join(","),
                    ]
                })
                .collect();
            table(
                out,
                &["LU", "TPG", "STATE", "PREF", "EXPLICIT", "STATUS", "PORTS"],
                rows,
            )
        }
        ListWhat::InitiatorPort => {
            if json {
                return write_json(out, &topo.initiator_ports);
            }
            let rows = topo
                .initiator_ports
                .iter()
                .map(|i| {
                    vec![
                        i.port_id.clone(),
                        i.port_type.to_string(),
                        i.os_friendly_name.clone(),
                        i.session.to_string(),
                        i.iface.clone(),
                        i.local_address.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            table(
                out,
                &["PORT-ID", "TYPE", "HOST", "SESSION", "IFACE", "LOCAL"],
                rows,
            )
        }
        ListWhat::TargetPort => {
            if json {
                return write_json(out, &topo.target_ports);
            }
            let rows = topo
                .target_ports
                .iter()
                .map(|t| {
                    vec![
                        t.port_id.clone(),
                        t.relative_port_id.to_string(),
                        t.target_name.clone(),
                        t.portal.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            table(out, &["PORT-ID", "RTPI", "TARGET", "PORTAL"], rows)
        }
    }
}

/// What `show lu --json` prints.
#[derive(Serialize)]
struct LuView<'a> {
    lu: &'a MultipathLu,
    paths: Vec<&'a PathLu>,
    tpgs: Vec<&'a TargetPortGroup>,
    target_ports: Vec<&'a crate::TargetPort>,
}

fn show_lu(topo: &Topology, lu: &MultipathLu, json: bool, out: &mut dyn Write) -> Result<()> {
    let paths: Vec<&PathLu> = topo.lu_paths(lu.oid).collect();
    let tpgs: Vec<&TargetPortGroup> = topo.lu_tpgs(lu.oid).collect();
    if json {
        let mut ports: Vec<&crate::TargetPort> = tpgs
            .iter()
            .flat_map(|g| g.target_ports.iter())
            .filter_map(|o| topo.target_port(*o))
            .collect();
        ports.dedup_by_key(|p| p.oid);
        return write_json(
            out,
            &LuView {
                lu,
                paths,
                tpgs,
                target_ports: ports,
            },
        );
    }
    let rows: Vec<(&str, String)> = vec![
        ("Name", lu.name.clone()),
        ("Name type", lu.name_type.to_string()),
        (
            "Device file",
            lu.device_file_name.clone().unwrap_or_else(|| "-".into()),
        ),
        (
            "dm device",
            lu.dm_device.clone().unwrap_or_else(|| "-".into()),
        ),
        ("Vendor", lu.vendor.clone()),
        ("Product", lu.product.clone()),
        ("Revision", lu.revision.clone()),
        ("Size", format!("{} ({} bytes)", size(lu.size), lu.size)),
        ("Asymmetric", yes(lu.asymmetric)),
        ("Explicit failover", yes(lu.explicit_alua)),
        (
            "Load balance",
            format!(
                "{} ({})",
                load_balance::names(lu.current_load_balance_type).join(","),
                lu.selector
            ),
        ),
        (
            "Auto-failback",
            format!("{} ({})", yes(lu.auto_failback_enabled), lu.failback),
        ),
        ("Queueing", lu.queueing.clone()),
        ("Features", lu.features.clone()),
        ("Hardware handler", lu.hardware_handler.clone()),
        (
            "Paths",
            format!("{} usable of {}", lu.active_paths, lu.total_paths),
        ),
    ];
    key_values(out, "Logical unit", &rows)?;
    writeln!(out, "\nPath groups").map_err(io)?;
    let groups = lu
        .path_groups
        .iter()
        .map(|g| {
            vec![
                g.group.to_string(),
                g.priority.to_string(),
                g.dm_state.clone(),
                g.selector.clone(),
                g.paths
                    .iter()
                    .filter_map(|o| topo.path(*o))
                    .map(|p| p.device.clone())
                    .collect::<Vec<_>>()
                    .join(","),
            ]
        })
        .collect();
    table(
        out,
        &["GROUP", "PRIO", "STATE", "SELECTOR", "PATHS"],
        groups,
    )?;
    writeln!(out, "\nTarget port groups").map_err(io)?;
    let rows = tpgs
        .iter()
        .map(|g| {
            vec![
                g.tpg_id.to_string(),
                g.access_state.to_string(),
                yes(g.preferred_lu_path),
                g.status.to_string(),
                g.supported_states.join(","),
                g.target_ports
                    .iter()
                    .filter_map(|o| topo.target_port(*o))
                    .map(|t| format!("{} ({})", t.port_id, t.portal.as_deref().unwrap_or("-")))
                    .collect::<Vec<_>>()
                    .join(" "),
            ]
        })
        .collect();
    table(
        out,
        &[
            "TPG",
            "STATE",
            "PREF",
            "STATUS",
            "SUPPORTED",
            "TARGET PORTS",
        ],
        rows,
    )?;
    writeln!(out, "\nPaths").map_err(io)?;
    table(
        out,
        PATH_HEADER,
        paths.iter().map(|p| path_row(topo, p)).collect(),
    )
}

#[cfg(test)]
mod tests;
