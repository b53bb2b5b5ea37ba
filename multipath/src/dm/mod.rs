//! dm-multipath: multipathd's view ([`json`]), commands to the daemon ([`multipathd`]) and the
//! `multipath` tool. Typed operations live here so callers never build command strings.

pub mod json;
pub mod multipathd;

use std::time::{Duration, Instant};

use sm_core::errors::error_chain;
use sm_core::host::{Cmd, Runner};

use crate::error::{MultipathError, Result};
pub use json::{Group, Map, MapPath};
pub use multipathd::{Multipathd, MultipathdAuto, MultipathdCli, MultipathdSocket};

/// Deadline of a `multipath` invocation (it scans every path).
const MULTIPATH_TIMEOUT: Duration = Duration::from_secs(60);

/// Every map multipathd knows (`show maps json`).
pub fn show_maps(md: &dyn Multipathd) -> Result<Vec<Map>> {
    json::parse_maps(&md.command("show maps json")?)
}

/// The map of `wwid`, when multipathd has one.
pub fn show_map(md: &dyn Multipathd, wwid: &str) -> Result<Option<Map>> {
    Ok(show_maps(md)?
        .into_iter()
        .find(|m| m.uuid == wwid || m.name == wwid))
}

/// Checks a reply to an action command: multipathd answers `ok` or `fail` (or a usage text
/// for a command it does not know).
fn expect_ok(command: &str, reply: String) -> Result<()> {
    if reply.trim() == "ok" {
        Ok(())
    } else {
        Err(MultipathError::MultipathdRefused {
            command: command.into(),
            reply: reply.trim().chars().take(200).collect(),
        })
    }
}

fn action(md: &dyn Multipathd, command: String) -> Result<()> {
    let reply = md.command(&command)?;
    expect_ok(&command, reply)
}

/// `fail path <dev>`: dm stops using the path until it is reinstated (multipathd's checker
/// reinstates it when the path answers again).
pub fn fail_path(md: &dyn Multipathd, dev: &str) -> Result<()> {
    action(md, format!("fail path {dev}"))
}

/// `reinstate path <dev>`.
pub fn reinstate_path(md: &dyn Multipathd, dev: &str) -> Result<()> {
    action(md, format!("reinstate path {dev}"))
}

/// `switchgroup map <map> group <n>`: makes path group `n` (1-based) the active one.
pub fn switch_group(md: &dyn Multipathd, map: &str, group: u32) -> Result<()> {
    action(md, format!("switchgroup map {map} group {group}"))
}

/// `reload map <map>`: multipathd re-reads the map's paths (priorities included) and reloads
/// the table.
pub fn reload_map(md: &dyn Multipathd, map: &str) -> Result<()> {
    action(md, format!("reload map {map}"))
}

/// `disablequeueing map <map>`: I/O queued on a map without paths fails at once, and so does
/// new I/O, instead of waiting for a path (`queue_if_no_path`) that will not come back.
pub fn disable_queueing(md: &dyn Multipathd, map: &str) -> Result<()> {
    action(md, format!("disablequeueing map {map}"))
}

/// The `polling_interval` of multipathd's running configuration (`show config`), if set.
pub fn polling_interval(md: &dyn Multipathd) -> Result<Option<u32>> {
    let config = md.command("show config")?;
    Ok(config
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("polling_interval"))
        .and_then(|v| v.trim().parse().ok()))
}

fn multipath(runner: &dyn Runner, args: &[&str], what: &str) -> Result<String> {
    runner
        .run(&Cmd::new("multipath").args(args).timeout(MULTIPATH_TIMEOUT))
        .map(|o| o.stdout_str())
        .map_err(|e| MultipathError::command(what.to_string(), e))
}

/// `multipath -a <wwid>`: allows the WWID (the wwids file), so `find_multipaths` setups map it.
pub fn allow_wwid(runner: &dyn Runner, wwid: &str) -> Result<()> {
    multipath(runner, &["-a", wwid], "multipath -a").map(drop)
}

/// `multipath -r <wwid>`: creates or reloads the map of `wwid`.
pub fn reload(runner: &dyn Runner, wwid: &str) -> Result<()> {
    multipath(runner, &["-r", wwid], "multipath -r").map(drop)
}

/// Whether `multipath -f` failed because something held the map open: multipathd says "in use",
/// the device-mapper remove ioctl "Device or resource busy".
fn held_open(text: &str) -> bool {
    text.contains("in use") || text.contains("resource busy")
}

