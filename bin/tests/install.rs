//! install.sh in a temporary DESTDIR: links per driver, the binary answering through them,
//! sm-plugins updated idempotently (other entries kept), /var/lock/sm, `--uninstall`
//! restoring exactly the previous state, and a staged sm plugin directory that nothing touches.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed setup is a failed test

mod common;

use std::path::Path;
use std::process::Command;

const CONF: &str = "# xapi configuration\nlog=debug\nsm-plugins=ext nfs iscsi lvmoiscsi dummy file hba rawhba udev iso lvm lvmohba lvmofcoe shm smb\nother=1\n";

fn run_install(destdir: &Path, extra: &[&str]) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../install.sh");
    #[allow(clippy::disallowed_methods)] // runs the installer script under test
    Command::new("bash")
        .arg(script)
        .args(["--binary", env!("CARGO_BIN_EXE_xsm")])
        .args(extra)
        .env("DESTDIR", destdir)
        .output()
        .unwrap()
}

fn install(destdir: &Path, extra: &[&str]) -> String {
    let out = run_install(destdir, extra);
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
    let out = Command::new(sm.join("XSMFileSR"))
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
    assert!(plugins_line(d.path()).starts_with("sm-plugins=nfs iscsi xsmfile xsmext "));
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
    assert!(d.path().join("opt/xensource/sm/XSMFileSR").exists());
    install(d.path(), &["--uninstall"]);
    assert!(!d.path().join("opt/xensource/sm").exists());
}

/// Every entry under `dir`, recursively: name, kind, mode, and the link target or the bytes'
/// length and hash.
fn snapshot(dir: &Path) -> Vec<(String, String)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let name = p.strip_prefix(dir).unwrap().display().to_string();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("link {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                stack.push(p.clone());
                format!("dir {:o}", m.permissions().mode())
            } else {
                use std::hash::{Hash, Hasher};
                let bytes = std::fs::read(&p).unwrap();
                let mut h = std::collections::hash_map::DefaultHasher::new();
                bytes.hash(&mut h);
                format!(
                    "file {:o} {} bytes {:016x}",
                    m.permissions().mode(),
                    bytes.len(),
                    h.finish()
                )
            };
            out.push((name, what));
        }
    }
    out.sort();
    out
}

/// A plugin directory as the sm package lays it out: `<Name>SR -> <Name>SR.py` for its types,
/// the Python modules, a plugin of another vendor.
fn stage_sm(destdir: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let sm = destdir.join("opt/xensource/sm");
    std::fs::create_dir_all(&sm).unwrap();
    for t in ["File", "EXT", "LVM", "LVMoISCSI", "NFS", "ISO"] {
        let py = sm.join(format!("{t}SR.py"));
        std::fs::write(&py, format!("#!/usr/bin/python3\n# sm's {t}SR\n")).unwrap();
        std::fs::set_permissions(&py, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(format!("{t}SR.py"), sm.join(format!("{t}SR"))).unwrap();
    }
    std::fs::write(sm.join("blktap2.py"), "# sm\n").unwrap();
    std::fs::write(sm.join("VendorSR"), "#!/bin/sh\n").unwrap();
    sm
}

#[test]
fn a_staged_sm_tree_is_never_touched_and_uninstall_restores_it() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("etc")).unwrap();
    std::fs::write(d.path().join("etc/xapi.conf"), CONF).unwrap();
    let sm = stage_sm(d.path());
    let before = snapshot(&sm);

    install(d.path(), &[]);
    let after = snapshot(&sm);
    for entry in &before {
        assert!(after.contains(entry), "{entry:?} changed by the install");
    }
    for d in drivers::DRIVERS {
        assert!(
            after
                .iter()
                .any(|(n, w)| n == d.info().plugin && w == "link xsm")
        );
    }
    install(d.path(), &[]);
    assert_eq!(snapshot(&sm), after, "a second install changes nothing");

    install(d.path(), &["--uninstall"]);
    assert_eq!(snapshot(&sm), before, "uninstall restores byte for byte");
    assert_eq!(
        std::fs::read_to_string(d.path().join("etc/xapi.conf")).unwrap(),
        CONF
    );
}

