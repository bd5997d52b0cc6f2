//! Linearizable reads by ReadIndex (core/read.rs) in the runtime: reads
//! queue here; a caller that finds fewer than [`MAX_ROUNDS_IN_FLIGHT`]
//! rounds out starts one itself for every read queued (one `ctx`), and the
//! thread that learns a round's outcome starts the next for those that
//! queued meanwhile. A confirmed read is served on that same thread if the
//! state machine has applied its index, else by the apply thread once it
//! has. Nothing goes to the log. The primary's tick starts a round for
//! reads left queued behind a round whose answer was lost.
//!
//! With lease reads on, a leader whose lease holds serves the read on the
//! caller's thread (once applied at the commit index), without a round.

use super::node::Node;
use super::proposals::Completion;
use crate::core::ReadState;
use crate::error::Error;
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

struct Read {
    query: Query,
    deadline: Instant,
    done: Completion,
}

/// What a linearizable read reads.
pub enum Query {
    /// A key's value.
    Get(Bytes),
    /// A range of keys with their revisions, or their number (`KvList`).
    Range(crate::wire::Range),
    /// A lease's TTL, time left and keys (`LeaseInfo`).
    Lease(u64),
    /// Redis commands that only read (`RedisReplies`).
    Redis(crate::wire::RedisBatch),
}

/// Rounds a node's callers keep out at once. One: reads that arrive while
/// it is out all ride the next, so a burst costs two rounds, not one per
/// read (measured: 2 or 3 gave no more reads/s on 2 cores, only more messages).
const MAX_ROUNDS_IN_FLIGHT: usize = 1;

/// What a Ready's read verdicts leave to do once the core is unlocked.
#[derive(Default)]
pub struct Settled {
    /// Reads whose round failed: answer them (retryable).
    pub failed: Vec<Completion>,
    /// Some reads were confirmed: serve those already applied.
    pub serve: bool,
    /// A round ended with reads queued behind it: start the next.
    pub next_round: bool,
}

#[derive(Default)]
struct State {
    /// Not yet in a round.
    queued: Vec<Read>,
    /// In a round, by its ctx.
    confirming: HashMap<u64, Vec<Read>>,
    /// Confirmed, by the index to apply before reading.
    confirmed: BTreeMap<u64, Vec<Read>>,
    /// The last round's ctx. Starts at a random point in every incarnation,
    /// so a late answer meant for an earlier one matches no round of this one.
    next_ctx: u64,
    /// Set by [`Reads::fail_all`]: no read is queued after it.
    closed: bool,
}

/// The reads of one node. Thread-safe.
pub struct Reads {
    state: Mutex<State>,
}

impl Default for Reads {
    fn default() -> Self {
        let state = State {
            next_ctx: rand::random(),
            ..State::default()
        };
        Reads {
            state: Mutex::new(state),
        }
    }
}

impl Reads {
    /// No read queued, in a round or waiting for its index to apply.
    pub fn is_empty(&self) -> bool {
        let s = self.state.lock();
        s.queued.is_empty() && s.confirming.is_empty() && s.confirmed.is_empty()
    }

    /// Queues a read; returns whether the caller should start a round now.
    /// `Err`: closed, the completion is the caller's to answer.
    pub(super) fn push(
        &self,
        query: Query,
        deadline: Instant,
        done: Completion,
    ) -> std::result::Result<bool, Completion> {
        let mut s = self.state.lock();
        if s.closed {
            return Err(done);
        }
        s.queued.push(Read {
            query,
            deadline,
            done,
        });
        Ok(s.confirming.len() < MAX_ROUNDS_IN_FLIGHT)
    }

    /// A read already confirmed at `index` (by the lease). `Err`: closed.
    fn push_confirmed(
        &self,
        index: u64,
        query: Query,
        deadline: Instant,
        done: Completion,
    ) -> std::result::Result<(), Completion> {
        let mut s = self.state.lock();
        if s.closed {
            return Err(done);
        }
        s.confirmed.entry(index).or_default().push(Read {
            query,
            deadline,
            done,
        });
        Ok(())
    }

    /// Takes the queued reads as one round; its ctx, if any were queued.
    fn start_round(&self) -> Option<u64> {
        let mut s = self.state.lock();
        if s.queued.is_empty() {
            return None;
        }
        s.next_ctx = s.next_ctx.wrapping_add(1);
        let ctx = s.next_ctx;
        let batch = std::mem::take(&mut s.queued);
        s.confirming.insert(ctx, batch);
        Some(ctx)
    }

    /// The core's verdicts on rounds (from a Ready), under the core's lock.
    pub fn settle(&self, confirmed: &[ReadState], failed: &[u64]) -> Settled {
        let mut out = Settled::default();
        if confirmed.is_empty() && failed.is_empty() {
            return out;
        }
        let mut s = self.state.lock();
        for rs in confirmed {
            if let Some(batch) = s.confirming.remove(&rs.ctx) {
                s.confirmed.entry(rs.index).or_default().extend(batch);
                out.serve = true;
            }
        }
        for ctx in failed {
            if let Some(batch) = s.confirming.remove(ctx) {
                out.failed.extend(batch.into_iter().map(|r| r.done));
            }
        }
        out.next_round = !s.queued.is_empty() && s.confirming.len() < MAX_ROUNDS_IN_FLIGHT;
        out
    }

