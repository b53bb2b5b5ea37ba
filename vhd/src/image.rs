//! One VHD image: opened (footer, header, BAT, batmap validated), created as vhd-util creates
//! it (dynamic, or a differencing child of a parent), written sector by sector (blocks allocated
//! as tapdisk allocates them), its hidden flag set.

use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::bat::Bat;
use crate::batmap::{BATMAP_HEADER_SIZE, Batmap};
use crate::be::pad_to_sector;
use crate::footer::{DiskType, FOOTER_SIZE, Footer};
use crate::header::{DEFAULT_BLOCK_SIZE, DynamicHeader, HEADER_SIZE, ParentLocator, PlatformCode};
use crate::io::VhdIo;
use crate::{SECTOR_SIZE, VhdError, bitmap, locator};

/// Where libvhd puts the BAT of an image it creates: after the footer copy and the header.
pub const CREATE_TABLE_OFFSET: u64 = (FOOTER_SIZE + HEADER_SIZE) as u64;
/// Sectors per page: tapdisk starts each block's data on a page boundary.
const SECTORS_PER_PAGE: u64 = 8;

/// How to make a new image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateOptions {
    /// Block size in bytes (a power of two, at least 512); 2 MiB as vhd-util and qemu use.
    pub block_size: u32,
}

impl Default for CreateOptions {
    fn default() -> CreateOptions {
        CreateOptions {
            block_size: DEFAULT_BLOCK_SIZE,
        }
    }
}

/// What a differencing child records about its parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentRef {
    /// The parent's footer uuid.
    pub uuid: Uuid,
    /// The parent's virtual size (the child's size).
    pub size: u64,
    /// The parent's modification time (VHD epoch).
    pub timestamp: u32,
    /// The parent's file name, for the header's parent name field.
    pub name: String,
    /// The parent's path relative to the child's directory (`./base.vhd`), for the locators.
    pub location: String,
}

impl ParentRef {
    /// What a child of `parent` records, the parent found at `location` (relative to the child's
    /// directory, e.g. `./base.vhd`) and last modified at `timestamp` (VHD epoch).
    pub fn of<I: VhdIo>(parent: &Vhd<I>, location: &str, timestamp: u32) -> ParentRef {
        ParentRef {
            uuid: parent.uuid(),
            size: parent.virtual_size(),
            timestamp,
            name: location
                .rsplit(['/', '\\'])
                .next()
                .unwrap_or(location)
                .to_string(),
            location: location.to_string(),
        }
    }
}

/// Where the sectors of part of a request live in one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Extent {
    /// In this image, the first sector at byte `offset` of the file.
    Data { sectors: Range<u64>, offset: u64 },
    /// Not in this image: the parent's (or zeros without one).
    Absent(Range<u64>),
    /// Past this image's virtual size: zeros, whatever the parents hold (libvhd).
    Zero(Range<u64>),
}

/// The sparse part of a dynamic or differencing image.
#[derive(Debug, Clone)]
struct Sparse {
    header: DynamicHeader,
    bat: Bat,
    batmap: Option<Batmap>,
    batmap_header_offset: u64,
    /// The sector where the next block (with its alignment gap) goes: tapdisk's `next_db`.
    next_free: u64,
}

/// An open VHD image over some positioned I/O.
#[derive(Debug)]
pub struct Vhd<I = File> {
    io: I,
    path: PathBuf,
    footer: Footer,
    footer_offset: u64,
    sparse: Option<Sparse>,
}

impl Vhd<File> {
    /// Opens the image at `path`, read-write when `writable`.
    pub fn open(path: &Path, writable: bool) -> Result<Vhd<File>, VhdError> {
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)
            .map_err(|source| io_err(path, 0, source))?;
        Vhd::from_io(file, path, writable)
    }

    /// Creates a new dynamic image of `size` bytes at `path` (which must not exist), rounded up
    /// to whole blocks as `vhd-util create` does. The file is removed if creation fails.
    pub fn create(path: &Path, size: u64, opts: &CreateOptions) -> Result<Vhd<File>, VhdError> {
        let file = new_file(path)?;
        Vhd::create_dynamic(file, path, size, opts).inspect_err(|_| remove_quietly(path))
    }

    /// Creates a differencing child of the image at `parent` at `child` (which must not exist),
    /// as `vhd-util snapshot -n child -p parent` does: the parent's uuid, modification time and
    /// name in the header, MACX/W2KU/W2RU locators with the parent's path relative to the child's
    /// directory, the parent's virtual size.
    pub fn snapshot(
        parent: &Path,
        child: &Path,
        opts: &CreateOptions,
    ) -> Result<Vhd<File>, VhdError> {
        let p = Vhd::open(parent, false)?;
        let canon_parent = std::fs::canonicalize(parent).map_err(|e| io_err(parent, 0, e))?;
        let mtime = std::fs::metadata(&canon_parent)
            .and_then(|m| m.modified())
            .map_err(|e| io_err(parent, 0, e))?;
        let child_dir = absolute_dir(child)?;
        let name = canon_parent
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let pref = ParentRef {
            uuid: p.uuid(),
            size: p.virtual_size(),
            timestamp: crate::footer::vhd_time(mtime),
            name,
            location: locator::relative_path(&child_dir, &canon_parent),
        };
        let file = new_file(child)?;
        Vhd::create_differencing(file, child, &pref, opts).inspect_err(|_| remove_quietly(child))
    }
}

