//! Command descriptor blocks: plain builders returning fixed-size arrays, the opcodes and
//! service actions we use, and a printable name for any CDB (logs and errors).

use super::pr::{PrInAction, PrOutAction};

/// TEST UNIT READY.
pub const TEST_UNIT_READY: u8 = 0x00;
/// REQUEST SENSE.
pub const REQUEST_SENSE: u8 = 0x03;
/// INQUIRY.
pub const INQUIRY: u8 = 0x12;
/// READ CAPACITY(10).
pub const READ_CAPACITY_10: u8 = 0x25;
/// READ(10).
pub const READ_10: u8 = 0x28;
/// WRITE(10).
pub const WRITE_10: u8 = 0x2a;
/// PERSISTENT RESERVE IN.
pub const PERSISTENT_RESERVE_IN: u8 = 0x5e;
/// PERSISTENT RESERVE OUT.
pub const PERSISTENT_RESERVE_OUT: u8 = 0x5f;
/// SERVICE ACTION IN(16) (READ CAPACITY(16) is service action 0x10).
pub const SERVICE_ACTION_IN_16: u8 = 0x9e;
/// REPORT LUNS.
pub const REPORT_LUNS: u8 = 0xa0;
/// MAINTENANCE IN (REPORT TARGET PORT GROUPS is service action 0x0a).
pub const MAINTENANCE_IN: u8 = 0xa3;
/// MAINTENANCE OUT (SET TARGET PORT GROUPS is service action 0x0a).
pub const MAINTENANCE_OUT: u8 = 0xa4;

/// SERVICE ACTION IN(16) service action READ CAPACITY(16).
pub const SA_READ_CAPACITY_16: u8 = 0x10;
/// MAINTENANCE IN/OUT service action REPORT/SET TARGET PORT GROUPS.
pub const SA_TARGET_PORT_GROUPS: u8 = 0x0a;
/// RTPG CDB byte 1: PARAMETER DATA FORMAT = extended header (001b in bits 7:5).
pub const RTPG_EXTENDED: u8 = 0x20;
/// INQUIRY CDB byte 1: EVPD.
pub const INQUIRY_EVPD: u8 = 0x01;

/// TEST UNIT READY.
pub fn test_unit_ready() -> [u8; 6] {
    [TEST_UNIT_READY, 0, 0, 0, 0, 0]
}

/// INQUIRY: standard data (`evpd == false`, `page` must be 0) or a VPD page.
pub fn inquiry(evpd: bool, page: u8, alloc: u16) -> [u8; 6] {
    let [hi, lo] = alloc.to_be_bytes();
    [
        INQUIRY,
        if evpd { INQUIRY_EVPD } else { 0 },
        page,
        hi,
        lo,
        0,
    ]
}

/// REQUEST SENSE (descriptor format not requested).
pub fn request_sense(alloc: u8) -> [u8; 6] {
    [REQUEST_SENSE, 0, 0, 0, alloc, 0]
}

/// READ CAPACITY(16).
pub fn read_capacity16(alloc: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = SERVICE_ACTION_IN_16;
    c[1] = SA_READ_CAPACITY_16;
    c[10..14].copy_from_slice(&alloc.to_be_bytes());
    c
}

/// READ(10) of `blocks` blocks at `lba`.
pub fn read10(lba: u32, blocks: u16) -> [u8; 10] {
    rw10(READ_10, lba, blocks)
}

/// WRITE(10) of `blocks` blocks at `lba`.
pub fn write10(lba: u32, blocks: u16) -> [u8; 10] {
    rw10(WRITE_10, lba, blocks)
}

fn rw10(op: u8, lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = op;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

/// REPORT TARGET PORT GROUPS, standard or extended header.
pub fn rtpg(extended: bool, alloc: u32) -> [u8; 12] {
    let mut c = [0u8; 12];
    c[0] = MAINTENANCE_IN;
    c[1] = SA_TARGET_PORT_GROUPS | if extended { RTPG_EXTENDED } else { 0 };
    c[6..10].copy_from_slice(&alloc.to_be_bytes());
    c
}

/// SET TARGET PORT GROUPS with a parameter list of `len` bytes.
pub fn stpg(len: u32) -> [u8; 12] {
    let mut c = [0u8; 12];
    c[0] = MAINTENANCE_OUT;
    c[1] = SA_TARGET_PORT_GROUPS;
    c[6..10].copy_from_slice(&len.to_be_bytes());
    c
}

/// PERSISTENT RESERVE IN.
pub fn pr_in(sa: PrInAction, alloc: u16) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = PERSISTENT_RESERVE_IN;
    c[1] = sa.code();
    c[7..9].copy_from_slice(&alloc.to_be_bytes());
    c
}

/// PERSISTENT RESERVE OUT: `scope_type` is CDB byte 2 (see `PrType::scope_type`), `len` the
/// parameter list length, written big-endian in bytes 5..=8 as SPC-4 defines it.
pub fn pr_out(sa: PrOutAction, scope_type: u8, len: u32) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = PERSISTENT_RESERVE_OUT;
    c[1] = sa.code();
    c[2] = scope_type;
    c[5..9].copy_from_slice(&len.to_be_bytes());
    c
}

