//! Test doubles for root tests (feature `test-utils`): loop devices over sparse files, and what
//! blkid finds on a device.

use std::path::{Path, PathBuf};

use sm_core::host::{Cmd, RunError, Runner, SystemRunner};

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
