//! Driving a run: the invariants checked after every step, random steps,
//! healing and convergence, and the failure report.

use super::*;
use crate::repro_command;
use std::collections::HashSet;
use std::fmt::Write as _;

/// Rounds (one tick of every node, then a quiet network) allowed to converge
/// after healing: more than a leader waits for a snapshot stream its
/// transport never reported (60 election timeouts, about 600 ticks).
const HEAL_ROUNDS: usize = 800;

impl Sim {
    // -- invariants after every step --------------------------------------------

    fn check(&mut self) {
        let mut verdicts = Vec::new();
        for i in 0..self.nodes.len() {
            let node = &self.nodes[i];
            let Some(core) = node.core.as_ref() else { continue };
            let s = core.status();
            let id = &node.id;
            if s.role == Role::Leader {
                verdicts.push(self.checker.leader(s.term, id));
                verdicts.push(self.checker.leader_complete(id, s.term, |k| node.term_at(k)));
            }
            // Invariant 7: snapshot ≤ applied ≤ commit ≤ last log index.
            self.check_snapshots(i, &mut verdicts);
            if s.applied > core.applicable_index() || s.stable_index > s.last_log_index {
                verdicts.push(Err(format!(
                    "{id}: applied {} / stable {} out of range: {s:?}",
                    s.applied, s.stable_index
                )));
            }
            if s.applied != node.applied {
                verdicts.push(Err(format!(
                    "{id}: core says applied {}, state machine {}",
                    s.applied, node.applied
                )));
            }
            if s.term < node.last_term || s.commit < node.last_commit {
                verdicts.push(Err(format!(
                    "{id}: term/commit went back: ({}, {}) -> ({}, {})",
                    node.last_term, node.last_commit, s.term, s.commit
                )));
            }
            if s.term == node.last_term && node.last_vote.is_some() && s.vote != node.last_vote {
                verdicts.push(Err(format!(
                    "{id}: vote in term {} changed {:?} -> {:?}",
                    s.term, node.last_vote, s.vote
                )));
            }
            if s.term < node.disk.latest_hard_state().term {
                verdicts.push(Err(format!("{id}: term {} below its durable term", s.term)));
            }
            verdicts.push(self.checker.commit(id, s.term, s.commit, |k| node.entry_at(k)));
            let node = &mut self.nodes[i];
            node.last_term = s.term;
            node.last_vote = s.vote;
            node.last_commit = s.commit;
        }
        self.check_membership(&mut verdicts);
        verdicts.push(self.check_leases());
        for v in verdicts {
            self.note(v);
        }
    }

    // -- driving ------------------------------------------------------------

    fn random_step(&mut self) {
        self.step += 1;
        let live = self.live();
        if self.rng.random_bool(0.002) {
            // A lull of a few to a few dozen ticks.
            self.lull_until = self.step + self.rng.random_range(100..=800);
        }
        let lull = self.step < self.lull_until;
        if !lull {
            self.maybe_read();
        }
        let mut roll = self.rng.random_range(0..1000);
        if lull && (850..=961).contains(&roll) {
            roll = 0;
        }
        match roll {
            // Deliver a few messages.
            0..=499 => {
                for _ in 0..self.rng.random_range(1..=6) {
                    self.deliver_one();
                }
            }
            // A tick period passes (see `clock.rs`).
            500..=579 => self.tick_period(false),
            // Persist some pending Readies of one node.
            580..=729 => {
                let with_pending: Vec<usize> = live
                    .iter()
                    .copied()
                    .filter(|&i| !self.nodes[i].pending.is_empty())
                    .collect();
                if !with_pending.is_empty() {
                    let i = with_pending[self.rng.random_range(0..with_pending.len())];
                    let count = self.rng.random_range(1..=3);
                    self.persist(i, count);
                }
            }
            // Apply some committed entries on one node, which may then
            // snapshot its state machine and compact its log.
            730..=849 => {
                if !live.is_empty() {
                    let i = live[self.rng.random_range(0..live.len())];
                    let max = self.rng.random_range(1..=8);
                    self.apply(i, max);
                    if self.rng.random_bool(self.snapshot_rate) {
                        self.take_snapshot(i);
                    }
                }
            }
            // A client asks a leader for a membership change.
            850..=855 if self.changes => self.conf_change(),
            // A client proposes to a leader.
            850..=961 => self.propose(),
            // Partitions form and heal.
            962..=965 => self.partition(),
            966..=969 => {
                if !self.blocked.is_empty() {
                    self.blocked.clear();
                    trace!(self, "partition healed");
                }
            }
            // Crashes and restarts.
            _ => {
                let down: Vec<usize> = (0..self.nodes.len())
                    .filter(|&i| self.nodes[i].core.is_none())
                    .collect();
                // Mostly a minority of the voters is down at a time; now and
                // then more, up to all.
                let voters = self.committed_voters();
                let minority = voters.len() - (voters.len() / 2 + 1);
                let voters_down = down
                    .iter()
                    .filter(|&&i| voters.contains(&self.nodes[i].id))
                    .count();
                let may_crash = voters_down < minority || self.rng.random_bool(0.1);
                if !down.is_empty() && self.rng.random_bool(0.15) {
                    let i = down[self.rng.random_range(0..down.len())];
                    self.restart(i);
                } else if !live.is_empty()
                    && may_crash
                    && self.rng.random_bool((self.crash_rate * 1000.0 / 30.0).min(1.0))
                {
                    let i = live[self.rng.random_range(0..live.len())];
                    self.crash(i);
                }
            }
        }
        for i in 0..self.nodes.len() {
            self.process(i);
        }
        self.crash_while_installing();
        self.check();
    }

