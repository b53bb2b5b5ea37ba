//! sm-core: the SMAPI contract and everything every SR driver shares.
//!
//! Data flows one way: xapi (or the emulator) execs the binary with a methodCall in argv[1];
//! [`dispatch::run`] parses it into a [`request::Request`], validates it, takes sm's SR/VDI
//! locks, calls the [`driver::Driver`], and renders a [`response::Response`] or an
//! [`errors::SmError`] as exactly one methodResponse.
//!
//! | module | owns |
//! |---|---|
//! | [`xmlrpc`] | the XML-RPC codec (untyped strings, `<i8>`, `<nil/>`, Z dates) |
//! | [`probe_xml`] | sm's probe listings (`<SRlist>`, `<iscsi-target>`, ...) in minidom's layout |
//! | [`request`], [`response`] | typed calls and results |
//! | [`errors`] | the SMAPI error table and fault rendering (one place) |
//! | [`driver`], [`dispatch`] | the driver trait and call context, the call pipeline |
//! | [`driver_info`] | capabilities, device_config keys, the `sr_get_driver_info` record |
//! | [`xenapi`] | the XenAPI client for the session xapi passes |
//! | [`host`] | the command runner, sm-compatible locks, SMlog, host paths, block devices |
//! | [`scsi`] | SCSI over SG_IO: INQUIRY/VPD, ALUA (RTPG/STPG), persistent reservations |
//! | [`lvm`] | LVM through lvm2: typed commands, the JSON report, failures as SMAPI codes, PV checks |
//! | [`ids`], [`secret`] | validated ids and masked secrets |

pub mod dispatch;
pub mod driver;
pub mod driver_info;
pub mod errors;
pub mod host;
pub mod ids;
pub mod lvm;
pub mod probe_xml;
pub mod request;
pub mod response;
pub mod scsi;
pub mod secret;
pub mod xenapi;
pub mod xmlrpc;

#[cfg(any(test, feature = "test-utils"))]
pub mod testing;

pub use driver::{Capability, ConfigKey, Ctx, Driver, DriverInfo, Host, VdiCreate};
pub use errors::{SmCode, SmError, SmResult};
pub use request::{Command, DeviceConfig, Request};
pub use response::{AttachInfo, Response, VdiLocation};
