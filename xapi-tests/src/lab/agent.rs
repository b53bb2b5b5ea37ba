//! The lab agent protocol (docs/conventions.md): how a test on host A runs a command on host B.
//!
//! One JSON object per line each way over TCP:
//! `{"argv": [...], "env": {...}, "stdin": "...", "timeout_ms": 60000}` in,
//! `{"code": 0, "stdout": "...", "stderr": "...", "ms": 12}` out. The agent runs argv through
//! sm-core's runner (tools resolved in `SM_TOOL_DIRS`, then the system directories). Codes the
//! agent makes up itself: 124 the command timed out, 126 it could not be started, 127 not found,
//! 2 the request was not understood.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sm_core::host::run::{Cmd, RunError, Runner};

/// The agent's TCP port.
pub const AGENT_PORT: u16 = 7070;

/// Deadline of a command whose request gives none.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Exit code for a command that ran out of time.
pub const CODE_TIMEOUT: i32 = 124;
/// Exit code for a command that could not be started.
pub const CODE_SPAWN: i32 = 126;
/// Exit code for a program that was not found.
pub const CODE_NOT_FOUND: i32 = 127;
/// Exit code for a request that was not understood.
pub const CODE_BAD_REQUEST: i32 = 2;

/// Longest request line the agent accepts.
const MAX_REQUEST: u64 = 64 << 20;

/// One command to run on the agent's host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRequest {
    /// Program and arguments (never through a shell).
    pub argv: Vec<String>,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Text fed on stdin (otherwise stdin is /dev/null).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Deadline in milliseconds ([`DEFAULT_COMMAND_TIMEOUT`] when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

impl AgentRequest {
    /// A request running `argv`.
    pub fn new<I, S>(argv: I) -> AgentRequest
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        AgentRequest {
            argv: argv.into_iter().map(Into::into).collect(),
            ..AgentRequest::default()
        }
    }

    /// Sets an environment variable.
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> AgentRequest {
        self.env.insert(k.into(), v.into());
        self
    }

    /// Feeds `text` on stdin.
    pub fn stdin(mut self, text: impl Into<String>) -> AgentRequest {
        self.stdin = Some(text.into());
        self
    }

    /// Sets the deadline.
    pub fn timeout(mut self, t: Duration) -> AgentRequest {
        self.timeout_ms = Some(u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
        self
    }
}

/// What a command produced on the agent's host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentReply {
    /// Exit code (`128 + signal` when killed by a signal; see the module doc for the agent's own).
    pub code: i32,
    /// stdout, UTF-8 (lossy).
    pub stdout: String,
    /// stderr, UTF-8 (lossy).
    pub stderr: String,
    /// Wall time in milliseconds.
    pub ms: u64,
}

