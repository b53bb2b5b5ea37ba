//! A chain of images from a leaf to its base, read as one virtual disk the way tapdisk serves
//! it: each sector from the first image (leaf first) whose bitmap has it, zeros where none does.
//! Writes go to the leaf.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::footer::DiskType;
use crate::image::{Extent, Vhd, absolute_dir};
use crate::{MAX_CHAIN_LEN, SECTOR_SIZE, VhdError, VhdIo, locator};

/// A leaf and its ancestors, leaf first. A differencing image is never read without its parent.
#[derive(Debug)]
pub struct Chain<I = File> {
    layers: Vec<Vhd<I>>,
}

impl Chain<File> {
    /// Opens the image at `leaf` and, while the current image is differencing, its parent
    /// through its locators (libvhd's order: MACX, W2KU, W2RU as vhd-util writes them, each
    /// relative to the child's directory), checking each parent's uuid against the child's
    /// header, up to [`MAX_CHAIN_LEN`] images. Only the leaf is opened for writing, when
    /// `writable`.
    pub fn open(leaf: &Path, writable: bool) -> Result<Chain<File>, VhdError> {
        let mut layers = vec![Vhd::open(leaf, writable)?];
        let mut current = leaf.to_path_buf();
        while let Some(child) = layers.last() {
            let Some(expected) = child.parent_uuid() else {
                break;
            };
            if expected.is_nil() {
                return Err(VhdError::Unsupported {
                    what: "parent",
                    value: format!("{}: a raw parent (nil parent uuid)", current.display()),
                });
            }
            if layers.len() == MAX_CHAIN_LEN {
                return Err(VhdError::ChainTooLong {
                    leaf: leaf.to_path_buf(),
                    limit: MAX_CHAIN_LEN,
                });
            }
            let child_dir =
                absolute_dir(&std::fs::canonicalize(&current).unwrap_or(current.clone()))?;
            let tried = child.parent_locations();
            let found = tried
                .iter()
                .map(|l| locator::resolve(&child_dir, l))
                .find(|p| p.is_file() || is_block_device(p));
            let Some(parent_path) = found else {
                return Err(VhdError::ParentMissing {
                    child: current,
                    tried,
                });
            };
            let parent = Vhd::open(&parent_path, false)?;
            if parent.uuid() != expected {
                return Err(VhdError::ParentUuidMismatch {
                    child: current,
                    parent: parent_path,
                    expected,
                    found: parent.uuid(),
                });
            }
            layers.push(parent);
            current = parent_path;
        }
        Ok(Chain { layers })
    }
}

fn is_block_device(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_block_device())
}

impl<I: VhdIo> Chain<I> {
    /// A chain of already open images, leaf first: every image but the last is differencing and
    /// names the next one's uuid as its parent, the last is not differencing, at most
    /// [`MAX_CHAIN_LEN`] images.
    pub fn from_layers(layers: Vec<Vhd<I>>) -> Result<Chain<I>, VhdError> {
        let Some(leaf) = layers.first() else {
            return Err(VhdError::NotPossible {
                op: "build a chain",
                what: "no images".into(),
            });
        };
        if layers.len() > MAX_CHAIN_LEN {
            return Err(VhdError::ChainTooLong {
                leaf: leaf.path().to_path_buf(),
                limit: MAX_CHAIN_LEN,
            });
        }
        for pair in layers.windows(2) {
            let (child, parent) = (&pair[0], &pair[1]);
            let Some(expected) = child.parent_uuid() else {
                return Err(VhdError::NotPossible {
                    op: "build a chain",
                    what: format!(
                        "{} above {}: not a differencing image",
                        child.path().display(),
                        parent.path().display()
                    ),
                });
            };
            if expected != parent.uuid() {
                return Err(VhdError::ParentUuidMismatch {
                    child: child.path().to_path_buf(),
                    parent: parent.path().to_path_buf(),
                    expected,
                    found: parent.uuid(),
                });
            }
        }
        if let Some(base) = layers
            .last()
            .filter(|b| b.disk_type() == DiskType::Differencing)
        {
            return Err(VhdError::ParentMissing {
                child: base.path().to_path_buf(),
                tried: base.parent_locations(),
            });
        }
        Ok(Chain { layers })
    }

    /// The images, leaf first.
    pub fn layers(&self) -> &[Vhd<I>] {
        &self.layers
    }

    /// The images back, leaf first.
    pub fn into_layers(self) -> Vec<Vhd<I>> {
        self.layers
    }

