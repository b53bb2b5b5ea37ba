//! The crate's one error type: what is wrong with a VHD image, a chain or its I/O.

use std::path::PathBuf;

/// The sm limit on chain depth (`vhdutil.MAX_CHAIN_SIZE`): a leaf plus at most 29 ancestors.
pub const MAX_CHAIN_LEN: usize = 30;

/// Why a VHD structure, image or chain cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum VhdError {
    /// A structure needs more bytes than the buffer or file holds.
    #[error("{what}: need {need} bytes, got {got}")]
    Short {
        /// The structure being parsed.
        what: &'static str,
        /// Bytes needed.
        need: u64,
        /// Bytes available.
        got: u64,
    },
    /// A structure's cookie is not the one the format defines.
    #[error("{what}: cookie {found:?}, expected {expected:?}")]
    BadCookie {
        /// The structure being parsed.
        what: &'static str,
        /// The cookie the format defines.
        expected: &'static str,
        /// What the bytes hold (lossy).
        found: String,
    },
    /// A structure's stored checksum differs from the one computed over its bytes.
    #[error("{what}: checksum {stored:#010x}, computed {computed:#010x}")]
    BadChecksum {
        /// The structure being parsed.
        what: &'static str,
        /// The checksum field.
        stored: u32,
        /// The ones' complement sum computed over the bytes.
        computed: u32,
    },
    /// A field holds a value this library does not implement (disk type, version, block size).
    #[error("unsupported {what}: {value}")]
    Unsupported {
        /// The field.
        what: &'static str,
        /// Its value, rendered.
        value: String,
    },
    /// The block allocation table points outside the image or over its metadata.
    #[error("BAT entry {block} ({sector:#x}): {reason}")]
    BadBat {
        /// The virtual block.
        block: u32,
        /// The entry (sector of the block's bitmap in the file).
        sector: u32,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A metadata field is inconsistent with the rest of the image.
    #[error("{what}: {reason}")]
    Corrupt {
        /// The structure or field.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// No parent locator of a differencing image names a readable file.
    #[error("{child}: no parent found (locators: {tried:?})")]
    ParentMissing {
        /// The differencing image.
        child: PathBuf,
        /// The paths the locators decoded to, relative to the child's directory.
        tried: Vec<String>,
    },
    /// The located parent is not the image the child was made from.
    #[error("{parent}: uuid {found} is not {child}'s parent uuid {expected}")]
    ParentUuidMismatch {
        /// The differencing image.
        child: PathBuf,
        /// The parent found through its locators.
        parent: PathBuf,
        /// The child's header parent uuid.
        expected: uuid::Uuid,
        /// The parent's footer uuid.
        found: uuid::Uuid,
    },
    /// The chain is deeper than sm allows.
    #[error("{leaf}: chain longer than {limit} images")]
    ChainTooLong {
        /// The leaf the chain was opened from.
        leaf: PathBuf,
        /// The limit ([`MAX_CHAIN_LEN`]).
        limit: usize,
    },
    /// A read or write beyond the virtual disk, or an unaligned sector request.
    #[error("range {offset}+{len} is outside the virtual disk of {size} bytes")]
    OutOfRange {
        /// First byte.
        offset: u64,
        /// Length in bytes.
        len: u64,
        /// The virtual size.
        size: u64,
    },
    /// An operation that needs a writable dynamic or differencing image got something else.
    #[error("{op}: not possible on {what}")]
    NotPossible {
        /// The operation.
        op: &'static str,
        /// Why not (the image's kind or state).
        what: String,
    },
    /// The underlying read or write failed.
    #[error("{path}: I/O at offset {offset}")]
    Io {
        /// The image.
        path: PathBuf,
        /// The byte offset of the failed request.
        offset: u64,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A structure of one image is bad (the image's path, the error as source).
    #[error("{path}")]
    Image {
        /// The image.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: Box<VhdError>,
    },
}

impl VhdError {
    /// The error without the [`VhdError::Image`] context around it.
    pub fn kind(&self) -> &VhdError {
        match self {
            VhdError::Image { source, .. } => source.kind(),
            other => other,
        }
    }

    /// Wraps a parse error with the path of the image it came from.
    pub(crate) fn in_image(self, path: &std::path::Path) -> VhdError {
        match self {
            e @ (VhdError::Io { .. } | VhdError::Image { .. }) => e,
            e => VhdError::Image {
                path: path.to_path_buf(),
                source: Box::new(e),
            },
        }
    }
}
