//! The two-host pool: each host runs its plugins with its own host_ref, environment and
//! `other_config:iscsi_iqn`; a shared SR is attached on every host; VMs migrate between hosts as
//! appendix A says, and the real driver's cross-host exclusion surfaces as VDI_IN_USE.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Pool, fake_calls, fake_plugin, script};

#[test]
fn each_host_gets_its_own_host_ref_environment_and_iqn() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    fake_plugin(&plugins, "FakeSR", &["SR_PROBE"]);
    let p = Pool::start_with(dir, plugins.clone(), |_| {});
    let env_log = plugins.join("env.log");
    let fake = std::fs::read_to_string(plugins.join("FakeSR")).unwrap();
    script(
        &plugins.join("FakeSR"),
        &fake.replacen(
            "d=$(dirname \"$0\")\n",
            &format!(
                "d=$(dirname \"$0\")\nenv | sort | tr '\\n' ' ' >> {}; echo >> {}\n",
                env_log.display(),
                env_log.display()
            ),
            1,
        ),
    );

    p.xe_ok(&[
        "sr-create",
        "type=fake",
        "name-label=F",
        "shared=true",
        "device-config:target=10.0.0.1",
    ]);
    let calls = fake_calls(&plugins);
    let seen: Vec<(String, String, String)> = calls
        .iter()
        .filter(|r| r.command_name != "sr_get_driver_info")
        .map(|r| {
            (
                r.command_name.clone(),
                r.host_ref.clone(),
                common::dc(r)["SRmaster"].clone(),
            )
        })
        .collect();
    let (a, b) = (p.emu().hosts()[0].r.clone(), p.emu().hosts()[1].r.clone());
    assert_eq!(
        seen,
        [
            ("sr_create".to_string(), a.clone(), "true".to_string()),
            ("sr_attach".to_string(), a.clone(), "true".to_string()),
            ("sr_attach".to_string(), b.clone(), "false".to_string()),
        ]
    );
    let x = p.xenapi();
    let iqn = |h: &str| x.host_get_other_config(h).unwrap()["iscsi_iqn"].clone();
    assert_eq!(iqn(&a), p.emu().config.hosts[0].iscsi_iqn);
    assert_eq!(iqn(&b), p.emu().config.hosts[1].iscsi_iqn);
    assert_ne!(iqn(&a), iqn(&b));
    assert!(x.host_is_live(&b).unwrap());

    let envs: Vec<String> = std::fs::read_to_string(&env_log)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let last = envs.last().unwrap();
    assert!(
        last.contains("ORIGINATOR=SM ") && last.contains("PATH=/sbin:/usr/sbin:/bin:/usr/bin "),
        "{last}"
    );
    assert!(
        last.contains(&format!(
            "SM_ROOT={}",
            p.emu().config.hosts[1].env["SM_ROOT"]
        )),
        "host B's own root: {last}"
    );
    assert!(
        last.contains(&format!(
            "SM_XAPI=unix:{}",
            p.state().join("xapi.sock").display()
        )),
        "{last}"
    );
    let names: Vec<&str> = last
        .split(' ')
        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
        .collect();
    for n in &names {
        assert!(
            [
                "PATH",
                "ORIGINATOR",
                "SM_XAPI",
                "SM_ROOT",
                "SMLOG_FILE",
                "SMLOG_LEVEL",
                "SM_TOOL_DIRS",
                "SM_LOCK_TIMEOUT",
                "PWD",
                "SHLVL",
                "_",
                "OLDPWD"
            ]
            .contains(n),
            "unexpected {n} in the plugin's environment: {last}"
        );
    }
}

