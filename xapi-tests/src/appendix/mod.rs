//! The SMAPI spec's appendix test script: running it ([`script`]) against a freshly started
//! emulator, checking the trace against appendix A ([`check`]) and summarising the run
//! ([`report`]). [`run_variant`] does all of it; the main job (`xapi-demo`), the CI stage and
//! the integration tests call it.

pub mod check;
pub mod report;
pub mod script;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sm_core::host::{Cmd, Runner, SystemRunner};

use crate::config::Config;
use crate::server;
pub use script::Variant;

/// Where things are for a run.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The repository (for `install.sh` and `xapi-tests/appendix/`).
    pub repo: PathBuf,
    /// The directory holding `xe`.
    pub bin_dir: PathBuf,
    /// The plugin directory (with `<Name>SR` links installed by install.sh).
    pub plugin_dir: PathBuf,
    /// Keep the script's real `sleep`s.
    pub real_sleep: bool,
}

/// The outcome of one variant.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Per-command verdicts.
    pub verdicts: Vec<check::Verdict>,
    /// The script run.
    pub run: script::RunResult,
    /// The readable summary.
    pub summary: String,
    /// The trace file.
    pub trace: PathBuf,
    /// Every problem found (empty: passed).
    pub problems: Vec<String>,
}

impl Outcome {
    /// Whether the run passed: the script and every `xe` command exited 0, every command in
    /// the trace finished and matches appendix A.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Why a run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The emulator did not start.
    #[error("starting the emulator: {0}")]
    Start(#[from] crate::emulator::StartError),
    /// The script could not be run.
    #[error(transparent)]
    Script(#[from] script::ScriptError),
    /// The trace could not be read.
    #[error(transparent)]
    Trace(#[from] crate::trace::TraceError),
    /// Installing the plugins failed.
    #[error("install.sh: {0}")]
    Install(#[from] sm_core::host::RunError),
    /// Nothing to run (no driver for the variant).
    #[error("{0}")]
    Nothing(String),
}

/// Installs `xsm` and its `<Name>SR` links with the repository's `install.sh` under `dest`
/// (DESTDIR); returns the plugin directory.
pub fn install_plugins(repo: &Path, xsm: &Path, dest: &Path) -> Result<PathBuf, RunError> {
    let cmd = Cmd::new("bash")
        .arg(repo.join("install.sh"))
        .args(["--binary".into(), xsm.display().to_string()])
        .env("DESTDIR", dest.display().to_string())
        .env("PREFIX", "/opt/xensource/sm")
        .env("XAPI_CONF", "/etc/xapi.conf")
        .timeout(Duration::from_secs(600));
    SystemRunner::new().run(&cmd)?;
    Ok(dest.join("opt/xensource/sm"))
}

/// Whether LVM SRs can run here: lvm2 is installed and the kernel has device-mapper (the CI
/// machines' kernels have none; the storage lab runs the `lvm` variant instead).
pub fn lvm_usable() -> bool {
    let dm = std::fs::read_to_string("/proc/misc")
        .is_ok_and(|m| m.lines().any(|l| l.trim_end().ends_with(" device-mapper")));
    dm && SystemRunner::new().resolve("lvm").is_ok()
}

/// Unmounts whatever is still mounted from `device` (a failed run can leave an SR attached) so
/// that the loop device can be detached. Returns the mount points it unmounted.
pub fn release_device(device: &str) -> Vec<String> {
    let runner = SystemRunner::new();
    let found = runner
        .run(
            &Cmd::new("findmnt")
                .args(["-n", "-o", "TARGET", "-S", device])
                .ok_codes(&[0, 1]),
        )
        .map(|o| o.stdout_str())
        .unwrap_or_default();
    let mut done = Vec::new();
    for point in found.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if runner
            .run(
                &Cmd::new("umount")
                    .arg(point)
                    .timeout(Duration::from_secs(60)),
            )
            .is_ok()
        {
            done.push(point.to_string());
        }
    }
    done
}

/// Starts an emulator in `work/state`, runs the script variant with `xe` on PATH, stops the
/// emulator and checks everything.
pub fn run_variant(setup: &Setup, work: &Path, variant: &Variant) -> Result<Outcome, RunError> {
    let state = work.join("state");
    let sm_root = match variant {
        Variant::File { .. } => Some(work.join("root")),
        Variant::Block { .. } | Variant::DeviceConfig { .. } => None,
    };
    let config = Config::two_local_hosts(&state, &setup.plugin_dir, sm_root.as_deref());
    let started = Instant::now();
    let running = server::start(config)?;
    let variant = match variant {
        Variant::Block { device, types } => {
            let have: Vec<String> = running
                .emulator()
                .drivers()
                .into_iter()
                .map(|d| d.sr_type)
                .collect();
            let types: Vec<String> = types.iter().filter(|t| have.contains(t)).cloned().collect();
            if types.is_empty() {
                running.stop();
                return Err(RunError::Nothing(
                    "no driver for any of the SR types asked for".into(),
                ));
            }
            Variant::Block {
                device: device.clone(),
                types,
            }
        }
        v => v.clone(),
    };
    let spec = script::RunSpec {
        work: work.to_path_buf(),
        script: setup.repo.join("xapi-tests/appendix/test-script.sh"),
        run_types: setup.repo.join("xapi-tests/appendix/run-types.sh"),
        bin_dir: setup.bin_dir.clone(),
        state_dir: state.clone(),
        variant: variant.clone(),
        real_sleep: setup.real_sleep,
        sm_root,
    };
    let run = script::run(&spec);
    let trace = running.emulator().trace.path().to_path_buf();
    running.stop();
    let run = run?;
    let events = crate::trace::read(&trace)?;
    let verdicts = check::check(&events);
    let mut problems = Vec::new();
    if run.code != 0 {
        problems.push(format!("the script exited with {}", run.code));
    }
    for (code, args) in run.failed_xe() {
        problems.push(format!("xe {args} exited with {code}"));
    }
    if run.xe.len() != verdicts.len() {
        problems.push(format!(
            "{} xe invocations ran but the trace holds {} commands",
            run.xe.len(),
            verdicts.len()
        ));
    }
    if verdicts.is_empty() {
        problems.push("no xe command ran".into());
    }
    problems.extend(check::first_mismatch(&verdicts));
    let title = match &variant {
        Variant::File { location } => format!("appendix script, file SR at {}", location.display()),
        Variant::Block { device, types } => {
            format!("appendix script, {} SR on {device}", types.join(" + "))
        }
        Variant::DeviceConfig {
            sr_type,
            device_config,
        } => format!(
            "appendix script, {sr_type} SR ({})",
            device_config
                .iter()
                .filter(|(k, _)| !k.contains("password"))
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    };
    let summary = report::summary(
        &title,
        &verdicts,
        started.elapsed().as_millis(),
        &trace.display().to_string(),
    );
    Ok(Outcome {
        verdicts,
        run,
        summary,
        trace,
        problems,
    })
}
