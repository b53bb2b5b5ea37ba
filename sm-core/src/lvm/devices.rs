//! What a device must be before it becomes a PV of a new VG, checked before anything is
//! written: a block device; not part of the root filesystem's stack (fault 105 Rootdev); not a
//! PV of any VG (fault 42 SRExists, as sm's sr_create); holding no filesystem, partition table,
//! RAID or other signature (fault 16 SRInUse, naming it); not mounted, not held by a kernel user
//! such as a dm map or md array, not open exclusively (fault 16 SRInUse, which xapi reports as
//! SR_DEVICE_IN_USE). A PV that belongs to no VG holds no data and may be reused.
//!
//! lvm2 refusing a busy device by itself (`Can't open ... exclusively`) is the other way a device
//! in use shows up; that is fault 56 LVMPartInUse, from [`super::error`].

use std::path::{Path, PathBuf};

use crate::errors::{SmCode, SmError};
use crate::host::block::{self, Signatures};
use crate::host::{RunError, Runner};

use super::report::{Pv, Report};

/// The blkid `TYPE` of a PV label.
pub const PV_SIGNATURE: &str = "LVM2_member";

/// Why a device may not become a PV of a new VG.
#[derive(Debug, thiserror::Error)]
pub enum DeviceRefusal {
    /// It is not a block device.
    #[error("{dev}: {reason}")]
    NotBlock {
        /// The device.
        dev: PathBuf,
        /// Why.
        reason: String,
    },
    /// It carries (part of) the root filesystem.
    #[error("{dev} is part of the root filesystem's device stack ({via})")]
    Root {
        /// The device.
        dev: PathBuf,
        /// The device of the root stack it reaches.
        via: String,
    },
    /// It is a PV of a VG.
    #[error("{dev} is a physical volume of volume group {vg}")]
    InVg {
        /// The device.
        dev: PathBuf,
        /// The VG.
        vg: String,
    },
    /// It holds something other than a PV label.
    #[error("{dev} holds {what}; erase it first (wipefs -a) if it is no longer needed")]
    Signature {
        /// The device.
        dev: PathBuf,
        /// What blkid found.
        what: String,
    },
    /// Something uses it.
    #[error("{dev} is in use ({detail})")]
    InUse {
        /// The device.
        dev: PathBuf,
        /// Who.
        detail: String,
    },
    /// Its signatures could not be read.
    #[error("cannot probe {dev}")]
    Probe {
        /// The device.
        dev: PathBuf,
        /// The blkid failure.
        #[source]
        source: RunError,
    },
}

impl DeviceRefusal {
    /// The SMAPI code of the refusal.
    pub fn sm_code(&self) -> SmCode {
        match self {
            DeviceRefusal::NotBlock { .. } => SmCode::ConfigDeviceInvalid,
            DeviceRefusal::Root { .. } => SmCode::Rootdev,
            DeviceRefusal::InVg { .. } => SmCode::SRExists,
            DeviceRefusal::Signature { .. } | DeviceRefusal::InUse { .. } => SmCode::SRInUse,
            DeviceRefusal::Probe { .. } => SmCode::SRUnavailable,
        }
    }
}

impl From<DeviceRefusal> for SmError {
    fn from(e: DeviceRefusal) -> SmError {
        SmError::new(e.sm_code(), e)
    }
}

/// What an acceptable device holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewPv {
    /// Nothing blkid recognises.
    Blank,
    /// A PV label of no VG (it is relabelled).
    OrphanPv,
}

/// The PV lvm2 reports on the device `dev`, matched by device number (lvm2 may name it by
/// another alias).
pub fn pv_of<'a>(scan: &'a Report, dev: &Path) -> Option<&'a Pv> {
    let rdev = block::rdev(dev).ok()?;
    scan.pv_by_devno(block::dev_pair(rdev))
}

fn what_is_on(sigs: &Signatures) -> Option<String> {
    block::describe(sigs)
}

/// Checks `dev` before it becomes a PV of a new VG (see the module documentation); `scan` is
/// the report of the devices in scope ([`super::Lvm::scan`]).
pub fn check_new_pv(
    runner: &dyn Runner,
    dev: &Path,
    scan: &Report,
) -> Result<NewPv, DeviceRefusal> {
    let refuse_block = |reason: String| DeviceRefusal::NotBlock {
        dev: dev.into(),
        reason,
    };
    let rdev = block::rdev(dev).map_err(|e| refuse_block(e.to_string()))?;
    if let Some(via) = block::holds_root(rdev) {
        return Err(DeviceRefusal::Root {
            dev: dev.into(),
            via,
        });
    }
    let pv = pv_of(scan, dev);
    if let Some(vg) = pv.and_then(|p| p.vg_name.clone()) {
        return Err(DeviceRefusal::InVg {
            dev: dev.into(),
            vg,
        });
    }
    let sigs = block::signatures(runner, dev).map_err(|source| DeviceRefusal::Probe {
        dev: dev.into(),
        source,
    })?;
    let state = match sigs.get("TYPE").map(String::as_str) {
        Some(PV_SIGNATURE) if pv.is_some() => NewPv::OrphanPv,
        _ => match what_is_on(&sigs) {
            Some(what) => {
                return Err(DeviceRefusal::Signature {
                    dev: dev.into(),
                    what,
                });
            }
            None => NewPv::Blank,
        },
    };
    let mounts = block::mount_points_of(rdev);
    if let Some(m) = mounts.first() {
        return Err(DeviceRefusal::InUse {
            dev: dev.into(),
            detail: format!("mounted at {}", m.display()),
        });
    }
    let holders = crate::host::sysfs::Sysfs::host().holders(block::dev_pair(rdev));
    if !holders.is_empty() {
        return Err(DeviceRefusal::InUse {
            dev: dev.into(),
            detail: format!("held by {}", holders.join(", ")),
        });
    }
    if block::is_claimed(dev) {
        return Err(DeviceRefusal::InUse {
            dev: dev.into(),
            detail: "opened exclusively by another user".into(),
        });
    }
    Ok(state)
}
