//! The daemon around the protocol: a listening Unix socket (bound here, or handed over by
//! systemd), one thread per connection so a slow LU never stalls another client, requests on
//! one connection strictly in turn, privileges dropped to what SG_IO and multipathd need, and
//! on SIGTERM/SIGINT/SIGHUP: no new connections, commands already running finish, then exit.

use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, recvmsg};

use super::dispatch::Backend;
use super::protocol::{self, Framing, Wire};

/// Most connections served at once; more are closed on accept.
pub const MAX_CONNECTIONS: usize = 1024;
/// How long a stop waits for running commands.
const DRAIN: Duration = Duration::from_secs(90);
/// Descriptors received with one read before the request counts as having too many.
const FDS_PER_READ: usize = 4;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The socket path is relative.
    #[error("the socket path {0} is not absolute")]
    RelativeSocket(PathBuf),
    /// Another process serves the socket.
    #[error("{0} is served by a running helper already")]
    InUse(PathBuf),
    /// Something that is not a socket is in the way.
    #[error("{0} exists and is not a socket; not removing it")]
    NotASocket(PathBuf),
    /// systemd passed something unexpected.
    #[error("socket activation: {0}")]
    Activation(String),
    /// Binding, the pidfile, or dropping privileges failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> StartError {
    let what = what.into();
    move |source| StartError::Io { what, source }
}

/// The listening socket: where it came from decides whether the daemon removes it at exit.
pub struct Listener {
    socket: UnixListener,
    bound: Option<PathBuf>,
}

