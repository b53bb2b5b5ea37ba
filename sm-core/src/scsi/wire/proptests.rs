//! Property tests: every parser survives arbitrary bytes (the fuzz targets of this crate, run
//! as proptest since cargo-fuzz needs nightly), and every encoder round-trips through its
//! parser.

use proptest::prelude::*;

use super::pr_in::{
    self, PrCapabilities, PrFullStatus, PrKeys, PrReservation, Registrant, Reservation,
};
use super::pr_out::{self, BasicParams, MoveParams, PrOut, RegisterOpts};
use super::rtpg::{self, RtpgFormat, StpgDescriptor, TargetPortGroups, TpgDescriptor, TpgStatus};
use super::sense::{self, SenseFormat, SenseInfo, SenseKey};
use super::transport_id::{self, TransportId};
use super::vpd::{self, Association, CodeSet, Designation, Designator, DeviceId, NaaFormat};
use super::{capacity, inquiry};
use crate::scsi::alua::{AccessState, RelTgtPortId, SupportedStates, TpgId};
use crate::scsi::error::{RawStatus, classify};
use crate::scsi::pr::PrType;

fn many() -> ProptestConfig {
    ProptestConfig::with_cases(4096)
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

/// Arbitrary bytes biased towards plausible headers: the first bytes of real responses with
/// random lengths behind them.
fn framed(max: usize) -> impl Strategy<Value = Vec<u8>> {
    (any::<[u8; 8]>(), bytes(max))
        .prop_map(|(head, tail)| head.iter().copied().chain(tail).collect())
}

proptest! {
    #![proptest_config(many())]

    #[test]
    fn parsers_never_panic(b in framed(600)) {
        let _ = sense::parse(&b);
        let _ = inquiry::parse(&b);
        let _ = inquiry::required_len(&b);
        let _ = vpd::required_len(&b);
        let _ = vpd::parse_supported(&b);
        let _ = vpd::parse_unit_serial(&b);
        let _ = vpd::parse_device_id(&b);
        let _ = rtpg::required_len(&b);
        let _ = rtpg::parse(&b);
        let _ = rtpg::parse_stpg(&b);
        let _ = capacity::parse(&b);
        let _ = pr_in::required_len(&b);
        let _ = pr_in::parse_read_keys(&b);
        let _ = pr_in::parse_read_reservation(&b);
        let _ = pr_in::parse_report_capabilities(&b);
        let _ = pr_in::parse_read_full_status(&b);
        let _ = pr_out::parse_basic(&b);
        let _ = pr_out::parse_move(&b);
        let _ = transport_id::parse(&b);
        let _ = transport_id::parse_exact(&b);
    }

    #[test]
    fn vpd_83_with_a_valid_header_never_panics(body in bytes(400)) {
        let mut b = vec![0, 0x83];
        b.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        b.extend_from_slice(&body);
        if let Ok(id) = vpd::parse_device_id(&b) {
            let _ = id.wwid();
            let _ = id.naa_wwid();
        }
    }

    #[test]
    fn full_status_with_a_valid_header_never_panics(body in bytes(400)) {
        let mut b = vec![0, 0, 0, 1];
        b.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
        b.extend_from_slice(&body);
        let _ = pr_in::parse_read_full_status(&b);
    }

    #[test]
    fn pr_out_decode_never_panics(cdb in bytes(16), params in bytes(200)) {
        let _ = PrOut::decode(&cdb, &params);
    }

    #[test]
    fn classify_never_panics(status in any::<u8>(), host in any::<u16>(), driver in any::<u16>(), s in bytes(64)) {
        let _ = classify(RawStatus { status, host_status: host, driver_status: driver, sense: &s });
    }
}

fn iscsi_name() -> impl Strategy<Value = String> {
    "iqn\\.20[0-9]{2}-[01][0-9]\\.[a-z]{1,12}(\\.[a-z]{1,8}){0,3}:[a-z0-9.-]{1,40}"
}

fn transport_id_strategy() -> impl Strategy<Value = TransportId> {
    prop_oneof![
        any::<u64>().prop_map(|n_port_name| TransportId::Fc { n_port_name }),
        any::<u64>().prop_map(|address| TransportId::Sas { address }),
        (iscsi_name(), prop::option::of(0u64..(1 << 48)))
            .prop_map(|(name, isid)| TransportId::Iscsi { name, isid }),
    ]
}

fn pr_type() -> impl Strategy<Value = PrType> {
    prop::sample::select(PrType::ALL.to_vec())
}

fn access_state() -> impl Strategy<Value = AccessState> {
    prop::sample::select(AccessState::ALL.to_vec())
}

fn register_opts() -> impl Strategy<Value = RegisterOpts> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(transport_id_strategy(), 0..4),
    )
        .prop_map(|(all_tg_pt, aptpl, spec_i_pt)| RegisterOpts {
            all_tg_pt,
            aptpl,
            spec_i_pt,
        })
}

