//! The emulated xapi database: one table per class, records keyed by OpaqueRef, fields as
//! XenAPI names them, persisted as JSON after every change so that the state survives the
//! emulator and every `xe` call can be a separate process.

pub mod filter;
pub mod schema;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value as Json;
use sm_core::xmlrpc::{Struct, Value};

use crate::error::{ApiError, ApiResult};
use schema::{Class, NULL_REF};

/// The current time as xapi writes datetimes (`YYYYMMDDTHH:MM:SSZ`, UTC).
pub fn xapi_now() -> String {
    sm_core::host::clock::Utc::now().xenapi()
}

/// One record: field name to stored JSON value.
pub type Record = serde_json::Map<String, Json>;

/// Why the database file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// I/O on the database file.
    #[error("database file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a database.
    #[error("database file {path} is corrupt: {source}")]
    Corrupt {
        /// The file.
        path: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

/// Typed access to record fields.
pub trait RecordExt {
    /// A string field ("" when absent).
    fn s(&self, k: &str) -> String;
    /// A boolean field.
    fn b(&self, k: &str) -> bool;
    /// An integer field.
    fn i(&self, k: &str) -> i64;
    /// A map field.
    fn map(&self, k: &str) -> BTreeMap<String, String>;
    /// A set field.
    fn set(&self, k: &str) -> Vec<String>;
    /// Sets a string field.
    fn put_s(&mut self, k: &str, v: impl Into<String>);
    /// Sets a boolean field.
    fn put_b(&mut self, k: &str, v: bool);
    /// Sets an integer field.
    fn put_i(&mut self, k: &str, v: i64);
    /// Sets a map field.
    fn put_map(&mut self, k: &str, v: &BTreeMap<String, String>);
}

impl RecordExt for Record {
    fn s(&self, k: &str) -> String {
        self.get(k).map(schema::json_text).unwrap_or_default()
    }

    fn b(&self, k: &str) -> bool {
        self.get(k).and_then(Json::as_bool).unwrap_or(false)
    }

    fn i(&self, k: &str) -> i64 {
        match self.get(k) {
            Some(Json::Number(n)) => n.as_i64().unwrap_or(0),
            Some(Json::String(s)) => s.trim().parse().unwrap_or(0),
            _ => 0,
        }
    }

    fn map(&self, k: &str) -> BTreeMap<String, String> {
        self.get(k)
            .and_then(Json::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), schema::json_text(v)))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn set(&self, k: &str) -> Vec<String> {
        self.get(k)
            .and_then(Json::as_array)
            .map(|a| a.iter().map(schema::json_text).collect())
            .unwrap_or_default()
    }

    fn put_s(&mut self, k: &str, v: impl Into<String>) {
        self.insert(k.to_string(), Json::String(v.into()));
    }

    fn put_b(&mut self, k: &str, v: bool) {
        self.insert(k.to_string(), Json::Bool(v));
    }

    fn put_i(&mut self, k: &str, v: i64) {
        self.insert(k.to_string(), Json::from(v));
    }

    fn put_map(&mut self, k: &str, v: &BTreeMap<String, String>) {
        self.insert(k.to_string(), schema::map_json(v));
    }
}

/// A new OpaqueRef.
pub fn new_ref() -> String {
    format!("OpaqueRef:{}", uuid::Uuid::new_v4())
}

/// A new uuid.
pub fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Whether a reference is null (empty or `OpaqueRef:NULL`).
pub fn is_null(r: &str) -> bool {
    r.is_empty() || r == NULL_REF
}

/// The database.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Db {
    tables: BTreeMap<String, BTreeMap<String, Record>>,
}

fn class_def(class: &str) -> ApiResult<&'static Class> {
    schema::class(class).ok_or_else(|| ApiError::internal(format!("unknown class {class}")))
}

impl Db {
    /// An empty database.
    pub fn new() -> Db {
        Db::default()
    }

