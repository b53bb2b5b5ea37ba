//! PR IN parameter data of all four service actions never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sm_core::scsi::wire::{pr_in, transport_id};

fuzz_target!(|data: &[u8]| {
    let _ = pr_in::required_len(data);
    if let Ok(k) = pr_in::parse_read_keys(data) {
        assert_eq!(pr_in::parse_read_keys(&k.encode().expect("keys encode")).expect("keys parse"), k);
    }
    let _ = pr_in::parse_read_reservation(data);
    let _ = pr_in::parse_report_capabilities(data);
    let _ = pr_in::parse_read_full_status(data);
    let _ = transport_id::parse(data);
    let _ = transport_id::parse_exact(data);
});