fn pr_out_strategy() -> impl Strategy<Value = PrOut> {
    prop_oneof![
        (any::<u64>(), any::<u64>(), register_opts())
            .prop_map(|(key, new_key, opts)| PrOut::Register { key, new_key, opts }),
        (any::<u64>(), register_opts())
            .prop_map(|(new_key, opts)| PrOut::RegisterAndIgnore { new_key, opts }),
        (any::<u64>(), pr_type()).prop_map(|(key, pr_type)| PrOut::Reserve { key, pr_type }),
        (any::<u64>(), pr_type()).prop_map(|(key, pr_type)| PrOut::Release { key, pr_type }),
        any::<u64>().prop_map(|key| PrOut::Clear { key }),
        (any::<u64>(), any::<u64>(), pr_type(), any::<bool>()).prop_map(
            |(key, victim, pr_type, abort)| PrOut::Preempt {
                key,
                victim,
                pr_type,
                abort
            }
        ),
        (
            any::<u64>(),
            any::<u64>(),
            any::<bool>(),
            any::<bool>(),
            any::<u16>(),
            transport_id_strategy()
        )
            .prop_map(|(key, sa_key, unreg, aptpl, port, transport_id)| {
                PrOut::RegisterAndMove(MoveParams {
                    key,
                    sa_key,
                    unreg,
                    aptpl,
                    rel_tgt_port: RelTgtPortId(port),
                    transport_id,
                })
            }),
    ]
}

fn tpg_descriptor() -> impl Strategy<Value = TpgDescriptor> {
    (
        any::<bool>(),
        access_state(),
        any::<u8>(),
        any::<u16>(),
        0u8..4,
        any::<u8>(),
        prop::collection::vec(any::<u16>(), 0..8),
    )
        .prop_map(
            |(pref, state, sup, id, status, vendor, ports)| TpgDescriptor {
                pref,
                state,
                supported: SupportedStates(sup),
                id: TpgId(id),
                status: match status {
                    0 => TpgStatus::None,
                    1 => TpgStatus::AlteredBySet,
                    2 => TpgStatus::AlteredImplicitly,
                    _ => TpgStatus::Other(3),
                },
                vendor,
                ports: ports.into_iter().map(RelTgtPortId).collect(),
            },
        )
}

fn designator() -> impl Strategy<Value = Designator> {
    prop_oneof![
        bytes(20).prop_map(Designator::VendorSpecific),
        ("[A-Z]{1,8}", bytes(20)).prop_map(|(vendor, id)| Designator::T10VendorId { vendor, id }),
        prop::sample::select(vec![8usize, 12, 16])
            .prop_flat_map(|n| prop::collection::vec(any::<u8>(), n))
            .prop_map(Designator::Eui64),
        (
            prop::sample::select(vec![
                NaaFormat::IeeeExtended,
                NaaFormat::LocallyAssigned,
                NaaFormat::IeeeRegistered,
                NaaFormat::IeeeRegisteredExtended
            ]),
            any::<[u8; 16]>()
        )
            .prop_map(|(format, raw)| {
                let mut bytes = raw[..format.designator_len()].to_vec();
                bytes[0] = (format.code() << 4) | (bytes[0] & 0x0f);
                Designator::Naa { format, bytes }
            }),
        any::<u16>().prop_map(|v| Designator::RelativeTargetPort(RelTgtPortId(v))),
        any::<u16>().prop_map(|v| Designator::TargetPortGroup(TpgId(v))),
        any::<u16>().prop_map(Designator::LogicalUnitGroup),
        any::<[u8; 16]>().prop_map(Designator::Md5),
        iscsi_name().prop_map(Designator::ScsiName),
        any::<[u8; 16]>().prop_map(Designator::Uuid),
    ]
}

