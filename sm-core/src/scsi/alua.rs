//! ALUA vocabulary (SPC-4 5.15): target port group and relative target port identifiers,
//! asymmetric access states, the supported-state bits of a group, and the TPGS field of
//! standard INQUIRY.

use std::fmt;

/// A target port group identifier (VPD 0x83 designator type 5, RTPG, STPG).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TpgId(pub u16);

impl fmt::Display for TpgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A relative target port identifier (VPD 0x83 designator type 4, RTPG, READ FULL STATUS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelTgtPortId(pub u16);

impl fmt::Display for RelTgtPortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// An asymmetric access state (the 4-bit code in RTPG and STPG descriptors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessState {
    /// 0x0 active/optimized.
    ActiveOptimized,
    /// 0x1 active/non-optimized.
    ActiveNonOptimized,
    /// 0x2 standby: only a few commands (INQUIRY, RTPG, STPG, PR IN/OUT, ...) are processed.
    Standby,
    /// 0x3 unavailable.
    Unavailable,
    /// 0x4 logical-block dependent.
    LbaDependent,
    /// 0xE offline (a secondary, per-port state).
    Offline,
    /// 0xF transitioning between states; cannot be requested with STPG.
    Transitioning,
}

impl AccessState {
    /// Every state, in code order.
    pub const ALL: [AccessState; 7] = [
        AccessState::ActiveOptimized,
        AccessState::ActiveNonOptimized,
        AccessState::Standby,
        AccessState::Unavailable,
        AccessState::LbaDependent,
        AccessState::Offline,
        AccessState::Transitioning,
    ];

    /// The state for a 4-bit code; `None` for the reserved codes 5..=0xD.
    pub fn from_code(code: u8) -> Option<AccessState> {
        Some(match code & 0x0f {
            0x0 => AccessState::ActiveOptimized,
            0x1 => AccessState::ActiveNonOptimized,
            0x2 => AccessState::Standby,
            0x3 => AccessState::Unavailable,
            0x4 => AccessState::LbaDependent,
            0xe => AccessState::Offline,
            0xf => AccessState::Transitioning,
            _ => return None,
        })
    }

    /// The 4-bit code.
    pub fn code(self) -> u8 {
        match self {
            AccessState::ActiveOptimized => 0x0,
            AccessState::ActiveNonOptimized => 0x1,
            AccessState::Standby => 0x2,
            AccessState::Unavailable => 0x3,
            AccessState::LbaDependent => 0x4,
            AccessState::Offline => 0xe,
            AccessState::Transitioning => 0xf,
        }
    }

    /// The matching `*_SUP` bit of an RTPG descriptor.
    pub fn support_bit(self) -> SupportedStates {
        SupportedStates(match self {
            AccessState::ActiveOptimized => SupportedStates::AO,
            AccessState::ActiveNonOptimized => SupportedStates::AN,
            AccessState::Standby => SupportedStates::S,
            AccessState::Unavailable => SupportedStates::U,
            AccessState::LbaDependent => SupportedStates::LBD,
            AccessState::Offline => SupportedStates::O,
            AccessState::Transitioning => SupportedStates::T,
        })
    }

    /// Whether a path in this state carries I/O (AO, AN, LBA-dependent).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            AccessState::ActiveOptimized
                | AccessState::ActiveNonOptimized
                | AccessState::LbaDependent
        )
    }

    /// Short name as multipath and sg_rtpg print it.
    pub fn name(self) -> &'static str {
        match self {
            AccessState::ActiveOptimized => "active/optimized",
            AccessState::ActiveNonOptimized => "active/non-optimized",
            AccessState::Standby => "standby",
            AccessState::Unavailable => "unavailable",
            AccessState::LbaDependent => "lba-dependent",
            AccessState::Offline => "offline",
            AccessState::Transitioning => "transitioning",
        }
    }
}

impl fmt::Display for AccessState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The supported-states byte of an RTPG descriptor (T_SUP .. AO_SUP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SupportedStates(pub u8);

impl SupportedStates {
    /// Transitioning supported.
    pub const T: u8 = 0x80;
    /// Offline supported.
    pub const O: u8 = 0x40;
    /// LBA-dependent supported.
    pub const LBD: u8 = 0x10;
    /// Unavailable supported.
    pub const U: u8 = 0x08;
    /// Standby supported.
    pub const S: u8 = 0x04;
    /// Active/non-optimized supported.
    pub const AN: u8 = 0x02;
    /// Active/optimized supported.
    pub const AO: u8 = 0x01;

    /// Whether `state` is in the set.
    pub fn supports(self, state: AccessState) -> bool {
        self.0 & state.support_bit().0 != 0
    }
}

/// The TPGS field of standard INQUIRY (byte 5 bits 5:4): which ALUA flavours the LU has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tpgs {
    /// 0: no asymmetric access.
    None,
    /// 1: implicit only (the target changes states itself).
    Implicit,
    /// 2: explicit only (SET TARGET PORT GROUPS).
    Explicit,
    /// 3: both.
    Both,
}

impl Tpgs {
    /// From the 2-bit field value.
    pub fn from_bits(v: u8) -> Tpgs {
        match v & 0x03 {
            0 => Tpgs::None,
            1 => Tpgs::Implicit,
            2 => Tpgs::Explicit,
            _ => Tpgs::Both,
        }
    }

    /// The 2-bit field value.
    pub fn bits(self) -> u8 {
        match self {
            Tpgs::None => 0,
            Tpgs::Implicit => 1,
            Tpgs::Explicit => 2,
            Tpgs::Both => 3,
        }
    }

    /// Whether the LU reports target port groups at all.
    pub fn is_alua(self) -> bool {
        self != Tpgs::None
    }

    /// Whether STPG is allowed.
    pub fn explicit(self) -> bool {
        matches!(self, Tpgs::Explicit | Tpgs::Both)
    }

    /// Whether the target may change states on its own.
    pub fn implicit(self) -> bool {
        matches!(self, Tpgs::Implicit | Tpgs::Both)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_codes_round_trip() {
        for s in AccessState::ALL {
            assert_eq!(AccessState::from_code(s.code()), Some(s));
        }
        for reserved in 5..=0xd {
            assert_eq!(AccessState::from_code(reserved), None);
        }
        let lio = SupportedStates(0xcf);
        assert!(
            lio.supports(AccessState::Transitioning) && !lio.supports(AccessState::LbaDependent)
        );
    }

    #[test]
    fn tpgs_bits() {
        for v in 0..4 {
            assert_eq!(Tpgs::from_bits(v).bits(), v);
        }
        assert!(Tpgs::Both.explicit() && Tpgs::Both.implicit() && !Tpgs::Implicit.explicit());
    }
}
