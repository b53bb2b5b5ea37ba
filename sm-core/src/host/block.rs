//! What a block device holds and who uses it, for drivers that are about to write to one:
//! signatures (blkid), mounts (mountinfo), kernel holders (sysfs `holders/`, and an `O_EXCL` open
//! that fails with EBUSY while the kernel has the device mounted, mapped or otherwise claimed),
//! its size, and whether it is part of the stack that carries the root filesystem (the stack
//! itself is read by [`crate::host::sysfs`]).
//!
//! The root check follows the whole stack: the device mounted at `/` (from mountinfo; for
//! filesystems with anonymous device numbers, such as btrfs, its mount source), every device
//! under it through sysfs `slaves/` (device-mapper: LVM, multipath, crypt; md RAID), and the whole
//! disks of those that are partitions. A candidate is refused when it, or any device under it, is
//! in that set: the root disk itself, a partition holding a root PV, a multipath map over the
//! root disk. A sibling partition of the root partition is not refused (XenServer's local SR
//! lives on the root disk's third partition).

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::host::run::{Cmd, RunError, Runner};
use crate::host::sysfs::Sysfs;

/// The tool that reads signatures.
pub const BLKID: &str = "blkid";

pub use crate::host::sysfs::DevNo;

/// The signatures `blkid -p -o export` found (`TYPE`, `PTTYPE`, `UUID`, `LABEL`, ...).
pub type Signatures = BTreeMap<String, String>;

/// Low-level probe of every signature on `dev` (exit 2 means none).
pub fn signatures(runner: &dyn Runner, dev: &Path) -> Result<Signatures, RunError> {
    let out = runner.run(
        &Cmd::new(BLKID)
            .args(["-p", "-o", "export"])
            .arg(dev)
            .ok_codes(&[0, 2])
            .timeout(Duration::from_secs(30)),
    )?;
    Ok(parse_export(&out.stdout_str()))
}

/// Parses `KEY=value` lines.
pub fn parse_export(text: &str) -> Signatures {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// A short description of what the signatures say is on the device, or `None` when nothing is.
pub fn describe(sigs: &Signatures) -> Option<String> {
    match (sigs.get("TYPE"), sigs.get("PTTYPE")) {
        (Some(t), _) => Some(format!("a {t} signature")),
        (None, Some(p)) => Some(format!("a {p} partition table")),
        (None, None) => None,
    }
}

/// The device number of a block device (an error for anything else).
pub fn rdev(dev: &Path) -> std::io::Result<u64> {
    let m = std::fs::metadata(dev)?;
    if !m.file_type().is_block_device() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a block device",
        ));
    }
    Ok(m.rdev())
}

/// `(major, minor)` of a device number.
pub fn dev_pair(rdev: u64) -> DevNo {
    (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev))
}

/// The size of a block device in bytes.
pub fn size(dev: &Path) -> std::io::Result<u64> {
    let mut f = std::fs::File::open(dev)?;
    std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0))
}

/// Whether some kernel user (a mount, device-mapper, md, another exclusive opener) holds `dev`.
pub fn is_claimed(dev: &Path) -> bool {
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_EXCL)
        .open(dev)
    {
        Ok(_) => false,
        Err(e) => e.raw_os_error() == Some(libc::EBUSY),
    }
}

/// Unescapes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `major:minor` of the mounted device (`0:N` for anonymous devices: btrfs, overlay, tmpfs).
    pub dev: DevNo,
    /// Where it is mounted.
    pub point: PathBuf,
    /// The mount source (`/dev/sda1`, `tmpfs`, ...).
    pub source: String,
}

/// Parses mountinfo text.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let (maj, min) = f.get(2)?.split_once(':')?;
            let source = f
                .iter()
                .position(|w| *w == "-")
                .and_then(|i| f.get(i + 2))
                .map(|s| unescape(s))
                .unwrap_or_default();
            Some(Mount {
                dev: (maj.parse().ok()?, min.parse().ok()?),
                point: PathBuf::from(unescape(f.get(4)?)),
                source,
            })
        })
        .collect()
}

/// The current mounts.
pub fn mounts() -> Vec<Mount> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse_mountinfo(&t))
        .unwrap_or_default()
}

/// What is mounted at `point`, if anything. Symlinks in `point` are resolved first: on XenServer
/// and here `/var/run` is a link to `/run`, and mountinfo lists the resolved path.
pub fn mounted_at(point: &Path) -> Option<DevNo> {
    let point = std::fs::canonicalize(point).unwrap_or_else(|_| point.to_path_buf());
    mounts()
        .into_iter()
        .rev()
        .find(|m| m.point == point)
        .map(|m| m.dev)
}

/// Where the device `rdev` is mounted.
pub fn mount_points_of(rdev: u64) -> Vec<PathBuf> {
    let mm = dev_pair(rdev);
    mounts()
        .into_iter()
        .filter(|m| m.dev == mm)
        .map(|m| m.point)
        .collect()
}

/// The device holding the root filesystem, from mountinfo (for anonymous device numbers, the
/// mount source when it is a device node), or `None` when `/` is not on a block device.
pub fn root_device(mounts: &[Mount]) -> Option<DevNo> {
    let root = mounts.iter().rev().find(|m| m.point == Path::new("/"))?;
    if root.dev.0 != 0 {
        return Some(root.dev);
    }
    root.source
        .starts_with("/dev/")
        .then(|| rdev(Path::new(&root.source)).ok().map(dev_pair))
        .flatten()
}

