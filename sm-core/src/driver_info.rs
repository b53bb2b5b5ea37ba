//! What a driver declares about itself: the [`Capability`] strings xapi understands, the
//! device_config keys it documents ([`ConfigKey`]), and its `sr_get_driver_info` record
//! ([`DriverInfo`]). Re-exported from [`crate::driver`], beside the trait that returns it.

use crate::request::Command;
use crate::xmlrpc::{Struct, Value};

/// A capability string xapi understands (`ocaml/xapi/smint.ml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Capability {
    SrCreate,
    SrDelete,
    SrAttach,
    SrDetach,
    SrScan,
    SrProbe,
    SrUpdate,
    SrMultipath,
    SrMetadata,
    SrTrim,
    SrStats,
    VdiCreate,
    VdiDelete,
    VdiAttach,
    VdiDetach,
    VdiClone,
    VdiSnapshot,
    VdiResize,
    VdiResizeOnline,
    VdiActivate,
    VdiActivateReadonly,
    VdiDeactivate,
    VdiUpdate,
    VdiIntroduce,
    VdiGenerateConfig,
    VdiAttachOffline,
    VdiResetOnBoot2,
    ThinProvisioning,
    LargeVdi,
}

impl Capability {
    /// The string in `sr_get_driver_info`.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::SrCreate => "SR_CREATE",
            Capability::SrDelete => "SR_DELETE",
            Capability::SrAttach => "SR_ATTACH",
            Capability::SrDetach => "SR_DETACH",
            Capability::SrScan => "SR_SCAN",
            Capability::SrProbe => "SR_PROBE",
            Capability::SrUpdate => "SR_UPDATE",
            Capability::SrMultipath => "SR_MULTIPATH",
            Capability::SrMetadata => "SR_METADATA",
            Capability::SrTrim => "SR_TRIM",
            Capability::SrStats => "SR_STATS",
            Capability::VdiCreate => "VDI_CREATE",
            Capability::VdiDelete => "VDI_DELETE",
            Capability::VdiAttach => "VDI_ATTACH",
            Capability::VdiDetach => "VDI_DETACH",
            Capability::VdiClone => "VDI_CLONE",
            Capability::VdiSnapshot => "VDI_SNAPSHOT",
            Capability::VdiResize => "VDI_RESIZE",
            Capability::VdiResizeOnline => "VDI_RESIZE_ONLINE",
            Capability::VdiActivate => "VDI_ACTIVATE",
            Capability::VdiActivateReadonly => "VDI_ACTIVATE_READONLY",
            Capability::VdiDeactivate => "VDI_DEACTIVATE",
            Capability::VdiUpdate => "VDI_UPDATE",
            Capability::VdiIntroduce => "VDI_INTRODUCE",
            Capability::VdiGenerateConfig => "VDI_GENERATE_CONFIG",
            Capability::VdiAttachOffline => "VDI_ATTACH_OFFLINE",
            Capability::VdiResetOnBoot2 => "VDI_RESET_ON_BOOT/2",
            Capability::ThinProvisioning => "THIN_PROVISIONING",
            Capability::LargeVdi => "LARGE_VDI",
        }
    }

    /// The SMAPI command a capability promises, when it maps to exactly one.
    ///
    /// `VDI_GENERATE_CONFIG` also promises `vdi_attach_from_config`/`vdi_detach_from_config`
    /// (what the generated config runs). `VDI_ATTACH_OFFLINE` maps to no SMAPIv1 command: xapi's
    /// static-vdis takes it to mean "attach through an SMAPIv3 volume plugin" and would bypass
    /// the plugin's own attach_from_config, so a SMAPIv1 driver must not declare it.
    pub fn command(self) -> Option<Command> {
        Some(match self {
            Capability::SrCreate => Command::SrCreate,
            Capability::SrDelete => Command::SrDelete,
            Capability::SrAttach => Command::SrAttach,
            Capability::SrDetach => Command::SrDetach,
            Capability::SrScan => Command::SrScan,
            Capability::SrProbe => Command::SrProbe,
            Capability::SrUpdate => Command::SrUpdate,
            Capability::VdiCreate => Command::VdiCreate,
            Capability::VdiDelete => Command::VdiDelete,
            Capability::VdiAttach => Command::VdiAttach,
            Capability::VdiDetach => Command::VdiDetach,
            Capability::VdiClone => Command::VdiClone,
            Capability::VdiSnapshot => Command::VdiSnapshot,
            Capability::VdiResize => Command::VdiResize,
            Capability::VdiActivate => Command::VdiActivate,
            Capability::VdiDeactivate => Command::VdiDeactivate,
            Capability::VdiUpdate => Command::VdiUpdate,
            Capability::VdiIntroduce => Command::VdiIntroduce,
            Capability::VdiGenerateConfig => Command::VdiGenerateConfig,
            _ => return None,
        })
    }

    /// Every capability with a one-to-one command.
    pub const WITH_COMMAND: &'static [Capability] = &[
        Capability::SrCreate,
        Capability::SrDelete,
        Capability::SrAttach,
        Capability::SrDetach,
        Capability::SrScan,
        Capability::SrProbe,
        Capability::SrUpdate,
        Capability::VdiCreate,
        Capability::VdiDelete,
        Capability::VdiAttach,
        Capability::VdiDetach,
        Capability::VdiClone,
        Capability::VdiSnapshot,
        Capability::VdiResize,
        Capability::VdiActivate,
        Capability::VdiDeactivate,
        Capability::VdiUpdate,
        Capability::VdiIntroduce,
        Capability::VdiGenerateConfig,
    ];
}

