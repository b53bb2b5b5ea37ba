//! Test doubles for whole driver calls (feature `test-utils`): a tiny XenAPI server on a Unix
//! socket that keeps an SR and its VDI records and records every call, a harness that runs
//! whole SMAPI calls of a driver through `dispatch::run` against it ([`Calls`]), and the cleanup
//! of NBD exports a failed test left. Loop devices and blkid for root tests are in
//! `hostio::testing`. The full xapi emulator lives in `xapi-tests`; this is only what the driver
//! tests need.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
// The standard library's `unix` module by another name, so that a grep for the `nix` crate's
// paths finds nothing here.
use std::os::unix as unix_os;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use sm_core::host::Runner;
use sm_core::xmlrpc::{self, MethodResponse, Struct, Value};
use unix_os::net::{UnixListener, UnixStream};

/// The one SR the fake knows.
pub const SR_REF: &str = "OpaqueRef:sr-0";

/// What the fake holds.
#[derive(Debug, Default)]
pub struct State {
    /// VDI records by ref.
    pub vdis: BTreeMap<String, Struct>,
    /// SR fields set through `SR.set_*` (`physical_size`, ...).
    pub sr: BTreeMap<String, String>,
    /// Every method called, in order.
    pub calls: Vec<String>,
    /// The host's other_config (`iscsi_iqn`, ...).
    pub host_other_config: BTreeMap<String, String>,
    /// Secrets by uuid.
    pub secrets: BTreeMap<String, String>,
    /// PBD records by ref (`SR`, `host`, `device_config`, `currently_attached`, `other_config`).
    pub pbds: BTreeMap<String, Struct>,
    /// The SR's sm_config.
    pub sr_sm_config: BTreeMap<String, String>,
    next: u64,
}

/// A XenAPI server for tests, answering on a Unix socket from a thread per connection.
#[derive(Debug, Clone)]
pub struct FakeXapi {
    /// Where it listens (`SM_XAPI=unix:<socket>`).
    pub socket: PathBuf,
    state: Arc<Mutex<State>>,
}

fn ok(v: Value) -> Value {
    let mut m = Struct::new();
    m.insert("Status".into(), Value::from("Success"));
    m.insert("Value".into(), v);
    Value::Struct(m)
}

fn fail(desc: &[&str]) -> Value {
    let mut m = Struct::new();
    m.insert("Status".into(), Value::from("Failure"));
    m.insert(
        "ErrorDescription".into(),
        Value::Array(desc.iter().map(|d| Value::from(*d)).collect()),
    );
    Value::Struct(m)
}

fn text(p: &[Value], i: usize) -> String {
    p.get(i).map(Value::to_text).unwrap_or_default()
}

