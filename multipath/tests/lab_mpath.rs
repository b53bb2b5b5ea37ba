//! The MMA model on the lab's real stack (docs/lab.md, one-host topology): discovery agrees
//! with sg3_utils and multipath-tools for every LUN, and SetTPGAccess moves the active/optimized
//! group with RTPG, the kernel and multipathd following; a change made on the array is seen.
//!
//! Run with `xapi-tests/lab/run-suite lab lab_mpath_`; ignored under plain `cargo test`. The
//! parsers of the tools' output are checked on the lab captures by plain tests.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed setup is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use multipath::alua::{self, Deadlines};
use multipath::discovery::{self, Options};
use multipath::{System, Topology, TpgState};
use sm_core::host::Paths;
use sm_core::host::run::{Cmd, SystemRunner};
use xapi_tests::lab::{AccessState, Lab, run_ok as run, wait_until};

/// What `sg_inq -p 0x83` says about a path.
#[derive(Debug, Default, PartialEq)]
struct Vpd83 {
    naa: Option<String>,
    relative_port: Option<u16>,
    tpg: Option<u16>,
    target_port_name: Option<String>,
}

fn hex_u16(s: &str) -> Option<u16> {
    u16::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
}

fn parse_vpd83(text: &str) -> Vpd83 {
    let mut v = Vpd83::default();
    let mut lines = text.lines().map(str::trim).peekable();
    let mut port_assoc = false;
    while let Some(l) = lines.next() {
        if l.starts_with("associated with") {
            port_assoc = l == "associated with the Target port";
        } else if let Some(r) = l.strip_prefix("Relative target port:") {
            v.relative_port = hex_u16(r);
        } else if let Some(r) = l.strip_prefix("Target port group:") {
            v.tpg = hex_u16(r);
        } else if l.starts_with("[0x") && v.naa.is_none() {
            v.naa = Some(format!(
                "3{}",
                l.trim_matches(['[', ']']).trim_start_matches("0x")
            ));
        } else if l == "SCSI name string:" && port_assoc {
            v.target_port_name = lines.next().map(str::to_string);
        }
    }
    v
}

/// One group of `sg_rtpg -d`: state code, preferred bit, relative port ids.
#[derive(Debug, Default, PartialEq)]
struct RtpgGroup {
    state: u8,
    pref: bool,
    ports: Vec<u16>,
}

fn parse_rtpg(text: &str) -> BTreeMap<u16, RtpgGroup> {
    let mut out = BTreeMap::new();
    let mut cur: Option<u16> = None;
    let mut in_ports = false;
    for l in text.lines().map(str::trim) {
        if let Some(r) = l.strip_prefix("target port group id :") {
            let mut f = r.split(',');
            cur = f.next().and_then(hex_u16);
            let pref = f.any(|x| x.trim() == "Pref=1");
            if let Some(g) = cur {
                out.insert(
                    g,
                    RtpgGroup {
                        pref,
                        ..RtpgGroup::default()
                    },
                );
            }
            in_ports = false;
        } else if let (Some(g), Some(r)) = (
            cur,
            l.strip_prefix("target port group asymmetric access state :"),
        ) {
            let code = r
                .split_whitespace()
                .next()
                .and_then(|h| u8::from_str_radix(h.trim_start_matches("0x"), 16).ok());
            if let (Some(c), Some(e)) = (code, out.get_mut(&g)) {
                e.state = c;
            }
        } else if l == "Relative target port ids:" {
            in_ports = true;
        } else if in_ports && l.starts_with("0x") {
            if let (Some(g), Some(p)) = (cur, hex_u16(l)) {
                out.get_mut(&g).unwrap().ports.push(p);
            }
        } else {
            in_ports = false;
        }
    }
    out
}

/// One map of `multipath -ll`.
#[derive(Debug, Default, PartialEq)]
struct LlMap {
    wwid: String,
    dm: String,
    vendor: String,
    product: String,
    hwhandler: String,
    /// (prio, status, [(hctl, dev, dm_st, chk_st, dev_st)])
    groups: Vec<(i64, String, Vec<[String; 5]>)>,
}

