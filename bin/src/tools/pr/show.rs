//! `xsm pr show`: one document per LU (paths, generation, reservation, registrations with
//! the pool host each key belongs to), printed as JSON or as text.

use reservations::{Lu, LuState, PoolKeys, PrError, PrKey};
use serde_json::{Value, json};
use sm_core::errors::error_chain;

/// The document of `lu` in state `s`; `me` is named "this host", other keys by the pool.
pub fn doc(lu: &Lu<'_>, s: &LuState, pool: Option<&PoolKeys>, me: Option<PrKey>) -> Value {
    let name = |k: u64| -> Value {
        if me.is_some_and(|m| m.get() == k) {
            return json!("this host");
        }
        match pool {
            Some(p) => json!(p.describe(k)),
            None => Value::Null,
        }
    };
    json!({
        "lu": lu.id(),
        "paths": lu.paths().iter().map(|p| json!({
            "device": p.name, "usable": p.usable,
            "nexus": p.nexus.as_ref().map(ToString::to_string),
        })).collect::<Vec<_>>(),
        "generation": s.generation,
        "reservation": s.reservation.map(|r| json!({
            "type": r.pr_type.code(), "type_name": r.pr_type.abbrev(),
            "key": format!("{:#018x}", r.key), "holder": name(r.key),
        })),
        "registrations": s.registrations.iter().map(|r| json!({
            "key": format!("{:#018x}", r.key), "holder": r.holder,
            "nexus": s.detailed.then(|| r.describe_nexus()), "host": name(r.key),
        })).collect::<Vec<_>>(),
    })
}

/// The document of an LU whose state could not be read.
pub fn error_doc(lu: &Lu<'_>, e: &PrError) -> Value {
    json!({"lu": lu.id(), "error": error_chain(e)})
}

/// The text of one document.
pub fn text(d: &Value) -> String {
    let mut t = format!("LUN {}\n", d["lu"].as_str().unwrap_or("?"));
    if let Some(e) = d["error"].as_str() {
        t.push_str(&format!("  error: {e}\n"));
        return t;
    }
    let paths: Vec<String> = d["paths"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    format!(
                        "{}{}",
                        p["device"].as_str().unwrap_or("?"),
                        if p["usable"].as_bool() == Some(true) {
                            ""
                        } else {
                            " (down)"
                        }
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    t.push_str(&format!("  paths: {}\n", paths.join(", ")));
    match d["reservation"].as_object() {
        Some(r) => t.push_str(&format!(
            "  reservation: {} ({}) key {} {}\n",
            r["type_name"].as_str().unwrap_or("?"),
            r["type"],
            r["key"].as_str().unwrap_or("?"),
            r["holder"]
                .as_str()
                .map(|h| format!("[{h}]"))
                .unwrap_or_default()
        )),
        None => t.push_str("  reservation: none\n"),
    }
    t.push_str(&format!("  generation: {}\n", d["generation"]));
    let regs = d["registrations"].as_array().cloned().unwrap_or_default();
    if regs.is_empty() {
        t.push_str("  registrations: none\n");
        return t;
    }
    t.push_str(&format!(
        "  {:<20} {:<6} {:<52} {}\n",
        "KEY", "HOLDER", "NEXUS", "HOST"
    ));
    for r in regs {
        t.push_str(&format!(
            "  {:<20} {:<6} {:<52} {}\n",
            r["key"].as_str().unwrap_or("?"),
            if r["holder"].as_bool() == Some(true) {
                "yes"
            } else {
                ""
            },
            r["nexus"].as_str().unwrap_or("-"),
            r["host"].as_str().unwrap_or("-"),
        ));
    }
    t
}
