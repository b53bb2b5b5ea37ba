//! The host's initiator name (`/etc/iscsi/initiatorname.iscsi`), which iscsid reads at start.
//! As sm does: when it differs from the IQN xapi configured for the host, rewrite it and
//! restart iscsid, but only when no session exists (sessions made under the old name would
//! keep it: fault 70 ISCSIInitiator).

use std::time::Duration;

use sm_core::host::Cmd;

use super::Iqn;
use crate::error::{MultipathError, Result};
use crate::system::System;

/// The initiator name file.
pub const INITIATORNAME_FILE: &str = "/etc/iscsi/initiatorname.iscsi";
/// sm's limit on the alias (a storage array bug).
const ALIAS_MAX: usize = 30;

/// The name iscsid uses (`InitiatorName=` of the file), if any.
pub fn current(sys: &System) -> Option<String> {
    let text = std::fs::read_to_string(sys.paths.host(INITIATORNAME_FILE)).ok()?;
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix("InitiatorName="))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// What [`ensure`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The name was already right.
    Unchanged,
    /// The file was rewritten and iscsid restarted.
    Set,
}

/// Makes iscsid use `iqn`.
pub fn ensure(sys: &System, iqn: &Iqn) -> Result<Change> {
    let now = current(sys);
    if now.as_deref() == Some(iqn.as_str()) {
        return Ok(Change::Unchanged);
    }
    let sessions = sys.sysfs.iscsi_sessions();
    if !sessions.is_empty() {
        return Err(MultipathError::InitiatorInUse {
            current: now.unwrap_or_else(|| "(none)".into()),
            wanted: iqn.to_string(),
            sessions: sessions.len(),
        });
    }
    let host =
        std::fs::read_to_string(sys.paths.host("/proc/sys/kernel/hostname")).unwrap_or_default();
    let alias: String = host.trim().chars().take(ALIAS_MAX).collect();
    let file = sys.paths.host(INITIATORNAME_FILE);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| MultipathError::file("create", dir, e))?;
    }
    std::fs::write(
        &file,
        format!("InitiatorName={iqn}\nInitiatorAlias={alias}\n"),
    )
    .map_err(|e| MultipathError::file("write", &file, e))?;
    tracing::info!(initiator = %iqn, "initiator name set; restarting iscsid");
    sys.runner
        .run(
            &Cmd::new("systemctl")
                .args(["restart", "iscsid.service"])
                .timeout(Duration::from_secs(60)),
        )
        .map_err(|e| MultipathError::command("restart iscsid", e))?;
    Ok(Change::Set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::LabFake;

    #[test]
    fn unchanged_rewritten_or_refused() {
        let lab = LabFake::base();
        let f = lab.sys.paths.host(INITIATORNAME_FILE);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, crate::testing::fixture("initiatorname.stdout")).unwrap();
        let a = Iqn::new("iqn.2026-01.test.lab:host-a").unwrap();
        assert_eq!(ensure(&lab.sys, &a).unwrap(), Change::Unchanged);
        let other = Iqn::new("iqn.2026-01.test.lab:other").unwrap();
        let e = ensure(&lab.sys, &other).unwrap_err();
        assert!(
            matches!(e, MultipathError::InitiatorInUse { sessions: 2, .. }),
            "{e}"
        );
        assert!(lab.runner.calls().is_empty());

        let empty = tempfile::tempdir().unwrap();
        let sys = System {
            sysfs: sm_core::host::sysfs::Sysfs::new(empty.path()),
            paths: sm_core::host::Paths::new(empty.path()),
            ..lab.sys.clone()
        };
        assert_eq!(ensure(&sys, &other).unwrap(), Change::Set);
        assert_eq!(current(&sys).as_deref(), Some("iqn.2026-01.test.lab:other"));
        assert_eq!(
            lab.runner.calls(),
            vec![vec!["systemctl", "restart", "iscsid.service"]]
        );
    }
}
