//! One VDI image's datapath on this host, as `vdi_attach` hands it to xapi in `params_nbd`: a
//! tapdisk where blktap is installed (what every XCP-ng host plugs: tapback, live storage
//! migration and delta exports need one), else a qemu-nbd export ([`crate::nbd`]) on plain
//! Linux (`research/datapath.md` §5).
//!
//! With a tapdisk the URI is sm's: `nbd:unix:/run/blktap-control/nbd/<sr>/<vdi>:exportname=<vdi>`,
//! the link resolving to the tapdisk's own socket `/run/blktap-control/nbd<pid>.<minor>`, the
//! one name tapback accepts (`Malformed physical-device-path` otherwise). That is enough for
//! XCP-ng 8.3's tapback (3.54+) and for upstream blktap 4, so no blktap2 device node is
//! returned in `params`. Whether an image is open read-only is kept beside the link
//! (`tap-ctl list` does not say).

use std::path::{Path, PathBuf};

use sm_core::host::{Paths, RunError, Runner};

use crate::nbd::{self, Cache, Export, NbdError};
use crate::tapdisk::{self, ImageType, TapError};

/// Where the per-VDI links to tapdisk sockets live (sm's layout).
pub const TAP_LINK_DIR: &str = "/run/blktap-control/nbd";

/// Which server a host uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// blktap's tapdisk (tap-ctl is installed).
    Tapdisk,
    /// qemu-nbd (no blktap on this host).
    QemuNbd,
}

impl Kind {
    /// The server's name, for logs and faults.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Tapdisk => "tapdisk",
            Kind::QemuNbd => "qemu-nbd",
        }
    }
}

/// Why a datapath could not be found, opened or closed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// tap-ctl failed.
    #[error(transparent)]
    Tap(#[from] TapError),
    /// qemu-nbd failed.
    #[error(transparent)]
    Nbd(#[from] NbdError),
    /// A link or state file could not be made or removed.
    #[error("cannot update {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The server this host uses: tapdisk when `tap-ctl list` runs, qemu-nbd when tap-ctl is not
/// installed.
pub fn kind(runner: &dyn Runner) -> Result<Kind, ServeError> {
    match tapdisk::list(runner) {
        Ok(_) => Ok(Kind::Tapdisk),
        Err(TapError::Run(RunError::NotFound { .. })) => Ok(Kind::QemuNbd),
        Err(e) => Err(e.into()),
    }
}

/// An open datapath.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// The server process.
    pub pid: u32,
    /// Whether it serves read-only.
    pub read_only: bool,
    /// The socket it listens on (tapdisk's own, or qemu-nbd's).
    pub socket: PathBuf,
    /// The export name a client asks for.
    pub export: String,
}

/// The datapath of one VDI image.
#[derive(Debug, Clone)]
pub struct Datapath {
    kind: Kind,
    vdi: String,
    image: PathBuf,
    link: PathBuf,
    read_only_mark: PathBuf,
    export: Export,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ServeError + '_ {
    move |source| ServeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn remove_if_there(p: &Path) -> Result<(), ServeError> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(p)(e)),
    }
}

impl Datapath {
    /// The datapath of `image`, VDI `vdi` of SR `sr`, served by `kind`.
    pub fn new(kind: Kind, paths: &Paths, sr: &str, vdi: &str, image: &Path) -> Datapath {
        let link = paths.host(TAP_LINK_DIR).join(sr).join(vdi);
        Datapath {
            kind,
            vdi: vdi.to_string(),
            image: image.to_path_buf(),
            read_only_mark: paths
                .run_dir()
                .join("tap")
                .join(sr)
                .join(format!("{vdi}.ro")),
            link,
            export: Export::new(paths, sr, vdi),
        }
    }

    /// Which server it uses.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// What xapi connects to: `nbd:unix:<socket or link>:exportname=<vdi>`.
    pub fn uri(&self) -> String {
        match self.kind {
            Kind::Tapdisk => format!("nbd:unix:{}:exportname={}", self.link.display(), self.vdi),
            Kind::QemuNbd => self.export.uri(),
        }
    }