impl<I: VhdIo> Vhd<I> {
    /// Opens the image held by `io`; `path` names it in errors and is where relative parent
    /// locators start. A `writable` image needs a valid batmap where libvhd expects one (as
    /// tapdisk does); a read-only one falls back to the bitmaps.
    pub fn from_io(io: I, path: &Path, writable: bool) -> Result<Vhd<I>, VhdError> {
        Self::load(io, path, writable).map_err(|e| e.in_image(path))
    }

    fn load(io: I, path: &Path, writable: bool) -> Result<Vhd<I>, VhdError> {
        let len = io.len().map_err(|e| io_err(path, 0, e))?;
        let (footer, footer_offset) = read_footer(&io, path, len)?;
        let mut vhd = Vhd {
            io,
            path: path.to_path_buf(),
            footer,
            footer_offset,
            sparse: None,
        };
        if vhd.footer.disk_type.is_sparse() {
            vhd.sparse = Some(vhd.load_sparse(writable)?);
        } else if vhd.footer.current_size > footer_offset {
            return Err(VhdError::Short {
                what: "fixed image data",
                need: vhd.footer.current_size + FOOTER_SIZE as u64,
                got: len,
            });
        }
        Ok(vhd)
    }

    fn load_sparse(&self, writable: bool) -> Result<Sparse, VhdError> {
        let f = &self.footer;
        let header_end = f.data_offset.checked_add(HEADER_SIZE as u64);
        if f.data_offset < FOOTER_SIZE as u64 || header_end.is_none_or(|e| e > self.footer_offset) {
            return Err(VhdError::Corrupt {
                what: "footer data offset",
                reason: format!("{:#x} does not leave room for the header", f.data_offset),
            });
        }
        let header = DynamicHeader::parse(&self.read_vec(f.data_offset, HEADER_SIZE as u64)?)?;
        let blocks_needed = f.current_size.div_ceil(u64::from(header.block_size));
        if u64::from(header.max_table_entries) < blocks_needed {
            return Err(VhdError::Corrupt {
                what: "dynamic header",
                reason: format!(
                    "{} BAT entries for {} blocks of virtual size",
                    header.max_table_entries, blocks_needed
                ),
            });
        }
        let bat_len = u64::from(header.max_table_entries) * 4;
        if header.table_offset % SECTOR_SIZE != 0
            || header.table_offset < FOOTER_SIZE as u64
            || header.table_offset + bat_len > self.footer_offset
        {
            return Err(VhdError::Corrupt {
                what: "dynamic header table offset",
                reason: format!(
                    "BAT at {:#x} of {bat_len} bytes is outside the image",
                    header.table_offset
                ),
            });
        }
        let bat = Bat::parse(
            &self.read_vec(header.table_offset, bat_len)?,
            header.max_table_entries,
        )?;
        let batmap_header_offset =
            header.table_offset + Bat::size_on_disk(header.max_table_entries);
        let batmap = match self.load_batmap(batmap_header_offset) {
            Ok(b) => b,
            Err(e) if writable => return Err(e),
            Err(_) => None,
        };

        // End of metadata (libvhd vhd_end_of_headers), then past every block.
        let mut eom = (f.data_offset + HEADER_SIZE as u64)
            .max(header.table_offset + Bat::size_on_disk(header.max_table_entries));
        if let Some(m) = &batmap {
            eom = eom
                .max(batmap_header_offset + BATMAP_HEADER_SIZE as u64)
                .max(m.map_offset + m.map_len());
        }
        for l in header
            .locators
            .iter()
            .filter(|l| l.code != PlatformCode::None)
        {
            eom = eom.max(l.data_offset + l.space_bytes());
        }
        let first_block = eom.div_ceil(SECTOR_SIZE);
        let block_secs = header.bitmap_sectors() + header.sectors_per_block();
        let mut next_free = first_block;
        for (block, sector) in bat.allocated() {
            let s = u64::from(sector);
            let reason = if s < first_block {
                Some("block overlaps the image's metadata")
            } else if (s + block_secs) * SECTOR_SIZE > self.footer_offset {
                Some("block ends past the footer")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(VhdError::BadBat {
                    block,
                    sector,
                    reason,
                });
            }
            next_free = next_free.max(s + block_secs);
        }
        Ok(Sparse {
            header,
            bat,
            batmap,
            batmap_header_offset,
            next_free,
        })
    }

    /// The batmap libvhd expects (creator `tap` 1.2 or later; 1.1 when its cookie is there).
    fn load_batmap(&self, header_offset: u64) -> Result<Option<Batmap>, VhdError> {
        let f = &self.footer;
        if !f.created_by_tap() || f.creator_version <= 0x0000_0001 {
            return Ok(None);
        }
        let raw = self.read_vec(header_offset, BATMAP_HEADER_SIZE as u64)?;
        let mut m = match Batmap::parse_header(&raw) {
            Ok(m) => m,
            Err(VhdError::BadCookie { .. }) if f.creator_version < 0x0001_0002 => return Ok(None),
            Err(e) => return Err(e),
        };
        if m.map_offset % SECTOR_SIZE != 0 || m.map_offset + m.map_len() > self.footer_offset {
            return Err(VhdError::Corrupt {
                what: "batmap",
                reason: format!(
                    "map at {:#x} of {} bytes is outside the image",
                    m.map_offset,
                    m.map_len()
                ),
            });
        }
        let map = self.read_vec(m.map_offset, m.map_len())?;
        m.set_map(map, f.current_size)?;
        Ok(Some(m))
    }

