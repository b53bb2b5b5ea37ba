//! install.sh in a temporary DESTDIR: links per driver, the binary answering through them,
//! sm-plugins updated idempotently (other entries kept), /var/lock/sm, and `--uninstall`
//! restoring exactly the previous state.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed setup is a failed test

mod common;

use std::path::Path;
use std::process::Command;

const CONF: &str = "# xapi configuration\nlog=debug\nsm-plugins=ext nfs iscsi lvmoiscsi dummy file hba rawhba udev iso lvm lvmohba lvmofcoe shm smb\nother=1\n";

fn install(destdir: &Path, extra: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../install.sh");
    #[allow(clippy::disallowed_methods)] // runs the installer script under test
    let out = Command::new("bash")
        .arg(script)
        .args(["--binary", env!("CARGO_BIN_EXE_xsm")])
        .args(extra)
        .env("DESTDIR", destdir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "install.sh failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `base` with every driver's type not already in it appended, in table order (what
/// install.sh writes).
fn with_our_types(base: &str) -> String {
    let mut line = base.to_string();
    for d in drivers::DRIVERS {
        let t = d.info().sr_type;
        if !base.split(['=', ' ']).any(|b| b == t) {
            line = format!("{line} {t}");
        }
    }
    line
}

fn plugins_line(destdir: &Path) -> String {
    let text = std::fs::read_to_string(destdir.join("etc/xapi.conf")).unwrap();
    text.lines()
        .find(|l| l.starts_with("sm-plugins="))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn install_is_idempotent_and_uninstall_restores() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("etc")).unwrap();
    std::fs::write(d.path().join("etc/xapi.conf"), CONF).unwrap();
    install(d.path(), &[]);
    let sm = d.path().join("opt/xensource/sm");
    for plugin in drivers::DRIVERS.iter().map(|d| d.info().plugin) {
        assert_eq!(
            std::fs::read_link(sm.join(plugin)).unwrap(),
            Path::new("xsm")
        );
    }
    assert!(d.path().join("var/lock/sm").is_dir());
    let line = plugins_line(d.path());
    assert_eq!(
        line,
        with_our_types(
            "sm-plugins=ext nfs iscsi lvmoiscsi dummy file hba rawhba udev iso lvm lvmohba lvmofcoe shm smb"
        )
    );
    assert!(line.ends_with(" reservedlun"), "{line}");
    let conf_after_first = std::fs::read_to_string(d.path().join("etc/xapi.conf")).unwrap();
    install(d.path(), &[]);
    assert_eq!(
        std::fs::read_to_string(d.path().join("etc/xapi.conf")).unwrap(),
        conf_after_first
    );

    // The installed link answers as the plugin.
    let env = common::Env::new();
    #[allow(clippy::disallowed_methods)]
    let out = Command::new(sm.join("FileSR"))
        .arg(
            std::fs::read_to_string(format!(
                "{}/tests/fixtures/sr_get_driver_info.xml",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap(),
        )
        .env("SMLOG_FILE", env.smlog())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("Local Path VHD"));

    install(d.path(), &["--uninstall"]);
    assert_eq!(
        std::fs::read_to_string(d.path().join("etc/xapi.conf")).unwrap(),
        CONF
    );
    assert!(
        !sm.exists(),
        "plugin directory removed when it held only our files"
    );
    assert!(!d.path().join("var/lock/sm").exists());
}

#[test]
fn adds_missing_types_and_removes_only_those() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("etc")).unwrap();
    let conf = "sm-plugins=nfs iscsi\n";
    std::fs::write(d.path().join("etc/xapi.conf"), conf).unwrap();
    install(d.path(), &[]);
    assert_eq!(
        plugins_line(d.path()),
        with_our_types("sm-plugins=nfs iscsi")
    );
    assert!(plugins_line(d.path()).starts_with("sm-plugins=nfs iscsi file ext "));
    install(d.path(), &["--uninstall"]);
    assert_eq!(
        std::fs::read_to_string(d.path().join("etc/xapi.conf")).unwrap(),
        conf
    );
}

#[test]
fn leaves_a_missing_xapi_conf_alone() {
    let d = tempfile::tempdir().unwrap();
    let out = install(d.path(), &[]);
    assert!(out.contains("not found"), "{out}");
    assert!(!d.path().join("etc/xapi.conf").exists());
    assert!(d.path().join("opt/xensource/sm/FileSR").exists());
    install(d.path(), &["--uninstall"]);
    assert!(!d.path().join("opt/xensource/sm").exists());
}
