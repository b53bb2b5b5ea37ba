//! `MultipathLVMoISCSISR` on the lab's real stack (one-host topology), driven by the emulator
//! with the real plugins installed by install.sh: sr_probe at each stage read the way
//! XenCenter and Xen Orchestra read it, bad input (each fault, nothing left logged in or
//! mapped), I/O on a VDI while a portal goes down and comes back, the appendix script with the
//! iSCSI device_config, and the benchmark of discovery and sr_attach. Each test adds its own
//! target on the array (with CHAP) and removes it, so host A's own sessions and maps stay.
//!
//! Run with `xapi-tests/lab/run-suite lab lab_mpath_lvmoiscsi`; ignored under plain `cargo test`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed setup is a failed test

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use quick_xml::events::Event as XmlEvent;
use sm_core::errors::error_chain;
use sm_core::host::run::Cmd;
use sm_core::secret::Secret;
use sm_core::xenapi::XenApiError;
use sm_core::xmlrpc::Value;
use xapi_tests::appendix::{self, Setup, Variant};
use xapi_tests::lab::writer::PatternWriter;
use xapi_tests::lab::{Lab, run_ok as run, wait_until};

const TYPE: &str = "multipathlvmoiscsi";
const CHAP_USER: &str = "mpuser";
const CHAP_SECRET: &str = "mpsecret12345";

/// An element of a parsed document: name, text, children.
#[derive(Debug, Default, Clone)]
struct Element {
    name: String,
    text: String,
    children: Vec<Element>,
}

impl Element {
    fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }
    fn field(&self, name: &str) -> Option<String> {
        self.child(name).map(|c| c.text.trim().to_string())
    }
}

/// Parses a whole XML document with a real XML parser (what XenCenter's XmlDocument and XO's
/// parser do): a malformed document is an error, not a partial read.
fn parse_xml(text: &str) -> Result<Element, String> {
    let mut r = quick_xml::Reader::from_str(text);
    let mut stack: Vec<Element> = vec![Element::default()];
    loop {
        match r.read_event().map_err(|e| format!("XML: {e}"))? {
            XmlEvent::Start(s) => stack.push(Element {
                name: s.name().as_ref().to_string(),
                ..Element::default()
            }),
            XmlEvent::Empty(s) => stack.last_mut().unwrap().children.push(Element {
                name: s.name().as_ref().to_string(),
                ..Element::default()
            }),
            XmlEvent::Text(t) => stack.last_mut().unwrap().text.push_str(&t.xml10_content()),
            XmlEvent::GeneralRef(r) => {
                let ch = match r.resolve_char_ref().map_err(|e| format!("XML: {e}"))? {
                    Some(c) => c,
                    None => match r.xml10_content().as_ref() {
                        "amp" => '&',
                        "lt" => '<',
                        "gt" => '>',
                        "quot" => '"',
                        "apos" => '\'',
                        other => return Err(format!("unknown entity &{other};")),
                    },
                };
                stack.last_mut().unwrap().text.push(ch);
            }
            XmlEvent::End(_) => {
                let e = stack.pop().unwrap();
                stack.last_mut().ok_or("unbalanced")?.children.push(e);
            }
            XmlEvent::Eof => break,
            _ => {}
        }
    }
    let mut top = stack.pop().ok_or("empty")?;
    if !stack.is_empty() || top.children.len() != 1 {
        return Err("not one root element".into());
    }
    Ok(top.children.remove(0))
}

/// XO's `probeIscsiIqns` / XenCenter's `ISCSIPopulateIQNsAction`: `(IPAddress, Port, TargetIQN)`
/// of every `TGT` of `<iscsi-target-iqns>` (port 3260 when absent).
fn consumer_iqns(xml: &str) -> Result<Vec<(String, u16, String)>, String> {
    let root = parse_xml(xml)?;
    if root.name != "iscsi-target-iqns" {
        return Err(format!("root {}", root.name));
    }
    root.children
        .iter()
        .map(|t| {
            if t.name != "TGT" {
                return Err(format!("entry {}", t.name));
            }
            t.field("Index").ok_or("no Index")?;
            let port = match t.field("Port") {
                Some(p) => p.parse().map_err(|_| format!("Port {p}"))?,
                None => 3260,
            };
            Ok((
                t.field("IPAddress").ok_or("no IPAddress")?,
                port,
                t.field("TargetIQN").ok_or("no TargetIQN")?,
            ))
        })
        .collect()
}

/// `(LUNid, SCSIid, size, vendor, serial)`.
type ListedLun = (u32, String, u64, String, String);

