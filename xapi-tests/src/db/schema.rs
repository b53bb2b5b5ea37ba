//! The classes and fields of the emulated database, named as XenAPI names them, with their types
//! (which decide the XML-RPC encoding: int64 as a decimal string, maps as structs, sets as arrays)
//! and who may write them (`Rw`: any session through `set_<field>`; `Internal`: only the SM
//! session created for the field's SR, xapi's `assert_session_has_internal_sr_access`).

use std::collections::BTreeMap;

use serde_json::Value as Json;
use sm_core::xmlrpc::Value;

use crate::error::{ApiError, ApiResult, names};

/// A field's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// A string or enum.
    Str,
    /// int64, sent as a decimal string.
    Int,
    /// float.
    Float,
    /// bool.
    Bool,
    /// `(string -> string) map`.
    Map,
    /// `string set` or `ref set`.
    Set,
    /// An object reference (`OpaqueRef:...`).
    Ref,
    /// A datetime (`YYYYMMDDTHH:MM:SSZ`).
    DateTime,
}

/// Who may write a field through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No setter.
    Ro,
    /// `set_<field>` (and `add_to`/`remove_from` for maps) for any session.
    Rw,
    /// Setter only for the SM session of the object's SR.
    Internal,
}

/// A field's default when a record is created without it.
#[derive(Debug, Clone, Copy)]
pub enum Default {
    /// The type's zero value ("", 0, false, {}, [], OpaqueRef:NULL, epoch).
    Zero,
    /// A string value.
    Str(&'static str),
    /// A boolean value.
    Bool(bool),
    /// An integer value.
    Int(i64),
}

/// One field.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// XenAPI name.
    pub name: &'static str,
    /// Type.
    pub ty: Ty,
    /// Writers.
    pub access: Access,
    /// Default.
    pub default: Default,
}

/// A field computed from the references other records hold (e.g. `SR.VDIs`).
#[derive(Debug, Clone, Copy)]
pub struct Reverse {
    /// The field name on this class.
    pub name: &'static str,
    /// The class holding the reference.
    pub class: &'static str,
    /// The referencing field in that class.
    pub via: &'static str,
}

/// One class.
#[derive(Debug)]
pub struct Class {
    /// XenAPI class name (`VDI`, `host`, ...).
    pub name: &'static str,
    /// Stored fields (`uuid` first).
    pub fields: &'static [Field],
    /// Computed reverse-reference sets.
    pub reverse: &'static [Reverse],
}

/// The null reference.
pub const NULL_REF: &str = "OpaqueRef:NULL";
/// The epoch as xapi writes an unset datetime.
pub const EPOCH: &str = "19700101T00:00:00Z";

const fn f(name: &'static str, ty: Ty, access: Access) -> Field {
    Field {
        name,
        ty,
        access,
        default: Default::Zero,
    }
}

const fn fd(name: &'static str, ty: Ty, access: Access, default: Default) -> Field {
    Field {
        name,
        ty,
        access,
        default,
    }
}

use Access::{Internal, Ro, Rw};
use Ty::{Bool, DateTime, Float, Int, Map, Ref, Set, Str};

const POOL: &[Field] = &[
    f("uuid", Str, Ro),
    f("name_label", Str, Rw),
    f("name_description", Str, Rw),
    f("master", Ref, Ro),
    f("default_SR", Ref, Rw),
    f("suspend_image_SR", Ref, Rw),
    f("crash_dump_SR", Ref, Rw),
    f("other_config", Map, Rw),
];

const HOST: &[Field] = &[
    f("uuid", Str, Ro),
    f("name_label", Str, Rw),
    f("name_description", Str, Rw),
    f("hostname", Str, Ro),
    f("address", Str, Ro),
    fd("enabled", Bool, Ro, Default::Bool(true)),
    f("multipathing", Bool, Ro),
    f("other_config", Map, Rw),
    f("metrics", Ref, Ro),
];

const HOST_METRICS: &[Field] = &[
    f("uuid", Str, Ro),
    fd("live", Bool, Ro, Default::Bool(true)),
    f("memory_total", Int, Ro),
    f("memory_free", Int, Ro),
    f("last_updated", DateTime, Ro),
    f("other_config", Map, Rw),
];

