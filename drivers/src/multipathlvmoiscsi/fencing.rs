//! SR-level fencing of the shared VG by SCSI-3 persistent reservation (opt-in:
//! `fencing=pr` in device_config or the SR's sm_config; `pr-no-abort` for arrays without
//! PREEMPT AND ABORT; `off`, the default, is sm's behaviour: no I/O fencing).
//!
//! - **Joining** (sr_create, sr_attach, vdi_attach_from_config): the host registers its key for
//!   this boot on every path of the LUN and the LUN holds a Write Exclusive – All Registrants
//!   reservation ([`reservations::shared`]); multipathd gets the key for the map, so paths that
//!   appear later are registered before they carry I/O; the key is published on the host's PBD
//!   (`other_config:fencing-key`) for the other hosts.
//! - **Before each activation** the host checks that its key is still registered; a fenced host
//!   refuses (fault 46) and says why. When the VDI's `host_<ref>` record names a host that xapi
//!   reports dead (`host_metrics.live` false), that host's key is removed with PREEMPT AND
//!   ABORT (logged `FENCING` / `FENCED`) and its record dropped before the VDI is taken.
//! - **Per-boot keys**: the key is derived from the host uuid and a value made at the first use
//!   in each boot, kept in `/run/sm-rs/fencing` (tmpfs: gone at reboot). A host that joined in
//!   this boot and finds its key gone was fenced: it refuses to join again until it reboots, so
//!   its old sessions' writes stay rejected.
//! - **Leaving** (sr_detach): multipathd forgets the key and the host unregisters; a fenced host
//!   stays fenced.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use reservations::shared::{Member, Standing};
use reservations::{Lu, PrError, PrKey};
use sm_core::driver::Ctx;
use sm_core::errors::{SmCode, SmError, SmResult};

use super::lun::IscsiLun;
use crate::activation::host_key;

/// device_config / SR sm_config key turning fencing on.
pub const KEY: &str = "fencing";
/// PBD other_config key where a host publishes its key for this boot.
pub const PBD_KEY: &str = "fencing-key";

/// Whether and how the SR fences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No fencing (sm's behaviour).
    Off,
    /// Registration, an All Registrants reservation, and PREEMPT AND ABORT of dead hosts
    /// (PREEMPT alone when `abort` is false).
    Pr {
        /// Abort the fenced host's queued commands.
        abort: bool,
    },
}

impl Mode {
    /// Reads `fencing` from device_config, else from the SR's sm_config.
    pub fn of(
        dconf: &BTreeMap<String, String>,
        sm_config: &BTreeMap<String, String>,
    ) -> SmResult<Mode> {
        match dconf
            .get(KEY)
            .or_else(|| sm_config.get(KEY))
            .map(|v| v.trim())
        {
            None | Some("" | "off") => Ok(Mode::Off),
            Some("pr") => Ok(Mode::Pr { abort: true }),
            Some("pr-no-abort") => Ok(Mode::Pr { abort: false }),
            Some(other) => Err(SmError::msg(
                SmCode::ConfigParamsMissing,
                format!("invalid {KEY} {other:?}: off, pr or pr-no-abort"),
            )),
        }
    }

    /// The SR's mode for this call.
    pub fn for_call(cx: &Ctx<'_>) -> SmResult<Mode> {
        Mode::of(
            cx.dconf().as_map(),
            &crate::iscsi_sr::config::sr_sm_config(cx)?,
        )
    }
}

/// The SMAPI fault for a reservation failure of the SR's LUN: `code` unless the LUN has no
/// usable path or the pool could not be asked.
fn fault(code: SmCode, e: PrError) -> SmError {
    let code = match &e {
        PrError::NoUsablePath { .. } => SmCode::MultipathDeviceNotAppeared,
        PrError::Pool(_) => SmCode::APIFailure,
        _ => code,
    };
    SmError::new(code, e)
}

/// Where this host keeps its fencing state for the boot.
fn state_dir(cx: &Ctx<'_>) -> PathBuf {
    cx.host.paths.run_dir().join("fencing")
}

