//! LVM through lvm2's command line: typed commands ([`commands`]), the JSON report parsed with
//! serde ([`report`]), failures mapped to SMAPI codes in one place ([`error`]), extent and
//! snapshot arithmetic ([`extent`]), and the checks a device must pass before it becomes a PV
//! ([`devices`]). Used by every LVM-based SR driver (`lvm`, LVM over iSCSI/multipath).
//!
//! Every command runs through the [`Runner`] as `lvm <verb> ...` within a scope ([`LvmOptions`]):
//! - **devices**: when given, lvm2 sees only those devices (`--config devices { filter,
//!   global_filter }` accepting exactly them, by the names given and their canonical names, and
//!   rejecting everything else). Scans stay fast on hosts with many LUNs, a multipath map's
//!   component paths are never taken for duplicate PVs, and a command can never touch a device
//!   that is not the SR's.
//! - **system_dir**: `LVM_SYSTEM_DIR` (lvm.conf, metadata backups and archives). sm runs lvm2
//!   with `/etc/lvm/master` on the SR master; the drivers do the same when that directory holds
//!   an lvm.conf ([`LvmOptions::sm_master_dir`]), so metadata is written with the master's
//!   settings on XenServer/XCP-ng hosts, and with the host's own lvm.conf elsewhere.
//! - **locking_dir**: lvm2's file-lock directory (`global { locking_dir }`). Drivers leave it
//!   unset: lvm2's default directory is the one sm's own lvm2 calls lock in, and sharing it is
//!   what makes the two exclude each other. It exists for tools and tests that need lvm2 calls
//!   of their own that do not wait on the host's.
//!
//! One [`Lvm::vg`] or [`Lvm::scan`] call is one `lvm fullreport`, whatever the number of LVs.

pub mod commands;
pub mod devices;
pub mod error;
pub mod extent;
pub mod report;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::host::{Cmd, Runner};

pub use commands::{LvCreate, VgCreate};
pub use error::{Failure, LvmError, LvmOp};
pub use report::{Lv, LvAttr, Pv, Report, Vg};

/// The lvm2 executable (every verb runs as `lvm <verb>`).
pub const LVM: &str = "lvm";

/// Default deadline of one lvm2 command.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// sm's system directory for lvm2 calls on the SR master.
pub const SM_MASTER_DIR: &str = "/etc/lvm/master";

/// The scope lvm2 commands run in (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvmOptions {
    /// The only devices lvm2 may see; every device when empty.
    pub devices: Vec<PathBuf>,
    /// `LVM_SYSTEM_DIR`, or the host's default (`/etc/lvm`).
    pub system_dir: Option<PathBuf>,
    /// lvm2's lock directory, or its default (`/run/lock/lvm`).
    pub locking_dir: Option<PathBuf>,
    /// Deadline of each command.
    pub timeout: Duration,
}

impl Default for LvmOptions {
    fn default() -> LvmOptions {
        LvmOptions {
            devices: Vec::new(),
            system_dir: None,
            locking_dir: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl LvmOptions {
    /// Commands that see only `devices`.
    pub fn scoped<P: AsRef<Path>>(devices: &[P]) -> LvmOptions {
        LvmOptions {
            devices: devices.iter().map(|d| d.as_ref().to_path_buf()).collect(),
            ..LvmOptions::default()
        }
    }

    /// sm's master directory (`/etc/lvm/master` under `root`), when it holds an lvm.conf: what
    /// a driver passes as `system_dir` on the SR master.
    pub fn sm_master_dir(root: &Path) -> Option<PathBuf> {
        let dir = root.join(SM_MASTER_DIR.trim_start_matches('/'));
        dir.join("lvm.conf").is_file().then_some(dir)
    }
}

/// Characters a device path may not contain: they would break out of lvm2's config syntax.
fn check_path(p: &Path) -> Result<String, LvmError> {
    let s = p.to_str().ok_or_else(|| LvmError::BadDevice {
        detail: format!("{} is not valid UTF-8", p.display()),
    })?;
    if !p.is_absolute()
        || s.chars()
            .any(|c| c.is_control() || matches!(c, '"' | '\\' | '|'))
    {
        return Err(LvmError::BadDevice {
            detail: format!("{s:?} is not an absolute device path lvm2 can be told about"),
        });
    }
    Ok(s.to_string())
}

/// `s` with regular-expression metacharacters escaped.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(
            c,
            '.' | '+' | '*' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '^' | '$'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The `--config` text of a scope, or `None` when the host's configuration applies unchanged.
fn config_text(o: &LvmOptions) -> Result<Option<String>, LvmError> {
    let mut parts = Vec::new();
    if !o.devices.is_empty() {
        let mut names = Vec::new();
        for d in &o.devices {
            let given = check_path(d)?;
            if !names.contains(&given) {
                names.push(given);
            }
            if let Ok(canon) = std::fs::canonicalize(d)
                && let Ok(canon) = check_path(&canon)
                && !names.contains(&canon)
            {
                names.push(canon);
            }
        }
        let list: Vec<String> = names
            .iter()
            .map(|n| format!("\"a|^{}$|\"", regex_escape(n)))
            .chain(std::iter::once("\"r|.*|\"".to_string()))
            .collect();
        let list = list.join(", ");
        parts.push(format!(
            "devices {{ filter = [ {list} ] global_filter = [ {list} ] }}"
        ));
    }
    if let Some(dir) = &o.locking_dir {
        parts.push(format!(
            "global {{ locking_dir = \"{}\" }}",
            check_path(dir)?
        ));
    }
    Ok((!parts.is_empty()).then(|| parts.join(" ")))
}

/// lvm2 commands run by `runner` within one scope.
pub struct Lvm<'r> {
    runner: &'r dyn Runner,
    opts: LvmOptions,
    config: Option<String>,
}

impl std::fmt::Debug for Lvm<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lvm").field("opts", &self.opts).finish()
    }
}

impl<'r> Lvm<'r> {
    /// Commands in the scope `opts` (fault 91 ConfigDeviceInvalid when a device path cannot be
    /// put into lvm2's configuration).
    pub fn new(runner: &'r dyn Runner, opts: LvmOptions) -> Result<Lvm<'r>, LvmError> {
        let config = config_text(&opts)?;
        Ok(Lvm {
            runner,
            opts,
            config,
        })
    }

    /// The scope.
    pub fn options(&self) -> &LvmOptions {
        &self.opts
    }

    /// `lvm <verb>` with the scope's configuration and environment.
    fn cmd(&self, verb: &str) -> Cmd {
        let mut c = Cmd::new(LVM)
            .arg(verb)
            .timeout(self.opts.timeout)
            .env("LVM_SUPPRESS_FD_WARNINGS", "1");
        if let Some(dir) = &self.opts.system_dir {
            c = c.env("LVM_SYSTEM_DIR", dir.display().to_string());
        }
        if let Some(cfg) = &self.config {
            c = c.args(["--config", cfg.as_str()]);
        }
        c
    }
}

/// Refuses `op` (fault 58 LVMMaster) unless this host is the SR master (device_config
/// `SRmaster=true`): only the master changes a VG's metadata, as in sm.
pub fn require_master(is_master: bool, op: LvmOp) -> Result<(), LvmError> {
    if is_master {
        Ok(())
    } else {
        Err(LvmError::NotMaster { op })
    }
}

#[cfg(test)]
mod tests;
