//! iSCSI sessions through open-iscsi: typed `iscsiadm` calls serialised by sm's lock
//! ([`iscsiadm`]), the host's initiator name ([`initiator`]), per-target reference counts
//! shared with sm ([`refcount`]), and logging in to / out of a target's portals on behalf of
//! SRs ([`login`]).

pub mod initiator;
pub mod iscsiadm;
pub mod login;
pub mod luns;
pub mod refcount;

use std::fmt;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde::Serialize;
use sm_core::secret::Secret;

pub use crate::error::IscsiadmStatus;
use crate::error::{MultipathError, Result};

pub use iscsiadm::{Iscsiadm, NodeRecord};
pub use login::{Connection, TargetSpec};

/// The default iSCSI port.
pub const DEFAULT_PORT: u16 = 3260;

/// An iSCSI qualified name (`iqn.`, `eui.` or `naa.` form), checked for what would break
/// iscsiadm's argv or its records.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Iqn(String);

impl Iqn {
    /// Validates `s`: a known prefix, 4..=223 bytes, no whitespace, `/` or control characters.
    pub fn new(s: &str) -> Result<Iqn> {
        let lower = s.to_ascii_lowercase();
        let ok =
            (lower.starts_with("iqn.") || lower.starts_with("eui.") || lower.starts_with("naa."))
                && (5..=223).contains(&s.len())
                && !s
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '/' || c == ',');
        if ok {
            Ok(Iqn(s.to_string()))
        } else {
            Err(MultipathError::Invalid(format!("not an iSCSI name: {s:?}")))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Iqn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An iSCSI portal: host (name, IPv4 or IPv6 address) and port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Portal {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Portal {
    /// A portal.
    pub fn new(host: &str, port: u16) -> Portal {
        Portal {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
        }
    }

    /// Parses `host`, `host:port`, `[v6]` or `[v6]:port` (and iscsiadm's `addr:port,tpgt`);
    /// `default_port` when none is given.
    pub fn parse(s: &str, default_port: u16) -> Result<Portal> {
        let s = s.split(',').next().unwrap_or("").trim();
        let bad = || MultipathError::Invalid(format!("not a portal: {s:?}"));
        if s.is_empty()
            || s.chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '/')
        {
            return Err(bad());
        }
        if let Some(rest) = s.strip_prefix('[') {
            let (host, tail) = rest.split_once(']').ok_or_else(bad)?;
            let port = match tail.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None if tail.is_empty() => default_port,
                None => return Err(bad()),
            };
            return Ok(Portal::new(host, port));
        }
        match s.matches(':').count() {
            0 => Ok(Portal::new(s, default_port)),
            1 => {
                let (h, p) = s.split_once(':').ok_or_else(bad)?;
                let port = p.parse().map_err(|_| bad())?;
                if h.is_empty() {
                    return Err(bad());
                }
                Ok(Portal::new(h, port))
            }
            _ => Ok(Portal::new(s, default_port)),
        }
    }

    /// The address part as iscsiadm and sysfs print it (`10.0.0.1`, `fe80::1`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Resolves the host name (DNS) to its first address.
    pub fn resolve(&self) -> Result<SocketAddr> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| MultipathError::Dns {
                host: self.host.clone(),
            })
    }

    /// This portal with its host resolved to an address.
    pub fn resolved(&self) -> Result<Portal> {
        let a = self.resolve()?;
        Ok(Portal::new(&a.ip().to_string(), self.port))
    }

    /// Whether a TCP connection to the portal opens within `timeout` (sm's `_testHost`).
    pub fn check_reachable(&self, timeout: Duration) -> Result<()> {
        let addr = self.resolve()?;
        TcpStream::connect_timeout(&addr, timeout)
            .map(drop)
            .map_err(|e| MultipathError::Unreachable {
                portal: self.to_string(),
                reason: e.to_string(),
            })
    }
}

impl fmt::Display for Portal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// CHAP credentials (the secret masked by type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chap {
    /// User name.
    pub user: String,
    /// Secret.
    pub secret: Secret,
}

/// Authentication of a session: outgoing CHAP (the target checks us) and, optionally,
/// incoming CHAP (we check the target: mutual CHAP).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    /// Outgoing CHAP (also used for SendTargets discovery).
    pub chap: Option<Chap>,
    /// Incoming (mutual) CHAP, only with outgoing CHAP.
    pub incoming: Option<Chap>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portals_parse_and_print() {
        assert_eq!(
            Portal::parse("10.0.0.1", 3260).unwrap().to_string(),
            "10.0.0.1:3260"
        );
        assert_eq!(Portal::parse("10.0.0.1:3261", 3260).unwrap().port, 3261);
        assert_eq!(
            Portal::parse("10.99.0.1:3260,1", 1).unwrap().to_string(),
            "10.99.0.1:3260"
        );
        assert_eq!(
            Portal::parse("[fe80::1]:3260", 1).unwrap().host(),
            "fe80::1"
        );
        assert_eq!(
            Portal::parse("[fe80::1]", 3260).unwrap().to_string(),
            "[fe80::1]:3260"
        );
        assert_eq!(
            Portal::parse("fe80::1", 3260).unwrap().to_string(),
            "[fe80::1]:3260"
        );
        assert_eq!(
            Portal::parse("array.example", 3260).unwrap().host(),
            "array.example"
        );
        for bad in [
            "",
            "a b",
            "x:notaport",
            ":3260",
            "[fe80::1",
            "[::1]x",
            "a/b",
            "h:70000",
        ] {
            assert!(Portal::parse(bad, 3260).is_err(), "{bad}");
        }
    }

    #[test]
    fn iqns() {
        assert!(Iqn::new("iqn.2026-01.test.lab:array").is_ok());
        assert!(Iqn::new("eui.02004567A425678D").is_ok());
        for bad in ["", "*", "array", "iqn.a b", "iqn.x/y", "iqn.a,b", "iqn."] {
            assert!(Iqn::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unreachable_portal_is_reported_fast() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        Portal::new("127.0.0.1", port)
            .check_reachable(Duration::from_secs(2))
            .unwrap();
        drop(l);
        let e = Portal::new("127.0.0.1", port)
            .check_reachable(Duration::from_secs(2))
            .unwrap_err();
        assert!(matches!(e, MultipathError::Unreachable { .. }), "{e}");
        let e = Portal::new("no-such-host.invalid", 3260)
            .resolve()
            .unwrap_err();
        assert!(matches!(e, MultipathError::Dns { .. }), "{e}");
    }
}
