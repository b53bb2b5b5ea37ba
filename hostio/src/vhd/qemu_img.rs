//! Typed qemu-img calls on VHD images. Every one runs through sm-core's runner (argv only,
//! deadline, stderr kept for the fault detail).

use std::path::Path;
use std::time::Duration;

use sm_core::host::{Cmd, RunError, Runner};

/// The tool.
pub const QEMU_IMG: &str = "qemu-img";

/// Options of every image we make: sparse VHD, exact size (no CHS rounding).
const VPC_OPTIONS: &str = "subformat=dynamic,force_size=on";

/// Deadline for creating an empty image.
const CREATE_TIMEOUT: Duration = Duration::from_secs(60);

/// Deadline for copying data: generous, copies are proportional to allocated data.
const COPY_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// Where a copy reads from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// A VHD file.
    Vhd(&'a Path),
    /// A running NBD export on a Unix socket (the image as its server sees it).
    Nbd {
        /// The server's socket.
        socket: &'a Path,
        /// The export name.
        export: &'a str,
    },
}

impl Source<'_> {
    fn args(&self) -> Vec<String> {
        match self {
            Source::Vhd(p) => vec!["-f".into(), "vpc".into(), p.display().to_string()],
            Source::Nbd { socket, export } => {
                vec![
                    "-f".into(),
                    "raw".into(),
                    format!("nbd+unix:///{export}?socket={}", socket.display()),
                ]
            }
        }
    }
}

/// Creates an empty dynamic VHD of exactly `size` bytes.
pub fn create(runner: &dyn Runner, path: &Path, size: u64) -> Result<(), RunError> {
    runner
        .run(
            &Cmd::new(QEMU_IMG)
                .dies_with_caller()
                .args(["create", "-q", "-f", "vpc", "-o", VPC_OPTIONS])
                .arg(path)
                .arg(size.to_string())
                .timeout(CREATE_TIMEOUT),
        )
        .map(|_| ())
}

/// Copies `src` into a new dynamic VHD at `dst` (unallocated and zero blocks stay sparse).
pub fn convert_to_new(runner: &dyn Runner, src: Source<'_>, dst: &Path) -> Result<(), RunError> {
    runner
        .run(
            &Cmd::new(QEMU_IMG)
                .dies_with_caller()
                .args(["convert", "-q"])
                .args(src.args())
                .args(["-O", "vpc", "-o", VPC_OPTIONS])
                .arg(dst)
                .timeout(COPY_TIMEOUT),
        )
        .map(|_| ())
}

/// Copies the data of VHD `src` into the existing, freshly created (all-zero) VHD `dst`, which
/// may be larger; zero blocks are skipped so `dst` stays sparse.
pub fn convert_into_existing(runner: &dyn Runner, src: &Path, dst: &Path) -> Result<(), RunError> {
    runner
        .run(
            &Cmd::new(QEMU_IMG)
                .dies_with_caller()
                .args(["convert", "-q", "-n", "--target-is-zero", "-f", "vpc"])
                .arg(src)
                .args(["-O", "vpc"])
                .arg(dst)
                .timeout(COPY_TIMEOUT),
        )
        .map(|_| ())
}

/// Whether two images hold the same data (`qemu-img compare`; a larger image matches when its
/// extra tail is zero). Exit 1 means "different"; anything else non-zero is an error.
pub fn same_content(runner: &dyn Runner, a: Source<'_>, b: Source<'_>) -> Result<bool, RunError> {
    let fmt = |s: &Source<'_>| match s {
        Source::Vhd(_) => "vpc",
        Source::Nbd { .. } => "raw",
    };
    let path = |s: &Source<'_>| s.args().pop().unwrap_or_default();
    let out = runner.run(
        &Cmd::new(QEMU_IMG)
            .dies_with_caller()
            .args(["compare", "-q", "-U", "-f", fmt(&a), "-F", fmt(&b)])
            .args([path(&a), path(&b)])
            .ok_codes(&[0, 1])
            .timeout(COPY_TIMEOUT),
    )?;
    Ok(out.code == 0)
}
