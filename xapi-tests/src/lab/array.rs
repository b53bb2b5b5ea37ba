//! What the array's administrator does, for tests: ALUA states, portals, the array's own view
//! of persistent reservations, LUNs. Every call runs the guest's `lab-array` script through
//! sm-core's runner; the PR view is parsed from LIO's configfs text.

use std::time::Duration;

use sm_core::host::run::{Cmd, Runner};
use sm_core::scsi::{AccessState, PrType};
use sm_core::secret::Secret;

use super::LabError;

/// The array helper's program name (installed in the guest's /usr/local/sbin).
pub const LAB_ARRAY: &str = "lab-array";

/// Deadline of an array helper call (`reset` waits for the hosts' paths).
const ARRAY_TIMEOUT: Duration = Duration::from_secs(180);

/// The reservation type LIO describes as `text` (`Write Exclusive Access, Registrants Only`).
fn pr_type_from_lio(text: &str) -> Option<PrType> {
    Some(match text.trim() {
        "Write Exclusive Access" => PrType::WriteExclusive,
        "Exclusive Access" => PrType::ExclusiveAccess,
        "Write Exclusive Access, Registrants Only" => PrType::WriteExclusiveRegistrantsOnly,
        "Exclusive Access, Registrants Only" => PrType::ExclusiveAccessRegistrantsOnly,
        "Write Exclusive Access, All Registrants" => PrType::WriteExclusiveAllRegistrants,
        "Exclusive Access, All Registrants" => PrType::ExclusiveAccessAllRegistrants,
        _ => return None,
    })
}

/// One I_T nexus registered with a key, as the array records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Initiator IQN.
    pub initiator: String,
    /// iSCSI session id (ISID, hex), which tells the host's sessions apart.
    pub isid: Option<String>,
    /// Reservation key.
    pub key: u64,
    /// PR generation when it registered.
    pub generation: u32,
}

/// The reservation held on a LUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// Type.
    pub pr_type: PrType,
    /// Initiator IQN of the holder.
    pub holder: String,
    /// ISID of the holder's session.
    pub holder_isid: Option<String>,
}

/// The array's view of one LUN's persistent reservations (LIO configfs `pr/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrView {
    /// PR generation.
    pub generation: u32,
    /// Registered I_T nexuses.
    pub registrations: Vec<Registration>,
    /// The reservation, if one is held.
    pub reservation: Option<Reservation>,
}

impl PrView {
    /// The distinct keys registered, in registration order.
    pub fn keys(&self) -> Vec<u64> {
        let mut keys: Vec<u64> = Vec::new();
        for r in &self.registrations {
            if !keys.contains(&r.key) {
                keys.push(r.key);
            }
        }
        keys
    }

    /// Registrations of initiator `iqn`.
    pub fn registrations_of<'a>(
        &'a self,
        iqn: &'a str,
    ) -> impl Iterator<Item = &'a Registration> + 'a {
        self.registrations
            .iter()
            .filter(move |r| r.initiator == iqn)
    }

    /// Parses `lab-array pr` output: LIO's pr/ files, each after a `== <name>` line.
    pub fn parse(text: &str) -> Result<PrView, String> {
        let mut sections: Vec<(&str, Vec<&str>)> = Vec::new();
        for line in text.lines() {
            if let Some(name) = line.strip_prefix("== ") {
                sections.push((name.trim(), Vec::new()));
            } else if let Some((_, body)) = sections.last_mut()
                && !line.trim().is_empty()
            {
                body.push(line.trim());
            }
        }
        let section = |name: &str| {
            sections
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, b)| b.as_slice())
        };
        let generation_text = section("res_pr_generation")
            .and_then(|b| b.first().copied())
            .ok_or("no res_pr_generation")?;
        let generation = parse_hex_u32(generation_text)
            .ok_or_else(|| format!("bad generation {generation_text:?}"))?;
        let mut registrations = Vec::new();
        for line in section("res_pr_registered_i_pts").ok_or("no res_pr_registered_i_pts")? {
            if *line == "SPC-3 PR Registrations:" || *line == "None" {
                continue;
            }
            registrations.push(
                parse_registration(line).ok_or_else(|| format!("bad registration {line:?}"))?,
            );
        }
        let holder_line = section("res_holder")
            .and_then(|b| b.first().copied())
            .unwrap_or_default();
        let type_line = section("res_pr_type")
            .and_then(|b| b.first().copied())
            .unwrap_or_default();
        let reservation = match (
            holder_line.split_once(" Initiator: "),
            type_line.strip_prefix("SPC-3 Reservation Type: "),
        ) {
            (Some((_, who)), Some(t)) => {
                let pr_type =
                    pr_type_from_lio(t).ok_or_else(|| format!("unknown reservation type {t:?}"))?;
                let (holder, holder_isid) = split_isid(who.trim());
                Some(Reservation {
                    pr_type,
                    holder,
                    holder_isid,
                })
            }
            _ if holder_line.starts_with("No SPC-3 Reservation holder") => None,
            _ => {
                return Err(format!(
                    "unreadable reservation: {holder_line:?} / {type_line:?}"
                ));
            }
        };
        Ok(PrView {
            generation,
            registrations,
            reservation,
        })
    }
}

