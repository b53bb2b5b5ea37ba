//! FakeScsi against the bytes LIO 6.1 returned in the lab, and its PR/ALUA semantics.

use super::*;
use crate::scsi::wire::fixtures::{from_hex, load};
use crate::scsi::wire::rtpg::TpgStatus;
use crate::scsi::{self, Lba, PrOut, RegisterOpts, RtpgFormat, TransportId, exec};

const HOSTA: &str = "iqn.2026-01.lab.host:hosta";
const HOSTB: &str = "iqn.2026-01.lab.host:hostb";

/// The lab's four nexuses to one LU: host A and host B, each through ports 1 and 2.
struct Lab {
    lu: FakeLu,
    a1: FakeScsi,
    a2: FakeScsi,
    b1: FakeScsi,
    b2: FakeScsi,
}

fn lab(lu: FakeLu) -> Lab {
    Lab {
        a1: lu.path("/dev/sde", Nexus::iscsi(HOSTA, 0x23d000002, 1)),
        a2: lu.path("/dev/sdf", Nexus::iscsi(HOSTA, 0x23d000001, 2)),
        b1: lu.path("/dev/sdl", Nexus::iscsi(HOSTB, 0x23d000004, 1)),
        b2: lu.path("/dev/sdk", Nexus::iscsi(HOSTB, 0x23d000003, 2)),
        lu,
    }
}

fn data_in(t: &dyn ScsiTransport, cdb: &[u8], len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    let c = exec(t, cdb, DataDir::FromDevice(&mut buf)).unwrap();
    buf.truncate(c.transferred(len));
    buf
}

fn cond(r: Result<(), ScsiError>) -> Condition {
    r.unwrap_err().condition()
}

const UA: fn(u8) -> Condition = |ascq| Condition::UnitAttention { asc: 0x2a, ascq };

#[test]
fn identity_bytes_match_lio() {
    let l = lab(FakeLu::default());
    assert_eq!(
        data_in(&l.a1, &cdb::inquiry(false, 0, 255), 255),
        load("inquiry_std")
    );
    assert_eq!(
        data_in(&l.a1, &cdb::inquiry(false, 0, 36), 36),
        load("inquiry_std_short36")
    );
    assert_eq!(
        data_in(&l.a1, &cdb::inquiry(true, 0x80, 255), 255),
        load("vpd80")
    );
    assert_eq!(
        data_in(&l.a1, &cdb::inquiry(true, 0x83, 512), 512),
        load("vpd83_port1")
    );
    assert_eq!(
        data_in(&l.a2, &cdb::inquiry(true, 0x83, 512), 512),
        load("vpd83_port2")
    );
    assert_eq!(
        data_in(&l.a1, &cdb::inquiry(true, 0x83, 8), 8),
        load("vpd83_short8")
    );
    assert_eq!(
        data_in(&l.a1, &cdb::read_capacity16(32), 32),
        load("read_capacity16")
    );
    assert_eq!(l.lu.wwid(), "36001405abea000000000000000000000");
    // The lab's scenario set group 2 through configfs (an implicit transition) before capturing.
    l.lu.set_group_state(TpgId(2), AccessState::ActiveNonOptimized);
    scsi::test_unit_ready(&l.a2).unwrap();
    assert_eq!(
        data_in(&l.a1, &cdb::rtpg(false, 4096), 4096),
        load("rtpg_std")
    );
    assert_eq!(
        data_in(&l.a1, &cdb::rtpg(true, 4096), 4096),
        load("rtpg_ext")
    );
    assert_eq!(
        data_in(&l.a1, &cdb::rtpg(false, 8), 8),
        load("rtpg_std_alloc8")
    );
    // STPG through port 2: group 2 AO, group 1 AN, as `sg_stpg --tp=2,1 --state=0,1`.
    scsi::set_target_port_groups(
        &l.a2,
        &[
            (TpgId(2), AccessState::ActiveOptimized),
            (TpgId(1), AccessState::ActiveNonOptimized),
        ],
    )
    .unwrap();
    assert_eq!(
        data_in(&l.a2, &cdb::rtpg(false, 4096), 4096),
        load("rtpg_std_after_stpg")
    );
    assert_eq!(
        data_in(&l.a2, &cdb::rtpg(true, 4096), 4096),
        load("rtpg_ext_after_stpg")
    );
    assert_eq!(
        data_in(
            &l.a1,
            &cdb::pr_in(scsi::PrInAction::ReportCapabilities, 8192),
            8192
        ),
        load("pr_report_capabilities")
    );
}

