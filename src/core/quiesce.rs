//! Quiescence: an idle group stops ticking and heartbeating on every member
//! (CockroachDB's quiesced ranges; design notes, part two, B).
//!
//! A leader goes quiet once, for [`Config::quiesce_after_ticks`] ticks in a
//! row, nothing was under way: every entry committed and applied, every
//! follower acknowledged the last one, no read, transfer, catch-up or
//! configuration change pending, and the runtime allows it
//! ([`RaftCore::set_quiesce_allowed`]: nothing waiting there either). Its
//! last heartbeat carries `quiesce`; a follower whose log ends where the
//! leader's does and whose commit index equals the leader's goes quiet with
//! it, and any other follower answers `wake`. A quiet core ignores ticks:
//! its election and heartbeat timers stop where they were.
//!
//! Anything else wakes it: a proposal, a read, a transfer, a configuration
//! change, or any message but the two that quiet groups exchange (the
//! quiesce heartbeat itself, and a follower's plain acknowledgement of it).
//! A woken leader heartbeats at once and counts every follower as recently
//! heard from (its check-quorum round starts over); a follower woken by
//! anyone but its leader asks the leader to wake (`wake`), and so does an
//! awake follower that misses two heartbeats in a row (a lost quiesce
//! heartbeat).
//!
//! Followers of a quiet group never time out their leader by themselves:
//! the runtime watches each remote host's link instead, and tells the core
//! when the host of its leader is gone ([`RaftCore::peer_host_down`]). The
//! follower then forgets its leader and campaigns within one election
//! timeout (pre-vote, so a wrong guess costs an election, never safety).
//!
//! Lease reads: a quiet leader serves none ([`RaftCore::lease_read_index`]);
//! a read wakes it and goes through a ReadIndex round. Voters' lockouts are
//! timed on the monotonic clock from their leader's last message, quiet or
//! not, so the lease argument does not depend on ticks.

use super::{Message, NodeId, ProgressState, RaftCore, Role};
use crate::wire::{AppendEntries, AppendEntriesResponse};

impl RaftCore {
    /// Whether this group is quiet here (not ticking, not heartbeating).
    pub fn is_quiesced(&self) -> bool {
        self.quiesced
    }

    /// The runtime's part of the decision: whether nothing waits on this
    /// node outside the core (requests, lease deadlines, snapshot installs).
    /// Looked at when the leader counts its idle ticks and when a follower
    /// is asked to go quiet.
    pub fn set_quiesce_allowed(&mut self, allowed: bool) {
        self.quiesce_allowed = allowed;
    }

    /// The host of `peer` is unreachable (its link died). A follower whose
    /// leader is there forgets it and campaigns soon (quiet or not: one
    /// woken a moment ago by another follower's campaign must not wait a
    /// whole election timeout); a quiet leader with a follower there wakes,
    /// so check-quorum and replication see to it. Only with quiescence on:
    /// otherwise the timers alone decide, as before.
    pub fn peer_host_down(&mut self, peer: &str) {
        if self.cfg.quiesce_after_ticks == 0 {
            return;
        }
        match self.role {
            Role::Leader if self.progress.contains_key(peer) => self.wake(false),
            Role::Leader => {}
            Role::Follower if self.leader.as_deref() == Some(peer) => {
                self.wake(false);
                self.leader = None;
                self.election_elapsed = self.after_leader_lost(peer);
            }
            _ => {}
        }
    }

    /// The runtime wants the group awake (a closing group's leader tells
    /// its followers; a reconnected host has members to catch up). A
    /// follower asks its leader to wake too. A no-op on an awake core.
    pub fn unquiesce(&mut self) {
        self.wake(self.role != Role::Leader);
    }

    /// The election timer of a follower whose leader's host died: the
    /// voters left campaign in turn, half an election timeout apart, so
    /// that they do not split the vote (all at once, two of them would
    /// often ask in the same tick, and a split costs another timeout). The
    /// order turns with the cluster identity, so the groups of one set of
    /// hosts do not all elect the same one.
    fn after_leader_lost(&self, dead: &str) -> u32 {
        let m = self.membership();
        let left: Vec<&NodeId> = m.voters.iter().filter(|v| v.as_str() != dead).collect();
        let Some(me) = left.iter().position(|v| **v == self.cfg.id) else {
            return self.cfg.election_ticks;
        };
        let turn = m
            .uid
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        let rank = (me + turn) % left.len();
        let wait = 1 + rank as u32 * (self.cfg.election_ticks / 2).max(1);
        self.randomized_election_ticks.saturating_sub(wait)
    }

