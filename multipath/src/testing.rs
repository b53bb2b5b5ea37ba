//! Test doubles (feature `test-utils`): sysfs trees captured in the lab, a scriptable
//! multipathd, a SCSI opener over `FakeLu`s, and [`LabFake`], the lab's host A (6 LUNs, 2
//! portals, 2 ALUA groups) rebuilt from the captures in `tests/fixtures/lab-6.1/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sm_core::host::{LockDir, Paths, Runner};
use sm_core::scsi::{AccessState, RelTgtPortId, ScsiError, ScsiTransport, TpgId};
use sm_core::testing::{
    FakeLu, FakeRunner, FakeScsi, GroupConfig, LuConfig, Nexus, PortConfig, materialize_sysfs,
};

use crate::dm::Multipathd;
use crate::error::{MultipathError, Result};
use crate::iscsi::Portal;
use crate::system::{Network, ScsiOpener, System};

/// A network where only the listed portals answer and only literal addresses resolve (plus
/// the names given).
#[derive(Default)]
pub struct FakeNetwork {
    up: Mutex<Vec<String>>,
    names: Mutex<BTreeMap<String, String>>,
    probes: Mutex<Vec<String>>,
}

impl FakeNetwork {
    /// Portal `p` (`addr:port`) answers (`true`) or not.
    pub fn set_up(&self, p: &str, up: bool) {
        let mut v = self.up.lock().unwrap_or_else(|e| e.into_inner());
        v.retain(|x| x != p);
        if up {
            v.push(p.into());
        }
    }

    /// Host name `name` resolves to `addr`.
    pub fn add_name(&self, name: &str, addr: &str) {
        self.names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.into(), addr.into());
    }

    /// Every portal probed, in order.
    pub fn probes(&self) -> Vec<String> {
        self.probes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Network for FakeNetwork {
    fn resolve(&self, portal: &Portal) -> Result<Portal> {
        if portal.host.parse::<std::net::IpAddr>().is_ok() {
            return Ok(portal.clone());
        }
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        match names.get(&portal.host) {
            Some(a) => Ok(Portal::new(a, portal.port)),
            None => Err(MultipathError::Dns {
                host: portal.host.clone(),
            }),
        }
    }

    fn check_reachable(&self, portal: &Portal, _timeout: std::time::Duration) -> Result<()> {
        let p = portal.to_string();
        self.probes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(p.clone());
        if self
            .up
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&p)
        {
            Ok(())
        } else {
            Err(MultipathError::Unreachable {
                portal: p,
                reason: "Connection refused (fake)".into(),
            })
        }
    }
}

/// The directory of the lab captures (`tests/fixtures/lab-6.1`).
pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lab-6.1")
}

/// A captured file (`multipathd-show-maps-json.stdout`, `sysfs-base.tree`, ...).
///
/// # Panics
/// When the fixture is missing (a broken checkout).
pub fn fixture(name: &str) -> String {
    let p = fixture_dir().join(name);
    match std::fs::read_to_string(&p) {
        Ok(s) => s,
        Err(e) => panic!("fixture {}: {e}", p.display()),
    }
}

/// A multipathd that answers from a table (first matching prefix; the reply may be changed at
/// any time) and records every command.
#[derive(Default)]
pub struct FakeMultipathd {
    replies: Mutex<Vec<(String, String)>>,
    log: Mutex<Vec<String>>,
}

impl FakeMultipathd {
    /// An empty fake (every command answers `fail`).
    pub fn new() -> FakeMultipathd {
        FakeMultipathd::default()
    }

    /// Answers commands starting with `prefix` with `reply` (replacing an earlier entry).
    pub fn set(&self, prefix: &str, reply: &str) {
        let mut r = self.replies.lock().unwrap_or_else(|p| p.into_inner());
        r.retain(|(p, _)| p != prefix);
        r.push((prefix.into(), reply.into()));
    }

