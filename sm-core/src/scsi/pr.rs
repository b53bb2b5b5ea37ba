//! Persistent reservation vocabulary (SPC-4 5.13, 6.15, 6.16): service actions and the six
//! reservation types with their SCSI codes.
//!
//! The codes here are the SCSI ones (1, 3, 5, 6, 7, 8). Linux `enum pr_type` numbers the same
//! types 1..=6; never pass one for the other.

use std::fmt;

/// PERSISTENT RESERVE IN service actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrInAction {
    /// 0x00: registered keys.
    ReadKeys,
    /// 0x01: the reservation, if any.
    ReadReservation,
    /// 0x02: what the device server supports.
    ReportCapabilities,
    /// 0x03: every registration with its I_T nexus.
    ReadFullStatus,
}

impl PrInAction {
    /// The service action code.
    pub fn code(self) -> u8 {
        match self {
            PrInAction::ReadKeys => 0x00,
            PrInAction::ReadReservation => 0x01,
            PrInAction::ReportCapabilities => 0x02,
            PrInAction::ReadFullStatus => 0x03,
        }
    }

    /// From a service action code.
    pub fn from_code(code: u8) -> Option<PrInAction> {
        Some(match code & 0x1f {
            0x00 => PrInAction::ReadKeys,
            0x01 => PrInAction::ReadReservation,
            0x02 => PrInAction::ReportCapabilities,
            0x03 => PrInAction::ReadFullStatus,
            _ => return None,
        })
    }

    /// The standard's name.
    pub fn name(self) -> &'static str {
        match self {
            PrInAction::ReadKeys => "READ KEYS",
            PrInAction::ReadReservation => "READ RESERVATION",
            PrInAction::ReportCapabilities => "REPORT CAPABILITIES",
            PrInAction::ReadFullStatus => "READ FULL STATUS",
        }
    }
}

/// PERSISTENT RESERVE OUT service actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrOutAction {
    /// 0x00: register, change or remove (new key 0) this I_T nexus's key.
    Register,
    /// 0x01: create a reservation.
    Reserve,
    /// 0x02: release the reservation (silently GOOD from a non-holder).
    Release,
    /// 0x03: remove every registration and the reservation.
    Clear,
    /// 0x04: remove other registrations (and take over their reservation).
    Preempt,
    /// 0x05: preempt and abort the preempted nexuses' tasks.
    PreemptAndAbort,
    /// 0x06: register without checking the current key.
    RegisterAndIgnoreExistingKey,
    /// 0x07: register another I_T nexus and move the reservation to it.
    RegisterAndMove,
}

impl PrOutAction {
    /// Every action, in code order.
    pub const ALL: [PrOutAction; 8] = [
        PrOutAction::Register,
        PrOutAction::Reserve,
        PrOutAction::Release,
        PrOutAction::Clear,
        PrOutAction::Preempt,
        PrOutAction::PreemptAndAbort,
        PrOutAction::RegisterAndIgnoreExistingKey,
        PrOutAction::RegisterAndMove,
    ];

    /// The service action code.
    pub fn code(self) -> u8 {
        match self {
            PrOutAction::Register => 0x00,
            PrOutAction::Reserve => 0x01,
            PrOutAction::Release => 0x02,
            PrOutAction::Clear => 0x03,
            PrOutAction::Preempt => 0x04,
            PrOutAction::PreemptAndAbort => 0x05,
            PrOutAction::RegisterAndIgnoreExistingKey => 0x06,
            PrOutAction::RegisterAndMove => 0x07,
        }
    }

    /// From a service action code.
    pub fn from_code(code: u8) -> Option<PrOutAction> {
        PrOutAction::ALL
            .into_iter()
            .find(|a| a.code() == code & 0x1f)
    }

    /// The standard's name.
    pub fn name(self) -> &'static str {
        match self {
            PrOutAction::Register => "REGISTER",
            PrOutAction::Reserve => "RESERVE",
            PrOutAction::Release => "RELEASE",
            PrOutAction::Clear => "CLEAR",
            PrOutAction::Preempt => "PREEMPT",
            PrOutAction::PreemptAndAbort => "PREEMPT AND ABORT",
            PrOutAction::RegisterAndIgnoreExistingKey => "REGISTER AND IGNORE EXISTING KEY",
            PrOutAction::RegisterAndMove => "REGISTER AND MOVE",
        }
    }
}

/// The six persistent reservation types, with their SCSI TYPE codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrType {
    /// 1: only the holder writes; everyone reads.
    WriteExclusive,
    /// 3: only the holder reads or writes.
    ExclusiveAccess,
    /// 5: every registered I_T nexus writes (the holder is one registrant).
    WriteExclusiveRegistrantsOnly,
    /// 6: every registered I_T nexus reads and writes.
    ExclusiveAccessRegistrantsOnly,
    /// 7: every registrant is a holder; the reservation key reads as 0.
    WriteExclusiveAllRegistrants,
    /// 8: as 7, for reads too.
    ExclusiveAccessAllRegistrants,
}

