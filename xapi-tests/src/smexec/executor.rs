//! Where a host's commands run: on this machine through `sm_core::host::run`, or on another
//! machine through the lab agent ([`crate::lab::agent`], docs/conventions.md "Lab agent
//! protocol").

use std::time::Duration;

use sm_core::host::{Cmd, RunError, Runner, SystemRunner};

use crate::lab::agent::{AgentClient, AgentError, AgentRequest};

/// What a finished command produced (whatever its exit status).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit status (`128 + signal` when killed).
    pub code: i32,
    /// stdout (UTF-8, lossy through the agent).
    pub stdout: Vec<u8>,
    /// stderr.
    pub stderr: String,
    /// Wall time in milliseconds.
    pub ms: u64,
}

impl ExecOutput {
    /// stdout as text.
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Why a command could not be run to completion.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Local run failed before producing an exit status (not found, spawn, timeout).
    #[error(transparent)]
    Run(#[from] RunError),
    /// The agent could not be reached or answered nonsense.
    #[error(transparent)]
    Agent(#[from] AgentError),
}

/// Runs commands on one host.
#[derive(Debug, Clone)]
pub enum Executor {
    /// This machine.
    Local(SystemRunner),
    /// Another machine, through its lab agent.
    Agent(AgentClient),
}

/// Every exit status counts as "ran": the caller maps non-zero statuses itself, as sm_exec does.
fn all_codes() -> Vec<i32> {
    (0..=255).collect()
}

impl Executor {
    /// Runs `argv` with optional stdin within `timeout`.
    pub fn run(
        &self,
        argv: &[String],
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<ExecOutput, ExecError> {
        let Some((prog, rest)) = argv.split_first() else {
            return Err(ExecError::Run(RunError::NotFound {
                program: String::new(),
                dirs: "(empty argv)".into(),
            }));
        };
        match self {
            Executor::Local(runner) => {
                let mut cmd = Cmd::new(prog.clone())
                    .args(rest.iter().cloned())
                    .timeout(timeout)
                    .ok_codes(&all_codes());
                if let Some(d) = stdin {
                    cmd = cmd.stdin(d.to_vec());
                }
                let out = runner.run(&cmd)?;
                Ok(ExecOutput {
                    code: out.code,
                    stderr: out.stderr_str(),
                    stdout: out.stdout,
                    ms: out.elapsed.as_millis() as u64,
                })
            }
            Executor::Agent(client) => {
                let mut req = AgentRequest::new(argv.iter().cloned()).timeout(timeout);
                if let Some(d) = stdin {
                    req = req.stdin(String::from_utf8_lossy(d).into_owned());
                }
                let r = client.run(&req)?;
                Ok(ExecOutput {
                    code: r.code,
                    stdout: r.stdout.into_bytes(),
                    stderr: r.stderr,
                    ms: r.ms,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_keeps_nonzero_status() {
        let e = Executor::Local(SystemRunner::new());
        let out = e
            .run(
                &["sh".into(), "-c".into(), "cat; echo err >&2; exit 3".into()],
                Some(b"in"),
                Duration::from_secs(10),
            )
            .unwrap();
        assert_eq!(out.code, 3);
        assert_eq!(out.stdout, b"in");
        assert_eq!(out.stderr, "err\n");
    }

    #[test]
    fn runs_through_the_lab_agent() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            crate::lab::agent::serve(l, std::sync::Arc::new(SystemRunner::new()))
        });
        let e = Executor::Agent(AgentClient::new(addr));
        let out = e
            .run(
                &["sh".into(), "-c".into(), "cat; echo err >&2; exit 7".into()],
                Some(b"data"),
                Duration::from_secs(10),
            )
            .unwrap();
        assert_eq!(
            (out.code, out.stdout_str().as_str(), out.stderr.as_str()),
            (7, "data", "err\n")
        );
    }

    #[test]
    fn unreachable_agent_is_an_error() {
        let e = Executor::Agent(AgentClient::new("127.0.0.1:1"));
        assert!(matches!(
            e.run(&["x".into()], None, Duration::from_secs(1)),
            Err(ExecError::Agent(_))
        ));
    }
}
