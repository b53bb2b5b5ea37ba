//! sm-compatible locks: POSIX fcntl record locks on `/var/lock/sm/<namespace>/<name>`, so our
//! drivers and sm's own tools (GC, tapdisk-pause, ...) exclude each other on the same SR.
//!
//! The SR lock is `<sr_uuid>/sr`, the VDI lock `<vdi_uuid>/vdi` (sm's `Lock("sr", sr_uuid)` and
//! `Lock("vdi", vdi_uuid)`). Waiting is bounded: a lock not granted before the deadline is
//! fault 37 LockErr, never a hang. fcntl locks belong to the process, so a lock already held by
//! this process is re-entered (counted), as sm's `Lock` does.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, fcntl};

/// Why a lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The lock file could not be created or opened.
    #[error("cannot open lock {path}: {source}")]
    Open {
        /// Lock file.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another process held the lock past the deadline.
    #[error("lock {path} still held by another process after {}s", after.as_secs())]
    Timeout {
        /// Lock file.
        path: PathBuf,
        /// How long we waited.
        after: Duration,
    },
    /// fcntl failed for another reason.
    #[error("fcntl on {path} failed: {errno}")]
    Fcntl {
        /// Lock file.
        path: PathBuf,
        /// errno.
        errno: nix::errno::Errno,
    },
}

/// Held locks of this process: path -> (open file, re-entry count).
type Registry = Mutex<HashMap<PathBuf, (Arc<File>, usize)>>;

fn registry() -> &'static Registry {
    static REG: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    REG.get_or_init(|| Mutex::new(HashMap::new()))
}

fn whole_file(kind: libc::c_short) -> libc::flock {
    libc::flock {
        l_type: kind,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    }
}

/// The directory holding all sm lock namespaces (`/var/lock/sm` on a host).
#[derive(Debug, Clone)]
pub struct LockDir {
    root: PathBuf,
}

/// A held lock; dropping it releases the lock (when the last re-entrant holder drops).
#[derive(Debug)]
pub struct LockGuard {
    path: PathBuf,
}

impl LockDir {
    /// Locks live under `root` (e.g. `/var/lock/sm`).
    pub fn new(root: impl Into<PathBuf>) -> LockDir {
        LockDir { root: root.into() }
    }

    /// The lock file for `name` in namespace `ns`.
    pub fn path(&self, ns: &str, name: &str) -> PathBuf {
        self.root.join(ns).join(name)
    }

    /// Takes the exclusive lock `ns/name`, waiting at most `timeout`.
    pub fn acquire(&self, ns: &str, name: &str, timeout: Duration) -> Result<LockGuard, LockError> {
        acquire_path(&self.path(ns, name), timeout)
    }

    /// Tries the lock once; `Ok(None)` when another process holds it.
    pub fn try_acquire(&self, ns: &str, name: &str) -> Result<Option<LockGuard>, LockError> {
        match acquire_path(&self.path(ns, name), Duration::ZERO) {
            Ok(g) => Ok(Some(g)),
            Err(LockError::Timeout { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Takes the exclusive fcntl lock on `path`, polling until `timeout`.
pub fn acquire_path(path: &Path, timeout: Duration) -> Result<LockGuard, LockError> {
    let mut reg = registry().lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, n)) = reg.get_mut(path) {
        *n += 1;
        return Ok(LockGuard {
            path: path.to_path_buf(),
        });
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| LockError::Open {
            path: path.into(),
            source,
        })?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|source| LockError::Open {
            path: path.into(),
            source,
        })?;
    let start = Instant::now();
    let mut nap = Duration::from_millis(1);
    let fl = whole_file(libc::F_WRLCK as libc::c_short);
    loop {
        match fcntl(file.as_fd(), FcntlArg::F_SETLK(&fl)) {
            Ok(_) => break,
            Err(
                nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES | nix::errno::Errno::EINTR,
            ) => {
                if start.elapsed() >= timeout {
                    return Err(LockError::Timeout {
                        path: path.into(),
                        after: timeout,
                    });
                }
                drop(reg);
                std::thread::sleep(nap);
                nap = (nap * 2).min(Duration::from_millis(100));
                reg = registry().lock().unwrap_or_else(|p| p.into_inner());
            }
            Err(errno) => {
                return Err(LockError::Fcntl {
                    path: path.into(),
                    errno,
                });
            }
        }
    }
    tracing::debug!(path = %path.display(), "lock: acquired");
    reg.insert(path.to_path_buf(), (Arc::new(file), 1));
    Ok(LockGuard {
        path: path.to_path_buf(),
    })
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let mut reg = registry().lock().unwrap_or_else(|p| p.into_inner());
        let last = match reg.get_mut(&self.path) {
            Some((_, n)) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => true,
            None => false,
        };
        if last && let Some((file, _)) = reg.remove(&self.path) {
            let fl = whole_file(libc::F_UNLCK as libc::c_short);
            let _ = fcntl(file.as_fd(), FcntlArg::F_SETLK(&fl));
            tracing::debug!(path = %self.path.display(), "lock: released");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::run::{Cmd, Runner, SystemRunner};

    #[test]
    fn reentrant_and_released() {
        let d = tempfile::tempdir().unwrap();
        let locks = LockDir::new(d.path());
        let a = locks.acquire("sr-1", "sr", Duration::from_secs(1)).unwrap();
        let b = locks.acquire("sr-1", "sr", Duration::from_secs(1)).unwrap();
        drop(a);
        drop(b);
        assert!(locks.path("sr-1", "sr").exists());
    }

    /// A second process (python's fcntl, as sm uses) is excluded while we hold the lock and
    /// gets it once we release it.
    #[test]
    fn excludes_other_processes_like_sm() {
        let d = tempfile::tempdir().unwrap();
        let locks = LockDir::new(d.path());
        let path = locks.path("vdi-x", "vdi");
        let probe = |p: &Path| {
            let script = "import fcntl,struct,sys\nf=open(sys.argv[1],'a+')\ntry:\n  fcntl.fcntl(f,fcntl.F_SETLK,struct.pack('hhqqi',fcntl.F_WRLCK,0,0,0,0))\n  print('got')\nexcept OSError:\n  print('busy')\n";
            SystemRunner::new()
                .run(&Cmd::new("python3").args(["-c", script]).arg(p.as_os_str()))
                .map(|o| o.stdout_str().trim().to_string())
        };
        let Ok(first) = probe(&d.path().join("probe-check")) else {
            return;
        };
        assert_eq!(first, "got");
        let g = locks
            .acquire("vdi-x", "vdi", Duration::from_secs(1))
            .unwrap();
        assert_eq!(probe(&path).unwrap(), "busy");
        drop(g);
        assert_eq!(probe(&path).unwrap(), "got");
    }

    #[test]
    fn times_out_when_held_elsewhere() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("ns").join("name");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut child = {
            #[allow(clippy::disallowed_methods)]
            let mut c = std::process::Command::new("python3");
            c.args(["-c", "import fcntl,struct,sys,time\nf=open(sys.argv[1],'a+')\nfcntl.fcntl(f,fcntl.F_SETLKW,struct.pack('hhqqi',fcntl.F_WRLCK,0,0,0,0))\nprint('held',flush=True)\ntime.sleep(30)\n"])
                .arg(&path)
                .stdout(std::process::Stdio::piped());
            match c.spawn() {
                Ok(c) => c,
                Err(_) => return,
            }
        };
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "held");
        let r = acquire_path(&path, Duration::from_millis(150));
        let _ = child.kill();
        let _ = child.wait();
        assert!(matches!(r, Err(LockError::Timeout { .. })), "{r:?}");
    }
}
