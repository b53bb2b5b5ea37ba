//! Secrets masked by type: a [`Secret`] prints `***` in `Debug` and `Display`, so CHAP passwords
//! and session references cannot reach SMlog, a fault string or an error by accident.

use std::fmt;

/// A value that must never be logged (a CHAP password, a session reference).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// What every rendering shows instead of the value.
    pub const MASK: &'static str = "***";

    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The value, for the one place that must pass it on (a tool argument, an API call).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Secret::MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Secret::MASK)
    }
}

/// Whether a device_config / parameter key holds a secret by sm's convention (a key ending in
/// `password` or `_secret`, and the XenAPI `session_ref`).
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.ends_with("password") || k.ends_with("_secret") || k == "session_ref"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints() {
        let s = Secret::new("pw");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(s.expose(), "pw");
    }

    #[test]
    fn secret_keys() {
        for k in [
            "chappassword",
            "incoming_chappassword",
            "chappassword_secret",
            "session_ref",
            "cifspassword",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in ["chapuser", "target", "SCSIid"] {
            assert!(!is_secret_key(k), "{k}");
        }
    }
}
