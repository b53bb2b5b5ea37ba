//! `ReservedLUNSR` (type `reservedlun`): one LUN per VDI on an iSCSI target through
//! dm-multipath, each VDI's LUN taken with a SCSI-3 persistent reservation while active.
//!
//! What sm's LUN-per-VDI driver does (scan = the target's LUNs, VDI uuid = md5 of the
//! SCSIid, create = mark the smallest fitting LUN managed), plus what sm has not: exclusive
//! activation enforced by the array. A host that activates a VDI registers its key on every
//! path and reserves the LUN (Write Exclusive - Registrants Only); another live host is
//! refused with fault 24 naming the holder, and its writes get RESERVATION CONFLICT from the
//! array; a holder the pool reports dead is fenced with PREEMPT AND ABORT. See
//! [`exclusive`] and the `reservations` crate.
//!
//! The iSCSI sessions, multipath maps and ALUA come from the shared iSCSI-SR layer through
//! the [`Storage`] trait, which also gives the reservation engine each LUN's paths and the
//! host's multipathd; this module holds the LUN-per-VDI records and the SMAPI side of the
//! reservations (policy, keys, faults) only.

pub mod exclusive;
pub mod iscsi;
pub mod luns;

use std::path::PathBuf;
use std::sync::Arc;

use multipath::dm::Multipathd;
use reservations::{PrError, PrPath};
use sm_core::driver::{Capability, ConfigKey, Ctx, Driver, DriverInfo, VdiCreate};
use sm_core::errors::{SmCode, SmError, SmResult};
use sm_core::ids::ScsiId;
use sm_core::response::{AttachInfo, VdiLocation};

pub use iscsi::IscsiStorage;
pub use luns::LunInfo;

/// Capabilities: what sm's LUN-per-VDI driver offers, with activation.
pub const CAPABILITIES: &[Capability] = &[
    Capability::SrProbe,
    Capability::SrUpdate,
    Capability::SrMultipath,
    Capability::SrScan,
    Capability::SrAttach,
    Capability::SrDetach,
    Capability::SrCreate,
    Capability::SrDelete,
    Capability::VdiCreate,
    Capability::VdiDelete,
    Capability::VdiAttach,
    Capability::VdiDetach,
    Capability::VdiActivate,
    Capability::VdiDeactivate,
    Capability::VdiIntroduce,
];

/// device_config keys.
pub const CONFIGURATION: &[ConfigKey] = &[
    ConfigKey {
        key: "target",
        description: "IP address or hostname of the iSCSI target; a comma-separated list for several portals",
    },
    ConfigKey {
        key: "targetIQN",
        description: "the IQN of the target (omit to list the target's IQNs: fault 96)",
    },
    ConfigKey {
        key: "port",
        description: "the portal port (default 3260)",
    },
    ConfigKey {
        key: "chapuser",
        description: "CHAP user (optional)",
    },
    ConfigKey {
        key: "chappassword",
        description: "CHAP password (optional; stored as chappassword_secret)",
    },
    ConfigKey {
        key: "incoming_chapuser",
        description: "mutual CHAP user (optional)",
    },
    ConfigKey {
        key: "incoming_chappassword",
        description: "mutual CHAP password (optional)",
    },
    ConfigKey {
        key: "multihomed",
        description: "log in on every portal of the target (default: the host's multipathing setting)",
    },
    ConfigKey {
        key: "reservation-type",
        description: "SCSI-3 reservation type taken by vdi_activate: 5 (write exclusive, registrants only; default) or 6 (exclusive access, registrants only); also read from the SR's sm_config",
    },
    ConfigKey {
        key: "fencing",
        description: "when the LUN is reserved by a host the pool reports dead (or by a key of no pool host, with foreign-keys=preempt): preempt-dead (PREEMPT AND ABORT; default), preempt-dead-no-abort (PREEMPT, for arrays without PREEMPT AND ABORT) or never (fault 24); also read from the SR's sm_config",
    },
    ConfigKey {
        key: "foreign-keys",
        description: "when a key no pool host owns (another cluster's, a guest cluster's, a removed host's) is registered on or reserves the LUN: refuse (fault 24 naming the key and its initiator; default) or preempt (fenced as a dead host's key); also read from the SR's sm_config",
    },
    ConfigKey {
        key: "reservation-aptpl",
        description: "register with APTPL so registrations persist through the array's power loss: true or false (default)",
    },
];

