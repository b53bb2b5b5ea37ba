//! `multipathd show maps json` (multipath-tools `libmultipath/print.c`, format 0.1): every
//! field defaulted, so older and newer daemons that add or drop fields still parse.

use serde::Deserialize;

use crate::error::{MultipathError, Result};

/// The whole reply.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct MapsReply {
    /// JSON format major version.
    #[serde(default)]
    pub major_version: u32,
    /// JSON format minor version.
    #[serde(default)]
    pub minor_version: u32,
    /// The maps.
    #[serde(default)]
    pub maps: Vec<Map>,
}

/// One multipath map.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Map {
    /// Map name (the WWID unless aliases or user-friendly names are used).
    pub name: String,
    /// The WWID.
    pub uuid: String,
    /// The dm device (`dm-3`).
    pub sysfs: String,
    /// `immediate`, `manual`, `followover`, a number of seconds, or `-`.
    pub failback: String,
    /// `-`, `on`, `off`, `N chk` (no_path_retry).
    pub queueing: String,
    /// Number of paths.
    pub paths: i64,
    /// `rw` / `ro`.
    pub write_prot: String,
    /// dm state (`active`, `suspend`).
    pub dm_st: String,
    /// dm features.
    pub features: String,
    /// Hardware handler (`1 alua`).
    pub hwhandler: String,
    /// Path faults since the map was made.
    pub path_faults: i64,
    /// Vendor.
    pub vend: String,
    /// Product.
    pub prod: String,
    /// Revision.
    pub rev: String,
    /// Path group switches.
    pub switch_grp: i64,
    /// Map loads.
    pub map_loads: i64,
    /// Path groups.
    pub path_groups: Vec<Group>,
}

/// One path group of a map.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Group {
    /// Path selector (`service-time 0`).
    pub selector: String,
    /// Group priority.
    pub pri: i64,
    /// dm state: `active`, `enabled`, `disabled`.
    pub dm_st: String,
    /// Group number (1-based).
    pub group: u32,
    /// Paths.
    pub paths: Vec<MapPath>,
}

/// One path of a group.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct MapPath {
    /// Device (`sdb`).
    pub dev: String,
    /// `major:minor`.
    pub dev_t: String,
    /// dm state: `active`, `failed`, `undef`.
    pub dm_st: String,
    /// Device state: `running`, `offline`, ...
    pub dev_st: String,
    /// Checker state: `ready`, `faulty`, `shaky`, `ghost`, `i/o pending`, `delayed`, ...
    pub chk_st: String,
    /// Checker (`tur`).
    pub checker: String,
    /// Priority.
    pub pri: i64,
}

impl Map {
    /// Every path of the map with its group.
    pub fn paths(&self) -> impl Iterator<Item = (&Group, &MapPath)> {
        self.path_groups
            .iter()
            .flat_map(|g| g.paths.iter().map(move |p| (g, p)))
    }
}

impl MapPath {
    /// Whether dm and the checker both consider the path usable (mpathcount's rule: not
    /// `failed`, `faulty` or `shaky`).
    pub fn is_up(&self) -> bool {
        !matches!(self.dm_st.as_str(), "failed")
            && !matches!(self.chk_st.as_str(), "faulty" | "shaky" | "failed")
    }
}

/// Parses `show maps json` (or `show map X json`, which has a `map` object instead of `maps`).
pub fn parse_maps(text: &str) -> Result<Vec<Map>> {
    let bad = |e: serde_json::Error| MultipathError::Parse {
        what: "multipathd show maps json",
        detail: e.to_string(),
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(bad)?;
    if let Some(one) = value.get("map") {
        return Ok(vec![Map::deserialize(one).map_err(bad)?]);
    }
    Ok(MapsReply::deserialize(&value).map_err(bad)?.maps)
}
