//! What the host itself does to storage, for the drivers to compose: every external tool it
//! needs runs through sm-core's runner (argv only, deadline, stderr kept), every system call is a
//! typed function here, so drivers spawn nothing and call no libc themselves.
//!
//! | module | holds |
//! |---|---|
//! | [`vhd`] | disk images: a VHD file's footer (parsed by the vhd crate) and [`vhd::qemu_img`] (create, convert, compare) |
//! | [`nbd`] | exports: a qemu-nbd daemon per image on a Unix socket, found and stopped by its pid file |
//! | [`serve`] | one VDI image's datapath: a tapdisk where blktap is installed, else a qemu-nbd export; the `params_nbd` URI, sm's link layout |
//! | [`tapdisk`] | blktap's tapdisk through tap-ctl (create, list, find, pause/unpause, destroy) and its NBD socket: the datapath a real host plugs |
//! | [`blockcopy`] | byte-for-byte copies of devices or files, `O_DIRECT` where the length allows |
//! | [`direct`] | `O_DIRECT` opens and whether a filesystem allows them |
//! | [`fs`] | filesystems: mkfs.ext4, mount, umount, wipefs |
//! | [`space`] | free space: size and usage of the filesystem holding a directory (statvfs) |
//! | `testing` | loop devices, blkid and tapdisk-served images for root and lab tests (feature `test-utils`) |
//!
//! Errors are typed per module ([`vhd::VhdError`], [`nbd::NbdError`], [`blockcopy::CopyError`],
//! [`space::SpaceError`]; tool calls return sm-core's `RunError`, which names the argv, exit
//! code and stderr); the drivers map them to SMAPI codes.
#![forbid(unsafe_code)]

pub mod blockcopy;
pub mod direct;
pub mod fs;
pub mod nbd;
pub mod serve;
pub mod space;
pub mod tapdisk;
pub mod vhd;

#[cfg(any(test, feature = "test-utils"))]
pub mod testing;
