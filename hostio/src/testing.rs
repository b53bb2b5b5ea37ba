//! Test doubles for root tests (feature `test-utils`): loop devices over sparse files, what
//! blkid finds on a device, and VHD images served or written through a real tapdisk (lab).

use std::path::{Path, PathBuf};
use std::time::Duration;

use sm_core::host::{Cmd, RunError, Runner, SystemRunner};

use crate::tapdisk::{self, ImageType, TapError, Tapdisk};

/// What `blkid -p -o export` finds on `dev` (empty: nothing).
pub fn blkid(dev: &Path) -> String {
    SystemRunner::new()
        .run(
            &Cmd::new("blkid")
                .args(["-p", "-o", "export"])
                .arg(dev)
                .ok_codes(&[0, 2]),
        )
        .map(|o| o.stdout_str())
        .unwrap_or_else(|e| format!("blkid failed: {e}"))
}

/// A loop device over a sparse file, detached when dropped (root tests).
#[derive(Debug)]
pub struct LoopDevice {
    /// `/dev/loopN`.
    pub path: PathBuf,
    _backing: tempfile::NamedTempFile,
}

impl LoopDevice {
    /// A new loop device of `size` bytes, backed by a file under `$SM_TEST_LOOP_DIR` (which the
    /// CI stage cleans up after) or the system temp dir.
    pub fn new(size: u64) -> Result<LoopDevice, RunError> {
        let dir = std::env::var_os("SM_TEST_LOOP_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let io = |e: std::io::Error| RunError::Spawn {
            cmd: "create loop backing file".into(),
            reason: e.to_string(),
        };
        let backing = tempfile::Builder::new()
            .prefix("xsm-loop")
            .tempfile_in(dir)
            .map_err(io)?;
        backing.as_file().set_len(size).map_err(io)?;
        let out = SystemRunner::new().run(
            &Cmd::new("losetup")
                .args(["--find", "--show"])
                .arg(backing.path()),
        )?;
        Ok(LoopDevice {
            path: PathBuf::from(out.stdout_str().trim()),
            _backing: backing,
        })
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = SystemRunner::new().run(&Cmd::new("losetup").arg("-d").arg(&self.path));
    }
}

/// A tapdisk of its own serving a VHD image, ended when dropped (lab tests).
#[derive(Debug)]
pub struct Served(pub Tapdisk);

impl Served {
    /// Starts a writable tapdisk on `image` (`vhd:`).
    pub fn start(image: &Path) -> Result<Served, TapError> {
        tapdisk::create(&SystemRunner::new(), ImageType::Vhd, image, false, true).map(Served)
    }

    /// Its NBD socket as a qemu URI.
    pub fn uri(&self) -> String {
        format!("nbd+unix:///?socket={}", self.0.nbd_socket().display())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = tapdisk::destroy(&SystemRunner::new(), &self.0);
    }
}

/// Writes `len` bytes of `byte` at `offset` of the VHD `image` through a tapdisk of its own
/// (with `qemu-io`), as a guest's writes reach it.
pub fn write_through_tapdisk(
    image: &Path,
    byte: u8,
    offset: u64,
    len: u64,
) -> Result<(), RunError> {
    let served = Served::start(image).map_err(|e| RunError::Spawn {
        cmd: format!("tapdisk on {}", image.display()),
        reason: e.to_string(),
    })?;
    SystemRunner::new()
        .run(
            &Cmd::new("qemu-io")
                .args(["-f", "raw", "-c"])
                .arg(format!("write -P {byte:#x} {offset} {len}"))
                .arg(served.uri())
                .timeout(Duration::from_secs(120)),
        )
        .map(drop)
}
