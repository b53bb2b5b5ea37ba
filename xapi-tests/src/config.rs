//! What an emulator instance is: its state directory, where it listens, the plugin directory, the
//! hosts of the pool (each executing plugins locally or through the lab agent) and the VM
//! template `vm-install` uses. Saved as `<state>/config.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How a host runs its plugins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Exec {
    /// On this machine, through `sm_core::host::run`.
    Local,
    /// On another machine, through the lab agent (docs/conventions.md "Lab agent protocol").
    Agent {
        /// `host:port` of the agent.
        addr: String,
    },
}

/// One host of the pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostConfig {
    /// name_label.
    pub name: String,
    /// hostname (what `hostname` prints on that host).
    pub hostname: String,
    /// Management address.
    pub address: String,
    /// `other_config:iscsi_iqn`.
    pub iscsi_iqn: String,
    /// Further `other_config` keys (e.g. `multipathing`, `multipathhandle`).
    #[serde(default)]
    pub other_config: BTreeMap<String, String>,
    /// How plugins run.
    pub exec: Exec,
    /// The directory holding `<Name>SR` on that host (`/opt/xensource/sm` on a real host).
    pub plugin_dir: String,
    /// Environment added to every plugin call on this host (`SM_ROOT`, `SMLOG_FILE`, ...).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `SM_XAPI` for plugins on this host; default: the emulator's Unix socket for local hosts.
    /// Remote hosts need `tcp:<address reachable from them>:<port>`.
    #[serde(default)]
    pub xapi_endpoint: Option<String>,
    /// Directories searched before the system ones for the commands the emulator itself runs
    /// on a local host (xenopsd's and tapback's probes), as `SM_TOOL_DIRS` is for plugins.
    #[serde(default)]
    pub tool_dirs: Vec<PathBuf>,
}

/// One disk of the install template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateDisk {
    /// Device number (userdevice).
    pub device: String,
    /// Size in bytes.
    pub size: u64,
    /// Whether the bootloader reads it.
    pub bootable: bool,
}

/// The VM template `vm-install template=...` finds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    /// name_label (the appendix uses "Debian Sarge 3.1").
    pub name: String,
    /// Its disks.
    pub disks: Vec<TemplateDisk>,
    /// memory_static_max in bytes (the suspend image holds this much).
    pub memory: u64,
    /// PV_bootloader ("pygrub": vm-start reads the boot disk first, as appendix A describes).
    pub bootloader: String,
}

/// Everything one emulator instance needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// State directory: database, socket, trace, logs.
    pub state_dir: PathBuf,
    /// TCP listen address (`127.0.0.1:0` picks a free port; `<state>/xapi.port` holds it).
    pub tcp_listen: String,
    /// Hosts; the first is the pool master.
    pub hosts: Vec<HostConfig>,
    /// Deadline for one plugin call in seconds (xapi has none; this only stops a hung test).
    pub plugin_timeout_secs: u64,
    /// The install template.
    pub template: Template,
}

/// Deadline for one plugin call when the configuration does not say.
pub const DEFAULT_PLUGIN_TIMEOUT_SECS: u64 = 3600;

/// Environment variable naming the emulator's state directory (for `xe` and `xapi-emulator`).
pub const STATE_DIR_ENV: &str = "XE_STATE_DIR";

/// The state directory: `$XE_STATE_DIR`, else `$XDG_RUNTIME_DIR/xapi-emulator`, else
/// `/tmp/xapi-emulator-<uid>`.
pub fn default_state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os(STATE_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("xapi-emulator");
    }
    PathBuf::from(format!("/tmp/xapi-emulator-{}", nix::unistd::getuid()))
}

/// This machine's hostname.
pub fn local_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

impl Template {
    /// The "Debian Sarge 3.1" template: a PV guest booted by pygrub with a root and a swap disk.
    /// Sizes are small so that thick-provisioned SRs on loop devices hold several copies.
    pub fn debian_sarge() -> Template {
        Template {
            name: "Debian Sarge 3.1".into(),
            disks: vec![
                TemplateDisk {
                    device: "0".into(),
                    size: 256 << 20,
                    bootable: true,
                },
                TemplateDisk {
                    device: "1".into(),
                    size: 64 << 20,
                    bootable: false,
                },
            ],
            memory: 32 << 20,
            bootloader: "pygrub".into(),
        }
    }
}

