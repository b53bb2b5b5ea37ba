//! tapdisk, the datapath of every XenServer / XCP-ng host, driven through blktap's `tap-ctl`
//! (`research/datapath.md` §2.3, §3): one tapdisk per attached VDI, serving a VHD chain
//! (`vhd:<file>`) or a raw file or device (`aio:<path>`). xapi's `vbd3` backend (tapback), live
//! storage migration and delta exports all find a VDI's tapdisk by its NBD socket
//! `/run/blktap-control/nbd<pid>.<minor>` or by its blktap2 device's major:minor.
//!
//! `tap-ctl create` does allocate + spawn + attach + open in one call; `list` is how a tapdisk is
//! found again (by the image it serves), `destroy` closes and ends it. With the blktap2 kernel
//! module (blktap 3.x, XCP-ng 8.3) a tapdisk also has a block device
//! `/dev/xen/blktap-2/tapdev<minor>`; we use the NBD socket, which both lines serve.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sm_core::host::{Cmd, RunError, Runner};

/// The control tool.
pub const TAP_CTL: &str = "tap-ctl";

/// Where tapdisk puts its control and NBD sockets (compiled into blktap).
pub const CONTROL_DIR: &str = "/run/blktap-control";

/// Deadline of one tap-ctl call (opening a long VHD chain reads every footer and BAT).
const TIMEOUT: Duration = Duration::from_secs(120);

/// What a tapdisk serves, as tap-ctl names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageType {
    /// A VHD file and its parents.
    Vhd,
    /// Raw data in a file or block device, asynchronous I/O.
    Aio,
}

impl ImageType {
    /// tap-ctl's name (`vhd`, `aio`).
    pub fn as_str(self) -> &'static str {
        match self {
            ImageType::Vhd => "vhd",
            ImageType::Aio => "aio",
        }
    }

    fn parse(s: &str) -> Option<ImageType> {
        match s {
            "vhd" => Some(ImageType::Vhd),
            "aio" => Some(ImageType::Aio),
            _ => None,
        }
    }
}

/// Why a tap-ctl operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// tap-ctl failed (its stderr is in the error).
    #[error("tap-ctl failed")]
    Run(#[from] RunError),
    /// `tap-ctl create` returned but `tap-ctl list` shows no tapdisk on the image.
    #[error("tap-ctl create returned, but no tapdisk serves {0}")]
    NotListed(String),
    /// A line of `tap-ctl list` that does not read as one.
    #[error("cannot read tap-ctl list line {0:?}")]
    BadListLine(String),
}

/// One tapdisk as `tap-ctl list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tapdisk {
    /// The tapdisk process.
    pub pid: u32,
    /// Its minor (the block device's minor, and the NBD socket's suffix).
    pub minor: u32,
    /// What it has open (`None` for a tapdisk with no image open).
    pub image: Option<(ImageType, PathBuf)>,
}

impl Tapdisk {
    /// Its NBD server socket: what tapback, SXM and delta exports look a tapdisk up by.
    pub fn nbd_socket(&self) -> PathBuf {
        Path::new(CONTROL_DIR).join(format!("nbd{}.{}", self.pid, self.minor))
    }
}

/// How many clients are connected to `t`'s NBD server, from the text of `/proc/net/unix`: a
/// connection the server accepted is listed with the listening socket's path and state 03
/// (connected); the listening socket itself is in state 01.
pub fn nbd_clients(proc_net_unix: &str, t: &Tapdisk) -> usize {
    let socket = t.nbd_socket();
    proc_net_unix
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 8 && f[5] == "03" && Path::new(f[7]) == socket
        })
        .count()
}

/// Parses `tap-ctl list`: one line per tapdisk or allocated minor,
/// `pid=<n> minor=<n> state=<x> args=<type>:<path>`; tap-ctl leaves out `pid=` of a minor with
/// no tapdisk, `minor=` of a tapdisk not attached to one, and `args=` of a tapdisk with no image
/// open. Only tapdisks attached to a minor are returned.
pub fn parse_list(text: &str) -> Result<Vec<Tapdisk>, TapError> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let bad = || TapError::BadListLine(line.to_string());
        let (head, args) = match line.split_once("args=") {
            Some((h, a)) => (h, Some(a)),
            None => (line, None),
        };
        let field = |k: &str| {
            head.split_whitespace()
                .find_map(|w| w.strip_prefix(k)?.strip_prefix('='))
        };
        if field("pid").is_none() && field("minor").is_none() && field("state").is_none() {
            return Err(bad());
        }
        let (Some(pid), Some(minor)) = (field("pid"), field("minor")) else {
            continue;
        };
        let pid = pid.parse().map_err(|_| bad())?;
        let minor = minor.parse().map_err(|_| bad())?;
        let image = match args {
            Some(a) => {
                let (t, p) = a.split_once(':').ok_or_else(bad)?;
                Some((ImageType::parse(t).ok_or_else(bad)?, PathBuf::from(p)))
            }
            None => None,
        };
        out.push(Tapdisk { pid, minor, image });
    }
    Ok(out)
}