#[test]
fn cross_host_migration_follows_appendix_a_and_exclusion_is_real() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = common::install(dir.path());
    let p = Pool::start_with(dir, plugins, |_| {});
    let sr = p.file_sr("sr", true);
    p.set_default_sr(&sr);
    let (a, b) = (p.host_names()[0].clone(), p.host_names()[1].clone());
    let vm = p.xe_ok(&[
        "vm-install",
        "template=Debian Sarge 3.1",
        "new-name-label=V",
    ]);
    p.xe_ok(&["vm-start", &format!("uuid={vm}")]);
    p.xe_ok(&[
        "vm-migrate",
        &format!("uuid={vm}"),
        &format!("host={b}"),
        "live=true",
    ]);
    let seq = p.last_seq();
    assert_eq!(
        seq,
        [
            format!("vdi_attach@{b}"),
            format!("vdi_attach@{b}"),
            format!("vdi_deactivate@{a}"),
            format!("vdi_deactivate@{a}"),
            format!("vdi_activate@{b}"),
            format!("vdi_activate@{b}"),
            format!("vdi_detach@{a}"),
            format!("vdi_detach@{a}"),
        ]
    );
    let b_ref = p.emu().hosts()[1].r.clone();
    assert_eq!(
        p.xe_ok(&[
            "vm-param-get",
            &format!("uuid={vm}"),
            "param-name=resident-on"
        ]),
        p.emu().hosts()[1].uuid
    );
    let disk = p.xe_ok(&[
        "vbd-list",
        &format!("vm-uuid={vm}"),
        "userdevice=0",
        "params=vdi-uuid",
        "--minimal",
    ]);
    let sm_config = p.xenapi().vdi_get_sm_config(&p.r("VDI", &disk)).unwrap();
    assert_eq!(
        sm_config.get(&format!("host_{b_ref}")).map(String::as_str),
        Some("RW"),
        "{sm_config:?}"
    );
    assert_eq!(
        sm_config.keys().filter(|k| k.starts_with("host_")).count(),
        1,
        "{sm_config:?}"
    );

    let other = p.xe_ok(&[
        "vm-install",
        "template=Debian Sarge 3.1",
        "new-name-label=W",
    ]);
    p.xe_ok(&[
        "vbd-create",
        &format!("vm-uuid={other}"),
        &format!("vdi-uuid={disk}"),
        "device=3",
    ]);
    let (code, _, err) = p.xe(&["vm-start", &format!("uuid={other}"), &format!("on={a}")]);
    assert_eq!(code, 1, "the disk is active read-write on host B");
    assert!(
        err.starts_with(
            "This operation cannot be performed because this VDI is in use by some other operation"
        ),
        "{err}"
    );
    let start_calls = p.last_calls();
    let failed: Vec<_> = start_calls.iter().filter(|c| !c.ok).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        (
            failed[0].command.as_str(),
            failed[0].fault.as_ref().map(|f| f.0),
            failed[0].host_name.as_str()
        ),
        ("vdi_activate", Some(24), a.as_str())
    );
    assert_eq!(
        p.xe_ok(&[
            "vm-param-get",
            &format!("uuid={other}"),
            "param-name=power-state"
        ]),
        "halted",
        "a failed start leaves the VM halted"
    );
    let shared: Vec<&str> = start_calls
        .iter()
        .filter(|c| c.vdi.as_deref() == Some(disk.as_str()))
        .map(|c| c.command.as_str())
        .collect();
    assert_eq!(
        shared,
        ["vdi_attach", "vdi_activate", "vdi_detach"],
        "the refused disk is detached again"
    );
    let released = start_calls
        .iter()
        .filter(|c| c.command == "vdi_detach" && c.ok)
        .count();
    assert_eq!(
        released,
        4,
        "bootloader, then the two own disks and the refused one: {:?}",
        start_calls.iter().map(|c| &c.command).collect::<Vec<_>>()
    );

    p.xe_ok(&["vm-migrate", &format!("uuid={vm}"), &format!("host={a}")]);
    assert_eq!(
        p.last_calls()
            .iter()
            .filter(
                |c| c.host_name == a && (c.command == "vdi_attach" || c.command == "vdi_activate")
            )
            .count(),
        4
    );
    p.xe_ok(&["vm-shutdown", &format!("uuid={vm}")]);
    assert!(
        xapi_tests::appendix::check::first_mismatch(&xapi_tests::appendix::check::check(
            &p.events()
        ))
        .is_some_and(|m| m.contains("vm-start")),
        "only the refused start deviates"
    );
}

