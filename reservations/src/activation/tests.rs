//! The per-verb operations on LIO-like fake LUs, a path source whose answers change between
//! calls, and a fake multipathd that records what the LU looked like at each command.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use multipath::testing::FakeMultipathd;
use sm_core::scsi::{PrType, RelTgtPortId};
use sm_core::testing::{FakeLu, Nexus};

use super::*;
use crate::activate::tests::{IQN_A, IQN_B, both_live, host, illegal, key_a, key_b};
use crate::path::{NexusId, PrPath};

/// Paths per LU: the n-th call for an LU answers its n-th set (the last one from then on);
/// an LU without sets has no map.
#[derive(Default)]
struct Source {
    sets: Mutex<HashMap<String, Vec<Vec<PrPath>>>>,
    calls: Mutex<Vec<String>>,
}

impl Source {
    fn add(&self, lu: &FakeLu, sets: Vec<Vec<PrPath>>) {
        self.sets.lock().unwrap().insert(lu.wwid(), sets);
    }

    fn calls(&self, lu: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| *c == lu)
            .count()
    }
}

impl PathSource for Source {
    fn paths(&self, lu: &ScsiId) -> Result<Vec<PrPath>, PrError> {
        let lu = lu.as_str();
        let n = self.calls(lu);
        self.calls.lock().unwrap().push(lu.into());
        match self.sets.lock().unwrap().get(lu) {
            Some(sets) if !sets.is_empty() => Ok(sets[n.min(sets.len() - 1)].clone()),
            _ => Err(PrError::NoUsablePath { lu: lu.into() }),
        }
    }
}

/// A multipathd command and the LU when it came: its reservation and registration count.
type Seen = (String, Option<(u64, PrType)>, usize);

/// multipathd with `reservation_key file` (it takes keys), noting the LU's reservation and
/// registration count at each command.
struct Watching {
    md: FakeMultipathd,
    lu: FakeLu,
    seen: Mutex<Vec<Seen>>,
}

