//! Exclusive activation on a LIO-like fake LU with two hosts of two paths each: the
//! scenarios of the issue and the traps of research notes §10, one test each.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use sm_core::scsi::{
    self, Completion, Condition, DataDir, Lba, PrType, RelTgtPortId, ScsiError, ScsiTransport,
    SenseInfo, SenseKey,
};
use sm_core::testing::{FakeLu, FakeScsi, Fault, Nexus, Reply};

use super::*;
use crate::error::PrError;
use crate::fence::{Owner, Owners};
use crate::path::NexusId;
use crate::path::PrPath;

pub(crate) const IQN_A: &str = "iqn.2026-01.test.lab:host-a";
pub(crate) const IQN_B: &str = "iqn.2026-01.test.lab:host-b";

pub(crate) fn key_a() -> PrKey {
    PrKey::for_host("11111111-2222-4333-8444-555555555555").unwrap()
}

pub(crate) fn key_b() -> PrKey {
    PrKey::for_host("66666666-7777-4888-9999-aaaaaaaaaaaa").unwrap()
}

/// One host's paths to `lu`: one session per target port, ISIDs `isid_base + port`.
pub(crate) struct Host {
    pub(crate) fakes: Vec<FakeScsi>,
    pub(crate) paths: Vec<PrPath>,
}

pub(crate) fn host(lu: &FakeLu, iqn: &str, isid_base: u64) -> Host {
    let mut fakes = Vec::new();
    let mut paths = Vec::new();
    for port in 1..=2u16 {
        let isid = isid_base + u64::from(port);
        let name = format!("/dev/{}-p{port}-{isid:x}", &iqn[iqn.len() - 6..]);
        let f = lu.path(&name, Nexus::iscsi(iqn, isid, port));
        paths.push(PrPath::new(
            Arc::new(f.clone()),
            Some(NexusId {
                initiator: iqn.into(),
                isid: Some(isid),
                rtpi: Some(RelTgtPortId(port)),
            }),
        ));
        fakes.push(f);
    }
    Host { fakes, paths }
}

/// Owners from a table; everything else unknown.
#[derive(Default)]
pub(crate) struct Table(Mutex<HashMap<u64, Owner>>);

impl Table {
    fn with(keys: &[(PrKey, Owner)]) -> Table {
        Table(Mutex::new(
            keys.iter().map(|(k, o)| (k.get(), o.clone())).collect(),
        ))
    }
    fn set(&self, k: PrKey, o: Owner) {
        self.0.lock().unwrap().insert(k.get(), o);
    }
}

impl Owners for Table {
    fn owner(&self, key: u64) -> Result<Owner, PrError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .get(&key)
            .cloned()
            .unwrap_or_else(|| Owner::Unknown(format!("key {key:#x}"))))
    }
}

pub(crate) fn both_live() -> Table {
    Table::with(&[
        (key_a(), Owner::Live("hostA".into())),
        (key_b(), Owner::Live("hostB".into())),
    ])
}

fn x<'a>(lu: &'a Lu<'a>, me: PrKey, policy: &'a Policy, owners: &'a dyn Owners) -> Exclusive<'a> {
    Exclusive {
        lu,
        me,
        policy,
        owners,
    }
}

fn write(t: &FakeScsi) -> Result<(), ScsiError> {
    scsi::write_blocks(t, Lba(8), &[0x5a; 512], 512)
}

fn pr_outs(lu: &FakeLu) -> usize {
    lu.log().iter().filter(|l| l.cdb[0] == 0x5f).count()
}

