//! vdi_activate / vdi_deactivate: which hosts use a VDI, recorded in its sm_config the way sm's
//! blktap2 does (`host_<host_ref>` = `RW` or `RO`), so sm's tools and ours read the same state.
//!
//! Activation is serialised pool-wide with sm's `activating` key: `VDI.add_to_sm_config` fails
//! with MAP_DUPLICATE_KEY while another host holds it. The key's value is the holder's host ref,
//! so a key left behind by a crash of *this* host is recognised and taken over instead of
//! blocking the VDI forever (sm's issue #803). A read-write activation is refused (fault 24)
//! while another host has the VDI active in any mode; a read-only one while another host has
//! it read-write.

use std::time::{Duration, Instant};

use sm_core::driver::Ctx;
use sm_core::errors::{SmCode, SmError, SmResult};
use sm_core::xenapi::XenApi;

use crate::vdi_record::vdi_ref;

/// The pool-wide activation mutex key.
pub const ACTIVATING: &str = "activating";
/// How long we wait for another host's activation to finish.
const ACTIVATING_WAIT: Duration = Duration::from_secs(30);

/// The sm_config key recording `host_ref`'s use of a VDI.
pub fn host_key(host_ref: &str) -> String {
    format!("host_{host_ref}")
}

/// Holds the `activating` key; removes it when dropped.
struct Activating<'a> {
    x: &'a XenApi,
    vdi: &'a str,
}

impl<'a> Activating<'a> {
    fn take(x: &'a XenApi, vdi: &'a str, host_ref: &str) -> SmResult<Activating<'a>> {
        let start = Instant::now();
        loop {
            match x.vdi_add_to_sm_config(vdi, ACTIVATING, host_ref) {
                Ok(()) => return Ok(Activating { x, vdi }),
                Err(e) if e.error_name() == Some("MAP_DUPLICATE_KEY") => {
                    let holder = x.vdi_get_sm_config(vdi)?.get(ACTIVATING).cloned();
                    match holder {
                        Some(h) if h == host_ref => {
                            tracing::warn!(vdi, "taking over a stale activating key of this host");
                            return Ok(Activating { x, vdi });
                        }
                        None => continue,
                        Some(h) if start.elapsed() >= ACTIVATING_WAIT => {
                            return Err(SmError::msg(
                                SmCode::VDIInUse,
                                format!("host {h} is activating this VDI"),
                            ));
                        }
                        Some(_) => std::thread::sleep(Duration::from_millis(100)),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Drop for Activating<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.x.vdi_remove_sm_config_key(self.vdi, ACTIVATING) {
            tracing::warn!(vdi = self.vdi, "cannot remove the activating key: {e}");
        }
    }
}

/// The calling host's ref (fault 143 when xapi sent none).
fn this_host<'a>(cx: &'a Ctx<'_>) -> SmResult<&'a str> {
    match cx.req.host_ref.as_str() {
        "" => Err(SmError::msg(
            SmCode::BadRequest,
            format!("{} needs host_ref", cx.req.command_name),
        )),
        h => Ok(h),
    }
}

/// Records this host as a user of the VDI, refusing conflicting use by other hosts.
pub fn activate(cx: &Ctx<'_>, writable: bool) -> SmResult<()> {
    let host_ref = this_host(cx)?;
    let x = cx.xapi()?;
    let vdi = vdi_ref(cx)?;
    let _held = Activating::take(x, &vdi, host_ref)?;
    let mine = host_key(host_ref);
    let sm_config = x.vdi_get_sm_config(&vdi)?;
    if sm_config.contains_key("paused") {
        return Err(SmError::msg(SmCode::VDIUnavailable, "the VDI is paused"));
    }
    for (k, mode) in &sm_config {
        let Some(other) = k.strip_prefix("host_") else {
            continue;
        };
        if *k == mine {
            continue;
        }
        if writable || mode == "RW" {
            let name = x
                .host_get_name_label(other)
                .map_or_else(|_| other.to_string(), |n| format!("{n} ({other})"));
            return Err(SmError::msg(
                SmCode::VDIInUse,
                format!("active {mode} on host {name}"),
            ));
        }
    }
    let mode = if writable { "RW" } else { "RO" };
    match sm_config.get(&mine).map(String::as_str) {
        Some(m) if m == mode => {}
        Some(_) => x.vdi_set_sm_config_key(&vdi, &mine, mode)?,
        None => x.vdi_add_to_sm_config(&vdi, &mine, mode)?,
    }
    Ok(())
}

/// Another host that has the VDI active (any mode), if any.
pub fn active_elsewhere(cx: &Ctx<'_>) -> SmResult<Option<String>> {
    let mine = host_key(this_host(cx)?);
    let x = cx.xapi()?;
    let sm_config = x.vdi_get_sm_config(&vdi_ref(cx)?)?;
    Ok(sm_config
        .keys()
        .find(|k| k.starts_with("host_") && **k != mine)
        .map(|k| k.trim_start_matches("host_").to_string()))
}

/// Removes this host's use of the VDI. Idempotent.
pub fn deactivate(cx: &Ctx<'_>) -> SmResult<()> {
    let host_ref = this_host(cx)?;
    let x = cx.xapi()?;
    let vdi = vdi_ref(cx)?;
    x.vdi_remove_sm_config_key(&vdi, &host_key(host_ref))?;
    Ok(())
}
