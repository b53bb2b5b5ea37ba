//! The exit-code table of the admin tools (plugin mode always exits 0, see `main.rs`).
//!
//! | code | [`Exit`] | meaning |
//! |---|---|---|
//! | 0 | `Done` | done (also `--help`, `--version`) |
//! | 1 | `Failed` | the operation failed (a device, the daemon, the array, a write to stdout) |
//! | 2 | `Usage`, `NotConfirmed` | bad command line; a change without `--yes` |
//! | 3 | `NotFound` | no such object (LU, path, port group) |
//! | 4 | `TimedOut` | the state did not settle before the deadline |

use std::process::ExitCode;

/// How an admin tool ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done.
    Done,
    /// The operation failed.
    Failed,
    /// The command line is not valid.
    Usage,
    /// A change was asked for without `--yes`.
    NotConfirmed,
    /// The named object does not exist.
    NotFound,
    /// The state did not settle before the deadline.
    TimedOut,
}

impl Exit {
    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            Exit::Done => 0,
            Exit::Failed => 1,
            Exit::Usage | Exit::NotConfirmed => 2,
            Exit::NotFound => 3,
            Exit::TimedOut => 4,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

impl From<multipath::ErrorKind> for Exit {
    fn from(k: multipath::ErrorKind) -> Exit {
        use multipath::ErrorKind as K;
        match k {
            K::NotFound => Exit::NotFound,
            K::Timeout => Exit::TimedOut,
            K::Invalid | K::System | K::LoginRefused | K::Dns | K::Unreachable => Exit::Failed,
        }
    }
}

impl From<&multipath::MultipathError> for Exit {
    fn from(e: &multipath::MultipathError) -> Exit {
        e.kind().into()
    }
}

impl From<&reservations::PrError> for Exit {
    /// Every reservation failure is a failed operation: `xsm pr` has no not-found or
    /// timed-out outcome of its own (a map that does not exist fails its sysfs read).
    fn from(e: &reservations::PrError) -> Exit {
        use reservations::PrError as E;
        match e {
            E::Unsupported { .. }
            | E::TypeUnsupported { .. }
            | E::NoUsablePath { .. }
            | E::InUse { .. }
            | E::Foreign { .. }
            | E::Fenced { .. }
            | E::ReservedOtherwise { .. }
            | E::KeyCollision { .. }
            | E::NotVerified { .. }
            | E::Scsi { .. }
            | E::Key(_)
            | E::Pool(_)
            | E::Multipathd { .. } => Exit::Failed,
        }
    }
}

impl From<&clap::Error> for Exit {
    /// `--help` and `--version` are done; every other parse error is a usage error.
    fn from(e: &clap::Error) -> Exit {
        if e.use_stderr() {
            Exit::Usage
        } else {
            Exit::Done
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_tools_codes() {
        let codes: Vec<u8> = [
            Exit::Done,
            Exit::Failed,
            Exit::Usage,
            Exit::NotConfirmed,
            Exit::NotFound,
            Exit::TimedOut,
        ]
        .map(Exit::code)
        .to_vec();
        assert_eq!(codes, [0, 1, 2, 2, 3, 4]);
        assert_eq!(Exit::from(multipath::ErrorKind::NotFound), Exit::NotFound);
        assert_eq!(Exit::from(multipath::ErrorKind::Timeout), Exit::TimedOut);
        assert_eq!(Exit::from(multipath::ErrorKind::Dns), Exit::Failed);
    }
}
