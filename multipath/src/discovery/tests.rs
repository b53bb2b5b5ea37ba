//! Discovery against the lab's host A rebuilt from captures, checked against what
//! `multipath -ll` and `sg_rtpg` printed for the same LUNs.

use super::*;
use crate::testing::{LabFake, fixture};
use sm_core::scsi::TpgId;
use sm_core::testing::{Fault, Reply};

const LUN0: &str = "360014055ab0c0de00000000000000000";

/// `(wwid, dm, [(group prio, group status, [(hctl, dev, dm_st, chk_st)])])` from `multipath -ll`.
type LlMap = (
    String,
    String,
    Vec<(i64, String, Vec<(String, String, String, String)>)>,
);

fn parse_multipath_ll(text: &str) -> Vec<LlMap> {
    let mut maps: Vec<LlMap> = Vec::new();
    for line in text.lines() {
        if line.starts_with('3') {
            let mut w = line.split_whitespace();
            maps.push((
                w.next().unwrap().into(),
                w.next().unwrap().into(),
                Vec::new(),
            ));
        } else if let Some(i) = line.find("policy=") {
            let rest = &line[i..];
            let prio = rest
                .split("prio=")
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap();
            let status = rest.split("status=").nth(1).unwrap().trim();
            maps.last_mut()
                .unwrap()
                .2
                .push((prio.parse().unwrap(), status.into(), Vec::new()));
        } else if let Some(i) = line.find("- ") {
            let f: Vec<&str> = line[i + 2..].split_whitespace().collect();
            if f.len() >= 6 {
                let g = maps.last_mut().unwrap().2.last_mut().unwrap();
                g.2.push((f[0].into(), f[1].into(), f[3].into(), f[4].into()));
            }
        }
    }
    maps
}

fn discover_all(lab: &LabFake) -> Topology {
    discover(&lab.sys, &Options::default()).unwrap()
}

#[test]
fn matches_multipath_ll() {
    let lab = LabFake::base();
    let topo = discover_all(&lab);
    let ll = parse_multipath_ll(&fixture("multipath-ll.stdout"));
    assert_eq!(ll.len(), 6);
    assert_eq!(topo.lus.len(), 6);
    for (wwid, dm, groups) in &ll {
        let lu = topo.find_lu(wwid).unwrap_or_else(|| panic!("no LU {wwid}"));
        assert_eq!(lu.dm_device.as_deref(), Some(dm.as_str()));
        assert_eq!(topo.find_lu(dm).map(|l| &l.name), Some(wwid));
        assert_eq!(lu.path_groups.len(), groups.len(), "{wwid}");
        for (g, (prio, status, paths)) in lu.path_groups.iter().zip(groups) {
            assert_eq!((g.priority, g.dm_state.as_str()), (*prio, status.as_str()));
            let devs: Vec<(String, String, String, String)> = g
                .paths
                .iter()
                .map(|o| {
                    let p = topo.path(*o).unwrap();
                    (
                        p.hctl.clone(),
                        p.device.clone(),
                        p.dm_state.clone().unwrap(),
                        p.checker_state.clone().unwrap(),
                    )
                })
                .collect();
            assert_eq!(&devs, paths, "{wwid} group {}", g.group);
        }
        assert_eq!((lu.active_paths, lu.total_paths), (2, 2));
        assert_eq!(lu.selector, "service-time 0");
        assert_eq!(lu.current_load_balance_type, load_balance::SERVICE_TIME);
        assert!(lu.auto_failback_enabled);
        assert_eq!(
            (
                lu.vendor.as_str(),
                lu.product.as_str(),
                lu.revision.as_str()
            ),
            ("LIO-ORG", "FILEIO", "4.0")
        );
        assert_eq!(lu.name_type, "vpd83-type3");
        assert!(lu.asymmetric && lu.explicit_alua && lu.implicit_alua);
        assert_eq!(lu.hardware_handler, "1 alua");
        assert_eq!(lu.logical_unit_group_id, Some(0));
    }
    assert_eq!(topo.find_lu(LUN0).unwrap().size, 256 << 20);
    assert_eq!(
        topo.find_lu(&format!("/dev/mapper/{LUN0}")).map(|l| l.oid),
        topo.find_lu(LUN0).map(|l| l.oid)
    );
}