impl Watching {
    fn new(lu: &FakeLu) -> Watching {
        let md = FakeMultipathd::new();
        for c in ["setprkey", "setprstatus", "unsetprstatus", "unsetprkey"] {
            md.set(c, "ok\n");
        }
        Watching {
            md,
            lu: lu.clone(),
            seen: Mutex::default(),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Multipathd for Watching {
    fn command(&self, command: &str) -> multipath::Result<String> {
        self.seen.lock().unwrap().push((
            command.into(),
            self.lu.reservation(),
            self.lu.registrations().len(),
        ));
        self.md.command(command)
    }
}

fn engine<'a>(
    paths: &'a dyn PathSource,
    multipathd: &'a dyn Multipathd,
    me: PrKey,
    policy: &'a Policy,
    owners: &'a dyn Owners,
) -> Activation<'a> {
    Activation {
        paths,
        multipathd,
        me,
        policy,
        owners,
    }
}

/// A third path of host A: a new session through port 1.
fn third_path(lu: &FakeLu) -> PrPath {
    let isid = 0x23d000009;
    let f = lu.path("/dev/a-new", Nexus::iscsi(IQN_A, isid, 1));
    PrPath::new(
        Arc::new(f),
        Some(NexusId {
            initiator: IQN_A.into(),
            isid: Some(isid),
            rtpi: Some(RelTgtPortId(1)),
        }),
    )
}

const WERO: PrType = PrType::WriteExclusiveRegistrantsOnly;

#[test]
fn activate_registers_paths_that_appear_before_the_recheck() {
    let fake = FakeLu::default();
    let a = host(&fake, IQN_A, 0x23d000000);
    let mut more = a.paths.clone();
    more.push(third_path(&fake));
    let src = Source::default();
    src.add(&fake, vec![a.paths.clone(), more]);
    let md = Watching::new(&fake);
    let (policy, owners) = (Policy::default(), both_live());
    let done = engine(&src, &md, key_a(), &policy, &owners)
        .activate(&ScsiId::new(&fake.wwid()).unwrap())
        .unwrap();
    assert_eq!(
        src.calls(&fake.wwid()),
        2,
        "paths read again for the re-check"
    );
    assert_eq!(done.rechecked.registered_late, ["/dev/a-new"]);
    assert!(done.acquired.registered_late.is_empty());
    assert!(done.map_key);
    assert_eq!(fake.reservation(), Some((key_a().get(), WERO)));
    let regs = fake.registrations();
    assert_eq!(regs.len(), 3, "{regs:?}");
    assert!(regs.iter().all(|g| g.key == key_a().get()));
    assert!(regs.iter().any(|g| g.isid == Some(0x23d000009)));
    assert_eq!(done.rechecked.state.count(key_a()), 3);
}

#[test]
fn map_key_is_set_after_acquire_and_cleared_before_release() {
    let fake = FakeLu::default();
    let a = host(&fake, IQN_A, 0x23d000000);
    let src = Source::default();
    src.add(&fake, vec![a.paths.clone()]);
    let md = Watching::new(&fake);
    let (policy, owners) = (Policy::default(), both_live());
    let e = engine(&src, &md, key_a(), &policy, &owners);
    let id = fake.wwid();
    let done = e.activate(&ScsiId::new(&id).unwrap()).unwrap();
    assert!(done.map_key && done.rechecked.unchanged);
    let k = key_a();
    let held = Some((k.get(), WERO));
    assert_eq!(
        md.seen(),
        [
            (format!("setprkey map {id} key {k}"), held, 2),
            (format!("setprstatus map {id}"), held, 2),
        ],
        "the key goes to multipathd once the LU is ours"
    );
    let gone = e.deactivate(&ScsiId::new(&id).unwrap()).unwrap();
    assert!(gone.map_key && !gone.released.unchanged);
    assert_eq!(
        md.seen()[2..],
        [
            (format!("unsetprstatus map {id}"), held, 2),
            (format!("unsetprkey map {id}"), held, 2),
        ],
        "multipathd forgets the key while the LU is still held, before the release"
    );
    assert!(fake.registrations().is_empty() && fake.reservation().is_none());
    // Idempotent: nothing left to release, the key is taken back again all the same.
    assert!(
        e.deactivate(&ScsiId::new(&id).unwrap())
            .unwrap()
            .released
            .unchanged
    );
    assert_eq!(md.seen().len(), 6);
}

#[test]
fn a_refused_or_failed_map_key_is_a_warning_not_an_error() {
    let fake = FakeLu::default();
    let a = host(&fake, IQN_A, 0x23d000000);
    let src = Source::default();
    src.add(&fake, vec![a.paths.clone()]);
    let (policy, owners) = (Policy::default(), both_live());
    let id = fake.wwid();

    // No `reservation_key file`: multipathd answers `fail`.
    let refusing = FakeMultipathd::new();
    let e = engine(&src, &refusing, key_a(), &policy, &owners);
    assert!(!e.activate(&ScsiId::new(&id).unwrap()).unwrap().map_key);
    assert_eq!(fake.reservation(), Some((key_a().get(), WERO)));
    assert!(!e.deactivate(&ScsiId::new(&id).unwrap()).unwrap().map_key);
    assert!(fake.registrations().is_empty());
    assert_eq!(refusing.commands().len(), 4, "{:?}", refusing.commands());

    // No daemon at all.
    let absent = multipath::dm::MultipathdSocket::at_abstract("/xsm-test/no-multipathd-here");
    let e = engine(&src, &absent, key_a(), &policy, &owners);
    assert!(!e.activate(&ScsiId::new(&id).unwrap()).unwrap().map_key);
    assert_eq!(fake.reservation(), Some((key_a().get(), WERO)));
    assert!(!e.deactivate(&ScsiId::new(&id).unwrap()).unwrap().map_key);
    assert!(fake.registrations().is_empty() && fake.reservation().is_none());
}

#[test]
fn a_refused_activation_hands_multipathd_no_key() {
    let fake = FakeLu::default();
    let (a, b) = (
        host(&fake, IQN_A, 0x23d000000),
        host(&fake, IQN_B, 0x23d000100),
    );
    let src_a = Source::default();
    src_a.add(&fake, vec![a.paths.clone()]);
    let src_b = Source::default();
    src_b.add(&fake, vec![b.paths.clone()]);
    let (md_a, md_b) = (Watching::new(&fake), Watching::new(&fake));
    let (policy, owners) = (Policy::default(), both_live());
    engine(&src_a, &md_a, key_a(), &policy, &owners)
        .activate(&ScsiId::new(&fake.wwid()).unwrap())
        .unwrap();
    let e = engine(&src_b, &md_b, key_b(), &policy, &owners)
        .activate(&ScsiId::new(&fake.wwid()).unwrap())
        .unwrap_err();
    assert!(e.is_in_use() && e.to_string().contains("hostA"), "{e}");
    assert!(md_b.seen().is_empty(), "{:?}", md_b.seen());
    assert_eq!(src_b.calls(&fake.wwid()), 1, "no re-check after a refusal");
}

#[test]
fn a_preemption_before_the_recheck_fails_the_activation() {
    let fake = FakeLu::default();
    let (a, b) = (
        host(&fake, IQN_A, 0x23d000000),
        host(&fake, IQN_B, 0x23d000100),
    );
    let src = Source::default();
    src.add(&fake, vec![a.paths.clone()]);
    /// Host B preempts A as soon as A hands its key to multipathd.
    struct Preempting<'a>(Watching, &'a crate::activate::tests::Host);
    impl Multipathd for Preempting<'_> {
        fn command(&self, command: &str) -> multipath::Result<String> {
            if command.starts_with("setprstatus") {
                let b = &self.1.fakes[0];
                sm_core::scsi::pr_register_ignore(b, key_b().get(), Default::default()).unwrap();
                sm_core::scsi::pr_preempt(b, key_b().get(), key_a().get(), WERO, true).unwrap();
            }
            self.0.command(command)
        }
    }
    let md = Preempting(Watching::new(&fake), &b);
    let (policy, owners) = (Policy::default(), both_live());
    let e = engine(&src, &md, key_a(), &policy, &owners)
        .activate(&ScsiId::new(&fake.wwid()).unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("no longer ours"), "{e}");
    assert_eq!(fake.reservation().map(|r| r.0), Some(key_b().get()));
}

