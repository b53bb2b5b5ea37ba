//! The TPG choice on the lab's host A (fake LIO LUs: group 1 active/optimized, group 2
//! active/non-optimized, explicit ALUA), each branch of the policy.

use sm_core::scsi::{SenseInfo, SenseKey, TpgId};
use sm_core::testing::Reply;

use super::*;
use crate::alua::tests::{LUN0, no_host_wait};
use crate::discovery::{Options, discover};
use crate::testing::LabFake;

/// The lab with LUN 0's groups in `states` (group 1, group 2), discovered.
fn lab_with(states: [AccessState; 2]) -> (LabFake, Topology) {
    let lab = LabFake::base();
    let lu = lab.lu(LUN0);
    lu.set_group_state(TpgId(1), states[0]);
    lu.set_group_state(TpgId(2), states[1]);
    let topo = discover(&lab.sys, &Options::only(&[LUN0])).unwrap();
    (lab, topo)
}

fn lu_mut(topo: &mut Topology) -> &mut MultipathLu {
    topo.lus.iter_mut().find(|l| l.name == LUN0).unwrap()
}

fn group_mut(topo: &mut Topology, tpg_id: u16) -> &mut TargetPortGroup {
    topo.tpgs.iter_mut().find(|g| g.tpg_id == tpg_id).unwrap()
}

fn choice(topo: &Topology) -> Result<Serving, ServeError> {
    choose(topo, topo.find_lu(LUN0).unwrap())
}

fn refuse_next_stpg(lab: &LabFake) {
    lab.lu(LUN0).script(
        None,
        &[0xa4],
        Reply::Status {
            status: 2,
            sense: SenseInfo::new(SenseKey::IllegalRequest, 0x26, 0).encode(),
        },
        1,
    );
}

const STANDBY: AccessState = AccessState::Standby;

#[test]
fn symmetric_access_needs_nothing() {
    let (_lab, mut topo) = lab_with([STANDBY, STANDBY]);
    lu_mut(&mut topo).asymmetric = false;
    assert_eq!(choice(&topo).unwrap(), Serving::Optimized);
}

#[test]
fn an_optimized_group_needs_nothing() {
    let (lab, topo) = lab_with([
        AccessState::ActiveOptimized,
        AccessState::ActiveNonOptimized,
    ]);
    assert_eq!(choice(&topo).unwrap(), Serving::Optimized);
    let lu = topo.find_lu(LUN0).unwrap();
    assert!(
        ensure_optimized(&lab.sys, &topo, lu, no_host_wait())
            .unwrap()
            .is_none()
    );
    assert!(
        lab.lu(LUN0).log().iter().all(|c| c.cdb[0] != 0xa4),
        "no STPG"
    );
}

#[test]
fn an_unreachable_optimized_group_does_not_count() {
    let (_lab, mut topo) = lab_with([AccessState::ActiveOptimized, STANDBY]);
    let lu = topo.find_lu(LUN0).unwrap().oid;
    for p in topo
        .paths
        .iter_mut()
        .filter(|p| p.lu == lu && p.tpg_id == Some(1))
    {
        p.state = crate::model::PathState::PathErr;
    }
    assert_eq!(
        choice(&topo).unwrap(),
        Serving::Set {
            tpg_id: 2,
            active_fallback: false
        }
    );
}

#[test]
fn implicit_alua_uses_an_active_group() {
    let (_lab, mut topo) = lab_with([STANDBY, AccessState::ActiveNonOptimized]);
    lu_mut(&mut topo).explicit_alua = false;
    assert_eq!(choice(&topo).unwrap(), Serving::NonOptimized);
}

#[test]
fn implicit_alua_without_an_active_group_fails() {
    let (_lab, mut topo) = lab_with([STANDBY, STANDBY]);
    lu_mut(&mut topo).explicit_alua = false;
    let e = choice(&topo).unwrap_err();
    assert!(matches!(e, ServeError::NoActiveGroup { .. }), "{e}");
    assert!(e.to_string().contains("implicit ALUA only"), "{e}");
}

#[test]
fn explicit_alua_sets_the_preferred_group_first_then_the_lowest_id() {
    let (lab, mut topo) = lab_with([STANDBY, STANDBY]);
    assert_eq!(
        choice(&topo).unwrap(),
        Serving::Set {
            tpg_id: 1,
            active_fallback: false
        }
    );
    group_mut(&mut topo, 2).preferred_lu_path = true;
    assert_eq!(
        choice(&topo).unwrap(),
        Serving::Set {
            tpg_id: 2,
            active_fallback: false
        }
    );
    group_mut(&mut topo, 2).supported_states = vec!["standby", "unavailable"];
    assert_eq!(
        choice(&topo).unwrap(),
        Serving::Set {
            tpg_id: 1,
            active_fallback: false
        },
        "a group that cannot be active/optimized is skipped"
    );
    let r = ensure_optimized(&lab.sys, &topo, topo.find_lu(LUN0).unwrap(), no_host_wait())
        .unwrap()
        .expect("a change");
    assert_eq!(r.changes[0].tpg_id, 1);
    assert_eq!(
        lab.lu(LUN0).group_state(TpgId(1)),
        Some(AccessState::ActiveOptimized)
    );
}

#[test]
fn no_group_that_can_be_optimized_fails() {
    let (_lab, mut topo) = lab_with([STANDBY, STANDBY]);
    for id in [1, 2] {
        group_mut(&mut topo, id).supported_states = vec!["active/non-optimized", "standby"];
    }
    let e = choice(&topo).unwrap_err();
    assert!(matches!(e, ServeError::NoCandidate { .. }), "{e}");
}

#[test]
fn a_refused_change_falls_back_on_an_active_group() {
    let (lab, topo) = lab_with([STANDBY, AccessState::ActiveNonOptimized]);
    assert_eq!(
        choice(&topo).unwrap(),
        Serving::Set {
            tpg_id: 1,
            active_fallback: true
        }
    );
    refuse_next_stpg(&lab);
    let lu = topo.find_lu(LUN0).unwrap();
    assert!(
        ensure_optimized(&lab.sys, &topo, lu, no_host_wait())
            .unwrap()
            .is_none()
    );
    assert_eq!(lab.lu(LUN0).group_state(TpgId(1)), Some(STANDBY));
}

#[test]
fn a_refused_change_without_an_active_group_fails() {
    let (lab, topo) = lab_with([STANDBY, STANDBY]);
    refuse_next_stpg(&lab);
    let lu = topo.find_lu(LUN0).unwrap();
    let e = ensure_optimized(&lab.sys, &topo, lu, no_host_wait()).unwrap_err();
    match e {
        ServeError::SetAccess { tpg_id, source, .. } => {
            assert_eq!(tpg_id, 1);
            assert!(matches!(*source, MultipathError::Scsi { .. }), "{source}");
        }
        other => panic!("{other}"),
    }
}