#[test]
fn tpgs_and_ports_match_sg_rtpg_and_sg_inq() {
    let lab = LabFake::base();
    let topo = discover_all(&lab);
    // sg_rtpg -d /dev/sdb: group 1 active/optimized (port 1), group 2 active/non-optimized
    // (port 2), both supporting T, O, U, S, AN, AO.
    let sdb = topo.find_path("sdb").unwrap();
    assert_eq!((sdb.tpg_id, sdb.relative_port_id), (Some(1), Some(1)));
    let lu = topo.lu(sdb.lu).unwrap();
    let g1 = topo.lu_tpg(lu.oid, 1).unwrap();
    let g2 = topo.lu_tpg(lu.oid, 2).unwrap();
    assert_eq!(
        g1.access_state,
        TpgState::Alua(AccessState::ActiveOptimized)
    );
    assert_eq!(
        g2.access_state,
        TpgState::Alua(AccessState::ActiveNonOptimized)
    );
    assert_eq!(
        g1.supported_states,
        [
            "active/optimized",
            "active/non-optimized",
            "standby",
            "unavailable",
            "offline",
            "transitioning"
        ]
    );
    assert!(g1.explicit_failover && !g1.preferred_lu_path && !g1.supports_lu_assignment);
    let rtpg = fixture("sg-rtpg.stdout");
    assert!(rtpg.contains(
        "T_SUP : 1, O_SUP : 1, LBD_SUP : 0, U_SUP : 1, S_SUP : 1, AN_SUP : 1, AO_SUP : 1"
    ));
    // sg_inq -p 0x83: the target port's SCSI name and relative port.
    let tp = topo.target_port(g1.target_ports[0]).unwrap();
    assert_eq!(tp.port_id, "iqn.2026-01.test.lab:array,t,0x0001");
    assert!(fixture("sg-inq-83.stdout").contains(&tp.port_id));
    assert_eq!(tp.relative_port_id, 1);
    assert_eq!(tp.target_name, "iqn.2026-01.test.lab:array");
    assert_eq!(tp.portal.as_deref(), Some("10.99.0.1:3260"));
    assert_eq!(topo.target_ports.len(), 2);
    assert_eq!(topo.mp_lus_from_tpg(g2.oid), vec![lu.oid]);
    assert_eq!(topo.associated_tpgs(lu.oid), vec![g1.oid, g2.oid]);
    assert_eq!(topo.associated_paths(lu.oid).len(), 2);
    // Initiator ports: one per session.
    assert_eq!(topo.initiator_ports.len(), 2);
    let ip = topo.initiator_port(sdb.initiator_port.unwrap()).unwrap();
    assert_eq!(
        (ip.session, ip.scsi_host, ip.iface.as_str()),
        (1, 6, "default")
    );
    assert_eq!(ip.port_id, "iqn.2026-01.test.lab:host-a");
    assert_eq!(ip.os_device_file, "/sys/class/iscsi_host/host6");
    assert!(
        topo.paths.iter().all(|p| p.state == PathState::Okay),
        "{:?}",
        topo.paths
    );
    assert_eq!(sdb.kernel_access_state.as_deref(), Some("active/optimized"));
    assert_eq!(sdb.portal.as_deref(), Some("10.99.0.1:3260"));
    assert_eq!(sdb.weight, 50);
}

fn scsi_commands(lab: &LabFake) -> usize {
    lab.lus.values().map(|l| l.log().len()).sum()
}

#[test]
fn scsi_command_budget() {
    let lab = LabFake::base();
    discover_all(&lab);
    // Per LU: VPD 0x83 on each of 2 paths, one INQUIRY, one RTPG.
    assert_eq!(scsi_commands(&lab), 6 * 4);
    let cached = LabFake::base();
    discover(
        &cached.sys,
        &Options {
            vpd: VpdSource::KernelCache,
            only: None,
        },
    )
    .unwrap();
    assert_eq!(scsi_commands(&cached), 6 * 2);
    let one = LabFake::base();
    let t = discover(&one.sys, &Options::only(&[LUN0])).unwrap();
    assert_eq!(t.lus.len(), 1);
    assert_eq!(t.paths.len(), 2);
    assert_eq!(scsi_commands(&one), 4);
    assert_eq!(one.multipathd.commands(), ["show maps json"]);
    assert!(one.runner.calls().is_empty());
}