    /// Creates a dynamic image of `size` bytes (rounded up to whole blocks, as vhd-util does) in
    /// the empty `io`, laid out as libvhd lays it out (footer copy, header, BAT, batmap, footer).
    pub fn create_dynamic(
        io: I,
        path: &Path,
        size: u64,
        opts: &CreateOptions,
    ) -> Result<Vhd<I>, VhdError> {
        let bs = check_block_size(opts.block_size)?;
        let size = size.div_ceil(bs).max(1) * bs;
        Self::create_sparse(
            io,
            path,
            Footer::new(DiskType::Dynamic, size),
            opts.block_size,
            None,
        )
    }

    /// Creates a differencing child of `parent` in the empty `io`, as `vhd-util snapshot` does.
    pub fn create_differencing(
        io: I,
        path: &Path,
        parent: &ParentRef,
        opts: &CreateOptions,
    ) -> Result<Vhd<I>, VhdError> {
        check_block_size(opts.block_size)?;
        if parent.uuid.is_nil() {
            return Err(VhdError::NotPossible {
                op: "snapshot",
                what: "a parent with a nil uuid (a raw parent)".into(),
            });
        }
        Self::create_sparse(
            io,
            path,
            Footer::new(DiskType::Differencing, parent.size),
            opts.block_size,
            Some(parent),
        )
    }

    fn create_sparse(
        mut io: I,
        path: &Path,
        footer: Footer,
        block_size: u32,
        parent: Option<&ParentRef>,
    ) -> Result<Vhd<I>, VhdError> {
        let entries =
            u32::try_from(footer.current_size.div_ceil(u64::from(block_size))).map_err(|_| {
                VhdError::NotPossible {
                    op: "create",
                    what: format!("{} bytes in blocks of {block_size}", footer.current_size),
                }
            })?;
        let mut header = DynamicHeader::new(CREATE_TABLE_OFFSET, entries, block_size);
        let bat = Bat::new(entries);
        let batmap_header_offset = CREATE_TABLE_OFFSET + Bat::size_on_disk(entries);
        let batmap = Batmap::new(entries, batmap_header_offset + BATMAP_HEADER_SIZE as u64);
        let mut eom = batmap.map_offset + batmap.map_len();
        let mut locator_data = Vec::new();
        if let Some(p) = parent {
            header.parent_uuid = p.uuid;
            header.parent_timestamp = p.timestamp;
            header.set_parent_name(&p.name)?;
            for (slot, code) in locator::SNAPSHOT_LOCATORS.into_iter().enumerate() {
                let data = locator::encode(code, &p.location)?;
                let space = pad_to_sector(data.len() as u64);
                let too_long = || VhdError::NotPossible {
                    op: "snapshot",
                    what: format!("a parent location of {} bytes", data.len()),
                };
                header.locators[slot] = ParentLocator {
                    code,
                    // libvhd writes bytes here, not sectors ("to be compatible with MSFT").
                    data_space: u32::try_from(space).map_err(|_| too_long())?,
                    data_len: u32::try_from(data.len()).map_err(|_| too_long())?,
                    data_offset: eom,
                };
                locator_data.push((eom, data));
                eom += space;
            }
        }
        let write =
            |io: &mut I, off: u64, b: &[u8]| io.write_at(b, off).map_err(|e| io_err(path, off, e));
        let fb = footer.to_bytes();
        write(&mut io, 0, &fb)?;
        write(&mut io, footer.data_offset, &header.to_bytes())?;
        write(&mut io, CREATE_TABLE_OFFSET, &bat.to_bytes())?;
        write(
            &mut io,
            batmap_header_offset,
            &batmap.header_bytes(footer.current_size),
        )?;
        write(&mut io, batmap.map_offset, &batmap.map)?;
        for (off, data) in &locator_data {
            let mut padded = data.clone();
            padded.resize(
                usize::try_from(pad_to_sector(data.len() as u64)).unwrap_or(0),
                0,
            );
            write(&mut io, *off, &padded)?;
        }
        write(&mut io, eom, &fb)?;
        io.sync().map_err(|e| io_err(path, 0, e))?;
        Ok(Vhd {
            io,
            path: path.to_path_buf(),
            footer,
            footer_offset: eom,
            sparse: Some(Sparse {
                header,
                bat,
                batmap: Some(batmap),
                batmap_header_offset,
                next_free: eom / SECTOR_SIZE,
            }),
        })
    }

    /// The image's path (as given when opened).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The footer.
    pub fn footer(&self) -> &Footer {
        &self.footer
    }

    /// The dynamic header (`None` for a fixed image).
    pub fn header(&self) -> Option<&DynamicHeader> {
        self.sparse.as_ref().map(|s| &s.header)
    }

    /// The BAT (`None` for a fixed image).
    pub fn bat(&self) -> Option<&Bat> {
        self.sparse.as_ref().map(|s| &s.bat)
    }

