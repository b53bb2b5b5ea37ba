//! SCSI layer against the real LIO target in the lab guest (tier "lab": `#[ignore = "lab"]`,
//! names `lab_*`). Each test finds the LIO paths itself: from `LAB_JSON` when the lab runner
//! sets it, else by scanning `/sys/block/sd*` for `LIO-ORG` devices; outside a lab it returns
//! at once. Results are cross-checked against sg3_utils (`sg_inq`, `sg_rtpg`, `sg_persist`)
//! and udev's `scsi_id`. Every test restores the ALUA states and PR state it changed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed setup is a failed test

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use sm_core::host::run::{Cmd, Runner, SystemRunner};
use sm_core::scsi::{
    self, AccessState, Condition, DataDir, NotReady, PrType, RegisterOpts, RtpgFormat, SgDevice,
    TpgId, TpgStatus, TransportId,
};

/// One SCSI path seen by this host.
#[derive(Debug, Clone)]
struct LabPath {
    dev: PathBuf,
    initiator: String,
}

/// Paths to one LU, by WWID.
#[derive(Debug, Clone)]
struct LabLun {
    wwid: String,
    paths: Vec<LabPath>,
}

fn note(msg: &str) {
    let _ = writeln!(std::io::stderr(), "scsi_lab: {msg}");
}

fn sysfs(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// The initiator name of the iSCSI session behind `/sys/block/<name>` (iscsi_tcp does not
/// export the ISID in sysfs; READ FULL STATUS is cross-checked against `sg_persist` instead).
fn session_of(name: &str) -> Option<String> {
    let real = std::fs::canonicalize(format!("/sys/block/{name}")).ok()?;
    let session = real.components().find_map(|c| {
        let s = c.as_os_str().to_str()?;
        s.starts_with("session").then(|| s.to_string())
    })?;
    sysfs(format!("/sys/class/iscsi_session/{session}/initiatorname"))
}

/// This host's initiator name.
fn local_initiator() -> Option<String> {
    let text = std::fs::read_to_string("/etc/iscsi/initiatorname.iscsi").ok()?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("InitiatorName=").map(str::to_string))
}

/// Device names the lab description lists for host A (`LAB_JSON`), if set.
fn lab_json_devices() -> Option<Vec<String>> {
    let path = std::env::var_os("LAB_JSON")?;
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("LAB_JSON {path:?}: {e}"));
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("LAB_JSON: {e}"));
    let mut devs = Vec::new();
    for lun in v["luns"].as_array().into_iter().flatten() {
        for p in lun["host_a"]["paths"].as_array().into_iter().flatten() {
            if let Some(d) = p["dev"].as_str() {
                devs.push(d.trim_start_matches("/dev/").to_string());
            }
        }
    }
    Some(devs)
}

/// Every LIO LU reachable from this host, its paths grouped by the WWID our own VPD 0x83
/// parser reports. `None` outside a lab.
fn discover() -> Option<Vec<LabLun>> {
    let names: Vec<String> = match lab_json_devices() {
        Some(d) => d,
        None => std::fs::read_dir("/sys/block")
            .ok()?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("sd"))
            .filter(|n| {
                sysfs(format!("/sys/block/{n}/device/vendor")).as_deref() == Some("LIO-ORG")
            })
            .collect(),
    };
    let mut luns: BTreeMap<String, Vec<LabPath>> = BTreeMap::new();
    for name in names {
        let dev = PathBuf::from(format!("/dev/{name}"));
        let Some(initiator) = session_of(&name) else {
            continue;
        };
        let sg = SgDevice::open(&dev).unwrap_or_else(|e| panic!("{e}"));
        let id = scsi::vpd_device_id(&sg).unwrap_or_else(|e| panic!("{e}"));
        let wwid = id
            .naa_wwid()
            .unwrap_or_else(|| panic!("{}: no NAA designator", dev.display()));
        luns.entry(wwid)
            .or_default()
            .push(LabPath { dev, initiator });
    }
    if luns.is_empty() {
        note("no LIO paths here: not in a lab, skipping");
        return None;
    }
    Some(
        luns.into_iter()
            .map(|(wwid, paths)| LabLun { wwid, paths })
            .collect(),
    )
}