#[test]
fn a_name_in_the_way_stops_the_install_unless_forced_and_comes_back_at_uninstall() {
    let d = tempfile::tempdir().unwrap();
    let sm = stage_sm(d.path());
    let plugin = drivers::DRIVERS[0].info().plugin;
    std::fs::write(sm.join(plugin), "someone else's\n").unwrap();
    let before = snapshot(&sm);

    let out = run_install(d.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "found /opt/xensource/sm/{plugin}: file of 15 bytes"
        )),
        "{text}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was changed"));
    assert_eq!(snapshot(&sm), before);

    let text = install(d.path(), &["--force"]);
    assert!(text.contains(".xsm-backup/"), "{text}");
    assert_eq!(
        std::fs::read_to_string(sm.join(".xsm-backup").join(plugin)).unwrap(),
        "someone else's\n"
    );
    assert_eq!(
        std::fs::read_link(sm.join(plugin)).unwrap(),
        Path::new("xsm")
    );
    install(d.path(), &[]);

    install(d.path(), &["--uninstall"]);
    assert_eq!(snapshot(&sm), before);
}

#[test]
fn an_earlier_install_that_took_sm_s_names_gives_them_back() {
    let d = tempfile::tempdir().unwrap();
    let sm = stage_sm(d.path());
    let pristine = snapshot(&sm);
    // Wave 1 linked FileSR, EXTSR and LVMSR to xsm over sm's links, and recorded them.
    std::fs::write(sm.join("xsm"), "old xsm").unwrap();
    for old in ["FileSR", "EXTSR", "LVMSR"] {
        std::fs::remove_file(sm.join(old)).unwrap();
        std::os::unix::fs::symlink("xsm", sm.join(old)).unwrap();
    }
    std::fs::write(
        sm.join(".xsm-install"),
        "links=FileSR EXTSR LVMSR MultipathLVMoISCSISR ReservedLUNSR\ntypes=multipathlvmoiscsi reservedlun\nappended_line=no\ncreated_lock_dir=no\ncreated_dirs=\n",
    )
    .unwrap();

    let text = install(d.path(), &[]);
    assert!(text.contains("FileSR -> FileSR.py again"), "{text}");
    for t in ["FileSR", "EXTSR", "LVMSR"] {
        assert_eq!(
            std::fs::read_link(sm.join(t)).unwrap(),
            Path::new(&format!("{t}.py"))
        );
    }
    install(d.path(), &["--uninstall"]);
    assert_eq!(snapshot(&sm), pristine);
}

#[test]
fn the_pr_helper_units_are_installed_beside_the_admin_s_and_removed_at_uninstall() {
    let d = tempfile::tempdir().unwrap();
    let units = d.path().join("etc/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::write(units.join("admin.service"), "[Unit]\n").unwrap();
    let said = install(d.path(), &[]);
    assert!(
        said.contains("xsm-pr-helper.socket (not enabled)"),
        "{said}"
    );
    let service = std::fs::read_to_string(units.join("xsm-pr-helper.service")).unwrap();
    assert!(
        service.contains("ExecStart=/opt/xensource/sm/xsm pr-helper"),
        "{service}"
    );
    let socket = std::fs::read_to_string(units.join("xsm-pr-helper.socket")).unwrap();
    assert!(
        socket.contains("ListenStream=/run/xsm-pr-helper.sock"),
        "{socket}"
    );
    install(d.path(), &["--uninstall"]);
    assert!(!units.join("xsm-pr-helper.service").exists());
    assert!(!units.join("xsm-pr-helper.socket").exists());
    assert!(
        units.join("admin.service").exists(),
        "the admin's unit kept"
    );

    // A unit of that name that is not ours stops the install before anything changes.
    std::fs::write(units.join("xsm-pr-helper.socket"), "[Socket]\n").unwrap();
    let out = run_install(d.path(), &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not ours"));
    assert!(
        !d.path().join("opt/xensource/sm/xsm").exists(),
        "nothing installed"
    );
    assert_eq!(
        std::fs::read_to_string(units.join("xsm-pr-helper.socket")).unwrap(),
        "[Socket]\n"
    );
}
