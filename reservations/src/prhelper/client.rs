//! The client side, as QEMU's `pr-manager-helper` does it: connect, read the helper's feature
//! word, answer with the features both have (none), then per command send the 16-byte CDB
//! with the descriptor on the first `sendmsg`, the PR OUT parameter list after it, and read
//! the 104-byte header and the payload it announces. Used by tests, the lab and benchmarks
//! to drive any helper (ours or qemu-pr-helper) the way QEMU would.

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};

use super::protocol::{CDB_SIZE, DATA_SIZE, REPLY_HEADER_SIZE, SENSE_SIZE};

/// A helper's reply exactly as it came off the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawReply {
    /// The 104-byte header followed by the payload.
    pub bytes: Vec<u8>,
}

impl RawReply {
    /// The status word.
    pub fn status(&self) -> u32 {
        u32::from_be_bytes([self.bytes[0], self.bytes[1], self.bytes[2], self.bytes[3]])
    }

    /// The sense bytes.
    pub fn sense(&self) -> &[u8] {
        &self.bytes[8..8 + SENSE_SIZE]
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.bytes[REPLY_HEADER_SIZE..]
    }
}

/// One connection to a helper.
pub struct Client {
    sock: UnixStream,
    /// The feature word the helper offered.
    pub offered: u32,
}

impl Client {
    /// Connects to `path` and negotiates (no features); `timeout` bounds every read.
    pub fn connect(path: &Path, timeout: Duration) -> io::Result<Client> {
        let mut sock = UnixStream::connect(path)?;
        sock.set_read_timeout(Some(timeout))?;
        let mut offered = [0u8; 4];
        sock.read_exact(&mut offered)?;
        let offered = u32::from_be_bytes(offered);
        // QEMU answers with the cleanup bit masked from the word as read, which on
        // little-endian hosts is always 0.
        sock.write_all(&0u32.to_be_bytes())?;
        Ok(Client { sock, offered })
    }

    /// Sends the raw bytes of a request: `cdb` (1..=16 bytes, zero-padded as QEMU does) with
    /// `fd` attached, then `params`.
    pub fn send(
        &mut self,
        cdb: &[u8],
        fd: Option<BorrowedFd<'_>>,
        params: &[u8],
    ) -> io::Result<()> {
        let mut padded = [0u8; CDB_SIZE];
        let n = cdb.len().min(CDB_SIZE);
        padded[..n].copy_from_slice(&cdb[..n]);
        let fds: Vec<BorrowedFd<'_>> = fd.into_iter().collect();
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut anc = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() && !anc.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(io::Error::other("no room for the descriptor"));
        }
        let iov = [IoSlice::new(&padded)];
        let sent = sendmsg(self.sock.as_fd(), &iov, &mut anc, SendFlags::NOSIGNAL)?;
        if sent < CDB_SIZE {
            self.sock.write_all(&padded[sent..])?;
        }
        self.sock.write_all(params)?;
        Ok(())
    }

    /// Reads one reply: the header, then the payload it announces (refused over 8 KiB).
    pub fn receive(&mut self) -> io::Result<RawReply> {
        let mut bytes = vec![0u8; REPLY_HEADER_SIZE];
        self.sock.read_exact(&mut bytes)?;
        let sz = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
        if sz > DATA_SIZE {
            return Err(io::Error::other(format!("payload size {sz} announced")));
        }
        let mut payload = vec![0u8; sz];
        self.sock.read_exact(&mut payload)?;
        bytes.extend_from_slice(&payload);
        Ok(RawReply { bytes })
    }

    /// One command: [`Client::send`] then [`Client::receive`].
    pub fn execute(&mut self, cdb: &[u8], fd: impl AsFd, params: &[u8]) -> io::Result<RawReply> {
        self.send(cdb, Some(fd.as_fd()), params)?;
        self.receive()
    }

    /// Whether the helper closed the connection (EOF within the read timeout).
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.sock.read(&mut b), Ok(0))
    }
}
