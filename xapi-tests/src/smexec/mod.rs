//! SM execution as xapi's `sm_exec` does it: the methodCall with every key and untyped strings,
//! the plugin's environment, and the mapping of results, faults and exit statuses to XenAPI
//! errors (sm-anchor §1.2–1.4).

pub mod executor;
pub mod registry;

use std::collections::BTreeMap;
use std::time::Duration;

use sm_core::xmlrpc::{self, MethodResponse, StringStyle, Struct, Value};

use crate::error::{ApiError, names};
pub use executor::{ExecError, ExecOutput, Executor};
pub use registry::{Driver, Registry};

/// `PATH` xapi gives plugins (forkexecd's default path).
pub const PLUGIN_PATH: &str = "/sbin:/usr/sbin:/bin:/usr/bin";

/// Environment variables passed through from the emulator's own environment to plugins when set
/// (test knobs from docs/conventions.md; production xapi sets none of them).
pub const PASS_THROUGH_ENV: &[&str] = &["SMLOG_LEVEL", "SM_TOOL_DIRS", "SM_LOCK_TIMEOUT"];

/// One SMAPI call as `Sm_exec.make_call` builds it. Optional keys are sent only when set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SmCall {
    /// The command (`sr_attach`).
    pub command: String,
    /// The executing host's ref.
    pub host_ref: String,
    /// Positional arguments.
    pub args: Vec<String>,
    /// PBD device_config plus `SRmaster`.
    pub device_config: BTreeMap<String, String>,
    /// The SM session (filled at the last minute).
    pub session_ref: Option<String>,
    /// `sr_sm_config` (sr_probe).
    pub sr_sm_config: Option<BTreeMap<String, String>>,
    /// SR ref.
    pub sr_ref: Option<String>,
    /// SR uuid.
    pub sr_uuid: Option<String>,
    /// `vdi_type` (vdi_create).
    pub vdi_type: Option<String>,
    /// VDI ref.
    pub vdi_ref: Option<String>,
    /// VDI location.
    pub vdi_location: Option<String>,
    /// VDI uuid.
    pub vdi_uuid: Option<String>,
    /// `driver_params` (snapshot/clone).
    pub driver_params: Option<BTreeMap<String, String>>,
    /// `vdi_sm_config` (create/introduce).
    pub vdi_sm_config: Option<BTreeMap<String, String>>,
    /// `new_uuid` (introduce).
    pub new_uuid: Option<String>,
    /// `subtask_of`: the task ref.
    pub subtask_of: Option<String>,
    /// `vdi_on_boot`.
    pub vdi_on_boot: Option<String>,
    /// `vdi_allow_caching`.
    pub vdi_allow_caching: Option<String>,
}

fn map(m: &BTreeMap<String, String>) -> Value {
    Value::string_map(m.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

impl SmCall {
    /// A call of `command` on `host_ref` with `args`.
    pub fn new(command: &str, host_ref: &str, args: Vec<String>) -> SmCall {
        SmCall {
            command: command.into(),
            host_ref: host_ref.into(),
            args,
            ..SmCall::default()
        }
    }

    /// The single struct parameter.
    pub fn to_value(&self) -> Value {
        let mut m = Struct::new();
        let s = |v: &str| Value::Str(v.to_string());
        m.insert("host_ref".into(), s(&self.host_ref));
        m.insert("command".into(), s(&self.command));
        m.insert(
            "args".into(),
            Value::Array(self.args.iter().map(|a| s(a)).collect()),
        );
        m.insert("device_config".into(), map(&self.device_config));
        let opt_s = [
            ("session_ref", &self.session_ref),
            ("sr_ref", &self.sr_ref),
            ("vdi_type", &self.vdi_type),
            ("sr_uuid", &self.sr_uuid),
            ("vdi_ref", &self.vdi_ref),
            ("vdi_location", &self.vdi_location),
            ("vdi_uuid", &self.vdi_uuid),
            ("new_uuid", &self.new_uuid),
            ("subtask_of", &self.subtask_of),
            ("vdi_on_boot", &self.vdi_on_boot),
            ("vdi_allow_caching", &self.vdi_allow_caching),
        ];
        for (k, v) in opt_s {
            if let Some(v) = v {
                m.insert(k.into(), s(v));
            }
        }
        for (k, v) in [
            ("sr_sm_config", &self.sr_sm_config),
            ("driver_params", &self.driver_params),
            ("vdi_sm_config", &self.vdi_sm_config),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), map(v));
            }
        }
        Value::Struct(m)
    }

    /// argv[1]: the methodCall, strings untyped as ocaml-rpc writes them.
    pub fn to_xml(&self) -> String {
        xmlrpc::write_call(&self.command, &[self.to_value()], StringStyle::Untyped)
    }
}

