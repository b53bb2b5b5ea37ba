//! The paths of a dm-multipath map, read from sysfs: its slave SCSI disks, each opened for
//! SG_IO, with the iSCSI initiator name and ISID of its session and the relative target port
//! from VPD 0x83, so READ FULL STATUS registrations can be matched to paths.
//!
//! This is the minimal discovery the engine and `xsm pr` need on a host; the multipath crate's
//! discovery (SNIA MMA model) feeds the same [`PrPath`] values to the drivers. sysfs is read by
//! `sm_core::host::sysfs`.

use std::sync::Arc;

use sm_core::host::sysfs::Sysfs;
use sm_core::scsi::{self, SgDevice};

use crate::error::PrError;
use crate::path::{NexusId, PrPath};

/// The paths of map `map`: every slave, usable when its SCSI device is running, with its
/// nexus when it is an iSCSI session.
pub fn paths_of_map(sysfs: &Sysfs, map: &str) -> Result<Vec<PrPath>, PrError> {
    let dm = sysfs
        .dm_by_name(map)
        .ok_or_else(|| PrError::NoUsablePath { lu: map.into() })?;
    let mut out = Vec::new();
    for sd in dm.slaves {
        let dev_path = format!("/dev/{sd}");
        let dev = match SgDevice::open(&dev_path) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(map, path = %dev_path, "cannot open a path of the map: {e}");
                continue;
            }
        };
        let rtpi = scsi::vpd_device_id(&dev)
            .ok()
            .and_then(|id| id.relative_target_port());
        let nexus = sysfs
            .session_of(&sd)
            .filter(|s| !s.initiator.is_empty())
            .map(|s| NexusId {
                isid: s.isid_value(),
                initiator: s.initiator,
                rtpi,
            });
        let usable = sysfs.running(&sd);
        out.push(PrPath::new(Arc::new(dev), nexus).with_usable(usable));
    }
    Ok(out)
}
