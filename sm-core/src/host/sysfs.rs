//! sysfs, read in one place: what the kernel says about block devices, SCSI disks, iSCSI
//! sessions and device-mapper devices. Every path is a host path (`/sys/...`) under a root
//! ([`Paths::root`]: `/` on a host, a directory built from a captured tree in tests; the capture
//! format is `sm_core::testing::materialize_sysfs`'s).
//!
//! | source | gives |
//! |---|---|
//! | `/sys/dev/block/M:m` -> the device's directory, `slaves/`, `holders/`, `partition` | the block stack: [`Sysfs::stack_below`], [`Sysfs::root_stack`] |
//! | `/sys/block/sdX` -> `.../hostH/sessionS/targetH:C:T/H:C:T:L/block/sdX` | H:C:T:L, SCSI host, iSCSI session ([`ScsiDisk`]) |
//! | `/sys/block/sdX/device/{vendor,model,rev,state,access_state,preferred_path,vpd_pg83}` | identity, device state, the kernel ALUA handler's view, cached VPD 0x83 |
//! | `/sys/block/sdX/{dev,size,holders}` | device number, size, who holds it |
//! | `/sys/class/iscsi_session/sessionS/{targetname,initiatorname,ifacename,state,tpgt,isid}` | the session ([`IscsiSession`]) |
//! | `/sys/class/iscsi_connection/connectionS:0/{persistent_address,persistent_port}` | the portal |
//! | `/sys/block/dm-N/dm/{name,uuid}`, `slaves/`, `holders/` | device-mapper devices and multipath maps ([`DmDevice`]) |

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::host::paths::Paths;

/// A device number as `(major, minor)`.
pub type DevNo = (u64, u64);

/// sysfs of the host whose root is `root`.
#[derive(Debug, Clone)]
pub struct Sysfs {
    root: PathBuf,
}

/// One SCSI disk (`/sys/block/sd*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScsiDisk {
    /// Kernel name (`sdb`).
    pub name: String,
    /// SCSI host number.
    pub host: u32,
    /// Channel.
    pub channel: u32,
    /// Target id.
    pub target: u32,
    /// LUN.
    pub lun: u64,
    /// iSCSI session number, when the disk sits on an iSCSI session.
    pub session: Option<u32>,
    /// T10 vendor (trimmed).
    pub vendor: String,
    /// Product (trimmed).
    pub model: String,
    /// Revision (trimmed).
    pub rev: String,
    /// Device state (`running`, `offline`, `blocked`, `transport-offline`, ...).
    pub state: String,
    /// The kernel ALUA handler's access state of the port (`active/optimized`, ...).
    pub access_state: Option<String>,
    /// The kernel ALUA handler's preferred-path bit.
    pub preferred_path: Option<bool>,
    /// `major:minor`.
    pub dev_t: String,
    /// Size in bytes.
    pub size: u64,
    /// Block devices holding this one (`dm-3`).
    pub holders: Vec<String>,
    /// The kernel's cached VPD page 0x83, when it has one.
    #[serde(skip)]
    pub vpd_pg83: Option<Vec<u8>>,
}

impl ScsiDisk {
    /// `H:C:T:L`.
    pub fn hctl(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.host, self.channel, self.target, self.lun
        )
    }
}

/// One iSCSI session (`/sys/class/iscsi_session/sessionN`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IscsiSession {
    /// Session number.
    pub sid: u32,
    /// SCSI host of the session.
    pub host: Option<u32>,
    /// Target IQN.
    pub target: String,
    /// Target portal group tag.
    pub tpgt: Option<u16>,
    /// Initiator IQN.
    pub initiator: String,
    /// open-iscsi interface.
    pub iface: String,
    /// `LOGGED_IN`, `FAILED`, `FREE`.
    pub state: String,
    /// ISID as hex, when the kernel exposes it.
    pub isid: Option<String>,
    /// The portal address the session logged in to.
    pub address: Option<String>,
    /// The portal port.
    pub port: Option<u16>,
    /// Local address (the iSCSI host's `ipaddress`).
    pub local_address: Option<String>,
}

