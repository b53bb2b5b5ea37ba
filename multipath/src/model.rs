//! The SNIA Multipath Management API (MMA) object model: object ids, the properties of each
//! object type, and the associations between them, held in one discovered [`Topology`].
//!
//! Objects (MMA 5.3.5): one [`Plugin`] (this crate over dm-multipath), initiator ports (iSCSI
//! sessions' initiator ports), target ports (the array's ports, by SCSI name and relative
//! port id), target port groups (per logical unit: SPC-4 reports ALUA states per LU, and LIO
//! keeps its groups per device), multipath logical units (dm-multipath maps) and path logical
//! units (one SCSI device per I_T_L nexus). The query methods of [`Topology`] carry the MMA
//! names (`GetMultipathLus` is [`Topology::multipath_lus`], `GetAssociatedPathOidList` is
//! [`Topology::associated_paths`], ...).

use std::fmt;

use serde::Serialize;
use sm_core::scsi::{AccessState, SupportedStates};

/// MMA object types (`MP_OBJECT_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectType {
    /// 1: the plugin.
    Plugin,
    /// 2: an initiator port.
    InitiatorPort,
    /// 3: a target port.
    TargetPort,
    /// 4: a multipath logical unit.
    MultipathLu,
    /// 5: a path logical unit.
    PathLu,
    /// 6: a device product.
    DeviceProduct,
    /// 7: a target port group.
    TargetPortGroup,
    /// 8: a proprietary load-balance type.
    ProprietaryLoadBalance,
}

impl ObjectType {
    /// The MMA code.
    pub fn code(self) -> u32 {
        match self {
            ObjectType::Plugin => 1,
            ObjectType::InitiatorPort => 2,
            ObjectType::TargetPort => 3,
            ObjectType::MultipathLu => 4,
            ObjectType::PathLu => 5,
            ObjectType::DeviceProduct => 6,
            ObjectType::TargetPortGroup => 7,
            ObjectType::ProprietaryLoadBalance => 8,
        }
    }
}

/// The owner id of every object: this crate is plugin 1.
pub const PLUGIN_ID: u32 = 1;

/// An object id (`MP_OID`): type, owning plugin, sequence number. Sequence numbers are
/// assigned in a stable order (by name) within one discovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Oid {
    /// Object type.
    #[serde(rename = "type")]
    pub object_type: ObjectType,
    /// Owning plugin.
    pub owner: u32,
    /// Sequence number.
    pub seq: u64,
}

impl Oid {
    /// An id of this crate's plugin.
    pub fn new(object_type: ObjectType, seq: u64) -> Oid {
        Oid {
            object_type,
            owner: PLUGIN_ID,
            seq,
        }
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.object_type.code(), self.owner, self.seq)
    }
}

/// `MP_PATH_STATE`: the state of a path logical unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PathState {
    /// 0: usable.
    Okay,
    /// 1: the path (transport, session, device) has failed.
    PathErr,
    /// 2: the path works but the LU reports an error through it.
    LuErr,
    /// 3: a reservation conflict on this path.
    Reserved,
    /// 4: the path is gone (its device was removed).
    Removed,
    /// 5: the port is changing ALUA state (or the checker has an I/O pending).
    Transitioning,
    /// 6: disabled by an administrator, otherwise operational.
    OperationalClosed,
    /// 7: disabled, and its device is not valid.
    InvalidClosed,
    /// 8: disabled, and offline.
    OfflineClosed,
    /// 9: nothing is known.
    Unknown,
}

impl PathState {
    /// The MMA code.
    pub fn code(self) -> u32 {
        match self {
            PathState::Okay => 0,
            PathState::PathErr => 1,
            PathState::LuErr => 2,
            PathState::Reserved => 3,
            PathState::Removed => 4,
            PathState::Transitioning => 5,
            PathState::OperationalClosed => 6,
            PathState::InvalidClosed => 7,
            PathState::OfflineClosed => 8,
            PathState::Unknown => 9,
        }
    }

