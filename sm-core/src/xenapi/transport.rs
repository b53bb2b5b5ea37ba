//! HTTP/1.1 POST of an XML-RPC body to xapi over a Unix socket (`/var/lib/xcp/xapi`) or TCP,
//! with keep-alive and one deadline per request: every read and write of a request and its
//! response share it, so a slow or hung xapi fails the call within the deadline whatever it
//! trickles (a timeout is never retried: xapi may have acted on the request).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where xapi listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix socket path.
    Unix(PathBuf),
    /// `host:port` over TCP.
    Tcp(String),
}

/// The default xapi socket on a host.
pub const DEFAULT_SOCKET: &str = "/var/lib/xcp/xapi";
/// Environment variable overriding the endpoint: `unix:/path`, `tcp:host:port` or `http://host:port`.
pub const ENDPOINT_ENV: &str = "SM_XAPI";

impl Endpoint {
    /// `$SM_XAPI` when set and valid, else the default socket.
    pub fn from_env() -> Endpoint {
        std::env::var(ENDPOINT_ENV)
            .ok()
            .and_then(|s| Endpoint::parse(&s))
            .unwrap_or_else(|| Endpoint::Unix(DEFAULT_SOCKET.into()))
    }

    /// Parses `unix:/path`, `/path`, `tcp:host:port` or `http://host:port[/]`.
    pub fn parse(s: &str) -> Option<Endpoint> {
        if let Some(p) = s.strip_prefix("unix:") {
            return Some(Endpoint::Unix(p.into()));
        }
        if s.starts_with('/') {
            return Some(Endpoint::Unix(s.into()));
        }
        let hp = s
            .strip_prefix("tcp:")
            .or_else(|| s.strip_prefix("http://"))
            .map(|h| h.trim_end_matches('/'))?;
        (!hp.is_empty()).then(|| Endpoint::Tcp(hp.to_string()))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Tcp(h) => write!(f, "tcp:{h}"),
        }
    }
}

/// A transport failure.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Connecting failed.
    #[error("cannot connect to xapi at {endpoint}: {source}")]
    Connect {
        /// Where.
        endpoint: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// xapi did not answer within the deadline (it may still have acted on the request).
    #[error("xapi at {endpoint} did not answer within {} s (it may still have acted on the call)", .after.as_secs_f64())]
    Timeout {
        /// Where.
        endpoint: String,
        /// The deadline.
        after: Duration,
    },
    /// Reading or writing failed.
    #[error("xapi connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// The HTTP response was malformed or not 200.
    #[error("bad HTTP response from xapi: {0}")]
    Http(String),
}

/// The socket of a connection.
enum Socket {
    Unix(UnixStream),
    Tcp(TcpStream),
}

/// A connection whose reads and writes wait at most until the current request's deadline.
struct Timed {
    socket: Socket,
    deadline: Instant,
}

impl Timed {
    /// The socket with its read and write timeouts set to what is left of the deadline (an
    /// error once it has passed).
    fn armed(&mut self) -> std::io::Result<&mut dyn Stream> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        Ok(match &mut self.socket {
            Socket::Unix(s) => {
                s.set_read_timeout(Some(left))?;
                s.set_write_timeout(Some(left))?;
                s
            }
            Socket::Tcp(s) => {
                s.set_read_timeout(Some(left))?;
                s.set_write_timeout(Some(left))?;
                s
            }
        })
    }
}

/// A connected socket.
trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

impl Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.armed()?.read(buf)
    }
}

impl Write for Timed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.armed()?.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.armed()?.flush()
    }
}

fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

/// One keep-alive connection to xapi, reopened when the server closes it.
pub struct Transport {
    endpoint: Endpoint,
    timeout: Duration,
    conn: Option<BufReader<Timed>>,
    headers: Vec<(String, String)>,
}

impl Transport {
    /// A transport to `endpoint`; every request (connecting, sending, the whole response)
    /// takes at most `timeout`.
    pub fn new(endpoint: Endpoint, timeout: Duration) -> Transport {
        Transport {
            endpoint,
            timeout,
            conn: None,
            headers: Vec::new(),
        }
    }

    /// Adds a header sent with every request (e.g. `Subtask-of`, `originator`).
    pub fn add_header(&mut self, k: &str, v: &str) {
        self.headers.push((k.to_string(), v.to_string()));
    }

    fn connect(&self, deadline: Instant) -> Result<BufReader<Timed>, TransportError> {
        let err = |source| TransportError::Connect {
            endpoint: self.endpoint.to_string(),
            source,
        };
        let socket = match &self.endpoint {
            Endpoint::Unix(p) => Socket::Unix(UnixStream::connect(p).map_err(err)?),
            Endpoint::Tcp(h) => {
                use std::net::ToSocketAddrs;
                let mut last = std::io::Error::new(
                    std::io::ErrorKind::AddrNotAvailable,
                    "no address for the host",
                );
                let mut found = None;
                for a in h.to_socket_addrs().map_err(err)? {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        last = std::io::ErrorKind::TimedOut.into();
                        break;
                    }
                    match TcpStream::connect_timeout(&a, left) {
                        Ok(s) => {
                            found = Some(s);
                            break;
                        }
                        Err(e) => last = e,
                    }
                }
                let s = found.ok_or_else(|| err(last))?;
                let _ = s.set_nodelay(true);
                Socket::Tcp(s)
            }
        };
        Ok(BufReader::new(Timed { socket, deadline }))
    }

    /// POSTs `body` and returns the response body. Retries once on a stale keep-alive connection.
    /// A timeout is never retried: xapi may have acted on the request.
    pub fn post(&mut self, body: &str) -> Result<String, TransportError> {
        let deadline = Instant::now() + self.timeout;
        let reused = self.conn.is_some();
        let r = match self.post_once(body, deadline) {
            Err(TransportError::Io(e)) if reused && !timed_out(&e) => {
                self.conn = None;
                self.post_once(body, deadline)
            }
            r => r,
        };
        match r {
            Err(TransportError::Io(e)) if timed_out(&e) => {
                self.conn = None;
                Err(TransportError::Timeout {
                    endpoint: self.endpoint.to_string(),
                    after: self.timeout,
                })
            }
            Err(e) => {
                self.conn = None;
                Err(e)
            }
            ok => ok,
        }
    }

    fn post_once(&mut self, body: &str, deadline: Instant) -> Result<String, TransportError> {
        match &mut self.conn {
            Some(c) => c.get_mut().deadline = deadline,
            None => self.conn = Some(self.connect(deadline)?),
        }
        let host = match &self.endpoint {
            Endpoint::Unix(_) => "localhost".to_string(),
            Endpoint::Tcp(h) => h.clone(),
        };
        let mut req = format!(
            "POST / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: xsm\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in &self.headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| TransportError::Http("no connection".into()))?;
        let w = conn.get_mut();
        w.write_all(req.as_bytes())?;
        w.write_all(body.as_bytes())?;
        w.flush()?;
        let (body, close) = read_response(conn)?;
        if close {
            self.conn = None;
        }
        Ok(body)
    }
}

