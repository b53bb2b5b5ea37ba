//! The storage lab, seen from a test running inside it.
//!
//! The lab (docs/lab.md) is Debian's kernel in qemu guests running the real stack: LIO as the
//! array (6 LUNs, 2 portals in 2 ALUA target port groups, persistent reservations), open-iscsi
//! and dm-multipath as host A, and in the two-host topology host B with its own kernel, reached
//! through the lab agent. The lab runner (`xapi-tests/lab/run-suite`) runs every test named
//! `lab_*` (one host) or `lab2_*` (two hosts) inside guest A, with `LAB_JSON` naming the lab's
//! description. Outside the lab [`Lab::from_env`] returns `None` and tests return early.
//!
//! ```no_run
//! use xapi_tests::lab::{AccessState, Lab};
//!
//! #[test]
//! #[ignore = "lab"]
//! fn lab_example() {
//!     let Some(lab) = Lab::from_env() else { return };
//!     let lun = lab.lun(0).unwrap();
//!     lab.array().set_alua_state(1, AccessState::Standby, lun.lun).unwrap();
//!     let b = lab.host_b(); // Err in the one-host topology
//! #   let _ = b;
//! }
//! ```

pub mod agent;
pub mod array;
mod desc;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sm_core::errors::error_chain;
use sm_core::host::run::{Cmd, Output, RunError, Runner, SystemRunner};

pub use agent::{AgentClient, AgentError, AgentReply, AgentRequest};
pub use array::{Array, PrView, Registration, Reservation};
pub use desc::{
    ChapDesc, DESC_VERSION, HostDesc, HostLunDesc, HostsDesc, LabDesc, LunDesc, PathDesc,
    PortalDesc, TargetDesc, Topology,
};
pub use sm_core::scsi::{AccessState, PrType};

/// Environment variable naming the lab description (set by the lab runner in the guest).
pub const LAB_JSON_ENV: &str = "LAB_JSON";

/// Environment variable naming the directory of the workspace's binaries in the lab.
pub const LAB_BIN_DIR_ENV: &str = "LAB_BIN_DIR";