    /// Whether reads wait in the queue.
    fn has_queued(&self) -> bool {
        !self.state.lock().queued.is_empty()
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
            // A round whose reads all gave up no longer holds the next one back.
            s.confirming.retain(|_, reads| !reads.is_empty());
            s.confirmed.retain(|_, reads| !reads.is_empty());
            out
        };
        for r in expired {
            (r.done)(Err(Error::Timeout("no read index confirmed in time".into())));
        }
    }

    /// Fails every read, and every later one (the node closes or failed).
    pub fn fail_all(&self, err: &Error) {
        let all: Vec<Read> = {
            let mut s = self.state.lock();
            s.closed = true;
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
    pub(super) fn read_by_index(&self, query: Query, deadline: Instant, done: Completion) {
        if let Err(e) = self.check_usable() {
            return done(Err(e));
        }
        if self.opts.lease_reads {
            let now = super::monotonic_us();
            let leased = self.inspect(|c| c.lease_read_index(now).map(|i| (i, c.applied())));
            if let Some((index, applied)) = leased {
                self.metrics
                    .lease_reads
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if applied >= index {
                    return done(self.read_local(&query));
                }
                if let Err(done) = self.waiters.reads.push_confirmed(index, query, deadline, done) {
                    return done(Err(self.unusable()));
                }
                // The apply thread may have passed `index` since: look again.
                return self.serve_reads();
            }
        }
        self.metrics
            .read_index_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self.waiters.reads.push(query, deadline, done) {
            Ok(true) => self.start_read_round(),
            Ok(false) => {}
            Err(done) => done(Err(self.unusable())),
        }
    }

    /// One confirmation round for every read queued.
    pub(super) fn start_read_round(&self) {
        if let Some(ctx) = self.waiters.reads.start_round() {
            // The time now: a leader may confirm it on its lease, which must
            // be judged at this moment, not at the last time its core heard.
            let now = super::monotonic_us();
            self.with_core(|core| core.read_index(ctx, now));
        }
    }

    /// Primary's tick: reads queued behind rounds still out (an answer lost
    /// with a connection) get a round of their own.
    pub(super) fn restart_stalled_reads(&self) {
        if self.waiters.reads.has_queued() {
            self.start_read_round();
        }
    }

    /// Serves the confirmed reads the state machine has caught up with.
    pub(super) fn serve_reads(&self) {
        // Called after every apply batch: no core lock when there is nothing to serve.
        if !self.waiters.reads.has_confirmed() {
            return;
        }
        let applied = self.inspect(|core| core.applied());
        for r in self.waiters.reads.take_servable(applied) {
            (r.done)(self.read_local(&r.query));
        }
    }

    fn read_local(&self, query: &Query) -> Result<Option<Bytes>, Error> {
        match query {
            Query::Get(key) => match self.state_machine.get(key) {
                Ok(Some(v)) => Ok(Some(Bytes::from(v))),
                Ok(None) => Err(Error::NotFound),
                Err(e) => Err(e),
            },
            Query::Range(r) => {
                use prost::Message as _;
                Ok(Some(Bytes::from(self.state_machine.range(r)?.encode_to_vec())))
            }
            Query::Lease(id) => {
                use prost::Message as _;
                Ok(Some(Bytes::from(
                    self.state_machine.lease_info(*id)?.encode_to_vec(),
                )))
            }
            Query::Redis(b) => {
                use prost::Message as _;
                Ok(Some(Bytes::from(
                    self.state_machine.redis_read(b)?.encode_to_vec(),
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::{unbounded, Receiver};
    use std::time::Duration;

    fn read() -> (Completion, Receiver<crate::error::Result<Option<Bytes>>>) {
        let (tx, rx) = unbounded();
        let done: Completion = Box::new(move |r| {
            let _ = tx.send(r);
        });
        (done, rx)
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    /// Issue 20, item 6: an answer to a round of the node's previous
    /// incarnation (delayed in the network past a restart) must not match a
    /// round of this one.
    #[test]
    fn the_rounds_of_a_new_incarnation_are_not_numbered_like_the_last_ones() {
        let rounds = |reads: &Reads| -> Vec<u64> {
            (0..3)
                .map(|_| {
                    let (done, _rx) = read();
                    assert!(reads.push(Query::Get(Bytes::new()), later(), done).is_ok());
                    reads.start_round().unwrap()
                })
                .collect()
        };
        let before = rounds(&Reads::default());
        let after = rounds(&Reads::default());
        assert!(
            after.iter().all(|ctx| !before.contains(ctx)),
            "{before:?} then {after:?}"
        );
    }

    /// Issue 20, item 9: a read queued after the node closed is handed back
    /// to its caller to answer, not left in a table nobody drains.
    #[test]
    fn no_read_is_queued_once_the_reads_are_failed() {
        let reads = Reads::default();
        reads.fail_all(&Error::Stopped("closed".into()));
        let (done, rx) = read();
        let Err(back) = reads.push(Query::Get(Bytes::new()), later(), done) else {
            panic!("queued after the close")
        };
        back(Err(Error::Stopped("closed".into())));
        assert!(matches!(rx.try_recv().unwrap(), Err(Error::Stopped(_))));
        let (done, _rx) = read();
        assert!(reads
            .push_confirmed(1, Query::Get(Bytes::new()), later(), done)
            .is_err());
        assert!(reads.start_round().is_none());
        assert!(!reads.has_confirmed());
    }
}
