//! Linearizable reads without log writes: ReadIndex (dissertation §6.4).
//!
//! A read on the leader records the commit index, then confirms that this
//! node still leads with one round of AppendEntries: every AppendEntries
//! carries the number of the latest round (`read_seq`) and every answer
//! echoes it, so once a quorum of voters answered a message of round `s` or
//! later, every read of round `s` or earlier may be served at its recorded
//! index (once applied there). One round serves every read that arrived
//! before it was sent. A new leader serves no read before an entry of its
//! own term has committed: until then its commit index may be behind what
//! an earlier leader acknowledged.
//!
//! A follower forwards the read to the leader (`ReadIndexRequest`) and gets
//! the confirmed index back (`ReadIndexResponse`); it then waits until it
//! has applied that far and reads locally.
//!
//! Results leave in `Ready::read_states` (served: the index to wait for) and
//! `Ready::read_failures` (lost leadership, or no leader to ask: retry).

use super::replication::Carry;
use super::{Message, NodeId, RaftCore, Role};
use crate::wire::{ReadIndexRequest, ReadIndexResponse};
use std::collections::{BTreeMap, VecDeque};

/// A read confirmed: once the state machine has applied `index`, reading it
/// is linearizable for the read `ctx` named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadState {
    pub ctx: u64,
    pub index: u64,
}

/// A read waiting for its confirmation round.
#[derive(Debug, Clone)]
struct PendingRead {
    ctx: u64,
    /// The node that asked: `None` for this node.
    from: Option<NodeId>,
    /// The round that confirms it, and the commit index when it arrived.
    seq: u64,
    index: u64,
}

/// The leader's ReadIndex bookkeeping; reset whenever leadership changes.
#[derive(Debug, Default, Clone)]
pub(super) struct ReadTracker {
    /// The latest round issued; every AppendEntries carries it.
    pub(super) seq: u64,
    /// Per voter, the highest round it has answered in this term.
    acked: BTreeMap<NodeId, u64>,
    /// Oldest first (rounds only grow, so also by seq).
    pending: VecDeque<PendingRead>,
    /// Reads that arrived before this leader committed an entry of its term.
    before_first_commit: Vec<(u64, Option<NodeId>)>,
    /// Follower: reads asked of the leader, not answered yet, with the
    /// member asked: only its answer counts.
    asked: Vec<(u64, NodeId)>,
    /// Lease reads: when each unconfirmed round was sent (µs), oldest first.
    sent_at: VecDeque<(u64, u64)>,
    /// Lease reads: the lease holds before this time (µs).
    lease_until: u64,
    /// A `TimeoutNow` went out in this term: voters may elect its target
    /// whatever they answered, so no round of this term proves a lease.
    lease_void: bool,
}

impl ReadTracker {
    /// Leader: no read waits for a round or for the first commit.
    pub(super) fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.before_first_commit.is_empty()
    }
}

/// Rounds whose send time is kept for the lease; beyond, the oldest are
/// forgotten (their confirmation then extends nothing: only conservative).
const MAX_TIMED_ROUNDS: usize = 1024;

impl RaftCore {
    /// Asks for a linearizable read, named `ctx` by the caller, at `now_us`
    /// on the monotonic clock (as [`RaftCore::set_monotonic`]). The answer
    /// comes in a later Ready: `read_states` or `read_failures`.
    ///
    /// The time is an argument, not the clock last reported, because a
    /// leader confirms its own read on its lease at that time: after a pause
    /// (SIGSTOP, a stalled VM) the last time reported may be long past, and
    /// a lease that ran out meanwhile would still look held (the fault
    /// harness caught a leader, just resumed, answering a read 260 ms stale).
    pub fn read_index(&mut self, ctx: u64, now_us: u64) {
        self.set_monotonic(now_us);
        // (A follower's request wakes its leader by itself.)
        self.wake(false);
        if self.role == Role::Leader {
            return self.leader_read(ctx, None);
        }
        match self.leader.clone() {
            Some(leader) => {
                let msg = Message::ReadIndexRequest(ReadIndexRequest {
                    term: self.term,
                    from: self.cfg.id.clone(),
                    ctx,
                });
                self.send(&leader, msg);
                self.reads.asked.push((ctx, leader));
            }
            None => self.ready.read_failures.push(ctx),
        }
    }

