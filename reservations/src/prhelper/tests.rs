//! The protocol on an in-memory socket, the pass-through on a LIO-like fake, the multipath
//! rules on a fake LU seen through two paths, and the parser fuzzed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use sm_core::scsi::{PrType, RelTgtPortId};
use sm_core::testing::{FakeLu, Fault, Reply as FakeReply};

use super::dispatch::describe;
use super::mpath::Map;
use super::protocol::{self, CDB_SIZE, Framing, REPLY_HEADER_SIZE, Reply, Request, Wire};
use super::server::{Activity, serve_connection};
use super::*;
use crate::activate::tests::{IQN_A, IQN_B, host};

/// A client socket in memory: the chunks the client sent (each with descriptors), and what
/// the helper wrote.
#[derive(Default)]
struct Mem {
    chunks: VecDeque<(Vec<u8>, Vec<OwnedFd>)>,
    out: Vec<u8>,
}

impl Mem {
    fn send(&mut self, bytes: &[u8], fds: usize) -> &mut Mem {
        let fds = (0..fds).map(|_| devnull()).collect();
        self.chunks.push_back((bytes.to_vec(), fds));
        self
    }
}

impl Wire for Mem {
    fn recv_with_fds(&mut self, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>, bool)> {
        let Some((bytes, fds)) = self.chunks.pop_front() else {
            return Ok((0, Vec::new(), false));
        };
        let n = bytes.len().min(buf.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        if n < bytes.len() {
            self.chunks.push_front((bytes[n..].to_vec(), Vec::new()));
        }
        Ok((n, fds, false))
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let mut got = 0;
        while got < buf.len() {
            let (n, _, _) = self.recv_with_fds(&mut buf[got..])?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            got += n;
        }
        Ok(())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.out.extend_from_slice(buf);
        Ok(())
    }
}

fn devnull() -> OwnedFd {
    std::fs::File::open("/dev/null").unwrap().into()
}

fn cdb_in(sa: u8, alloc: u16) -> [u8; CDB_SIZE] {
    let mut c = [0u8; CDB_SIZE];
    c[0] = 0x5e;
    c[1] = sa;
    c[7..9].copy_from_slice(&alloc.to_be_bytes());
    c
}

fn cdb_out(sa: u8, pr_type: u8, len: u16) -> [u8; CDB_SIZE] {
    let mut c = [0u8; CDB_SIZE];
    c[0] = 0x5f;
    c[1] = sa;
    c[2] = pr_type;
    c[7..9].copy_from_slice(&len.to_be_bytes());
    c
}

fn params(key: u64, sa_key: u64, flags: u8) -> Vec<u8> {
    let mut p = vec![0u8; 24];
    p[..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    p[20] = flags;
    p
}

fn request(cdb: [u8; CDB_SIZE], params: Vec<u8>) -> Request {
    Request {
        cdb,
        fd: devnull(),
        params,
    }
}

/// A backend that answers GOOD with 300 bytes of payload to everything.
struct Generous;

impl Backend for Generous {
    fn execute(&self, _req: Request) -> Reply {
        let mut r = Reply::new(0, &[]);
        r.payload = vec![0xab; 300];
        r
    }
}

fn serve(mem: &mut Mem, backend: &dyn Backend) -> Framing {
    serve_connection(mem, backend, &AtomicBool::new(false), &Activity::default())
}

#[test]
fn negotiation_offers_no_feature_and_refuses_unknown_ones() {
    let mut m = Mem::default();
    m.send(&[0, 0, 0, 0], 0);
    assert!(matches!(serve(&mut m, &Generous), Framing::Closed));
    assert_eq!(m.out, [0, 0, 0, 0]);
    let mut m = Mem::default();
    m.send(&[0, 0, 0, 1], 0).send(&cdb_in(0, 8), 1);
    assert!(matches!(serve(&mut m, &Generous), Framing::Features(1)));
    assert_eq!(m.out.len(), 4, "no reply after a refused negotiation");
}

#[test]
fn a_cdb_split_over_reads_with_its_fd_on_a_later_chunk_is_one_request() {
    let c = cdb_in(0, 16);
    let mut m = Mem::default();
    m.send(&[0; 4], 0)
        .send(&c[..3], 0)
        .send(&c[3..10], 1)
        .send(&c[10..], 0);
    assert!(matches!(serve(&mut m, &Generous), Framing::Closed));
    let reply = &m.out[4..];
    assert_eq!(
        reply.len(),
        REPLY_HEADER_SIZE + 16,
        "payload cut to the allocation length"
    );
    assert_eq!(&reply[..8], &[0, 0, 0, 0, 0, 0, 0, 16]);
}

#[test]
fn framing_errors_close_without_a_reply() {
    type Case = (Vec<(Vec<u8>, usize)>, fn(&Framing) -> bool);
    let cases: Vec<Case> = vec![
        (vec![(cdb_in(0, 8).to_vec(), 0)], |f| {
            matches!(f, Framing::NoFd)
        }),
        (vec![(cdb_in(0, 8).to_vec(), 2)], |f| {
            matches!(f, Framing::TooManyFds)
        }),
        (
            vec![
                (cdb_in(0, 8)[..8].to_vec(), 1),
                (cdb_in(0, 8)[8..].to_vec(), 1),
            ],
            |f| matches!(f, Framing::TooManyFds),
        ),
        (
            vec![(
                {
                    let mut c = cdb_in(0, 8);
                    c[0] = 0x12;
                    c.to_vec()
                },
                1,
            )],
            |f| matches!(f, Framing::Opcode(0x12)),
        ),
        (vec![(cdb_in(0, 8193).to_vec(), 1)], |f| {
            matches!(f, Framing::TooLong(8193))
        }),
        (
            vec![(cdb_out(0, 0, 24).to_vec(), 1), (vec![0; 10], 0)],
            |f| matches!(f, Framing::Closed),
        ),
        (vec![(cdb_in(0, 8)[..5].to_vec(), 1)], |f| {
            matches!(f, Framing::Closed)
        }),
    ];
    for (i, (chunks, expected)) in cases.into_iter().enumerate() {
        let mut m = Mem::default();
        m.send(&[0; 4], 0);
        for (b, fds) in &chunks {
            m.send(b, *fds);
        }
        let why = serve(&mut m, &Generous);
        assert!(expected(&why), "case {i}: {why}");
        assert_eq!(m.out.len(), 4, "case {i}: no reply");
    }
}

#[test]
fn pr_out_replies_never_carry_a_payload_and_8192_is_allowed() {
    let mut m = Mem::default();
    m.send(&[0; 4], 0)
        .send(&cdb_out(0, 0, 8192), 1)
        .send(&vec![7u8; 8192], 0)
        .send(&cdb_in(0, 8192), 1);
    assert!(matches!(serve(&mut m, &Generous), Framing::Closed));
    let out = &m.out[4..];
    assert_eq!(&out[4..8], &[0, 0, 0, 0], "PR OUT: size 0");
    let second = &out[REPLY_HEADER_SIZE..];
    assert_eq!(&second[4..8], &300u32.to_be_bytes());
    assert_eq!(second.len(), REPLY_HEADER_SIZE + 300);
}

#[test]
fn dispatcher_on_a_non_scsi_fd_answers_as_qemu_and_refuses_pr_out_on_read_only() {
    let d = Dispatcher::new(
        MultipathMode::Auto,
        sm_core::host::sysfs::Sysfs::new("/nonexistent"),
        None,
        Duration::from_secs(1),
    );
    // SG_IO on /dev/null: ENOTTY -> ABORTED COMMAND 00/06.
    let r = d.execute(request(cdb_in(0, 64), Vec::new()));
    assert_eq!(
        (r.status, r.sense[2], r.sense[12], r.sense[13]),
        (2, 0x0b, 0x00, 0x06)
    );
    assert!(r.payload.is_empty());
    // /dev/null opened read-only: PR OUT is INVALID OPERATION CODE before any I/O.
    let r = d.execute(request(cdb_out(0, 0, 24), params(0, 1, 0)));
    assert_eq!((r.status, r.sense[2], r.sense[12]), (2, 0x05, 0x20));
    assert_eq!(
        describe(&r),
        "CHECK CONDITION ILLEGAL REQUEST 20/00 (invalid command operation code)"
    );
}

#[test]
fn pass_through_hands_on_the_target_s_answers() {
    let lu = FakeLu::lio("pt1");
    let a = host(&lu, IQN_A, 0x100);
    let b = host(&lu, IQN_B, 0x200);
    let dev = &a.fakes[0];
    let t = Duration::from_secs(1);
    let reg = plain::pass_through(dev, &request(cdb_out(0, 0, 24), params(0, 0xa1, 0)), t);
    assert_eq!(reg.status, 0);
    let resv = plain::pass_through(dev, &request(cdb_out(1, 5, 24), params(0xa1, 0, 0)), t);
    assert_eq!(resv.status, 0);
    let keys = plain::pass_through(dev, &request(cdb_in(0, 8192), Vec::new()), t);
    assert_eq!(keys.status, 0);
    assert_eq!(keys.payload.len(), 16, "header + one key");
    assert_eq!(&keys.payload[8..16], &0xa1u64.to_be_bytes());
    // The allocation length cuts the payload, as on the wire.
    let short = plain::pass_through(dev, &request(cdb_in(0, 12), Vec::new()), t);
    assert_eq!(short.status, 0, "{}", describe(&short));
    assert_eq!(short.payload.len(), 12);
    // Another initiator's REGISTER AND MOVE-less RESERVE: RESERVATION CONFLICT, no sense.
    let other = plain::pass_through(&b.fakes[0], &request(cdb_out(1, 5, 24), params(0, 0, 0)), t);
    assert_eq!(other.status, 0x18);
    assert!(other.sense.iter().all(|x| *x == 0));
    // Too short a parameter list: the target's own ILLEGAL REQUEST 1A/00.
    let bad = plain::pass_through(dev, &request(cdb_out(0, 0, 8), vec![0; 8]), t);
    assert_eq!(
        (bad.status, bad.sense[2] & 0x0f, bad.sense[12]),
        (2, 5, 0x1a)
    );
}

fn map<'a>(paths: &'a [crate::PrPath]) -> Map<'a> {
    Map {
        name: "3600140500000000000000000000000a1",
        paths,
        multipathd: None,
        timeout: Duration::from_secs(1),
    }
}

