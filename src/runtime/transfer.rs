//! Leadership transfer in the runtime (dissertation §3.10): the leader's
//! side of a transfer request, and the callers waiting for it to end.
//!
//! A caller is answered once this node sees the target lead (`Ok`), once the
//! transfer was abandoned while this node still leads (`Timeout`: the target
//! may yet win an election it started), once another node than the target
//! took over (`NoLeader`: retried there by the caller), or at its deadline.
//! The core is the one judge: after every core call [`TransferWaiters::settle`]
//! compares its state with what the waiters expect.

use super::node::Node;
use super::proposals::{Completion, PendingCommand};
use crate::core::{RaftCore, Role, TransferError};
use crate::error::{Error, Result};
use crate::options::Options;
use bytes::Bytes;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

struct Waiter {
    target: String,
    deadline: Instant,
    done: Completion,
}

#[derive(Default)]
struct State {
    waiting: Vec<Waiter>,
    /// The core's transfer as last seen, to tell when one ends.
    active: Option<String>,
    /// Set by [`TransferWaiters::fail_all`]: nobody waits after it.
    closed: bool,
}

/// Thread-safe list of callers waiting for a transfer; short, since one runs at a time.
#[derive(Default)]
pub struct TransferWaiters {
    state: Mutex<State>,
    /// Whether anyone waits or a transfer was seen under way: settle runs
    /// after every core call, and without either has nothing to look at.
    busy: AtomicBool,
}

/// What a core call left to do about transfers, once the core is unlocked;
/// owned by the caller, which runs the answers on its own thread.
#[derive(Default)]
pub struct Settled {
    pub answers: Vec<(Completion, Result<Option<Bytes>>)>,
    /// A transfer to this node ended (won, abandoned or cut short by a
    /// change of leadership): the proposals it held back may go now.
    pub ended: Option<String>,
}

/// How long the leader waits for a transfer: the core abandons it after one
/// election timeout; the second covers the target's election.
pub fn transfer_timeout(opts: &Options) -> Duration {
    Duration::from_micros(opts.check_leader_us.saturating_mul(2))
}

impl TransferWaiters {
    /// Nobody waits for a transfer.
    pub fn is_empty(&self) -> bool {
        self.state.lock().waiting.is_empty()
    }

    /// Waits for the transfer to `target`; answered by a later [`settle`](Self::settle).
    /// `Err`: closed (the node closes or failed), for the caller to answer.
    pub fn wait(
        &self,
        target: String,
        deadline: Instant,
        done: Completion,
    ) -> std::result::Result<(), Completion> {
        let mut st = self.state.lock();
        if st.closed {
            return Err(done);
        }
        st.waiting.push(Waiter {
            target,
            deadline,
            done,
        });
        self.busy.store(true, Ordering::Release);
        Ok(())
    }

    /// Called with the core locked after every core call: takes the waiters
    /// whose transfer is over, with their answers, and notes whether one ended.
    pub fn settle(&self, core: &RaftCore) -> Settled {
        let active = core.transferring_to();
        if active.is_none() && !self.busy.load(Ordering::Acquire) {
            return Settled::default();
        }
        let mut st = self.state.lock();
        let ended = st.active.take_if(|a| Some(a.as_str()) != active);
        if st.active.is_none() {
            st.active = active.map(str::to_string);
        }
        let mut answers = Vec::new();
        if !st.waiting.is_empty() {
            let waiting = std::mem::take(&mut st.waiting);
            for w in waiting {
                match outcome(core, &w.target) {
                    Some(result) => answers.push((w.done, result)),
                    None => st.waiting.push(w),
                }
            }
        }
        let busy = !st.waiting.is_empty() || st.active.is_some();
        self.busy.store(busy, Ordering::Release);
        Settled { answers, ended }
    }

    /// Answers `Timeout` to waiters whose deadline passed.
    pub fn expire(&self, now: Instant) {
        let expired: Vec<Waiter> = {
            let mut st = self.state.lock();
            if st.waiting.is_empty() {
                return;
            }
            let (gone, keep) = std::mem::take(&mut st.waiting)
                .into_iter()
                .partition(|w| w.deadline <= now);
            st.waiting = keep;
            gone
        };
        for w in expired {
            (w.done)(Err(Error::Timeout(format!(
                "{} did not become leader in time; it may still win an election it started",
                w.target
            ))));
        }
    }

    /// Answers every waiter with `err`, and closes: nobody waits after it.
    pub fn fail_all(&self, err: &Error) {
        let all = {
            let mut st = self.state.lock();
            st.closed = true;
            std::mem::take(&mut st.waiting)
        };
        for w in all {
            (w.done)(Err(err.clone()));
        }
    }
}

/// The answer for a caller waiting for `target` to lead, if it is due.
fn outcome(core: &RaftCore, target: &str) -> Option<Result<Option<Bytes>>> {
    if core.leader() == Some(target) {
        return Some(Ok(None));
    }
    if core.role() == Role::Leader {
        if core.transferring_to() == Some(target) {
            return None;
        }
        return Some(Err(Error::Timeout(format!(
            "{target} did not take over within an election timeout, so the transfer was abandoned \
             and {} leads on (it may still win an election it started)",
            core.id()
        ))));
    }
    // (No leader known yet: an election is under way.)
    let other = core.leader()?;
    Some(Err(Error::NoLeader(format!(
        "{other} became leader instead of {target}"
    ))))
}

impl Node {
    /// Leader: starts a transfer of leadership to `target`; `done` is
    /// answered when it is over, at the latest at `deadline` or after
    /// [`transfer_timeout`].
    pub(super) fn transfer_leadership(&self, target: String, deadline: Instant, done: Completion) {
        if let Err(e) = self.check_usable() {
            return done(Err(e));
        }
        let deadline = deadline.min(Instant::now() + transfer_timeout(&self.opts));
        // Registered under the core lock: the dispatch of this very call settles it.
        let refused = self.with_core(|core| match core.transfer_leader(&target) {
            Ok(()) => match self.waiters.transfers.wait(target.clone(), deadline, done) {
                Ok(()) => None,
                Err(done) => Some((done, self.unusable())),
            },
            Err(e) => Some((done, transfer_error(e))),
        });
        if let Some((done, e)) = refused {
            done(Err(e));
        }
    }
}

impl Node {
    /// Keeps commands refused because a transfer runs for the next round,
    /// but those whose caller has given up: they are refused (not applied).
    pub(super) fn hold_back(&self, pending: Vec<PendingCommand>) {
        let now = Instant::now();
        let (late, keep): (Vec<_>, Vec<_>) = pending.into_iter().partition(|c| c.deadline <= now);
        for cmd in self.waiters.proposals.put_back(keep) {
            (cmd.done)(Err(self.unusable()));
        }
        for cmd in late {
            (cmd.done)(Err(Error::NoLeader(
                "leadership was being transferred; the command was not applied".into(),
            )));
        }
    }
}

/// The caller's view of a refused transfer.
fn transfer_error(e: TransferError) -> Error {
    match e {
        TransferError::NotLeader { leader: Some(l) } => {
            Error::NoLeader(format!("this node is not the leader ({l} is)"))
        }
        TransferError::NotLeader { leader: None } => Error::NoLeader("this node is not the leader".into()),
        e @ (TransferError::InProgress(_) | TransferError::ConfChangeInProgress(_)) => {
            Error::Busy(e.to_string())
        }
        e @ TransferError::NotVoter(_) => Error::InvalidArgument(e.to_string()),
    }
}