/// This host's key for this boot: read from the state directory, or made now from the host
/// uuid (the XenServer inventory, else xapi) and a random value, and kept there.
fn boot_key(cx: &Ctx<'_>) -> SmResult<PrKey> {
    let dir = state_dir(cx);
    let file = dir.join("key");
    if let Some(k) = read_key(&file)? {
        return Ok(k);
    }
    let uuid = match reservations::key::inventory_host_uuid() {
        Some(u) => u,
        None if cx.has_session() => cx.xapi()?.host_get_uuid(&cx.req.host_ref)?,
        None => {
            return Err(SmError::msg(
                SmCode::SRUnavailable,
                "fencing: this host has no key for this boot yet, and neither the inventory nor xapi names the host",
            ));
        }
    };
    let mut boot = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut boot))
        .map_err(|e| SmError::msg(SmCode::SRUnavailable, format!("fencing: /dev/urandom: {e}")))?;
    let key = PrKey::for_boot(&uuid, u64::from_be_bytes(boot))
        .map_err(|e| SmError::new(SmCode::SRUnavailable, e))?;
    write_new(&dir, &file, &key.to_string())?;
    // Another call may have made it first: the file decides.
    read_key(&file)?
        .ok_or_else(|| SmError::msg(SmCode::SRUnavailable, "fencing: the key file vanished"))
}

