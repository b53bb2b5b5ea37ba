//! Shared by the emulator's integration tests: a pool with the real plugin binary installed by
//! install.sh, the emulator running in-process, and the real `xe` binary talking to it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sm_core::host::{Cmd, Runner, SystemRunner};
use sm_core::secret::Secret;
use sm_core::xenapi::{Endpoint, XenApi};
use xapi_tests::config::Config;
use xapi_tests::emulator::{Emulator, OpCtx};
use xapi_tests::server::{self, Running};
use xapi_tests::trace::{self, Event, SmapiCall};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The directory of this package's binaries (`xe`).
pub fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_xe"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The real plugin binary: `$XSM_BIN`, else `xsm` next to `xe` (built by
/// `cargo build -p xsm`, which the CI's build step does).
pub fn xsm() -> PathBuf {
    if let Some(p) = std::env::var_os("XSM_BIN") {
        return p.into();
    }
    let p = bin_dir().join("xsm");
    assert!(
        p.is_file(),
        "the plugin binary {} is missing: run `cargo build -p xsm` first (or set XSM_BIN)",
        p.display()
    );
    p
}

/// Installs the real plugins with install.sh into `dir`; returns the plugin directory.
pub fn install(dir: &Path) -> PathBuf {
    xapi_tests::appendix::install_plugins(&repo(), &xsm(), &dir.join("dest")).unwrap()
}

