//! vdi_generate_config: the `vdi_attach_from_config` methodCall that attaches a VDI at boot
//! without xapi (static-vdis runs `<plugin> <config>`, HA runs it for the statefile; for detach
//! it rewrites the command to `vdi_detach_from_config`). The config carries device_config as the
//! call had it, so the plugin finds its storage again without a session.

use std::collections::BTreeMap;

use sm_core::driver::Ctx;
use sm_core::errors::SmResult;
use sm_core::xmlrpc::{self, StringStyle, Value};

/// The config of the call's VDI, whose location is `location`, with device_config as the call
/// had it.
pub fn generate_config(cx: &Ctx<'_>, location: &str) -> SmResult<String> {
    generate_config_with(cx, location, cx.dconf().as_map())
}

/// The config of the call's VDI, whose location is `location`, carrying `device_config`
/// (secrets resolved, the initiator recorded: what the storage needs with no xapi to ask).
pub fn generate_config_with(
    cx: &Ctx<'_>,
    location: &str,
    device_config: &BTreeMap<String, String>,
) -> SmResult<String> {
    let mut m = xmlrpc::Struct::new();
    m.insert("command".into(), Value::from("vdi_attach_from_config"));
    m.insert(
        "device_config".into(),
        Value::string_map(device_config.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
    );
    m.insert("sr_uuid".into(), Value::from(cx.sr_uuid()?.to_string()));
    m.insert("vdi_uuid".into(), Value::from(cx.vdi_uuid()?.to_string()));
    m.insert("vdi_location".into(), Value::from(location));
    m.insert("args".into(), Value::Array(vec![Value::from("true")]));
    m.insert("host_ref".into(), Value::from(cx.req.host_ref.as_str()));
    Ok(xmlrpc::write_call(
        "vdi_attach_from_config",
        &[Value::Struct(m)],
        StringStyle::Typed,
    ))
}
