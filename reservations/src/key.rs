//! Host reservation keys (design §5): 8 bytes, never zero, stable per host, marked as ours.
//!
//! `PrKey::for_host(uuid)` = the 2-byte prefix `XS` (0x5853) followed by the first 6 bytes of
//! the MD5 of the lowercase host uuid. The prefix tells our keys from those of other software
//! (fence_scsi, mpathpersist, a Windows cluster) on a shared array; the 48 hashed bits make
//! two hosts of one pool collide with a probability of about n²/2⁴⁹, and collisions are
//! detected anyway ([`crate::pool::PoolKeys::new`], [`crate::activate`]), never assumed away.

use std::fmt;
use std::num::NonZeroU64;
use std::str::FromStr;

use md5::{Digest, Md5};
use sm_core::ids::HostUuid;

/// Where a XenServer host keeps its installation uuid.
pub const INVENTORY: &str = "/etc/xensource-inventory";

/// The installation uuid of this host, from [`INVENTORY`]; `None` off XenServer.
pub fn inventory_host_uuid() -> Option<String> {
    std::fs::read_to_string(INVENTORY)
        .ok()?
        .lines()
        .find_map(|l| {
            l.strip_prefix("INSTALLATION_UUID=")
                .map(|v| v.trim().trim_matches('\'').to_string())
        })
}

/// The two leading bytes of every key we derive (`XS`).
pub const PREFIX: u16 = 0x5853;
/// Bits below the prefix.
const PREFIX_SHIFT: u32 = 48;

/// Why a key was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Zero is not a key (it means "unregistered" on the wire).
    #[error("reservation key 0 is not a key")]
    Zero,
    /// The key lacks our prefix.
    #[error("reservation key {0:#018x} does not carry the xsm prefix 0x5853")]
    NotOurs(u64),
    /// Not a hex number.
    #[error("cannot read {0:?} as a reservation key (hex, e.g. 0x5853a1b2c3d4e5f6)")]
    Syntax(String),
    /// Not a host uuid.
    #[error(transparent)]
    HostUuid(#[from] sm_core::ids::IdError),
}

/// A non-zero persistent reservation key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PrKey(NonZeroU64);

impl PrKey {
    /// Any non-zero key (another product's keys included).
    pub fn new(raw: u64) -> Result<PrKey, KeyError> {
        NonZeroU64::new(raw).map(PrKey).ok_or(KeyError::Zero)
    }

    /// A key that must carry our prefix.
    pub fn ours(raw: u64) -> Result<PrKey, KeyError> {
        let k = PrKey::new(raw)?;
        if k.is_ours() {
            Ok(k)
        } else {
            Err(KeyError::NotOurs(raw))
        }
    }

    /// The key of host `uuid` (validated, case-insensitive).
    pub fn for_host(uuid: &str) -> Result<PrKey, KeyError> {
        let uuid = HostUuid::new(uuid)?;
        let digest = Md5::digest(uuid.as_str().as_bytes());
        let mut low = [0u8; 8];
        low[2..].copy_from_slice(&digest[..6]);
        PrKey::ours((u64::from(PREFIX) << PREFIX_SHIFT) | u64::from_be_bytes(low))
    }

    /// The key of host `uuid` for one boot (`boot` is a value new at every boot): the prefix
    /// followed by 6 bytes of the MD5 of `<uuid>/<boot as 16 hex digits>`. A shared SR's
    /// fencing uses it, so that a fenced host can rejoin only after a reboot.
    pub fn for_boot(uuid: &str, boot: u64) -> Result<PrKey, KeyError> {
        let uuid = HostUuid::new(uuid)?;
        let digest = Md5::digest(format!("{}/{boot:016x}", uuid.as_str()).as_bytes());
        let mut low = [0u8; 8];
        low[2..].copy_from_slice(&digest[..6]);
        PrKey::ours((u64::from(PREFIX) << PREFIX_SHIFT) | u64::from_be_bytes(low))
    }

