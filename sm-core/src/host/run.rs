//! The one way to run an external tool: argv only (never a shell), a deadline, captured stdout
//! and stderr, secrets masked in every rendering of the command line.
//!
//! Typed wrappers live with their domain (the lvm module, multipath's iscsiadm and multipathd
//! modules, ...) and return parsed structs; drivers never see argv. Tests inject a
//! [`Runner`] that records and replays (`FakeRunner`, feature `test-utils`).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::secret::Secret;

/// Directories tools are resolved in, in order (xapi runs plugins with
/// `PATH=/sbin:/usr/sbin:/bin:/usr/bin`; we never trust `$PATH`).
pub const TOOL_DIRS: &[&str] = &["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// Environment variable naming extra tool directories searched first (tests, odd installs).
pub const TOOL_DIRS_ENV: &str = "SM_TOOL_DIRS";

/// Default deadline for a command that does not set its own.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// How many bytes of stderr are kept in an error.
const STDERR_TAIL: usize = 2048;

/// One argument: plain, or a secret that is passed to the tool but masked everywhere else.
#[derive(Clone)]
enum Arg {
    Plain(OsString),
    Secret(Secret),
}

/// A command to run: a program name, argv, a deadline, optional stdin and environment.
#[derive(Clone)]
pub struct Cmd {
    program: String,
    args: Vec<Arg>,
    timeout: Duration,
    stdin: Option<Vec<u8>>,
    env: Vec<(String, String)>,
    ok_codes: Vec<i32>,
    daemonizes: bool,
    dies_with_caller: bool,
}

impl Cmd {
    /// A command for `program` (a bare tool name resolved in [`TOOL_DIRS`], or an absolute path).
    pub fn new(program: impl Into<String>) -> Cmd {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            stdin: None,
            env: Vec::new(),
            ok_codes: vec![0],
            daemonizes: false,
            dies_with_caller: false,
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, a: impl Into<OsString>) -> Cmd {
        self.args.push(Arg::Plain(a.into()));
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, it: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args
            .extend(it.into_iter().map(|a| Arg::Plain(a.into())));
        self
    }

    /// Appends a secret argument: passed to the tool, shown as `***` in logs and errors.
    pub fn secret_arg(mut self, s: &Secret) -> Cmd {
        self.args.push(Arg::Secret(s.clone()));
        self
    }

    /// Sets the deadline.
    pub fn timeout(mut self, t: Duration) -> Cmd {
        self.timeout = t;
        self
    }

    /// Feeds these bytes on stdin (otherwise stdin is /dev/null).
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Some(data.into());
        self
    }

    /// Sets an environment variable for the child.
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Cmd {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Exit codes other than 0 that count as success (e.g. `blkid` returns 2 for "nothing found").
    pub fn ok_codes(mut self, codes: &[i32]) -> Cmd {
        self.ok_codes = codes.to_vec();
        self
    }

    /// Marks a program that forks a daemon which may keep the inherited stdout/stderr open
    /// (`qemu-nbd --fork`): its output is captured in memory files instead of pipes, so the call
    /// returns when the program itself exits, not when the daemon closes the pipes.
    pub fn daemonizes(mut self) -> Cmd {
        self.daemonizes = true;
        self
    }

    /// Marks a long data mover (`qemu-img convert`) that must not outlive the plugin: if the
    /// plugin is killed, so is it (`PR_SET_PDEATHSIG`), and the next call removes what it was
    /// writing. Not for commands that must finish once started (lvm2 and dmsetup suspend and
    /// resume devices; killed between the two they would leave a VM's disk suspended), nor for
    /// daemonizing ones.
    pub fn dies_with_caller(mut self) -> Cmd {
        self.dies_with_caller = true;
        self
    }

    /// Whether the program forks a daemon (see [`Cmd::daemonizes`]).
    pub fn is_daemonizing(&self) -> bool {
        self.daemonizes
    }

    /// The program name as given.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// The deadline.
    pub fn deadline(&self) -> Duration {
        self.timeout
    }

    /// The stdin bytes, if any.
    pub fn stdin_data(&self) -> Option<&[u8]> {
        self.stdin.as_deref()
    }

    /// The environment overrides.
    pub fn env_vars(&self) -> &[(String, String)] {
        &self.env
    }

    /// Whether `code` is a success code for this command.
    pub fn is_ok_code(&self, code: i32) -> bool {
        self.ok_codes.contains(&code)
    }

    /// argv with secrets masked: what logs, errors and fake runners see.
    pub fn masked_argv(&self) -> Vec<String> {
        std::iter::once(self.program.clone())
            .chain(self.args.iter().map(|a| match a {
                Arg::Plain(s) => s.to_string_lossy().into_owned(),
                Arg::Secret(_) => Secret::MASK.to_string(),
            }))
            .collect()
    }

    /// The masked command line as one string.
    pub fn display(&self) -> String {
        self.masked_argv().join(" ")
    }

    fn real_args(&self) -> Vec<OsString> {
        self.args
            .iter()
            .map(|a| match a {
                Arg::Plain(s) => s.clone(),
                Arg::Secret(s) => OsString::from(s.expose()),
            })
            .collect()
    }
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

/// What a finished command produced.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// Exit code (`128 + signal` when killed by a signal).
    pub code: i32,
    /// Captured stdout.
    pub stdout: Vec<u8>,
    /// Captured stderr.
    pub stderr: Vec<u8>,
    /// Wall time.
    pub elapsed: Duration,
}

impl Output {
    /// stdout as UTF-8 (lossy).
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr as UTF-8 (lossy).
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Why a command did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RunError {
    /// The program does not exist in the tool directories.
    #[error("{program}: not found in {dirs}")]
    NotFound {
        /// The program name.
        program: String,
        /// Where we looked.
        dirs: String,
    },
    /// The program could not be started.
    #[error("cannot start {cmd}: {reason}")]
    Spawn {
        /// Masked command line.
        cmd: String,
        /// The OS error.
        reason: String,
    },
    /// The deadline passed; the process group was killed.
    #[error("{cmd} timed out after {}s", after.as_secs_f32())]
    Timeout {
        /// Masked command line.
        cmd: String,
        /// The deadline.
        after: Duration,
    },
    /// The program exited with a code not in its success list.
    #[error("{cmd} failed with exit code {code}: {stderr}")]
    Failed {
        /// Masked command line.
        cmd: String,
        /// Exit code.
        code: i32,
        /// Tail of stderr (trimmed), or of stdout when stderr was empty.
        stderr: String,
        /// Full stdout, for callers that classify failures by output.
        stdout: String,
    },
}

impl RunError {
    /// The exit code, when the command ran and failed.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            RunError::Failed { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The stderr tail, when the command ran and failed.
    pub fn stderr(&self) -> &str {
        match self {
            RunError::Failed { stderr, .. } => stderr,
            _ => "",
        }
    }
}

/// Runs commands. The production implementation is [`SystemRunner`]; tests use a fake.
pub trait Runner: Send + Sync {
    /// Runs `cmd` to completion or its deadline. A non-success exit code is `RunError::Failed`.
    fn run(&self, cmd: &Cmd) -> Result<Output, RunError>;
}

/// Builds the error for a finished command whose code is not a success code.
pub fn check_output(cmd: &Cmd, out: Output) -> Result<Output, RunError> {
    if cmd.is_ok_code(out.code) {
        return Ok(out);
    }
    let src = if out.stderr.iter().any(|b| !b.is_ascii_whitespace()) {
        &out.stderr
    } else {
        &out.stdout
    };
    let text = String::from_utf8_lossy(src);
    let text = text.trim();
    let tail = match text.len().checked_sub(STDERR_TAIL) {
        Some(start) => {
            let start = (start..text.len())
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(text.len());
            &text[start..]
        }
        None => text,
    };
    Err(RunError::Failed {
        cmd: cmd.display(),
        code: out.code,
        stderr: tail.to_string(),
        stdout: out.stdout_str(),
    })
}

/// Runs real processes.
#[derive(Debug, Clone, Default)]
pub struct SystemRunner {
    extra_dirs: Vec<PathBuf>,
}

impl SystemRunner {
    /// A runner resolving tools in [`TOOL_DIRS_ENV`] (if set) then [`TOOL_DIRS`].
    pub fn new() -> SystemRunner {
        let extra_dirs = std::env::var_os(TOOL_DIRS_ENV)
            .map(|v| std::env::split_paths(&v).collect())
            .unwrap_or_default();
        SystemRunner { extra_dirs }
    }

    /// This runner, searching `dirs` before its other directories.
    pub fn with_dirs_first(mut self, dirs: &[PathBuf]) -> SystemRunner {
        self.extra_dirs.splice(0..0, dirs.iter().cloned());
        self
    }

    /// Finds `program` in the tool directories.
    pub fn resolve(&self, program: &str) -> Result<PathBuf, RunError> {
        if program.contains('/') {
            let p = Path::new(program);
            return if p.is_file() {
                Ok(p.to_path_buf())
            } else {
                Err(RunError::NotFound {
                    program: program.into(),
                    dirs: "(absolute path)".into(),
                })
            };
        }
        let dirs = self
            .extra_dirs
            .iter()
            .map(PathBuf::as_path)
            .chain(TOOL_DIRS.iter().map(Path::new));
        for d in dirs.clone() {
            let p = d.join(program);
            if p.is_file() {
                return Ok(p);
            }
        }
        Err(RunError::NotFound {
            program: program.into(),
            dirs: dirs
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(":"),
        })
    }
}

fn kill_group(child: &Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ =
            nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
    }
}

/// An anonymous in-memory file (memfd) for a daemonizing command's output.
fn memory_file(name: &str) -> std::io::Result<std::fs::File> {
    let fd = nix::sys::memfd::memfd_create(name, nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
    Ok(std::fs::File::from(fd))
}

/// Everything written to a memory file so far (a daemon may still hold it open).
fn read_memory_file(mut f: std::fs::File) -> Vec<u8> {
    use std::io::Seek;
    let mut buf = Vec::new();
    if f.seek(std::io::SeekFrom::Start(0)).is_ok() {
        let _ = f.read_to_end(&mut buf);
    }
    buf
}

fn reader_thread(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

impl Runner for SystemRunner {
    fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
        let path = self.resolve(&cmd.program)?;
        let start = Instant::now();
        #[allow(clippy::disallowed_methods)] // this is the one runner
        let mut command = std::process::Command::new(&path);
        let spawn_err = |e: std::io::Error| RunError::Spawn {
            cmd: cmd.display(),
            reason: e.to_string(),
        };
        let files = if cmd.daemonizes {
            Some((
                memory_file("stdout").map_err(spawn_err)?,
                memory_file("stderr").map_err(spawn_err)?,
            ))
        } else {
            None
        };
        let (out_stdio, err_stdio) = match &files {
            Some((o, e)) => (
                Stdio::from(o.try_clone().map_err(spawn_err)?),
                Stdio::from(e.try_clone().map_err(spawn_err)?),
            ),
            None => (Stdio::piped(), Stdio::piped()),
        };
        command
            .args(cmd.real_args())
            .stdin(if cmd.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(out_stdio)
            .stderr(err_stdio)
            .env("LC_ALL", "C")
            .process_group(0);
        if cmd.dies_with_caller && !cmd.daemonizes {
            super::parent_death::die_with_parent(&mut command);
        }
        for (k, v) in &cmd.env {
            command.env(k, v);
        }
        let mut child = command.spawn().map_err(spawn_err)?;
        drop(command);
        let out_t = child.stdout.take().map(reader_thread);
        let err_t = child.stderr.take().map(reader_thread);
        if let (Some(mut sin), Some(data)) = (child.stdin.take(), cmd.stdin.clone()) {
            std::thread::spawn(move || {
                let _ = sin.write_all(&data);
            });
        }
        let deadline = start + cmd.timeout;
        let mut nap = Duration::from_micros(100);
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) => {}
                Err(e) => {
                    kill_group(&child);
                    let _ = child.wait();
                    return Err(RunError::Spawn {
                        cmd: cmd.display(),
                        reason: e.to_string(),
                    });
                }
            }
            if Instant::now() >= deadline {
                kill_group(&child);
                let _ = child.wait();
                return Err(RunError::Timeout {
                    cmd: cmd.display(),
                    after: cmd.timeout,
                });
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(10));
        };
        let (stdout, stderr) = match files {
            Some((o, e)) => (read_memory_file(o), read_memory_file(e)),
            None => (
                out_t.and_then(|t| t.join().ok()).unwrap_or_default(),
                err_t.and_then(|t| t.join().ok()).unwrap_or_default(),
            ),
        };
        let code = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        let out = Output {
            code,
            stdout,
            stderr,
            elapsed: start.elapsed(),
        };
        tracing::debug!(cmd = %cmd.display(), code, ms = out.elapsed.as_millis() as u64, "command");
        check_output(cmd, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_captures() {
        let r = SystemRunner::new();
        let out = r
            .run(&Cmd::new("sh").args(["-c", "echo out; echo err >&2"]))
            .unwrap();
        assert_eq!(out.stdout_str(), "out\n");
        assert_eq!(out.stderr_str(), "err\n");
        assert_eq!(out.code, 0);
    }

    /// Set for the helper below: where it writes its child's pid.
    const PDEATH_HELPER_ENV: &str = "XSM_TEST_PDEATH_PIDFILE";

    #[test]
    #[ignore = "helper of children_die_with_the_process_that_ran_them"]
    fn pdeath_helper() {
        let Some(f) = std::env::var_os(PDEATH_HELPER_ENV) else {
            return;
        };
        let script = format!("echo $$ > {}; exec sleep 60", Path::new(&f).display());
        let _ = SystemRunner::new().run(&Cmd::new("sh").args(["-c", &script]).dies_with_caller());
    }

    /// Whether `pid` still runs (a zombie waiting for its new parent counts as gone).
    fn runs(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .is_some_and(|zombie| !zombie)
    }

    #[test]
    fn children_die_with_the_process_that_ran_them() {
        let d = tempfile::tempdir().unwrap();
        let pidfile = d.path().join("pid");
        #[allow(clippy::disallowed_methods)]
        let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "host::run::tests::pdeath_helper", "--ignored"])
            .env(PDEATH_HELPER_ENV, &pidfile)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let child: i32 = loop {
            if let Some(p) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|t| t.trim().parse().ok())
            {
                break p;
            }
            assert!(Instant::now() < deadline, "the helper never ran its child");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(runs(child));
        helper.kill().unwrap();
        helper.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while runs(child) {
            assert!(
                Instant::now() < deadline,
                "sleep {child} outlived the killed process that ran it"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn dirs_given_first_win_over_the_system_ones() {
        let d = tempfile::tempdir().unwrap();
        let own = d.path().join("sh");
        std::fs::write(&own, "#!/bin/sh\n").unwrap();
        let r = SystemRunner::new().with_dirs_first(&[d.path().to_path_buf()]);
        assert_eq!(r.resolve("sh").unwrap(), own);
        assert_ne!(SystemRunner::new().resolve("sh").unwrap(), own);
    }

    #[test]
    fn failure_carries_code_and_stderr_and_masks_secrets() {
        let r = SystemRunner::new();
        let s = Secret::new("hunter2");
        let err = r
            .run(
                &Cmd::new("sh")
                    .args(["-c", "echo bad thing >&2; exit 3", "x"])
                    .secret_arg(&s),
            )
            .unwrap_err();
        match &err {
            RunError::Failed {
                code, stderr, cmd, ..
            } => {
                assert_eq!(*code, 3);
                assert_eq!(stderr, "bad thing");
                assert!(cmd.ends_with("x ***"), "{cmd}");
                assert!(!err.to_string().contains("hunter2"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn timeout_kills_the_process_group() {
        let r = SystemRunner::new();
        let t0 = Instant::now();
        let err = r
            .run(
                &Cmd::new("sh")
                    .args(["-c", "sleep 30 & sleep 30"])
                    .timeout(Duration::from_millis(200)),
            )
            .unwrap_err();
        assert!(matches!(err, RunError::Timeout { .. }), "{err:?}");
        assert!(t0.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn never_uses_a_shell_for_arguments() {
        let r = SystemRunner::new();
        let out = r.run(&Cmd::new("echo").arg("$(id); `id` | ;")).unwrap();
        assert_eq!(out.stdout_str(), "$(id); `id` | ;\n");
    }

    #[test]
    fn missing_tool_is_not_found() {
        let r = SystemRunner::new();
        assert!(matches!(
            r.run(&Cmd::new("no-such-tool-xyz")),
            Err(RunError::NotFound { .. })
        ));
    }

    #[test]
    fn daemonizing_command_returns_when_the_parent_exits() {
        let r = SystemRunner::new();
        let t0 = Instant::now();
        let out = r
            .run(
                &Cmd::new("sh")
                    .args(["-c", "echo started; echo note >&2; (sleep 5 &) ; exit 0"])
                    .daemonizes(),
            )
            .unwrap();
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "waited for the daemon: {:?}",
            t0.elapsed()
        );
        assert_eq!(out.stdout_str(), "started\n");
        assert_eq!(out.stderr_str(), "note\n");
        let err = r
            .run(
                &Cmd::new("sh")
                    .args(["-c", "echo cannot bind >&2; exit 1"])
                    .daemonizes(),
            )
            .unwrap_err();
        assert_eq!(err.stderr(), "cannot bind");
    }

    #[test]
    fn stdin_and_ok_codes() {
        let r = SystemRunner::new();
        let out = r
            .run(
                &Cmd::new("sh")
                    .args(["-c", "cat; exit 2"])
                    .stdin("abc")
                    .ok_codes(&[0, 2]),
            )
            .unwrap();
        assert_eq!(out.stdout_str(), "abc");
        assert_eq!(out.code, 2);
    }
}
