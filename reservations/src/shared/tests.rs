//! A shared LU on a LIO-like fake with two hosts of two paths each: joining, fencing, the
//! fenced host's writes, refusing another scheme's reservation, leaving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sm_core::scsi::{self, Lba, PrType, RegisterOpts, ScsiError};
use sm_core::testing::{FakeLu, FakeScsi};

use super::*;
use crate::activate::tests::{Host, IQN_A, IQN_B, host, key_a, key_b};

fn write(t: &FakeScsi) -> Result<(), ScsiError> {
    scsi::write_blocks(t, Lba(8), &[0x5a; 512], 512)
}

fn is_conflict(r: Result<(), ScsiError>) -> bool {
    r.is_err_and(|e| matches!(e.condition(), scsi::Condition::ReservationConflict))
}

fn pr_outs(lu: &FakeLu) -> usize {
    lu.log().iter().filter(|l| l.cdb[0] == 0x5f).count()
}

/// A LIO-like LU and hosts A and B with two paths each.
fn two_hosts() -> (FakeLu, Host, Host) {
    let fake = FakeLu::default();
    let a = host(&fake, IQN_A, 0x23d000000);
    let b = host(&fake, IQN_B, 0x23d100000);
    (fake, a, b)
}

fn member<'a>(lu: &'a Lu<'a>, me: PrKey) -> Member<'a> {
    Member {
        lu,
        me,
        aptpl: false,
    }
}

#[test]
fn two_hosts_join_the_first_reserves_and_every_registered_path_writes() {
    let (fake, a, b) = two_hosts();
    let (lu_a, lu_b) = (
        Lu::new(fake.wwid(), &a.paths),
        Lu::new(fake.wwid(), &b.paths),
    );
    let outsider = fake.path(
        "/dev/outsider",
        sm_core::testing::Nexus::iscsi("iqn.x:c", 9, 1),
    );
    write(&outsider).unwrap();

    let ja = member(&lu_a, key_a()).join().unwrap();
    assert!(ja.reserved && ja.others.is_empty());
    assert_eq!(fake.reservation(), Some((0, SHARED_TYPE)));
    let jb = member(&lu_b, key_b()).join().unwrap();
    assert!(!jb.reserved, "the reservation was already there");
    assert_eq!(jb.others, vec![key_a().get()]);
    assert_eq!(jb.state.count(key_a()), 2);
    assert_eq!(jb.state.count(key_b()), 2);
    for f in a.fakes.iter().chain(&b.fakes) {
        write(f).unwrap();
    }
    assert!(is_conflict(write(&outsider)), "an unregistered initiator");
    let (s, _) = member(&lu_a, key_a()).standing().unwrap();
    assert_eq!(s, Standing::Member { paths: 2 });
    // Joining again changes nothing that matters.
    member(&lu_a, key_a()).join().unwrap();
    assert_eq!(fake.reservation(), Some((0, SHARED_TYPE)));
}

#[test]
fn a_fenced_host_s_writes_are_refused_on_every_path_and_it_knows() {
    let (fake, a, b) = two_hosts();
    let (lu_a, lu_b) = (
        Lu::new(fake.wwid(), &a.paths),
        Lu::new(fake.wwid(), &b.paths),
    );
    member(&lu_a, key_a()).join().unwrap();
    member(&lu_b, key_b()).join().unwrap();

    let after = member(&lu_b, key_b())
        .fence(key_a(), true, "host A (dead)")
        .unwrap();
    assert!(!after.has(key_a()) && after.count(key_b()) == 2, "{after}");
    assert_eq!(after.pr_type(), Some(SHARED_TYPE));
    let preempts: Vec<u8> = fake
        .log()
        .iter()
        .filter(|l| l.cdb[0] == 0x5f && l.cdb[1] & 0x1f == 0x05)
        .map(|l| l.cdb[2] & 0x0f)
        .collect();
    assert_eq!(preempts, vec![7], "one PREEMPT AND ABORT, type 7");
    for f in &a.fakes {
        // The first command after the preemption reports it (unit attention), then conflicts.
        let _ = write(f);
        assert!(is_conflict(write(f)), "A's path {f:?}");
    }
    for f in &b.fakes {
        write(f).unwrap();
    }
    let (s, _) = member(&lu_a, key_a()).standing().unwrap();
    assert_eq!(s, Standing::Outside);
    let e = member(&lu_a, key_a())
        .fence(key_b(), true, "host B")
        .unwrap_err();
    assert!(matches!(e, PrError::Fenced { .. }), "{e}");
    assert!(e.to_string().contains("was fenced"), "{e}");
    // Fencing a key that is gone is nothing to do; fencing ourselves is refused.
    let n = pr_outs(&fake);
    member(&lu_b, key_b())
        .fence(key_a(), true, "host A again")
        .unwrap();
    assert_eq!(pr_outs(&fake), n);
    assert!(member(&lu_b, key_b()).fence(key_b(), true, "me").is_err());
}

#[test]
fn another_scheme_s_reservation_is_refused_before_anything_is_sent() {
    let (fake, a, b) = two_hosts();
    scsi::pr_register(&b.fakes[0], 0, 0xb1, RegisterOpts::default()).unwrap();
    scsi::pr_reserve(&b.fakes[0], 0xb1, PrType::WriteExclusiveRegistrantsOnly).unwrap();
    let lu_a = Lu::new(fake.wwid(), &a.paths);
    let n = pr_outs(&fake);
    let e = member(&lu_a, key_a()).join().unwrap_err();
    assert!(
        matches!(e, PrError::ReservedOtherwise { key: 0xb1, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("refusing to join"), "{e}");
    assert_eq!(pr_outs(&fake), n, "no PR OUT sent");
}

#[test]
fn leaving_keeps_the_reservation_for_the_others_and_the_last_one_ends_it() {
    let (fake, a, b) = two_hosts();
    let (lu_a, lu_b) = (
        Lu::new(fake.wwid(), &a.paths),
        Lu::new(fake.wwid(), &b.paths),
    );
    member(&lu_a, key_a()).join().unwrap();
    member(&lu_b, key_b()).join().unwrap();
    let s = member(&lu_a, key_a()).leave().unwrap();
    assert!(!s.has(key_a()) && s.has(key_b()), "{s}");
    assert_eq!(s.pr_type(), Some(SHARED_TYPE));
    assert!(
        is_conflict(write(&a.fakes[0])),
        "A left: it no longer writes"
    );
    write(&b.fakes[1]).unwrap();
    member(&lu_b, key_b()).leave().unwrap();
    let (st, s) = member(&lu_b, key_b()).standing().unwrap();
    assert_eq!(st, Standing::Empty, "{s}");
    assert_eq!(fake.reservation(), None, "the last registrant ended it");
}