    /// Whether the key carries our prefix.
    pub fn is_ours(self) -> bool {
        self.0.get() >> PREFIX_SHIFT == u64::from(PREFIX)
    }

    /// The wire value.
    pub fn get(self) -> u64 {
        self.0.get()
    }
}

impl fmt::Display for PrKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#018x}", self.0.get())
    }
}

impl FromStr for PrKey {
    type Err = KeyError;

    /// Hex, with or without `0x` (as sg_persist and multipathd print keys).
    fn from_str(s: &str) -> Result<PrKey, KeyError> {
        let t = s.trim();
        let hex = t
            .strip_prefix("0x")
            .or_else(|| t.strip_prefix("0X"))
            .unwrap_or(t);
        if hex.is_empty() || hex.len() > 16 {
            return Err(KeyError::Syntax(s.into()));
        }
        let raw = u64::from_str_radix(hex, 16).map_err(|_| KeyError::Syntax(s.into()))?;
        PrKey::new(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST_A: &str = "5f6d1a0e-8c9b-4f3e-a2d1-0b9c8d7e6f5a";

    #[test]
    fn derived_keys_are_stable_prefixed_and_case_insensitive() {
        let k = PrKey::for_host(HOST_A).unwrap();
        assert!(k.is_ours());
        assert_eq!(k.get() >> 48, 0x5853);
        assert_eq!(k, PrKey::for_host(&HOST_A.to_uppercase()).unwrap());
        // The low 48 bits are the first 6 bytes of md5("5f6d1a0e-...").
        let d = Md5::digest(HOST_A.as_bytes());
        let low = d[..6].iter().fold(0u64, |a, b| (a << 8) | u64::from(*b));
        assert_eq!(k.get() & 0xffff_ffff_ffff, low);
        assert_ne!(
            k,
            PrKey::for_host("5f6d1a0e-8c9b-4f3e-a2d1-0b9c8d7e6f5b").unwrap()
        );
    }

    #[test]
    fn boot_keys_change_with_the_boot_and_differ_from_the_host_key() {
        let a = PrKey::for_boot(HOST_A, 1).unwrap();
        assert!(a.is_ours());
        assert_eq!(a, PrKey::for_boot(&HOST_A.to_uppercase(), 1).unwrap());
        assert_ne!(a, PrKey::for_boot(HOST_A, 2).unwrap());
        assert_ne!(a, PrKey::for_host(HOST_A).unwrap());
        let d = Md5::digest(format!("{HOST_A}/0000000000000001").as_bytes());
        let low = d[..6].iter().fold(0u64, |a, b| (a << 8) | u64::from(*b));
        assert_eq!(a.get() & 0xffff_ffff_ffff, low);
        assert!(PrKey::for_boot("not-a-uuid", 1).is_err());
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(PrKey::new(0), Err(KeyError::Zero));
        assert_eq!(PrKey::ours(0xa1), Err(KeyError::NotOurs(0xa1)));
        assert!(PrKey::for_host("not-a-uuid").is_err());
        assert!(PrKey::for_host("").is_err());
        assert!("".parse::<PrKey>().is_err());
        assert!("0x".parse::<PrKey>().is_err());
        assert!("0x0".parse::<PrKey>().is_err());
        assert!("0x1234567890abcdef0".parse::<PrKey>().is_err());
        assert!("zz".parse::<PrKey>().is_err());
    }

    #[test]
    fn parses_and_prints_hex() {
        let k: PrKey = "0x5853a1b2c3d4e5f6".parse().unwrap();
        assert_eq!(k.get(), 0x5853_a1b2_c3d4_e5f6);
        assert_eq!(k.to_string(), "0x5853a1b2c3d4e5f6");
        assert_eq!(
            "a1".parse::<PrKey>().unwrap().to_string(),
            "0x00000000000000a1"
        );
        assert!(!"a1".parse::<PrKey>().unwrap().is_ours());
    }
}
