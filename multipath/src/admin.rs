//! `MP_EnablePath` / `MP_DisablePath`.
//!
//! multipathd's `fail path` lasts only until its checker finds the path up again, so a
//! disable that holds also sets the SCSI device `offline` (every command on it then fails at
//! once and the checker keeps the path down) and records the path in
//! `/run/sm-rs/mpath/disabled/<H:C:T:L>` so that discovery reports it as administratively
//! closed. Enable undoes the three, in reverse order.

use crate::dm;
use crate::error::{MultipathError, Result};
use crate::model::{PathLu, Topology};
use crate::system::System;

fn disabled_dir(sys: &System) -> std::path::PathBuf {
    sys.state_dir().join("disabled")
}

/// The paths disabled through this module: `(H:C:T:L, device)`.
pub fn disabled_paths(sys: &System) -> Vec<(String, String)> {
    let dir = disabled_dir(sys);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut v: Vec<(String, String)> = rd
        .filter_map(|e| e.ok())
        .map(|e| {
            let hctl = e.file_name().to_string_lossy().into_owned();
            let dev = std::fs::read_to_string(e.path())
                .unwrap_or_default()
                .trim()
                .to_string();
            (hctl, dev)
        })
        .collect();
    v.sort();
    v
}

fn find<'a>(topo: &'a Topology, dev: &str) -> Result<&'a PathLu> {
    topo.find_path(dev)
        .ok_or_else(|| MultipathError::not_found("path", dev))
}

/// Disables path `dev` (a device such as `sdb`, or an H:C:T:L). Refuses to disable the last
/// usable path of its LU unless `force`.
pub fn disable_path(sys: &System, topo: &Topology, dev: &str, force: bool) -> Result<()> {
    let p = find(topo, dev)?;
    if p.hctl.is_empty() {
        return Err(MultipathError::Invalid(format!(
            "{}: the device is gone; nothing to disable",
            p.device
        )));
    }
    let others = topo
        .lu_paths(p.lu)
        .filter(|o| o.oid != p.oid && o.state.is_usable())
        .count();
    if others == 0 && !force {
        return Err(MultipathError::Invalid(format!(
            "{} is the last usable path of its logical unit (use --force to disable it anyway)",
            p.device
        )));
    }
    let dir = disabled_dir(sys);
    std::fs::create_dir_all(&dir).map_err(|e| MultipathError::file("create", &dir, e))?;
    let mark = dir.join(&p.hctl);
    std::fs::write(&mark, &p.device).map_err(|e| MultipathError::file("write", &mark, e))?;
    if p.dm_state.as_deref() != Some("failed") {
        dm::fail_path(sys.multipathd.as_ref(), &p.device)?;
    }
    sys.write_sysfs(&format!("/sys/block/{}/device/state", p.device), "offline")?;
    tracing::info!(path = %p.device, hctl = %p.hctl, "path disabled");
    Ok(())
}

/// Enables path `dev` again: the device back to `running`, the mark removed, multipathd asked
/// to reinstate it.
pub fn enable_path(sys: &System, topo: &Topology, dev: &str) -> Result<()> {
    let p = find(topo, dev)?;
    if p.hctl.is_empty() {
        return Err(MultipathError::Invalid(format!(
            "{}: the device is gone; nothing to enable",
            p.device
        )));
    }
    if p.device_state.as_deref() == Some("offline") {
        sys.write_sysfs(&format!("/sys/block/{}/device/state", p.device), "running")?;
    }
    let mark = disabled_dir(sys).join(&p.hctl);
    match std::fs::remove_file(&mark) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(MultipathError::file("remove", &mark, e)),
    }
    if p.dm_state.as_deref() == Some("failed") {
        dm::reinstate_path(sys.multipathd.as_ref(), &p.device)?;
    }
    tracing::info!(path = %p.device, hctl = %p.hctl, "path enabled");
    Ok(())
}