    /// The MMA name without its prefix (`OKAY`, `PATH_ERR`, ...).
    pub fn name(self) -> &'static str {
        match self {
            PathState::Okay => "OKAY",
            PathState::PathErr => "PATH_ERR",
            PathState::LuErr => "LU_ERR",
            PathState::Reserved => "RESERVED",
            PathState::Removed => "REMOVED",
            PathState::Transitioning => "TRANSITIONING",
            PathState::OperationalClosed => "OPERATIONAL_CLOSED",
            PathState::InvalidClosed => "INVALID_CLOSED",
            PathState::OfflineClosed => "OFFLINE_CLOSED",
            PathState::Unknown => "UNKNOWN",
        }
    }

    /// Whether the path can carry I/O now.
    pub fn is_usable(self) -> bool {
        self == PathState::Okay
    }
}

impl fmt::Display for PathState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `MP_ACCESS_STATE_TYPE` of a target port group: an ALUA state, or ACTIVE for an LU without
/// asymmetric access (MMA Annex B: a synthesized group holding every port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TpgState {
    /// An SPC-4 asymmetric access state.
    Alua(AccessState),
    /// 0x10: symmetric access.
    Active,
}

impl TpgState {
    /// The MMA code (SPC codes for the ALUA states, 0x10 for ACTIVE).
    pub fn code(self) -> u32 {
        match self {
            TpgState::Alua(s) => u32::from(s.code()),
            TpgState::Active => 0x10,
        }
    }

    /// The name (`active/optimized`, ..., `active`).
    pub fn name(self) -> &'static str {
        match self {
            TpgState::Alua(s) => s.name(),
            TpgState::Active => "active",
        }
    }

    /// Whether ports in this state carry I/O.
    pub fn is_active(self) -> bool {
        match self {
            TpgState::Alua(s) => s.is_active(),
            TpgState::Active => true,
        }
    }
}

impl fmt::Display for TpgState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for TpgState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// `MP_LOAD_BALANCE_TYPE` bits.
pub mod load_balance {
    /// Unknown.
    pub const UNKNOWN: u32 = 1 << 0;
    /// Round robin (dm `round-robin`).
    pub const ROUNDROBIN: u32 = 1 << 1;
    /// Least blocks.
    pub const LEASTBLOCKS: u32 = 1 << 2;
    /// Least I/O (dm `queue-length`).
    pub const LEASTIO: u32 = 1 << 3;
    /// Device-product specific.
    pub const DEVICE_PRODUCT: u32 = 1 << 4;
    /// LBA region.
    pub const LBA_REGION: u32 = 1 << 5;
    /// Failover only (one path per group).
    pub const FAILOVER_ONLY: u32 = 1 << 6;
    /// First proprietary type: dm `service-time` (least outstanding I/O weighted by
    /// throughput), which MMA has no name for.
    pub const SERVICE_TIME: u32 = 1 << 16;
    /// Every type dm-multipath offers.
    pub const SUPPORTED: u32 = ROUNDROBIN | LEASTIO | FAILOVER_ONLY | SERVICE_TIME;

    /// The MMA type of a dm path selector (`service-time 0`, `round-robin 0`, ...).
    pub fn of_selector(selector: &str) -> u32 {
        match selector.split_whitespace().next() {
            Some("round-robin") => ROUNDROBIN,
            Some("queue-length") => LEASTIO,
            Some("service-time") => SERVICE_TIME,
            _ => UNKNOWN,
        }
    }

    /// Names of the bits set in `mask`.
    pub fn names(mask: u32) -> Vec<&'static str> {
        [
            (UNKNOWN, "unknown"),
            (ROUNDROBIN, "round-robin"),
            (LEASTBLOCKS, "least-blocks"),
            (LEASTIO, "least-io"),
            (DEVICE_PRODUCT, "device-product"),
            (LBA_REGION, "lba-region"),
            (FAILOVER_ONLY, "failover-only"),
            (SERVICE_TIME, "service-time"),
        ]
        .into_iter()
        .filter(|(b, _)| mask & b != 0)
        .map(|(_, n)| n)
        .collect()
    }
}

