//! The shared iSCSI SR module on the lab's host A rebuilt from captures (multipath's
//! `LabFake::with_iscsid`: target t2 appears on login) with a fake XenAPI.

use std::collections::BTreeMap;
use std::sync::Arc;

use multipath::testing::{LabFake, T2_IQN, fixture};
use sm_core::driver::{Ctx, Host};
use sm_core::request::{DeviceConfig, Request};
use sm_core::secret::Secret;
use sm_core::testing::FakeRunner;
use sm_core::xenapi::Endpoint;
use sm_core::xmlrpc::{Struct, Value};

use sm_core::scsi::AccessState;

use super::*;
use crate::testing::FakeXapi;
use sm_core::ids::ScsiId;

pub(crate) const SR: &str = "7f0e1c3a-1b2c-4d5e-8f90-a1b2c3d4e5f6";
pub(crate) const HOST: &str = "OpaqueRef:host-a";
pub(crate) const LUN1: &str = "360014055ab0c1de00010000000000000";

/// The lab's host A (fake) with a fake XenAPI holding this SR's PBD.
pub(crate) struct World {
    pub(crate) lab: LabFake,
    pub(crate) xapi: FakeXapi,
    pub(crate) host: Host,
}

pub(crate) fn world() -> World {
    let lab = LabFake::with_iscsid();
    let f = lab.sys.paths.host("/etc/iscsi/initiatorname.iscsi");
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    std::fs::write(&f, fixture("initiatorname.stdout")).unwrap();
    let xapi = FakeXapi::start(&lab.dir.path().join("xapi.sock")).unwrap();
    {
        let mut st = xapi.state();
        st.host_other_config
            .insert("iscsi_iqn".into(), "iqn.2026-01.test.lab:host-a".into());
        st.secrets
            .insert("5ec0e7-0001".into(), "labsecret123".into());
        let mut pbd = Struct::new();
        pbd.insert("SR".into(), Value::from(crate::testing::SR_REF));
        pbd.insert("host".into(), Value::from(HOST));
        pbd.insert("currently_attached".into(), Value::Bool(false));
        pbd.insert(
            "device_config".into(),
            Value::string_map([("SCSIid", LUN1)]),
        );
        pbd.insert("other_config".into(), Value::string_map::<&str, &str>([]));
        st.pbds.insert("OpaqueRef:pbd-mine".into(), pbd);
    }
    let host = Host::with(
        Arc::new(FakeRunner::new()),
        lab.dir.path(),
        Endpoint::Unix(xapi.socket.clone()),
    );
    World { lab, xapi, host }
}

pub(crate) fn request(dconf: &[(&str, &str)]) -> Request {
    Request {
        command_name: "sr_attach".into(),
        host_ref: HOST.into(),
        device_config: DeviceConfig::new(
            dconf
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        ),
        session_ref: Some(Secret::new("OpaqueRef:session")),
        sr_uuid: Some(SR.into()),
        sr_ref: Some(crate::testing::SR_REF.into()),
        ..Request::default()
    }
}

pub(crate) const T2_DCONF: &[(&str, &str)] = &[
    ("target", "10.99.0.1,10.99.0.2"),
    ("targetIQN", T2_IQN),
    ("chapuser", "labuser"),
    ("chappassword_secret", "5ec0e7-0001"),
];

pub(crate) fn script_t2_discovery(lab: &LabFake) {
    lab.script_t2_discovery();
}

pub(crate) fn t2_sessions(w: &World) -> usize {
    multipath::iscsi::login::logged_in(&w.lab.sys, &multipath::iscsi::Iqn::new(T2_IQN).unwrap())
        .len()
}

pub(crate) fn code(r: SmResult<impl std::fmt::Debug>) -> i32 {
    r.unwrap_err().code.value()
}