    /// Every command received.
    pub fn commands(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Multipathd for FakeMultipathd {
    fn command(&self, command: &str) -> Result<String> {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(command.into());
        let r = self.replies.lock().unwrap_or_else(|p| p.into_inner());
        Ok(r.iter()
            .rev()
            .find(|(p, _)| command.starts_with(p.as_str()))
            .map_or_else(|| "fail\n".to_string(), |(_, v)| v.clone()))
    }
}

/// Opens named `FakeScsi` paths.
#[derive(Default)]
pub struct FakeOpener {
    paths: Mutex<BTreeMap<String, FakeScsi>>,
}

impl FakeOpener {
    /// Makes `name` open `path`.
    pub fn insert(&self, name: &str, path: FakeScsi) {
        self.paths
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.into(), path);
    }

    /// The path named `name`.
    pub fn get(&self, name: &str) -> Option<FakeScsi> {
        self.paths
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }
}

impl ScsiOpener for FakeOpener {
    fn open(&self, name: &str) -> std::result::Result<Box<dyn ScsiTransport>, ScsiError> {
        match self.get(name) {
            Some(p) => Ok(Box::new(p)),
            None => Err(ScsiError::Invalid(format!("no such device /dev/{name}"))),
        }
    }
}

/// The lab's host A after setup, rebuilt from the captures: sysfs (`sysfs-base.tree` or
/// `sysfs-t2.tree`), multipathd's maps, and one `FakeLu` per LUN (LIO identity: serial
/// `5ab0c0de000N`, target `iqn.2026-01.test.lab:array`, port N in ALUA group N, group 1
/// active/optimized and group 2 active/non-optimized) with host A's paths named as captured.
pub struct LabFake {
    /// Keeps the root alive.
    pub dir: tempfile::TempDir,
    /// The system to pass to the crate.
    pub sys: System,
    /// The runner (records every command).
    pub runner: Arc<FakeRunner>,
    /// multipathd.
    pub multipathd: Arc<FakeMultipathd>,
    /// SCSI paths.
    pub opener: Arc<FakeOpener>,
    /// The network (both lab portals answer).
    pub net: Arc<FakeNetwork>,
    /// LUs by WWID.
    pub lus: BTreeMap<String, FakeLu>,
    maps_fixture: String,
}

/// Host A's initiator name in the lab.
pub const HOST_A_IQN: &str = "iqn.2026-01.test.lab:host-a";

impl LabFake {
    /// Host A with the main target only.
    pub fn base() -> LabFake {
        LabFake::from_capture("sysfs-base.tree", "multipathd-show-maps-json.stdout")
    }

    /// Host A also logged in to target `t2` (two LUNs, CHAP).
    pub fn with_t2() -> LabFake {
        LabFake::from_capture("sysfs-t2.tree", "multipathd-show-maps-json-t2.stdout")
    }

    /// Host A with the main target, and an iscsid played by the runner ([`SimIscsid`]): a
    /// login to target `t2` (created on the array with CHAP `labuser`/`labsecret123`) brings
    /// its captured sessions, LUNs, multipath maps and device nodes, logouts take them away.
    /// Every other command is answered by [`LabFake::runner`].
    pub fn with_iscsid() -> LabFake {
        let mut lab = LabFake::from_capture("sysfs-base.tree", "multipathd-show-maps-json.stdout");
        let t2 = LabFake::from_capture("sysfs-t2.tree", "multipathd-show-maps-json-t2.stdout");
        for (wwid, lu) in &t2.lus {
            if !lab.lus.contains_key(wwid) {
                lab.lus.insert(wwid.clone(), lu.clone());
                for name in ["sdm", "sdn", "sdo", "sdp"] {
                    if let Some(p) = t2.opener.get(name)
                        && p.lu().wwid() == *wwid
                    {
                        lab.opener.insert(name, p);
                    }
                }
            }
        }
        let sim = Arc::new(SimIscsid {
            fake: lab.runner.clone(),
            root: lab.dir.path().to_path_buf(),
            multipathd: lab.multipathd.clone(),
        });
        lab.sys.runner = sim;
        lab
    }

    /// Scripts one SendTargets discovery on each of t2's portals (what a login that finds no
    /// node records runs), answered with the capture.
    pub fn script_t2_discovery(&self) {
        for p in ["10.99.0.1:3260", "10.99.0.2:3260"] {
            let argv = [
                "iscsiadm",
                "-m",
                "discoverydb",
                "-t",
                "st",
                "-p",
                p,
                "-I",
                "default",
                "--discover",
            ];
            self.runner
                .on(&argv, 0, &fixture("iscsiadm-discovery-t2.stdout"), "");
        }
    }

