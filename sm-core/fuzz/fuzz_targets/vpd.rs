//! VPD pages 0x00, 0x80 and 0x83 never panic; a parsed 0x83 page re-encodes to a page that
//! parses to the same designators.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sm_core::scsi::wire::vpd;

fuzz_target!(|data: &[u8]| {
    let _ = vpd::required_len(data);
    let _ = vpd::parse_supported(data);
    let _ = vpd::parse_unit_serial(data);
    if let Ok(id) = vpd::parse_device_id(data) {
        let _ = (id.wwid(), id.naa_wwid(), id.target_port_group(), id.relative_target_port());
        if let Ok(enc) = id.encode() {
            assert_eq!(vpd::parse_device_id(&enc).expect("re-encoded page parses").designations.len(), id.designations.len());
        }
    }
});