impl IscsiSession {
    /// `address:port` (IPv6 in brackets), when known.
    pub fn portal(&self) -> Option<String> {
        let a = self.address.as_deref()?;
        let p = self.port?;
        Some(if a.contains(':') {
            format!("[{a}]:{p}")
        } else {
            format!("{a}:{p}")
        })
    }

    /// Whether the session is logged in.
    pub fn is_logged_in(&self) -> bool {
        self.state == "LOGGED_IN"
    }

    /// The ISID as a number, when the kernel exposes it.
    pub fn isid_value(&self) -> Option<u64> {
        u64::from_str_radix(self.isid.as_deref()?, 16).ok()
    }
}

/// One device-mapper device (`/sys/block/dm-*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DmDevice {
    /// Kernel name (`dm-3`).
    pub kernel: String,
    /// dm name.
    pub name: String,
    /// dm uuid (`mpath-<wwid>` for multipath maps, `LVM-...` for LVs).
    pub uuid: String,
    /// Underlying devices.
    pub slaves: Vec<String>,
    /// Devices built on it.
    pub holders: Vec<String>,
}

impl DmDevice {
    /// The WWID, when this is a multipath map.
    pub fn multipath_wwid(&self) -> Option<&str> {
        self.uuid.strip_prefix("mpath-")
    }
}

/// Parses `H:C:T:L`.
pub fn parse_hctl(s: &str) -> Option<(u32, u32, u32, u64)> {
    let mut it = s.split(':');
    let h = it.next()?.parse().ok()?;
    let c = it.next()?.parse().ok()?;
    let t = it.next()?.parse().ok()?;
    let l = it.next()?.parse().ok()?;
    it.next().is_none().then_some((h, c, t, l))
}

fn numbered(component: &str, prefix: &str) -> Option<u32> {
    component.strip_prefix(prefix)?.parse().ok()
}

fn parse_devno(s: &str) -> Option<DevNo> {
    let (maj, min) = s.trim().split_once(':')?;
    Some((maj.parse().ok()?, min.parse().ok()?))
}

impl Sysfs {
    /// sysfs of the host whose root is `root` (`/` on a host).
    pub fn new(root: impl Into<PathBuf>) -> Sysfs {
        Sysfs { root: root.into() }
    }

    /// sysfs under the root of `paths` (`SM_ROOT` in tests).
    pub fn of(paths: &Paths) -> Sysfs {
        Sysfs::new(paths.root())
    }

    /// This host's sysfs (`/sys`).
    pub fn host() -> Sysfs {
        Sysfs::new("/")
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `p` (an absolute host path) under the root.
    pub fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    /// A file's content, trimmed (NULs dropped); `None` when it does not exist or cannot be
    /// read.
    pub fn read(&self, p: &str) -> Option<String> {
        std::fs::read(self.path(p)).ok().map(|b| {
            String::from_utf8_lossy(&b)
                .replace('\0', "")
                .trim()
                .to_string()
        })
    }

    /// A file's bytes.
    pub fn read_bytes(&self, p: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(p)).ok()
    }

    /// Writes `value` to a sysfs attribute.
    pub fn write(&self, p: &str, value: &str) -> std::io::Result<()> {
        std::fs::write(self.path(p), value)
    }

