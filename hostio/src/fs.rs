//! Typed calls that make, mount and wipe ext4 filesystems (through sm-core's runner: argv only,
//! deadline, stderr kept for the fault detail).

use std::path::Path;
use std::time::Duration;

use sm_core::host::{Cmd, RunError, Runner};

/// Deadline for mkfs on a large device.
const MKFS_TIMEOUT: Duration = Duration::from_secs(1800);
/// Deadline for mount/umount/wipefs.
const QUICK_TIMEOUT: Duration = Duration::from_secs(120);

/// Makes an ext4 filesystem on `dev` with label `label` and filesystem uuid `uuid`. No discard
/// (that can take hours on large thin LUNs), no reserved blocks (it holds no root fs).
pub fn mkfs(runner: &dyn Runner, dev: &Path, label: &str, uuid: &str) -> Result<(), RunError> {
    runner
        .run(
            &Cmd::new("mkfs.ext4")
                .args([
                    "-F",
                    "-q",
                    "-m",
                    "0",
                    "-E",
                    "nodiscard",
                    "-L",
                    label,
                    "-U",
                    uuid,
                ])
                .arg(dev)
                .timeout(MKFS_TIMEOUT),
        )
        .map(|_| ())
}

/// Mounts `dev` (ext4) at `point`; `read_only` for inspection.
pub fn mount(
    runner: &dyn Runner,
    dev: &Path,
    point: &Path,
    read_only: bool,
) -> Result<(), RunError> {
    let opts = if read_only { "ro,noload" } else { "rw,noatime" };
    runner
        .run(
            &Cmd::new("mount")
                .args(["-t", "ext4", "-o", opts])
                .arg(dev)
                .arg(point)
                .timeout(QUICK_TIMEOUT),
        )
        .map(|_| ())
}

/// Unmounts `point`.
pub fn umount(runner: &dyn Runner, point: &Path) -> Result<(), RunError> {
    runner
        .run(&Cmd::new("umount").arg(point).timeout(QUICK_TIMEOUT))
        .map(|_| ())
}

/// Erases every signature on `dev` (filesystem, partition table, RAID/LVM labels).
pub fn wipe(runner: &dyn Runner, dev: &Path) -> Result<(), RunError> {
    runner
        .run(
            &Cmd::new("wipefs")
                .args(["-a", "-q"])
                .arg(dev)
                .timeout(QUICK_TIMEOUT),
        )
        .map(|_| ())
}
