//! The HTTP front end: XML-RPC XenAPI on `POST /` and the CLI protocol on `POST /cli`, served on
//! a Unix socket (`<state>/xapi.sock`, what plugins and `xe` use) and on TCP (plugins on remote
//! hosts). One thread per connection and no lock held while a plugin runs, so a plugin can call
//! back into the emulator while the operation that started it is still in flight.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use sm_core::xmlrpc;

use crate::config::Config;
use crate::emulator::{Emulator, StartError};
use crate::{cli, rpc};

/// Largest request body accepted.
const MAX_BODY: usize = 64 << 20;

/// A running emulator: its listeners' threads and the shared state.
#[derive(Debug)]
pub struct Running {
    emu: Arc<Emulator>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

trait Conn: Read + Write + Send {}
impl<T: Read + Write + Send> Conn for T {}

/// One parsed request.
struct Request {
    path: String,
    body: Vec<u8>,
    close: bool,
}

fn read_request(r: &mut impl BufRead) -> std::io::Result<Option<Request>> {
    let mut head = Vec::new();
    loop {
        let n = r.read_until(b'\n', &mut head)?;
        if n == 0 {
            return Ok(None);
        }
        if head == b"\r\n" || head == b"\n" {
            head.clear();
            continue;
        }
        if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
            break;
        }
        if head.len() > 64 * 1024 {
            return Err(std::io::Error::other("request header too long"));
        }
    }
    let mut hdrs = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut hdrs);
    req.parse(&head)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut len = 0usize;
    let mut close = req.version == Some(0);
    for h in req.headers.iter() {
        let v = String::from_utf8_lossy(h.value);
        if h.name.eq_ignore_ascii_case("content-length") {
            len = v
                .trim()
                .parse()
                .map_err(|_| std::io::Error::other("bad Content-Length"))?;
        } else if h.name.eq_ignore_ascii_case("connection") {
            close = v.eq_ignore_ascii_case("close");
        }
    }
    if len > MAX_BODY {
        return Err(std::io::Error::other("request body too large"));
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(Some(Request {
        path: req.path.unwrap_or("/").to_string(),
        body,
        close,
    }))
}

fn respond(
    w: &mut impl Write,
    status: &str,
    ctype: &str,
    body: &[u8],
    close: bool,
) -> std::io::Result<()> {
    let conn = if close { "close" } else { "keep-alive" };
    write!(
        w,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: {conn}\r\n\r\n",
        body.len()
    )?;
    w.write_all(body)?;
    w.flush()
}

fn serve(emu: &Emulator, stream: Box<dyn Conn>) {
    let mut r = BufReader::new(stream);
    loop {
        let req = match read_request(&mut r) {
            Ok(Some(req)) => req,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!("dropping connection: {e}");
                let _ = respond(
                    r.get_mut(),
                    "400 Bad Request",
                    "text/plain",
                    e.to_string().as_bytes(),
                    true,
                );
                return;
            }
        };
        let body = String::from_utf8_lossy(&req.body).into_owned();
        let (status, ctype, out) = if req.path.starts_with("/cli") {
            let args: Vec<String> = body
                .split('\n')
                .map(|l| l.trim_end_matches('\r').to_string())
                .collect();
            let out = cli::run_remote(emu, &args);
            (
                "200 OK",
                "application/json",
                serde_json::to_vec(&out).unwrap_or_default(),
            )
        } else {
            match xmlrpc::parse_method_call(&body) {
                Ok(call) => {
                    let v = rpc::handle(emu, &call.name, &call.params);
                    (
                        "200 OK",
                        "text/xml",
                        xmlrpc::write_response(&v).into_bytes(),
                    )
                }
                Err(e) => {
                    let fault = xmlrpc::write_fault(-1, &format!("cannot parse methodCall: {e}"));
                    ("200 OK", "text/xml", fault.into_bytes())
                }
            }
        };
        if respond(r.get_mut(), status, ctype, &out, req.close).is_err() || req.close {
            return;
        }
    }
}

/// Binds `<state>/xapi.sock` (replacing a stale one) and the TCP address.
pub fn bind(config: &Config) -> Result<(UnixListener, TcpListener, PathBuf, String), StartError> {
    let io = |what: &str| {
        let what = what.to_string();
        move |source| StartError::Io { what, source }
    };
    std::fs::create_dir_all(&config.state_dir).map_err(io("creating the state directory"))?;
    let sock = config.state_dir.join("xapi.sock");
    if sock.exists() {
        if UnixStream::connect(&sock).is_ok() {
            return Err(StartError::Io {
                what: format!("{} is in use", sock.display()),
                source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
            });
        }
        std::fs::remove_file(&sock).map_err(io("removing a stale socket"))?;
    }
    let unix = UnixListener::bind(&sock).map_err(io("binding the Unix socket"))?;
    let tcp = TcpListener::bind(&config.tcp_listen).map_err(io("binding the TCP address"))?;
    let addr = tcp
        .local_addr()
        .map_err(io("reading the TCP address"))?
        .to_string();
    Ok((unix, tcp, sock, addr))
}

/// Starts an emulator in this process: binds, opens the state, and serves until
/// [`Running::stop`]. Writes `<state>/xapi.port` with the TCP port.
pub fn start(config: Config) -> Result<Running, StartError> {
    let (unix, tcp, sock, addr) = bind(&config)?;
    let port_file = config.state_dir.join("xapi.port");
    let emu = Arc::new(Emulator::open(config, sock, addr.clone())?);
    std::fs::write(&port_file, addr.rsplit(':').next().unwrap_or("").as_bytes()).map_err(
        |source| StartError::Io {
            what: "writing xapi.port".into(),
            source,
        },
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    {
        let (emu, stop) = (emu.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            for c in unix.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(c) = c {
                    let emu = emu.clone();
                    std::thread::spawn(move || serve(&emu, Box::new(c)));
                }
            }
        }));
    }
    {
        let (emu, stop) = (emu.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            for c in tcp.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(c) = c {
                    let _ = c.set_nodelay(true);
                    let emu = emu.clone();
                    std::thread::spawn(move || serve(&emu, Box::new(c)));
                }
            }
        }));
    }
    tracing::info!(socket = %emu.socket.display(), tcp = %emu.tcp_addr, "xapi emulator listening");
    Ok(Running { emu, stop, threads })
}

impl Running {
    /// The shared state.
    pub fn emulator(&self) -> &Arc<Emulator> {
        &self.emu
    }

    /// The Unix socket.
    pub fn socket(&self) -> &Path {
        &self.emu.socket
    }

    /// The TCP address.
    pub fn tcp_addr(&self) -> &str {
        &self.emu.tcp_addr
    }

    /// Stops accepting connections and waits for the listener threads.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = UnixStream::connect(&self.emu.socket);
        let _ = TcpStream::connect(&self.emu.tcp_addr);
        for t in self.threads {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.emu.socket);
    }

    /// Serves until the process is killed.
    pub fn wait(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}
