//! Talking to multipathd: over its Unix socket (the protocol of `libmpathcmd`, no process
//! spawned) or through the `multipathd` command-line client run by the [`Runner`]. Both carry
//! the same command strings and return the daemon's reply text.
//!
//! Socket protocol (multipath-tools `libmpathcmd/mpath_cmd.c`): the client sends a native
//! `size_t` length (the command's bytes plus a NUL) and the NUL-terminated command; the
//! daemon answers the same way. The daemon listens on the abstract socket
//! `@/org/kernel/linux/storage/multipathd` and, in newer versions, on `/run/multipathd.socket`.

use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sm_core::host::{Cmd, Runner};

use crate::error::{MultipathError, Result};

/// The abstract socket name multipathd listens on.
pub const ABSTRACT_SOCKET: &str = "/org/kernel/linux/storage/multipathd";
/// The filesystem socket of newer multipathd versions.
pub const PATH_SOCKET: &str = "/run/multipathd.socket";
/// Replies larger than this are refused (libmpathcmd's limit).
const MAX_REPLY: usize = 32 << 20;
/// Default reply timeout (libmpathcmd's 4 s is short under load; reconfigure can take longer).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends commands to multipathd.
pub trait Multipathd: Send + Sync {
    /// Sends `command` (e.g. `show maps json`) and returns the reply text.
    fn command(&self, command: &str) -> Result<String>;
}

/// multipathd over its socket.
#[derive(Debug, Clone)]
pub struct MultipathdSocket {
    timeout: Duration,
    addrs: Vec<SocketTarget>,
}

#[derive(Debug, Clone)]
enum SocketTarget {
    Abstract(String),
    Path(String),
}

impl Default for MultipathdSocket {
    fn default() -> MultipathdSocket {
        MultipathdSocket {
            timeout: DEFAULT_TIMEOUT,
            addrs: vec![
                SocketTarget::Abstract(ABSTRACT_SOCKET.into()),
                SocketTarget::Path(PATH_SOCKET.into()),
            ],
        }
    }
}

impl MultipathdSocket {
    /// The daemon's sockets (abstract first, then the path).
    pub fn new() -> MultipathdSocket {
        MultipathdSocket::default()
    }

    /// A client of the abstract socket `name` only (tests run their own daemon).
    pub fn at_abstract(name: &str) -> MultipathdSocket {
        MultipathdSocket {
            timeout: DEFAULT_TIMEOUT,
            addrs: vec![SocketTarget::Abstract(name.into())],
        }
    }

    /// Uses `timeout` for the whole exchange.
    pub fn with_timeout(mut self, timeout: Duration) -> MultipathdSocket {
        self.timeout = timeout;
        self
    }

    fn connect(&self, command: &str) -> Result<UnixStream> {
        let mut last = String::from("no socket configured");
        for a in &self.addrs {
            let r = match a {
                SocketTarget::Abstract(n) => SocketAddr::from_abstract_name(n.as_bytes())
                    .and_then(|addr| UnixStream::connect_addr(&addr)),
                SocketTarget::Path(p) => UnixStream::connect(p),
            };
            match r {
                Ok(s) => return Ok(s),
                Err(e) => last = format!("{a:?}: {e}"),
            }
        }
        Err(MultipathError::Multipathd {
            command: command.into(),
            reason: format!("cannot connect ({last}); is multipathd running?"),
        })
    }
}

/// Writes one framed message (native `size_t` length, bytes, NUL).
pub fn write_frame(w: &mut impl Write, text: &str) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(text.len() + 9);
    buf.extend_from_slice(&(text.len() + 1).to_ne_bytes());
    buf.extend_from_slice(text.as_bytes());
    buf.push(0);
    w.write_all(&buf)
}

