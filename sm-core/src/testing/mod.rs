//! Test doubles shared with other crates (feature `test-utils`): a runner that records argv and
//! replays scripted outputs, and a LIO-like SCSI logical unit ([`FakeLu`], [`FakeScsi`]; see
//! [`crate::scsi::fake`]), and a minimal NBD reader ([`nbd::NbdReader`]) for lab tests.

pub mod nbd;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Mutex;

use crate::host::run::{Cmd, Output, RunError, Runner, check_output};

pub use crate::scsi::fake::{
    FakeLu, FakeScsi, Fault, GroupConfig, Logged, LuConfig, Nexus, PortConfig, Registration, Reply,
};

/// One scripted reply: matched by argv prefix, answered with an exit code and output.
#[derive(Debug, Clone)]
pub struct Scripted {
    /// The masked argv must start with these words.
    pub prefix: Vec<String>,
    /// Exit code.
    pub code: i32,
    /// stdout.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
}

/// Records every command and answers from a script (first matching entry, consumed), or with
/// success and empty output when nothing matches.
#[derive(Debug, Default)]
pub struct FakeRunner {
    script: Mutex<VecDeque<Scripted>>,
    missing: Mutex<Vec<String>>,
    calls: Mutex<Vec<Vec<String>>>,
    envs: Mutex<Vec<Vec<(String, String)>>>,
}

impl FakeRunner {
    /// An empty fake.
    pub fn new() -> FakeRunner {
        FakeRunner::default()
    }

    /// Adds a scripted reply for commands starting with `prefix`.
    pub fn on(&self, prefix: &[&str], code: i32, stdout: &str, stderr: &str) -> &FakeRunner {
        self.script
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(Scripted {
                prefix: prefix.iter().map(|s| s.to_string()).collect(),
                code,
                stdout: stdout.into(),
                stderr: stderr.into(),
            });
        self
    }

    /// Makes `program` not installed: running it fails as the system runner fails on a tool
    /// it cannot find (recorded like every other call).
    pub fn without(&self, program: &str) -> &FakeRunner {
        self.missing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(program.to_string());
        self
    }

    /// Every masked argv run so far.
    pub fn calls(&self) -> Vec<Vec<String>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The environment overrides of every command run so far, in the order of [`Self::calls`].
    pub fn envs(&self) -> Vec<Vec<(String, String)>> {
        self.envs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Runner for FakeRunner {
    fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
        let argv = cmd.masked_argv();
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(argv.clone());
        self.envs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(cmd.env_vars().to_vec());
        let program = cmd.program().to_string();
        if self
            .missing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&program)
        {
            return Err(RunError::NotFound {
                program,
                dirs: "(test: not installed)".into(),
            });
        }
        let mut script = self.script.lock().unwrap_or_else(|p| p.into_inner());
        let hit = script
            .iter()
            .position(|s| argv.len() >= s.prefix.len() && argv[..s.prefix.len()] == s.prefix[..]);
        let out = match hit.and_then(|i| script.remove(i)) {
            Some(s) => Output {
                code: s.code,
                stdout: s.stdout.into_bytes(),
                stderr: s.stderr.into_bytes(),
                ..Default::default()
            },
            None => Output::default(),
        };
        check_output(cmd, out)
    }
}

/// Unescapes a captured file's content (`\n` is a newline, `\x` is `x`).
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('n') => out.push('\n'),
                Some(o) => out.push(o),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Builds the sysfs tree `text` (the capture format: `D path`, `L path<TAB>target`,
/// `F path<TAB>content`, `X path<TAB>hex bytes`) under `root`. Relative links stay inside the
/// root; their targets are created as directories.
pub fn materialize_sysfs(text: &str, root: &Path) -> std::io::Result<()> {
    let under = |p: &str| root.join(p.trim_start_matches('/'));
    for line in text.lines() {
        let (kind, rest) = line.split_at(line.find(' ').unwrap_or(line.len()));
        let rest = rest.trim_start_matches(' ');
        let (path, value) = match rest.split_once('\t') {
            Some((p, v)) => (p, v),
            None => (rest, ""),
        };
        let target = under(path);
        match kind {
            "D" => std::fs::create_dir_all(&target)?,
            "L" => {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                if target.symlink_metadata().is_err() {
                    std::os::unix::fs::symlink(value, &target)?;
                }
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent.join(value))?;
                }
            }
            "F" | "X" => {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let bytes = if kind == "X" {
                    value
                        .split_whitespace()
                        .filter_map(|h| u8::from_str_radix(h, 16).ok())
                        .collect()
                } else {
                    let mut v = unescape(value).into_bytes();
                    v.push(b'\n');
                    v
                };
                std::fs::write(&target, bytes)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// A sysfs tree in the capture format: `devs` are `(name, devno, parent disk)`, `slaves` are
/// `(holder, slave)`, laid out as the kernel does (`/sys/block/<disk>/<partition>`,
/// `/sys/dev/block/M:m` links, `slaves/` and `holders/` links both ways).
pub fn block_tree(devs: &[(&str, (u64, u64), Option<&str>)], slaves: &[(&str, &str)]) -> String {
    let dir_of: std::collections::BTreeMap<&str, String> = devs
        .iter()
        .map(|(n, _, p)| {
            let d = match p {
                Some(p) => format!("block/{p}/{n}"),
                None => format!("block/{n}"),
            };
            (*n, d)
        })
        .collect();
    let up = |from: &str| "../".repeat(from.split('/').count());
    let mut t = String::new();
    for (name, no, parent) in devs {
        let d = &dir_of[name];
        t += &format!("D /sys/{d}/slaves\nD /sys/{d}/holders\n");
        t += &format!("F /sys/{d}/dev\t{}:{}\n", no.0, no.1);
        if parent.is_some() {
            t += &format!("F /sys/{d}/partition\t1\n");
        }
        t += &format!("L /sys/dev/block/{}:{}\t../../{d}\n", no.0, no.1);
    }
    for (holder, slave) in slaves {
        let (h, s) = (&dir_of[holder], &dir_of[slave]);
        t += &format!(
            "L /sys/{h}/slaves/{slave}\t{}{s}\n",
            up(&format!("{h}/slaves"))
        );
        t += &format!(
            "L /sys/{s}/holders/{holder}\t{}{h}\n",
            up(&format!("{s}/holders"))
        );
    }
    t
}

/// Runs `argv` with the system runner (2 minutes at most) and returns its stdout; panics with
/// the command's error otherwise. For tests that set the host up as an admin would.
pub fn run_ok(argv: &[&str]) -> String {
    use crate::host::SystemRunner;
    SystemRunner::new()
        .run(
            &Cmd::new(argv[0])
                .args(&argv[1..])
                .timeout(std::time::Duration::from_secs(120)),
        )
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
        .stdout_str()
}

/// The processes (other than this one) whose command line mentions `needle`, as
/// `"<pid>: <command line>"`: what a killed call may have left running.
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().into_owned();
            if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
                return None;
            }
            let raw = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
            cmd.contains(needle).then(|| format!("{pid}: {cmd}"))
        })
        .collect()
}
