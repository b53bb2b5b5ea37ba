//! The connect workflow on the lab's host A rebuilt from captures, with an iscsid played by
//! the runner (`LabFake::with_iscsid`: target t2 and its two LUNs appear on login).

use std::time::Duration;

use sm_core::scsi::{AccessState, TpgId};
use sm_core::secret::Secret;

use super::*;
use crate::iscsi::login::TargetName;
use crate::iscsi::{Auth, Chap, Portal};
use crate::testing::{LabFake, T2_IQN};

const SR: &str = "7f0e1c3a-1b2c-4d5e-8f90-a1b2c3d4e5f6";
const LUN1: &str = "360014055ab0c1de00010000000000000";
const NO_SUCH_LUN: &str = "360014055ab0c1de00990000000000000";

fn t2() -> Iqn {
    Iqn::new(T2_IQN).unwrap()
}

fn lab() -> LabFake {
    let lab = LabFake::with_iscsid();
    lab.script_t2_discovery();
    lab
}

fn spec() -> TargetSpec {
    TargetSpec {
        hosts: vec![
            Portal::new("10.99.0.1", 3260),
            Portal::new("10.99.0.2", 3260),
        ],
        name: TargetName::Exact(t2()),
        auth: Auth {
            chap: Some(Chap {
                user: "labuser".into(),
                secret: Secret::new("labsecret123"),
            }),
            incoming: None,
        },
        multihomed: true,
    }
}

fn fast() -> Settings {
    Settings {
        alua: Deadlines {
            host: Duration::ZERO,
            ..Deadlines::default()
        },
        ..Settings::default()
    }
}

#[test]
fn connect_settles_the_lu_and_disconnect_logs_out() {
    let lab = lab();
    let lun = connect(&lab.sys, &spec(), SR, &ScsiId::new(LUN1).unwrap(), &fast()).unwrap();
    assert_eq!(lun.map, lab.sys.dev_path(&format!("mapper/{LUN1}")));
    assert_eq!(lun.targets, [t2()]);
    assert_eq!((lun.active_paths, lun.total_paths, lun.sessions), (2, 2, 2));
    assert!(lun.alua.is_none(), "group 1 is active/optimized already");
    assert_eq!(login::counted_targets(&lab.sys, SR), [t2()]);
    assert_eq!(
        path_counts(&lab.sys, &ScsiId::new(LUN1).unwrap(), Some(&t2())).unwrap(),
        Some(PathCounts {
            active: 2,
            total: 2,
            sessions: 2
        })
    );
    assert_eq!(
        path_counts(&lab.sys, &ScsiId::new(NO_SUCH_LUN).unwrap(), None).unwrap(),
        None
    );
    disconnect(&lab.sys, SR).unwrap();
    assert_eq!(sessions(&lab.sys, &[t2()]), 0);
    assert!(login::counted_targets(&lab.sys, SR).is_empty());
    disconnect(&lab.sys, SR).unwrap();
}

#[test]
fn an_lu_the_target_lacks_fails_and_logs_out() {
    let lab = lab();
    let e = connect(
        &lab.sys,
        &spec(),
        SR,
        &ScsiId::new(NO_SUCH_LUN).unwrap(),
        &fast(),
    )
    .unwrap_err();
    assert!(matches!(e, ConnectError::NoDisk { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("no LUN with SCSIid {NO_SUCH_LUN} on {T2_IQN}")
    );
    assert_eq!(sessions(&lab.sys, &[t2()]), 0);
    assert!(login::counted_targets(&lab.sys, SR).is_empty());
}

#[test]
fn a_refused_login_is_the_login_step() {
    let lab = LabFake::with_iscsid();
    lab.net.set_up("10.99.0.1:3260", false);
    lab.net.set_up("10.99.0.2:3260", false);
    let e = connect(&lab.sys, &spec(), SR, &ScsiId::new(LUN1).unwrap(), &fast()).unwrap_err();
    match e {
        ConnectError::Login(m) => assert_eq!(m.kind(), crate::ErrorKind::Unreachable),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_lu_without_an_optimized_group_gets_one_and_is_counted_again() {
    let lab = lab();
    let lu = lab.lu(LUN1);
    lu.set_group_state(TpgId(1), AccessState::Standby);
    lu.set_group_state(TpgId(2), AccessState::Standby);
    let lun = connect(&lab.sys, &spec(), SR, &ScsiId::new(LUN1).unwrap(), &fast()).unwrap();
    let r = lun.alua.expect("an ALUA change");
    assert_eq!(r.changes[0].tpg_id, 1);
    assert_eq!(lu.group_state(TpgId(1)), Some(AccessState::ActiveOptimized));
    assert_eq!((lun.active_paths, lun.total_paths), (2, 2));
    disconnect(&lab.sys, SR).unwrap();
}

#[test]
fn a_refused_alua_change_without_an_active_group_is_the_serve_step_and_logs_out() {
    let lab = lab();
    let lu = lab.lu(LUN1);
    lu.set_group_state(TpgId(1), AccessState::Standby);
    lu.set_group_state(TpgId(2), AccessState::Standby);
    // STPG refused on every path: without an active group to fall back on, a failure.
    lu.script(
        None,
        &[0xa4],
        sm_core::testing::Reply::Status {
            status: 2,
            sense: sm_core::scsi::SenseInfo::new(sm_core::scsi::SenseKey::IllegalRequest, 0x26, 0)
                .encode(),
        },
        1,
    );
    let e = connect(&lab.sys, &spec(), SR, &ScsiId::new(LUN1).unwrap(), &fast()).unwrap_err();
    assert!(
        matches!(
            e,
            ConnectError::Serve {
                source: ServeError::SetAccess { tpg_id: 1, .. },
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(sessions(&lab.sys, &[t2()]), 0);
}

#[test]
fn a_target_attached_whole_lists_and_settles_its_luns() {
    let lab = lab();
    let targets = attach_target(&lab.sys, &spec(), SR, LUN_TIMEOUT).unwrap();
    assert_eq!(targets, [t2()]);
    assert_eq!(login::counted_targets(&lab.sys, SR), targets);
    let listed = luns::targets_luns(&lab.sys, &targets, LUN_TIMEOUT);
    assert_eq!(listed.iter().map(|l| l.lun).collect::<Vec<_>>(), [0, 1]);
    let lun = settle(&lab.sys, &ScsiId::new(LUN1).unwrap(), &targets, &fast()).unwrap();
    assert_eq!((lun.active_paths, lun.total_paths), (2, 2));
    assert!(matches!(
        settle(
            &lab.sys,
            &ScsiId::new(NO_SUCH_LUN).unwrap(),
            &targets,
            &fast()
        ),
        Err(ConnectError::NoDisk { .. })
    ));
    dm::flush_map_of(lab.sys.multipathd.as_ref(), lab.sys.runner.as_ref(), LUN1).unwrap();
    disconnect(&lab.sys, SR).unwrap();
    assert_eq!(sessions(&lab.sys, &[t2()]), 0);
}

#[test]
fn the_lun_listing_logs_in_and_out_again() {
    let lab = lab();
    let probe = "0a1b2c3d-0000-4000-8000-000000000009";
    let listed = list_luns(&lab.sys, &spec(), probe, LUN_TIMEOUT).unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1].scsi_id, LUN1);
    assert_eq!(sessions(&lab.sys, &[t2()]), 0);
    assert!(login::counted_targets(&lab.sys, probe).is_empty());
}