    /// Leader, on every tick: counts the ticks it has been idle and goes
    /// quiet after [`Config::quiesce_after_ticks`] of them.
    pub(super) fn tick_quiesce(&mut self) {
        if self.cfg.quiesce_after_ticks == 0 || !self.leader_is_idle() {
            self.idle_ticks = 0;
            return;
        }
        self.idle_ticks = self.idle_ticks.saturating_add(1);
        if self.idle_ticks < self.cfg.quiesce_after_ticks {
            return;
        }
        let last = self.log.last_index();
        let Some(last_term) = self.log.term(last) else {
            return;
        };
        for peer in self.replication_targets() {
            self.send(
                &peer,
                Message::AppendEntries(AppendEntries {
                    term: self.term,
                    leader: self.cfg.id.clone(),
                    prev_log_index: last,
                    prev_log_term: last_term,
                    entries: Vec::new(),
                    leader_commit: self.commit,
                    read_seq: self.reads.seq,
                    quiesce: true,
                    commit_notice: false,
                }),
            );
        }
        self.quiesced = true;
    }

    /// Whether nothing is under way on this leader.
    fn leader_is_idle(&self) -> bool {
        let last = self.log.last_index();
        self.role == Role::Leader
            && self.quiesce_allowed
            && self.transfer.is_none()
            && self.catch_up.is_none()
            && self.deferred_change.is_none()
            && self.reads.is_idle()
            && self.commit == last
            && self.applied == last
            && self.commit >= self.term_start_index
            && self.progress.values().all(|pr| {
                pr.state == ProgressState::Replicate && pr.match_index == last && pr.inflight.is_empty()
            })
    }

    /// Follower, after handling a quiesce heartbeat from its leader: goes
    /// quiet if it can; otherwise the answer asks the leader to wake.
    pub(super) fn follow_into_quiet(&mut self, leader: &str, end: u64, commit: u64) -> bool {
        let can = self.cfg.quiesce_after_ticks > 0
            && self.quiesce_allowed
            && self.role == Role::Follower
            && self.leader.as_deref() == Some(leader)
            && self.log.last_index() == end
            && self.commit == commit
            && self.reads_asked() == 0
            && self.pending_install.is_none();
        self.quiesced = can;
        can
    }

    /// Whether `msg` from `from` leaves a quiet core quiet: the quiesce
    /// heartbeat of its leader (again), or a follower's plain answer to it.
    pub(super) fn is_quiet_message(&self, from: &str, msg: &Message) -> bool {
        match (self.role, msg) {
            (Role::Follower, Message::AppendEntries(m)) => {
                m.quiesce
                    && m.term == self.term
                    && self.leader.as_deref() == Some(from)
                    && m.entries.is_empty()
                    && m.prev_log_index == self.log.last_index()
                    && m.leader_commit == self.commit
            }
            (Role::Leader, Message::AppendEntriesResponse(m)) => {
                !m.wake && m.success && m.term == self.term && m.match_index == self.log.last_index()
            }
            _ => false,
        }
    }

    /// Wakes a quiet core (a no-op on an awake one). `notify_leader`: a
    /// follower woken by something its leader does not know of asks it to
    /// wake too.
    pub(super) fn wake(&mut self, notify_leader: bool) {
        if !self.quiesced {
            return;
        }
        self.quiesced = false;
        self.idle_ticks = 0;
        self.election_elapsed = 0;
        match self.role {
            Role::Leader => {
                // Nobody was expected to speak while quiet: a check-quorum
                // round starts over with every follower counted as heard.
                self.progress.values_mut().for_each(|p| p.recent_active = true);
                self.heartbeat_elapsed = 0;
                self.send_heartbeats();
            }
            _ if notify_leader => self.ask_leader_to_wake(),
            _ => {}
        }
    }

    /// Follower: tells its leader to wake and heartbeat again.
    pub(super) fn ask_leader_to_wake(&mut self) {
        let Some(leader) = self.leader.clone() else { return };
        let msg = Message::AppendEntriesResponse(AppendEntriesResponse {
            term: self.term,
            success: false,
            from: self.cfg.id.clone(),
            match_index: 0,
            last_log_index: self.log.last_index(),
            conflict_term: 0,
            conflict_index: 0,
            rejected_prev_index: 0,
            read_seq: 0,
            wake: true,
        });
        self.send(&leader, msg);
    }

    /// Awake follower, on every tick: two heartbeats missed in a row while
    /// quiescence is on means its leader may have gone quiet without it (the
    /// quiesce heartbeat was lost): ask it to wake before timing it out.
    pub(super) fn nudge_silent_leader(&mut self) {
        if self.cfg.quiesce_after_ticks > 0
            && self.role == Role::Follower
            && self.leader.is_some()
            && self.election_elapsed == 2 * self.cfg.heartbeat_ticks + 1
        {
            self.ask_leader_to_wake();
        }
    }
}