/// Reads one framed message; the trailing NUL is dropped.
pub fn read_frame(r: &mut impl Read) -> std::io::Result<String> {
    let mut len = [0u8; std::mem::size_of::<usize>()];
    r.read_exact(&mut len)?;
    let len = usize::from_ne_bytes(len);
    if len > MAX_REPLY {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("reply of {len} bytes"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    while body.last() == Some(&0) {
        body.pop();
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

impl Multipathd for MultipathdSocket {
    fn command(&self, command: &str) -> Result<String> {
        let t0 = Instant::now();
        let io = |e: std::io::Error| MultipathError::Multipathd {
            command: command.into(),
            reason: e.to_string(),
        };
        let mut s = self.connect(command)?;
        s.set_read_timeout(Some(self.timeout)).map_err(io)?;
        s.set_write_timeout(Some(self.timeout)).map_err(io)?;
        write_frame(&mut s, command).map_err(io)?;
        let reply = read_frame(&mut s).map_err(io)?;
        tracing::debug!(
            command,
            bytes = reply.len(),
            ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX),
            "multipathd socket"
        );
        Ok(reply)
    }
}

/// multipathd through its command-line client (`multipathd <command words>`).
#[derive(Clone)]
pub struct MultipathdCli {
    runner: Arc<dyn Runner>,
    timeout: Duration,
}

impl MultipathdCli {
    /// A client running `multipathd` through `runner`.
    pub fn new(runner: Arc<dyn Runner>) -> MultipathdCli {
        MultipathdCli {
            runner,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl Multipathd for MultipathdCli {
    fn command(&self, command: &str) -> Result<String> {
        let cmd = Cmd::new("multipathd")
            .args(command.split_whitespace())
            .timeout(self.timeout);
        self.runner
            .run(&cmd)
            .map(|o| o.stdout_str())
            .map_err(|e| MultipathError::command(format!("multipathd {command}"), e))
    }
}

/// The socket when the daemon answers on it, else the command-line client: what a host uses.
pub struct MultipathdAuto {
    socket: MultipathdSocket,
    cli: MultipathdCli,
}

impl MultipathdAuto {
    /// Socket first, CLI through `runner` as the fallback.
    pub fn new(runner: Arc<dyn Runner>) -> MultipathdAuto {
        MultipathdAuto {
            socket: MultipathdSocket::new(),
            cli: MultipathdCli::new(runner),
        }
    }
}

impl Multipathd for MultipathdAuto {
    fn command(&self, command: &str) -> Result<String> {
        match self.socket.command(command) {
            Err(MultipathError::Multipathd { reason, .. })
                if reason.starts_with("cannot connect") =>
            {
                tracing::debug!(
                    command,
                    "multipathd socket unavailable ({reason}); using the CLI"
                );
                self.cli.command(command)
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        write_frame(&mut buf, "show maps json").unwrap();
        assert_eq!(buf.len(), 8 + 15);
        assert_eq!(&buf[..8], &15usize.to_ne_bytes());
        assert_eq!(*buf.last().unwrap(), 0);
        assert_eq!(read_frame(&mut buf.as_slice()).unwrap(), "show maps json");
        let huge = (MAX_REPLY + 1).to_ne_bytes();
        assert!(read_frame(&mut huge.as_slice()).is_err());
    }

    #[test]
    fn socket_client_talks_to_a_daemon() {
        let name = format!("/xsm-test/multipathd/{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let l = UnixListener::bind_addr(&addr).unwrap();
        let h = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let cmd = read_frame(&mut c).unwrap();
            write_frame(&mut c, &format!("got {cmd}\n")).unwrap();
        });
        let md = MultipathdSocket::at_abstract(&name);
        assert_eq!(md.command("fail path sdb").unwrap(), "got fail path sdb\n");
        h.join().unwrap();
        let none = MultipathdSocket::at_abstract("/xsm-test/nobody-listens");
        let e = none.command("show maps").unwrap_err();
        assert!(e.to_string().contains("cannot connect"), "{e}");
    }

    #[test]
    fn cli_client_runs_multipathd() {
        let fake = Arc::new(sm_core::testing::FakeRunner::new());
        fake.on(&["multipathd", "show", "maps", "json"], 0, "{}", "");
        let md = MultipathdCli::new(fake.clone());
        assert_eq!(md.command("show maps json").unwrap(), "{}");
        assert_eq!(
            fake.calls(),
            vec![vec!["multipathd", "show", "maps", "json"]]
        );
    }
}