    /// Entry names of a directory in natural order (`sdb` before `sdaa`); empty when it does
    /// not exist.
    pub fn list(&self, p: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path(p))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort_by_key(|n| natural(n));
        names
    }

    /// Whether the host path exists.
    pub fn exists(&self, p: &str) -> bool {
        self.path(p).exists()
    }

    /// The resolved path of `p` (symlinks followed), as a host path (root stripped).
    pub fn canonical(&self, p: &str) -> Option<String> {
        let c = std::fs::canonicalize(self.path(p)).ok()?;
        let root = std::fs::canonicalize(&self.root).ok()?;
        let rel = c.strip_prefix(&root).ok()?;
        Some(format!("/{}", rel.display()))
    }

    fn node(dev: DevNo) -> String {
        format!("/sys/dev/block/{}:{}", dev.0, dev.1)
    }

    /// The kernel name of a device (`sda`, `dm-3`), if sysfs knows it.
    pub fn name(&self, dev: DevNo) -> Option<String> {
        let real = self.canonical(&Sysfs::node(dev))?;
        real.rsplit('/').next().map(str::to_string)
    }

    /// The devices directly under `dev` (device-mapper and md components).
    pub fn slaves(&self, dev: DevNo) -> Vec<DevNo> {
        let dir = format!("{}/slaves", Sysfs::node(dev));
        self.list(&dir)
            .into_iter()
            .filter_map(|s| parse_devno(&self.read(&format!("{dir}/{s}/dev"))?))
            .collect()
    }

    /// The kernel names of the devices directly built on `dev` (dm maps, md arrays).
    pub fn holders(&self, dev: DevNo) -> Vec<String> {
        self.list(&format!("{}/holders", Sysfs::node(dev)))
    }

    /// The whole disk of a partition, or `None` for a whole device.
    pub fn disk_of_partition(&self, dev: DevNo) -> Option<DevNo> {
        let node = Sysfs::node(dev);
        if !self.exists(&format!("{node}/partition")) {
            return None;
        }
        parse_devno(&self.read(&format!("{node}/../dev"))?)
    }

    /// `dev` and every device under it, transitively, nearest first.
    pub fn stack_below(&self, dev: DevNo) -> Vec<DevNo> {
        let mut seen = BTreeSet::new();
        let mut order = Vec::new();
        let mut todo = VecDeque::from([dev]);
        while let Some(d) = todo.pop_front() {
            if seen.insert(d) {
                order.push(d);
                todo.extend(self.slaves(d));
            }
        }
        order
    }

    /// Every device the filesystem mounted from `root` depends on, and the whole disks of the
    /// partitions among them.
    pub fn root_stack(&self, root: DevNo) -> BTreeSet<DevNo> {
        let below = self.stack_below(root);
        let disks: Vec<DevNo> = below
            .iter()
            .filter_map(|d| self.disk_of_partition(*d))
            .collect();
        below.into_iter().chain(disks).collect()
    }

    /// Every SCSI disk (`/sys/block/sd*`), in name order.
    pub fn scsi_disks(&self) -> Vec<ScsiDisk> {
        self.list("/sys/block")
            .into_iter()
            .filter(|n| n.starts_with("sd"))
            .filter_map(|n| self.scsi_disk(&n))
            .collect()
    }

    /// The SCSI disk `name` (`sdb`).
    pub fn scsi_disk(&self, name: &str) -> Option<ScsiDisk> {
        let block = format!("/sys/block/{name}");
        let real = self.canonical(&block)?;
        let comps: Vec<&str> = real.split('/').collect();
        let (host, channel, target, lun) = comps.iter().rev().find_map(|c| parse_hctl(c))?;
        let session = comps.iter().find_map(|c| numbered(c, "session"));
        let dev = |f: &str| self.read(&format!("{block}/device/{f}"));
        Some(ScsiDisk {
            name: name.to_string(),
            host,
            channel,
            target,
            lun,
            session,
            vendor: dev("vendor").unwrap_or_default(),
            model: dev("model").unwrap_or_default(),
            rev: dev("rev").unwrap_or_default(),
            state: dev("state").unwrap_or_default(),
            access_state: dev("access_state"),
            preferred_path: dev("preferred_path").map(|v| v == "1"),
            dev_t: self.read(&format!("{block}/dev")).unwrap_or_default(),
            size: self
                .read(&format!("{block}/size"))
                .and_then(|s| s.parse::<u64>().ok())
                .map_or(0, |s| s.saturating_mul(512)),
            holders: self.list(&format!("{block}/holders")),
            vpd_pg83: self
                .read_bytes(&format!("{block}/device/vpd_pg83"))
                .filter(|b| !b.is_empty()),
        })
    }

    /// Whether the SCSI disk `sd` is running (not offline, blocked or deleted).
    pub fn running(&self, sd: &str) -> bool {
        self.read(&format!("/sys/block/{sd}/device/state"))
            .as_deref()
            == Some("running")
    }

    /// The iSCSI session the SCSI disk `sd` sits on.
    pub fn session_of(&self, sd: &str) -> Option<IscsiSession> {
        let real = self.canonical(&format!("/sys/block/{sd}/device"))?;
        let sid = real.split('/').find_map(|c| numbered(c, "session"))?;
        self.iscsi_session(sid)
    }

    /// Every iSCSI session.
    pub fn iscsi_sessions(&self) -> Vec<IscsiSession> {
        self.list("/sys/class/iscsi_session")
            .into_iter()
            .filter_map(|n| self.iscsi_session(numbered(&n, "session")?))
            .collect()
    }

    /// Session `sid`.
    pub fn iscsi_session(&self, sid: u32) -> Option<IscsiSession> {
        let dir = format!("/sys/class/iscsi_session/session{sid}");
        let target = self.read(&format!("{dir}/targetname"))?;
        let host = self
            .canonical(&dir)
            .and_then(|real| real.split('/').find_map(|c| numbered(c, "host")));
        let conn = format!("/sys/class/iscsi_connection/connection{sid}:0");
        let attr = |d: &str, f: &str| self.read(&format!("{d}/{f}")).filter(|v| !v.is_empty());
        Some(IscsiSession {
            sid,
            host,
            target,
            tpgt: attr(&dir, "tpgt").and_then(|v| v.parse().ok()),
            initiator: attr(&dir, "initiatorname").unwrap_or_default(),
            iface: attr(&dir, "ifacename").unwrap_or_default(),
            state: attr(&dir, "state").unwrap_or_default(),
            isid: attr(&dir, "isid"),
            address: attr(&conn, "persistent_address").or_else(|| attr(&conn, "address")),
            port: attr(&conn, "persistent_port")
                .or_else(|| attr(&conn, "port"))
                .and_then(|v| v.parse().ok()),
            local_address: host
                .and_then(|h| attr(&format!("/sys/class/iscsi_host/host{h}"), "ipaddress")),
        })
    }

    /// Every device-mapper device.
    pub fn dm_devices(&self) -> Vec<DmDevice> {
        self.list("/sys/block")
            .into_iter()
            .filter(|n| n.starts_with("dm-"))
            .filter_map(|n| self.dm_device(&n))
            .collect()
    }

    /// The device-mapper device `kernel` (`dm-3`).
    pub fn dm_device(&self, kernel: &str) -> Option<DmDevice> {
        let dir = format!("/sys/block/{kernel}");
        Some(DmDevice {
            name: self.read(&format!("{dir}/dm/name"))?,
            uuid: self.read(&format!("{dir}/dm/uuid")).unwrap_or_default(),
            slaves: self.list(&format!("{dir}/slaves")),
            holders: self.list(&format!("{dir}/holders")),
            kernel: kernel.to_string(),
        })
    }

    /// The device-mapper device of a map given as `/dev/mapper/<name>`, `<name>`, `dm-N` or
    /// `/dev/dm-N`.
    pub fn dm_by_name(&self, map: &str) -> Option<DmDevice> {
        let name = map
            .trim_start_matches("/dev/mapper/")
            .trim_start_matches("/dev/");
        if name.starts_with("dm-")
            && let Some(d) = self.dm_device(name)
        {
            return Some(d);
        }
        self.dm_devices().into_iter().find(|d| d.name == name)
    }

    /// The dm names of every multipath map (dm uuid `mpath-...`), sorted.
    pub fn multipath_map_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .dm_devices()
            .into_iter()
            .filter(|d| d.multipath_wwid().is_some())
            .map(|d| d.name)
            .collect();
        names.sort();
        names
    }

    /// The multipath map of `wwid`, when the kernel has one.
    pub fn multipath_map(&self, wwid: &str) -> Option<DmDevice> {
        self.dm_devices()
            .into_iter()
            .find(|d| d.multipath_wwid() == Some(wwid))
    }
}

/// Sort key putting `sdb` before `sdaa` and `session2` before `session10`.
fn natural(s: &str) -> (usize, String, u64) {
    let digits = s.len() - s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (head, num) = s.split_at(s.len() - digits);
    (head.len(), head.to_string(), num.parse().unwrap_or(0))
}

#[cfg(test)]
mod tests;
