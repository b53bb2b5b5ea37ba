//! The driver contract: one trait with every SMAPI call and the context every call runs in. The
//! capabilities a driver declares and its `sr_get_driver_info` record live in
//! [`crate::driver_info`] and are re-exported here.
//!
//! A driver implements only what it supports; every other call answers fault 38 Unimplemented
//! through the default methods, and a test checks that the declared capabilities and the
//! implemented calls agree (`capabilities_match_implementation`).

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

use crate::errors::{SmCode, SmError, SmResult};
use crate::host::{LockDir, Paths, Runner, SystemRunner};
use crate::ids::{SrUuid, VdiUuid};
use crate::request::{DeviceConfig, Request};
use crate::response::{AttachInfo, VdiLocation};
use crate::xenapi::{Endpoint, XenApi};

pub use crate::driver_info::{Capability, ConfigKey, DriverInfo};

/// vdi_create's arguments (`[size; name_label; name_description; metadata_of_pool;
/// is_a_snapshot; snapshot_time; snapshot_of; read_only]`) and `vdi_type`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VdiCreate {
    /// Requested virtual size in bytes.
    pub size: u64,
    /// name_label.
    pub name_label: String,
    /// name_description.
    pub name_description: String,
    /// metadata_of_pool (OpaqueRef or "").
    pub metadata_of_pool: String,
    /// is_a_snapshot.
    pub is_a_snapshot: bool,
    /// snapshot_time (`YYYYMMDDTHH:MM:SSZ`).
    pub snapshot_time: String,
    /// snapshot_of (OpaqueRef or "").
    pub snapshot_of: String,
    /// read_only.
    pub read_only: bool,
    /// vdi_type (`user`, `system`, `suspend`, ...).
    pub vdi_type: String,
}

impl VdiCreate {
    /// Reads the arguments of a vdi_create request; only the size is mandatory.
    pub fn from_request(req: &Request) -> SmResult<VdiCreate> {
        let opt = |i: usize| req.args.get(i).cloned().unwrap_or_default();
        let flag = |i: usize| {
            matches!(
                req.args.get(i).map(String::as_str),
                Some("true" | "True" | "1")
            )
        };
        Ok(VdiCreate {
            size: req.arg_size(0, "size")?,
            name_label: opt(1),
            name_description: opt(2),
            metadata_of_pool: opt(3),
            is_a_snapshot: flag(4),
            snapshot_time: req
                .args
                .get(5)
                .cloned()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "19700101T00:00:00Z".into()),
            snapshot_of: opt(6),
            read_only: flag(7),
            vdi_type: req
                .vdi_type
                .clone()
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "user".into()),
        })
    }
}

/// The host services a call uses: the command runner, locks, paths, the XenAPI endpoint.
#[derive(Clone)]
pub struct Host {
    /// Runs external tools.
    pub runner: Arc<dyn Runner>,
    /// Host paths (under `SM_ROOT` in tests).
    pub paths: Paths,
    /// sm's lock directory.
    pub locks: LockDir,
    /// Where xapi listens.
    pub xapi_endpoint: Endpoint,
}

impl Host {
    /// The real host: system runner, paths from the environment, xapi from `SM_XAPI` or the
    /// default socket.
    pub fn from_env() -> Host {
        let paths = Paths::from_env();
        Host {
            runner: Arc::new(SystemRunner::new()),
            locks: LockDir::new(paths.lock_dir()),
            paths,
            xapi_endpoint: Endpoint::from_env(),
        }
    }

    /// A host with the given runner and root (tests).
    pub fn with(runner: Arc<dyn Runner>, root: &std::path::Path, xapi_endpoint: Endpoint) -> Host {
        let paths = Paths::new(root);
        Host {
            runner,
            locks: LockDir::new(paths.lock_dir()),
            paths,
            xapi_endpoint,
        }
    }
}

/// Everything one SMAPI call runs with.
pub struct Ctx<'a> {
    /// The request.
    pub req: &'a Request,
    /// Host services.
    pub host: &'a Host,
    xapi: OnceLock<XenApi>,
    stderr: RefCell<String>,
}