    fn leader_read(&mut self, ctx: u64, from: Option<NodeId>) {
        if self.commit < self.term_start_index {
            self.reads.before_first_commit.push((ctx, from));
            return;
        }
        if let Some(index) = self.lease_read_index(self.mono_us) {
            // (A follower's request: `mono_us` was set when it arrived.)
            return self.serve_read(ctx, from, index);
        }
        if self.membership().voters.len() == 1 && self.is_voter() {
            // Nobody else could have been elected: no round needed.
            return self.serve_read(ctx, from, self.commit);
        }
        let index = self.commit;
        // One round per call: the runtime names every read that arrived
        // meanwhile with one ctx, so a round serves them all.
        let seq = self.next_read_round();
        self.reads.pending.push_back(PendingRead {
            ctx,
            from,
            seq,
            index,
        });
        self.broadcast_append(Carry::Commit);
    }

    /// Starts a round: the AppendEntries sent next carry it. With lease
    /// reads, its send time is kept: once confirmed, the lease runs from it.
    pub(super) fn next_read_round(&mut self) -> u64 {
        self.reads.seq += 1;
        if self.cfg.lease_us > 0 {
            if self.reads.sent_at.len() == MAX_TIMED_ROUNDS {
                self.reads.sent_at.pop_front();
            }
            // `mono_us` is at or before the real send time: the lease only shortens.
            self.reads.sent_at.push_back((self.reads.seq, self.mono_us));
        }
        self.reads.seq
    }

    /// Lease read (dissertation §6.4.1): the index a read at `now_us` may be
    /// served at without a round, if this leader's lease holds then. The
    /// lease runs from when a round a quorum confirmed was sent, for
    /// `lease_us`; voters that confirmed it refuse other candidates longer
    /// than that. `None`: use ReadIndex.
    pub fn lease_read_index(&self, now_us: u64) -> Option<u64> {
        // A quiet leader's followers may have heard nothing for long: it
        // wakes for a ReadIndex round instead (`quiesce.rs`).
        let holds = self.cfg.lease_us > 0
            && self.role == Role::Leader
            && (!self.quiesced || self.is_sole_voter())
            && self.commit >= self.term_start_index
            && !self.transfer_in_progress()
            && !self.reads.lease_void
            && (now_us < self.reads.lease_until || self.is_sole_voter());
        holds.then_some(self.commit)
    }

    /// No more lease reads until leadership changes (a new term, a new tracker).
    pub(super) fn void_lease_for_this_term(&mut self) {
        self.reads.lease_until = 0;
        self.reads.lease_void = true;
    }

    fn is_sole_voter(&self) -> bool {
        self.is_voter() && self.membership().voters.len() == 1
    }

    /// Leader: a follower asks for a read index.
    pub(super) fn handle_read_index_request(&mut self, from: &str, m: ReadIndexRequest) {
        if self.role != Role::Leader {
            let reply = self.read_index_response(m.ctx, 0, false);
            return self.send(from, reply);
        }
        self.leader_read(m.ctx, Some(from.to_string()));
    }

    /// Follower: the leader's answer to a read it forwarded. Only the member
    /// asked may answer it: another's answer with a matching ctx (a late one
    /// meant for an earlier read) must not confirm this read at its index.
    pub(super) fn handle_read_index_response(&mut self, from: &str, m: ReadIndexResponse) {
        let Some(at) = self.asked_of(from, m.ctx) else {
            return; // failed already (the leader changed), a duplicate, or not ours
        };
        self.reads.asked.swap_remove(at);
        if m.ok {
            self.ready.read_states.push(ReadState {
                ctx: m.ctx,
                index: m.index,
            });
        } else {
            self.ready.read_failures.push(m.ctx);
        }
    }

