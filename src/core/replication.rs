//! AppendEntries on both sides, per-follower progress and the commit rule
//! (§5.3, Figure 7, §5.4.2, Figure 8).

use super::{Message, ProgressState, RaftCore, Role};
use crate::wire::{AppendEntries, AppendEntriesResponse};

/// What [`RaftCore::broadcast_append`] sends a follower with no entries to receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Carry {
    /// Nothing.
    Nothing,
    /// An empty AppendEntries, which it answers: it learns the commit
    /// index, and its answer counts for a ReadIndex round.
    Commit,
    /// The same as a commit notice, which a follower in step (Replicate)
    /// takes without answering when it matches. The answer would tell the
    /// leader nothing new (the entries' own answers acknowledge them), and
    /// at one writer it was two of the eight messages a write takes; a
    /// follower that lost entries still rejects the notice and is repaired.
    /// While a ReadIndex round waits, whose answers these are, as `Commit`.
    CommitNotice,
}

impl RaftCore {
    /// Sends what each follower is missing, and to those up to date what
    /// `carry` says.
    pub(super) fn broadcast_append(&mut self, carry: Carry) {
        let notice = carry == Carry::CommitNotice && self.reads.is_idle();
        for peer in self.replication_targets() {
            if !self.send_append(&peer) && carry != Carry::Nothing {
                self.send_empty_append(&peer, notice);
            }
        }
    }

    /// Sends the next batch of entries to `peer` if its progress allows, or
    /// the snapshot if it needs entries compacted away; returns whether anything was sent.
    pub(super) fn send_append(&mut self, peer: &str) -> bool {
        let (max_inflight, max_bytes) = (self.cfg.max_inflight, self.cfg.max_inflight_bytes);
        let Some(pr) = self.progress.get(peer) else {
            return false;
        };
        if pr.is_paused(max_inflight, max_bytes) {
            return false;
        }
        let next = pr.next_index;
        if next <= self.log.start_index() {
            return self.send_snapshot(peer);
        }
        let probing = pr.state == ProgressState::Probe;
        let entries = self.log.slice(
            next,
            self.log.last_index(),
            self.cfg.max_entries_per_message,
            self.cfg.max_bytes_per_message,
        );
        if entries.is_empty() && !probing {
            return false;
        }
        let last = entries.last().map_or(next - 1, |e| e.index);
        let bytes = entries.iter().map(|e| e.payload.len() as u64).sum();
        let Some(msg) = self.append_message(next - 1, entries) else {
            return false;
        };
        self.send(peer, msg);
        if let Some(pr) = self.progress.get_mut(peer) {
            pr.sent(last, bytes);
        }
        true
    }

    /// An AppendEntries without entries just after what was last sent: it
    /// carries the commit index, and a follower that is missing entries
    /// rejects it. With `notice`, to a follower in Replicate, a commit
    /// notice ([`Carry::CommitNotice`]).
    fn send_empty_append(&mut self, peer: &str, notice: bool) {
        let Some(pr) = self.progress.get(peer) else { return };
        let state = pr.state;
        // In Replicate, at the end of what was sent, not at the match point: a
        // follower that lost an AppendEntries then rejects it and is repaired;
        // at the match point it would accept it and stay behind while idle.
        // While a snapshot streams, at its point: the follower keeps hearing
        // from its leader (no election), and its rejection is ignored.
        let prev = match pr.state {
            // (Not below the log's start: the leader may have compacted past it.)
            ProgressState::Snapshot => pr.pending_snapshot.max(self.log.start_index()),
            _ => pr.next_index - 1,
        };
        if let Some(mut msg) = self.append_message(prev, Vec::new()) {
            if let Message::AppendEntries(m) = &mut msg {
                m.commit_notice = notice && state == ProgressState::Replicate;
            }
            self.send(peer, msg);
        } else if state != ProgressState::Snapshot {
            self.send_snapshot(peer);
        }
    }