impl Listener {
    /// Binds `path` (mode 0600). A stale socket nobody answers on is replaced; a live one, or
    /// anything that is not a socket, is refused.
    pub fn bind(path: &Path) -> Result<Listener, StartError> {
        if !path.is_absolute() {
            return Err(StartError::RelativeSocket(path.into()));
        }
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(StartError::NotASocket(path.into()));
            }
            if UnixStream::connect(path).is_ok() {
                return Err(StartError::InUse(path.into()));
            }
            std::fs::remove_file(path)
                .map_err(io_err(format!("removing stale {}", path.display())))?;
        }
        let socket =
            UnixListener::bind(path).map_err(io_err(format!("binding {}", path.display())))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(io_err(format!("chmod {}", path.display())))?;
        Ok(Listener {
            socket,
            bound: Some(path.into()),
        })
    }

    /// The socket systemd passed (`LISTEN_FDS`/`LISTEN_PID`), if it passed one; more than one
    /// is refused.
    pub fn from_systemd() -> Result<Option<Listener>, StartError> {
        let mut fds = listenfd::ListenFd::from_env();
        match fds.len() {
            0 => return Ok(None),
            1 => {}
            n => {
                return Err(StartError::Activation(format!(
                    "{n} sockets passed, expected 1"
                )));
            }
        }
        let socket = fds
            .take_unix_listener(0)
            .map_err(io_err("taking the activated socket"))?
            .ok_or_else(|| StartError::Activation("descriptor 3 is not a Unix listener".into()))?;
        Ok(Some(Listener {
            socket,
            bound: None,
        }))
    }

    /// A listener over an already bound socket (tests).
    pub fn from_socket(socket: UnixListener) -> Listener {
        Listener {
            socket,
            bound: None,
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(p) = &self.bound {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Counts of what is running, shared by the connection threads.
#[derive(Debug, Default)]
pub struct Activity {
    /// Connections open.
    pub connections: AtomicUsize,
    /// Commands being executed.
    pub commands: AtomicUsize,
}

/// A client socket as a [`Wire`].
pub struct ClientSocket(pub UnixStream);

impl Wire for ClientSocket {
    fn recv_with_fds(&mut self, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>, bool)> {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_READ))];
        let mut anc = RecvAncillaryBuffer::new(&mut space);
        let mut iov = [io::IoSliceMut::new(buf)];
        let r = loop {
            match recvmsg(self.0.as_fd(), &mut iov, &mut anc, RecvFlags::CMSG_CLOEXEC) {
                Err(rustix::io::Errno::INTR) => continue,
                other => break other?,
            }
        };
        let mut fds = Vec::new();
        for msg in anc.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = msg {
                fds.extend(received);
            }
        }
        Ok((r.bytes, fds, r.flags.contains(ReturnFlags::CTRUNC)))
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.0.read_exact(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
}

/// Serves one connection until the client goes, breaks the protocol, or `stop` is set
/// (checked between requests). Returns why it ended.
pub fn serve_connection(
    w: &mut dyn Wire,
    backend: &dyn Backend,
    stop: &AtomicBool,
    activity: &Activity,
) -> Framing {
    if let Err(e) = protocol::handshake(w) {
        return e;
    }
    loop {
        let req = match protocol::read_request(w) {
            Ok(r) => r,
            Err(e) => return e,
        };
        let cdb = req.cdb;
        activity.commands.fetch_add(1, Ordering::SeqCst);
        let reply = backend.execute(req).fit(&cdb);
        activity.commands.fetch_sub(1, Ordering::SeqCst);
        if let Err(e) = protocol::write_reply(w, &reply) {
            return e;
        }
        if stop.load(Ordering::SeqCst) {
            return Framing::Closed;
        }
    }
}

/// Accepts connections on `listener` until `stop` is set, each served on its own thread; then
/// waits (at most 90 s) for running commands to finish.
pub fn run(
    listener: &Listener,
    backend: Arc<dyn Backend>,
    stop: Arc<AtomicBool>,
    activity: Arc<Activity>,
) -> io::Result<()> {
    listener.socket.set_nonblocking(true)?;
    while !stop.load(Ordering::SeqCst) {
        let mut fds = [PollFd::new(&listener.socket, PollFlags::IN)];
        let tick = Timespec {
            tv_sec: 0,
            tv_nsec: 200_000_000,
        };
        match poll(&mut fds, Some(&tick)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        let stream = match listener.socket.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                tracing::warn!("accept: {e}");
                continue;
            }
        };
        if activity.connections.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            tracing::warn!("{MAX_CONNECTIONS} connections open; closing a new one");
            continue;
        }
        stream.set_nonblocking(false)?;
        activity.connections.fetch_add(1, Ordering::SeqCst);
        let (backend, stop, act) = (backend.clone(), stop.clone(), activity.clone());
        let spawned = std::thread::Builder::new()
            .name("pr-helper-conn".into())
            .spawn(move || {
                let why =
                    serve_connection(&mut ClientSocket(stream), backend.as_ref(), &stop, &act);
                match why {
                    Framing::Closed => tracing::debug!("connection closed"),
                    other => tracing::warn!("connection closed: {other}"),
                }
                act.connections.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            activity.connections.fetch_sub(1, Ordering::SeqCst);
            tracing::error!("cannot start a connection thread: {e}");
        }
    }
    let started = Instant::now();
    while activity.commands.load(Ordering::SeqCst) > 0 && started.elapsed() < DRAIN {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Sets `stop` on SIGTERM, SIGINT and SIGHUP.
pub fn stop_on_signals(stop: &Arc<AtomicBool>) -> io::Result<()> {
    for sig in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    Ok(())
}

/// Writes this process's pid to `path`.
pub fn write_pidfile(path: &Path) -> Result<(), StartError> {
    std::fs::write(path, format!("{}\n", std::process::id()))
        .map_err(io_err(format!("writing {}", path.display())))
}

/// Who the daemon runs as after start-up.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// User to switch to.
    pub uid: Option<u32>,
    /// Group to switch to.
    pub gid: Option<u32>,
}

/// Drops every capability but CAP_SYS_RAWIO (PR commands through SG_IO), plus
/// CAP_DAC_OVERRIDE when a non-root user must still open a map's path devices; clears the
/// bounding set; switches to `who` when given (supplementary groups dropped). Staying uid 0
/// keeps multipathd's socket usable (it accepts changes from root only).
pub fn drop_privileges(who: &Identity, open_paths: bool) -> Result<(), StartError> {
    use caps::{CapSet, Capability};
    let perr = |what: &str| {
        let what = what.to_string();
        move |e: caps::errors::CapsError| StartError::Io {
            what,
            source: io::Error::other(e.to_string()),
        }
    };
    let mut keep = caps::CapsHashSet::new();
    keep.insert(Capability::CAP_SYS_RAWIO);
    if who.uid.is_some_and(|u| u != 0) && open_paths {
        keep.insert(Capability::CAP_DAC_OVERRIDE);
    }
    for c in caps::all() {
        // Already out of the bounding set (systemd's CapabilityBoundingSet=): nothing to drop,
        // and dropping would need CAP_SETPCAP.
        if !keep.contains(&c) && caps::has_cap(None, CapSet::Bounding, c).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, c).map_err(perr("dropping the bounding set"))?;
        }
    }
    if who.uid.is_some() || who.gid.is_some() {
        caps::securebits::set_keepcaps(true).map_err(perr("PR_SET_KEEPCAPS"))?;
        nix::unistd::setgroups(&[]).map_err(|e| StartError::Io {
            what: "setgroups".into(),
            source: e.into(),
        })?;
        if let Some(g) = who.gid {
            nix::unistd::setgid(nix::unistd::Gid::from_raw(g)).map_err(|e| StartError::Io {
                what: format!("setgid {g}"),
                source: e.into(),
            })?;
        }
        if let Some(u) = who.uid {
            nix::unistd::setuid(nix::unistd::Uid::from_raw(u)).map_err(|e| StartError::Io {
                what: format!("setuid {u}"),
                source: e.into(),
            })?;
        }
    }
    caps::set(None, CapSet::Effective, &keep).map_err(perr("setting effective capabilities"))?;
    caps::set(None, CapSet::Permitted, &keep).map_err(perr("setting permitted capabilities"))?;
    caps::set(None, CapSet::Inheritable, &caps::CapsHashSet::new())
        .map_err(perr("clearing inheritable capabilities"))?;
    Ok(())
}
