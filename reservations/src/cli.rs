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
//! also set and unset multipathd's key for the map (see [`crate::mpathd`]). Every SCSI
//! command and every fencing decision is logged to SMlog, as in plugin mode. `acquire` fences
//! (PREEMPT AND ABORT) a holder only with `--fencing preempt-dead`, and only when the pool
//! reports the holder's host dead or no pool host owns the key.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use multipath::dm::MultipathdAuto;
use serde_json::{Value, json};
use sm_core::host::run::SystemRunner;
use sm_core::secret::Secret;
use sm_core::xenapi::{Endpoint, XenApi};
use sm_core::xmlrpc::Value as XValue;

use crate::activate::{Exclusive, Report};
use crate::engine::Lu;
use crate::error::PrError;
use crate::fence::{Owner, Owners, PoolOwners};
use crate::key::PrKey;
use crate::mpathd;
use crate::policy::{Fencing, Policy};
use crate::pool::PoolKeys;
use crate::slaves::{Sysfs, paths_of_map};
use crate::state::LuState;

/// Where the installation uuid of a XenServer host is.
const INVENTORY: &str = "/etc/xensource-inventory";

const USAGE: &str = "usage: xsm pr show [--json] [MAP...]
       xsm pr key [--host-uuid U]
       xsm pr acquire|release|register MAP --yes [--key K | --host-uuid U] [--type 5|6] [--fencing never|preempt-dead|preempt-dead-no-abort] [--json]
       xsm pr recheck MAP [--key K | --host-uuid U] [--json]
       xsm pr preempt MAP --victim KEY [--abort] --yes [--key K | --host-uuid U]
       xsm pr clear MAP --yes [--key K | --host-uuid U]";

/// Parsed command line.
#[derive(Debug, Default, PartialEq)]
struct Args {
    cmd: String,
    maps: Vec<String>,
    json: bool,
    yes: bool,
    abort: bool,
    key: Option<String>,
    host_uuid: Option<String>,
    victim: Option<String>,
    options: BTreeMap<String, String>,
}

fn parse(args: &[OsString]) -> Result<Args, String> {
    let mut a = Args::default();
    let mut it = args.iter().map(|s| s.to_string_lossy().to_string());
    a.cmd = it.next().ok_or("no command")?;
    while let Some(w) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match w.as_str() {
            "--json" => a.json = true,
            "--yes" => a.yes = true,
            "--abort" => a.abort = true,
            "--key" => a.key = Some(value("--key")?),
            "--host-uuid" => a.host_uuid = Some(value("--host-uuid")?),
            "--victim" => a.victim = Some(value("--victim")?),
            "--type" => {
                let v = value("--type")?;
                a.options.insert(crate::policy::KEY_TYPE.into(), v);
            }
            "--fencing" => {
                let v = value("--fencing")?;
                a.options.insert(crate::policy::KEY_FENCING.into(), v);
            }
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            _ => a.maps.push(w),
        }
    }
    Ok(a)
}

/// `xsm pr ARGS...`; returns the exit code (0 done, 1 failed, 2 usage or not confirmed).
pub fn main(args: &[OsString]) -> ExitCode {
    let paths = sm_core::host::Paths::from_env();
    let _log = sm_core::host::log::init("SM", paths.smlog_file());
    let mut out = std::io::stdout().lock();
    let a = match parse(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = writeln!(out, "xsm pr: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&a, &mut out) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(out, "xsm pr {}: {}", a.cmd, chain(&e));
            ExitCode::from(1)
        }
    }
}

/// An error with its causes, `: `-separated.
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

fn this_host_uuid(a: &Args) -> Option<String> {
    a.host_uuid.clone().or_else(|| {
        std::fs::read_to_string(INVENTORY)
            .ok()?
            .lines()
            .find_map(|l| {
                l.strip_prefix("INSTALLATION_UUID=")
                    .map(|v| v.trim().trim_matches('\'').to_string())
            })
    })
}

