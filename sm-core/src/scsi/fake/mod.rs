//! `FakeScsi`: an in-memory [`ScsiTransport`] that behaves like a LIO logical unit (feature
//! `test-utils`; re-exported from `sm_core::testing`).
//!
//! A [`FakeLu`] is one logical unit with LIO's identity data, ALUA target port groups and
//! persistent reservation state. [`FakeLu::path`] gives a [`FakeScsi`]: one I_T nexus
//! (initiator name + ISID, through one relative target port). Any number of paths, from any
//! number of initiators ("hosts"), share the LU's state, so upper layers can test
//! multipath-aware registration, fencing between two hosts and ALUA failover without a lab.
//!
//! What is emulated, following LIO 6.1 (`target_core_pr.c`, `target_core_alua.c`) and checked
//! against bytes captured from it (`tests/fixtures/scsi/lio-6.1/`):
//! - INQUIRY (standard, VPD 0x00/0x80/0x83 with per-port designators), TEST UNIT READY,
//!   READ CAPACITY(16), READ(10)/WRITE(10) on a sparse block store, REPORT LUNS,
//!   REQUEST SENSE;
//! - RTPG (standard and extended header, LIO's short extended length as an option), STPG
//!   (explicit ALUA only, status "altered by STPG", UNIT ATTENTION 2A/06 to the other nexuses
//!   of the changed groups), per-state command filtering (NOT READY 04/0A, 04/0B, 04/0C, 04/12);
//! - PERSISTENT RESERVE IN (all four service actions, with LIO's truncation rules) and OUT
//!   (REGISTER [AND IGNORE EXISTING KEY] incl. ALL_TG_PT and SPEC_I_PT, RESERVE, RELEASE,
//!   CLEAR, PREEMPT [AND ABORT], REGISTER AND MOVE) per I_T nexus, PRgeneration, the
//!   non-holder access rules for every type, LIO's NOT READY 08/00 to RESERVE/RELEASE/CLEAR
//!   from an unregistered nexus, UNIT ATTENTIONs 2A/03..05, and the "PR state directory
//!   missing" mode in which REGISTER is applied and still answered with 08/00;
//! - descriptor-format sense above 2^32 blocks, fixed format below (LIO's rule).
//!
//! Tests can also script replies (recorded bytes, any status or sense, transport errors) and
//! inject per-path faults. Every command is recorded in [`FakeLu::log`].

mod alua;
mod identity;
mod pr;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nix::errno::Errno;

use super::alua::{AccessState, RelTgtPortId, SupportedStates, TpgId, Tpgs};
use super::cdb;
use super::error::{self, Condition, RawStatus, ScsiError, classify};
use super::pr::PrType;
use super::transport::{Completion, DataDir, RawOutcome, RetryPolicy, ScsiTransport};
use super::wire::sense::{SenseFormat, SenseInfo, SenseKey};

/// One I_T nexus: an initiator port (iSCSI name + ISID) through one target port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Nexus {
    /// Initiator name (e.g. `iqn.2026-01.lab.host:hosta`).
    pub initiator: String,
    /// Session ISID (48 bits).
    pub isid: u64,
    /// Relative target port the session logged into.
    pub port: RelTgtPortId,
}

impl Nexus {
    /// An iSCSI nexus.
    pub fn iscsi(initiator: &str, isid: u64, port: u16) -> Nexus {
        Nexus {
            initiator: initiator.into(),
            isid,
            port: RelTgtPortId(port),
        }
    }

    /// LIO keeps registrations and unit attentions per node ACL, i.e. per initiator name and
    /// target port (all sessions of one initiator through one portal group share them).
    fn acl(&self) -> (String, RelTgtPortId) {
        (self.initiator.clone(), self.port)
    }
}

/// A target port of the LU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// Relative target port identifier.
    pub rtpi: RelTgtPortId,
    /// iSCSI target portal group tag (shown in the target port's SCSI name).
    pub tpgt: u16,
}

/// A target port group of the LU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// Group id.
    pub id: TpgId,
    /// Initial state.
    pub state: AccessState,
    /// Supported states (LIO: T, O, U, S, AN, AO = 0xcf).
    pub supported: SupportedStates,
    /// PREF bit.
    pub pref: bool,
    /// Member ports.
    pub ports: Vec<PortConfig>,
}