#[test]
fn big_lu_uses_descriptor_sense_like_lio() {
    let cfg = LuConfig {
        serial: "labserial3".into(),
        blocks: 4 << 31,
        groups: vec![GroupConfig {
            id: TpgId(0),
            state: AccessState::ActiveOptimized,
            supported: SupportedStates(0xcf),
            pref: false,
            ports: vec![PortConfig {
                rtpi: RelTgtPortId(1),
                tpgt: 1,
            }],
        }],
        ..LuConfig::default()
    };
    let lu = FakeLu::new(cfg);
    let b = lu.path("/dev/sdm", Nexus::iscsi(HOSTB, 0x23d000004, 1));
    assert_eq!(
        data_in(&b, &cdb::read_capacity16(32), 32),
        load("big_read_capacity16")
    );
    assert_eq!(
        data_in(&b, &cdb::inquiry(true, 0x83, 512), 512),
        load("big_vpd83")
    );
    let e = exec(&b, &[0xc0, 0, 0, 0, 0, 0], DataDir::None).unwrap_err();
    assert_eq!(
        e.sense().unwrap(),
        &crate::scsi::wire::sense::parse(&load("big_sense_invalid_opcode.sense")).unwrap()
    );
    let e = scsi::pr_reserve(&b, 0xa1, PrType::WriteExclusiveRegistrantsOnly).unwrap_err();
    assert_eq!(e.sense().unwrap().format, SenseFormat::Descriptor);
    assert_eq!(
        e.condition(),
        Condition::NotReady(error::NotReady::LuCommunicationFailure)
    );
}

#[test]
fn rtpg_is_reissued_when_the_return_data_length_exceeds_the_allocation() {
    // 120 groups of one port: 4 + 120 * 12 = 1444 bytes, more than the first 1024.
    let groups = (1..=120u16)
        .map(|i| GroupConfig {
            id: TpgId(i),
            state: if i == 1 {
                AccessState::ActiveOptimized
            } else {
                AccessState::Standby
            },
            supported: SupportedStates(0xcf),
            pref: false,
            ports: vec![PortConfig {
                rtpi: RelTgtPortId(i),
                tpgt: i,
            }],
        })
        .collect();
    let lu = FakeLu::new(LuConfig {
        groups,
        ..LuConfig::default()
    });
    let p = lu.path("p", Nexus::iscsi(HOSTA, 1, 1));
    let g = scsi::report_target_port_groups_standard(&p).unwrap();
    assert_eq!(g.groups.len(), 120);
    let allocs: Vec<u32> = lu
        .log()
        .iter()
        .map(|l| u32::from_be_bytes([l.cdb[6], l.cdb[7], l.cdb[8], l.cdb[9]]))
        .collect();
    assert_eq!(allocs, [1024, 1444]);

    // Recorded bytes that claim more than they carry force a re-issue too.
    let lu = FakeLu::default();
    let p = lu.path("p", Nexus::iscsi(HOSTA, 1, 1));
    lu.script(
        None,
        &[cdb::MAINTENANCE_IN],
        Reply::Data(from_hex("00 00 08 00 00 cf 00 01")),
        1,
    );
    let g = scsi::report_target_port_groups_standard(&p).unwrap();
    assert_eq!(g.groups.len(), 2);
    assert_eq!(lu.log().len(), 2);
    assert_eq!(&lu.log()[1].cdb[6..10], &[0, 0, 0x08, 0x04]);
}

#[test]
fn extended_rtpg_falls_back_to_standard() {
    let lu = FakeLu::new(LuConfig {
        implicit_transition_secs: 7,
        ..LuConfig::default()
    });
    let p = lu.path("p", Nexus::iscsi(HOSTA, 1, 1));
    let g = scsi::report_target_port_groups(&p).unwrap();
    assert_eq!(
        g.format,
        RtpgFormat::Extended {
            implicit_transition_secs: 7
        }
    );
    assert_eq!(g.groups.len(), 2);
    let ops: Vec<u8> = lu.log().iter().map(|l| l.cdb[1]).collect();
    assert_eq!(ops, [0x2a, 0x0a], "extended, then standard");

    // A correct extended response is used as is.
    let lu = FakeLu::new(LuConfig {
        lio_rtpg_extended_quirk: false,
        ..LuConfig::default()
    });
    let p = lu.path("p", Nexus::iscsi(HOSTA, 1, 1));
    assert_eq!(scsi::report_target_port_groups(&p).unwrap().groups.len(), 2);
    assert_eq!(lu.log().len(), 1);

    // A device refusing the extended format.
    let lu = FakeLu::default();
    let p = lu.path("p", Nexus::iscsi(HOSTA, 1, 1));
    let sense = SenseInfo::new(SenseKey::IllegalRequest, 0x24, 0).encode();
    lu.script(
        None,
        &[cdb::MAINTENANCE_IN, 0x2a],
        Reply::Status {
            status: error::STATUS_CHECK_CONDITION,
            sense,
        },
        1,
    );
    assert_eq!(
        scsi::report_target_port_groups(&p).unwrap().format,
        RtpgFormat::Standard
    );
}