fn my_key(a: &Args) -> Result<PrKey, String> {
    if let Some(k) = &a.key {
        return k.parse().map_err(|e| format!("{e}"));
    }
    let uuid = this_host_uuid(a)
        .ok_or("no --key, no --host-uuid and no host uuid in /etc/xensource-inventory")?;
    PrKey::for_host(&uuid).map_err(|e| e.to_string())
}

/// The pool, from the local XenAPI, when it answers.
fn pool() -> Option<(XenApi, PoolKeys)> {
    let endpoint = Endpoint::from_env();
    let login = XenApi::new(endpoint.clone(), Secret::new(String::new()), None);
    let session = login
        .call_raw(
            "session.login_with_password",
            &[
                XValue::Str("root".into()),
                XValue::Str(String::new()),
                XValue::Str("1.0".into()),
                XValue::Str("xsm-pr".into()),
            ],
        )
        .ok()?
        .to_text();
    let x = XenApi::new(endpoint, Secret::new(session), None);
    let keys = PoolKeys::from_xapi(&x).ok()?;
    Some((x, keys))
}

/// Owners when the pool cannot be asked: every key is unknown.
struct NoPool;

impl Owners for NoPool {
    fn owner(&self, key: u64) -> Result<Owner, PrError> {
        Ok(Owner::Unknown(PoolKeys::default().describe(key)))
    }
}

