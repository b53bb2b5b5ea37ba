//! Why an LVM operation failed, and the one mapping of those failures to SMAPI codes.
//!
//! An [`LvmError`] carries the operation ([`LvmOp`]), the masked command line, lvm2's exit code
//! and lvm2's own message, so a fault's opterr says what lvm2 said. The SMAPI code comes from
//! what failed ([`Failure`], classified from lvm2's message: a missing VG or LV is 100
//! LVMNoVolume, a full VG 44 SRNoSpace, a busy device or LV 56 LVMPartInUse, a bad size 60
//! LVMSize) and otherwise from the operation (create 50, remove 51, activate 52, deactivate 53,
//! metadata write 54, pvcreate 55, resize 59, vgcreate 77, PV listing 93, report 117); a change
//! asked of a host that is not the SR master is 58 LVMMaster, and a device path lvm2 cannot be
//! given 91 ConfigDeviceInvalid. Both matches are exhaustive, so a
//! new operation or failure kind does not compile until it has a code.

use std::fmt;

use crate::errors::{SmCode, SmError};
use crate::host::RunError;

/// What an lvm2 command was doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LvmOp {
    /// Reading VGs, PVs and LVs (`lvm fullreport`).
    Report,
    /// Listing PVs (`pvs`).
    PvReport,
    /// `pvcreate`.
    PvCreate,
    /// `pvremove`.
    PvRemove,
    /// `vgcreate`.
    VgCreate,
    /// `vgremove`.
    VgRemove,
    /// `vgchange -ay`.
    VgActivate,
    /// `vgchange -an`.
    VgDeactivate,
    /// `lvcreate`.
    LvCreate,
    /// `lvcreate --snapshot`.
    LvSnapshot,
    /// `lvremove`.
    LvRemove,
    /// `lvchange -ay`.
    LvActivate,
    /// `lvchange -an`.
    LvDeactivate,
    /// `lvextend`.
    LvResize,
    /// `lvrename`.
    LvRename,
    /// Tags and other metadata changes (`lvchange --addtag`, ...).
    MetadataWrite,
    /// `dmsetup remove` of a mapping of an LV lvm2 no longer knows.
    MappingRemove,
}

impl LvmOp {
    /// What the operation does, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            LvmOp::Report => "reading the LVM report",
            LvmOp::PvReport => "listing physical volumes",
            LvmOp::PvCreate => "creating a physical volume",
            LvmOp::PvRemove => "removing a physical volume label",
            LvmOp::VgCreate => "creating the volume group",
            LvmOp::VgRemove => "removing the volume group",
            LvmOp::VgActivate => "activating the volume group",
            LvmOp::VgDeactivate => "deactivating the volume group",
            LvmOp::LvCreate => "creating a logical volume",
            LvmOp::LvSnapshot => "creating a snapshot logical volume",
            LvmOp::LvRemove => "removing a logical volume",
            LvmOp::LvActivate => "activating a logical volume",
            LvmOp::LvDeactivate => "deactivating a logical volume",
            LvmOp::LvResize => "resizing a logical volume",
            LvmOp::LvRename => "renaming a logical volume",
            LvmOp::MetadataWrite => "writing LVM metadata",
            LvmOp::MappingRemove => "removing a stale device-mapper mapping",
        }
    }

    /// The SMAPI code of a failure of this operation that lvm2's message does not classify.
    pub fn sm_code(self) -> SmCode {
        match self {
            LvmOp::Report => SmCode::LVMRead,
            LvmOp::PvReport => SmCode::PVSfailed,
            LvmOp::PvCreate => SmCode::LVMPartCreate,
            LvmOp::PvRemove => SmCode::LVMDelete,
            LvmOp::VgCreate => SmCode::LVMGroupCreate,
            LvmOp::VgRemove => SmCode::LVMDelete,
            LvmOp::VgActivate => SmCode::LVMMount,
            LvmOp::VgDeactivate => SmCode::LVMUnMount,
            LvmOp::LvCreate => SmCode::LVMCreate,
            LvmOp::LvSnapshot => SmCode::LVMCreate,
            LvmOp::LvRemove => SmCode::LVMDelete,
            LvmOp::LvActivate => SmCode::LVMMount,
            LvmOp::LvDeactivate => SmCode::LVMUnMount,
            LvmOp::LvResize => SmCode::LVMResize,
            LvmOp::LvRename => SmCode::LVMWrite,
            LvmOp::MetadataWrite => SmCode::LVMWrite,
            LvmOp::MappingRemove => SmCode::SRInUse,
        }
    }
}

impl fmt::Display for LvmOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// What lvm2's message says went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// A VG, LV or PV does not exist (`Volume group "x" not found`).
    NotFound,
    /// The VG has too few free extents (`insufficient free space`).
    NoSpace,
    /// A device or LV is busy (`in use`, `Can't open ... exclusively`).
    InUse,
    /// The name is taken (`already exists`).
    Exists,
    /// The size is not acceptable (`not larger than existing size`, `Invalid size`).
    InvalidSize,
    /// Anything else.
    Other,
}

