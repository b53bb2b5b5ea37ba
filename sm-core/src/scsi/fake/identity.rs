//! Identity data of the fake LU, laid out as LIO 6.1 sends it.

use super::{ASC_INVALID_CDB_FIELD, Answer, LuConfig, Nexus, State};
use crate::scsi::wire::capacity::{Capacity, Lba};
use crate::scsi::wire::inquiry::StandardInquiry;
use crate::scsi::wire::transport_id::PROTO_ISCSI;
use crate::scsi::wire::vpd::{
    self, Association, CodeSet, Designation, Designator, DeviceId, NaaFormat,
};

/// VPD pages the fake serves.
const PAGES: [u8; 3] = [
    vpd::PAGE_SUPPORTED,
    vpd::PAGE_UNIT_SERIAL,
    vpd::PAGE_DEVICE_ID,
];

/// LIO's NAA IEEE Registered Extended designator: NAA 6, company id 0x001405, then the hex
/// digits of the unit serial (others skipped), zero-filled to 16 bytes.
pub(super) fn naa(serial: &str) -> [u8; 16] {
    let mut nibbles: Vec<u8> = vec![6, 0, 0, 1, 4, 0, 5];
    nibbles.extend(
        serial
            .chars()
            .filter_map(|c| c.to_digit(16))
            .filter_map(|d| u8::try_from(d).ok()),
    );
    nibbles.resize(32, 0);
    let mut out = [0u8; 16];
    for (i, pair) in nibbles.chunks_exact(2).enumerate() {
        out[i] = (pair[0] << 4) | pair[1];
    }
    out
}

pub(super) fn capacity(cfg: &LuConfig) -> Capacity {
    Capacity {
        last_lba: Lba(cfg.blocks.saturating_sub(1)),
        block_len: cfg.block_len,
        prot_en: false,
        p_type: 0,
        lbppbe: 0,
        lbpme: false,
        lbprz: false,
        lowest_aligned: 0,
    }
}

impl State {
    pub(super) fn inquiry(&self, n: &Nexus, c: &[u8]) -> Answer {
        let evpd = c.get(1).is_some_and(|b| b & 0x01 != 0);
        let page = c.get(2).copied().unwrap_or(0);
        if !evpd {
            if page != 0 {
                return Answer::illegal(ASC_INVALID_CDB_FIELD);
            }
            return Answer::Data(self.standard_inquiry().encode());
        }
        let encoded = match page {
            vpd::PAGE_SUPPORTED => vpd::encode_supported(&PAGES),
            vpd::PAGE_UNIT_SERIAL => vpd::encode_unit_serial(&self.cfg.serial),
            vpd::PAGE_DEVICE_ID => self.device_id(n).encode(),
            _ => return Answer::illegal(ASC_INVALID_CDB_FIELD),
        };
        match encoded {
            Ok(b) => Answer::Data(b),
            Err(_) => Answer::illegal(ASC_INVALID_CDB_FIELD),
        }
    }

    fn standard_inquiry(&self) -> StandardInquiry {
        StandardInquiry {
            qualifier: 0,
            device_type: 0,
            removable: false,
            version: 6,
            hisup: false,
            response_format: 2,
            sccs: true,
            acc: false,
            tpgs: self.cfg.tpgs,
            three_pc: true,
            protect: false,
            encserv: false,
            multip: true,
            cmdque: true,
            vendor: self.cfg.vendor.clone(),
            product: self.cfg.product.clone(),
            revision: self.cfg.revision.clone(),
            // SAM-5, iSCSI, SPC-4, SBC-3.
            version_descriptors: vec![0x00a0, 0x0960, 0x0460, 0x04c0],
        }
    }

    /// Page 0x83 as seen through `n`'s target port.
    fn device_id(&self, n: &Nexus) -> DeviceId {
        let lu = |code_set, designator| Designation {
            protocol: None,
            code_set,
            association: Association::LogicalUnit,
            designator,
        };
        let tp = |code_set, association, designator| Designation {
            protocol: Some(PROTO_ISCSI),
            code_set,
            association,
            designator,
        };
        let mut id = vec![
            lu(
                CodeSet::Binary,
                Designator::Naa {
                    format: NaaFormat::IeeeRegisteredExtended,
                    bytes: naa(&self.cfg.serial).to_vec(),
                },
            ),
            lu(
                CodeSet::Ascii,
                Designator::T10VendorId {
                    vendor: self.cfg.vendor.clone(),
                    id: format!("{}:{}\0", self.cfg.product, self.cfg.serial).into_bytes(),
                },
            ),
        ];
        let group = self.group_of(n.port);
        id.push(tp(
            CodeSet::Binary,
            Association::TargetPort,
            Designator::RelativeTargetPort(n.port),
        ));
        id.push(tp(
            CodeSet::Binary,
            Association::TargetPort,
            Designator::TargetPortGroup(group.map_or(crate::scsi::TpgId(0), |g| g.id)),
        ));
        id.push(lu(CodeSet::Binary, Designator::LogicalUnitGroup(0)));
        let tpgt = group
            .and_then(|g| g.ports.iter().find(|p| p.rtpi == n.port))
            .map_or(n.port.0, |p| p.tpgt);
        id.push(tp(
            CodeSet::Utf8,
            Association::TargetPort,
            Designator::ScsiName(format!("{},t,0x{tpgt:04x}", self.cfg.target)),
        ));
        id.push(tp(
            CodeSet::Utf8,
            Association::TargetDevice,
            Designator::ScsiName(self.cfg.target.clone()),
        ));
        DeviceId { designations: id }
    }
}
