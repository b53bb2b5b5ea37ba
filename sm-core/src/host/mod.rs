//! What a driver needs from the host: the command runner, locks, SMlog, host paths, and facts
//! about block devices.

pub mod block;
pub mod clock;
pub mod lock;
pub mod log;
// PR_SET_PDEATHSIG has to be set between fork and exec (`pre_exec`, which is `unsafe`). The
// workspace denies unsafe code; this one module is allowed, holds one documented unsafe block,
// and exposes a safe function.
#[allow(unsafe_code)]
mod parent_death;
pub mod paths;
pub mod run;
pub mod sysfs;

pub use lock::{LockDir, LockError, LockGuard};
pub use paths::Paths;
pub use run::{Cmd, Output, RunError, Runner, SystemRunner};
