//! Typed `iscsiadm` calls. Each call holds sm's iscsiadm lock
//! (`/var/lock/sm/iscsiadm/isciadm_running`, sic) so that our drivers and sm's never run
//! iscsiadm at the same time; secrets go to argv through `Cmd::secret_arg` and are masked in
//! every log and error.

use std::time::Duration;

use sm_core::host::{Cmd, LockDir, Output, RunError, Runner};
use sm_core::secret::Secret;

use super::{Auth, Iqn, IscsiadmStatus, Portal};
use crate::error::{MultipathError, Result};

/// sm's lock namespace for iscsiadm.
pub const LOCK_NS: &str = "iscsiadm";
/// sm's lock name (spelled as sm spells it).
pub const LOCK_NAME: &str = "isciadm_running";
/// How long to wait for another process's iscsiadm.
const LOCK_WAIT: Duration = Duration::from_secs(300);
/// Deadline of record and session commands.
const SHORT: Duration = Duration::from_secs(30);
/// Deadline of discovery and login (iscsiadm retries a silent portal for minutes).
const LONG: Duration = Duration::from_secs(150);

/// One node record (or SendTargets answer): portal, portal group tag, target.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeRecord {
    /// Portal.
    pub portal: Portal,
    /// Target portal group tag.
    pub tpgt: u16,
    /// Target name.
    pub target: String,
}

/// Parses `addr:port,tpgt target` lines (`-m node`, `-m discovery`), without duplicates.
pub fn parse_records(text: &str) -> Result<Vec<NodeRecord>> {
    let mut out: Vec<NodeRecord> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let bad = || MultipathError::Parse {
            what: "iscsiadm node records",
            detail: line.to_string(),
        };
        let (rec, target) = line.split_once(char::is_whitespace).ok_or_else(bad)?;
        let (portal, tpgt) = rec.rsplit_once(',').ok_or_else(bad)?;
        let r = NodeRecord {
            portal: Portal::parse(portal, super::DEFAULT_PORT).map_err(|_| bad())?,
            tpgt: tpgt.parse().map_err(|_| bad())?,
            target: target.trim().to_string(),
        };
        if !out.contains(&r) {
            out.push(r);
        }
    }
    Ok(out)
}

/// What a login found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    /// A new session was made.
    New,
    /// A session already existed.
    Existing,
}

/// Runs iscsiadm.
pub struct Iscsiadm<'a> {
    runner: &'a dyn Runner,
    locks: &'a LockDir,
}