#[test]
fn acquire_registers_every_path_reserves_once_and_is_idempotent() {
    let fake = FakeLu::default();
    let a = host(&fake, IQN_A, 0x23d000000);
    let lu = Lu::new(fake.wwid(), &a.paths);
    let policy = Policy::default();
    let owners = both_live();
    let r = x(&lu, key_a(), &policy, &owners).acquire().unwrap();
    assert!(!r.unchanged);
    assert_eq!(
        fake.reservation(),
        Some((key_a().get(), PrType::WriteExclusiveRegistrantsOnly))
    );
    assert_eq!(fake.registrations().len(), 2);
    assert!(fake.registrations().iter().all(|g| g.key == key_a().get()));
    assert_eq!(r.state.count(key_a()), 2);
    // 2 REGISTER AND IGNORE + 1 RESERVE.
    assert_eq!(pr_outs(&fake), 3);
    // Both paths of the holder host write under WERO (type 1 would refuse the second).
    for f in &a.fakes {
        write(f).unwrap();
    }
    let before = pr_outs(&fake);
    let again = x(&lu, key_a(), &policy, &owners).acquire().unwrap();
    assert!(again.unchanged);
    assert_eq!(pr_outs(&fake), before, "no PR OUT when already held");
}

#[test]
fn second_live_host_gets_in_use_and_conflicts_then_wins_after_release() {
    let fake = FakeLu::default();
    let a = host(&fake, IQN_A, 0x23d000000);
    let b = host(&fake, IQN_B, 0x23d000100);
    let (lu_a, lu_b) = (
        Lu::new(fake.wwid(), &a.paths),
        Lu::new(fake.wwid(), &b.paths),
    );
    let policy = Policy::default();
    let owners = both_live();
    x(&lu_a, key_a(), &policy, &owners).acquire().unwrap();
    let e = x(&lu_b, key_b(), &policy, &owners).acquire().unwrap_err();
    assert!(e.is_in_use(), "{e}");
    assert!(e.to_string().contains("hostA"), "{e}");
    assert!(
        fake.registrations().iter().all(|g| g.key == key_a().get()),
        "B left no registration"
    );
    let w = write(&b.fakes[0]).unwrap_err();
    assert_eq!(w.condition(), Condition::ReservationConflict);
    x(&lu_a, key_a(), &policy, &owners).release().unwrap();
    assert!(fake.registrations().is_empty() && fake.reservation().is_none());
    x(&lu_b, key_b(), &policy, &owners).acquire().unwrap();
    assert_eq!(fake.reservation().map(|r| r.0), Some(key_b().get()));
    write(&b.fakes[1]).unwrap();
    assert_eq!(
        write(&a.fakes[0]).unwrap_err().condition(),
        Condition::ReservationConflict
    );
}

#[test]
fn racing_hosts_have_exactly_one_winner_every_time() {
    let policy = Policy::default();
    let owners = both_live();
    for round in 0..100 {
        let fake = FakeLu::default();
        let a = host(&fake, IQN_A, 0x23d000000);
        let b = host(&fake, IQN_B, 0x23d000100);
        let barrier = Barrier::new(2);
        let run = |paths: &Vec<PrPath>, me: PrKey| {
            let lu = Lu::new(fake.wwid(), paths);
            barrier.wait();
            x(&lu, me, &policy, &owners).acquire()
        };
        let (ra, rb) = std::thread::scope(|s| {
            let ta = s.spawn(|| run(&a.paths, key_a()));
            let tb = s.spawn(|| run(&b.paths, key_b()));
            (ta.join().unwrap(), tb.join().unwrap())
        });
        let winner = match (&ra, &rb) {
            (Ok(_), Err(e)) if e.is_in_use() => key_a(),
            (Err(e), Ok(_)) if e.is_in_use() => key_b(),
            other => panic!("round {round}: {other:?}"),
        };
        assert_eq!(
            fake.reservation().map(|r| r.0),
            Some(winner.get()),
            "round {round}"
        );
        assert!(
            fake.registrations().iter().all(|g| g.key == winner.get()),
            "round {round}: only the winner stays registered: {:?}",
            fake.registrations()
        );
    }
}