impl AgentReply {
    /// Whether the command exited 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// Why an exchange with the agent failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No connection to the agent.
    #[error("cannot connect to the lab agent at {addr}")]
    Connect {
        /// Agent address.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The connection failed mid-exchange.
    #[error("lost the lab agent at {addr}")]
    Io {
        /// Agent address.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The agent's answer is not a reply.
    #[error("the lab agent at {addr} answered something that is not a reply: {detail}")]
    Protocol {
        /// Agent address.
        addr: String,
        /// What was wrong.
        detail: String,
    },
    /// The command ran and exited with a non-zero code ([`AgentClient::check`]).
    #[error("{argv} on {addr} exited with {code}: {stderr}")]
    Failed {
        /// Agent address.
        addr: String,
        /// The command line.
        argv: String,
        /// Exit code.
        code: i32,
        /// stderr (trimmed).
        stderr: String,
        /// stdout.
        stdout: String,
    },
}

/// A client of one agent; each call opens its own connection, so a client can be shared by threads.
#[derive(Debug, Clone)]
pub struct AgentClient {
    addr: String,
    slack: Duration,
}

impl AgentClient {
    /// A client of the agent at `addr` (`host:port`).
    pub fn new(addr: impl Into<String>) -> AgentClient {
        AgentClient {
            addr: addr.into(),
            slack: Duration::from_secs(30),
        }
    }

    /// The agent's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Runs one request and returns the reply, whatever the command's exit code.
    pub fn run(&self, req: &AgentRequest) -> Result<AgentReply, AgentError> {
        let io = |source| AgentError::Io {
            addr: self.addr.clone(),
            source,
        };
        let stream = TcpStream::connect(&self.addr).map_err(|source| AgentError::Connect {
            addr: self.addr.clone(),
            source,
        })?;
        let deadline = req
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_COMMAND_TIMEOUT)
            + self.slack;
        stream.set_read_timeout(Some(deadline)).map_err(io)?;
        let mut line = serde_json::to_vec(req).map_err(|e| AgentError::Protocol {
            addr: self.addr.clone(),
            detail: e.to_string(),
        })?;
        line.push(b'\n');
        (&stream).write_all(&line).map_err(io)?;
        let mut answer = String::new();
        BufReader::new(&stream).read_line(&mut answer).map_err(io)?;
        serde_json::from_str(&answer).map_err(|e| AgentError::Protocol {
            addr: self.addr.clone(),
            detail: if answer.is_empty() {
                "connection closed".to_string()
            } else {
                e.to_string()
            },
        })
    }

    /// Runs one request; a non-zero exit code is [`AgentError::Failed`].
    pub fn check(&self, req: &AgentRequest) -> Result<AgentReply, AgentError> {
        let reply = self.run(req)?;
        if reply.success() {
            return Ok(reply);
        }
        Err(AgentError::Failed {
            addr: self.addr.clone(),
            argv: req.argv.join(" "),
            code: reply.code,
            stderr: reply.stderr.trim().to_string(),
            stdout: reply.stdout,
        })
    }

    /// Runs `argv` with the default deadline; a non-zero exit code is an error.
    pub fn sh<I, S>(&self, argv: I) -> Result<AgentReply, AgentError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.check(&AgentRequest::new(argv))
    }
}

/// Executes one request with `runner`.
pub fn execute(runner: &dyn Runner, req: &AgentRequest) -> AgentReply {
    let Some((program, args)) = req.argv.split_first() else {
        return AgentReply {
            code: CODE_BAD_REQUEST,
            stderr: "lab-agent: empty argv".into(),
            ..AgentReply::default()
        };
    };
    let timeout = req
        .timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_COMMAND_TIMEOUT);
    let all_codes: Vec<i32> = (0..=255).collect();
    let mut cmd = Cmd::new(program.clone())
        .args(args)
        .timeout(timeout)
        .ok_codes(&all_codes);
    for (k, v) in &req.env {
        cmd = cmd.env(k.clone(), v.clone());
    }
    if let Some(text) = &req.stdin {
        cmd = cmd.stdin(text.clone().into_bytes());
    }
    let started = std::time::Instant::now();
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    match runner.run(&cmd) {
        Ok(out) => AgentReply {
            code: out.code,
            stdout: out.stdout_str(),
            stderr: out.stderr_str(),
            ms: ms(out.elapsed),
        },
        Err(e) => {
            let code = match &e {
                RunError::Timeout { .. } => CODE_TIMEOUT,
                RunError::NotFound { .. } => CODE_NOT_FOUND,
                RunError::Spawn { .. } => CODE_SPAWN,
                RunError::Failed { code, .. } => *code,
            };
            AgentReply {
                code,
                stdout: String::new(),
                stderr: format!("lab-agent: {e}"),
                ms: ms(started.elapsed()),
            }
        }
    }
}

/// Answers the requests of one connection until the peer closes it.
pub fn serve_connection(runner: &dyn Runner, stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut line = String::new();
        let n = (&mut reader).take(MAX_REQUEST).read_line(&mut line)?;
        if n == 0 {
            return Ok(());
        }
        if line.trim().is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<AgentRequest>(&line) {
            Ok(req) => {
                let reply = execute(runner, &req);
                tracing::info!(argv = ?req.argv, code = reply.code, ms = reply.ms, "lab-agent request");
                reply
            }
            Err(e) => AgentReply {
                code: CODE_BAD_REQUEST,
                stderr: format!("lab-agent: bad request: {e}"),
                ..AgentReply::default()
            },
        };
        let mut out = serde_json::to_vec(&reply).map_err(std::io::Error::other)?;
        out.push(b'\n');
        writer.write_all(&out)?;
    }
}