    /// The batmap, if the image has a valid one.
    pub fn batmap(&self) -> Option<&Batmap> {
        self.sparse.as_ref().and_then(|s| s.batmap.as_ref())
    }

    /// The image's uuid.
    pub fn uuid(&self) -> Uuid {
        self.footer.uuid
    }

    /// The disk type.
    pub fn disk_type(&self) -> DiskType {
        self.footer.disk_type
    }

    /// The parent's uuid, for a differencing image.
    pub fn parent_uuid(&self) -> Option<Uuid> {
        match (self.footer.disk_type, &self.sparse) {
            (DiskType::Differencing, Some(s)) => Some(s.header.parent_uuid),
            _ => None,
        }
    }

    /// Whether tapdisk's hidden flag is set (sm: a base copy, not a VDI of its own).
    pub fn is_hidden(&self) -> bool {
        self.footer.is_hidden()
    }

    /// The virtual size in bytes.
    pub fn virtual_size(&self) -> u64 {
        self.footer.current_size
    }

    /// The physical size as libvhd reports it (`vhd-util query -s`): end of the metadata and
    /// blocks, plus the footer.
    pub fn physical_size(&self) -> u64 {
        match &self.sparse {
            Some(s) => s.next_free * SECTOR_SIZE + FOOTER_SIZE as u64,
            None => self.footer_offset + FOOTER_SIZE as u64,
        }
    }

    /// Number of allocated blocks.
    pub fn allocated_blocks(&self) -> u32 {
        self.sparse.as_ref().map_or(0, |s| {
            u32::try_from(s.bat.allocated().count()).unwrap_or(u32::MAX)
        })
    }

    /// The paths the parent locators decode to, in header order (undecodable ones skipped).
    pub fn parent_locations(&self) -> Vec<String> {
        let Some(s) = &self.sparse else {
            return Vec::new();
        };
        if self.footer.disk_type != DiskType::Differencing {
            return Vec::new();
        }
        s.header
            .locators
            .iter()
            .filter(|l| {
                matches!(
                    l.code,
                    PlatformCode::Macx | PlatformCode::W2ku | PlatformCode::W2ru
                )
            })
            .filter(|l| l.data_offset + u64::from(l.data_len) <= self.footer_offset)
            .filter_map(|l| {
                let data = self.read_vec(l.data_offset, u64::from(l.data_len)).ok()?;
                locator::decode(l.code, &data).ok()
            })
            .collect()
    }

    /// Sets or clears tapdisk's hidden flag (`vhd-util set -f hidden -v 1|0`): both footer copies.
    pub fn set_hidden(&mut self, hidden: bool) -> Result<(), VhdError> {
        self.footer.hidden = u8::from(hidden);
        self.write_footers()?;
        self.sync()
    }

    /// Makes writes durable.
    pub fn sync(&mut self) -> Result<(), VhdError> {
        self.io.sync().map_err(|e| io_err(&self.path, 0, e))
    }

    /// The I/O back (to reopen an image built in memory, for instance).
    pub fn into_io(self) -> I {
        self.io
    }

    fn write_footers(&mut self) -> Result<(), VhdError> {
        let b = self.footer.to_bytes();
        if self.sparse.is_some() {
            self.write_raw(0, &b)?;
        }
        let off = self.footer_offset;
        self.write_raw(off, &b)
    }

    fn read_vec(&self, offset: u64, len: u64) -> Result<Vec<u8>, VhdError> {
        let mut buf = vec![
            0u8;
            usize::try_from(len).map_err(|_| VhdError::NotPossible {
                op: "read",
                what: format!("{len} bytes at once"),
            })?
        ];
        self.read_raw(offset, &mut buf)?;
        Ok(buf)
    }

    pub(crate) fn read_raw(&self, offset: u64, buf: &mut [u8]) -> Result<(), VhdError> {
        self.io
            .read_at(buf, offset)
            .map_err(|e| io_err(&self.path, offset, e))
    }

    fn write_raw(&mut self, offset: u64, buf: &[u8]) -> Result<(), VhdError> {
        self.io
            .write_at(buf, offset)
            .map_err(|e| io_err(&self.path, offset, e))
    }

    /// Appends to `out` where the sectors `range` (inside the virtual disk) live in this image.
    pub(crate) fn map(&self, range: Range<u64>, out: &mut Vec<Extent>) -> Result<(), VhdError> {
        let size_secs = self.footer.current_size / SECTOR_SIZE;
        let inside = range.start.min(size_secs)..range.end.min(size_secs);
        if inside.end < range.end {
            out.push(Extent::Zero(inside.end.max(range.start)..range.end));
        }
        let Some(s) = &self.sparse else {
            if !inside.is_empty() {
                out.push(Extent::Data {
                    offset: inside.start * SECTOR_SIZE,
                    sectors: inside,
                });
            }
            return Ok(());
        };
        let spb = s.header.sectors_per_block();
        let bm_secs = s.header.bitmap_sectors();
        let mut sec = inside.start;
        while sec < inside.end {
            let block = sec / spb;
            let end = inside.end.min((block + 1) * spb);
            let block32 = u32::try_from(block).unwrap_or(u32::MAX);
            match s.bat.sector(block32) {
                None => out.push(Extent::Absent(sec..end)),
                Some(entry) => {
                    let data = (u64::from(entry) + bm_secs) * SECTOR_SIZE;
                    let at = |r: Range<u64>| data + (r.start - block * spb) * SECTOR_SIZE;
                    if s.batmap.as_ref().is_some_and(|m| m.is_full(block32)) {
                        out.push(Extent::Data {
                            offset: at(sec..end),
                            sectors: sec..end,
                        });
                    } else {
                        let map =
                            self.read_vec(u64::from(entry) * SECTOR_SIZE, bm_secs * SECTOR_SIZE)?;
                        let base = block * spb;
                        for (run, set) in bitmap::runs(&map, sec - base..end - base) {
                            let abs = run.start + base..run.end + base;
                            if set {
                                out.push(Extent::Data {
                                    offset: at(abs.clone()),
                                    sectors: abs,
                                });
                            } else {
                                out.push(Extent::Absent(abs));
                            }
                        }
                    }
                }
            }
            sec = end;
        }
        Ok(())
    }

