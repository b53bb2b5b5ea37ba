//! A request on a device that is not a multipath map: the client's CDB goes through SG_IO on
//! its own descriptor, and the reply is what qemu-pr-helper would send: the 16 CDB bytes as
//! received, PR IN read into an 8 KiB buffer and the payload cut to what the device transferred
//! and to the allocation length, the device's status and sense unchanged, SG_IO failures
//! mapped by [`super::sense`]. The payload is cut to the allocation length where every reply
//! is, in [`super::server::serve_connection`].

use std::time::Duration;

use sm_core::scsi::{DataDir, ScsiTransport};

use super::protocol::{DATA_SIZE, Reply, Request};
use super::sense;

/// Sends `req` down `dev` (a transport on the request's own descriptor) once.
pub fn pass_through(dev: &dyn ScsiTransport, req: &Request, timeout: Duration) -> Reply {
    if req.is_out() {
        match dev.execute_raw(&req.cdb, DataDir::ToDevice(&req.params), timeout) {
            Err(e) => sense::from_errno(e),
            Ok(raw) => sense::from_raw(&raw),
        }
    } else {
        let mut buf = vec![0u8; DATA_SIZE];
        match dev.execute_raw(&req.cdb, DataDir::FromDevice(&mut buf), timeout) {
            Err(e) => sense::from_errno(e),
            Ok(raw) => {
                let mut reply = sense::from_raw(&raw);
                if sense::is_good(&reply) {
                    buf.truncate(DATA_SIZE.saturating_sub(raw.resid));
                    reply.payload = buf;
                }
                reply
            }
        }
    }
}
