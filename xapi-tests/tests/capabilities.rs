//! Capability gating against the real plugin binary: the same `XSMFileSR` declaring fewer
//! capabilities (a wrapper filters its `sr_get_driver_info`) makes xapi choose other sequences.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Pool, file_without};
use xapi_tests::appendix::check;

fn pool_with(name: &str, drop: &str) -> Pool {
    let dir = tempfile::tempdir().unwrap();
    let plugins = common::install(dir.path());
    file_without(&plugins, name, drop);
    Pool::start_with(dir, plugins, |_| {})
}

fn sr(p: &Pool, ty: &str) -> String {
    let loc = format!("device-config:location={}", p.sr_dir("sr").display());
    let sr = p.xe_ok(&["sr-create", &format!("type={ty}"), "name-label=S", &loc]);
    p.set_default_sr(&sr);
    sr
}

fn commands(p: &Pool) -> Vec<String> {
    p.last_calls().iter().map(|c| c.command.clone()).collect()
}

#[test]
fn without_vdi_clone_vm_clone_is_create_and_copy() {
    let p = pool_with("NocloneSR", "VDI_CLONE");
    let caps = p.emu().driver("noclone").unwrap().capabilities;
    assert!(
        !caps.iter().any(|c| c == "VDI_CLONE") && caps.iter().any(|c| c == "VDI_SNAPSHOT"),
        "{caps:?}"
    );
    sr(&p, "noclone");
    let vm = p.xe_ok(&[
        "vm-install",
        "template=Debian Sarge 3.1",
        "new-name-label=V",
    ]);
    let clone = p.xe_ok(&["vm-clone", &format!("uuid={vm}"), "new-name-label=C"]);
    let cmds = commands(&p);
    assert!(!cmds.iter().any(|c| c == "vdi_clone"), "{cmds:?}");
    assert_eq!(
        cmds.iter().filter(|c| *c == "vdi_create").count(),
        2,
        "one copy per disk: {cmds:?}"
    );
    assert_eq!(
        cmds.iter().filter(|c| *c == "vdi_attach").count(),
        4,
        "source and copy of each disk: {cmds:?}"
    );
    let copies: Vec<_> = p.events().into_iter().filter(|e| matches!(e, xapi_tests::trace::Event::Data { what, ok: true, .. } if what == "copy")).collect();
    assert_eq!(copies.len(), 2, "the emulator copied both disks");
    p.xe_ok(&["vm-start", &format!("uuid={clone}")]);
    p.xe_ok(&["vm-shutdown", &format!("uuid={clone}")]);
    let disk = p.xe_ok(&[
        "vbd-list",
        &format!("vm-uuid={vm}"),
        "userdevice=0",
        "params=vdi-uuid",
        "--minimal",
    ]);
    let (code, _, err) = p.xe(&["vdi-clone", &format!("uuid={disk}")]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("The SR backend does not support the operation"),
        "{err}"
    );
    let verdicts = check::check(&p.events());
    assert_eq!(
        check::first_mismatch(&verdicts[..verdicts.len() - 1]),
        None,
        "the trace matches appendix A (vm-clone without VDI_CLONE)"
    );
}

#[test]
fn without_vdi_activate_there_is_no_activate_or_deactivate() {
    let p = pool_with("NoactivateSR", "VDI_ACTIVATE|VDI_DEACTIVATE");
    sr(&p, "noactivate");
    let vm = p.xe_ok(&[
        "vm-install",
        "template=Debian Sarge 3.1",
        "new-name-label=V",
    ]);
    p.xe_ok(&["vm-start", &format!("uuid={vm}")]);
    assert_eq!(
        commands(&p),
        ["vdi_attach", "vdi_detach", "vdi_attach", "vdi_attach"],
        "bootloader then both disks"
    );
    p.xe_ok(&[
        "vm-migrate",
        &format!("uuid={vm}"),
        &format!("host={}", p.host_names()[0]),
    ]);
    assert!(
        commands(&p).is_empty(),
        "a migration within one host has nothing to tell such a driver"
    );
    p.xe_ok(&["vm-shutdown", &format!("uuid={vm}")]);
    assert_eq!(commands(&p), ["vdi_detach", "vdi_detach"]);
    p.xe_ok(&["vm-uninstall", &format!("uuid={vm}"), "--force"]);
    assert_eq!(
        commands(&p),
        ["vdi_detach", "vdi_delete", "vdi_detach", "vdi_delete"]
    );
    let all: Vec<String> = p
        .events()
        .into_iter()
        .filter_map(|e| {
            if let xapi_tests::trace::Event::Smapi(c) = e {
                Some(c.command)
            } else {
                None
            }
        })
        .collect();
    assert!(!all.iter().any(|c| c.contains("activate")), "{all:?}");
    assert_eq!(check::first_mismatch(&check::check(&p.events())), None);
}