/// Opcode and service action of a CDB, for logs and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Op {
    /// Operation code (byte 0).
    pub opcode: u8,
    /// Byte 1 as the service action of the opcodes that have one; also the EVPD page for
    /// INQUIRY.
    pub detail: Option<u8>,
}

impl Op {
    /// The opcode (and service action or VPD page) of `cdb`.
    pub fn of(cdb: &[u8]) -> Op {
        let opcode = cdb.first().copied().unwrap_or(0xff);
        let detail = match opcode {
            PERSISTENT_RESERVE_IN
            | PERSISTENT_RESERVE_OUT
            | SERVICE_ACTION_IN_16
            | MAINTENANCE_IN
            | MAINTENANCE_OUT => cdb.get(1).map(|b| b & 0x1f),
            INQUIRY => cdb
                .get(1)
                .filter(|b| *b & INQUIRY_EVPD != 0)
                .and(cdb.get(2))
                .copied(),
            _ => None,
        };
        Op { opcode, detail }
    }

    /// The command's name, e.g. `PERSISTENT RESERVE OUT/REGISTER` or `INQUIRY VPD 0x83`.
    pub fn name(&self) -> String {
        let base = match self.opcode {
            TEST_UNIT_READY => "TEST UNIT READY",
            REQUEST_SENSE => "REQUEST SENSE",
            INQUIRY => "INQUIRY",
            READ_CAPACITY_10 => "READ CAPACITY(10)",
            READ_10 => "READ(10)",
            WRITE_10 => "WRITE(10)",
            PERSISTENT_RESERVE_IN => "PERSISTENT RESERVE IN",
            PERSISTENT_RESERVE_OUT => "PERSISTENT RESERVE OUT",
            SERVICE_ACTION_IN_16 => "SERVICE ACTION IN(16)",
            REPORT_LUNS => "REPORT LUNS",
            MAINTENANCE_IN => "MAINTENANCE IN",
            MAINTENANCE_OUT => "MAINTENANCE OUT",
            other => return format!("opcode {other:#04x}"),
        };
        match (self.opcode, self.detail) {
            (INQUIRY, Some(page)) => format!("INQUIRY VPD {page:#04x}"),
            (PERSISTENT_RESERVE_IN, Some(sa)) => match PrInAction::from_code(sa) {
                Some(a) => format!("{base}/{}", a.name()),
                None => format!("{base}/sa {sa:#04x}"),
            },
            (PERSISTENT_RESERVE_OUT, Some(sa)) => match PrOutAction::from_code(sa) {
                Some(a) => format!("{base}/{}", a.name()),
                None => format!("{base}/sa {sa:#04x}"),
            },
            (SERVICE_ACTION_IN_16, Some(SA_READ_CAPACITY_16)) => "READ CAPACITY(16)".into(),
            (MAINTENANCE_IN, Some(SA_TARGET_PORT_GROUPS)) => "REPORT TARGET PORT GROUPS".into(),
            (MAINTENANCE_OUT, Some(SA_TARGET_PORT_GROUPS)) => "SET TARGET PORT GROUPS".into(),
            (_, Some(sa)) => format!("{base}/sa {sa:#04x}"),
            (_, None) => base.into(),
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_match_sg3_utils_bytes() {
        // The CDBs sg_raw sent in the lab capture (tests/fixtures/scsi/lio-6.1/README.md).
        assert_eq!(
            inquiry(true, 0x83, 0x200),
            [0x12, 0x01, 0x83, 0x02, 0x00, 0x00]
        );
        assert_eq!(inquiry(false, 0, 255), [0x12, 0, 0, 0, 0xff, 0]);
        assert_eq!(
            rtpg(false, 4096),
            [0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0]
        );
        assert_eq!(rtpg(true, 4096)[1], 0x2a);
        assert_eq!(stpg(12), [0xa4, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0x0c, 0, 0]);
        assert_eq!(
            pr_in(PrInAction::ReadFullStatus, 8192),
            [0x5e, 3, 0, 0, 0, 0, 0, 0x20, 0, 0]
        );
        assert_eq!(
            pr_out(PrOutAction::Reserve, 0x05, 24),
            [0x5f, 1, 5, 0, 0, 0, 0, 0, 0x18, 0]
        );
        assert_eq!(
            pr_out(PrOutAction::Register, 0, 0x0102_0304)[5..9],
            [1, 2, 3, 4]
        );
        assert_eq!(
            read_capacity16(32),
            [0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20, 0, 0]
        );
        assert_eq!(write10(0x0102_0304, 1), [0x2a, 0, 1, 2, 3, 4, 0, 0, 1, 0]);
        assert_eq!(test_unit_ready(), [0; 6]);
    }

    #[test]
    fn names() {
        assert_eq!(
            Op::of(&pr_out(PrOutAction::PreemptAndAbort, 1, 24)).name(),
            "PERSISTENT RESERVE OUT/PREEMPT AND ABORT"
        );
        assert_eq!(Op::of(&inquiry(true, 0x83, 8)).name(), "INQUIRY VPD 0x83");
        assert_eq!(Op::of(&inquiry(false, 0, 8)).name(), "INQUIRY");
        assert_eq!(Op::of(&rtpg(true, 8)).name(), "REPORT TARGET PORT GROUPS");
        assert_eq!(Op::of(&[0xc0]).name(), "opcode 0xc0");
        assert_eq!(Op::of(&[]).name(), "opcode 0xff");
    }
}
