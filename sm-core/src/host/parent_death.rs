//! Children that die with the plugin, for commands marked [`super::Cmd::dies_with_caller`]: a
//! plugin killed mid-call (xapi's task cancelled, an admin's `kill -9`, an OOM kill) must not
//! leave a `qemu-img convert` writing into a temporary image that the next call removes.

use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// Makes the child of `command` get SIGKILL when this process exits (`PR_SET_PDEATHSIG`), and
/// fail to start when this process is already gone by the time it runs. Not for commands that
/// leave a daemon behind (the setting is not inherited across fork, so a daemon a child forks
/// is unaffected, but the child itself must be allowed to outlive us).
pub fn die_with_parent(command: &mut Command) {
    let parent: Pid = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec and calls only prctl(2) and
    // getppid(2), both async-signal-safe; it allocates nothing and touches no lock.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Some(Signal::SIGKILL)).map_err(std::io::Error::from)?;
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}
