//! The trace: one JSON object per line for every driver registration, `xe` command, SMAPI call
//! and data copy the emulator performs. The appendix checker and later test suites read it.
//!
//! ```text
//! {"t":"driver","sr_type":"xsmfile","plugin":"XSMFileSR","capabilities":[...]}
//! {"t":"xe_begin","id":3,"argv":["vm-start","uuid=..."],"ts":...}
//! {"t":"smapi","xe":3,"op":"VM.start","host":"<uuid>","host_name":"a","command":"vdi_attach",
//!  "sr":"<uuid>","vdi":"<uuid>","args":["true"],"ok":true,"result":{...},"ms":41,...}
//! {"t":"xe_end","id":3,"code":0,"stdout":"","stderr":"","ms":95}
//! ```

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// One SMAPI call and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SmapiCall {
    /// The `xe` command that caused it, if any.
    pub xe: Option<u64>,
    /// The XenAPI operation that caused it (`VM.start`, `PBD.plug`, ...).
    pub op: String,
    /// uuid of the host that ran the plugin.
    pub host: String,
    /// That host's name_label.
    pub host_name: String,
    /// The SR type.
    pub sr_type: String,
    /// The SMAPI command (`vdi_attach`).
    pub command: String,
    /// SR uuid, when the call has one.
    pub sr: Option<String>,
    /// VDI uuid, when the call has one (for vdi_create: the uuid the plugin returned).
    pub vdi: Option<String>,
    /// The `args` array.
    pub args: Vec<String>,
    /// Whether the call succeeded.
    pub ok: bool,
    /// The result value (JSON rendering of the XML-RPC value), on success.
    pub result: Option<Json>,
    /// The XenAPI error the outcome maps to, on failure (`["SR_BACKEND_FAILURE_47", ...]`).
    pub error: Option<Vec<String>>,
    /// The plugin's fault, when it printed one: `[code, faultString]`.
    pub fault: Option<(i32, String)>,
    /// The plugin's exit status.
    pub exit: i32,
    /// The plugin's stderr.
    pub stderr: String,
    /// Wall time in milliseconds.
    pub ms: u64,
    /// Start time (seconds since the epoch).
    pub ts: f64,
}

/// One trace line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Event {
    /// A plugin registered by `sr_get_driver_info`.
    Driver {
        /// SR type (lowercased prefix).
        sr_type: String,
        /// Executable name.
        plugin: String,
        /// Capabilities as the plugin declared them.
        capabilities: Vec<String>,
    },
    /// A plugin rejected at registration.
    Rejected {
        /// Executable name.
        plugin: String,
        /// Why.
        reason: String,
    },
    /// An `xe` command started.
    XeBegin {
        /// Sequence number.
        id: u64,
        /// Its arguments (without `xe`).
        argv: Vec<String>,
        /// Start time.
        ts: f64,
    },
    /// An `xe` command finished.
    XeEnd {
        /// Sequence number.
        id: u64,
        /// Exit status.
        code: i32,
        /// What it printed on stdout.
        stdout: String,
        /// What it printed on stderr.
        stderr: String,
        /// Wall time in milliseconds.
        ms: u64,
    },
    /// A SMAPI call.
    Smapi(Box<SmapiCall>),
    /// Data moved or checked by the emulator itself (vdi-copy, installer, suspend image).
    Data {
        /// The `xe` command, if any.
        xe: Option<u64>,
        /// What (`copy`, `fill`, `verify`, `compare`).
        what: String,
        /// Host uuid the tool ran on.
        host: String,
        /// Source / target description.
        detail: String,
        /// Whether it succeeded.
        ok: bool,
        /// Wall time in milliseconds.
        ms: u64,
    },
}

/// Seconds since the epoch.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Appends events to the trace file; a line is flushed as soon as it is written.
#[derive(Debug)]
pub struct TraceWriter {
    path: PathBuf,
    file: Mutex<Option<std::fs::File>>,
}

impl TraceWriter {
    /// A writer appending to `path` (created if missing).
    pub fn open(path: &Path) -> std::io::Result<TraceWriter> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(TraceWriter {
            path: path.to_path_buf(),
            file: Mutex::new(Some(f)),
        })
    }

    /// Where the trace is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event. Failures are logged, never propagated: tracing must not change the
    /// outcome of the operation it records.
    pub fn write(&self, ev: &Event) {
        let line = match serde_json::to_string(ev) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("trace: cannot encode event: {e}");
                return;
            }
        };
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = guard.as_mut()
            && let Err(e) = writeln!(f, "{line}").and_then(|_| f.flush())
        {
            tracing::warn!("trace: cannot write {}: {e}", self.path.display());
        }
    }
}

/// Why a trace could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file could not be read.
    #[error("cannot read trace {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A line is not a trace event.
    #[error("trace {path} line {line}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// The error.
        #[source]
        source: serde_json::Error,
    },
}

/// Reads every event of a trace file.
pub fn read(path: &Path) -> Result<Vec<Event>, TraceError> {
    let io = |source| TraceError::Io {
        path: path.display().to_string(),
        source,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line).map_err(|source| TraceError::Parse {
                path: path.display().to_string(),
                line: i + 1,
                source,
            })?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("trace.jsonl");
        let w = TraceWriter::open(&p).unwrap();
        let call = SmapiCall {
            command: "sr_attach".into(),
            ok: true,
            ..Default::default()
        };
        w.write(&Event::XeBegin {
            id: 1,
            argv: vec!["pbd-plug".into()],
            ts: now(),
        });
        w.write(&Event::Smapi(Box::new(call.clone())));
        let evs = read(&p).unwrap();
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[1], Event::Smapi(Box::new(call)));
        assert!(
            std::fs::read_to_string(&p)
                .unwrap()
                .contains("\"t\":\"smapi\"")
        );
    }
}
