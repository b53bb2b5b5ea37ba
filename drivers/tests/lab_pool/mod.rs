//! The lab's two hosts as one emulated pool, for lab2 tests of shared SR types: xapi (the
//! emulator) runs in guest A, host A's plugins run here and host B's through the lab agent, each
//! on its own kernel, iSCSI sessions and multipathd. One plugin link per host, one SMlog each.
#![allow(dead_code, reason = "each lab2 test file uses a part of the pool")]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use sm_core::host::run::Cmd;
use sm_core::xmlrpc::Value;
use xapi_tests::config::{Config, Exec};
use xapi_tests::db::{Db, RecordExt};
use xapi_tests::emulator::{Emulator, OpCtx};
use xapi_tests::error::ApiResult;
use xapi_tests::lab::{AgentRequest, Lab};
use xapi_tests::server::Running;
use xapi_tests::smexec::SmCall;
use xapi_tests::storage::datapath::DpState;

/// The emulated pool of host A (master) and host B, with `plugin` installed on both.
pub struct TwoHosts<'l> {
    /// The lab.
    pub lab: &'l Lab,
    _dir: tempfile::TempDir,
    running: Option<Running>,
    xe_server: String,
    /// Host A's SMlog.
    pub smlog_a: PathBuf,
    /// Host B's SMlog, as host B names it.
    pub smlog_b: String,
    plugin: String,
    b_plugins: String,
    session: String,
}

