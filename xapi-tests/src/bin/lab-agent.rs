//! lab-agent: runs commands for the lab's other host (protocol in docs/conventions.md).
//!
//! `lab-agent [ADDRESS:PORT]` (default `0.0.0.0:7070`) serves one JSON request per line and
//! answers one JSON reply per line, running argv through sm-core's runner: tools are resolved in
//! `SM_TOOL_DIRS` (the lab's binaries) and then the system directories. Logs go to SMlog
//! (`SMLOG_FILE` in the lab).
#![forbid(unsafe_code)]

use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;

use sm_core::host::log;
use sm_core::host::run::SystemRunner;
use xapi_tests::lab::agent::{AGENT_PORT, serve};

fn main() -> ExitCode {
    log::init("lab-agent", "/var/log/lab-agent.log".into());
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| format!("0.0.0.0:{AGENT_PORT}"));
    let listener = match TcpListener::bind(&addr) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(addr, error = %e, "lab-agent cannot listen");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(addr, "lab-agent listening");
    match serve(listener, Arc::new(SystemRunner::new())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "lab-agent stopped");
            ExitCode::FAILURE
        }
    }
}