/// Host A's paths of `lun`, sorted by the relative target port they go through.
fn host_a_paths(lun: &LabLun) -> Vec<(LabPath, SgDevice, u16)> {
    let me = local_initiator();
    let mut v: Vec<_> = lun
        .paths
        .iter()
        .filter(|p| me.as_deref().is_none_or(|m| m == p.initiator))
        .map(|p| {
            let sg = SgDevice::open(&p.dev).unwrap_or_else(|e| panic!("{e}"));
            let port = scsi::vpd_device_id(&sg)
                .unwrap()
                .relative_target_port()
                .expect("relative port designator")
                .0;
            (p.clone(), sg, port)
        })
        .collect();
    v.sort_by_key(|(_, _, port)| *port);
    v.dedup_by_key(|(_, _, port)| *port);
    v
}

/// LUs this host reaches through at least two target ports (ALUA and PR tests need both).
fn multiport(luns: &[LabLun]) -> Vec<&LabLun> {
    let me = local_initiator();
    luns.iter()
        .filter(|l| {
            l.paths
                .iter()
                .filter(|p| me.as_deref().is_none_or(|m| m == p.initiator))
                .count()
                >= 2
        })
        .collect()
}

fn run(program: &str, args: &[&str]) -> String {
    let out = SystemRunner::new()
        .run(&Cmd::new(program).args(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    out.stdout_str()
}

fn dev_str(p: &LabPath) -> &str {
    p.dev.to_str().unwrap()
}

/// `sg_rtpg -d` as (group id, state code) pairs.
fn sg_rtpg(dev: &str) -> Vec<(u16, u8)> {
    let text = run("sg_rtpg", &["-d", dev]);
    let mut out = Vec::new();
    let mut id = None;
    for line in text.lines() {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("target port group id : 0x") {
            id = u16::from_str_radix(rest.split([' ', ',']).next().unwrap(), 16).ok();
        } else if let Some(rest) = l.strip_prefix("target port group asymmetric access state : 0x")
        {
            let code = u8::from_str_radix(&rest[..2], 16).unwrap();
            out.push((id.take().unwrap(), code));
        }
    }
    out
}

/// `sg_persist --in -k`: generation and keys.
fn sg_persist_keys(dev: &str) -> (u32, Vec<u64>) {
    let text = run("sg_persist", &["--in", "-k", dev]);
    let gen_at = text
        .find("PR generation=0x")
        .expect("generation in sg_persist output")
        + 16;
    let generation = u32::from_str_radix(text[gen_at..].split(',').next().unwrap(), 16).unwrap();
    let keys = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("0x"))
        .map(|k| u64::from_str_radix(k, 16).unwrap())
        .collect();
    (generation, keys)
}

/// `sg_persist --in -s`: the TransportIDs of every registrant, as sg3_utils prints them.
fn sg_persist_transport_ids(dev: &str) -> Vec<String> {
    let text = run("sg_persist", &["--in", "-s", dev]);
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("iSCSI world wide unique port id: "))
        .map(str::to_string)
        .collect()
}

/// `sg_persist --in -r`: the reservation key, if one is held.
fn sg_persist_holder_key(dev: &str) -> Option<u64> {
    let text = run("sg_persist", &["--in", "-r", dev]);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Key=0x"))
        .map(|k| u64::from_str_radix(k, 16).unwrap())
}

