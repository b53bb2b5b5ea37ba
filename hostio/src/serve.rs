//! One VDI image's datapath on this host, as `vdi_attach` hands it to xapi in `params_nbd`: a
//! tapdisk where blktap is installed (what every XCP-ng host plugs: tapback, live storage
//! migration and delta exports need one; `vhd:` for VHD files, `aio:` for raw block devices),
//! else on plain Linux a qemu-nbd export ([`crate::nbd`]) of a VHD file, or the block device
//! itself in `params` (`research/datapath.md` §5).
//!
//! With a tapdisk the URI is sm's: `nbd:unix:/run/blktap-control/nbd/<sr>/<vdi>:exportname=<vdi>`,
//! the link resolving to the tapdisk's own socket `/run/blktap-control/nbd<pid>.<minor>`, the
//! one name tapback accepts (`Malformed physical-device-path` otherwise). Where the blktap2
//! kernel module is loaded (blktap 3.x, XCP-ng 8.3: `/dev/xen/blktap-2/control`), `params` is
//! also sm's `/dev/sm/backend/<sr>/<vdi>`, a block node carrying the tapdisk's
//! `tapdev<minor>` device number, made when the tapdisk starts; blktap 4 has no such device
//! and gets `params_nbd` alone, as upstream sm returns it. Whether an image is open read-only
//! is kept beside the link (`tap-ctl list` does not say).

use std::path::{Path, PathBuf};

use sm_core::host::{Paths, RunError, Runner};

use crate::nbd::{self, Cache, Export, NbdError};
use crate::tapdisk::{self, ImageType, TapError};

/// Where the per-VDI links to tapdisk sockets live (sm's layout).
pub const TAP_LINK_DIR: &str = "/run/blktap-control/nbd";

/// Where sm keeps the per-VDI block nodes handed to xapi in `params`.
pub const BACKEND_NODE_DIR: &str = "/dev/sm/backend";

/// The blktap2 kernel module's devices: `control`, and `tapdev<minor>` per tapdisk.
pub const BLKTAP2_DIR: &str = "/dev/xen/blktap-2";

/// Which server a host uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// blktap's tapdisk (tap-ctl is installed).
    Tapdisk,
    /// qemu-nbd (no blktap on this host; VHD files).
    QemuNbd,
    /// No server: the block device itself (no blktap on this host; raw devices).
    Device,
}

impl Kind {
    /// The server's name, for logs and faults.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Tapdisk => "tapdisk",
            Kind::QemuNbd => "qemu-nbd",
            Kind::Device => "block device",
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
    /// A block device is used as it is: there is no server to start.
    #[error("{0} is used as a block device: no server to start")]
    NoServer(PathBuf),
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
    /// The tapdisk, when one serves it.
    pub tapdisk: Option<tapdisk::Tapdisk>,
}

/// The datapath of one VDI image.
#[derive(Debug, Clone)]
pub struct Datapath {
    kind: Kind,
    vdi: String,
    ty: ImageType,
    image: PathBuf,
    link: PathBuf,
    backend_node: PathBuf,
    blktap2: PathBuf,
    read_only_mark: PathBuf,
    proc_net_unix: PathBuf,
    export: Export,
}

