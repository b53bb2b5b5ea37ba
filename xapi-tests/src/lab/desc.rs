//! The lab description (`lab.json`), written by the guest's setup once the topology is up.
//!
//! Field names follow the JSON exactly; docs/lab.md shows a complete example.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sm_core::secret::Secret;

/// The description schema version this module reads.
pub const DESC_VERSION: u32 = 1;

/// Which hosts the lab has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Topology {
    /// One guest: the array and host A.
    One,
    /// Two guests: the array and host A, and host B with its own kernel.
    Two,
}

/// The whole lab.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabDesc {
    /// Schema version ([`DESC_VERSION`]).
    pub version: u32,
    /// One host or two.
    pub topology: Topology,
    /// The array's iSCSI target.
    pub target: TargetDesc,
    /// The LUNs the setup created, in LUN order.
    pub luns: Vec<LunDesc>,
    /// The hosts.
    pub hosts: HostsDesc,
    /// An initiator name the array accepts that no host uses.
    pub spare_iqn: String,
    /// Where the workspace's binaries (`xsm`, `lab-agent`, ...) are, on every host.
    pub bin_dir: PathBuf,
    /// The run's log directory (one subdirectory per guest), shared with the machine running the lab.
    pub log_dir: PathBuf,
}

/// The array's iSCSI target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetDesc {
    /// Target IQN.
    pub iqn: String,
    /// Portal N is iSCSI TPG N and ALUA target port group N.
    pub portals: Vec<PortalDesc>,
    /// CHAP credentials the initiators log in with, when the array requires CHAP.
    pub chap: Option<ChapDesc>,
    /// Credentials the target answers with (mutual CHAP), when set up.
    pub mutual_chap: Option<ChapDesc>,
    /// Whether LIO's PR state directories were created at setup (without them a PR OUT is
    /// applied but reported as failed).
    pub pr_dirs: bool,
    /// Whether the LUNs advertise UNMAP / WRITE SAME with unmap (emulate_tpu/tpws).
    pub unmap: bool,
}

/// One portal: an iSCSI TPG in its own ALUA target port group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortalDesc {
    /// `address:port`.
    pub address: String,
    /// iSCSI target portal group tag.
    pub tpg: u16,
    /// ALUA target port group id.
    pub tg_pt_gp: u16,
    /// ALUA target port group name on the array.
    pub tg_pt_gp_name: String,
    /// The group's ALUA state at setup (SPC code: 0 active/optimized, 1 active/non-optimized).
    pub alua_state: u8,
    /// Whether the portal was enabled when the description was written.
    pub enabled: bool,
}

/// CHAP credentials.
#[derive(Clone, Serialize, Deserialize)]
pub struct ChapDesc {
    /// User name.
    pub user: String,
    /// Secret (kept out of Debug output).
    pub secret: String,
}

impl ChapDesc {
    /// The secret, masked by type.
    pub fn secret(&self) -> Secret {
        Secret::new(self.secret.clone())
    }
}

impl std::fmt::Debug for ChapDesc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChapDesc")
            .field("user", &self.user)
            .field("secret", &Secret::MASK)
            .finish()
    }
}

/// One LUN of the array and how each host sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LunDesc {
    /// LUN number (the same on both portals).
    pub lun: u32,
    /// VPD unit serial number (hex, so WWIDs differ).
    pub serial: String,
    /// SCSI id as `scsi_id -g` prints it (`36001405...`), also the multipath map name.
    pub wwid: String,
    /// Size in bytes.
    pub size: u64,
    /// LIO backstore (`fileio_0/lunN`).
    pub backstore: String,
    /// The sparse file backing the LUN on the array.
    pub file: PathBuf,
    /// Host A's view.
    pub host_a: Option<HostLunDesc>,
    /// Host B's view (two-host topology).
    pub host_b: Option<HostLunDesc>,
}

/// How one host sees a LUN.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostLunDesc {
    /// `/dev/mapper/<wwid>`.
    pub map: Option<PathBuf>,
    /// The map's kernel name (`dm-N`).
    pub dm: Option<String>,
    /// SCSI paths, in portal order.
    pub paths: Vec<PathDesc>,
}

impl HostLunDesc {
    /// The path through portal (iSCSI TPG) `tpg`.
    pub fn path_on(&self, tpg: u16) -> Option<&PathDesc> {
        self.paths.iter().find(|p| p.tpg == tpg)
    }
}

/// One SCSI path of a host to a LUN.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PathDesc {
    /// Kernel name (`sda`).
    pub dev: String,
    /// Portal `address:port` of the session.
    pub portal: String,
    /// iSCSI TPG of the session.
    pub tpg: u16,
    /// `host:channel:target:lun`.
    pub hctl: String,
    /// iSCSI session number on that host.
    pub session: u32,
}

impl PathDesc {
    /// `/dev/<dev>`.
    pub fn dev_path(&self) -> PathBuf {
        Path::new("/dev").join(&self.dev)
    }
}

/// The hosts of the lab.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostsDesc {
    /// Host A (the guest that also runs the array and the tests).
    pub a: HostDesc,
    /// Host B (two-host topology).
    pub b: Option<HostDesc>,
}

/// One host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostDesc {
    /// Initiator IQN.
    pub iqn: String,
    /// Host name.
    pub hostname: String,
    /// Kernel release.
    pub kernel: String,
    /// The kernel's boot id (differs between hosts: each has its own kernel).
    pub boot_id: String,
    /// `address:port` of the lab agent, for a host reached through it.
    pub agent: Option<String>,
}

impl LabDesc {
    /// The LUN numbered `lun`.
    pub fn lun(&self, lun: u32) -> Option<&LunDesc> {
        self.luns.iter().find(|l| l.lun == lun)
    }

    /// The portal of iSCSI TPG `tpg`.
    pub fn portal(&self, tpg: u16) -> Option<&PortalDesc> {
        self.target.portals.iter().find(|p| p.tpg == tpg)
    }
}
