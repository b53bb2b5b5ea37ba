//! The driver's iSCSI half on the lab's host A rebuilt from captures (target t2 appears on
//! login), with a fake XenAPI.

use sm_core::driver::Ctx;

use super::*;
use crate::iscsi_sr::tests::{
    LUN1, T2_DCONF, code, request, script_t2_discovery, t2_sessions, world,
};

fn with_scsi_id() -> Vec<(&'static str, &'static str)> {
    let mut d = T2_DCONF.to_vec();
    d.push(("SCSIid", LUN1));
    d
}

#[test]
fn probe_answers_as_sm_at_each_stage() {
    let w = world();
    let lun = IscsiLun::on(w.lab.sys.clone());
    script_t2_discovery(&w.lab);
    let never = |_: &PathBuf| -> SmResult<String> { panic!("no LUN chosen yet") };

    let mut req = request(&[("target", "10.99.0.1,10.99.0.2")]);
    req.command_name = "sr_probe".into();
    let cx = Ctx::new(&req, &w.host);
    assert_eq!(code(lun.probe(&cx, never)), 96);
    assert!(cx.take_stderr().contains("<iscsi-target-iqns>"));

    script_t2_discovery(&w.lab);
    let mut req = request(T2_DCONF);
    req.command_name = "sr_probe".into();
    let cx = Ctx::new(&req, &w.host);
    assert_eq!(code(lun.probe(&cx, never)), 107);
    let listing = cx.take_stderr();
    let luns = sm_core::probe_xml::read(&listing).expect("the LUN listing");
    assert_eq!(luns.root(), "iscsi-target", "{listing}");
    assert!(
        luns.records().iter().any(|r| r.get("SCSIid") == Some(LUN1)),
        "{listing}"
    );
    assert_eq!(t2_sessions(&w), 0);

    script_t2_discovery(&w.lab);
    let mut req = request(&with_scsi_id());
    req.command_name = "sr_probe".into();
    let cx = Ctx::new(&req, &w.host);
    let seen = lun
        .probe(&cx, |map| {
            assert_eq!(t2_sessions(&w), 2, "logged in while the probe looks");
            Ok(map.display().to_string())
        })
        .unwrap();
    assert_eq!(
        seen,
        w.lab
            .sys
            .dev_path(&format!("mapper/{LUN1}"))
            .display()
            .to_string()
    );
    assert_eq!(t2_sessions(&w), 0, "logged out again");
    assert!(cx.take_stderr().is_empty());

    w.lab.net.set_up("10.99.0.1:3260", false);
    w.lab.net.set_up("10.99.0.2:3260", false);
    assert_eq!(code(lun.probe(&cx, never)), 141);
}

#[test]
fn attach_records_paths_and_detach_flushes_and_logs_out() {
    let w = world();
    let lun = IscsiLun::on(w.lab.sys.clone());
    script_t2_discovery(&w.lab);
    let req = request(&with_scsi_id());
    let cx = Ctx::new(&req, &w.host);
    let map = lun.connect(&cx).unwrap();
    assert_eq!(map, w.lab.sys.dev_path(&format!("mapper/{LUN1}")));
    assert_eq!(lun.device(&cx).unwrap(), map);
    let oc = |w: &crate::iscsi_sr::tests::World| {
        w.xapi.state().pbds["OpaqueRef:pbd-mine"]["other_config"]
            .to_string_map()
            .unwrap()
    };
    assert_eq!(
        oc(&w).get(&format!("mpath-{LUN1}")).map(String::as_str),
        Some("[2, 2]")
    );
    // pbd-plug twice: counted once.
    script_t2_discovery(&w.lab);
    lun.connect(&cx).unwrap();
    lun.refresh_paths(&cx);
    assert_eq!(t2_sessions(&w), 2);

    lun.disconnect(&cx).unwrap();
    assert!(oc(&w).is_empty(), "{:?}", oc(&w));
    let calls: Vec<String> = w.lab.runner.calls().iter().map(|c| c.join(" ")).collect();
    assert!(calls.contains(&format!("multipath -f {LUN1}")), "{calls:?}");
    assert_eq!(t2_sessions(&w), 0);
    // pbd-unplug twice: nothing to do.
    let before = w.lab.runner.calls().len();
    lun.disconnect(&cx).unwrap();
    assert_eq!(w.lab.runner.calls().len(), before);
}

#[test]
fn create_refuses_a_lun_another_sr_uses() {
    let w = world();
    let lun = IscsiLun::on(w.lab.sys.clone());
    {
        let mut st = w.xapi.state();
        let mut other = st.pbds["OpaqueRef:pbd-mine"].clone();
        other.insert(
            "SR".into(),
            sm_core::xmlrpc::Value::from("OpaqueRef:sr-other"),
        );
        st.pbds.insert("OpaqueRef:pbd-other".into(), other);
    }
    let mut req = request(&with_scsi_id());
    req.command_name = "sr_create".into();
    let cx = Ctx::new(&req, &w.host);
    assert_eq!(code(lun.connect(&cx)), 16);
    assert!(w.lab.runner.calls().is_empty(), "nothing logged in");
    script_t2_discovery(&w.lab);
    assert_eq!(
        code(lun.connect(&Ctx::new(&request(T2_DCONF), &w.host))),
        107
    );
    assert_eq!(
        scsi_id(&Ctx::new(&request(&[("SCSIid", "a/b")]), &w.host))
            .unwrap_err()
            .code
            .value(),
        107
    );
}
