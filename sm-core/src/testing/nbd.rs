//! NBD clients for tests. [`NbdReader`]: the fixed-newstyle handshake and `NBD_CMD_READ`, so a
//! test can read what a server (tapdisk, qemu-nbd) serves byte for byte, without the kernel
//! client and without the block-status queries qemu-img makes (tapdisk answers those with EIO).
//! [`KernelNbd`]: the kernel's client on an `nbd:unix:` URI, set up as xapi sets up a dom0
//! VBD's device (`research/datapath.md` §2.5), for lab tests that use a VDI as a block device.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

const NBDMAGIC: &[u8; 8] = b"NBDMAGIC";
const IHAVEOPT: &[u8; 8] = b"IHAVEOPT";
const FLAG_C_FIXED_NEWSTYLE: u32 = 1;
const FLAG_C_NO_ZEROES: u32 = 2;
const FLAG_NO_ZEROES: u16 = 2;
const OPT_EXPORT_NAME: u32 = 1;
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
const CMD_READ: u16 = 0;
const CMD_DISC: u16 = 2;
/// Largest read sent in one request.
const MAX_READ: usize = 1 << 20;

/// A connected export.
#[derive(Debug)]
pub struct NbdReader {
    sock: UnixStream,
    size: u64,
    handle: u64,
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

impl NbdReader {
    /// Connects to the server on `socket` and opens export `name`.
    pub fn connect(socket: &Path, name: &str) -> io::Result<NbdReader> {
        let mut sock = UnixStream::connect(socket)?;
        let mut hello = [0u8; 18];
        sock.read_exact(&mut hello)?;
        if &hello[..8] != NBDMAGIC || &hello[8..16] != IHAVEOPT {
            return Err(bad("not a fixed-newstyle NBD server"));
        }
        let server_flags = u16::from_be_bytes([hello[16], hello[17]]);
        let no_zeroes = server_flags & FLAG_NO_ZEROES != 0;
        let mut client_flags = FLAG_C_FIXED_NEWSTYLE;
        if no_zeroes {
            client_flags |= FLAG_C_NO_ZEROES;
        }
        sock.write_all(&client_flags.to_be_bytes())?;
        let mut opt = Vec::with_capacity(16 + name.len());
        opt.extend_from_slice(IHAVEOPT);
        opt.extend_from_slice(&OPT_EXPORT_NAME.to_be_bytes());
        opt.extend_from_slice(
            &u32::try_from(name.len())
                .map_err(|_| bad("name"))?
                .to_be_bytes(),
        );
        opt.extend_from_slice(name.as_bytes());
        sock.write_all(&opt)?;
        let mut info = [0u8; 10];
        sock.read_exact(&mut info)?;
        if !no_zeroes {
            let mut zeroes = [0u8; 124];
            sock.read_exact(&mut zeroes)?;
        }
        let mut size = [0u8; 8];
        size.copy_from_slice(&info[..8]);
        Ok(NbdReader {
            sock,
            size: u64::from_be_bytes(size),
            handle: 0,
        })
    }

    /// The export's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn request(&mut self, ty: u16, offset: u64, len: u32) -> io::Result<u64> {
        self.handle += 1;
        let mut req = Vec::with_capacity(28);
        req.extend_from_slice(&REQUEST_MAGIC.to_be_bytes());
        req.extend_from_slice(&0u16.to_be_bytes());
        req.extend_from_slice(&ty.to_be_bytes());
        req.extend_from_slice(&self.handle.to_be_bytes());
        req.extend_from_slice(&offset.to_be_bytes());
        req.extend_from_slice(&len.to_be_bytes());
        self.sock.write_all(&req)?;
        Ok(self.handle)
    }

