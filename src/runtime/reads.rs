//! Linearizable reads by ReadIndex (core/read.rs) in the runtime: reads
//! queue here, the primary thread's NewCommand starts one confirmation
//! round for all those queued (one `ctx`), and once the core confirms the
//! round at an index, the apply thread serves each read from the state
//! machine as soon as it has applied that far. Nothing goes to the log.

use super::node::Node;
use super::proposals::Completion;
use crate::core::ReadState;
use crate::error::Error;
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

struct Read {
    key: Bytes,
    deadline: Instant,
    done: Completion,
}

#[derive(Default)]
struct State {
    /// Not yet in a round.
    queued: Vec<Read>,
    /// In a round, by its ctx.
    confirming: HashMap<u64, Vec<Read>>,
    /// Confirmed, by the index to apply before reading.
    confirmed: BTreeMap<u64, Vec<Read>>,
    next_ctx: u64,
}

/// The reads of one node. Thread-safe.
#[derive(Default)]
pub struct Reads {
    state: Mutex<State>,
}

impl Reads {
    /// Queues a read; returns whether the queue was empty (wake the primary).
    pub fn push(&self, key: Bytes, deadline: Instant, done: Completion) -> bool {
        let mut s = self.state.lock();
        s.queued.push(Read { key, deadline, done });
        s.queued.len() == 1
    }

    /// Takes the queued reads as one round; its ctx, if any were queued.
    fn start_round(&self) -> Option<u64> {
        let mut s = self.state.lock();
        if s.queued.is_empty() {
            return None;
        }
        s.next_ctx += 1;
        let ctx = s.next_ctx;
        let batch = std::mem::take(&mut s.queued);
        s.confirming.insert(ctx, batch);
        Some(ctx)
    }

    /// The core's verdicts on rounds (from a Ready); failed reads are returned to be answered.
    pub fn settle(&self, confirmed: &[ReadState], failed: &[u64]) -> Vec<Completion> {
        let mut s = self.state.lock();
        for rs in confirmed {
            if let Some(batch) = s.confirming.remove(&rs.ctx) {
                s.confirmed.entry(rs.index).or_default().extend(batch);
            }
        }
        let mut out = Vec::new();
        for ctx in failed {
            if let Some(batch) = s.confirming.remove(ctx) {
                out.extend(batch.into_iter().map(|r| r.done));
            }
        }
        out
    }

    /// Whether any confirmed read waits to be served.
    fn has_confirmed(&self) -> bool {
        !self.state.lock().confirmed.is_empty()
    }

    /// Reads confirmed at or below `applied`: ready to be served.
    fn take_servable(&self, applied: u64) -> Vec<Read> {
        let mut s = self.state.lock();
        let later = s.confirmed.split_off(&(applied + 1));
        let servable = std::mem::replace(&mut s.confirmed, later);
        servable.into_values().flatten().collect()
    }

    /// Fails every read whose caller has given up.
    pub fn expire(&self, now: Instant) {
        let expired: Vec<Read> = {
            let mut s = self.state.lock();
            let mut out = Vec::new();
            let mut keep = |reads: &mut Vec<Read>| {
                let (gone, kept) = std::mem::take(reads).into_iter().partition(|r| r.deadline <= now);
                *reads = kept;
                out.extend::<Vec<Read>>(gone);
            };
            keep(&mut s.queued);
            s.confirming.values_mut().for_each(&mut keep);
            s.confirmed.values_mut().for_each(&mut keep);
            out
        };
        for r in expired {
            (r.done)(Err(Error::Timeout("no read index confirmed in time".into())));
        }
    }

    /// Fails every read (the node is closing).
    pub fn fail_all(&self, err: &Error) {
        let all: Vec<Read> = {
            let mut s = self.state.lock();
            let mut all = std::mem::take(&mut s.queued);
            all.extend(std::mem::take(&mut s.confirming).into_values().flatten());
            all.extend(std::mem::take(&mut s.confirmed).into_values().flatten());
            all
        };
        for r in all {
            (r.done)(Err(err.clone()));
        }
    }
}

impl Node {
    /// A linearizable read of `key`, without a log entry.
    pub(super) fn read_by_index(&self, key: Bytes, deadline: Instant, done: Completion) {
        if let Err(e) = self.check_usable() {
            return done(Err(e));
        }
        if self.reads.push(key, deadline, done) {
            self.wake_primary();
        }
    }

    /// NewCommand: one confirmation round for every read queued.
    pub(super) fn start_read_round(&self) {
        if let Some(ctx) = self.reads.start_round() {
            self.with_core(|core| core.read_index(ctx));
        }
    }

    /// Apply thread: serves the confirmed reads the state machine has caught up with.
    pub(super) fn serve_reads(&self) {
        // Called after every apply batch: no core lock when there is nothing to serve.
        if !self.reads.has_confirmed() {
            return;
        }
        let applied = self.inspect(|core| core.applied());
        for r in self.reads.take_servable(applied) {
            let result = match self.state_machine.get(&r.key) {
                Ok(Some(v)) => Ok(Some(Bytes::from(v))),
                Ok(None) => Err(Error::NotFound),
                Err(e) => Err(e),
            };
            (r.done)(result);
        }
    }
}