#[test]
fn stpg_semantics() {
    let l = lab(FakeLu::default());
    for bad in [
        vec![],
        vec![(TpgId(1), AccessState::Transitioning)],
        vec![(TpgId(1), AccessState::Offline)],
        vec![
            (TpgId(1), AccessState::Standby),
            (TpgId(1), AccessState::ActiveOptimized),
        ],
    ] {
        assert!(matches!(
            scsi::set_target_port_groups(&l.a1, &bad),
            Err(ScsiError::Invalid(_))
        ));
    }
    assert!(l.lu.log().is_empty(), "refused locally, nothing sent");
    scsi::set_target_port_groups(
        &l.a1,
        &[
            (TpgId(2), AccessState::ActiveOptimized),
            (TpgId(1), AccessState::Standby),
        ],
    )
    .unwrap();
    // Nexuses through the changed groups get 2A/06, the sender does not.
    assert_eq!(l.lu.pending_unit_attentions(l.a1.nexus()), []);
    assert_eq!(l.lu.pending_unit_attentions(l.b2.nexus()), [(0x2a, 0x06)]);
    assert_eq!(l.lu.pending_unit_attentions(l.b1.nexus()), [(0x2a, 0x06)]);
    // exec retries the unit attention; then standby refuses TUR.
    assert_eq!(
        cond(scsi::test_unit_ready(&l.b1)),
        Condition::NotReady(error::NotReady::Standby)
    );
    let results: Vec<Result<usize, Condition>> =
        l.lu.log()
            .iter()
            .rev()
            .take(2)
            .map(|x| x.result.clone())
            .collect();
    assert_eq!(results[1], Err(UA(0x06)));
    scsi::test_unit_ready(&l.b2).unwrap();
    let g = scsi::report_target_port_groups_standard(&l.b2).unwrap();
    assert_eq!(
        g.group(TpgId(1)).map(|x| (x.state, x.status)),
        Some((AccessState::Standby, TpgStatus::AlteredBySet))
    );
    // Raw STPG lists the convenience function refuses: LIO answers 26/00.
    for list in [
        from_hex("00 00 00 00 0f 00 00 01"),
        from_hex("00 00 00 00 00 00 00 09"),
        from_hex("00 00 00 00 04 00 00 01"),
    ] {
        let e = exec(&l.a1, &cdb::stpg(8), DataDir::ToDevice(&list)).unwrap_err();
        assert_eq!(
            e.condition(),
            Condition::IllegalRequest { asc: 0x26, ascq: 0 }
        );
    }
    // Implicit-only ALUA: STPG is an invalid opcode.
    let lu = FakeLu::new(LuConfig {
        tpgs: Tpgs::Implicit,
        ..LuConfig::default()
    });
    let p = lu.path("p", Nexus::iscsi(HOSTA, 1, 1));
    let e =
        scsi::set_target_port_groups(&p, &[(TpgId(1), AccessState::ActiveOptimized)]).unwrap_err();
    assert_eq!(
        e.condition(),
        Condition::IllegalRequest { asc: 0x20, ascq: 0 }
    );
}

#[test]
fn alua_states_filter_commands_like_lio() {
    let l = lab(FakeLu::default());
    l.lu.set_group_state(TpgId(2), AccessState::Standby);
    let _ = scsi::test_unit_ready(&l.b2);
    assert_eq!(
        cond(scsi::test_unit_ready(&l.b2)),
        Condition::NotReady(error::NotReady::Standby)
    );
    let mut block = [0u8; 512];
    assert_eq!(
        cond(scsi::read_blocks(&l.b2, Lba(0), &mut block, 512)),
        Condition::NotReady(error::NotReady::Standby)
    );
    scsi::pr_read_keys(&l.b2).unwrap();
    scsi::read_capacity16(&l.b2).unwrap();
    scsi::inquiry_standard(&l.b2).unwrap();
    l.lu.set_group_state(TpgId(2), AccessState::Unavailable);
    let _ = scsi::test_unit_ready(&l.b2);
    assert_eq!(
        cond(scsi::test_unit_ready(&l.b2)),
        Condition::NotReady(error::NotReady::Unavailable)
    );
    assert_eq!(
        scsi::pr_read_keys(&l.b2).unwrap_err().condition(),
        Condition::NotReady(error::NotReady::Unavailable)
    );
    scsi::report_target_port_groups_standard(&l.b2).unwrap();
    l.lu.set_group_state(TpgId(2), AccessState::ActiveNonOptimized);
    l.lu.set_port_offline(RelTgtPortId(2), true);
    assert_eq!(
        scsi::inquiry_standard(&l.b2).unwrap_err().condition(),
        Condition::NotReady(error::NotReady::Offline)
    );
    l.lu.set_port_offline(RelTgtPortId(2), false);
    scsi::test_unit_ready(&l.b2).unwrap();
    // Recorded LIO sense for a standby port classifies the same way.
    l.lu.script(
        Some("/dev/sdk"),
        &[0],
        Reply::Status {
            status: 2,
            sense: load("tur_standby_hostb_p2_1.sense"),
        },
        1,
    );
    assert_eq!(
        cond(scsi::test_unit_ready(&l.b2)),
        Condition::NotReady(error::NotReady::Standby)
    );
}

