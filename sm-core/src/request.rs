//! argv[1] -> a typed [`Request`] holding every key xapi sends (sm-anchor §1.2).

use std::collections::BTreeMap;
use std::fmt;

use crate::errors::{SmCode, SmError, SmResult};
use crate::secret::{Secret, is_secret_key};
use crate::xmlrpc::{self, Value};

/// Every SMAPI command a plugin can receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum Command {
    SrGetDriverInfo,
    SrCreate,
    SrDelete,
    SrAttach,
    SrDetach,
    SrScan,
    SrProbe,
    SrUpdate,
    SrContentType,
    VdiCreate,
    VdiDelete,
    VdiAttach,
    VdiDetach,
    VdiActivate,
    VdiDeactivate,
    VdiSnapshot,
    VdiClone,
    VdiResize,
    VdiUpdate,
    VdiIntroduce,
    VdiGenerateConfig,
    VdiAttachFromConfig,
    VdiDetachFromConfig,
    VdiEpochBegin,
    VdiEpochEnd,
}

impl Command {
    /// Every command, in SMAPI order.
    pub const ALL: &'static [Command] = &[
        Command::SrGetDriverInfo,
        Command::SrCreate,
        Command::SrDelete,
        Command::SrAttach,
        Command::SrDetach,
        Command::SrScan,
        Command::SrProbe,
        Command::SrUpdate,
        Command::SrContentType,
        Command::VdiCreate,
        Command::VdiDelete,
        Command::VdiAttach,
        Command::VdiDetach,
        Command::VdiActivate,
        Command::VdiDeactivate,
        Command::VdiSnapshot,
        Command::VdiClone,
        Command::VdiResize,
        Command::VdiUpdate,
        Command::VdiIntroduce,
        Command::VdiGenerateConfig,
        Command::VdiAttachFromConfig,
        Command::VdiDetachFromConfig,
        Command::VdiEpochBegin,
        Command::VdiEpochEnd,
    ];

    /// The wire name (`sr_attach`).
    pub fn as_str(self) -> &'static str {
        match self {
            Command::SrGetDriverInfo => "sr_get_driver_info",
            Command::SrCreate => "sr_create",
            Command::SrDelete => "sr_delete",
            Command::SrAttach => "sr_attach",
            Command::SrDetach => "sr_detach",
            Command::SrScan => "sr_scan",
            Command::SrProbe => "sr_probe",
            Command::SrUpdate => "sr_update",
            Command::SrContentType => "sr_content_type",
            Command::VdiCreate => "vdi_create",
            Command::VdiDelete => "vdi_delete",
            Command::VdiAttach => "vdi_attach",
            Command::VdiDetach => "vdi_detach",
            Command::VdiActivate => "vdi_activate",
            Command::VdiDeactivate => "vdi_deactivate",
            Command::VdiSnapshot => "vdi_snapshot",
            Command::VdiClone => "vdi_clone",
            Command::VdiResize => "vdi_resize",
            Command::VdiUpdate => "vdi_update",
            Command::VdiIntroduce => "vdi_introduce",
            Command::VdiGenerateConfig => "vdi_generate_config",
            Command::VdiAttachFromConfig => "vdi_attach_from_config",
            Command::VdiDetachFromConfig => "vdi_detach_from_config",
            Command::VdiEpochBegin => "vdi_epoch_begin",
            Command::VdiEpochEnd => "vdi_epoch_end",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Command> {
        Command::ALL.iter().copied().find(|c| c.as_str() == s)
    }

    /// Whether this is a VDI-level command.
    pub fn is_vdi(self) -> bool {
        self.as_str().starts_with("vdi_")
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// device_config: string keys and values, secrets masked whenever printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DeviceConfig(BTreeMap<String, String>);

impl DeviceConfig {
    /// Wraps a map.
    pub fn new(m: BTreeMap<String, String>) -> DeviceConfig {
        DeviceConfig(m)
    }

    /// A value, if present (empty strings count as present).
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    /// A value that is present and not empty.
    pub fn get_nonempty(&self, k: &str) -> Option<&str> {
        self.get(k).filter(|v| !v.trim().is_empty())
    }

    /// A required value; missing or empty gives fault `code` (the matching Config*Missing).
    pub fn require(&self, k: &str, code: SmCode) -> SmResult<&str> {
        self.get_nonempty(k)
            .ok_or_else(|| SmError::msg(code, format!("device_config has no {k}")))
    }

    /// A secret value, kept masked.
    pub fn secret(&self, k: &str) -> Option<Secret> {
        self.get(k).map(Secret::new)
    }

    /// Whether `SRmaster` is "true".
    pub fn is_master(&self) -> bool {
        self.get("SRmaster") == Some("true")
    }

    /// The raw map.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// Inserts or replaces a key (drivers building derived configs, e.g. generate_config).
    pub fn insert(&mut self, k: impl Into<String>, v: impl Into<String>) {
        self.0.insert(k.into(), v.into());
    }

    /// Rejects control characters anywhere (fault 2 BadCharacter): they cannot be part of a
    /// device path, IQN or address, and would corrupt tool argv and logs.
    pub fn validate(&self) -> SmResult<()> {
        for (k, v) in &self.0 {
            if k.chars().chain(v.chars()).any(|c| c.is_control()) {
                let shown = if is_secret_key(k) {
                    Secret::MASK.to_string()
                } else {
                    format!("{v:?}")
                };
                return Err(SmError::msg(
                    SmCode::BadCharacter,
                    format!("device_config {k}={shown}"),
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Debug for DeviceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in &self.0 {
            if is_secret_key(k) {
                m.entry(k, &Secret::MASK);
            } else {
                m.entry(k, v);
            }
        }
        m.finish()
    }
}

/// One SMAPI call as received from xapi.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// The command (`methodName`, equal to the `command` key).
    pub command: Option<Command>,
    /// The wire name, also when unknown.
    pub command_name: String,
    /// `host_ref`: the local host's OpaqueRef.
    pub host_ref: String,
    /// `args`: per-command positional strings.
    pub args: Vec<String>,
    /// `device_config` (with `SRmaster`).
    pub device_config: DeviceConfig,
    /// `session_ref` (absent for driver_info and attach_from_config).
    pub session_ref: Option<Secret>,
    /// `sr_ref`.
    pub sr_ref: Option<String>,
    /// `sr_uuid`.
    pub sr_uuid: Option<String>,
    /// `vdi_ref`.
    pub vdi_ref: Option<String>,
    /// `vdi_location`.
    pub vdi_location: Option<String>,
    /// `vdi_uuid`.
    pub vdi_uuid: Option<String>,
    /// `vdi_type` (vdi_create).
    pub vdi_type: Option<String>,
    /// `vdi_sm_config` (vdi_create, vdi_introduce).
    pub vdi_sm_config: BTreeMap<String, String>,
    /// `new_uuid` (vdi_introduce).
    pub new_uuid: Option<String>,
    /// `driver_params` (snapshot/clone).
    pub driver_params: BTreeMap<String, String>,
    /// `vdi_on_boot`: `persist` or `reset`.
    pub vdi_on_boot: Option<String>,
    /// `vdi_allow_caching`.
    pub vdi_allow_caching: Option<String>,
    /// `sr_sm_config` (sr_probe).
    pub sr_sm_config: BTreeMap<String, String>,
    /// `subtask_of`: task OpaqueRef, forwarded as the `Subtask-of` header.
    pub subtask_of: Option<String>,
    /// `local_cache_sr`.
    pub local_cache_sr: Option<String>,
}

fn bad(detail: impl Into<String>) -> SmError {
    SmError::msg(SmCode::BadRequest, detail)
}

fn opt_string(m: &xmlrpc::Struct, k: &str) -> SmResult<Option<String>> {
    match m.get(k) {
        None | Some(Value::Nil) => Ok(None),
        Some(Value::Str(s)) => Ok(Some(s.clone())),
        Some(
            Value::Int(_) | Value::I8(_) | Value::Bool(_) | Value::Double(_) | Value::DateTime(_),
        ) => Ok(m.get(k).map(Value::to_text)),
        Some(_) => Err(bad(format!("{k} must be a string"))),
    }
}

fn opt_map(m: &xmlrpc::Struct, k: &str) -> SmResult<BTreeMap<String, String>> {
    match m.get(k) {
        None | Some(Value::Nil) => Ok(BTreeMap::new()),
        Some(Value::Struct(inner)) => inner
            .iter()
            .map(|(ik, iv)| match iv {
                Value::Struct(_) | Value::Array(_) => {
                    Err(bad(format!("{k}.{ik} must be a string")))
                }
                v => Ok((ik.clone(), v.to_text())),
            })
            .collect(),
        Some(_) => Err(bad(format!("{k} must be a struct"))),
    }
}

impl Request {
    /// Parses argv[1].
    pub fn parse(xml: &str) -> SmResult<Request> {
        let call =
            xmlrpc::parse_method_call(xml).map_err(|e| SmError::new(SmCode::BadRequest, e))?;
        let [Value::Struct(m)] = call.params.as_slice() else {
            return Err(bad("the methodCall must have exactly one struct parameter"));
        };
        let name = match opt_string(m, "command")? {
            Some(c) if c != call.name => {
                return Err(bad(format!(
                    "command {c:?} differs from methodName {:?}",
                    call.name
                )));
            }
            _ => call.name.clone(),
        };
        let args = match m.get("args") {
            None | Some(Value::Nil) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| match v {
                    Value::Struct(_) | Value::Array(_) => Err(bad("args must be strings")),
                    v => Ok(v.to_text()),
                })
                .collect::<SmResult<_>>()?,
            Some(_) => return Err(bad("args must be an array")),
        };
        Ok(Request {
            command: Command::parse(&name),
            command_name: name,
            host_ref: opt_string(m, "host_ref")?.unwrap_or_default(),
            args,
            device_config: DeviceConfig::new(opt_map(m, "device_config")?),
            session_ref: opt_string(m, "session_ref")?.map(Secret::new),
            sr_ref: opt_string(m, "sr_ref")?,
            sr_uuid: opt_string(m, "sr_uuid")?,
            vdi_ref: opt_string(m, "vdi_ref")?,
            vdi_location: opt_string(m, "vdi_location")?,
            vdi_uuid: opt_string(m, "vdi_uuid")?,
            vdi_type: opt_string(m, "vdi_type")?,
            vdi_sm_config: opt_map(m, "vdi_sm_config")?,
            new_uuid: opt_string(m, "new_uuid")?,
            driver_params: opt_map(m, "driver_params")?,
            vdi_on_boot: opt_string(m, "vdi_on_boot")?,
            vdi_allow_caching: opt_string(m, "vdi_allow_caching")?,
            sr_sm_config: opt_map(m, "sr_sm_config")?,
            subtask_of: opt_string(m, "subtask_of")?,
            local_cache_sr: opt_string(m, "local_cache_sr")?,
        })
    }

    /// Positional argument `i`, or fault 143 naming it.
    pub fn arg(&self, i: usize, what: &str) -> SmResult<&str> {
        self.args
            .get(i)
            .map(String::as_str)
            .ok_or_else(|| bad(format!("missing argument {i} ({what})")))
    }

    /// A boolean positional argument ("true"/"false").
    pub fn arg_bool(&self, i: usize, what: &str) -> SmResult<bool> {
        match self.arg(i, what)? {
            "true" | "True" | "1" => Ok(true),
            "false" | "False" | "0" | "" => Ok(false),
            other => Err(bad(format!(
                "argument {i} ({what}) must be true or false, not {other:?}"
            ))),
        }
    }

    /// A size positional argument in bytes.
    pub fn arg_size(&self, i: usize, what: &str) -> SmResult<u64> {
        let a = self.arg(i, what)?;
        a.trim().parse().map_err(|_| {
            SmError::msg(
                SmCode::VDISize,
                format!("{what} {a:?} is not a size in bytes"),
            )
        })
    }

    /// One line for SMlog: the command and its parameters, secrets masked.
    pub fn log_line(&self) -> String {
        format!(
            "{} sr={} vdi={} args={:?} device_config={:?}",
            self.command_name,
            self.sr_uuid.as_deref().unwrap_or("-"),
            self.vdi_uuid.as_deref().unwrap_or("-"),
            self.args,
            self.device_config
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped on what xapi sends for vdi_attach (sm-anchor §1.2): untyped strings, every key.
    pub const VDI_ATTACH: &str = "<?xml version=\"1.0\"?><methodCall><methodName>vdi_attach</methodName><params><param><value><struct>\
        <member><name>host_ref</name><value>OpaqueRef:h1</value></member>\
        <member><name>command</name><value>vdi_attach</value></member>\
        <member><name>args</name><value><array><data><value>true</value></data></array></value></member>\
        <member><name>device_config</name><value><struct><member><name>SRmaster</name><value>true</value></member><member><name>chappassword</name><value>pw</value></member><member><name>location</name><value>/srv/sr</value></member></struct></value></member>\
        <member><name>session_ref</name><value>OpaqueRef:s1</value></member>\
        <member><name>sr_ref</name><value>OpaqueRef:sr1</value></member>\
        <member><name>sr_uuid</name><value>7f0e1c3a-1b2c-4d5e-8f90-a1b2c3d4e5f6</value></member>\
        <member><name>vdi_ref</name><value>OpaqueRef:v1</value></member>\
        <member><name>vdi_location</name><value>0a1b2c3d-0000-4000-8000-000000000001</value></member>\
        <member><name>vdi_uuid</name><value>0a1b2c3d-0000-4000-8000-000000000001</value></member>\
        <member><name>vdi_on_boot</name><value>persist</value></member>\
        <member><name>vdi_allow_caching</name><value>false</value></member>\
        <member><name>subtask_of</name><value>OpaqueRef:t1</value></member>\
        </struct></value></param></params></methodCall>";

    #[test]
    fn parses_every_key() {
        let r = Request::parse(VDI_ATTACH).unwrap();
        assert_eq!(r.command, Some(Command::VdiAttach));
        assert_eq!(r.args, vec!["true"]);
        assert!(r.arg_bool(0, "writable").unwrap());
        assert!(r.device_config.is_master());
        assert_eq!(r.session_ref.as_ref().unwrap().expose(), "OpaqueRef:s1");
        assert_eq!(
            r.sr_uuid.as_deref(),
            Some("7f0e1c3a-1b2c-4d5e-8f90-a1b2c3d4e5f6")
        );
        assert_eq!(r.vdi_on_boot.as_deref(), Some("persist"));
        assert_eq!(r.subtask_of.as_deref(), Some("OpaqueRef:t1"));
    }

    #[test]
    fn log_line_masks_secrets() {
        let r = Request::parse(VDI_ATTACH).unwrap();
        let line = r.log_line();
        assert!(!line.contains("pw\""), "{line}");
        assert!(!line.contains("OpaqueRef:s1"), "{line}");
        assert!(line.contains("\"chappassword\": \"***\""), "{line}");
    }

    #[test]
    fn bad_shapes_are_bad_request() {
        for xml in [
            "garbage",
            "<methodCall><methodName>sr_scan</methodName><params></params></methodCall>",
            "<methodCall><methodName>sr_scan</methodName><params><param><value>x</value></param></params></methodCall>",
            "<methodCall><methodName>sr_scan</methodName><params><param><value><struct><member><name>command</name><value>sr_attach</value></member></struct></value></param></params></methodCall>",
            "<methodCall><methodName>sr_scan</methodName><params><param><value><struct><member><name>args</name><value>x</value></member></struct></value></param></params></methodCall>",
        ] {
            assert_eq!(
                Request::parse(xml).unwrap_err().code,
                SmCode::BadRequest,
                "{xml}"
            );
        }
    }

    #[test]
    fn unknown_command_is_kept() {
        let r = Request::parse("<methodCall><methodName>vdi_frobnicate</methodName><params><param><value><struct/></value></param></params></methodCall>").unwrap();
        assert_eq!(r.command, None);
        assert_eq!(r.command_name, "vdi_frobnicate");
    }

    #[test]
    fn control_characters_are_bad_character() {
        let mut m = BTreeMap::new();
        m.insert("device".to_string(), "/dev/sdb\n/dev/sdc".to_string());
        let e = DeviceConfig::new(m).validate().unwrap_err();
        assert_eq!(e.code, SmCode::BadCharacter);
    }
}