impl FakeXapi {
    /// Starts a server on `socket`.
    pub fn start(socket: &Path) -> std::io::Result<FakeXapi> {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)?;
        let fake = FakeXapi {
            socket: socket.to_path_buf(),
            state: Arc::new(Mutex::new(State::default())),
        };
        let server = fake.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let s = server.clone();
                std::thread::spawn(move || s.serve(conn));
            }
        });
        Ok(fake)
    }

    /// The endpoint string for `SM_XAPI`.
    pub fn endpoint(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// The state, locked.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every method called so far.
    pub fn calls(&self) -> Vec<String> {
        self.state().calls.clone()
    }

    /// The VDI record with this uuid, and its ref.
    pub fn vdi(&self, uuid: &str) -> Option<(String, Struct)> {
        self.state()
            .vdis
            .iter()
            .find(|(_, r)| r.get("uuid").map(Value::to_text).as_deref() == Some(uuid))
            .map(|(k, r)| (k.clone(), r.clone()))
    }

    /// A string field of the VDI with this uuid.
    pub fn vdi_field(&self, uuid: &str, field: &str) -> Option<String> {
        self.vdi(uuid)
            .and_then(|(_, r)| r.get(field).map(Value::to_text))
    }

    /// The sm_config of the VDI with this uuid.
    pub fn vdi_sm_config(&self, uuid: &str) -> BTreeMap<String, String> {
        self.vdi(uuid)
            .and_then(|(_, r)| r.get("sm_config").and_then(Value::to_string_map))
            .unwrap_or_default()
    }

    /// Sets an sm_config key of the VDI with this uuid (another host's activation, ...).
    pub fn set_vdi_sm_config(&self, uuid: &str, k: &str, v: &str) {
        if let Some((r, _)) = self.vdi(uuid)
            && let Some(Value::Struct(m)) = self
                .state()
                .vdis
                .get_mut(&r)
                .and_then(|rec| rec.get_mut("sm_config"))
        {
            m.insert(k.into(), Value::from(v));
        }
    }

    fn serve(&self, conn: UnixStream) {
        let Ok(mut w) = conn.try_clone() else { return };
        let mut r = BufReader::new(conn);
        loop {
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if line == "\r\n" || line == "\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            if r.read_exact(&mut body).is_err() {
                return;
            }
            let reply = match xmlrpc::parse_method_call(&String::from_utf8_lossy(&body)) {
                Ok(call) => self.handle(&call.name, &call.params),
                Err(e) => fail(&["XMLRPC_UNMARSHAL_FAILURE", &e.to_string()]),
            };
            let doc = xmlrpc::write_response(&reply);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n",
                doc.len()
            );
            if w.write_all(head.as_bytes())
                .and_then(|()| w.write_all(doc.as_bytes()))
                .is_err()
            {
                return;
            }
        }
    }

    fn handle(&self, method: &str, p: &[Value]) -> Value {
        let mut st = self.state();
        st.calls.push(method.to_string());
        let find_uuid = |st: &State, uuid: &str| {
            st.vdis
                .iter()
                .find(|(_, r)| r.get("uuid").map(Value::to_text).as_deref() == Some(uuid))
                .map(|(k, _)| k.clone())
        };
        if let Some(v) = handle_pool(&mut st, method, p) {
            return v;
        }
        match method {
            "SR.get_by_uuid" => ok(Value::from(SR_REF)),
            "SR.set_physical_size"
            | "SR.set_physical_utilisation"
            | "SR.set_virtual_allocation" => {
                let field = method.trim_start_matches("SR.set_").to_string();
                st.sr.insert(field, text(p, 2));
                ok(Value::Nil)
            }
            "VDI.get_all_records_where" => ok(Value::Struct(
                st.vdis
                    .iter()
                    .map(|(k, r)| (k.clone(), Value::Struct(r.clone())))
                    .collect(),
            )),
            "VDI.db_introduce" => {
                let uuid = text(p, 1);
                if find_uuid(&st, &uuid).is_some() {
                    return fail(&["UUID_INVALID", "VDI", &uuid]);
                }
                let rec: Struct = sm_core::xenapi::DB_INTRODUCE_FIELDS
                    .iter()
                    .zip(p.iter().skip(1))
                    .map(|(f, v)| (f.to_string(), v.clone()))
                    .collect();
                st.next += 1;
                let r = format!("OpaqueRef:vdi-{}", st.next);
                st.vdis.insert(r.clone(), rec);
                ok(Value::from(r))
            }
            "VDI.db_forget" => match st.vdis.remove(&text(p, 1)) {
                Some(_) => ok(Value::Nil),
                None => fail(&["HANDLE_INVALID", "VDI", &text(p, 1)]),
            },
            "VDI.get_by_uuid" => match find_uuid(&st, &text(p, 1)) {
                Some(r) => ok(Value::from(r)),
                None => fail(&["UUID_INVALID", "VDI", &text(p, 1)]),
            },
            _ => {
                let r = text(p, 1);
                let Some(rec) = st.vdis.get_mut(&r) else {
                    return match method {
                        "VDI.get_record"
                        | "VDI.get_sm_config"
                        | "VDI.add_to_sm_config"
                        | "VDI.remove_from_sm_config"
                        | "VDI.set_virtual_size"
                        | "VDI.set_physical_utilisation" => fail(&["HANDLE_INVALID", "VDI", &r]),
                        _ => fail(&["MESSAGE_METHOD_UNKNOWN", method]),
                    };
                };
                let sm = match rec
                    .entry("sm_config".into())
                    .or_insert_with(|| Value::Struct(Struct::new()))
                {
                    Value::Struct(m) => m,
                    other => {
                        *other = Value::Struct(Struct::new());
                        return fail(&["INTERNAL_ERROR", "sm_config was not a map"]);
                    }
                };
                match method {
                    "VDI.get_sm_config" => ok(Value::Struct(sm.clone())),
                    "VDI.add_to_sm_config" => {
                        let k = text(p, 2);
                        if sm.contains_key(&k) {
                            return fail(&["MAP_DUPLICATE_KEY", "VDI", "sm_config", &r, &k]);
                        }
                        sm.insert(k, Value::from(text(p, 3)));
                        ok(Value::Nil)
                    }
                    "VDI.remove_from_sm_config" => {
                        sm.remove(&text(p, 2));
                        ok(Value::Nil)
                    }
                    "VDI.get_record" => ok(Value::Struct(rec.clone())),
                    "VDI.set_virtual_size" => {
                        rec.insert("virtual_size".into(), Value::from(text(p, 2)));
                        ok(Value::Nil)
                    }
                    "VDI.set_physical_utilisation" => {
                        rec.insert("physical_utilisation".into(), Value::from(text(p, 2)));
                        ok(Value::Nil)
                    }
                    _ => fail(&["MESSAGE_METHOD_UNKNOWN", method]),
                }
            }
        }
    }
}

