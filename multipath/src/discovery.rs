//! Discovery: sysfs, SCSI (SG_IO) and multipathd joined into one MMA [`Topology`].
//!
//! 1. sysfs: every SCSI disk (H:C:T:L, iSCSI session, device state, the kernel ALUA
//!    handler's access state), every iSCSI session (target, portal, initiator), dm maps.
//! 2. multipathd (`show maps json`): maps, path groups, selectors, dm and checker states.
//! 3. SCSI, through the one SG_IO transport: VPD 0x83 per path (relative target port, target
//!    port group, target port name, NAA WWID), then per LU one standard INQUIRY (vendor,
//!    TPGS) and one REPORT TARGET PORT GROUPS (every group's state), each through the first
//!    path that answers. With [`VpdSource::KernelCache`] the per-path VPD comes from the
//!    kernel's cached copy (`device/vpd_pg83`) and SG_IO is only used when it is missing.
//!
//! For `n` LUs of `p` paths that is `n * (p + 2)` SCSI commands (`n * 2` with the cache).

use std::collections::{BTreeMap, BTreeSet};

use sm_core::scsi::{
    self, AccessState, Condition, DeviceId, ScsiError, StandardInquiry, TargetPortGroups, Tpgs,
};

use crate::admin;
use crate::dm::{self, Map};
use crate::error::Result;
use crate::model::{
    InitiatorPort, MultipathLu, ObjectType, Oid, PathGroup, PathLu, PathState, Plugin, TargetPort,
    TargetPortGroup, Topology, TpgState, load_balance, supported_state_names, tpg_status_name,
};
use crate::system::System;
use sm_core::host::sysfs::{IscsiSession, ScsiDisk};

/// Where the per-path VPD page 0x83 comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VpdSource {
    /// INQUIRY VPD 0x83 through each path (SG_IO).
    #[default]
    Device,
    /// The kernel's cached page (`/sys/block/sdX/device/vpd_pg83`), SG_IO when missing.
    KernelCache,
}

/// What to discover.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Where per-path identity comes from.
    pub vpd: VpdSource,
    /// Only these LUs (WWIDs); every LU when `None`. Other LUs get no SCSI command.
    pub only: Option<Vec<String>>,
}

impl Options {
    /// Discovery of the LUs named `wwids` only.
    pub fn only(wwids: &[&str]) -> Options {
        Options {
            only: Some(wwids.iter().map(|w| w.to_string()).collect()),
            ..Options::default()
        }
    }
}

/// What SCSI told about one path.
#[derive(Debug, Clone, Default)]
struct PathProbe {
    id: Option<DeviceId>,
    error: Option<Condition>,
}

/// What SCSI told about one LU.
#[derive(Debug, Clone, Default)]
struct LuProbe {
    inquiry: Option<StandardInquiry>,
    groups: Option<TargetPortGroups>,
}

/// One LU being assembled: its WWID, its map, its disks.
struct LuDraft<'a> {
    wwid: String,
    map: Option<&'a Map>,
    disks: Vec<&'a ScsiDisk>,
}

/// The WWID the kernel gives a disk (`naa.6001...` -> `36001...`), else from its cached VPD.
pub fn disk_wwid(sys: &System, d: &ScsiDisk) -> Option<String> {
    if let Some(w) = sys
        .sysfs
        .read(&format!("/sys/block/{}/device/wwid", d.name))
    {
        if let Some(naa) = w.strip_prefix("naa.") {
            return Some(format!("3{}", naa.to_ascii_lowercase()));
        }
        if let Some(eui) = w.strip_prefix("eui.") {
            return Some(format!("2{}", eui.to_ascii_lowercase()));
        }
    }
    d.vpd_pg83
        .as_deref()
        .and_then(|b| scsi::wire::vpd::parse_device_id(b).ok())
        .and_then(|id| id.wwid())
}