#[test]
#[ignore = "lab"]
fn lab_scsi_identity_matches_scsi_id_and_sg_inq() {
    let Some(luns) = discover() else { return };
    for lun in &luns {
        for p in &lun.paths {
            let dev = SgDevice::open(&p.dev).unwrap();
            let inq = scsi::inquiry_standard(&dev).unwrap();
            assert_eq!(inq.vendor, "LIO-ORG");
            assert!(inq.tpgs.is_alua(), "{}: TPGS", p.dev.display());
            let id = scsi::vpd_device_id(&dev).unwrap();
            let scsi_id = run("/lib/udev/scsi_id", &["-g", "-u", "-d", dev_str(p)]);
            assert_eq!(
                id.naa_wwid().as_deref(),
                Some(scsi_id.trim()),
                "{}: WWID vs scsi_id",
                p.dev.display()
            );
            assert_eq!(
                id.wwid(),
                id.naa_wwid(),
                "multipath's choice is the NAA designator"
            );
            assert!(scsi::vpd_supported_pages(&dev).unwrap().contains(&0x83));
            let serial = scsi::vpd_unit_serial(&dev).unwrap();
            let sg_inq = run("sg_inq", &[dev_str(p)]);
            assert!(
                sg_inq.contains(&format!("Unit serial number: {serial}")),
                "serial {serial} vs sg_inq:\n{sg_inq}"
            );
            let cap = scsi::read_capacity16(&dev).unwrap();
            let sectors: u64 = sysfs(format!(
                "/sys/block/{}/size",
                p.dev.file_name().unwrap().to_str().unwrap()
            ))
            .unwrap()
            .parse()
            .unwrap();
            assert_eq!(
                cap.bytes(),
                sectors * 512,
                "{}: READ CAPACITY(16) vs sysfs",
                p.dev.display()
            );
            // The TPG designator names the group RTPG lists this port in.
            let groups = scsi::report_target_port_groups_standard(&dev).unwrap();
            let port = id.relative_target_port().unwrap();
            assert_eq!(
                groups.group_of_port(port).map(|g| g.id),
                id.target_port_group()
            );
            scsi::test_unit_ready(&dev).unwrap_or_else(|e| {
                // Standby or unavailable paths answer NOT READY: that is a decoded answer too.
                assert!(matches!(e.condition(), Condition::NotReady(_)), "{e}");
            });
        }
        note(&format!(
            "{}: {} paths identified",
            lun.wwid,
            lun.paths.len()
        ));
    }
}

