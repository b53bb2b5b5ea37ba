//! What a driver needs from the host: the command runner, locks, SMlog, host paths, and facts
//! about block devices.

pub mod block;
pub mod clock;
pub mod lock;
pub mod log;
pub mod paths;
pub mod run;
pub mod sysfs;

pub use lock::{LockDir, LockError, LockGuard};
pub use paths::Paths;
pub use run::{Cmd, Output, RunError, Runner, SystemRunner};
