//! One emulator instance: the database, sessions, registered drivers, the pool's hosts and how
//! each runs plugins, the trace, and the one function every SMAPI call goes through
//! ([`Emulator::smapi`]). The HTTP front end ([`crate::server`]) and the operations
//! ([`crate::storage`]) share it through an `Arc`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, RwLock};
use std::time::Duration;

use sm_core::host::SystemRunner;
use sm_core::xmlrpc::Value;

use crate::config::{Config, Exec, HostConfig};
use crate::datapaths::Datapaths;
use crate::db::{Db, DbError, Record, RecordExt, is_null, schema::NULL_REF};
use crate::error::{ApiError, ApiResult, names};
use crate::smexec::{self, Executor, Registry, SmCall, registry};
use crate::trace::{Event, SmapiCall, TraceWriter, now};

/// The user name of the sessions created for plugins (xapi's `sm_username`).
pub const SM_USER: &str = "__sm__backend";
/// The session other_config key naming the SR an SM session may write (`Xapi_globs._sm_session`).
pub const SM_SESSION_KEY: &str = "_sm_session";

/// A logged-in session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// uuid.
    pub uuid: String,
    /// Who logged in.
    pub user: String,
    /// other_config (`_sm_session` for plugin sessions).
    pub other_config: BTreeMap<String, String>,
}

/// A host as the emulator runs it.
#[derive(Debug, Clone)]
pub struct HostRt {
    /// OpaqueRef.
    pub r: String,
    /// uuid.
    pub uuid: String,
    /// name_label.
    pub name: String,
    /// Where its commands run.
    pub exec: Executor,
    /// Its plugin directory.
    pub plugin_dir: String,
    /// Environment for its plugins beyond xapi's (SM_XAPI, test knobs).
    pub env: BTreeMap<String, String>,
}

/// The context of one top-level operation: what caused it, for the trace, and its task.
#[derive(Debug, Clone, Default)]
pub struct OpCtx {
    /// The XenAPI operation (`VM.start`).
    pub op: String,
    /// The `xe` command sequence number, when an `xe` command runs it.
    pub xe: Option<u64>,
    /// The task ref passed to plugins as `subtask_of`.
    pub task: Option<String>,
    /// The caller's session.
    pub session: String,
}

/// Named mutual exclusion: `lock("vdi:<host>:<ref>")` waits while another holder has the key.
#[derive(Debug, Default)]
pub struct KeyedLocks {
    held: Mutex<HashSet<String>>,
    freed: Condvar,
}

/// Releases a [`KeyedLocks`] key when dropped.
#[derive(Debug)]
pub struct KeyGuard<'a> {
    locks: &'a KeyedLocks,
    key: String,
}

impl KeyedLocks {
    /// Takes `key`, waiting while it is held.
    pub fn lock(&self, key: &str) -> KeyGuard<'_> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        while held.contains(key) {
            held = self.freed.wait(held).unwrap_or_else(|p| p.into_inner());
        }
        held.insert(key.to_string());
        KeyGuard {
            locks: self,
            key: key.to_string(),
        }
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        let mut held = self.locks.held.lock().unwrap_or_else(|p| p.into_inner());
        held.remove(&self.key);
        self.locks.freed.notify_all();
    }
}

/// Why an emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The state directory or a socket could not be set up.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The database could not be read or written.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Building the initial database failed.
    #[error("initialising the database: {0}")]
    Init(ApiError),
}

/// The emulator.
#[derive(Debug)]
pub struct Emulator {
    /// Its configuration.
    pub config: Config,
    db: Mutex<Db>,
    db_path: PathBuf,
    sessions: Mutex<HashMap<String, Session>>,
    registry: RwLock<Registry>,
    hosts: Vec<HostRt>,
    /// The trace.
    pub trace: TraceWriter,
    /// Per-object operation locks.
    pub locks: KeyedLocks,
    /// VDI datapaths per host.
    pub datapaths: Datapaths,
    xe_seq: AtomicU64,
    /// The Unix socket path.
    pub socket: PathBuf,
    /// The TCP address actually bound (`127.0.0.1:port`).
    pub tcp_addr: String,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let what = what.into();
    move |source| StartError::Io { what, source }
}