#[test]
fn multipath_register_puts_the_guest_key_on_every_path_and_release_finds_the_holder() {
    let lu = FakeLu::lio("mp1");
    let a = host(&lu, IQN_A, 0x100);
    let m = map(&a.paths);
    let r = m.execute(&request(cdb_out(0, 0, 24), params(0, 0x1234, 0)));
    assert_eq!(r.status, 0, "{}", describe(&r));
    let regs = lu.registrations();
    assert_eq!(regs.len(), 2, "{regs:?}");
    assert!(regs.iter().all(|g| g.key == 0x1234));
    let ports: Vec<_> = regs.iter().map(|g| g.port).collect();
    assert!(ports.contains(&RelTgtPortId(1)) && ports.contains(&RelTgtPortId(2)));

    // Reserve (type 1: one holder nexus), then release: the release must reach the holder.
    let r = m.execute(&request(cdb_out(1, 1, 24), params(0x1234, 0, 0)));
    assert_eq!(r.status, 0, "{}", describe(&r));
    assert_eq!(lu.reservation(), Some((0x1234, PrType::WriteExclusive)));
    let swapped: Vec<_> = a.paths.iter().rev().cloned().collect();
    let r = map(&swapped).execute(&request(cdb_out(2, 1, 24), params(0x1234, 0, 0)));
    assert_eq!(r.status, 0, "{}", describe(&r));
    assert_eq!(lu.reservation(), None, "released on the holder path");

    // READ FULL STATUS (which libmpathpersist refuses) comes back from a path.
    let full = m.execute(&request(cdb_in(3, 8192), Vec::new()));
    assert_eq!(full.status, 0);
    let parsed = sm_core::scsi::wire::pr_in::parse_read_full_status(&full.payload).unwrap();
    assert_eq!(parsed.registrants.len(), 2);

    // Unregister: every path let go.
    let r = m.execute(&request(cdb_out(0, 0, 24), params(0x1234, 0, 0)));
    assert_eq!(r.status, 0);
    assert!(lu.registrations().is_empty());
}