/// Writes an executable script.
pub fn script(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A running two-host pool.
pub struct Pool {
    pub dir: tempfile::TempDir,
    pub running: Option<Running>,
    pub plugin_dir: PathBuf,
}

impl Pool {
    /// A pool whose plugins come from `plugin_dir`; `tweak` may change the configuration.
    pub fn start_with(
        dir: tempfile::TempDir,
        plugin_dir: PathBuf,
        tweak: impl FnOnce(&mut Config),
    ) -> Pool {
        let mut cfg = Config::two_local_hosts(
            &dir.path().join("state"),
            &plugin_dir,
            Some(&dir.path().join("root")),
        );
        cfg.plugin_timeout_secs = 300;
        tweak(&mut cfg);
        let running = server::start(cfg).unwrap();
        Pool {
            dir,
            running: Some(running),
            plugin_dir,
        }
    }

    /// A pool with the real plugins installed by install.sh.
    pub fn real() -> Pool {
        let dir = tempfile::tempdir().unwrap();
        let plugins = install(dir.path());
        Pool::start_with(dir, plugins, |_| {})
    }

    pub fn emu(&self) -> &Arc<Emulator> {
        self.running.as_ref().unwrap().emulator()
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Runs the real `xe` binary: (exit status, stdout, stderr).
    pub fn xe(&self, args: &[&str]) -> (i32, String, String) {
        let cmd = Cmd::new(env!("CARGO_BIN_EXE_xe"))
            .args(args.iter().map(|s| s.to_string()))
            .env(
                "XE_SERVER",
                format!("unix:{}", self.state().join("xapi.sock").display()),
            )
            .timeout(Duration::from_secs(600))
            .ok_codes(&(0..=255).collect::<Vec<_>>());
        let out = SystemRunner::new().run(&cmd).unwrap();
        (out.code, out.stdout_str(), out.stderr_str())
    }

    /// `xe` that must succeed; returns stdout trimmed.
    pub fn xe_ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.xe(args);
        assert_eq!(code, 0, "xe {} failed: {err}", args.join(" "));
        out.trim().to_string()
    }

    /// A directory for a file SR.
    pub fn sr_dir(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// A file SR (shared or not); returns its uuid.
    pub fn file_sr(&self, name: &str, shared: bool) -> String {
        let loc = format!("device-config:location={}", self.sr_dir(name).display());
        let shared = format!("shared={shared}");
        self.xe_ok(&["sr-create", "type=xsmfile", "name-label=S", &loc, &shared])
    }

    /// Makes `sr` the pool's default SR.
    pub fn set_default_sr(&self, sr: &str) {
        let pool = self.xe_ok(&["pool-list", "--minimal"]);
        self.xe_ok(&[
            "pool-param-set",
            &format!("uuid={pool}"),
            &format!("default-SR={sr}"),
        ]);
    }

    /// Every trace event so far.
    pub fn events(&self) -> Vec<Event> {
        trace::read(self.emu().trace.path()).unwrap()
    }

    /// The SMAPI calls of the last `xe` command.
    pub fn last_calls(&self) -> Vec<SmapiCall> {
        let evs = self.events();
        let last = evs
            .iter()
            .filter_map(|e| {
                if let Event::XeBegin { id, .. } = e {
                    Some(*id)
                } else {
                    None
                }
            })
            .max();
        evs.into_iter()
            .filter_map(|e| {
                if let Event::Smapi(c) = e {
                    Some(*c)
                } else {
                    None
                }
            })
            .filter(|c| c.xe.is_some() && c.xe == last)
            .collect()
    }

    /// `command(vdi or sr short id)@host` of the last command's calls.
    pub fn last_seq(&self) -> Vec<String> {
        self.last_calls()
            .iter()
            .map(|c| format!("{}@{}", c.command, c.host_name))
            .collect()
    }

    /// A XenAPI client logged in as an ordinary user.
    pub fn xenapi(&self) -> XenApi {
        let x = XenApi::new(
            Endpoint::Unix(self.state().join("xapi.sock")),
            Secret::new(""),
            None,
        );
        let s = x
            .call_raw("session.login_with_password", &["root".into(), "".into()])
            .unwrap()
            .to_text();
        XenApi::new(
            Endpoint::Unix(self.state().join("xapi.sock")),
            Secret::new(s),
            None,
        )
    }

    /// An operation context for driving the emulator directly.
    pub fn ctx(&self) -> OpCtx {
        OpCtx {
            op: "test".into(),
            ..OpCtx::default()
        }
    }

    /// The ref of a record by uuid.
    pub fn r(&self, class: &str, uuid: &str) -> String {
        self.emu().read(|db| db.by_uuid(class, uuid)).unwrap()
    }

    /// The host names in pool order (master first).
    pub fn host_names(&self) -> Vec<String> {
        self.emu().hosts().iter().map(|h| h.name.clone()).collect()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop();
        }
    }
}

/// A fake plugin `<dir>/<Name>SR` (shell): answers sr_get_driver_info with `caps`, logs every
/// methodCall to `<dir>/calls.log`, and answers command `c` from `<dir>/fake.c.out` (stdout),
/// `.err` (stderr) and `.code` (exit status) when present, else with nil.
pub fn fake_plugin(dir: &Path, name: &str, caps: &[&str]) {
    let mut info = sm_core::xmlrpc::Struct::new();
    for k in [
        "name",
        "description",
        "vendor",
        "copyright",
        "driver_version",
        "required_api_version",
    ] {
        info.insert(k.into(), sm_core::xmlrpc::Value::Str(format!("fake {k}")));
    }
    info.insert(
        "capabilities".into(),
        sm_core::xmlrpc::Value::Array(
            caps.iter()
                .map(|c| sm_core::xmlrpc::Value::Str(c.to_string()))
                .collect(),
        ),
    );
    info.insert(
        "configuration".into(),
        sm_core::xmlrpc::Value::Array(vec![]),
    );
    std::fs::write(
        dir.join("fake.sr_get_driver_info.out"),
        sm_core::xmlrpc::write_response(&sm_core::xmlrpc::Value::Struct(info)),
    )
    .unwrap();
    script(
        &dir.join(name),
        r#"#!/bin/sh
d=$(dirname "$0")
printf '%s\n----\n' "$1" >> "$d/calls.log"
cmd=$(printf '%s' "$1" | sed -n 's:.*<methodName>\([a-z_]*\)</methodName>.*:\1:p')
if [ -f "$d/fake.$cmd.out" ]; then cat "$d/fake.$cmd.out"; else printf "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><nil/></value>\n</param>\n</params>\n</methodResponse>\n"; fi
[ -f "$d/fake.$cmd.err" ] && cat "$d/fake.$cmd.err" >&2
[ -f "$d/fake.$cmd.code" ] && exit "$(cat "$d/fake.$cmd.code")"
exit 0
"#,
    );
}

/// Makes the fake plugin answer `command` with a fault, extra stderr and an exit status.
pub fn fake_reply(dir: &Path, command: &str, stdout: &str, stderr: &str, code: i32) {
    std::fs::write(dir.join(format!("fake.{command}.out")), stdout).unwrap();
    std::fs::write(dir.join(format!("fake.{command}.err")), stderr).unwrap();
    std::fs::write(dir.join(format!("fake.{command}.code")), code.to_string()).unwrap();
}

/// The methodCalls the fake plugin received (parsed).
pub fn fake_calls(dir: &Path) -> Vec<sm_core::Request> {
    std::fs::read_to_string(dir.join("calls.log"))
        .unwrap_or_default()
        .split("\n----\n")
        .filter(|s| !s.trim().is_empty())
        .map(|x| sm_core::Request::parse(x).unwrap())
        .collect()
}

/// A wrapper plugin `<dir>/<Name>SR` behaving as the real `XSMFileSR` but declaring its
/// capabilities without those matching `drop` (a sed regex), as a driver lacking them would.
/// When VDI_ACTIVATE is dropped, the wrapper opens the datapath in vdi_attach (real attach then
/// real activate, with the same arguments) and closes it in vdi_detach, which is what such a driver does (sm's blktap2
/// attaches and activates together for drivers without ATOMIC_PAUSE).
pub fn file_without(dir: &Path, name: &str, drop: &str) {
    let xsm = xsm();
    let no_activate = drop.split('|').any(|d| d == "VDI_ACTIVATE");
    let datapath = if no_activate {
        r#"*"<methodName>vdi_attach</methodName>"*)
    out=$(bash -c 'exec -a "$0" "$@"' XSMFileSR {xsm} "$1")
    case "$out" in *"<fault>"*) printf '%s\n' "$out"; exit 0 ;; esac
    act=$(printf '%s' "$1" | sed -e 's/vdi_attach/vdi_activate/g')
    res=$(bash -c 'exec -a "$0" "$@"' XSMFileSR {xsm} "$act")
    case "$res" in *"<fault>"*) printf '%s\n' "$res"; exit 0 ;; esac
    printf '%s\n' "$out" ;;
*"<methodName>vdi_detach</methodName>"*)
    deact=$(printf '%s' "$1" | sed -e 's/vdi_detach/vdi_deactivate/g')
    res=$(bash -c 'exec -a "$0" "$@"' XSMFileSR {xsm} "$deact")
    case "$res" in *"<fault>"*) printf '%s\n' "$res"; exit 0 ;; esac
    exec -a XSMFileSR {xsm} "$@" ;;
"#
    } else {
        ""
    };
    let datapath = datapath.replace("{xsm}", &xsm.display().to_string());
    script(
        &dir.join(name),
        &format!(
            r#"#!/bin/bash
case "$1" in
*"<methodName>sr_get_driver_info</methodName>"*)
    out=$(bash -c 'exec -a "$0" "$@"' XSMFileSR {xsm} "$1")
    printf '%s\n' "$out" | sed -E '/>({drop})</d' ;;
{datapath}*) exec -a XSMFileSR {xsm} "$@" ;;
esac
"#,
            xsm = xsm.display()
        ),
    );
}

/// A request's device_config, for assertions.
pub fn dc(r: &sm_core::Request) -> BTreeMap<String, String> {
    r.device_config.as_map().clone()
}