/// A runner for the in-process lab agent that records what it ran.
struct Recording(
    sm_core::host::SystemRunner,
    std::sync::Mutex<Vec<Vec<String>>>,
);

impl sm_core::host::Runner for Recording {
    fn run(
        &self,
        cmd: &sm_core::host::Cmd,
    ) -> Result<sm_core::host::Output, sm_core::host::RunError> {
        self.1.lock().unwrap().push(cmd.masked_argv());
        self.0.run(cmd)
    }
}

#[test]
fn a_host_behind_the_lab_agent_runs_plugins_there_and_calls_back_over_tcp() {
    let agent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let agent_addr = agent.local_addr().unwrap().to_string();
    let rec = std::sync::Arc::new(Recording(
        sm_core::host::SystemRunner::new(),
        std::sync::Mutex::new(Vec::new()),
    ));
    let runner: std::sync::Arc<dyn sm_core::host::Runner> = rec.clone();
    std::thread::spawn(move || xapi_tests::lab::agent::serve(agent, runner));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    let dir = tempfile::tempdir().unwrap();
    let plugins = common::install(dir.path());
    let b_plugins = plugins.clone();
    let p = Pool::start_with(dir, plugins, |c| {
        c.tcp_listen = format!("127.0.0.1:{port}");
        c.hosts[1].exec = xapi_tests::config::Exec::Agent {
            addr: agent_addr.clone(),
        };
        c.hosts[1].plugin_dir = b_plugins.display().to_string();
        c.hosts[1].xapi_endpoint = Some(format!("tcp:127.0.0.1:{port}"));
    });
    let sr = p.file_sr("sr", true);
    p.set_default_sr(&sr);
    let vm = p.xe_ok(&[
        "vm-install",
        "template=Debian Sarge 3.1",
        "new-name-label=V",
    ]);
    p.xe_ok(&["vm-start", &format!("uuid={vm}")]);
    let b = p.host_names()[1].clone();
    p.xe_ok(&["vm-migrate", &format!("uuid={vm}"), &format!("host={b}")]);
    let on_b: Vec<String> = p
        .last_calls()
        .iter()
        .filter(|c| c.host_name == b)
        .map(|c| c.command.clone())
        .collect();
    assert_eq!(
        on_b,
        ["vdi_attach", "vdi_attach", "vdi_activate", "vdi_activate"]
    );

    let ran = rec.1.lock().unwrap().clone();
    let plugin = format!("{}/XSMFileSR", b_plugins.display());
    let through_agent: Vec<&Vec<String>> =
        ran.iter().filter(|argv| argv.contains(&plugin)).collect();
    let commands: Vec<&str> = through_agent
        .iter()
        .filter_map(|a| a.last())
        .filter_map(|xml| xml.split("<methodName>").nth(1)?.split('<').next())
        .collect();
    assert_eq!(
        commands,
        [
            "sr_attach",
            "vdi_attach",
            "vdi_attach",
            "vdi_activate",
            "vdi_activate"
        ],
        "host B's calls ran through the agent (sr_get_driver_info runs on the master)"
    );
    assert!(
        through_agent
            .iter()
            .all(|a| a.contains(&format!("SM_XAPI=tcp:127.0.0.1:{port}")))
    );
    let disk = p.xe_ok(&[
        "vbd-list",
        &format!("vm-uuid={vm}"),
        "userdevice=0",
        "params=vdi-uuid",
        "--minimal",
    ]);
    let sm_config = p.xenapi().vdi_get_sm_config(&p.r("VDI", &disk)).unwrap();
    let b_ref = p.emu().hosts()[1].r.clone();
    assert_eq!(
        sm_config.get(&format!("host_{b_ref}")).map(String::as_str),
        Some("RW"),
        "host B's plugin called back over TCP: {sm_config:?}"
    );
}