impl<'a> Ctx<'a> {
    /// A context for `req` on `host`.
    pub fn new(req: &'a Request, host: &'a Host) -> Ctx<'a> {
        Ctx {
            req,
            host,
            xapi: OnceLock::new(),
            stderr: RefCell::new(String::new()),
        }
    }

    /// device_config.
    pub fn dconf(&self) -> &DeviceConfig {
        &self.req.device_config
    }

    /// The SR uuid (validated).
    pub fn sr_uuid(&self) -> SmResult<SrUuid> {
        let s = self
            .req
            .sr_uuid
            .as_deref()
            .ok_or_else(|| SmError::msg(SmCode::BadRequest, "missing sr_uuid"))?;
        SrUuid::new(s).map_err(|e| SmError::new(SmCode::BadRequest, e))
    }

    /// The VDI uuid (validated).
    pub fn vdi_uuid(&self) -> SmResult<VdiUuid> {
        let s = self
            .req
            .vdi_uuid
            .as_deref()
            .ok_or_else(|| SmError::msg(SmCode::BadRequest, "missing vdi_uuid"))?;
        VdiUuid::new(s).map_err(|e| SmError::new(SmCode::BadRequest, e))
    }

    /// The SR OpaqueRef (from the request, or looked up by uuid).
    pub fn sr_ref(&self) -> SmResult<String> {
        match self.req.sr_ref.as_deref().filter(|r| !r.is_empty()) {
            Some(r) => Ok(r.to_string()),
            None => Ok(self.xapi()?.sr_get_by_uuid(self.sr_uuid()?.as_str())?),
        }
    }

    /// The XenAPI client for the session xapi passed (fault 150 when there is none).
    pub fn xapi(&self) -> SmResult<&XenApi> {
        if let Some(x) = self.xapi.get() {
            return Ok(x);
        }
        let session = self
            .req
            .session_ref
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| SmError::msg(SmCode::APISession, "no session_ref in this call"))?;
        let x = XenApi::new(
            self.host.xapi_endpoint.clone(),
            session,
            self.req.subtask_of.as_deref(),
        );
        Ok(self.xapi.get_or_init(|| x))
    }

    /// Whether a XenAPI session is available.
    pub fn has_session(&self) -> bool {
        self.req.session_ref.as_ref().is_some_and(|s| !s.is_empty())
    }

    /// Appends to what the plugin writes on stderr (probe listings xapi passes on to clients).
    pub fn emit_stderr(&self, text: &str) {
        self.stderr.borrow_mut().push_str(text);
    }

    /// What was emitted for stderr.
    pub fn take_stderr(&self) -> String {
        std::mem::take(&mut *self.stderr.borrow_mut())
    }
}

fn unimplemented(cx: &Ctx<'_>) -> SmResult<()> {
    Err(SmError::msg(
        SmCode::Unimplemented,
        cx.req.command_name.clone(),
    ))
}

/// One SR driver. Every call has a default that answers fault 38 Unimplemented, except the
/// epoch calls, which are no-ops as in sm.
#[allow(unused_variables)]
pub trait Driver: Sync {
    /// The driver's identity, capabilities and configuration keys.
    fn info(&self) -> &'static DriverInfo;

