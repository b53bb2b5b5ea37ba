//! The wire format of QEMU's persistent-reservation helper protocol, as QEMU's
//! `pr-manager-helper` client and `qemu-pr-helper` speak it (all integers big-endian):
//!
//! * on connect the helper writes its 4-byte feature word, the client answers with the features
//!   it wants; a bit the helper did not offer closes the connection;
//! * a request is a 16-byte CDB with exactly one descriptor attached (`SCM_RIGHTS`), then, for
//!   PERSISTENT RESERVE OUT, the parameter list; its length is the CDB's bytes 7-8 (what the
//!   code reads, whatever the protocol document says about bytes 5-8), at most 8 KiB;
//! * a reply is the 4-byte SCSI status, the 4-byte payload size, 96 sense bytes, then the
//!   payload (PR IN with GOOD status only, never longer than the CDB's allocation length).
//!
//! Framing errors (no descriptor, two descriptors, another operation code, a transfer over
//! 8 KiB, a short read) close the connection without a reply; everything else gets one.

use std::io;
use std::os::fd::OwnedFd;

/// Bytes of a request's CDB.
pub const CDB_SIZE: usize = 16;
/// Bytes of a reply's sense field.
pub const SENSE_SIZE: usize = 96;
/// Largest PR OUT parameter list or PR IN payload.
pub const DATA_SIZE: usize = 8192;
/// Bytes of a reply before its payload: status, size, sense.
pub const REPLY_HEADER_SIZE: usize = 8 + SENSE_SIZE;
/// PERSISTENT RESERVE IN.
pub const PERSISTENT_RESERVE_IN: u8 = 0x5e;
/// PERSISTENT RESERVE OUT.
pub const PERSISTENT_RESERVE_OUT: u8 = 0x5f;
/// The feature word this helper writes: none. QEMU 7.2 (Debian 12's) writes the same; the
/// later cleanup bit is never negotiated by little-endian clients, whose mask misses it.
pub const SUPPORTED_FEATURES: u32 = 0;

/// Why a connection ended (no reply is sent for any of these).
#[derive(Debug, thiserror::Error)]
pub enum Framing {
    /// The client closed its end (between requests, or in the middle of one).
    #[error("the client closed the connection")]
    Closed,
    /// Reading or writing the socket failed.
    #[error("socket I/O failed: {0}")]
    Io(#[from] io::Error),
    /// The client asked for a feature that is not offered.
    #[error("the client asked for features {0:#010x}; offered {SUPPORTED_FEATURES:#010x}")]
    Features(u32),
    /// A CDB arrived without a descriptor.
    #[error("no file descriptor with the request")]
    NoFd,
    /// More than one descriptor came with a CDB.
    #[error("more than one file descriptor with the request")]
    TooManyFds,
    /// The operation code is neither PERSISTENT RESERVE IN nor OUT.
    #[error("operation code {0:#04x} is not PERSISTENT RESERVE IN or OUT")]
    Opcode(u8),
    /// The allocation or parameter list length is over [`DATA_SIZE`].
    #[error("transfer length {0} is over {DATA_SIZE} bytes")]
    TooLong(usize),
}

/// One command from the client.
#[derive(Debug)]
pub struct Request {
    /// The CDB as sent (16 bytes; a 10-byte PR CDB is zero-padded by the client).
    pub cdb: [u8; CDB_SIZE],
    /// The descriptor of the device the command is for (closed when the request is dropped).
    pub fd: OwnedFd,
    /// The PR OUT parameter list (empty for PR IN).
    pub params: Vec<u8>,
}

impl Request {
    /// Whether this is PERSISTENT RESERVE OUT.
    pub fn is_out(&self) -> bool {
        self.cdb[0] == PERSISTENT_RESERVE_OUT
    }

    /// The service action (CDB byte 1, low 5 bits).
    pub fn service_action(&self) -> u8 {
        self.cdb[1] & 0x1f
    }

    /// The PR OUT parameter list's RESERVATION KEY (bytes 0-7; 0 when the list is shorter).
    pub fn key(&self) -> u64 {
        be64(self.params.get(..8))
    }

    /// The PR OUT parameter list's SERVICE ACTION RESERVATION KEY (bytes 8-15).
    pub fn sa_key(&self) -> u64 {
        be64(self.params.get(8..16))
    }

    /// The PR OUT parameter list's flags byte (20: SPEC_I_PT, ALL_TG_PT, APTPL).
    pub fn flags(&self) -> u8 {
        self.params.get(20).copied().unwrap_or(0)
    }

    /// The allocation length (PR IN) or parameter list length (PR OUT): CDB bytes 7-8.
    pub fn transfer_len(&self) -> usize {
        transfer_len(&self.cdb)
    }
}

fn be64(b: Option<&[u8]>) -> u64 {
    b.and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_be_bytes)
}

