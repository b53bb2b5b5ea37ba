//! What a block device holds and who uses it: signatures (blkid), mounts (mountinfo), exclusive
//! holders (an `O_EXCL` open fails with EBUSY while the kernel has the device mounted, mapped
//! or otherwise claimed), and whether it carries the root filesystem.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sm_core::host::{Cmd, RunError, Runner};

/// The tool that reads signatures.
pub const BLKID: &str = "blkid";

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

/// The device number of a block device.
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

fn major_minor(dev: u64) -> (u64, u64) {
    (nix::sys::stat::major(dev), nix::sys::stat::minor(dev))
}

/// Whether the root filesystem lives on `rdev` or on one of its partitions.
pub fn holds_root(rdev: u64) -> bool {
    let Ok(root) = std::fs::metadata("/").map(|m| m.dev()) else {
        return false;
    };
    if root == rdev {
        return true;
    }
    let (maj, min) = major_minor(root);
    let parent = std::fs::read_to_string(format!("/sys/dev/block/{maj}:{min}/../dev")).ok();
    let (pmaj, pmin) = major_minor(rdev);
    parent.is_some_and(|p| p.trim() == format!("{pmaj}:{pmin}"))
}

/// Whether some kernel user (a mount, device-mapper, another exclusive opener) holds `dev`.
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

/// One line of /proc/self/mountinfo: the device number and the mount point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `major:minor` of the mounted device.
    pub dev: (u64, u64),
    /// Where it is mounted.
    pub point: PathBuf,
}

/// Parses mountinfo text.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let (maj, min) = f.get(2)?.split_once(':')?;
            Some(Mount {
                dev: (maj.parse().ok()?, min.parse().ok()?),
                point: PathBuf::from(unescape(f.get(4)?)),
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

/// What is mounted at `point`, if anything.
/// Symlinks in `point` are resolved first: on XenServer and here `/var/run` is a link to `/run`,
/// and mountinfo lists the resolved path.
pub fn mounted_at(point: &Path) -> Option<(u64, u64)> {
    let point = std::fs::canonicalize(point).unwrap_or_else(|_| point.to_path_buf());
    mounts()
        .into_iter()
        .rev()
        .find(|m| m.point == point)
        .map(|m| m.dev)
}

/// Where the device `rdev` is mounted.
pub fn mount_points_of(rdev: u64) -> Vec<PathBuf> {
    let mm = major_minor(rdev);
    mounts()
        .into_iter()
        .filter(|m| m.dev == mm)
        .map(|m| m.point)
        .collect()
}

/// `major:minor` of a device number.
pub fn dev_pair(rdev: u64) -> (u64, u64) {
    major_minor(rdev)
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
    fn parses_mountinfo_with_escapes() {
        let t = "36 35 98:0 / /mnt/with\\040space rw,noatime master:1 - ext4 /dev/root rw\n\
                 22 1 7:3 / /var/run/sr-mount/abc rw - ext4 /dev/loop3 rw\n";
        let m = parse_mountinfo(t);
        assert_eq!(m[0].point, PathBuf::from("/mnt/with space"));
        assert_eq!(m[0].dev, (98, 0));
        assert_eq!(m[1].dev, (7, 3));
    }

    #[test]
    fn root_device_is_recognised() {
        let root = std::fs::metadata("/").unwrap().dev();
        assert!(holds_root(root));
        assert!(!holds_root(nix::sys::stat::makedev(7, 250)));
    }

    #[test]
    fn regular_files_are_not_block_devices() {
        assert!(rdev(Path::new("/etc/hostname")).is_err());
    }
}
