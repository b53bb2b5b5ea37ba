//! SetTPGAccess, failover and port offline against LIO-like fake LUs on the lab's host A.

use super::*;
use crate::discovery::discover;
use crate::testing::LabFake;
use sm_core::testing::{Fault, Reply};

/// LUN 0 of the lab fake.
pub(in crate::alua) const LUN0: &str = "360014055ab0c0de00000000000000000";

/// Deadlines that wait for the array only (no kernel/multipathd follow-up).
pub(in crate::alua) fn no_host_wait() -> Deadlines {
    Deadlines {
        array: Duration::from_secs(2),
        poll: Duration::from_millis(5),
        host: Duration::ZERO,
    }
}

fn topo(lab: &LabFake) -> Topology {
    discover(&lab.sys, &Options::default()).unwrap()
}

fn stpgs(lab: &LabFake) -> Vec<(String, Vec<u8>)> {
    lab.lu(LUN0)
        .log()
        .into_iter()
        .filter(|c| c.cdb[0] == 0xa4)
        .map(|c| (c.path, c.data_out))
        .collect()
}

#[test]
fn set_tpg_access_moves_the_optimized_group_and_reads_it_back() {
    let lab = LabFake::base();
    let t = topo(&lab);
    let r = set_tpg_access(
        &lab.sys,
        &t,
        LUN0,
        &[
            (2, AccessState::ActiveOptimized),
            (1, AccessState::ActiveNonOptimized),
        ],
        no_host_wait(),
    )
    .unwrap();
    assert_eq!(r.method, "stpg via sdb");
    assert_eq!(
        r.changes,
        vec![
            GroupChange {
                tpg_id: 2,
                before: TpgState::Alua(AccessState::ActiveNonOptimized),
                requested: TpgState::Alua(AccessState::ActiveOptimized),
                after: TpgState::Alua(AccessState::ActiveOptimized),
            },
            GroupChange {
                tpg_id: 1,
                before: TpgState::Alua(AccessState::ActiveOptimized),
                requested: TpgState::Alua(AccessState::ActiveNonOptimized),
                after: TpgState::Alua(AccessState::ActiveNonOptimized),
            }
        ]
    );
    assert_eq!(r.rtpg_reads, 1);
    assert_eq!(
        stpgs(&lab),
        vec![("sdb".to_string(), vec![0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 0, 1])]
    );
    assert_eq!(
        lab.lu(LUN0).group_state(TpgId(2)),
        Some(AccessState::ActiveOptimized)
    );
    // Other LUs untouched.
    let again = topo(&lab);
    let lu1 = again.find_lu("360014055ab0c0de00010000000000000").unwrap();
    assert_eq!(
        again.lu_tpg(lu1.oid, 1).unwrap().access_state,
        TpgState::Alua(AccessState::ActiveOptimized)
    );
}

#[test]
fn waits_out_transitioning() {
    let lab = LabFake::base();
    let t = topo(&lab);
    let lu = lab.lu(LUN0);
    // The array acknowledges, then reports TRANSITIONING for a few commands.
    lu.script(None, &[0xa4], Reply::Good, 1);
    lu.begin_transition(TpgId(2), AccessState::ActiveOptimized, 3);
    let r = set_tpg_access(
        &lab.sys,
        &t,
        LUN0,
        &[(2, AccessState::ActiveOptimized)],
        no_host_wait(),
    )
    .unwrap();
    assert!(r.rtpg_reads >= 2, "{r:?}");
    assert_eq!(
        r.changes[0].after,
        TpgState::Alua(AccessState::ActiveOptimized)
    );
}

#[test]
fn a_state_that_never_comes_times_out() {
    let lab = LabFake::base();
    let t = topo(&lab);
    lab.lu(LUN0).script(None, &[0xa4], Reply::Good, 1);
    let d = Deadlines {
        array: Duration::from_millis(100),
        ..no_host_wait()
    };
    let e = set_tpg_access(&lab.sys, &t, LUN0, &[(2, AccessState::Standby)], d).unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::Timeout, "{e}");
    assert!(e.to_string().contains("ActiveNonOptimized"), "{e}");
}

#[test]
fn bad_requests_are_refused_before_any_command() {
    let lab = LabFake::base();
    let t = topo(&lab);
    let before = lab.lu(LUN0).log().len();
    let cases: Vec<(&[(u16, AccessState)], crate::ErrorKind)> = vec![
        (&[(9, AccessState::Standby)], crate::ErrorKind::NotFound),
        (
            &[(1, AccessState::Transitioning)],
            crate::ErrorKind::Invalid,
        ),
        (&[(1, AccessState::Offline)], crate::ErrorKind::Invalid),
        (&[(1, AccessState::LbaDependent)], crate::ErrorKind::Invalid),
        (
            &[(1, AccessState::Standby), (1, AccessState::Standby)],
            crate::ErrorKind::Invalid,
        ),
        (&[], crate::ErrorKind::Invalid),
    ];
    for (pairs, kind) in cases {
        let e = set_tpg_access(&lab.sys, &t, LUN0, pairs, no_host_wait()).unwrap_err();
        assert_eq!(e.kind(), kind, "{pairs:?}: {e}");
    }
    let e = set_tpg_access(
        &lab.sys,
        &t,
        "nosuch",
        &[(1, AccessState::Standby)],
        no_host_wait(),
    )
    .unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::NotFound);
    assert_eq!(lab.lu(LUN0).log().len(), before);
    // An array refusal is not retried on the other path.
    lab.lu(LUN0).script(
        None,
        &[0xa4],
        Reply::Status {
            status: 2,
            sense: sm_core::scsi::SenseInfo::new(sm_core::scsi::SenseKey::IllegalRequest, 0x26, 0)
                .encode(),
        },
        1,
    );
    let e = set_tpg_access(
        &lab.sys,
        &t,
        LUN0,
        &[(2, AccessState::Standby)],
        no_host_wait(),
    )
    .unwrap_err();
    assert!(matches!(e, MultipathError::Scsi { .. }), "{e}");
    assert_eq!(stpgs(&lab).len(), 1);
}

