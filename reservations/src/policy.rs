//! How an SR uses reservations: the type, what to do with a holder that is gone, and the
//! registration flags. Read from device_config or the SR's sm_config (device_config wins).

use std::collections::BTreeMap;
use std::fmt;

use sm_core::scsi::{PrType, RegisterOpts};

/// device_config / sm_config key: the SCSI reservation type code.
pub const KEY_TYPE: &str = "reservation-type";
/// device_config / sm_config key: the fencing policy.
pub const KEY_FENCING: &str = "fencing";
/// device_config / sm_config key: register with APTPL (persist through power loss).
pub const KEY_APTPL: &str = "reservation-aptpl";
/// device_config / sm_config key: what to do with a key no pool host owns.
pub const KEY_FOREIGN: &str = "foreign-keys";

/// What to do with a registration or reservation of a key no pool host owns: another
/// cluster's, a guest cluster's, a host removed from the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Foreign {
    /// Refuse the activation (fault 24 naming the key and where it is registered from): it
    /// is not ours to break (the default).
    Refuse,
    /// Fence it as a dead host's key, when [`Fencing`] allows fencing at all.
    Preempt,
}

impl Foreign {
    /// The configuration word.
    pub fn as_str(self) -> &'static str {
        match self {
            Foreign::Refuse => "refuse",
            Foreign::Preempt => "preempt",
        }
    }
}

/// What to do when the LU is reserved by a key whose host is not alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fencing {
    /// PREEMPT AND ABORT the key of a host the pool reports dead (and a key no pool host
    /// owns, when [`Foreign::Preempt`]), then reserve (the default).
    PreemptDead,
    /// As `PreemptDead`, but without aborting the victim's queued commands (PREEMPT): for
    /// arrays without PREEMPT AND ABORT (tgt, SPDK).
    PreemptDeadNoAbort,
    /// Never preempt: report the VDI in use (the administrator fences with `xsm pr`).
    Never,
}

impl Fencing {
    /// The configuration word.
    pub fn as_str(self) -> &'static str {
        match self {
            Fencing::PreemptDead => "preempt-dead",
            Fencing::PreemptDeadNoAbort => "preempt-dead-no-abort",
            Fencing::Never => "never",
        }
    }

    fn parse(s: &str) -> Option<Fencing> {
        [
            Fencing::PreemptDead,
            Fencing::PreemptDeadNoAbort,
            Fencing::Never,
        ]
        .into_iter()
        .find(|f| f.as_str() == s)
    }
}

/// An invalid policy setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {key} {value:?}: {why}")]
pub struct PolicyError {
    /// The key.
    pub key: &'static str,
    /// The value given.
    pub value: String,
    /// What is accepted.
    pub why: &'static str,
}

/// The reservation policy of an SR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Reservation type (default 5, Write Exclusive - Registrants Only).
    pub pr_type: PrType,
    /// Fencing.
    pub fencing: Fencing,
    /// APTPL on registration.
    pub aptpl: bool,
    /// Keys no pool host owns.
    pub foreign: Foreign,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            pr_type: PrType::WriteExclusiveRegistrantsOnly,
            fencing: Fencing::PreemptDead,
            aptpl: false,
            foreign: Foreign::Refuse,
        }
    }
}

impl Policy {
    /// Reads the policy: each key from `dconf` first, then `sm_config`, else the default.
    ///
    /// Types 1 and 3 (holder-only) are refused: with multipath every path of the host is its
    /// own I_T nexus, so only the one path that reserved could write (lab gotcha 4); types 7
    /// and 8 (All-Registrants) are refused too: every registered host would be a holder, so
    /// they cannot give one host exclusive use.
    pub fn from_config(
        dconf: &BTreeMap<String, String>,
        sm_config: &BTreeMap<String, String>,
    ) -> Result<Policy, PolicyError> {
        let get = |k: &str| dconf.get(k).or_else(|| sm_config.get(k)).map(|v| v.trim());
        let mut p = Policy::default();
        if let Some(v) = get(KEY_TYPE) {
            let why =
                "5 (write exclusive, registrants only) or 6 (exclusive access, registrants only)";
            let t = v
                .parse::<u8>()
                .ok()
                .and_then(PrType::from_code)
                .ok_or_else(|| PolicyError {
                    key: KEY_TYPE,
                    value: v.into(),
                    why,
                })?;
            if !t.registrants_access() || t.all_registrants() {
                return Err(PolicyError {
                    key: KEY_TYPE,
                    value: v.into(),
                    why,
                });
            }
            p.pr_type = t;
        }
        if let Some(v) = get(KEY_FENCING) {
            p.fencing = Fencing::parse(v).ok_or_else(|| PolicyError {
                key: KEY_FENCING,
                value: v.into(),
                why: "preempt-dead, preempt-dead-no-abort or never",
            })?;
        }
        if let Some(v) = get(KEY_FOREIGN) {
            p.foreign = [Foreign::Refuse, Foreign::Preempt]
                .into_iter()
                .find(|f| f.as_str() == v)
                .ok_or_else(|| PolicyError {
                    key: KEY_FOREIGN,
                    value: v.into(),
                    why: "refuse or preempt",
                })?;
        }
        if let Some(v) = get(KEY_APTPL) {
            p.aptpl = match v {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => {
                    return Err(PolicyError {
                        key: KEY_APTPL,
                        value: v.into(),
                        why: "true or false",
                    });
                }
            };
        }
        Ok(p)
    }

    /// The flags our REGISTERs carry.
    pub fn register_opts(&self) -> RegisterOpts {
        RegisterOpts {
            aptpl: self.aptpl,
            ..RegisterOpts::default()
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "type {}, fencing {}, aptpl {}, foreign keys {}",
            self.pr_type,
            self.fencing.as_str(),
            self.aptpl,
            self.foreign.as_str()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_and_overrides() {
        let p = Policy::from_config(&m(&[]), &m(&[])).unwrap();
        assert_eq!(p, Policy::default());
        assert_eq!(p.pr_type.code(), 5);
        let p = Policy::from_config(
            &m(&[("reservation-type", "6")]),
            &m(&[
                ("reservation-type", "5"),
                ("fencing", "never"),
                ("reservation-aptpl", "true"),
            ]),
        )
        .unwrap();
        assert_eq!(p.pr_type, PrType::ExclusiveAccessRegistrantsOnly);
        assert_eq!(p.fencing, Fencing::Never);
        assert!(p.aptpl && p.register_opts().aptpl);
        assert_eq!(
            p.foreign,
            Foreign::Refuse,
            "foreign keys are refused by default"
        );
        assert_eq!(
            p.to_string(),
            "type EA-RO (6), fencing never, aptpl true, foreign keys refuse"
        );
        let p = Policy::from_config(&m(&[("foreign-keys", "preempt")]), &m(&[])).unwrap();
        assert_eq!(p.foreign, Foreign::Preempt);
    }

    #[test]
    fn refuses_types_that_break_multipath_or_exclusivity() {
        for bad in ["1", "3", "7", "8", "0", "2", "x", ""] {
            let e = Policy::from_config(&m(&[("reservation-type", bad)]), &m(&[])).unwrap_err();
            assert_eq!(e.key, KEY_TYPE, "{bad}");
        }
        assert!(Policy::from_config(&m(&[("fencing", "always")]), &m(&[])).is_err());
        assert!(Policy::from_config(&m(&[("reservation-aptpl", "maybe")]), &m(&[])).is_err());
        let e = Policy::from_config(&m(&[("foreign-keys", "always")]), &m(&[])).unwrap_err();
        assert_eq!(e.key, KEY_FOREIGN);
    }
}
