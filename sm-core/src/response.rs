//! What SMAPI calls return, and how each result is rendered for xapi (sm-anchor §1.3–1.6).

use std::collections::BTreeMap;

use crate::driver_info::DriverInfo;
use crate::errors::SmError;
use crate::xmlrpc::{self, Struct, Value};

/// `{uuid, location}`: the result of vdi_create, vdi_snapshot, vdi_clone, vdi_resize and
/// vdi_introduce. xapi finds the new VDI record by this location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VdiLocation {
    /// The VDI uuid.
    pub uuid: String,
    /// Its location (the scan key).
    pub location: String,
}

/// The `vdi_attach` result struct.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AttachInfo {
    /// Block device path for blkback, when there is one.
    pub params: Option<String>,
    /// `nbd:unix:<socket>:exportname=<name>`, or "" (a mandatory key for xapi).
    pub params_nbd: String,
    /// Whether the datapath should use O_DIRECT.
    pub o_direct: bool,
    /// Why (or why not) O_DIRECT.
    pub o_direct_reason: String,
    /// Keys the datapath writes to xenstore (e.g. synthetic SCSI VPD pages).
    pub xenstore_data: BTreeMap<String, String>,
}

/// A successful SMAPI result.
#[derive(Debug, Clone)]
pub enum Response {
    /// `<nil/>`.
    Nil,
    /// A string (sr_probe XML, sr_content_type, vdi_generate_config).
    Str(String),
    /// `{uuid, location}`.
    Vdi(VdiLocation),
    /// The vdi_attach struct.
    Attach(AttachInfo),
    /// sr_get_driver_info.
    DriverInfo(&'static DriverInfo),
}

fn bool01(b: bool) -> Value {
    Value::Str(if b { "1" } else { "0" }.into())
}

impl Response {
    /// The XML-RPC value xapi parses.
    pub fn to_value(&self) -> Value {
        match self {
            Response::Nil => Value::Nil,
            Response::Str(s) => Value::Str(s.clone()),
            Response::Vdi(v) => {
                Value::string_map([("uuid", v.uuid.as_str()), ("location", v.location.as_str())])
            }
            Response::Attach(a) => {
                let mut m = Struct::new();
                if let Some(p) = &a.params {
                    m.insert("params".into(), Value::Str(p.clone()));
                }
                m.insert("params_nbd".into(), Value::Str(a.params_nbd.clone()));
                m.insert("o_direct".into(), bool01(a.o_direct));
                m.insert(
                    "o_direct_reason".into(),
                    Value::Str(a.o_direct_reason.clone()),
                );
                m.insert(
                    "xenstore_data".into(),
                    Value::string_map(
                        a.xenstore_data
                            .iter()
                            .map(|(k, v)| (k.as_str(), v.as_str())),
                    ),
                );
                Value::Struct(m)
            }
            Response::DriverInfo(info) => info.to_value(),
        }
    }

    /// The methodResponse document.
    pub fn to_xml(&self) -> String {
        xmlrpc::write_response(&self.to_value())
    }
}

/// The fault document for an error.
pub fn fault_xml(e: &SmError) -> String {
    let f = e.to_fault();
    xmlrpc::write_fault(f.code, &f.string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmlrpc::{MethodResponse, parse_method_response};

    #[test]
    fn attach_struct_has_mandatory_keys_and_01_booleans() {
        let r = Response::Attach(AttachInfo {
            params: Some("/dev/sm/x".into()),
            params_nbd: "nbd:unix:/run/x.sock:exportname=v".into(),
            o_direct: true,
            o_direct_reason: String::new(),
            xenstore_data: BTreeMap::new(),
        });
        let MethodResponse::Success(Value::Struct(m)) = parse_method_response(&r.to_xml()).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            m["params_nbd"],
            Value::Str("nbd:unix:/run/x.sock:exportname=v".into())
        );
        assert_eq!(m["o_direct"], Value::Str("1".into()));
        assert_eq!(m["params"], Value::Str("/dev/sm/x".into()));
        assert_eq!(m["xenstore_data"], Value::Struct(Struct::new()));
    }

    #[test]
    fn vdi_location_struct() {
        let r = Response::Vdi(VdiLocation {
            uuid: "u".into(),
            location: "l".into(),
        });
        let MethodResponse::Success(v) = parse_method_response(&r.to_xml()).unwrap() else {
            panic!()
        };
        assert_eq!(v, Value::string_map([("uuid", "u"), ("location", "l")]));
    }
}