#[test]
fn clean_stale_keeps_active_luns_removes_stale_ones_and_never_fails() {
    let (policy, owners) = (Policy::default(), both_live());
    let lus: Vec<FakeLu> = (0..5)
        .map(|i| FakeLu::lio(&format!("5ab0c0de{i:04x}")))
        .collect();
    let [active, stale, broken, other, no_map] = &lus[..] else {
        unreachable!()
    };
    let src = Source::default();
    let md = Watching::new(active);
    let e = engine(&src, &md, key_a(), &policy, &owners);
    for lu in [active, stale, broken] {
        src.add(lu, vec![host(lu, IQN_A, 0x23d000000).paths]);
        e.activate(&ScsiId::new(&lu.wwid()).unwrap()).unwrap();
    }
    let b = host(other, IQN_B, 0x23d000100);
    src.add(other, vec![host(other, IQN_A, 0x23d000000).paths]);
    let sb = Source::default();
    sb.add(other, vec![b.paths.clone()]);
    engine(&sb, &md, key_b(), &policy, &owners)
        .activate(&ScsiId::new(&other.wwid()).unwrap())
        .unwrap();
    // Every PR OUT to `broken` now fails definitely.
    broken.script(None, &[0x5f], illegal(0x24), usize::MAX);
    let before = md.seen().len();

    let ids: Vec<String> = lus.iter().map(FakeLu::wwid).collect();
    let done = e.clean_stale(&ids, &[active.wwid()]);
    assert_eq!(done.cleaned, [stale.wwid()]);
    assert_eq!(done.failed.len(), 1);
    assert_eq!(done.failed[0].0, broken.wwid());
    assert!(stale.registrations().is_empty() && stale.reservation().is_none());
    assert_eq!(active.reservation().map(|r| r.0), Some(key_a().get()));
    assert_eq!(
        active.registrations().len(),
        2,
        "the active LU is untouched"
    );
    assert_eq!(other.reservation().map(|r| r.0), Some(key_b().get()));
    assert!(other.registrations().iter().all(|g| g.key == key_b().get()));
    assert_eq!(
        src.calls(&no_map.wwid()),
        1,
        "a LU without a map is skipped"
    );
    assert_eq!(
        src.calls(&active.wwid()),
        2,
        "the active LU is not even read"
    );
    let cmds: Vec<String> = md.seen()[before..].iter().map(|s| s.0.clone()).collect();
    let (sid, bid) = (stale.wwid(), broken.wwid());
    assert_eq!(
        cmds,
        [
            format!("unsetprstatus map {sid}"),
            format!("unsetprkey map {sid}"),
            format!("unsetprstatus map {bid}"),
            format!("unsetprkey map {bid}"),
        ],
        "multipathd forgets the key of the LUs cleaned, only those"
    );
}