    /// The link `params_nbd` names (tapdisk) or the socket itself (qemu-nbd).
    pub fn socket_path(&self) -> &Path {
        match self.kind {
            Kind::Tapdisk => &self.link,
            Kind::QemuNbd => &self.export.socket,
        }
    }

    /// The server serving the image, if one is.
    pub fn running(&self, runner: &dyn Runner) -> Result<Option<Open>, ServeError> {
        Ok(match self.kind {
            Kind::Tapdisk => tapdisk::find(runner, ImageType::Vhd, &self.image)?.map(|t| Open {
                pid: t.pid,
                read_only: self.read_only_mark.exists(),
                socket: t.nbd_socket(),
                export: self.vdi.clone(),
            }),
            Kind::QemuNbd => self.export.running().map(|r| Open {
                pid: u32::try_from(r.pid).unwrap_or(0),
                read_only: r.read_only,
                socket: self.export.socket.clone(),
                export: self.export.name.clone(),
            }),
        })
    }

    /// Opens the image; the caller checked that it is not open.
    pub fn start(
        &self,
        runner: &dyn Runner,
        read_only: bool,
        cache: Cache,
    ) -> Result<Open, ServeError> {
        match self.kind {
            Kind::QemuNbd => {
                self.export.start(runner, &self.image, read_only, cache)?;
                self.running(runner)?
                    .ok_or_else(|| NbdError::NotRunning(self.export.socket.clone()).into())
            }
            Kind::Tapdisk => {
                let t = tapdisk::create(
                    runner,
                    ImageType::Vhd,
                    &self.image,
                    read_only,
                    cache == Cache::Direct,
                )?;
                if let Err(e) = self.publish(&t, read_only) {
                    if let Err(undo) = tapdisk::destroy(runner, &t) {
                        tracing::warn!("cannot end tapdisk {} after a failed open: {undo}", t.pid);
                    }
                    return Err(e);
                }
                Ok(Open {
                    pid: t.pid,
                    read_only,
                    socket: t.nbd_socket(),
                    export: self.vdi.clone(),
                })
            }
        }
    }

    /// The link to the tapdisk's socket and the read-only mark.
    fn publish(&self, t: &tapdisk::Tapdisk, read_only: bool) -> Result<(), ServeError> {
        for f in [&self.link, &self.read_only_mark] {
            if let Some(dir) = f.parent() {
                std::fs::create_dir_all(dir).map_err(io_err(dir))?;
            }
        }
        remove_if_there(&self.link)?;
        std::os::unix::fs::symlink(t.nbd_socket(), &self.link).map_err(io_err(&self.link))?;
        if read_only {
            std::fs::write(&self.read_only_mark, b"").map_err(io_err(&self.read_only_mark))
        } else {
            remove_if_there(&self.read_only_mark)
        }
    }

    /// Closes the image and removes what [`Datapath::start`] made. Idempotent.
    pub fn stop(&self, runner: &dyn Runner) -> Result<(), ServeError> {
        match self.kind {
            Kind::QemuNbd => Ok(self.export.stop()?),
            Kind::Tapdisk => {
                if let Some(t) = tapdisk::find(runner, ImageType::Vhd, &self.image)? {
                    tapdisk::destroy(runner, &t)?;
                }
                remove_if_there(&self.link)?;
                remove_if_there(&self.read_only_mark)
            }
        }
    }

    /// Runs `f` with the image's I/O paused (tapdisk: `tap-ctl pause`, then `unpause` whatever
    /// `f` returned), so the file holds a consistent point-in-time image while `f` reads it. A
    /// closed image, or one served by qemu-nbd, runs `f` as is.
    pub fn with_paused<T>(
        &self,
        runner: &dyn Runner,
        f: impl FnOnce() -> T,
    ) -> Result<T, ServeError> {
        let t = match self.kind {
            Kind::Tapdisk => tapdisk::find(runner, ImageType::Vhd, &self.image)?,
            Kind::QemuNbd => None,
        };
        let Some(t) = t else { return Ok(f()) };
        tapdisk::pause(runner, &t)?;
        let out = f();
        tapdisk::unpause(runner, &t, None)?;
        Ok(out)
    }
}