#[test]
fn device_config_faults_in_sms_order() {
    let w = world();
    let load = |d: &[(&str, &str)]| {
        let req = request(d);
        let cx = Ctx::new(&req, &w.host);
        IscsiConfig::load(&cx, true).map(|c| format!("{c:?}"))
    };
    assert_eq!(code(load(&[])), 95);
    assert_eq!(code(load(&[("target", " ")])), 95);
    assert_eq!(
        code(load(&[("target", "10.99.0.1"), ("localIQN", "not-an-iqn")])),
        97
    );
    assert_eq!(
        code(load(&[
            ("target", "10.99.0.1"),
            ("chapuser", "u"),
            ("chappassword_secret", "nosuch")
        ])),
        20
    );
    for port in ["0", "70000", "x"] {
        assert_eq!(
            code(load(&[("target", "10.99.0.1"), ("port", port)])),
            142,
            "{port}"
        );
    }
    assert_eq!(code(load(&[("target", "a b")])), 140);
    assert_eq!(
        code(load(&[("target", "10.99.0.1"), ("SCSIid", "../x")])),
        107
    );
    assert_eq!(
        code(load(&[("target", "10.99.0.1"), ("targetIQN", "bogus")])),
        96
    );
    w.xapi.state().host_other_config.clear();
    assert_eq!(code(load(&[("target", "10.99.0.1")])), 97);

    let req = request(&[
        ("target", "10.99.0.1, array.example:3262"),
        ("port", "3261"),
        ("targetIQN", "*"),
        ("chapuser", "labuser"),
        ("chappassword_secret", "5ec0e7-0001"),
        ("incoming_chapuser", "target"),
        ("incoming_chappassword", "mutual123456"),
        ("multihomed", "false"),
        ("localIQN", "iqn.2026-01.test.lab:host-a"),
    ]);
    let cx = Ctx::new(&req, &w.host);
    let c = IscsiConfig::load(&cx, true).unwrap();
    assert_eq!(
        c.hosts.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["10.99.0.1:3261", "array.example:3262"]
    );
    assert_eq!(c.target_name, Some(TargetName::Any));
    assert_eq!(
        c.auth.chap.as_ref().unwrap().secret.expose(),
        "labsecret123"
    );
    assert_eq!(c.auth.incoming.as_ref().unwrap().user, "target");
    assert!(!c.multihomed);
    assert!(!format!("{c:?}").contains("labsecret123"));
}

#[test]
fn missing_target_iqn_lists_the_targets() {
    let w = world();
    script_t2_discovery(&w.lab);
    let req = request(&[
        ("target", "10.99.0.1,10.99.0.2"),
        ("chapuser", "labuser"),
        ("chappassword_secret", "5ec0e7-0001"),
    ]);
    let cx = Ctx::new(&req, &w.host);
    let sr = IscsiSr::load(&cx, &w.lab.sys, true).unwrap();
    let e = sr.require_target().unwrap_err();
    assert_eq!(e.code.value(), 96);
    let listing = cx.take_stderr();
    assert_eq!(listing.matches("<TGT>").count(), 5, "{listing}");
    assert!(
        listing.contains("<TargetIQN>iqn.2026-01.test.lab:t2</TargetIQN>"),
        "{listing}"
    );
    assert!(
        listing
            .contains("<IPAddress>10.99.0.1,10.99.0.2</IPAddress>\n\t\t<TargetIQN>*</TargetIQN>"),
        "{listing}"
    );
    assert_eq!(t2_sessions(&w), 0);

    w.lab.net.set_up("10.99.0.1:3260", false);
    w.lab.net.set_up("10.99.0.2:3260", false);
    let req = request(&[("target", "10.99.0.1,10.99.0.2")]);
    let cx = Ctx::new(&req, &w.host);
    let sr = IscsiSr::load(&cx, &w.lab.sys, true).unwrap();
    assert_eq!(sr.require_target().unwrap_err().code.value(), 141);
    assert!(cx.take_stderr().is_empty());
}