#[test]
fn multipath_a_wrong_key_is_the_target_s_conflict_and_nothing_changes() {
    let lu = FakeLu::lio("mp2");
    let a = host(&lu, IQN_A, 0x100);
    let m = map(&a.paths);
    assert_eq!(
        m.execute(&request(cdb_out(0, 0, 24), params(0, 0x77, 0)))
            .status,
        0
    );
    let r = m.execute(&request(cdb_out(0, 0, 24), params(0x99, 0x88, 0)));
    assert_eq!(r.status, 0x18, "{}", describe(&r));
    assert!(lu.registrations().iter().all(|g| g.key == 0x77));
}

#[test]
fn multipath_a_failed_path_is_skipped_and_unit_attentions_stay_on_their_path() {
    let lu = FakeLu::lio("mp3");
    let a = host(&lu, IQN_A, 0x100);
    let b = host(&lu, IQN_B, 0x200);
    let m = map(&a.paths);
    a.fakes[0].set_fault(Some(Fault::Down));
    let r = m.execute(&request(cdb_out(0, 0, 24), params(0, 0x55, 0)));
    assert_eq!(r.status, 0, "{}", describe(&r));
    assert_eq!(lu.registrations().len(), 1, "the live path only");
    a.fakes[0].set_fault(None);
    // B preempts A: A's next command on a path gets "registrations preempted" first.
    let mb = map(&b.paths);
    assert_eq!(
        mb.execute(&request(cdb_out(0, 0, 24), params(0, 0x66, 0)))
            .status,
        0
    );
    assert_eq!(
        mb.execute(&request(cdb_out(4, 5, 24), params(0x66, 0x55, 0)))
            .status,
        0
    );
    let keys = m.execute(&request(cdb_in(0, 64), Vec::new()));
    assert_eq!(
        keys.status,
        0,
        "the unit attention is not the guest's answer: {}",
        describe(&keys)
    );
    assert_eq!(&keys.payload[8..16], &0x66u64.to_be_bytes());
    // A scripted unit attention on a path is re-sent there.
    lu.script(
        Some(sm_core::scsi::ScsiTransport::device(&a.fakes[1])),
        &[0x5e],
        FakeReply::Status {
            status: 2,
            sense: vec![
                0x70, 0, 6, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x29, 0x07, 0, 0, 0, 0,
            ],
        },
        2,
    );
    let keys = map(&a.paths[1..]).execute(&request(cdb_in(0, 64), Vec::new()));
    assert_eq!(keys.status, 0, "{}", describe(&keys));
}

