//! Terms, pre-vote, votes and role changes (§5.1, §5.2, §5.4.1, dissertation §9.6).

use super::replication::Carry;
use super::{Message, NodeId, Progress, RaftCore, Role};
use crate::wire::{EntryType, RequestVote, RequestVoteResponse};
use bytes::Bytes;
use rand::Rng;

impl RaftCore {
    /// Applies the term rules to an incoming message; returns whether to handle it further.
    pub(super) fn step_term(&mut self, from: &str, msg: &Message) -> bool {
        let term = msg.term();
        if let Message::RequestVote(m) = msg {
            // §4.2.3: a removed server, or one not added yet, gets no vote and
            // changes no term, however high its own. But a candidate whose log
            // is ahead of ours may hold a configuration we have not received,
            // in which it votes (a learner promoted while we lagged): hear it,
            // or lagging voters could leave the cluster with nobody they would
            // elect. A removed server's log stops before the entry removing
            // it, which its successors hold; a new one's is empty.
            let ahead = m.last_log_term > self.log.last_term()
                || (m.last_log_term == self.log.last_term() && m.last_log_index > self.log.last_index());
            if !self.membership().is_voter(&m.candidate) && !ahead {
                return false;
            }
        }
        match msg {
            // A pre-vote never changes anyone's term: its term is only a proposal.
            Message::RequestVote(m) if m.pre_vote => return true,
            Message::RequestVoteResponse(m) if m.pre_vote && m.granted => return true,
            _ => {}
        }
        if term > self.term {
            if let Message::RequestVote(m) = msg {
                // A leader is alive: a disruptive candidate must not depose it
                // (§9.6), unless that leader asked for the election (§3.10).
                if self.in_leader_lease() && !m.leader_transfer {
                    return false;
                }
            }
            let leader = matches!(msg, Message::AppendEntries(_)).then(|| from.to_string());
            self.become_follower(term, leader);
            return true;
        }
        if term < self.term {
            self.reject_stale(from, msg);
            return false;
        }
        true
    }

    /// Tells the sender of a stale request that a newer term exists, so it steps down.
    fn reject_stale(&mut self, from: &str, msg: &Message) {
        match msg {
            Message::AppendEntries(m) => {
                let reply = self.append_response(false, 0, m.prev_log_index);
                self.send(from, reply);
            }
            Message::RequestVote(m) => {
                let reply = self.vote_response(false, m.pre_vote, self.term);
                self.send(from, reply);
            }
            Message::ReadIndexRequest(m) => {
                let reply = self.read_index_refusal(m.ctx);
                self.send(from, reply);
            }
            // The answer of a deposed leader: ask again.
            Message::ReadIndexResponse(m) => self.forget_asked_read(from, m.ctx),
            _ => {}
        }
    }

    /// Whether this node has heard from a live leader within an election timeout.
    pub(super) fn in_leader_lease(&self) -> bool {
        // (Or, with lease reads, within an election timeout of a restart.)
        let heard = self.leader.is_some() || self.boot_quiet;
        let by_ticks = self.cfg.check_quorum && heard && self.election_elapsed < self.cfg.election_ticks;
        by_ticks || self.in_lease_lockout()
    }

    /// With lease reads (dissertation §6.4.1): whether this voter is still
    /// within its lockout, timed on the monotonic clock from the arrival of
    /// its leader's last message. A leader's lease relies on it: ticks alone
    /// can run in a burst after that message (all of them due before it)
    /// and end the lockout early.
    pub(super) fn in_lease_lockout(&self) -> bool {
        let lockout = self.cfg.lockout_us.max(self.cfg.lease_us);
        self.cfg.lease_us > 0
            && self
                .lockout_since_us
                .is_some_and(|since| self.mono_us < since.saturating_add(lockout))
    }

    /// A message from the current leader arrived: the election timer and
    /// the lockout start again.
    pub(super) fn heard_from_leader(&mut self, leader: &str) {
        self.leader = Some(leader.to_string());
        self.election_elapsed = 0;
        self.lockout_since_us = Some(self.mono_us);
    }

    pub(super) fn handle_request_vote(&mut self, from: &str, m: RequestVote) {
        let log_ok = self.log.is_up_to_date(m.last_log_index, m.last_log_term);
        if m.pre_vote {
            let grant = m.term > self.term && log_ok && (m.leader_transfer || !self.in_leader_lease());
            let term = if grant { m.term } else { self.term };
            let reply = self.vote_response(grant, true, term);
            self.send(from, reply);
            return;
        }
        let free_to_vote =
            self.vote.as_deref() == Some(from) || (self.vote.is_none() && self.leader.is_none());
        if free_to_vote && log_ok {
            self.vote = Some(from.to_string());
            self.election_elapsed = 0;
            let reply = self.vote_response(true, false, self.term);
            // The vote must be durable before the candidate can count it (§5.2).
            self.send_after_persist(from, reply);
        } else {
            let reply = self.vote_response(false, false, self.term);
            self.send(from, reply);
        }
    }

    pub(super) fn handle_vote_response(&mut self, from: &str, m: RequestVoteResponse) {
        let counts = match (self.role, m.pre_vote) {
            (Role::PreCandidate, true) => !m.granted || m.term == self.term.saturating_add(1),
            (Role::Candidate, false) => m.term == self.term,
            _ => false,
        };
        if !counts || !self.membership().is_voter(from) {
            return;
        }
        self.votes.insert(from.to_string(), m.granted);
        let granted = self.votes.values().filter(|g| **g).count();
        let rejected = self.votes.len() - granted;
        if granted >= self.quorum() {
            match self.role {
                Role::PreCandidate => self.become_candidate(),
                _ => self.become_leader(),
            }
        } else if rejected >= self.quorum() {
            self.become_follower(self.term, None);
        }
    }

