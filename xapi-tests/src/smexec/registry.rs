//! Driver registration as `Sm_exec.get_supported` does it: every executable `<Name>SR` in the
//! plugin directory answers `sr_get_driver_info`; the SR type is the lowercased `<Name>`; a
//! plugin whose answer does not parse is rejected with the reason logged.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use sm_core::xmlrpc::Value;

use super::{Executor, SmCall, plugin_env, run_call};
use crate::error::ApiError;

/// What `sr_get_driver_info` returned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Driver {
    /// SR type: the lowercased plugin name without `SR`.
    pub sr_type: String,
    /// Executable name (`XSMFileSR`).
    pub plugin: String,
    /// name.
    pub name: String,
    /// description.
    pub description: String,
    /// vendor.
    pub vendor: String,
    /// copyright.
    pub copyright: String,
    /// driver_version.
    pub driver_version: String,
    /// required_api_version.
    pub required_api_version: String,
    /// Capability strings as declared (possibly `NAME/N`).
    pub capabilities: Vec<String>,
    /// device_config keys and their descriptions.
    pub configuration: Vec<(String, String)>,
}

impl Driver {
    /// Whether the driver declares `cap` (any version of it).
    pub fn has(&self, cap: &str) -> bool {
        self.capabilities
            .iter()
            .any(|c| c == cap || c.split_once('/').is_some_and(|(n, _)| n == cap))
    }
}

/// Registered drivers by SR type.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// type -> driver.
    pub drivers: BTreeMap<String, Driver>,
}

/// A plugin that could not be registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Executable name.
    pub plugin: String,
    /// Why.
    pub reason: String,
}

fn text(m: &sm_core::xmlrpc::Struct, k: &str) -> Result<String, String> {
    match m.get(k) {
        Some(Value::Str(s)) => Ok(s.clone()),
        Some(_) => Err(format!("field {k} is not a string")),
        None => Err(format!("<struct> missing field: {k}")),
    }
}

/// Parses an `sr_get_driver_info` result as `Sm_exec.parse_sr_get_driver_info` does.
pub fn parse_driver_info(plugin: &str, v: &Value) -> Result<Driver, String> {
    let m = v.as_struct().ok_or("result is not a struct")?;
    let caps = match m.get("capabilities") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|c| {
                c.as_str()
                    .map(str::to_string)
                    .ok_or("a capability is not a string".to_string())
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err("capabilities is not an array".into()),
        None => return Err("<struct> missing field: capabilities".into()),
    };
    let configuration = match m.get("configuration") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|c| {
                let s = c
                    .as_struct()
                    .ok_or("a configuration entry is not a struct")?;
                Ok((text(s, "key")?, text(s, "description")?))
            })
            .collect::<Result<Vec<_>, String>>()?,
        Some(_) => return Err("configuration is not an array".into()),
        None => return Err("<struct> missing field: configuration".into()),
    };
    let sr_type = plugin
        .strip_suffix("SR")
        .ok_or("name does not end in SR")?
        .to_lowercase();
    Ok(Driver {
        sr_type,
        plugin: plugin.to_string(),
        name: text(m, "name")?,
        description: text(m, "description")?,
        vendor: text(m, "vendor")?,
        copyright: text(m, "copyright")?,
        driver_version: text(m, "driver_version")?,
        required_api_version: text(m, "required_api_version")?,
        capabilities: caps,
        configuration,
    })
}

