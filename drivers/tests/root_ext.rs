//! The `ext` SR on real loop devices (root; run by xapi-tests/ci/stages/30-root-host.sh with
//! `cargo test --workspace -- --ignored root_`). Whole calls go through `dispatch::run` with the
//! system runner, a temporary host root and the in-test XenAPI server.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed setup is a failed test
#![allow(
    clippy::disallowed_methods,
    reason = "a test harness drives the host as an admin would; the rule is for driver code"
)]

use std::ffi::OsString;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

use drivers::testing::{FakeXapi, response};
use hostio::testing::{LoopDevice, blkid};
use sm_core::dispatch;
use sm_core::driver::Host;
use sm_core::host::{Cmd, Runner, SystemRunner};
use sm_core::xenapi::Endpoint;
use sm_core::xmlrpc::{self, StringStyle, Value};

const SR: &str = "e7e7e7e7-1111-4222-8333-444455556666";
const HOST: &str = "OpaqueRef:host-root";

struct Env {
    _dir: tempfile::TempDir,
    host: Host,
    xapi: FakeXapi,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("e")
            .rand_bytes(4)
            .tempdir_in("/tmp")
            .unwrap();
        let xapi = FakeXapi::start(&dir.path().join("xapi")).unwrap();
        let host = Host::with(
            Arc::new(SystemRunner::new()),
            &dir.path().join("r"),
            Endpoint::Unix(xapi.socket.clone()),
        );
        Env {
            _dir: dir,
            host,
            xapi,
        }
    }

    fn call(
        &self,
        cmd: &str,
        dev: &Path,
        args: &[&str],
        extra: &[(&str, &str)],
    ) -> Result<Value, (i32, String)> {
        let mut m = xmlrpc::Struct::new();
        m.insert("host_ref".into(), Value::from(HOST));
        m.insert("command".into(), Value::from(cmd));
        m.insert(
            "args".into(),
            Value::Array(args.iter().map(|a| Value::from(*a)).collect()),
        );
        let d = dev.display().to_string();
        m.insert(
            "device_config".into(),
            Value::string_map([("SRmaster", "true"), ("device", d.as_str())]),
        );
        for (k, v) in [
            ("session_ref", "OpaqueRef:s"),
            ("sr_ref", drivers::testing::SR_REF),
            ("sr_uuid", SR),
        ]
        .iter()
        .chain(extra)
        {
            m.insert(k.to_string(), Value::from(*v));
        }
        let xml = xmlrpc::write_call(cmd, &[Value::Struct(m)], StringStyle::Untyped);
        let out = dispatch::run(
            &[OsString::from("XSMEXTSR"), OsString::from(xml)],
            &drivers::ext::DRIVER,
            &self.host,
        );
        response(&out.stdout)
    }

    fn vdi_call(
        &self,
        cmd: &str,
        dev: &Path,
        args: &[&str],
        vdi: &str,
    ) -> Result<Value, (i32, String)> {
        let (r, _) = self
            .xapi
            .vdi(vdi)
            .unwrap_or_else(|| ("OpaqueRef:NULL".into(), Default::default()));
        self.call(
            cmd,
            dev,
            args,
            &[("vdi_ref", &r), ("vdi_uuid", vdi), ("vdi_location", vdi)],
        )
    }

    fn mount_point(&self) -> std::path::PathBuf {
        self.host.paths.sr_mount(SR)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        drivers::testing::stop_exports(&self.host.paths);
        let point = self.mount_point();
        if sm_core::host::block::mounted_at(&point).is_some() {
            let _ = SystemRunner::new().run(&Cmd::new("umount").arg(&point));
        }
    }
}

fn code(r: Result<Value, (i32, String)>) -> i32 {
    match r {
        Ok(v) => panic!("expected a fault, got {v:?}"),
        Err((c, _)) => c,
    }
}

fn uuid_of(v: &Value) -> String {
    v.as_struct().unwrap()["uuid"].to_text()
}

fn is_mounted(p: &Path) -> bool {
    sm_core::host::block::mounted_at(p).is_some()
}