#[test]
#[ignore = "lab"]
fn lab_scsi_sg_char_device_and_passed_fd() {
    let Some(luns) = discover() else { return };
    let p = &luns[0].paths[0];
    let name = p.dev.file_name().unwrap().to_str().unwrap();
    let sg = std::fs::read_dir(format!("/sys/block/{name}/device/scsi_generic"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let char_dev = SgDevice::open(Path::new("/dev").join(&sg)).unwrap();
    let block_dev = SgDevice::open(&p.dev).unwrap();
    assert_eq!(
        scsi::inquiry_standard(&char_dev).unwrap(),
        scsi::inquiry_standard(&block_dev).unwrap()
    );
    assert_eq!(
        scsi::vpd_device_id(&char_dev).unwrap(),
        scsi::vpd_device_id(&block_dev).unwrap()
    );
    // A descriptor opened elsewhere (as the pr-helper daemon receives them over SCM_RIGHTS).
    let fd: std::os::fd::OwnedFd = std::fs::File::open(&p.dev).unwrap().into();
    let passed = SgDevice::from_fd(fd, "passed-fd");
    assert!(!passed.is_writable());
    assert_eq!(
        scsi::vpd_device_id(&passed).unwrap().naa_wwid(),
        Some(luns[0].wwid.clone())
    );
    // ILLEGAL REQUEST is decoded, not retried.
    let e = scsi::exec(&block_dev, &[0xc0, 0, 0, 0, 0, 0], DataDir::None).unwrap_err();
    assert_eq!(
        e.condition(),
        Condition::IllegalRequest { asc: 0x20, ascq: 0 }
    );
    let mut buf = [0u8; 255];
    let e = scsi::exec(
        &block_dev,
        &scsi::cdb::inquiry(true, 0xc7, 255),
        DataDir::FromDevice(&mut buf),
    )
    .unwrap_err();
    assert_eq!(
        e.condition(),
        Condition::IllegalRequest { asc: 0x24, ascq: 0 }
    );
}

#[test]
#[ignore = "lab"]
fn lab_scsi_rtpg_stpg_round_trip() {
    let Some(luns) = discover() else { return };
    let usable = multiport(&luns);
    let lun = *usable.last().expect("a LU with two host-A paths");
    let paths = host_a_paths(lun);
    assert!(
        paths.len() >= 2,
        "{}: need two ports, have {}",
        lun.wwid,
        paths.len()
    );
    let (p1, d1, _) = &paths[0];
    let (p2, d2, _) = &paths[1];
    if !scsi::inquiry_standard(d1).unwrap().tpgs.explicit() {
        note("no explicit ALUA: skipping STPG");
        return;
    }
    let tpg1 = scsi::vpd_device_id(d1)
        .unwrap()
        .target_port_group()
        .unwrap();
    let tpg2 = scsi::vpd_device_id(d2)
        .unwrap()
        .target_port_group()
        .unwrap();
    assert_ne!(tpg1, tpg2, "the two ports must be in different groups");
    let before = scsi::report_target_port_groups(d1).unwrap();
    assert!(
        matches!(before.format, RtpgFormat::Extended { .. }),
        "extended header (LIO fallback) expected"
    );
    let standard = scsi::report_target_port_groups_standard(d1).unwrap();
    assert_eq!(
        before.groups, standard.groups,
        "extended fallback reads the same groups"
    );
    let sg: Vec<(u16, u8)> = sg_rtpg(dev_str(p1));
    let ours: Vec<(u16, u8)> = before
        .groups
        .iter()
        .map(|g| (g.id.0, g.state.code()))
        .collect();
    assert_eq!(ours, sg, "RTPG vs sg_rtpg");
    let orig: Vec<(TpgId, AccessState)> = before.groups.iter().map(|g| (g.id, g.state)).collect();
    let restore = || {
        let wanted: Vec<(TpgId, AccessState)> = orig
            .iter()
            .copied()
            .filter(|(_, s)| !matches!(s, AccessState::Transitioning | AccessState::Offline))
            .collect();
        scsi::set_target_port_groups(d1, &wanted).unwrap();
    };

    // Swap: port 2's group active/optimized, port 1's active/non-optimized.
    scsi::set_target_port_groups(
        d1,
        &[
            (tpg2, AccessState::ActiveOptimized),
            (tpg1, AccessState::ActiveNonOptimized),
        ],
    )
    .unwrap();
    let after = scsi::report_target_port_groups_standard(d2).unwrap();
    assert_eq!(
        after.group(tpg2).map(|g| (g.state, g.status)),
        Some((AccessState::ActiveOptimized, TpgStatus::AlteredBySet))
    );
    assert_eq!(
        after.group(tpg1).map(|g| (g.state, g.status)),
        Some((AccessState::ActiveNonOptimized, TpgStatus::AlteredBySet))
    );
    assert_eq!(
        sg_rtpg(dev_str(p2)),
        after
            .groups
            .iter()
            .map(|g| (g.id.0, g.state.code()))
            .collect::<Vec<_>>()
    );

    // Standby: port 2 refuses TUR with 04/0B but still answers PR IN and READ CAPACITY.
    scsi::set_target_port_groups(
        d1,
        &[
            (tpg1, AccessState::ActiveOptimized),
            (tpg2, AccessState::Standby),
        ],
    )
    .unwrap();
    let e = scsi::test_unit_ready(d2).unwrap_err();
    assert_eq!(e.condition(), Condition::NotReady(NotReady::Standby), "{e}");
    scsi::pr_read_keys(d2).unwrap();
    scsi::read_capacity16(d2).unwrap();

    // Unavailable: 04/0C; INQUIRY and RTPG still work.
    scsi::set_target_port_groups(d1, &[(tpg2, AccessState::Unavailable)]).unwrap();
    let e = scsi::test_unit_ready(d2).unwrap_err();
    assert_eq!(
        e.condition(),
        Condition::NotReady(NotReady::Unavailable),
        "{e}"
    );
    scsi::inquiry_standard(d2).unwrap();
    assert_eq!(
        scsi::report_target_port_groups(d2)
            .unwrap()
            .group(tpg2)
            .map(|g| g.state),
        Some(AccessState::Unavailable)
    );

    // Never sent: TRANSITIONING cannot be requested.
    assert!(matches!(
        scsi::set_target_port_groups(d1, &[(tpg2, AccessState::Transitioning)]),
        Err(scsi::ScsiError::Invalid(_))
    ));
    restore();
    let back = scsi::report_target_port_groups_standard(d1).unwrap();
    assert_eq!(
        back.groups
            .iter()
            .map(|g| (g.id, g.state))
            .collect::<Vec<_>>(),
        orig
    );
    note(&format!(
        "{}: STPG round trip on groups {tpg1} and {tpg2} restored",
        lun.wwid
    ));
}

#[test]
#[ignore = "lab"]
fn lab_scsi_pr_register_reserve_release_clear() {
    let Some(luns) = discover() else { return };
    let usable = multiport(&luns);
    let lun = *usable
        .iter()
        .rev()
        .nth(1)
        .or(usable.first())
        .expect("a LU with two host-A paths");
    let paths = host_a_paths(lun);
    assert!(paths.len() >= 2, "{}: need two host-A paths", lun.wwid);
    let (p1, d1, port1) = &paths[0];
    let (p2, d2, _) = &paths[1];
    const K: u64 = 0x5c51_0000_0000_00a1;
    const K2: u64 = 0x5c51_0000_0000_00b2;

    // Start clean (a previous failed run may have left registrations).
    if !scsi::pr_read_keys(d1).unwrap().keys.is_empty() {
        scsi::pr_register_ignore(d1, K, RegisterOpts::default()).unwrap();
        scsi::pr_clear(d1, K).unwrap();
    }
    let caps = scsi::pr_report_capabilities(d1).unwrap();
    assert!(caps.atp_c && caps.sip_c && caps.tmv);
    assert_eq!(caps.types, PrType::ALL);
    let gen0 = scsi::pr_read_keys(d1).unwrap().generation;

    // LIO answers RESERVE from an unregistered nexus with NOT READY 08/00, not a conflict.
    let e = scsi::pr_reserve(d1, K, PrType::WriteExclusiveRegistrantsOnly).unwrap_err();
    assert_eq!(
        e.condition(),
        Condition::NotReady(NotReady::LuCommunicationFailure),
        "{e}"
    );

    scsi::pr_register(d1, 0, K, RegisterOpts::default()).unwrap();
    scsi::pr_register(d2, 0, K, RegisterOpts::default()).unwrap();
    let keys = scsi::pr_read_keys(d1).unwrap();
    assert_eq!(keys.keys, [K, K]);
    assert_eq!(keys.generation, gen0.wrapping_add(2));
    assert_eq!(
        sg_persist_keys(dev_str(p2)),
        (keys.generation, keys.keys.clone()),
        "READ KEYS vs sg_persist"
    );

    scsi::pr_reserve(d1, K, PrType::WriteExclusiveRegistrantsOnly).unwrap();
    let r = scsi::pr_read_reservation(d2).unwrap().reservation.unwrap();
    assert_eq!(
        (r.key, r.pr_type),
        (K, PrType::WriteExclusiveRegistrantsOnly)
    );
    assert_eq!(sg_persist_holder_key(dev_str(p2)), Some(K));
    let fs = scsi::pr_read_full_status(d2).unwrap();
    assert_eq!(fs.registrants.len(), 2);
    let holder = fs.registrants.iter().find(|g| g.holder).unwrap();
    assert_eq!(holder.rel_tgt_port.map(|p| p.0), Some(*port1));
    assert!(
        matches!(&holder.transport_id, TransportId::Iscsi { name, isid: Some(_) } if *name == p1.initiator),
        "{:?}",
        holder.transport_id
    );
    let ours: Vec<String> = fs
        .registrants
        .iter()
        .map(|g| g.transport_id.to_string())
        .collect();
    assert_eq!(
        ours,
        sg_persist_transport_ids(dev_str(p2)),
        "READ FULL STATUS vs sg_persist -s"
    );

    // RELEASE from the registered non-holder: GOOD, and nothing released.
    scsi::pr_release(d2, K, PrType::WriteExclusiveRegistrantsOnly).unwrap();
    assert!(
        scsi::pr_read_reservation(d1).unwrap().reservation.is_some(),
        "non-holder RELEASE must not release"
    );

    // Under WE-RO a registered path writes; rewrite the last block with its own bytes.
    let cap = scsi::read_capacity16(d2).unwrap();
    let last = cap.last_lba;
    let bl = usize::try_from(cap.block_len).unwrap();
    let mut block = vec![0u8; bl];
    scsi::read_blocks(d2, last, &mut block, cap.block_len).unwrap();
    scsi::write_blocks(d2, last, &block, cap.block_len).unwrap();

    // Unregistered, path 2 may read but not write, and cannot reserve.
    scsi::pr_register(d2, K, 0, RegisterOpts::default()).unwrap();
    assert_eq!(scsi::pr_read_keys(d1).unwrap().keys, [K]);
    let e = scsi::write_blocks(d2, last, &block, cap.block_len).unwrap_err();
    assert!(e.is_reservation_conflict(), "{e}");
    assert_eq!(e.condition().retry(), scsi::Retry::Never);
    scsi::read_blocks(d2, last, &mut block, cap.block_len).unwrap();
    let e = scsi::pr_reserve(d2, 0, PrType::WriteExclusiveRegistrantsOnly).unwrap_err();
    assert!(e.is_reservation_conflict(), "{e}");

    // Bad scope: ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST.
    let (mut c, list) = scsi::PrOut::Reserve {
        key: K,
        pr_type: PrType::WriteExclusive,
    }
    .build()
    .unwrap();
    c[2] = 0x11;
    let e = scsi::exec(d1, &c, DataDir::ToDevice(&list)).unwrap_err();
    assert_eq!(
        e.condition(),
        Condition::IllegalRequest { asc: 0x26, ascq: 0 }
    );

    // Path 2 registers another key and preempts-and-aborts path 1's.
    scsi::pr_register(d2, 0, K2, RegisterOpts::default()).unwrap();
    let g = scsi::pr_read_keys(d2).unwrap().generation;
    scsi::pr_preempt(d2, K2, K, PrType::WriteExclusiveRegistrantsOnly, true).unwrap();
    let keys = scsi::pr_read_keys(d2).unwrap();
    assert_eq!(keys.keys, [K2]);
    assert_eq!(
        keys.generation,
        g.wrapping_add(1),
        "PREEMPT bumps PRgeneration by exactly one"
    );
    let r = scsi::pr_read_reservation(d2).unwrap().reservation.unwrap();
    assert_eq!(r.key, K2);
    // Path 1 (preempted) sees a unit attention next; exec retries it transparently.
    scsi::pr_read_keys(d1).unwrap();

    scsi::pr_clear(d2, K2).unwrap();
    let keys = scsi::pr_read_keys(d1).unwrap();
    assert!(keys.keys.is_empty() && scsi::pr_read_reservation(d1).unwrap().reservation.is_none());
    assert_eq!(sg_persist_keys(dev_str(p1)).1, Vec::<u64>::new());
    note(&format!(
        "{}: PR cycle done, generation {}",
        lun.wwid, keys.generation
    ));

    // Another initiator's path to the same LU (the reference lab's host B) is unaffected by
    // host A's cleanup; when present, check it sees an empty state too.
    if let Some(other) = lun
        .paths
        .iter()
        .find(|p| Some(&p.initiator) != local_initiator().as_ref())
    {
        let d = SgDevice::open(&other.dev).unwrap();
        assert!(scsi::pr_read_keys(&d).unwrap().keys.is_empty());
    }
}
