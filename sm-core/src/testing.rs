//! Test doubles shared with other crates (feature `test-utils`): a runner that records argv and
//! replays scripted outputs, and a LIO-like SCSI logical unit ([`FakeLu`], [`FakeScsi`]; see
//! [`crate::scsi::fake`]).

use std::collections::VecDeque;
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