    /// Whether `sector` has its data in this image (bitmap bit set; always for a fixed image).
    pub fn has_sector(&self, sector: u64) -> Result<bool, VhdError> {
        let mut e = Vec::new();
        self.map(sector..sector + 1, &mut e)?;
        Ok(matches!(e.first(), Some(Extent::Data { .. })))
    }

    /// Writes whole sectors from `first`: `data.len()` a multiple of 512, inside the virtual
    /// disk. New blocks are allocated as tapdisk allocates them (at the end of the data, data
    /// page-aligned, zero-filled, the footer moved behind them), then bitmap bits set, then the
    /// BAT entry and the batmap bit of a block that became full.
    pub fn write_sectors(&mut self, first: u64, data: &[u8]) -> Result<(), VhdError> {
        let n = data.len() as u64;
        if !n.is_multiple_of(SECTOR_SIZE)
            || (first + n / SECTOR_SIZE) * SECTOR_SIZE > self.footer.current_size
        {
            return Err(VhdError::OutOfRange {
                offset: first * SECTOR_SIZE,
                len: n,
                size: self.footer.current_size,
            });
        }
        let Some(s) = &self.sparse else {
            return self.write_raw(first * SECTOR_SIZE, data);
        };
        let spb = s.header.sectors_per_block();
        let end = first + n / SECTOR_SIZE;
        let mut sec = first;
        while sec < end {
            let block = sec / spb;
            let chunk_end = end.min((block + 1) * spb);
            let lo = usize::try_from((sec - first) * SECTOR_SIZE).unwrap_or(usize::MAX);
            let hi = usize::try_from((chunk_end - first) * SECTOR_SIZE).unwrap_or(usize::MAX);
            let in_block = sec - block * spb..chunk_end - block * spb;
            self.write_in_block(
                u32::try_from(block).unwrap_or(u32::MAX),
                in_block,
                &data[lo..hi],
            )?;
            sec = chunk_end;
        }
        Ok(())
    }

    fn write_in_block(
        &mut self,
        block: u32,
        secs: Range<u64>,
        data: &[u8],
    ) -> Result<(), VhdError> {
        let Some(s) = &self.sparse else {
            return Ok(());
        };
        let spb = s.header.sectors_per_block();
        let bm_secs = s.header.bitmap_sectors();
        let bm_len = bm_secs * SECTOR_SIZE;
        let (entry, mut map) = match s.bat.sector(block) {
            Some(entry) => {
                let entry = u64::from(entry);
                let data_off = (entry + bm_secs + secs.start) * SECTOR_SIZE;
                self.write_raw(data_off, data)?;
                let map = self.read_vec(entry * SECTOR_SIZE, bm_len)?;
                (entry, map)
            }
            None => self.allocate(block, secs.clone(), data)?,
        };
        let before = map.clone();
        bitmap::set_range(&mut map, secs);
        if map != before {
            self.write_raw(entry * SECTOR_SIZE, &map)?;
        }
        if bitmap::is_full(&map, spb) {
            self.mark_full(block)?;
        }
        Ok(())
    }

    /// Allocates `block` with `data` at sectors `secs` of it; returns its entry and its (still
    /// clear) bitmap.
    fn allocate(
        &mut self,
        block: u32,
        secs: Range<u64>,
        data: &[u8],
    ) -> Result<(u64, Vec<u8>), VhdError> {
        let Some(s) = &self.sparse else {
            return Err(VhdError::NotPossible {
                op: "allocate a block",
                what: "a fixed image".into(),
            });
        };
        let spb = s.header.sectors_per_block();
        let bm_secs = s.header.bitmap_sectors();
        let start = s.next_free;
        let gap = (SECTORS_PER_PAGE - (start + bm_secs) % SECTORS_PER_PAGE) % SECTORS_PER_PAGE;
        let entry = start + gap;
        let entry32 = u32::try_from(entry).map_err(|_| VhdError::NotPossible {
            op: "allocate a block",
            what: format!(
                "an image past sector {:#x} (the BAT holds 32-bit sectors)",
                u32::MAX
            ),
        })?;
        let block_end = entry + bm_secs + spb;
        let mut seg = vec![0u8; usize::try_from((block_end - start) * SECTOR_SIZE).unwrap_or(0)];
        let at = usize::try_from((gap + bm_secs + secs.start) * SECTOR_SIZE).unwrap_or(0);
        seg[at..at + data.len()].copy_from_slice(data);
        self.write_raw(start * SECTOR_SIZE, &seg)?;
        let end_bytes = block_end * SECTOR_SIZE;
        if end_bytes > self.footer_offset {
            self.footer_offset = end_bytes;
            let fb = self.footer.to_bytes();
            self.write_raw(end_bytes, &fb)?;
        }
        let (table_offset, bat_sector) = {
            let Some(s) = self.sparse.as_mut() else {
                return Err(VhdError::NotPossible {
                    op: "allocate a block",
                    what: "a fixed image".into(),
                });
            };
            s.next_free = block_end;
            s.bat.set(block, entry32);
            let idx = (u64::from(block) * 4 / SECTOR_SIZE) as usize;
            let bytes = s.bat.to_bytes();
            let sector = bytes[idx * 512..idx * 512 + 512].to_vec();
            (s.header.table_offset + idx as u64 * SECTOR_SIZE, sector)
        };
        self.write_raw(table_offset, &bat_sector)?;
        Ok((
            entry,
            vec![0u8; usize::try_from(bm_secs * SECTOR_SIZE).unwrap_or(0)],
        ))
    }

