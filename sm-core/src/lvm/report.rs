//! lvm2's JSON report (`--reportformat json --units b --nosuffix`), parsed with serde into typed
//! volume groups, physical volumes and logical volumes.
//!
//! One `lvm fullreport` call gives every VG on the devices in scope with its PVs and LVs, and the
//! PVs that belong to no VG, so a scan costs one lvm2 command whatever the number of LVs. The
//! columns asked for are [`VG_COLUMNS`], [`PV_COLUMNS`] and [`LV_COLUMNS`]; lvm2 prints every
//! value as a string, sizes in bytes.

use std::path::PathBuf;

use serde::Deserialize;

use super::error::{LvmError, LvmOp};

/// The VG columns read.
pub const VG_COLUMNS: &str = "vg_name,vg_uuid,vg_attr,vg_size,vg_free,vg_extent_size,vg_extent_count,vg_free_count,vg_missing_pv_count";
/// The PV columns read.
pub const PV_COLUMNS: &str = "pv_name,pv_uuid,vg_name,pv_size,dev_size,pv_attr,pv_major,pv_minor";
/// The LV columns read.
pub const LV_COLUMNS: &str = "lv_name,lv_uuid,lv_size,lv_attr,origin,snap_percent,lv_tags";

#[derive(Debug, Deserialize)]
struct RawDoc {
    report: Vec<RawSection>,
}

#[derive(Debug, Default, Deserialize)]
struct RawSection {
    #[serde(default)]
    vg: Vec<RawVg>,
    #[serde(default)]
    pv: Vec<RawPv>,
    #[serde(default)]
    lv: Vec<RawLv>,
}

#[derive(Debug, Deserialize)]
struct RawVg {
    vg_name: String,
    vg_uuid: String,
    vg_attr: String,
    vg_size: String,
    vg_free: String,
    vg_extent_size: String,
    vg_extent_count: String,
    vg_free_count: String,
    vg_missing_pv_count: String,
}

#[derive(Debug, Deserialize)]
struct RawPv {
    pv_name: String,
    pv_uuid: String,
    vg_name: String,
    pv_size: String,
    dev_size: String,
    pv_attr: String,
    pv_major: String,
    pv_minor: String,
}

#[derive(Debug, Deserialize)]
struct RawLv {
    lv_name: String,
    lv_uuid: String,
    lv_size: String,
    lv_attr: String,
    origin: String,
    snap_percent: String,
    lv_tags: String,
}

/// A logical volume's `lv_attr` string (lvs(8), "lv_attr bits").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvAttr(pub String);

impl LvAttr {
    fn at(&self, i: usize) -> char {
        self.0.chars().nth(i).unwrap_or('-')
    }

    /// Volume type: `-` plain, `s` snapshot, `o` origin, `S` merging snapshot, ...
    pub fn volume_type(&self) -> char {
        self.at(0)
    }

    /// Whether this is a (COW) snapshot.
    pub fn is_snapshot(&self) -> bool {
        matches!(self.volume_type(), 's' | 'S')
    }

    /// Whether this LV has snapshots.
    pub fn is_origin(&self) -> bool {
        matches!(self.volume_type(), 'o' | 'O')
    }

    /// Whether the LV is writeable (not read-only).
    pub fn is_writeable(&self) -> bool {
        self.at(1) == 'w'
    }

    /// Whether the LV is active (mapped) on this host.
    pub fn is_active(&self) -> bool {
        matches!(
            self.at(4),
            'a' | 's' | 'I' | 'S' | 'm' | 'M' | 'd' | 'i' | 'c' | 'C'
        )
    }

    /// Whether the LV is a snapshot that overflowed and is no longer usable.
    pub fn is_invalid_snapshot(&self) -> bool {
        matches!(self.at(4), 'I' | 'S')
    }

    /// Whether some process or kernel user has the LV's device open.
    pub fn is_open(&self) -> bool {
        self.at(5) == 'o'
    }
}

/// A logical volume.
#[derive(Debug, Clone, PartialEq)]
pub struct Lv {
    /// Its name within the VG.
    pub name: String,
    /// lvm2's uuid.
    pub uuid: String,
    /// Size in bytes (for a snapshot: its copy-on-write area).
    pub size: u64,
    /// The attribute string.
    pub attr: LvAttr,
    /// The origin LV of a snapshot.
    pub origin: Option<String>,
    /// How full a snapshot's copy-on-write area is, in percent.
    pub snap_percent: Option<f64>,
    /// Its tags.
    pub tags: Vec<String>,
}

/// A physical volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pv {
    /// The device name lvm2 uses for it.
    pub name: PathBuf,
    /// lvm2's uuid.
    pub uuid: String,
    /// The VG it belongs to, or `None` for an orphan.
    pub vg_name: Option<String>,
    /// Usable size in bytes.
    pub size: u64,
    /// Size of the underlying device in bytes.
    pub dev_size: u64,
    /// The attribute string (`a--`; `m` in third place: missing).
    pub attr: String,
    /// `(major, minor)` of the device.
    pub devno: (u64, u64),
}

