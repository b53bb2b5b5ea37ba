//! `xsm mpath show`: one LU (its properties, path groups, target port groups and paths, one
//! function per section), one path, or the plugin's properties.

use std::io::Write;

use multipath::model::load_balance;
use multipath::{MultipathLu, PathLu, Plugin, Result, TargetPort, TargetPortGroup, Topology};
use serde::Serialize;

use super::list::{PATH_HEADER, path_row};
use super::table::{self, dash, io, yes};

/// What `show lu --json` prints.
#[derive(Serialize)]
struct LuView<'a> {
    lu: &'a MultipathLu,
    paths: Vec<&'a PathLu>,
    tpgs: Vec<&'a TargetPortGroup>,
    target_ports: Vec<&'a TargetPort>,
}

/// The LU: properties, then its path groups, target port groups and paths.
pub fn lu(topo: &Topology, lu: &MultipathLu, json: bool, out: &mut dyn Write) -> Result<()> {
    let paths: Vec<&PathLu> = topo.lu_paths(lu.oid).collect();
    let tpgs: Vec<&TargetPortGroup> = topo.lu_tpgs(lu.oid).collect();
    if json {
        let mut target_ports: Vec<&TargetPort> = tpgs
            .iter()
            .flat_map(|g| g.target_ports.iter())
            .filter_map(|o| topo.target_port(*o))
            .collect();
        target_ports.dedup_by_key(|p| p.oid);
        let view = LuView {
            lu,
            paths,
            tpgs,
            target_ports,
        };
        return table::json(out, &view);
    }
    lu_properties(lu, out)?;
    writeln!(out, "\nPath groups").map_err(io)?;
    path_groups(topo, lu, out)?;
    writeln!(out, "\nTarget port groups").map_err(io)?;
    target_port_groups(topo, &tpgs, out)?;
    writeln!(out, "\nPaths").map_err(io)?;
    table::rows(
        out,
        PATH_HEADER,
        paths.iter().map(|p| path_row(topo, p)).collect(),
    )
}

fn lu_properties(lu: &MultipathLu, out: &mut dyn Write) -> Result<()> {
    let rows: Vec<(&str, String)> = vec![
        ("Name", lu.name.clone()),
        ("Name type", lu.name_type.to_string()),
        ("Device file", dash(lu.device_file_name.clone())),
        ("dm device", dash(lu.dm_device.clone())),
        ("Vendor", lu.vendor.clone()),
        ("Product", lu.product.clone()),
        ("Revision", lu.revision.clone()),
        (
            "Size",
            format!("{} ({} bytes)", table::size(lu.size), lu.size),
        ),
        ("Asymmetric", yes(lu.asymmetric)),
        ("Explicit failover", yes(lu.explicit_alua)),
        (
            "Load balance",
            format!(
                "{} ({})",
                load_balance::names(lu.current_load_balance_type).join(","),
                lu.selector
            ),
        ),
        (
            "Auto-failback",
            format!("{} ({})", yes(lu.auto_failback_enabled), lu.failback),
        ),
        ("Queueing", lu.queueing.clone()),
        ("Features", lu.features.clone()),
        ("Hardware handler", lu.hardware_handler.clone()),
        (
            "Paths",
            format!("{} usable of {}", lu.active_paths, lu.total_paths),
        ),
    ];
    table::key_values(out, "Logical unit", &rows)
}

fn path_groups(topo: &Topology, lu: &MultipathLu, out: &mut dyn Write) -> Result<()> {
    let groups = lu
        .path_groups
        .iter()
        .map(|g| {
            vec![
                g.group.to_string(),
                g.priority.to_string(),
                g.dm_state.clone(),
                g.selector.clone(),
                g.paths
                    .iter()
                    .filter_map(|o| topo.path(*o))
                    .map(|p| p.device.clone())
                    .collect::<Vec<_>>()
                    .join(","),
            ]
        })
        .collect();
    table::rows(
        out,
        &["GROUP", "PRIO", "STATE", "SELECTOR", "PATHS"],
        groups,
    )
}

fn target_port_groups(
    topo: &Topology,
    tpgs: &[&TargetPortGroup],
    out: &mut dyn Write,
) -> Result<()> {
    let rows = tpgs
        .iter()
        .map(|g| {
            vec![
                g.tpg_id.to_string(),
                g.access_state.to_string(),
                yes(g.preferred_lu_path),
                g.status.to_string(),
                g.supported_states.join(","),
                g.target_ports
                    .iter()
                    .filter_map(|o| topo.target_port(*o))
                    .map(|t| format!("{} ({})", t.port_id, t.portal.as_deref().unwrap_or("-")))
                    .collect::<Vec<_>>()
                    .join(" "),
            ]
        })
        .collect();
    table::rows(
        out,
        &[
            "TPG",
            "STATE",
            "PREF",
            "STATUS",
            "SUPPORTED",
            "TARGET PORTS",
        ],
        rows,
    )
}

/// One path, as a one-row table or JSON.
pub fn path(topo: &Topology, p: &PathLu, json: bool, out: &mut dyn Write) -> Result<()> {
    if json {
        return table::json(out, p);
    }
    table::rows(out, PATH_HEADER, vec![path_row(topo, p)])
}

/// The plugin's properties (MP_PLUGIN_PROPERTIES).
pub fn plugin(p: &Plugin, json: bool, out: &mut dyn Write) -> Result<()> {
    if json {
        return table::json(out, p);
    }
    let rows: Vec<(&str, String)> = vec![
        ("Vendor", p.vendor.clone()),
        ("Driver", p.driver_vendor.clone()),
        ("Version", p.implementation_version.clone()),
        ("File", p.file_name.clone()),
        (
            "Supported load-balance types",
            p.supported_load_balance_names.join(", "),
        ),
        ("canSetTPGAccess", yes(p.can_set_tpg_access)),
        ("canOverridePaths", yes(p.can_override_paths)),
        ("exposesPathDeviceFiles", yes(p.exposes_path_device_files)),
        ("deviceFileNamespace", p.device_file_namespace.clone()),
        (
            "onlySupportsSpecifiedProducts",
            yes(p.only_supports_specified_products),
        ),
        ("Auto-failback support", yes(p.auto_failback_support)),
        ("Auto-probing support", yes(p.auto_probing_support)),
        (
            "Probing polling rate",
            p.probing_polling_rate
                .map_or("-".into(), |s| format!("{s}s")),
        ),
    ];
    table::key_values(out, "mpath-support: xsm", &rows)
}