/// The argv that runs `plugin` with `xml` in exactly the environment `env` (through `env -i`, so
/// nothing of the emulator's own environment leaks into the plugin, as with xapi).
pub fn plugin_argv(plugin: &str, xml: &str, env: &BTreeMap<String, String>) -> Vec<String> {
    let mut argv = vec!["/usr/bin/env".to_string(), "-i".to_string()];
    argv.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
    argv.push(plugin.to_string());
    argv.push(xml.to_string());
    argv
}

/// The environment xapi gives plugins plus `extra` (SM_XAPI, per-host test knobs).
pub fn plugin_env(extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("PATH".to_string(), PLUGIN_PATH.to_string());
    env.insert("ORIGINATOR".to_string(), "SM".to_string());
    for k in PASS_THROUGH_ENV {
        if let Ok(v) = std::env::var(k) {
            env.insert(k.to_string(), v);
        }
    }
    env.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// What a plugin run came to.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The result value or the XenAPI error.
    pub result: Result<Value, ApiError>,
    /// The fault the plugin printed, if any.
    pub fault: Option<(i32, String)>,
}

/// Maps a plugin's exit status and output the way `Sm_exec.exec_xmlrpc` does.
pub fn map_output(call: &SmCall, out: &ExecOutput) -> Outcome {
    let stdout = out.stdout_str();
    if out.code != 0 {
        let status = if out.code > 128 && out.code < 128 + 32 {
            format!("received signal: {}", out.code - 128)
        } else {
            "non-zero exit".to_string()
        };
        return Outcome {
            result: Err(ApiError::new(
                names::SR_BACKEND_FAILURE,
                [status, stdout, out.stderr.clone()],
            )),
            fault: None,
        };
    }
    match xmlrpc::parse_method_response(&stdout) {
        Err(e) => Outcome {
            result: Err(ApiError::new(
                names::SR_BACKEND_FAILURE,
                [e.to_string(), stdout, out.stderr.clone()],
            )),
            fault: None,
        },
        Ok(MethodResponse::Success(v)) => Outcome {
            result: Ok(v),
            fault: None,
        },
        Ok(MethodResponse::Fault { code, string }) => {
            let err = match code {
                38 => ApiError::new(names::UNIMPLEMENTED_IN_SM_BACKEND, [call.command.clone()]),
                39 => ApiError::new::<String>(names::SR_NOT_EMPTY, []),
                24 => ApiError::new::<String>(names::VDI_IN_USE, []),
                16 => ApiError::new::<String>(names::SR_DEVICE_IN_USE, []),
                144 => ApiError::new(
                    names::VDI_MISSING,
                    [
                        call.sr_ref.clone().unwrap_or_default(),
                        call.vdi_ref.clone().unwrap_or_default(),
                    ],
                ),
                n => ApiError::new(
                    &format!("{}_{n}", names::SR_BACKEND_FAILURE),
                    [String::new(), string.clone(), out.stderr.clone()],
                ),
            };
            Outcome {
                result: Err(err),
                fault: Some((code, string)),
            }
        }
    }
}

/// Maps a run that did not finish (timeout, spawn failure, agent unreachable).
pub fn map_exec_error(e: &ExecError) -> ApiError {
    let status = match e {
        ExecError::Run(sm_core::host::RunError::Timeout { .. }) => {
            "received signal: SIGKILL (timed out)".to_string()
        }
        other => format!("cannot execute plugin: {other}"),
    };
    ApiError::new(
        names::SR_BACKEND_FAILURE,
        [status, String::new(), String::new()],
    )
}

/// Runs one prepared call on an executor and maps the outcome.
pub fn run_call(
    exec: &Executor,
    plugin: &str,
    call: &SmCall,
    env: &BTreeMap<String, String>,
    timeout: Duration,
) -> (Outcome, ExecOutput) {
    let argv = plugin_argv(plugin, &call.to_xml(), env);
    match exec.run(&argv, None, timeout) {
        Ok(out) => (map_output(call, &out), out),
        Err(e) => (
            Outcome {
                result: Err(map_exec_error(&e)),
                fault: None,
            },
            ExecOutput {
                code: -1,
                ..Default::default()
            },
        ),
    }
}