/// Why a lab operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The description file could not be read.
    #[error("cannot read the lab description {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The description file is not a lab description.
    #[error("bad lab description {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The description has a schema version this module does not read.
    #[error("lab description {path} has version {found}, expected {DESC_VERSION}")]
    Version {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
    /// The lab has no such LUN.
    #[error("the lab has no LUN {0}")]
    NoLun(u32),
    /// The lab has no portal for that TPG.
    #[error("the lab has no portal with TPG {0}")]
    NoPortal(u16),
    /// Host B exists only in the two-host topology.
    #[error("this lab has no host B (one-host topology)")]
    NoHostB,
    /// An array helper failed.
    #[error("lab-array {action} failed")]
    Array {
        /// What was asked.
        action: String,
        /// The runner's error.
        #[source]
        source: RunError,
    },
    /// An array helper answered something unexpected.
    #[error("lab-array {action}: unexpected output: {detail}")]
    ArrayOutput {
        /// What was asked.
        action: String,
        /// What was wrong.
        detail: String,
    },
    /// A command on host A failed.
    #[error("command on host A failed")]
    Command(#[source] RunError),
    /// A command on host B failed.
    #[error("command on host B failed")]
    Agent(#[source] AgentError),
}

/// The lab a test runs in: its description, host A's runner, the array helpers, host B.
#[derive(Clone)]
pub struct Lab {
    desc: LabDesc,
    path: PathBuf,
    runner: Arc<dyn Runner>,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("path", &self.path)
            .field("desc", &self.desc)
            .finish()
    }
}

impl Lab {
    /// The lab named by `LAB_JSON`, or `None` outside the lab (the variable is unset): a lab test
    /// then returns early. Host A's commands run through a [`SystemRunner`].
    ///
    /// # Panics
    /// When `LAB_JSON` is set but the description cannot be loaded: inside the lab that is a
    /// broken setup, which must fail the test rather than skip it.
    pub fn from_env() -> Option<Lab> {
        let path = std::env::var_os(LAB_JSON_ENV)?;
        match Lab::load(Path::new(&path)) {
            Ok(lab) => Some(lab),
            Err(e) => panic!("{LAB_JSON_ENV} is set but unusable: {}", error_chain(&e)),
        }
    }

    /// Loads the description at `path`.
    pub fn load(path: &Path) -> Result<Lab, LabError> {
        let text = std::fs::read_to_string(path).map_err(|source| LabError::Read {
            path: path.into(),
            source,
        })?;
        let desc: LabDesc = serde_json::from_str(&text).map_err(|source| LabError::Parse {
            path: path.into(),
            source,
        })?;
        if desc.version != DESC_VERSION {
            return Err(LabError::Version {
                path: path.into(),
                found: desc.version,
            });
        }
        Ok(Lab {
            desc,
            path: path.into(),
            runner: Arc::new(SystemRunner::new()),
        })
    }

    /// The same lab with host A's commands (and the array helpers) run by `runner`.
    pub fn with_runner(mut self, runner: Arc<dyn Runner>) -> Lab {
        self.runner = runner;
        self
    }

    /// The whole description.
    pub fn desc(&self) -> &LabDesc {
        &self.desc
    }

    /// Where the description was read from.
    pub fn desc_path(&self) -> &Path {
        &self.path
    }

    /// One host or two.
    pub fn topology(&self) -> Topology {
        self.desc.topology
    }

    /// The array's target IQN.
    pub fn target_iqn(&self) -> &str {
        &self.desc.target.iqn
    }

    /// The portals (portal N = iSCSI TPG N = ALUA target port group N).
    pub fn portals(&self) -> &[PortalDesc] {
        &self.desc.target.portals
    }

    /// The portal of iSCSI TPG `tpg`.
    pub fn portal(&self, tpg: u16) -> Result<&PortalDesc, LabError> {
        self.desc.portal(tpg).ok_or(LabError::NoPortal(tpg))
    }

    /// Every LUN the setup created.
    pub fn luns(&self) -> &[LunDesc] {
        &self.desc.luns
    }

    /// LUN `lun`.
    pub fn lun(&self, lun: u32) -> Result<&LunDesc, LabError> {
        self.desc.lun(lun).ok_or(LabError::NoLun(lun))
    }

    /// Host A's view of LUN `lun` (its multipath map and paths).
    pub fn host_a_lun(&self, lun: u32) -> Result<&HostLunDesc, LabError> {
        self.lun(lun)?.host_a.as_ref().ok_or(LabError::NoLun(lun))
    }

    /// Host B's view of LUN `lun`.
    pub fn host_b_lun(&self, lun: u32) -> Result<&HostLunDesc, LabError> {
        if self.desc.hosts.b.is_none() {
            return Err(LabError::NoHostB);
        }
        self.lun(lun)?.host_b.as_ref().ok_or(LabError::NoLun(lun))
    }

    /// Host A (this guest).
    pub fn host_a(&self) -> &HostDesc {
        &self.desc.hosts.a
    }

    /// Host B's description, in the two-host topology.
    pub fn host_b_desc(&self) -> Result<&HostDesc, LabError> {
        self.desc.hosts.b.as_ref().ok_or(LabError::NoHostB)
    }

    /// A client of host B's lab agent, in the two-host topology.
    pub fn host_b(&self) -> Result<AgentClient, LabError> {
        let b = self.host_b_desc()?;
        let addr = b.agent.clone().ok_or(LabError::NoHostB)?;
        Ok(AgentClient::new(addr))
    }

    /// The path of workspace binary `name` (`xsm`, `lab-agent`, ...) on every host of the lab.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.desc.bin_dir.join(name)
    }

    /// The array helpers.
    pub fn array(&self) -> Array<'_> {
        Array::new(self.runner.as_ref())
    }

    /// Host A's runner.
    pub fn runner(&self) -> &dyn Runner {
        self.runner.as_ref()
    }

    /// Runs `cmd` on host A; a non-zero exit code (outside the command's success codes) is an error.
    pub fn run(&self, cmd: &Cmd) -> Result<Output, LabError> {
        self.runner.run(cmd).map_err(LabError::Command)
    }
}