impl Failure {
    /// Classifies lvm2's message.
    pub fn classify(message: &str) -> Failure {
        let m = message.to_ascii_lowercase();
        let has = |pats: &[&str]| pats.iter().any(|p| m.contains(p));
        if has(&["insufficient free space", "insufficient suitable"]) {
            Failure::NoSpace
        } else if has(&[
            "not larger than existing",
            "not smaller than existing",
            "invalid size",
            "size must be",
            "cannot reduce",
            "new size given",
        ]) {
            Failure::InvalidSize
        } else if has(&["already exists"]) {
            Failure::Exists
        } else if has(&[
            " in use",
            "exclusively",
            "is busy",
            "device or resource busy",
            "open logical volume",
        ]) {
            Failure::InUse
        } else if has(&[
            "not found",
            "failed to find",
            "cannot process volume group",
            "no such",
        ]) {
            Failure::NotFound
        } else {
            Failure::Other
        }
    }
}

/// A failed LVM operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LvmError {
    /// lvm2 ran and exited with an error.
    Failed {
        /// What it was doing.
        op: LvmOp,
        /// What the message says.
        kind: Failure,
        /// The masked command line.
        argv: String,
        /// lvm2's exit code.
        code: i32,
        /// lvm2's own message (its stderr, lines joined with "; ").
        message: String,
    },
    /// lvm2 could not be run, or did not finish in time.
    Run {
        /// What it was doing.
        op: LvmOp,
        /// The runner's account.
        detail: String,
    },
    /// lvm2's report could not be read.
    Parse {
        /// What it was doing.
        op: LvmOp,
        /// What was wrong.
        reason: String,
    },
    /// A change to shared LVM metadata asked of a host that is not the SR master.
    NotMaster {
        /// What was asked.
        op: LvmOp,
    },
    /// A size that the VG cannot represent or that the operation does not allow.
    BadSize {
        /// What was asked.
        op: LvmOp,
        /// Why the size is refused.
        detail: String,
    },
    /// A device path that cannot be put into lvm2's configuration.
    BadDevice {
        /// Why.
        detail: String,
    },
}

impl LvmError {
    /// Builds the error of a command that failed to run or exited with an error.
    pub fn from_run(op: LvmOp, e: RunError) -> LvmError {
        match e {
            RunError::Failed {
                cmd, code, stderr, ..
            } => {
                let message = lvm_message(&stderr);
                LvmError::Failed {
                    op,
                    kind: Failure::classify(&message),
                    argv: cmd,
                    code,
                    message,
                }
            }
            other => LvmError::Run {
                op,
                detail: other.to_string(),
            },
        }
    }

    /// The operation that failed (`None` before any was tried).
    pub fn op(&self) -> Option<LvmOp> {
        match self {
            LvmError::Failed { op, .. }
            | LvmError::Run { op, .. }
            | LvmError::Parse { op, .. }
            | LvmError::NotMaster { op }
            | LvmError::BadSize { op, .. } => Some(*op),
            LvmError::BadDevice { .. } => None,
        }
    }

    /// What lvm2's message says, when lvm2 ran and failed.
    pub fn failure(&self) -> Option<Failure> {
        match self {
            LvmError::Failed { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// Whether lvm2 said the VG, LV or PV does not exist.
    pub fn is_not_found(&self) -> bool {
        self.failure() == Some(Failure::NotFound)
    }

    /// The SMAPI code for this failure (see the module documentation).
    pub fn sm_code(&self) -> SmCode {
        match self {
            LvmError::Failed { kind, op, .. } => match kind {
                Failure::NotFound => SmCode::LVMNoVolume,
                Failure::NoSpace => SmCode::SRNoSpace,
                Failure::InUse => SmCode::LVMPartInUse,
                Failure::InvalidSize => SmCode::LVMSize,
                Failure::Exists | Failure::Other => op.sm_code(),
            },
            LvmError::Run { op, .. } | LvmError::Parse { op, .. } => op.sm_code(),
            LvmError::NotMaster { .. } => SmCode::LVMMaster,
            LvmError::BadSize { .. } => SmCode::LVMSize,
            LvmError::BadDevice { .. } => SmCode::ConfigDeviceInvalid,
        }
    }
}

/// lvm2's stderr as one line: every non-empty line, trimmed, joined with "; ", without the
/// warnings lvm2 prints on every command in some environments.
fn lvm_message(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(|l| !l.starts_with("File descriptor ") && !l.contains("leaked on lvm invocation"))
        .collect();
    lines.join("; ")
}

/// The tool of a masked command line (`lvm lvcreate ...` -> `lvcreate`).
fn verb(argv: &str) -> &str {
    let mut words = argv.split_whitespace();
    let first = words.next().unwrap_or("lvm");
    if first.ends_with("lvm") {
        words.next().unwrap_or(first)
    } else {
        first
    }
}

impl fmt::Display for LvmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LvmError::Failed {
                op,
                argv,
                code,
                message,
                ..
            } => write!(f, "{op}: {} exited {code}: {message}", verb(argv)),
            LvmError::Run { op, detail } => write!(f, "{op}: {detail}"),
            LvmError::Parse { op, reason } => write!(f, "{op}: unreadable lvm2 output: {reason}"),
            LvmError::NotMaster { op } => {
                write!(f, "{op}: only the SR master may change LVM metadata")
            }
            LvmError::BadSize { op, detail } => write!(f, "{op}: {detail}"),
            LvmError::BadDevice { detail } => f.write_str(detail),
        }
    }
}