#[test]
fn missing_scsi_id_lists_the_luns_and_logs_out() {
    let w = world();
    script_t2_discovery(&w.lab);
    let req = request(T2_DCONF);
    let cx = Ctx::new(&req, &w.host);
    let sr = IscsiSr::load(&cx, &w.lab.sys, true).unwrap();
    let e = sr.require_complete().unwrap_err();
    assert_eq!(e.code.value(), 107);
    let listing = cx.take_stderr();
    assert_eq!(listing.matches("<LUN>").count(), 2, "{listing}");
    assert!(
        listing.contains(&format!(
            "<LUNid>1</LUNid>\n\t\t<size>67108864</size>\n\t\t<SCSIid>{LUN1}</SCSIid>"
        )),
        "{listing}"
    );
    assert_eq!(t2_sessions(&w), 0, "the listing logged out again");
    let calls: Vec<String> = w.lab.runner.calls().iter().map(|c| c.join(" ")).collect();
    assert!(calls.iter().all(|c| !c.contains("labsecret123")));
}

#[test]
fn connect_records_and_disconnects() {
    let w = world();
    script_t2_discovery(&w.lab);
    let mut d = T2_DCONF.to_vec();
    d.push(("SCSIid", LUN1));
    let req = request(&d);
    let cx = Ctx::new(&req, &w.host);
    let sr = IscsiSr::load(&cx, &w.lab.sys, true).unwrap();
    let lun = sr.connect(SR, &ScsiId::new(LUN1).unwrap()).unwrap();
    assert_eq!(lun.map, w.lab.sys.dev_path(&format!("mapper/{LUN1}")));
    assert_eq!((lun.active_paths, lun.total_paths, lun.sessions), (2, 2, 2));
    assert!(lun.alua.is_none());
    sr.record_paths(&lun).unwrap();
    {
        let st = w.xapi.state();
        let oc = st.pbds["OpaqueRef:pbd-mine"]["other_config"]
            .to_string_map()
            .unwrap();
        assert_eq!(
            oc.get(&format!("mpath-{LUN1}")).map(String::as_str),
            Some("[2, 2]")
        );
        assert_eq!(oc.get("multipathed").map(String::as_str), Some("true"));
        assert_eq!(oc.get("iscsi_sessions").map(String::as_str), Some("2"));
        assert_eq!(
            st.sr_sm_config.get("multipathable").map(String::as_str),
            Some("true")
        );
    }
    // A path fails: the count drops, the max stays (mpathcount's rule).
    w.lab
        .multipathd
        .set("show maps json", &fixture("multipathd-show-maps-json-t2.stdout").replace(
            "\"dev\" : \"sdn\",\n            \"dev_t\" : \"8:208\",\n            \"dm_st\" : \"active\",\n            \"dev_st\" : \"running\",\n            \"chk_st\" : \"ready\"",
            "\"dev\" : \"sdn\",\n            \"dev_t\" : \"8:208\",\n            \"dm_st\" : \"failed\",\n            \"dev_st\" : \"running\",\n            \"chk_st\" : \"faulty\"",
        ));
    assert_eq!(
        sr.refresh_paths(&ScsiId::new(LUN1).unwrap()).unwrap(),
        Some((1, 2))
    );
    sr.forget_paths(&ScsiId::new(LUN1).unwrap()).unwrap();
    assert!(
        w.xapi.state().pbds["OpaqueRef:pbd-mine"]["other_config"]
            .to_string_map()
            .unwrap()
            .is_empty()
    );
    assert_eq!(t2_sessions(&w), 2);
    sr.disconnect(SR).unwrap();
    assert_eq!(t2_sessions(&w), 0);
    sr.disconnect(SR).unwrap();
}