impl Emulator {
    /// Creates (or reopens) the emulator state in `config.state_dir` for sockets already bound at
    /// `socket` and `tcp_addr`: loads or initialises the database, builds the hosts and registers
    /// the drivers found in the master's plugin directory.
    pub fn open(config: Config, socket: PathBuf, tcp_addr: String) -> Result<Emulator, StartError> {
        config.validate()?;
        std::fs::create_dir_all(&config.state_dir).map_err(io("creating the state directory"))?;
        config.save(&Config::path(&config.state_dir))?;
        let db_path = config.state_dir.join("db.json");
        let mut db = if db_path.exists() {
            Db::load(&db_path)?
        } else {
            Db::new()
        };
        init_db(&mut db, &config).map_err(StartError::Init)?;
        let trace = TraceWriter::open(&config.state_dir.join("trace.jsonl"))
            .map_err(io("opening the trace"))?;
        let mut hosts = Vec::new();
        for hc in &config.hosts {
            let r = db
                .find("host", |h| h.s("name_label") == hc.name)
                .into_iter()
                .next()
                .ok_or_else(|| {
                    StartError::Init(ApiError::internal(format!("host {} missing", hc.name)))
                })?;
            let uuid = db.get("host", &r).map_err(StartError::Init)?.s("uuid");
            let mut env = hc.env.clone();
            let endpoint = hc
                .xapi_endpoint
                .clone()
                .unwrap_or_else(|| format!("unix:{}", socket.display()));
            env.insert("SM_XAPI".into(), endpoint);
            let exec = match &hc.exec {
                Exec::Local => Executor::Local(SystemRunner::new().with_dirs_first(&hc.tool_dirs)),
                Exec::Agent { addr } => Executor::Agent(crate::lab::AgentClient::new(addr.clone())),
            };
            hosts.push(HostRt {
                r,
                uuid,
                name: hc.name.clone(),
                exec,
                plugin_dir: hc.plugin_dir.clone(),
                env,
            });
        }
        let emu = Emulator {
            config,
            db: Mutex::new(db),
            db_path,
            sessions: Mutex::new(HashMap::new()),
            registry: RwLock::new(Registry::default()),
            hosts,
            trace,
            locks: KeyedLocks::default(),
            datapaths: Datapaths::default(),
            xe_seq: AtomicU64::new(0),
            socket,
            tcp_addr,
        };
        emu.register_drivers();
        emu.read(|db| {
            emu.datapaths.restore(db);
            Ok(())
        })
        .map_err(StartError::Init)?;
        emu.write(|_| Ok(())).map_err(StartError::Init)?;
        Ok(emu)
    }

    /// Reads the database.
    pub fn read<T>(&self, f: impl FnOnce(&Db) -> ApiResult<T>) -> ApiResult<T> {
        let db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        f(&db)
    }

    /// Changes the database and persists it when `f` succeeds.
    pub fn write<T>(&self, f: impl FnOnce(&mut Db) -> ApiResult<T>) -> ApiResult<T> {
        let mut db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        let mut copy = db.clone();
        let out = f(&mut copy)?;
        copy.save(&self.db_path)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        *db = copy;
        Ok(out)
    }

    /// Sets `host_metrics.live` of a host, as xapi does when a host stops heart-beating (or
    /// comes back): tests use it to tell the pool a host is dead.
    pub fn set_host_live(&self, host_ref: &str, live: bool) -> ApiResult<()> {
        self.write(|db| {
            let metrics = db.get("host", host_ref)?.s("metrics");
            db.get_mut("host_metrics", &metrics)?.put_b("live", live);
            Ok(())
        })
    }

    /// The pool's hosts, master first.
    pub fn hosts(&self) -> &[HostRt] {
        &self.hosts
    }

    /// A host by ref.
    pub fn host(&self, r: &str) -> ApiResult<&HostRt> {
        self.hosts
            .iter()
            .find(|h| h.r == r)
            .ok_or_else(|| ApiError::handle_invalid("host", r))
    }

    /// The pool master.
    pub fn master(&self) -> &HostRt {
        &self.hosts[0]
    }

