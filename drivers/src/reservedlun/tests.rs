//! Whole driver calls against the xapi emulator (XenAPI in-process, two hosts) with LIO-like
//! fake LUs behind a fake storage layer: LUN-per-VDI records, exclusive activation between
//! the two hosts, fencing of a dead host, crash clean-up on sr_attach.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use multipath::testing::FakeMultipathd;
use reservations::{NexusId, PrError, PrKey, PrPath};
use sm_core::driver::{Ctx, Driver, Host, VdiCreate};
use sm_core::errors::{SmCode, SmResult};
use sm_core::request::{Command, DeviceConfig, Request};
use sm_core::scsi::{self, Condition, Lba};
use sm_core::secret::Secret;
use sm_core::testing::{FakeLu, FakeRunner, FakeScsi, Nexus};
use sm_core::xenapi::Endpoint;
use xapi_tests::config::Config;
use xapi_tests::db::RecordExt;
use xapi_tests::server::Running;

use super::*;

/// One host's view of the target: LUs reached through two sessions each, and its multipathd.
struct FakeStorage {
    iqn: String,
    isid_base: u64,
    luns: Vec<(LunInfo, FakeLu)>,
    multipathd: Arc<FakeMultipathd>,
}

impl FakeStorage {
    fn lu(&self, scsi_id: &str) -> &FakeLu {
        &self.luns.iter().find(|l| l.0.scsi_id == scsi_id).unwrap().1
    }

    fn fake_paths(&self, scsi_id: &str) -> Vec<FakeScsi> {
        let lu = self.lu(scsi_id);
        (1..=2u16)
            .map(|port| {
                lu.path(
                    &format!("/dev/{}-{port}", &self.iqn[self.iqn.len() - 1..]),
                    Nexus::iscsi(&self.iqn, self.isid_base + u64::from(port), port),
                )
            })
            .collect()
    }
}

impl Storage for FakeStorage {
    fn create(&self, _cx: &Ctx<'_>) -> SmResult<()> {
        Ok(())
    }
    fn attach(&self, _cx: &Ctx<'_>) -> SmResult<()> {
        Ok(())
    }
    fn detach(&self, _cx: &Ctx<'_>) -> SmResult<()> {
        Ok(())
    }
    fn probe(&self, _cx: &Ctx<'_>) -> SmResult<String> {
        Ok("<SRlist/>".into())
    }
    fn luns(&self, _cx: &Ctx<'_>) -> SmResult<Vec<LunInfo>> {
        Ok(self.luns.iter().map(|l| l.0.clone()).collect())
    }
    fn open(&self, _cx: &Ctx<'_>, scsi_id: &ScsiId) -> SmResult<PathBuf> {
        Ok(PathBuf::from(format!("/dev/mapper/{scsi_id}")))
    }
    fn close(&self, _cx: &Ctx<'_>, _scsi_id: &ScsiId) -> SmResult<()> {
        Ok(())
    }
    fn paths(&self, _cx: &Ctx<'_>, scsi_id: &ScsiId) -> Result<Vec<PrPath>, PrError> {
        Ok(self
            .fake_paths(scsi_id.as_str())
            .into_iter()
            .map(|f| {
                let n = f.nexus().clone();
                PrPath::new(
                    Arc::new(f),
                    Some(NexusId {
                        initiator: n.initiator,
                        isid: Some(n.isid),
                        rtpi: Some(n.port),
                    }),
                )
            })
            .collect())
    }
    fn multipathd(&self, _cx: &Ctx<'_>) -> Arc<dyn Multipathd> {
        self.multipathd.clone()
    }
}

/// A multipathd configured with `reservation_key file`: it takes map keys.
fn multipathd() -> Arc<FakeMultipathd> {
    let md = FakeMultipathd::new();
    for c in ["setprkey", "setprstatus", "unsetprstatus", "unsetprkey"] {
        md.set(c, "ok\n");
    }
    Arc::new(md)
}

struct Env {
    _dir: tempfile::TempDir,
    running: Running,
    sr_ref: String,
    sr_uuid: String,
    hosts: Vec<ReservedLunSr<FakeStorage>>,
    runner: Arc<FakeRunner>,
}

