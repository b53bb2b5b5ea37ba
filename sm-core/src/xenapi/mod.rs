//! XenAPI client for the session xapi hands the plugin (`session_ref`).
//!
//! XML-RPC over HTTP/1.1 on the xapi Unix socket (or TCP), results unwrapped from xapi's
//! `{Status, Value | ErrorDescription}` envelope. The session is borrowed: this client never logs
//! in or out (xapi reuses one SM session per SR). Every request carries `Subtask-of` when xapi
//! gave one, and `originator` from the environment, as sm does.

pub mod transport;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::errors::{SmCode, SmError};
use crate::secret::Secret;
use crate::xmlrpc::{self, MethodResponse, StringStyle, Struct, Value};

pub use transport::{Endpoint, Transport, TransportError};

/// Deadline for one XenAPI round trip.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A failed XenAPI call.
#[derive(Debug, thiserror::Error)]
pub enum XenApiError {
    /// The connection failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The response was not a valid XenAPI envelope.
    #[error("XenAPI protocol error in {method}: {reason}")]
    Protocol {
        /// The call.
        method: String,
        /// What was wrong.
        reason: String,
    },
    /// xapi answered with a failure, e.g. `["HANDLE_INVALID", "VDI", "OpaqueRef:..."]`.
    #[error("XenAPI {method} failed: {}", description.join(", "))]
    Failure {
        /// The call.
        method: String,
        /// xapi's ErrorDescription.
        description: Vec<String>,
    },
}

impl XenApiError {
    /// The SMAPI code sm uses for this kind of failure.
    pub fn sm_code(&self) -> SmCode {
        match self {
            XenApiError::Transport(_) => SmCode::APISession,
            XenApiError::Protocol { .. } => SmCode::APIProtocolError,
            XenApiError::Failure { .. } => SmCode::APIFailure,
        }
    }

    /// The xapi error name (first ErrorDescription element), if this is a failure.
    pub fn error_name(&self) -> Option<&str> {
        match self {
            XenApiError::Failure { description, .. } => description.first().map(String::as_str),
            _ => None,
        }
    }
}

impl From<XenApiError> for SmError {
    fn from(e: XenApiError) -> SmError {
        SmError::new(e.sm_code(), e)
    }
}

/// Result of a XenAPI call.
pub type XResult<T> = Result<T, XenApiError>;

/// A VDI record as the drivers need it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VdiRecord {
    /// OpaqueRef.
    pub ref_: String,
    /// uuid.
    pub uuid: String,
    /// location (the scan key).
    pub location: String,
    /// name_label.
    pub name_label: String,
    /// name_description.
    pub name_description: String,
    /// virtual_size in bytes.
    pub virtual_size: u64,
    /// physical_utilisation in bytes.
    pub physical_utilisation: u64,
    /// read_only.
    pub read_only: bool,
    /// managed.
    pub managed: bool,
    /// missing.
    pub missing: bool,
    /// is_a_snapshot.
    pub is_a_snapshot: bool,
    /// type (user, system, suspend, ...).
    pub ty: String,
    /// sm_config.
    pub sm_config: BTreeMap<String, String>,
    /// other_config.
    pub other_config: BTreeMap<String, String>,
    /// The SR's OpaqueRef.
    pub sr: String,
}

fn field_str(m: &Struct, k: &str) -> String {
    m.get(k).map(Value::to_text).unwrap_or_default()
}

fn field_u64(m: &Struct, k: &str) -> u64 {
    field_str(m, k).trim().parse().unwrap_or(0)
}

fn field_bool(m: &Struct, k: &str) -> bool {
    match m.get(k) {
        Some(Value::Bool(b)) => *b,
        Some(v) => v.to_text() == "true" || v.to_text() == "1",
        None => false,
    }
}

fn field_map(m: &Struct, k: &str) -> BTreeMap<String, String> {
    m.get(k).and_then(Value::to_string_map).unwrap_or_default()
}