    /// The registered driver for an SR type.
    pub fn driver(&self, sr_type: &str) -> ApiResult<smexec::Driver> {
        let reg = self.registry.read().unwrap_or_else(|p| p.into_inner());
        reg.drivers
            .get(sr_type)
            .cloned()
            .ok_or_else(|| ApiError::new(names::SR_UNKNOWN_DRIVER, [sr_type]))
    }

    /// Every registered driver.
    pub fn drivers(&self) -> Vec<smexec::Driver> {
        let reg = self.registry.read().unwrap_or_else(|p| p.into_inner());
        reg.drivers.values().cloned().collect()
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.config.plugin_timeout_secs)
    }

    /// (Re)scans the master's plugin directory and rewrites the SM records.
    pub fn register_drivers(&self) {
        let master = self.master();
        let (reg, rejected) = registry::scan(
            &master.exec,
            std::path::Path::new(&master.plugin_dir),
            &master.env,
            self.timeout(),
        );
        for d in reg.drivers.values() {
            tracing::info!(sr_type = %d.sr_type, plugin = %d.plugin, "registered SM plugin");
            self.trace.write(&Event::Driver {
                sr_type: d.sr_type.clone(),
                plugin: d.plugin.clone(),
                capabilities: d.capabilities.clone(),
            });
        }
        for r in &rejected {
            tracing::warn!(plugin = %r.plugin, reason = %r.reason, "rejecting SM plugin");
            self.trace.write(&Event::Rejected {
                plugin: r.plugin.clone(),
                reason: r.reason.clone(),
            });
        }
        let dir = master.plugin_dir.clone();
        let res = self.write(|db| {
            for r in db.refs("SM") {
                db.destroy("SM", &r)?;
            }
            for d in reg.drivers.values() {
                let mut rec = Record::new();
                rec.put_s("name_label", &d.name);
                rec.put_s("name_description", &d.description);
                rec.put_s("type", &d.sr_type);
                rec.put_s("vendor", &d.vendor);
                rec.put_s("copyright", &d.copyright);
                rec.put_s("version", &d.driver_version);
                rec.put_s("required_api_version", &d.required_api_version);
                rec.insert("capabilities".into(), serde_json::json!(d.capabilities));
                let features: BTreeMap<String, String> = d
                    .capabilities
                    .iter()
                    .map(|c| match c.split_once('/') {
                        Some((n, v)) => (n.to_string(), v.to_string()),
                        None => (c.clone(), "1".to_string()),
                    })
                    .collect();
                rec.put_map("features", &features);
                rec.put_map("configuration", &d.configuration.iter().cloned().collect());
                rec.put_s("driver_filename", format!("{dir}/{}", d.plugin));
                db.create("SM", rec)?;
            }
            Ok(())
        });
        if let Err(e) = res {
            tracing::warn!("cannot record SM plugins: {e}");
        }
        *self.registry.write().unwrap_or_else(|p| p.into_inner()) = reg;
    }

    /// Logs a user in.
    pub fn login(&self, user: &str, other_config: BTreeMap<String, String>) -> String {
        let r = crate::db::new_ref();
        let s = Session {
            uuid: crate::db::new_uuid(),
            user: user.to_string(),
            other_config,
        };
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(r.clone(), s);
        r
    }

    /// Logs a session out (idempotent).
    pub fn logout(&self, session: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(session);
    }

    /// A live session, or `SESSION_INVALID`.
    pub fn session(&self, r: &str) -> ApiResult<Session> {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(r)
            .cloned()
            .ok_or_else(|| ApiError::new(names::SESSION_INVALID, [r]))
    }

    /// Next `xe` command sequence number.
    pub fn next_xe_id(&self) -> u64 {
        self.xe_seq.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Starts a top-level operation: creates its task.
    pub fn begin_op(&self, op: &str, xe: Option<u64>, session: &str) -> OpCtx {
        let task = self
            .write(|db| {
                let mut t = Record::new();
                t.put_s("name_label", op);
                t.put_s("created", crate::db::xapi_now());
                t.put_s("resident_on", &self.master().r);
                db.create("task", t)
            })
            .ok();
        OpCtx {
            op: op.to_string(),
            xe,
            task,
            session: session.to_string(),
        }
    }

    /// Ends a top-level operation: its task goes away, as xapi's synchronous calls' tasks do.
    pub fn end_op(&self, ctx: &OpCtx) {
        if let Some(t) = &ctx.task {
            let _ = self.write(|db| db.destroy("task", t).map(|_| ()));
        }
    }

    /// Runs one SMAPI call on `host_ref` for an SR of `sr_type`, as `Sm_exec.exec_xmlrpc`
    /// does: an SM session with access to the call's SR, the plugin's environment, the result
    /// mapping; and records it in the trace.
    pub fn smapi(
        &self,
        ctx: &OpCtx,
        host_ref: &str,
        sr_type: &str,
        mut call: SmCall,
    ) -> ApiResult<Value> {
        let host = self.host(host_ref)?.clone();
        let driver = self.driver(sr_type)?;
        let mut oc = BTreeMap::new();
        if let Some(sr) = &call.sr_ref {
            oc.insert(SM_SESSION_KEY.to_string(), sr.clone());
        }
        let session = self.login(SM_USER, oc);
        call.host_ref = host.r.clone();
        call.session_ref = Some(session.clone());
        if call.subtask_of.is_none() {
            call.subtask_of = ctx.task.clone();
        }
        let plugin = format!(
            "{}/{}",
            host.plugin_dir.trim_end_matches('/'),
            driver.plugin
        );
        let env = smexec::plugin_env(&host.env);
        let ts = now();
        tracing::info!(host = %host.name, command = %call.command, sr = ?call.sr_uuid, vdi = ?call.vdi_uuid, "sm_exec");
        let (outcome, out) = smexec::run_call(&host.exec, &plugin, &call, &env, self.timeout());
        self.logout(&session);
        let result_uuid = outcome
            .result
            .as_ref()
            .ok()
            .and_then(Value::as_struct)
            .and_then(|m| m.get("uuid"))
            .map(Value::to_text);
        self.trace.write(&Event::Smapi(Box::new(SmapiCall {
            xe: ctx.xe,
            op: ctx.op.clone(),
            host: host.uuid.clone(),
            host_name: host.name.clone(),
            sr_type: sr_type.to_string(),
            command: call.command.clone(),
            sr: call.sr_uuid.clone(),
            vdi: call.vdi_uuid.clone().or(result_uuid),
            args: call.args.clone(),
            ok: outcome.result.is_ok(),
            result: outcome.result.as_ref().ok().map(smexec::value_json),
            error: outcome.result.as_ref().err().map(ApiError::description),
            fault: outcome.fault.clone(),
            exit: out.code,
            stderr: out.stderr.clone(),
            ms: out.ms,
            ts,
        })));
        if let Err(e) = &outcome.result {
            tracing::warn!(host = %host.name, command = %call.command, "sm_exec failed: {e}");
        }
        outcome.result
    }
}