fn probe_path(sys: &System, d: &ScsiDisk, source: VpdSource) -> PathProbe {
    let cached = || {
        d.vpd_pg83
            .as_deref()
            .and_then(|b| scsi::wire::vpd::parse_device_id(b).ok())
    };
    if source == VpdSource::KernelCache
        && let Some(id) = cached()
    {
        return PathProbe {
            id: Some(id),
            error: None,
        };
    }
    match sys
        .scsi
        .open(&d.name)
        .and_then(|t| scsi::vpd_device_id(t.as_ref()))
    {
        Ok(id) => PathProbe {
            id: Some(id),
            error: None,
        },
        Err(e) => {
            tracing::debug!(device = %d.name, "VPD 0x83 failed ({e}); using the kernel's copy");
            PathProbe {
                id: cached(),
                error: Some(e.condition()),
            }
        }
    }
}

/// Sends `f` through the paths in order until one answers.
fn first_answer<T>(
    sys: &System,
    paths: &[&ScsiDisk],
    what: &str,
    f: impl Fn(&dyn scsi::ScsiTransport) -> std::result::Result<T, ScsiError>,
) -> Option<T> {
    for d in paths {
        match sys.scsi.open(&d.name).and_then(|t| f(t.as_ref())) {
            Ok(v) => return Some(v),
            Err(e) => tracing::debug!(device = %d.name, "{what} failed: {e}"),
        }
    }
    None
}

/// Paths ordered for LU-wide commands: running devices on active ports first.
fn command_order<'a>(
    disks: &[&'a ScsiDisk],
    probes: &BTreeMap<String, PathProbe>,
) -> Vec<&'a ScsiDisk> {
    let mut v = disks.to_vec();
    v.sort_by_key(|d| {
        let running = d.state == "running";
        let active = d
            .access_state
            .as_deref()
            .is_some_and(|s| s.starts_with("active"));
        let answered = probes.get(&d.name).is_some_and(|p| p.error.is_none());
        (!answered, !running, !active, d.name.clone())
    });
    v
}

fn probe_lu(sys: &System, disks: &[&ScsiDisk], probes: &BTreeMap<String, PathProbe>) -> LuProbe {
    let order = command_order(disks, probes);
    LuProbe {
        inquiry: first_answer(sys, &order, "INQUIRY", scsi::inquiry_standard),
        groups: first_answer(
            sys,
            &order,
            "REPORT TARGET PORT GROUPS",
            scsi::report_target_port_groups_standard,
        ),
    }
}

/// The kernel ALUA handler's state text as an access state.
fn kernel_state(s: &str) -> Option<AccessState> {
    AccessState::ALL.into_iter().find(|a| a.name() == s)
}

/// MP_PATH_STATE from what the kernel, multipathd and SCSI say about a path.
fn path_state(
    disk: Option<&ScsiDisk>,
    session: Option<&IscsiSession>,
    mp: Option<&dm::MapPath>,
    tpg: Option<TpgState>,
    probe_error: Option<&Condition>,
    disabled: bool,
) -> PathState {
    let Some(disk) = disk else {
        return if disabled {
            PathState::InvalidClosed
        } else {
            PathState::Removed
        };
    };
    let session_up = session.is_none_or(IscsiSession::is_logged_in);
    if disabled {
        return if session_up {
            PathState::OperationalClosed
        } else {
            PathState::OfflineClosed
        };
    }
    if matches!(probe_error, Some(Condition::ReservationConflict)) {
        return PathState::Reserved;
    }
    let checker = mp.map(|p| p.chk_st.as_str());
    if tpg == Some(TpgState::Alua(AccessState::Transitioning))
        || matches!(checker, Some("i/o pending"))
        || matches!(
            probe_error,
            Some(Condition::NotReady(scsi::NotReady::Transitioning))
        )
    {
        return PathState::Transitioning;
    }
    let device_up = disk.state == "running";
    let dm_failed = mp.is_some_and(|p| p.dm_st == "failed");
    let checker_down = matches!(checker, Some("faulty" | "shaky" | "failed" | "i/o timeout"));
    let transport_error = matches!(
        probe_error,
        Some(Condition::Transport { .. } | Condition::Timeout | Condition::Io(_))
    );
    if !device_up || !session_up || dm_failed || checker_down || transport_error {
        return PathState::PathErr;
    }
    match probe_error {
        Some(
            Condition::Sense { .. }
            | Condition::NotReady(
                scsi::NotReady::LuCommunicationFailure | scsi::NotReady::Other { .. },
            ),
        ) => PathState::LuErr,
        _ if mp.is_none() && checker.is_none() && session.is_none() => PathState::Unknown,
        _ => PathState::Okay,
    }
}

