//! Faults (crashes, restarts, partitions) and clients.

use super::*;
use rand::seq::SliceRandom;

impl Sim {
    // -- faults and clients ---------------------------------------------------

    pub(super) fn crash(&mut self, i: usize) {
        let keep_unsynced = self.rng.random_bool(0.5);
        let node = &mut self.nodes[i];
        node.core = None;
        node.pending.clear();
        node.pending_load = None;
        node.installing = None;
        if let Some(hs) = node.disk.unsynced.take() {
            if keep_unsynced {
                node.disk.hard_state = hs;
            } else {
                self.stats.unsynced_lost += 1;
            }
        }
        node.incarnation += 1;
        self.stats.crashes += 1;
        self.drop_reads(i);
        self.forget_held(i);
        trace!(self, "{} crashed", self.nodes[i].id);
        // The others' links to it die (now and then one goes unnoticed).
        for j in self.live() {
            if self.rng.random_bool(0.9) {
                self.host_down(j, i);
            }
        }
    }

    /// Node `at` hears that the link to `peer`'s host died: what the
    /// runtime tells quiet groups (`RaftCore::peer_host_down`).
    pub(super) fn host_down(&mut self, at: usize, peer: usize) {
        self.read_clock(at);
        let id = self.nodes[peer].id.clone();
        if let Some(core) = self.nodes[at].core.as_mut() {
            core.peer_host_down(&id);
            self.stats.host_down_notices += 1;
            trace!(self, "{} hears {id}'s host is down", self.nodes[at].id);
        }
    }

    pub(super) fn restart(&mut self, i: usize) {
        let seed = node_seed(self.seed, i, self.nodes[i].incarnation);
        let forget_vote = self.mutation == Some(Mutation::ForgetVoteOnRestart);
        let node = &mut self.nodes[i];
        // A state machine behind the stored snapshot is loaded from it first.
        let loaded = node.load_if_behind();
        let snapshot = node.disk.snapshot.as_ref().map(|s| s.meta.clone());
        let mut restored = Restored {
            hard_state: node.disk.hard_state.clone(),
            log_start: node.disk.log_start,
            entries: node.disk.entries.clone(),
            snapshot: snapshot.clone(),
            applied: node.applied,
            config: node.disk.config.clone(),
        };
        if forget_vote {
            restored.hard_state.vote = None;
        }
        let hs = restored.hard_state.clone();
        let stored = restored.config.clone();
        // A snapshot newer than the log (stored, then a crash before the log
        // reset was durable) is adopted, with its configuration.
        let adopted = snapshot.as_ref().filter(|m| {
            m.last_index > node.disk.log_start.0
                && node.disk.entry(m.last_index).map(|e| e.term) != Some(m.last_term)
        });
        let core = RaftCore::new(node.cfg.clone(), restored, seed);
        // The configuration in force survives the restart.
        let in_force = (core.config_index(), core.membership().clone());
        let from_snapshot = adopted.is_some_and(|m| {
            let c = Membership::from_wire(m.config.clone().unwrap_or_default());
            (m.config_index, &c.voters, &c.learners) == (in_force.0, &in_force.1.voters, &in_force.1.learners)
        });
        let stored_ok = from_snapshot || stored.as_ref().is_none_or(|c| *c == in_force);
        let s = core.status();
        node.last_term = s.term;
        node.last_vote = s.vote.clone();
        node.last_commit = s.commit;
        node.last_hard_state = HardState {
            commit: s.commit,
            ..hs.clone()
        };
        node.core = Some(core);
        let id = node.id.clone();
        self.read_clock(i);
        if (s.role, s.term, &s.vote, &s.leader) != (Role::Follower, hs.term, &hs.vote, &None) {
            self.note(Err(format!("{id} restarted as {s:?} from {hs:?}")));
        }
        if !stored_ok {
            self.note(Err(format!(
                "{id} restarted with {in_force:?}, stored {stored:?}"
            )));
        }
        if loaded {
            self.stats.restart_loads += 1;
        }
        let latest = self.nodes[i].core.as_ref().unwrap().latest_snapshot();
        if latest.map(|m| m.last_index) != snapshot.map(|m| m.last_index).filter(|&i| i > 0) {
            self.note(Err(format!(
                "{id} restarted with snapshot {latest:?}, stored another"
            )));
        }
        trace!(
            self,
            "{id} restarted: term {} vote {:?} commit {} log {}..={} applied {}{}",
            s.term,
            s.vote,
            s.commit,
            s.first_log_index,
            s.last_log_index,
            s.applied,
            if loaded {
                " (loaded the stored snapshot)"
            } else {
                ""
            }
        );
    }

    pub(super) fn partition(&mut self) {
        let n = self.nodes.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut self.rng);
        let mut cut = self.rng.random_range(1..n);
        // Half the time, cut a leader off in a minority, so that terms change and logs diverge.
        let leader = order.iter().position(|&i| {
            self.nodes[i]
                .core
                .as_ref()
                .is_some_and(|c| c.role() == Role::Leader)
        });
        if let (Some(k), true) = (leader, self.rng.random_bool(0.5)) {
            order.swap(0, k);
            cut = self.rng.random_range(1..=n - self.quorum());
        }
        let (a, b) = order.split_at(cut);
        let one_way = self.rng.random_bool(0.2);
        self.blocked.clear();
        for &x in a {
            for &y in b {
                self.blocked.insert((x, y));
                if !one_way {
                    self.blocked.insert((y, x));
                }
            }
        }
        self.stats.partitions += 1;
        // A link dies when either direction is cut (a ping needs its
        // answer): both sides hear it. And now and then a false alarm.
        let cut: Vec<(usize, usize)> = self.blocked.iter().copied().collect();
        for (x, y) in cut {
            self.host_down(x, y);
            self.host_down(y, x);
        }
        if self.rng.random_bool(0.3) {
            let live = self.live();
            if live.len() > 1 {
                let at = live[self.rng.random_range(0..live.len())];
                let peer = live[self.rng.random_range(0..live.len())];
                if at != peer {
                    self.host_down(at, peer);
                }
            }
        }
        let names = |s: &[usize]| s.iter().map(|&i| self.nodes[i].id.clone()).collect::<Vec<_>>();
        trace!(
            self,
            "partition {:?} | {:?}{}",
            names(a),
            names(b),
            if one_way { " (one-way)" } else { "" }
        );
    }

    pub(super) fn propose(&mut self) {
        let leaders: Vec<usize> = self
            .live()
            .into_iter()
            .filter(|&i| self.nodes[i].core.as_ref().unwrap().role() == Role::Leader)
            .collect();
        if leaders.is_empty() {
            return;
        }
        let i = leaders[self.rng.random_range(0..leaders.len())];
        let count = self.rng.random_range(1..=3);
        let payloads: Vec<Bytes> = (0..count)
            .map(|_| {
                self.next_payload += 1;
                let pad = self.rng.random_range(0..24);
                Bytes::from(format!("p{}-{}", self.next_payload, "x".repeat(pad)))
            })
            .collect();
        let core = self.nodes[i].core.as_mut().unwrap();
        match core.propose(payloads.clone()) {
            Ok(positions) => {
                for ((index, term), payload) in positions.into_iter().zip(payloads) {
                    let incarnation = self.nodes[i].incarnation;
                    self.proposals.insert(
                        (i, index),
                        Proposal {
                            incarnation,
                            term,
                            payload,
                        },
                    );
                    self.stats.proposals += 1;
                }
                trace!(self, "{} proposed {count}", self.nodes[i].id);
            }
            Err(e) => self.note(Err(format!("a leader refused a proposal: {e:?}"))),
        }
    }
}