/// Identity and layout of a fake LU. `Default` is LUN 0 of the lab: LIO fileio, 256 MiB,
/// ports 1 and 2 in groups 1 (active/optimized) and 2 (active/non-optimized).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuConfig {
    /// T10 vendor (`LIO-ORG`).
    pub vendor: String,
    /// Product (`FILEIO`).
    pub product: String,
    /// Revision (`4.0`).
    pub revision: String,
    /// Unit serial number; the NAA WWID is derived from its hex digits as LIO does.
    pub serial: String,
    /// Target name (IQN).
    pub target: String,
    /// Number of logical blocks.
    pub blocks: u64,
    /// Block length.
    pub block_len: u32,
    /// TPGS (ALUA flavours).
    pub tpgs: Tpgs,
    /// Target port groups.
    pub groups: Vec<GroupConfig>,
    /// IMPLICIT TRANSITION TIME in the extended RTPG header.
    pub implicit_transition_secs: u8,
    /// Answer extended-header RTPG as LIO 6.1 does: RETURN DATA LENGTH without the 4 extra
    /// header bytes, and only RETURN DATA LENGTH + 4 bytes transferred.
    pub lio_rtpg_extended_quirk: bool,
}

impl Default for LuConfig {
    fn default() -> LuConfig {
        let group = |id: u16, state| GroupConfig {
            id: TpgId(id),
            state,
            supported: SupportedStates(0xcf),
            pref: false,
            ports: vec![PortConfig {
                rtpi: RelTgtPortId(id),
                tpgt: id,
            }],
        };
        LuConfig {
            vendor: "LIO-ORG".into(),
            product: "FILEIO".into(),
            revision: "4.0".into(),
            serial: "labserial0".into(),
            target: "iqn.2026-01.lab.storage:tgt1".into(),
            blocks: 0x80000,
            block_len: 512,
            tpgs: Tpgs::Both,
            groups: vec![
                group(1, AccessState::ActiveOptimized),
                group(2, AccessState::ActiveNonOptimized),
            ],
            implicit_transition_secs: 0,
            lio_rtpg_extended_quirk: true,
        }
    }
}

/// A scripted reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// GOOD, with these data-in bytes (truncated to the allocation).
    Data(Vec<u8>),
    /// GOOD without data.
    Good,
    /// Any SCSI status with these sense bytes (empty for none), e.g. recorded CHECK CONDITION.
    Status {
        /// SCSI status byte.
        status: u8,
        /// Sense bytes.
        sense: Vec<u8>,
    },
    /// An initiator-side failure (Linux host/driver status).
    Transport {
        /// Host status (`DID_*`).
        host_status: u16,
        /// Driver status.
        driver_status: u16,
    },
    /// The ioctl fails with this errno.
    Errno(Errno),
    /// The command times out.
    Timeout,
}

/// A fault applied to every command on one path until cleared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The session is gone (`DID_TRANSPORT_FAILFAST`).
    Down,
    /// This reply for every command.
    Reply(Reply),
}

/// One recorded command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// Path (device) name.
    pub path: String,
    /// The CDB.
    pub cdb: Vec<u8>,
    /// Data-out bytes.
    pub data_out: Vec<u8>,
    /// Data-in allocation (buffer length).
    pub data_in_len: usize,
    /// `Ok(bytes transferred)` or the condition.
    pub result: Result<usize, Condition>,
}

/// A registration, as LIO keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    id: u64,
    /// Initiator name.
    pub initiator: String,
    /// Target port.
    pub port: RelTgtPortId,
    /// ISID, when the registration was made through a session (ALL_TG_PT copies on other
    /// ports and format-00 TransportIDs have none and match every session).
    pub isid: Option<u64>,
    /// Key.
    pub key: u64,
    /// ALL_TG_PT.
    pub all_tg_pt: bool,
}

impl Registration {
    fn matches(&self, n: &Nexus) -> bool {
        self.initiator == n.initiator
            && self.port == n.port
            && self.isid.is_none_or(|i| i == n.isid)
    }
}

/// The reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resv {
    holder: u64,
    /// Type.
    pub pr_type: PrType,
    /// Scope.
    pub scope: u8,
}

struct Group {
    id: TpgId,
    state: AccessState,
    supported: SupportedStates,
    pref: bool,
    status: super::wire::rtpg::TpgStatus,
    ports: Vec<PortConfig>,
    /// Commands left before a pending transition completes, and its target state.
    transition: Option<(u32, AccessState)>,
}