/// Every tapdisk on this host.
pub fn list(runner: &dyn Runner) -> Result<Vec<Tapdisk>, TapError> {
    let out = runner.run(&Cmd::new(TAP_CTL).arg("list").timeout(TIMEOUT))?;
    parse_list(&out.stdout_str())
}

/// The tapdisk serving `image` as `ty`, if one does.
pub fn find(runner: &dyn Runner, ty: ImageType, image: &Path) -> Result<Option<Tapdisk>, TapError> {
    Ok(list(runner)?.into_iter().find(|t| {
        t.image
            .as_ref()
            .is_some_and(|(tt, p)| *tt == ty && p == image)
    }))
}

/// Starts a tapdisk serving `image` as `ty` (read-only when asked; through the page cache
/// instead of O_DIRECT when `direct` is false, `-D`, for filesystems without O_DIRECT) and
/// returns it.
pub fn create(
    runner: &dyn Runner,
    ty: ImageType,
    image: &Path,
    read_only: bool,
    direct: bool,
) -> Result<Tapdisk, TapError> {
    let args = format!("{}:{}", ty.as_str(), image.display());
    let mut cmd = Cmd::new(TAP_CTL).args(["create", "-a", &args]);
    if read_only {
        cmd = cmd.arg("-R");
    }
    if !direct {
        cmd = cmd.arg("-D");
    }
    runner.run(&cmd.timeout(TIMEOUT).daemonizes())?;
    find(runner, ty, image)?.ok_or(TapError::NotListed(args))
}

/// `tap-ctl <verb> -p <pid> -m <minor>`: a command addressed to one tapdisk.
fn addressed(verb: &str, t: &Tapdisk) -> Cmd {
    Cmd::new(TAP_CTL)
        .args([verb, "-p", &t.pid.to_string(), "-m", &t.minor.to_string()])
        .timeout(TIMEOUT)
}

/// Closes the image and ends the tapdisk. A tapdisk that is already gone is success (checked
/// with `tap-ctl list` only when destroy fails).
pub fn destroy(runner: &dyn Runner, t: &Tapdisk) -> Result<(), TapError> {
    match runner.run(&addressed("destroy", t)) {
        Ok(_) => Ok(()),
        Err(e) => {
            let gone = list(runner)?
                .iter()
                .all(|x| (x.pid, x.minor) != (t.pid, t.minor));
            if gone { Ok(()) } else { Err(e.into()) }
        }
    }
}

/// Pauses I/O (the image is closed until [`unpause`]): what a snapshot of an active VDI does
/// around its metadata change.
pub fn pause(runner: &dyn Runner, t: &Tapdisk) -> Result<(), TapError> {
    runner.run(&addressed("pause", t))?;
    Ok(())
}

/// Resumes a paused tapdisk on the image it had.
pub fn unpause(runner: &dyn Runner, t: &Tapdisk) -> Result<(), TapError> {
    runner.run(&addressed("unpause", t))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nbd_clients_are_the_connected_sockets_on_the_tapdisk_s_path() {
        let t = Tapdisk {
            pid: 77,
            minor: 2,
            image: None,
        };
        let text = "Num       RefCount Protocol Flags    Type St Inode Path\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 30001 /run/blktap-control/nbd77.2\n\
            0000000000000000: 00000003 00000000 00000000 0001 03 30002 /run/blktap-control/nbd77.2\n\
            0000000000000000: 00000003 00000000 00000000 0001 03 30003 /run/blktap-control/nbd77.20\n\
            0000000000000000: 00000003 00000000 00000000 0001 03 30004\n";
        assert_eq!(nbd_clients(text, &t), 1);
        assert_eq!(nbd_clients("Num RefCount\n", &t), 0);
    }

    #[test]
    fn list_lines_read_as_tap_ctl_prints_them() {
        let text = "pid=4242 minor=0 state=0 args=vhd:/var/run/sr-mount/s/a.vhd\n\
                    pid=4300 minor=3 state=0x1 args=aio:/dev/VG_XenStorage-s/LV-b\n\
                    pid=4400 state=0\n\
                    minor=7 state=0\n\
                    pid=4500 minor=5 state=0\n";
        let l = parse_list(text).unwrap();
        assert_eq!(
            l.len(),
            3,
            "a tapdisk without a minor and a minor without one are left out"
        );
        assert_eq!(
            l[0],
            Tapdisk {
                pid: 4242,
                minor: 0,
                image: Some((ImageType::Vhd, "/var/run/sr-mount/s/a.vhd".into())),
            }
        );
        assert_eq!(
            l[0].nbd_socket(),
            Path::new("/run/blktap-control/nbd4242.0")
        );
        assert_eq!(
            l[1].image,
            Some((ImageType::Aio, "/dev/VG_XenStorage-s/LV-b".into()))
        );
        assert_eq!(l[2].image, None);
        assert!(parse_list("garbage\n").is_err());
        assert!(parse_list("pid=x minor=0 state=0\n").is_err());
        assert!(parse_list("pid=1 minor=0 state=0 args=qcow9:/x\n").is_err());
    }
}