/// `sg_raw` writing one 512-byte block of zeros at LBA 8 through raw SCSI path `dev` (WRITE(10)):
/// how tests see whether the array accepts a host's writes (a reservation conflict fails it).
pub fn write_block_argv(dev: &str) -> Vec<String> {
    let cdb = ["2a", "00", "00", "00", "00", "08", "00", "00", "01", "00"];
    ["sg_raw", "-s", "512", "-i", "/dev/zero", dev]
        .into_iter()
        .chain(cdb)
        .map(String::from)
        .collect()
}

/// A second iSCSI session of host A to one portal, through its own iface (so a new ISID: a
/// new I_T nexus the array has never seen); logged out and forgotten on drop.
pub struct ExtraSession<'a> {
    lab: &'a Lab,
    target: String,
    portal: String,
    iface: String,
}

impl<'a> ExtraSession<'a> {
    /// Creates iface `iface` and logs in through it to portal `tpg` of the lab's target.
    pub fn login(lab: &'a Lab, tpg: u16, iface: &str) -> Result<ExtraSession<'a>, LabError> {
        let target = lab.target_iqn().to_string();
        let portal = lab.portal(tpg)?.address.clone();
        let _ = lab.run(&Cmd::new("iscsiadm").args(["-m", "iface", "-I", iface, "-o", "delete"]));
        let s = ExtraSession {
            lab,
            target,
            portal,
            iface: iface.into(),
        };
        lab.run(&Cmd::new("iscsiadm").args(["-m", "iface", "-I", iface, "-o", "new"]))?;
        s.node(&["-o", "new"])?;
        s.node(&["--login"])?;
        Ok(s)
    }

    fn node(&self, what: &[&str]) -> Result<Output, LabError> {
        let mut argv = vec![
            "-m",
            "node",
            "-T",
            self.target.as_str(),
            "-p",
            self.portal.as_str(),
            "-I",
            self.iface.as_str(),
        ];
        argv.extend_from_slice(what);
        self.lab.run(
            &Cmd::new("iscsiadm")
                .args(argv)
                .timeout(std::time::Duration::from_secs(120)),
        )
    }
}

impl Drop for ExtraSession<'_> {
    fn drop(&mut self) {
        let _ = self.node(&["--logout"]);
        let _ = self.node(&["-o", "delete"]);
        let _ = self.lab.run(&Cmd::new("iscsiadm").args([
            "-m",
            "iface",
            "-I",
            self.iface.as_str(),
            "-o",
            "delete",
        ]));
    }
}

