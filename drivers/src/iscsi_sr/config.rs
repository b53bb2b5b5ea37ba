//! device_config of iSCSI SRs, as sm's `BaseISCSI`/`LVHDoISCSISR` read it, checked in sm's
//! order: `target` (95), the initiator IQN (`localIQN`, else `host.other_config:iscsi_iqn`,
//! 97), CHAP secrets (`*_secret` through XenAPI, 20), `port` (142), `targetIQN` and `SCSIid`
//! (their absence is answered by the probe listings, see [`super::probe`]).

use std::collections::BTreeMap;

use multipath::iscsi::login::TargetName;
use multipath::iscsi::{Auth, Chap, DEFAULT_PORT, Iqn, Portal};
use sm_core::driver::{ConfigKey, Ctx};
use sm_core::errors::{SmCode, SmError, SmResult};
use sm_core::ids::ScsiId;
use sm_core::secret::Secret;

/// The configuration keys of an iSCSI LVM SR (the driver_info `configuration` list): sm's, plus `fencing`.
pub const CONFIGURATION: &[ConfigKey] = &[
    ConfigKey {
        key: "target",
        description: "IP address or hostname of the iSCSI target; several, comma-separated, for several portals",
    },
    ConfigKey {
        key: "targetIQN",
        description: "The IQN of the target LUN group to be attached (* for every target of the portals); omit it to list the targets",
    },
    ConfigKey {
        key: "SCSIid",
        description: "The scsi_id of the destination LUN; omit it to list the LUNs",
    },
    ConfigKey {
        key: "port",
        description: "The network port number on which to query the target (default 3260)",
    },
    ConfigKey {
        key: "chapuser",
        description: "The username to be used during CHAP authentication",
    },
    ConfigKey {
        key: "chappassword",
        description: "The password to be used during CHAP authentication (or chappassword_secret: a secret uuid)",
    },
    ConfigKey {
        key: "incoming_chapuser",
        description: "The incoming username to be used during bi-directional CHAP authentication (optional)",
    },
    ConfigKey {
        key: "incoming_chappassword",
        description: "The incoming password to be used during bi-directional CHAP authentication (optional; or incoming_chappassword_secret)",
    },
    ConfigKey {
        key: "multihomed",
        description: "Log in to every portal the target reports, true or false (optional, defaults to true)",
    },
    ConfigKey {
        key: "localIQN",
        description: "The initiator IQN to use (optional, defaults to host.other_config:iscsi_iqn)",
    },
    ConfigKey {
        key: "fencing",
        description: "SR-level I/O fencing by SCSI-3 persistent reservation: off (default, as sm), pr (every host registers a per-boot key, the LUN is reserved Write Exclusive - All Registrants, a host xapi reports dead is removed with PREEMPT AND ABORT before its VDIs are taken) or pr-no-abort (PREEMPT, for arrays without PREEMPT AND ABORT); also read from the SR's sm_config",
    },
];

/// The parsed device_config.
#[derive(Debug, Clone)]
pub struct IscsiConfig {
    /// The portals of `target`, with `port` (names not resolved yet).
    pub hosts: Vec<Portal>,
    /// `target` as given (sm names it in the `*` catch-all of the IQN listing).
    pub target_text: String,
    /// The port.
    pub port: u16,
    /// `targetIQN`, when given.
    pub target_name: Option<TargetName>,
    /// `SCSIid`, when given.
    pub scsi_id: Option<ScsiId>,
    /// CHAP.
    pub auth: Auth,
    /// `multihomed`.
    pub multihomed: bool,
    /// The initiator IQN.
    pub initiator: Iqn,
}

/// A value of device_config, or of the XenAPI secret its `<key>_secret` names.
fn secret(cx: &Ctx<'_>, key: &str) -> SmResult<Option<Secret>> {
    let indirect = format!("{key}_secret");
    if let Some(uuid) = cx.dconf().get_nonempty(&indirect) {
        let v = cx
            .xapi()?
            .secret_value(uuid)
            .map_err(|e| SmError::new(SmCode::InvalidSecret, e))?;
        return Ok(Some(v));
    }
    Ok(cx.dconf().get(key).map(Secret::new))
}

/// device_config as `vdi_attach_from_config` needs it at boot, with no xapi to ask (sm's
/// `generate_config`, sm-anchor §1.8): every `<key>_secret` resolved into `<key>` in
/// plaintext, the initiator recorded as `localIQN`, and the host's `multipathing` and
/// `multipathhandle`. The config lands in root-only `/etc/xensource/static-vdis`, as sm's does.
pub fn standalone_device_config(cx: &Ctx<'_>) -> SmResult<BTreeMap<String, String>> {
    let mut m = cx.dconf().as_map().clone();
    let x = cx.xapi()?;
    let indirect: Vec<String> = m
        .iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .filter_map(|(k, _)| k.strip_suffix("_secret").map(str::to_string))
        .collect();
    for key in indirect {
        if let Some(value) = secret(cx, &key)? {
            m.remove(&format!("{key}_secret"));
            m.insert(key, value.expose().to_string());
        }
    }
    let oc = x
        .host_get_other_config(&cx.req.host_ref)
        .map_err(|e| SmError::new(SmCode::ConfigISCSIIQNMissing, e))?;
    if m.get("localIQN").is_none_or(|v| v.trim().is_empty()) {
        let iqn = oc
            .get("iscsi_iqn")
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| {
                SmError::msg(
                    SmCode::ConfigISCSIIQNMissing,
                    "host.other_config has no iscsi_iqn",
                )
            })?;
        m.insert("localIQN".into(), iqn.clone());
    }
    for k in ["multipathing", "multipathhandle"] {
        if let Some(v) = oc.get(k) {
            m.entry(k.to_string()).or_insert_with(|| v.clone());
        }
    }
    Ok(m)
}