#[test]
fn dead_holder_is_preempted_and_aborted_then_its_writes_conflict() {
    let fake = FakeLu::default();
    let a = host(&fake, IQN_A, 0x23d000000);
    let b = host(&fake, IQN_B, 0x23d000100);
    let (lu_a, lu_b) = (
        Lu::new(fake.wwid(), &a.paths),
        Lu::new(fake.wwid(), &b.paths),
    );
    let policy = Policy::default();
    let owners = both_live();
    x(&lu_a, key_a(), &policy, &owners).acquire().unwrap();
    write(&a.fakes[0]).unwrap();
    owners.set(key_a(), Owner::Dead("hostA".into()));
    let r = x(&lu_b, key_b(), &policy, &owners).acquire().unwrap();
    assert_eq!(r.fenced, vec!["hostA".to_string()]);
    assert_eq!(fake.reservation().map(|r| r.0), Some(key_b().get()));
    assert!(fake.registrations().iter().all(|g| g.key == key_b().get()));
    let preempt_abort = fake
        .log()
        .iter()
        .filter(|l| l.cdb[0] == 0x5f && l.cdb[1] & 0x1f == 5)
        .count();
    assert_eq!(preempt_abort, 1, "PREEMPT AND ABORT, once");
    for f in &a.fakes {
        assert_eq!(
            write(f).unwrap_err().condition(),
            Condition::ReservationConflict
        );
    }
    write(&b.fakes[0]).unwrap();
}