fn lu_name_type(wwid: &str) -> &'static str {
    match wwid.chars().next() {
        Some('3') => "vpd83-type3",
        Some('2') => "vpd83-type2",
        Some('1') => "vpd83-type1",
        _ => "device-specific",
    }
}

/// The plugin's properties (no I/O: the polling rate needs `show config`, see
/// [`plugin_with_config`]).
pub fn plugin() -> Plugin {
    Plugin {
        oid: Oid::new(ObjectType::Plugin, 0),
        vendor: "xsm".into(),
        driver_vendor: "Linux dm-multipath (multipath-tools)".into(),
        implementation_version: env!("CARGO_PKG_VERSION").into(),
        file_name: "xsm mpath".into(),
        supported_load_balance_types: load_balance::SUPPORTED,
        supported_load_balance_names: load_balance::names(load_balance::SUPPORTED),
        can_set_tpg_access: true,
        can_override_paths: false,
        exposes_path_device_files: true,
        device_file_namespace: "/dev/mapper/".into(),
        only_supports_specified_products: false,
        auto_failback_support: true,
        auto_probing_support: true,
        probing_polling_rate: None,
    }
}

/// The plugin's properties with multipathd's polling interval.
pub fn plugin_with_config(sys: &System) -> Result<Plugin> {
    let mut p = plugin();
    p.probing_polling_rate = dm::polling_interval(sys.multipathd.as_ref())?;
    Ok(p)
}

/// What discovery reads from the host before any SCSI command: sysfs and multipathd.
struct HostView {
    disks: Vec<ScsiDisk>,
    sessions: BTreeMap<u32, IscsiSession>,
    maps: Vec<Map>,
    /// Paths an administrator disabled: (H:C:T:L, device).
    disabled: Vec<(String, String)>,
}

/// Step 1: sysfs (disks, iSCSI sessions), multipathd's maps, the disabled paths.
fn gather(sys: &System) -> Result<HostView> {
    Ok(HostView {
        disks: sys.sysfs.scsi_disks(),
        sessions: sys
            .sysfs
            .iscsi_sessions()
            .into_iter()
            .map(|s| (s.sid, s))
            .collect(),
        maps: dm::show_maps(sys.multipathd.as_ref())?,
        disabled: admin::disabled_paths(sys),
    })
}

/// Step 2: the LUs, by WWID: every map, then every disk outside a map grouped by its WWID.
fn lu_drafts<'a>(
    sys: &System,
    host: &'a HostView,
    opts: &Options,
) -> BTreeMap<String, LuDraft<'a>> {
    let wanted = |w: &str| opts.only.as_ref().is_none_or(|o| o.iter().any(|x| x == w));
    let mut drafts: BTreeMap<String, LuDraft<'_>> = BTreeMap::new();
    let mut in_map: BTreeMap<&str, &str> = BTreeMap::new();
    for m in &host.maps {
        if m.uuid.is_empty() || !wanted(&m.uuid) {
            continue;
        }
        for (_, p) in m.paths() {
            in_map.insert(p.dev.as_str(), m.uuid.as_str());
        }
        drafts.insert(
            m.uuid.clone(),
            LuDraft {
                wwid: m.uuid.clone(),
                map: Some(m),
                disks: Vec::new(),
            },
        );
    }
    for d in &host.disks {
        let wwid = match in_map.get(d.name.as_str()) {
            Some(w) => w.to_string(),
            None => match disk_wwid(sys, d) {
                Some(w) if wanted(&w) => w,
                _ => continue,
            },
        };
        drafts
            .entry(wwid.clone())
            .or_insert_with(|| LuDraft {
                wwid,
                map: None,
                disks: Vec::new(),
            })
            .disks
            .push(d);
    }
    drafts
}

/// What SCSI told about every path and LU.
struct Probes {
    /// By path device.
    paths: BTreeMap<String, PathProbe>,
    /// By LU WWID.
    lus: BTreeMap<String, LuProbe>,
}

impl Probes {
    /// The identity (VPD 0x83) path `name` reported.
    fn id(&self, name: &str) -> Option<&DeviceId> {
        self.paths.get(name).and_then(|p| p.id.as_ref())
    }
}

