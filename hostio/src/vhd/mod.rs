//! VHD images on the host: a file's footer (parsed by the [`vhd`] crate) and the qemu-img
//! operations that make, copy and grow them (run through sm-core's runner).

pub mod qemu_img;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use vhd::footer::FOOTER_SIZE;
pub use vhd::{DiskType, Footer};

/// Largest virtual size we create (sm's `MAX_VHD_SIZE`, 2040 GiB: the VHD format's practical
/// limit with 2 MiB blocks).
pub const MAX_SIZE: u64 = 2040 * 1024 * 1024 * 1024;

/// Why a VHD file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VhdError {
    /// The file could not be opened or read.
    #[error("cannot read {path}")]
    Io {
        /// The image.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Neither the trailing footer nor the leading copy is valid.
    #[error("{path} is not a valid VHD")]
    Footer {
        /// The image.
        path: PathBuf,
        /// What was wrong with the trailing footer.
        #[source]
        source: vhd::VhdError,
    },
}

/// What a VHD file holds: its footer and how many bytes the file uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// The footer.
    pub footer: Footer,
    /// File length in bytes (physical utilisation).
    pub file_size: u64,
}

/// Reads the footer of `path` (the trailing one; for dynamic disks the leading copy is used
/// when the trailing one is damaged, as the format allows).
pub fn read_info(path: &Path) -> Result<ImageInfo, VhdError> {
    let io = |source| VhdError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = File::open(path).map_err(io)?;
    let file_size = f.metadata().map_err(io)?.len();
    let mut buf = [0u8; FOOTER_SIZE];
    let tail = file_size.checked_sub(FOOTER_SIZE as u64);
    let trailing = match tail {
        Some(at) => {
            f.seek(SeekFrom::Start(at)).map_err(io)?;
            f.read_exact(&mut buf).map_err(io)?;
            Footer::parse(&buf)
        }
        None => Err(vhd::VhdError::Short {
            what: "footer",
            need: FOOTER_SIZE as u64,
            got: file_size,
        }),
    };
    let footer = match trailing {
        Ok(ft) => ft,
        Err(e) if tail.is_some() => {
            f.seek(SeekFrom::Start(0)).map_err(io)?;
            f.read_exact(&mut buf).map_err(io)?;
            match Footer::parse(&buf) {
                Ok(ft) if ft.disk_type != DiskType::Fixed => ft,
                _ => {
                    return Err(VhdError::Footer {
                        path: path.to_path_buf(),
                        source: e,
                    });
                }
            }
        }
        Err(e) => {
            return Err(VhdError::Footer {
                path: path.to_path_buf(),
                source: e,
            });
        }
    };
    Ok(ImageInfo { footer, file_size })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sm_core::host::SystemRunner;

    #[test]
    fn reads_trailing_footer_and_falls_back_to_leading_copy() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.vhd");
        let ft = Footer::new(DiskType::Dynamic, 8 << 20).to_bytes();
        let mut data = ft.to_vec();
        data.extend_from_slice(&[0u8; 1024]);
        data.extend_from_slice(&ft);
        std::fs::write(&p, &data).unwrap();
        let info = read_info(&p).unwrap();
        assert_eq!(info.footer.current_size, 8 << 20);
        assert_eq!(info.file_size, 2048);
        let n = data.len();
        data[n - 1] ^= 0xff;
        std::fs::write(&p, &data).unwrap();
        assert_eq!(read_info(&p).unwrap().footer.current_size, 8 << 20);
        data[0] ^= 0xff;
        std::fs::write(&p, &data).unwrap();
        assert!(matches!(read_info(&p), Err(VhdError::Footer { .. })));
        std::fs::write(&p, b"tiny").unwrap();
        assert!(matches!(read_info(&p), Err(VhdError::Footer { .. })));
        assert!(matches!(
            read_info(&d.path().join("none")),
            Err(VhdError::Io { .. })
        ));
    }

    /// The size qemu-img writes with force_size is exactly the size asked for (without it,
    /// 100 MiB would be rounded to a CHS geometry, 104865792 bytes).
    #[test]
    fn qemu_img_footer_holds_the_exact_size() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.vhd");
        qemu_img::create(&SystemRunner::new(), &p, 100 << 20).unwrap();
        let info = read_info(&p).unwrap();
        assert_eq!(info.footer.current_size, 100 << 20);
        assert_eq!(info.footer.disk_type, DiskType::Dynamic);
    }
}