#[test]
fn bad_input_leaves_nothing_logged_in() {
    // A SCSI id the target does not expose.
    let w = world();
    script_t2_discovery(&w.lab);
    let req = request(T2_DCONF);
    let cx = Ctx::new(&req, &w.host);
    let sr = IscsiSr::load(&cx, &w.lab.sys, true).unwrap();
    let e = sr
        .connect(
            SR,
            &ScsiId::new("360014055ab0c1de00990000000000000").unwrap(),
        )
        .unwrap_err();
    assert_eq!(e.code.value(), 107, "{e:?}");
    assert_eq!(t2_sessions(&w), 0);

    // A target the portals do not report: 83 and the IQN listing.
    let w = world();
    script_t2_discovery(&w.lab);
    script_t2_discovery(&w.lab);
    let req = request(&[
        ("target", "10.99.0.1"),
        ("targetIQN", "iqn.2026-01.test.lab:nosuch"),
    ]);
    let cx = Ctx::new(&req, &w.host);
    let sr = IscsiSr::load(&cx, &w.lab.sys, true).unwrap();
    w.lab.runner.on(
        &["iscsiadm", "-m", "discovery"],
        0,
        &fixture("iscsiadm-discovery-t2.stdout"),
        "",
    );
    w.lab.runner.on(
        &["iscsiadm", "-m", "discovery"],
        0,
        &fixture("iscsiadm-discovery-t2.stdout"),
        "",
    );
    let e = sr.connect(SR, &ScsiId::new(LUN1).unwrap()).unwrap_err();
    assert_eq!(e.code.value(), 83, "{e:?}");
    assert!(cx.take_stderr().contains("<iscsi-target-iqns>"));

    // CHAP refused.
    let w = world();
    script_t2_discovery(&w.lab);
    w.lab.runner.on(
        &[
            "iscsiadm",
            "-m",
            "node",
            "-p",
            "10.99.0.1:3260",
            "-T",
            T2_IQN,
            "-l",
        ],
        24,
        "",
        &fixture("iscsiadm-login-wrong-chap.stderr"),
    );
    let req = request(T2_DCONF);
    let cx = Ctx::new(&req, &w.host);
    let sr = IscsiSr::load(&cx, &w.lab.sys, true).unwrap();
    assert_eq!(
        sr.connect(SR, &ScsiId::new(LUN1).unwrap())
            .unwrap_err()
            .code
            .value(),
        68
    );
    assert_eq!(t2_sessions(&w), 0);

    // Unreachable portals.
    let w = world();
    w.lab.net.set_up("10.99.0.1:3260", false);
    w.lab.net.set_up("10.99.0.2:3260", false);
    let req = request(T2_DCONF);
    let cx = Ctx::new(&req, &w.host);
    let sr = IscsiSr::load(&cx, &w.lab.sys, true).unwrap();
    assert_eq!(
        sr.connect(SR, &ScsiId::new(LUN1).unwrap())
            .unwrap_err()
            .code
            .value(),
        141
    );
    assert!(w.lab.runner.calls().is_empty());
}

#[test]
fn scsi_id_in_use_by_another_sr() {
    let w = world();
    let mut d = T2_DCONF.to_vec();
    d.push(("SCSIid", LUN1));
    let req = request(&d);
    let cx = Ctx::new(&req, &w.host);
    let sr = IscsiSr::load(&cx, &w.lab.sys, true).unwrap();
    sr.ensure_scsi_id_unused(SR).unwrap();
    sr.ensure_not_attached_here().unwrap();
    {
        let mut st = w.xapi.state();
        let mut other = st.pbds["OpaqueRef:pbd-mine"].clone();
        other.insert("SR".into(), Value::from("OpaqueRef:sr-other"));
        other.insert("currently_attached".into(), Value::Bool(true));
        st.pbds.insert("OpaqueRef:pbd-other".into(), other);
    }
    assert_eq!(sr.ensure_scsi_id_unused(SR).unwrap_err().code.value(), 16);
    assert_eq!(sr.ensure_not_attached_here().unwrap_err().code.value(), 16);
    assert!(w.lab.runner.calls().is_empty());
}

#[test]
fn another_initiator_name_with_sessions_is_refused() {
    let w = world();
    let req = request(&[
        ("target", "10.99.0.1"),
        ("targetIQN", T2_IQN),
        ("localIQN", "iqn.2026-01.test.lab:other"),
    ]);
    let cx = Ctx::new(&req, &w.host);
    let sr = IscsiSr::load(&cx, &w.lab.sys, true).unwrap();
    assert_eq!(
        sr.connect(SR, &ScsiId::new(LUN1).unwrap())
            .unwrap_err()
            .code
            .value(),
        70
    );
}