/// The driver's contract.
pub static INFO: DriverInfo = DriverInfo {
    sr_type: "reservedlun",
    plugin: "ReservedLUNSR",
    name: "Reserved LUN per VDI",
    description: "SR plugin which represents each LUN of an iSCSI target as a VDI, reached through dm-multipath, with exclusive activation by SCSI-3 persistent reservations and fencing of dead hosts",
    vendor: "xsm project",
    copyright: "(C) xsm project contributors",
    driver_version: "1.0",
    required_api_version: "1.0",
    capabilities: CAPABILITIES,
    configuration: CONFIGURATION,
};

/// What the driver needs from the iSCSI + multipath layer, for the SR of the call.
pub trait Storage: Sync {
    /// sr_create: checks device_config and that the target answers.
    fn create(&self, cx: &Ctx<'_>) -> SmResult<()>;
    /// sr_attach: logs in on the target's portals (reference-counted per SR).
    fn attach(&self, cx: &Ctx<'_>) -> SmResult<()>;
    /// sr_detach: logs out when no other SR needs the sessions.
    fn detach(&self, cx: &Ctx<'_>) -> SmResult<()>;
    /// sr_probe: the same answers and stderr listings as MultipathLVMoISCSISR.
    fn probe(&self, cx: &Ctx<'_>) -> SmResult<String>;
    /// Every LUN of the target, as this host sees it.
    fn luns(&self, cx: &Ctx<'_>) -> SmResult<Vec<LunInfo>>;
    /// Makes `/dev/mapper/<scsi_id>` exist, served by an active/optimized TPG; returns it.
    fn open(&self, cx: &Ctx<'_>, scsi_id: &ScsiId) -> SmResult<PathBuf>;
    /// Flushes the LUN's map.
    fn close(&self, cx: &Ctx<'_>, scsi_id: &ScsiId) -> SmResult<()>;
    /// The LUN's paths (its map's SCSI disks), with their nexus ids, read now (the
    /// reservation engine's [`reservations::PathSource`]).
    fn paths(&self, cx: &Ctx<'_>, scsi_id: &ScsiId) -> Result<Vec<PrPath>, PrError>;
    /// This host's multipathd, for the maps' reservation keys.
    fn multipathd(&self, cx: &Ctx<'_>) -> Arc<dyn Multipathd>;
}

/// The ReservedLUN driver over a storage layer.
pub struct ReservedLunSr<S: Storage>(pub S);

/// The driver xapi runs as `ReservedLUNSR`: the iSCSI + multipath layer of the calling host.
pub static DRIVER: ReservedLunSr<IscsiStorage> = ReservedLunSr(IscsiStorage::host());

/// The VDI's SCSI id: its location (fault 107 when that is not a SCSI id).
fn scsi_id(cx: &Ctx<'_>) -> SmResult<ScsiId> {
    let location = match cx.req.vdi_location.as_deref().filter(|l| !l.is_empty()) {
        Some(l) => l.to_string(),
        None => {
            let x = cx.xapi()?;
            let r = x.vdi_get_by_uuid(cx.vdi_uuid()?.as_str())?;
            x.vdi_get_record(&r)?.location
        }
    };
    ScsiId::new(&location).map_err(|_| {
        SmError::msg(
            SmCode::ConfigSCSIid,
            format!("the VDI's location {location:?} is not a SCSI id"),
        )
    })
}

fn vdi_ref(cx: &Ctx<'_>) -> SmResult<String> {
    crate::vdi_record::vdi_ref(cx)
}

impl<S: Storage> Driver for ReservedLunSr<S> {
    fn info(&self) -> &'static DriverInfo {
        &INFO
    }

    fn sr_create(&self, cx: &Ctx<'_>, _size: u64) -> SmResult<()> {
        exclusive::policy(cx)?;
        self.0.create(cx)
    }

    /// Nothing on the array is ours to delete; refuses while VDIs are managed (fault 39).
    fn sr_delete(&self, cx: &Ctx<'_>) -> SmResult<()> {
        let x = cx.xapi()?;
        let managed = x
            .vdi_records_of_sr(&cx.sr_ref()?)?
            .into_iter()
            .filter(|r| r.managed)
            .count();
        if managed > 0 {
            return Err(SmError::msg(
                SmCode::SRNotEmpty,
                format!("{managed} LUNs are managed VDIs"),
            ));
        }
        Ok(())
    }

    /// Logs in, then removes this host's registrations left on LUNs it does not have active
    /// (a crash between activate and deactivate).
    fn sr_attach(&self, cx: &Ctx<'_>) -> SmResult<()> {
        exclusive::policy(cx)?;
        self.0.attach(cx)?;
        if !cx.has_session() {
            return Ok(());
        }
        let x = cx.xapi()?;
        let mine = crate::activation::host_key(&cx.req.host_ref);
        let records = x.vdi_records_of_sr(&cx.sr_ref()?)?;
        let active: Vec<String> = records
            .iter()
            .filter(|r| r.sm_config.get(&mine).map(String::as_str) == Some("RW"))
            .map(|r| r.location.clone())
            .collect();
        let luns: Vec<String> = self.0.luns(cx)?.into_iter().map(|l| l.scsi_id).collect();
        let cleaned = exclusive::clean_stale(cx, &self.0, &active, &luns)?;
        if !cleaned.is_empty() {
            tracing::warn!(luns = ?cleaned, "removed this host's stale registrations");
        }
        Ok(())
    }

    fn sr_detach(&self, cx: &Ctx<'_>) -> SmResult<()> {
        self.0.detach(cx)
    }

    fn sr_probe(&self, cx: &Ctx<'_>) -> SmResult<String> {
        self.0.probe(cx)
    }

    fn sr_scan(&self, cx: &Ctx<'_>) -> SmResult<()> {
        let luns = self.0.luns(cx)?;
        luns::scan(cx, &luns).map(drop)
    }

    fn sr_update(&self, cx: &Ctx<'_>) -> SmResult<()> {
        self.sr_scan(cx)
    }

    fn vdi_create(&self, cx: &Ctx<'_>, args: &VdiCreate) -> SmResult<VdiLocation> {
        let luns = self.0.luns(cx)?;
        luns::create(cx, &luns, args)
    }

    fn vdi_delete(&self, cx: &Ctx<'_>) -> SmResult<()> {
        luns::delete(cx, &vdi_ref(cx)?)
    }

    fn vdi_introduce(&self, cx: &Ctx<'_>) -> SmResult<VdiLocation> {
        let luns = self.0.luns(cx)?;
        luns::introduce_by_scsi_id(cx, &luns)
    }

    /// `/dev/mapper/<SCSIid>` once an active/optimized group serves it and the LUN is known to
    /// support the SR's reservation type (a LUN without PR fails here, clearly, before a VM
    /// starts on it).
    fn vdi_attach(&self, cx: &Ctx<'_>, _writable: bool) -> SmResult<AttachInfo> {
        let id = scsi_id(cx)?;
        let map = self.0.open(cx, &id)?;
        let policy = exclusive::policy(cx)?;
        self.0
            .paths(cx, &id)
            .and_then(|paths| reservations::Lu::new(id.as_str(), &paths).check_type(policy.pr_type))
            .map_err(|e| exclusive::fault(id.as_str(), e))?;
        Ok(AttachInfo {
            params: Some(map.display().to_string()),
            params_nbd: String::new(),
            o_direct: true,
            o_direct_reason: String::new(),
            xenstore_data: Default::default(),
        })
    }

    fn vdi_detach(&self, cx: &Ctx<'_>) -> SmResult<()> {
        self.0.close(cx, &scsi_id(cx)?)
    }

    fn vdi_activate(&self, cx: &Ctx<'_>, writable: bool) -> SmResult<()> {
        exclusive::activate(cx, &self.0, &vdi_ref(cx)?, &scsi_id(cx)?, writable)
    }

    fn vdi_deactivate(&self, cx: &Ctx<'_>) -> SmResult<()> {
        exclusive::deactivate(cx, &self.0, &vdi_ref(cx)?, &scsi_id(cx)?)
    }
}

#[cfg(test)]
mod tests;