    /// The leaf.
    pub fn leaf(&self) -> &Vhd<I> {
        &self.layers[0]
    }

    /// The leaf, for writing (hidden flag, sync).
    pub fn leaf_mut(&mut self) -> &mut Vhd<I> {
        &mut self.layers[0]
    }

    /// The virtual size: the leaf's.
    pub fn virtual_size(&self) -> u64 {
        self.leaf().virtual_size()
    }

    /// The paths of the images whose hidden flag is set.
    pub fn hidden(&self) -> Vec<PathBuf> {
        self.layers
            .iter()
            .filter(|l| l.is_hidden())
            .map(|l| l.path().to_path_buf())
            .collect()
    }

    fn check_range(&self, offset: u64, len: usize) -> Result<(), VhdError> {
        let size = self.virtual_size();
        let len = len as u64;
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(VhdError::OutOfRange { offset, len, size });
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes of the virtual disk at `offset` (any alignment).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), VhdError> {
        self.check_range(offset, buf.len())?;
        buf.fill(0);
        if buf.is_empty() {
            return Ok(());
        }
        let end = offset + buf.len() as u64;
        let whole = offset / SECTOR_SIZE..end.div_ceil(SECTOR_SIZE);
        let mut missing = vec![whole];
        let mut extents = Vec::new();
        for layer in &self.layers {
            let mut next: Vec<std::ops::Range<u64>> = Vec::new();
            for r in missing {
                extents.clear();
                layer.map(r, &mut extents)?;
                for e in extents.drain(..) {
                    match e {
                        Extent::Data {
                            sectors,
                            offset: file_off,
                        } => {
                            let lo = (sectors.start * SECTOR_SIZE).max(offset);
                            let hi = (sectors.end * SECTOR_SIZE).min(end);
                            let dst = &mut buf[to_usize(lo - offset)..to_usize(hi - offset)];
                            layer.read_raw(file_off + (lo - sectors.start * SECTOR_SIZE), dst)?;
                        }
                        Extent::Absent(r) => match next.last_mut() {
                            Some(last) if last.end == r.start => last.end = r.end,
                            _ => next.push(r),
                        },
                        Extent::Zero(_) => {}
                    }
                }
            }
            missing = next;
            if missing.is_empty() {
                break;
            }
        }
        Ok(())
    }

    /// Writes `data` into the leaf at `offset` of the virtual disk (any alignment: a partial
    /// sector is completed with what the chain holds there).
    pub fn write_at(&mut self, data: &[u8], offset: u64) -> Result<(), VhdError> {
        self.check_range(offset, data.len())?;
        if data.is_empty() {
            return Ok(());
        }
        let end = offset + data.len() as u64;
        let first = offset / SECTOR_SIZE;
        if offset.is_multiple_of(SECTOR_SIZE) && end.is_multiple_of(SECTOR_SIZE) {
            return self.layers[0].write_sectors(first, data);
        }
        let last = end.div_ceil(SECTOR_SIZE);
        let mut buf = vec![0u8; to_usize((last - first) * SECTOR_SIZE)];
        let sector = to_usize(SECTOR_SIZE);
        if !offset.is_multiple_of(SECTOR_SIZE) {
            self.read_at(&mut buf[..sector], first * SECTOR_SIZE)?;
        }
        if !end.is_multiple_of(SECTOR_SIZE) {
            let at = buf.len() - sector;
            self.read_at(&mut buf[at..], (last - 1) * SECTOR_SIZE)?;
        }
        let at = to_usize(offset - first * SECTOR_SIZE);
        buf[at..at + data.len()].copy_from_slice(data);
        self.layers[0].write_sectors(first, &buf)
    }
}

