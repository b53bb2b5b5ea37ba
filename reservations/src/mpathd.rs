//! multipathd's per-map reservation key: with `reservation_key file` in multipath.conf,
//! `setprkey` records our key for the map (in its prkeys file) and `setprstatus` marks the
//! map registered, so multipathd itself registers every path that is added to the map or
//! reinstated, with REGISTER AND IGNORE EXISTING KEY, *before* the path carries I/O
//! (`mpath_pr_event_handle`, run before the map reload). When the key is gone from the LU
//! (we were preempted), multipathd does not register the path.

use multipath::dm::Multipathd;

use crate::error::PrError;
use crate::key::PrKey;

fn cmd(md: &dyn Multipathd, map: &str, action: String) -> Result<String, PrError> {
    md.command(&action)
        .map(|reply| reply.trim().to_string())
        .map_err(|source| PrError::Multipathd {
            action,
            map: map.into(),
            source: Box::new(source),
        })
}

/// Whether multipathd's reply means failure (it exits 0 and prints `fail`).
fn failed(reply: &str) -> bool {
    reply.starts_with("fail")
}

/// Tells multipathd (`md`: its socket on a host, so no process is spawned) to register
/// `map`'s new and returning paths with `key` (`Some`), or to stop (`None`). Returns false,
/// with a warning, when multipathd refuses (no `reservation_key file` in its configuration):
/// then only our own re-check registers new paths.
pub fn set_map_key(md: &dyn Multipathd, map: &str, key: Option<PrKey>) -> Result<bool, PrError> {
    let replies = match key {
        Some(k) => {
            vec![
                cmd(md, map, format!("setprkey map {map} key {k}"))?,
                cmd(md, map, format!("setprstatus map {map}"))?,
            ]
        }
        None => vec![
            cmd(md, map, format!("unsetprstatus map {map}"))?,
            cmd(md, map, format!("unsetprkey map {map}"))?,
        ],
    };
    if let Some(r) = replies.iter().find(|r| failed(r)) {
        tracing::warn!(
            map,
            reply = %r,
            "multipathd refused the map's reservation key (is `reservation_key file` in multipath.conf?); new paths are registered by xsm's re-check only"
        );
        return Ok(false);
    }
    Ok(true)
}

/// The key multipathd has for `map`, if any (`getprkey`).
pub fn map_key(md: &dyn Multipathd, map: &str) -> Result<Option<PrKey>, PrError> {
    let reply = cmd(md, map, format!("getprkey map {map}"))?;
    Ok(reply
        .split_whitespace()
        .next()
        .and_then(|w| w.trim_end_matches(':').parse::<PrKey>().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use multipath::dm::MultipathdCli;
    use sm_core::testing::FakeRunner;
    use std::sync::Arc;

    fn cli(r: &Arc<FakeRunner>) -> MultipathdCli {
        MultipathdCli::new(r.clone())
    }

    #[test]
    fn sets_and_unsets_the_map_key() {
        let r = Arc::new(FakeRunner::new());
        r.on(&["multipathd", "setprkey"], 0, "ok\n", "").on(
            &["multipathd", "setprstatus"],
            0,
            "ok\n",
            "",
        );
        let k = PrKey::new(0x5853_0000_0000_00a1).unwrap();
        assert!(set_map_key(&cli(&r), "3600", Some(k)).unwrap());
        assert_eq!(
            r.calls()[0],
            [
                "multipathd",
                "setprkey",
                "map",
                "3600",
                "key",
                "0x58530000000000a1"
            ]
        );
        assert!(set_map_key(&cli(&r), "3600", None).unwrap());
        assert_eq!(r.calls()[2], ["multipathd", "unsetprstatus", "map", "3600"]);
        assert_eq!(r.calls()[3], ["multipathd", "unsetprkey", "map", "3600"]);
    }

    #[test]
    fn refusal_is_a_warning_not_an_error() {
        let r = Arc::new(FakeRunner::new());
        r.on(&["multipathd", "setprkey"], 0, "fail\n", "");
        let k = PrKey::new(0xa1).unwrap();
        assert!(!set_map_key(&cli(&r), "3600", Some(k)).unwrap());
    }

    #[test]
    fn reads_the_map_key() {
        let r = Arc::new(FakeRunner::new());
        r.on(&["multipathd", "getprkey"], 0, "0x58530000000000a1\n", "");
        assert_eq!(
            map_key(&cli(&r), "3600").unwrap().map(|k| k.get()),
            Some(0x5853_0000_0000_00a1)
        );
        r.on(&["multipathd", "getprkey"], 0, "none\n", "");
        assert_eq!(map_key(&cli(&r), "3600").unwrap(), None);
    }

    #[test]
    fn an_unreachable_daemon_is_an_error_naming_the_map() {
        let md = multipath::dm::MultipathdSocket::at_abstract("/xsm-test/no-multipathd-here");
        let e = set_map_key(&md, "3600", None).unwrap_err();
        let chain = sm_core::errors::error_chain(&e);
        assert!(
            chain.contains("3600") && chain.contains("cannot connect"),
            "{chain}"
        );
    }
}