/// Serves `listener` forever, one thread per connection.
pub fn serve(listener: TcpListener, runner: Arc<dyn Runner>) -> std::io::Result<()> {
    for stream in listener.incoming() {
        let stream = stream?;
        let runner = Arc::clone(&runner);
        std::thread::spawn(move || {
            let peer = stream
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            if let Err(e) = serve_connection(runner.as_ref(), stream) {
                tracing::warn!(peer, error = %e, "lab-agent connection failed");
            }
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sm_core::host::run::SystemRunner;

    fn agent() -> AgentClient {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || serve(listener, Arc::new(SystemRunner::new())));
        AgentClient::new(addr)
    }

    #[test]
    fn runs_argv_with_env_and_stdin() {
        let a = agent();
        let r = a
            .run(
                &AgentRequest::new(["sh", "-c", "echo \"$GREETING\"; cat; echo err >&2; exit 3"])
                    .env("GREETING", "hello")
                    .stdin("from stdin"),
            )
            .unwrap();
        assert_eq!(r.code, 3);
        assert_eq!(r.stdout, "hello\nfrom stdin");
        assert_eq!(r.stderr, "err\n");
    }

    #[test]
    fn check_turns_a_failure_into_an_error() {
        let a = agent();
        let err = a.sh(["sh", "-c", "echo nope >&2; exit 1"]).unwrap_err();
        match err {
            AgentError::Failed { code, stderr, .. } => {
                assert_eq!(code, 1);
                assert_eq!(stderr, "nope");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(a.sh(["true"]).unwrap().code, 0);
    }

    #[test]
    fn agent_codes_for_timeout_missing_program_and_bad_requests() {
        let a = agent();
        let t = a
            .run(&AgentRequest::new(["sleep", "30"]).timeout(Duration::from_millis(200)))
            .unwrap();
        assert_eq!(t.code, CODE_TIMEOUT, "{t:?}");
        let nf = a.run(&AgentRequest::new(["no-such-program-xyz"])).unwrap();
        assert_eq!(nf.code, CODE_NOT_FOUND);
        let empty = a.run(&AgentRequest::default()).unwrap();
        assert_eq!(empty.code, CODE_BAD_REQUEST);

        let mut s = TcpStream::connect(a.addr()).unwrap();
        s.write_all(b"not json\n{\"argv\": [\"echo\", \"still here\"]}\n")
            .unwrap();
        let mut lines = BufReader::new(s).lines();
        let bad: AgentReply = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert_eq!(bad.code, CODE_BAD_REQUEST);
        assert!(bad.stderr.contains("bad request"), "{}", bad.stderr);
        let good: AgentReply = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert_eq!(good.stdout, "still here\n");
    }

    #[test]
    fn wire_format_matches_the_conventions() {
        let req: AgentRequest = serde_json::from_str(
            r#"{"argv": ["xsm", "x"], "env": {"K": "V"}, "stdin": "...", "timeout_ms": 60000}"#,
        )
        .unwrap();
        assert_eq!(
            req,
            AgentRequest::new(["xsm", "x"])
                .env("K", "V")
                .stdin("...")
                .timeout(Duration::from_secs(60))
        );
        let minimal: AgentRequest = serde_json::from_str(r#"{"argv": ["true"]}"#).unwrap();
        assert_eq!(minimal, AgentRequest::new(["true"]));
        let reply = AgentReply {
            code: 0,
            stdout: "o".into(),
            stderr: "e".into(),
            ms: 12,
        };
        assert_eq!(
            serde_json::to_string(&reply).unwrap(),
            r#"{"code":0,"stdout":"o","stderr":"e","ms":12}"#
        );
    }
}