struct Script {
    path: Option<String>,
    prefix: Vec<u8>,
    reply: Reply,
    times: usize,
}

struct State {
    cfg: LuConfig,
    groups: Vec<Group>,
    offline_ports: Vec<RelTgtPortId>,
    nexuses: Vec<Nexus>,
    registrations: Vec<Registration>,
    next_reg_id: u64,
    reservation: Option<Resv>,
    generation: u32,
    aptpl_active: bool,
    pr_dir_missing: bool,
    unit_attentions: HashMap<(String, RelTgtPortId), VecDeque<(u8, u8)>>,
    blocks: HashMap<u64, Vec<u8>>,
    scripts: Vec<Script>,
    faults: HashMap<String, Fault>,
    log: VecDeque<Logged>,
}

/// The command log keeps the most recent commands only (long-running tests and benches).
const LOG_MAX: usize = 4096;

/// What the emulation answers, before delivery.
enum Answer {
    Data(Vec<u8>),
    Good,
    Conflict,
    Check(SenseKey, u8, u8),
    Raw(Reply),
}

impl Answer {
    fn illegal(asc: u8) -> Answer {
        Answer::Check(SenseKey::IllegalRequest, asc, 0)
    }
}

/// Opcodes LIO's ALUA and reservation checks name (beyond those in [`cdb`]).
const LOG_SELECT: u8 = 0x4c;
const LOG_SENSE: u8 = 0x4d;
const MODE_SELECT_6: u8 = 0x15;
const MODE_SELECT_10: u8 = 0x55;
const MODE_SENSE_6: u8 = 0x1a;
const MODE_SENSE_10: u8 = 0x5a;
const RECEIVE_DIAGNOSTIC: u8 = 0x1c;
const SEND_DIAGNOSTIC: u8 = 0x1d;
const READ_BUFFER: u8 = 0x3c;
const WRITE_BUFFER: u8 = 0x3b;

/// ASC of ILLEGAL REQUEST answers.
const ASC_PARAM_LIST_LENGTH: u8 = 0x1a;
const ASC_INVALID_OPCODE: u8 = 0x20;
const ASC_LBA_OUT_OF_RANGE: u8 = 0x21;
const ASC_INVALID_CDB_FIELD: u8 = 0x24;
const ASC_INVALID_PARAM_LIST: u8 = 0x26;

/// A fake logical unit; clones share the same state.
#[derive(Clone)]
pub struct FakeLu {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for FakeLu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeLu")
            .field("serial", &self.lock().cfg.serial)
            .finish()
    }
}

impl Default for FakeLu {
    fn default() -> FakeLu {
        FakeLu::new(LuConfig::default())
    }
}

impl FakeLu {
    /// A LU with this configuration.
    pub fn new(cfg: LuConfig) -> FakeLu {
        let groups = cfg
            .groups
            .iter()
            .map(|g| Group {
                id: g.id,
                state: g.state,
                supported: g.supported,
                pref: g.pref,
                status: super::wire::rtpg::TpgStatus::None,
                ports: g.ports.clone(),
                transition: None,
            })
            .collect();
        FakeLu {
            state: Arc::new(Mutex::new(State {
                cfg,
                groups,
                offline_ports: Vec::new(),
                nexuses: Vec::new(),
                registrations: Vec::new(),
                next_reg_id: 1,
                reservation: None,
                generation: 0,
                aptpl_active: false,
                pr_dir_missing: false,
                unit_attentions: HashMap::new(),
                blocks: HashMap::new(),
                scripts: Vec::new(),
                faults: HashMap::new(),
                log: VecDeque::new(),
            })),
        }
    }

