//! Clients' linearizable reads by ReadIndex (dissertation §6.4).
//!
//! Now and then a client reads on a random live node (leader, follower,
//! learner, spare or removed node alike) with a fresh ctx. When it asks,
//! the *floor* is recorded: the highest index known committed anywhere (see
//! [`Checker::read_floor`]). Every write acknowledged before the read began
//! is at or below it, and so is every value an earlier read returned (a
//! node's applied index is at most its commit index, which the checker
//! recorded before it applied), so a read that sees the floor sees every
//! write and every read that completed before it.
//!
//! The node's Ready answers with a `ReadState` (the index to wait for) or a
//! failure (counted: the client would retry). A confirmed read is then
//! *served* once the node's state machine has applied that index: at once,
//! or after later applies. It returns the register's value: the last write
//! applied, named by its index. Both the confirmed index and the served
//! value must reach the floor. That the served state is a committed prefix
//! is what the state machine checks already guarantee (each applied entry
//! is the committed one, in order, an installed snapshot is the committed
//! prefix, and the state machine holds exactly `1..=applied`).
//!
//! A crash drops the node's reads (its client times out); so does a read
//! that never gets an answer (a request lost on the way): counted at the end.

use super::*;

/// Probability that a client starts a read at a step.
const READ_RATE: f64 = 0.03;

/// A read asked, not answered yet.
struct Asked {
    node: usize,
    floor: u64,
    /// The step it was asked at: a leader's read confirmed in the same step
    /// was served on its lease, without a round.
    step: usize,
}

/// A read confirmed, waiting for its node to apply `index`.
struct Waiting {
    ctx: u64,
    index: u64,
    floor: u64,
}

/// The clients' reads in progress.
pub(super) struct Reads {
    next_ctx: u64,
    asked: HashMap<u64, Asked>,
    /// Per node: its confirmed reads, waiting for its state machine.
    waiting: Vec<Vec<Waiting>>,
}

impl Reads {
    pub(super) fn new(nodes: usize) -> Reads {
        Reads {
            next_ctx: 0,
            asked: HashMap::new(),
            waiting: (0..nodes).map(|_| Vec::new()).collect(),
        }
    }

    /// Reads begun and never answered or served.
    pub(super) fn outstanding(&self) -> usize {
        self.asked.len() + self.waiting.iter().map(Vec::len).sum::<usize>()
    }
}

impl Sim {
    /// At random steps, a client starts a read on a random live node.
    pub(super) fn maybe_read(&mut self) {
        if !self.rng.random_bool(READ_RATE) {
            return;
        }
        let live = self.live();
        if live.is_empty() {
            return;
        }
        let i = live[self.rng.random_range(0..live.len())];
        self.reads.next_ctx += 1;
        let ctx = self.reads.next_ctx;
        let commits = self
            .nodes
            .iter()
            .filter_map(|n| n.core.as_ref())
            .map(|c| c.commit());
        let floor = self.checker.read_floor(commits);
        self.stats.reads += 1;
        let role = self.nodes[i].core.as_ref().unwrap().role();
        trace!(
            self,
            "{} ({role:?}) read ctx {ctx} (floor {floor})",
            self.nodes[i].id
        );
        if self.mutation == Some(Mutation::StaleRead) {
            // The bug: read the local state machine without asking the core.
            return self.serve(i, ctx, floor);
        }
        let step = self.step;
        self.reads.asked.insert(ctx, Asked { node: i, floor, step });
        // A leader may serve it on its lease: at the time of its clock.
        self.read_clock(i);
        // (The clock just reported: the time is not moved again.)
        self.nodes[i].core.as_mut().unwrap().read_index(ctx, 0);
    }

    /// Node `i`'s Ready answered reads: confirmed (then served once applied
    /// far enough) or failed.
    pub(super) fn read_answers(&mut self, i: usize, states: Vec<ReadState>, failures: Vec<u64>) {
        let id = self.nodes[i].id.clone();
        for ctx in failures {
            if self.answered(i, ctx).is_some() {
                self.stats.reads_failed += 1;
                trace!(self, "{id} read ctx {ctx} failed");
            }
        }
        for ReadState { ctx, index } in states {
            let Some(floor) = self.answered(i, ctx) else {
                continue;
            };
            trace!(self, "{id} read ctx {ctx} confirmed at {index}");
            let v = self.checker.read_confirmed(&id, ctx, floor, index);
            self.note(v);
            if self.mutation == Some(Mutation::NoApplyWait) {
                // The bug: read the state machine before it reaches `index`.
                self.serve(i, ctx, floor);
                continue;
            }
            self.reads.waiting[i].push(Waiting { ctx, index, floor });
            if self.nodes[i].applied < index {
                self.stats.reads_waited += 1;
            }
        }
        self.serve_reads(i);
    }

    /// The read `ctx` answered on node `i`: its floor. Only a read asked on
    /// that node, not answered yet, may be answered.
    fn answered(&mut self, i: usize, ctx: u64) -> Option<u64> {
        let asked = self.reads.asked.remove(&ctx);
        match asked {
            Some(a) if a.node == i => {
                let core = self.nodes[i].core.as_ref().unwrap();
                if a.step == self.step && core.config().lease_us > 0 && core.membership().voters.len() > 1 {
                    self.stats.reads_on_lease += 1;
                }
                Some(a.floor)
            }
            other => {
                let asked_on = other.map(|a| self.nodes[a.node].id.clone());
                let id = self.nodes[i].id.clone();
                self.note(Err(format!(
                    "{id} answered read ctx {ctx}, which is not waiting for an answer there (asked on {asked_on:?})"
                )));
                None
            }
        }
    }

    /// Serves node `i`'s confirmed reads its state machine has applied far enough for.
    pub(super) fn serve_reads(&mut self, i: usize) {
        let applied = self.nodes[i].applied;
        if self.reads.waiting[i].iter().all(|w| w.index > applied) {
            return;
        }
        let (ready, waiting) = std::mem::take(&mut self.reads.waiting[i])
            .into_iter()
            .partition(|w| w.index <= applied);
        self.reads.waiting[i] = waiting;
        for w in ready {
            self.serve(i, w.ctx, w.floor);
        }
    }

    /// Reads node `i`'s state machine for the read `ctx`: the last write applied.
    fn serve(&mut self, i: usize, ctx: u64, floor: u64) {
        let node = &self.nodes[i];
        let value = node.sm.last().map_or(0, |e| e.index);
        let v = self.checker.read_served(&node.id, ctx, floor, value);
        self.note(v);
        self.stats.reads_served += 1;
        trace!(self, "{} read ctx {ctx} served at {value}", self.nodes[i].id);
    }

    /// Node `i` crashed: its clients' reads time out.
    pub(super) fn drop_reads(&mut self, i: usize) {
        let before = self.reads.outstanding();
        self.reads.asked.retain(|_, a| a.node != i);
        self.reads.waiting[i].clear();
        self.stats.reads_dropped += before - self.reads.outstanding();
    }
}