fn parse_hex_u32(s: &str) -> Option<u32> {
    u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
}

/// `iSCSI Node: <iqn>[,i,0x<isid>] Key: 0x<key> PRgen: 0x<gen>`
fn parse_registration(line: &str) -> Option<Registration> {
    let rest = line.split_once(" Node: ")?.1;
    let (who, rest) = rest.split_once(" Key: ")?;
    let (key, generation) = rest.split_once(" PRgen: ")?;
    let (initiator, isid) = split_isid(who.trim());
    Some(Registration {
        initiator,
        isid,
        key: u64::from_str_radix(key.trim().trim_start_matches("0x"), 16).ok()?,
        generation: parse_hex_u32(generation)?,
    })
}

/// `<iqn>,i,0x<isid>` -> (iqn, Some(isid)); a bare IQN -> (iqn, None).
fn split_isid(who: &str) -> (String, Option<String>) {
    match who.split_once(",i,") {
        Some((iqn, isid)) => (
            iqn.to_string(),
            Some(isid.trim_start_matches("0x").to_string()),
        ),
        None => (who.to_string(), None),
    }
}

/// The array helpers, run where the array is (guest A).
pub struct Array<'a> {
    runner: &'a dyn Runner,
}

impl<'a> Array<'a> {
    /// Helpers running `lab-array` through `runner`.
    pub fn new(runner: &'a dyn Runner) -> Array<'a> {
        Array { runner }
    }

    fn call(&self, args: &[&str]) -> Result<String, LabError> {
        self.call_cmd(Cmd::new(LAB_ARRAY).args(args), &args.join(" "))
    }

    fn call_cmd(&self, cmd: Cmd, action: &str) -> Result<String, LabError> {
        match self.runner.run(&cmd.timeout(ARRAY_TIMEOUT)) {
            Ok(out) => Ok(out.stdout_str()),
            Err(source) => Err(LabError::Array {
                action: action.to_string(),
                source,
            }),
        }
    }

    /// Sets ALUA target port group `group` of LUN `lun` to `state`, as the array's administrator
    /// would (an implicit transition: the hosts learn it from a unit attention).
    pub fn set_alua_state(&self, group: u16, state: AccessState, lun: u32) -> Result<(), LabError> {
        self.call(&[
            "alua",
            &group.to_string(),
            &state.code().to_string(),
            &lun.to_string(),
        ])
        .map(drop)
    }

    /// Sets ALUA target port group `group` of every LUN to `state`.
    pub fn set_alua_state_all(&self, group: u16, state: AccessState) -> Result<(), LabError> {
        self.call(&["alua", &group.to_string(), &state.code().to_string(), "all"])
            .map(drop)
    }

    /// The state of each ALUA target port group of LUN `lun`, as `(group id, state)`.
    pub fn alua_states(&self, lun: u32) -> Result<Vec<(u16, AccessState)>, LabError> {
        let text = self.call(&["alua-show", &lun.to_string()])?;
        if text.trim().is_empty() {
            return Err(LabError::ArrayOutput {
                action: format!("alua-show {lun}"),
                detail: "no target port groups".into(),
            });
        }
        let bad = |line: &str| LabError::ArrayOutput {
            action: "alua-show".into(),
            detail: line.to_string(),
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let mut it = line.split_whitespace().skip(1);
                let group = it
                    .next()
                    .and_then(|g| g.parse::<u16>().ok())
                    .ok_or_else(|| bad(line))?;
                let state = it
                    .next()
                    .and_then(|s| s.parse::<u8>().ok())
                    .and_then(AccessState::from_code)
                    .ok_or_else(|| bad(line))?;
                Ok((group, state))
            })
            .collect()
    }