#[test]
fn foreign_keys_are_refused_by_default_and_fenced_only_when_the_sr_says_so() {
    let fake = FakeLu::default();
    let a = host(&fake, IQN_A, 0x23d000000);
    let b = host(&fake, IQN_B, 0x23d000100);
    let stranger = PrKey::new(0xa1).unwrap();
    let owners = Table::default();
    let policy = Policy::default();
    x(&Lu::new(fake.wwid(), &a.paths), stranger, &policy, &owners)
        .acquire()
        .unwrap();
    let lu_b = Lu::new(fake.wwid(), &b.paths);
    let outs = pr_outs(&fake);
    let e = x(&lu_b, key_b(), &policy, &owners).acquire().unwrap_err();
    assert!(matches!(e, PrError::Foreign { holds: true, .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        e.is_in_use()
            && text.contains("is reserved by foreign key 0x00000000000000a1")
            && text.contains(IQN_A)
            && text.contains("foreign-keys=preempt"),
        "{text}"
    );
    assert_eq!(pr_outs(&fake), outs, "nothing sent to the LU");
    assert_eq!(fake.reservation().map(|r| r.0), Some(0xa1));
    let never = Policy {
        fencing: crate::policy::Fencing::Never,
        foreign: crate::policy::Foreign::Preempt,
        ..Policy::default()
    };
    let e = x(&lu_b, key_b(), &never, &owners).acquire().unwrap_err();
    assert!(e.is_in_use(), "fencing never wins: {e}");
    let preempt = Policy {
        foreign: crate::policy::Foreign::Preempt,
        ..Policy::default()
    };
    let r = x(&lu_b, key_b(), &preempt, &owners).acquire().unwrap();
    assert_eq!(r.fenced.len(), 1);
    assert_eq!(fake.reservation().map(|r| r.0), Some(key_b().get()));
}

#[test]
fn a_foreign_registration_without_a_reservation_is_not_broken_either() {
    let fake = FakeLu::default();
    let a = host(&fake, IQN_A, 0x23d000000);
    let b = host(&fake, IQN_B, 0x23d000100);
    let stranger = PrKey::new(0xa2).unwrap();
    let owners = Table::default();
    let policy = Policy::default();
    let lu_a = Lu::new(fake.wwid(), &a.paths);
    let refs: Vec<&PrPath> = a.paths.iter().collect();
    x(&lu_a, stranger, &policy, &owners)
        .register_on(&refs, stranger.get(), &mut Report::default())
        .unwrap();
    let lu_b = Lu::new(fake.wwid(), &b.paths);
    let e = x(&lu_b, key_b(), &policy, &owners).acquire().unwrap_err();
    assert!(
        matches!(e, PrError::Foreign { holds: false, .. })
            && e.to_string()
                .contains("carries a registration of foreign key"),
        "{e}"
    );
    assert_eq!(fake.reservation(), None);
    assert!(
        fake.registrations().iter().all(|g| g.key == 0xa2),
        "the stranger's registrations stay, and none of ours: {:?}",
        fake.registrations()
    );
}

#[test]
fn trap1_stale_nexuses_of_an_old_session_are_replaced() {
    // Host A reserved through sessions that no longer exist (a crash, a relogin: new ISIDs).
    let fake = FakeLu::default();
    let old = host(&fake, IQN_A, 0x23d000000);
    let policy = Policy::default();
    let owners = both_live();
    x(&Lu::new(fake.wwid(), &old.paths), key_a(), &policy, &owners)
        .acquire()
        .unwrap();
    let new = host(&fake, IQN_A, 0x23d000010);
    let lu = Lu::new(fake.wwid(), &new.paths);
    let r = x(&lu, key_a(), &policy, &owners).acquire().unwrap();
    let regs = fake.registrations();
    assert_eq!(regs.len(), 2, "{regs:?}");
    assert!(
        regs.iter()
            .all(|g| g.isid.is_some_and(|i| i >= 0x23d000011)),
        "{regs:?}"
    );
    let holder = r.state.holder().unwrap();
    assert!(
        new.paths
            .iter()
            .any(|p| holder.is(p.nexus.as_ref().unwrap()))
    );
    // (LIO checks write access per node ACL and port, not per ISID, so the old sessions'
    // access is not distinguishable here; their registrations are what must be gone.)
    for f in &new.fakes {
        write(f).unwrap();
    }
    // And the clean-up on a later sr_attach removes everything.
    x(&lu, key_a(), &policy, &owners).release().unwrap();
    assert!(fake.registrations().is_empty() && fake.reservation().is_none());
}

#[test]
fn trap2_release_with_the_holder_path_down_really_releases() {
    let fake = FakeLu::default();
    let a = host(&fake, IQN_A, 0x23d000000);
    let policy = Policy::default();
    let owners = both_live();
    let lu = Lu::new(fake.wwid(), &a.paths);
    let r = x(&lu, key_a(), &policy, &owners).acquire().unwrap();
    let holder = r.state.holder().unwrap().clone();
    let hp = a
        .paths
        .iter()
        .position(|p| holder.is(p.nexus.as_ref().unwrap()))
        .unwrap();
    a.fakes[hp].set_fault(Some(Fault::Down));
    let paths: Vec<PrPath> = a
        .paths
        .iter()
        .enumerate()
        .map(|(i, p)| p.clone().with_usable(i != hp))
        .collect();
    let lu = Lu::new(fake.wwid(), &paths);
    x(&lu, key_a(), &policy, &owners).release().unwrap();
    assert_eq!(fake.reservation(), None);
    assert!(
        fake.registrations().is_empty(),
        "{:?}",
        fake.registrations()
    );
}

#[test]
fn trap2_release_from_a_non_holder_path_alone_would_do_nothing() {
    let fake = FakeLu::default();
    let a = host(&fake, IQN_A, 0x23d000000);
    let policy = Policy::default();
    let owners = both_live();
    let lu = Lu::new(fake.wwid(), &a.paths);
    x(&lu, key_a(), &policy, &owners).acquire().unwrap();
    // The device's silent GOOD for a non-holder RELEASE:
    let holder_is_p1 = fake.registrations()[0].port == RelTgtPortId(1);
    let non_holder = if holder_is_p1 {
        &a.fakes[1]
    } else {
        &a.fakes[0]
    };
    scsi::pr_release(
        non_holder,
        key_a().get(),
        PrType::WriteExclusiveRegistrantsOnly,
    )
    .unwrap();
    assert!(fake.reservation().is_some(), "still reserved");
    x(&lu, key_a(), &policy, &owners).release().unwrap();
    assert!(fake.reservation().is_none());
    let releases: Vec<_> = fake
        .log()
        .into_iter()
        .filter(|l| l.cdb[0] == 0x5f && l.cdb[1] & 0x1f == 2)
        .collect();
    assert_eq!(releases.len(), 2, "ours went to the holder path only");
}

#[test]
fn trap3_preempting_our_own_key_re_registers_the_other_paths() {
    // The SR's type changes while held: the reservation is taken over with PREEMPT of our own
    // key, which drops the other path's registration; it must come back.
    let fake = FakeLu::default();
    let a = host(&fake, IQN_A, 0x23d000000);
    let owners = both_live();
    let lu = Lu::new(fake.wwid(), &a.paths);
    x(&lu, key_a(), &Policy::default(), &owners)
        .acquire()
        .unwrap();
    let earo = Policy {
        pr_type: PrType::ExclusiveAccessRegistrantsOnly,
        ..Policy::default()
    };
    let r = x(&lu, key_a(), &earo, &owners).acquire().unwrap();
    assert_eq!(
        fake.reservation().map(|r| r.1),
        Some(PrType::ExclusiveAccessRegistrantsOnly)
    );
    assert_eq!(fake.registrations().len(), 2);
    assert_eq!(r.state.count(key_a()), 2);
    for f in &a.fakes {
        write(f).unwrap();
    }
}

#[test]
fn trap4_a_new_path_is_registered_and_a_racing_preempt_undoes_it() {
    let fake = FakeLu::default();
    let a = host(&fake, IQN_A, 0x23d000000);
    let policy = Policy::default();
    let owners = both_live();
    let first = vec![a.paths[0].clone()];
    x(&Lu::new(fake.wwid(), &first), key_a(), &policy, &owners)
        .acquire()
        .unwrap();
    assert_eq!(
        write(&a.fakes[1]).unwrap_err().condition(),
        Condition::ReservationConflict,
        "an unregistered path cannot write"
    );
    let lu = Lu::new(fake.wwid(), &a.paths);
    let r = x(&lu, key_a(), &policy, &owners).recheck().unwrap();
    assert_eq!(r.registered_late, vec![a.paths[1].name.clone()]);
    write(&a.fakes[1]).unwrap();

    // B fences A; A's re-check must notice and not re-grant itself access.
    let b = host(&fake, IQN_B, 0x23d000100);
    owners.set(key_a(), Owner::Dead("hostA".into()));
    x(&Lu::new(fake.wwid(), &b.paths), key_b(), &policy, &owners)
        .acquire()
        .unwrap();
    let e = x(&lu, key_a(), &policy, &owners).recheck().unwrap_err();
    assert!(e.to_string().contains("no longer ours"), "{e}");
    assert!(fake.registrations().iter().all(|g| g.key == key_b().get()));
}

#[test]
fn trap6_parameter_lists_are_exactly_24_bytes_with_length_in_bytes_5_to_8() {
    let fake = FakeLu::default();
    let a = host(&fake, IQN_A, 0x23d000000);
    let lu = Lu::new(fake.wwid(), &a.paths);
    let aptpl = Policy {
        aptpl: true,
        ..Policy::default()
    };
    x(&lu, key_a(), &aptpl, &both_live()).acquire().unwrap();
    for l in fake.log().iter().filter(|l| l.cdb[0] == 0x5f) {
        assert_eq!(l.data_out.len(), 24);
        assert_eq!(&l.cdb[5..9], &[0, 0, 0, 24]);
        assert_eq!(l.cdb[2] >> 4, 0, "scope LU");
        if l.cdb[1] & 0x1f == 6 {
            assert_eq!(l.data_out[20], 0x01, "APTPL only, no SPEC_I_PT/ALL_TG_PT");
        }
    }
}

#[test]
fn trap7_pr_out_that_fails_yet_applies_is_caught_by_the_read_back() {
    // LIO without its PR state directory: every REGISTER is applied and answered 08/00.
    let fake = FakeLu::default();
    fake.set_pr_state_dir_missing(true);
    let a = host(&fake, IQN_A, 0x23d000000);
    let lu = Lu::new(fake.wwid(), &a.paths);
    let policy = Policy::default();
    let owners = both_live();
    let r = x(&lu, key_a(), &policy, &owners).acquire().unwrap();
    assert_eq!(
        r.applied_despite_error.len(),
        2,
        "{:?}",
        r.applied_despite_error
    );
    assert!(
        r.applied_despite_error[0].contains("08/00"),
        "{:?}",
        r.applied_despite_error
    );
    assert_eq!(fake.reservation().map(|r| r.0), Some(key_a().get()));
    let r = x(&lu, key_a(), &policy, &owners).release().unwrap();
    assert!(!r.applied_despite_error.is_empty());
    assert!(fake.registrations().is_empty() && fake.reservation().is_none());
}

/// A transport that forwards to a fake path and then loses the answer of matching commands
/// (a timeout after the device executed it).
struct LosesAnswers {
    inner: FakeScsi,
    cdb_prefix: Vec<u8>,
    left: AtomicUsize,
}

impl ScsiTransport for LosesAnswers {
    fn execute(&self, cdb: &[u8], data: DataDir<'_>, t: Duration) -> Result<Completion, ScsiError> {
        let r = self.inner.execute(cdb, data, t);
        if cdb.starts_with(&self.cdb_prefix)
            && self
                .left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return Err(ScsiError::command(
                self.inner.device(),
                cdb,
                Condition::Timeout,
            ));
        }
        r
    }
    fn device(&self) -> &str {
        self.inner.device()
    }
    fn policy(&self) -> scsi::RetryPolicy {
        self.inner.policy()
    }
}

#[test]
fn trap7_a_reserve_whose_answer_is_lost_is_found_applied() {
    let fake = FakeLu::default();
    let a = host(&fake, IQN_A, 0x23d000000);
    let mut paths = a.paths.clone();
    paths[0].transport = Arc::new(LosesAnswers {
        inner: a.fakes[0].clone(),
        cdb_prefix: vec![0x5f, 0x01],
        left: AtomicUsize::new(1),
    });
    let lu = Lu::new(fake.wwid(), &paths);
    let r = x(&lu, key_a(), &Policy::default(), &both_live())
        .acquire()
        .unwrap();
    assert_eq!(r.applied_despite_error.len(), 1);
    assert!(
        r.applied_despite_error[0].starts_with("RESERVE"),
        "{:?}",
        r.applied_despite_error
    );
    let reserves = fake
        .log()
        .iter()
        .filter(|l| l.cdb[..2] == [0x5f, 0x01])
        .count();
    assert_eq!(reserves, 1, "not sent again");
}

#[test]
fn trap7_not_ready_and_conflict_are_told_apart() {
    // RESERVE from an unregistered nexus: LIO's NOT READY 08/00, not a conflict.
    let fake = FakeLu::default();
    let a = host(&fake, IQN_A, 0x23d000000);
    let lu = Lu::new(fake.wwid(), &a.paths);
    let r = lu.out(
        &a.paths[0],
        &sm_core::scsi::PrOut::Reserve {
            key: key_a().get(),
            pr_type: PrType::WriteExclusiveRegistrantsOnly,
        },
    );
    assert!(matches!(r, crate::engine::OutResult::Unknown(_)), "{r:?}");
    scsi::pr_register_ignore(&a.fakes[0], 0xb1, Default::default()).unwrap();
    scsi::pr_reserve(&a.fakes[0], 0xb1, PrType::WriteExclusiveRegistrantsOnly).unwrap();
    let r = lu.out(
        &a.paths[1],
        &sm_core::scsi::PrOut::Preempt {
            key: 0xdead,
            victim: 0xb1,
            pr_type: PrType::WriteExclusiveRegistrantsOnly,
            abort: true,
        },
    );
    assert!(matches!(r, crate::engine::OutResult::Conflict(_)), "{r:?}");
}

pub(crate) fn illegal(asc: u8) -> Reply {
    Reply::Status {
        status: 0x02,
        sense: SenseInfo::new(SenseKey::IllegalRequest, asc, 0).encode(),
    }
}

#[test]
fn a_lun_without_pr_support_gives_a_clear_error() {
    let fake = FakeLu::default();
    fake.script(None, &[0x5e], illegal(0x20), usize::MAX);
    fake.script(None, &[0x5f], illegal(0x20), usize::MAX);
    let a = host(&fake, IQN_A, 0x23d000000);
    let lu = Lu::new(fake.wwid(), &a.paths);
    let e = x(&lu, key_a(), &Policy::default(), &both_live())
        .acquire()
        .unwrap_err();
    assert!(matches!(e, PrError::Unsupported { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("does not support SCSI-3 persistent reservations"),
        "{e}"
    );
    assert!(matches!(
        lu.check_type(PrType::WriteExclusiveRegistrantsOnly),
        Err(PrError::Unsupported { .. })
    ));
}

#[test]
fn report_capabilities_without_the_type_is_refused() {
    let fake = FakeLu::default();
    let caps = sm_core::scsi::PrCapabilities {
        tmv: true,
        types: vec![PrType::WriteExclusive, PrType::ExclusiveAccess],
        ..Default::default()
    };
    fake.script(None, &[0x5e, 0x02], Reply::Data(caps.encode()), 1);
    let a = host(&fake, IQN_A, 0x23d000000);
    let lu = Lu::new(fake.wwid(), &a.paths);
    let e = lu
        .check_type(PrType::WriteExclusiveRegistrantsOnly)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("does not support reservation type WE-RO (5)"),
        "{e}"
    );
    assert!(
        lu.check_type(PrType::WriteExclusiveRegistrantsOnly).is_ok(),
        "the real LIO mask has it"
    );
}

#[test]
fn devices_without_read_full_status_use_keys_and_reservation() {
    let fake = FakeLu::default();
    fake.script(None, &[0x5e, 0x03], illegal(0x24), usize::MAX);
    let a = host(&fake, IQN_A, 0x23d000000);
    let b = host(&fake, IQN_B, 0x23d000100);
    let policy = Policy::default();
    let owners = both_live();
    let lu = Lu::new(fake.wwid(), &a.paths);
    let r = x(&lu, key_a(), &policy, &owners).acquire().unwrap();
    assert!(!r.state.detailed);
    assert_eq!(r.state.count(key_a()), 2);
    let e = x(&Lu::new(fake.wwid(), &b.paths), key_b(), &policy, &owners)
        .acquire()
        .unwrap_err();
    assert!(e.is_in_use());
    x(&lu, key_a(), &policy, &owners).release().unwrap();
    assert!(fake.registrations().is_empty() && fake.reservation().is_none());
}

#[test]
fn pr_in_moves_to_the_next_path_when_one_is_down() {
    let fake = FakeLu::default();
    let a = host(&fake, IQN_A, 0x23d000000);
    a.fakes[0].set_fault(Some(Fault::Down));
    let lu = Lu::new(fake.wwid(), &a.paths);
    assert!(lu.state().unwrap().registrations.is_empty());
    // Acquire with the down path still marked usable: it is skipped, the other is used.
    let r = x(&lu, key_a(), &Policy::default(), &both_live()).acquire();
    let e = r.unwrap_err();
    assert!(
        e.to_string().contains("not registered"),
        "the down path is reported: {e}"
    );
}

#[test]
fn our_key_on_another_initiator_is_a_collision() {
    let fake = FakeLu::default();
    let a = host(&fake, IQN_A, 0x23d000000);
    let b = host(&fake, IQN_B, 0x23d000100);
    scsi::pr_register_ignore(&b.fakes[0], key_a().get(), Default::default()).unwrap();
    let lu = Lu::new(fake.wwid(), &a.paths);
    let e = x(&lu, key_a(), &Policy::default(), &both_live())
        .acquire()
        .unwrap_err();
    assert!(matches!(e, PrError::KeyCollision { .. }), "{e:?}");
    assert!(e.to_string().contains(IQN_B), "{e}");
}

#[test]
fn admin_preempt_and_clear() {
    let fake = FakeLu::default();
    let a = host(&fake, IQN_A, 0x23d000000);
    let b = host(&fake, IQN_B, 0x23d000100);
    let policy = Policy::default();
    let owners = both_live();
    x(&Lu::new(fake.wwid(), &a.paths), key_a(), &policy, &owners)
        .acquire()
        .unwrap();
    let lu_b = Lu::new(fake.wwid(), &b.paths);
    let xb = x(&lu_b, key_b(), &policy, &owners);
    assert!(xb.preempt(key_b(), true).is_err(), "never our own key");
    let r = xb.preempt(key_a(), true).unwrap();
    assert!(!r.state.has(key_a()));
    assert_eq!(fake.reservation().map(|r| r.0), Some(key_b().get()));
    xb.clear().unwrap();
    assert!(fake.registrations().is_empty() && fake.reservation().is_none());
}