fn parse_ll(text: &str) -> Vec<LlMap> {
    let mut maps: Vec<LlMap> = Vec::new();
    for line in text.lines() {
        let l = line.trim_start_matches(['|', '`', '-', '+', ' ']);
        let f: Vec<&str> = l.split_whitespace().collect();
        if !line.starts_with([' ', '|', '`']) && f.len() >= 3 && f[1].starts_with("dm-") {
            let (vendor, product) = f[2].split_once(',').unwrap_or((f[2], ""));
            maps.push(LlMap {
                wwid: f[0].to_string(),
                dm: f[1].to_string(),
                vendor: vendor.to_string(),
                product: product.to_string(),
                ..LlMap::default()
            });
        } else if let Some(m) = maps.last_mut() {
            if let Some(h) = line.split("hwhandler='").nth(1) {
                m.hwhandler = h.split('\'').next().unwrap_or("").to_string();
            } else if l.starts_with("policy=") {
                let val = |k: &str| {
                    l.split_whitespace()
                        .find_map(|w| w.strip_prefix(k))
                        .unwrap_or("")
                        .to_string()
                };
                m.groups.push((
                    val("prio=").parse().unwrap_or(-1),
                    val("status="),
                    Vec::new(),
                ));
            } else if f.len() >= 6
                && f[0].matches(':').count() == 3
                && let Some(g) = m.groups.last_mut()
            {
                g.2.push([f[0], f[1], f[3], f[4], f[5]].map(String::from));
            }
        }
    }
    maps
}

fn host() -> System {
    System::host(&Paths::from_env(), Arc::new(SystemRunner::new()))
}

fn discover(sys: &System) -> Topology {
    discovery::discover(sys, &Options::default()).unwrap()
}

fn state_code(s: TpgState) -> u8 {
    match s {
        TpgState::Alua(a) => a.code(),
        TpgState::Active => 0x10,
    }
}

/// Checks one LU of `topo` against the three tools; returns what differs.
fn compare_lu(lab: &Lab, topo: &Topology, wwid: &str) -> Result<(), String> {
    let lu = topo
        .find_lu(wwid)
        .ok_or_else(|| format!("discovery has no LU {wwid}"))?;
    let ll = parse_ll(&run(lab, &["multipath", "-ll", wwid]));
    let [m] = &ll[..] else {
        return Err(format!("multipath -ll {wwid}: {} maps", ll.len()));
    };
    let mut diffs = Vec::new();
    let mut check = |what: &str, ours: String, theirs: String| {
        if ours != theirs {
            diffs.push(format!("{what}: discovery {ours:?}, tools {theirs:?}"));
        }
    };
    check("name", lu.name.clone(), m.wwid.clone());
    check(
        "dm device",
        lu.dm_device.clone().unwrap_or_default(),
        m.dm.clone(),
    );
    check("vendor", lu.vendor.trim().into(), m.vendor.trim().into());
    check("product", lu.product.trim().into(), m.product.trim().into());
    check(
        "hardware handler",
        lu.hardware_handler.clone(),
        m.hwhandler.clone(),
    );
    let ours: Vec<(i64, String, BTreeSet<String>)> = lu
        .path_groups
        .iter()
        .map(|g| {
            let devs = g
                .paths
                .iter()
                .filter_map(|o| topo.path(*o))
                .map(|p| p.device.clone())
                .collect();
            (g.priority, g.dm_state.clone(), devs)
        })
        .collect();
    let theirs: Vec<(i64, String, BTreeSet<String>)> = m
        .groups
        .iter()
        .map(|(prio, st, ps)| (*prio, st.clone(), ps.iter().map(|p| p[1].clone()).collect()))
        .collect();
    check("path groups", format!("{ours:?}"), format!("{theirs:?}"));
    for p in topo.lu_paths(lu.oid) {
        let Some(lp) = m
            .groups
            .iter()
            .flat_map(|g| &g.2)
            .find(|x| x[1] == p.device)
        else {
            check("path", p.device.clone(), String::new());
            continue;
        };
        check(
            &format!("{} H:C:T:L", p.device),
            p.hctl.clone(),
            lp[0].clone(),
        );
        check(
            &format!("{} dm state", p.device),
            p.dm_state.clone().unwrap_or_default(),
            lp[2].clone(),
        );
        check(
            &format!("{} checker", p.device),
            p.checker_state.clone().unwrap_or_default(),
            lp[3].clone(),
        );
        check(
            &format!("{} device state", p.device),
            p.device_state.clone().unwrap_or_default(),
            lp[4].clone(),
        );
        let dev = format!("/dev/{}", p.device);
        let inq = parse_vpd83(&run(lab, &["sg_inq", "-p", "0x83", &dev]));
        check(
            &format!("{} NAA", p.device),
            wwid.into(),
            inq.naa.clone().unwrap_or_default(),
        );
        check(
            &format!("{} relative port", p.device),
            format!("{:?}", p.relative_port_id),
            format!("{:?}", inq.relative_port),
        );
        check(
            &format!("{} TPG", p.device),
            format!("{:?}", p.tpg_id),
            format!("{:?}", inq.tpg),
        );
        let tport = p
            .target_port
            .and_then(|o| topo.target_port(o))
            .map(|t| t.port_id.clone());
        check(
            &format!("{} target port", p.device),
            tport.unwrap_or_default(),
            inq.target_port_name.unwrap_or_default(),
        );
        let rtpg = parse_rtpg(&run(lab, &["sg_rtpg", "-d", &dev]));
        let ours: BTreeMap<u16, (u8, bool, Vec<u16>)> = topo
            .lu_tpgs(lu.oid)
            .map(|g| {
                let mut ports: Vec<u16> = g
                    .target_ports
                    .iter()
                    .filter_map(|o| topo.target_port(*o))
                    .map(|t| t.relative_port_id)
                    .collect();
                ports.sort_unstable();
                (
                    g.tpg_id,
                    (state_code(g.access_state), g.preferred_lu_path, ports),
                )
            })
            .collect();
        let theirs: BTreeMap<u16, (u8, bool, Vec<u16>)> = rtpg
            .into_iter()
            .map(|(id, g)| (id, (g.state, g.pref, g.ports)))
            .collect();
        check(
            &format!("{} RTPG", p.device),
            format!("{ours:?}"),
            format!("{theirs:?}"),
        );
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("\n"))
    }
}

