//! The checker on synthetic traces: every rule accepts the appendix sequence and reports the
//! first deviation; capability gating and xapi's elisions are honoured.

use super::*;
use crate::trace::Event;

const ALL_CAPS: &[&str] = &["VDI_ACTIVATE", "VDI_DEACTIVATE", "VDI_CLONE", "SR_PROBE"];

#[derive(Default)]
struct Trace {
    events: Vec<Event>,
    id: u64,
}

impl Trace {
    fn with_caps(caps: &[&str]) -> Trace {
        let mut t = Trace::default();
        t.events.push(Event::Driver {
            sr_type: "xsmfile".into(),
            plugin: "XSMFileSR".into(),
            capabilities: caps.iter().map(|c| c.to_string()).collect(),
        });
        t
    }

    /// One xe command; each call is `command host object`, the object a VDI (or `sr:<uuid>`).
    fn xe(&mut self, argv: &str, out: &str, calls: &[&str]) -> &mut Trace {
        self.id += 1;
        let id = self.id;
        self.events.push(Event::XeBegin {
            id,
            argv: argv.split(' ').map(String::from).collect(),
            ts: 0.0,
        });
        for c in calls {
            let mut w = c.split(' ');
            let (command, host, obj) =
                (w.next().unwrap(), w.next().unwrap(), w.next().unwrap_or(""));
            let (sr, vdi) = match obj.strip_prefix("sr:") {
                Some(s) => (Some(s.to_string()), None),
                None if obj.is_empty() => (None, None),
                None => (Some("s1".to_string()), Some(obj.to_string())),
            };
            let result = w
                .next()
                .map(|u| serde_json::json!({"uuid": u, "location": u}));
            self.events.push(Event::Smapi(Box::new(SmapiCall {
                xe: Some(id),
                command: command.into(),
                host: host.into(),
                sr_type: "xsmfile".into(),
                sr,
                vdi,
                ok: true,
                result,
                ..SmapiCall::default()
            })));
        }
        self.events.push(Event::XeEnd {
            id,
            code: 0,
            stdout: format!("{out}\n"),
            stderr: String::new(),
            ms: 1,
        });
        self
    }

    fn verdicts(&self) -> Vec<Verdict> {
        check(&self.events)
    }

    fn ok(&self) {
        if let Some(m) = first_mismatch(&self.verdicts()) {
            panic!("unexpected mismatch: {m}");
        }
    }

    fn fails_with(&self, needle: &str) {
        let m = first_mismatch(&self.verdicts()).expect("expected a mismatch");
        assert!(m.contains(needle), "{m}");
    }
}

fn cycle(host: &str, v: &str) -> Vec<String> {
    ["vdi_attach", "vdi_activate", "vdi_deactivate", "vdi_detach"]
        .iter()
        .map(|c| format!("{c} {host} {v}"))
        .collect()
}

