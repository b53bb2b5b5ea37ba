//! The SG_IO ioctl: the only `unsafe` code in the project.
//!
//! `libc` has no `sg_io_hdr`, so [`SgIoHdr`] mirrors `include/scsi/sg.h` with `#[repr(C)]`;
//! compile-time asserts pin its size (88 bytes) and field offsets on LP64. [`sg_io`] builds the
//! header around borrowed buffers, makes the call, and [`check`] folds the ioctl result, SCSI
//! status, host/driver status and sense into a [`Completion`] or a [`ScsiError`].

use std::ffi::c_void;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use super::error::{RawStatus, ScsiError, classify};
use super::transport::{Completion, DataDir, RawOutcome};

/// `SG_IO` request number (`include/scsi/sg.h`); a "bad" ioctl number without direction bits.
const SG_IO: u64 = 0x2285;
/// `interface_id` must be `'S'`.
const SG_INTERFACE_ID: i32 = b'S' as i32;
/// `dxfer_direction`: no data.
const SG_DXFER_NONE: i32 = -1;
/// `dxfer_direction`: data-out.
const SG_DXFER_TO_DEV: i32 = -2;
/// `dxfer_direction`: data-in.
const SG_DXFER_FROM_DEV: i32 = -3;
/// Sense buffer size (`SCSI_SENSE_BUFFERSIZE`), as the header's `mx_sb_len`.
const MX_SB_LEN: u8 = 96;
/// Sense buffer size.
const SENSE_LEN: usize = MX_SB_LEN as usize;
/// Longest CDB the block layer's SG_IO accepts.
const MAX_CDB: usize = 32;

/// `struct sg_io_hdr` from `include/scsi/sg.h`.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct SgIoHdr {
    interface_id: i32,
    dxfer_direction: i32,
    cmd_len: u8,
    mx_sb_len: u8,
    iovec_count: u16,
    dxfer_len: u32,
    dxferp: *mut c_void,
    cmdp: *const u8,
    sbp: *mut u8,
    timeout: u32,
    flags: u32,
    pack_id: i32,
    usr_ptr: *mut c_void,
    status: u8,
    masked_status: u8,
    msg_status: u8,
    sb_len_wr: u8,
    host_status: u16,
    driver_status: u16,
    resid: i32,
    duration: u32,
    info: u32,
}

#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(size_of::<SgIoHdr>() == 88);
    assert!(offset_of!(SgIoHdr, dxfer_len) == 12);
    assert!(offset_of!(SgIoHdr, dxferp) == 16);
    assert!(offset_of!(SgIoHdr, cmdp) == 24);
    assert!(offset_of!(SgIoHdr, sbp) == 32);
    assert!(offset_of!(SgIoHdr, timeout) == 40);
    assert!(offset_of!(SgIoHdr, usr_ptr) == 56);
    assert!(offset_of!(SgIoHdr, status) == 64);
    assert!(offset_of!(SgIoHdr, sb_len_wr) == 67);
    assert!(offset_of!(SgIoHdr, host_status) == 68);
    assert!(offset_of!(SgIoHdr, driver_status) == 70);
    assert!(offset_of!(SgIoHdr, resid) == 72);
    assert!(offset_of!(SgIoHdr, info) == 80);
};

nix::ioctl_readwrite_bad!(sg_io_ioctl, SG_IO, SgIoHdr);

/// Sends one command through SG_IO on `fd` (a SCSI block device or `/dev/sg*`).
pub(crate) fn sg_io(
    fd: BorrowedFd<'_>,
    device: &str,
    cdb: &[u8],
    data: DataDir<'_>,
    timeout: Duration,
) -> Result<Completion, ScsiError> {
    let (rc, hdr, sense, took) = call(fd, device, cdb, data, timeout)?;
    check(rc, &hdr, &sense, device, cdb, took)
}

/// Sends one command through SG_IO and returns what the kernel reported, uninterpreted;
/// `Err` only when the ioctl itself failed (or the CDB or buffer cannot be expressed: EINVAL).
pub(crate) fn sg_io_raw(
    fd: BorrowedFd<'_>,
    device: &str,
    cdb: &[u8],
    data: DataDir<'_>,
    timeout: Duration,
) -> Result<RawOutcome, nix::errno::Errno> {
    let (rc, hdr, sense, took) =
        call(fd, device, cdb, data, timeout).map_err(|_| nix::errno::Errno::EINVAL)?;
    rc?;
    let sb_len = usize::from(hdr.sb_len_wr).min(SENSE_LEN);
    Ok(RawOutcome {
        status: hdr.status,
        host_status: hdr.host_status,
        driver_status: hdr.driver_status,
        resid: usize::try_from(hdr.resid).unwrap_or(0),
        sense: sense[..sb_len].to_vec(),
        duration: took,
    })
}