    /// Takes portal `tpg` down on the array (its iSCSI TPG is disabled; sessions through it drop).
    pub fn portal_down(&self, tpg: u16) -> Result<(), LabError> {
        self.call(&["portal", "down", &tpg.to_string()]).map(drop)
    }

    /// Brings portal `tpg` back.
    pub fn portal_up(&self, tpg: u16) -> Result<(), LabError> {
        self.call(&["portal", "up", &tpg.to_string()]).map(drop)
    }

    /// Takes portal `tpg` of the target `name` (added by [`Self::add_target`]) down.
    pub fn target_portal_down(&self, name: &str, tpg: u16) -> Result<(), LabError> {
        self.call(&["portal", "down", &tpg.to_string(), name])
            .map(drop)
    }

    /// Brings portal `tpg` of the target `name` back.
    pub fn target_portal_up(&self, name: &str, tpg: u16) -> Result<(), LabError> {
        self.call(&["portal", "up", &tpg.to_string(), name])
            .map(drop)
    }

    /// The array's view of LUN `lun`'s registrations and reservation.
    pub fn pr_view(&self, lun: u32) -> Result<PrView, LabError> {
        let text = self.call(&["pr", &lun.to_string()])?;
        PrView::parse(&text).map_err(|detail| LabError::ArrayOutput {
            action: format!("pr {lun}"),
            detail,
        })
    }

    /// Creates (`true`) or removes LIO's PR state directories. Without them the array applies a
    /// PR OUT but reports it as failed (LOGICAL UNIT COMMUNICATION FAILURE).
    pub fn set_pr_dirs(&self, present: bool) -> Result<(), LabError> {
        self.call(&["pr-dirs", if present { "on" } else { "off" }])
            .map(drop)
    }

    /// Adds a LUN of `size_mb` MiB on both portals and returns its number. Hosts see it after a
    /// rescan (`iscsiadm -m session --rescan`); it is not in the lab description.
    pub fn add_lun(&self, size_mb: u64) -> Result<u32, LabError> {
        let text = self.call(&["lun-add", &size_mb.to_string()])?;
        text.trim().parse().map_err(|_| LabError::ArrayOutput {
            action: "lun-add".into(),
            detail: text.trim().to_string(),
        })
    }

    /// A new LUN whose LU has persistent reservations turned off (LIO `emulate_pr` 0: PR IN
    /// and OUT answer INVALID OPCODE), like arrays without SCSI-3 PR.
    pub fn add_lun_without_pr(&self, size_mb: u64) -> Result<u32, LabError> {
        let text = self.call(&["lun-add", &size_mb.to_string(), "nopr"])?;
        text.trim().parse().map_err(|_| LabError::ArrayOutput {
            action: "lun-add nopr".into(),
            detail: text.trim().to_string(),
        })
    }

    /// Unexports and deletes LUN `lun` (the hosts keep stale devices until they remove them).
    pub fn remove_lun(&self, lun: u32) -> Result<(), LabError> {
        self.call(&["lun-remove", &lun.to_string()]).map(drop)
    }

    /// Adds another target, `iqn.2026-01.test.lab:<name>`, on both portals (portal N in ALUA
    /// target port group N, as the main target) with `luns` new LUNs of `size_mb` MiB, ACLs for
    /// every lab initiator and its own CHAP (`chap`) and mutual CHAP (`mutual`) credentials.
    /// No host is logged in to it. Returns its IQN and the new LUNs' WWIDs (LUN 0 first). The
    /// runner's reset removes it; [`Array::remove_target`] does it earlier.
    pub fn add_target(
        &self,
        name: &str,
        luns: u32,
        size_mb: u64,
        chap: Option<(&str, &Secret)>,
        mutual: Option<(&str, &Secret)>,
    ) -> Result<(String, Vec<String>), LabError> {
        let mut cmd = Cmd::new(LAB_ARRAY).args([
            "target-add".to_string(),
            name.to_string(),
            luns.to_string(),
            size_mb.to_string(),
        ]);
        for (flag, cred) in [("--chap", chap), ("--mutual-chap", mutual)] {
            if let Some((user, secret)) = cred {
                cmd = cmd
                    .arg(flag)
                    .secret_arg(&Secret::new(format!("{user}:{}", secret.expose())));
            }
        }
        let action = format!("target-add {name}");
        let text = self.call_cmd(cmd, &action)?;
        let wwids: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
        if wwids.len() != usize::try_from(luns).unwrap_or(usize::MAX)
            || wwids
                .iter()
                .any(|w| w.len() != 33 || !w.starts_with("36001405"))
        {
            return Err(LabError::ArrayOutput {
                action,
                detail: text.trim().to_string(),
            });
        }
        Ok((format!("iqn.2026-01.test.lab:{name}"), wwids))
    }