/// Whether the device `rdev` is part of the root filesystem's stack (see the module
/// documentation): the root device, a device under it, the disk of such a partition, or a
/// device built on any of those. `Some(name)` names the device in the root stack it reaches.
pub fn root_conflict(sys: &Sysfs, mounts: &[Mount], rdev: u64) -> Option<String> {
    let root = root_device(mounts)?;
    let root_stack = sys.root_stack(root);
    sys.stack_below(dev_pair(rdev))
        .into_iter()
        .find(|d| root_stack.contains(d))
        .map(|d| sys.name(d).unwrap_or_else(|| format!("{}:{}", d.0, d.1)))
}

/// [`root_conflict`] on this host.
pub fn holds_root(rdev: u64) -> Option<String> {
    root_conflict(&Sysfs::host(), &mounts(), rdev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_blkid_export() {
        let s = parse_export(
            "DEVNAME=/dev/loop0\nUUID=1111\nBLOCK_SIZE=4096\nTYPE=ext4\nLABEL=xsm-sr\n",
        );
        assert_eq!(s["TYPE"], "ext4");
        assert_eq!(describe(&s).as_deref(), Some("a ext4 signature"));
        assert_eq!(
            describe(&parse_export("PTUUID=ab\nPTTYPE=gpt\n")).as_deref(),
            Some("a gpt partition table")
        );
        assert_eq!(describe(&parse_export("")), None);
    }

    #[test]
    fn parses_mountinfo_with_escapes_and_sources() {
        let t = "36 35 98:0 / /mnt/with\\040space rw,noatime master:1 - ext4 /dev/root rw\n\
                 22 1 7:3 / /var/run/sr-mount/abc rw - ext4 /dev/loop3 rw\n\
                 23 1 0:31 / / rw shared:1 - btrfs /dev/vda2 rw\n";
        let m = parse_mountinfo(t);
        assert_eq!(m[0].point, PathBuf::from("/mnt/with space"));
        assert_eq!(m[0].dev, (98, 0));
        assert_eq!(m[0].source, "/dev/root");
        assert_eq!(m[1].dev, (7, 3));
        assert_eq!(m[2].source, "/dev/vda2");
    }

    fn fake_sysfs(
        devs: &[(&str, DevNo, Option<&str>)],
        slaves: &[(&str, &str)],
    ) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        crate::testing::materialize_sysfs(&crate::testing::block_tree(devs, slaves), d.path())
            .unwrap();
        d
    }

    fn mounts_root(dev: DevNo) -> Vec<Mount> {
        vec![Mount {
            dev,
            point: "/".into(),
            source: "/dev/x".into(),
        }]
    }

    fn rdev_of(d: DevNo) -> u64 {
        nix::sys::stat::makedev(d.0, d.1)
    }

    #[test]
    fn root_on_lvm_on_md_on_partitions() {
        // sda1 + sdb1 -> md0 -> (PV) -> dm-0 (root LV); sda3 and sdc are free; dm-5 is a
        // multipath map over sdb.
        let t = fake_sysfs(
            &[
                ("sda", (8, 0), None),
                ("sda1", (8, 1), Some("sda")),
                ("sda3", (8, 3), Some("sda")),
                ("sdb", (8, 16), None),
                ("sdb1", (8, 17), Some("sdb")),
                ("sdc", (8, 32), None),
                ("md0", (9, 0), None),
                ("dm-0", (253, 0), None),
                ("dm-5", (253, 5), None),
                ("dm-6", (253, 6), None),
            ],
            &[
                ("md0", "sda1"),
                ("md0", "sdb1"),
                ("dm-0", "md0"),
                ("dm-5", "sdb"),
                ("dm-6", "sda3"),
            ],
        );
        let sys = Sysfs::new(t.path());
        let m = mounts_root((253, 0));
        for (dev, hit) in [
            ((253, 0), Some("dm-0")),
            ((9, 0), Some("md0")),
            ((8, 1), Some("sda1")),
            ((8, 0), Some("sda")),
            ((8, 16), Some("sdb")),
            ((253, 5), Some("sdb")),
            ((8, 3), None),
            ((253, 6), None),
            ((8, 32), None),
        ] {
            assert_eq!(
                root_conflict(&sys, &m, rdev_of(dev)).as_deref(),
                hit,
                "{dev:?}"
            );
        }
        assert_eq!(sys.holders((8, 16)), vec!["dm-5"]);
        assert_eq!(sys.name((253, 5)).as_deref(), Some("dm-5"));
    }

    #[test]
    fn no_root_block_device_means_no_conflict() {
        let t = fake_sysfs(&[("sda", (8, 0), None)], &[]);
        let m = vec![Mount {
            dev: (0, 30),
            point: "/".into(),
            source: "overlay".into(),
        }];
        assert_eq!(
            root_conflict(&Sysfs::new(t.path()), &m, rdev_of((8, 0))),
            None
        );
    }

    #[test]
    fn this_host_root_device_is_recognised_when_it_is_a_block_device() {
        let m = mounts();
        if let Some(root) = root_device(&m) {
            assert!(holds_root(rdev_of(root)).is_some());
        }
        assert!(holds_root(rdev_of((7, 250))).is_none());
    }

    #[test]
    fn regular_files_are_not_block_devices() {
        assert!(rdev(Path::new("/etc/hostname")).is_err());
    }
}