/// `MP_PLUGIN_PROPERTIES`: what this plugin can do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plugin {
    /// Object id.
    pub oid: Oid,
    /// Who wrote the plugin.
    pub vendor: String,
    /// The multipath driver underneath.
    pub driver_vendor: String,
    /// Plugin version.
    pub implementation_version: String,
    /// The plugin's file (the tool).
    pub file_name: String,
    /// `MP_LOAD_BALANCE_TYPE` bits the driver supports.
    pub supported_load_balance_types: u32,
    /// Their names.
    pub supported_load_balance_names: Vec<&'static str>,
    /// SetTPGAccess works (explicit ALUA through STPG).
    pub can_set_tpg_access: bool,
    /// Path override is not offered (dm-multipath has no per-LU override path).
    pub can_override_paths: bool,
    /// Paths are visible as device files (`/dev/sdX`).
    pub exposes_path_device_files: bool,
    /// Where multipath LU device files live.
    pub device_file_namespace: String,
    /// Whether only listed products are multipathed.
    pub only_supports_specified_products: bool,
    /// Auto-failback is supported (`failback` in multipath.conf).
    pub auto_failback_support: bool,
    /// Auto-probing of paths is supported (the path checker).
    pub auto_probing_support: bool,
    /// The path checker's polling interval, seconds (multipathd `polling_interval`), when known.
    pub probing_polling_rate: Option<u32>,
}

/// `MP_INITIATOR_PORT_PROPERTIES`: an iSCSI initiator port (one session's initiator side).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InitiatorPort {
    /// Object id.
    pub oid: Oid,
    /// The SCSI initiator port name (`<initiator IQN>,i,0x<ISID>`, or the IQN when the ISID
    /// is not known).
    pub port_id: String,
    /// `MP_PORT_TRANSPORT_TYPE`: always `iscsi` here.
    pub port_type: &'static str,
    /// The OS device of the port (`/sys/class/iscsi_host/hostN`).
    pub os_device_file: String,
    /// Friendly name (`hostN`).
    pub os_friendly_name: String,
    /// Initiator IQN.
    pub initiator_name: String,
    /// open-iscsi interface (`default`, ...).
    pub iface: String,
    /// Local address of the connection, when known.
    pub local_address: Option<String>,
    /// SCSI host number.
    pub scsi_host: u32,
    /// iSCSI session number (`sessionN`).
    pub session: u32,
}

/// `MP_TARGET_PORT_PROPERTIES`: a port of the array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetPort {
    /// Object id.
    pub oid: Oid,
    /// The port's SCSI name (`<target IQN>,t,0x<TPGT>`).
    pub port_id: String,
    /// Relative target port identifier.
    pub relative_port_id: u16,
    /// Target IQN.
    pub target_name: String,
    /// The portal the sessions through this port use (`address:port`), when known.
    pub portal: Option<String>,
}

/// `MP_TARGET_PORT_GROUP_PROPERTIES` of one LU's target port group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetPortGroup {
    /// Object id.
    pub oid: Oid,
    /// Target port group identifier.
    pub tpg_id: u16,
    /// Access state.
    pub access_state: TpgState,
    /// Explicit failover (SET TARGET PORT GROUPS) is possible.
    pub explicit_failover: bool,
    /// LUs cannot be moved between groups through this API.
    pub supports_lu_assignment: bool,
    /// The PREF bit: the array prefers this group.
    pub preferred_lu_path: bool,
    /// States the group supports (names).
    pub supported_states: Vec<&'static str>,
    /// Why the state is what it is (`none`, `set by STPG`, `implicit`).
    pub status: &'static str,
    /// The LU this group belongs to.
    pub lu: Oid,
    /// Its target ports.
    pub target_ports: Vec<Oid>,
}

/// One dm-multipath path group of a multipath LU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathGroup {
    /// Group number (1-based, dm's order).
    pub group: u32,
    /// Priority multipathd gave it.
    pub priority: i64,
    /// dm state (`active`, `enabled`, `disabled`).
    pub dm_state: String,
    /// Path selector (`service-time 0`).
    pub selector: String,
    /// Member paths.
    pub paths: Vec<Oid>,
}

