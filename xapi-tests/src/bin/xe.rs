//! `xe`: the xapi command line, for the emulator. Like the real thin `xe`, it sends its arguments
//! to the server's `/cli` handler and prints what comes back; the exit status is the command's.
//!
//! Where the emulator is: `$XE_SERVER` (`unix:/path` or `tcp:host:port`), else the socket in
//! `$XE_STATE_DIR` (default: see `xapi_tests::config::default_state_dir`).
//! `$XE_STATUS_LOG`, when set, gets one line per invocation: `<exit status>\t<arguments>`, so a
//! script's runner can check every `xe` command, not just the last.
#![forbid(unsafe_code)]

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::Duration;

use sm_core::xenapi::Endpoint;
use sm_core::xenapi::transport::read_response;
use xapi_tests::cli::CliOutput;
use xapi_tests::config::default_state_dir;

/// How long one command may take (operations on slow storage included).
const TIMEOUT: Duration = Duration::from_secs(4 * 3600);

trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

fn endpoint() -> Endpoint {
    std::env::var("XE_SERVER")
        .ok()
        .and_then(|s| Endpoint::parse(&s))
        .unwrap_or_else(|| Endpoint::Unix(default_state_dir().join("xapi.sock")))
}

fn call(args: &[String]) -> Result<CliOutput, String> {
    let ep = endpoint();
    let stream: Box<dyn Conn> = match &ep {
        Endpoint::Unix(p) => {
            let s = UnixStream::connect(p).map_err(|e| format!("{}: {e}", p.display()))?;
            s.set_read_timeout(Some(TIMEOUT))
                .map_err(|e| e.to_string())?;
            Box::new(s)
        }
        Endpoint::Tcp(h) => {
            let s = TcpStream::connect(h).map_err(|e| format!("{h}: {e}"))?;
            s.set_read_timeout(Some(TIMEOUT))
                .map_err(|e| e.to_string())?;
            Box::new(s)
        }
    };
    let mut body = args.join("\n");
    body.push_str("\nusername=root\npassword=");
    let mut r = BufReader::new(stream);
    let head = format!(
        "POST /cli HTTP/1.1\r\nHost: localhost\r\nUser-Agent: xe-cli/emulator\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let w = r.get_mut();
    w.write_all(head.as_bytes())
        .and_then(|_| w.write_all(body.as_bytes()))
        .map_err(|e| e.to_string())?;
    let (reply, _) = read_response(&mut r).map_err(|e| e.to_string())?;
    serde_json::from_str(&reply).map_err(|e| format!("unexpected reply: {e}"))
}

fn record_status(code: i32, args: &[String]) {
    if let Some(path) = std::env::var_os("XE_STATUS_LOG") {
        let line = format!("{code}\t{}\n", args.join(" "));
        let res = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = res {
            let _ = writeln!(
                std::io::stderr().lock(),
                "xe: cannot append to XE_STATUS_LOG: {e}"
            );
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        let _ = writeln!(
            std::io::stdout().lock(),
            "Usage: xe <command> [key=value ...] [--minimal] [--force]\nRun 'xe help' for the commands."
        );
        return ExitCode::SUCCESS;
    }
    let out = match call(&args) {
        Ok(o) => o,
        Err(e) => CliOutput {
            code: 1,
            stdout: String::new(),
            stderr: format!(
                "Unable to contact server. Please check server and port settings.\n({e})\n"
            ),
        },
    };
    let _ = std::io::stdout().lock().write_all(out.stdout.as_bytes());
    let _ = std::io::stderr().lock().write_all(out.stderr.as_bytes());
    record_status(out.code, &args);
    ExitCode::from(u8::try_from(out.code).unwrap_or(1))
}