    /// Builds a fake from a captured sysfs tree and `show maps json` reply.
    ///
    /// # Panics
    /// When the captures are missing or the temporary root cannot be made (test setup).
    pub fn from_capture(tree: &str, maps: &str) -> LabFake {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("tempdir: {e}"),
        };
        if let Err(e) = materialize_sysfs(&fixture(tree), dir.path()) {
            panic!("materialize {tree}: {e}");
        }
        let runner = Arc::new(FakeRunner::new());
        let multipathd = Arc::new(FakeMultipathd::new());
        multipathd.set("show maps json", &fixture(maps));
        multipathd.set("fail path", "ok\n");
        multipathd.set("reinstate path", "ok\n");
        multipathd.set("switchgroup", "ok\n");
        multipathd.set("show config", "defaults {\n\tpolling_interval 2\n}\n");
        let opener = Arc::new(FakeOpener::default());
        let paths = Paths::new(dir.path());
        let sysfs = sm_core::host::sysfs::Sysfs::new(dir.path());
        let mut lus: BTreeMap<String, FakeLu> = BTreeMap::new();
        let sessions: BTreeMap<u32, sm_core::host::sysfs::IscsiSession> = sysfs
            .iscsi_sessions()
            .into_iter()
            .map(|s| (s.sid, s))
            .collect();
        for d in sysfs.scsi_disks() {
            let Some(id) = d
                .vpd_pg83
                .as_deref()
                .and_then(|b| sm_core::scsi::wire::vpd::parse_device_id(b).ok())
            else {
                continue;
            };
            let Some(wwid) = id.naa_wwid() else { continue };
            let Some(s) = d.session.and_then(|sid| sessions.get(&sid)) else {
                continue;
            };
            let serial = sysfs
                .read_bytes(&format!("/sys/block/{}/device/vpd_pg80", d.name))
                .and_then(|b| sm_core::scsi::wire::vpd::parse_unit_serial(&b).ok())
                .unwrap_or_default();
            let lu = lus.entry(wwid).or_insert_with(|| {
                FakeLu::new(LuConfig {
                    serial,
                    target: s.target.clone(),
                    blocks: d.size / 512,
                    groups: vec![
                        group(1, AccessState::ActiveOptimized),
                        group(2, AccessState::ActiveNonOptimized),
                    ],
                    ..LuConfig::default()
                })
            });
            let port = s.tpgt.unwrap_or(1);
            let path = lu.path(
                &d.name,
                Nexus::iscsi(&s.initiator, 0x0002_3d00_0000 + u64::from(s.sid), port),
            );
            opener.insert(&d.name, path);
        }
        let net = Arc::new(FakeNetwork::default());
        net.set_up("10.99.0.1:3260", true);
        net.set_up("10.99.0.2:3260", true);
        let sys = System {
            sysfs,
            runner: runner.clone() as Arc<dyn Runner>,
            scsi: opener.clone(),
            multipathd: multipathd.clone(),
            net: net.clone(),
            locks: LockDir::new(paths.lock_dir()),
            paths,
        };
        LabFake {
            dir,
            sys,
            runner,
            multipathd,
            opener,
            net,
            lus,
            maps_fixture: maps.to_string(),
        }
    }

    /// The LU of `wwid`.
    ///
    /// # Panics
    /// When the lab has no such LU.
    pub fn lu(&self, wwid: &str) -> &FakeLu {
        match self.lus.get(wwid) {
            Some(l) => l,
            None => panic!("no LU {wwid} in the fake lab"),
        }
    }

    /// Plays the host following the array: each path's sysfs `access_state` becomes its
    /// group's state in the fake LU, and multipathd's maps regroup by ALUA priority (50 for
    /// active/optimized, 10 for active/non-optimized, 1 for standby, 0 otherwise), the highest
    /// group active, as `prio alua` + `group_by_prio` + `failback immediate` do.
    pub fn host_follows(&self) {
        let maps = fixture_like_maps(self);
        self.multipathd.set("show maps json", &maps);
    }

    /// Sets a sysfs attribute of host A.
    ///
    /// # Panics
    /// When the file cannot be written.
    pub fn set_sysfs(&self, path: &str, value: &str) {
        if let Err(e) = self.sys.sysfs.write(path, value) {
            panic!("{e}");
        }
    }
}

/// The second target of the captures.
pub const T2_IQN: &str = "iqn.2026-01.test.lab:t2";

/// An iscsid for [`LabFake::with_iscsid`]: commands are recorded and answered by a
/// `FakeRunner`; a successful login to target t2 adds t2's captured sysfs entries, multipathd
/// maps and `/dev/mapper` nodes; a successful logout removes that portal's session, and the
/// maps when no t2 session is left.
pub struct SimIscsid {
    fake: Arc<FakeRunner>,
    root: PathBuf,
    multipathd: Arc<FakeMultipathd>,
}

const T2_MAPS: [&str; 2] = [
    "360014055ab0c1de00000000000000000",
    "360014055ab0c1de00010000000000000",
];