const MIB: u64 = 1 << 20;

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let cfg = Config::two_local_hosts(&dir.path().join("emu"), &plugins, None);
    let running = xapi_tests::server::start(cfg).unwrap();
    let emu = running.emulator().clone();
    let a = xapi_tests::storage::sr::SrCreate {
        host: emu.master().r.clone(),
        device_config: BTreeMap::new(),
        physical_size: 0,
        name_label: "rl".into(),
        name_description: String::new(),
        ty: "reservedlun".into(),
        content_type: String::new(),
        shared: true,
        sm_config: BTreeMap::new(),
    };
    let sr_ref = xapi_tests::storage::sr::introduce(&emu, &a, "").unwrap();
    let sr_uuid = emu.read(|db| Ok(db.get("SR", &sr_ref)?.s("uuid"))).unwrap();
    let sizes = [256 * MIB, 512 * MIB, 512 * MIB, 1024 * MIB];
    let lus: Vec<(LunInfo, FakeLu)> = sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| {
            let lu = FakeLu::lio(&format!("5ab0c0de{i:04x}"));
            let info = LunInfo {
                scsi_id: lu.wwid(),
                size,
                lun: u32::try_from(i).unwrap(),
                vendor: "LIO-ORG".into(),
                serial: format!("5ab0c0de{i:04x}"),
            };
            (info, lu)
        })
        .collect();
    let hosts = ["iqn.2026-01.test.lab:host-a", "iqn.2026-01.test.lab:host-b"]
        .iter()
        .enumerate()
        .map(|(i, iqn)| {
            ReservedLunSr(FakeStorage {
                iqn: (*iqn).into(),
                isid_base: 0x23d000000 + 0x100 * u64::try_from(i).unwrap(),
                luns: lus.clone(),
                multipathd: multipathd(),
            })
        })
        .collect();
    Env {
        _dir: dir,
        running,
        sr_ref,
        sr_uuid,
        hosts,
        runner: Arc::new(FakeRunner::new()),
    }
}

impl Env {
    fn emu(&self) -> &xapi_tests::emulator::Emulator {
        self.running.emulator()
    }

    fn host_ref(&self, h: usize) -> String {
        self.emu().hosts()[h].r.clone()
    }

    fn request(&self, h: usize, command: Command, vdi: Option<&str>) -> Request {
        let mut oc = BTreeMap::new();
        oc.insert("_sm_session".to_string(), self.sr_ref.clone());
        let session = self.emu().login("__sm__backend", oc);
        let mut req = Request {
            command: Some(command),
            command_name: command.as_str().into(),
            host_ref: self.host_ref(h),
            device_config: DeviceConfig::new(BTreeMap::new()),
            session_ref: Some(Secret::new(session)),
            sr_ref: Some(self.sr_ref.clone()),
            sr_uuid: Some(self.sr_uuid.clone()),
            ..Request::default()
        };
        if let Some(u) = vdi {
            req.vdi_uuid = Some(u.into());
            let (r, loc) = self
                .emu()
                .read(|db| {
                    let r = db.by_uuid("VDI", u)?;
                    Ok((r.clone(), db.get("VDI", &r)?.s("location")))
                })
                .unwrap();
            req.vdi_ref = Some(r);
            req.vdi_location = Some(loc);
        }
        req
    }

