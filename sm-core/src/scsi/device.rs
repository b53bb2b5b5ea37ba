//! [`SgDevice`]: a SCSI device file descriptor (a `/dev/sd*` block device, a `/dev/sg*`
//! character device, or an fd handed over by another process) driven through SG_IO.

use std::fs::OpenOptions;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;

use super::error::ScsiError;
use super::sg_io::{sg_io, sg_io_raw};
use super::transport::{Completion, DataDir, RawOutcome, RetryPolicy, ScsiTransport};

/// An open SCSI device.
#[derive(Debug)]
pub struct SgDevice {
    fd: OwnedFd,
    name: String,
    writable: bool,
    policy: RetryPolicy,
}

fn open_errno(path: &Path, e: std::io::Error) -> ScsiError {
    ScsiError::Open {
        path: path.display().to_string(),
        errno: e.raw_os_error().map_or(Errno::EIO, Errno::from_raw),
    }
}

/// Whether `fd` was opened for writing (its access mode is not `O_RDONLY`); false when the
/// mode cannot be read.
pub fn is_writable(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL)
        .map(|fl| {
            let mode = nix::fcntl::OFlag::from_bits_truncate(fl) & nix::fcntl::OFlag::O_ACCMODE;
            mode != nix::fcntl::OFlag::O_RDONLY
        })
        .unwrap_or(false)
}

impl SgDevice {
    /// Opens `path` read-write (`O_RDWR | O_NONBLOCK`), as PR OUT and STPG need; falls back
    /// to read-only when the node refuses writers (`EACCES`, `EROFS`). Rejects anything that is
    /// not a block or character device.
    pub fn open(path: impl AsRef<Path>) -> Result<SgDevice, ScsiError> {
        let path = path.as_ref();
        match SgDevice::open_mode(path, true) {
            Err(ScsiError::Open {
                errno: Errno::EACCES | Errno::EROFS,
                ..
            }) => SgDevice::open_mode(path, false),
            other => other,
        }
    }

    /// Opens `path` read-only (`O_RDONLY | O_NONBLOCK`): enough for INQUIRY, RTPG, PR IN and
    /// READ as root; the kernel refuses PR OUT/STPG/WRITE on a read-only fd without
    /// `CAP_SYS_RAWIO`.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<SgDevice, ScsiError> {
        SgDevice::open_mode(path.as_ref(), false)
    }

    fn open_mode(path: &Path, write: bool) -> Result<SgDevice, ScsiError> {
        let file = OpenOptions::new()
            .read(true)
            .write(write)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| open_errno(path, e))?;
        let meta = file.metadata().map_err(|e| open_errno(path, e))?;
        let ft = meta.file_type();
        if !ft.is_block_device() && !ft.is_char_device() {
            return Err(ScsiError::Open {
                path: path.display().to_string(),
                errno: Errno::ENOTBLK,
            });
        }
        Ok(SgDevice {
            fd: file.into(),
            name: path.display().to_string(),
            writable: write,
            policy: RetryPolicy::default(),
        })
    }

    /// Wraps a descriptor received from elsewhere (e.g. over `SCM_RIGHTS` by the QEMU
    /// pr-helper protocol). `name` is used in logs and errors. Whether it is writable is read
    /// from the descriptor's access mode.
    pub fn from_fd(fd: OwnedFd, name: impl Into<String>) -> SgDevice {
        let writable = is_writable(fd.as_fd());
        SgDevice {
            fd,
            name: name.into(),
            writable,
            policy: RetryPolicy::default(),
        }
    }

    /// Uses `policy` for timeouts and retries instead of the default.
    pub fn with_policy(mut self, policy: RetryPolicy) -> SgDevice {
        self.policy = policy;
        self
    }

    /// Whether the descriptor was opened for writing.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// The descriptor.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl ScsiTransport for SgDevice {
    fn execute(
        &self,
        cdb: &[u8],
        data: DataDir<'_>,
        timeout: Duration,
    ) -> Result<Completion, ScsiError> {
        sg_io(self.fd.as_fd(), &self.name, cdb, data, timeout)
    }

    fn execute_raw(
        &self,
        cdb: &[u8],
        data: DataDir<'_>,
        timeout: Duration,
    ) -> Result<RawOutcome, Errno> {
        sg_io_raw(self.fd.as_fd(), &self.name, cdb, data, timeout)
    }

    fn device(&self) -> &str {
        &self.name
    }

    fn policy(&self) -> RetryPolicy {
        self.policy.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::error::Condition;

    #[test]
    fn rejects_regular_files_and_missing_paths() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        assert!(matches!(
            SgDevice::open(tmp.path()),
            Err(ScsiError::Open {
                errno: Errno::ENOTBLK,
                ..
            })
        ));
        assert!(matches!(
            SgDevice::open("/nonexistent/sdz"),
            Err(ScsiError::Open {
                errno: Errno::ENOENT,
                ..
            })
        ));
    }

    #[test]
    fn character_device_without_sg_io_reports_enotty() {
        let dev = SgDevice::open("/dev/null").unwrap();
        assert!(dev.is_writable());
        let e = crate::scsi::test_unit_ready(&dev).unwrap_err();
        assert_eq!(e.condition(), Condition::Io(Errno::ENOTTY));
        let ro = SgDevice::from_fd(std::fs::File::open("/dev/null").unwrap().into(), "fd:null");
        assert!(!ro.is_writable());
        assert_eq!(ro.device(), "fd:null");
    }
}