const SM: &[Field] = &[
    f("uuid", Str, Ro),
    f("name_label", Str, Ro),
    f("name_description", Str, Ro),
    f("type", Str, Ro),
    f("vendor", Str, Ro),
    f("copyright", Str, Ro),
    f("version", Str, Ro),
    f("required_api_version", Str, Ro),
    f("capabilities", Set, Ro),
    f("features", Map, Ro),
    f("configuration", Map, Ro),
    f("driver_filename", Str, Ro),
    f("required_cluster_stack", Set, Ro),
    f("other_config", Map, Rw),
];

const SR: &[Field] = &[
    f("uuid", Str, Ro),
    f("name_label", Str, Rw),
    f("name_description", Str, Rw),
    f("type", Str, Ro),
    f("content_type", Str, Ro),
    f("shared", Bool, Rw),
    f("physical_size", Int, Internal),
    f("physical_utilisation", Int, Internal),
    f("virtual_allocation", Int, Internal),
    f("sm_config", Map, Rw),
    f("other_config", Map, Rw),
    f("tags", Set, Rw),
    f("clustered", Bool, Ro),
    f("is_tools_sr", Bool, Ro),
];

const PBD: &[Field] = &[
    f("uuid", Str, Ro),
    f("host", Ref, Ro),
    f("SR", Ref, Ro),
    f("device_config", Map, Rw),
    f("currently_attached", Bool, Ro),
    f("other_config", Map, Rw),
];

const VDI: &[Field] = &[
    f("uuid", Str, Ro),
    f("name_label", Str, Rw),
    f("name_description", Str, Rw),
    f("SR", Ref, Ro),
    f("virtual_size", Int, Internal),
    f("physical_utilisation", Int, Internal),
    fd("type", Str, Ro, Default::Str("user")),
    f("sharable", Bool, Internal),
    f("read_only", Bool, Internal),
    fd("managed", Bool, Internal, Default::Bool(true)),
    f("missing", Bool, Internal),
    f("location", Str, Ro),
    f("sm_config", Map, Rw),
    f("other_config", Map, Rw),
    f("xenstore_data", Map, Rw),
    f("is_a_snapshot", Bool, Internal),
    f("snapshot_of", Ref, Internal),
    f("snapshot_time", DateTime, Internal),
    f("storage_lock", Bool, Ro),
    f("parent", Ref, Ro),
    fd("on_boot", Str, Rw, Default::Str("persist")),
    f("allow_caching", Bool, Rw),
    f("metadata_of_pool", Ref, Internal),
    f("metadata_latest", Bool, Ro),
    f("cbt_enabled", Bool, Internal),
    f("is_tools_iso", Bool, Ro),
    f("tags", Set, Rw),
];

const VM: &[Field] = &[
    f("uuid", Str, Ro),
    f("name_label", Str, Rw),
    f("name_description", Str, Rw),
    f("is_a_template", Bool, Rw),
    f("is_control_domain", Bool, Ro),
    fd("power_state", Str, Ro, Default::Str("Halted")),
    f("resident_on", Ref, Ro),
    f("suspend_VDI", Ref, Ro),
    fd("domid", Int, Ro, Default::Int(-1)),
    fd("memory_static_max", Int, Ro, Default::Int(32 << 20)),
    f("PV_bootloader", Str, Rw),
    f("other_config", Map, Rw),
];

const VBD: &[Field] = &[
    f("uuid", Str, Ro),
    f("VM", Ref, Ro),
    f("VDI", Ref, Ro),
    f("device", Str, Ro),
    f("userdevice", Str, Rw),
    f("bootable", Bool, Rw),
    fd("mode", Str, Rw, Default::Str("RW")),
    fd("type", Str, Rw, Default::Str("Disk")),
    f("empty", Bool, Ro),
    fd("unpluggable", Bool, Rw, Default::Bool(true)),
    f("currently_attached", Bool, Ro),
    f("other_config", Map, Rw),
];

const SECRET: &[Field] = &[
    f("uuid", Str, Ro),
    f("value", Str, Rw),
    f("other_config", Map, Rw),
];