proptest! {
    #[test]
    fn pr_out_round_trips(cmd in pr_out_strategy()) {
        let (c, list) = cmd.build().unwrap();
        prop_assert_eq!(&c[5..9], &u32::try_from(list.len()).unwrap().to_be_bytes());
        prop_assert_eq!(PrOut::decode(&c, &list).unwrap(), cmd.clone());
        // Without SPEC_I_PT and outside REGISTER AND MOVE the list is exactly 24 bytes.
        let spec = matches!(&cmd, PrOut::Register { opts, .. } | PrOut::RegisterAndIgnore { opts, .. } if !opts.spec_i_pt.is_empty());
        if !spec && !matches!(cmd, PrOut::RegisterAndMove(_)) {
            prop_assert_eq!(list.len(), 24);
        }
    }

    #[test]
    fn basic_params_round_trip(key in any::<u64>(), sa_key in any::<u64>(), opts in register_opts()) {
        let p = BasicParams { key, sa_key, all_tg_pt: opts.all_tg_pt, aptpl: opts.aptpl, spec_i_pt: opts.spec_i_pt };
        prop_assert_eq!(pr_out::parse_basic(&p.encode().unwrap()).unwrap(), p);
    }

    #[test]
    fn stpg_round_trips(list in prop::collection::vec((any::<u16>(), access_state()), 0..20)) {
        let d: Vec<StpgDescriptor> = list
            .into_iter()
            .map(|(id, state)| if state == AccessState::Offline {
                StpgDescriptor::PortOffline { port: RelTgtPortId(id) }
            } else {
                StpgDescriptor::Group { tpg: TpgId(id), state }
            })
            .collect();
        prop_assert_eq!(rtpg::parse_stpg(&rtpg::encode_stpg(&d)).unwrap(), d);
    }

    #[test]
    fn rtpg_round_trips(ext in prop::option::of(any::<u8>()), groups in prop::collection::vec(tpg_descriptor(), 0..10)) {
        let t = TargetPortGroups {
            format: ext.map_or(RtpgFormat::Standard, |implicit_transition_secs| RtpgFormat::Extended { implicit_transition_secs }),
            groups,
        };
        let enc = t.encode().unwrap();
        prop_assert_eq!(rtpg::required_len(&enc).unwrap(), enc.len());
        prop_assert_eq!(rtpg::parse(&enc).unwrap(), t);
    }

    #[test]
    fn pr_in_round_trips(
        generation in any::<u32>(),
        keys in prop::collection::vec(any::<u64>(), 0..20),
        res in prop::option::of((any::<u64>(), pr_type())),
        regs in prop::collection::vec((any::<u64>(), any::<bool>(), prop::option::of(pr_type()), any::<u16>(), transport_id_strategy()), 0..6),
        flags in any::<[bool; 7]>(),
    ) {
        let k = PrKeys { generation, keys };
        prop_assert_eq!(pr_in::parse_read_keys(&k.encode().unwrap()).unwrap(), k);
        let r = PrReservation { generation, reservation: res.map(|(key, pr_type)| Reservation { key, scope: 0, pr_type }) };
        prop_assert_eq!(pr_in::parse_read_reservation(&r.encode().unwrap()).unwrap(), r);
        let f = PrFullStatus {
            generation,
            registrants: regs
                .into_iter()
                .map(|(key, all_tg_pt, holder, port, transport_id)| Registrant {
                    key,
                    all_tg_pt,
                    holder: holder.is_some(),
                    reservation: holder.map(|t| (0, t)),
                    rel_tgt_port: (!all_tg_pt).then_some(RelTgtPortId(port)),
                    transport_id,
                })
                .collect(),
        };
        prop_assert_eq!(pr_in::parse_read_full_status(&f.encode().unwrap()).unwrap(), f);
        let c = PrCapabilities {
            rlr_c: flags[0], crh: flags[1], sip_c: flags[2], atp_c: flags[3], ptpl_c: flags[4], tmv: flags[5],
            allow_commands: 3, ptpl_a: flags[6],
            types: if flags[5] { PrType::ALL.to_vec() } else { Vec::new() },
        };
        prop_assert_eq!(pr_in::parse_report_capabilities(&c.encode()).unwrap(), c);
    }

    #[test]
    fn device_id_round_trips(ds in prop::collection::vec((designator(), 0u8..3), 0..8)) {
        let id = DeviceId {
            designations: ds
                .into_iter()
                .map(|(designator, a)| Designation {
                    protocol: (a > 0).then_some(5),
                    code_set: CodeSet::Binary,
                    association: match a { 0 => Association::LogicalUnit, 1 => Association::TargetPort, _ => Association::TargetDevice },
                    designator,
                })
                .collect(),
        };
        prop_assert_eq!(vpd::parse_device_id(&id.encode().unwrap()).unwrap(), id);
    }

    #[test]
    fn transport_ids_round_trip(t in transport_id_strategy()) {
        let b = t.encode().unwrap();
        prop_assert_eq!(transport_id::parse(&b).unwrap(), (t, b.len()));
    }

    #[test]
    fn sense_round_trips(desc in any::<bool>(), deferred in any::<bool>(), key in 0u8..16, asc in any::<u8>(), ascq in any::<u8>(),
                         info in prop::option::of(any::<u32>()), sks in prop::option::of(any::<[u8; 3]>())) {
        let s = SenseInfo {
            format: if desc { SenseFormat::Descriptor } else { SenseFormat::Fixed },
            deferred,
            key: SenseKey::from_nibble(key),
            asc,
            ascq,
            information: info.map(u64::from),
            sense_key_specific: sks.map(|b| [b[0] & 0x7f, b[1], b[2]]),
        };
        prop_assert_eq!(sense::parse(&s.encode()).unwrap(), s);
    }

    #[test]
    fn capacity_round_trips(last in any::<u64>(), bl in 1u32.., p_type in 0u8..8, lbppbe in 0u8..16, flags in any::<[bool; 3]>(), la in 0u16..0x4000) {
        let c = capacity::Capacity {
            last_lba: capacity::Lba(last), block_len: bl, prot_en: flags[0], p_type, lbppbe, lbpme: flags[1], lbprz: flags[2], lowest_aligned: la,
        };
        prop_assert_eq!(capacity::parse(&c.encode()).unwrap(), c);
    }
}