impl Runner for SimIscsid {
    fn run(
        &self,
        cmd: &sm_core::host::Cmd,
    ) -> std::result::Result<sm_core::host::Output, sm_core::host::RunError> {
        let out = self.fake.run(cmd)?;
        let argv = cmd.masked_argv();
        let has = |w: &str| argv.iter().any(|a| a == w);
        if argv.first().map(String::as_str) != Some("iscsiadm") || !has(T2_IQN) {
            return Ok(out);
        }
        if has("-l") {
            let _ = materialize_sysfs(&fixture("sysfs-t2.tree"), &self.root);
            for h in ["host8", "host9"] {
                let dir = self.root.join("sys/class/scsi_host").join(h);
                let _ = std::fs::create_dir_all(&dir);
                let _ = std::fs::write(dir.join("scan"), "");
            }
            self.multipathd.set(
                "show maps json",
                &fixture("multipathd-show-maps-json-t2.stdout"),
            );
            for w in T2_MAPS {
                let node = self.root.join("dev/mapper").join(w);
                let _ = std::fs::create_dir_all(self.root.join("dev/mapper"));
                let _ = std::fs::write(node, "");
            }
        }
        if has("-u") {
            let sid = if has("10.99.0.1:3260") { 4 } else { 5 };
            let _ = std::fs::remove_file(
                self.root
                    .join(format!("sys/class/iscsi_session/session{sid}")),
            );
            let left = ["session4", "session5"]
                .iter()
                .any(|s| self.root.join("sys/class/iscsi_session").join(s).exists());
            if !left {
                self.multipathd.set(
                    "show maps json",
                    &fixture("multipathd-show-maps-json.stdout"),
                );
                for w in T2_MAPS {
                    let _ = std::fs::remove_file(self.root.join("dev/mapper").join(w));
                }
                for dm in ["dm-6", "dm-7"] {
                    let _ = std::fs::remove_file(self.root.join("sys/block").join(dm));
                }
            }
        }
        Ok(out)
    }
}

fn group(id: u16, state: AccessState) -> GroupConfig {
    GroupConfig {
        id: TpgId(id),
        state,
        supported: sm_core::scsi::SupportedStates(0xcf),
        pref: false,
        ports: vec![PortConfig {
            rtpi: RelTgtPortId(id),
            tpgt: id,
        }],
    }
}

fn alua_prio(s: AccessState) -> i64 {
    match s {
        AccessState::ActiveOptimized => 50,
        AccessState::ActiveNonOptimized => 10,
        AccessState::LbaDependent => 5,
        AccessState::Standby => 1,
        _ => 0,
    }
}

/// Rebuilds `show maps json` from the fake LUs' states and updates the kernel's view.
fn fixture_like_maps(lab: &LabFake) -> String {
    let Ok(current) = crate::dm::json::parse_maps(&fixture(&lab.maps_fixture)) else {
        return String::new();
    };
    let sessions: BTreeMap<u32, u16> = lab
        .sys
        .sysfs
        .iscsi_sessions()
        .into_iter()
        .map(|s| (s.sid, s.tpgt.unwrap_or(1)))
        .collect();
    let mut out = Vec::new();
    for m in current {
        let Some(lu) = lab.lus.get(&m.uuid) else {
            continue;
        };
        let mut paths: Vec<(i64, serde_json::Value)> = Vec::new();
        for (_, p) in m.paths() {
            let port = lab
                .sys
                .sysfs
                .scsi_disk(&p.dev)
                .and_then(|d| d.session)
                .and_then(|s| sessions.get(&s).copied())
                .unwrap_or(1);
            let state = lu
                .group_state(TpgId(port))
                .unwrap_or(AccessState::Unavailable);
            let _ = lab.sys.sysfs.write(
                &format!("/sys/block/{}/device/access_state", p.dev),
                state.name(),
            );
            let prio = alua_prio(state);
            paths.push((
                prio,
                serde_json::json!({"dev": p.dev, "dev_t": p.dev_t, "dm_st": "active",
                    "dev_st": "running", "chk_st": if state == AccessState::Standby { "ghost" } else { "ready" },
                    "checker": "tur", "pri": prio}),
            ));
        }
        let mut prios: Vec<i64> = paths.iter().map(|(p, _)| *p).collect();
        prios.sort_unstable_by(|a, b| b.cmp(a));
        prios.dedup();
        let groups: Vec<serde_json::Value> = prios
            .iter()
            .enumerate()
            .map(|(i, pr)| {
                serde_json::json!({"selector": "service-time 0", "pri": pr,
                    "dm_st": if i == 0 { "active" } else { "enabled" }, "group": i + 1,
                    "paths": paths.iter().filter(|(p, _)| p == pr).map(|(_, v)| v.clone()).collect::<Vec<_>>()})
            })
            .collect();
        out.push(
            serde_json::json!({"name": m.name, "uuid": m.uuid, "sysfs": m.sysfs,
            "failback": m.failback, "queueing": m.queueing, "paths": m.paths, "dm_st": "active",
            "features": m.features, "hwhandler": m.hwhandler, "vend": m.vend, "prod": m.prod,
            "rev": m.rev, "path_groups": groups}),
        );
    }
    serde_json::json!({"major_version": 0, "minor_version": 1, "maps": out}).to_string()
}