const TASK: &[Field] = &[
    f("uuid", Str, Ro),
    f("name_label", Str, Ro),
    f("name_description", Str, Ro),
    fd("status", Str, Ro, Default::Str("pending")),
    f("progress", Float, Rw),
    f("created", DateTime, Ro),
    f("finished", DateTime, Ro),
    f("result", Str, Ro),
    f("error_info", Set, Ro),
    f("resident_on", Ref, Ro),
    f("other_config", Map, Rw),
];

const MESSAGE: &[Field] = &[
    f("uuid", Str, Ro),
    f("name", Str, Ro),
    f("priority", Int, Ro),
    f("cls", Str, Ro),
    f("obj_uuid", Str, Ro),
    f("timestamp", DateTime, Ro),
    f("body", Str, Ro),
];

/// Every class of the database.
pub static CLASSES: &[Class] = &[
    Class {
        name: "pool",
        fields: POOL,
        reverse: &[],
    },
    Class {
        name: "host",
        fields: HOST,
        reverse: &[
            Reverse {
                name: "PBDs",
                class: "PBD",
                via: "host",
            },
            Reverse {
                name: "resident_VMs",
                class: "VM",
                via: "resident_on",
            },
        ],
    },
    Class {
        name: "host_metrics",
        fields: HOST_METRICS,
        reverse: &[],
    },
    Class {
        name: "SM",
        fields: SM,
        reverse: &[],
    },
    Class {
        name: "SR",
        fields: SR,
        reverse: &[
            Reverse {
                name: "PBDs",
                class: "PBD",
                via: "SR",
            },
            Reverse {
                name: "VDIs",
                class: "VDI",
                via: "SR",
            },
        ],
    },
    Class {
        name: "PBD",
        fields: PBD,
        reverse: &[],
    },
    Class {
        name: "VDI",
        fields: VDI,
        reverse: &[
            Reverse {
                name: "VBDs",
                class: "VBD",
                via: "VDI",
            },
            Reverse {
                name: "snapshots",
                class: "VDI",
                via: "snapshot_of",
            },
        ],
    },
    Class {
        name: "VM",
        fields: VM,
        reverse: &[Reverse {
            name: "VBDs",
            class: "VBD",
            via: "VM",
        }],
    },
    Class {
        name: "VBD",
        fields: VBD,
        reverse: &[],
    },
    Class {
        name: "secret",
        fields: SECRET,
        reverse: &[],
    },
    Class {
        name: "task",
        fields: TASK,
        reverse: &[],
    },
    Class {
        name: "message",
        fields: MESSAGE,
        reverse: &[],
    },
];

/// A class by its XenAPI name.
pub fn class(name: &str) -> Option<&'static Class> {
    CLASSES.iter().find(|c| c.name == name)
}

impl Class {
    /// A stored field by name.
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// A computed field by name.
    pub fn reverse_field(&self, name: &str) -> Option<&'static Reverse> {
        self.reverse.iter().find(|r| r.name == name)
    }
}

impl Field {
    /// The JSON stored for a new record that does not set this field.
    pub fn default_json(&self) -> Json {
        match (self.default, self.ty) {
            (Default::Str(s), _) => Json::String(s.into()),
            (Default::Bool(b), _) => Json::Bool(b),
            (Default::Int(i), _) => Json::from(i),
            (Default::Zero, Ty::Str) => Json::String(String::new()),
            (Default::Zero, Ty::Int) => Json::from(0),
            (Default::Zero, Ty::Float) => Json::from(0.0),
            (Default::Zero, Ty::Bool) => Json::Bool(false),
            (Default::Zero, Ty::Map) => Json::Object(serde_json::Map::new()),
            (Default::Zero, Ty::Set) => Json::Array(Vec::new()),
            (Default::Zero, Ty::Ref) => Json::String(NULL_REF.into()),
            (Default::Zero, Ty::DateTime) => Json::String(EPOCH.into()),
        }
    }

