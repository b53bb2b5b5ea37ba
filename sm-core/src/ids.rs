//! Validated identifiers used at every boundary: SR, VDI and host uuids, SCSI ids.

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

/// A SCSI logical unit's id as `scsi_id -g` prints it and multipath names its map by default
/// (`3` + the NAA designator in hex for most arrays): 1 to 128 characters of ASCII letters,
/// digits and `_ - . :`, so it is safe as a file name, a map name and a command argument.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ScsiId(String);

impl ScsiId {
    /// Validates `s` as it is (no trimming, case kept: multipath's map names keep it too).
    pub fn new(s: &str) -> Result<ScsiId, IdError> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
        if ok {
            Ok(ScsiId(s.to_string()))
        } else {
            Err(IdError {
                kind: "SCSI id",
                value: s.chars().take(64).collect(),
            })
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ScsiId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ScsiId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for ScsiId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

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

    #[test]
    fn validates_scsi_ids() {
        for good in [
            "360014055ab0c0de00060000000000000",
            "SATA_QEMU_HARDDISK_QM00001",
            "3:0.0-1",
        ] {
            assert_eq!(ScsiId::new(good).unwrap().as_str(), good);
        }
        let long = "3".repeat(129);
        for bad in ["", " 36001", "3600/1", "../x", "36001\n", long.as_str()] {
            let e = ScsiId::new(bad).unwrap_err();
            assert_eq!(e.kind, "SCSI id", "{bad}");
        }
        assert!(ScsiId::new(&"3".repeat(128)).is_ok());
    }
}