#[test]
fn transitioning_is_retried_until_the_deadline() {
    let l = lab(FakeLu::default());
    l.lu.begin_transition(TpgId(1), AccessState::ActiveNonOptimized, 3);
    scsi::test_unit_ready(&l.a1).unwrap();
    let seen: Vec<_> = l.lu.log().iter().map(|x| x.result.clone()).collect();
    let tr = Err(Condition::NotReady(error::NotReady::Transitioning));
    assert_eq!(seen, [tr.clone(), tr.clone(), tr, Err(UA(0x06)), Ok(0)]);
    assert_eq!(
        l.lu.group_state(TpgId(1)),
        Some(AccessState::ActiveNonOptimized)
    );
    // A transition that outlasts the deadline is reported with the attempt count.
    l.lu.begin_transition(TpgId(1), AccessState::ActiveOptimized, u32::MAX);
    let e = scsi::test_unit_ready(&l.a1).unwrap_err();
    assert_eq!(
        e.condition(),
        Condition::NotReady(error::NotReady::Transitioning)
    );
    assert!(matches!(e, ScsiError::Command { attempts, .. } if attempts > 1));
    // INQUIRY and RTPG still work while transitioning.
    scsi::inquiry_standard(&l.a1).unwrap();
    let g = scsi::report_target_port_groups_standard(&l.a1).unwrap();
    assert_eq!(
        g.group(TpgId(1)).map(|x| x.state),
        Some(AccessState::Transitioning)
    );
}

/// The access matrix of libiscsi's `verify_persistent_reserve_access`: for each type, what a
/// registered non-holder and an unregistered nexus may do.
#[test]
fn access_matrix_for_every_type() {
    // (type, registered read, registered write, unregistered read, unregistered write)
    let matrix = [
        (PrType::WriteExclusive, true, false, true, false),
        (PrType::ExclusiveAccess, false, false, false, false),
        (
            PrType::WriteExclusiveRegistrantsOnly,
            true,
            true,
            true,
            false,
        ),
        (
            PrType::ExclusiveAccessRegistrantsOnly,
            true,
            true,
            false,
            false,
        ),
        (
            PrType::WriteExclusiveAllRegistrants,
            true,
            true,
            true,
            false,
        ),
        (
            PrType::ExclusiveAccessAllRegistrants,
            true,
            true,
            false,
            false,
        ),
    ];
    for (t, rr, rw, ur, uw) in matrix {
        let l = lab(FakeLu::default());
        scsi::pr_register(&l.a1, 0, 0xa1, RegisterOpts::default()).unwrap();
        scsi::pr_register(&l.b1, 0, 0xb1, RegisterOpts::default()).unwrap();
        scsi::pr_reserve(&l.a1, 0xa1, t).unwrap();
        let mut block = [0u8; 512];
        let ok = |r: Result<(), ScsiError>| match r {
            Ok(()) => true,
            Err(e) if e.is_reservation_conflict() => false,
            Err(e) => panic!("{t}: {e}"),
        };
        assert!(
            ok(scsi::read_blocks(&l.a1, Lba(1), &mut block, 512))
                && ok(scsi::write_blocks(&l.a1, Lba(1), &block, 512)),
            "{t} holder"
        );
        assert_eq!(
            ok(scsi::read_blocks(&l.b1, Lba(1), &mut block, 512)),
            rr,
            "{t} registered read"
        );
        assert_eq!(
            ok(scsi::write_blocks(&l.b1, Lba(1), &block, 512)),
            rw,
            "{t} registered write"
        );
        assert_eq!(
            ok(scsi::read_blocks(&l.b2, Lba(1), &mut block, 512)),
            ur,
            "{t} unregistered read"
        );
        assert_eq!(
            ok(scsi::write_blocks(&l.b2, Lba(1), &block, 512)),
            uw,
            "{t} unregistered write"
        );
        // Always allowed: TUR, INQUIRY, PR IN, RTPG.
        scsi::test_unit_ready(&l.b2).unwrap();
        scsi::inquiry_standard(&l.b2).unwrap();
        scsi::pr_read_keys(&l.b2).unwrap();
        scsi::report_target_port_groups_standard(&l.b2).unwrap();
        let key = if t.all_registrants() { 0 } else { 0xa1 };
        assert_eq!(l.lu.reservation(), Some((key, t)));
    }
}