    /// Prepares the storage in device_config to hold VDIs; `size` is advisory.
    fn sr_create(&self, cx: &Ctx<'_>, size: u64) -> SmResult<()> {
        unimplemented(cx)
    }
    /// Removes an empty SR, leaving the storage clean. Idempotent.
    fn sr_delete(&self, cx: &Ctx<'_>) -> SmResult<()> {
        unimplemented(cx)
    }
    /// Makes the SR usable on this host. Idempotent.
    fn sr_attach(&self, cx: &Ctx<'_>) -> SmResult<()> {
        unimplemented(cx)
    }
    /// Releases the SR on this host. Idempotent.
    fn sr_detach(&self, cx: &Ctx<'_>) -> SmResult<()> {
        unimplemented(cx)
    }
    /// Reconciles VDI records with the storage (by location) and reports sizes.
    fn sr_scan(&self, cx: &Ctx<'_>) -> SmResult<()> {
        unimplemented(cx)
    }
    /// Reports SR sizes.
    fn sr_update(&self, cx: &Ctx<'_>) -> SmResult<()> {
        unimplemented(cx)
    }
    /// Looks for SRs (or targets, LUNs) on the given storage; returns an XML document.
    fn sr_probe(&self, cx: &Ctx<'_>) -> SmResult<String> {
        unimplemented(cx).map(|_| String::new())
    }
    /// The SR content type document.
    fn sr_content_type(&self, cx: &Ctx<'_>) -> SmResult<String> {
        unimplemented(cx).map(|_| String::new())
    }
    /// Creates a VDI and registers it with `VDI.db_introduce`.
    fn vdi_create(&self, cx: &Ctx<'_>, args: &VdiCreate) -> SmResult<VdiLocation> {
        unimplemented(cx).map(|_| VdiLocation {
            uuid: String::new(),
            location: String::new(),
        })
    }
    /// Deletes a VDI and forgets its record.
    fn vdi_delete(&self, cx: &Ctx<'_>) -> SmResult<()> {
        unimplemented(cx)
    }
    /// Makes the VDI's datapath available on this host.
    fn vdi_attach(&self, cx: &Ctx<'_>, writable: bool) -> SmResult<AttachInfo> {
        unimplemented(cx).map(|_| AttachInfo::default())
    }
    /// Tears the datapath down.
    fn vdi_detach(&self, cx: &Ctx<'_>) -> SmResult<()> {
        unimplemented(cx)
    }
    /// Takes exclusive (or read-only) access before I/O.
    fn vdi_activate(&self, cx: &Ctx<'_>, writable: bool) -> SmResult<()> {
        unimplemented(cx)
    }
    /// Releases access after I/O.
    fn vdi_deactivate(&self, cx: &Ctx<'_>) -> SmResult<()> {
        unimplemented(cx)
    }
    /// A snapshot of the VDI (data identical to the source at this moment).
    fn vdi_snapshot(&self, cx: &Ctx<'_>) -> SmResult<VdiLocation> {
        unimplemented(cx).map(|_| VdiLocation {
            uuid: String::new(),
            location: String::new(),
        })
    }
    /// A writable clone of the VDI.
    fn vdi_clone(&self, cx: &Ctx<'_>) -> SmResult<VdiLocation> {
        unimplemented(cx).map(|_| VdiLocation {
            uuid: String::new(),
            location: String::new(),
        })
    }
    /// Grows the VDI to `new_size` bytes.
    fn vdi_resize(&self, cx: &Ctx<'_>, new_size: u64) -> SmResult<VdiLocation> {
        unimplemented(cx).map(|_| VdiLocation {
            uuid: String::new(),
            location: String::new(),
        })
    }
    /// Refreshes the VDI's record (sizes, sm_config) after xapi changed it.
    fn vdi_update(&self, cx: &Ctx<'_>) -> SmResult<()> {
        unimplemented(cx)
    }
    /// Registers an existing VDI (location from the request) under `new_uuid`.
    fn vdi_introduce(&self, cx: &Ctx<'_>) -> SmResult<VdiLocation> {
        unimplemented(cx).map(|_| VdiLocation {
            uuid: String::new(),
            location: String::new(),
        })
    }
    /// A methodCall for `vdi_attach_from_config` that attaches this VDI without xapi.
    fn vdi_generate_config(&self, cx: &Ctx<'_>) -> SmResult<String> {
        unimplemented(cx).map(|_| String::new())
    }
    /// Attaches a VDI from a config made by `vdi_generate_config` (no session).
    fn vdi_attach_from_config(&self, cx: &Ctx<'_>) -> SmResult<AttachInfo> {
        unimplemented(cx).map(|_| AttachInfo::default())
    }
    /// Detaches what `vdi_attach_from_config` attached.
    fn vdi_detach_from_config(&self, cx: &Ctx<'_>) -> SmResult<()> {
        unimplemented(cx)
    }
    /// Called before the first attach after boot; resets the VDI when `vdi_on_boot=reset`.
    fn vdi_epoch_begin(&self, cx: &Ctx<'_>) -> SmResult<()> {
        if cx.req.vdi_on_boot.as_deref() == Some("reset")
            && !self.info().has(Capability::VdiResetOnBoot2)
        {
            return Err(SmError::msg(
                SmCode::Unimplemented,
                "vdi_on_boot=reset is not supported by this SR type",
            ));
        }
        Ok(())
    }
    /// Called after the last detach; nothing to do unless a driver says so.
    fn vdi_epoch_end(&self, cx: &Ctx<'_>) -> SmResult<()> {
        Ok(())
    }
}