#[test]
fn stpg_moves_to_another_path_when_one_is_down() {
    let lab = LabFake::base();
    let t = topo(&lab);
    lab.opener.get("sdb").unwrap().set_fault(Some(Fault::Down));
    let r = set_tpg_access(
        &lab.sys,
        &t,
        LUN0,
        &[(2, AccessState::ActiveOptimized)],
        no_host_wait(),
    )
    .unwrap();
    assert_eq!(r.method, "stpg via sda");
}

#[test]
fn failover_picks_the_other_group_and_demotes_the_old_one() {
    let lab = LabFake::base();
    let t = topo(&lab);
    let r = failover(&lab.sys, &t, LUN0, None, no_host_wait()).unwrap();
    let asked: Vec<(u16, TpgState)> = r.changes.iter().map(|c| (c.tpg_id, c.requested)).collect();
    assert_eq!(
        asked,
        [
            (2, TpgState::Alua(AccessState::ActiveOptimized)),
            (1, TpgState::Alua(AccessState::ActiveNonOptimized))
        ]
    );
    // Back, naming the group; dm-name and /dev/mapper names work too.
    let t = topo(&lab);
    failover(&lab.sys, &t, "dm-0", Some(1), no_host_wait()).unwrap();
    assert_eq!(
        lab.lu(LUN0).group_state(TpgId(1)),
        Some(AccessState::ActiveOptimized)
    );
    assert_eq!(
        lab.lu(LUN0).group_state(TpgId(2)),
        Some(AccessState::ActiveNonOptimized)
    );
    let e = failover(&lab.sys, &t, LUN0, Some(7), no_host_wait()).unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::NotFound);
}

#[test]
fn failover_without_explicit_alua_switches_the_dm_group() {
    let lab = LabFake::base();
    let mut t = topo(&lab);
    for lu in &mut t.lus {
        lu.explicit_alua = false;
    }
    let r = failover(&lab.sys, &t, LUN0, Some(2), no_host_wait()).unwrap();
    assert_eq!(r.method, "switchgroup 2");
    assert!(
        lab.multipathd
            .commands()
            .contains(&format!("switchgroup map {LUN0} group 2"))
    );
    let e = set_tpg_access(
        &lab.sys,
        &t,
        LUN0,
        &[(2, AccessState::ActiveOptimized)],
        no_host_wait(),
    )
    .unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::Invalid);
}

#[test]
fn waits_for_the_kernel_and_multipathd_to_follow() {
    let lab = LabFake::base();
    let t = topo(&lab);
    let d = Deadlines {
        host: Duration::from_millis(300),
        ..no_host_wait()
    };
    // Nobody follows: a timeout naming what lags.
    let e = set_tpg_access(
        &lab.sys,
        &t,
        LUN0,
        &[
            (2, AccessState::ActiveOptimized),
            (1, AccessState::ActiveNonOptimized),
        ],
        d,
    )
    .unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::Timeout, "{e}");
    assert!(e.to_string().contains("kernel says"), "{e}");
    // The host follows while we wait.
    let t = topo(&lab);
    let d = Deadlines {
        host: Duration::from_secs(10),
        ..no_host_wait()
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(300));
            lab.host_follows();
        });
        let r = set_tpg_access(
            &lab.sys,
            &t,
            LUN0,
            &[
                (1, AccessState::ActiveNonOptimized),
                (2, AccessState::ActiveOptimized),
            ],
            d,
        )
        .unwrap();
        assert!(r.host_followed);
    });
    let t = topo(&lab);
    let lu = t.find_lu(LUN0).unwrap();
    let active = lu
        .path_groups
        .iter()
        .find(|g| g.dm_state == "active")
        .unwrap();
    assert_eq!(t.path(active.paths[0]).unwrap().device, "sda");
    assert_eq!(t.find_path("sda").unwrap().weight, 50);
}

#[test]
fn port_offline_through_the_other_port() {
    let lab = LabFake::base();
    let t = topo(&lab);
    let via = set_port_offline(&lab.sys, &t, LUN0, 2).unwrap();
    assert_eq!(via, "sdb");
    let sda = lab.opener.get("sda").unwrap();
    assert_eq!(
        scsi::test_unit_ready(&sda).unwrap_err().condition(),
        Condition::NotReady(scsi::NotReady::Offline)
    );
    let e = set_port_offline(&lab.sys, &t, LUN0, 9).unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::NotFound);
}

#[test]
fn state_names() {
    assert_eq!(parse_state("ao"), Some(AccessState::ActiveOptimized));
    assert_eq!(
        parse_state("Active/Non-Optimized"),
        Some(AccessState::ActiveNonOptimized)
    );
    assert_eq!(parse_state("standby"), Some(AccessState::Standby));
    assert_eq!(parse_state("2"), Some(AccessState::Standby));
    assert_eq!(parse_state("sideways"), None);
}