/// XO's `probeIscsiLuns` / XenCenter's `ISCSIPopulateLunsAction`: `(LUNid, SCSIid, size,
/// vendor, serial)` of every `LUN` of `<iscsi-target>`.
fn consumer_luns(xml: &str) -> Result<Vec<ListedLun>, String> {
    let root = parse_xml(xml)?;
    if root.name != "iscsi-target" {
        return Err(format!("root {}", root.name));
    }
    root.children
        .iter()
        .map(|l| {
            if l.name != "LUN" {
                return Err(format!("entry {}", l.name));
            }
            Ok((
                l.field("LUNid")
                    .ok_or("no LUNid")?
                    .parse()
                    .map_err(|_| "LUNid")?,
                l.field("SCSIid").ok_or("no SCSIid")?,
                l.field("size")
                    .ok_or("no size")?
                    .parse()
                    .map_err(|_| "size")?,
                l.field("vendor").unwrap_or_default(),
                l.field("serial").unwrap_or_default(),
            ))
        })
        .collect()
}

/// XO's `probeIscsiExists` / xapi's DR `parse_sr_probe`: the `UUID` of every `SR` of `<SRlist>`.
fn consumer_srlist(xml: &str) -> Result<Vec<String>, String> {
    let root = parse_xml(xml)?;
    if root.name != "SRlist" {
        return Err(format!("root {}", root.name));
    }
    root.children
        .iter()
        .map(|s| s.field("UUID").ok_or_else(|| "SR without UUID".to_string()))
        .collect()
}

/// A target of the array made for one test, removed (with host A's sessions) on drop.
struct Target<'a> {
    lab: &'a Lab,
    name: String,
    iqn: String,
    wwids: Vec<String>,
}

impl<'a> Target<'a> {
    fn add(lab: &'a Lab, name: &str, luns: u32, size_mb: u64) -> Target<'a> {
        let secret = Secret::new(CHAP_SECRET);
        let (iqn, wwids) = lab
            .array()
            .add_target(name, luns, size_mb, Some((CHAP_USER, &secret)), None)
            .unwrap_or_else(|e| panic!("target-add {name}: {}", error_chain(&e)));
        Target {
            lab,
            name: name.into(),
            iqn,
            wwids,
        }
    }

    /// Sessions host A has to this target.
    fn sessions(&self) -> usize {
        let out = self
            .lab
            .run(
                &Cmd::new("iscsiadm")
                    .args(["-m", "session"])
                    .ok_codes(&[0, 21]),
            )
            .map(|o| o.stdout_str())
            .unwrap_or_default();
        out.lines()
            .filter(|l| l.split_whitespace().any(|w| w == self.iqn))
            .count()
    }

    /// The target's LUNs host A has a multipath map of.
    fn maps(&self) -> Vec<String> {
        let out = run(self.lab, &["multipathd", "show", "maps", "format", "%w"]);
        self.wwids
            .iter()
            .filter(|w| out.contains(w.as_str()))
            .cloned()
            .collect()
    }

    fn assert_clean(&self, after: &str) {
        assert_eq!(self.sessions(), 0, "{after}: sessions to {} left", self.iqn);
        assert!(
            self.maps().is_empty(),
            "{after}: maps left: {:?}",
            self.maps()
        );
    }
}

impl Drop for Target<'_> {
    fn drop(&mut self) {
        let _ = self.lab.array().remove_target(&self.name);
    }
}

/// The emulator with the real plugins on this (real) host.
fn pool() -> common::Pool {
    let dir = tempfile::tempdir().unwrap();
    let plugins = common::install(dir.path());
    common::Pool::start_with(dir, plugins, |cfg| {
        for h in &mut cfg.hosts {
            if h.name == xapi_tests::config::local_hostname() {
                h.env.remove("SM_ROOT");
            }
        }
    })
}

/// The host part of a lab portal (`address:port`).
fn portal_host(p: &xapi_tests::lab::PortalDesc) -> String {
    p.address
        .rsplit_once(':')
        .map_or(p.address.clone(), |(h, _)| h.to_string())
}

/// device_config `target`: every portal's address, as an administrator types it.
fn portals(lab: &Lab) -> String {
    lab.portals()
        .iter()
        .map(portal_host)
        .collect::<Vec<_>>()
        .join(",")
}