    /// One calm round: every node ticks, then messages, persistence and
    /// application run until the network is quiet.
    fn calm_round(&mut self) {
        self.step += 1;
        self.tick_period(true);
        let mut budget = 100_000;
        loop {
            for i in 0..self.nodes.len() {
                self.process(i);
                if self.nodes[i].core.is_some() {
                    self.persist(i, usize::MAX);
                    self.apply(i, usize::MAX);
                }
            }
            self.check();
            let Some(m) = self.net.pop_front() else { break };
            self.deliver(m);
            budget -= 1;
            if budget == 0 {
                self.note(Err("the network never went quiet while healing".into()));
                break;
            }
        }
    }

    /// Whether every node agrees: one leader of the highest term, equal logs and
    /// commit, everything applied.
    fn converged(&self) -> Result<(), String> {
        let statuses: Vec<_> = self
            .nodes
            .iter()
            .map(|n| n.core.as_ref().unwrap().status())
            .collect();
        let leaders: Vec<_> = statuses.iter().filter(|s| s.role == Role::Leader).collect();
        let [leader] = leaders.as_slice() else {
            return Err(format!("{} leaders", leaders.len()));
        };
        let lead = &self.nodes[self.index_of[&leader.id]];
        let lead_core = lead.core.as_ref().unwrap();
        if leader.commit != leader.last_log_index {
            return Err(format!(
                "leader {} commit {} < last {}",
                leader.id, leader.commit, leader.last_log_index
            ));
        }
        let members = lead_core.membership();
        if !members.is_voter(&leader.id) {
            return Err(format!("leader {} is not a voter of {members:?}", leader.id));
        }
        // Servers outside the configuration (removed, or never added) need not follow.
        for (n, s) in self.nodes.iter().zip(&statuses) {
            if !members.contains(&n.id) {
                continue;
            }
            let core = n.core.as_ref().unwrap();
            if core.membership() != members {
                return Err(format!(
                    "{} is on configuration {:?} ({}), the leader on {members:?} ({})",
                    s.id,
                    core.membership(),
                    core.config_index(),
                    lead_core.config_index()
                ));
            }
            if s.term != leader.term || s.leader.as_deref() != Some(leader.id.as_str()) {
                return Err(format!("{} at term {} follows {:?}", s.id, s.term, s.leader));
            }
            if s.commit != leader.commit || s.applied != leader.commit || n.applied != leader.commit {
                return Err(format!(
                    "{}: commit {} applied {} (leader commit {})",
                    s.id, s.commit, s.applied, leader.commit
                ));
            }
            // Logs agree where both still hold entries; state machines everywhere.
            let from = core.log().first_index().max(lead_core.log().first_index());
            let slice = |c: &RaftCore| c.log().slice(from, s.commit, usize::MAX, u64::MAX);
            if slice(core) != slice(lead_core) {
                return Err(format!("{}'s log differs from the leader's", s.id));
            }
            if n.sm != lead.sm {
                return Err(format!("{}'s state machine differs from the leader's", s.id));
            }
        }
        Ok(())
    }

