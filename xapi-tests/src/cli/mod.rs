//! The `xe` command line, run inside the emulator as xapi's CLI server runs it: the `xe` binary
//! posts its arguments to `/cli` and prints what comes back. Arguments are `key=value`,
//! `map:key=value` (also the old `device-config-KEY=value` spelling) and `--flag`; output and
//! errors are formatted like the real `xe` (`Cli_printer`, `Cli_util.server_error`).

mod commands;
mod records;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::db::{Db, RecordExt};
use crate::emulator::Emulator;
use crate::error::{ApiError, describe};
use crate::trace::{Event, now};

/// What an `xe` invocation prints and its exit status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CliOutput {
    /// Exit status.
    pub code: i32,
    /// Text for stdout.
    pub stdout: String,
    /// Text for stderr.
    pub stderr: String,
}

/// Why a command failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// The command does not exist.
    UnknownCommand(String),
    /// A required parameter is missing.
    MissingParam(String),
    /// The command line does not parse.
    Syntax(String),
    /// A XenAPI error.
    Api(ApiError),
    /// Anything else (`Error: <msg>`).
    Other(String),
}

impl From<ApiError> for CliError {
    fn from(e: ApiError) -> CliError {
        CliError::Api(e)
    }
}

/// Result of a command.
pub type CliResult<T> = Result<T, CliError>;

/// Map parameters `xe` accepts as `name:key=value`.
const MAP_PARAMS: &[&str] = &[
    "device-config",
    "sm-config",
    "other-config",
    "driver-params",
    "xenstore-data",
    "config",
];

/// A parsed command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    /// The command (`vm-start`).
    pub cmd: String,
    /// `key=value` parameters.
    pub kv: BTreeMap<String, String>,
    /// `map:key=value` parameters by map name.
    pub maps: BTreeMap<String, BTreeMap<String, String>>,
    /// `--flag`s (and `flag=true`).
    pub flags: BTreeSet<String>,
}

impl Params {
    /// Parses `xe` arguments (without the program name).
    pub fn parse(args: &[String]) -> CliResult<Params> {
        let mut p = Params::default();
        for a in args.iter().filter(|a| !a.is_empty()) {
            if let Some(flag) = a.strip_prefix("--") {
                p.flags.insert(flag.to_string());
                continue;
            }
            let Some((k, v)) = a.split_once('=') else {
                if p.cmd.is_empty() {
                    p.cmd = a.clone();
                    continue;
                }
                return Err(CliError::Syntax(a.clone()));
            };
            if p.cmd.is_empty() {
                return Err(CliError::Syntax(a.clone()));
            }
            if let Some((m, key)) = k.split_once(':') {
                p.maps
                    .entry(m.to_string())
                    .or_default()
                    .insert(key.to_string(), v.to_string());
            } else if let Some(key) = k.strip_prefix("device-config-") {
                p.maps
                    .entry("device-config".into())
                    .or_default()
                    .insert(key.to_string(), v.to_string());
            } else if matches!(k, "minimal" | "force" | "multiple" | "live")
                && crate::db::schema::parse_bool(v) == Some(true)
            {
                p.flags.insert(k.to_string());
                if k == "live" {
                    p.kv.insert(k.to_string(), v.to_string());
                }
            } else if matches!(k, "username" | "password") {
                continue;
            } else {
                p.kv.insert(k.to_string(), v.to_string());
            }
        }
        if p.cmd.is_empty() {
            return Err(CliError::UnknownCommand(String::new()));
        }
        Ok(p)
    }

    /// A required parameter.
    pub fn req(&self, k: &str) -> CliResult<&str> {
        self.kv
            .get(k)
            .map(String::as_str)
            .ok_or_else(|| CliError::MissingParam(k.to_string()))
    }

    /// An optional parameter ("" when absent).
    pub fn opt(&self, k: &str) -> &str {
        self.kv.get(k).map(String::as_str).unwrap_or("")
    }

    /// A map parameter (empty when absent).
    pub fn map(&self, m: &str) -> BTreeMap<String, String> {
        self.maps.get(m).cloned().unwrap_or_default()
    }

    /// Whether `--flag` (or `flag=true`) was given.
    pub fn flag(&self, f: &str) -> bool {
        self.flags.contains(f)
    }

    /// Whether a parameter is a known map name.
    pub fn is_map_param(name: &str) -> bool {
        MAP_PARAMS.contains(&name)
    }
}

/// Renders a XenAPI error as xe prints it: xapi's doc line and `name: value` lines for known
/// errors, `Error code:` / `Error parameters:` otherwise. Refs become `uuid (name)`.
pub fn format_api_error(db: Option<&Db>, e: &ApiError) -> String {
    let conv = |p: &String| -> String {
        if p.starts_with("OpaqueRef:") {
            db.and_then(|db| db.describe_ref(p))
                .unwrap_or_else(|| p.clone())
        } else {
            p.clone()
        }
    };
    let params: Vec<String> = e.params.iter().map(conv).collect();
    match describe(&e.code) {
        Some((doc, names)) => {
            let mut out = format!("{doc}\n");
            let n = names.len().max(params.len());
            for i in 0..n {
                match (names.get(i), params.get(i)) {
                    (Some(k), Some(v)) => out.push_str(&format!("{k}: {v}\n")),
                    (None, Some(v)) => out.push_str(&format!("<extra>: {v}\n")),
                    (Some(k), None) => out.push_str(&format!("{k}: <unknown>\n")),
                    (None, None) => {}
                }
            }
            out
        }
        None => format!(
            "Error code: {}\nError parameters: {}\n",
            e.code,
            params.join(", ")
        ),
    }
}