/// The ioctl itself: the header built around the borrowed buffers, the call, and the header
/// and sense buffer as the kernel left them.
fn call(
    fd: BorrowedFd<'_>,
    device: &str,
    cdb: &[u8],
    mut data: DataDir<'_>,
    timeout: Duration,
) -> Result<(nix::Result<i32>, SgIoHdr, [u8; SENSE_LEN], Duration), ScsiError> {
    let invalid = |why: String| ScsiError::Invalid(format!("{device}: {why}"));
    if cdb.is_empty() || cdb.len() > MAX_CDB {
        return Err(invalid(format!("CDB of {} bytes", cdb.len())));
    }
    let cmd_len = u8::try_from(cdb.len()).map_err(|_| invalid("CDB too long".into()))?;
    let dxfer_len =
        u32::try_from(data.len()).map_err(|_| invalid(format!("{} bytes of data", data.len())))?;
    let (dxfer_direction, dxferp): (i32, *mut c_void) = match &mut data {
        DataDir::None => (SG_DXFER_NONE, std::ptr::null_mut()),
        DataDir::FromDevice(b) => (SG_DXFER_FROM_DEV, b.as_mut_ptr().cast()),
        // The kernel only reads a data-out buffer.
        DataDir::ToDevice(b) => (SG_DXFER_TO_DEV, b.as_ptr().cast_mut().cast()),
    };
    let mut sense = [0u8; SENSE_LEN];
    let mut hdr = SgIoHdr {
        interface_id: SG_INTERFACE_ID,
        dxfer_direction,
        cmd_len,
        mx_sb_len: MX_SB_LEN,
        iovec_count: 0,
        dxfer_len,
        dxferp,
        cmdp: cdb.as_ptr(),
        sbp: sense.as_mut_ptr(),
        // u32::MAX would mean "no timeout": clamp below it.
        timeout: u32::try_from(timeout.as_millis())
            .unwrap_or(u32::MAX - 1)
            .min(u32::MAX - 1),
        flags: 0,
        pack_id: 0,
        usr_ptr: std::ptr::null_mut(),
        status: 0,
        masked_status: 0,
        msg_status: 0,
        sb_len_wr: 0,
        host_status: 0,
        driver_status: 0,
        resid: 0,
        duration: 0,
        info: 0,
    };
    let started = Instant::now();
    // SAFETY: `hdr` is a `#[repr(C)]` mirror of the kernel's `struct sg_io_hdr` (size and
    // offsets asserted above). Every pointer in it refers to memory borrowed for this whole
    // call: `cdb` (cmd_len bytes), the data buffer (exactly dxfer_len bytes, writable when
    // data-in) and `sense` (mx_sb_len bytes). The kernel writes only within those lengths and
    // into `hdr` itself, and keeps no pointer after the ioctl returns.
    let rc = unsafe { sg_io_ioctl(fd.as_raw_fd(), &mut hdr) };
    Ok((rc, hdr, sense, started.elapsed()))
}

/// Folds the ioctl return value and the header's outputs into the command's outcome.
fn check(
    rc: nix::Result<i32>,
    hdr: &SgIoHdr,
    sense: &[u8; SENSE_LEN],
    device: &str,
    cdb: &[u8],
    took: Duration,
) -> Result<Completion, ScsiError> {
    use super::error::Condition;
    if let Err(errno) = rc {
        return Err(ScsiError::command(device, cdb, Condition::Io(errno)));
    }
    let sb_len = usize::from(hdr.sb_len_wr).min(SENSE_LEN);
    let raw = RawStatus {
        status: hdr.status,
        host_status: hdr.host_status,
        driver_status: hdr.driver_status,
        sense: &sense[..sb_len],
    };
    match classify(raw) {
        Ok(recovered) => Ok(Completion {
            status: hdr.status,
            resid: usize::try_from(hdr.resid).unwrap_or(0),
            sense: recovered,
            duration: took,
        }),
        Err((condition, sense)) => Err(ScsiError::Command {
            device: device.into(),
            op: super::cdb::Op::of(cdb),
            condition,
            sense,
            attempts: 1,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::error::Condition;
    use std::os::fd::AsFd;

    #[test]
    fn enotty_on_a_non_scsi_file() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let e = sg_io(
            f.as_fd(),
            "/dev/null",
            &[0; 6],
            DataDir::None,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert_eq!(e.condition(), Condition::Io(nix::errno::Errno::ENOTTY));
    }

    #[test]
    fn rejects_bad_cdb_lengths() {
        let f = std::fs::File::open("/dev/null").unwrap();
        for cdb in [&[][..], &[0u8; 33][..]] {
            let e = sg_io(
                f.as_fd(),
                "/dev/null",
                cdb,
                DataDir::None,
                Duration::from_secs(1),
            )
            .unwrap_err();
            assert!(matches!(e, ScsiError::Invalid(_)));
        }
    }
}