impl VdiRecord {
    /// Builds a record from `VDI.get_record` output.
    pub fn from_struct(ref_: &str, m: &Struct) -> VdiRecord {
        VdiRecord {
            ref_: ref_.to_string(),
            uuid: field_str(m, "uuid"),
            location: field_str(m, "location"),
            name_label: field_str(m, "name_label"),
            name_description: field_str(m, "name_description"),
            virtual_size: field_u64(m, "virtual_size"),
            physical_utilisation: field_u64(m, "physical_utilisation"),
            read_only: field_bool(m, "read_only"),
            managed: field_bool(m, "managed"),
            missing: field_bool(m, "missing"),
            is_a_snapshot: field_bool(m, "is_a_snapshot"),
            ty: field_str(m, "type"),
            sm_config: field_map(m, "sm_config"),
            other_config: field_map(m, "other_config"),
            sr: field_str(m, "SR"),
        }
    }
}

/// A host record as the drivers need it (`host.get_all_records`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostRecord {
    /// OpaqueRef.
    pub ref_: String,
    /// uuid.
    pub uuid: String,
    /// name_label.
    pub name_label: String,
    /// hostname.
    pub hostname: String,
    /// The host_metrics OpaqueRef.
    pub metrics: String,
}

impl HostRecord {
    /// Builds a record from `host.get_record` output.
    pub fn from_struct(ref_: &str, m: &Struct) -> HostRecord {
        HostRecord {
            ref_: ref_.to_string(),
            uuid: field_str(m, "uuid"),
            name_label: field_str(m, "name_label"),
            hostname: field_str(m, "hostname"),
            metrics: field_str(m, "metrics"),
        }
    }
}

/// The names of `VDI.db_introduce`'s positional arguments after the session, in order (the
/// record fields they set).
pub const DB_INTRODUCE_FIELDS: [&str; 19] = [
    "uuid",
    "name_label",
    "name_description",
    "SR",
    "type",
    "sharable",
    "read_only",
    "other_config",
    "location",
    "xenstore_data",
    "sm_config",
    "managed",
    "virtual_size",
    "physical_utilisation",
    "metadata_of_pool",
    "is_a_snapshot",
    "snapshot_time",
    "snapshot_of",
    "cbt_enabled",
];

/// Everything `VDI.db_introduce` takes (positional in XenAPI; named here).
#[derive(Debug, Clone)]
pub struct VdiIntroduce {
    /// uuid of the new record.
    pub uuid: String,
    /// name_label.
    pub name_label: String,
    /// name_description.
    pub name_description: String,
    /// The SR's OpaqueRef.
    pub sr_ref: String,
    /// VDI type (`user`, `system`, ...).
    pub ty: String,
    /// sharable.
    pub sharable: bool,
    /// read_only.
    pub read_only: bool,
    /// other_config.
    pub other_config: BTreeMap<String, String>,
    /// location.
    pub location: String,
    /// xenstore_data.
    pub xenstore_data: BTreeMap<String, String>,
    /// sm_config.
    pub sm_config: BTreeMap<String, String>,
    /// managed.
    pub managed: bool,
    /// virtual_size in bytes.
    pub virtual_size: u64,
    /// physical_utilisation in bytes.
    pub physical_utilisation: u64,
    /// metadata_of_pool (an OpaqueRef or "").
    pub metadata_of_pool: String,
    /// is_a_snapshot.
    pub is_a_snapshot: bool,
    /// snapshot_time as `YYYYMMDDTHH:MM:SSZ`.
    pub snapshot_time: String,
    /// snapshot_of (an OpaqueRef or "").
    pub snapshot_of: String,
    /// cbt_enabled.
    pub cbt_enabled: bool,
}

