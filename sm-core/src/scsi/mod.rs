//! SCSI over SG_IO: the one transport, the one sense decoder, and typed commands.
//!
//! Every SCSI command the project sends goes through a [`ScsiTransport`]: [`SgDevice`] in
//! production (SG_IO on a `/dev/sd*` or `/dev/sg*` descriptor, or one received over
//! `SCM_RIGHTS`), `FakeScsi` in tests (`sm_core::testing`, feature `test-utils`). Commands
//! are sent by [`exec`], which retries what SPC-4 says was not executed (unit attentions,
//! BUSY, ALUA transitioning within a deadline) and logs each attempt at `debug!`. Outcomes
//! are classified once ([`error::classify`]) into a [`Condition`] that upper layers match on.
//!
//! | module | holds |
//! |---|---|
//! | `sg_io` (private) | the SG_IO ioctl, the project's only `unsafe` |
//! | [`transport`], [`device`] | the trait, its [`RetryPolicy`], and the SG_IO implementation |
//! | [`error`], [`retry`] | [`ScsiError`], [`Condition`]; [`exec`], the retry loop |
//! | [`cdb`] | CDB builders (`[u8; N]`) and command names |
//! | [`alua`], [`pr`] | ALUA and persistent-reservation vocabulary (ids, states, types) |
//! | [`wire`] | bounds-checked parsers and encoders of every data format |
//! | `commands` | typed operations: INQUIRY/VPD, TUR, READ CAPACITY, RTPG/STPG, PR IN/OUT |
//!
//! ```no_run
//! use sm_core::scsi::{self, AccessState, SgDevice, TpgId};
//! # fn main() -> Result<(), sm_core::scsi::ScsiError> {
//! let dev = SgDevice::open("/dev/sdb")?;
//! let id = scsi::vpd_device_id(&dev)?;
//! let wwid = id.naa_wwid();                        // "36001405..."
//! let groups = scsi::report_target_port_groups(&dev)?;
//! if let Some(tpg) = id.target_port_group() {
//!     scsi::set_target_port_groups(&dev, &[(tpg, AccessState::ActiveOptimized)])?;
//! }
//! let keys = scsi::pr_read_keys(&dev)?;
//! # let _ = (wwid, groups, keys, TpgId(1));
//! # Ok(())
//! # }
//! ```

pub mod alua;
pub mod cdb;
mod commands;
pub mod device;
pub mod error;
pub mod pr;
pub mod retry;
// The SG_IO ioctl needs `unsafe` (a raw pointer-carrying header handed to the kernel). The
// workspace denies unsafe code; this one module is allowed, holds one documented unsafe call,
// and exposes a safe function.
#[allow(unsafe_code)]
mod sg_io;
pub mod transport;
pub mod wire;

#[cfg(any(test, feature = "test-utils"))]
pub mod fake;

pub use alua::{AccessState, RelTgtPortId, SupportedStates, TpgId, Tpgs};
pub use commands::*;
pub use device::SgDevice;
pub use error::{Condition, NotReady, Retry, ScsiError};
pub use pr::{PrInAction, PrOutAction, PrType};
pub use retry::{exec, exec_with};
pub use transport::{Completion, DataDir, RawOutcome, RetryPolicy, ScsiTransport};
pub use wire::ParseError;
pub use wire::capacity::{Capacity, Lba};
pub use wire::inquiry::StandardInquiry;
pub use wire::pr_in::{
    PrCapabilities, PrFullStatus, PrKeys, PrReservation, Registrant, Reservation,
};
pub use wire::pr_out::{MoveParams, PrOut, RegisterOpts};
pub use wire::rtpg::{RtpgFormat, TargetPortGroups, TpgDescriptor, TpgStatus};
pub use wire::sense::{SenseFormat, SenseInfo, SenseKey};
pub use wire::transport_id::TransportId;
pub use wire::vpd::{Association, CodeSet, Designation, Designator, DeviceId, NaaFormat};
