//! VHD images and chains as blktap's libvhd and tapdisk implement the Microsoft Virtual Hard
//! Disk format v1.0, and as sm's file-based SRs keep VDIs: `<uuid>.vhd` dynamic images,
//! differencing children made by `vhd-util snapshot` (parent uuid in the header, relative parent
//! locators), and the tapdisk `hidden` byte in the footer on base copies.
//!
//! Module map, one on-disk structure per module:
//! - [`footer`]: the 512-byte footer (cookie `conectix`, sizes, CHS geometry, disk type,
//!   checksum, uuid, saved, **hidden at byte 85**, libvhd's old-hidden-checksum tolerance).
//! - [`header`]: the 1024-byte dynamic header (cookie `cxsparse`, BAT offset and size, block size,
//!   parent uuid, timestamp, name, eight parent locators with their platform codes).
//! - [`locator`]: parent locator data (MACX `file://./p.vhd`, W2KU/W2RU `.\p.vhd`), relative paths.
//! - [`bat`]: the block allocation table. [`bitmap`]: per-block sector bitmaps.
//!   [`batmap`]: blktap's full-block map (`tdbatmap`).
//! - [`image`]: one image ([`Vhd`]): open and validate, create dynamic or differencing, write
//!   sectors (allocating blocks as tapdisk does), set the hidden flag.
//! - [`chain`]: a leaf and its ancestors ([`Chain`]): resolved through the locators, uuids
//!   checked, read as one disk (each sector from the first image whose bitmap has it), written
//!   at the leaf.
//! - [`io`]: the positioned I/O an image sits on ([`VhdIo`]: a [`std::fs::File`], a [`MemIo`]).
//! - [`error`]: the error type, [`VhdError`].
//!
//! ```
//! use vhd::{Chain, CreateOptions, MemIo, ParentRef, Vhd};
//! use std::path::Path;
//!
//! // A 4 MiB base with data, then a child that overwrites part of it.
//! let opts = CreateOptions::default();
//! let mut base = Vhd::create_dynamic(MemIo::default(), Path::new("base.vhd"), 4 << 20, &opts)?;
//! base.write_sectors(0, &[0xaa; 1024])?;
//! base.set_hidden(true)?;
//! let parent = ParentRef {
//!     uuid: base.uuid(),
//!     size: base.virtual_size(),
//!     timestamp: 0,
//!     name: "base.vhd".into(),
//!     location: "./base.vhd".into(),
//! };
//! let leaf = Vhd::create_differencing(MemIo::default(), Path::new("leaf.vhd"), &parent, &opts)?;
//! let mut chain = Chain::from_layers(vec![leaf, base])?;
//! chain.write_at(b"leaf", 510)?;
//!
//! let mut buf = [0u8; 8];
//! chain.read_at(&mut buf, 508)?;
//! assert_eq!(&buf, b"\xaa\xaaleaf\xaa\xaa");
//! assert_eq!(chain.virtual_size(), 4 << 20);
//! assert_eq!(chain.hidden(), vec![Path::new("base.vhd").to_path_buf()]);
//! assert_eq!(chain.leaf().parent_locations(), vec!["./base.vhd"; 3]);
//! # Ok::<(), vhd::VhdError>(())
//! ```
#![forbid(unsafe_code)]

mod be;

pub mod bat;
pub mod batmap;
pub mod bitmap;
pub mod chain;
pub mod error;
pub mod footer;
pub mod header;
pub mod image;
pub mod io;
pub mod locator;

pub use chain::Chain;
pub use error::{MAX_CHAIN_LEN, VhdError};
pub use footer::{DiskType, Footer, Geometry};
pub use header::{DynamicHeader, ParentLocator, PlatformCode};
pub use image::{CreateOptions, ParentRef, Vhd};
pub use io::{MemIo, VhdIo};

/// The sector size every VHD offset and bitmap counts in.
pub const SECTOR_SIZE: u64 = 512;