/// Creates what a fresh pool has: the pool, its hosts with metrics, the install template; adds
/// hosts named in the configuration that an existing database lacks.
fn init_db(db: &mut Db, config: &Config) -> ApiResult<()> {
    let mut host_refs = Vec::new();
    for hc in &config.hosts {
        let existing = db
            .find("host", |h| h.s("name_label") == hc.name)
            .into_iter()
            .next();
        let r = match existing {
            Some(r) => {
                let h = db.get_mut("host", &r)?;
                update_host(h, hc);
                r
            }
            None => {
                let mut m = Record::new();
                m.put_b("live", true);
                m.put_i("memory_total", 24 << 30);
                m.put_i("memory_free", 16 << 30);
                let metrics = db.create("host_metrics", m)?;
                let mut h = Record::new();
                update_host(&mut h, hc);
                h.put_s("name_description", "Default install");
                h.put_s("metrics", metrics);
                db.create("host", h)?
            }
        };
        host_refs.push(r);
    }
    if db.refs("pool").is_empty() {
        let mut p = Record::new();
        p.put_s("name_label", "");
        db.create("pool", p)?;
    }
    for p in db.refs("pool") {
        db.get_mut("pool", &p)?.put_s("master", &host_refs[0]);
    }
    let t = &config.template;
    if db
        .find("VM", |v| {
            v.b("is_a_template") && v.s("name_label") == t.name
        })
        .is_empty()
    {
        let mut vm = Record::new();
        vm.put_s("name_label", &t.name);
        vm.put_s(
            "name_description",
            "Template for a PV guest installed from a filesystem image",
        );
        vm.put_b("is_a_template", true);
        vm.put_s("PV_bootloader", &t.bootloader);
        vm.put_i(
            "memory_static_max",
            i64::try_from(t.memory).unwrap_or(i64::MAX),
        );
        let disks: String = t
            .disks
            .iter()
            .map(|d| {
                format!(
                    "<disk device=\"{}\" size=\"{}\" sr=\"\" bootable=\"{}\" type=\"system\"/>",
                    d.device, d.size, d.bootable
                )
            })
            .collect();
        vm.put_map(
            "other_config",
            &BTreeMap::from([(
                "disks".to_string(),
                format!("<provision>{disks}</provision>"),
            )]),
        );
        db.create("VM", vm)?;
    }
    for s in db.refs("VM") {
        let vm = db.get("VM", &s)?;
        if !vm.b("is_a_template") && vm.s("power_state").is_empty() {
            db.get_mut("VM", &s)?.put_s("power_state", "Halted");
        }
        if is_null(&db.get("VM", &s)?.s("resident_on")) {
            db.get_mut("VM", &s)?.put_s("resident_on", NULL_REF);
        }
    }
    Ok(())
}

