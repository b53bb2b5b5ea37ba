//! `xe` commands against the real plugin binary: output and errors as the real `xe` prints them,
//! the SMAPI calls each command makes, and the data path (vdi-copy copies the bytes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Pool;
use xapi_tests::storage::blockio;
use xapi_tests::storage::datapath::DpState;

#[test]
fn lists_params_and_errors_look_like_xe_and_make_no_smapi_call() {
    let p = Pool::real();
    let sr = p.file_sr("sr", false);
    let pool = p.xe_ok(&["pool-list", "--minimal"]);
    assert_eq!(pool.len(), 36);
    let host = p.xe_ok(&[
        "host-list",
        &format!("hostname={}", xapi_tests::config::local_hostname()),
        "--minimal",
    ]);
    assert_eq!(host.split(',').count(), 1, "{host}");
    assert_eq!(
        p.xe_ok(&["host-list", "--minimal"]).split(',').count(),
        2,
        "a two-host pool"
    );
    let (code, list, _) = p.xe(&["sr-list", &format!("uuid={sr}")]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines[0], format!("uuid ( RO)                : {sr}"));
    assert_eq!(lines[1], "          name-label ( RW): S");
    assert!(
        list.ends_with("\n\n\n"),
        "records end with two blank lines: {list:?}"
    );
    assert_eq!(
        p.xe_ok(&["sr-param-get", &format!("uuid={sr}"), "param-name=type"]),
        "xsmfile"
    );
    let pbd = p.xe_ok(&["pbd-list", &format!("sr-uuid={sr}"), "--minimal"]);
    let loc = p.xe_ok(&[
        "pbd-param-get",
        &format!("uuid={pbd}"),
        "param-name=device-config",
        "param-key=location",
    ]);
    assert!(loc.ends_with("/sr"), "{loc}");
    assert!(p.last_calls().is_empty());

    let (code, out, err) = p.xe(&["vm-start", "uuid=nonexistent"]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (
            1,
            "",
            "The uuid you supplied was invalid.\ntype: VM\nuuid: nonexistent\n"
        )
    );
    let (code, _, err) = p.xe(&["vm-frobnicate"]);
    assert_eq!(
        (code, err.as_str()),
        (
            1,
            "Unknown command: vm-frobnicate\nFor usage run: 'xe help'\n"
        )
    );
    let (code, _, err) = p.xe(&["vdi-create", "name-label=x"]);
    assert_eq!(
        (code, err.as_str()),
        (
            1,
            "Required parameter not found: sr-uuid\nFor usage run: 'xe help'\n"
        )
    );
    let (code, _, err) = p.xe(&[
        "vdi-create",
        &format!("sr-uuid={sr}"),
        "name-label=x",
        "virtual-size=lots",
    ]);
    assert_eq!(
        (code, err.as_str()),
        (
            1,
            "The value given is invalid\nfield: virtual-size\nvalue: lots\n"
        )
    );
}