    /// `None` when the term at `prev` was compacted away.
    fn append_message(&self, prev: u64, entries: Vec<crate::wire::Entry>) -> Option<Message> {
        Some(Message::AppendEntries(AppendEntries {
            term: self.term,
            leader: self.cfg.id.clone(),
            prev_log_index: prev,
            prev_log_term: self.log.term(prev)?,
            entries,
            leader_commit: self.commit,
            read_seq: self.reads.seq,
            quiesce: false,
            commit_notice: false,
        }))
    }

    pub(super) fn send_heartbeats(&mut self) {
        if self.cfg.lease_us > 0 {
            // Every heartbeat renews the lease once a quorum answers it.
            self.next_read_round();
        }
        let patience = [self.snapshot_patience(false), self.snapshot_patience(true)];
        for peer in self.replication_targets() {
            let Some(pr) = self.progress.get_mut(&peer) else {
                continue;
            };
            match pr.state {
                ProgressState::Probe => pr.probe_sent = false,
                ProgressState::Snapshot => {
                    pr.snapshot_heartbeats += 1;
                    if pr.snapshot_heartbeats > patience[usize::from(pr.snapshot_sent)] {
                        // Sent but never acknowledged (dropped by the follower,
                        // or the ack was lost): offer it again.
                        pr.become_probe();
                    }
                }
                ProgressState::Replicate => {
                    let full = pr.window_full(self.cfg.max_inflight, self.cfg.max_inflight_bytes);
                    if full && !pr.acked_since_heartbeat {
                        // A full window with no answer for a whole heartbeat: assume loss.
                        pr.become_probe();
                    }
                }
            }
            pr.acked_since_heartbeat = false;
            if !self.send_append(&peer) {
                self.send_empty_append(&peer, false);
            }
        }
    }

    pub(super) fn append_response(&self, success: bool, match_index: u64, prev: u64) -> Message {
        Message::AppendEntriesResponse(AppendEntriesResponse {
            term: self.term,
            success,
            from: self.cfg.id.clone(),
            match_index,
            last_log_index: self.log.last_index(),
            conflict_term: 0,
            conflict_index: 0,
            rejected_prev_index: prev,
            read_seq: 0,
            wake: false,
        })
    }