/// `MP_MULTIPATH_LOGICAL_UNIT_PROPERTIES`: a dm-multipath map (or a SCSI LU seen through
/// several paths that has no map).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MultipathLu {
    /// Object id.
    pub oid: Oid,
    /// The name: the WWID (`3` + NAA hex for NAA-identified LUs).
    pub name: String,
    /// `MP_LOGICAL_UNIT_NAME_TYPE`: `vpd83-type3` (NAA), `vpd83-type2`, `vpd83-type1` or
    /// `device-specific`.
    pub name_type: &'static str,
    /// T10 vendor.
    pub vendor: String,
    /// Product.
    pub product: String,
    /// Revision.
    pub revision: String,
    /// The device file (`/dev/mapper/<name>`), when a map exists.
    pub device_file_name: Option<String>,
    /// The dm device (`dm-3`).
    pub dm_device: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// ALUA (TPGS) of the LU.
    pub asymmetric: bool,
    /// Implicit ALUA.
    pub implicit_alua: bool,
    /// Explicit ALUA (SET TARGET PORT GROUPS).
    pub explicit_alua: bool,
    /// The LU's current `MP_LOAD_BALANCE_TYPE`.
    pub current_load_balance_type: u32,
    /// The dm path selector.
    pub selector: String,
    /// Auto-failback enabled (dm-multipath `failback` not `manual`).
    pub auto_failback_enabled: bool,
    /// multipathd's `failback` setting for the map.
    pub failback: String,
    /// Queueing when no path is left (`no_path_retry`), as multipathd reports it.
    pub queueing: String,
    /// dm features.
    pub features: String,
    /// Hardware handler.
    pub hardware_handler: String,
    /// Logical unit group (VPD 0x83 designator type 6), when reported.
    pub logical_unit_group_id: Option<u16>,
    /// dm path groups, in dm's order.
    pub path_groups: Vec<PathGroup>,
    /// Paths that can carry I/O now.
    pub active_paths: usize,
    /// Every path.
    pub total_paths: usize,
}

/// `MP_PATH_LOGICAL_UNIT_PROPERTIES`: one path (SCSI device) of a multipath LU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathLu {
    /// Object id.
    pub oid: Oid,
    /// The SCSI device (`sdb`).
    pub device: String,
    /// Its device file (`/dev/sdb`).
    pub device_file_name: String,
    /// `H:C:T:L`.
    pub hctl: String,
    /// LUN.
    pub lun: u64,
    /// MMA path state.
    pub state: PathState,
    /// Disabled by an administrator (DisablePath).
    pub disabled: bool,
    /// Weight: the priority multipathd gave the path.
    pub weight: i64,
    /// dm state of the path (`active`, `failed`).
    pub dm_state: Option<String>,
    /// multipathd's checker state (`ready`, `faulty`, `ghost`, ...).
    pub checker_state: Option<String>,
    /// The kernel's device state (`running`, `offline`, `blocked`, ...).
    pub device_state: Option<String>,
    /// The kernel ALUA handler's view of the port (`active/optimized`, ...).
    pub kernel_access_state: Option<String>,
    /// The path's target port group.
    pub tpg_id: Option<u16>,
    /// The path's relative target port.
    pub relative_port_id: Option<u16>,
    /// iSCSI portal (`address:port`).
    pub portal: Option<String>,
    /// iSCSI session number.
    pub session: Option<u32>,
    /// Initiator port.
    pub initiator_port: Option<Oid>,
    /// Target port.
    pub target_port: Option<Oid>,
    /// Multipath LU.
    pub lu: Oid,
}

/// Everything one discovery found, with the associations between objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Topology {
    /// The plugin.
    pub plugin: Plugin,
    /// Initiator ports.
    pub initiator_ports: Vec<InitiatorPort>,
    /// Target ports.
    pub target_ports: Vec<TargetPort>,
    /// Target port groups (per LU).
    pub tpgs: Vec<TargetPortGroup>,
    /// Multipath LUs, by name.
    pub lus: Vec<MultipathLu>,
    /// Paths.
    pub paths: Vec<PathLu>,
}

impl Topology {
    /// `MP_GetPluginOidList` / `MP_GetPluginProperties`.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// `MP_GetMultipathLus`.
    pub fn multipath_lus(&self) -> Vec<Oid> {
        self.lus.iter().map(|l| l.oid).collect()
    }

    /// `MP_GetMPLogicalUnitProperties`.
    pub fn lu(&self, oid: Oid) -> Option<&MultipathLu> {
        self.lus.iter().find(|l| l.oid == oid)
    }

