//! Parser and transport-path costs of the SCSI layer, on bytes captured from LIO 6.1.
//!
//! `cargo bench -p sm-core --features test-utils --bench scsi_parse`

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed setup is a failed test

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use sm_core::scsi::wire::{inquiry, pr_in, rtpg, sense, vpd};
use sm_core::scsi::{self, TpgId};
use sm_core::testing::{FakeLu, Nexus};

fn hex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|t| u8::from_str_radix(t, 16).expect("fixture hex"))
        .collect()
}

macro_rules! fixture {
    ($name:literal) => {
        hex(include_str!(concat!(
            "../tests/fixtures/scsi/lio-6.1/",
            $name,
            ".hex"
        )))
    };
}

fn parsers(c: &mut Criterion) {
    let inq = fixture!("inquiry_std");
    let vpd83 = fixture!("vpd83_port1");
    let rtpg_std = fixture!("rtpg_std");
    let full = fixture!("pr_read_full_status_resv");
    let keys = fixture!("pr_read_keys_three");
    let fixed = fixture!("tur_standby_hostb_p2_1.sense");
    let desc = fixture!("big_sense_invalid_opcode.sense");
    c.bench_function("inquiry_standard", |b| {
        b.iter(|| inquiry::parse(black_box(&inq)))
    });
    c.bench_function("vpd83_and_wwid", |b| {
        b.iter(|| vpd::parse_device_id(black_box(&vpd83)).map(|id| id.naa_wwid()))
    });
    c.bench_function("rtpg_standard", |b| {
        b.iter(|| rtpg::parse(black_box(&rtpg_std)))
    });
    c.bench_function("pr_read_full_status_3", |b| {
        b.iter(|| pr_in::parse_read_full_status(black_box(&full)))
    });
    c.bench_function("pr_read_keys_3", |b| {
        b.iter(|| pr_in::parse_read_keys(black_box(&keys)))
    });
    c.bench_function("sense_fixed", |b| {
        b.iter(|| sense::parse(black_box(&fixed)))
    });
    c.bench_function("sense_descriptor", |b| {
        b.iter(|| sense::parse(black_box(&desc)))
    });
}

fn fake_round_trips(c: &mut Criterion) {
    let lu = FakeLu::default();
    let p = lu.path("/dev/sdb", Nexus::iscsi("iqn.2026-01.lab.host:hosta", 1, 1));
    c.bench_function("fake_rtpg_with_extended_fallback", |b| {
        b.iter(|| {
            scsi::report_target_port_groups(black_box(&p))
                .map(|g| g.group(TpgId(1)).map(|x| x.state))
        })
    });
    c.bench_function("fake_vpd_device_id", |b| {
        b.iter(|| scsi::vpd_device_id(black_box(&p)))
    });
}

criterion_group!(benches, parsers, fake_round_trips);
criterion_main!(benches);