#[test]
fn vdi_commands_beyond_the_appendix() {
    let p = Pool::real();
    let sr = p.file_sr("sr", false);
    let v = p.xe_ok(&[
        "vdi-create",
        &format!("sr-uuid={sr}"),
        "name-label=D",
        "type=user",
        "virtual-size=64MiB",
    ]);
    assert_eq!(
        p.last_seq(),
        vec![format!("vdi_create@{}", p.host_names()[0])]
    );
    assert_eq!(
        p.xe_ok(&[
            "vdi-param-get",
            &format!("uuid={v}"),
            "param-name=name-label"
        ]),
        "D"
    );

    let snap = p.xe_ok(&["vdi-snapshot", &format!("uuid={v}")]);
    let cmds: Vec<String> = p.last_calls().iter().map(|c| c.command.clone()).collect();
    assert_eq!(
        cmds,
        ["vdi_snapshot", "vdi_update"],
        "the file driver declares VDI_UPDATE"
    );
    assert_eq!(
        p.xe_ok(&[
            "vdi-param-get",
            &format!("uuid={snap}"),
            "param-name=is-a-snapshot"
        ]),
        "true"
    );
    assert_eq!(
        p.xe_ok(&[
            "vdi-param-get",
            &format!("uuid={snap}"),
            "param-name=snapshot-of"
        ]),
        v
    );

    let clone = p.xe_ok(&["vdi-clone", &format!("uuid={v}"), "new-name-label=C"]);
    let cmds: Vec<String> = p.last_calls().iter().map(|c| c.command.clone()).collect();
    assert_eq!(cmds, ["vdi_clone", "vdi_update"]);
    assert_eq!(
        p.xe_ok(&[
            "vdi-param-get",
            &format!("uuid={clone}"),
            "param-name=name-label"
        ]),
        "C"
    );

    p.xe_ok(&["vdi-resize", &format!("uuid={clone}"), "disk-size=128MiB"]);
    let cmds: Vec<String> = p.last_calls().iter().map(|c| c.command.clone()).collect();
    assert_eq!(cmds, ["vdi_resize"]);
    let size: u64 = p
        .xe_ok(&[
            "vdi-param-get",
            &format!("uuid={clone}"),
            "param-name=virtual-size",
        ])
        .parse()
        .unwrap();
    assert!(size >= 128 << 20, "{size}");

    let loc = p.xe_ok(&[
        "vdi-param-get",
        &format!("uuid={clone}"),
        "param-name=location",
    ]);
    p.xe_ok(&["vdi-forget", &format!("uuid={clone}")]);
    assert!(p.last_calls().is_empty());
    let back = p.xe_ok(&[
        "vdi-introduce",
        &format!("sr-uuid={sr}"),
        &format!("location={loc}"),
        &format!("uuid={clone}"),
        "name-label=Back",
    ]);
    let cmds: Vec<String> = p.last_calls().iter().map(|c| c.command.clone()).collect();
    assert_eq!(cmds, ["vdi_introduce"]);
    assert_eq!(back, clone);
    assert_eq!(
        p.xe_ok(&[
            "vdi-param-get",
            &format!("uuid={back}"),
            "param-name=name-label"
        ]),
        "Back"
    );

    p.xe_ok(&["sr-scan", &format!("uuid={sr}")]);
    assert_eq!(p.last_seq(), vec![format!("sr_scan@{}", p.host_names()[0])]);
    let listing = p.xe_ok(&[
        "sr-probe",
        "type=xsmfile",
        &format!("device-config:location={}", p.sr_dir("sr").display()),
    ]);
    let cmds: Vec<String> = p.last_calls().iter().map(|c| c.command.clone()).collect();
    assert_eq!(cmds, ["sr_probe"]);
    assert!(listing.contains(&sr), "probe finds the SR: {listing}");
}

#[test]
fn vdi_copy_copies_the_bytes() {
    let p = Pool::real();
    let sr = p.file_sr("sr", false);
    let x = p.xe_ok(&[
        "vdi-create",
        &format!("sr-uuid={sr}"),
        "name-label=src",
        "virtual-size=16MiB",
    ]);
    let (emu, ctx) = (p.emu(), p.ctx());
    let host = emu.master().r.clone();
    let xr = p.r("VDI", &x);
    let with = |v: &str, f: &dyn Fn(&str)| {
        emu.datapaths
            .set(
                emu,
                &ctx,
                &host,
                v,
                "test",
                Some(DpState::Activated { rw: true }),
            )
            .unwrap();
        f(&blockio::target(&emu.datapaths.attach_info(&host, v).unwrap()).unwrap());
        emu.datapaths
            .set(emu, &ctx, &host, v, "test", None)
            .unwrap();
    };
    with(&xr, &|t| {
        blockio::fill(emu, &ctx, &host, t, 0x5c, 1 << 20, 3 << 20).unwrap()
    });

    let y = p.xe_ok(&["vdi-copy", &format!("uuid={x}"), &format!("sr-uuid={sr}")]);
    let seq: Vec<String> = p
        .last_calls()
        .iter()
        .map(|c| {
            format!(
                "{}:{}",
                c.command,
                if c.vdi.as_deref() == Some(x.as_str()) {
                    "src"
                } else {
                    "dst"
                }
            )
        })
        .collect();
    assert_eq!(
        seq,
        [
            "vdi_create:dst",
            "vdi_attach:src",
            "vdi_activate:src",
            "vdi_attach:dst",
            "vdi_activate:dst",
            "vdi_deactivate:dst",
            "vdi_detach:dst",
            "vdi_deactivate:src",
            "vdi_detach:src"
        ]
    );
    let yr = p.r("VDI", &y);
    emu.datapaths
        .set(
            emu,
            &ctx,
            &host,
            &xr,
            "cmp",
            Some(DpState::Activated { rw: true }),
        )
        .unwrap();
    emu.datapaths
        .set(
            emu,
            &ctx,
            &host,
            &yr,
            "cmp",
            Some(DpState::Activated { rw: true }),
        )
        .unwrap();
    let tx = blockio::target(&emu.datapaths.attach_info(&host, &xr).unwrap()).unwrap();
    let ty = blockio::target(&emu.datapaths.attach_info(&host, &yr).unwrap()).unwrap();
    assert!(
        blockio::verify(emu, &ctx, &host, &ty, 0x5c, 1 << 20, 3 << 20).unwrap(),
        "the copy holds the source's bytes"
    );
    assert!(
        blockio::verify(emu, &ctx, &host, &ty, 0, 0, 1 << 20).unwrap(),
        "and zeros where the source had zeros"
    );
    assert!(blockio::same(emu, &ctx, &host, &tx, &ty).unwrap());
    blockio::fill(emu, &ctx, &host, &tx, 0x11, 8 << 20, 4096).unwrap();
    assert!(
        !blockio::same(emu, &ctx, &host, &tx, &ty).unwrap(),
        "the comparison sees a difference"
    );
    emu.datapaths
        .set(emu, &ctx, &host, &yr, "cmp", None)
        .unwrap();
    emu.datapaths
        .set(emu, &ctx, &host, &xr, "cmp", None)
        .unwrap();
}