/// A length known to fit memory (it indexes a buffer the caller holds).
fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::CreateOptions;
    use crate::{MemIo, ParentRef};
    use proptest::prelude::*;

    const SIZE: u64 = 256 << 10;

    fn opts() -> CreateOptions {
        CreateOptions { block_size: 4096 }
    }

    fn base() -> Vhd<MemIo> {
        Vhd::create_dynamic(MemIo::default(), Path::new("base.vhd"), SIZE, &opts()).unwrap()
    }

    /// Puts a differencing child on top of `chain` (reopening every layer from its bytes, so
    /// what was written is what is read).
    fn snapshot(chain: Chain<MemIo>, name: &str) -> Chain<MemIo> {
        let mut layers: Vec<Vhd<MemIo>> = chain
            .into_layers()
            .into_iter()
            .map(|l| {
                let p = l.path().to_path_buf();
                Vhd::from_io(l.into_io(), &p, false).unwrap()
            })
            .collect();
        let pref = ParentRef::of(&layers[0], &format!("./{}", layers[0].path().display()), 0);
        let child =
            Vhd::create_differencing(MemIo::default(), Path::new(name), &pref, &opts()).unwrap();
        layers.insert(0, child);
        Chain::from_layers(layers).unwrap()
    }

    #[derive(Debug, Clone)]
    struct Write {
        offset: u64,
        len: usize,
        byte: u8,
    }

    fn write() -> impl Strategy<Value = Write> {
        (0..SIZE, 1usize..20_000, any::<u8>()).prop_map(|(offset, len, byte)| Write {
            offset,
            len: len.min((SIZE - offset) as usize),
            byte,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Random writes into a base, then into each of two snapshots above it, read back equal
        /// to a flat model, at random ranges and whole.
        #[test]
        fn writes_into_a_chain_read_back_like_a_flat_disk(
            layers in proptest::collection::vec(proptest::collection::vec(write(), 0..6), 3),
            reads in proptest::collection::vec((0..SIZE, 0usize..40_000), 8),
        ) {
            let mut model = vec![0u8; SIZE as usize];
            let mut chain = Chain::from_layers(vec![base()]).unwrap();
            for (i, writes) in layers.iter().enumerate() {
                if i > 0 {
                    chain = snapshot(chain, &format!("s{i}.vhd"));
                }
                for w in writes {
                    let data: Vec<u8> = (0..w.len).map(|k| w.byte.wrapping_add(k as u8)).collect();
                    chain.write_at(&data, w.offset).unwrap();
                    model[w.offset as usize..w.offset as usize + w.len].copy_from_slice(&data);
                }
            }
            prop_assert_eq!(chain.layers().len(), 3);
            let mut all = vec![0u8; SIZE as usize];
            chain.read_at(&mut all, 0).unwrap();
            prop_assert!(all == model, "whole-disk read differs from the model");
            for (off, len) in reads {
                let len = len.min((SIZE - off) as usize);
                let mut buf = vec![0u8; len];
                chain.read_at(&mut buf, off).unwrap();
                prop_assert_eq!(&buf[..], &model[off as usize..off as usize + len]);
            }
            // Earlier layers are unchanged by later writes: the base alone reads its own writes.
            let base_only = Chain::from_layers(chain.into_layers().pop().into_iter().collect()).unwrap();
            let mut base_model = vec![0u8; SIZE as usize];
            for w in &layers[0] {
                let data: Vec<u8> = (0..w.len).map(|k| w.byte.wrapping_add(k as u8)).collect();
                base_model[w.offset as usize..w.offset as usize + w.len].copy_from_slice(&data);
            }
            base_only.read_at(&mut all, 0).unwrap();
            prop_assert!(all == base_model, "base changed by writes to its children");
        }
    }

    #[test]
    fn leaf_sectors_shadow_parent_sectors_sector_by_sector() {
        let mut chain = Chain::from_layers(vec![base()]).unwrap();
        chain.write_at(&[1u8; 4096], 0).unwrap();
        let mut chain = snapshot(chain, "leaf.vhd");
        chain.write_at(&[2u8; 512], 1024).unwrap();
        let mut buf = vec![0u8; 4096 + 512];
        chain.read_at(&mut buf, 0).unwrap();
        assert!(buf[..1024].iter().all(|&b| b == 1));
        assert!(buf[1024..1536].iter().all(|&b| b == 2));
        assert!(buf[1536..4096].iter().all(|&b| b == 1));
        assert!(buf[4096..].iter().all(|&b| b == 0));
        assert!(chain.leaf().has_sector(2).unwrap() && !chain.leaf().has_sector(1).unwrap());
        assert!(matches!(
            chain.read_at(&mut buf, SIZE - 10),
            Err(VhdError::OutOfRange { .. })
        ));
        assert!(matches!(
            chain.write_at(&buf, SIZE),
            Err(VhdError::OutOfRange { .. })
        ));
    }

    #[test]
    fn from_layers_checks_links_and_depth() {
        let a = base();
        let pref = ParentRef::of(&a, "./base.vhd", 0);
        let child = || {
            Vhd::create_differencing(MemIo::default(), Path::new("c.vhd"), &pref, &opts()).unwrap()
        };
        let other =
            Vhd::create_dynamic(MemIo::default(), Path::new("other.vhd"), SIZE, &opts()).unwrap();
        assert!(matches!(
            Chain::from_layers(vec![child(), other]),
            Err(VhdError::ParentUuidMismatch { .. })
        ));
        assert!(matches!(
            Chain::from_layers(vec![child()]),
            Err(VhdError::ParentMissing { .. })
        ));
        assert!(matches!(
            Chain::from_layers(vec![base(), base()]),
            Err(VhdError::NotPossible { .. })
        ));
        assert!(matches!(
            Chain::<MemIo>::from_layers(vec![]),
            Err(VhdError::NotPossible { .. })
        ));
        let mut chain = Chain::from_layers(vec![a]).unwrap();
        for i in 1..MAX_CHAIN_LEN {
            chain = snapshot(chain, &format!("s{i}.vhd"));
        }
        assert_eq!(chain.layers().len(), MAX_CHAIN_LEN);
        let mut layers = chain.into_layers();
        let pref = ParentRef::of(&layers[0], "./s29.vhd", 0);
        layers.insert(
            0,
            Vhd::create_differencing(MemIo::default(), Path::new("s30.vhd"), &pref, &opts())
                .unwrap(),
        );
        assert!(matches!(
            Chain::from_layers(layers),
            Err(VhdError::ChainTooLong { limit: 30, .. })
        ));
    }

    #[test]
    fn open_resolves_parents_through_relative_locators() {
        let dir = tempfile::tempdir().unwrap();
        let (b, s1, s2) = (
            dir.path().join("b.vhd"),
            dir.path().join("s1.vhd"),
            dir.path().join("s2.vhd"),
        );
        let mut base = Vhd::create(&b, SIZE, &opts()).unwrap();
        base.write_sectors(0, &[5u8; 512]).unwrap();
        base.set_hidden(true).unwrap();
        drop(base);
        Vhd::snapshot(&b, &s1, &opts())
            .unwrap()
            .set_hidden(true)
            .unwrap();
        Vhd::snapshot(&s1, &s2, &opts()).unwrap();
        let mut chain = Chain::open(&s2, true).unwrap();
        let paths: Vec<_> = chain
            .layers()
            .iter()
            .map(|l| l.path().file_name().unwrap().to_owned())
            .collect();
        assert_eq!(paths, ["s2.vhd", "s1.vhd", "b.vhd"]);
        assert_eq!(chain.hidden().len(), 2);
        chain.write_at(b"x", 511).unwrap();
        let mut buf = [0u8; 513];
        Chain::open(&s2, false)
            .unwrap()
            .read_at(&mut buf, 0)
            .unwrap();
        assert!(buf[..511].iter().all(|&x| x == 5) && &buf[511..] == b"x\0");
        // Chains open from another working directory and through a symlinked directory alike.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        assert_eq!(
            Chain::open(&link.join("s2.vhd"), false)
                .unwrap()
                .layers()
                .len(),
            3
        );
        // Creating over an existing file is refused and leaves it alone.
        assert!(matches!(
            Vhd::snapshot(&b, &s1, &opts()),
            Err(VhdError::Io { .. })
        ));
        assert_eq!(Chain::open(&s2, false).unwrap().layers().len(), 3);

        // Another image in the parent's place: uuid mismatch; no parent at all: missing.
        std::fs::rename(&s1, dir.path().join("keep.vhd")).unwrap();
        Vhd::create(&s1, SIZE, &opts()).unwrap();
        assert!(matches!(
            Chain::open(&s2, false),
            Err(VhdError::ParentUuidMismatch { .. })
        ));
        std::fs::remove_file(&s1).unwrap();
        match Chain::open(&s2, false) {
            Err(VhdError::ParentMissing { tried, .. }) => assert_eq!(tried, vec!["./s1.vhd"; 3]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn open_stops_at_the_chain_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut prev = dir.path().join("0.vhd");
        Vhd::create(&prev, 4096, &opts()).unwrap();
        for i in 1..=MAX_CHAIN_LEN {
            let next = dir.path().join(format!("{i}.vhd"));
            Vhd::snapshot(&prev, &next, &opts()).unwrap();
            prev = next;
        }
        assert!(matches!(
            Chain::open(&prev, false),
            Err(VhdError::ChainTooLong { limit: 30, .. })
        ));
        let ok = dir.path().join(format!("{}.vhd", MAX_CHAIN_LEN - 1));
        assert_eq!(
            Chain::open(&ok, false).unwrap().layers().len(),
            MAX_CHAIN_LEN
        );
    }
}