#[test]
#[ignore = "root: loop devices"]
fn root_ext_lifecycle() {
    let env = Env::new();
    let lo = LoopDevice::new(256 << 20).unwrap();
    let dev = lo.path.as_path();
    env.call("sr_create", dev, &["0"], &[]).unwrap();
    let sigs = blkid(dev);
    assert!(
        sigs.contains("TYPE=ext4")
            && sigs.contains("LABEL=xsm-ext-sr")
            && sigs.contains(&format!("UUID={SR}")),
        "{sigs}"
    );
    assert!(
        !is_mounted(&env.mount_point()),
        "create leaves the SR detached"
    );
    let probe = env.call("sr_probe", dev, &[], &[]).unwrap();
    assert!(
        probe
            .as_str()
            .unwrap()
            .contains(&format!("<UUID>{SR}</UUID>"))
    );

    env.call("sr_attach", dev, &[], &[]).unwrap();
    env.call("sr_attach", dev, &[], &[]).unwrap();
    assert!(is_mounted(&env.mount_point()));
    let vdi = uuid_of(
        &env.call(
            "vdi_create",
            dev,
            &["16777216", "d", "", "", "false", "", "", "false"],
            &[],
        )
        .unwrap(),
    );
    assert!(env.mount_point().join(format!("{vdi}.vhd")).exists());
    let a = env.vdi_call("vdi_attach", dev, &["true"], &vdi).unwrap();
    let nbd = a.as_struct().unwrap()["params_nbd"].to_text();
    assert_eq!(
        a.as_struct().unwrap()["o_direct"].to_text(),
        "1",
        "ext4 supports O_DIRECT"
    );
    let (sock, name) = nbd
        .strip_prefix("nbd:unix:")
        .unwrap()
        .rsplit_once(":exportname=")
        .unwrap();
    let uri = format!("nbd+unix:///{name}?socket={sock}");
    SystemRunner::new()
        .run(&Cmd::new("qemu-io").args(["-f", "raw", "-c", "write -P 0x5a 0 1M", &uri]))
        .unwrap();
    assert_eq!(
        code(env.call("sr_detach", dev, &[], &[])),
        16,
        "VDIs attached"
    );
    let snap = uuid_of(&env.vdi_call("vdi_snapshot", dev, &[], &vdi).unwrap());
    env.vdi_call("vdi_detach", dev, &[], &vdi).unwrap();
    let snap_img = env.mount_point().join(format!("{snap}.vhd"));
    let check = SystemRunner::new()
        .run(
            &Cmd::new("qemu-io")
                .args(["-f", "vpc", "-r", "-c", "read -P 0x5a 0 1M"])
                .arg(&snap_img),
        )
        .unwrap();
    assert!(
        !check.stdout_str().contains("failed"),
        "{}",
        check.stdout_str()
    );

    env.call("sr_detach", dev, &[], &[]).unwrap();
    env.call("sr_detach", dev, &[], &[]).unwrap();
    assert!(!is_mounted(&env.mount_point()));
    assert_eq!(
        code(env.call("sr_scan", dev, &[], &[])),
        47,
        "detached SR is unavailable"
    );
    env.call("sr_attach", dev, &[], &[]).unwrap();
    env.call("sr_scan", dev, &[], &[]).unwrap();
    assert!(
        env.xapi
            .state()
            .sr
            .get("physical_size")
            .is_some_and(|s| s.parse::<u64>().unwrap() > 200 << 20)
    );

    // A non-empty SR is neither deleted nor re-created.
    assert_eq!(code(env.call("sr_delete", dev, &[], &[])), 39);
    env.call("sr_detach", dev, &[], &[]).unwrap();
    assert_eq!(code(env.call("sr_create", dev, &["0"], &[])), 42);
    env.call("sr_attach", dev, &[], &[]).unwrap();
    for v in [&vdi, &snap] {
        env.vdi_call("vdi_delete", dev, &[], v).unwrap();
    }
    env.call("sr_detach", dev, &[], &[]).unwrap();
    // Ours and empty: re-creating is allowed (sr-destroy was skipped, e.g. after sr-forget).
    env.call("sr_create", dev, &["0"], &[]).unwrap();
    env.call("sr_attach", dev, &[], &[]).unwrap();
    env.call("sr_delete", dev, &[], &[]).unwrap();
    assert!(!is_mounted(&env.mount_point()));
    assert_eq!(
        blkid(dev).trim(),
        "",
        "the device is left without any signature"
    );
    env.call("sr_delete", dev, &[], &[]).unwrap();
}

#[test]
#[ignore = "root: loop devices"]
fn root_ext_refuses_devices_it_must_not_touch() {
    let env = Env::new();
    // A foreign filesystem.
    let lo = LoopDevice::new(64 << 20).unwrap();
    SystemRunner::new()
        .run(&Cmd::new("mkfs.ext4").args(["-F", "-q"]).arg(&lo.path))
        .unwrap();
    let before = blkid(&lo.path);
    let (c, msg) = env.call("sr_create", &lo.path, &["0"], &[]).unwrap_err();
    assert_eq!(c, 16, "{msg}");
    assert!(msg.contains("ext4"), "{msg}");
    assert_eq!(blkid(&lo.path), before, "nothing written");
    // A partition table (an MBR with one entry).
    let lo2 = LoopDevice::new(64 << 20).unwrap();
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&lo2.path)
            .unwrap();
        let mut mbr = [0u8; 512];
        mbr[446 + 4] = 0x83;
        mbr[446 + 8] = 0x08;
        mbr[446 + 12] = 0x00;
        mbr[446 + 13] = 0x10;
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        f.seek(SeekFrom::Start(0)).unwrap();
        f.write_all(&mbr).unwrap();
        f.sync_all().unwrap();
    }
    let (c, msg) = env.call("sr_create", &lo2.path, &["0"], &[]).unwrap_err();
    assert_eq!(c, 16, "{msg}");
    assert!(msg.contains("partition table"), "{msg}");
    // A mounted device.
    let lo3 = LoopDevice::new(64 << 20).unwrap();
    SystemRunner::new()
        .run(
            &Cmd::new("mkfs.ext4")
                .args(["-F", "-q", "-L", "xsm-ext-sr"])
                .arg(&lo3.path),
        )
        .unwrap();
    let mnt = tempfile::tempdir().unwrap();
    SystemRunner::new()
        .run(&Cmd::new("mount").arg(&lo3.path).arg(mnt.path()))
        .unwrap();
    let r = env.call("sr_create", &lo3.path, &["0"], &[]);
    SystemRunner::new()
        .run(&Cmd::new("umount").arg(mnt.path()))
        .unwrap();
    assert_eq!(code(r), 16);
    // The root filesystem's device (checked before anything else is looked at).
    let root = std::os::unix::fs::MetadataExt::dev(&std::fs::metadata("/").unwrap());
    let (major, minor) = sm_core::host::block::dev_pair(root);
    let root_dev = format!("/dev/block/{major}:{minor}");
    if Path::new(&root_dev).exists() {
        assert_eq!(
            code(env.call("sr_create", Path::new(&root_dev), &["0"], &[])),
            105
        );
    }
    // Missing and invalid device_config.
    assert_eq!(
        code(env.call("sr_create", Path::new("/dev/no-such-device"), &["0"], &[])),
        91
    );
    assert_eq!(
        code(env.call("sr_create", Path::new("/etc/hostname"), &["0"], &[])),
        91
    );
}
