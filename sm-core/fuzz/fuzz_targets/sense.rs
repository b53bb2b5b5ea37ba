//! Sense decoding and status classification never panic; decoded sense re-encodes and
//! decodes to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sm_core::scsi::error::{RawStatus, classify};
use sm_core::scsi::wire::sense;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = sense::parse(data) {
        let again = sense::parse(&s.encode()).expect("encoded sense parses");
        assert_eq!((again.key, again.asc, again.ascq, again.deferred), (s.key, s.asc, s.ascq, s.deferred));
    }
    for status in [0x00, 0x02, 0x08, 0x18] {
        let _ = classify(RawStatus { status, host_status: 0, driver_status: 0x08, sense: data });
    }
});
