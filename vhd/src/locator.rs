//! The data parent locators point to: the parent's path, encoded per platform code as libvhd
//! writes it (`vhd_macx_encode_location`, `vhd_w2u_encode_location`) and reads it back.

use std::path::{Component, Path, PathBuf};

use crate::VhdError;
use crate::header::PlatformCode;

/// The locators `vhd-util snapshot` writes, in its order.
pub const SNAPSHOT_LOCATORS: [PlatformCode; 3] =
    [PlatformCode::Macx, PlatformCode::W2ku, PlatformCode::W2ru];

/// Decodes UTF-16 (big- or little-endian) up to the first NUL unit; `None` if not valid.
pub(crate) fn decode_utf16(raw: &[u8], big_endian: bool) -> Option<String> {
    let units: Vec<u16> = raw
        .chunks_exact(2)
        .map(|c| {
            if big_endian {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_le_bytes([c[0], c[1]])
            }
        })
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16(&units).ok()
}

/// The path a locator's data names (`./base.vhd`, or absolute), as libvhd decodes it.
pub fn decode(code: PlatformCode, data: &[u8]) -> Result<String, VhdError> {
    let bad = |reason: &str| VhdError::Corrupt {
        what: "parent locator",
        reason: format!("{code:?}: {reason}"),
    };
    match code {
        PlatformCode::Macx => {
            let s = std::str::from_utf8(data).map_err(|_| bad("not UTF-8"))?;
            let s = s.trim_end_matches('\0');
            s.strip_prefix("file://")
                .map(str::to_string)
                .ok_or_else(|| bad("not a file:// URL"))
        }
        PlatformCode::W2ku | PlatformCode::W2ru => {
            if !data.len().is_multiple_of(2) {
                return Err(bad("odd UTF-16 length"));
            }
            let s = decode_utf16(data, false).ok_or_else(|| bad("not UTF-16LE"))?;
            let s = s.replace('\\', "/");
            Ok(s.strip_prefix("C:")
                .or_else(|| s.strip_prefix("c:"))
                .map_or(s.clone(), str::to_string))
        }
        other => Err(VhdError::Unsupported {
            what: "parent locator platform",
            value: format!("{other:?}"),
        }),
    }
}

/// The locator data for `path` (a relative path such as `./base.vhd`, or absolute).
pub fn encode(code: PlatformCode, path: &str) -> Result<Vec<u8>, VhdError> {
    match code {
        PlatformCode::Macx => Ok(format!("file://{path}").into_bytes()),
        PlatformCode::W2ku | PlatformCode::W2ru => {
            let win = if path.starts_with('/') {
                path.to_string()
            } else {
                format!(".\\{}", path.strip_prefix("./").unwrap_or(path))
            }
            .replace('/', "\\");
            Ok(win.encode_utf16().flat_map(u16::to_le_bytes).collect())
        }
        other => Err(VhdError::Unsupported {
            what: "parent locator platform",
            value: format!("{other:?}"),
        }),
    }
}

/// The path of `target` relative to directory `from_dir` (both absolute), `./`-prefixed when it
/// does not leave the directory, as libvhd's `relative_path_to` writes it.
pub fn relative_path(from_dir: &Path, target: &Path) -> String {
    let from: Vec<Component<'_>> = from_dir.components().collect();
    let to: Vec<Component<'_>> = target.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let ups = from.len() - common;
    let rest: PathBuf = to[common..].iter().collect();
    let rest = rest.to_string_lossy();
    if ups == 0 {
        format!("./{rest}")
    } else {
        format!("{}{rest}", "../".repeat(ups))
    }
}

/// Where a decoded locator path points, for a child in `child_dir` (libvhd `vhd_find_parent`:
/// an absolute path as is, anything else relative to the child's directory).
pub fn resolve(child_dir: &Path, located: &str) -> PathBuf {
    let p = Path::new(located);
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        child_dir.join(p)
    };
    joined
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vhd_util_encodings_round_trip() {
        let m = encode(PlatformCode::Macx, "./base.vhd").unwrap();
        assert_eq!(m, b"file://./base.vhd");
        assert_eq!(decode(PlatformCode::Macx, &m).unwrap(), "./base.vhd");
        let w = encode(PlatformCode::W2ru, "./base.vhd").unwrap();
        assert_eq!(&w[..6], &[b'.', 0, b'\\', 0, b'b', 0]);
        assert_eq!(w.len(), 2 * ".\\base.vhd".len());
        assert_eq!(decode(PlatformCode::W2ru, &w).unwrap(), "./base.vhd");
        let w = encode(PlatformCode::W2ku, "../sr/a.vhd").unwrap();
        assert_eq!(decode(PlatformCode::W2ku, &w).unwrap(), "./../sr/a.vhd");
        let abs: Vec<u8> = "C:\\x\\y.vhd"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert_eq!(decode(PlatformCode::W2ku, &abs).unwrap(), "/x/y.vhd");
    }

    #[test]
    fn bad_locator_data_is_an_error() {
        assert!(decode(PlatformCode::Macx, b"./base.vhd").is_err());
        assert!(decode(PlatformCode::Macx, &[0xff, 0xfe]).is_err());
        assert!(decode(PlatformCode::W2ru, b"a").is_err());
        assert!(matches!(
            decode(PlatformCode::Mac, b"alias"),
            Err(VhdError::Unsupported { .. })
        ));
    }

    #[test]
    fn relative_paths_and_resolution() {
        assert_eq!(
            relative_path(Path::new("/sr"), Path::new("/sr/base.vhd")),
            "./base.vhd"
        );
        assert_eq!(
            relative_path(Path::new("/sr/a"), Path::new("/sr/b/base.vhd")),
            "../b/base.vhd"
        );
        assert_eq!(
            resolve(Path::new("/sr"), "./base.vhd"),
            PathBuf::from("/sr/base.vhd")
        );
        assert_eq!(
            resolve(Path::new("/sr"), "/abs/p.vhd"),
            PathBuf::from("/abs/p.vhd")
        );
    }
}