#[test]
fn second_target_with_its_own_sessions() {
    let lab = LabFake::with_t2();
    let topo = discover_all(&lab);
    assert_eq!(topo.lus.len(), 8);
    assert_eq!(topo.initiator_ports.len(), 4);
    let ll = parse_multipath_ll(&fixture("multipath-ll-t2.stdout"));
    for (wwid, dm, _) in &ll {
        assert_eq!(
            topo.find_lu(wwid)
                .and_then(|l| l.dm_device.clone())
                .as_deref(),
            Some(dm.as_str())
        );
    }
    let t2 = topo.find_lu("360014055ab0c1de00000000000000000").unwrap();
    assert_eq!(t2.size, 64 << 20);
    let ports: Vec<&str> = topo
        .lu_paths(t2.oid)
        .filter_map(|p| p.target_port)
        .map(|o| topo.target_port(o).unwrap().port_id.as_str())
        .collect();
    assert_eq!(
        ports,
        [
            "iqn.2026-01.test.lab:t2,t,0x0001",
            "iqn.2026-01.test.lab:t2,t,0x0002"
        ]
    );
    assert_eq!(topo.target_ports.len(), 4);
}

#[test]
fn path_states_follow_dm_checker_sysfs_and_scsi() {
    let lab = LabFake::base();
    lab.multipathd.set(
        "show maps json",
        &fixture("multipathd-show-maps-json-failed.stdout"),
    );
    let topo = discover_all(&lab);
    assert_eq!(topo.find_path("sdb").unwrap().state, PathState::PathErr);
    let lu0 = topo.find_lu(LUN0).unwrap();
    assert_eq!((lu0.active_paths, lu0.total_paths), (1, 2));

    let lab = LabFake::base();
    lab.set_sysfs("/sys/block/sda/device/state", "transport-offline");
    lab.opener.get("sdl").unwrap().set_fault(Some(Fault::Down));
    let topo = discover_all(&lab);
    assert_eq!(topo.find_path("sda").unwrap().state, PathState::PathErr);
    let sdl = topo.find_path("sdl").unwrap();
    assert_eq!(sdl.state, PathState::PathErr);
    // VPD came from the kernel's copy: the port and group are still known.
    assert_eq!((sdl.tpg_id, sdl.relative_port_id), (Some(1), Some(1)));
    // RTPG went through the other path.
    let lu1 = topo.lu(sdl.lu).unwrap();
    assert!(topo.lu_tpg(lu1.oid, 2).unwrap().status != "unknown (RTPG failed)");

    let lab = LabFake::base();
    lab.lu(LUN0)
        .begin_transition(TpgId(2), AccessState::Standby, 100);
    let topo = discover_all(&lab);
    assert_eq!(
        topo.find_path("sda").unwrap().state,
        PathState::Transitioning
    );
    assert_eq!(topo.find_path("sdb").unwrap().state, PathState::Okay);

    let lab = LabFake::base();
    lab.lu(LUN0).script(
        Some("sdb"),
        &[0x12, 0x01, 0x83],
        Reply::Status {
            status: 2,
            sense: sm_core::scsi::SenseInfo::new(sm_core::scsi::SenseKey::HardwareError, 0x44, 0)
                .encode(),
        },
        1,
    );
    let topo = discover_all(&lab);
    assert_eq!(topo.find_path("sdb").unwrap().state, PathState::LuErr);

    // A path the map still lists whose device is gone.
    let lab = LabFake::base();
    std::fs::remove_file(lab.sys.sysfs.path("/sys/block/sda")).unwrap();
    let topo = discover_all(&lab);
    let sda = topo.find_path("sda").unwrap();
    assert_eq!(sda.state, PathState::Removed);
    assert!(sda.hctl.is_empty());
}

