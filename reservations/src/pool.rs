//! Which pool host owns a key, and whether xapi thinks it is alive.
//!
//! Built from one `host.get_all_records` round trip: every host's uuid gives its key
//! ([`PrKey::for_host`]); two hosts deriving the same key is an error found here, before any
//! SCSI command. Liveness (`host_metrics.live`) is asked only for the host that matters.

use sm_core::secret::Secret;
use sm_core::xenapi::{Endpoint, HostRecord, XenApi};
use sm_core::xmlrpc::Value;

use crate::error::PrError;
use crate::key::PrKey;

/// A pool host and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolHost {
    /// OpaqueRef.
    pub host_ref: String,
    /// uuid.
    pub uuid: String,
    /// name_label (hostname when empty).
    pub name: String,
    /// The host_metrics OpaqueRef ("" when unknown).
    pub metrics: String,
    /// The derived key.
    pub key: PrKey,
}

/// Whether a host is alive, as the pool says.
pub trait Liveness {
    /// `host_metrics.live` of `host`.
    fn is_live(&self, host: &PoolHost) -> Result<bool, PrError>;
}

impl Liveness for XenApi {
    fn is_live(&self, host: &PoolHost) -> Result<bool, PrError> {
        if host.metrics.is_empty() || host.metrics == "OpaqueRef:NULL" {
            self.host_is_live(&host.host_ref)
                .map_err(|e| PrError::Pool(Box::new(e)))
        } else {
            self.host_metrics_live(&host.metrics)
                .map_err(|e| PrError::Pool(Box::new(e)))
        }
    }
}

/// Every host of the pool with its key; keys are unique.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolKeys {
    hosts: Vec<PoolHost>,
}

impl PoolKeys {
    /// Checks that no two hosts share a key.
    pub fn new(hosts: Vec<PoolHost>) -> Result<PoolKeys, PrError> {
        for (i, a) in hosts.iter().enumerate() {
            if let Some(b) = hosts[i + 1..].iter().find(|b| b.key == a.key) {
                return Err(PrError::KeyCollision {
                    key: a.key,
                    detail: format!(
                        "hosts {} ({}) and {} ({}) derive the same key",
                        a.name, a.uuid, b.name, b.uuid
                    ),
                });
            }
        }
        Ok(PoolKeys { hosts })
    }

    /// From host records.
    pub fn from_records(records: &[HostRecord]) -> Result<PoolKeys, PrError> {
        let hosts = records
            .iter()
            .map(|r| {
                Ok(PoolHost {
                    host_ref: r.ref_.clone(),
                    uuid: r.uuid.clone(),
                    name: if r.name_label.is_empty() {
                        r.hostname.clone()
                    } else {
                        r.name_label.clone()
                    },
                    metrics: r.metrics.clone(),
                    key: PrKey::for_host(&r.uuid)?,
                })
            })
            .collect::<Result<Vec<_>, PrError>>()?;
        PoolKeys::new(hosts)
    }

    /// Asks xapi (`host.get_all_records`).
    pub fn from_xapi(x: &XenApi) -> Result<PoolKeys, PrError> {
        PoolKeys::from_records(
            &x.host_get_all_records()
                .map_err(|e| PrError::Pool(Box::new(e)))?,
        )
    }

    /// The host owning `key`.
    pub fn owner(&self, key: u64) -> Option<&PoolHost> {
        self.hosts.iter().find(|h| h.key.get() == key)
    }

    /// The host with this OpaqueRef.
    pub fn by_ref(&self, host_ref: &str) -> Option<&PoolHost> {
        self.hosts.iter().find(|h| h.host_ref == host_ref)
    }

    /// Every host.
    pub fn hosts(&self) -> &[PoolHost] {
        &self.hosts
    }

    /// How to name `key` in messages: the owning host, or what kind of key it is.
    pub fn describe(&self, key: u64) -> String {
        match self.owner(key) {
            Some(h) => format!("host {} ({})", h.name, h.uuid),
            None => match PrKey::new(key) {
                Ok(k) if k.is_ours() => format!("an xsm key of no host in this pool ({k})"),
                Ok(k) => format!("a foreign key ({k})"),
                Err(_) => "an All-Registrants reservation".into(),
            },
        }
    }
}

/// The local XenAPI (`SM_XAPI`, logged in as root, as dom0 tools do) and the pool's keys,
/// when it answers; `None` when there is no pool to ask.
pub fn local_pool() -> Option<(XenApi, PoolKeys)> {
    let endpoint = Endpoint::from_env();
    let login = XenApi::new(endpoint.clone(), Secret::new(String::new()), None);
    let session = login
        .call_raw(
            "session.login_with_password",
            &[
                Value::Str("root".into()),
                Value::Str(String::new()),
                Value::Str("1.0".into()),
                Value::Str("xsm-pr".into()),
            ],
        )
        .ok()?
        .to_text();
    let x = XenApi::new(endpoint, Secret::new(session), None);
    let keys = PoolKeys::from_xapi(&x).ok()?;
    Some((x, keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(r: &str, uuid: &str, name: &str) -> HostRecord {
        HostRecord {
            ref_: r.into(),
            uuid: uuid.into(),
            name_label: name.into(),
            hostname: String::new(),
            metrics: String::new(),
        }
    }

    #[test]
    fn owners_and_descriptions() {
        let ua = "11111111-2222-4333-8444-555555555555";
        let ub = "66666666-7777-4888-9999-aaaaaaaaaaaa";
        let p =
            PoolKeys::from_records(&[rec("OpaqueRef:a", ua, "hostA"), rec("OpaqueRef:b", ub, "")])
                .unwrap();
        let ka = PrKey::for_host(ua).unwrap();
        assert_eq!(p.owner(ka.get()).unwrap().name, "hostA");
        assert_eq!(p.by_ref("OpaqueRef:b").unwrap().uuid, ub);
        assert!(p.describe(ka.get()).starts_with("host hostA"));
        assert!(
            p.describe(0x5853_0000_0000_0001)
                .contains("no host in this pool")
        );
        assert!(p.describe(0xa1).contains("foreign"));
        assert!(p.describe(0).contains("All-Registrants"));
    }

    #[test]
    fn collisions_and_bad_uuids_are_errors() {
        let ua = "11111111-2222-4333-8444-555555555555";
        let e = PoolKeys::from_records(&[
            rec("OpaqueRef:a", ua, "a"),
            rec("OpaqueRef:b", &ua.to_uppercase(), "b"),
        ])
        .unwrap_err();
        assert!(matches!(e, PrError::KeyCollision { .. }), "{e}");
        assert!(e.to_string().contains("derive the same key"));
        assert!(PoolKeys::from_records(&[rec("OpaqueRef:a", "nope", "a")]).is_err());
    }
}