/// A JSON rendering of an XML-RPC value for the trace.
pub fn value_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Str(s) | Value::DateTime(s) | Value::Base64(s) => J::String(s.clone()),
        Value::Int(i) => J::from(*i),
        Value::I8(i) => J::from(*i),
        Value::Bool(b) => J::Bool(*b),
        Value::Double(d) => J::from(*d),
        Value::Nil => J::Null,
        Value::Array(a) => J::Array(a.iter().map(value_json).collect()),
        Value::Struct(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), value_json(v))).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(code: i32, stdout: &str, stderr: &str) -> ExecOutput {
        ExecOutput {
            code,
            stdout: stdout.as_bytes().to_vec(),
            stderr: stderr.into(),
            ms: 1,
        }
    }

    fn call() -> SmCall {
        let mut c = SmCall::new("vdi_attach", "OpaqueRef:h", vec!["true".into()]);
        c.sr_ref = Some("OpaqueRef:sr".into());
        c.vdi_ref = Some("OpaqueRef:vdi".into());
        c
    }

    #[test]
    fn call_is_untyped_with_every_set_key() {
        let mut c = call();
        c.device_config.insert("SRmaster".into(), "true".into());
        c.session_ref = Some("OpaqueRef:s".into());
        c.vdi_on_boot = Some("persist".into());
        c.vdi_sm_config = Some(BTreeMap::new());
        let xml = c.to_xml();
        assert!(xml.contains("<methodName>vdi_attach</methodName>"));
        assert!(xml.contains("<value>OpaqueRef:h</value>"));
        assert!(!xml.contains("<string>"));
        let r = sm_core::Request::parse(&xml).unwrap();
        assert_eq!(r.host_ref, "OpaqueRef:h");
        assert_eq!(r.args, vec!["true"]);
        assert!(r.device_config.is_master());
        assert_eq!(r.vdi_on_boot.as_deref(), Some("persist"));
        assert_eq!(r.vdi_uuid, None);
    }

    #[test]
    fn argv_clears_the_environment() {
        let env = plugin_env(&BTreeMap::from([(
            "SM_XAPI".to_string(),
            "unix:/x".to_string(),
        )]));
        let argv = plugin_argv("/p/XSMFileSR", "<x/>", &env);
        assert_eq!(&argv[..2], &["/usr/bin/env", "-i"]);
        assert!(argv.contains(&"ORIGINATOR=SM".to_string()));
        assert!(argv.contains(&format!("PATH={PLUGIN_PATH}")));
        assert_eq!(
            argv[argv.len() - 2..],
            ["/p/XSMFileSR".to_string(), "<x/>".to_string()]
        );
    }

    #[test]
    fn faults_map_as_sm_exec_does() {
        let f = |code: i32| {
            out(
                0,
                &xmlrpc::write_fault(code, "The thing [opterr=why]"),
                "probe xml",
            )
        };
        let e = |o: Outcome| o.result.unwrap_err();
        assert_eq!(
            e(map_output(&call(), &f(38))),
            ApiError::new(names::UNIMPLEMENTED_IN_SM_BACKEND, ["vdi_attach"])
        );
        assert_eq!(e(map_output(&call(), &f(39))).code, names::SR_NOT_EMPTY);
        assert_eq!(e(map_output(&call(), &f(24))).code, names::VDI_IN_USE);
        assert_eq!(e(map_output(&call(), &f(16))).code, names::SR_DEVICE_IN_USE);
        assert_eq!(
            e(map_output(&call(), &f(144))),
            ApiError::new(names::VDI_MISSING, ["OpaqueRef:sr", "OpaqueRef:vdi"])
        );
        let o = map_output(&call(), &f(47));
        assert_eq!(o.fault, Some((47, "The thing [opterr=why]".into())));
        assert_eq!(
            e(o),
            ApiError::new(
                "SR_BACKEND_FAILURE_47",
                ["", "The thing [opterr=why]", "probe xml"]
            )
        );
    }

    #[test]
    fn exit_status_and_garbage_are_backend_failures() {
        let e = map_output(&call(), &out(1, "partial", "boom"))
            .result
            .unwrap_err();
        assert_eq!(
            e,
            ApiError::new(
                names::SR_BACKEND_FAILURE,
                ["non-zero exit", "partial", "boom"]
            )
        );
        let e = map_output(&call(), &out(0, "log line\n<methodResponse/>", ""))
            .result
            .unwrap_err();
        assert_eq!(e.code, names::SR_BACKEND_FAILURE);
        assert_eq!(e.params[1], "log line\n<methodResponse/>");
        let ok = map_output(&call(), &out(0, &xmlrpc::write_response(&Value::Nil), ""))
            .result
            .unwrap();
        assert_eq!(ok, Value::Nil);
    }
}