#[test]
fn path_state_rules() {
    let lab = LabFake::base();
    let disk = lab.sys.sysfs.scsi_disk("sdb").unwrap();
    let up = dm::MapPath {
        dev: "sdb".into(),
        dm_st: "active".into(),
        chk_st: "ready".into(),
        ..dm::MapPath::default()
    };
    let ghost = dm::MapPath {
        chk_st: "ghost".into(),
        ..up.clone()
    };
    let session = lab.sys.sysfs.iscsi_session(1).unwrap();
    let failed_session = IscsiSession {
        state: "FAILED".into(),
        ..session.clone()
    };
    let ao = Some(TpgState::Alua(AccessState::ActiveOptimized));
    let sb = Some(TpgState::Alua(AccessState::Standby));
    let s = |d, sess, mp, t, e: Option<Condition>, dis| path_state(d, sess, mp, t, e.as_ref(), dis);
    assert_eq!(
        s(Some(&disk), Some(&session), Some(&up), ao, None, false),
        PathState::Okay
    );
    assert_eq!(
        s(Some(&disk), Some(&session), Some(&ghost), sb, None, false),
        PathState::Okay
    );
    assert_eq!(
        s(
            Some(&disk),
            Some(&failed_session),
            Some(&up),
            ao,
            None,
            false
        ),
        PathState::PathErr
    );
    assert_eq!(
        s(Some(&disk), Some(&session), Some(&up), ao, None, true),
        PathState::OperationalClosed
    );
    assert_eq!(
        s(
            Some(&disk),
            Some(&failed_session),
            Some(&up),
            ao,
            None,
            true
        ),
        PathState::OfflineClosed
    );
    assert_eq!(
        s(None, None, Some(&up), ao, None, true),
        PathState::InvalidClosed
    );
    assert_eq!(
        s(None, None, Some(&up), ao, None, false),
        PathState::Removed
    );
    assert_eq!(
        s(
            Some(&disk),
            Some(&session),
            Some(&up),
            ao,
            Some(Condition::ReservationConflict),
            false
        ),
        PathState::Reserved
    );
    assert_eq!(
        s(Some(&disk), None, None, None, None, false),
        PathState::Unknown
    );
}

fn illegal_opcode() -> Reply {
    Reply::Status {
        status: 2,
        sense: sm_core::scsi::SenseInfo::new(sm_core::scsi::SenseKey::IllegalRequest, 0x20, 0)
            .encode(),
    }
}

fn no_alua_inquiry(lab: &LabFake) -> Reply {
    let mut i = scsi::inquiry_standard(&lab.opener.get("sdb").unwrap()).unwrap();
    i.tpgs = Tpgs::None;
    Reply::Data(i.encode())
}

#[test]
fn without_rtpg_group_states_come_from_the_kernel() {
    let lab = LabFake::base();
    let lu = lab.lu(LUN0);
    lu.script(None, &[0x12, 0x00], no_alua_inquiry(&lab), 10);
    lu.script(None, &[0xa3], illegal_opcode(), 10);
    let topo = discover(&lab.sys, &Options::only(&[LUN0])).unwrap();
    let l = &topo.lus[0];
    assert!(!l.asymmetric && !l.explicit_alua);
    let states: Vec<_> = topo
        .lu_tpgs(l.oid)
        .map(|g| (g.tpg_id, g.access_state, g.status))
        .collect();
    assert_eq!(
        states,
        [
            (
                1,
                TpgState::Alua(AccessState::ActiveOptimized),
                "unknown (RTPG failed)"
            ),
            (
                2,
                TpgState::Alua(AccessState::ActiveNonOptimized),
                "unknown (RTPG failed)"
            )
        ]
    );
}

#[test]
fn symmetric_lu_gets_a_synthesized_group() {
    let lab = LabFake::base();
    let lu = lab.lu(LUN0);
    lu.script(None, &[0x12, 0x00], no_alua_inquiry(&lab), 10);
    lu.script(None, &[0xa3], illegal_opcode(), 10);
    for (dev, port) in [("sdb", 1u16), ("sda", 2u16)] {
        let mut id = scsi::vpd_device_id(&lab.opener.get(dev).unwrap()).unwrap();
        id.designations
            .retain(|d| !matches!(d.designator, scsi::Designator::TargetPortGroup(_)));
        assert_eq!(id.relative_target_port().map(|r| r.0), Some(port));
        lu.script(
            Some(dev),
            &[0x12, 0x01, 0x83],
            Reply::Data(id.encode().unwrap()),
            1,
        );
    }
    let topo = discover(&lab.sys, &Options::only(&[LUN0])).unwrap();
    let l = &topo.lus[0];
    let groups: Vec<_> = topo.lu_tpgs(l.oid).collect();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].access_state, TpgState::Active);
    assert_eq!(groups[0].access_state.code(), 0x10);
    assert_eq!(groups[0].target_ports.len(), 2);
}