impl<'a> Iscsiadm<'a> {
    /// iscsiadm through `runner`, serialised by sm's lock in `locks`.
    pub fn new(runner: &'a dyn Runner, locks: &'a LockDir) -> Iscsiadm<'a> {
        Iscsiadm { runner, locks }
    }

    fn run(&self, cmd: Cmd, op: &str) -> Result<Output> {
        let _held = self.locks.acquire(LOCK_NS, LOCK_NAME, LOCK_WAIT)?;
        self.runner.run(&cmd).map_err(|source| match &source {
            RunError::Failed { code, .. } => MultipathError::Iscsiadm {
                op: op.to_string(),
                status: IscsiadmStatus::from_code(*code),
                source,
            },
            _ => MultipathError::command(format!("iscsiadm {op}"), source),
        })
    }

    fn cmd(args: &[&str], timeout: Duration) -> Cmd {
        Cmd::new("iscsiadm").args(args).timeout(timeout)
    }

    /// The interfaces sm uses: every `c_*` iface, else `default`.
    pub fn ifaces(&self) -> Result<Vec<String>> {
        let out = self.run(Self::cmd(&["-m", "iface"], SHORT), "list interfaces")?;
        let mut v: Vec<String> = out
            .stdout_str()
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with("c_"))
            .map(str::to_string)
            .collect();
        if v.is_empty() {
            v.push("default".into());
        }
        Ok(v)
    }

    /// SendTargets discovery on `portal` through `ifaces`. With CHAP, the discovery record is
    /// updated with the credentials first; a target that does not authenticate discovery
    /// sessions refuses a CHAP discovery login, so a refused CHAP discovery is retried without
    /// CHAP (target logins still use CHAP).
    pub fn discover(
        &self,
        portal: &Portal,
        auth: &Auth,
        ifaces: &[String],
    ) -> Result<Vec<NodeRecord>> {
        let p = portal.to_string();
        let mut base = vec!["-t".to_string(), "st".into(), "-p".into(), p.clone()];
        for i in ifaces {
            base.push("-I".into());
            base.push(i.clone());
        }
        if let Some(chap) = &auth.chap {
            let db = || {
                Cmd::new("iscsiadm")
                    .args(["-m", "discoverydb"])
                    .args(base.clone())
            };
            if let Err(e) = self.run(
                db().args(["-o", "new"]).timeout(SHORT),
                &format!("discoverydb new {p}"),
            ) {
                tracing::debug!(portal = %p, "discoverydb record exists or cannot be made: {e}");
            }
            let update = db()
                .args([
                    "-o",
                    "update",
                    "-n",
                    "discovery.sendtargets.auth.authmethod",
                    "-v",
                    "CHAP",
                ])
                .args([
                    "-n",
                    "discovery.sendtargets.auth.username",
                    "-v",
                    chap.user.as_str(),
                ])
                .args(["-n", "discovery.sendtargets.auth.password", "-v"])
                .secret_arg(&chap.secret)
                .timeout(SHORT);
            self.run(update, &format!("discoverydb update {p}"))?;
            match self.run(
                db().arg("--discover").timeout(LONG),
                &format!("discovery on {p} (CHAP)"),
            ) {
                Ok(out) => return parse_records(&out.stdout_str()),
                Err(MultipathError::Iscsiadm {
                    status: IscsiadmStatus::LoginFailed | IscsiadmStatus::AuthFailed,
                    ..
                }) => {
                    tracing::warn!(portal = %p, "discovery with CHAP refused; the portal does not authenticate discovery, retrying without");
                    let clear = db()
                        .args([
                            "-o",
                            "update",
                            "-n",
                            "discovery.sendtargets.auth.authmethod",
                            "-v",
                            "None",
                        ])
                        .timeout(SHORT);
                    self.run(clear, &format!("discoverydb update {p}"))?;
                }
                Err(e) => return Err(e),
            }
        }
        let cmd = Cmd::new("iscsiadm")
            .args(["-m", "discovery"])
            .args(base)
            .timeout(LONG);
        let out = self.run(cmd, &format!("discovery on {p}"))?;
        parse_records(&out.stdout_str())
    }

    /// The node records iscsid knows (`-m node`); none is not an error.
    pub fn nodes(&self) -> Result<Vec<NodeRecord>> {
        match self.run(Self::cmd(&["-m", "node"], SHORT), "list node records") {
            Ok(out) => parse_records(&out.stdout_str()),
            Err(MultipathError::Iscsiadm {
                status: IscsiadmStatus::NoObjects,
                ..
            }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// One setting of a node record (`-m node -p P -T T`), without secrets.
    pub fn node_setting(&self, portal: &Portal, target: &Iqn, key: &str) -> Result<Option<String>> {
        let p = portal.to_string();
        let out = self.run(
            Self::cmd(&["-m", "node", "-p", &p, "-T", target.as_str()], SHORT),
            &format!("show node {target} {p}"),
        )?;
        Ok(out.stdout_str().lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().to_string())
        }))
    }

    /// Sets the session authentication of a node record in one update: CHAP user and secret
    /// (and incoming ones), or no authentication.
    pub fn set_auth(&self, portal: &Portal, target: &Iqn, auth: &Auth) -> Result<()> {
        let p = portal.to_string();
        let mut cmd = Cmd::new("iscsiadm").args([
            "-m",
            "node",
            "-p",
            &p,
            "-T",
            target.as_str(),
            "-o",
            "update",
        ]);
        let set = |cmd: Cmd, key: &str, v: &str| cmd.args(["-n", key, "-v", v]);
        let set_secret =
            |cmd: Cmd, key: &str, v: &Secret| cmd.args(["-n", key, "-v"]).secret_arg(v);
        match &auth.chap {
            Some(chap) => {
                cmd = set(cmd, "node.session.auth.authmethod", "CHAP");
                cmd = set(cmd, "node.session.auth.username", &chap.user);
                cmd = set_secret(cmd, "node.session.auth.password", &chap.secret);
                match &auth.incoming {
                    Some(inc) => {
                        cmd = set(cmd, "node.session.auth.username_in", &inc.user);
                        cmd = set_secret(cmd, "node.session.auth.password_in", &inc.secret);
                    }
                    None => {
                        cmd = set(cmd, "node.session.auth.username_in", "");
                        cmd = set(cmd, "node.session.auth.password_in", "");
                    }
                }
            }
            None => {
                cmd = set(cmd, "node.session.auth.authmethod", "None");
                for k in ["username", "password", "username_in", "password_in"] {
                    cmd = set(cmd, &format!("node.session.auth.{k}"), "");
                }
            }
        }
        self.run(
            cmd.timeout(SHORT),
            &format!("set authentication of {target} {p}"),
        )
        .map(drop)
    }

    /// Sets a plain setting on every record of `target`.
    pub fn set_target_setting(&self, target: &Iqn, key: &str, value: &str) -> Result<()> {
        self.run(
            Self::cmd(
                &[
                    "-m",
                    "node",
                    "-T",
                    target.as_str(),
                    "-o",
                    "update",
                    "-n",
                    key,
                    "-v",
                    value,
                ],
                SHORT,
            ),
            &format!("set {key} of {target}"),
        )
        .map(drop)
    }

    /// Logs in to `target` through `portal`.
    pub fn login(&self, portal: &Portal, target: &Iqn) -> Result<Login> {
        let p = portal.to_string();
        match self.run(
            Self::cmd(&["-m", "node", "-p", &p, "-T", target.as_str(), "-l"], LONG),
            &format!("login to {target} through {p}"),
        ) {
            Ok(_) => Ok(Login::New),
            Err(MultipathError::Iscsiadm {
                status: IscsiadmStatus::SessionExists,
                ..
            }) => Ok(Login::Existing),
            Err(e) => Err(e),
        }
    }

    /// Logs out of `target` through `portal`; `false` when there was no session.
    pub fn logout(&self, portal: &Portal, target: &Iqn) -> Result<bool> {
        let p = portal.to_string();
        match self.run(
            Self::cmd(&["-m", "node", "-p", &p, "-T", target.as_str(), "-u"], LONG),
            &format!("logout of {target} through {p}"),
        ) {
            Ok(_) => Ok(true),
            Err(MultipathError::Iscsiadm {
                status: IscsiadmStatus::NoObjects,
                ..
            }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes the node records of `target` (sr_delete).
    pub fn delete_records(&self, target: &Iqn) -> Result<()> {
        match self.run(
            Self::cmd(
                &["-m", "node", "-T", target.as_str(), "-o", "delete"],
                SHORT,
            ),
            &format!("delete records of {target}"),
        ) {
            Ok(_)
            | Err(MultipathError::Iscsiadm {
                status: IscsiadmStatus::NoObjects,
                ..
            }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iscsi::Chap;
    use crate::testing::fixture;
    use sm_core::testing::FakeRunner;

    fn locks() -> (tempfile::TempDir, LockDir) {
        let d = tempfile::tempdir().unwrap();
        let l = LockDir::new(d.path().join("lock"));
        (d, l)
    }

    #[test]
    fn records_from_the_lab() {
        let r = parse_records(&fixture("iscsiadm-discovery-t2.stdout")).unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(r[2].portal.to_string(), "10.99.0.1:3260");
        assert_eq!(r[3].tpgt, 2);
        assert_eq!(r[3].target, "iqn.2026-01.test.lab:t2");
        let v6 = parse_records("[fe80::1]:3260,7 iqn.x:y\n[fe80::1]:3260,7 iqn.x:y\n").unwrap();
        assert_eq!(v6.len(), 1);
        assert_eq!(v6[0].portal.host(), "fe80::1");
        assert!(parse_records("garbage").is_err());
    }

    #[test]
    fn chap_discovery_falls_back_and_masks_secrets() {
        let (_d, l) = locks();
        let fake = FakeRunner::new();
        fake.on(
            &[
                "iscsiadm",
                "-m",
                "discoverydb",
                "-t",
                "st",
                "-p",
                "10.99.0.2:3260",
                "-I",
                "default",
                "--discover",
            ],
            19,
            "",
            &fixture("iscsiadm-discoverydb-discover.stderr"),
        );
        fake.on(
            &["iscsiadm", "-m", "discovery"],
            0,
            &fixture("iscsiadm-discovery-t2.stdout"),
            "",
        );
        let adm = Iscsiadm::new(&fake, &l);
        let auth = Auth {
            chap: Some(Chap {
                user: "labuser".into(),
                secret: Secret::new("labsecret123"),
            }),
            incoming: None,
        };
        let recs = adm
            .discover(&Portal::new("10.99.0.2", 3260), &auth, &["default".into()])
            .unwrap();
        assert_eq!(recs.len(), 4);
        let calls = fake.calls();
        assert_eq!(calls.len(), 5, "{calls:?}");
        assert!(
            calls.iter().all(|c| !c.join(" ").contains("labsecret123")),
            "{calls:?}"
        );
        assert!(
            calls[1]
                .join(" ")
                .ends_with("discovery.sendtargets.auth.password -v ***")
        );
        assert_eq!(calls[3].last().map(String::as_str), Some("None"));
        assert_eq!(calls[4][..3], ["iscsiadm", "-m", "discovery"]);
    }

    #[test]
    fn login_logout_statuses() {
        let (_d, l) = locks();
        let fake = FakeRunner::new();
        let t = Iqn::new("iqn.2026-01.test.lab:t2").unwrap();
        let p = Portal::new("10.99.0.1", 3260);
        fake.on(
            &["iscsiadm", "-m", "node", "-p"],
            15,
            "",
            &fixture("iscsiadm-login-existing.stderr"),
        );
        fake.on(
            &["iscsiadm", "-m", "node", "-p"],
            24,
            "",
            &fixture("iscsiadm-login-wrong-chap.stderr"),
        );
        fake.on(
            &["iscsiadm", "-m", "node", "-p"],
            21,
            "",
            &fixture("iscsiadm-logout-t2-again.stderr"),
        );
        let adm = Iscsiadm::new(&fake, &l);
        assert_eq!(adm.login(&p, &t).unwrap(), Login::Existing);
        let e = adm.login(&p, &t).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::LoginRefused, "{e}");
        assert!(!adm.logout(&p, &t).unwrap());
        assert_eq!(adm.login(&p, &t).unwrap(), Login::New);
    }

    #[test]
    fn auth_update_is_one_call() {
        let (_d, l) = locks();
        let fake = FakeRunner::new();
        let adm = Iscsiadm::new(&fake, &l);
        let t = Iqn::new("iqn.2026-01.test.lab:t2").unwrap();
        let p = Portal::new("10.99.0.1", 3260);
        let auth = Auth {
            chap: Some(Chap {
                user: "u".into(),
                secret: Secret::new("s1"),
            }),
            incoming: Some(Chap {
                user: "ui".into(),
                secret: Secret::new("s2"),
            }),
        };
        adm.set_auth(&p, &t, &auth).unwrap();
        adm.set_auth(&p, &t, &Auth::default()).unwrap();
        let calls = fake.calls();
        assert_eq!(calls.len(), 2);
        let first = calls[0].join(" ");
        assert!(
            first.contains(
                "node.session.auth.username_in -v ui -n node.session.auth.password_in -v ***"
            ),
            "{first}"
        );
        assert!(!first.contains("s1") && !first.contains("s2"));
        assert!(calls[1].join(" ").contains("authmethod -v None"));
    }
}
