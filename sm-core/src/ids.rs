//! Validated identifiers used at every boundary: SR and VDI uuids.

use std::fmt;

/// Why an identifier was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}")]
pub struct IdError {
    /// What kind of id.
    pub kind: &'static str,
    /// The rejected text (truncated).
    pub value: String,
}

fn check_uuid(kind: &'static str, s: &str) -> Result<String, IdError> {
    let ok = s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    if ok {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(IdError {
            kind,
            value: s.chars().take(64).collect(),
        })
    }
}

macro_rules! uuid_id {
    ($(#[$m:meta])* $name:ident, $kind:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Validates the canonical 8-4-4-4-12 hex form (stored lowercase).
            pub fn new(s: &str) -> Result<$name, IdError> {
                check_uuid($kind, s).map($name)
            }

            /// A fresh random (v4) id.
            pub fn random() -> $name {
                $name(uuid::Uuid::new_v4().to_string())
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

uuid_id!(
    /// An SR uuid.
    SrUuid,
    "SR uuid"
);
uuid_id!(
    /// A VDI uuid.
    VdiUuid,
    "VDI uuid"
);
uuid_id!(
    /// A host uuid (`host.get_uuid`).
    HostUuid,
    "host uuid"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_uuids() {
        assert!(SrUuid::new("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0").is_ok());
        assert_eq!(
            VdiUuid::new("0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0")
                .unwrap()
                .as_str(),
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
        );
        for bad in [
            "",
            "x",
            "../../etc/passwd",
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f",
            "0f1e2d3c_4b5a-6978-8796-a5b4c3d2e1f0",
        ] {
            assert!(SrUuid::new(bad).is_err(), "{bad}");
        }
        assert_ne!(VdiUuid::random(), VdiUuid::random());
    }
}
