//! XML-RPC codec costs at the sizes a plugin meets: the methodCall xapi sends (one struct with
//! every key) and the `VDI.get_all_records_where` answer of an SR of 1,000 VDIs that every
//! `sr_scan` reads (about 1.9 MB of XML).
//!
//! `cargo bench -p sm-core --bench xmlrpc`

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed setup is a failed test

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use sm_core::xenapi::DB_INTRODUCE_FIELDS;
use sm_core::xmlrpc::{self, StringStyle, Struct, Value};

/// `{Status: Success, Value: {ref: record}}` for `n` VDI records of the fields db_introduce sets.
fn records_response(n: usize) -> String {
    let mut all = Struct::new();
    for i in 0..n {
        let mut r = Struct::new();
        for f in DB_INTRODUCE_FIELDS {
            r.insert(f.to_string(), Value::from(format!("{f}-{i:04}")));
        }
        let mut sm = Struct::new();
        sm.insert("vdi_type".into(), Value::from("aio"));
        r.insert("sm_config".into(), Value::Struct(sm));
        r.insert("virtual_size".into(), Value::from("67108864"));
        all.insert(format!("OpaqueRef:{i:08x}"), Value::Struct(r));
    }
    let mut ok = Struct::new();
    ok.insert("Status".into(), Value::from("Success"));
    ok.insert("Value".into(), Value::Struct(all));
    xmlrpc::write_response(&Value::Struct(ok))
}

/// An `sr_scan` methodCall shaped as xapi sends it (untyped strings).
fn scan_call() -> String {
    let mut m = Struct::new();
    for (k, v) in [
        ("host_ref", "OpaqueRef:0b4c5e4a-1111-2222-3333-444455556666"),
        ("command", "sr_scan"),
        (
            "session_ref",
            "OpaqueRef:6a9b3e3c-1111-2222-3333-444455556666",
        ),
        ("sr_ref", "OpaqueRef:7f1d2c3b-1111-2222-3333-444455556666"),
        ("sr_uuid", "5e1f3c2a-8d4b-4e6f-9a0b-1c2d3e4f5a6b"),
        ("subtask_of", "OpaqueRef:NULL"),
    ] {
        m.insert(k.into(), Value::from(v));
    }
    let mut dc = Struct::new();
    dc.insert("device".into(), Value::from("/dev/disk/by-id/scsi-3600140"));
    dc.insert("SRmaster".into(), Value::from("true"));
    m.insert("device_config".into(), Value::Struct(dc));
    m.insert("args".into(), Value::Array(Vec::new()));
    xmlrpc::write_call("sr_scan", &[Value::Struct(m)], StringStyle::Untyped)
}

fn codec(c: &mut Criterion) {
    let call = scan_call();
    c.bench_function("parse_method_call_sr_scan", |b| {
        b.iter(|| xmlrpc::parse_method_call(black_box(&call)).unwrap())
    });
    let doc = records_response(1000);
    let mut g = c.benchmark_group("vdi_records_1000");
    g.sample_size(20);
    g.bench_function("parse_method_response", |b| {
        b.iter(|| xmlrpc::parse_method_response(black_box(&doc)).unwrap())
    });
    let parsed = xmlrpc::parse_method_response(&doc).unwrap();
    let xmlrpc::MethodResponse::Success(v) = parsed else {
        panic!("not a success")
    };
    g.bench_function("write_response", |b| {
        b.iter(|| xmlrpc::write_response(black_box(&v)))
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