/// Step 3: SCSI: VPD per path, INQUIRY + RTPG per LU.
fn probe_drafts(sys: &System, drafts: &BTreeMap<String, LuDraft<'_>>, vpd: VpdSource) -> Probes {
    let mut probes = Probes {
        paths: BTreeMap::new(),
        lus: BTreeMap::new(),
    };
    for lu in drafts.values() {
        for d in &lu.disks {
            probes.paths.insert(d.name.clone(), probe_path(sys, d, vpd));
        }
        probes
            .lus
            .insert(lu.wwid.clone(), probe_lu(sys, &lu.disks, &probes.paths));
    }
    probes
}

/// Step 4: initiator ports: one per iSCSI session that carries a path (every session when
/// discovering every LU).
fn initiator_ports(
    host: &HostView,
    drafts: &BTreeMap<String, LuDraft<'_>>,
    opts: &Options,
) -> Vec<InitiatorPort> {
    let used_sessions: BTreeSet<u32> = drafts
        .values()
        .flat_map(|l| l.disks.iter().filter_map(|d| d.session))
        .collect();
    host.sessions
        .values()
        .filter(|s| used_sessions.contains(&s.sid) || opts.only.is_none())
        .enumerate()
        .map(|(i, s)| InitiatorPort {
            oid: Oid::new(ObjectType::InitiatorPort, i as u64 + 1),
            port_id: match &s.isid {
                Some(isid) => format!("{},i,0x{isid}", s.initiator),
                None => s.initiator.clone(),
            },
            port_type: "iscsi",
            os_device_file: s
                .host
                .map(|h| format!("/sys/class/iscsi_host/host{h}"))
                .unwrap_or_default(),
            os_friendly_name: s.host.map(|h| format!("host{h}")).unwrap_or_default(),
            initiator_name: s.initiator.clone(),
            iface: s.iface.clone(),
            local_address: s.local_address.clone(),
            scsi_host: s.host.unwrap_or(0),
            session: s.sid,
        })
        .collect()
}

/// A target port as a path names it: (port name, relative port id, target name, portal).
type PortKey = (String, u16, String, Option<String>);

/// The target port path `d` (identity `id`) goes through, named by SCSI name and relative
/// port id (from the session when the VPD names no port).
fn port_key(
    sessions: &BTreeMap<u32, IscsiSession>,
    d: &ScsiDisk,
    id: &DeviceId,
) -> Option<PortKey> {
    let rtpi = id.relative_target_port()?.0;
    let s = d.session.and_then(|sid| sessions.get(&sid));
    let target = id
        .target_device_name()
        .map(str::to_string)
        .or_else(|| s.map(|s| s.target.clone()))
        .unwrap_or_default();
    let name = id
        .target_port_name()
        .map(str::to_string)
        .or_else(|| s.and_then(|s| s.tpgt.map(|t| format!("{},t,0x{t:04x}", s.target))))
        .unwrap_or_else(|| format!("{target},rtpi,{rtpi}"));
    Some((name, rtpi, target, s.and_then(IscsiSession::portal)))
}

/// Step 5: target ports, by SCSI name and relative port id.
fn target_ports(
    host: &HostView,
    drafts: &BTreeMap<String, LuDraft<'_>>,
    probes: &Probes,
) -> Vec<TargetPort> {
    let mut keys: BTreeMap<(String, u16), (String, Option<String>)> = BTreeMap::new();
    for lu in drafts.values() {
        for d in &lu.disks {
            if let Some(id) = probes.id(&d.name)
                && let Some((name, rtpi, target, portal)) = port_key(&host.sessions, d, id)
            {
                keys.entry((name, rtpi)).or_insert((target, portal));
            }
        }
    }
    keys.into_iter()
        .enumerate()
        .map(|(i, ((name, rtpi), (target, portal)))| TargetPort {
            oid: Oid::new(ObjectType::TargetPort, i as u64 + 1),
            port_id: name,
            relative_port_id: rtpi,
            target_name: target,
            portal,
        })
        .collect()
}

/// What the per-LU steps look things up in.
struct Joined<'a> {
    host: &'a HostView,
    probes: &'a Probes,
    target_ports: &'a [TargetPort],
    iport_of_session: BTreeMap<u32, Oid>,
}

