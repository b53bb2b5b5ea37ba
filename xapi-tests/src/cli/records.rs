//! How `xe` shows records: the CLI names of each class's fields, `<class>-list` with filters,
//! `params=` and `--minimal`, and `<class>-param-get/-set/-list`.

use std::collections::BTreeMap;

use super::{CliError, CliResult, Params, name_of};
use crate::db::schema::{self, NULL_REF};
use crate::db::{Db, RecordExt, is_null};
use crate::error::{ApiError, ApiResult};

/// How a CLI field is read from the database.
#[derive(Debug, Clone, Copy)]
enum Get {
    /// A scalar field as text.
    Field(&'static str),
    /// An enum field as xe prints it, in lower case (`power_state` `Halted` is `halted`).
    Lower(&'static str),
    /// A map field (`k: v; k2: v2`).
    Map(&'static str),
    /// A set field (`a; b`).
    Set(&'static str),
    /// The uuid of the object a ref field points to.
    RefUuid(&'static str, &'static str),
    /// The name_label of the object a ref field points to.
    RefName(&'static str, &'static str),
    /// The uuids of the objects of a class referring to this one.
    Reverse(&'static str, &'static str),
    /// An SR's host: the name of its only PBD's host, or `<shared>`.
    SrHost,
}

/// One CLI field.
#[derive(Debug, Clone, Copy)]
struct CliField {
    name: &'static str,
    tag: &'static str,
    get: Get,
    /// The XenAPI field `param-set` writes, if writable.
    set: Option<&'static str>,
}

const fn ro(name: &'static str, get: Get) -> CliField {
    CliField {
        name,
        tag: " RO",
        get,
        set: None,
    }
}

const fn rw(name: &'static str, get: Get, field: &'static str) -> CliField {
    CliField {
        name,
        tag: " RW",
        get,
        set: Some(field),
    }
}

const fn mro(name: &'static str, field: &'static str) -> CliField {
    CliField {
        name,
        tag: "MRO",
        get: Get::Map(field),
        set: None,
    }
}

const fn mrw(name: &'static str, field: &'static str) -> CliField {
    CliField {
        name,
        tag: "MRW",
        get: Get::Map(field),
        set: Some(field),
    }
}

const fn sro(name: &'static str, get: Get) -> CliField {
    CliField {
        name,
        tag: "SRO",
        get,
        set: None,
    }
}

use Get::{Field, RefName, RefUuid, Reverse, Set, SrHost};

const UUID: CliField = ro("uuid", Field("uuid"));
const NAME: CliField = rw("name-label", Field("name_label"), "name_label");
const DESC: CliField = rw(
    "name-description",
    Field("name_description"),
    "name_description",
);

/// One class as the CLI shows it.
struct CliClass {
    name: &'static str,
    xapi: &'static str,
    fields: &'static [CliField],
    list: &'static [&'static str],
}

static CLASSES: &[CliClass] = &[
    CliClass {
        name: "pool",
        xapi: "pool",
        fields: &[
            UUID,
            NAME,
            DESC,
            ro("master", RefUuid("master", "host")),
            rw("default-SR", RefUuid("default_SR", "SR"), "default_SR"),
            rw(
                "suspend-image-SR",
                RefUuid("suspend_image_SR", "SR"),
                "suspend_image_SR",
            ),
            mrw("other-config", "other_config"),
        ],
        list: &[
            "uuid",
            "name-label",
            "name-description",
            "master",
            "default-SR",
        ],
    },
    CliClass {
        name: "host",
        xapi: "host",
        fields: &[
            UUID,
            NAME,
            DESC,
            ro("hostname", Field("hostname")),
            ro("address", Field("address")),
            ro("enabled", Field("enabled")),
            ro("multipathing", Field("multipathing")),
            mrw("other-config", "other_config"),
        ],
        list: &["uuid", "name-label", "name-description"],
    },
    CliClass {
        name: "sr",
        xapi: "SR",
        fields: &[
            UUID,
            NAME,
            DESC,
            ro("host", SrHost),
            ro("type", Field("type")),
            ro("content-type", Field("content_type")),
            rw("shared", Field("shared"), "shared"),
            ro("physical-size", Field("physical_size")),
            ro("physical-utilisation", Field("physical_utilisation")),
            ro("virtual-allocation", Field("virtual_allocation")),
            sro("PBDs", Reverse("PBD", "SR")),
            sro("VDIs", Reverse("VDI", "SR")),
            mro("sm-config", "sm_config"),
            mrw("other-config", "other_config"),
        ],
        list: &[
            "uuid",
            "name-label",
            "name-description",
            "host",
            "type",
            "content-type",
        ],
    },
    CliClass {
        name: "pbd",
        xapi: "PBD",
        fields: &[
            UUID,
            ro("host-uuid", RefUuid("host", "host")),
            ro("host-name-label", RefName("host", "host")),
            ro("sr-uuid", RefUuid("SR", "SR")),
            ro("sr-name-label", RefName("SR", "SR")),
            mro("device-config", "device_config"),
            ro("currently-attached", Field("currently_attached")),
            mrw("other-config", "other_config"),
        ],
        list: &[
            "uuid",
            "host-uuid",
            "sr-uuid",
            "device-config",
            "currently-attached",
        ],
    },
    CliClass {
        name: "vdi",
        xapi: "VDI",
        fields: &[
            UUID,
            NAME,
            DESC,
            ro("sr-uuid", RefUuid("SR", "SR")),
            ro("sr-name-label", RefName("SR", "SR")),
            ro("vbd-uuids", Reverse("VBD", "VDI")),
            ro("virtual-size", Field("virtual_size")),
            ro("physical-utilisation", Field("physical_utilisation")),
            ro("location", Field("location")),
            ro("type", Field("type")),
            ro("sharable", Field("sharable")),
            ro("read-only", Field("read_only")),
            ro("managed", Field("managed")),
            ro("missing", Field("missing")),
            ro("is-a-snapshot", Field("is_a_snapshot")),
            ro("snapshot-of", RefUuid("snapshot_of", "VDI")),
            sro("snapshots", Reverse("VDI", "snapshot_of")),
            ro("snapshot-time", Field("snapshot_time")),
            rw("on-boot", Field("on_boot"), "on_boot"),
            rw("allow-caching", Field("allow_caching"), "allow_caching"),
            mrw("sm-config", "sm_config"),
            mrw("other-config", "other_config"),
            mrw("xenstore-data", "xenstore_data"),
            CliField {
                name: "tags",
                tag: "SRW",
                get: Set("tags"),
                set: None,
            },
        ],
        list: &[
            "uuid",
            "name-label",
            "name-description",
            "virtual-size",
            "sharable",
            "read-only",
        ],
    },
    CliClass {
        name: "vm",
        xapi: "VM",
        fields: &[
            UUID,
            NAME,
            DESC,
            ro("power-state", Get::Lower("power_state")),
            rw("is-a-template", Field("is_a_template"), "is_a_template"),
            ro("resident-on", RefUuid("resident_on", "host")),
            ro("suspend-VDI-uuid", RefUuid("suspend_VDI", "VDI")),
            ro("memory-static-max", Field("memory_static_max")),
            rw("PV-bootloader", Field("PV_bootloader"), "PV_bootloader"),
            ro("dom-id", Field("domid")),
            mrw("other-config", "other_config"),
        ],
        list: &["uuid", "name-label", "power-state"],
    },
    CliClass {
        name: "vbd",
        xapi: "VBD",
        fields: &[
            UUID,
            ro("vm-uuid", RefUuid("VM", "VM")),
            ro("vm-name-label", RefName("VM", "VM")),
            ro("vdi-uuid", RefUuid("VDI", "VDI")),
            ro("vdi-name-label", RefName("VDI", "VDI")),
            ro("empty", Field("empty")),
            ro("device", Field("device")),
            rw("userdevice", Field("userdevice"), "userdevice"),
            rw("bootable", Field("bootable"), "bootable"),
            rw("mode", Field("mode"), "mode"),
            rw("type", Field("type"), "type"),
            ro("currently-attached", Field("currently_attached")),
            mrw("other-config", "other_config"),
        ],
        list: &[
            "uuid",
            "vm-uuid",
            "vm-name-label",
            "vdi-uuid",
            "empty",
            "device",
        ],
    },
    CliClass {
        name: "sm",
        xapi: "SM",
        fields: &[
            UUID,
            ro("name-label", Field("name_label")),
            ro("name-description", Field("name_description")),
            ro("type", Field("type")),
            ro("vendor", Field("vendor")),
            ro("copyright", Field("copyright")),
            ro("required-api-version", Field("required_api_version")),
            sro("capabilities", Set("capabilities")),
            mro("features", "features"),
            mro("configuration", "configuration"),
            ro("driver-filename", Field("driver_filename")),
        ],
        list: &[
            "uuid",
            "name-label",
            "type",
            "vendor",
            "copyright",
            "required-api-version",
        ],
    },
    CliClass {
        name: "secret",
        xapi: "secret",
        fields: &[UUID, rw("value", Field("value"), "value")],
        list: &["uuid", "value"],
    },
];

fn class(name: &str) -> Option<&'static CliClass> {
    CLASSES.iter().find(|c| c.name == name)
}

fn map_text(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn value(db: &Db, c: &CliClass, r: &str, f: &CliField) -> ApiResult<String> {
    let rec = db.get(c.xapi, r)?;
    Ok(match f.get {
        Field(k) => rec.s(k),
        Get::Lower(k) => rec.s(k).to_lowercase(),
        Get::Map(k) => map_text(&rec.map(k)),
        Set(k) => rec.set(k).join("; "),
        RefUuid(k, cls) => {
            let t = rec.s(k);
            if is_null(&t) {
                "<not in database>".to_string()
            } else {
                db.get(cls, &t)
                    .map(|x| x.s("uuid"))
                    .unwrap_or_else(|_| "<not in database>".to_string())
            }
        }
        RefName(k, cls) => name_of(db, cls, &rec.s(k)),
        Reverse(cls, via) => db
            .where_eq(cls, via, r)
            .iter()
            .filter_map(|x| db.get(cls, x).ok().map(|x| x.s("uuid")))
            .collect::<Vec<_>>()
            .join("; "),
        SrHost => {
            if rec.b("shared") {
                "<shared>".to_string()
            } else {
                db.where_eq("PBD", "SR", r)
                    .first()
                    .and_then(|p| db.get("PBD", p).ok())
                    .map(|p| name_of(db, "host", &p.s("host")))
                    .unwrap_or_else(|| "<not in database>".to_string())
            }
        }
    })
}

/// A record block as `Cli_printer.multi_line_record` lays it out: the first key left-aligned,
/// the others right-aligned, in a column 4 wider than the longest key.
pub fn print_record(rows: &[(String, String)]) -> String {
    let width = 4 + rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (i, (k, v)) in rows.iter().enumerate() {
        if i == 0 {
            out.push_str(&format!("{k:<width$}: {v}\n"));
        } else {
            out.push_str(&format!("{k:>width$}: {v}\n"));
        }
    }
    out
}

fn matches(db: &Db, c: &CliClass, r: &str, p: &Params) -> ApiResult<bool> {
    for (k, want) in &p.kv {
        if k == "params" {
            continue;
        }
        let f = c
            .fields
            .iter()
            .find(|f| f.name == k)
            .ok_or_else(|| ApiError::invalid_value("filter", k))?;
        if value(db, c, r, f)? != *want {
            return Ok(false);
        }
    }
    for (m, entries) in &p.maps {
        let f = c
            .fields
            .iter()
            .find(|f| f.name == m && matches!(f.get, Get::Map(_)))
            .ok_or_else(|| ApiError::invalid_value("filter", m))?;
        let Get::Map(field) = f.get else { continue };
        let have = db.get(c.xapi, r)?.map(field);
        if entries.iter().any(|(k, v)| have.get(k) != Some(v)) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `<class>-list [filters] [params=a,b|all] [--minimal]`.
pub fn list(db: &Db, cls: &str, p: &Params) -> CliResult<String> {
    let c = class(cls).ok_or_else(|| CliError::UnknownCommand(format!("{cls}-list")))?;
    let mut p = p.clone();
    if cls == "vm" && !p.kv.contains_key("is-a-template") {
        p.kv.insert("is-a-template".into(), "false".into());
    }
    let fields: Vec<&CliField> = match p.kv.get("params").map(String::as_str) {
        Some("all") => c.fields.iter().collect(),
        Some(list) => list
            .split(',')
            .map(|n| {
                c.fields
                    .iter()
                    .find(|f| f.name == n)
                    .ok_or_else(|| CliError::Other(format!("Unknown field '{n}'")))
            })
            .collect::<CliResult<_>>()?,
        None => c
            .list
            .iter()
            .filter_map(|n| c.fields.iter().find(|f| f.name == *n))
            .collect(),
    };
    let mut refs = Vec::new();
    let mut all = db.refs(c.xapi);
    all.sort_by_key(|r| db.get(c.xapi, r).map(|x| x.s("uuid")).unwrap_or_default());
    for r in all {
        if matches(db, c, &r, &p)? {
            refs.push(r);
        }
    }
    if p.flag("minimal") {
        let first = fields.first().copied().unwrap_or(&UUID);
        let vals = refs
            .iter()
            .map(|r| value(db, c, r, first).map(|v| v.replace('\\', "\\\\").replace(',', "\\,")))
            .collect::<ApiResult<Vec<_>>>()?;
        return Ok(format!("{}\n", vals.join(",")));
    }
    let mut out = String::new();
    for r in refs {
        let rows = fields
            .iter()
            .map(|f| Ok((format!("{} ({})", f.name, f.tag), value(db, c, &r, f)?)))
            .collect::<ApiResult<Vec<_>>>()?;
        out.push_str(&print_record(&rows));
        out.push_str("\n\n");
    }
    Ok(out)
}

fn by_uuid(db: &Db, c: &CliClass, p: &Params) -> CliResult<String> {
    Ok(db.by_uuid(c.xapi, p.req("uuid")?)?)
}

/// `<class>-param-list uuid=...`.
pub fn param_list(db: &Db, cls: &str, p: &Params) -> CliResult<String> {
    let c = class(cls).ok_or_else(|| CliError::UnknownCommand(format!("{cls}-param-list")))?;
    let r = by_uuid(db, c, p)?;
    let rows = c
        .fields
        .iter()
        .map(|f| Ok((format!("{} ({})", f.name, f.tag), value(db, c, &r, f)?)))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(format!("{}\n\n", print_record(&rows)))
}

/// `<class>-param-get uuid=... param-name=... [param-key=...]`.
pub fn param_get(db: &Db, cls: &str, p: &Params) -> CliResult<String> {
    let c = class(cls).ok_or_else(|| CliError::UnknownCommand(format!("{cls}-param-get")))?;
    let r = by_uuid(db, c, p)?;
    let name = p.req("param-name")?;
    let f = c
        .fields
        .iter()
        .find(|f| f.name == name)
        .ok_or_else(|| CliError::Other(format!("Unknown field '{name}'")))?;
    match (p.kv.get("param-key"), f.get) {
        (Some(key), Get::Map(field)) => {
            let m = db.get(c.xapi, &r)?.map(field);
            m.get(key)
                .map(|v| format!("{v}\n"))
                .ok_or_else(|| CliError::Other(format!("Key {key} not found in map")))
        }
        (Some(_), _) => Err(CliError::Other(format!("Field '{name}' is not a map"))),
        (None, _) => Ok(format!("{}\n", value(db, c, &r, f)?)),
    }
}

/// `<class>-param-set uuid=... field=value ... map:key=value ...`: the XenAPI writes the
/// fields' setters make (ref-valued fields take a uuid).
pub fn param_set(db: &mut Db, cls: &str, p: &Params) -> CliResult<()> {
    let c = class(cls).ok_or_else(|| CliError::UnknownCommand(format!("{cls}-param-set")))?;
    let r = by_uuid(db, c, p)?;
    let xclass =
        schema::class(c.xapi).ok_or_else(|| CliError::Other(format!("no class {}", c.xapi)))?;
    for (k, v) in p.kv.iter().filter(|(k, _)| *k != "uuid") {
        let f = c
            .fields
            .iter()
            .find(|f| f.name == k)
            .ok_or_else(|| CliError::Other(format!("Unknown field '{k}'")))?;
        let target = f
            .set
            .ok_or_else(|| CliError::Other(format!("Field '{k}' is read-only")))?;
        let sf = xclass
            .field(target)
            .ok_or_else(|| CliError::Other(format!("no field {target}")))?;
        let j = match f.get {
            RefUuid(_, cls) => {
                let rr = if v.is_empty() {
                    NULL_REF.to_string()
                } else {
                    db.by_uuid(cls, v)?
                };
                serde_json::Value::String(rr)
            }
            Get::Map(_) => {
                return Err(CliError::Other(format!(
                    "Use {k}:<key>=<value> to set a map"
                )));
            }
            _ => sf.from_text(c.xapi, v)?,
        };
        db.get_mut(c.xapi, &r)?.insert(target.to_string(), j);
    }
    for (m, entries) in &p.maps {
        let f = c
            .fields
            .iter()
            .find(|f| f.name == m)
            .ok_or_else(|| CliError::Other(format!("Unknown field '{m}'")))?;
        let (Get::Map(field), Some(_)) = (f.get, f.set) else {
            return Err(CliError::Other(format!("Field '{m}' is read-only")));
        };
        let rec = db.get_mut(c.xapi, &r)?;
        let mut cur = rec.map(field);
        cur.extend(entries.clone());
        rec.put_map(field, &cur);
    }
    Ok(())
}

/// Whether `cls` is a class the CLI lists.
pub fn known(cls: &str) -> bool {
    class(cls).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_layout_matches_cli_printer() {
        let rows = vec![
            ("uuid ( RO)".to_string(), "u".to_string()),
            ("name-label ( RW)".to_string(), "TestSR".to_string()),
        ];
        assert_eq!(
            print_record(&rows),
            "uuid ( RO)          : u\n    name-label ( RW): TestSR\n"
        );
    }
}