fn read_key(file: &Path) -> SmResult<Option<PrKey>> {
    match std::fs::read_to_string(file) {
        Ok(t) => t
            .trim()
            .parse::<PrKey>()
            .map(Some)
            .map_err(|e| SmError::new(SmCode::SRUnavailable, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SmError::msg(
            SmCode::SRUnavailable,
            format!("fencing: {}: {e}", file.display()),
        )),
    }
}

/// Creates `file` with `text` unless it exists (the first writer wins).
fn write_new(dir: &Path, file: &Path, text: &str) -> SmResult<()> {
    use std::io::Write;
    let io = |e: std::io::Error| {
        SmError::msg(
            SmCode::SRUnavailable,
            format!("fencing: {}: {e}", file.display()),
        )
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(file)
    {
        Ok(mut f) => f
            .write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io(e)),
    }
}

/// The marker of "joined this SR in this boot".
fn joined_marker(cx: &Ctx<'_>) -> SmResult<PathBuf> {
    Ok(state_dir(cx).join(format!("{}.joined", cx.sr_uuid()?)))
}

/// The refusal of a host that was fenced in this boot.
fn fenced(cx: &Ctx<'_>, code: SmCode, key: PrKey) -> SmError {
    let sr = cx.sr_uuid().map(|s| s.to_string()).unwrap_or_default();
    SmError::msg(
        code,
        format!(
            "this host was fenced from SR {sr}: another host removed its reservation key {key} (it was reported dead), so the array refuses its writes; reboot this host to rejoin with a new key"
        ),
    )
}

/// Runs `f` on the SR's LUN as this host's member of it.
fn with_member<T>(
    cx: &Ctx<'_>,
    lun: &IscsiLun,
    key: PrKey,
    f: impl FnOnce(&Member<'_>, &str) -> SmResult<T>,
) -> SmResult<T> {
    let (map, paths) = lun.pr_paths(cx)?;
    let id = super::lun::scsi_id(cx)?;
    let lu = Lu::new(id.as_str(), &paths);
    f(
        &Member {
            lu: &lu,
            me: key,
            aptpl: false,
        },
        &map,
    )
}

/// Joins the SR's LUN (see the module doc); nothing when fencing is off. A host fenced in this
/// boot is refused (47).
pub fn join(cx: &Ctx<'_>, lun: &IscsiLun) -> SmResult<()> {
    let mode = Mode::for_call(cx)?;
    if mode == Mode::Off {
        return Ok(());
    }
    let key = boot_key(cx)?;
    let marker = joined_marker(cx)?;
    with_member(cx, lun, key, |m, map| {
        let (standing, state) = m.standing().map_err(|e| fault(SmCode::SRUnavailable, e))?;
        if standing == Standing::Outside && marker.exists() {
            tracing::warn!(%key, %state, "fencing: this host's key is gone from the LUN it joined in this boot");
            return Err(fenced(cx, SmCode::SRUnavailable, key));
        }
        if standing == Standing::Empty && marker.exists() {
            tracing::warn!(%key, "fencing: the LUN has no registrations at all (the target lost its PR state?): joining again");
        }
        let j = m.join().map_err(|e| fault(SmCode::SRUnavailable, e))?;
        tracing::info!(%key, reserved = j.reserved, state = %j.state, "fencing: joined the LUN (registered on every path, All Registrants reservation)");
        if !j.others.is_empty() {
            tracing::warn!(keys = ?j.others.iter().map(|k| format!("{k:#018x}")).collect::<Vec<_>>(), "fencing: other keys are registered on the LUN (other hosts, or other software: they may write)");
        }
        write_new(&state_dir(cx), &marker, &key.to_string())?;
        if let Err(e) =
            reservations::mpathd::set_map_key(lun.multipathd(cx).as_ref(), map, Some(key))
        {
            tracing::warn!(
                map,
                "fencing: multipathd map key: {}",
                sm_core::errors::error_chain(&e)
            );
        }
        Ok(())
    })?;
    if cx.has_session() {
        let x = cx.xapi()?;
        if let Some(pbd) = x.pbd_of(&cx.req.host_ref, &cx.sr_ref()?)? {
            x.pbd_set_other_config_key(&pbd, PBD_KEY, &key.to_string())?;
        }
    }
    Ok(())
}

/// Leaves the SR's LUN at sr_detach: multipathd forgets the key, the registrations go. A fenced
/// host stays fenced (its marker stays until reboot). Failures are logged: detaching matters
/// more.
pub fn leave(cx: &Ctx<'_>, lun: &IscsiLun) -> SmResult<()> {
    let marker = joined_marker(cx)?;
    let Some(key) = read_key(&state_dir(cx).join("key"))? else {
        return Ok(());
    };
    if !marker.exists() && Mode::for_call(cx)? == Mode::Off {
        return Ok(());
    }
    let r = with_member(cx, lun, key, |m, map| {
        let (standing, _) = m.standing().map_err(|e| fault(SmCode::SRUnavailable, e))?;
        if standing == Standing::Outside {
            tracing::warn!(%key, "fencing: detaching an SR this host was fenced from; it stays fenced until reboot");
            return Ok(());
        }
        if let Err(e) = reservations::mpathd::set_map_key(lun.multipathd(cx).as_ref(), map, None) {
            tracing::warn!(
                map,
                "fencing: multipathd map key: {}",
                sm_core::errors::error_chain(&e)
            );
        }
        m.leave().map_err(|e| fault(SmCode::SRUnavailable, e))?;
        let _ = std::fs::remove_file(&marker);
        tracing::info!(%key, "fencing: left the LUN");
        Ok(())
    });
    if let Err(e) = r {
        tracing::warn!("fencing: leaving the LUN failed: {e}");
    }
    if cx.has_session() {
        let x = cx.xapi()?;
        if let Some(pbd) = x.pbd_of(&cx.req.host_ref, &cx.sr_ref()?)? {
            let _ = x.pbd_remove_other_config_key(&pbd, PBD_KEY);
        }
    }
    Ok(())
}

/// Before vdi_activate: this host must still be a member (46 when fenced); hosts that the
/// VDI's records name and xapi reports dead are fenced and their records dropped.
pub fn before_activate(cx: &Ctx<'_>, lun: &IscsiLun, writable: bool) -> SmResult<()> {
    let Mode::Pr { abort } = Mode::for_call(cx)? else {
        return Ok(());
    };
    let key = boot_key(cx)?;
    with_member(cx, lun, key, |m, _| {
        let (standing, state) = m.standing().map_err(|e| fault(SmCode::VDIUnavailable, e))?;
        match standing {
            Standing::Member { .. } => {}
            Standing::Outside => {
                tracing::warn!(%key, %state, "fencing: refusing to activate: this host's key is gone");
                return Err(fenced(cx, SmCode::VDIUnavailable, key));
            }
            Standing::Empty => {
                tracing::warn!(%key, "fencing: the LUN has no registrations (the target lost its PR state?): joining again");
                m.join().map_err(|e| fault(SmCode::VDIUnavailable, e))?;
            }
        }
        if !cx.has_session() {
            return Ok(());
        }
        fence_dead_holders(cx, m, writable, abort)
    })
}

/// Fences every other host the VDI's records name (RW ones, or any when `writable`) that xapi
/// reports dead, and drops its record.
fn fence_dead_holders(cx: &Ctx<'_>, m: &Member<'_>, writable: bool, abort: bool) -> SmResult<()> {
    let x = cx.xapi()?;
    let vdi = cx
        .req
        .vdi_ref
        .clone()
        .ok_or_else(|| SmError::msg(SmCode::BadRequest, "vdi_activate needs vdi_ref"))?;
    let mine = host_key(&cx.req.host_ref);
    for (k, mode) in x.vdi_get_sm_config(&vdi)? {
        let Some(other) = k.strip_prefix("host_") else {
            continue;
        };
        if k == mine || !(writable || mode == "RW") || x.host_is_live(other)? {
            continue;
        }
        let name = x
            .host_get_name_label(other)
            .unwrap_or_else(|_| other.to_string());
        let victim = match x.pbd_of(other, &cx.sr_ref()?)? {
            Some(pbd) => x.pbd_get_other_config(&pbd)?.get(PBD_KEY).cloned(),
            None => None,
        };
        let Some(victim) = victim.and_then(|v| v.parse::<PrKey>().ok()) else {
            tracing::warn!(vdi, host = %name, "fencing: host {name} is reported dead but published no key: it cannot be fenced, the VDI stays in use");
            continue;
        };
        let why =
            format!("host {name} ({other}), which xapi reports dead, holding VDI {vdi} {mode}");
        m.fence(victim, abort, &why)
            .map_err(|e| fault(SmCode::NAPPExclActivate, e))?;
        tracing::warn!(vdi, host = %name, key = %victim, "FENCED host {name}: its writes to the SR are refused; taking over the VDI");
        x.vdi_remove_sm_config_key(&vdi, &k)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_mode_comes_from_device_config_then_sm_config() {
        assert_eq!(Mode::of(&map(&[]), &map(&[])).unwrap(), Mode::Off);
        assert_eq!(
            Mode::of(&map(&[]), &map(&[("fencing", "pr")])).unwrap(),
            Mode::Pr { abort: true }
        );
        assert_eq!(
            Mode::of(&map(&[("fencing", "off")]), &map(&[("fencing", "pr")])).unwrap(),
            Mode::Off
        );
        assert_eq!(
            Mode::of(&map(&[("fencing", " pr-no-abort ")]), &map(&[])).unwrap(),
            Mode::Pr { abort: false }
        );
        let e = Mode::of(&map(&[("fencing", "preempt-dead")]), &map(&[])).unwrap_err();
        assert_eq!(e.code, SmCode::ConfigParamsMissing);
        assert!(e.to_string().contains("off, pr or pr-no-abort"), "{e}");
    }

    #[test]
    fn the_key_file_is_made_once_and_the_first_writer_wins() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("fencing/key");
        assert_eq!(read_key(&f).unwrap(), None);
        write_new(&d.path().join("fencing"), &f, "0x5853000000000001").unwrap();
        write_new(&d.path().join("fencing"), &f, "0x5853000000000002").unwrap();
        assert_eq!(read_key(&f).unwrap().unwrap().get(), 0x5853_0000_0000_0001);
        std::fs::write(&f, "garbage").unwrap();
        assert!(read_key(&f).is_err());
    }
}