    /// Reads a database file.
    pub fn load(path: &Path) -> Result<Db, DbError> {
        let text = std::fs::read_to_string(path).map_err(|source| DbError::Io {
            path: path.display().to_string(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| DbError::Corrupt {
            path: path.display().to_string(),
            source,
        })
    }

    /// Writes the database atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<(), DbError> {
        let io = |source| DbError::Io {
            path: path.display().to_string(),
            source,
        };
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).map_err(|source| DbError::Corrupt {
            path: path.display().to_string(),
            source,
        })?;
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    fn table(&self, class: &str) -> Option<&BTreeMap<String, Record>> {
        self.tables.get(class)
    }

    /// Creates a record: missing fields get their defaults and a fresh uuid. Returns its ref.
    pub fn create(&mut self, class: &str, mut rec: Record) -> ApiResult<String> {
        let c = class_def(class)?;
        for f in c.fields {
            if !rec.contains_key(f.name) {
                rec.insert(f.name.to_string(), f.default_json());
            }
        }
        if rec.s("uuid").is_empty() {
            rec.put_s("uuid", new_uuid());
        }
        let r = new_ref();
        self.tables
            .entry(class.to_string())
            .or_default()
            .insert(r.clone(), rec);
        Ok(r)
    }

    /// A record.
    pub fn get(&self, class: &str, r: &str) -> ApiResult<&Record> {
        self.table(class)
            .and_then(|t| t.get(r))
            .ok_or_else(|| ApiError::handle_invalid(class, r))
    }

    /// A record, mutably.
    pub fn get_mut(&mut self, class: &str, r: &str) -> ApiResult<&mut Record> {
        self.tables
            .get_mut(class)
            .and_then(|t| t.get_mut(r))
            .ok_or_else(|| ApiError::handle_invalid(class, r))
    }

    /// Whether a record exists.
    pub fn exists(&self, class: &str, r: &str) -> bool {
        self.table(class).is_some_and(|t| t.contains_key(r))
    }

    /// Removes a record.
    pub fn destroy(&mut self, class: &str, r: &str) -> ApiResult<Record> {
        self.tables
            .get_mut(class)
            .and_then(|t| t.remove(r))
            .ok_or_else(|| ApiError::handle_invalid(class, r))
    }

    /// Every ref of a class.
    pub fn refs(&self, class: &str) -> Vec<String> {
        self.table(class)
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Refs of records matching `pred`.
    pub fn find(&self, class: &str, pred: impl Fn(&Record) -> bool) -> Vec<String> {
        self.table(class)
            .map(|t| {
                t.iter()
                    .filter(|(_, r)| pred(r))
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Refs whose `field` equals `value` as text.
    pub fn where_eq(&self, class: &str, field: &str, value: &str) -> Vec<String> {
        self.find(class, |r| r.s(field) == value)
    }

    /// The ref of the record with this uuid, or `UUID_INVALID`.
    pub fn by_uuid(&self, class: &str, uuid: &str) -> ApiResult<String> {
        self.where_eq(class, "uuid", uuid)
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::uuid_invalid(class, uuid))
    }

    /// The class a ref belongs to.
    pub fn class_of(&self, r: &str) -> Option<&'static str> {
        schema::CLASSES
            .iter()
            .map(|c| c.name)
            .find(|c| self.exists(c, r))
    }

    /// A field as text, including computed fields.
    pub fn field_text(&self, class: &str, r: &str, field: &str) -> ApiResult<String> {
        let rec = self.get(class, r)?;
        Ok(rec.s(field))
    }

    /// One field as xapi sends it, stored or computed.
    pub fn field_value(&self, class: &str, r: &str, field: &str) -> ApiResult<Value> {
        let c = class_def(class)?;
        let rec = self.get(class, r)?;
        if let Some(f) = c.field(field) {
            let j = rec.get(field).cloned().unwrap_or_else(|| f.default_json());
            return Ok(f.to_value(&j));
        }
        if let Some(rev) = c.reverse_field(field) {
            return Ok(Value::Array(
                self.where_eq(rev.class, rev.via, r)
                    .into_iter()
                    .map(Value::Str)
                    .collect(),
            ));
        }
        Err(ApiError::internal(format!("{class} has no field {field}")))
    }

    /// The whole record as xapi's `get_record` returns it.
    pub fn record_value(&self, class: &str, r: &str) -> ApiResult<Value> {
        let c = class_def(class)?;
        let mut m = Struct::new();
        for f in c.fields {
            m.insert(f.name.to_string(), self.field_value(class, r, f.name)?);
        }
        for rev in c.reverse {
            m.insert(rev.name.to_string(), self.field_value(class, r, rev.name)?);
        }
        Ok(Value::Struct(m))
    }

    /// Records of `class` matching a `get_all_records_where` expression, as a ref -> record map.
    pub fn records_where(&self, class: &str, expr: &filter::Expr) -> ApiResult<Value> {
        let mut m = Struct::new();
        for r in self.refs(class) {
            let rec = self.get(class, &r)?;
            if expr.eval(&|f: &str| rec.s(f)) {
                m.insert(r.clone(), self.record_value(class, &r)?);
            }
        }
        Ok(Value::Struct(m))
    }

    /// A short human description of a ref (`uuid (name)`), as xe's `ref_convert` prints it.
    pub fn describe_ref(&self, r: &str) -> Option<String> {
        let class = self.class_of(r)?;
        let rec = self.get(class, r).ok()?;
        let name = rec.s("name_label");
        Some(if name.is_empty() {
            rec.s("uuid")
        } else {
            format!("{} ({name})", rec.s("uuid"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_fills_defaults_and_roundtrips_to_disk() {
        let mut db = Db::new();
        let mut rec = Record::new();
        rec.put_s("name_label", "disk");
        let r = db.create("VDI", rec).unwrap();
        let v = db.get("VDI", &r).unwrap();
        assert_eq!(v.s("type"), "user");
        assert!(v.b("managed"));
        assert_eq!(v.s("snapshot_of"), NULL_REF);
        assert_eq!(v.s("uuid").len(), 36);
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("db.json");
        db.save(&p).unwrap();
        let db2 = Db::load(&p).unwrap();
        assert_eq!(db2.get("VDI", &r).unwrap(), v);
        assert_eq!(db2.by_uuid("VDI", &v.s("uuid")).unwrap(), r);
        assert_eq!(db2.by_uuid("VDI", "nope").unwrap_err().code, "UUID_INVALID");
        assert_eq!(
            db2.get("VDI", "OpaqueRef:x").unwrap_err().code,
            "HANDLE_INVALID"
        );
    }

    #[test]
    fn reverse_fields_are_computed() {
        let mut db = Db::new();
        let sr = db.create("SR", Record::new()).unwrap();
        let mut v = Record::new();
        v.put_s("SR", &sr);
        let vdi = db.create("VDI", v).unwrap();
        let rec = db.record_value("SR", &sr).unwrap();
        assert_eq!(
            rec.as_struct().unwrap()["VDIs"],
            Value::Array(vec![Value::Str(vdi.clone())])
        );
        let e = filter::Expr::parse(&format!("field \"SR\" = \"{sr}\"")).unwrap();
        let m = db.records_where("VDI", &e).unwrap();
        assert!(m.as_struct().unwrap().contains_key(&vdi));
        assert_eq!(
            db.record_value("VDI", &vdi).unwrap().as_struct().unwrap()["virtual_size"],
            Value::Str("0".into())
        );
    }
}