/// A `sh -c` script that makes a host let go of the LUN `wwid` of target `iqn` whatever a
/// failed test left behind: processes holding an LV on its map are killed, the LVs' mappings
/// removed, the map flushed, the sessions logged out and the node records deleted. Never fails.
pub fn release_lun_script(wwid: &str, iqn: &str) -> String {
    format!(
        r#"m=$(readlink -f /dev/mapper/{wwid} 2>/dev/null)
if [ -b "$m" ]; then
  d=$(basename "$m")
  for h in /sys/block/"$d"/holders/*; do
    [ -e "$h" ] || continue
    hd=$(basename "$h")
    for f in /proc/[0-9]*/fd/*; do
      [ "$(readlink "$f" 2>/dev/null)" = "/dev/$hd" ] && kill -9 "$(echo "$f" | cut -d/ -f3)" 2>/dev/null
    done
    sleep 0.2
    dmsetup remove --force "$(cat "$h/dm/name")" 2>/dev/null
  done
  multipath -f {wwid} 2>/dev/null
fi
iscsiadm -m node -T {iqn} --logout >/dev/null 2>&1
iscsiadm -m node -T {iqn} -o delete >/dev/null 2>&1
multipath -f {wwid} >/dev/null 2>&1
true
"#
    )
}

/// Polls `cond` every 500 ms until it holds; panics after `secs` naming `what` and the last
/// note `cond` gave. For lab tests.
///
/// # Panics
/// When `cond` does not hold within `secs` seconds.
pub fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> Result<(), String>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let note = match cond() {
            Ok(()) => return,
            Err(note) => note,
        };
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}: {note}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// Runs `argv` on host A (120 s limit) and returns its stdout; panics with the whole error
/// otherwise. For lab tests.
///
/// # Panics
/// When the command fails.
pub fn run_ok(lab: &Lab, argv: &[&str]) -> String {
    let Some((prog, args)) = argv.split_first() else {
        panic!("run_ok: empty argv");
    };
    let cmd = Cmd::new(*prog)
        .args(args)
        .timeout(std::time::Duration::from_secs(120));
    match lab.run(&cmd) {
        Ok(out) => out.stdout_str(),
        Err(e) => panic!("{}: {}", cmd.display(), error_chain(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sm_core::testing::FakeRunner;

    /// A description as the guest's setup writes it (two-host topology, trimmed to one LUN).
    const LAB_JSON: &str = r#"{
 "version": 1, "topology": "two",
 "target": {"iqn": "iqn.2026-01.test.lab:array",
   "portals": [
     {"address": "10.99.0.1:3260", "tpg": 1, "tg_pt_gp": 1, "tg_pt_gp_name": "ao", "alua_state": 0, "enabled": true},
     {"address": "10.99.0.2:3260", "tpg": 2, "tg_pt_gp": 2, "tg_pt_gp_name": "ano", "alua_state": 1, "enabled": true}],
   "chap": {"user": "labuser", "secret": "labsecret123"}, "mutual_chap": null, "pr_dirs": true, "unmap": false},
 "luns": [{"lun": 0, "serial": "5ab0c0de0000", "wwid": "360014055ab0c0de00000000000000000", "size": 268435456,
   "backstore": "fileio_0/lun0", "file": "/var/lib/lab/lun0.img",
   "host_a": {"map": "/dev/mapper/360014055ab0c0de00000000000000000", "dm": "dm-2", "paths": [
     {"dev": "sda", "portal": "10.99.0.1:3260", "tpg": 1, "hctl": "7:0:0:0", "session": 2},
     {"dev": "sdb", "portal": "10.99.0.2:3260", "tpg": 2, "hctl": "6:0:0:0", "session": 1}]},
   "host_b": {"map": "/dev/mapper/360014055ab0c0de00000000000000000", "dm": "dm-0", "paths": [
     {"dev": "sdc", "portal": "10.99.0.1:3260", "tpg": 1, "hctl": "3:0:0:0", "session": 1}]}}],
 "hosts": {"a": {"iqn": "iqn.2026-01.test.lab:host-a", "hostname": "lab-a", "kernel": "6.1.0", "boot_id": "x"},
           "b": {"iqn": "iqn.2026-01.test.lab:host-b", "hostname": "lab-b", "kernel": "6.1.0", "boot_id": "y",
                 "agent": "10.99.0.11:7070"}},
 "spare_iqn": "iqn.2026-01.test.lab:spare", "bin_dir": "/mnt/host/bin", "log_dir": "/mnt/host/out"
}"#;

    fn lab_with(runner: Arc<dyn Runner>) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lab.json");
        std::fs::write(&p, LAB_JSON).unwrap();
        Lab::load(&p).unwrap().with_runner(runner)
    }

    #[test]
    fn reads_the_description() {
        let lab = lab_with(Arc::new(SystemRunner::new()));
        assert_eq!(lab.topology(), Topology::Two);
        assert_eq!(lab.portal(2).unwrap().tg_pt_gp_name, "ano");
        assert!(matches!(lab.portal(3), Err(LabError::NoPortal(3))));
        let a = lab.host_a_lun(0).unwrap();
        assert_eq!(a.path_on(2).unwrap().dev_path(), Path::new("/dev/sdb"));
        assert_eq!(lab.lun(0).unwrap().size, 256 << 20);
        assert!(matches!(lab.lun(7), Err(LabError::NoLun(7))));
        assert_eq!(lab.host_b().unwrap().addr(), "10.99.0.11:7070");
        assert_eq!(lab.bin("xsm"), Path::new("/mnt/host/bin/xsm"));
        let chap = lab.desc().target.chap.as_ref().unwrap();
        assert_eq!(chap.secret().expose(), "labsecret123");
        assert!(!format!("{lab:?}").contains("labsecret123"));
    }

    #[test]
    fn one_host_lab_has_no_host_b() {
        let one = LAB_JSON.replace(r#""topology": "two""#, r#""topology": "one""#);
        let mut desc: LabDesc = serde_json::from_str(&one).unwrap();
        desc.hosts.b = None;
        let lab = Lab {
            desc,
            path: "x".into(),
            runner: Arc::new(SystemRunner::new()),
        };
        assert!(matches!(lab.host_b(), Err(LabError::NoHostB)));
        assert!(matches!(lab.host_b_lun(0), Err(LabError::NoHostB)));
    }

    #[test]
    fn rejects_other_versions_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lab.json");
        std::fs::write(&p, LAB_JSON.replace(r#""version": 1"#, r#""version": 9"#)).unwrap();
        assert!(matches!(
            Lab::load(&p),
            Err(LabError::Version { found: 9, .. })
        ));
        std::fs::write(&p, "{").unwrap();
        assert!(matches!(Lab::load(&p), Err(LabError::Parse { .. })));
        assert!(matches!(
            Lab::load(&dir.path().join("none")),
            Err(LabError::Read { .. })
        ));
    }

    #[test]
    fn array_helpers_call_lab_array() {
        let fake = Arc::new(FakeRunner::new());
        fake.on(&["lab-array", "alua-show", "0"], 0, "0 1 0\n0 2 1\n", "");
        fake.on(&["lab-array", "lun-add", "64"], 0, "6\n", "");
        fake.on(
            &["lab-array", "target-add", "t2"],
            0,
            "360014055ab0c1de00000000000000000\n360014055ab0c1de00010000000000000\n",
            "",
        );
        fake.on(
            &["lab-array", "portal", "up"],
            1,
            "",
            "lab-array: no portal 9",
        );
        let lab = lab_with(fake.clone());
        let array = lab.array();
        array.set_alua_state(1, AccessState::Standby, 3).unwrap();
        assert_eq!(
            array.alua_states(0).unwrap(),
            vec![
                (1, AccessState::ActiveOptimized),
                (2, AccessState::ActiveNonOptimized)
            ]
        );
        array.portal_down(1).unwrap();
        assert_eq!(array.add_lun(64).unwrap(), 6);
        let secret = sm_core::secret::Secret::new("pw12345678901");
        let (iqn, wwids) = array
            .add_target("t2", 2, 64, Some(("u", &secret)), None)
            .unwrap();
        assert_eq!(iqn, "iqn.2026-01.test.lab:t2");
        assert_eq!(wwids[1], "360014055ab0c1de00010000000000000");
        let err = array.portal_up(9).unwrap_err();
        assert!(
            error_chain(&err).contains("no portal 9"),
            "{}",
            error_chain(&err)
        );
        assert_eq!(
            fake.calls(),
            vec![
                vec!["lab-array", "alua", "1", "2", "3"],
                vec!["lab-array", "alua-show", "0"],
                vec!["lab-array", "portal", "down", "1"],
                vec!["lab-array", "lun-add", "64"],
                vec!["lab-array", "target-add", "t2", "2", "64", "--chap", "***"],
                vec!["lab-array", "portal", "up", "9"],
            ]
        );
    }

    #[test]
    #[allow(
        clippy::disallowed_methods,
        reason = "checks the script with the shell itself"
    )]
    fn the_lun_release_script_is_valid_sh_and_names_its_lun() {
        let script = release_lun_script("36001405aa", "iqn.2026-01.test.lab:t1");
        let checked = std::process::Command::new("sh")
            .args(["-n", "-c", &script])
            .output()
            .unwrap();
        assert!(
            checked.status.success(),
            "{}",
            String::from_utf8_lossy(&checked.stderr)
        );
        assert!(script.contains("multipath -f 36001405aa"));
        assert!(script.contains("-T iqn.2026-01.test.lab:t1 --logout"));
        assert!(script.trim_end().ends_with("true"));
    }
}
