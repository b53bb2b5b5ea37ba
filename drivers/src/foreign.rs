//! Content in sm's on-disk formats that our drivers do not handle (`research/datapath.md` §8):
//! found by sr_attach and sr_scan, named in a fault, and never touched. A scan that went on
//! would forget the records of those VDIs (xapi then destroys their VBDs) or introduce sm's
//! hidden base copies as VDIs; serving a differencing VHD without its parents shows a wrong
//! disk. So the SR is refused whole, before any record is written.

use sm_core::errors::{SmCode, SmError, SmResult};

/// How many items a fault names before it only counts the rest.
const NAMED: usize = 8;

/// One thing found that is not ours to handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Its name where it lives (file or LV name).
    pub name: String,
    /// What it is, in sm's terms (`differencing VHD`, `sm metadata volume`, ...).
    pub kind: &'static str,
}

/// Ok when `found` is empty; otherwise fault 47 SRUnavailable naming what `place` holds.
pub fn refuse(place: &str, found: &[Item]) -> SmResult<()> {
    if found.is_empty() {
        return Ok(());
    }
    let mut named: Vec<String> = found
        .iter()
        .take(NAMED)
        .map(|i| format!("{} ({})", i.name, i.kind))
        .collect();
    if found.len() > NAMED {
        named.push(format!("and {} more", found.len() - NAMED));
    }
    tracing::error!(
        place,
        count = found.len(),
        "refusing content in a format this driver does not handle"
    );
    Err(SmError::msg(
        SmCode::SRUnavailable,
        format!(
            "{place} holds content in sm's formats that this SR type does not handle: {}; \
             nothing was changed and no VDI record was touched (use sm's own SR type for it)",
            named.join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_found_is_ok_and_a_long_list_is_counted() {
        assert!(refuse("/x", &[]).is_ok());
        let items: Vec<Item> = (0..10)
            .map(|i| Item {
                name: format!("VHD-{i}"),
                kind: "VHD image in an LV",
            })
            .collect();
        let e = refuse("volume group VG_XenStorage-1", &items).unwrap_err();
        assert_eq!(e.code, SmCode::SRUnavailable);
        let text = e.to_string();
        assert!(text.contains("VHD-0 (VHD image in an LV)"), "{text}");
        assert!(text.contains("VHD-7"), "{text}");
        assert!(!text.contains("VHD-8 "), "{text}");
        assert!(text.contains("and 2 more"), "{text}");
    }
}