    /// Leader: an answer from `from` to an AppendEntries of round `seq`.
    pub(super) fn note_read_ack(&mut self, from: &str, seq: u64) {
        if seq == 0 || !self.membership().is_voter(from) {
            return;
        }
        // Every AppendEntriesResponse comes here: allocate only for a voter's first answer.
        match self.reads.acked.get_mut(from) {
            Some(acked) if seq <= *acked => return,
            Some(acked) => *acked = seq,
            None => {
                self.reads.acked.insert(from.to_string(), seq);
            }
        }
        if !self.reads.pending.is_empty() || !self.reads.sent_at.is_empty() {
            self.serve_confirmed_reads();
        }
    }

    /// Serves every pending read whose round a quorum of voters has
    /// answered, and extends the lease to the latest such round.
    fn serve_confirmed_reads(&mut self) {
        let m = self.membership();
        let me = m.is_voter(&self.cfg.id);
        let mut answered: Vec<u64> = m
            .voters
            .iter()
            .filter(|v| **v != self.cfg.id)
            .map(|v| self.reads.acked.get(v).copied().unwrap_or(0))
            .collect();
        if me {
            answered.push(u64::MAX);
        }
        answered.sort_unstable_by(|a, b| b.cmp(a));
        let Some(&confirmed) = answered.get(self.quorum() - 1) else {
            return;
        };
        while self.reads.pending.front().is_some_and(|r| r.seq <= confirmed) {
            let r = self.reads.pending.pop_front().expect("checked");
            self.serve_read(r.ctx, r.from, r.index);
        }
        while let Some(&(seq, sent)) = self.reads.sent_at.front() {
            if seq > confirmed {
                break;
            }
            self.reads.sent_at.pop_front();
            let until = sent.saturating_add(self.cfg.lease_us);
            self.reads.lease_until = self.reads.lease_until.max(until);
        }
    }

    fn serve_read(&mut self, ctx: u64, from: Option<NodeId>, index: u64) {
        match from {
            None => self.ready.read_states.push(ReadState { ctx, index }),
            Some(to) => {
                let reply = self.read_index_response(ctx, index, true);
                self.send(&to, reply);
            }
        }
    }

    /// Leader: its first entry of the term committed; reads held back go now.
    pub(super) fn release_reads_after_first_commit(&mut self) {
        if self.commit < self.term_start_index || self.reads.before_first_commit.is_empty() {
            return;
        }
        for (ctx, from) in std::mem::take(&mut self.reads.before_first_commit) {
            self.leader_read(ctx, from);
        }
    }

    /// Leadership ended (or began): every read in progress fails, to be retried.
    pub(super) fn fail_reads(&mut self) {
        let reads = std::mem::take(&mut self.reads);
        // Asked of a leader that may be gone: its answer may never come.
        self.ready
            .read_failures
            .extend(reads.asked.into_iter().map(|(ctx, _)| ctx));
        let waiting = reads.pending.into_iter().map(|r| (r.ctx, r.from));
        for (ctx, from) in waiting.chain(reads.before_first_commit) {
            match from {
                None => self.ready.read_failures.push(ctx),
                Some(to) => {
                    let reply = self.read_index_response(ctx, 0, false);
                    self.send(&to, reply);
                }
            }
        }
    }

    /// Follower: a read asked of `from` failed; the caller asks again.
    pub(super) fn forget_asked_read(&mut self, from: &str, ctx: u64) {
        if let Some(at) = self.asked_of(from, ctx) {
            self.reads.asked.swap_remove(at);
            self.ready.read_failures.push(ctx);
        }
    }

    /// Where read `ctx`, asked of `member`, is in the list of reads asked.
    fn asked_of(&self, member: &str, ctx: u64) -> Option<usize> {
        self.reads
            .asked
            .iter()
            .position(|(c, m)| *c == ctx && m == member)
    }

    /// Follower: reads asked of the leader and not answered yet.
    pub fn reads_asked(&self) -> usize {
        self.reads.asked.len()
    }

    /// "Not the leader (any more): ask again."
    pub(super) fn read_index_refusal(&self, ctx: u64) -> Message {
        self.read_index_response(ctx, 0, false)
    }

    fn read_index_response(&self, ctx: u64, index: u64, ok: bool) -> Message {
        Message::ReadIndexResponse(ReadIndexResponse {
            term: self.term,
            from: self.cfg.id.clone(),
            ctx,
            index,
            ok,
        })
    }
}
