//! A Ready, from the core to the disk and the network, in one place.
//!
//! 1. Under the core's lock ([`Node::with_core`]), the Ready is taken and
//!    split: the reads' and transfers' verdicts are settled, the links follow
//!    the configuration, messages that may leave at once are set aside, and
//!    what must be persisted (with what waits on it) is queued to the log
//!    writer, in the order the core produced it.
//! 2. Once the lock is released, the messages are sent, still in the core's
//!    order (`send_order`), and what was left to do runs ([`AfterUnlock`]):
//!    logging, answering callers, starting read rounds.
//! 3. The log writer persists queued Readies in one batch and then lets out
//!    what waited on them ([`let_out`]): the core learns what is durable, an
//!    installed snapshot goes to the apply thread, the messages that waited
//!    for the disk leave.

use super::node::{LogEvent, Node};
use super::proposals::Completion;
use crate::core::{Envelope, RaftCore, Ready};
use crate::error::Error;
use std::sync::atomic::Ordering;

impl Node {
    /// Runs `f` on the core under its lock, then hands out what it produced
    /// (steps 1 and 2).
    pub fn with_core<T>(&self, f: impl FnOnce(&mut RaftCore) -> T) -> T {
        let now_ms = self.faults().clock_ms(super::wall_clock_ms());
        let mut core = self.core.lock();
        // Whatever this call appends is stamped with the clock now: a new
        // leader's first entry, appended as it steps the vote that elects
        // it, carried its last tick's reading, and the log's time (which
        // stays at the previous leader's later stamp, then moves by this
        // leader's clock) ran ahead of real time by that much all term:
        // TTLs and locks expired early.
        core.set_clock(now_ms);
        let out = f(&mut core);
        let mut after = self.dispatch(&mut core);
        // Sent after the core is free (a link may write on its socket right
        // away) but in the order the core produced them: the next sender
        // takes `send_order` only while it still holds the core.
        let sending = (!after.messages.is_empty()).then(|| self.send_order.lock());
        drop(core);
        for env in std::mem::take(&mut after.messages) {
            self.send_message(env);
        }
        drop(sending);
        after.run(self);
        out
    }

    /// Step 1: settles what the Ready decided, sets aside what may go now and
    /// queues persistence (and what waits on it) to the log writer. Called
    /// with the core locked, so Readies queue in order.
    fn dispatch(&self, core: &mut RaftCore) -> AfterUnlock {
        let mut ready = core.ready();
        self.note_quiet(core);
        self.metrics.note_role(core.role() as u8);
        if core.role() == crate::core::Role::Leader {
            let m = &self.metrics;
            m.proposed
                .committed_up_to(core.commit(), &self.host.metrics.commit);
        }
        let mut after = AfterUnlock {
            new_leader: self.note_leader(core.leader()),
            reads: self
                .waiters
                .reads
                .settle(&ready.read_states, &ready.read_failures),
            transfers: self.waiters.transfers.settle(core),
            ..Default::default()
        };
        if self.failure.lock().is_some() {
            // (A node that cannot persist must not speak.)
            return after;
        }
        let (committed_index, committed) = core.committed_membership();
        let committed_changed =
            self.committed_config.swap(committed_index, Ordering::Relaxed) != committed_index;
        if committed_changed {
            after.changes_done = self.waiters.config.satisfied_by(committed);
            self.metrics.membership_changes.fetch_add(1, Ordering::Relaxed);
        }
        // (A committed change also ends the leader's replication to removed members.)
        if ready.config.is_some() || after.new_leader.is_some() || committed_changed {
            after.link_error = self.reconcile_links(core).err();
        }
        // Only when there is something to apply, or a leader change to
        // report: most core calls (a heartbeat, an acknowledgement that
        // moved nothing) leave the apply worker nothing to do. (Before the
        // Ready is looked at: what a write made durable is applicable, and
        // that core call usually produces nothing else.)
        if core.applicable_index() > core.applied() || after.new_leader.is_some() {
            self.wake_apply();
        }
        if ready.is_empty() {
            return after;
        }
        after.messages = std::mem::take(&mut ready.messages);
        if !ready.needs_persist() && self.log_queued.load(Ordering::Acquire) == 0 {
            // Nothing to write, and everything produced before is on disk: an
            // answer waiting for durability (a heartbeat's) may go now,
            // without a trip through the log writer.
            after.messages.append(&mut ready.messages_after_persist);
        } else if ready.needs_persist() || !ready.messages_after_persist.is_empty() {
            if let Some(me) = self.me.upgrade() {
                self.log_queued.fetch_add(1, Ordering::AcqRel);
                self.host.log_tx.send(LogEvent::Persist(me, Box::new(ready)));
            }
        }
        after
    }
}

/// What a core call leaves to do once the core lock is released: logging
/// (which may write to disk or call into the host), stopping links (which
/// joins threads) and answering callers.
#[derive(Default)]
struct AfterUnlock {
    /// Messages to send, in order, once the core is unlocked.
    messages: Vec<Envelope>,
    new_leader: Option<Option<String>>,
    link_error: Option<Error>,
    changes_done: Vec<Completion>,
    /// What the reads' verdicts left to do.
    reads: super::reads::Settled,
    transfers: super::transfer::Settled,
}

impl AfterUnlock {
    fn run(self, node: &Node) {
        if let Some(leader) = self.new_leader {
            tracing::info!(node = %node.id, leader = ?leader, "leader changed");
            node.metrics.leader_changes.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(e) = self.link_error {
            node.fail(Error::Io(format!("cannot start a peer link: {e}")));
        }
        for done in self.changes_done {
            done(Ok(None));
        }
        if let Some(target) = self.transfers.ended {
            tracing::info!(node = %node.id, target = %target, "leadership transfer over");
            // The proposals it held back.
            node.wake_primary();
        }
        for (done, result) in self.transfers.answers {
            done(result);
        }
        for done in self.reads.failed {
            done(Err(Error::NoLeader(
                "leadership changed before the read was confirmed".into(),
            )));
        }
        if self.reads.serve {
            node.serve_reads();
        }
        if self.reads.next_round {
            node.start_read_round();
        }
    }
}

/// Once written: the core learns what is durable, and what waited on it goes.
pub(super) fn let_out(node: &Node, readies: Vec<Ready>) {
    let last = readies.iter().rev().find_map(|r| r.persisted_position());
    if let Some((index, term)) = last {
        node.with_core(|core| core.on_persisted(index, term));
    }
    for r in readies {
        if let Some(meta) = r.snapshot {
            node.snapshot_reset_durable(meta);
        }
        for env in r.messages_after_persist {
            node.send_message(env);
        }
    }
    // (No wake of the apply worker here: `on_persisted` wakes it if entries
    // became applicable, and an installed snapshot wakes it itself. With
    // many groups, a wake after every log write was an apply turn for
    // nothing per group and round: a leader's entry is not committed yet
    // when it is written, and a follower's not known to be.)
}