    fn mark_full(&mut self, block: u32) -> Result<(), VhdError> {
        let size = self.footer.current_size;
        let Some(s) = self.sparse.as_mut() else {
            return Ok(());
        };
        let header_offset = s.batmap_header_offset;
        let Some(m) = s.batmap.as_mut() else {
            return Ok(());
        };
        if m.is_full(block) {
            return Ok(());
        }
        m.set_full(block);
        let (map_offset, map, header) = (m.map_offset, m.map.clone(), m.header_bytes(size));
        self.write_raw(map_offset, &map)?;
        self.write_raw(header_offset, &header)
    }
}

/// Reads the trailing footer (or a 511-byte short one, or the copy at offset 0 as libvhd falls
/// back to); returns it and the offset of the trailing footer.
fn read_footer<I: VhdIo>(io: &I, path: &Path, len: u64) -> Result<(Footer, u64), VhdError> {
    if len < FOOTER_SIZE as u64 {
        return Err(VhdError::Short {
            what: "image",
            need: FOOTER_SIZE as u64,
            got: len,
        });
    }
    let mut buf = [0u8; FOOTER_SIZE];
    let at = len - FOOTER_SIZE as u64;
    io.read_at(&mut buf, at).map_err(|e| io_err(path, at, e))?;
    let trailing = Footer::parse(&buf);
    if let Ok(f) = trailing {
        return Ok((f, at));
    }
    if len % SECTOR_SIZE == FOOTER_SIZE as u64 - 1 {
        let at = len - (FOOTER_SIZE as u64 - 1);
        let mut short = [0u8; FOOTER_SIZE];
        io.read_at(&mut short[..FOOTER_SIZE - 1], at)
            .map_err(|e| io_err(path, at, e))?;
        if let Ok(f) = Footer::parse(&short) {
            return Ok((f, at));
        }
    }
    io.read_at(&mut buf, 0).map_err(|e| io_err(path, 0, e))?;
    match Footer::parse(&buf) {
        Ok(f) if f.disk_type.is_sparse() => Ok((f, at)),
        _ => trailing.map(|f| (f, at)),
    }
}

fn check_block_size(bs: u32) -> Result<u64, VhdError> {
    if bs.is_power_of_two() && (512..=crate::header::MAX_BLOCK_SIZE).contains(&bs) {
        Ok(u64::from(bs))
    } else {
        Err(VhdError::Unsupported {
            what: "block size",
            value: bs.to_string(),
        })
    }
}

pub(crate) fn io_err(path: &Path, offset: u64, source: std::io::Error) -> VhdError {
    VhdError::Io {
        path: path.to_path_buf(),
        offset,
        source,
    }
}

fn new_file(path: &Path) -> Result<File, VhdError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| io_err(path, 0, e))
}

fn remove_quietly(path: &Path) {
    // Best effort: the creation error is what the caller needs to see.
    let _ = std::fs::remove_file(path);
}