impl VdiIntroduce {
    /// A record with the defaults sm uses for a new user VDI.
    pub fn new(uuid: &str, sr_ref: &str, location: &str) -> VdiIntroduce {
        VdiIntroduce {
            uuid: uuid.to_string(),
            name_label: String::new(),
            name_description: String::new(),
            sr_ref: sr_ref.to_string(),
            ty: "user".into(),
            sharable: false,
            read_only: false,
            other_config: BTreeMap::new(),
            location: location.to_string(),
            xenstore_data: BTreeMap::new(),
            sm_config: BTreeMap::new(),
            managed: true,
            virtual_size: 0,
            physical_utilisation: 0,
            metadata_of_pool: String::new(),
            is_a_snapshot: false,
            snapshot_time: "19700101T00:00:00Z".into(),
            snapshot_of: String::new(),
            cbt_enabled: false,
        }
    }
}

/// A XenAPI client bound to one session reference.
pub struct XenApi {
    transport: Mutex<Transport>,
    session: Secret,
}

impl std::fmt::Debug for XenApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XenApi")
            .field("session", &self.session)
            .finish()
    }
}

fn s(v: impl Into<String>) -> Value {
    Value::Str(v.into())
}

fn map_value(m: &BTreeMap<String, String>) -> Value {
    Value::string_map(m.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

impl XenApi {
    /// A client using `session` (never logged out) at `endpoint`.
    pub fn new(endpoint: Endpoint, session: Secret, subtask_of: Option<&str>) -> XenApi {
        let mut t = Transport::new(endpoint, CALL_TIMEOUT);
        if let Some(task) = subtask_of.filter(|t| !t.is_empty()) {
            t.add_header("Subtask-of", task);
        }
        let originator = std::env::var("ORIGINATOR").unwrap_or_else(|_| "SM".into());
        t.add_header("originator", &originator);
        XenApi {
            transport: Mutex::new(t),
            session,
        }
    }

    /// Calls `method(session, args...)` and unwraps the XenAPI envelope.
    pub fn call(&self, method: &str, args: &[Value]) -> XResult<Value> {
        let mut params = Vec::with_capacity(args.len() + 1);
        params.push(Value::Str(self.session.expose().to_string()));
        params.extend_from_slice(args);
        self.call_raw(method, &params)
    }

    /// Calls `method(params...)` without prepending the session (login, etc.).
    pub fn call_raw(&self, method: &str, params: &[Value]) -> XResult<Value> {
        let body = xmlrpc::write_call(method, params, StringStyle::Typed);
        let started = std::time::Instant::now();
        let reply = {
            let mut t = self.transport.lock().unwrap_or_else(|p| p.into_inner());
            t.post(&body)?
        };
        let proto = |reason: String| XenApiError::Protocol {
            method: method.into(),
            reason,
        };
        let v = match xmlrpc::parse_method_response(&reply).map_err(|e| proto(e.to_string()))? {
            MethodResponse::Success(v) => v,
            MethodResponse::Fault { code, string } => {
                return Err(proto(format!("fault {code}: {string}")));
            }
        };
        let m = v
            .as_struct()
            .ok_or_else(|| proto("result is not a struct".into()))?;
        let status = m.get("Status").map(Value::to_text).unwrap_or_default();
        tracing::debug!(method, ms = started.elapsed().as_millis() as u64, %status, "xenapi");
        match status.as_str() {
            "Success" => Ok(m.get("Value").cloned().unwrap_or(Value::Nil)),
            "Failure" => Err(XenApiError::Failure {
                method: method.into(),
                description: m
                    .get("ErrorDescription")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().map(Value::to_text).collect())
                    .unwrap_or_default(),
            }),
            other => Err(proto(format!("unknown Status {other:?}"))),
        }
    }

    fn call_str(&self, method: &str, args: &[Value]) -> XResult<String> {
        Ok(self.call(method, args)?.to_text())
    }

    fn call_map(&self, method: &str, args: &[Value]) -> XResult<BTreeMap<String, String>> {
        let v = self.call(method, args)?;
        v.to_string_map().ok_or_else(|| XenApiError::Protocol {
            method: method.into(),
            reason: "expected a map".into(),
        })
    }

    fn call_unit(&self, method: &str, args: &[Value]) -> XResult<()> {
        self.call(method, args).map(|_| ())
    }

    /// `SR.get_by_uuid`.
    pub fn sr_get_by_uuid(&self, uuid: &str) -> XResult<String> {
        self.call_str("SR.get_by_uuid", &[s(uuid)])
    }

    /// `SR.get_sm_config`.
    pub fn sr_get_sm_config(&self, sr: &str) -> XResult<BTreeMap<String, String>> {
        self.call_map("SR.get_sm_config", &[s(sr)])
    }

    /// `SR.get_other_config`.
    pub fn sr_get_other_config(&self, sr: &str) -> XResult<BTreeMap<String, String>> {
        self.call_map("SR.get_other_config", &[s(sr)])
    }

    /// `SR.add_to_sm_config` (removing an existing key first, as sm does).
    pub fn sr_set_sm_config_key(&self, sr: &str, k: &str, v: &str) -> XResult<()> {
        let _ = self.call_unit("SR.remove_from_sm_config", &[s(sr), s(k)]);
        self.call_unit("SR.add_to_sm_config", &[s(sr), s(k), s(v)])
    }

    /// `SR.set_physical_size`, `SR.set_physical_utilisation` and `SR.set_virtual_allocation`.
    pub fn sr_set_sizes(
        &self,
        sr: &str,
        physical_size: u64,
        physical_utilisation: u64,
        virtual_allocation: u64,
    ) -> XResult<()> {
        self.call_unit(
            "SR.set_physical_size",
            &[s(sr), s(physical_size.to_string())],
        )?;
        self.call_unit(
            "SR.set_physical_utilisation",
            &[s(sr), s(physical_utilisation.to_string())],
        )?;
        self.call_unit(
            "SR.set_virtual_allocation",
            &[s(sr), s(virtual_allocation.to_string())],
        )
    }

    /// `VDI.get_all_records_where('field "SR" = "<sr>"')`: every VDI record of the SR.
    pub fn vdi_records_of_sr(&self, sr: &str) -> XResult<Vec<VdiRecord>> {
        let expr = format!("field \"SR\" = \"{sr}\"");
        let v = self.call("VDI.get_all_records_where", &[s(expr)])?;
        let m = v.as_struct().ok_or_else(|| XenApiError::Protocol {
            method: "VDI.get_all_records_where".into(),
            reason: "expected a map".into(),
        })?;
        Ok(m.iter()
            .filter_map(|(r, rec)| rec.as_struct().map(|rec| VdiRecord::from_struct(r, rec)))
            .collect())
    }

    /// `VDI.get_by_uuid`.
    pub fn vdi_get_by_uuid(&self, uuid: &str) -> XResult<String> {
        self.call_str("VDI.get_by_uuid", &[s(uuid)])
    }

    /// `VDI.get_record`.
    pub fn vdi_get_record(&self, vdi: &str) -> XResult<VdiRecord> {
        let v = self.call("VDI.get_record", &[s(vdi)])?;
        let m = v.as_struct().ok_or_else(|| XenApiError::Protocol {
            method: "VDI.get_record".into(),
            reason: "expected a struct".into(),
        })?;
        Ok(VdiRecord::from_struct(vdi, m))
    }

    /// `VDI.db_introduce`: registers a VDI record; returns its OpaqueRef.
    pub fn vdi_db_introduce(&self, r: &VdiIntroduce) -> XResult<String> {
        let args = [
            s(&r.uuid),
            s(&r.name_label),
            s(&r.name_description),
            s(&r.sr_ref),
            s(&r.ty),
            Value::Bool(r.sharable),
            Value::Bool(r.read_only),
            map_value(&r.other_config),
            s(&r.location),
            map_value(&r.xenstore_data),
            map_value(&r.sm_config),
            Value::Bool(r.managed),
            s(r.virtual_size.to_string()),
            s(r.physical_utilisation.to_string()),
            s(&r.metadata_of_pool),
            Value::Bool(r.is_a_snapshot),
            Value::DateTime(r.snapshot_time.clone()),
            s(&r.snapshot_of),
            Value::Bool(r.cbt_enabled),
        ];
        self.call_str("VDI.db_introduce", &args)
    }

    /// `VDI.db_forget`.
    pub fn vdi_db_forget(&self, vdi: &str) -> XResult<()> {
        self.call_unit("VDI.db_forget", &[s(vdi)])
    }

    /// `VDI.set_virtual_size`.
    pub fn vdi_set_virtual_size(&self, vdi: &str, bytes: u64) -> XResult<()> {
        self.call_unit("VDI.set_virtual_size", &[s(vdi), s(bytes.to_string())])
    }

    /// `VDI.set_physical_utilisation`.
    pub fn vdi_set_physical_utilisation(&self, vdi: &str, bytes: u64) -> XResult<()> {
        self.call_unit(
            "VDI.set_physical_utilisation",
            &[s(vdi), s(bytes.to_string())],
        )
    }

    /// `VDI.set_read_only`.
    pub fn vdi_set_read_only(&self, vdi: &str, ro: bool) -> XResult<()> {
        self.call_unit("VDI.set_read_only", &[s(vdi), Value::Bool(ro)])
    }

    /// `VDI.set_managed`.
    pub fn vdi_set_managed(&self, vdi: &str, managed: bool) -> XResult<()> {
        self.call_unit("VDI.set_managed", &[s(vdi), Value::Bool(managed)])
    }

    /// `VDI.set_sm_config` (the whole map).
    pub fn vdi_set_sm_config(&self, vdi: &str, m: &BTreeMap<String, String>) -> XResult<()> {
        self.call_unit("VDI.set_sm_config", &[s(vdi), map_value(m)])
    }

    /// `VDI.add_to_sm_config` after removing the key.
    pub fn vdi_set_sm_config_key(&self, vdi: &str, k: &str, v: &str) -> XResult<()> {
        let _ = self.call_unit("VDI.remove_from_sm_config", &[s(vdi), s(k)]);
        self.call_unit("VDI.add_to_sm_config", &[s(vdi), s(k), s(v)])
    }

    /// `VDI.get_sm_config`.
    pub fn vdi_get_sm_config(&self, vdi: &str) -> XResult<BTreeMap<String, String>> {
        self.call_map("VDI.get_sm_config", &[s(vdi)])
    }

    /// `VDI.add_to_sm_config` without removing first: fails with `MAP_DUPLICATE_KEY` when the key
    /// exists, which makes it a pool-wide test-and-set (sm's `activating` protocol).
    pub fn vdi_add_to_sm_config(&self, vdi: &str, k: &str, v: &str) -> XResult<()> {
        self.call_unit("VDI.add_to_sm_config", &[s(vdi), s(k), s(v)])
    }

    /// `VDI.remove_from_sm_config`.
    pub fn vdi_remove_sm_config_key(&self, vdi: &str, k: &str) -> XResult<()> {
        self.call_unit("VDI.remove_from_sm_config", &[s(vdi), s(k)])
    }

    /// `host.get_other_config` (iscsi_iqn, multipathing, ...).
    pub fn host_get_other_config(&self, host: &str) -> XResult<BTreeMap<String, String>> {
        self.call_map("host.get_other_config", &[s(host)])
    }

    /// `host.get_uuid`.
    pub fn host_get_uuid(&self, host: &str) -> XResult<String> {
        self.call_str("host.get_uuid", &[s(host)])
    }

    /// `host.get_name_label`.
    pub fn host_get_name_label(&self, host: &str) -> XResult<String> {
        self.call_str("host.get_name_label", &[s(host)])
    }

    /// `host.get_all`: every host in the pool.
    pub fn host_get_all(&self) -> XResult<Vec<String>> {
        let v = self.call("host.get_all", &[])?;
        Ok(v.as_array()
            .map(|a| a.iter().map(Value::to_text).collect())
            .unwrap_or_default())
    }

    /// Whether xapi considers the host live (`host.get_metrics`, `host_metrics.get_live`).
    pub fn host_is_live(&self, host: &str) -> XResult<bool> {
        let metrics = self.call_str("host.get_metrics", &[s(host)])?;
        self.host_metrics_live(&metrics)
    }

    /// `host_metrics.get_live` of a host_metrics record.
    pub fn host_metrics_live(&self, metrics: &str) -> XResult<bool> {
        match self.call("host_metrics.get_live", &[s(metrics)])? {
            Value::Bool(b) => Ok(b),
            v => Ok(v.to_text() == "true"),
        }
    }

    /// `host.get_all_records`: every host of the pool in one round trip.
    pub fn host_get_all_records(&self) -> XResult<Vec<HostRecord>> {
        let v = self.call("host.get_all_records", &[])?;
        let m = v.as_struct().ok_or_else(|| XenApiError::Protocol {
            method: "host.get_all_records".into(),
            reason: "expected a struct".into(),
        })?;
        Ok(m.iter()
            .filter_map(|(r, rec)| rec.as_struct().map(|rec| HostRecord::from_struct(r, rec)))
            .collect())
    }

    /// The value of a secret by its uuid (`secret.get_by_uuid`, `secret.get_value`).
    pub fn secret_value(&self, uuid: &str) -> XResult<Secret> {
        let r = self.call_str("secret.get_by_uuid", &[s(uuid)])?;
        Ok(Secret::new(self.call_str("secret.get_value", &[s(r)])?))
    }

    /// The PBD connecting `host` to `sr`, if any.
    pub fn pbd_of(&self, host: &str, sr: &str) -> XResult<Option<String>> {
        let expr = format!("field \"host\" = \"{host}\" and field \"SR\" = \"{sr}\"");
        let v = self.call("PBD.get_all_records_where", &[s(expr)])?;
        Ok(v.as_struct().and_then(|m| m.keys().next().cloned()))
    }

    /// `PBD.add_to_other_config` after removing the key.
    pub fn pbd_set_other_config_key(&self, pbd: &str, k: &str, v: &str) -> XResult<()> {
        let _ = self.call_unit("PBD.remove_from_other_config", &[s(pbd), s(k)]);
        self.call_unit("PBD.add_to_other_config", &[s(pbd), s(k), s(v)])
    }

    /// `PBD.remove_from_other_config` (no error when the key is absent).
    pub fn pbd_remove_other_config_key(&self, pbd: &str, k: &str) -> XResult<()> {
        self.call_unit("PBD.remove_from_other_config", &[s(pbd), s(k)])
    }

    /// `PBD.get_other_config`.
    pub fn pbd_get_other_config(&self, pbd: &str) -> XResult<BTreeMap<String, String>> {
        self.call_map("PBD.get_other_config", &[s(pbd)])
    }

    /// `task.set_progress` (0.0 ..= 1.0); failures are ignored by callers that only report.
    pub fn task_set_progress(&self, task: &str, progress: f64) -> XResult<()> {
        self.call_unit("task.set_progress", &[s(task), Value::Double(progress)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::os::unix::net::UnixListener;

    /// A one-thread fake xapi that answers each request with the next canned body and records
    /// what it was sent.
    fn fake_xapi(
        replies: Vec<String>,
    ) -> (
        tempfile::TempDir,
        std::path::PathBuf,
        std::thread::JoinHandle<Vec<(String, String)>>,
    ) {
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("xapi");
        let l = UnixListener::bind(&sock).unwrap();
        let h = std::thread::spawn(move || {
            let (c, _) = l.accept().unwrap();
            let mut r = BufReader::new(c);
            let mut seen = Vec::new();
            for reply in replies {
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    r.read_line(&mut line).unwrap();
                    head.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap();
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                seen.push((head, String::from_utf8(body).unwrap()));
                let w = r.get_mut();
                write!(
                    w,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}",
                    reply.len(),
                    reply
                )
                .unwrap();
            }
            seen
        });
        (d, sock, h)
    }

    fn ok(v: &Value) -> String {
        let mut m = Struct::new();
        m.insert("Status".into(), Value::Str("Success".into()));
        m.insert("Value".into(), v.clone());
        xmlrpc::write_response(&Value::Struct(m))
    }

    #[test]
    fn unwraps_success_and_failure_over_keepalive() {
        let mut fail = Struct::new();
        fail.insert("Status".into(), Value::Str("Failure".into()));
        fail.insert(
            "ErrorDescription".into(),
            Value::Array(vec![
                Value::Str("UUID_INVALID".into()),
                Value::Str("SR".into()),
            ]),
        );
        let (_d, sock, h) = fake_xapi(vec![
            ok(&Value::Str("OpaqueRef:sr1".into())),
            xmlrpc::write_response(&Value::Struct(fail)),
        ]);
        let x = XenApi::new(
            Endpoint::Unix(sock),
            Secret::new("OpaqueRef:session"),
            Some("OpaqueRef:task"),
        );
        assert_eq!(x.sr_get_by_uuid("u").unwrap(), "OpaqueRef:sr1");
        let err = x.sr_get_by_uuid("bad").unwrap_err();
        assert_eq!(err.error_name(), Some("UUID_INVALID"));
        assert_eq!(SmError::from(err).code, SmCode::APIFailure);
        let seen = h.join().unwrap();
        assert!(seen[0].0.contains("Subtask-of: OpaqueRef:task"));
        assert!(
            seen[0]
                .1
                .contains("<methodName>SR.get_by_uuid</methodName>")
        );
        assert!(seen[0].1.contains("OpaqueRef:session"));
    }

    #[test]
    fn db_introduce_sends_nineteen_positional_args() {
        let (_d, sock, h) = fake_xapi(vec![ok(&Value::Str("OpaqueRef:v".into()))]);
        let x = XenApi::new(Endpoint::Unix(sock), Secret::new("S"), None);
        let mut r = VdiIntroduce::new("u", "OpaqueRef:sr", "loc");
        r.virtual_size = 1 << 30;
        assert_eq!(x.vdi_db_introduce(&r).unwrap(), "OpaqueRef:v");
        let seen = h.join().unwrap();
        let call = xmlrpc::parse_method_call(&seen[0].1).unwrap();
        assert_eq!(call.params.len(), 20);
        assert_eq!(call.params[13], Value::Str("1073741824".into()));
        assert_eq!(
            call.params[17],
            Value::DateTime("19700101T00:00:00Z".into())
        );
    }

    #[test]
    fn unreachable_is_api_session_error() {
        let x = XenApi::new(
            Endpoint::Unix("/nonexistent/xapi".into()),
            Secret::new("S"),
            None,
        );
        let e = x.host_get_all().unwrap_err();
        assert_eq!(e.sm_code(), SmCode::APISession);
    }

    #[test]
    fn garbage_reply_is_protocol_error() {
        let (_d, sock, _h) = fake_xapi(vec!["<notxml".into()]);
        let x = XenApi::new(Endpoint::Unix(sock), Secret::new("S"), None);
        assert_eq!(
            x.host_get_all().unwrap_err().sm_code(),
            SmCode::APIProtocolError
        );
    }

    #[test]
    fn client_is_send_and_sync() {
        fn f<T: Send + Sync>() {}
        f::<XenApi>();
    }
}