impl Joined<'_> {
    /// The target port object path `d` goes through.
    fn target_port(&self, d: &ScsiDisk) -> Option<Oid> {
        let id = self.probes.id(&d.name)?;
        let (name, rtpi, _, _) = port_key(&self.host.sessions, d, id)?;
        self.target_ports
            .iter()
            .find(|t| t.port_id == name && t.relative_port_id == rtpi)
            .map(|t| t.oid)
    }

    /// The target ports of `lu`'s paths in group `tpg_id` (every group: `None`).
    fn ports_of(&self, lu: &LuDraft<'_>, tpg_id: Option<u16>) -> Vec<Oid> {
        let mut v: Vec<Oid> = lu
            .disks
            .iter()
            .filter(|d| {
                tpg_id.is_none_or(|want| {
                    self.probes
                        .id(&d.name)
                        .and_then(DeviceId::target_port_group)
                        .is_some_and(|g| g.0 == want)
                })
            })
            .filter_map(|d| self.target_port(d))
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Step 6a: `lu`'s target port groups, by id (object ids not yet assigned): RTPG's answer;
/// without one, the groups the paths name with the kernel's view of their state; a symmetric
/// LU gets one synthesized group holding every port (MMA Annex B).
fn lu_tpgs(j: &Joined<'_>, lu: &LuDraft<'_>, lu_oid: Oid, lp: &LuProbe) -> Vec<TargetPortGroup> {
    let tpgs_field = lp.inquiry.as_ref().map_or(Tpgs::None, |i| i.tpgs);
    let mut lu_tpgs: Vec<TargetPortGroup> = Vec::new();
    if let Some(groups) = &lp.groups {
        for g in &groups.groups {
            lu_tpgs.push(TargetPortGroup {
                oid: Oid::new(ObjectType::TargetPortGroup, 0),
                tpg_id: g.id.0,
                access_state: TpgState::Alua(g.state),
                explicit_failover: tpgs_field.explicit(),
                supports_lu_assignment: false,
                preferred_lu_path: g.pref,
                supported_states: supported_state_names(g.supported),
                status: tpg_status_name(g.status.code()),
                lu: lu_oid,
                target_ports: j.ports_of(lu, Some(g.id.0)),
            });
        }
    } else {
        let mut seen = BTreeSet::new();
        for d in &lu.disks {
            let Some(tpg) = j.probes.id(&d.name).and_then(DeviceId::target_port_group) else {
                continue;
            };
            if !seen.insert(tpg.0) {
                continue;
            }
            let state = d
                .access_state
                .as_deref()
                .and_then(kernel_state)
                .map_or(TpgState::Active, TpgState::Alua);
            lu_tpgs.push(TargetPortGroup {
                oid: Oid::new(ObjectType::TargetPortGroup, 0),
                tpg_id: tpg.0,
                access_state: state,
                explicit_failover: tpgs_field.explicit(),
                supports_lu_assignment: false,
                preferred_lu_path: d.preferred_path.unwrap_or(false),
                supported_states: Vec::new(),
                status: "unknown (RTPG failed)",
                lu: lu_oid,
                target_ports: j.ports_of(lu, Some(tpg.0)),
            });
        }
    }
    if lu_tpgs.is_empty() && !lu.disks.is_empty() && !tpgs_field.is_alua() {
        lu_tpgs.push(TargetPortGroup {
            oid: Oid::new(ObjectType::TargetPortGroup, 0),
            tpg_id: 0,
            access_state: TpgState::Active,
            explicit_failover: false,
            supports_lu_assignment: false,
            preferred_lu_path: false,
            supported_states: Vec::new(),
            status: "synthesized (symmetric LU)",
            lu: lu_oid,
            target_ports: j.ports_of(lu, None),
        });
    }
    lu_tpgs.sort_by_key(|t| t.tpg_id);
    lu_tpgs
}

/// Step 6b: `lu`'s paths (the map's, also those whose device is gone, and the LU's disks),
/// each with its state, in H:C:T:L order (object ids not yet assigned).
fn lu_paths(
    j: &Joined<'_>,
    lu: &LuDraft<'_>,
    lu_oid: Oid,
    lu_tpgs: &[TargetPortGroup],
) -> Vec<PathLu> {
    let state_of_tpg = |id: Option<u16>| {
        id.and_then(|id| lu_tpgs.iter().find(|t| t.tpg_id == id))
            .map(|t| t.access_state)
    };
    let mut names: Vec<String> = lu.disks.iter().map(|d| d.name.clone()).collect();
    if let Some(m) = lu.map {
        for (_, p) in m.paths() {
            if !names.contains(&p.dev) {
                names.push(p.dev.clone());
            }
        }
    }
    let mut lu_paths = Vec::new();
    for name in names {
        let disk = lu.disks.iter().copied().find(|d| d.name == name);
        let mp = lu
            .map
            .and_then(|m| m.paths().find(|(_, p)| p.dev == name).map(|(_, p)| p));
        let probe = j.probes.paths.get(&name);
        let id = probe.and_then(|p| p.id.as_ref());
        let session = disk
            .and_then(|d| d.session)
            .and_then(|s| j.host.sessions.get(&s));
        let tpg_id = id.and_then(DeviceId::target_port_group).map(|t| t.0);
        let rtpi = id.and_then(DeviceId::relative_target_port).map(|r| r.0);
        let hctl = disk.map(ScsiDisk::hctl).unwrap_or_default();
        let is_disabled = j
            .host
            .disabled
            .iter()
            .any(|(h, dev)| (!hctl.is_empty() && *h == hctl) || *dev == name);
        let state = path_state(
            disk,
            session,
            mp,
            state_of_tpg(tpg_id),
            probe.and_then(|p| p.error.as_ref()),
            is_disabled,
        );
        lu_paths.push(PathLu {
            oid: Oid::new(ObjectType::PathLu, 0),
            device_file_name: format!("/dev/{name}"),
            hctl,
            lun: disk.map_or(0, |d| d.lun),
            state,
            disabled: is_disabled,
            weight: mp.map_or(0, |p| p.pri),
            dm_state: mp.map(|p| p.dm_st.clone()),
            checker_state: mp.map(|p| p.chk_st.clone()),
            device_state: disk.map(|d| d.state.clone()),
            kernel_access_state: disk.and_then(|d| d.access_state.clone()),
            tpg_id,
            relative_port_id: rtpi,
            portal: session.and_then(IscsiSession::portal),
            session: disk.and_then(|d| d.session),
            initiator_port: disk
                .and_then(|d| d.session)
                .and_then(|s| j.iport_of_session.get(&s).copied()),
            target_port: match (disk, id) {
                (Some(d), Some(_)) => j.target_port(d),
                _ => None,
            },
            lu: lu_oid,
            device: name,
        });
    }
    lu_paths.sort_by(|a, b| {
        (a.hctl.is_empty(), &a.hctl, &a.device).cmp(&(b.hctl.is_empty(), &b.hctl, &b.device))
    });
    lu_paths
}

/// Step 6c: the LU object: identity from INQUIRY (else multipathd, else sysfs), ALUA support,
/// the map's path groups over `lu_paths` (numbered), path counts.
fn multipath_lu(
    j: &Joined<'_>,
    lu: &LuDraft<'_>,
    lu_oid: Oid,
    lp: &LuProbe,
    lu_paths: &[PathLu],
) -> MultipathLu {
    let tpgs_field = lp.inquiry.as_ref().map_or(Tpgs::None, |i| i.tpgs);
    let first = lu.disks.first();
    let path_oid = |dev: &str| lu_paths.iter().find(|p| p.device == dev).map(|p| p.oid);
    let path_groups: Vec<PathGroup> = lu
        .map
        .map(|m| {
            m.path_groups
                .iter()
                .map(|g| PathGroup {
                    group: g.group,
                    priority: g.pri,
                    dm_state: g.dm_st.clone(),
                    selector: g.selector.clone(),
                    paths: g.paths.iter().filter_map(|p| path_oid(&p.dev)).collect(),
                })
                .collect()
        })
        .unwrap_or_default();
    let selector = path_groups
        .first()
        .map(|g| g.selector.clone())
        .unwrap_or_default();
    let inq = lp.inquiry.as_ref();
    let text = |a: Option<&str>, b: Option<String>| {
        a.map(str::to_string)
            .filter(|s| !s.is_empty())
            .or(b)
            .unwrap_or_default()
    };
    let lu_group = first.and_then(|d| j.probes.id(&d.name)).and_then(|id| {
        id.lu_designators().find_map(|d| match d {
            scsi::Designator::LogicalUnitGroup(g) => Some(*g),
            _ => None,
        })
    });
    let active = lu_paths.iter().filter(|p| p.state.is_usable()).count();
    MultipathLu {
        oid: lu_oid,
        name: lu.wwid.clone(),
        name_type: lu_name_type(&lu.wwid),
        vendor: text(
            inq.map(|i| i.vendor.as_str()),
            lu.map
                .map(|m| m.vend.clone())
                .or(first.map(|d| d.vendor.clone())),
        ),
        product: text(
            inq.map(|i| i.product.as_str()),
            lu.map
                .map(|m| m.prod.clone())
                .or(first.map(|d| d.model.clone())),
        ),
        revision: text(
            inq.map(|i| i.revision.as_str()),
            lu.map
                .map(|m| m.rev.clone())
                .or(first.map(|d| d.rev.clone())),
        ),
        device_file_name: lu.map.map(|m| format!("/dev/mapper/{}", m.name)),
        dm_device: lu.map.map(|m| m.sysfs.clone()).filter(|s| !s.is_empty()),
        size: lu.disks.iter().map(|d| d.size).max().unwrap_or(0),
        asymmetric: tpgs_field.is_alua(),
        implicit_alua: tpgs_field.implicit(),
        explicit_alua: tpgs_field.explicit(),
        current_load_balance_type: load_balance::of_selector(&selector),
        selector,
        auto_failback_enabled: lu
            .map
            .is_some_and(|m| !matches!(m.failback.as_str(), "manual" | "-" | "")),
        failback: lu.map.map(|m| m.failback.clone()).unwrap_or_default(),
        queueing: lu.map.map(|m| m.queueing.clone()).unwrap_or_default(),
        features: lu.map.map(|m| m.features.clone()).unwrap_or_default(),
        hardware_handler: lu.map.map(|m| m.hwhandler.clone()).unwrap_or_default(),
        logical_unit_group_id: lu_group,
        path_groups,
        active_paths: active,
        total_paths: lu_paths.len(),
    }
}

/// Discovers the multipath topology of the host: sysfs and multipathd ([`gather`]), the LUs
/// ([`lu_drafts`]), SCSI ([`probe_drafts`]), initiator and target ports, then per LU its
/// groups, paths and properties.
pub fn discover(sys: &System, opts: &Options) -> Result<Topology> {
    let host = gather(sys)?;
    let drafts = lu_drafts(sys, &host, opts);
    let probes = probe_drafts(sys, &drafts, opts.vpd);
    let initiator_ports = initiator_ports(&host, &drafts, opts);
    let target_ports = target_ports(&host, &drafts, &probes);
    let j = Joined {
        host: &host,
        probes: &probes,
        target_ports: &target_ports,
        iport_of_session: initiator_ports.iter().map(|p| (p.session, p.oid)).collect(),
    };
    let mut lus = Vec::new();
    let mut tpgs = Vec::new();
    let mut paths = Vec::new();
    for (li, lu) in drafts.values().enumerate() {
        let lu_oid = Oid::new(ObjectType::MultipathLu, li as u64 + 1);
        let lp = probes.lus.get(&lu.wwid).cloned().unwrap_or_default();
        let mut lu_tpgs = lu_tpgs(&j, lu, lu_oid, &lp);
        for t in &mut lu_tpgs {
            t.oid = Oid::new(ObjectType::TargetPortGroup, tpgs.len() as u64 + 1);
            tpgs.push(t.clone());
        }
        let mut lu_paths = lu_paths(&j, lu, lu_oid, &lu_tpgs);
        for p in &mut lu_paths {
            p.oid = Oid::new(ObjectType::PathLu, paths.len() as u64 + 1);
            paths.push(p.clone());
        }
        lus.push(multipath_lu(&j, lu, lu_oid, &lp, &lu_paths));
    }
    Ok(Topology {
        plugin: plugin(),
        initiator_ports,
        target_ports,
        tpgs,
        lus,
        paths,
    })
}

#[cfg(test)]
mod tests;