impl Pv {
    /// Whether lvm2 knows the PV from metadata but cannot find its device.
    pub fn is_missing(&self) -> bool {
        self.attr.chars().nth(2) == Some('m')
    }
}

/// A volume group with its PVs and LVs.
#[derive(Debug, Clone, PartialEq)]
pub struct Vg {
    /// Its name.
    pub name: String,
    /// lvm2's uuid.
    pub uuid: String,
    /// The attribute string (`wz--n-`; `p` in fourth place: partial).
    pub attr: String,
    /// Size in bytes.
    pub size: u64,
    /// Free bytes.
    pub free: u64,
    /// Extent size in bytes.
    pub extent_size: u64,
    /// Number of extents.
    pub extent_count: u64,
    /// Number of free extents.
    pub free_count: u64,
    /// PVs the metadata names that are not present.
    pub missing_pvs: u64,
    /// Its PVs.
    pub pvs: Vec<Pv>,
    /// Its LVs.
    pub lvs: Vec<Lv>,
}

impl Vg {
    /// The LV called `name`.
    pub fn lv(&self, name: &str) -> Option<&Lv> {
        self.lvs.iter().find(|l| l.name == name)
    }

    /// Whether some of its PVs are missing.
    pub fn is_partial(&self) -> bool {
        self.missing_pvs > 0 || self.attr.chars().nth(3) == Some('p')
    }

    /// `bytes` rounded up to whole extents, or `None` when that does not fit in a u64.
    pub fn round_up(&self, bytes: u64) -> Option<u64> {
        super::extent::round_up(bytes, self.extent_size)
    }
}

/// Everything one report call found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    /// Every VG, with its PVs and LVs.
    pub vgs: Vec<Vg>,
    /// PVs that belong to no VG.
    pub orphans: Vec<Pv>,
}

impl Report {
    /// The VG called `name`.
    pub fn vg(&self, name: &str) -> Option<&Vg> {
        self.vgs.iter().find(|v| v.name == name)
    }

    /// Every PV, in VGs or not.
    pub fn pvs(&self) -> impl Iterator<Item = &Pv> {
        self.vgs
            .iter()
            .flat_map(|v| v.pvs.iter())
            .chain(&self.orphans)
    }

    /// The PV on the device `devno`.
    pub fn pv_by_devno(&self, devno: (u64, u64)) -> Option<&Pv> {
        self.pvs().find(|p| p.devno == devno)
    }
}

/// A report value that is not what the column promises (the error's operation is fixed by the
/// caller of [`parse`]).
fn parse_err(reason: impl Into<String>) -> LvmError {
    LvmError::Parse {
        op: LvmOp::Report,
        reason: reason.into(),
    }
}

fn num(field: &str, v: &str) -> Result<u64, LvmError> {
    v.trim()
        .parse()
        .map_err(|_| parse_err(format!("{field} {v:?} is not a number")))
}

fn opt(v: String) -> Option<String> {
    Some(v).filter(|s| !s.is_empty())
}

fn pv(r: RawPv) -> Result<Pv, LvmError> {
    Ok(Pv {
        size: num("pv_size", &r.pv_size)?,
        dev_size: num("dev_size", &r.dev_size)?,
        devno: (num("pv_major", &r.pv_major)?, num("pv_minor", &r.pv_minor)?),
        name: PathBuf::from(r.pv_name),
        uuid: r.pv_uuid,
        vg_name: opt(r.vg_name),
        attr: r.pv_attr,
    })
}

fn lv(r: RawLv) -> Result<Lv, LvmError> {
    let snap_percent = match r.snap_percent.trim() {
        "" => None,
        p => Some(
            p.parse()
                .map_err(|_| parse_err(format!("snap_percent {p:?} is not a number")))?,
        ),
    };
    Ok(Lv {
        size: num("lv_size", &r.lv_size)?,
        name: r.lv_name,
        uuid: r.lv_uuid,
        attr: LvAttr(r.lv_attr),
        origin: opt(r.origin),
        snap_percent,
        tags: r
            .lv_tags
            .split(',')
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect(),
    })
}

/// Parses the JSON of `lvm fullreport` with the columns above; a failure is reported as one of
/// `op`.
pub fn parse(op: LvmOp, json: &str) -> Result<Report, LvmError> {
    parse_doc(json).map_err(|e| match e {
        LvmError::Parse { reason, .. } => LvmError::Parse { op, reason },
        other => other,
    })
}