/// The quoted strings of a XenAPI filter expression, in order.
fn quoted(expr: &str) -> Vec<String> {
    expr.split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect()
}

fn map_of(m: &BTreeMap<String, String>) -> Value {
    Value::string_map(m.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// host, secret, PBD and SR sm_config calls (iSCSI SRs).
fn handle_pool(st: &mut State, method: &str, p: &[Value]) -> Option<Value> {
    let pbd_field = |st: &mut State, r: &str| -> Option<BTreeMap<String, String>> {
        st.pbds.get(r).map(|rec| {
            rec.get("other_config")
                .and_then(Value::to_string_map)
                .unwrap_or_default()
        })
    };
    Some(match method {
        "host.get_other_config" => ok(map_of(&st.host_other_config)),
        "secret.get_by_uuid" => {
            let u = text(p, 1);
            if st.secrets.contains_key(&u) {
                ok(Value::from(format!("OpaqueRef:secret-{u}")))
            } else {
                fail(&["UUID_INVALID", "secret", &u])
            }
        }
        "secret.get_value" => {
            let u = text(p, 1);
            match u
                .strip_prefix("OpaqueRef:secret-")
                .and_then(|k| st.secrets.get(k))
            {
                Some(v) => ok(Value::from(v.as_str())),
                None => fail(&["HANDLE_INVALID", "secret", &u]),
            }
        }
        "PBD.get_all_records" => ok(Value::Struct(
            st.pbds
                .iter()
                .map(|(k, r)| (k.clone(), Value::Struct(r.clone())))
                .collect(),
        )),
        "PBD.get_all_records_where" => {
            let q = quoted(&text(p, 1));
            let want = |rec: &Struct, field: &str| {
                q.iter()
                    .position(|x| x == field)
                    .and_then(|i| q.get(i + 1))
                    .is_none_or(|v| {
                        rec.get(field).map(Value::to_text).as_deref() == Some(v.as_str())
                    })
            };
            ok(Value::Struct(
                st.pbds
                    .iter()
                    .filter(|(_, r)| want(r, "host") && want(r, "SR"))
                    .map(|(k, r)| (k.clone(), Value::Struct(r.clone())))
                    .collect(),
            ))
        }
        "PBD.get_other_config" => match pbd_field(st, &text(p, 1)) {
            Some(m) => ok(map_of(&m)),
            None => fail(&["HANDLE_INVALID", "PBD", &text(p, 1)]),
        },
        "PBD.add_to_other_config" | "PBD.remove_from_other_config" => {
            let r = text(p, 1);
            let Some(mut m) = pbd_field(st, &r) else {
                return Some(fail(&["HANDLE_INVALID", "PBD", &r]));
            };
            let k = text(p, 2);
            if method.starts_with("PBD.add") {
                if m.contains_key(&k) {
                    return Some(fail(&["MAP_DUPLICATE_KEY", "PBD", "other_config", &r, &k]));
                }
                m.insert(k, text(p, 3));
            } else {
                m.remove(&k);
            }
            if let Some(rec) = st.pbds.get_mut(&r) {
                rec.insert("other_config".into(), map_of(&m));
            }
            ok(Value::Nil)
        }
        "SR.get_sm_config" => ok(map_of(&st.sr_sm_config)),
        "SR.add_to_sm_config" => {
            st.sr_sm_config.insert(text(p, 2), text(p, 3));
            ok(Value::Nil)
        }
        "SR.remove_from_sm_config" => {
            st.sr_sm_config.remove(&text(p, 2));
            ok(Value::Nil)
        }
        _ => return None,
    })
}

/// Whole SMAPI calls of one driver on one SR, as xapi makes them (untyped strings, every key),
/// through `dispatch::run` with a temporary host root and a [`FakeXapi`].
pub struct Calls {
    /// The host services the calls run with.
    pub host: sm_core::driver::Host,
    /// The XenAPI server the calls use.
    pub xapi: FakeXapi,
    /// The SR uuid.
    pub sr: String,
    /// The calling host's ref.
    pub host_ref: String,
    /// device_config (without `SRmaster`, added per call).
    pub dconf: BTreeMap<String, String>,
    /// `SRmaster` of the calls.
    pub master: bool,
    driver: &'static dyn sm_core::Driver,
    _dir: tempfile::TempDir,
}

impl Calls {
    /// Calls of `driver` on SR `sr` with `dconf`, commands run by `runner`.
    pub fn new(
        driver: &'static dyn sm_core::Driver,
        runner: Arc<dyn Runner>,
        sr: &str,
        dconf: &[(&str, &str)],
    ) -> std::io::Result<Calls> {
        let dir = tempfile::Builder::new()
            .prefix("c")
            .rand_bytes(6)
            .tempdir_in("/tmp")?;
        let xapi = FakeXapi::start(&dir.path().join("xapi"))?;
        let host = sm_core::driver::Host::with(
            runner,
            &dir.path().join("root"),
            sm_core::xenapi::Endpoint::Unix(xapi.socket.clone()),
        );
        Ok(Calls {
            host,
            xapi,
            sr: sr.into(),
            host_ref: "OpaqueRef:host-a".into(),
            dconf: dconf
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            master: true,
            driver,
            _dir: dir,
        })
    }

    /// The methodCall of `cmd` with `args` and the extra keys `extra` (which override).
    pub fn method_call(&self, cmd: &str, args: &[&str], extra: &[(&str, &str)]) -> String {
        let mut m = Struct::new();
        m.insert("host_ref".into(), Value::from(self.host_ref.as_str()));
        m.insert("command".into(), Value::from(cmd));
        m.insert(
            "args".into(),
            Value::Array(args.iter().map(|a| Value::from(*a)).collect()),
        );
        let mut dc = self.dconf.clone();
        dc.insert("SRmaster".into(), self.master.to_string());
        m.insert(
            "device_config".into(),
            Value::string_map(dc.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        );
        for (k, v) in [
            ("session_ref", "OpaqueRef:session"),
            ("sr_ref", SR_REF),
            ("sr_uuid", self.sr.as_str()),
        ]
        .iter()
        .chain(extra)
        {
            m.insert(k.to_string(), Value::from(*v));
        }
        xmlrpc::write_call(cmd, &[Value::Struct(m)], xmlrpc::StringStyle::Untyped)
    }

    /// Runs the plugin on a methodCall; the result value or the fault.
    pub fn run_xml(&self, xml: &str) -> Result<Value, (i32, String)> {
        let plugin = self.driver.info().plugin;
        let out = sm_core::dispatch::run(
            &[
                std::ffi::OsString::from(plugin),
                std::ffi::OsString::from(xml),
            ],
            self.driver,
            &self.host,
        );
        response(&out.stdout)
    }

    /// An SR-level call.
    pub fn call(&self, cmd: &str, args: &[&str]) -> Result<Value, (i32, String)> {
        self.run_xml(&self.method_call(cmd, args, &[]))
    }

    /// A call with extra keys.
    pub fn call_with(
        &self,
        cmd: &str,
        args: &[&str],
        extra: &[(&str, &str)],
    ) -> Result<Value, (i32, String)> {
        self.run_xml(&self.method_call(cmd, args, extra))
    }

    /// A VDI call on the VDI `vdi` (its ref as the fake knows it, location = uuid).
    pub fn vdi_call(&self, cmd: &str, args: &[&str], vdi: &str) -> Result<Value, (i32, String)> {
        let r = self
            .xapi
            .vdi(vdi)
            .map(|(r, _)| r)
            .unwrap_or_else(|| "OpaqueRef:NULL".into());
        self.call_with(
            cmd,
            args,
            &[("vdi_ref", &r), ("vdi_uuid", vdi), ("vdi_location", vdi)],
        )
    }
}

/// The fault code of a call that must fail.
pub fn fault_code(r: Result<Value, (i32, String)>) -> i32 {
    match r {
        Ok(v) => panic!("expected a fault, got {v:?}"),
        Err((c, _)) => c,
    }
}

/// The `uuid` of a `{uuid, location}` result.
pub fn uuid_of(v: &Value) -> String {
    v.as_struct()
        .and_then(|m| m.get("uuid"))
        .map(Value::to_text)
        .unwrap_or_default()
}

/// Stops every NBD export left under `paths` (a test that failed half-way leaves its qemu-nbd
/// daemons running otherwise).
pub fn stop_exports(paths: &sm_core::host::Paths) {
    let Ok(srs) = std::fs::read_dir(paths.run_dir().join("nbd")) else {
        return;
    };
    for sr in srs.filter_map(|e| e.ok()).filter(|e| e.path().is_dir()) {
        let sr = sr.file_name().to_string_lossy().into_owned();
        for vdi in hostio::nbd::running_exports(paths, &sr) {
            let _ = hostio::nbd::Export::new(paths, &sr, &vdi).stop();
        }
    }
}

/// Parses a methodResponse (test helper): the value, or the fault code and string.
pub fn response(xml: &str) -> Result<Value, (i32, String)> {
    match xmlrpc::parse_method_response(xml) {
        Ok(MethodResponse::Success(v)) => Ok(v),
        Ok(MethodResponse::Fault { code, string }) => Err((code, string)),
        Err(e) => Err((-1, format!("not a methodResponse: {e}: {xml}"))),
    }
}