/// `multipath -f <map>`: removes the map. A map held open only for an instant (udev's blkid
/// after a change, lvm2 scanning) is retried for up to 3 s; one still in use then fails.
pub fn flush(runner: &dyn Runner, map: &str) -> Result<()> {
    let mut left = 12;
    loop {
        match multipath(runner, &["-f", map], "multipath -f") {
            Ok(_) => return Ok(()),
            Err(e) if left > 0 && held_open(&error_chain(&e)) => {
                left -= 1;
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Removes the map of `wwid` (`multipath -f`), when multipathd has one; no map is not an
/// error, a map still open after [`flush`]'s retries is.
pub fn flush_map_of(md: &dyn Multipathd, runner: &dyn Runner, wwid: &str) -> Result<()> {
    match show_map(md, wwid)? {
        None => Ok(()),
        Some(m) => flush(runner, &m.name),
    }
}

/// Waits until multipathd has a map for `wwid` with at least `paths` paths and its device node
/// exists in `dev_dir` (`/dev`). When the map is still missing after a few seconds, allows the
/// WWID and asks for the map (`multipath -a`, `multipath -r`), as sm's refresh does.
pub fn wait_for_map(
    md: &dyn Multipathd,
    runner: &dyn Runner,
    dev_dir: &std::path::Path,
    wwid: &str,
    paths: usize,
    deadline: Duration,
) -> Result<Map> {
    let started = Instant::now();
    let mut nudged = false;
    loop {
        let map = show_map(md, wwid)?;
        let note = match &map {
            Some(m)
                if m.paths().count() >= paths && dev_dir.join("mapper").join(&m.name).exists() =>
            {
                return Ok(m.clone());
            }
            Some(m) => format!("map with {} of {paths} paths", m.paths().count()),
            None => "no map".to_string(),
        };
        if !nudged && map.is_none() && started.elapsed() >= Duration::from_secs(3) {
            nudged = true;
            allow_wwid(runner, wwid)?;
            reload(runner, wwid)?;
        }
        if started.elapsed() >= deadline {
            return Err(MultipathError::Timeout {
                what: format!("the multipath map of {wwid}"),
                after: deadline,
                last: note,
            });
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Canned(&'static str);
    impl Multipathd for Canned {
        fn command(&self, _: &str) -> Result<String> {
            Ok(self.0.to_string())
        }
    }

    #[test]
    fn action_replies() {
        assert!(fail_path(&Canned("ok\n"), "sdb").is_ok());
        let e = fail_path(&Canned("fail\n"), "sdzz").unwrap_err();
        assert!(matches!(e, MultipathError::MultipathdRefused { .. }), "{e}");
    }

    const BUSY: &str = "libdevmapper: ioctl/libdm-iface.c(1980): device-mapper: remove ioctl on \
                        3600  failed: Device or resource busy\nfailed to remove multipath map 3600\n";

    #[test]
    fn flush_retries_a_map_held_open_for_an_instant() {
        let r = sm_core::testing::FakeRunner::new();
        r.on(&["multipath", "-f"], 1, "", BUSY).on(
            &["multipath", "-f"],
            1,
            "",
            "3600: map in use\n",
        );
        flush(&r, "3600").unwrap();
        assert_eq!(r.calls().len(), 3, "two refusals, then the flush");
    }

    #[test]
    fn flush_gives_up_on_a_map_that_stays_open_and_fails_other_errors_at_once() {
        let r = sm_core::testing::FakeRunner::new();
        for _ in 0..13 {
            r.on(&["multipath", "-f"], 1, "", BUSY);
        }
        let e = flush(&r, "3600").unwrap_err();
        assert!(
            error_chain(&e).contains("resource busy"),
            "{}",
            error_chain(&e)
        );
        assert_eq!(r.calls().len(), 13, "the first try and 12 retries");

        let r = sm_core::testing::FakeRunner::new();
        r.on(&["multipath", "-f"], 1, "", "3600: no such map\n");
        assert!(flush(&r, "3600").is_err());
        assert_eq!(r.calls().len(), 1);
    }

    #[test]
    fn polling_interval_from_config() {
        let md = Canned(
            "defaults {\n\tverbosity 2\n\tpolling_interval 2\n\tmax_polling_interval 8\n}\n",
        );
        assert_eq!(polling_interval(&md).unwrap(), Some(2));
        assert_eq!(polling_interval(&Canned("defaults {\n}\n")).unwrap(), None);
    }
}