#[test]
fn lio_pr_errors() {
    let l = lab(FakeLu::default());
    // Unregistered nexus: RESERVE/RELEASE/CLEAR answer NOT READY 08/00, PREEMPT conflicts.
    let lucf = Condition::NotReady(error::NotReady::LuCommunicationFailure);
    assert_eq!(
        cond(scsi::pr_reserve(&l.a1, 0xa1, PrType::WriteExclusive)),
        lucf
    );
    assert_eq!(
        cond(scsi::pr_release(&l.a1, 0xa1, PrType::WriteExclusive)),
        lucf
    );
    assert_eq!(cond(scsi::pr_clear(&l.a1, 0xa1)), lucf);
    assert_eq!(
        cond(scsi::pr_preempt(
            &l.a1,
            0xa1,
            0xb1,
            PrType::WriteExclusive,
            false
        )),
        Condition::ReservationConflict
    );
    // REGISTER with a non-zero current key from an unregistered nexus conflicts; key 0 is a no-op.
    assert_eq!(
        cond(scsi::pr_register(
            &l.a1,
            0x99,
            0xa1,
            RegisterOpts::default()
        )),
        Condition::ReservationConflict
    );
    scsi::pr_register(&l.a1, 0, 0, RegisterOpts::default()).unwrap();
    assert_eq!(l.lu.generation(), 0);
    scsi::pr_register(&l.a1, 0, 0xa1, RegisterOpts::default()).unwrap();
    // Wrong key, bad type, bad scope, bad length, SPEC_I_PT outside REGISTER, SA 8.
    assert_eq!(
        cond(scsi::pr_register(
            &l.a1,
            0x77,
            0xa2,
            RegisterOpts::default()
        )),
        Condition::ReservationConflict
    );
    let ill = |asc| Condition::IllegalRequest { asc, ascq: 0 };
    let (mut c, list) = PrOut::Reserve {
        key: 0xa1,
        pr_type: PrType::WriteExclusive,
    }
    .build()
    .unwrap();
    c[2] = 0x02;
    assert_eq!(
        exec(&l.a1, &c, DataDir::ToDevice(&list))
            .unwrap_err()
            .condition(),
        ill(0x24)
    );
    c[2] = 0x15;
    assert_eq!(
        exec(&l.a1, &c, DataDir::ToDevice(&list))
            .unwrap_err()
            .condition(),
        ill(0x26)
    );
    c[2] = 0x05;
    c[8] = 20;
    assert_eq!(
        exec(&l.a1, &c, DataDir::ToDevice(&list[..20]))
            .unwrap_err()
            .condition(),
        ill(0x1a)
    );
    c[8] = 24;
    let mut spec = list.clone();
    spec[20] = 0x08;
    assert_eq!(
        exec(&l.a1, &c, DataDir::ToDevice(&spec))
            .unwrap_err()
            .condition(),
        ill(0x26)
    );
    c[1] = 0x08;
    assert_eq!(
        exec(&l.a1, &c, DataDir::ToDevice(&list))
            .unwrap_err()
            .condition(),
        ill(0x24)
    );
    // PREEMPT with SA key 0 outside All-Registrants; with an unknown key.
    assert_eq!(
        cond(scsi::pr_preempt(
            &l.a1,
            0xa1,
            0,
            PrType::WriteExclusive,
            false
        )),
        ill(0x26)
    );
    assert_eq!(
        cond(scsi::pr_preempt(
            &l.a1,
            0xa1,
            0xdead,
            PrType::WriteExclusive,
            false
        )),
        Condition::ReservationConflict
    );
}

#[test]
fn release_from_a_non_holder_is_silently_good() {
    let l = lab(FakeLu::default());
    scsi::pr_register(&l.a1, 0, 0xa1, RegisterOpts::default()).unwrap();
    scsi::pr_register(&l.a2, 0, 0xa1, RegisterOpts::default()).unwrap();
    scsi::pr_reserve(&l.a1, 0xa1, PrType::WriteExclusiveRegistrantsOnly).unwrap();
    scsi::pr_release(&l.a2, 0xa1, PrType::WriteExclusiveRegistrantsOnly).unwrap();
    assert_eq!(
        l.lu.reservation(),
        Some((0xa1, PrType::WriteExclusiveRegistrantsOnly))
    );
    // The holder with another type conflicts; with the right one it releases, and the other
    // registrant gets RESERVATIONS RELEASED.
    assert_eq!(
        cond(scsi::pr_release(&l.a1, 0xa1, PrType::WriteExclusive)),
        Condition::ReservationConflict
    );
    scsi::pr_release(&l.a1, 0xa1, PrType::WriteExclusiveRegistrantsOnly).unwrap();
    assert_eq!(l.lu.reservation(), None);
    assert_eq!(l.lu.pending_unit_attentions(l.a2.nexus()), [(0x2a, 0x04)]);
    // Releasing when nothing is reserved: GOOD.
    scsi::pr_release(&l.a1, 0xa1, PrType::WriteExclusive).unwrap();
}