/// One device_config key a driver documents.
#[derive(Debug, Clone, Copy)]
pub struct ConfigKey {
    /// The key.
    pub key: &'static str,
    /// What it means.
    pub description: &'static str,
}

/// A driver's `sr_get_driver_info` record and its identity.
#[derive(Debug)]
pub struct DriverInfo {
    /// The SR type (`file`, `lvm`, ...): the plugin name lowercased without `SR`.
    pub sr_type: &'static str,
    /// The executable name under /opt/xensource/sm (`XSMFileSR`).
    pub plugin: &'static str,
    /// Human-readable name.
    pub name: &'static str,
    /// What it does.
    pub description: &'static str,
    /// Vendor.
    pub vendor: &'static str,
    /// Copyright line.
    pub copyright: &'static str,
    /// Driver version.
    pub driver_version: &'static str,
    /// SMAPI version required ("1.0").
    pub required_api_version: &'static str,
    /// Capabilities, in xapi's names.
    pub capabilities: &'static [Capability],
    /// device_config keys.
    pub configuration: &'static [ConfigKey],
}

impl DriverInfo {
    /// Whether the driver declares `c`.
    pub fn has(&self, c: Capability) -> bool {
        self.capabilities.contains(&c)
    }

    /// The struct xapi parses (`sm_exec.ml parse_sr_get_driver_info`).
    pub fn to_value(&self) -> Value {
        let mut m = Struct::new();
        for (k, v) in [
            ("name", self.name),
            ("description", self.description),
            ("vendor", self.vendor),
            ("copyright", self.copyright),
            ("driver_version", self.driver_version),
            ("required_api_version", self.required_api_version),
        ] {
            m.insert(k.into(), Value::Str(v.into()));
        }
        m.insert(
            "capabilities".into(),
            Value::Array(
                self.capabilities
                    .iter()
                    .map(|c| Value::Str(c.as_str().into()))
                    .collect(),
            ),
        );
        m.insert(
            "configuration".into(),
            Value::Array(
                self.configuration
                    .iter()
                    .map(|c| Value::string_map([("key", c.key), ("description", c.description)]))
                    .collect(),
            ),
        );
        Value::Struct(m)
    }
}
