//! Standard INQUIRY and READ CAPACITY(16) data never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sm_core::scsi::wire::{capacity, inquiry};

fuzz_target!(|data: &[u8]| {
    let _ = inquiry::required_len(data);
    let _ = inquiry::parse(data);
    if let Ok(c) = capacity::parse(data) {
        assert_eq!(capacity::parse(&c.encode()).expect("capacity parses"), c);
    }
});