    /// `MP_GetAssociatedPathOidList`: the paths of an LU.
    pub fn associated_paths(&self, lu: Oid) -> Vec<Oid> {
        self.paths
            .iter()
            .filter(|p| p.lu == lu)
            .map(|p| p.oid)
            .collect()
    }

    /// `MP_GetPathLogicalUnitProperties`.
    pub fn path(&self, oid: Oid) -> Option<&PathLu> {
        self.paths.iter().find(|p| p.oid == oid)
    }

    /// `MP_GetAssociatedTPGOidList`: the target port groups of an LU.
    pub fn associated_tpgs(&self, lu: Oid) -> Vec<Oid> {
        self.tpgs
            .iter()
            .filter(|t| t.lu == lu)
            .map(|t| t.oid)
            .collect()
    }

    /// `MP_GetTargetPortGroupProperties`.
    pub fn tpg(&self, oid: Oid) -> Option<&TargetPortGroup> {
        self.tpgs.iter().find(|t| t.oid == oid)
    }

    /// `MP_GetMPLuOidListFromTPG`: the LUs a group serves.
    pub fn mp_lus_from_tpg(&self, tpg: Oid) -> Vec<Oid> {
        self.tpg(tpg).map(|t| vec![t.lu]).unwrap_or_default()
    }

    /// `MP_GetTargetPortOidList`: the target ports of a group.
    pub fn target_ports_of_tpg(&self, tpg: Oid) -> Vec<Oid> {
        self.tpg(tpg)
            .map(|t| t.target_ports.clone())
            .unwrap_or_default()
    }

    /// `MP_GetTargetPortProperties`.
    pub fn target_port(&self, oid: Oid) -> Option<&TargetPort> {
        self.target_ports.iter().find(|t| t.oid == oid)
    }

    /// `MP_GetInitiatorPortOidList`.
    pub fn initiator_port_oids(&self) -> Vec<Oid> {
        self.initiator_ports.iter().map(|i| i.oid).collect()
    }

    /// `MP_GetInitiatorPortProperties`.
    pub fn initiator_port(&self, oid: Oid) -> Option<&InitiatorPort> {
        self.initiator_ports.iter().find(|i| i.oid == oid)
    }

    /// The LU named `name`: its WWID, its map name, its dm device (`dm-3`) or its device file
    /// (`/dev/mapper/<name>`).
    pub fn find_lu(&self, name: &str) -> Option<&MultipathLu> {
        let short = name.strip_prefix("/dev/mapper/").unwrap_or(name);
        let short = short.strip_prefix("/dev/").unwrap_or(short);
        self.lus.iter().find(|l| {
            l.name == short
                || l.dm_device.as_deref() == Some(short)
                || l.device_file_name.as_deref() == Some(name)
        })
    }

    /// The path whose device is `dev` (`sdb` or `/dev/sdb`) or whose H:C:T:L is `dev`.
    pub fn find_path(&self, dev: &str) -> Option<&PathLu> {
        let short = dev.strip_prefix("/dev/").unwrap_or(dev);
        self.paths
            .iter()
            .find(|p| p.device == short || p.hctl == short)
    }

    /// The group `tpg_id` of an LU.
    pub fn lu_tpg(&self, lu: Oid, tpg_id: u16) -> Option<&TargetPortGroup> {
        self.tpgs.iter().find(|t| t.lu == lu && t.tpg_id == tpg_id)
    }

    /// The paths of an LU, as objects.
    pub fn lu_paths(&self, lu: Oid) -> impl Iterator<Item = &PathLu> {
        self.paths.iter().filter(move |p| p.lu == lu)
    }

    /// The groups of an LU, as objects.
    pub fn lu_tpgs(&self, lu: Oid) -> impl Iterator<Item = &TargetPortGroup> {
        self.tpgs.iter().filter(move |t| t.lu == lu)
    }
}

/// The MMA name of a TPG status code.
pub fn tpg_status_name(code: u8) -> &'static str {
    match code {
        0 => "none",
        1 => "set by STPG",
        2 => "implicit",
        _ => "reserved",
    }
}

/// The names of the states in a supported-states byte.
pub fn supported_state_names(s: SupportedStates) -> Vec<&'static str> {
    AccessState::ALL
        .into_iter()
        .filter(|st| s.supports(*st))
        .map(AccessState::name)
        .collect()
}