#[test]
fn multipath_with_every_path_down_is_a_clear_failure() {
    let lu = FakeLu::lio("mp4");
    let a = host(&lu, IQN_A, 0x100);
    for f in &a.fakes {
        f.set_fault(Some(Fault::Down));
    }
    let r = map(&a.paths).execute(&request(cdb_in(0, 64), Vec::new()));
    assert_eq!(r.status, 2);
    assert!(r.payload.is_empty());
}

/// A tiny deterministic generator (xorshift64*), so a failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Checks that `out` (after the 4-byte feature word) is whole replies: a status the helper can
/// send, a size within 8 KiB and the bytes it announces.
fn well_formed(out: &[u8]) -> Result<usize, String> {
    if out.len() < 4 || out[..4] != [0, 0, 0, 0] {
        return Err("no feature word".into());
    }
    let mut rest = &out[4..];
    let mut n = 0;
    while !rest.is_empty() {
        if rest.len() < REPLY_HEADER_SIZE {
            return Err(format!("a partial header of {} bytes", rest.len()));
        }
        let status = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let sz = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        if status > 0xff || sz > protocol::DATA_SIZE || (status != 0 && sz != 0) {
            return Err(format!("status {status:#x} size {sz}"));
        }
        if rest.len() < REPLY_HEADER_SIZE + sz {
            return Err("payload shorter than announced".into());
        }
        rest = &rest[REPLY_HEADER_SIZE + sz..];
        n += 1;
    }
    Ok(n)
}

/// Random byte streams, mostly near-valid (PR opcodes, small lengths, fds on some chunks),
/// through the real dispatcher on /dev/null descriptors: never a panic, every reply whole.
/// `PRH_FUZZ_CASES` sets the count (CI runs 10^6 in release).
#[test]
fn fuzz_random_request_streams() {
    let cases: u64 = std::env::var("PRH_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let d = Dispatcher::new(
        MultipathMode::Auto,
        sm_core::host::sysfs::Sysfs::new("/nonexistent"),
        None,
        Duration::from_millis(10),
    );
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut replies = 0usize;
    for case in 0..cases {
        let mut m = Mem::default();
        let feat = if rng.below(50) == 0 {
            rng.next() as u32
        } else {
            0
        };
        m.send(&feat.to_be_bytes(), 0);
        for _ in 0..rng.below(4) + 1 {
            let mut c = [0u8; CDB_SIZE];
            for b in &mut c {
                *b = rng.next() as u8;
            }
            c[0] = match rng.below(10) {
                0 => rng.next() as u8,
                1..=5 => 0x5e,
                _ => 0x5f,
            };
            if rng.below(4) != 0 {
                let len = rng.below(64) as u16;
                c[7..9].copy_from_slice(&len.to_be_bytes());
            }
            let cut = rng.below(CDB_SIZE as u64 + 1) as usize;
            let fds = match rng.below(20) {
                0 => 0,
                1 => 2,
                _ => 1,
            };
            m.send(&c[..cut], fds);
            m.send(&c[cut..], 0);
            let plen = if rng.below(3) == 0 {
                rng.below(80) as usize
            } else {
                usize::from(u16::from_be_bytes([c[7], c[8]]))
            };
            let p: Vec<u8> = (0..plen.min(9000)).map(|_| rng.next() as u8).collect();
            if c[0] == 0x5f {
                m.send(&p, 0);
            }
        }
        let _ = serve(&mut m, &d);
        match well_formed(&m.out) {
            Ok(n) => replies += n,
            Err(e) => panic!("case {case}: {e}"),
        }
    }
    assert!(
        replies > 0,
        "some requests were well-formed enough to be answered"
    );
}