impl PrType {
    /// Every type, in code order.
    pub const ALL: [PrType; 6] = [
        PrType::WriteExclusive,
        PrType::ExclusiveAccess,
        PrType::WriteExclusiveRegistrantsOnly,
        PrType::ExclusiveAccessRegistrantsOnly,
        PrType::WriteExclusiveAllRegistrants,
        PrType::ExclusiveAccessAllRegistrants,
    ];

    /// The SCSI TYPE code (not Linux `enum pr_type`).
    pub fn code(self) -> u8 {
        match self {
            PrType::WriteExclusive => 1,
            PrType::ExclusiveAccess => 3,
            PrType::WriteExclusiveRegistrantsOnly => 5,
            PrType::ExclusiveAccessRegistrantsOnly => 6,
            PrType::WriteExclusiveAllRegistrants => 7,
            PrType::ExclusiveAccessAllRegistrants => 8,
        }
    }

    /// From a SCSI TYPE code; `None` for obsolete/reserved codes (0, 2, 4, 9..=15).
    pub fn from_code(code: u8) -> Option<PrType> {
        PrType::ALL.into_iter().find(|t| t.code() == code)
    }

    /// The scope/type byte (CDB byte 2, READ RESERVATION byte 21): LU scope, this type.
    pub fn scope_type(self) -> u8 {
        (SCOPE_LU << 4) | self.code()
    }

    /// Only writes are restricted (types 1, 5, 7).
    pub fn write_exclusive(self) -> bool {
        matches!(
            self,
            PrType::WriteExclusive
                | PrType::WriteExclusiveRegistrantsOnly
                | PrType::WriteExclusiveAllRegistrants
        )
    }

    /// Every registered I_T nexus gets access (types 5..=8).
    pub fn registrants_access(self) -> bool {
        !matches!(self, PrType::WriteExclusive | PrType::ExclusiveAccess)
    }

    /// Every registrant is a reservation holder and the key reads as 0 (types 7, 8).
    pub fn all_registrants(self) -> bool {
        matches!(
            self,
            PrType::WriteExclusiveAllRegistrants | PrType::ExclusiveAccessAllRegistrants
        )
    }

    /// The abbreviation used in logs and the MS-CSVP/libiscsi literature.
    pub fn abbrev(self) -> &'static str {
        match self {
            PrType::WriteExclusive => "WE",
            PrType::ExclusiveAccess => "EA",
            PrType::WriteExclusiveRegistrantsOnly => "WE-RO",
            PrType::ExclusiveAccessRegistrantsOnly => "EA-RO",
            PrType::WriteExclusiveAllRegistrants => "WE-AR",
            PrType::ExclusiveAccessAllRegistrants => "EA-AR",
        }
    }

    /// The bit of this type in the REPORT CAPABILITIES type mask (bytes 4..5 as a big-endian
    /// u16).
    pub fn mask_bit(self) -> u16 {
        match self {
            PrType::WriteExclusiveAllRegistrants => 0x8000,
            PrType::ExclusiveAccessRegistrantsOnly => 0x4000,
            PrType::WriteExclusiveRegistrantsOnly => 0x2000,
            PrType::ExclusiveAccess => 0x0800,
            PrType::WriteExclusive => 0x0200,
            PrType::ExclusiveAccessAllRegistrants => 0x0001,
        }
    }
}

impl fmt::Display for PrType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.abbrev(), self.code())
    }
}

/// The only scope SPC-4 still defines: logical unit (0).
pub const SCOPE_LU: u8 = 0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_codes_are_scsi_not_linux() {
        let codes: Vec<u8> = PrType::ALL.iter().map(|t| t.code()).collect();
        assert_eq!(codes, [1, 3, 5, 6, 7, 8]);
        for c in [0u8, 2, 4, 9, 15] {
            assert_eq!(PrType::from_code(c), None);
        }
        assert_eq!(PrType::WriteExclusiveRegistrantsOnly.scope_type(), 0x05);
        // The LIO REPORT CAPABILITIES mask (bytes 4..5 = ea 01) has every type.
        let mask = 0xea01u16;
        assert!(PrType::ALL.iter().all(|t| mask & t.mask_bit() != 0));
    }

    #[test]
    fn action_codes() {
        for a in PrOutAction::ALL {
            assert_eq!(PrOutAction::from_code(a.code()), Some(a));
        }
        assert_eq!(PrOutAction::from_code(8), None);
        assert_eq!(PrInAction::from_code(3), Some(PrInAction::ReadFullStatus));
    }
}
