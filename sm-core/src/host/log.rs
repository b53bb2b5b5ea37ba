//! SMlog: where every driver logs. On a XenServer host, syslog facility LOCAL2 with ident `SM`
//! and each line `[<pid>] <message>` (what `/var/log/SMlog` support workflows read). Without a
//! syslog socket, or when `SMLOG_FILE` names a file, lines are appended to that file instead.
//! Nothing is ever written to stdout or stderr: both belong to xapi.
//!
//! Levels (docs/logging.md): `info` one line per SMAPI call, `debug` each external command and
//! SCSI command, `warn` recovered anomalies, `error` a returned fault.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing_subscriber::fmt::MakeWriter;

/// Environment variable naming a log file (tests, hosts without syslog).
pub const SMLOG_FILE_ENV: &str = "SMLOG_FILE";
/// Environment variable with the level filter (`debug` by default).
pub const SMLOG_LEVEL_ENV: &str = "SMLOG_LEVEL";
/// syslog facility LOCAL2.
const LOCAL2: u8 = 18;

#[derive(Debug)]
enum Sink {
    Syslog(UnixDatagram),
    File(Mutex<std::fs::File>),
    None,
}

/// Where log lines go, shared by every writer the subscriber makes.
#[derive(Debug, Clone)]
pub struct SmLog {
    ident: String,
    sink: Arc<Sink>,
}

fn month_day_time(secs: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = super::clock::Utc::from_unix(secs);
    let month = MONTHS
        .get(usize::try_from(t.month.saturating_sub(1)).unwrap_or(0))
        .copied()
        .unwrap_or("Jan");
    format!(
        "{month} {:>2} {:02}:{:02}:{:02}",
        t.day, t.hour, t.minute, t.second
    )
}

impl SmLog {
    /// Chooses the sink: `SMLOG_FILE`, else `/dev/log`, else `smlog_file` (best effort).
    pub fn open(ident: &str, smlog_file: PathBuf) -> SmLog {
        let file_sink = |p: PathBuf| -> Sink {
            if let Some(dir) = p.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            match OpenOptions::new().create(true).append(true).open(&p) {
                Ok(f) => Sink::File(Mutex::new(f)),
                Err(_) => Sink::None,
            }
        };
        let sink = if let Some(p) = std::env::var_os(SMLOG_FILE_ENV) {
            file_sink(PathBuf::from(p))
        } else if let Ok(sock) =
            UnixDatagram::unbound().and_then(|s| s.connect("/dev/log").map(|_| s))
        {
            Sink::Syslog(sock)
        } else {
            file_sink(smlog_file)
        };
        SmLog {
            ident: ident.to_string(),
            sink: Arc::new(sink),
        }
    }

    /// Writes one message, one record per line, prefixed `[pid]`.
    pub fn write_message(&self, severity: u8, msg: &str) {
        let pid = std::process::id();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let stamp = month_day_time(now);
        for line in msg.lines().filter(|l| !l.trim().is_empty()) {
            match &*self.sink {
                Sink::Syslog(sock) => {
                    let pri = LOCAL2 * 8 + severity;
                    let rec = format!("<{pri}>{stamp} {}: [{pid}] {line}", self.ident);
                    let _ = sock.send(rec.as_bytes());
                }
                Sink::File(f) => {
                    let host = nix::unistd::gethostname()
                        .ok()
                        .and_then(|h| h.into_string().ok())
                        .unwrap_or_default();
                    let rec = format!("{stamp} {host} {}: [{pid}] {line}\n", self.ident);
                    if let Ok(mut f) = f.lock() {
                        let _ = f.write_all(rec.as_bytes());
                    }
                }
                Sink::None => {}
            }
        }
    }
}

/// One formatted event on its way to the sink.
pub struct LineWriter {
    log: SmLog,
    severity: u8,
    buf: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.log
                .write_message(self.severity, &String::from_utf8_lossy(&self.buf));
        }
    }
}

impl<'a> MakeWriter<'a> for SmLog {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            log: self.clone(),
            severity: 6,
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> LineWriter {
        let severity = match *meta.level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            _ => 7,
        };
        LineWriter {
            log: self.clone(),
            severity,
            buf: Vec::new(),
        }
    }
}

/// Installs SMlog as the process's tracing subscriber and routes panics to it (never to stderr).
/// Safe to call more than once; later calls keep the first subscriber.
pub fn init(ident: &str, smlog_file: PathBuf) -> SmLog {
    let log = SmLog::open(ident, smlog_file);
    let filter = tracing_subscriber::EnvFilter::try_from_env(SMLOG_LEVEL_ENV)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("debug"));
    let _ = tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_env_filter(filter)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .try_init();
    let panic_log = log.clone();
    std::panic::set_hook(Box::new(move |info| {
        let bt = std::backtrace::Backtrace::force_capture();
        panic_log.write_message(3, &format!("***** panic: {info}\n{bt}"));
    }));
    log
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dates() {
        assert_eq!(month_day_time(0), "Jan  1 00:00:00");
        assert_eq!(month_day_time(1_795_000_000), "Nov 18 11:06:40");
    }

    #[test]
    fn file_sink_writes_one_record_per_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("SMlog");
        let log = SmLog {
            ident: "SM".into(),
            sink: Arc::new(Sink::File(Mutex::new(std::fs::File::create(&p).unwrap()))),
        };
        log.write_message(6, "first\nsecond\n");
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].ends_with(&format!("SM: [{}] first", std::process::id())),
            "{}",
            lines[0]
        );
    }
}
