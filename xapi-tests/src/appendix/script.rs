//! Runs the SMAPI spec's appendix test script (`xapi-tests/appendix/test-script.sh`, kept as
//! written) against an emulator, with our `xe` on PATH.
//!
//! Two variants:
//! - [`Variant::Block`]: the script itself, only its `DEV=` line substituted, for block SR
//!   types that take `device-config:device` (ours: `xsmlvm`, `xsmext`). The script ends by
//!   running `lvm` and `ext`, which are sm's types on a real host, so
//!   `appendix/run-types.sh` sources its definitions and calls `run_ops` for the types given.
//! - [`Variant::File`]: a derived copy for the `xsmfile` SR, which needs no root. The edits, each
//!   checked to apply exactly where expected: `DEV=` names a directory;
//!   `device-config-device=$DEV` becomes `device-config:location=$DEV`; `LOGFILE` moves into the
//!   run directory; the `rm -f /var/run/sr-mount/...` hack honours `$SM_ROOT`; the final
//!   `run_ops` calls become one for `SR_TYPE='xsmfile'`.
//! - [`Variant::DeviceConfig`]: a derived copy for an SR type with other device_config keys
//!   (`multipathlvmoiscsi`): each `device-config-device=$DEV` becomes the given
//!   `device-config:<key>=<value>` list, the final `run_ops` calls one for that type.
//!
//! The script's `sleep 30`/`sleep 10` wait for nothing the emulator does: a `sleep` shim earlier
//! on PATH shortens them to 0.1 s unless real sleeps are asked for. Every `xe` invocation's
//! exit status is recorded through `XE_STATUS_LOG` (not just the last), and the trace holds
//! every command's outcome too.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sm_core::host::{Cmd, Runner, SystemRunner};

/// How long the whole script may take.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(2 * 3600);

/// Which SR the script runs against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Variant {
    /// The `xsmfile` SR in this directory (derived copy of the script).
    File {
        /// The SR's location.
        location: PathBuf,
    },
    /// Block SR types on this device (the script as written).
    Block {
        /// The device (`DEV=`).
        device: String,
        /// The SR types to run, in order (`xsmlvm`, `xsmext`).
        types: Vec<String>,
    },
    /// One SR type whose device_config is not `device` (iSCSI: `target`, `targetIQN`,
    /// `SCSIid`, CHAP): a derived copy of the script.
    DeviceConfig {
        /// The SR type.
        sr_type: String,
        /// device_config, in order.
        device_config: Vec<(String, String)>,
    },
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The directory for the script copy, shims and logs.
    pub work: PathBuf,
    /// The verbatim script.
    pub script: PathBuf,
    /// `run-types.sh`.
    pub run_types: PathBuf,
    /// The directory holding `xe`.
    pub bin_dir: PathBuf,
    /// The emulator's state directory.
    pub state_dir: PathBuf,
    /// The variant.
    pub variant: Variant,
    /// Keep the script's real sleeps.
    pub real_sleep: bool,
    /// `SM_ROOT` of the host's plugins (for the derived script's `rm -f` of a VHD).
    pub sm_root: Option<PathBuf>,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The script's exit status (it exits with its last command's).
    pub code: i32,
    /// Its stdout (the `log` lines).
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
    /// `(exit status, arguments)` of every `xe` invocation, in order.
    pub xe: Vec<(i32, String)>,
    /// Wall time.
    pub elapsed: Duration,
    /// The script that ran.
    pub ran: PathBuf,
}

impl RunResult {
    /// The `xe` invocations that failed.
    pub fn failed_xe(&self) -> Vec<&(i32, String)> {
        self.xe.iter().filter(|(c, _)| *c != 0).collect()
    }
}

/// Why the script could not be run.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// File handling.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The script's text is not what the derivation expects.
    #[error("the appendix script changed: {0}")]
    Derive(String),
    /// bash could not be run.
    #[error(transparent)]
    Run(#[from] sm_core::host::RunError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ScriptError {
    let what = what.into();
    move |source| ScriptError::Io { what, source }
}

/// Replaces `from` with `to`, which must occur exactly `n` times.
fn replace_n(text: &str, from: &str, to: &str, n: usize) -> Result<String, ScriptError> {
    let found = text.matches(from).count();
    if found != n {
        return Err(ScriptError::Derive(format!(
            "expected {n} occurrence(s) of {from:?}, found {found}"
        )));
    }
    Ok(text.replace(from, to))
}

