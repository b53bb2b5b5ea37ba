//! RTPG responses and STPG lists never panic, and round-trip.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sm_core::scsi::wire::rtpg;

fuzz_target!(|data: &[u8]| {
    let _ = rtpg::required_len(data);
    if let Ok(g) = rtpg::parse(data) {
        let enc = g.encode().expect("parsed groups encode");
        assert_eq!(rtpg::parse(&enc).expect("re-encoded RTPG parses"), g);
    }
    if let Ok(list) = rtpg::parse_stpg(data) {
        assert_eq!(rtpg::parse_stpg(&rtpg::encode_stpg(&list)).expect("STPG list parses"), list);
    }
});