    fn vote_response(&self, granted: bool, pre_vote: bool, term: u64) -> Message {
        Message::RequestVoteResponse(RequestVoteResponse {
            term,
            granted,
            pre_vote,
            from: self.cfg.id.clone(),
        })
    }

    /// Starts an election after an election timeout without hearing from a leader.
    pub(super) fn campaign(&mut self) {
        if self.cfg.pre_vote {
            self.become_pre_candidate();
        } else {
            self.become_candidate();
        }
    }

    fn become_pre_candidate(&mut self) {
        self.role = Role::PreCandidate;
        self.leader = None;
        self.start_tally();
        self.reset_randomized_timeout();
        self.request_votes(true, false);
        if self.votes.len() >= self.quorum() {
            self.become_candidate();
        }
    }

    fn become_candidate(&mut self) {
        self.become_candidate_for(false);
    }

    /// A transfer target (§3.10) campaigns at once, without pre-vote: its
    /// leader vouches that the cluster is healthy and its log up to date.
    pub(super) fn campaign_for_transfer(&mut self) {
        self.become_candidate_for(true);
    }

    fn become_candidate_for(&mut self, leader_transfer: bool) {
        self.role = Role::Candidate;
        self.term = self.term.saturating_add(1);
        self.vote = Some(self.cfg.id.clone());
        self.leader = None;
        self.election_elapsed = 0;
        self.start_tally();
        self.reset_randomized_timeout();
        self.request_votes(false, leader_transfer);
        if self.votes.len() >= self.quorum() {
            self.become_leader();
        }
    }

    fn start_tally(&mut self) {
        self.votes.clear();
        if self.is_voter() {
            self.votes.insert(self.cfg.id.clone(), true);
        }
    }

    fn request_votes(&mut self, pre_vote: bool, leader_transfer: bool) {
        let term = if pre_vote {
            self.term.saturating_add(1)
        } else {
            self.term
        };
        // Learners too, though their votes do not count here: one of ours may
        // be a voter of a configuration we have not received, and must learn
        // our term even if it rejects us, or a lagging candidate that cannot
        // win keeps moving terms ahead of the one that can.
        for peer in self.peers() {
            let msg = Message::RequestVote(RequestVote {
                term,
                candidate: self.cfg.id.clone(),
                last_log_index: self.log.last_index(),
                last_log_term: self.log.last_term(),
                pre_vote,
                leader_transfer,
            });
            if pre_vote {
                self.send(&peer, msg);
            } else {
                // Our own vote and the new term must be durable first.
                self.send_after_persist(&peer, msg);
            }
        }
    }

    pub(super) fn become_follower(&mut self, term: u64, leader: Option<NodeId>) {
        self.fail_reads();
        if term > self.term {
            self.term = term;
            self.vote = None;
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.quiesced = false;
        self.idle_ticks = 0;
        self.election_elapsed = 0;
        self.votes.clear();
        self.progress.clear();
        self.catch_up = None;
        self.deferred_change = None;
        self.end_transfer();
        self.term_start_index = u64::MAX;
        self.reset_randomized_timeout();
    }

    fn become_leader(&mut self) {
        self.fail_reads();
        self.role = Role::Leader;
        self.quiesced = false;
        self.idle_ticks = 0;
        self.leader = Some(self.cfg.id.clone());
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.votes.clear();
        let next = self.log.last_index() + 1;
        let mut targets = self.peers();
        targets.extend(self.removed_by_uncommitted_config());
        self.progress = targets.into_iter().map(|p| (p, Progress::new(next))).collect();
        // Entries of earlier terms commit only through one of ours (§5.4.2).
        // The first leader of a cluster makes it a configuration entry: it
        // records the bootstrap members and creates the cluster identity.
        let (index, _) = if self.configs.has_log_config() {
            self.append_local(EntryType::EntryNoop as i32, Bytes::new())
        } else {
            let mut m = self.membership().clone();
            m.uid = format!(
                "{:016x}{:016x}",
                self.rng.random::<u64>(),
                self.rng.random::<u64>()
            );
            self.append_config(m)
        };
        self.term_start_index = index;
        self.broadcast_append(Carry::Nothing);
    }

    /// Members of the configuration before the latest one that the latest
    /// one removes, while it is uncommitted. A new leader replicates to them
    /// until it commits (then `after_leader_commit` drops them): a removed
    /// leader whose successor was elected before it heard its removal
    /// commit learns it that way, instead of never (§4.2.2).
    fn removed_by_uncommitted_config(&self) -> Vec<NodeId> {
        let (index, latest) = self.configs.latest();
        if index <= self.commit || index == 0 {
            return Vec::new();
        }
        let (_, before) = self.configs.at(index - 1);
        before
            .members()
            .filter(|p| !latest.contains(p) && **p != self.cfg.id)
            .cloned()
            .collect()
    }

    /// Heartbeats and, with check-quorum, stepping down when a majority is silent.
    pub(super) fn tick_leader(&mut self) {
        self.election_elapsed += 1;
        self.heartbeat_elapsed += 1;
        if self.election_elapsed >= self.cfg.election_ticks {
            self.election_elapsed = 0;
            if self.cfg.check_quorum {
                let m = self.membership();
                let active = usize::from(m.is_voter(&self.cfg.id))
                    + self
                        .progress
                        .iter()
                        .filter(|(p, pr)| pr.recent_active && m.is_voter(p))
                        .count();
                if active < self.quorum() {
                    self.become_follower(self.term, None);
                    return;
                }
                self.progress.values_mut().for_each(|p| p.recent_active = false);
            }
        }
        if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            self.send_heartbeats();
        }
        self.tick_catch_up();
        self.tick_transfer();
        self.tick_quiesce();
    }
}