/// VDIs of SR `sr` with a datapath open on this host (qemu-nbd exports and tapdisk links whose
/// socket is there), sorted.
pub fn open_vdis(paths: &Paths, sr: &str) -> Vec<String> {
    let mut out = nbd::running_exports(paths, sr);
    if let Ok(entries) = std::fs::read_dir(paths.host(TAP_LINK_DIR).join(sr)) {
        for e in entries.flatten() {
            if e.path().exists()
                && let Some(n) = e.file_name().to_str()
            {
                out.push(n.to_string());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sm_core::testing::FakeRunner;

    const LIST: &str = "pid=77 minor=2 state=0 args=vhd:/srv/sr/v.vhd\n";

    #[test]
    fn tapdisk_when_tap_ctl_runs_and_sm_s_link_layout() {
        let d = tempfile::tempdir().unwrap();
        let paths = Paths::new(d.path());
        let fake = FakeRunner::new();
        fake.on(&["tap-ctl", "list"], 0, LIST, "");
        assert_eq!(kind(&fake).unwrap(), Kind::Tapdisk);
        let dp = Datapath::new(Kind::Tapdisk, &paths, "s", "v", Path::new("/srv/sr/v.vhd"));
        assert_eq!(
            dp.uri(),
            format!(
                "nbd:unix:{}/run/blktap-control/nbd/s/v:exportname=v",
                d.path().display()
            )
        );
        fake.on(&["tap-ctl", "list"], 0, LIST, "");
        let open = dp.running(&fake).unwrap().unwrap();
        assert_eq!(open.pid, 77);
        assert_eq!(open.socket, Path::new("/run/blktap-control/nbd77.2"));
        assert!(!open.read_only);
    }

    #[test]
    fn start_links_the_socket_and_stop_removes_it() {
        let d = tempfile::tempdir().unwrap();
        let paths = Paths::new(d.path());
        let fake = FakeRunner::new();
        fake.on(&["tap-ctl", "list"], 0, LIST, "");
        let dp = Datapath::new(Kind::Tapdisk, &paths, "s", "v", Path::new("/srv/sr/v.vhd"));
        let open = dp.start(&fake, true, Cache::Direct).unwrap();
        assert!(open.read_only);
        assert_eq!(
            std::fs::read_link(dp.socket_path()).unwrap(),
            Path::new("/run/blktap-control/nbd77.2")
        );
        let create = &fake.calls()[0];
        assert_eq!(
            create[..4],
            ["tap-ctl", "create", "-a", "vhd:/srv/sr/v.vhd"]
        );
        assert!(create.contains(&"-R".to_string()) && !create.contains(&"-D".to_string()));
        fake.on(&["tap-ctl", "list"], 0, LIST, "");
        fake.on(&["tap-ctl", "list"], 0, LIST, "");
        dp.stop(&fake).unwrap();
        assert!(
            fake.calls()
                .iter()
                .any(|c| c[..2] == ["tap-ctl", "destroy"])
        );
        assert!(std::fs::symlink_metadata(dp.socket_path()).is_err());
    }

    #[test]
    fn qemu_nbd_when_tap_ctl_is_not_installed() {
        struct NoTapCtl;
        impl Runner for NoTapCtl {
            fn run(&self, cmd: &sm_core::host::Cmd) -> Result<sm_core::host::Output, RunError> {
                Err(RunError::NotFound {
                    program: cmd.program().into(),
                    dirs: "/usr/sbin".into(),
                })
            }
        }
        assert_eq!(kind(&NoTapCtl).unwrap(), Kind::QemuNbd);
    }
}
