//! The SMAPI side of the datapath table ([`crate::datapaths`]): changing a datapath makes the
//! calls that bring the plugin to the new superstate.

use sm_core::xmlrpc::Value;

use super::vdi_call;
use crate::db::RecordExt;
use crate::emulator::{Emulator, OpCtx};
use crate::error::{ApiError, ApiResult};

pub use crate::datapaths::{Datapaths, DpState, dp_name};
use crate::datapaths::{Entry, superstate};

impl Datapaths {
    /// Sets datapath `dp` of `vdi` on `host` to `target` (`None`: the datapath goes away) and
    /// makes the SMAPI calls that change the plugin-visible state. On a failed call the
    /// datapath keeps its previous state and the error is returned.
    pub fn set(
        &self,
        emu: &Emulator,
        ctx: &OpCtx,
        host: &str,
        vdi: &str,
        dp: &str,
        target: Option<DpState>,
    ) -> ApiResult<()> {
        let _g = emu.locks.lock(&format!("vdi:{host}:{vdi}"));
        let mut e = self.entry(host, vdi);
        let mut dps = e.dps.clone();
        match target {
            Some(t) => {
                dps.insert(dp.to_string(), t);
            }
            None => {
                dps.remove(dp);
            }
        }
        let want = superstate(&dps);
        let sr_type = emu.read(|db| {
            let sr = db.get("VDI", vdi)?.s("SR");
            Ok(db.get("SR", &sr)?.s("type"))
        })?;
        let driver = emu.driver(&sr_type)?;
        let call = |command: &str, args: Vec<String>| -> ApiResult<Value> {
            let (ty, c) = emu.read(|db| vdi_call(db, host, vdi, command, args))?;
            emu.smapi(ctx, host, &ty, c)
        };
        let reach = |e: &mut Entry, want: Option<(bool, bool)>| -> ApiResult<()> {
            let (rw, active) = want.unwrap_or((false, false));
            if e.attached == Some(false) && rw {
                return Err(ApiError::not_allowed(format!(
                    "VDI {vdi} is attached read-only on this host and cannot also be attached read-write"
                )));
            }
            if e.active && !active {
                if driver.has("VDI_DEACTIVATE") {
                    call("vdi_deactivate", vec![])?;
                }
                e.active = false;
            }
            if want.is_none() {
                if e.attached.is_some() {
                    call("vdi_detach", vec![])?;
                    e.attached = None;
                    e.attach_info = None;
                }
                return Ok(());
            }
            if e.attached.is_none() {
                let info = call("vdi_attach", vec![rw.to_string()])?;
                e.attached = Some(rw);
                e.attach_info = Some(info);
            }
            if active && !e.active {
                if driver.has("VDI_ACTIVATE") {
                    call("vdi_activate", vec![e.attached.unwrap_or(rw).to_string()])?;
                }
                e.active = true;
            }
            Ok(())
        };
        let result = reach(&mut e, want);
        match &result {
            Ok(()) => e.dps = dps,
            Err(err) => {
                let back = superstate(&e.dps);
                if let Err(undo) = reach(&mut e, back) {
                    tracing::warn!(
                        vdi,
                        host,
                        "after {err}, restoring the previous state failed too: {undo}"
                    );
                }
            }
        }
        self.store(host, vdi, e);
        result
    }
}