    /// Follower side of AppendEntries: consistency check, truncation only on a real conflict.
    pub(super) fn handle_append_entries(&mut self, from: &str, m: AppendEntries) {
        if self.role != Role::Follower {
            self.become_follower(self.term, Some(from.to_string()));
        }
        self.heard_from_leader(from);
        let m = self.skip_compacted(m);
        let read_seq = m.read_seq;
        // A quiesce heartbeat carries no entries: where it ends and its commit.
        let quiesce = m.quiesce.then_some((m.prev_log_index, m.leader_commit));
        let notice = m.commit_notice && !m.quiesce;
        let echo = |mut reply: Message| {
            if let Message::AppendEntriesResponse(r) = &mut reply {
                r.read_seq = read_seq;
            }
            reply
        };
        let prev = m.prev_log_index;
        match self.log.term(prev) {
            Some(t) if t == m.prev_log_term => {}
            other => {
                let mut reply = echo(self.append_response(false, 0, prev));
                if let (Message::AppendEntriesResponse(r), Some(t)) = (&mut reply, other) {
                    r.conflict_term = t;
                    r.conflict_index = self.log.first_index_of_term_at(prev, self.commit + 1);
                }
                self.send(from, reply);
                return;
            }
        }
        let last_new = prev + m.entries.len() as u64;
        let mut new_entries = Vec::new();
        for e in m.entries {
            if !new_entries.is_empty() {
                new_entries.push(e);
                continue;
            }
            match self.log.term(e.index) {
                Some(t) if t == e.term => {} // already have it: a duplicate or reordered message
                Some(_) => {
                    self.truncate_log(e.index);
                    new_entries.push(e);
                }
                None => new_entries.push(e),
            }
        }
        self.ready.entries.extend(new_entries.iter().cloned());
        let config = crate::wire::EntryType::EntryConfig as i32;
        let configs: Vec<(u64, bytes::Bytes)> = new_entries
            .iter()
            .filter(|e| e.r#type == config)
            .map(|e| (e.index, e.payload.clone()))
            .collect();
        self.log.append(new_entries);
        for (index, payload) in configs {
            self.config_appended(index, &payload);
        }
        let new_commit = m.leader_commit.min(last_new);
        if new_commit > self.commit {
            self.commit = new_commit;
        }
        if notice && last_new == prev {
            // Matched, and nothing to acknowledge: the leader asked for no answer.
            return;
        }
        let mut reply = echo(self.append_response(true, last_new, prev));
        if quiesce.is_some_and(|(end, commit)| !self.follow_into_quiet(from, end, commit)) {
            if let Message::AppendEntriesResponse(r) = &mut reply {
                r.wake = true;
            }
        }
        // The leader may count this acknowledgement: it must be durable.
        self.send_after_persist(from, reply);
    }

    /// Leader side: progress, fast back-off on rejection, commit.
    pub(super) fn handle_append_response(&mut self, from: &str, m: AppendEntriesResponse) {
        if self.role != Role::Leader {
            return;
        }
        if m.wake {
            // Not an answer: the follower asks a quiet leader to wake, which
            // `step` did. Its other fields mean nothing.
            if let Some(pr) = self.progress.get_mut(from) {
                pr.recent_active = true;
            }
            return;
        }
        // (Any answer of this term confirms the leadership it was sent under.)
        self.note_read_ack(from, m.read_seq);
        let Some(pr) = self.progress.get_mut(from) else {
            return;
        };
        pr.recent_active = true;
        if m.success {
            let news = pr.acknowledge(m.match_index);
            let caught_up = match pr.state {
                ProgressState::Probe => m.match_index >= pr.match_index,
                ProgressState::Snapshot => pr.match_index >= pr.pending_snapshot,
                ProgressState::Replicate => false,
            };
            if caught_up {
                pr.become_replicate();
            }
            if news && self.maybe_commit() {
                self.commit_advanced();
            } else {
                self.send_append(from);
                if news {
                    self.advance_catch_up();
                }
            }
            if news {
                self.send_timeout_now_if_caught_up();
            }
            return;
        }
        let stale = m.rejected_prev_index <= pr.match_index
            || pr.state == ProgressState::Snapshot
            || (pr.state == ProgressState::Probe && m.rejected_prev_index + 1 != pr.next_index);
        if stale {
            return;
        }
        let hint = if m.conflict_term == 0 {
            m.last_log_index.saturating_add(1)
        } else {
            match self.log.last_index_of_term(m.conflict_term) {
                Some(i) => i + 1,
                None => m.conflict_index,
            }
        };
        let pr = self.progress.get_mut(from).expect("checked above");
        pr.become_probe();
        pr.next_index = hint.min(m.rejected_prev_index).max(pr.match_index + 1);
        self.send_append(from);
    }

    /// Leader: tells followers the new commit index, then acts on it.
    pub(super) fn commit_advanced(&mut self) {
        self.broadcast_append(Carry::CommitNotice);
        self.after_leader_commit();
        self.release_reads_after_first_commit();
    }

    /// Commits the highest index stored on a quorum of the voters in force,
    /// if it is of the current term. A leader outside that configuration
    /// does not count itself (§4.2.2).
    pub(super) fn maybe_commit(&mut self) -> bool {
        let m = self.membership();
        let mut matched: Vec<u64> = m
            .voters
            .iter()
            .map(|v| {
                if *v == self.cfg.id {
                    self.log.stable_index()
                } else {
                    self.progress.get(v).map_or(0, |p| p.match_index)
                }
            })
            .collect();
        if matched.is_empty() {
            return false;
        }
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let quorum_index = matched[self.quorum() - 1];
        // Figure 8: counting replicas commits only entries of the current term.
        if quorum_index > self.commit && self.log.term(quorum_index) == Some(self.term) {
            self.commit = quorum_index;
            return true;
        }
        false
    }
}