fn parse_doc(json: &str) -> Result<Report, LvmError> {
    let doc: RawDoc = serde_json::from_str(json).map_err(|e| parse_err(e.to_string()))?;
    let mut out = Report::default();
    for section in doc.report {
        let pvs = section
            .pv
            .into_iter()
            .map(pv)
            .collect::<Result<Vec<_>, _>>()?;
        let lvs = section
            .lv
            .into_iter()
            .map(lv)
            .collect::<Result<Vec<_>, _>>()?;
        let mut vgs = section.vg.into_iter();
        match (vgs.next(), vgs.next()) {
            (Some(r), None) => out.vgs.push(Vg {
                size: num("vg_size", &r.vg_size)?,
                free: num("vg_free", &r.vg_free)?,
                extent_size: num("vg_extent_size", &r.vg_extent_size)?,
                extent_count: num("vg_extent_count", &r.vg_extent_count)?,
                free_count: num("vg_free_count", &r.vg_free_count)?,
                missing_pvs: num("vg_missing_pv_count", &r.vg_missing_pv_count)?,
                name: r.vg_name,
                uuid: r.vg_uuid,
                attr: r.vg_attr,
                pvs,
                lvs,
            }),
            (None, _) if lvs.is_empty() && pvs.iter().all(|p| p.vg_name.is_none()) => {
                out.orphans.extend(pvs);
            }
            _ => {
                return Err(parse_err(
                    "a report section must describe exactly one VG, or only orphan PVs",
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VG: &str = r#"{"vg_name":"VG_XenStorage-x", "vg_uuid":"u", "vg_attr":"wz--n-", "vg_size":"8577351680", "vg_free":"8472494080", "vg_extent_size":"4194304", "vg_extent_count":"2045", "vg_free_count":"2020", "vg_missing_pv_count":"0"}"#;
    const PV: &str = r#"{"pv_name":"/dev/loop0", "pv_uuid":"p", "vg_name":"VG_XenStorage-x", "pv_size":"8577351680", "dev_size":"8589934592", "pv_attr":"a--", "pv_major":"7", "pv_minor":"0"}"#;
    const LV: &str = r#"{"lv_name":"LV-a", "lv_uuid":"l", "lv_size":"104857600", "lv_attr":"-wi-ao----", "origin":"", "snap_percent":"", "lv_tags":"a,b"}"#;
    const ORPHAN: &str = r#"{"pv_name":"/dev/loop1", "pv_uuid":"q", "vg_name":"", "pv_size":"104857600", "dev_size":"104857600", "pv_attr":"---", "pv_major":"7", "pv_minor":"1"}"#;

    #[test]
    fn parses_vgs_with_pvs_lvs_and_orphans() {
        let json = format!(
            r#"{{"report": [{{"vg": [{VG}], "pv": [{PV}], "lv": [{LV}], "pvseg": [], "seg": []}}, {{"pv": [{ORPHAN}], "pvseg": []}}]}}"#
        );
        let r = parse(LvmOp::Report, &json).unwrap();
        let vg = r.vg("VG_XenStorage-x").unwrap();
        assert_eq!(vg.extent_size, 4 << 20);
        assert_eq!(vg.free_count, 2020);
        assert!(!vg.is_partial());
        let lv = vg.lv("LV-a").unwrap();
        assert_eq!(lv.size, 100 << 20);
        assert!(lv.attr.is_active() && lv.attr.is_open() && !lv.attr.is_snapshot());
        assert_eq!(lv.tags, vec!["a", "b"]);
        assert_eq!(r.orphans.len(), 1);
        assert_eq!(r.orphans[0].vg_name, None);
        assert_eq!(
            r.pv_by_devno((7, 1)).unwrap().name,
            PathBuf::from("/dev/loop1")
        );
        assert_eq!(r.pvs().count(), 2);
        assert_eq!(vg.round_up(1), Some(4 << 20));
    }

    #[test]
    fn attr_bits() {
        let a = |s: &str| LvAttr(s.into());
        assert!(a("swi-a-s---").is_snapshot());
        assert!(a("swi-I-s---").is_invalid_snapshot());
        assert!(a("owi-aos---").is_origin());
        assert!(!a("-wi-------").is_active());
        assert!(!a("-wi-XX----").is_open());
        assert!(a("-ri-a-----").is_active() && !a("-ri-a-----").is_writeable());
        assert_eq!(a("").volume_type(), '-');
    }

    #[test]
    fn bad_documents_are_parse_errors() {
        for bad in [
            "",
            "{",
            r#"{"report": [{"vg": [{"vg_name": "x"}]}]}"#,
            r#"{"report": [{"lv": [{"lv_name":"a"}]}]}"#,
        ] {
            let e = parse(LvmOp::Report, bad).unwrap_err();
            assert_eq!(e.sm_code(), crate::errors::SmCode::LVMRead, "{bad}");
            let e = parse(LvmOp::PvReport, bad).unwrap_err();
            assert_eq!(e.sm_code(), crate::errors::SmCode::PVSfailed, "{bad}");
        }
        let bad_num = format!(
            r#"{{"report": [{{"vg": [{}], "pv": [], "lv": []}}]}}"#,
            VG.replace("8577351680", "8.5g")
        );
        assert!(
            parse(LvmOp::Report, &bad_num)
                .unwrap_err()
                .to_string()
                .contains("vg_size")
        );
    }
}
