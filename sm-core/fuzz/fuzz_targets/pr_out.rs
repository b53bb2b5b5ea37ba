//! PR OUT CDB + parameter list decoding never panics; what decodes, re-builds and decodes to
//! the same command.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sm_core::scsi::PrOut;
use sm_core::scsi::wire::pr_out;

fuzz_target!(|data: &[u8]| {
    let _ = pr_out::parse_basic(data);
    let _ = pr_out::parse_move(data);
    if data.len() >= 10 {
        let (cdb, params) = data.split_at(10);
        if let Ok(cmd) = PrOut::decode(cdb, params) {
            if let Ok((c, list)) = cmd.build() {
                assert_eq!(PrOut::decode(&c, &list).expect("rebuilt PR OUT decodes"), cmd);
            }
        }
    }
});