impl HostConfig {
    /// A host on this machine named `name`, running plugins from `plugin_dir`.
    pub fn local(name: &str, hostname: &str, plugin_dir: &Path) -> HostConfig {
        HostConfig {
            name: name.into(),
            hostname: hostname.into(),
            address: "127.0.0.1".into(),
            iscsi_iqn: format!("iqn.2026-01.test.emulator:{name}"),
            other_config: BTreeMap::new(),
            exec: Exec::Local,
            plugin_dir: plugin_dir.display().to_string(),
            env: BTreeMap::new(),
            xapi_endpoint: None,
            tool_dirs: Vec::new(),
        }
    }
}

impl Config {
    /// A two-host pool on this machine: the master is this machine (hostname from `hostname`,
    /// host paths as given by `sm_root`), the second host simulates another machine with its own
    /// `SM_ROOT` under the state directory. Plugin logs go to `<state>/SMlog.<host>`.
    pub fn two_local_hosts(state_dir: &Path, plugin_dir: &Path, sm_root: Option<&Path>) -> Config {
        let hn = local_hostname();
        let mut a = HostConfig::local(&hn, &hn, plugin_dir);
        if let Some(root) = sm_root {
            a.env.insert("SM_ROOT".into(), root.display().to_string());
        }
        a.env.insert(
            "SMLOG_FILE".into(),
            state_dir.join(format!("SMlog.{hn}")).display().to_string(),
        );
        let bn = format!("{hn}-b");
        let mut b = HostConfig::local(&bn, &bn, plugin_dir);
        b.env.insert(
            "SM_ROOT".into(),
            state_dir.join("hosts").join(&bn).display().to_string(),
        );
        b.env.insert(
            "SMLOG_FILE".into(),
            state_dir.join(format!("SMlog.{bn}")).display().to_string(),
        );
        Config {
            state_dir: state_dir.to_path_buf(),
            tcp_listen: "127.0.0.1:0".into(),
            hosts: vec![a, b],
            plugin_timeout_secs: DEFAULT_PLUGIN_TIMEOUT_SECS,
            template: Template::debian_sarge(),
        }
    }

    /// `<state>/config.json`.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("config.json")
    }

    /// Reads a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.display().to_string(),
            source,
        })
    }

    /// Writes the configuration file.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let text = serde_json::to_string_pretty(self).map_err(|source| ConfigError::Parse {
            path: path.display().to_string(),
            source,
        })?;
        std::fs::write(path, text).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// Checks what a configuration must hold.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.hosts.is_empty() {
            return Err(ConfigError::Invalid("at least one host is needed".into()));
        }
        let mut names = std::collections::BTreeSet::new();
        for h in &self.hosts {
            if !names.insert(&h.name) {
                return Err(ConfigError::Invalid(format!(
                    "host name {} appears twice",
                    h.name
                )));
            }
            if let Exec::Agent { .. } = h.exec
                && h.xapi_endpoint.is_none()
            {
                return Err(ConfigError::Invalid(format!(
                    "host {} runs plugins through the lab agent and needs xapi_endpoint (tcp:<addr>:<port>)",
                    h.name
                )));
            }
        }
        Ok(())
    }
}

/// Why a configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Reading or writing failed.
    #[error("configuration {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Not valid JSON for a configuration.
    #[error("configuration {path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: serde_json::Error,
    },
    /// Semantically wrong.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pool_has_two_distinct_hosts_and_roundtrips() {
        let d = tempfile::tempdir().unwrap();
        let c = Config::two_local_hosts(d.path(), Path::new("/opt/xensource/sm"), None);
        c.validate().unwrap();
        assert_eq!(c.hosts.len(), 2);
        assert_ne!(c.hosts[0].iscsi_iqn, c.hosts[1].iscsi_iqn);
        assert!(c.hosts[1].env.contains_key("SM_ROOT"));
        let p = Config::path(d.path());
        c.save(&p).unwrap();
        assert_eq!(Config::load(&p).unwrap(), c);
    }

    #[test]
    fn agent_host_needs_an_endpoint() {
        let d = tempfile::tempdir().unwrap();
        let mut c = Config::two_local_hosts(d.path(), Path::new("/x"), None);
        c.hosts[1].exec = Exec::Agent {
            addr: "10.0.0.2:7070".into(),
        };
        assert!(c.validate().is_err());
        c.hosts[1].xapi_endpoint = Some("tcp:10.0.0.1:8080".into());
        c.validate().unwrap();
    }
}