#[test]
fn preempt_and_clear_semantics() {
    let l = lab(FakeLu::default());
    for p in [&l.a1, &l.a2] {
        scsi::pr_register(p, 0, 0xa1, RegisterOpts::default()).unwrap();
    }
    scsi::pr_register(&l.b1, 0, 0xb1, RegisterOpts::default()).unwrap();
    scsi::pr_reserve(&l.a1, 0xa1, PrType::WriteExclusive).unwrap();
    let g = l.lu.generation();
    // Host B preempts-and-aborts host A: A's registrations go, B holds, UA 2A/05 to A.
    scsi::pr_preempt(
        &l.b1,
        0xb1,
        0xa1,
        PrType::WriteExclusiveRegistrantsOnly,
        true,
    )
    .unwrap();
    assert_eq!(l.lu.generation(), g + 1);
    assert_eq!(
        l.lu.reservation(),
        Some((0xb1, PrType::WriteExclusiveRegistrantsOnly))
    );
    assert_eq!(scsi::pr_read_keys(&l.b1).unwrap().keys, [0xb1]);
    assert_eq!(l.lu.pending_unit_attentions(l.a1.nexus()), [(0x2a, 0x05)]);
    assert_eq!(l.lu.pending_unit_attentions(l.a2.nexus()), [(0x2a, 0x05)]);
    // A's next command sees the UA once (exec retries it), then A's write conflicts.
    let mut block = [0u8; 512];
    assert!(
        scsi::write_blocks(&l.a1, Lba(0), &block, 512)
            .unwrap_err()
            .is_reservation_conflict()
    );
    scsi::read_blocks(&l.a1, Lba(0), &mut block, 512).unwrap();
    // Preempting one's own key from another path drops the other path's registration.
    scsi::pr_register(&l.b2, 0, 0xb1, RegisterOpts::default()).unwrap();
    scsi::pr_preempt(&l.b2, 0xb1, 0xb1, PrType::WriteExclusive, false).unwrap();
    assert_eq!(l.lu.registrations().len(), 1);
    assert_eq!(l.lu.registrations()[0].port, RelTgtPortId(2));
    // CLEAR: everything goes; the other registered nexuses get RESERVATIONS PREEMPTED.
    scsi::pr_register(&l.a1, 0, 0xa1, RegisterOpts::default()).unwrap();
    scsi::pr_clear(&l.b2, 0xb1).unwrap();
    assert!(l.lu.registrations().is_empty() && l.lu.reservation().is_none());
    assert!(
        l.lu.pending_unit_attentions(l.a1.nexus())
            .contains(&(0x2a, 0x03))
    );
}

#[test]
fn all_registrants_reservations() {
    let l = lab(FakeLu::default());
    scsi::pr_register(&l.a1, 0, 0xa1, RegisterOpts::default()).unwrap();
    scsi::pr_register(&l.b1, 0, 0xb1, RegisterOpts::default()).unwrap();
    scsi::pr_reserve(&l.a1, 0xa1, PrType::ExclusiveAccessAllRegistrants).unwrap();
    let r = scsi::pr_read_reservation(&l.b1)
        .unwrap()
        .reservation
        .unwrap();
    assert_eq!(
        (r.key, r.pr_type),
        (0, PrType::ExclusiveAccessAllRegistrants)
    );
    assert!(
        scsi::pr_read_full_status(&l.b1)
            .unwrap()
            .registrants
            .iter()
            .all(|x| x.holder)
    );
    // The holder unregisters: the reservation survives with the remaining registrant.
    scsi::pr_register(&l.a1, 0xa1, 0, RegisterOpts::default()).unwrap();
    assert_eq!(
        l.lu.reservation(),
        Some((0, PrType::ExclusiveAccessAllRegistrants))
    );
    let mut block = [0u8; 512];
    scsi::read_blocks(&l.b1, Lba(0), &mut block, 512).unwrap();
    // Any registrant releases it.
    scsi::pr_release(&l.b1, 0xb1, PrType::ExclusiveAccessAllRegistrants).unwrap();
    assert_eq!(l.lu.reservation(), None);
    // PREEMPT with SA key 0 under All-Registrants removes every other registration.
    scsi::pr_register(&l.a2, 0, 0xa2, RegisterOpts::default()).unwrap();
    scsi::pr_reserve(&l.b1, 0xb1, PrType::WriteExclusiveAllRegistrants).unwrap();
    scsi::pr_preempt(&l.a2, 0xa2, 0, PrType::WriteExclusive, false).unwrap();
    assert_eq!(l.lu.reservation(), Some((0xa2, PrType::WriteExclusive)));
    assert_eq!(scsi::pr_read_keys(&l.a2).unwrap().keys, [0xa2]);
}

