//! `xsm mpath list`: one table (or JSON array) per kind of object, and the LU and path rows
//! that `show` prints too.

use std::io::Write;

use multipath::model::load_balance;
use multipath::{MultipathLu, PathLu, Result, TargetPortGroup, Topology, TpgState};
use sm_core::scsi::AccessState;

use super::ListWhat;
use super::table::{self, dash, yes};

/// The columns of a path row.
pub const PATH_HEADER: &[&str] = &[
    "DEVICE",
    "HCTL",
    "STATE",
    "DM",
    "CHECKER",
    "PRIO",
    "TPG",
    "RTPI",
    "KERNEL-ALUA",
    "PORTAL",
    "LU",
];

const LU_HEADER: &[&str] = &[
    "NAME", "DM", "SIZE", "PRODUCT", "PATHS", "TPGS", "ALUA", "POLICY",
];

/// Every object of kind `what`, as a table or a JSON array.
pub fn write(topo: &Topology, what: ListWhat, json: bool, out: &mut dyn Write) -> Result<()> {
    match what {
        ListWhat::Lu if json => table::json(out, &topo.lus),
        ListWhat::Lu => table::rows(
            out,
            LU_HEADER,
            topo.lus.iter().map(|l| lu_row(topo, l)).collect(),
        ),
        ListWhat::Path if json => table::json(out, &topo.paths),
        ListWhat::Path => table::rows(
            out,
            PATH_HEADER,
            topo.paths.iter().map(|p| path_row(topo, p)).collect(),
        ),
        ListWhat::Tpg if json => table::json(out, &topo.tpgs),
        ListWhat::Tpg => tpgs(topo, out),
        ListWhat::InitiatorPort if json => table::json(out, &topo.initiator_ports),
        ListWhat::InitiatorPort => initiator_ports(topo, out),
        ListWhat::TargetPort if json => table::json(out, &topo.target_ports),
        ListWhat::TargetPort => target_ports(topo, out),
    }
}

fn tpgs(topo: &Topology, out: &mut dyn Write) -> Result<()> {
    let rows = topo
        .tpgs
        .iter()
        .map(|g| {
            vec![
                topo.lu(g.lu).map_or("-".into(), |l| l.name.clone()),
                g.tpg_id.to_string(),
                g.access_state.to_string(),
                yes(g.preferred_lu_path),
                yes(g.explicit_failover),
                g.status.to_string(),
                g.target_ports
                    .iter()
                    .filter_map(|o| topo.target_port(*o))
                    .map(|t| t.relative_port_id.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            ]
        })
        .collect();
    table::rows(
        out,
        &["LU", "TPG", "STATE", "PREF", "EXPLICIT", "STATUS", "PORTS"],
        rows,
    )
}

fn initiator_ports(topo: &Topology, out: &mut dyn Write) -> Result<()> {
    let rows = topo
        .initiator_ports
        .iter()
        .map(|i| {
            vec![
                i.port_id.clone(),
                i.port_type.to_string(),
                i.os_friendly_name.clone(),
                i.session.to_string(),
                i.iface.clone(),
                dash(i.local_address.clone()),
            ]
        })
        .collect();
    table::rows(
        out,
        &["PORT-ID", "TYPE", "HOST", "SESSION", "IFACE", "LOCAL"],
        rows,
    )
}

fn target_ports(topo: &Topology, out: &mut dyn Write) -> Result<()> {
    let rows = topo
        .target_ports
        .iter()
        .map(|t| {
            vec![
                t.port_id.clone(),
                t.relative_port_id.to_string(),
                t.target_name.clone(),
                dash(t.portal.clone()),
            ]
        })
        .collect();
    table::rows(out, &["PORT-ID", "RTPI", "TARGET", "PORTAL"], rows)
}

fn lu_row(topo: &Topology, lu: &MultipathLu) -> Vec<String> {
    vec![
        lu.name.clone(),
        dash(lu.dm_device.clone()),
        table::size(lu.size),
        format!("{} {}", lu.vendor, lu.product),
        format!("{}/{}", lu.active_paths, lu.total_paths),
        tpg_summary(topo, lu),
        match (lu.explicit_alua, lu.implicit_alua) {
            (true, true) => "explicit+implicit".into(),
            (true, false) => "explicit".into(),
            (false, true) => "implicit".into(),
            (false, false) => "none".into(),
        },
        load_balance::names(lu.current_load_balance_type).join(","),
    ]
}

/// One path's cells, in [`PATH_HEADER`] order.
pub fn path_row(topo: &Topology, p: &PathLu) -> Vec<String> {
    vec![
        p.device.clone(),
        if p.hctl.is_empty() {
            "-".into()
        } else {
            p.hctl.clone()
        },
        p.state.to_string(),
        dash(p.dm_state.clone()),
        dash(p.checker_state.clone()),
        p.weight.to_string(),
        dash(p.tpg_id.map(|t| t.to_string())),
        dash(p.relative_port_id.map(|t| t.to_string())),
        dash(p.kernel_access_state.clone()),
        dash(p.portal.clone()),
        topo.lu(p.lu).map_or("-".into(), |l| l.name.clone()),
    ]
}

/// `1:AO 2:AN`: each target port group of the LU and its short state.
fn tpg_summary(topo: &Topology, lu: &MultipathLu) -> String {
    topo.lu_tpgs(lu.oid)
        .map(|g| format!("{}:{}", g.tpg_id, short_state(g)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn short_state(g: &TargetPortGroup) -> &'static str {
    match g.access_state {
        TpgState::Active => "active",
        TpgState::Alua(AccessState::ActiveOptimized) => "AO",
        TpgState::Alua(AccessState::ActiveNonOptimized) => "AN",
        TpgState::Alua(AccessState::Standby) => "S",
        TpgState::Alua(AccessState::Unavailable) => "U",
        TpgState::Alua(AccessState::LbaDependent) => "LBD",
        TpgState::Alua(AccessState::Offline) => "O",
        TpgState::Alua(AccessState::Transitioning) => "T",
    }
}