/// The canonical directory `path` is (or will be) in.
pub(crate) fn absolute_dir(path: &Path) -> Result<PathBuf, VhdError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::canonicalize(dir).map_err(|e| io_err(dir, 0, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemIo;
    use crate::be::{put_u32, u32_at};

    const MIB: u64 = 1 << 20;

    fn small() -> CreateOptions {
        CreateOptions { block_size: 4096 }
    }

    fn reopen(v: Vhd<MemIo>, writable: bool) -> Result<Vhd<MemIo>, VhdError> {
        let p = v.path().to_path_buf();
        Vhd::from_io(v.into_io(), &p, writable)
    }

    #[test]
    fn creates_the_vhd_util_layout() {
        let v = Vhd::create_dynamic(
            MemIo::default(),
            Path::new("a.vhd"),
            100 * MIB,
            &CreateOptions::default(),
        )
        .unwrap();
        let b = v.into_io().0;
        // footer copy, header at 512, BAT of 50 entries at 1536 (one sector), batmap header at
        // 2048, map at 2560, trailing footer at 3072: the 3584 bytes `vhd-util create -s 100` makes.
        assert_eq!(b.len(), 3584);
        assert_eq!(&b[..512], &b[3072..]);
        assert_eq!(&b[512..520], b"cxsparse");
        assert!(b[1536..2048].iter().all(|&x| x == 0xff));
        assert_eq!(&b[2048..2056], b"tdbatmap");
        let f = Footer::parse(&b[3072..]).unwrap();
        assert_eq!(
            (f.current_size, f.data_offset, f.disk_type),
            (100 * MIB, 512, DiskType::Dynamic)
        );
        assert_eq!(f.creator_app, *b"tap\0");
        let v = Vhd::from_io(MemIo(b), Path::new("a.vhd"), true).unwrap();
        assert_eq!(v.physical_size(), 3584);
        assert_eq!(v.header().unwrap().max_table_entries, 50);
        assert!(v.batmap().is_some());
        assert_eq!(v.parent_uuid(), None);
    }

    #[test]
    fn sizes_round_up_to_whole_blocks() {
        let v = Vhd::create_dynamic(
            MemIo::default(),
            Path::new("a"),
            MIB + 1,
            &CreateOptions::default(),
        )
        .unwrap();
        assert_eq!(v.virtual_size(), 2 * MIB);
        assert!(matches!(
            Vhd::create_dynamic(
                MemIo::default(),
                Path::new("a"),
                MIB,
                &CreateOptions { block_size: 1000 }
            ),
            Err(VhdError::Unsupported {
                what: "block size",
                ..
            })
        ));
    }

    #[test]
    fn writes_allocate_aligned_blocks_and_move_the_footer() {
        let mut v = Vhd::create_dynamic(
            MemIo::default(),
            Path::new("a"),
            4 * MIB,
            &CreateOptions::default(),
        )
        .unwrap();
        let before = v.physical_size();
        v.write_sectors(4097, &[7u8; 1024]).unwrap(); // block 1, sectors 1..3
        let entry = u64::from(v.bat().unwrap().sector(1).unwrap());
        assert_eq!(v.bat().unwrap().sector(0), None);
        assert_eq!((entry + 1) % 8, 0, "data starts on a page");
        assert!(entry * 512 >= before - 512);
        let footer_at = (entry + 1 + 4096) * 512;
        assert_eq!(v.physical_size(), footer_at + 512);
        let b = v.into_io().0;
        assert_eq!(b.len() as u64, footer_at + 512);
        assert_eq!(&b[..512], &b[b.len() - 512..]);
        let bm = &b[(entry * 512) as usize..(entry * 512 + 512) as usize];
        assert_eq!(&bm[..2], &[0b0110_0000, 0]);
        let data = ((entry + 1) * 512) as usize;
        assert!(b[data..data + 512].iter().all(|&x| x == 0));
        assert!(b[data + 512..data + 1536].iter().all(|&x| x == 7));
        assert!(
            b[data + 1536..data + 2 * MIB as usize]
                .iter()
                .all(|&x| x == 0)
        );
        let v = Vhd::from_io(MemIo(b), Path::new("a"), true).unwrap();
        assert!(v.has_sector(4097).unwrap() && v.has_sector(4098).unwrap());
        assert!(!v.has_sector(4096).unwrap() && !v.has_sector(0).unwrap());
        assert_eq!(v.allocated_blocks(), 1);
    }

    #[test]
    fn a_full_block_sets_its_batmap_bit_with_a_valid_checksum() {
        let mut v = Vhd::create_dynamic(MemIo::default(), Path::new("a"), MIB, &small()).unwrap();
        v.write_sectors(8, &[1u8; 2048]).unwrap();
        assert!(!v.batmap().unwrap().is_full(1));
        v.write_sectors(12, &[2u8; 2048]).unwrap();
        assert!(v.batmap().unwrap().is_full(1));
        let v = reopen(v, true).unwrap();
        assert!(v.batmap().unwrap().is_full(1) && !v.batmap().unwrap().is_full(0));
    }

    #[test]
    fn set_hidden_writes_byte_85_of_both_footers() {
        let mut v = Vhd::create_dynamic(MemIo::default(), Path::new("a"), MIB, &small()).unwrap();
        v.set_hidden(true).unwrap();
        let v = reopen(v, false).unwrap();
        assert!(v.is_hidden());
        let b = v.into_io().0;
        assert_eq!((b[85], b[b.len() - 512 + 85]), (1, 1));
        let mut v = Vhd::from_io(MemIo(b), Path::new("a"), true).unwrap();
        v.set_hidden(false).unwrap();
        assert!(!reopen(v, false).unwrap().is_hidden());
    }

    #[test]
    fn writes_outside_the_disk_or_unaligned_are_refused() {
        let mut v = Vhd::create_dynamic(MemIo::default(), Path::new("a"), MIB, &small()).unwrap();
        assert!(matches!(
            v.write_sectors(2047, &[0; 1024]),
            Err(VhdError::OutOfRange { .. })
        ));
        assert!(matches!(
            v.write_sectors(0, &[0; 100]),
            Err(VhdError::OutOfRange { .. })
        ));
    }

    #[test]
    fn open_error_paths() {
        let good = Vhd::create_dynamic(MemIo::default(), Path::new("a"), MIB, &small())
            .unwrap()
            .into_io()
            .0;
        let open = |b: Vec<u8>, w: bool| Vhd::from_io(MemIo(b), Path::new("a"), w);
        assert!(matches!(
            open(vec![0; 100], false).unwrap_err().kind(),
            VhdError::Short { what: "image", .. }
        ));
        let mut b = good.clone();
        b[0] = 0;
        let n = b.len();
        b[n - 512] = 0;
        assert!(matches!(
            open(b, false).unwrap_err().kind(),
            VhdError::BadCookie { what: "footer", .. }
        ));
        // A bad trailing footer falls back to the copy at 0, as libvhd does.
        let mut b = good.clone();
        b[n - 500] ^= 1;
        assert!(open(b, false).is_ok());
        let mut b = good.clone();
        b[512 + 100] ^= 1;
        let e = open(b, false).unwrap_err();
        assert!(matches!(
            e.kind(),
            VhdError::BadChecksum {
                what: "dynamic header",
                ..
            }
        ));
        assert!(e.to_string().contains('a'), "{e}");
        // A BAT entry pointing past the footer.
        let mut v = Vhd::from_io(MemIo(good.clone()), Path::new("a"), true).unwrap();
        v.write_sectors(0, &[1; 512]).unwrap();
        let mut b = v.into_io().0;
        let entry = u32_at(&b, 1536);
        put_u32(&mut b, 1536, entry + 1000);
        assert!(matches!(
            open(b.clone(), false).unwrap_err().kind(),
            VhdError::BadBat { block: 0, .. }
        ));
        put_u32(&mut b, 1536, 2);
        assert!(
            matches!(open(b, false).unwrap_err().kind(), VhdError::BadBat { reason, .. } if reason.contains("metadata"))
        );
        // A bad batmap: writable opens refuse it (tapdisk does), read-only ones use the bitmaps.
        let mut b = good.clone();
        let map_at = 1536 + 1024 + 512; // 256 entries: two BAT sectors, then the batmap header
        b[map_at] = 0x80;
        assert!(matches!(
            open(b.clone(), true).unwrap_err().kind(),
            VhdError::BadChecksum { what: "batmap", .. }
        ));
        let v = open(b, false).unwrap();
        assert!(v.batmap().is_none());
        // A footer whose size needs more BAT entries than the header has.
        let mut v = Vhd::from_io(MemIo(good), Path::new("a"), true).unwrap();
        v.footer.current_size = 2 * MIB;
        v.write_footers().unwrap();
        assert!(matches!(
            reopen(v, false).unwrap_err().kind(),
            VhdError::Corrupt {
                what: "dynamic header",
                ..
            }
        ));
    }

    #[test]
    fn a_differencing_child_records_its_parent() {
        let base = Vhd::create_dynamic(
            MemIo::default(),
            Path::new("/sr/base.vhd"),
            3 * MIB,
            &small(),
        )
        .unwrap();
        let pref = ParentRef::of(&base, "./base.vhd", 1234);
        assert_eq!(pref.name, "base.vhd");
        let child =
            Vhd::create_differencing(MemIo::default(), Path::new("/sr/c.vhd"), &pref, &small())
                .unwrap();
        let child = reopen(child, true).unwrap();
        let h = child.header().unwrap();
        assert_eq!(child.disk_type(), DiskType::Differencing);
        assert_eq!(child.parent_uuid(), Some(base.uuid()));
        assert_eq!(
            (h.parent_timestamp, h.parent_name().as_deref()),
            (1234, Some("base.vhd"))
        );
        assert_eq!(child.virtual_size(), base.virtual_size());
        assert_eq!(child.parent_locations(), vec!["./base.vhd"; 3]);
        let codes: Vec<_> = h.locators.iter().map(|l| l.code).collect();
        assert_eq!(
            &codes[..4],
            &[
                PlatformCode::Macx,
                PlatformCode::W2ku,
                PlatformCode::W2ru,
                PlatformCode::None
            ]
        );
        assert_eq!(h.locators[0].data_space, 512);
        assert_eq!(h.locators[1].data_offset, h.locators[0].data_offset + 512);
        let mut nil = pref;
        nil.uuid = Uuid::nil();
        assert!(
            Vhd::create_differencing(MemIo::default(), Path::new("x"), &nil, &small()).is_err()
        );
    }

    #[test]
    fn fixed_images_read_and_write_in_place() {
        let mut f = Footer::new(DiskType::Fixed, 4096);
        f.timestamp = 1;
        let mut b = vec![3u8; 4096];
        b.extend_from_slice(&f.to_bytes());
        let mut v = Vhd::from_io(MemIo(b), Path::new("f"), true).unwrap();
        assert!(v.header().is_none() && v.has_sector(7).unwrap());
        assert_eq!(v.physical_size(), 4608);
        v.write_sectors(1, &[9u8; 512]).unwrap();
        let b = v.into_io().0;
        assert!(b[512..1024].iter().all(|&x| x == 9));
        let mut short = f.to_bytes().to_vec();
        short.splice(0..0, vec![0u8; 1024]);
        let mut f2 = f.clone();
        f2.current_size = 8192;
        short.splice(1024.., f2.to_bytes());
        assert!(matches!(
            Vhd::from_io(MemIo(short), Path::new("f"), false)
                .unwrap_err()
                .kind(),
            VhdError::Short {
                what: "fixed image data",
                ..
            }
        ));
    }
}