#[test]
fn all_tg_pt_spec_i_pt_and_register_and_move() {
    let l = lab(FakeLu::default());
    let atp = RegisterOpts {
        all_tg_pt: true,
        ..RegisterOpts::default()
    };
    let g = l.lu.generation();
    scsi::pr_register(&l.b1, 0, 0xb2, atp.clone()).unwrap();
    assert_eq!(l.lu.generation(), g + 2, "one registration per target port");
    let fs = scsi::pr_read_full_status(&l.a1).unwrap();
    assert_eq!(fs.registrants[1].transport_id, TransportId::iscsi(HOSTB));
    // B's session on port 2 is covered by the ISID-less registration.
    let mut block = [0u8; 512];
    scsi::pr_register(&l.a1, 0, 0xa1, RegisterOpts::default()).unwrap();
    scsi::pr_reserve(&l.a1, 0xa1, PrType::WriteExclusiveRegistrantsOnly).unwrap();
    scsi::write_blocks(&l.b2, Lba(0), &block, 512).unwrap();
    // Unregistering an ALL_TG_PT registration needs the bit again.
    let e = scsi::pr_register(&l.b1, 0xb2, 0, RegisterOpts::default()).unwrap_err();
    assert_eq!(
        e.condition(),
        Condition::IllegalRequest { asc: 0x24, ascq: 0 }
    );
    scsi::pr_register(&l.b1, 0xb2, 0, atp).unwrap();
    assert_eq!(scsi::pr_read_keys(&l.a1).unwrap().keys, [0xa1]);
    assert!(
        scsi::write_blocks(&l.b2, Lba(0), &block, 512)
            .unwrap_err()
            .is_reservation_conflict()
    );
    // SPEC_I_PT: A registers itself and host B's port-1 session. LIO registers a TransportID on
    // the first target port where that initiator has an ACL.
    scsi::pr_register(
        &l.a2,
        0,
        0xa1,
        RegisterOpts {
            spec_i_pt: vec![TransportId::iscsi_port(HOSTB, 0x23d000004)],
            ..RegisterOpts::default()
        },
    )
    .unwrap();
    assert_eq!(scsi::pr_read_keys(&l.a1).unwrap().keys, [0xa1, 0xa1, 0xa1]);
    scsi::write_blocks(&l.b1, Lba(0), &block, 512).unwrap();
    assert!(
        scsi::write_blocks(&l.b2, Lba(0), &block, 512)
            .unwrap_err()
            .is_reservation_conflict()
    );
    // REGISTER AND MOVE from the holder to host B on port 1.
    scsi::pr_out(
        &l.a1,
        &PrOut::RegisterAndMove(scsi::MoveParams {
            key: 0xa1,
            sa_key: 0xc1,
            unreg: true,
            aptpl: false,
            rel_tgt_port: RelTgtPortId(1),
            transport_id: TransportId::iscsi(HOSTB),
        }),
    )
    .unwrap();
    assert_eq!(
        l.lu.reservation(),
        Some((0xc1, PrType::WriteExclusiveRegistrantsOnly))
    );
    assert!(
        scsi::write_blocks(&l.a1, Lba(0), &block, 512)
            .unwrap_err()
            .is_reservation_conflict()
    );
    scsi::read_blocks(&l.b1, Lba(0), &mut block, 512).unwrap();
}

#[test]
fn missing_pr_state_dir_applies_and_reports_08_00() {
    let l = lab(FakeLu::default());
    l.lu.set_pr_state_dir_missing(true);
    let e = scsi::pr_register(&l.a1, 0, 0xa1, RegisterOpts::default()).unwrap_err();
    assert_eq!(
        e.condition(),
        Condition::NotReady(error::NotReady::LuCommunicationFailure)
    );
    assert_eq!(
        scsi::pr_read_keys(&l.a1).unwrap().keys,
        [0xa1],
        "applied anyway"
    );
    scsi::pr_reserve(&l.a1, 0xa1, PrType::WriteExclusiveRegistrantsOnly).unwrap();
    assert!(scsi::pr_register(&l.a1, 0xa1, 0, RegisterOpts::default()).is_err());
    assert!(l.lu.registrations().is_empty() && l.lu.reservation().is_none());
}

#[test]
fn faults_and_scripts_go_through_the_one_classifier() {
    let l = lab(FakeLu::default());
    l.a1.set_fault(Some(Fault::Down));
    let e = scsi::test_unit_ready(&l.a1).unwrap_err();
    assert!(matches!(
        e.condition(),
        Condition::Transport {
            host_status: error::DID_TRANSPORT_FAILFAST,
            ..
        }
    ));
    assert!(e.condition().is_path_failure());
    scsi::test_unit_ready(&l.a2).unwrap();
    l.a1.set_fault(Some(Fault::Reply(Reply::Timeout)));
    assert_eq!(cond(scsi::test_unit_ready(&l.a1)), Condition::Timeout);
    l.a1.set_fault(Some(Fault::Reply(Reply::Errno(Errno::ENODEV))));
    assert_eq!(
        cond(scsi::test_unit_ready(&l.a1)),
        Condition::Io(Errno::ENODEV)
    );
    l.a1.set_fault(None);
    // Recorded LIO bytes replayed as they were captured.
    l.lu.script(
        None,
        &[cdb::INQUIRY, 0],
        Reply::Data(load("inquiry_std")),
        1,
    );
    assert_eq!(scsi::inquiry_standard(&l.a1).unwrap().vendor, "LIO-ORG");
    l.lu.script(
        None,
        &[cdb::TEST_UNIT_READY],
        Reply::Status {
            status: error::STATUS_BUSY,
            sense: vec![],
        },
        2,
    );
    scsi::test_unit_ready(&l.a1).unwrap();
    // down, healthy path, timeout, errno, scripted INQUIRY, BUSY twice then GOOD.
    assert_eq!(l.lu.log().len(), 1 + 1 + 1 + 1 + 1 + 3);
}

