//! The paths of a dm-multipath map, read from sysfs: its slave SCSI disks, each opened for
//! SG_IO, with the iSCSI initiator name and ISID of its session and the relative target port
//! from VPD 0x83, so READ FULL STATUS registrations can be matched to paths.
//!
//! This is the minimal discovery the engine and `xsm pr` need on a host; the multipath crate's
//! discovery (SNIA MMA model) feeds the same [`Path`] values to the drivers.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use sm_core::scsi::{self, SgDevice};

use crate::error::PrError;
use crate::path::{NexusId, Path};

/// Where sysfs is (tests point it elsewhere).
#[derive(Debug, Clone)]
pub struct Sysfs {
    root: PathBuf,
}

impl Default for Sysfs {
    fn default() -> Sysfs {
        Sysfs {
            root: PathBuf::from("/sys"),
        }
    }
}

fn read_trim(p: &FsPath) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

impl Sysfs {
    /// sysfs under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Sysfs {
        Sysfs { root: root.into() }
    }

    /// The kernel name (`dm-3`) of a map given as `/dev/mapper/<name>`, `<name>` or `dm-N`.
    pub fn dm_name(&self, map: &str) -> Option<String> {
        let name = map
            .trim_start_matches("/dev/mapper/")
            .trim_start_matches("/dev/");
        if name.starts_with("dm-") && self.root.join("block").join(name).exists() {
            return Some(name.to_string());
        }
        let dir = std::fs::read_dir(self.root.join("block")).ok()?;
        dir.flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|d| d.starts_with("dm-"))
            .find(|d| {
                read_trim(&self.root.join("block").join(d).join("dm/name")).as_deref() == Some(name)
            })
    }

    /// The device-mapper name of `dm-N` (the WWID for multipath maps named by WWID).
    pub fn map_name(&self, dm: &str) -> Option<String> {
        read_trim(&self.root.join("block").join(dm).join("dm/name"))
    }

    /// The slave devices (`sdb`, `sdc`) of a dm device.
    pub fn slaves(&self, dm: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.root.join("block").join(dm).join("slaves"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Whether the SCSI device is running (not offline, blocked or deleted).
    pub fn running(&self, sd: &str) -> bool {
        read_trim(&self.root.join("block").join(sd).join("device/state")).as_deref()
            == Some("running")
    }

    /// The iSCSI initiator name and ISID of the session `sd` belongs to.
    pub fn iscsi_nexus(&self, sd: &str) -> Option<(String, Option<u64>)> {
        let dev = std::fs::canonicalize(self.root.join("block").join(sd).join("device")).ok()?;
        let session = dev
            .ancestors()
            .filter_map(|a| a.file_name())
            .map(|n| n.to_string_lossy().to_string())
            .find(|n| n.starts_with("session"))?;
        let base = self.root.join("class/iscsi_session").join(&session);
        let initiator = read_trim(&base.join("initiatorname"))?;
        let isid = read_trim(&base.join("isid")).and_then(|s| u64::from_str_radix(&s, 16).ok());
        Some((initiator, isid))
    }
}

/// The paths of map `map`: every slave, usable when its SCSI device is running, with its
/// nexus when it is an iSCSI session.
pub fn paths_of_map(sysfs: &Sysfs, map: &str) -> Result<Vec<Path>, PrError> {
    let dm = sysfs
        .dm_name(map)
        .ok_or_else(|| PrError::NoUsablePath { lu: map.into() })?;
    let mut out = Vec::new();
    for sd in sysfs.slaves(&dm) {
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
        let nexus = sysfs.iscsi_nexus(&sd).map(|(initiator, isid)| NexusId {
            initiator,
            isid,
            rtpi,
        });
        let usable = sysfs.running(&sd);
        out.push(Path::new(Arc::new(dev), nexus).with_usable(usable));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_maps_slaves_and_sessions_from_a_sysfs_tree() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let mk = |p: &str, text: &str| {
            let f = root.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, text).unwrap();
        };
        mk("block/dm-3/dm/name", "36001405aa\n");
        std::fs::create_dir_all(root.join("block/dm-3/slaves/sdb")).unwrap();
        std::fs::create_dir_all(root.join("block/dm-3/slaves/sdc")).unwrap();
        let dev = root.join("devices/platform/host6/session4/target6:0:0/6:0:0:1");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::create_dir_all(root.join("block/sdb")).unwrap();
        std::os::unix::fs::symlink(&dev, root.join("block/sdb/device")).unwrap();
        mk(
            "devices/platform/host6/session4/target6:0:0/6:0:0:1/state",
            "running\n",
        );
        mk(
            "class/iscsi_session/session4/initiatorname",
            "iqn.2026-01.test.lab:host-a\n",
        );
        mk("class/iscsi_session/session4/isid", "00023d000004\n");
        let s = Sysfs::new(root);
        assert_eq!(s.dm_name("/dev/mapper/36001405aa").as_deref(), Some("dm-3"));
        assert_eq!(s.dm_name("dm-3").as_deref(), Some("dm-3"));
        assert_eq!(s.dm_name("nope"), None);
        assert_eq!(s.map_name("dm-3").as_deref(), Some("36001405aa"));
        assert_eq!(s.slaves("dm-3"), ["sdb", "sdc"]);
        assert!(s.running("sdb"));
        assert!(!s.running("sdc"));
        assert_eq!(
            s.iscsi_nexus("sdb"),
            Some(("iqn.2026-01.test.lab:host-a".into(), Some(0x23d000004)))
        );
        assert_eq!(s.iscsi_nexus("sdc"), None);
    }
}
