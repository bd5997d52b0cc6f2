//! Ready handling (check it, send, queue, persist) and the state machine.

use super::*;

impl Sim {
    // -- Ready handling ---------------------------------------------------

    /// Takes a node's Ready: checks it, sends what may leave at once, queues the
    /// rest for persistence, and maybe persists at once.
    pub(super) fn process(&mut self, i: usize) {
        let Some(core) = self.nodes[i].core.as_mut() else {
            return;
        };
        let mut rd = core.ready();
        if rd.is_empty() {
            return;
        }
        let (states, failures) = (
            std::mem::take(&mut rd.read_states),
            std::mem::take(&mut rd.read_failures),
        );
        self.read_answers(i, states, failures);
        let node = &self.nodes[i];
        let core = node.core.as_ref().unwrap();
        let id = node.id.clone();
        let mut verdicts = Vec::new();
        let role = core.role();
        if role == Role::Leader {
            verdicts.push(self.checker.leader(core.term(), &id));
        }
        // The Ready's log part is the core's log, contiguous, each entry checked for log matching.
        for (k, e) in rd.entries.iter().enumerate() {
            if k > 0 && e.index != rd.entries[k - 1].index + 1 {
                verdicts.push(Err(format!("{id}: Ready entries not contiguous at {}", e.index)));
            }
            if core.log().entry(e.index) != Some(e) {
                verdicts.push(Err(format!("{id}: Ready entry {} is not the core's", e.index)));
            }
            let prev_term = core.log().term(e.index - 1).unwrap_or(u64::MAX);
            verdicts.push(self.checker.entry_written(&id, e, prev_term));
        }
        // The core installs only a snapshot the runtime stored.
        if let Some(meta) = &rd.snapshot {
            if node.disk.snapshot_index() < meta.last_index || core.log().start_index() != meta.last_index {
                verdicts.push(Err(format!(
                    "{id}: Ready installs snapshot {} (log start {}), the store holds {}",
                    meta.last_index,
                    core.log().start_index(),
                    node.disk.snapshot_index()
                )));
            }
        }
        // must_sync whenever term, vote or the log change.
        let hs_changed = rd
            .hard_state
            .as_ref()
            .is_some_and(|hs| (hs.term, &hs.vote) != (node.last_hard_state.term, &node.last_hard_state.vote));
        let log_changed = rd.truncate_from.is_some() || !rd.entries.is_empty() || rd.snapshot.is_some();
        if (hs_changed || log_changed) && !rd.must_sync {
            verdicts.push(Err(format!(
                "{id}: Ready changes term, vote or log but must_sync is false"
            )));
        }
        // Votes, vote requests and acknowledgements must wait for persistence.
        for env in &rd.messages {
            let early = match &env.msg {
                Message::RequestVote(r) => !r.pre_vote,
                Message::RequestVoteResponse(r) => r.granted && !r.pre_vote,
                Message::AppendEntriesResponse(r) => r.success,
                Message::AppendEntries(_)
                | Message::InstallSnapshot(_)
                | Message::ReadIndexRequest(_)
                | Message::ReadIndexResponse(_)
                | Message::TimeoutNow(_) => false,
            };
            if early {
                verdicts.push(Err(format!(
                    "{id} may send before persisting: {}",
                    summary(&env.msg)
                )));
            }
        }
        let votes: Vec<&Envelope> = rd.messages.iter().chain(&rd.messages_after_persist).collect();
        verdicts.extend(self.check_grants(i, &votes));
        if self.vote_request.as_ref().is_some_and(|r| r.0 == i) {
            self.vote_request = None;
        }
        for v in verdicts {
            self.note(v);
        }
        if let Some(hs) = &rd.hard_state {
            self.nodes[i].last_hard_state = hs.clone();
        }
        if let Some(meta) = &rd.snapshot {
            // (At restart the core adopts a snapshot the state machine already holds.)
            let node = &mut self.nodes[i];
            if node.applied < meta.last_index {
                node.installing = Some(node.installing.unwrap_or(0).max(meta.last_index));
            }
        }
        let position = rd.persisted_position();
        for env in rd.messages {
            self.send(i, env);
        }
        let mut pending = Pending {
            hard_state: rd.hard_state,
            truncate_from: rd.truncate_from,
            entries: rd.entries,
            must_sync: rd.must_sync,
            position,
            after_persist: rd.messages_after_persist,
            config: rd.config,
            snapshot: rd.snapshot,
        };
        if self.mutation == Some(Mutation::SendBeforePersist) {
            for env in std::mem::take(&mut pending.after_persist) {
                self.send(i, env);
            }
        }
        let writes = pending.hard_state.is_some()
            || pending.truncate_from.is_some()
            || !pending.entries.is_empty()
            || pending.config.is_some()
            || pending.snapshot.is_some();
        if !writes && self.nodes[i].pending.is_empty() {
            for env in pending.after_persist {
                self.send(i, env);
            }
            return;
        }
        self.nodes[i].pending.push_back(pending);
        if self.calm || self.rng.random_bool(self.nodes[i].persist_at_once) {
            self.persist(i, usize::MAX);
        }
    }

