//! How xenopsd and its VBD backends take an attach result on an XCP-ng host
//! (`research/datapath.md` §2.1–2.3), so a result a real host rejects fails here too:
//! - the backend kind is the VBD's `other_config:backend-kind` (copied from the VDI's
//!   `sm_config:backend-kind` when the VBD is created), else `vbd3` (tapback);
//! - `vbd` (kernel blkback) needs `params` to be a block device;
//! - `vbd3` takes `params` when present, as `physical-device` (its major must be blktap2's
//!   `tapdev`: "ignoring non-blktap2 physical device"), else the `params_nbd` socket, as
//!   `physical-device-path` = its real path, which must read `/run/blktap-control/nbd<pid>.<minor>`
//!   ("Malformed physical-device-path").
//!
//! A host without blktap (no `tap-ctl` runs there) is plain Linux, not an XCP-ng host: there the
//! rules are not applied and the log says so.

use std::time::Duration;

use sm_core::xmlrpc::Value;

use crate::emulator::HostRt;
use crate::error::{ApiError, ApiResult};

/// Deadline of one probe command.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The backend kind a VBD gets when nothing says otherwise (XCP-ng 8.3's xenopsd.conf).
pub const DEFAULT_KIND: &str = "vbd3";

/// Where tapdisk's sockets live; tapback reads `nbd<pid>.<minor>` under it.
const CONTROL_DIR: &str = "/run/blktap-control/";

fn run(h: &HostRt, argv: &[&str]) -> Option<(i32, String)> {
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    h.exec.run(&argv, None, TIMEOUT).ok().map(|o| {
        (
            o.code,
            String::from_utf8_lossy(&o.stdout).trim().to_string(),
        )
    })
}

/// Whether `h` is an XCP-ng-like host: blktap's `tap-ctl` runs there.
pub fn has_blktap(h: &HostRt) -> bool {
    run(h, &["tap-ctl", "list"]).is_some_and(|(code, _)| code == 0)
}

/// Whether tapback accepts `path` (a socket's real path) as `physical-device-path`.
pub fn tapback_path(path: &str) -> bool {
    path.strip_prefix(CONTROL_DIR)
        .and_then(|r| r.strip_prefix("nbd"))
        .and_then(|r| r.split_once('.'))
        .is_some_and(|(pid, minor)| {
            !pid.is_empty()
                && !minor.is_empty()
                && pid.bytes().all(|b| b.is_ascii_digit())
                && minor.bytes().all(|b| b.is_ascii_digit())
        })
}

/// blktap2's tapdev major from `/proc/devices` text, if the module is loaded.
pub fn tapdev_major(proc_devices: &str) -> Option<u32> {
    proc_devices.lines().find_map(|l| {
        let (n, name) = l.trim().split_once(' ')?;
        (name.trim() == "tapdev").then(|| n.parse().ok()).flatten()
    })
}

fn refused(kind: &str, why: String) -> ApiError {
    ApiError::internal(format!(
        "the {kind} backend would not connect this disk on an XCP-ng host: {why}"
    ))
}

/// Checks attach result `info` as backend `kind` on host `h` would take it.
pub fn check(h: &HostRt, kind: &str, info: &Value) -> ApiResult<()> {
    if !has_blktap(h) {
        tracing::info!(host = %h.name, "no blktap on this host: VBD backend rules not applied");
        return Ok(());
    }
    let get = |k: &str| {
        info.as_struct()
            .and_then(|m| m.get(k))
            .map(Value::to_text)
            .unwrap_or_default()
    };
    let params = get("params");
    let stat = |p: &str| run(h, &["stat", "-L", "-c", "%F %t", p]);
    match kind {
        "vbd" => match stat(&params) {
            Some((0, out)) if out.starts_with("block special file") => Ok(()),
            _ => Err(refused(
                kind,
                format!("params {params:?} is not a block device"),
            )),
        },
        _ if !params.is_empty() => {
            let major = stat(&params)
                .filter(|(c, _)| *c == 0)
                .and_then(|(_, out)| out.rsplit(' ').next().map(str::to_string))
                .and_then(|hex| u32::from_str_radix(&hex, 16).ok());
            let tapdev = run(h, &["cat", "/proc/devices"]).and_then(|(_, t)| tapdev_major(&t));
            match (major, tapdev) {
                (Some(m), Some(t)) if m == t => Ok(()),
                _ => Err(refused(
                    kind,
                    format!("ignoring non-blktap2 physical device {params}"),
                )),
            }
        }
        _ => {
            let uri = get("params_nbd");
            let socket = uri
                .strip_prefix("nbd:unix:")
                .and_then(|r| r.split(':').next())
                .unwrap_or_default();
            let real = run(h, &["readlink", "-e", socket])
                .filter(|(c, _)| *c == 0)
                .map(|(_, out)| out)
                .unwrap_or_default();
            if tapback_path(&real) {
                Ok(())
            } else {
                Err(refused(
                    kind,
                    format!(
                        "Malformed physical-device-path {real:?} (params_nbd {uri:?}): not a tapdisk's socket"
                    ),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tapback_takes_only_a_tapdisk_s_own_socket() {
        assert!(tapback_path("/run/blktap-control/nbd4242.0"));
        assert!(!tapback_path("/run/blktap-control/nbd/sr/vdi"));
        assert!(!tapback_path("/run/sm-rs/nbd/v.sock"));
        assert!(!tapback_path("/run/blktap-control/nbd42."));
        assert!(!tapback_path("/run/blktap-control/nbdclient42"));
        assert!(!tapback_path(""));
    }

    #[test]
    fn the_tapdev_major_is_read_from_proc_devices() {
        let t = "Character devices:\n  1 mem\n\nBlock devices:\n  8 sd\n254 tapdev\n253 device-mapper\n";
        assert_eq!(tapdev_major(t), Some(254));
        assert_eq!(tapdev_major("Block devices:\n  8 sd\n"), None);
    }
}