fn chap(cx: &Ctx<'_>, user_key: &str, pass_key: &str) -> SmResult<Option<Chap>> {
    let Some(user) = cx.dconf().get_nonempty(user_key) else {
        return Ok(None);
    };
    match secret(cx, pass_key)? {
        Some(s) if !s.is_empty() => Ok(Some(Chap {
            user: user.to_string(),
            secret: s,
        })),
        _ => Ok(None),
    }
}

/// The SR's sm_config: xapi sends it only with sr_probe; other calls with a session read it
/// through XenAPI, calls without one (vdi_attach_from_config at boot) have none.
pub fn sr_sm_config(cx: &Ctx<'_>) -> SmResult<BTreeMap<String, String>> {
    if cx.req.sr_sm_config.is_empty() && cx.has_session() {
        Ok(cx.xapi()?.sr_get_sm_config(&cx.sr_ref()?)?)
    } else {
        Ok(cx.req.sr_sm_config.clone())
    }
}

/// `SCSIid` of device_config as a [`ScsiId`] (fault 107 naming the bad value).
pub fn scsi_id(s: &str) -> SmResult<ScsiId> {
    ScsiId::new(s).map_err(|_| SmError::msg(SmCode::ConfigSCSIid, format!("SCSIid {s:?}")))
}

impl IscsiConfig {
    /// Reads device_config and the host's initiator IQN. `multihomed_default` applies when
    /// `multihomed` is not given (sm: the host's multipathing setting).
    pub fn load(cx: &Ctx<'_>, multihomed_default: bool) -> SmResult<IscsiConfig> {
        let d = cx.dconf();
        let target_text = d
            .require("target", SmCode::ConfigTargetMissing)?
            .to_string();
        let initiator = match d.get_nonempty("localIQN") {
            Some(i) => i.to_string(),
            None => {
                let xapi = cx
                    .xapi()
                    .map_err(|e| SmError::msg(SmCode::ConfigISCSIIQNMissing, e.to_string()))?;
                let oc = xapi
                    .host_get_other_config(&cx.req.host_ref)
                    .map_err(|e| SmError::new(SmCode::ConfigISCSIIQNMissing, e))?;
                oc.get("iscsi_iqn")
                    .filter(|v| !v.trim().is_empty())
                    .cloned()
                    .ok_or_else(|| {
                        SmError::msg(
                            SmCode::ConfigISCSIIQNMissing,
                            "host.other_config has no iscsi_iqn",
                        )
                    })?
            }
        };
        let initiator = Iqn::new(initiator.trim())
            .map_err(|e| SmError::new(SmCode::ConfigISCSIIQNMissing, e))?;
        let out_chap = chap(cx, "chapuser", "chappassword")?;
        let in_chap = chap(cx, "incoming_chapuser", "incoming_chappassword")?;
        let port = match d.get_nonempty("port") {
            None => DEFAULT_PORT,
            Some(p) => match p.trim().parse::<u32>() {
                Ok(n) if (1..=65535).contains(&n) => u16::try_from(n).unwrap_or(DEFAULT_PORT),
                _ => {
                    return Err(SmError::msg(SmCode::ISCSIPort, format!("port {p:?}")));
                }
            },
        };
        let mut hosts = Vec::new();
        for t in target_text
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            let p = Portal::parse(t, port).map_err(|e| SmError::new(SmCode::DNSError, e))?;
            if !hosts.contains(&p) {
                hosts.push(p);
            }
        }
        if hosts.is_empty() {
            return Err(SmError::msg(SmCode::ConfigTargetMissing, "target is empty"));
        }
        let target_name = match d.get_nonempty("targetIQN").map(str::trim) {
            None => None,
            Some("*") => Some(TargetName::Any),
            Some(i) => {
                Some(TargetName::Exact(Iqn::new(i).map_err(|e| {
                    SmError::new(SmCode::ConfigTargetIQNMissing, e)
                })?))
            }
        };
        let scsi_id = d
            .get_nonempty("SCSIid")
            .map(|s| scsi_id(s.trim()))
            .transpose()?;
        let multihomed = match d.get_nonempty("multihomed") {
            Some(v) => v.trim().eq_ignore_ascii_case("true"),
            None => multihomed_default,
        };
        Ok(IscsiConfig {
            hosts,
            target_text,
            port,
            target_name,
            scsi_id,
            auth: Auth {
                incoming: if out_chap.is_some() { in_chap } else { None },
                chap: out_chap,
            },
            multihomed,
            initiator,
        })
    }
}