#[test]
fn an_lu_without_optimized_group_gets_one() {
    let w = world();
    script_t2_discovery(&w.lab);
    let lu = w.lab.lu(LUN1);
    lu.set_group_state(sm_core::scsi::TpgId(1), AccessState::Standby);
    lu.set_group_state(sm_core::scsi::TpgId(2), AccessState::Standby);
    let req = request(T2_DCONF);
    let cx = Ctx::new(&req, &w.host);
    let mut sr = IscsiSr::load(&cx, &w.lab.sys, true).unwrap();
    sr.settings.alua.host = std::time::Duration::ZERO;
    let lun = sr.connect(SR, &ScsiId::new(LUN1).unwrap()).unwrap();
    let r = lun.alua.expect("an ALUA change");
    assert_eq!(r.changes[0].tpg_id, 1);
    assert_eq!(
        lu.group_state(sm_core::scsi::TpgId(1)),
        Some(AccessState::ActiveOptimized)
    );
    sr.disconnect(SR).unwrap();
}

#[test]
fn a_target_attached_whole_opens_and_closes_luns() {
    let w = world();
    script_t2_discovery(&w.lab);
    let req = request(T2_DCONF);
    let cx = Ctx::new(&req, &w.host);
    let sr = IscsiSr::load(&cx, &w.lab.sys, true).unwrap();
    assert_eq!(
        code(sr.open(SR, &ScsiId::new(LUN1).unwrap())),
        47,
        "not attached yet: SRUnavailable"
    );
    assert!(sr.luns(SR).is_empty());
    let targets = sr.attach_target(SR).unwrap();
    assert_eq!(
        targets.iter().map(Iqn::as_str).collect::<Vec<_>>(),
        [T2_IQN]
    );
    assert_eq!(sr.counted_targets(SR), targets);
    let luns = sr.luns(SR);
    assert_eq!(luns.iter().map(|l| l.lun).collect::<Vec<_>>(), [0, 1]);
    let lun = sr.open(SR, &ScsiId::new(LUN1).unwrap()).unwrap();
    assert_eq!(lun.map, w.lab.sys.dev_path(&format!("mapper/{LUN1}")));
    assert_eq!((lun.active_paths, lun.total_paths), (2, 2));
    assert_eq!(
        code(sr.open(
            SR,
            &ScsiId::new("360014055ab0c1de00990000000000000").unwrap()
        )),
        107
    );
    sr.close(&ScsiId::new(LUN1).unwrap()).unwrap();
    let calls: Vec<String> = w.lab.runner.calls().iter().map(|c| c.join(" ")).collect();
    assert!(calls.contains(&format!("multipath -f {LUN1}")), "{calls:?}");
    sr.disconnect(SR).unwrap();
    assert_eq!(t2_sessions(&w), 0);
    assert!(sr.counted_targets(SR).is_empty());
}