    /// Removes a target added by [`Array::add_target`]: host A flushes its maps, logs out and
    /// deletes its node records first.
    pub fn remove_target(&self, name: &str) -> Result<(), LabError> {
        self.call(&["target-remove", name]).map(drop)
    }

    /// The IQNs of the targets added by [`Array::add_target`].
    pub fn targets(&self) -> Result<Vec<String>, LabError> {
        Ok(self
            .call(&["targets"])?
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect())
    }

    /// Back to the baseline the lab was set up with: portals up, ALUA states, PR directories,
    /// no registrations; waits until host A's paths are up again. The test runner does this
    /// after every test.
    pub fn reset(&self) -> Result<(), LabError> {
        self.call(&["reset"]).map(drop)
    }

    /// Everything the array helpers know, as text for logs.
    pub fn state(&self) -> Result<String, LabError> {
        self.call(&["state"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `lab-array pr 1` on LIO (kernel 6.1) after host A registered 0xa1 on both its paths
    /// and reserved type 5 through portal 1.
    const PR_RESERVED: &str = "== res_type
SPC3_PERSISTENT_RESERVATIONS
== res_pr_type
SPC-3 Reservation Type: Write Exclusive Access, Registrants Only
== res_pr_generation
0x00000002
== res_holder
SPC-3 Reservation: iSCSI Initiator: iqn.2026-01.test.lab:host-a,i,0x00023d000002
== res_pr_holder_tg_port
SPC-3 Reservation: iSCSI Target Node Endpoint: iqn.2026-01.test.lab:array
SPC-3 Reservation: Relative Port Identifier Tag: 1 iSCSI Portal Group Tag: 1 iSCSI Logical Unit: 1
== res_pr_all_tgt_pts
SPC-3 Reservation: All Target Ports
== res_aptpl_active
APTPL Bit Status: Disabled
== res_pr_registered_i_pts
SPC-3 PR Registrations:
iSCSI Node: iqn.2026-01.test.lab:host-a,i,0x00023d000001 Key: 0x00000000000000a1 PRgen: 0x00000000
iSCSI Node: iqn.2026-01.test.lab:host-a,i,0x00023d000002 Key: 0x00000000000000a1 PRgen: 0x00000001
";

    const PR_EMPTY: &str = "== res_type
SPC3_PERSISTENT_RESERVATIONS
== res_pr_type
No SPC-3 Reservation holder
== res_pr_generation
0x00000000
== res_holder
No SPC-3 Reservation holder
== res_pr_registered_i_pts
SPC-3 PR Registrations:
None
";

    #[test]
    fn parses_registrations_and_the_reservation() {
        let v = PrView::parse(PR_RESERVED).unwrap();
        assert_eq!(v.generation, 2);
        assert_eq!(v.registrations.len(), 2);
        assert_eq!(v.registrations[1].initiator, "iqn.2026-01.test.lab:host-a");
        assert_eq!(v.registrations[1].isid.as_deref(), Some("00023d000002"));
        assert_eq!(v.registrations[1].key, 0xa1);
        assert_eq!(v.registrations[1].generation, 1);
        assert_eq!(v.keys(), vec![0xa1]);
        assert_eq!(v.registrations_of("iqn.2026-01.test.lab:host-a").count(), 2);
        let r = v.reservation.unwrap();
        assert_eq!(r.pr_type, PrType::WriteExclusiveRegistrantsOnly);
        assert_eq!(r.pr_type.code(), 5);
        assert_eq!(r.holder, "iqn.2026-01.test.lab:host-a");
        assert_eq!(r.holder_isid.as_deref(), Some("00023d000002"));
    }

    #[test]
    fn parses_an_empty_view() {
        let v = PrView::parse(PR_EMPTY).unwrap();
        assert_eq!(
            v,
            PrView {
                generation: 0,
                registrations: vec![],
                reservation: None
            }
        );
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        assert!(PrView::parse("").is_err());
        assert!(
            PrView::parse(&PR_EMPTY.replace("None", "iSCSI Node: x Key: zz PRgen: 0x1")).is_err()
        );
        let odd_type = PR_RESERVED.replace("Registrants Only", "Something New");
        assert!(
            PrView::parse(&odd_type)
                .unwrap_err()
                .contains("unknown reservation type")
        );
    }
}