/// Replays the persistent-reservation part of the lab capture (`sequence.tsv`: every command
/// sg_raw sent, with its CDB, data-out and SCSI status) against a fake LU with the lab's four
/// nexuses, and compares every status, sense and data-in byte with what LIO answered.
///
/// Host A's paths are in dm-multipath, whose TUR checker polls them and consumes unit
/// attentions between captures; for those paths, pending UAs are dropped before a step whose
/// capture shows none. Host B's paths are not monitored, so their UAs must match exactly.
#[test]
fn replays_the_lio_pr_capture() {
    let text = include_str!("../../../tests/fixtures/scsi/lio-6.1/sequence.tsv");
    let lu = FakeLu::lio("labserial1");
    let paths: HashMap<&str, FakeScsi> = [
        (
            "A1P1",
            lu.path("/dev/sdf", Nexus::iscsi(HOSTA, 0x23d000002, 1)),
        ),
        (
            "A1P2",
            lu.path("/dev/sdd", Nexus::iscsi(HOSTA, 0x23d000001, 2)),
        ),
        (
            "B1P1",
            lu.path("/dev/sdl", Nexus::iscsi(HOSTB, 0x23d000004, 1)),
        ),
        (
            "B1P2",
            lu.path("/dev/sdj", Nexus::iscsi(HOSTB, 0x23d000003, 2)),
        ),
    ]
    .into_iter()
    .collect();
    let fixture = |name: &str| {
        let path = format!(
            "{}/tests/fixtures/scsi/lio-6.1/{name}.hex",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(path).ok().map(|t| from_hex(&t))
    };
    let once = RetryPolicy::no_retry(Duration::from_secs(1));
    let mut in_pr = false;
    let mut steps = 0;
    for line in text.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        let [name, role, cdb_hex, out_hex, alloc, status] = cols[..] else {
            panic!("bad line {line:?}")
        };
        in_pr |= name == "pr_read_keys_empty";
        if !in_pr || name.starts_with("big_") {
            continue;
        }
        let role = role.split('=').next().unwrap_or(role);
        let p = &paths[role];
        if name == "sense_register_no_pr_dir" {
            lu.set_pr_state_dir_missing(true);
        }
        if role.starts_with('A') && status != "Check Condition" {
            lu.lock().unit_attentions.remove(&p.nexus().acl());
        }
        let c = from_hex(cdb_hex);
        let out = if out_hex == "-" {
            Vec::new()
        } else {
            from_hex(out_hex)
        };
        let alloc: usize = alloc.parse().unwrap();
        let mut buf = vec![0u8; alloc];
        let data = if !out.is_empty() {
            DataDir::ToDevice(&out)
        } else if alloc > 0 {
            DataDir::FromDevice(&mut buf)
        } else {
            DataDir::None
        };
        let r = scsi::exec_with(p, &c, data, &once);
        match (status, r) {
            ("Good", Ok(done)) => {
                if let Some(want) = fixture(name) {
                    assert_eq!(&buf[..done.transferred(alloc)], &want[..], "{name}: data");
                }
            }
            ("Check Condition", Err(e)) => {
                let want =
                    crate::scsi::wire::sense::parse(&fixture(&format!("{name}.sense")).unwrap())
                        .unwrap();
                assert_eq!(e.sense(), Some(&want), "{name}: sense");
            }
            ("Reservation Conflict", Err(e)) if e.is_reservation_conflict() => {}
            (want, got) => panic!("{name}: LIO answered {want}, the fake {got:?}"),
        }
        steps += 1;
        if name == "pr_read_keys_no_pr_dir_after" {
            break;
        }
    }
    assert!(steps > 90, "replayed {steps} steps");
}

#[test]
fn stpg_puts_one_port_offline() {
    let l = lab(FakeLu::default());
    let _ = scsi::test_unit_ready(&l.a2);
    scsi::set_target_ports_offline(&l.a1, &[RelTgtPortId(2)]).unwrap();
    assert_eq!(
        cond(scsi::test_unit_ready(&l.a2)),
        Condition::NotReady(error::NotReady::Offline)
    );
    scsi::test_unit_ready(&l.a1).unwrap();
    let sent =
        l.lu.log()
            .into_iter()
            .rfind(|c| c.cdb[0] == cdb::MAINTENANCE_OUT)
            .unwrap();
    assert_eq!(sent.data_out, vec![0, 0, 0, 0, 0x0e, 0, 0, 2]);
    assert!(matches!(
        scsi::set_target_ports_offline(&l.a1, &[]),
        Err(ScsiError::Invalid(_))
    ));
    assert!(matches!(
        scsi::set_target_ports_offline(&l.a1, &[RelTgtPortId(1), RelTgtPortId(1)]),
        Err(ScsiError::Invalid(_))
    ));
}