/// The script with only its `DEV=` line substituted.
pub fn with_device(script: &str, dev: &str) -> Result<String, ScriptError> {
    replace_n(script, "DEV='/dev/sdb'", &format!("DEV='{dev}'"), 1)
}

/// The derived copy for the `xsmfile` SR (see the module documentation for each edit).
pub fn file_variant(script: &str, location: &Path, cmdlog: &Path) -> Result<String, ScriptError> {
    let s = with_device(script, &location.display().to_string())?;
    let s = replace_n(
        &s,
        "device-config-device=$DEV",
        "device-config:location=$DEV",
        3,
    )?;
    let s = replace_n(
        &s,
        "LOGFILE='/var/log/CMDlog'",
        &format!("LOGFILE='{}'", cmdlog.display()),
        1,
    )?;
    let s = replace_n(
        &s,
        "rm -f /var/run/sr-mount/",
        "rm -f ${SM_ROOT}/var/run/sr-mount/",
        1,
    )?;
    replace_n(
        &s,
        "SR_TYPE='lvm'\nrun_ops\n\nSR_TYPE='ext'\nrun_ops\n",
        "SR_TYPE='xsmfile'\nrun_ops\n",
        1,
    )
}

/// The derived copy for an SR type with its own device_config keys (see the module
/// documentation). Values must not need shell quoting.
pub fn device_config_variant(
    script: &str,
    sr_type: &str,
    device_config: &[(String, String)],
) -> Result<String, ScriptError> {
    if let Some((k, v)) = device_config.iter().find(|(k, v)| {
        !format!("{k}{v}")
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".,:-_/@=*".contains(c))
    }) {
        return Err(ScriptError::Derive(format!(
            "device_config {k}={v} needs quoting"
        )));
    }
    let dconf = device_config
        .iter()
        .map(|(k, v)| format!("device-config:{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
    let s = replace_n(script, "device-config-device=$DEV", &dconf, 3)?;
    replace_n(
        &s,
        "SR_TYPE='lvm'\nrun_ops\n\nSR_TYPE='ext'\nrun_ops\n",
        &format!("SR_TYPE='{sr_type}'\nrun_ops\n"),
        1,
    )
}

const SLEEP_SHIM: &str = "#!/bin/sh\n# Appendix runner shim: the script's sleeps wait for nothing the emulator does.\nexec /bin/sleep 0.1\n";

/// Prepares the script to run and its environment, then runs it with bash.
pub fn run(spec: &RunSpec) -> Result<RunResult, ScriptError> {
    std::fs::create_dir_all(&spec.work).map_err(io("creating the run directory"))?;
    let text = std::fs::read_to_string(&spec.script)
        .map_err(io(format!("reading {}", spec.script.display())))?;
    let (ran, argv) = match &spec.variant {
        Variant::File { location } => {
            std::fs::create_dir_all(location).map_err(io("creating the SR directory"))?;
            let p = spec.work.join("test-script.file.sh");
            std::fs::write(
                &p,
                file_variant(&text, location, &spec.work.join("CMDlog"))?,
            )
            .map_err(io("writing the script"))?;
            (p.clone(), vec![p.display().to_string()])
        }
        Variant::DeviceConfig {
            sr_type,
            device_config,
        } => {
            let p = spec.work.join(format!("test-script.{sr_type}.sh"));
            std::fs::write(&p, device_config_variant(&text, sr_type, device_config)?)
                .map_err(io("writing the script"))?;
            (p.clone(), vec![p.display().to_string()])
        }
        Variant::Block { device, types } => {
            let p = spec.work.join("test-script.sh");
            std::fs::write(&p, with_device(&text, device)?).map_err(io("writing the script"))?;
            let mut argv = vec![
                spec.run_types.display().to_string(),
                p.display().to_string(),
            ];
            argv.extend(types.iter().cloned());
            (p, argv)
        }
    };
    let mut path = Vec::new();
    if !spec.real_sleep {
        let shims = spec.work.join("shims");
        std::fs::create_dir_all(&shims).map_err(io("creating the shim directory"))?;
        let sleep = shims.join("sleep");
        std::fs::write(&sleep, SLEEP_SHIM).map_err(io("writing the sleep shim"))?;
        std::fs::set_permissions(&sleep, std::fs::Permissions::from_mode(0o755))
            .map_err(io("making the shim executable"))?;
        path.push(shims.display().to_string());
    }
    path.push(spec.bin_dir.display().to_string());
    path.extend(
        [
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ]
        .map(String::from),
    );
    let status_log = spec.work.join("xe-status.log");
    let _ = std::fs::remove_file(&status_log);
    let mut env = BTreeMap::new();
    env.insert("PATH".to_string(), path.join(":"));
    env.insert(
        "XE_STATE_DIR".to_string(),
        spec.state_dir.display().to_string(),
    );
    env.insert(
        "XE_STATUS_LOG".to_string(),
        status_log.display().to_string(),
    );
    env.insert(
        "XE_SERVER".to_string(),
        format!("unix:{}", spec.state_dir.join("xapi.sock").display()),
    );
    if let Some(root) = &spec.sm_root {
        env.insert("SM_ROOT".to_string(), root.display().to_string());
    }
    let mut cmd = Cmd::new("bash")
        .args(argv)
        .timeout(SCRIPT_TIMEOUT)
        .ok_codes(&(0..=255).collect::<Vec<_>>());
    for (k, v) in &env {
        cmd = cmd.env(k.clone(), v.clone());
    }
    let started = Instant::now();
    let out = SystemRunner::new().run(&cmd)?;
    let xe = std::fs::read_to_string(&status_log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(c, a)| (c.parse().unwrap_or(-1), a.to_string()))
        .collect();
    let r = RunResult {
        code: out.code,
        stdout: out.stdout_str(),
        stderr: out.stderr_str(),
        xe,
        elapsed: started.elapsed(),
        ran,
    };
    std::fs::write(
        spec.work.join("script.out"),
        format!("{}\n--- stderr ---\n{}", r.stdout, r.stderr),
    )
    .map_err(io("writing script.out"))?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script() -> String {
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/appendix/test-script.sh"
        ))
        .unwrap()
    }

    #[test]
    fn the_script_is_the_spec_s() {
        let s = script();
        assert!(s.starts_with("#!/bin/bash\n\nDEV='/dev/sdb'\n"));
        assert!(
            s.trim_end()
                .ends_with("SR_TYPE='lvm'\nrun_ops\n\nSR_TYPE='ext'\nrun_ops")
        );
        assert_eq!(s.matches("xe ").count(), 50);
    }

    #[test]
    fn block_variant_changes_only_dev() {
        let s = script();
        let d = with_device(&s, "/dev/loop7").unwrap();
        let diff: Vec<(&str, &str)> = s.lines().zip(d.lines()).filter(|(a, b)| a != b).collect();
        assert_eq!(diff, vec![("DEV='/dev/sdb'", "DEV='/dev/loop7'")]);
    }

    #[test]
    fn file_variant_edits_are_the_documented_ones() {
        let s = script();
        let f = file_variant(&s, Path::new("/srv/sr"), Path::new("/run/x/CMDlog")).unwrap();
        assert!(f.contains("DEV='/srv/sr'"));
        assert_eq!(f.matches("device-config:location=$DEV").count(), 3);
        assert!(!f.contains("device-config-device"));
        assert!(f.contains("rm -f ${SM_ROOT}/var/run/sr-mount/$SR_UUID/$VDI_UUID.vhd"));
        assert!(f.trim_end().ends_with("SR_TYPE='xsmfile'\nrun_ops"));
        assert_eq!(s.lines().count() - 3, f.lines().count());
        assert!(file_variant("echo hi", Path::new("/x"), Path::new("/y")).is_err());
    }

    #[test]
    fn device_config_variant_edits_are_the_documented_ones() {
        let s = script();
        let dc: Vec<(String, String)> = [
            ("target", "10.99.0.1,10.99.0.2"),
            ("targetIQN", "iqn.2026-01.test.lab:t2"),
            ("SCSIid", "36001405abc"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec();
        let v = device_config_variant(&s, "multipathlvmoiscsi", &dc).unwrap();
        let want = "device-config:target=10.99.0.1,10.99.0.2 device-config:targetIQN=iqn.2026-01.test.lab:t2 device-config:SCSIid=36001405abc";
        assert_eq!(v.matches(want).count(), 3);
        assert!(!v.contains("device-config-device"));
        assert!(
            v.trim_end()
                .ends_with("SR_TYPE='multipathlvmoiscsi'\nrun_ops")
        );
        assert_eq!(s.lines().count() - 3, v.lines().count());
        let bad = vec![("chappassword".to_string(), "a b".to_string())];
        assert!(device_config_variant(&s, "x", &bad).is_err());
    }
}
