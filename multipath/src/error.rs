//! [`MultipathError`]: the one error type of the crate, with typed context. Drivers map it to
//! an SMAPI code where the meaning is known (see [`MultipathError::kind`]).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use sm_core::host::{LockError, RunError};
use sm_core::scsi::ScsiError;

/// What a failure was about, for callers that pick an SMAPI code or a CLI exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The named object (LU, path, TPG, port, session) does not exist.
    NotFound,
    /// The request is not valid for the object (a state that cannot be requested, an LU
    /// without explicit ALUA, a malformed name).
    Invalid,
    /// The state did not settle before the deadline.
    Timeout,
    /// An external tool, the multipath daemon, a device or sysfs failed.
    System,
    /// iSCSI login was refused (authentication or authorisation).
    LoginRefused,
    /// A host name does not resolve.
    Dns,
    /// The iSCSI portal cannot be reached.
    Unreachable,
}

/// Why a multipath, ALUA or iSCSI operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MultipathError {
    /// An external command failed.
    #[error("{what}")]
    Command {
        /// What was being done.
        what: String,
        /// The runner's error.
        #[source]
        source: RunError,
    },
    /// iscsiadm answered with an error status.
    #[error("iscsiadm {op} failed ({status})")]
    Iscsiadm {
        /// The operation (`login to 10.0.0.1:3260`, ...).
        op: String,
        /// The classified exit status.
        status: IscsiadmStatus,
        /// The runner's error (exit code, stderr tail).
        #[source]
        source: RunError,
    },
    /// A SCSI command on a path failed.
    #[error("{what} on {device}")]
    Scsi {
        /// What was being done.
        what: &'static str,
        /// The device.
        device: String,
        /// The SCSI error (condition, sense).
        #[source]
        source: Box<ScsiError>,
    },
    /// A sysfs (or other host file) access failed.
    #[error("cannot {action} {}", path.display())]
    File {
        /// `read`, `write`, `list`, ...
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The multipath daemon could not be reached or did not answer.
    #[error("multipathd {command:?}: {reason}")]
    Multipathd {
        /// The command sent.
        command: String,
        /// What went wrong.
        reason: String,
    },
    /// The multipath daemon refused a command (`fail`, or an error text).
    #[error("multipathd refused {command:?}: {reply}")]
    MultipathdRefused {
        /// The command sent.
        command: String,
        /// Its reply.
        reply: String,
    },
    /// Output of a tool could not be understood.
    #[error("cannot parse {what}: {detail}")]
    Parse {
        /// Whose output.
        what: &'static str,
        /// The offending line or the parser's message.
        detail: String,
    },
    /// No object with that name.
    #[error("no {what} {name:?}")]
    NotFound {
        /// `logical unit`, `path`, `target port group`, ...
        what: &'static str,
        /// The name asked for.
        name: String,
    },
    /// The request cannot be carried out on this object.
    #[error("{0}")]
    Invalid(String),
    /// A state did not settle in time.
    #[error("{what} did not happen within {}s: {last}", after.as_secs())]
    Timeout {
        /// What was awaited.
        what: String,
        /// The deadline.
        after: Duration,
        /// The last state seen.
        last: String,
    },
    /// A host lock could not be taken.
    #[error("lock")]
    Lock(#[from] LockError),
    /// iscsid runs under another initiator name and has sessions: it cannot be renamed.
    #[error(
        "iscsid uses initiator name {current} with {sessions} session(s); cannot switch to {wanted}"
    )]
    InitiatorInUse {
        /// The name in use.
        current: String,
        /// The name wanted.
        wanted: String,
        /// Sessions that would keep the old name.
        sessions: usize,
    },
    /// A portal's host name does not resolve.
    #[error("cannot resolve {host}")]
    Dns {
        /// The name.
        host: String,
    },
    /// The portal does not accept TCP connections.
    #[error("cannot connect to {portal}: {reason}")]
    Unreachable {
        /// `host:port`.
        portal: String,
        /// The connect error.
        reason: String,
    },
}