/// CDB bytes 7-8, big-endian: the transfer length of both PR commands.
pub fn transfer_len(cdb: &[u8; CDB_SIZE]) -> usize {
    usize::from(u16::from_be_bytes([cdb[7], cdb[8]]))
}

/// One reply to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// SCSI status.
    pub status: u8,
    /// Sense bytes, zero-padded (meaningful with CHECK CONDITION only).
    pub sense: [u8; SENSE_SIZE],
    /// PR IN data (empty unless the status is GOOD).
    pub payload: Vec<u8>,
}

impl Reply {
    /// Status `status` with `sense` (truncated to 96 bytes), no payload.
    pub fn new(status: u8, sense: &[u8]) -> Reply {
        let mut s = [0u8; SENSE_SIZE];
        let n = sense.len().min(SENSE_SIZE);
        s[..n].copy_from_slice(&sense[..n]);
        Reply {
            status,
            sense: s,
            payload: Vec::new(),
        }
    }

    /// The reply on the wire: status, payload size, sense, payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(REPLY_HEADER_SIZE + self.payload.len());
        out.extend_from_slice(&u32::from(self.status).to_be_bytes());
        // At most DATA_SIZE by construction (see `fit`).
        let sz = u32::try_from(self.payload.len()).unwrap_or(0);
        out.extend_from_slice(&sz.to_be_bytes());
        out.extend_from_slice(&self.sense);
        out.extend_from_slice(&self.payload);
        out
    }

    /// The reply made safe for the client that sent `cdb`, which aborts the VM on a payload it
    /// did not ask for: no payload unless PR IN with GOOD status, and never more than the
    /// allocation length (or [`DATA_SIZE`]).
    pub fn fit(mut self, cdb: &[u8; CDB_SIZE]) -> Reply {
        if cdb[0] != PERSISTENT_RESERVE_IN || self.status != 0 {
            self.payload.clear();
        } else {
            self.payload.truncate(transfer_len(cdb).min(DATA_SIZE));
        }
        self
    }
}

/// A connected client socket: bytes with descriptors attached, and plain bytes.
pub trait Wire {
    /// Reads up to `buf.len()` bytes and the descriptors that came with them; 0 bytes at EOF.
    /// Descriptors beyond what the implementation can receive count as too many.
    fn recv_with_fds(&mut self, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>, bool)>;
    /// Reads exactly `buf.len()` bytes (descriptors sent with them are discarded).
    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `buf`.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
}

fn eof_is_closed(e: io::Error) -> Framing {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        Framing::Closed
    } else {
        Framing::Io(e)
    }
}

/// The feature negotiation: offer [`SUPPORTED_FEATURES`], read what the client wants.
pub fn handshake(w: &mut dyn Wire) -> Result<(), Framing> {
    w.write_all(&SUPPORTED_FEATURES.to_be_bytes())?;
    let mut asked = [0u8; 4];
    w.read_exact(&mut asked).map_err(eof_is_closed)?;
    let asked = u32::from_be_bytes(asked);
    if asked & !SUPPORTED_FEATURES != 0 {
        return Err(Framing::Features(asked));
    }
    Ok(())
}

/// Reads one request: the CDB and its descriptor (gathered over as many reads as the client
/// split them into), the checks qemu-pr-helper makes in the same order, then the parameter
/// list of a PR OUT.
pub fn read_request(w: &mut dyn Wire) -> Result<Request, Framing> {
    let mut cdb = [0u8; CDB_SIZE];
    let mut got = 0;
    let mut fd: Option<OwnedFd> = None;
    while got < CDB_SIZE {
        let (n, fds, truncated) = w.recv_with_fds(&mut cdb[got..])?;
        if n == 0 {
            return Err(Framing::Closed);
        }
        for f in fds {
            if fd.is_some() {
                return Err(Framing::TooManyFds);
            }
            fd = Some(f);
        }
        if truncated {
            return Err(Framing::TooManyFds);
        }
        got += n;
    }
    let fd = fd.ok_or(Framing::NoFd)?;
    if cdb[0] != PERSISTENT_RESERVE_IN && cdb[0] != PERSISTENT_RESERVE_OUT {
        return Err(Framing::Opcode(cdb[0]));
    }
    let len = transfer_len(&cdb);
    if len > DATA_SIZE {
        return Err(Framing::TooLong(len));
    }
    let mut params = Vec::new();
    if cdb[0] == PERSISTENT_RESERVE_OUT {
        params = vec![0u8; len];
        w.read_exact(&mut params).map_err(eof_is_closed)?;
    }
    Ok(Request { cdb, fd, params })
}

/// Writes `reply` (already [`Reply::fit`] to its request).
pub fn write_reply(w: &mut dyn Wire, reply: &Reply) -> Result<(), Framing> {
    w.write_all(&reply.encode())?;
    Ok(())
}