    /// The XML-RPC value xapi sends for a stored JSON value of this field.
    pub fn to_value(&self, j: &Json) -> Value {
        match self.ty {
            Ty::Str | Ty::Ref => Value::Str(json_text(j)),
            Ty::Int => Value::Str(json_text(j)),
            Ty::Float => Value::Double(j.as_f64().unwrap_or(0.0)),
            Ty::Bool => Value::Bool(j.as_bool().unwrap_or(false)),
            Ty::DateTime => Value::DateTime(json_text(j)),
            Ty::Map => Value::Struct(
                j.as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), Value::Str(json_text(v))))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            Ty::Set => Value::Array(
                j.as_array()
                    .map(|a| a.iter().map(|v| Value::Str(json_text(v))).collect())
                    .unwrap_or_default(),
            ),
        }
    }

    /// Parses a value sent by a client for this field.
    pub fn from_value(&self, class: &str, v: &Value) -> ApiResult<Json> {
        let bad = || ApiError::new(names::FIELD_TYPE_ERROR, [format!("{class}.{}", self.name)]);
        Ok(match self.ty {
            Ty::Str | Ty::Ref | Ty::DateTime => match v {
                Value::Str(s) | Value::DateTime(s) => Json::String(s.clone()),
                _ => return Err(bad()),
            },
            Ty::Int => Json::from(value_int(v).ok_or_else(bad)?),
            Ty::Float => match v {
                Value::Double(d) => Json::from(*d),
                Value::Str(s) => Json::from(s.trim().parse::<f64>().map_err(|_| bad())?),
                Value::Int(i) => Json::from(f64::from(*i)),
                _ => return Err(bad()),
            },
            Ty::Bool => Json::Bool(value_bool(v).ok_or_else(bad)?),
            Ty::Map => Json::Object(
                v.to_string_map()
                    .ok_or_else(bad)?
                    .into_iter()
                    .map(|(k, v)| (k, Json::String(v)))
                    .collect(),
            ),
            Ty::Set => Json::Array(
                v.as_array()
                    .ok_or_else(bad)?
                    .iter()
                    .map(|x| Json::String(x.to_text()))
                    .collect(),
            ),
        })
    }

    /// Parses the text form (`xe ... param=value`) of a value for this field.
    pub fn from_text(&self, class: &str, s: &str) -> ApiResult<Json> {
        let bad = || ApiError::invalid_value(&format!("{class}.{}", self.name), s);
        Ok(match self.ty {
            Ty::Str | Ty::Ref | Ty::DateTime => Json::String(s.to_string()),
            Ty::Int => Json::from(s.trim().parse::<i64>().map_err(|_| bad())?),
            Ty::Float => Json::from(s.trim().parse::<f64>().map_err(|_| bad())?),
            Ty::Bool => Json::Bool(parse_bool(s).ok_or_else(bad)?),
            Ty::Map | Ty::Set => return Err(bad()),
        })
    }
}

/// A JSON scalar as text (strings bare, numbers in decimal).
pub fn json_text(j: &Json) -> String {
    match j {
        Json::String(s) => s.clone(),
        Json::Null => String::new(),
        other => other.to_string(),
    }
}

/// A boolean in xapi's text forms.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// An int64 sent as a string (xapi's encoding) or as an XML-RPC int.
pub fn value_int(v: &Value) -> Option<i64> {
    match v {
        Value::Str(s) => s.trim().parse().ok(),
        Value::Int(i) => Some(i64::from(*i)),
        Value::I8(i) => Some(*i),
        _ => None,
    }
}

/// A boolean sent as `<boolean>` or as text.
pub fn value_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Str(s) => parse_bool(s),
        _ => None,
    }
}

/// A string map as stored JSON.
pub fn map_json(m: &BTreeMap<String, String>) -> Json {
    Json::Object(
        m.iter()
            .map(|(k, v)| (k.clone(), Json::String(v.clone())))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_are_strings_on_the_wire() {
        let f = class("VDI").unwrap().field("virtual_size").unwrap();
        assert_eq!(
            f.to_value(&Json::from(1_i64 << 40)),
            Value::Str("1099511627776".into())
        );
        assert_eq!(
            f.from_value("VDI", &Value::Str("42".into())).unwrap(),
            Json::from(42)
        );
        assert!(f.from_value("VDI", &Value::Str("x".into())).is_err());
    }

    #[test]
    fn every_class_starts_with_uuid() {
        for c in CLASSES {
            assert_eq!(c.fields[0].name, "uuid", "{}", c.name);
        }
    }
}
