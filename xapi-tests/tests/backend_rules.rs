//! The emulator plugs VM disks as an XCP-ng host's xenopsd and VBD backends take them
//! (`xapi_tests::storage::backend`): on a host where blktap's `tap-ctl` runs, the attach result
//! of a driver that does not serve through tapdisk (wave 1's qemu-nbd socket) is refused as
//! tapback refuses it, the disks are released again, and the VM stays halted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{Pool, script};

/// A pool with the real plugins whose hosts find `tools` first for the emulator's own
/// commands (the plugins do not: they see no `tap-ctl` and serve through qemu-nbd).
fn pool(tools: &Path) -> Pool {
    let dir = tempfile::tempdir().unwrap();
    let plugins = common::install(dir.path());
    let tools = tools.to_path_buf();
    Pool::start_with(dir, plugins, move |cfg| {
        for h in &mut cfg.hosts {
            h.tool_dirs = vec![tools.clone()];
        }
    })
}

/// A `tap-ctl` that lists no tapdisk: the host has blktap.
fn blktap(tools: &Path) {
    script(
        &tools.join("tap-ctl"),
        "#!/bin/sh\n[ \"$1\" = list ] && exit 0\necho \"tap-ctl $1: not in this test\" >&2\nexit 1\n",
    );
}

fn commands(p: &Pool) -> Vec<String> {
    p.last_calls().iter().map(|c| c.command.clone()).collect()
}

fn power_state(p: &Pool, vm: &str) -> String {
    p.xe_ok(&[
        "vm-param-get",
        &format!("uuid={vm}"),
        "param-name=power-state",
    ])
}

#[test]
fn a_host_with_blktap_refuses_what_tapback_and_blkback_refuse_and_releases_the_disks() {
    let tools = tempfile::tempdir().unwrap();
    blktap(tools.path());
    let p = pool(tools.path());
    let sr = p.file_sr("sr", false);
    p.set_default_sr(&sr);
    let vm = p.xe_ok(&[
        "vm-install",
        "template=Debian Sarge 3.1",
        "new-name-label=V",
    ]);

    let (code, _, err) = p.xe(&["vm-start", &format!("uuid={vm}")]);
    assert_ne!(code, 0, "vbd3 takes no qemu-nbd socket");
    assert!(err.contains("Malformed physical-device-path"), "{err}");
    let cmds = commands(&p);
    for c in ["vdi_attach", "vdi_activate", "vdi_deactivate", "vdi_detach"] {
        assert!(cmds.iter().any(|x| x == c), "{c} in {cmds:?}");
    }
    assert_eq!(
        cmds.iter().filter(|c| *c == "vdi_attach").count(),
        cmds.iter().filter(|c| *c == "vdi_detach").count(),
        "every disk attached is detached again: {cmds:?}"
    );
    assert_eq!(power_state(&p, &vm), "halted");

    let vbd = p.xe_ok(&[
        "vbd-list",
        &format!("vm-uuid={vm}"),
        "userdevice=0",
        "--minimal",
    ]);
    p.xe_ok(&[
        "vbd-param-set",
        &format!("uuid={vbd}"),
        "other-config:backend-kind=vbd",
    ]);
    let (code, _, err) = p.xe(&["vm-start", &format!("uuid={vm}")]);
    assert_ne!(code, 0, "blkback takes only a block device");
    assert!(
        err.contains("vbd backend") && err.contains("is not a block device"),
        "{err}"
    );
    assert_eq!(power_state(&p, &vm), "halted");

    std::fs::remove_file(tools.path().join("tap-ctl")).unwrap();
    p.xe_ok(&["vm-start", &format!("uuid={vm}")]);
    assert_eq!(
        power_state(&p, &vm),
        "running",
        "without blktap the rules do not apply"
    );
    p.xe_ok(&["vm-shutdown", &format!("uuid={vm}")]);
}
