//! What the drivers share about a VDI's datapath on this host ([`hostio::serve`]).

use hostio::serve::{Datapath, Open};
use sm_core::errors::{SmCode, SmError, SmResult};

/// Fault 24 while the VDI's tapdisk still serves an NBD client (a dom0 device, a copy): ending
/// it would fail the client's I/O.
pub fn refuse_if_served(dp: &Datapath, open: Option<&Open>) -> SmResult<()> {
    match dp.clients(open) {
        0 => Ok(()),
        n => Err(SmError::msg(
            SmCode::VDIInUse,
            format!("its tapdisk still serves {n} NBD client(s) on this host"),
        )),
    }
}