impl MultipathError {
    /// The class of the failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            MultipathError::NotFound { .. } => ErrorKind::NotFound,
            MultipathError::Invalid(_) | MultipathError::InitiatorInUse { .. } => {
                ErrorKind::Invalid
            }
            MultipathError::Timeout { .. } => ErrorKind::Timeout,
            MultipathError::Unreachable { .. } => ErrorKind::Unreachable,
            MultipathError::Dns { .. } => ErrorKind::Dns,
            MultipathError::Iscsiadm { status, .. } => match status {
                IscsiadmStatus::AuthFailed | IscsiadmStatus::AccessDenied => {
                    ErrorKind::LoginRefused
                }
                IscsiadmStatus::TransportTimeout | IscsiadmStatus::ConnectFailed => {
                    ErrorKind::Unreachable
                }
                IscsiadmStatus::NoObjects => ErrorKind::NotFound,
                IscsiadmStatus::SessionExists
                | IscsiadmStatus::LoginFailed
                | IscsiadmStatus::Other(_) => ErrorKind::System,
            },
            MultipathError::Command { .. }
            | MultipathError::Scsi { .. }
            | MultipathError::File { .. }
            | MultipathError::Multipathd { .. }
            | MultipathError::MultipathdRefused { .. }
            | MultipathError::Parse { .. }
            | MultipathError::Lock(_) => ErrorKind::System,
        }
    }

    /// A command failure with context.
    pub fn command(what: impl Into<String>, source: RunError) -> MultipathError {
        MultipathError::Command {
            what: what.into(),
            source,
        }
    }

    /// A SCSI failure with context.
    pub fn scsi(what: &'static str, device: &str, source: ScsiError) -> MultipathError {
        MultipathError::Scsi {
            what,
            device: device.into(),
            source: Box::new(source),
        }
    }

    /// A file access failure.
    pub fn file(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        MultipathError::File {
            action,
            path: path.into(),
            source,
        }
    }

    /// A missing object.
    pub fn not_found(what: &'static str, name: impl Into<String>) -> MultipathError {
        MultipathError::NotFound {
            what,
            name: name.into(),
        }
    }
}

/// Results of this crate.
pub type Result<T, E = MultipathError> = std::result::Result<T, E>;

/// iscsiadm's exit statuses that matter (open-iscsi `include/iscsi_err.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IscsiadmStatus {
    /// 15 `ISCSI_ERR_SESS_EXISTS`: already logged in.
    SessionExists,
    /// 21 `ISCSI_ERR_NO_OBJS_FOUND`: no such session or node record.
    NoObjects,
    /// 24 `ISCSI_ERR_LOGIN_AUTH_FAILED`: CHAP or ACL refused.
    AuthFailed,
    /// 13 `ISCSI_ERR_ACCESS`: permission denied.
    AccessDenied,
    /// 8 `ISCSI_ERR_TRANS_TIMEOUT`, 11 `ISCSI_ERR_PDU_TIMEOUT`: no answer.
    TransportTimeout,
    /// 4 `ISCSI_ERR_TRANS`: the connection could not be made.
    ConnectFailed,
    /// 5 `ISCSI_ERR_LOGIN`, 19 `ISCSI_ERR_FATAL_LOGIN`: the target refused the login.
    LoginFailed,
    /// Anything else.
    Other(i32),
}

impl IscsiadmStatus {
    /// Classifies an exit code.
    pub fn from_code(code: i32) -> IscsiadmStatus {
        match code {
            15 => IscsiadmStatus::SessionExists,
            21 => IscsiadmStatus::NoObjects,
            24 => IscsiadmStatus::AuthFailed,
            13 => IscsiadmStatus::AccessDenied,
            8 | 11 => IscsiadmStatus::TransportTimeout,
            4 => IscsiadmStatus::ConnectFailed,
            5 | 19 => IscsiadmStatus::LoginFailed,
            other => IscsiadmStatus::Other(other),
        }
    }
}

impl fmt::Display for IscsiadmStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IscsiadmStatus::SessionExists => f.write_str("session exists"),
            IscsiadmStatus::NoObjects => f.write_str("no matching session or record"),
            IscsiadmStatus::AuthFailed => f.write_str("authentication failed"),
            IscsiadmStatus::AccessDenied => f.write_str("access denied"),
            IscsiadmStatus::TransportTimeout => f.write_str("timed out"),
            IscsiadmStatus::ConnectFailed => f.write_str("cannot connect"),
            IscsiadmStatus::LoginFailed => f.write_str("login refused"),
            IscsiadmStatus::Other(c) => write!(f, "exit status {c}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(IscsiadmStatus::from_code(15), IscsiadmStatus::SessionExists);
        assert_eq!(IscsiadmStatus::from_code(24), IscsiadmStatus::AuthFailed);
        assert_eq!(
            IscsiadmStatus::from_code(11),
            IscsiadmStatus::TransportTimeout
        );
        assert_eq!(IscsiadmStatus::from_code(19), IscsiadmStatus::LoginFailed);
        assert_eq!(IscsiadmStatus::from_code(99), IscsiadmStatus::Other(99));
    }
}