fn all_maps() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/block")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with("dm-"))
                .filter(|n| {
                    std::fs::read_to_string(format!("/sys/block/{n}/dm/uuid"))
                        .is_ok_and(|u| u.starts_with("mpath-"))
                })
                .filter_map(|n| {
                    std::fs::read_to_string(format!("/sys/block/{n}/dm/name"))
                        .ok()
                        .map(|s| s.trim().to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn run(a: &Args, out: &mut dyn Write) -> Result<ExitCode, PrError> {
    let sysfs = Sysfs::default();
    let io = |_| ExitCode::from(1);
    match a.cmd.as_str() {
        "key" => {
            return Ok(match my_key(a) {
                Ok(k) => writeln!(out, "{k}").map_or_else(io, |_| ExitCode::SUCCESS),
                Err(e) => writeln!(out, "xsm pr key: {e}").map_or_else(io, |_| ExitCode::from(1)),
            });
        }
        "show" => {
            let maps = if a.maps.is_empty() {
                all_maps()
            } else {
                a.maps.clone()
            };
            let pool = pool();
            let me = my_key(a).ok();
            let mut docs = Vec::new();
            for m in &maps {
                let paths = paths_of_map(&sysfs, m)?;
                let lu = Lu::new(m.trim_start_matches("/dev/mapper/"), &paths);
                let doc = match lu.state() {
                    Ok(s) => show_doc(&lu, &s, pool.as_ref().map(|p| &p.1), me),
                    Err(e) => json!({"lu": lu.id(), "error": chain(&e)}),
                };
                docs.push(doc);
            }
            let text = if a.json {
                serde_json::to_string_pretty(&docs).unwrap_or_default()
            } else {
                docs.iter().map(show_text).collect::<Vec<_>>().join("\n")
            };
            return Ok(writeln!(out, "{text}").map_or_else(io, |_| ExitCode::SUCCESS));
        }
        "acquire" | "release" | "register" | "recheck" | "preempt" | "clear" => {}
        other => {
            let _ = writeln!(out, "xsm pr: unknown command {other}\n{USAGE}");
            return Ok(ExitCode::from(2));
        }
    }
    let [map] = a.maps.as_slice() else {
        let _ = writeln!(out, "xsm pr {}: name one map\n{USAGE}", a.cmd);
        return Ok(ExitCode::from(2));
    };
    let me = match my_key(a) {
        Ok(k) => k,
        Err(e) => {
            let _ = writeln!(out, "xsm pr {}: {e}", a.cmd);
            return Ok(ExitCode::from(2));
        }
    };
    let mut policy = match Policy::from_config(&a.options, &BTreeMap::new()) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(out, "xsm pr {}: {e}", a.cmd);
            return Ok(ExitCode::from(2));
        }
    };
    if !a.options.contains_key(crate::policy::KEY_FENCING) {
        policy.fencing = Fencing::Never;
    }
    if a.cmd != "recheck" && !a.yes {
        let _ = writeln!(
            out,
            "xsm pr {}: would change the reservations of {map} with key {me} ({policy}); add --yes to do it",
            a.cmd
        );
        return Ok(ExitCode::from(2));
    }
    let paths = paths_of_map(&sysfs, map)?;
    let lu = Lu::new(map.trim_start_matches("/dev/mapper/"), &paths);
    let pool = pool();
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
    let md = MultipathdAuto::new(std::sync::Arc::new(SystemRunner::new()));
    let map_name = sysfs
        .dm_name(map)
        .and_then(|dm| sysfs.map_name(&dm))
        .unwrap_or_else(|| lu.id().to_string());
    let started = std::time::Instant::now();
    let result = match a.cmd.as_str() {
        "acquire" => ex.acquire().and_then(|r| {
            mpathd::set_map_key(&md, &map_name, Some(me))?;
            Ok(r)
        }),
        "release" => mpathd::set_map_key(&md, &map_name, None).and_then(|_| ex.release()),
        "recheck" => ex.recheck(),
        "clear" => ex.clear(),
        "register" => ex.register_everywhere(),
        _ => match a.victim.as_deref().map(str::parse::<PrKey>) {
            Some(Ok(v)) => ex.preempt(v, a.abort),
            Some(Err(e)) => Err(PrError::Key(e)),
            None => {
                let _ = writeln!(out, "xsm pr preempt: --victim KEY is required");
                return Ok(ExitCode::from(2));
            }
        },
    };
    let ms = started.elapsed().as_millis();
    let (code, doc) = match &result {
        Ok(r) => (ExitCode::SUCCESS, report_doc(&a.cmd, lu.id(), me, r, ms)),
        Err(e) => (
            ExitCode::from(1),
            json!({"command": a.cmd, "lu": lu.id(), "key": me.to_string(), "ok": false,
                   "in_use": e.is_in_use(), "error": chain(e), "ms": ms}),
        ),
    };
    let text = if a.json {
        doc.to_string()
    } else {
        match &result {
            Ok(r) => format!("{} {}: done in {ms} ms; {}", a.cmd, lu.id(), r.state),
            Err(e) => format!("xsm pr {} {}: {}", a.cmd, lu.id(), chain(e)),
        }
    };
    Ok(writeln!(out, "{text}").map_or_else(io, |_| code))
}

fn report_doc(cmd: &str, lu: &str, me: PrKey, r: &Report, ms: u128) -> Value {
    json!({
        "command": cmd, "lu": lu, "key": me.to_string(), "ok": true, "ms": ms,
        "unchanged": r.unchanged, "fenced": r.fenced, "preempted": r.preempted,
        "applied_despite_error": r.applied_despite_error, "registered_late": r.registered_late,
        "state": r.state.to_string(),
    })
}

fn show_doc(lu: &Lu<'_>, s: &LuState, pool: Option<&PoolKeys>, me: Option<PrKey>) -> Value {
    let name = |k: u64| -> Value {
        if me.is_some_and(|m| m.get() == k) {
            return json!("this host");
        }
        match pool {
            Some(p) => json!(p.describe(k)),
            None => Value::Null,
        }
    };
    json!({
        "lu": lu.id(),
        "paths": lu.paths().iter().map(|p| json!({
            "device": p.name, "usable": p.usable,
            "nexus": p.nexus.as_ref().map(ToString::to_string),
        })).collect::<Vec<_>>(),
        "generation": s.generation,
        "reservation": s.reservation.map(|r| json!({
            "type": r.pr_type.code(), "type_name": r.pr_type.abbrev(),
            "key": format!("{:#018x}", r.key), "holder": name(r.key),
        })),
        "registrations": s.registrations.iter().map(|r| json!({
            "key": format!("{:#018x}", r.key), "holder": r.holder,
            "nexus": s.detailed.then(|| r.describe_nexus()), "host": name(r.key),
        })).collect::<Vec<_>>(),
    })
}

fn show_text(d: &Value) -> String {
    let mut t = format!("LUN {}\n", d["lu"].as_str().unwrap_or("?"));
    if let Some(e) = d["error"].as_str() {
        t.push_str(&format!("  error: {e}\n"));
        return t;
    }
    let paths: Vec<String> = d["paths"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    format!(
                        "{}{}",
                        p["device"].as_str().unwrap_or("?"),
                        if p["usable"].as_bool() == Some(true) {
                            ""
                        } else {
                            " (down)"
                        }
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    t.push_str(&format!("  paths: {}\n", paths.join(", ")));
    match d["reservation"].as_object() {
        Some(r) => t.push_str(&format!(
            "  reservation: {} ({}) key {} {}\n",
            r["type_name"].as_str().unwrap_or("?"),
            r["type"],
            r["key"].as_str().unwrap_or("?"),
            r["holder"]
                .as_str()
                .map(|h| format!("[{h}]"))
                .unwrap_or_default()
        )),
        None => t.push_str("  reservation: none\n"),
    }
    t.push_str(&format!("  generation: {}\n", d["generation"]));
    let regs = d["registrations"].as_array().cloned().unwrap_or_default();
    if regs.is_empty() {
        t.push_str("  registrations: none\n");
    } else {
        t.push_str(&format!(
            "  {:<20} {:<6} {:<52} {}\n",
            "KEY", "HOLDER", "NEXUS", "HOST"
        ));
        for r in regs {
            t.push_str(&format!(
                "  {:<20} {:<6} {:<52} {}\n",
                r["key"].as_str().unwrap_or("?"),
                if r["holder"].as_bool() == Some(true) {
                    "yes"
                } else {
                    ""
                },
                r["nexus"].as_str().unwrap_or("-"),
                r["host"].as_str().unwrap_or("-"),
            ));
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn parses_commands_and_options() {
        let a = parse(&os(&[
            "acquire",
            "/dev/mapper/3600",
            "--yes",
            "--type",
            "6",
            "--fencing",
            "preempt-dead",
            "--key",
            "0x5853000000000001",
            "--json",
        ]))
        .unwrap();
        assert_eq!(a.cmd, "acquire");
        assert_eq!(a.maps, ["/dev/mapper/3600"]);
        assert!(a.yes && a.json && !a.abort);
        assert_eq!(a.options["reservation-type"], "6");
        assert_eq!(my_key(&a).unwrap().get(), 0x5853_0000_0000_0001);
        assert!(parse(&os(&["show", "--bogus"])).is_err());
        assert!(parse(&os(&["preempt", "m", "--victim"])).is_err());
        assert!(parse(&os(&[])).is_err());
        let k = parse(&os(&[
            "key",
            "--host-uuid",
            "11111111-2222-4333-8444-555555555555",
        ]))
        .unwrap();
        assert!(my_key(&k).unwrap().is_ours());
    }

    #[test]
    fn destructive_commands_need_yes() {
        let mut out = Vec::new();
        let a = parse(&os(&["clear", "dm-99", "--key", "0xa1"])).unwrap();
        assert_eq!(run(&a, &mut out).unwrap(), ExitCode::from(2));
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("add --yes"), "{text}");
    }

    #[test]
    fn show_text_lists_holders_and_hosts() {
        let d = json!({
            "lu": "3600", "generation": 3,
            "paths": [{"device": "/dev/sdb", "usable": true}, {"device": "/dev/sdc", "usable": false}],
            "reservation": {"type": 5, "type_name": "WE-RO", "key": "0x5853000000000001", "holder": "this host"},
            "registrations": [{"key": "0x5853000000000001", "holder": true, "nexus": "iqn.a,i,0x00023d000001 port 1", "host": "this host"}],
        });
        let t = show_text(&d);
        assert!(t.contains("/dev/sdc (down)"), "{t}");
        assert!(
            t.contains("reservation: WE-RO (5) key 0x5853000000000001 [this host]"),
            "{t}"
        );
        assert!(t.contains("iqn.a,i,0x00023d000001 port 1"), "{t}");
    }
}