    /// The lab's LIO LU with another serial (and so another NAA WWID).
    pub fn lio(serial: &str) -> FakeLu {
        FakeLu::new(LuConfig {
            serial: serial.into(),
            ..LuConfig::default()
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A path (I_T nexus) to this LU named `name` (e.g. `/dev/sdb`). The nexus becomes known
    /// to the LU (it receives unit attentions, and counts as a node ACL for ALL_TG_PT).
    pub fn path(&self, name: &str, nexus: Nexus) -> FakeScsi {
        let mut s = self.lock();
        if !s.nexuses.contains(&nexus) {
            s.nexuses.push(nexus.clone());
        }
        FakeScsi {
            lu: self.clone(),
            nexus,
            name: name.into(),
            policy: fast_policy(),
        }
    }

    /// The NAA WWID (`36001405...`) as multipath shows it.
    pub fn wwid(&self) -> String {
        format!(
            "3{}",
            super::wire::hex(&identity::naa(&self.lock().cfg.serial))
        )
    }

    /// Target-side state change of a group (LIO's configfs write: an implicit transition);
    /// every nexus through the group's ports gets UNIT ATTENTION 2A/06.
    pub fn set_group_state(&self, tpg: TpgId, state: AccessState) {
        let mut s = self.lock();
        s.transition_group(
            tpg,
            state,
            super::wire::rtpg::TpgStatus::AlteredImplicitly,
            None,
        );
    }

    /// Puts a group in TRANSITIONING for the next `commands` commands the LU processes, then
    /// moves it to `to` (as an implicit transition).
    pub fn begin_transition(&self, tpg: TpgId, to: AccessState, commands: u32) {
        let mut s = self.lock();
        if let Some(g) = s.groups.iter_mut().find(|g| g.id == tpg) {
            g.state = AccessState::Transitioning;
            g.transition = Some((commands, to));
        }
    }

    /// Sets or clears the secondary OFFLINE state of a target port.
    pub fn set_port_offline(&self, port: RelTgtPortId, offline: bool) {
        let mut s = self.lock();
        s.offline_ports.retain(|p| *p != port);
        if offline {
            s.offline_ports.push(port);
        }
    }

    /// Current state of a group.
    pub fn group_state(&self, tpg: TpgId) -> Option<AccessState> {
        self.lock()
            .groups
            .iter()
            .find(|g| g.id == tpg)
            .map(|g| g.state)
    }

    /// LIO without its PR state directory: PR OUT commands that write APTPL metadata (every
    /// REGISTER, and others while APTPL is active) are applied and answered NOT READY 08/00.
    pub fn set_pr_state_dir_missing(&self, missing: bool) {
        self.lock().pr_dir_missing = missing;
    }

    /// Current registrations, in LIO's order.
    pub fn registrations(&self) -> Vec<Registration> {
        self.lock().registrations.clone()
    }

    /// The reservation: holder key (0 for All-Registrants), type.
    pub fn reservation(&self) -> Option<(u64, PrType)> {
        let s = self.lock();
        s.reservation.map(|r| (s.reservation_key(&r), r.pr_type))
    }

    /// PRgeneration.
    pub fn generation(&self) -> u32 {
        self.lock().generation
    }

    /// Unit attentions pending for a nexus's node ACL.
    pub fn pending_unit_attentions(&self, nexus: &Nexus) -> Vec<(u8, u8)> {
        self.lock()
            .unit_attentions
            .get(&nexus.acl())
            .map(|q| q.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Answers the next `times` commands starting with `prefix` (on path `path`, or any path)
    /// with `reply` instead of emulating them.
    pub fn script(&self, path: Option<&str>, prefix: &[u8], reply: Reply, times: usize) {
        self.lock().scripts.push(Script {
            path: path.map(Into::into),
            prefix: prefix.to_vec(),
            reply,
            times,
        });
    }

    /// The commands so far (the most recent 4096).
    pub fn log(&self) -> Vec<Logged> {
        self.lock().log.iter().cloned().collect()
    }

    /// The bytes of block `lba` (zeros if never written).
    pub fn block(&self, lba: u64) -> Vec<u8> {
        let s = self.lock();
        s.blocks
            .get(&lba)
            .cloned()
            .unwrap_or_else(|| vec![0; block_len(&s.cfg)])
    }

    fn fault(&self, path: &str, fault: Option<Fault>) {
        let mut s = self.lock();
        match fault {
            Some(f) => s.faults.insert(path.into(), f),
            None => s.faults.remove(path),
        };
    }
}

fn block_len(cfg: &LuConfig) -> usize {
    usize::try_from(cfg.block_len).unwrap_or(512)
}

/// Retries without sleeping, and a short transition deadline: tests stay fast.
fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        timeout: Duration::from_secs(1),
        max_attempts: 5,
        retry_delay: Duration::ZERO,
        transition_deadline: Duration::from_millis(500),
        transition_poll: Duration::ZERO,
    }
}

/// One path (I_T nexus) to a [`FakeLu`].
#[derive(Debug, Clone)]
pub struct FakeScsi {
    lu: FakeLu,
    nexus: Nexus,
    name: String,
    policy: RetryPolicy,
}

impl FakeScsi {
    /// The shared LU.
    pub fn lu(&self) -> &FakeLu {
        &self.lu
    }

    /// This path's nexus.
    pub fn nexus(&self) -> &Nexus {
        &self.nexus
    }

    /// Fails every command on this path (`Some`), or heals it (`None`).
    pub fn set_fault(&self, fault: Option<Fault>) {
        self.lu.fault(&self.name, fault);
    }

    /// Uses another retry policy (the default never sleeps).
    pub fn with_policy(mut self, policy: RetryPolicy) -> FakeScsi {
        self.policy = policy;
        self
    }
}

impl FakeScsi {
    /// One command: the emulated LU's answer delivered by `deliver`, logged with what `logged`
    /// makes of the result (bytes transferred in, or the condition).
    fn run<T>(
        &self,
        cdb: &[u8],
        mut data: DataDir<'_>,
        deliver: impl FnOnce(Answer, &mut DataDir<'_>, bool) -> T,
        logged: impl FnOnce(&T, usize) -> Result<usize, Condition>,
    ) -> T {
        let mut s = self.lu.lock();
        let (data_out, data_in_len) = match &data {
            DataDir::ToDevice(b) => (b.to_vec(), 0),
            DataDir::FromDevice(b) => (Vec::new(), b.len()),
            DataDir::None => (Vec::new(), 0),
        };
        let answer = s.answer(&self.name, &self.nexus, cdb, &data);
        let desc = s.cfg.blocks > u64::from(u32::MAX);
        let result = deliver(answer, &mut data, desc);
        let entry = Logged {
            path: self.name.clone(),
            cdb: cdb.to_vec(),
            data_out,
            data_in_len,
            result: logged(&result, data_in_len),
        };
        s.record(entry);
        result
    }
}

impl ScsiTransport for FakeScsi {
    fn execute(
        &self,
        cdb: &[u8],
        data: DataDir<'_>,
        _timeout: Duration,
    ) -> Result<Completion, ScsiError> {
        let name = self.name.clone();
        self.run(
            cdb,
            data,
            |answer, data, desc| deliver(&name, cdb, answer, data, desc),
            |result, data_in_len| match result {
                Ok(c) => Ok(c.transferred(data_in_len)),
                Err(e) => Err(e.condition()),
            },
        )
    }

    fn execute_raw(
        &self,
        cdb: &[u8],
        data: DataDir<'_>,
        _timeout: Duration,
    ) -> Result<RawOutcome, Errno> {
        self.run(
            cdb,
            data,
            |answer, data, desc| deliver_raw(cdb, answer, data, desc),
            |result, data_in_len| match result {
                Err(e) => Err(Condition::Io(*e)),
                Ok(r) => r
                    .condition()
                    .map_or(Ok(data_in_len.saturating_sub(r.resid)), Err),
            },
        )
    }

    fn device(&self) -> &str {
        &self.name
    }

    fn policy(&self) -> RetryPolicy {
        self.policy.clone()
    }
}

/// Turns an answer into what a real transport would return, through the one classifier.
fn deliver(
    device: &str,
    cdb: &[u8],
    answer: Answer,
    data: &mut DataDir<'_>,
    descriptor_sense: bool,
) -> Result<Completion, ScsiError> {
    match deliver_raw(cdb, answer, data, descriptor_sense) {
        Err(e) => Err(ScsiError::command(device, cdb, Condition::Io(e))),
        Ok(raw) => fold(
            device,
            cdb,
            RawStatus {
                status: raw.status,
                host_status: raw.host_status,
                driver_status: raw.driver_status,
                sense: &raw.sense,
            },
            raw.resid,
        ),
    }
}

/// Turns an answer into what SG_IO would report, before interpretation.
fn deliver_raw(
    cdb: &[u8],
    answer: Answer,
    data: &mut DataDir<'_>,
    descriptor_sense: bool,
) -> Result<RawOutcome, Errno> {
    let alloc = allocation_length(cdb);
    let transport = |host_status: u16, driver_status: u16| RawOutcome {
        status: 0,
        host_status,
        driver_status,
        resid: 0,
        sense: Vec::new(),
        duration: Duration::ZERO,
    };
    let (status, sense, bytes): (u8, Vec<u8>, Vec<u8>) = match answer {
        Answer::Data(b) => (error::STATUS_GOOD, Vec::new(), b),
        Answer::Good => (error::STATUS_GOOD, Vec::new(), Vec::new()),
        Answer::Conflict => (error::STATUS_RESERVATION_CONFLICT, Vec::new(), Vec::new()),
        Answer::Check(key, asc, ascq) => {
            let format = if descriptor_sense {
                SenseFormat::Descriptor
            } else {
                SenseFormat::Fixed
            };
            (
                error::STATUS_CHECK_CONDITION,
                SenseInfo::new(key, asc, ascq).with_format(format).encode(),
                Vec::new(),
            )
        }
        Answer::Raw(Reply::Data(b)) => (error::STATUS_GOOD, Vec::new(), b),
        Answer::Raw(Reply::Good) => (error::STATUS_GOOD, Vec::new(), Vec::new()),
        Answer::Raw(Reply::Status { status, sense }) => (status, sense, Vec::new()),
        Answer::Raw(Reply::Transport {
            host_status,
            driver_status,
        }) => return Ok(transport(host_status, driver_status)),
        Answer::Raw(Reply::Errno(e)) => return Err(e),
        Answer::Raw(Reply::Timeout) => return Ok(transport(error::DID_TIME_OUT, 0)),
    };
    let mut resid = data.len();
    if let DataDir::FromDevice(buf) = data {
        let n = bytes.len().min(buf.len()).min(alloc.unwrap_or(usize::MAX));
        buf[..n].copy_from_slice(&bytes[..n]);
        resid = buf.len() - n;
    } else if matches!(data, DataDir::ToDevice(_)) {
        resid = 0;
    }
    let driver_status = if sense.is_empty() {
        0
    } else {
        error::DRIVER_SENSE
    };
    Ok(RawOutcome {
        status,
        host_status: 0,
        driver_status,
        resid,
        sense,
        duration: Duration::ZERO,
    })
}

fn fold(
    device: &str,
    cdb: &[u8],
    raw: RawStatus<'_>,
    resid: usize,
) -> Result<Completion, ScsiError> {
    match classify(raw) {
        Ok(sense) => Ok(Completion {
            status: raw.status,
            resid,
            sense,
            duration: Duration::ZERO,
        }),
        Err((condition, sense)) => Err(ScsiError::Command {
            device: device.into(),
            op: cdb::Op::of(cdb),
            condition,
            sense,
            attempts: 1,
        }),
    }
}

/// The ALLOCATION LENGTH of the data-in CDBs we know.
fn allocation_length(c: &[u8]) -> Option<usize> {
    let be16 = |o: usize| {
        c.get(o..o + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    };
    let be32 = |o: usize| {
        c.get(o..o + 4)
            .and_then(|b| usize::try_from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])).ok())
    };
    match *c.first()? {
        cdb::INQUIRY => be16(3),
        cdb::REQUEST_SENSE => c.get(4).map(|b| usize::from(*b)),
        cdb::PERSISTENT_RESERVE_IN => be16(7),
        cdb::SERVICE_ACTION_IN_16 => be32(10),
        cdb::MAINTENANCE_IN | cdb::REPORT_LUNS => be32(6),
        _ => None,
    }
}

impl State {
    /// The key READ RESERVATION shows for `r`.
    fn reservation_key(&self, r: &Resv) -> u64 {
        if r.pr_type.all_registrants() {
            0
        } else {
            self.registrations
                .iter()
                .find(|g| g.id == r.holder)
                .map_or(0, |g| g.key)
        }
    }

    /// Queues a unit attention for every known nexus of an ACL (deduplicated, as LIO does).
    fn unit_attention(&mut self, acl: (String, RelTgtPortId), asc: u8, ascq: u8) {
        let q = self.unit_attentions.entry(acl).or_default();
        if !q.contains(&(asc, ascq)) {
            q.push_back((asc, ascq));
        }
    }

    /// Appends one command to the bounded log.
    fn record(&mut self, entry: Logged) {
        if self.log.len() == LOG_MAX {
            self.log.pop_front();
        }
        self.log.push_back(entry);
    }

    fn answer(&mut self, path: &str, n: &Nexus, c: &[u8], data: &DataDir<'_>) -> Answer {
        if let Some(f) = self.faults.get(path) {
            return Answer::Raw(match f {
                Fault::Down => Reply::Transport {
                    host_status: error::DID_TRANSPORT_FAILFAST,
                    driver_status: 0,
                },
                Fault::Reply(r) => r.clone(),
            });
        }
        if let Some(i) = self
            .scripts
            .iter()
            .position(|s| c.starts_with(&s.prefix) && s.path.as_deref().is_none_or(|p| p == path))
        {
            let reply = self.scripts[i].reply.clone();
            self.scripts[i].times -= 1;
            if self.scripts[i].times == 0 {
                self.scripts.remove(i);
            }
            return Answer::Raw(reply);
        }
        self.tick_transitions();
        let Some(&op) = c.first() else {
            return Answer::illegal(ASC_INVALID_OPCODE);
        };
        // LIO: unit attentions first (INQUIRY, REPORT LUNS and REQUEST SENSE pass), then the
        // ALUA state of the port, then the reservation.
        if !matches!(op, cdb::INQUIRY | cdb::REPORT_LUNS | cdb::REQUEST_SENSE)
            && let Some(q) = self.unit_attentions.get_mut(&n.acl())
            && let Some((asc, ascq)) = q.pop_front()
        {
            return Answer::Check(SenseKey::UnitAttention, asc, ascq);
        }
        if let Some(a) = self.alua_filter(n, c) {
            return a;
        }
        if self.reservation_conflict(n, c, data) {
            return Answer::Conflict;
        }
        match op {
            cdb::TEST_UNIT_READY => Answer::Good,
            cdb::INQUIRY => self.inquiry(n, c),
            cdb::REQUEST_SENSE => Answer::Data(SenseInfo::new(SenseKey::NoSense, 0, 0).encode()),
            cdb::REPORT_LUNS => Answer::Data(vec![0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            cdb::SERVICE_ACTION_IN_16
                if c.get(1).map(|b| b & 0x1f) == Some(cdb::SA_READ_CAPACITY_16) =>
            {
                Answer::Data(identity::capacity(&self.cfg).encode().to_vec())
            }
            cdb::READ_10 | cdb::WRITE_10 => self.read_write(c, data),
            cdb::MAINTENANCE_IN
                if c.get(1).map(|b| b & 0x1f) == Some(cdb::SA_TARGET_PORT_GROUPS) =>
            {
                self.rtpg(c)
            }
            cdb::MAINTENANCE_OUT
                if c.get(1).map(|b| b & 0x1f) == Some(cdb::SA_TARGET_PORT_GROUPS) =>
            {
                self.stpg(n, data)
            }
            cdb::PERSISTENT_RESERVE_IN => self.pr_in(c),
            cdb::PERSISTENT_RESERVE_OUT => self.pr_out(n, c, data),
            _ => Answer::illegal(ASC_INVALID_OPCODE),
        }
    }

    fn read_write(&mut self, c: &[u8], data: &DataDir<'_>) -> Answer {
        if c.len() < 10 {
            return Answer::illegal(ASC_INVALID_CDB_FIELD);
        }
        let lba = u64::from(u32::from_be_bytes([c[2], c[3], c[4], c[5]]));
        let count = u64::from(u16::from_be_bytes([c[7], c[8]]));
        if lba.saturating_add(count) > self.cfg.blocks {
            return Answer::illegal(ASC_LBA_OUT_OF_RANGE);
        }
        let bl = block_len(&self.cfg);
        if c[0] == cdb::WRITE_10 {
            if let DataDir::ToDevice(bytes) = data {
                for (i, chunk) in bytes
                    .chunks(bl)
                    .enumerate()
                    .take(usize::try_from(count).unwrap_or(0))
                {
                    let mut block = chunk.to_vec();
                    block.resize(bl, 0);
                    self.blocks
                        .insert(lba + u64::try_from(i).unwrap_or(0), block);
                }
            }
            Answer::Good
        } else {
            let mut out = Vec::new();
            for b in lba..lba + count {
                match self.blocks.get(&b) {
                    Some(v) => out.extend_from_slice(v),
                    None => out.resize(out.len() + bl, 0),
                }
            }
            Answer::Data(out)
        }
    }
}

#[cfg(test)]
mod tests;