fn format_error(db: Option<&Db>, e: &CliError) -> String {
    match e {
        CliError::UnknownCommand(c) => format!("Unknown command: {c}\nFor usage run: 'xe help'\n"),
        CliError::MissingParam(p) => {
            format!("Required parameter not found: {p}\nFor usage run: 'xe help'\n")
        }
        CliError::Syntax(a) => format!("Syntax error: {a}\nFor usage run: 'xe help'\n"),
        CliError::Api(e) => format_api_error(db, e),
        CliError::Other(m) => format!("Error: {m}\n"),
    }
}

/// Runs one command line for a logged-in session; `xe` is the trace sequence number.
pub fn run(emu: &Emulator, args: &[String], session: &str, xe: u64) -> CliOutput {
    let result = Params::parse(args).and_then(|p| commands::dispatch(emu, &p, session, xe));
    match result {
        Ok(stdout) => CliOutput {
            code: 0,
            stdout,
            stderr: String::new(),
        },
        Err(e) => {
            let text = emu
                .read(|db| Ok(format_error(Some(db), &e)))
                .unwrap_or_else(|_| format_error(None, &e));
            CliOutput {
                code: 1,
                stdout: String::new(),
                stderr: text,
            }
        }
    }
}

/// Runs a command line received on `/cli`: logs in (any credentials, as the local socket
/// allows), traces the command and its outcome, logs out.
pub fn run_remote(emu: &Emulator, lines: &[String]) -> CliOutput {
    let user = lines
        .iter()
        .find_map(|l| l.strip_prefix("username="))
        .filter(|u| !u.is_empty())
        .unwrap_or("root");
    let args: Vec<String> = lines
        .iter()
        .filter(|l| !l.starts_with("username=") && !l.starts_with("password="))
        .filter(|l| !l.is_empty())
        .cloned()
        .collect();
    let session = emu.login(user, BTreeMap::new());
    let id = emu.next_xe_id();
    let started = std::time::Instant::now();
    emu.trace.write(&Event::XeBegin {
        id,
        argv: args.clone(),
        ts: now(),
    });
    let out = run(emu, &args, &session, id);
    emu.trace.write(&Event::XeEnd {
        id,
        code: out.code,
        stdout: out.stdout.clone(),
        stderr: out.stderr.clone(),
        ms: started.elapsed().as_millis() as u64,
    });
    emu.logout(&session);
    out
}

/// Parses a size as xe does: bytes, or a number with a KiB/MiB/GiB/TiB (or K/M/G/T) suffix.
pub fn parse_size(s: &str) -> Option<i64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: i64 = num.parse().ok()?;
    let mult: i64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "k" | "KB" => 1 << 10,
        "MiB" | "M" | "MB" => 1 << 20,
        "GiB" | "G" | "GB" => 1 << 30,
        "TiB" | "T" | "TB" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// The record of a class by uuid (for error-free lookups in formatting).
fn name_of(db: &Db, class: &str, r: &str) -> String {
    db.get(class, r)
        .map(|x| x.s("name_label"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_both_device_config_spellings_and_flags() {
        let p = Params::parse(&args(&[
            "sr-create",
            "type=ext",
            "device-config-device=/dev/sdb",
            "device-config:location=/srv",
            "sm-config:allocation=thin",
            "--minimal",
            "force=true",
            "username=root",
        ]))
        .unwrap();
        assert_eq!(p.cmd, "sr-create");
        assert_eq!(p.req("type").unwrap(), "ext");
        assert_eq!(p.map("device-config")["device"], "/dev/sdb");
        assert_eq!(p.map("device-config")["location"], "/srv");
        assert_eq!(p.map("sm-config")["allocation"], "thin");
        assert!(p.flag("minimal") && p.flag("force"));
        assert!(!p.kv.contains_key("username"));
        assert_eq!(p.req("uuid"), Err(CliError::MissingParam("uuid".into())));
        assert_eq!(
            Params::parse(&args(&["vm-start", "junk"])),
            Err(CliError::Syntax("junk".into()))
        );
    }

    #[test]
    fn sizes_with_units() {
        assert_eq!(parse_size("100MiB"), Some(100 << 20));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("1XB"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn errors_format_like_xe() {
        let e = ApiError::new(
            "SR_BACKEND_FAILURE_47",
            ["", "The SR is not available [opterr=no such dir]", ""],
        );
        assert_eq!(
            format_api_error(None, &e),
            "Error code: SR_BACKEND_FAILURE_47\nError parameters: , The SR is not available [opterr=no such dir], \n"
        );
        let e = ApiError::uuid_invalid("VM", "1234");
        assert_eq!(
            format_api_error(None, &e),
            "The uuid you supplied was invalid.\ntype: VM\nuuid: 1234\n"
        );
        assert_eq!(
            format_error(None, &CliError::UnknownCommand("vm-frob".into())),
            "Unknown command: vm-frob\nFor usage run: 'xe help'\n"
        );
    }
}
