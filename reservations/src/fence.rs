//! Who holds a key, and fencing: PREEMPT AND ABORT of a key whose host is gone.
//!
//! A key is classified against the pool: a live pool host (never preempted by activation), a
//! pool host xapi reports dead (`host_metrics.live` false), or a key no pool host owns (a
//! host removed from the pool, another cluster, a guest cluster). A dead host's key is fenced
//! when the SR's [`Fencing`] policy allows; a key no pool host owns only when the SR also
//! says [`Foreign::Preempt`]; every fence is logged at `warn!` in SMlog.

use sm_core::scsi::PrOut;

use crate::engine::{Lu, OutResult};
use crate::error::PrError;
use crate::key::PrKey;
use crate::path::PrPath;
use crate::policy::{Fencing, Foreign, Policy};
use crate::pool::{Liveness, PoolKeys};

/// What a registered key stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// A pool host that xapi reports live.
    Live(String),
    /// A pool host that xapi reports dead.
    Dead(String),
    /// No pool host derives this key.
    Unknown(String),
}

impl Owner {
    /// The description used in messages.
    pub fn name(&self) -> &str {
        match self {
            Owner::Live(n) | Owner::Dead(n) | Owner::Unknown(n) => n,
        }
    }
}

/// Tells who owns a key.
pub trait Owners {
    /// Classifies `key`.
    fn owner(&self, key: u64) -> Result<Owner, PrError>;
}

/// The pool and a way to ask about liveness.
pub struct PoolOwners<'a> {
    /// The pool's hosts and keys.
    pub pool: &'a PoolKeys,
    /// Where liveness comes from (xapi).
    pub live: &'a dyn Liveness,
}

impl Owners for PoolOwners<'_> {
    fn owner(&self, key: u64) -> Result<Owner, PrError> {
        let name = self.pool.describe(key);
        Ok(match self.pool.owner(key) {
            Some(h) if self.live.is_live(h)? => Owner::Live(name),
            Some(_) => Owner::Dead(name),
            None => Owner::Unknown(name),
        })
    }
}

/// Owners when there is no pool to ask: every key is unknown (described as the key alone).
pub struct NoPool;

impl Owners for NoPool {
    fn owner(&self, key: u64) -> Result<Owner, PrError> {
        Ok(Owner::Unknown(PoolKeys::default().describe(key)))
    }
}

/// Whether the policy lets us fence `owner`.
pub fn may_fence(policy: &Policy, owner: &Owner) -> bool {
    policy.fencing != Fencing::Never
        && match owner {
            Owner::Live(_) => false,
            Owner::Dead(_) => true,
            Owner::Unknown(_) => policy.foreign == Foreign::Preempt,
        }
}

/// Removes every registration of `victim` (and takes its reservation, if it holds one) by
/// PREEMPT [AND ABORT] with `me` through `path`, which must be registered with `me`.
pub fn preempt(
    lu: &Lu<'_>,
    path: &PrPath,
    me: PrKey,
    victim: u64,
    policy: &Policy,
    abort: bool,
    why: &str,
) -> Result<OutResult, PrError> {
    let op = if abort {
        "PREEMPT AND ABORT"
    } else {
        "PREEMPT"
    };
    tracing::warn!(
        lu = lu.id(),
        path = %path.name,
        victim = format_args!("{victim:#018x}"),
        "FENCING: {op} of {why} by key {me}"
    );
    Ok(lu.out(
        path,
        &PrOut::Preempt {
            key: me.get(),
            victim,
            pr_type: policy.pr_type,
            abort,
        },
    ))
}

/// Whether the policy asks for PREEMPT AND ABORT rather than PREEMPT.
pub fn aborts(policy: &Policy) -> bool {
    policy.fencing == Fencing::PreemptDead
}