fn update_host(h: &mut Record, hc: &HostConfig) {
    h.put_s("name_label", &hc.name);
    h.put_s("hostname", &hc.hostname);
    h.put_s("address", &hc.address);
    let mut oc = h.map("other_config");
    oc.insert("iscsi_iqn".into(), hc.iscsi_iqn.clone());
    oc.extend(hc.other_config.iter().map(|(k, v)| (k.clone(), v.clone())));
    h.put_b(
        "multipathing",
        oc.get("multipathing").is_some_and(|v| v == "true"),
    );
    h.put_map("other_config", &oc);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_locks_exclude_the_same_key_only() {
        let l = std::sync::Arc::new(KeyedLocks::default());
        let g = l.lock("a");
        let _other = l.lock("b");
        let l2 = l.clone();
        let t = std::thread::spawn(move || {
            let _g = l2.lock("a");
            std::time::Instant::now()
        });
        std::thread::sleep(Duration::from_millis(100));
        let released = std::time::Instant::now();
        drop(g);
        assert!(t.join().unwrap() >= released);
    }

    #[test]
    fn opens_a_two_host_pool_with_template() {
        let d = tempfile::tempdir().unwrap();
        let plugins = d.path().join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        let cfg = Config::two_local_hosts(&d.path().join("state"), &plugins, None);
        let emu =
            Emulator::open(cfg.clone(), d.path().join("s.sock"), "127.0.0.1:1".into()).unwrap();
        assert_eq!(emu.hosts().len(), 2);
        emu.read(|db| {
            assert_eq!(db.refs("host").len(), 2);
            let h = db.get("host", &emu.hosts()[1].r)?;
            assert_eq!(h.map("other_config")["iscsi_iqn"], cfg.hosts[1].iscsi_iqn);
            assert_eq!(db.find("VM", |v| v.b("is_a_template")).len(), 1);
            Ok(())
        })
        .unwrap();
        assert!(emu.hosts()[0].env["SM_XAPI"].starts_with("unix:"));
        let b = emu.hosts()[1].r.clone();
        emu.set_host_live(&b, false).unwrap();
        let live = |emu: &Emulator| {
            emu.read(|db| {
                let m = db.get("host", &b)?.s("metrics");
                Ok(db.get("host_metrics", &m)?.b("live"))
            })
            .unwrap()
        };
        assert!(!live(&emu));
        emu.set_host_live(&b, true).unwrap();
        assert!(live(&emu));
        assert!(emu.set_host_live("OpaqueRef:nope", false).is_err());
        drop(emu);
        let emu2 = Emulator::open(cfg, d.path().join("s.sock"), "127.0.0.1:1".into()).unwrap();
        emu2.read(|db| {
            assert_eq!(db.refs("host").len(), 2);
            assert_eq!(db.refs("pool").len(), 1);
            Ok(())
        })
        .unwrap();
    }
}