    /// Heals every fault, restarts every node, and waits for convergence.
    fn heal_and_converge(&mut self) {
        self.calm = true;
        self.blocked.clear();
        for i in 0..self.nodes.len() {
            if self.nodes[i].core.is_none() {
                self.restart(i);
            }
        }
        trace!(self, "healing");
        let mut last = String::new();
        for round in 1..=HEAL_ROUNDS {
            self.stats.heal_rounds = round;
            self.calm_round();
            if self.violation.is_some() {
                return;
            }
            match self.converged() {
                Ok(()) => {
                    self.check_final();
                    return;
                }
                Err(why) => last = why,
            }
        }
        self.note(Err(format!(
            "no convergence after healing for {HEAL_ROUNDS} rounds: {last}"
        )));
    }

    /// After convergence: every acknowledged proposal is applied, once, at
    /// its place, on every member (and nothing twice anywhere).
    fn check_final(&mut self) {
        let mut verdicts = Vec::new();
        let leader = (0..self.nodes.len())
            .find(|&i| self.nodes[i].core.as_ref().unwrap().role() == Role::Leader)
            .expect("converged");
        self.count_changes(leader);
        let members = self.nodes[leader].core.as_ref().unwrap().membership().clone();
        for n in &self.nodes {
            let member = members.contains(&n.id);
            let by_index: HashMap<u64, (u64, &Bytes)> =
                n.sm.iter().map(|e| (e.index, (e.term, &e.payload))).collect();
            for (index, term, payload) in self.acked.iter().filter(|_| member) {
                if by_index.get(index) != Some(&(*term, payload)) {
                    verdicts.push(Err(format!(
                        "{}: acknowledged ({index}, {term}) {payload:?} is not applied",
                        n.id
                    )));
                }
            }
            let mut seen = HashSet::new();
            // Client payloads ("p<n>-…") are unique; configurations may repeat.
            for p in n.sm.iter().map(|e| &e.payload) {
                if p.starts_with(b"p") && !seen.insert(p.clone()) {
                    verdicts.push(Err(format!("{}: {p:?} applied twice", n.id)));
                }
            }
            let indexes: Vec<u64> = n.sm.iter().map(|e| e.index).collect();
            if indexes != (1..=n.applied).collect::<Vec<_>>() {
                verdicts.push(Err(format!(
                    "{}: applied indexes are not 1..={}",
                    n.id, n.applied
                )));
            }
        }
        for v in verdicts {
            self.note(v);
        }
    }

    fn failure_report(&self, steps: usize, what: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "simulation seed {} failed at step {}: {what}",
            self.seed, self.step
        );
        let _ = writeln!(s, "cluster: {:?}", self.stats);
        let _ = writeln!(s, "last events:");
        for line in &self.trace {
            let _ = writeln!(s, "  {line}");
        }
        let _ = write!(s, "reproduce with: {}", repro_command(self.seed, steps));
        s
    }
}

/// Runs one seed; returns its stats, or the failure report.
pub(crate) fn run_seed(seed: u64, steps: usize, mutation: Option<Mutation>) -> Result<Stats, String> {
    let mut sim = Sim::new(seed, mutation);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for _ in 0..steps {
            sim.random_step();
            if sim.violation.is_some() {
                return;
            }
        }
        sim.heal_and_converge();
    }));
    if let Err(panic) = outcome {
        let what = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        return Err(sim.failure_report(steps, &format!("panic: {what}")));
    }
    if let Some(v) = sim.violation.clone() {
        return Err(sim.failure_report(steps, &v));
    }
    sim.stats.committed = sim.checker.committed.len();
    sim.stats.committed_proposals = sim
        .checker
        .committed
        .iter()
        .filter(|(_, p)| !p.is_empty())
        .count();
    sim.stats.acked = sim.acked.len();
    sim.stats.max_term = sim.checker.leaders.keys().next_back().copied().unwrap_or(0);
    sim.stats.leaders = sim.checker.leaders.len();
    sim.stats.reads_unanswered = sim.reads.outstanding();
    Ok(sim.stats)
}