#[test]
#[ignore = "lab"]
fn lab_mpath_discovery_matches_sg_inq_sg_rtpg_and_multipath_ll() {
    let Some(lab) = Lab::from_env() else { return };
    let sys = host();
    let topo = discover(&sys);
    assert!(lab.luns().len() >= 6);
    for lun in lab.luns() {
        let lu = topo
            .find_lu(&lun.wwid)
            .unwrap_or_else(|| panic!("LUN {} missing", lun.lun));
        assert_eq!((lu.active_paths, lu.total_paths), (2, 2), "LUN {}", lun.lun);
        assert!(
            lu.asymmetric && lu.explicit_alua,
            "LIO reports explicit ALUA: {lu:?}"
        );
        assert_eq!(lu.size, lun.size, "LUN {} size", lun.lun);
        compare_lu(&lab, &topo, &lun.wwid).unwrap_or_else(|e| panic!("LUN {}:\n{e}", lun.lun));
    }
    // The initiator ports are this host's sessions to the lab target.
    let iqn = &lab.host_a().iqn;
    assert!(topo.initiator_ports.len() >= 2);
    assert!(
        topo.initiator_ports
            .iter()
            .all(|i| &i.initiator_name == iqn),
        "{:?}",
        topo.initiator_ports
    );
}

#[test]
#[ignore = "lab"]
fn lab_mpath_set_tpg_access_moves_the_optimized_group() {
    let Some(lab) = Lab::from_env() else { return };
    let lun = lab.lun(1).unwrap().clone();
    let sys = host();
    let topo = discover(&sys);
    let lu = topo.find_lu(&lun.wwid).unwrap();
    let p2 = lab.host_a_lun(1).unwrap().path_on(2).unwrap().dev.clone();
    // dm numbers path groups in the order it first saw them, not by priority: the group in use
    // (failback immediate) is the one to look at.
    let in_use = |t: &Topology, lu: &multipath::model::MultipathLu| {
        lu.path_groups
            .iter()
            .find(|g| g.dm_state == "active")
            .map(|g| {
                let devs: Vec<String> = g
                    .paths
                    .iter()
                    .filter_map(|p| t.path(*p).map(|p| p.device.clone()))
                    .collect();
                (g.priority, devs)
            })
    };
    match in_use(&topo, lu) {
        Some((50, devs)) if !devs.contains(&p2) => {}
        other => panic!(
            "TPG 1 starts optimized and in use: {other:?} {:?}",
            lu.path_groups
        ),
    }

    let report = alua::set_tpg_access(
        &sys,
        &topo,
        &lun.wwid,
        &[
            (2, AccessState::ActiveOptimized),
            (1, AccessState::ActiveNonOptimized),
        ],
        Deadlines::default(),
    )
    .unwrap();
    assert!(report.host_followed, "{report:?}");
    let _ = std::io::Write::write_fmt(
        &mut std::io::stderr(),
        format_args!(
            "SetTPGAccess: {} RTPG reads, array {} ms, host {} ms\n",
            report.rtpg_reads, report.array_ms, report.host_ms
        ),
    );
    assert_eq!(
        lab.array().alua_states(lun.lun).unwrap(),
        vec![
            (1, AccessState::ActiveNonOptimized),
            (2, AccessState::ActiveOptimized)
        ],
        "the array's own view"
    );
    let rtpg = parse_rtpg(&run(&lab, &["sg_rtpg", "-d", &format!("/dev/{p2}")]));
    assert_eq!((rtpg[&1].state, rtpg[&2].state), (1, 0), "{rtpg:?}");
    let after = discover(&sys);
    let lu = after.find_lu(&lun.wwid).unwrap();
    assert_eq!(
        in_use(&after, lu),
        Some((50, vec![p2.clone()])),
        "multipathd uses portal 2 now: {:?}",
        lu.path_groups
    );
    compare_lu(&lab, &after, &lun.wwid).unwrap();

    // The array's administrator moves it back: discovery sees it at once (RTPG), multipathd
    // after the unit attention.
    lab.array()
        .set_alua_state(1, AccessState::ActiveOptimized, lun.lun)
        .unwrap();
    lab.array()
        .set_alua_state(2, AccessState::ActiveNonOptimized, lun.lun)
        .unwrap();
    let seen = discover(&sys);
    let lu = seen.find_lu(&lun.wwid).unwrap();
    assert_eq!(
        seen.lu_tpg(lu.oid, 1).unwrap().access_state,
        TpgState::Alua(AccessState::ActiveOptimized)
    );
    let map = format!("/dev/mapper/{}", lun.wwid);
    wait_until(60, "multipathd to follow the array", || {
        let _ = lab.run(&Cmd::new("dd").args([
            &format!("if={map}"),
            "of=/dev/null",
            "bs=4096",
            "count=1",
            "iflag=direct",
        ]));
        compare_lu(&lab, &discover(&sys), &lun.wwid)?;
        let t = discover(&sys);
        let lu = t.find_lu(&lun.wwid).unwrap();
        match in_use(&t, lu) {
            Some((50, devs)) if !devs.is_empty() && !devs.contains(&p2) => Ok(()),
            g => Err(format!("group in use {g:?}")),
        }
    });
}