impl std::error::Error for LvmError {}

impl From<LvmError> for SmError {
    fn from(e: LvmError) -> SmError {
        SmError::new(e.sm_code(), e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(op: LvmOp, stderr: &str) -> LvmError {
        LvmError::from_run(
            op,
            RunError::Failed {
                cmd: "lvm lvcreate -y -n LV-x VG".into(),
                code: 5,
                stderr: stderr.into(),
                stdout: String::new(),
            },
        )
    }

    #[test]
    fn messages_are_classified_as_lvm2_words_them() {
        for (msg, kind) in [
            (
                "Volume group \"VG_XenStorage-x\" has insufficient free space (1021 extents): 2560 required.",
                Failure::NoSpace,
            ),
            (
                "Volume group \"nonexist\" not found\n  Cannot process volume group nonexist",
                Failure::NotFound,
            ),
            (
                "Failed to find logical volume \"VG/nonexist\"",
                Failure::NotFound,
            ),
            (
                "Logical Volume \"LV-a\" already exists in volume group \"VG\"",
                Failure::Exists,
            ),
            (
                "New size given (1 extents) not larger than existing size (25 extents)",
                Failure::InvalidSize,
            ),
            ("Logical volume VG/LV-a in use.", Failure::InUse),
            (
                "Can't open /dev/sdb exclusively.  Mounted filesystem?",
                Failure::InUse,
            ),
            ("Something else entirely", Failure::Other),
        ] {
            assert_eq!(Failure::classify(msg), kind, "{msg}");
        }
    }

    #[test]
    fn codes_come_from_the_failure_then_the_operation() {
        assert_eq!(
            failed(LvmOp::LvCreate, "insufficient free space").sm_code(),
            SmCode::SRNoSpace
        );
        assert_eq!(
            failed(LvmOp::LvActivate, "Failed to find logical volume \"a/b\"").sm_code(),
            SmCode::LVMNoVolume
        );
        assert_eq!(
            failed(LvmOp::LvRemove, "Logical volume a/b in use.").sm_code(),
            SmCode::LVMPartInUse
        );
        assert_eq!(
            failed(
                LvmOp::LvResize,
                "New size given (1 extents) not larger than existing size"
            )
            .sm_code(),
            SmCode::LVMSize
        );
        for (op, code) in [
            (LvmOp::Report, 117),
            (LvmOp::PvReport, 93),
            (LvmOp::PvCreate, 55),
            (LvmOp::VgCreate, 77),
            (LvmOp::LvCreate, 50),
            (LvmOp::LvSnapshot, 50),
            (LvmOp::LvRemove, 51),
            (LvmOp::LvActivate, 52),
            (LvmOp::LvDeactivate, 53),
            (LvmOp::MetadataWrite, 54),
            (LvmOp::LvRename, 54),
            (LvmOp::LvResize, 59),
            (LvmOp::MappingRemove, 16),
        ] {
            assert_eq!(failed(op, "boom").sm_code().value(), code, "{op:?}");
        }
        assert_eq!(
            LvmError::NotMaster {
                op: LvmOp::LvCreate
            }
            .sm_code()
            .value(),
            58
        );
        let timeout = LvmError::from_run(
            LvmOp::Report,
            RunError::Timeout {
                cmd: "lvm fullreport".into(),
                after: std::time::Duration::from_secs(1),
            },
        );
        assert_eq!(timeout.sm_code(), SmCode::LVMRead);
    }

    #[test]
    fn opterr_carries_lvm2_s_message_once() {
        let e = failed(
            LvmOp::LvCreate,
            "  File descriptor 9 (/dev/null) leaked on lvm invocation. Parent PID 1: sh\n  Volume group \"VG\" has insufficient free space (3 extents): 25 required.\n",
        );
        let f = SmError::from(e).to_fault();
        assert_eq!(f.code, 44);
        assert_eq!(
            f.string,
            "There is insufficient space [opterr=creating a logical volume: lvcreate exited 5: Volume group \"VG\" has insufficient free space (3 extents): 25 required.]"
        );
    }
}