#[test]
fn vm_disks_keep_their_data_across_install_start_suspend_resume() {
    let p = Pool::real();
    let sr = p.file_sr("sr", false);
    p.set_default_sr(&sr);
    let vm = p.xe_ok(&[
        "vm-install",
        "template=Debian Sarge 3.1",
        "new-name-label=V",
    ]);
    p.xe_ok(&["vm-start", &format!("vm={vm}")]);
    p.xe_ok(&["vm-suspend", &format!("uuid={vm}")]);
    assert_eq!(
        p.xe_ok(&[
            "vm-param-get",
            &format!("uuid={vm}"),
            "param-name=power-state"
        ]),
        "suspended"
    );
    let image = p.xe_ok(&[
        "vm-param-get",
        &format!("uuid={vm}"),
        "param-name=suspend-VDI-uuid",
    ]);
    p.xe_ok(&["vm-resume", &format!("uuid={vm}")]);
    let data: Vec<_> = p
        .events()
        .into_iter()
        .filter_map(|e| match e {
            xapi_tests::trace::Event::Data { what, ok, .. } => Some((what, ok)),
            _ => None,
        })
        .collect();
    assert!(data.iter().all(|(_, ok)| *ok), "{data:?}");
    let kinds: Vec<&str> = data.iter().map(|(w, _)| w.as_str()).collect();
    assert_eq!(
        kinds,
        ["fill", "verify", "fill", "verify"],
        "installer, bootloader, suspend image, resume"
    );
    let (code, _, err) = p.xe(&["vdi-param-get", &format!("uuid={image}"), "param-name=uuid"]);
    assert_eq!(code, 1, "the suspend VDI is deleted on resume: {err}");
    let clone = p.xe(&["vm-clone", &format!("uuid={vm}"), "new-name-label=C"]);
    assert_eq!(clone.0, 1, "a running VM cannot be cloned");
    assert!(
        clone.2.starts_with(
            "You attempted an operation on a VM that was not in an appropriate power state"
        ),
        "{}",
        clone.2
    );
}

#[test]
fn state_survives_an_emulator_restart() {
    let mut p = Pool::real();
    let sr = p.file_sr("sr", false);
    let cfg = p.emu().config.clone();
    p.running.take().unwrap().stop();
    p.running = Some(xapi_tests::server::start(cfg).unwrap());
    assert_eq!(p.xe_ok(&["sr-list", "type=xsmfile", "--minimal"]), sr);
    p.xe_ok(&[
        "vdi-create",
        &format!("sr-uuid={sr}"),
        "name-label=after",
        "virtual-size=1MiB",
    ]);
}