#[cfg(test)]
mod parsers {
    use super::*;
    use multipath::testing::fixture;

    #[test]
    fn vpd83_of_the_capture() {
        let v = parse_vpd83(&fixture("sg-inq-83.stdout"));
        assert_eq!(v.naa.as_deref(), Some("360014055ab0c0de00000000000000000"));
        assert_eq!((v.relative_port, v.tpg), (Some(1), Some(1)));
        assert_eq!(
            v.target_port_name.as_deref(),
            Some("iqn.2026-01.test.lab:array,t,0x0001")
        );
    }

    #[test]
    fn rtpg_of_the_capture() {
        let r = parse_rtpg(&fixture("sg-rtpg.stdout"));
        assert_eq!(
            r[&1],
            RtpgGroup {
                state: 0,
                pref: false,
                ports: vec![1]
            }
        );
        assert_eq!(
            r[&2],
            RtpgGroup {
                state: 1,
                pref: false,
                ports: vec![2]
            }
        );
    }

    #[test]
    fn ll_of_the_capture() {
        let maps = parse_ll(&fixture("multipath-ll.stdout"));
        assert_eq!(maps.len(), 6);
        let m = &maps[1];
        assert_eq!(
            (
                m.wwid.as_str(),
                m.dm.as_str(),
                m.vendor.as_str(),
                m.product.as_str()
            ),
            (
                "360014055ab0c0de00010000000000000",
                "dm-5",
                "LIO-ORG",
                "FILEIO"
            )
        );
        assert_eq!(m.hwhandler, "1 alua");
        assert_eq!(m.groups[0].0, 10);
        assert_eq!(m.groups[1].1, "active");
        assert_eq!(
            m.groups[1].2[0],
            ["6:0:0:1", "sdl", "active", "ready", "running"].map(String::from)
        );
    }

    /// Discovery of the captured host agrees with the captured tool output (the comparison
    /// the lab test makes live).
    #[test]
    fn captured_discovery_agrees_with_the_captured_multipath_ll() {
        let lab = multipath::testing::LabFake::base();
        let topo = discovery::discover(&lab.sys, &Options::default()).unwrap();
        for m in parse_ll(&fixture("multipath-ll.stdout")) {
            let lu = topo.find_lu(&m.wwid).unwrap();
            assert_eq!(lu.dm_device.as_deref(), Some(m.dm.as_str()));
            let prios: Vec<i64> = lu.path_groups.iter().map(|g| g.priority).collect();
            assert_eq!(
                prios,
                m.groups.iter().map(|g| g.0).collect::<Vec<_>>(),
                "{}",
                m.wwid
            );
        }
    }
}