    fn call<T>(
        &self,
        h: usize,
        command: Command,
        vdi: Option<&str>,
        f: impl FnOnce(&ReservedLunSr<FakeStorage>, &Ctx<'_>) -> SmResult<T>,
    ) -> SmResult<T> {
        let req = self.request(h, command, vdi);
        let host = Host::with(
            self.runner.clone(),
            self._dir.path(),
            Endpoint::parse(&format!("unix:{}", self.running.socket().display())).unwrap(),
        );
        let cx = Ctx::new(&req, &host);
        f(&self.hosts[h], &cx)
    }

    fn vdi_field(&self, uuid: &str, field: &str) -> String {
        self.emu()
            .read(|db| {
                let r = db.by_uuid("VDI", uuid)?;
                Ok(db.get("VDI", &r)?.s(field))
            })
            .unwrap()
    }

    fn sm_config(&self, uuid: &str) -> BTreeMap<String, String> {
        self.emu()
            .read(|db| {
                let r = db.by_uuid("VDI", uuid)?;
                Ok(db.get("VDI", &r)?.map("sm_config"))
            })
            .unwrap()
    }

    fn key(&self, h: usize) -> PrKey {
        PrKey::for_host(&self.emu().hosts()[h].uuid).unwrap()
    }

    fn lu(&self, scsi_id: &str) -> &FakeLu {
        self.hosts[0].0.lu(scsi_id)
    }
}

fn create(env: &Env, size: u64) -> SmResult<VdiLocation> {
    let args = VdiCreate {
        size,
        name_label: "disk".into(),
        ..VdiCreate::default()
    };
    env.call(0, Command::VdiCreate, None, |d, cx| d.vdi_create(cx, &args))
}

#[test]
fn scan_introduces_every_lun_unmanaged_with_sm_uuids() {
    let env = env();
    env.call(0, Command::SrScan, None, |d, cx| d.sr_scan(cx))
        .unwrap();
    for (l, _) in &env.hosts[0].0.luns {
        let uuid = luns::vdi_uuid(&l.scsi_id);
        assert_eq!(env.vdi_field(&uuid, "location"), l.scsi_id);
        assert_eq!(env.vdi_field(&uuid, "managed"), "false");
        assert_eq!(env.vdi_field(&uuid, "virtual_size"), l.size.to_string());
        assert_eq!(env.sm_config(&uuid)["SCSIid"], l.scsi_id);
    }
    // A second scan changes nothing.
    env.call(0, Command::SrScan, None, |d, cx| d.sr_scan(cx))
        .unwrap();
}

#[test]
fn create_takes_the_smallest_fitting_lun_and_delete_unmanages_it() {
    let env = env();
    let v = create(&env, 300 * MIB).unwrap();
    let l512 = &env.hosts[0].0.luns[1].0;
    assert_eq!(v.location, l512.scsi_id, "smallest LUN >= 300 MiB");
    assert_eq!(v.uuid, luns::vdi_uuid(&l512.scsi_id));
    assert_eq!(env.vdi_field(&v.uuid, "managed"), "true");
    assert_eq!(env.vdi_field(&v.uuid, "name_label"), "disk");
    let v2 = create(&env, 300 * MIB).unwrap();
    assert_eq!(v2.location, env.hosts[0].0.luns[2].0.scsi_id);
    let v3 = create(&env, 600 * MIB).unwrap();
    assert_eq!(v3.location, env.hosts[0].0.luns[3].0.scsi_id);
    let e = create(&env, 300 * MIB).unwrap_err();
    assert_eq!(e.code, SmCode::SRNoSpace, "{e:?}");
    env.call(0, Command::VdiDelete, Some(&v2.uuid), |d, cx| {
        d.vdi_delete(cx)
    })
    .unwrap();
    assert_eq!(env.vdi_field(&v2.uuid, "managed"), "false");
    assert_eq!(create(&env, 300 * MIB).unwrap().location, v2.location);
}

#[test]
fn activate_is_exclusive_between_hosts_and_names_the_holder() {
    let env = env();
    let v = create(&env, 100 * MIB).unwrap();
    let attach = env
        .call(0, Command::VdiAttach, Some(&v.uuid), |d, cx| {
            d.vdi_attach(cx, true)
        })
        .unwrap();
    assert_eq!(
        attach.params.as_deref(),
        Some(format!("/dev/mapper/{}", v.location).as_str())
    );
    env.call(0, Command::VdiActivate, Some(&v.uuid), |d, cx| {
        d.vdi_activate(cx, true)
    })
    .unwrap();
    let lu = env.lu(&v.location);
    assert_eq!(lu.reservation().map(|r| r.0), Some(env.key(0).get()));
    assert_eq!(
        env.sm_config(&v.uuid)[&format!("host_{}", env.host_ref(0))],
        "RW"
    );
    // Idempotent.
    env.call(0, Command::VdiActivate, Some(&v.uuid), |d, cx| {
        d.vdi_activate(cx, true)
    })
    .unwrap();
    // multipathd got the map key.
    assert!(
        env.hosts[0]
            .0
            .multipathd
            .commands()
            .iter()
            .any(|c| c.starts_with("setprkey"))
    );

    let e = env
        .call(1, Command::VdiActivate, Some(&v.uuid), |d, cx| {
            d.vdi_activate(cx, true)
        })
        .unwrap_err();
    assert_eq!(e.code, SmCode::VDIInUse, "{e:?}");
    let name_a = env.emu().hosts()[0].name.clone();
    assert!(e.to_string().contains(&name_a), "names the holder: {e}");
    let b_path = &env.hosts[1].0.fake_paths(&v.location)[0];
    let w = scsi::write_blocks(b_path, Lba(0), &[1; 512], 512).unwrap_err();
    assert_eq!(w.condition(), Condition::ReservationConflict);
    // Read-only activation takes no reservation.
    env.call(1, Command::VdiActivate, Some(&v.uuid), |d, cx| {
        d.vdi_activate(cx, false)
    })
    .unwrap();
    assert_eq!(
        env.sm_config(&v.uuid)[&format!("host_{}", env.host_ref(1))],
        "RO"
    );
    env.call(1, Command::VdiDeactivate, Some(&v.uuid), |d, cx| {
        d.vdi_deactivate(cx)
    })
    .unwrap();

    env.call(0, Command::VdiDeactivate, Some(&v.uuid), |d, cx| {
        d.vdi_deactivate(cx)
    })
    .unwrap();
    assert!(lu.registrations().is_empty() && lu.reservation().is_none());
    assert!(
        !env.sm_config(&v.uuid)
            .contains_key(&format!("host_{}", env.host_ref(0)))
    );
    env.call(0, Command::VdiDeactivate, Some(&v.uuid), |d, cx| {
        d.vdi_deactivate(cx)
    })
    .unwrap();
    env.call(1, Command::VdiActivate, Some(&v.uuid), |d, cx| {
        d.vdi_activate(cx, true)
    })
    .unwrap();
    assert_eq!(lu.reservation().map(|r| r.0), Some(env.key(1).get()));
    scsi::write_blocks(b_path, Lba(0), &[1; 512], 512).unwrap();
}

#[test]
fn a_dead_holder_is_fenced_and_its_record_dropped() {
    let env = env();
    let v = create(&env, 100 * MIB).unwrap();
    env.call(0, Command::VdiActivate, Some(&v.uuid), |d, cx| {
        d.vdi_activate(cx, true)
    })
    .unwrap();
    env.emu().set_host_live(&env.host_ref(0), false).unwrap();
    env.call(1, Command::VdiActivate, Some(&v.uuid), |d, cx| {
        d.vdi_activate(cx, true)
    })
    .unwrap();
    let lu = env.lu(&v.location);
    assert_eq!(lu.reservation().map(|r| r.0), Some(env.key(1).get()));
    assert!(lu.registrations().iter().all(|r| r.key == env.key(1).get()));
    let sm = env.sm_config(&v.uuid);
    assert_eq!(sm[&format!("host_{}", env.host_ref(1))], "RW");
    assert!(
        !sm.contains_key(&format!("host_{}", env.host_ref(0))),
        "{sm:?}"
    );
    let a_path = &env.hosts[0].0.fake_paths(&v.location)[0];
    assert_eq!(
        scsi::write_blocks(a_path, Lba(0), &[1; 512], 512)
            .unwrap_err()
            .condition(),
        Condition::ReservationConflict
    );
}

#[test]
fn a_foreign_reservation_is_refused_unless_the_sr_s_sm_config_says_preempt() {
    let env = env();
    let v = create(&env, 100 * MIB).unwrap();
    // Another cluster's node, on host A's initiator port, holds the LUN with its own key.
    let foreign = 0xf0f0_0000_0000_00a1;
    let a_path = &env.hosts[0].0.fake_paths(&v.location)[0];
    scsi::pr_register(a_path, 0, foreign, scsi::RegisterOpts::default()).unwrap();
    scsi::pr_reserve(a_path, foreign, scsi::PrType::WriteExclusiveRegistrantsOnly).unwrap();
    let e = env
        .call(1, Command::VdiActivate, Some(&v.uuid), |d, cx| {
            d.vdi_activate(cx, true)
        })
        .unwrap_err();
    assert_eq!(e.code, SmCode::VDIInUse);
    let text = sm_core::errors::error_chain(&e);
    assert!(
        text.contains("foreign key 0xf0f00000000000a1")
            && text.contains("iqn.2026-01.test.lab:host-a")
            && text.contains("foreign-keys=preempt"),
        "{text}"
    );
    let lu = env.lu(&v.location);
    assert_eq!(lu.reservation().map(|r| r.0), Some(foreign));
    assert!(lu.registrations().iter().all(|r| r.key == foreign));
    assert!(
        !env.sm_config(&v.uuid)
            .contains_key(&format!("host_{}", env.host_ref(1))),
        "no record for a refused activation"
    );

    // The SR's sm_config (xapi sends it only with sr_probe: read through XenAPI).
    env.emu()
        .write(|db| {
            let sr = db.get_mut("SR", &env.sr_ref)?;
            let mut sm = sr.map("sm_config");
            sm.insert("foreign-keys".into(), "preempt".into());
            sr.put_map("sm_config", &sm);
            Ok(())
        })
        .unwrap();
    env.call(1, Command::VdiActivate, Some(&v.uuid), |d, cx| {
        d.vdi_activate(cx, true)
    })
    .unwrap();
    assert_eq!(lu.reservation().map(|r| r.0), Some(env.key(1).get()));
    assert!(lu.registrations().iter().all(|r| r.key == env.key(1).get()));
}

#[test]
fn sr_attach_removes_registrations_left_by_a_crash() {
    let env = env();
    let v = create(&env, 100 * MIB).unwrap();
    let w = create(&env, 100 * MIB).unwrap();
    env.call(0, Command::VdiActivate, Some(&v.uuid), |d, cx| {
        d.vdi_activate(cx, true)
    })
    .unwrap();
    env.call(0, Command::VdiActivate, Some(&w.uuid), |d, cx| {
        d.vdi_activate(cx, true)
    })
    .unwrap();
    // The host crashes; xapi forgets its activation of w (its records are reset), not v's.
    let key = format!("host_{}", env.host_ref(0));
    env.emu()
        .write(|db| {
            let r = db.by_uuid("VDI", &w.uuid)?;
            let mut sm = db.get("VDI", &r)?.map("sm_config");
            sm.remove(&key);
            db.get_mut("VDI", &r)?.put_map("sm_config", &sm);
            Ok(())
        })
        .unwrap();
    env.call(0, Command::SrAttach, None, |d, cx| d.sr_attach(cx))
        .unwrap();
    assert!(
        env.lu(&w.location).registrations().is_empty(),
        "stale registrations removed"
    );
    assert!(env.lu(&w.location).reservation().is_none());
    assert!(
        env.hosts[0]
            .0
            .multipathd
            .commands()
            .iter()
            .any(|c| c.starts_with("unsetprkey") && c.contains(&w.location)),
        "multipathd forgets the key of the cleaned map"
    );
    assert_eq!(
        env.lu(&v.location).reservation().map(|r| r.0),
        Some(env.key(0).get()),
        "the active one is kept"
    );
}

#[test]
fn a_lun_without_pr_fails_attach_clearly() {
    let env = env();
    let v = create(&env, 100 * MIB).unwrap();
    let sense = scsi::SenseInfo::new(scsi::SenseKey::IllegalRequest, 0x20, 0).encode();
    env.lu(&v.location).script(
        None,
        &[0x5e],
        sm_core::testing::Reply::Status { status: 2, sense },
        usize::MAX,
    );
    let e = env
        .call(0, Command::VdiAttach, Some(&v.uuid), |d, cx| {
            d.vdi_attach(cx, true)
        })
        .unwrap_err();
    assert_eq!(e.code, SmCode::VDIUnavailable);
    assert!(
        e.to_string()
            .contains("does not support SCSI-3 persistent reservations"),
        "{e}"
    );
}

#[test]
fn bad_policy_is_a_clear_fault() {
    let env = env();
    let v = create(&env, 100 * MIB).unwrap();
    let mut req = env.request(0, Command::VdiActivate, Some(&v.uuid));
    req.device_config.insert("reservation-type", "1");
    let host = Host::with(
        env.runner.clone(),
        env._dir.path(),
        Endpoint::parse(&format!("unix:{}", env.running.socket().display())).unwrap(),
    );
    let cx = Ctx::new(&req, &host);
    let e = env.hosts[0].vdi_activate(&cx, true).unwrap_err();
    assert_eq!(e.code, SmCode::ConfigParamsMissing);
    assert!(e.to_string().contains("reservation-type"), "{e}");
}

#[test]
fn a_location_that_is_not_a_scsi_id_is_fault_107_and_nothing_is_reserved() {
    let env = env();
    let v = create(&env, 100 * MIB).unwrap();
    let host = Host::with(
        env.runner.clone(),
        env._dir.path(),
        Endpoint::parse(&format!("unix:{}", env.running.socket().display())).unwrap(),
    );
    for bad in ["../../dev/sda", "3600 1", "x".repeat(129).as_str()] {
        let mut req = env.request(0, Command::VdiActivate, Some(&v.uuid));
        req.vdi_location = Some(bad.to_string());
        let cx = Ctx::new(&req, &host);
        let e = env.hosts[0].vdi_activate(&cx, true).unwrap_err();
        assert_eq!(e.code, SmCode::ConfigSCSIid, "{bad}: {e}");
        assert!(e.to_string().contains("not a SCSI id"), "{e}");
    }
    assert_eq!(env.lu(&v.location).reservation(), None);
    assert!(
        !env.sm_config(&v.uuid)
            .keys()
            .any(|k| k.starts_with("host_"))
    );
}