/// Reads one HTTP response: returns the body and whether the server will close the connection.
pub fn read_response(r: &mut impl BufRead) -> Result<(String, bool), TransportError> {
    let mut head = Vec::new();
    loop {
        let n = r.read_until(b'\n', &mut head)?;
        if n == 0 {
            return Err(TransportError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            )));
        }
        if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
            break;
        }
        if head.len() > 64 * 1024 {
            return Err(TransportError::Http("header too long".into()));
        }
    }
    let mut hdrs = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut hdrs);
    resp.parse(&head)
        .map_err(|e| TransportError::Http(e.to_string()))?;
    let code = resp.code.unwrap_or(0);
    let mut len: Option<usize> = None;
    let mut chunked = false;
    let mut close = false;
    for h in resp.headers.iter() {
        let v = String::from_utf8_lossy(h.value);
        if h.name.eq_ignore_ascii_case("content-length") {
            len = v.trim().parse().ok();
        } else if h.name.eq_ignore_ascii_case("transfer-encoding")
            && v.to_ascii_lowercase().contains("chunked")
        {
            chunked = true;
        } else if h.name.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close") {
            close = true;
        }
    }
    let body = if chunked {
        let mut body = Vec::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(|_| TransportError::Http(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                let mut trailer = String::new();
                r.read_line(&mut trailer)?;
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
        }
        body
    } else if let Some(n) = len {
        let mut body = vec![0u8; n];
        r.read_exact(&mut body)?;
        body
    } else {
        close = true;
        let mut body = Vec::new();
        r.read_to_end(&mut body)?;
        body
    };
    if code != 200 {
        return Err(TransportError::Http(format!("status {code}")));
    }
    String::from_utf8(body)
        .map(|b| (b, close))
        .map_err(|e| TransportError::Http(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that accepts, reads the request, then sends `reply` one byte every `gap`.
    fn slow_server(reply: &'static [u8], gap: Duration) -> (tempfile::TempDir, Endpoint) {
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("xapi");
        let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                for b in reply {
                    std::thread::sleep(gap);
                    if s.write_all(&[*b]).is_err() {
                        return;
                    }
                }
                std::thread::sleep(Duration::from_secs(5));
            }
        });
        (d, Endpoint::Unix(sock))
    }

    #[test]
    fn a_hung_or_trickling_xapi_fails_the_call_at_the_deadline_and_says_so() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        for gap in [Duration::from_secs(30), Duration::from_millis(60)] {
            let (_d, ep) = slow_server(ok, gap);
            // Trickled, the whole answer takes 2.8 s with every byte inside a per-read
            // timeout: only a deadline over the whole request fails it.
            let mut t = Transport::new(ep, Duration::from_millis(500));
            let e = t.post("<x/>").unwrap_err();
            assert!(
                matches!(e, TransportError::Timeout { .. }),
                "{gap:?}: {e:?}"
            );
            assert!(e.to_string().contains("did not answer within 0.5 s"), "{e}");
        }
        let (_d, ep) = slow_server(ok, Duration::from_millis(1));
        let mut t = Transport::new(ep, Duration::from_secs(5));
        assert_eq!(t.post("<x/>").unwrap(), "ok");
    }

    #[test]
    fn parses_endpoints() {
        assert_eq!(
            Endpoint::parse("unix:/x"),
            Some(Endpoint::Unix("/x".into()))
        );
        assert_eq!(
            Endpoint::parse("/var/lib/xcp/xapi"),
            Some(Endpoint::Unix("/var/lib/xcp/xapi".into()))
        );
        assert_eq!(
            Endpoint::parse("tcp:10.0.0.1:80"),
            Some(Endpoint::Tcp("10.0.0.1:80".into()))
        );
        assert_eq!(
            Endpoint::parse("http://h:8080/"),
            Some(Endpoint::Tcp("h:8080".into()))
        );
        assert_eq!(Endpoint::parse("ftp://x"), None);
    }

    #[test]
    fn reads_length_and_chunked_bodies() {
        let mut r =
            std::io::Cursor::new(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec());
        assert_eq!(read_response(&mut r).unwrap(), ("hello".into(), false));
        let mut r = std::io::Cursor::new(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n".to_vec());
        assert_eq!(read_response(&mut r).unwrap(), ("hello".into(), true));
        let mut r =
            std::io::Cursor::new(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n".to_vec());
        assert!(read_response(&mut r).is_err());
    }
}