    /// Reads `buf.len()` bytes at `offset`.
    pub fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let n = (buf.len() - done).min(MAX_READ);
            let len = u32::try_from(n).map_err(|_| bad("length"))?;
            let handle = self.request(CMD_READ, offset + done as u64, len)?;
            let mut reply = [0u8; 16];
            self.sock.read_exact(&mut reply)?;
            let word =
                |i: usize| u32::from_be_bytes([reply[i], reply[i + 1], reply[i + 2], reply[i + 3]]);
            if word(0) != SIMPLE_REPLY_MAGIC {
                return Err(bad("unexpected reply magic"));
            }
            if word(4) != 0 {
                return Err(io::Error::other(format!("NBD read error {}", word(4))));
            }
            let mut h = [0u8; 8];
            h.copy_from_slice(&reply[8..16]);
            if u64::from_be_bytes(h) != handle {
                return Err(bad("reply to another request"));
            }
            self.sock.read_exact(&mut buf[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    /// The whole export.
    pub fn read_all(&mut self) -> io::Result<Vec<u8>> {
        let mut v = vec![0u8; usize::try_from(self.size).map_err(|_| bad("size"))?];
        self.read_at(&mut v, 0)?;
        Ok(v)
    }
}

impl Drop for NbdReader {
    fn drop(&mut self) {
        let _ = self.request(CMD_DISC, 0, 0);
    }
}

/// A `/dev/nbdN` connected by `nbd-client` to an NBD export, with the queue limits xapi's
/// `nbd_client_manager.py` sets (scheduler none, `max_sectors_kb=512`, `nr_requests=8`: tapdisk
/// can hang with the defaults). Disconnected on drop.
#[derive(Debug)]
pub struct KernelNbd {
    device: std::path::PathBuf,
}

/// The socket and export name of `nbd:unix:<socket>:exportname=<name>`.
pub fn parse_uri(uri: &str) -> Option<(&Path, &str)> {
    let rest = uri.strip_prefix("nbd:unix:")?;
    let (socket, name) = rest.rsplit_once(":exportname=")?;
    Some((Path::new(socket), name))
}

fn nbd_client(args: &[&str]) -> io::Result<()> {
    use crate::host::{Cmd, Runner, SystemRunner};
    SystemRunner::new()
        .run(
            &Cmd::new("nbd-client")
                .args(args)
                .timeout(std::time::Duration::from_secs(60))
                .daemonizes(),
        )
        .map(|_| ())
        .map_err(|e| io::Error::other(format!("nbd-client {args:?}: {e}")))
}

impl KernelNbd {
    /// Connects the first free `/dev/nbdN` to the export at `uri` (`nbd:unix:…`).
    pub fn connect(uri: &str) -> io::Result<KernelNbd> {
        let (link, name) = parse_uri(uri).ok_or_else(|| bad("not an nbd:unix: URI"))?;
        // The real socket: a link under a test root can be longer than a socket address holds.
        let real = std::fs::canonicalize(link)?;
        let socket = real.to_str().ok_or_else(|| bad("socket path"))?;
        crate::testing::run_ok(&["modprobe", "nbd", "nbds_max=16"]);
        let n = (0..16)
            .find(|i| {
                let sys = format!("/sys/block/nbd{i}");
                Path::new(&sys).exists() && !Path::new(&format!("{sys}/pid")).exists()
            })
            .ok_or_else(|| io::Error::other("no free /dev/nbd device"))?;
        let device = std::path::PathBuf::from(format!("/dev/nbd{n}"));
        let dev = device.display().to_string();
        nbd_client(&["-unix", socket, &dev, "-timeout", "90", "-name", name])?;
        let nbd = KernelNbd { device };
        let queue = format!("/sys/block/nbd{n}/queue");
        for (k, v) in [
            ("scheduler", "none"),
            ("max_sectors_kb", "512"),
            ("nr_requests", "8"),
        ] {
            std::fs::write(format!("{queue}/{k}"), v)?;
        }
        Ok(nbd)
    }

    /// The block device.
    pub fn device(&self) -> &Path {
        &self.device
    }
}

impl Drop for KernelNbd {
    fn drop(&mut self) {
        let dev = self.device.display().to_string();
        if let Err(e) = nbd_client(&["-d", &dev]) {
            tracing::warn!("cannot disconnect {dev}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{Cmd, Runner, SystemRunner};

    #[test]
    fn nbd_unix_uris_split_into_socket_and_export() {
        assert_eq!(
            parse_uri("nbd:unix:/run/blktap-control/nbd/s/v:exportname=v"),
            Some((Path::new("/run/blktap-control/nbd/s/v"), "v"))
        );
        assert_eq!(parse_uri("/dev/sm/backend/s/v"), None);
        assert_eq!(parse_uri("nbd:unix:/s"), None);
    }

    /// Against qemu-nbd (qemu-utils, installed by CI's first stage): the handshake, reads
    /// across the 1 MiB request split, the size.
    #[test]
    fn reads_what_qemu_nbd_serves() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("disk.raw");
        let data: Vec<u8> = (0..(3u32 << 20) + 4096).map(|i| (i % 251) as u8).collect();
        std::fs::write(&img, &data).unwrap();
        let sock = d.path().join("s");
        SystemRunner::new()
            .run(
                &Cmd::new("qemu-nbd")
                    .args(["--fork", "-f", "raw", "-x", "exp", "--socket"])
                    .arg(&sock)
                    .arg(&img)
                    .daemonizes(),
            )
            .unwrap();
        let mut r = NbdReader::connect(&sock, "exp").unwrap();
        assert_eq!(r.size(), data.len() as u64);
        let mut part = vec![0u8; 4096];
        r.read_at(&mut part, (1 << 20) - 100).unwrap();
        assert_eq!(part, data[(1 << 20) - 100..(1 << 20) + 3996]);
        assert_eq!(r.read_all().unwrap(), data);
    }
}