#[test]
fn each_connect_step_has_its_smapi_code() {
    let lu = || LUN1.to_string();
    let timeout = || MultipathError::Timeout {
        what: "x".into(),
        after: std::time::Duration::from_secs(1),
        last: "y".into(),
    };
    let unreachable = || MultipathError::Unreachable {
        portal: "10.99.0.1:3260".into(),
        reason: "refused".into(),
    };
    let map = |e: ConnectError| connect_fault(e, |e| fault(SmCode::ISCSILogin, e));
    let t2 = || Iqn::new(T2_IQN).unwrap();
    let cases = [
        (ConnectError::Login(Box::new(unreachable())), 141),
        (
            ConnectError::Login(Box::new(MultipathError::Invalid("x".into()))),
            68,
        ),
        (
            ConnectError::LuDisks {
                scsi_id: ScsiId::new(&lu()).unwrap(),
                target: t2(),
                source: Box::new(timeout()),
            },
            67,
        ),
        (
            ConnectError::NoDisk {
                scsi_id: ScsiId::new(&lu()).unwrap(),
                targets: vec![t2()],
            },
            107,
        ),
        (
            ConnectError::Map {
                scsi_id: ScsiId::new(&lu()).unwrap(),
                source: Box::new(timeout()),
            },
            432,
        ),
        (
            ConnectError::Discover {
                scsi_id: ScsiId::new(&lu()).unwrap(),
                source: Box::new(timeout()),
            },
            47,
        ),
        (
            ConnectError::NotDiscovered {
                scsi_id: ScsiId::new(&lu()).unwrap(),
            },
            432,
        ),
        (
            ConnectError::Serve {
                scsi_id: ScsiId::new(&lu()).unwrap(),
                source: ServeError::NoActiveGroup { lu: lu() },
            },
            47,
        ),
        (
            ConnectError::Serve {
                scsi_id: ScsiId::new(&lu()).unwrap(),
                source: ServeError::NoCandidate { lu: lu() },
            },
            47,
        ),
        (
            ConnectError::Serve {
                scsi_id: ScsiId::new(&lu()).unwrap(),
                source: ServeError::SetAccess {
                    lu: lu(),
                    tpg_id: 1,
                    source: Box::new(timeout()),
                },
            },
            47,
        ),
    ];
    for (e, want) in cases {
        let text = format!("{e:?}");
        assert_eq!(map(e).code.value(), want, "{text}");
    }
    // The opterr is the cause's text, as before the workflow moved.
    let e = map(ConnectError::NoDisk {
        scsi_id: ScsiId::new(&lu()).unwrap(),
        targets: vec![t2()],
    });
    assert_eq!(
        e.detail.as_deref(),
        Some(format!("no LUN with SCSIid {LUN1} on {T2_IQN}").as_str())
    );
    let e = map(ConnectError::Map {
        scsi_id: ScsiId::new(&lu()).unwrap(),
        source: Box::new(timeout()),
    });
    assert_eq!(e.detail.as_deref(), Some("x did not happen within 1s: y"));
}

/// The config a static VDI attaches from at boot: the CHAP secret resolved in plaintext (its
/// `_secret` reference gone), the initiator from host.other_config unless device_config names
/// one, the host's multipathing keys; an unknown secret is fault 20 and no iscsi_iqn anywhere
/// fault 97.
#[test]
fn standalone_device_config_resolves_what_boot_cannot_ask_xapi_for() {
    let w = world();
    w.xapi
        .state()
        .host_other_config
        .insert("multipathing".into(), "true".into());
    let req = request(T2_DCONF);
    let cx = Ctx::new(&req, &w.host);
    let dc = config::standalone_device_config(&cx).unwrap();
    assert_eq!(
        dc.get("chappassword").map(String::as_str),
        Some("labsecret123")
    );
    assert!(!dc.contains_key("chappassword_secret"), "{dc:?}");
    assert_eq!(
        dc.get("localIQN").map(String::as_str),
        Some("iqn.2026-01.test.lab:host-a")
    );
    assert_eq!(dc.get("multipathing").map(String::as_str), Some("true"));
    assert_eq!(dc.get("targetIQN").map(String::as_str), Some(T2_IQN));

    let mut own = T2_DCONF.to_vec();
    own.push(("localIQN", "iqn.2026-01.test.lab:mine"));
    let req = request(&own);
    let dc = config::standalone_device_config(&Ctx::new(&req, &w.host)).unwrap();
    assert_eq!(
        dc.get("localIQN").map(String::as_str),
        Some("iqn.2026-01.test.lab:mine")
    );

    let req = request(&[("target", "10.99.0.1"), ("chappassword_secret", "nope")]);
    assert_eq!(
        code(config::standalone_device_config(&Ctx::new(&req, &w.host))),
        20
    );
    w.xapi.state().host_other_config.clear();
    let req = request(&[("target", "10.99.0.1")]);
    assert_eq!(
        code(config::standalone_device_config(&Ctx::new(&req, &w.host))),
        97
    );
}