fn calls(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A pool with an SR and an installed VM with disks d0 (boot) and d1.
fn installed(caps: &[&str]) -> Trace {
    let mut t = Trace::with_caps(caps);
    t.xe(
        "sr-create type=xsmfile",
        "s1",
        &["sr_create h1 sr:s1", "sr_attach h1 sr:s1"],
    );
    let mut inst = vec![
        "vdi_create h1 d0".to_string(),
        "vdi_create h1 d1".to_string(),
    ];
    let gated = |c: &str| caps.contains(&"VDI_ACTIVATE") || !c.contains("activate");
    for phase in [
        ["vdi_attach", "vdi_activate"],
        ["vdi_deactivate", "vdi_detach"],
    ] {
        for d in ["d0", "d1"] {
            for c in phase.iter().filter(|c| gated(c)) {
                inst.push(format!("{c} h1 {d}"));
            }
        }
    }
    t.xe(
        "vm-install template=x new-name-label=TestVM",
        "vm1",
        &calls(&inst),
    );
    t
}

#[test]
fn full_vm_lifecycle_passes() {
    let mut t = installed(ALL_CAPS);
    let mut start = cycle("h1", "d0");
    start.extend(
        [
            "vdi_attach h1 d0",
            "vdi_activate h1 d0",
            "vdi_attach h1 d1",
            "vdi_activate h1 d1",
        ]
        .map(String::from),
    );
    t.xe("vm-start uuid=vm1", "", &calls(&start));
    t.xe(
        "vm-shutdown uuid=vm1",
        "",
        &[
            "vdi_deactivate h1 d0",
            "vdi_detach h1 d0",
            "vdi_deactivate h1 d1",
            "vdi_detach h1 d1",
        ],
    );
    t.xe("vm-start uuid=vm1", "", &calls(&start));
    let mut susp = vec!["vdi_create h1 img".to_string()];
    susp.extend(cycle("h1", "img"));
    susp.extend(
        [
            "vdi_deactivate h1 d0",
            "vdi_detach h1 d0",
            "vdi_deactivate h1 d1",
            "vdi_detach h1 d1",
        ]
        .map(String::from),
    );
    t.xe("vm-suspend uuid=vm1", "", &calls(&susp));
    t.xe(
        "vm-resume uuid=vm1",
        "",
        &[
            "vdi_attach h1 img",
            "vdi_activate h1 img",
            "vdi_attach h1 d0",
            "vdi_activate h1 d0",
            "vdi_attach h1 d1",
            "vdi_activate h1 d1",
            "vdi_deactivate h1 img",
            "vdi_detach h1 img",
            "vdi_delete h1 img",
        ],
    );
    t.xe(
        "vm-migrate uuid=vm1 host=h1",
        "",
        &[
            "vdi_deactivate h1 d0",
            "vdi_deactivate h1 d1",
            "vdi_activate h1 d0",
            "vdi_activate h1 d1",
        ],
    );
    t.xe(
        "vm-shutdown uuid=vm1 --force",
        "",
        &[
            "vdi_deactivate h1 d0",
            "vdi_detach h1 d0",
            "vdi_deactivate h1 d1",
            "vdi_detach h1 d1",
        ],
    );
    t.xe(
        "vm-clone uuid=vm1 new-name-label=C",
        "vm2",
        &["vdi_clone h1 d0 c0", "vdi_clone h1 d1 c1"],
    );
    t.xe(
        "vm-uninstall uuid=vm2 --force",
        "",
        &[
            "vdi_detach h1 c0",
            "vdi_deactivate h1 c0",
            "vdi_delete h1 c0",
            "vdi_detach h1 c1",
            "vdi_deactivate h1 c1",
            "vdi_delete h1 c1",
        ],
    );
    t.ok();
}

#[test]
fn vm_start_missing_a_disk_is_reported() {
    let mut t = installed(ALL_CAPS);
    t.xe(
        "vm-start uuid=vm1",
        "",
        &["vdi_attach h1 d0", "vdi_activate h1 d0"],
    );
    t.fails_with("vm-start attaches every disk");
}

#[test]
fn wrong_order_is_reported_with_the_command() {
    let mut t = installed(ALL_CAPS);
    t.xe(
        "vm-start uuid=vm1",
        "",
        &[
            "vdi_activate h1 d0",
            "vdi_attach h1 d0",
            "vdi_attach h1 d1",
            "vdi_activate h1 d1",
        ],
    );
    let m = first_mismatch(&t.verdicts()).unwrap();
    assert!(m.starts_with("xe vm-start uuid=vm1: disk d0"), "{m}");
}

#[test]
fn without_vdi_activate_no_activate_is_expected() {
    let caps = &["VDI_CLONE"];
    let mut t = installed(caps);
    t.xe(
        "vm-start uuid=vm1",
        "",
        &["vdi_attach h1 d0", "vdi_attach h1 d1"],
    );
    t.xe(
        "vm-shutdown uuid=vm1",
        "",
        &["vdi_detach h1 d0", "vdi_detach h1 d1"],
    );
    t.ok();
    let mut bad = installed(caps);
    bad.xe(
        "vm-start uuid=vm1",
        "",
        &["vdi_attach h1 d0", "vdi_activate h1 d0", "vdi_attach h1 d1"],
    );
    bad.fails_with("disk d0");
}

#[test]
fn vm_clone_without_vdi_clone_is_create_and_copy() {
    let caps = &["VDI_ACTIVATE", "VDI_DEACTIVATE"];
    let mut t = installed(caps);
    let mut clone = Vec::new();
    for (src, dst) in [("d0", "n0"), ("d1", "n1")] {
        clone.push(format!("vdi_create h1 {dst}"));
        clone.extend(["vdi_attach", "vdi_activate"].map(|c| format!("{c} h1 {src}")));
        clone.extend(["vdi_attach", "vdi_activate"].map(|c| format!("{c} h1 {dst}")));
        clone.extend(["vdi_deactivate", "vdi_detach"].map(|c| format!("{c} h1 {dst}")));
        clone.extend(["vdi_deactivate", "vdi_detach"].map(|c| format!("{c} h1 {src}")));
    }
    t.xe("vm-clone uuid=vm1 new-name-label=C", "vm2", &calls(&clone));
    t.ok();
    let mut bad = installed(caps);
    bad.xe(
        "vm-clone uuid=vm1 new-name-label=C",
        "vm2",
        &["vdi_clone h1 d0 c0", "vdi_clone h1 d1 c1"],
    );
    bad.fails_with("was not copied");
}

#[test]
fn cross_host_migration_phases_and_hosts() {
    let mut t = installed(ALL_CAPS);
    let mut start = cycle("h1", "d0");
    start.extend(
        [
            "vdi_attach h1 d0",
            "vdi_activate h1 d0",
            "vdi_attach h1 d1",
            "vdi_activate h1 d1",
        ]
        .map(String::from),
    );
    t.xe("vm-start uuid=vm1", "", &calls(&start));
    let good = [
        "vdi_attach h2 d0",
        "vdi_attach h2 d1",
        "vdi_deactivate h1 d0",
        "vdi_deactivate h1 d1",
        "vdi_activate h2 d0",
        "vdi_activate h2 d1",
        "vdi_detach h1 d0",
        "vdi_detach h1 d1",
    ];
    let mut ok = Trace {
        events: t.events.clone(),
        id: t.id,
    };
    ok.xe("vm-migrate uuid=vm1 host=h2", "", &good);
    ok.ok();
    let mut wrong_host = Trace {
        events: t.events.clone(),
        id: t.id,
    };
    wrong_host.xe(
        "vm-migrate uuid=vm1 host=h2",
        "",
        &[
            "vdi_attach h2 d0",
            "vdi_attach h2 d1",
            "vdi_deactivate h2 d0",
            "vdi_deactivate h1 d1",
            "vdi_activate h2 d0",
            "vdi_activate h2 d1",
            "vdi_detach h1 d0",
            "vdi_detach h1 d1",
        ],
    );
    wrong_host.fails_with("wrong host");
    t.xe(
        "vm-migrate uuid=vm1 host=h2",
        "",
        &[
            "vdi_attach h2 d0",
            "vdi_deactivate h1 d0",
            "vdi_activate h2 d0",
            "vdi_detach h1 d0",
            "vdi_attach h2 d1",
            "vdi_deactivate h1 d1",
            "vdi_activate h2 d1",
            "vdi_detach h1 d1",
        ],
    );
    t.fails_with("phase order");
}

#[test]
fn second_pbd_plug_and_unplug_make_no_call() {
    let mut t = Trace::with_caps(ALL_CAPS);
    t.xe(
        "sr-create type=xsmfile",
        "s1",
        &["sr_create h1 sr:s1", "sr_attach h1 sr:s1"],
    );
    t.xe("pbd-unplug uuid=p1", "", &["sr_detach h1 sr:s1"]);
    t.xe("pbd-plug uuid=p1", "", &["sr_attach h1 sr:s1"]);
    t.xe("pbd-plug uuid=p1", "", &[]);
    t.xe("pbd-unplug uuid=p1", "", &["sr_detach h1 sr:s1"]);
    t.xe("pbd-unplug uuid=p1", "", &[]);
    t.xe(
        "sr-destroy uuid=s1",
        "",
        &["sr_attach h1 sr:s1", "sr_delete h1 sr:s1"],
    );
    t.ok();
    let mut bad = Trace::with_caps(ALL_CAPS);
    bad.xe(
        "sr-create type=xsmfile",
        "s1",
        &["sr_create h1 sr:s1", "sr_attach h1 sr:s1"],
    );
    bad.xe("pbd-unplug uuid=p1", "", &["sr_detach h1 sr:s1"]);
    bad.xe("pbd-plug uuid=p1", "", &["sr_attach h1 sr:s1"]);
    bad.xe("pbd-plug uuid=p1", "", &["sr_attach h1 sr:s1"]);
    bad.fails_with("already plugged");
}

#[test]
fn vdi_commands() {
    let mut t = installed(ALL_CAPS);
    t.xe("vdi-create sr-uuid=s1", "v1", &["vdi_create h1 v1"]);
    t.xe(
        "vdi-destroy uuid=v1",
        "",
        &["vdi_detach h1 v1", "vdi_delete h1 v1"],
    );
    t.xe("vdi-create sr-uuid=s1", "v2", &["vdi_create h1 v2"]);
    t.xe("vbd-create vdi-uuid=v2 vm-uuid=vm1 device=xvdc", "b1", &[]);
    let mut copy = vec!["vdi_create h1 v3".to_string()];
    copy.extend(["vdi_attach", "vdi_activate"].map(|c| format!("{c} h1 v2")));
    copy.extend(["vdi_attach", "vdi_activate"].map(|c| format!("{c} h1 v3")));
    copy.extend(["vdi_deactivate", "vdi_detach"].map(|c| format!("{c} h1 v3")));
    copy.extend(["vdi_deactivate", "vdi_detach"].map(|c| format!("{c} h1 v2")));
    t.xe("vdi-copy uuid=v2 sr-uuid=s1", "v3", &calls(&copy));
    t.xe("vdi-forget uuid=v3", "", &[]);
    t.xe("sr-scan uuid=s1", "", &["sr_scan h1 sr:s1"]);
    t.xe("vdi-list", "", &[]);
    t.ok();
    let mut bad = installed(ALL_CAPS);
    bad.xe("vdi-create sr-uuid=s1", "v1", &["vdi_create h1 v1"]);
    bad.xe("vdi-destroy uuid=v1", "", &["vdi_delete h1 v1"]);
    bad.fails_with("expected [vdi_detach, vdi_delete]");
    let mut listing = Trace::with_caps(ALL_CAPS);
    listing.xe("sr-list", "", &["sr_scan h1 sr:s1"]);
    listing.fails_with("no SMAPI call");
}

#[test]
fn failed_and_unfinished_commands_are_mismatches() {
    let mut t = Trace::with_caps(ALL_CAPS);
    t.xe(
        "sr-create type=xsmfile",
        "s1",
        &["sr_create h1 sr:s1", "sr_attach h1 sr:s1"],
    );
    t.events.push(Event::XeBegin {
        id: 9,
        argv: vec!["vm-start".into()],
        ts: 0.0,
    });
    t.fails_with("did not finish");
    let mut f = Trace::with_caps(ALL_CAPS);
    f.events.push(Event::XeBegin {
        id: 1,
        argv: vec!["sr-scan".into()],
        ts: 0.0,
    });
    f.events.push(Event::XeEnd {
        id: 1,
        code: 1,
        stdout: String::new(),
        stderr: "Error code: SR_BACKEND_FAILURE_40\n".into(),
        ms: 1,
    });
    f.fails_with("exit status 1: Error code: SR_BACKEND_FAILURE_40");
}