    /// Writes up to `count` of the node's pending Readies, oldest first.
    pub(super) fn persist(&mut self, i: usize, count: usize) {
        for _ in 0..count {
            let Some(p) = self.nodes[i].pending.pop_front() else {
                break;
            };
            let id = self.nodes[i].id.clone();
            let ignore_truncate = self.mutation == Some(Mutation::IgnoreTruncate);
            let node = &mut self.nodes[i];
            let disk = &mut node.disk;
            if p.must_sync {
                // An fsync makes every earlier write durable too.
                if let Some(hs) = p.hard_state.clone().or(disk.unsynced.take()) {
                    disk.hard_state = hs;
                }
                disk.unsynced = None;
            } else if let Some(hs) = &p.hard_state {
                disk.unsynced = Some(hs.clone());
            }
            if let Some(from) = p.truncate_from {
                self.stats.truncations += 1;
                if !ignore_truncate {
                    disk.truncate_from(from);
                }
            }
            if let Some(meta) = &p.snapshot {
                disk.start_after(meta.last_index, meta.last_term);
            }
            if let Some(c) = &p.config {
                disk.config = Some(c.clone());
            }
            let mut verdicts = Vec::new();
            for e in &p.entries {
                // A put by index overwrites.
                if let Err(e) = disk.put(e) {
                    verdicts.push(Err(format!("{id}: {e}")));
                }
            }
            if let Some(hs) = &p.hard_state {
                verdicts.push(self.checker.hard_state_written(&id, hs));
            }
            // Once every taken Ready is written, the disk holds exactly the core's state.
            let node = &self.nodes[i];
            if node.pending.is_empty() {
                let core = node.core.as_ref().unwrap();
                let log = core.log();
                let entries = log.slice(log.first_index(), log.last_index(), usize::MAX, u64::MAX);
                let start = (log.start_index(), log.term(log.start_index()).unwrap_or(0));
                if node.disk.entries != entries || node.disk.log_start != start {
                    verdicts.push(Err(format!(
                        "{id}: disk log (after {:?}, {} entries) differs from the core's (after {start:?}, {} entries) with nothing pending",
                        node.disk.log_start,
                        node.disk.entries.len(),
                        entries.len()
                    )));
                }
                let in_force = (core.config_index(), core.membership());
                let stored = node.disk.config.as_ref().map(|(i, m)| (*i, m));
                if stored.unwrap_or((0, in_force.1)) != in_force || (stored.is_none() && in_force.0 != 0) {
                    verdicts.push(Err(format!(
                        "{id}: stored configuration {stored:?} is not the one in force {in_force:?}"
                    )));
                }
                let hs = node.disk.latest_hard_state();
                let s = core.status();
                if (hs.term, &hs.vote) != (s.term, &s.vote) {
                    verdicts.push(Err(format!(
                        "{id}: disk hard state {hs:?} differs from the core's ({}, {:?})",
                        s.term, s.vote
                    )));
                }
            }
            for v in verdicts {
                self.note(v);
            }
            trace!(
                self,
                "{id} persisted {:?} trunc {:?} pos {:?} sync {}{}",
                p.hard_state.as_ref().map(|h| (h.term, h.vote.clone(), h.commit)),
                p.truncate_from,
                p.position,
                p.must_sync,
                p.snapshot.as_ref().map_or(String::new(), |m| format!(
                    " snapshot ({}, {})",
                    m.last_index, m.last_term
                ))
            );
            for env in p.after_persist {
                self.send(i, env);
            }
            if let Some(meta) = p.snapshot {
                // The reset is durable: the apply thread loads the snapshot
                // next, now or a little later (a crash point in between).
                self.nodes[i].pending_load = Some(meta);
                if self.calm || self.rng.random_bool(0.5) {
                    self.load_snapshot(i);
                }
            }
            if let Some((index, term)) = p.position {
                self.nodes[i].core.as_mut().unwrap().on_persisted(index, term);
                // A leader's commit may append (a deferred change, a
                // promotion): take that Ready before writing the next one.
                self.process(i);
            }
        }
    }

    // -- the state machine --------------------------------------------------

    pub(super) fn apply(&mut self, i: usize, max: usize) {
        if self.nodes[i].core.is_none() {
            return;
        }
        self.load_snapshot(i);
        let node = &self.nodes[i];
        let core = node.core.as_ref().unwrap();
        let id = node.id.clone();
        let commit = core.commit();
        let v = self
            .checker
            .commit(&id, core.term(), commit, |k| node.entry_at(k));
        let entries = core.entries_to_apply(max);
        self.note(v);
        let Some(last) = entries.last().map(|e| e.index) else {
            // (A snapshot loaded above may serve reads.)
            self.serve_reads(i);
            return;
        };
        for e in entries {
            let v = self.checker.applying(&id, self.nodes[i].applied, &e);
            self.note(v);
            // Only entries durable in this node's own log may be applied.
            if self.nodes[i].disk.entry(e.index) != Some(&e) {
                self.note(Err(format!(
                    "{id} applies entry {} before it is on its disk",
                    e.index
                )));
            }
            let node = &mut self.nodes[i];
            node.sm.push(e.clone());
            node.applied = e.index;
            if let Some(p) = self.proposals.remove(&(i, e.index)) {
                if p.incarnation == node.incarnation && p.term == e.term {
                    if p.payload != e.payload {
                        let msg = format!(
                            "{id} applied ({}, {}) with another payload than proposed",
                            e.index, e.term
                        );
                        self.note(Err(msg));
                    }
                    self.acked.push((e.index, e.term, e.payload));
                }
            }
        }
        trace!(self, "{id} applied up to {last}");
        self.nodes[i].core.as_mut().unwrap().on_applied(last);
        self.serve_reads(i);
    }
}