/// Asks one plugin for its driver info.
pub fn driver_info(
    exec: &Executor,
    plugin_dir: &str,
    plugin: &str,
    extra_env: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<Driver, String> {
    let call = SmCall::new("sr_get_driver_info", "OpaqueRef:NULL", Vec::new());
    let path = format!("{}/{plugin}", plugin_dir.trim_end_matches('/'));
    let (outcome, _) = run_call(exec, &path, &call, &plugin_env(extra_env), timeout);
    let v = outcome.result.map_err(|e: ApiError| e.to_string())?;
    parse_driver_info(plugin, &v)
}

/// Scans a local plugin directory: every executable whose name ends in `SR` is asked for its
/// driver info. Returns the registry and the rejected plugins.
pub fn scan(
    exec: &Executor,
    plugin_dir: &Path,
    extra_env: &BTreeMap<String, String>,
    timeout: Duration,
) -> (Registry, Vec<Rejection>) {
    let mut reg = Registry::default();
    let mut rejected = Vec::new();
    let entries = match std::fs::read_dir(plugin_dir) {
        Ok(e) => e,
        Err(e) => {
            rejected.push(Rejection {
                plugin: plugin_dir.display().to_string(),
                reason: e.to_string(),
            });
            return (reg, rejected);
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    for name in names {
        if !name.ends_with("SR") || name == "SR" {
            continue;
        }
        let path = plugin_dir.join(&name);
        let executable = std::fs::metadata(&path)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        if !executable {
            rejected.push(Rejection {
                plugin: name,
                reason: "not an executable file".into(),
            });
            continue;
        }
        match driver_info(
            exec,
            &plugin_dir.display().to_string(),
            &name,
            extra_env,
            timeout,
        ) {
            Ok(d) => {
                reg.drivers.insert(d.sr_type.clone(), d);
            }
            Err(reason) => rejected.push(Rejection {
                plugin: name,
                reason,
            }),
        }
    }
    (reg, rejected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sm_core::host::SystemRunner;

    fn info(caps: &[&str]) -> Value {
        let mut m = sm_core::xmlrpc::Struct::new();
        for k in [
            "name",
            "description",
            "vendor",
            "copyright",
            "driver_version",
            "required_api_version",
        ] {
            m.insert(k.into(), Value::Str(format!("{k}!")));
        }
        m.insert(
            "capabilities".into(),
            Value::Array(caps.iter().map(|c| Value::Str((*c).into())).collect()),
        );
        m.insert(
            "configuration".into(),
            Value::Array(vec![Value::string_map([
                ("key", "location"),
                ("description", "where"),
            ])]),
        );
        Value::Struct(m)
    }

    #[test]
    fn parses_info_and_versioned_capabilities() {
        let d = parse_driver_info(
            "ReservedLUNSR",
            &info(&["VDI_CREATE", "VDI_RESET_ON_BOOT/2"]),
        )
        .unwrap();
        assert_eq!(d.sr_type, "reservedlun");
        assert!(d.has("VDI_RESET_ON_BOOT"));
        assert!(d.has("VDI_CREATE"));
        assert!(!d.has("VDI_CLONE"));
        assert_eq!(
            d.configuration,
            vec![("location".to_string(), "where".to_string())]
        );
    }

    #[test]
    fn rejects_incomplete_info() {
        let mut v = info(&[]);
        if let Value::Struct(m) = &mut v {
            m.remove("vendor");
        }
        assert!(parse_driver_info("XSR", &v).unwrap_err().contains("vendor"));
        assert!(parse_driver_info("XSR", &Value::Str("legacy".into())).is_err());
    }

    #[test]
    fn scan_registers_good_plugins_and_rejects_bad_ones() {
        let d = tempfile::tempdir().unwrap();
        let resp = sm_core::xmlrpc::write_response(&info(&["SR_PROBE"]));
        let good = d.path().join("DummySR");
        std::fs::write(&good, format!("#!/bin/sh\ncat <<'EOF'\n{resp}EOF\n")).unwrap();
        std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o755)).unwrap();
        let bad = d.path().join("BrokenSR");
        std::fs::write(&bad, "#!/bin/sh\necho not xml\n").unwrap();
        std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(d.path().join("NotExecSR"), "").unwrap();
        std::fs::write(d.path().join("README"), "").unwrap();
        let (reg, rej) = scan(
            &Executor::Local(SystemRunner::new()),
            d.path(),
            &BTreeMap::new(),
            Duration::from_secs(10),
        );
        assert_eq!(reg.drivers.keys().collect::<Vec<_>>(), vec!["dummy"]);
        let names: Vec<&str> = rej.iter().map(|r| r.plugin.as_str()).collect();
        assert_eq!(names, vec!["BrokenSR", "NotExecSR"]);
    }
}