/// Prints one line of a test's findings (the run's log keeps it).
pub fn out(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// A read-write datapath, activated (`true`) or only attached.
pub fn rw(active: bool) -> Option<DpState> {
    Some(if active {
        DpState::Activated { rw: true }
    } else {
        DpState::Attached { rw: true }
    })
}

/// device_config `target`: the address of every portal of the lab's array, comma-separated.
pub fn portal_addresses(lab: &Lab) -> String {
    lab.portals()
        .iter()
        .map(|p| p.address.split(':').next().unwrap().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Starts the emulator with hosts A and B, `plugin` (`ReservedLUNSR`) linked to the lab's
/// `xsm` on both, each logging to `SMlog.<log>` in the run's log directory.
pub fn start<'l>(lab: &'l Lab, plugin: &str, log: &str) -> TwoHosts<'l> {
    let dir = tempfile::tempdir().unwrap();
    let xsm = lab.bin("xsm").display().to_string();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::os::unix::fs::symlink(&xsm, plugins.join(plugin)).unwrap();
    let log_dir = lab.desc().log_dir.display().to_string();
    let smlog_b = format!("{log_dir}/b/SMlog.{log}");
    let b_plugins = format!("/tmp/xsm-{log}-plugins");
    lab.host_b()
        .unwrap()
        .check(&AgentRequest::new([
            "sh",
            "-c",
            &format!("mkdir -p {b_plugins} {log_dir}/b && ln -sfn {xsm} {b_plugins}/{plugin}"),
        ]))
        .unwrap();
    let port = std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let a_addr = lab
        .portal(1)
        .unwrap()
        .address
        .split(':')
        .next()
        .unwrap()
        .to_string();
    let smlog_a = PathBuf::from(format!("{log_dir}/a/SMlog.{log}"));
    let mut cfg = Config::two_local_hosts(&dir.path().join("emu"), &plugins, None);
    cfg.tcp_listen = format!("0.0.0.0:{port}");
    cfg.plugin_timeout_secs = 300;
    let a = &mut cfg.hosts[0];
    a.iscsi_iqn = lab.host_a().iqn.clone();
    a.env
        .insert("SMLOG_FILE".into(), smlog_a.display().to_string());
    let bdesc = lab.host_b_desc().unwrap();
    let b = &mut cfg.hosts[1];
    b.name = bdesc.hostname.clone();
    b.hostname = bdesc.hostname.clone();
    b.iscsi_iqn = bdesc.iqn.clone();
    let agent = bdesc.agent.clone().unwrap();
    b.address = agent.split(':').next().unwrap().to_string();
    b.exec = Exec::Agent { addr: agent };
    b.plugin_dir = b_plugins.clone();
    b.env = BTreeMap::from([("SMLOG_FILE".to_string(), smlog_b.clone())]);
    b.xapi_endpoint = Some(format!("tcp:{a_addr}:{port}"));
    let running = xapi_tests::server::start(cfg).unwrap();
    let xe_server = format!("unix:{}", running.socket().display());
    let session = running.emulator().login("root", BTreeMap::new());
    TwoHosts {
        lab,
        _dir: dir,
        running: Some(running),
        xe_server,
        smlog_a,
        smlog_b,
        plugin: plugin.to_string(),
        b_plugins,
        session,
    }
}

impl TwoHosts<'_> {
    /// The emulator.
    ///
    /// # Panics
    /// After [`TwoHosts::stop_xapi`].
    pub fn emu(&self) -> &Emulator {
        self.running.as_ref().expect("xapi is running").emulator()
    }

    /// Stops the emulator: from now on no host can reach xapi.
    pub fn stop_xapi(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop();
        }
    }

    /// `VDI.generate_config` for host `host_ref`: the XML-RPC call xapi would store.
    pub fn generate_config(&self, host_ref: &str, vdi_ref: &str) -> String {
        let ctx = self.ctx();
        let r = xapi_tests::storage::vdi::generate_config(self.emu(), &ctx, host_ref, vdi_ref);
        self.emu().end_op(&ctx);
        r.unwrap_or_else(|e| panic!("VDI.generate_config: {:?}", e.description()))
    }

    /// Runs `plugin` on host B with the method call `xml` and no reachable xapi: the result
    /// it printed (as text), or a panic with its output.
    pub fn plugin_on_b_without_xapi(&self, xml: &str) -> String {
        let r = self
            .lab
            .host_b()
            .unwrap()
            .run(
                &AgentRequest::new([
                    format!("{}/{}", self.b_plugins, self.plugin),
                    xml.to_string(),
                ])
                .env("SM_XAPI", "unix:/nonexistent/xapi")
                .env("SMLOG_FILE", &self.smlog_b)
                .timeout(Duration::from_secs(300)),
            )
            .unwrap();
        match sm_core::xmlrpc::parse_method_response(&r.stdout) {
            Ok(sm_core::xmlrpc::MethodResponse::Success(v)) => format!("{v:?}"),
            other => panic!("{other:?}: {r:?}"),
        }
    }

    /// Runs our `xe` against the emulator: exit code, stdout, stderr.
    pub fn xe(&self, args: &[&str]) -> (i32, String, String) {
        let cmd = Cmd::new(self.lab.bin("xe").display().to_string())
            .args(args.iter().map(|s| s.to_string()))
            .env("XE_SERVER", &self.xe_server)
            .timeout(Duration::from_secs(600))
            .ok_codes(&(0..=255).collect::<Vec<_>>());
        let o = self.lab.run(&cmd).unwrap();
        (o.code, o.stdout_str(), o.stderr_str())
    }

    /// `xe`, which must succeed: its stdout, trimmed.
    pub fn xe_ok(&self, args: &[&str]) -> String {
        let (code, o, e) = self.xe(args);
        assert_eq!(
            code,
            0,
            "xe {}: {o}{e}\n{}",
            args.join(" "),
            self.smlog_tail()
        );
        o.trim().to_string()
    }

    /// The last 40 lines of both hosts' SMlogs, for assertion messages.
    pub fn smlog_tail(&self) -> String {
        let a = std::fs::read_to_string(&self.smlog_a).unwrap_or_default();
        let b = self
            .lab
            .host_b()
            .ok()
            .and_then(|b| {
                b.run(&AgentRequest::new(["tail", "-n", "40", &self.smlog_b]))
                    .ok()
            })
            .map(|r| r.stdout)
            .unwrap_or_default();
        let lines: Vec<&str> = a.lines().collect();
        format!(
            "host A SMlog (end):\n{}\nhost B SMlog (end):\n{b}",
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }

    /// Host `i`'s ref, uuid and name label.
    pub fn host(&self, i: usize) -> (String, String, String) {
        let h = &self.emu().hosts()[i];
        (h.r.clone(), h.uuid.clone(), h.name.clone())
    }

    /// A context for emulator operations, in the test's session.
    pub fn ctx(&self) -> OpCtx {
        self.emu().begin_op("lab-test", None, &self.session)
    }

    /// Sets datapath `dp` of `vdi` on host `i` as xapi's VBD operations do: the plugin calls
    /// (vdi_attach, vdi_activate, vdi_deactivate, vdi_detach) run on that host.
    pub fn dp(
        &self,
        i: usize,
        vdi: &str,
        dp: &str,
        state: Option<DpState>,
    ) -> Result<(), Vec<String>> {
        let ctx = self.ctx();
        let r = self
            .emu()
            .datapaths
            .set(self.emu(), &ctx, &self.host(i).0, vdi, dp, state)
            .map_err(|e| e.description());
        self.emu().end_op(&ctx);
        r
    }

    /// The ref of the VDI `uuid`.
    pub fn vdi_ref(&self, uuid: &str) -> String {
        self.emu().read(|db| db.by_uuid("VDI", uuid)).unwrap()
    }

    /// A VDI's `location`.
    pub fn location_of(&self, vdi_ref: &str) -> String {
        self.emu()
            .read(|db| Ok(db.get("VDI", vdi_ref)?.s("location")))
            .unwrap()
    }

    /// The last plugin call `command` in the emulator's trace.
    pub fn last_call(&self, command: &str) -> xapi_tests::trace::SmapiCall {
        xapi_tests::trace::read(self.emu().trace.path())
            .unwrap()
            .into_iter()
            .rev()
            .find_map(|e| match e {
                xapi_tests::trace::Event::Smapi(c) if c.command == command => Some(*c),
                _ => None,
            })
            .unwrap()
    }

    /// Every plugin call `command` that ran on host `i`, in order.
    pub fn calls_on(&self, i: usize, command: &str) -> Vec<xapi_tests::trace::SmapiCall> {
        let host = self.host(i).2;
        xapi_tests::trace::read(self.emu().trace.path())
            .unwrap()
            .into_iter()
            .filter_map(|e| match e {
                xapi_tests::trace::Event::Smapi(c)
                    if c.command == command && c.host_name == host =>
                {
                    Some(*c)
                }
                _ => None,
            })
            .collect()
    }

    /// The mode (`RW`, `RO`) of host `i`'s activation record on a VDI, if it has one.
    pub fn record_of(&self, vdi_ref: &str, i: usize) -> Option<String> {
        self.sm_config(vdi_ref)
            .get(&format!("host_{}", self.host(i).0))
            .cloned()
    }

    /// Activates `vdi` read-write on host `i`, which must be refused as in use by the host
    /// named `holder` (xapi's VDI_IN_USE of the plugin's fault 24): the fault's text.
    pub fn refused_in_use(&self, i: usize, vdi_ref: &str, holder: &str) -> String {
        let e = self.dp(i, vdi_ref, "intruder", rw(true)).unwrap_err();
        assert_eq!(e[0], "VDI_IN_USE", "{e:?}\n{}", self.smlog_tail());
        let refused = self.last_call("vdi_activate");
        assert_eq!(refused.host_name, self.host(i).2);
        let (code, text) = refused.fault.unwrap();
        assert_eq!(code, 24, "{text}");
        assert!(text.contains(holder), "names the holder: {text}");
        text
    }

    /// `sm_config` of a VDI.
    pub fn sm_config(&self, vdi_ref: &str) -> BTreeMap<String, String> {
        self.emu()
            .read(|db| Ok(db.get("VDI", vdi_ref)?.map("sm_config")))
            .unwrap()
    }

    /// Runs the SR call `command` (with `args`) on host `i` directly, as xapi would send it
    /// there: the plugin's result, or the error xapi makes of its fault.
    pub fn sr_call_on(
        &self,
        i: usize,
        sr_uuid: &str,
        command: &str,
        args: &[&str],
    ) -> Result<Value, Vec<String>> {
        self.call_on(i, args, |db, host, args| {
            xapi_tests::storage::sr_call(db, host, &db.by_uuid("SR", sr_uuid)?, command, args)
        })
    }

    /// Runs the VDI call `command` (with `args`) on host `i` directly, as [`Self::sr_call_on`].
    pub fn vdi_call_on(
        &self,
        i: usize,
        vdi_ref: &str,
        command: &str,
        args: &[&str],
    ) -> Result<Value, Vec<String>> {
        self.call_on(i, args, |db, host, args| {
            xapi_tests::storage::vdi_call(db, host, vdi_ref, command, args)
        })
    }

    fn call_on(
        &self,
        i: usize,
        args: &[&str],
        make: impl FnOnce(&Db, &str, Vec<String>) -> ApiResult<(String, SmCall)>,
    ) -> Result<Value, Vec<String>> {
        let host = self.host(i).0;
        let args = args.iter().map(|a| a.to_string()).collect();
        let ctx = self.ctx();
        let r = self
            .emu()
            .read(|db| make(db, &host, args))
            .and_then(|(ty, call)| self.emu().smapi(&ctx, &host, &ty, call))
            .map_err(|e| e.description());
        self.emu().end_op(&ctx);
        r
    }
}