/// How long a client that just disconnected may still be listed (tapdisk closes its end of
/// the connection from its event loop).
const CLIENT_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

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
    /// The datapath of `image` (a `ty` image), VDI `vdi` of SR `sr`, and the server serving it
    /// if one is, from one `tap-ctl list`: a host where tap-ctl runs uses tapdisk, one without
    /// it qemu-nbd for a VHD file and the device itself for a raw device.
    pub fn lookup(
        runner: &dyn Runner,
        paths: &Paths,
        sr: &str,
        vdi: &str,
        ty: ImageType,
        image: &Path,
    ) -> Result<(Datapath, Option<Open>), ServeError> {
        let (kind, tapdisks) = match tapdisk::list(runner) {
            Ok(l) => (Kind::Tapdisk, l),
            Err(TapError::Run(RunError::NotFound { .. })) => match ty {
                ImageType::Vhd => (Kind::QemuNbd, Vec::new()),
                ImageType::Aio => (Kind::Device, Vec::new()),
            },
            Err(e) => return Err(e.into()),
        };
        let dp = Datapath::new(kind, paths, sr, vdi, ty, image);
        let open = match kind {
            Kind::Tapdisk => tapdisks
                .into_iter()
                .find(|t| {
                    t.image
                        .as_ref()
                        .is_some_and(|(tt, p)| *tt == ty && p == image)
                })
                .map(|t| dp.open_of(t, dp.read_only_mark.exists())),
            Kind::Device => None,
            Kind::QemuNbd => dp.export.running().map(|r| Open {
                pid: u32::try_from(r.pid).unwrap_or(0),
                read_only: r.read_only,
                socket: dp.export.socket.clone(),
                export: dp.export.name.clone(),
                tapdisk: None,
            }),
        };
        Ok((dp, open))
    }

    /// The datapath of `image` (a `ty` image), VDI `vdi` of SR `sr`, served by `kind`.
    pub fn new(
        kind: Kind,
        paths: &Paths,
        sr: &str,
        vdi: &str,
        ty: ImageType,
        image: &Path,
    ) -> Datapath {
        Datapath {
            kind,
            vdi: vdi.to_string(),
            ty,
            image: image.to_path_buf(),
            link: paths.host(TAP_LINK_DIR).join(sr).join(vdi),
            backend_node: paths.host(BACKEND_NODE_DIR).join(sr).join(vdi),
            blktap2: paths.host(BLKTAP2_DIR),
            read_only_mark: paths
                .run_dir()
                .join("tap")
                .join(sr)
                .join(format!("{vdi}.ro")),
            // The kernel's view, whatever root the host's files are under.
            proc_net_unix: PathBuf::from("/proc/net/unix"),
            export: Export::new(paths, sr, vdi),
        }
    }

    fn open_of(&self, t: tapdisk::Tapdisk, read_only: bool) -> Open {
        Open {
            pid: t.pid,
            read_only,
            socket: t.nbd_socket(),
            export: self.vdi.clone(),
            tapdisk: Some(t),
        }
    }

    /// Which server it uses.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// What xapi connects to, the attach result's `params_nbd`:
    /// `nbd:unix:<socket or link>:exportname=<vdi>`, or "" for a block device used as it is
    /// (what sm returns for a VDI without a tapdisk).
    pub fn uri(&self) -> String {
        match self.kind {
            Kind::Tapdisk => format!("nbd:unix:{}:exportname={}", self.link.display(), self.vdi),
            Kind::QemuNbd => self.export.uri(),
            Kind::Device => String::new(),
        }
    }

    /// Whether the blktap2 kernel module is loaded (its control device exists): tapdisks then
    /// have a `tapdev<minor>` block device.
    fn has_blktap2(&self) -> bool {
        self.blktap2.join("control").exists()
    }

    /// The attach result's `params`: the block device when it is used as it is; with a tapdisk
    /// on a blktap2 host, the backend node [`Datapath::start`] makes; else none (a tapdisk is
    /// found by its NBD socket alone, which XCP-ng 8.3's tapback and blktap 4 accept).
    pub fn params(&self) -> Option<String> {
        match self.kind {
            Kind::Device => Some(self.image.display().to_string()),
            Kind::Tapdisk if self.has_blktap2() => Some(self.backend_node.display().to_string()),
            Kind::Tapdisk | Kind::QemuNbd => None,
        }
    }

    /// Opens the image; the caller looked it up and found it closed.
    pub fn start(
        &self,
        runner: &dyn Runner,
        read_only: bool,
        cache: Cache,
    ) -> Result<Open, ServeError> {
        match self.kind {
            Kind::Device => Err(ServeError::NoServer(self.image.clone())),
            Kind::QemuNbd => {
                let r = self.export.start(runner, &self.image, read_only, cache)?;
                Ok(Open {
                    pid: u32::try_from(r.pid).unwrap_or(0),
                    read_only: r.read_only,
                    socket: self.export.socket.clone(),
                    export: self.export.name.clone(),
                    tapdisk: None,
                })
            }
            Kind::Tapdisk => {
                let t = tapdisk::create(
                    runner,
                    self.ty,
                    &self.image,
                    read_only,
                    cache == Cache::Direct,
                )?;
                if let Err(e) = self.publish(&t, read_only) {
                    if let Err(undo) = tapdisk::destroy(runner, &t) {
                        tracing::warn!("cannot end tapdisk {} after a failed open: {undo}", t.pid);
                    }
                    for made in [&self.link, &self.backend_node, &self.read_only_mark] {
                        if let Err(undo) = remove_if_there(made) {
                            tracing::warn!("after a failed open: {undo}");
                        }
                    }
                    return Err(e);
                }
                Ok(self.open_of(t, read_only))
            }
        }
    }

    /// The link to the tapdisk's socket, the backend node on a blktap2 host, and the
    /// read-only mark.
    fn publish(&self, t: &tapdisk::Tapdisk, read_only: bool) -> Result<(), ServeError> {
        for f in [&self.link, &self.backend_node, &self.read_only_mark] {
            if let Some(dir) = f.parent() {
                std::fs::create_dir_all(dir).map_err(io_err(dir))?;
            }
        }
        remove_if_there(&self.link)?;
        std::os::unix::fs::symlink(t.nbd_socket(), &self.link).map_err(io_err(&self.link))?;
        remove_if_there(&self.backend_node)?;
        if self.has_blktap2() {
            let tapdev = self.blktap2.join(format!("tapdev{}", t.minor));
            let rdev = sm_core::host::block::rdev(&tapdev).map_err(io_err(&tapdev))?;
            nix::sys::stat::mknod(
                &self.backend_node,
                nix::sys::stat::SFlag::S_IFBLK,
                nix::sys::stat::Mode::from_bits_truncate(0o600),
                rdev,
            )
            .map_err(|e| io_err(&self.backend_node)(e.into()))?;
        }
        if read_only {
            std::fs::write(&self.read_only_mark, b"").map_err(io_err(&self.read_only_mark))
        } else {
            remove_if_there(&self.read_only_mark)
        }
    }

    /// How many NBD clients `open`'s tapdisk still serves (a kernel NBD device, qemu, a copy),
    /// after giving one that just disconnected [`CLIENT_GRACE`] to be closed by the tapdisk.
    /// Ending the tapdisk under a client fails its I/O, so callers refuse then (fault 24).
    /// 0 for a datapath without a tapdisk, and where `/proc/net/unix` cannot be read.
    /// `/proc` is read as the kernel shows it, never under a test root.
    pub fn clients(&self, open: Option<&Open>) -> usize {
        let Some(t) = open.and_then(|o| o.tapdisk.as_ref()) else {
            return 0;
        };
        let deadline = std::time::Instant::now() + CLIENT_GRACE;
        loop {
            let n = std::fs::read_to_string(&self.proc_net_unix)
                .map(|text| tapdisk::nbd_clients(&text, t))
                .unwrap_or(0);
            if n == 0 || std::time::Instant::now() >= deadline {
                return n;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Closes the image (`open`, as looked up) and removes what [`Datapath::start`] made.
    /// Idempotent.
    pub fn stop(&self, runner: &dyn Runner, open: Option<&Open>) -> Result<(), ServeError> {
        match self.kind {
            Kind::Device => Ok(()),
            Kind::QemuNbd => Ok(self.export.stop()?),
            Kind::Tapdisk => {
                if let Some(t) = open.and_then(|o| o.tapdisk.as_ref()) {
                    tapdisk::destroy(runner, t)?;
                }
                remove_if_there(&self.link)?;
                remove_if_there(&self.backend_node)?;
                remove_if_there(&self.read_only_mark)
            }
        }
    }

    /// Runs `f` with the I/O of `open`'s tapdisk paused (`tap-ctl pause`, then `unpause`
    /// whatever `f` returned), so the file holds a consistent point-in-time image while `f`
    /// reads it. An image qemu-nbd serves runs `f` as is.
    pub fn with_paused<T>(
        runner: &dyn Runner,
        open: &Open,
        f: impl FnOnce() -> T,
    ) -> Result<T, ServeError> {
        let Some(t) = &open.tapdisk else {
            return Ok(f());
        };
        tapdisk::pause(runner, t)?;
        let out = f();
        tapdisk::unpause(runner, t)?;
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
    const IMAGE: &str = "/srv/sr/v.vhd";

    #[test]
    fn one_list_tells_tapdisk_and_finds_it_with_sm_s_link_layout() {
        let d = tempfile::tempdir().unwrap();
        let paths = Paths::new(d.path());
        let fake = FakeRunner::new();
        fake.on(&["tap-ctl", "list"], 0, LIST, "");
        let (dp, open) =
            Datapath::lookup(&fake, &paths, "s", "v", ImageType::Vhd, Path::new(IMAGE)).unwrap();
        assert_eq!(fake.calls().len(), 1, "one tap-ctl list");
        assert_eq!(dp.kind(), Kind::Tapdisk);
        assert_eq!(
            dp.uri(),
            format!(
                "nbd:unix:{}/run/blktap-control/nbd/s/v:exportname=v",
                d.path().display()
            )
        );
        let open = open.unwrap();
        assert_eq!((open.pid, open.read_only), (77, false));
        assert_eq!(open.socket, Path::new("/run/blktap-control/nbd77.2"));
        fake.on(&["tap-ctl", "list"], 0, "", "");
        let (_, closed) = Datapath::lookup(
            &fake,
            &paths,
            "s",
            "w",
            ImageType::Vhd,
            Path::new("/srv/sr/w.vhd"),
        )
        .unwrap();
        assert_eq!(closed, None);
    }

    #[test]
    fn start_links_the_socket_and_stop_removes_it() {
        let d = tempfile::tempdir().unwrap();
        let paths = Paths::new(d.path());
        let fake = FakeRunner::new();
        let dp = Datapath::new(
            Kind::Tapdisk,
            &paths,
            "s",
            "v",
            ImageType::Vhd,
            Path::new(IMAGE),
        );
        fake.on(&["tap-ctl", "list"], 0, LIST, "");
        let open = dp.start(&fake, true, Cache::Direct).unwrap();
        assert!(open.read_only);
        let link = paths.host(TAP_LINK_DIR).join("s/v");
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("/run/blktap-control/nbd77.2")
        );
        let create = &fake.calls()[0];
        assert_eq!(
            create[..4],
            ["tap-ctl", "create", "-a", "vhd:/srv/sr/v.vhd"]
        );
        assert!(create.contains(&"-R".to_string()) && !create.contains(&"-D".to_string()));
        fake.on(&["tap-ctl", "list"], 0, LIST, "");
        let (dp, open) =
            Datapath::lookup(&fake, &paths, "s", "v", ImageType::Vhd, Path::new(IMAGE)).unwrap();
        assert!(open.as_ref().unwrap().read_only, "the mark says read-only");
        let before = fake.calls().len();
        dp.stop(&fake, open.as_ref()).unwrap();
        assert_eq!(
            fake.calls()[before..],
            [["tap-ctl", "destroy", "-p", "77", "-m", "2"]],
            "destroy only"
        );
        assert!(std::fs::symlink_metadata(&link).is_err());
        assert_eq!(dp.params(), None, "no blktap2 module: params_nbd alone");
        assert!(!paths.host(BACKEND_NODE_DIR).join("s/v").exists());
    }

    /// A blktap2 host under `paths`: the control device, and `tapdev2` as a block node of
    /// `rdev` (needs CAP_MKNOD) or, without one, a plain file.
    fn blktap2_host(paths: &Paths, rdev: Option<u64>) {
        let dir = paths.host(BLKTAP2_DIR);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("control"), b"").unwrap();
        let tapdev = dir.join("tapdev2");
        match rdev {
            Some(rdev) => nix::sys::stat::mknod(
                &tapdev,
                nix::sys::stat::SFlag::S_IFBLK,
                nix::sys::stat::Mode::from_bits_truncate(0o600),
                rdev,
            )
            .unwrap(),
            None => std::fs::write(&tapdev, b"").unwrap(),
        }
    }

    fn tapdisk_datapath(paths: &Paths) -> Datapath {
        Datapath::new(
            Kind::Tapdisk,
            paths,
            "s",
            "v",
            ImageType::Vhd,
            Path::new(IMAGE),
        )
    }

    #[test]
    fn on_a_blktap2_host_a_tapdev_that_is_no_block_device_undoes_the_open() {
        let d = tempfile::tempdir().unwrap();
        let paths = Paths::new(d.path());
        blktap2_host(&paths, None);
        let fake = FakeRunner::new();
        fake.on(&["tap-ctl", "list"], 0, LIST, "");
        let dp = tapdisk_datapath(&paths);
        let node = paths.host(BACKEND_NODE_DIR).join("s/v");
        assert_eq!(dp.params(), Some(node.display().to_string()));
        let err = dp.start(&fake, false, Cache::Direct).unwrap_err();
        assert!(
            matches!(&err, ServeError::Io { path, .. } if path.ends_with("tapdev2")),
            "{err:?}"
        );
        let calls = fake.calls();
        assert_eq!(calls[0][..2], ["tap-ctl", "create"]);
        assert_eq!(
            calls.last().unwrap()[..],
            ["tap-ctl", "destroy", "-p", "77", "-m", "2"]
        );
        assert!(std::fs::symlink_metadata(paths.host(TAP_LINK_DIR).join("s/v")).is_err());
        assert!(std::fs::symlink_metadata(&node).is_err());
    }

    #[test]
    #[ignore = "root: mknod"]
    fn root_a_blktap2_host_gets_sm_s_backend_node_with_the_tapdev_s_number() {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let d = tempfile::tempdir().unwrap();
        let paths = Paths::new(d.path());
        let rdev = nix::sys::stat::makedev(254, 2);
        blktap2_host(&paths, Some(rdev));
        let fake = FakeRunner::new();
        fake.on(&["tap-ctl", "list"], 0, LIST, "");
        let dp = tapdisk_datapath(&paths);
        let open = dp.start(&fake, false, Cache::Direct).unwrap();
        let node = paths.host(BACKEND_NODE_DIR).join("s/v");
        let m = std::fs::symlink_metadata(&node).unwrap();
        assert!(m.file_type().is_block_device());
        assert_eq!((m.rdev(), m.mode() & 0o777), (rdev, 0o600));
        assert_eq!(dp.params(), Some(node.display().to_string()));
        dp.stop(&fake, Some(&open)).unwrap();
        assert!(std::fs::symlink_metadata(&node).is_err());
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
        let d = tempfile::tempdir().unwrap();
        let paths = Paths::new(d.path());
        let (dp, open) = Datapath::lookup(
            &NoTapCtl,
            &paths,
            "s",
            "v",
            ImageType::Vhd,
            Path::new(IMAGE),
        )
        .unwrap();
        assert_eq!((dp.kind(), open), (Kind::QemuNbd, None));
        assert!(dp.uri().contains("/run/sm-rs/nbd/v.sock"), "{}", dp.uri());
        assert_eq!(dp.params(), None);
        let lv = Path::new("/dev/VG_XenStorage-s/LV-v");
        let (dp, open) = Datapath::lookup(&NoTapCtl, &paths, "s", "v", ImageType::Aio, lv).unwrap();
        assert_eq!((dp.kind(), open), (Kind::Device, None));
        assert_eq!(
            (dp.uri(), dp.params()),
            (String::new(), Some(lv.display().to_string()))
        );
        assert!(matches!(
            dp.start(&NoTapCtl, false, Cache::Direct),
            Err(ServeError::NoServer(_))
        ));
        dp.stop(&NoTapCtl, None).unwrap();
    }

    #[test]
    fn a_raw_device_is_served_by_aio_and_found_as_aio_only() {
        let d = tempfile::tempdir().unwrap();
        let paths = Paths::new(d.path());
        let fake = FakeRunner::new();
        let lv = Path::new("/dev/VG_XenStorage-s/LV-v");
        fake.on(
            &["tap-ctl", "list"],
            0,
            "pid=9 minor=1 state=0 args=vhd:/dev/VG_XenStorage-s/LV-v\n",
            "",
        );
        let (dp, open) = Datapath::lookup(&fake, &paths, "s", "v", ImageType::Aio, lv).unwrap();
        assert_eq!(
            (dp.kind(), open),
            (Kind::Tapdisk, None),
            "a vhd: tapdisk is not ours"
        );
        fake.on(
            &["tap-ctl", "list"],
            0,
            "pid=9 minor=1 state=0 args=aio:/dev/VG_XenStorage-s/LV-v\n",
            "",
        );
        let open = dp.start(&fake, false, Cache::Direct).unwrap();
        assert_eq!(
            fake.calls()[1][..4],
            ["tap-ctl", "create", "-a", "aio:/dev/VG_XenStorage-s/LV-v"]
        );
        assert_eq!(open.socket, Path::new("/run/blktap-control/nbd9.1"));
        assert_eq!(dp.params(), None);
        assert!(
            dp.uri()
                .ends_with("/run/blktap-control/nbd/s/v:exportname=v"),
            "{}",
            dp.uri()
        );
    }
}