/// device_config for `target`; `extra` adds or replaces keys.
fn dconf(lab: &Lab, t: &Target<'_>, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut d: BTreeMap<String, String> = [
        ("target", portals(lab)),
        ("targetIQN", t.iqn.clone()),
        ("chapuser", CHAP_USER.to_string()),
        ("chappassword", CHAP_SECRET.to_string()),
        ("localIQN", lab.host_a().iqn.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in extra {
        if v.is_empty() {
            d.remove(*k);
        } else {
            d.insert(k.to_string(), v.to_string());
        }
    }
    d
}

fn map_value(d: &BTreeMap<String, String>) -> Value {
    Value::string_map(d.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// The pool master: this machine (the other host has its own `SM_ROOT`).
fn master(p: &common::Pool) -> String {
    let x = p.xenapi();
    let pool = x.call("pool.get_all", &[]).unwrap().as_array().unwrap()[0].to_text();
    x.call("pool.get_master", &[Value::from(pool.as_str())])
        .unwrap()
        .to_text()
}

/// SR.probe: Ok(answer) or Err(ErrorDescription).
fn probe(p: &common::Pool, d: &BTreeMap<String, String>) -> Result<String, Vec<String>> {
    let x = p.xenapi();
    let host = master(p);
    match x.call(
        "SR.probe",
        &[
            Value::from(host.as_str()),
            map_value(d),
            Value::from(TYPE),
            Value::string_map::<&str, &str>([]),
        ],
    ) {
        Ok(v) => Ok(v.to_text()),
        Err(XenApiError::Failure { description, .. }) => Err(description),
        Err(e) => panic!("SR.probe: {e}"),
    }
}

/// SR.create (not shared): Ok(SR ref) or Err(ErrorDescription).
fn create(p: &common::Pool, d: &BTreeMap<String, String>) -> Result<String, Vec<String>> {
    let x = p.xenapi();
    let host = master(p);
    match x.call(
        "SR.create",
        &[
            Value::from(host.as_str()),
            map_value(d),
            Value::from("0"),
            Value::from("mpath test"),
            Value::from(""),
            Value::from(TYPE),
            Value::from("user"),
            Value::Bool(false),
            Value::string_map::<&str, &str>([]),
        ],
    ) {
        Ok(v) => Ok(v.to_text()),
        Err(XenApiError::Failure { description, .. }) => Err(description),
        Err(e) => panic!("SR.create: {e}"),
    }
}

fn uuid_of(p: &common::Pool, class: &str, r: &str) -> String {
    p.xenapi()
        .call(&format!("{class}.get_uuid"), &[Value::from(r)])
        .unwrap()
        .to_text()
}

fn pbd_of(p: &common::Pool, sr_uuid: &str) -> String {
    p.xe_ok(&["pbd-list", &format!("sr-uuid={sr_uuid}"), "--minimal"])
}

fn pbd_other_config(p: &common::Pool, pbd_uuid: &str) -> BTreeMap<String, String> {
    let x = p.xenapi();
    let r = x
        .call("PBD.get_by_uuid", &[Value::from(pbd_uuid)])
        .unwrap()
        .to_text();
    x.call("PBD.get_other_config", &[Value::from(r.as_str())])
        .unwrap()
        .to_string_map()
        .unwrap()
}

fn destroy(p: &common::Pool, sr_uuid: &str) {
    let pbd = pbd_of(p, sr_uuid);
    p.xe_ok(&["pbd-unplug", &format!("uuid={pbd}")]);
    p.xe_ok(&["sr-destroy", &format!("uuid={sr_uuid}")]);
}

/// The last 80 lines of the master's SMlog (for failure messages).
fn smlog_tail(p: &common::Pool) -> String {
    let log = std::fs::read_to_string(
        p.state()
            .join(format!("SMlog.{}", xapi_tests::config::local_hostname())),
    )
    .unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(80)..].join("\n")
}

fn code_of(e: &[String]) -> &str {
    e.first().map_or("", String::as_str)
}

#[test]
#[ignore = "lab"]
fn lab_mpath_lvmoiscsi_probe_stages_read_as_xencenter_and_xo_do() {
    let Some(lab) = Lab::from_env() else { return };
    let t = Target::add(&lab, "mpprobe", 2, 48);
    let p = pool();

    // No targetIQN: the target listing, fault 96.
    let e = probe(&p, &dconf(&lab, &t, &[("targetIQN", "")])).unwrap_err();
    assert_eq!(code_of(&e), "SR_BACKEND_FAILURE_96", "{e:?}");
    let iqns = consumer_iqns(&e[3]).unwrap_or_else(|why| panic!("{why}: {}", e[3]));
    for portal in lab.portals() {
        assert!(
            iqns.contains(&(portal_host(portal), 3260, t.iqn.clone())),
            "{iqns:?}"
        );
    }
    assert_eq!(iqns.last().unwrap().2, "*", "the catch-all entry last");
    t.assert_clean("the IQN listing");

    // No SCSIid: the LUN listing, fault 107.
    let e = probe(&p, &dconf(&lab, &t, &[])).unwrap_err();
    assert_eq!(code_of(&e), "SR_BACKEND_FAILURE_107", "{e:?}");
    let luns = consumer_luns(&e[3]).unwrap_or_else(|why| panic!("{why}: {}", e[3]));
    assert_eq!(luns.len(), 2, "{luns:?}");
    for (i, w) in t.wwids.iter().enumerate() {
        let l = luns
            .iter()
            .find(|l| &l.1 == w)
            .unwrap_or_else(|| panic!("{w} in {luns:?}"));
        assert_eq!(
            (l.0, l.2, l.3.as_str()),
            (i as u32, 48 << 20, "LIO-ORG"),
            "{l:?}"
        );
        assert!(!l.4.is_empty(), "a serial: {l:?}");
    }
    t.assert_clean("the LUN listing");

    // Complete, nothing on the LUN: an empty SRlist; after sr_create, the SR.
    let d = dconf(&lab, &t, &[("SCSIid", &t.wwids[0])]);
    assert_eq!(
        consumer_srlist(&probe(&p, &d).unwrap()).unwrap(),
        Vec::<String>::new()
    );
    t.assert_clean("the SRlist probe");
    let sr = uuid_of(&p, "SR", &create(&p, &d).unwrap());
    let pbd = pbd_of(&p, &sr);
    let oc = pbd_other_config(&p, &pbd);
    assert_eq!(
        oc.get(&format!("mpath-{}", t.wwids[0])).map(String::as_str),
        Some("[2, 2]"),
        "{oc:?}"
    );
    assert_eq!(oc.get("multipathed").map(String::as_str), Some("true"));
    assert_eq!(
        consumer_srlist(&probe(&p, &d).unwrap()).unwrap(),
        vec![sr.clone()],
        "probe while attached"
    );
    assert_eq!(
        t.sessions(),
        2,
        "the attached SR keeps its sessions through a probe"
    );
    destroy(&p, &sr);
    t.assert_clean("sr-destroy");

    // Unreachable portals: 141.
    let e = probe(
        &p,
        &dconf(&lab, &t, &[("target", "10.99.0.250"), ("targetIQN", "")]),
    )
    .unwrap_err();
    assert_eq!(code_of(&e), "SR_BACKEND_FAILURE_141", "{e:?}");
}

#[test]
#[ignore = "lab"]
fn lab_mpath_lvmoiscsi_bad_input_gets_its_fault_and_leaves_nothing() {
    let Some(lab) = Lab::from_env() else { return };
    let t = Target::add(&lab, "mpbad", 2, 48);
    let p = pool();
    let lun0 = t.wwids[0].clone();
    let cases: Vec<(&str, BTreeMap<String, String>, &str)> = vec![
        (
            "wrong IQN",
            dconf(
                &lab,
                &t,
                &[
                    ("SCSIid", &lun0),
                    ("targetIQN", "iqn.2026-01.test.lab:nosuch"),
                ],
            ),
            "SR_BACKEND_FAILURE_83",
        ),
        (
            "unreachable portal",
            dconf(&lab, &t, &[("SCSIid", &lun0), ("target", "10.99.0.250")]),
            "SR_BACKEND_FAILURE_141",
        ),
        (
            "wrong CHAP",
            dconf(
                &lab,
                &t,
                &[("SCSIid", &lun0), ("chappassword", "not-the-secret")],
            ),
            "SR_BACKEND_FAILURE_68",
        ),
        (
            "SCSIid that does not exist",
            dconf(&lab, &t, &[("SCSIid", "36001405deadbeef0000000000000000")]),
            "SR_BACKEND_FAILURE_107",
        ),
        (
            "bad port",
            dconf(&lab, &t, &[("SCSIid", &lun0), ("port", "70000")]),
            "SR_BACKEND_FAILURE_142",
        ),
    ];
    for (what, d, want) in &cases {
        let e = create(&p, d).expect_err(what);
        assert_eq!(code_of(&e), *want, "{what}: {e:?}");
        t.assert_clean(what);
    }
    // A LUN in use by another SR: 16 (SR_DEVICE_IN_USE), and the first SR keeps working.
    let d = dconf(&lab, &t, &[("SCSIid", &lun0)]);
    let sr = uuid_of(&p, "SR", &create(&p, &d).unwrap());
    let e = create(&p, &d).expect_err("a second SR on the same LUN");
    assert_eq!(code_of(&e), "SR_DEVICE_IN_USE", "{e:?}");
    assert_eq!(t.sessions(), 2);
    p.xe_ok(&["sr-scan", &format!("uuid={sr}")]);
    destroy(&p, &sr);
    t.assert_clean("sr-destroy");
}

#[test]
#[ignore = "lab"]
fn lab_mpath_lvmoiscsi_io_on_a_vdi_survives_a_portal_going_down() {
    let Some(lab) = Lab::from_env() else { return };
    let t = Target::add(&lab, "mpio", 1, 512);
    let p = pool();
    let sr = uuid_of(
        &p,
        "SR",
        &create(&p, &dconf(&lab, &t, &[("SCSIid", &t.wwids[0])])).unwrap(),
    );
    let pbd = pbd_of(&p, &sr);
    let key = format!("mpath-{}", t.wwids[0]);
    let vdi = p.xe_ok(&[
        "vdi-create",
        &format!("sr-uuid={sr}"),
        "name-label=io",
        "type=user",
        "virtual-size=64MiB",
    ]);
    p.set_default_sr(&sr);
    let vm = p.xe_ok(&[
        "vm-install",
        "template=Debian Sarge 3.1",
        "new-name-label=io",
    ]);
    let vbd = p.xe_ok(&[
        "vbd-create",
        &format!("vdi-uuid={vdi}"),
        &format!("vm-uuid={vm}"),
        "device=xvdc",
    ]);
    p.xe_ok(&["vm-start", &format!("uuid={vm}")]);
    let _ = vbd;
    let lv = format!("/dev/VG_XenStorage-{sr}/LV-{vdi}");
    assert!(
        Path::new(&lv).exists(),
        "the running VM's VDI is active: {lv}"
    );

    // sr-scan until the PBD's path counts read `want`.
    let wait_paths = |secs: u64, what: &str, want: &str| {
        wait_until(secs, what, || {
            p.xe_ok(&["sr-scan", &format!("uuid={sr}")]);
            let oc = pbd_other_config(&p, &pbd);
            match oc.get(&key).map(String::as_str) {
                Some(v) if v == want => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
    };
    // Writes 16 known chunks round and round until stopped (or dropped by a failing wait).
    let mut writer = PatternWriter::start(&lab, Path::new(&lv), 16, 2_654_435_761).unwrap();
    writer.wait_for(60, "the first writes", 2);
    lab.array().target_portal_down(&t.name, 1).unwrap();
    wait_paths(90, "the path counts to drop to one", "[1, 2]");
    let at = writer.count();
    writer.wait_for(90, "writes through portal 2", at + 3);
    lab.array().target_portal_up(&t.name, 1).unwrap();
    wait_paths(120, "the path counts to come back to two", "[2, 2]");
    let at = writer.count();
    writer.wait_for(60, "writes after the portal came back", at + 2);
    let done = writer
        .stop()
        .unwrap_or_else(|e| panic!("I/O error on the VDI: {e}"));
    writer.check_device(done).unwrap();
    let _ = writeln!(
        std::io::stderr(),
        "{done} writes on the VDI through the portal outage"
    );
    p.xe_ok(&["vm-shutdown", &format!("uuid={vm}"), "--force"]);
    p.xe_ok(&["vm-uninstall", &format!("uuid={vm}"), "--force"]);
    destroy(&p, &sr);
    t.assert_clean("sr-destroy");
}

#[test]
#[ignore = "lab"]
fn lab_mpath_lvmoiscsi_appendix_script() {
    let Some(lab) = Lab::from_env() else { return };
    let t = Target::add(&lab, "mpappx", 1, 1024);
    let d = tempfile::tempdir().unwrap();
    let setup = Setup {
        repo: common::repo(),
        bin_dir: common::bin_dir(),
        plugin_dir: common::install(d.path()),
        real_sleep: false,
    };
    let device_config: Vec<(String, String)> = [
        ("target", portals(&lab)),
        ("targetIQN", t.iqn.clone()),
        ("SCSIid", t.wwids[0].clone()),
        ("chapuser", CHAP_USER.into()),
        ("chappassword", CHAP_SECRET.into()),
        ("localIQN", lab.host_a().iqn.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let out = appendix::run_variant(
        &setup,
        &d.path().join("mpath"),
        &Variant::DeviceConfig {
            sr_type: TYPE.into(),
            device_config,
        },
    )
    .unwrap();
    let smlog = std::fs::read_to_string(
        d.path()
            .join("mpath/state")
            .join(format!("SMlog.{}", xapi_tests::config::local_hostname())),
    )
    .unwrap_or_default();
    let tail: Vec<&str> = smlog.lines().rev().take(60).collect();
    assert!(
        out.passed(),
        "{}\nproblems: {:#?}\nscript stdout:\n{}\nscript stderr:\n{}\nSMlog tail:\n{}",
        out.summary,
        out.problems,
        out.run.stdout,
        out.run.stderr,
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    assert_eq!(out.run.xe.len(), 50, "every xe command of run_ops ran once");
    assert!(out.run.stdout.contains(&format!("---FINISH on {TYPE}---")));
    t.assert_clean("the appendix script's final sr-destroy");
}

/// What one plugin call did, from its SMlog lines (one process per call).
#[derive(Debug, Default, Clone, Copy)]
struct CallCounts {
    /// SCSI commands (SG_IO).
    scsi: usize,
    /// External commands (iscsiadm, multipath, lvm, ...).
    external: usize,
    /// multipathd socket requests.
    multipathd: usize,
    /// The call's own time (dispatch's `ms`).
    ms: u64,
}

/// The calls of `command` in an SMlog, in order.
fn counts_in(smlog: &str, command: &str) -> Vec<CallCounts> {
    let mut by_pid: BTreeMap<u32, (usize, Option<String>, CallCounts)> = BTreeMap::new();
    for (n, l) in smlog.lines().enumerate() {
        let Some(rest) = l.split_once(" SM: [").map(|x| x.1) else {
            continue;
        };
        let Some((pid, body)) = rest.split_once("] ") else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let body = body.trim_start();
        let e = by_pid
            .entry(pid)
            .or_insert((n, None, CallCounts::default()));
        if e.1.is_none()
            && let Some(cmd) = body.strip_prefix("INFO ")
        {
            e.1 = cmd.split_whitespace().next().map(str::to_string);
        }
        if body.starts_with("DEBUG scsi ") {
            e.2.scsi += 1;
        } else if body.starts_with("DEBUG command ") {
            e.2.external += 1;
        } else if body.starts_with("DEBUG multipathd socket ") {
            e.2.multipathd += 1;
        } else if let Some(ms) = body
            .strip_prefix("INFO ok ")
            .or_else(|| body.strip_prefix("ERROR fault: "))
            .and_then(|b| {
                b.split_whitespace()
                    .rev()
                    .find_map(|w| w.strip_prefix("ms="))
            })
        {
            e.2.ms = ms.parse().unwrap_or(0);
        }
    }
    let mut calls: Vec<(usize, CallCounts)> = by_pid
        .into_values()
        .filter(|(_, c, _)| c.as_deref() == Some(command))
        .map(|(n, _, k)| (n, k))
        .collect();
    calls.sort_by_key(|c| c.0);
    calls.into_iter().map(|c| c.1).collect()
}

#[test]
#[ignore = "lab"]
fn lab_mpath_lvmoiscsi_bench_discovery_and_attach() {
    let Some(lab) = Lab::from_env() else { return };
    let t = Target::add(&lab, "mpbench", 4, 32);
    let p = pool();
    let smlog_path = p
        .state()
        .join(format!("SMlog.{}", xapi_tests::config::local_hostname()));
    let time = |f: &mut dyn FnMut()| {
        let s = Instant::now();
        f();
        s.elapsed()
    };
    // Discovery: sr_probe without SCSIid (log in on both portals, list 4 LUNs x 2 paths, log out).
    let mut probe_ms = Vec::new();
    for _ in 0..2 {
        let d = dconf(&lab, &t, &[]);
        probe_ms.push(time(&mut || {
            let e = probe(&p, &d).unwrap_err();
            assert_eq!(
                code_of(&e),
                "SR_BACKEND_FAILURE_107",
                "{e:?}\n{}",
                smlog_tail(&p)
            );
            assert_eq!(consumer_luns(&e[3]).unwrap().len(), 4);
        }));
        t.assert_clean("a LUN listing");
    }
    let d = dconf(&lab, &t, &[("SCSIid", &t.wwids[0])]);
    let sr = uuid_of(&p, "SR", &create(&p, &d).unwrap());
    let pbd = pbd_of(&p, &sr);
    let mut attach_ms = Vec::new();
    for _ in 0..2 {
        p.xe_ok(&["pbd-unplug", &format!("uuid={pbd}")]);
        attach_ms.push(time(&mut || {
            p.xe_ok(&["pbd-plug", &format!("uuid={pbd}")]);
        }));
    }
    let smlog = std::fs::read_to_string(&smlog_path).unwrap_or_default();
    let probes = counts_in(&smlog, "sr_probe");
    let attaches = counts_in(&smlog, "sr_attach");
    destroy(&p, &sr);
    t.assert_clean("sr-destroy");
    let ms = |v: &[Duration]| {
        v.iter()
            .map(|d| d.as_millis().to_string())
            .collect::<Vec<_>>()
            .join("/")
    };
    let _ = writeln!(
        std::io::stderr(),
        "BENCH discovery of 4 LUNs x 2 paths (sr_probe, whole call incl. login/logout): {} ms; SCSI commands, external commands per call: {:?}\n\
         BENCH sr_attach (pbd-plug, logged out before): {} ms; SCSI commands, external commands per call: {:?}",
        ms(&probe_ms),
        probes,
        ms(&attach_ms),
        &attaches[attaches.len().saturating_sub(2)..],
    );
    assert_eq!(probes.len(), 2, "two probes in SMlog: {probes:?}");
    assert!(attaches.len() >= 2, "{attaches:?}");
    // The LUN listing reads the VPD pages the kernel keeps in sysfs: no SCSI command of its own.
    assert!(
        probes.iter().all(|c| c.external > 0 && c.ms > 0),
        "commands counted: {probes:?}"
    );
    assert!(
        attaches
            .iter()
            .all(|c| c.scsi > 0 && c.multipathd > 0 && c.ms > 0),
        "commands counted: {attaches:?}"
    );
}

#[cfg(test)]
mod parsers {
    use super::*;

    #[test]
    fn smlog_counts_per_call() {
        let log = "Nov 22 07:29:22 vm SM: [10]  INFO sr_probe sr=- vdi=- args=[] device_config={}\n\
                   Nov 22 07:29:22 vm SM: [11]  INFO sr_attach sr=x vdi=- args=[] device_config={}\n\
                   Nov 22 07:29:22 vm SM: [10] DEBUG command cmd=iscsiadm -m node code=0 ms=3\n\
                   Nov 22 07:29:22 vm SM: [10] DEBUG scsi device=/dev/sdb op=INQUIRY\n\
                   Nov 22 07:29:22 vm SM: [10] DEBUG multipathd socket command=\"show maps json\"\n\
                   Nov 22 07:29:22 vm SM: [10]  INFO ok call=sr_probe sr=- vdi=- ms=812\n\
                   Nov 22 07:29:23 vm SM: [12]  INFO sr_probe sr=- vdi=- args=[] device_config={}\n\
                   Nov 22 07:29:23 vm SM: [12] DEBUG command cmd=iscsiadm -m node code=0 ms=3\n\
                   Nov 22 07:29:23 vm SM: [12] ERROR fault: SCSIid [opterr=ms=9] call=sr_probe ms=77 code=107\n";
        let c = counts_in(log, "sr_probe");
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[0].scsi, c[0].external, c[0].multipathd, c[0].ms),
            (1, 1, 1, 812)
        );
        assert_eq!((c[1].external, c[1].ms), (1, 77), "a fault's time");
        assert_eq!(counts_in(log, "sr_attach").len(), 1);
    }

    #[test]
    fn the_consumer_parsers_read_sms_documents() {
        let iqns = "<?xml version=\"1.0\" ?>\n<iscsi-target-iqns>\n\t<TGT>\n\t\t<Index>0</Index>\n\t\t<IPAddress>10.99.0.1</IPAddress>\n\t\t<TargetIQN>iqn.x:y</TargetIQN>\n\t</TGT>\n\t<TGT>\n\t\t<Index>1</Index>\n\t\t<IPAddress>10.99.0.1</IPAddress>\n\t\t<Port>3261</Port>\n\t\t<TargetIQN>*</TargetIQN>\n\t</TGT>\n</iscsi-target-iqns>\n";
        assert_eq!(
            consumer_iqns(iqns).unwrap(),
            vec![
                ("10.99.0.1".into(), 3260, "iqn.x:y".into()),
                ("10.99.0.1".into(), 3261, "*".into())
            ]
        );
        assert!(
            consumer_iqns("<iscsi-target-iqns><TGT><Index>0</Index></TGT></iscsi-target-iqns>")
                .is_err()
        );
        assert!(
            consumer_iqns("<iscsi-target-iqns><TGT>").is_err(),
            "truncated"
        );
        let luns = "<?xml version=\"1.0\" ?>\n<iscsi-target>\n\t<LUN>\n\t\t<vendor>A&amp;B</vendor>\n\t\t<LUNid>2</LUNid>\n\t\t<size>1024</size>\n\t\t<SCSIid>3600</SCSIid>\n\t</LUN>\n</iscsi-target>\n";
        assert_eq!(
            consumer_luns(luns).unwrap(),
            vec![(2, "3600".into(), 1024, "A&B".into(), String::new())]
        );
        assert!(
            consumer_luns("<iscsi-target><lun/></iscsi-target>").is_err(),
            "element names are exact"
        );
        assert_eq!(consumer_srlist("<SRlist/>").unwrap(), Vec::<String>::new());
        assert_eq!(
            consumer_srlist("<SRlist><SR><UUID>u</UUID></SR></SRlist>").unwrap(),
            vec!["u".to_string()]
        );
    }
}

/// The HA statefile / static VDI path: `VDI.generate_config` on the master gives a
/// `vdi_attach_from_config` call with the CHAP secret resolved (xapi stored it as a secret) and
/// the initiator recorded; with the SR unplugged (no sessions, no map) and xapi stopped, the
/// plugin run on that config alone logs in, waits for the map and activates the LV; data
/// written then reads back after a detach and a second attach.
#[test]
#[ignore = "lab"]
fn lab_mpath_lvmoiscsi_static_vdi_attaches_from_its_config_with_no_xapi() {
    let Some(lab) = Lab::from_env() else { return };
    let t = Target::add(&lab, "mpha", 1, 256);
    let mut p = pool();
    let sr = uuid_of(
        &p,
        "SR",
        &create(&p, &dconf(&lab, &t, &[("SCSIid", &t.wwids[0])])).unwrap(),
    );
    let pbd = pbd_of(&p, &sr);
    let pbd_dc = p.xe_ok(&[
        "pbd-param-get",
        &format!("uuid={pbd}"),
        "param-name=device-config",
    ]);
    assert!(
        pbd_dc.contains("chappassword_secret") && !pbd_dc.contains(CHAP_SECRET),
        "xapi keeps the password as a secret: {pbd_dc}"
    );
    let vdi = p.xe_ok(&[
        "vdi-create",
        &format!("sr-uuid={sr}"),
        "name-label=statefile",
        "type=ha_statefile",
        "virtual-size=16MiB",
    ]);
    let x = p.xenapi();
    let cfg = x
        .call(
            "VDI.generate_config",
            &[
                Value::from(master(&p).as_str()),
                Value::from(p.r("VDI", &vdi).as_str()),
            ],
        )
        .unwrap()
        .to_text();
    assert!(
        cfg.contains("vdi_attach_from_config")
            && cfg.contains(CHAP_SECRET)
            && !cfg.contains("_secret")
            && cfg.contains(&lab.host_a().iqn)
            && !cfg.contains("session_ref"),
        "{cfg}"
    );
    p.xe_ok(&["pbd-unplug", &format!("uuid={pbd}")]);
    t.assert_clean("pbd-unplug");
    p.running.take().unwrap().stop();

    let plugin = p.plugin_dir.join("MultipathLVMoISCSISR");
    let smlog = p.dir.path().join("SMlog.static");
    let exec = |xml: &str| {
        let out = lab
            .run(
                &Cmd::new(plugin.display().to_string())
                    .arg(xml)
                    .env("SM_XAPI", "unix:/nonexistent/xapi")
                    .env("SMLOG_FILE", smlog.display().to_string())
                    .timeout(Duration::from_secs(300)),
            )
            .unwrap();
        match sm_core::xmlrpc::parse_method_response(&out.stdout_str()) {
            Ok(sm_core::xmlrpc::MethodResponse::Success(v)) => v,
            other => panic!("{other:?}: {}", out.stdout_str()),
        }
    };
    let lv = format!("/dev/VG_XenStorage-{sr}/LV-{vdi}");
    let detach = cfg.replace("vdi_attach_from_config", "vdi_detach_from_config");
    let started = Instant::now();
    let info = exec(&cfg);
    let _ = writeln!(
        std::io::stderr(),
        "attach_from_config with no xapi: {} ms",
        started.elapsed().as_millis()
    );
    assert!(
        format!("{info:?}").contains(&format!("LV-{vdi}")),
        "the LV: {info:?}"
    );
    run(
        &lab,
        &[
            "sh",
            "-c",
            &format!(
                "head -c 1048576 /dev/urandom > /tmp/statefile && dd if=/tmp/statefile of={lv} bs=1M count=1 oflag=direct conv=fsync status=none"
            ),
        ],
    );
    exec(&detach);
    assert!(
        !Path::new(&lv).exists(),
        "deactivated by detach_from_config"
    );
    exec(&cfg);
    let back = run(
        &lab,
        &[
            "sh",
            "-c",
            &format!(
                "dd if={lv} bs=1M count=1 iflag=direct status=none | cmp - /tmp/statefile && echo same"
            ),
        ],
    );
    assert_eq!(back.trim(), "same", "the statefile data reads back");
    exec(&detach);
    let map = run(&lab, &["multipathd", "show", "maps", "format", "%n %w"]);
    for l in map.lines().filter(|l| l.contains(&t.wwids[0])) {
        let name = l.split_whitespace().next().unwrap_or_default();
        let _ = lab.run(&Cmd::new("multipath").args(["-f", name]));
    }
    let _ = lab.run(
        &Cmd::new("iscsiadm")
            .args(["-m", "node", "-T", &t.iqn, "--logout"])
            .ok_codes(&[0, 21]),
    );
    t.assert_clean("the static VDI detached and its sessions logged out");
}
