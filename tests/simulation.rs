//! A seeded, deterministic, randomized simulation of the pure Raft core.
//!
//! 3–7 cores talk through a simulated network that loses, duplicates and
//! reorders messages and is split by (possibly one-way) partitions that heal.
//! Nodes crash and restart: each has a simulated disk (hard state + log) that
//! only holds what the simulation persisted, and Readies are persisted
//! sometimes at once, sometimes later (a per-node queue persisted in order), so
//! messages that must wait for persistence really wait, and a crash loses every
//! Ready not yet persisted. A commit-only Ready (`must_sync == false`) is
//! written without fsync and may be lost by a crash. Each node's state machine
//! is a list of applied (index, term, payload), persisted atomically with its
//! applied index. Clients propose unique payloads to whichever node leads; a
//! proposal is acknowledged when its proposer applies it at the (index, term)
//! `propose` returned.
//!
//! After every step a [`Checker`] verifies the invariants of
//! `raft-acceptance.md` that apply to the core (election safety, log
//! matching, leader completeness, state machine safety, committed entries
//! never change and stay on a quorum of disks, `applied ≤ commit ≤
//! last_log_index`, monotonic terms and durable votes, AppendEntries only from
//! the term's leader, acknowledged proposals applied exactly once, in order),
//! plus the driving contract of the core's `Ready`. At the end everything
//! heals and the cluster must converge.
//!
//! `FLOYD_SIM_SEEDS=N` runs seeds `0..N` (default 200), `FLOYD_SIM_SEED=S`
//! runs only seed S, `FLOYD_SIM_STEPS=M` sets the number of random steps per
//! seed (default 4000); `FLOYD_SIM_TRACE=1` prints every event and
//! `FLOYD_SIM_VERBOSE=1` each seed's statistics. A failure prints the seed, the
//! last events and the command that reproduces it, e.g.
//! `FLOYD_SIM_SEED=1234 cargo test --test simulation -- --nocapture`.
//! Long runs: `FLOYD_SIM_SEEDS=5000 cargo test --release --test simulation -- --nocapture`.

use bytes::Bytes;
use floyd::core::{Config, Envelope, HardState, Message, NodeId, RaftCore, Restored, Role};
use floyd::wire::Entry;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;

const DEFAULT_SEEDS: u64 = 200;
const DEFAULT_STEPS: usize = 4000;
/// Rounds (one tick of every node, then a quiet network) allowed to converge after healing.
const HEAL_ROUNDS: usize = 300;

// ---------------------------------------------------------------------------
// The invariant checker: fed observations, it keeps the whole history.
// ---------------------------------------------------------------------------

/// Checks the safety invariants over the whole history of a run. It only sees
/// what it is told, so it can also be fed a fabricated history.
#[derive(Default)]
struct Checker {
    /// Term → the only node ever seen leading it (election safety).
    leaders: BTreeMap<u64, NodeId>,
    /// (voter, term) → the candidate it granted its vote to.
    votes: BTreeMap<(NodeId, u64), NodeId>,
    /// (index, term) → (term at index - 1, payload) of every entry ever in any log (log matching).
    entries: HashMap<(u64, u64), (u64, Bytes)>,
    /// (term, payload) of every committed index, from index 1.
    committed: Vec<(u64, Bytes)>,
    /// Term in which an index was first seen committed → the highest such index.
    /// (The observer's current term: the term the commitment happened in, or later.)
    committed_in: BTreeMap<u64, u64>,
    /// Last (term, vote) written to each node's disk.
    durable: BTreeMap<NodeId, HardState>,
}

type Verdict = Result<(), String>;

impl Checker {
    /// Invariant 1: at most one leader per term.
    fn leader(&mut self, term: u64, node: &str) -> Verdict {
        match self.leaders.get(&term) {
            Some(l) if l != node => Err(format!("election safety: {l} and {node} both lead term {term}")),
            Some(_) => Ok(()),
            None => {
                self.leaders.insert(term, node.to_string());
                Ok(())
            }
        }
    }

    /// One vote per term and voter, restarts included.
    fn vote_granted(&mut self, voter: &str, term: u64, candidate: &str) -> Verdict {
        let prev = self
            .votes
            .entry((voter.to_string(), term))
            .or_insert_with(|| candidate.to_string());
        if prev != candidate {
            return Err(format!(
                "{voter} granted its term-{term} vote to both {prev} and {candidate}"
            ));
        }
        Ok(())
    }

    /// Invariant 9: AppendEntries of term T come only from T's leader.
    fn append_sent(&self, from: &str, term: u64) -> Verdict {
        match self.leaders.get(&term) {
            Some(l) if l == from => Ok(()),
            other => Err(format!(
                "{from} sent AppendEntries of term {term}, whose leader is {other:?}"
            )),
        }
    }

    /// Invariant 2 (inductively): an entry is fixed by its (index, term), and so is its predecessor's term.
    fn entry_written(&mut self, node: &str, e: &Entry, prev_term: u64) -> Verdict {
        let seen = self
            .entries
            .entry((e.index, e.term))
            .or_insert_with(|| (prev_term, e.payload.clone()));
        if *seen != (prev_term, e.payload.clone()) {
            return Err(format!(
                "log matching: {node} holds ({}, {}) after term {prev_term} with payload {:?}; \
                 elsewhere it follows term {} with payload {:?}",
                e.index, e.term, e.payload, seen.0, seen.1
            ));
        }
        Ok(())
    }

    /// Invariant 5: a node's committed prefix is the one committed everywhere, forever.
    fn commit(
        &mut self,
        node: &str,
        term: u64,
        commit: u64,
        entry_at: impl Fn(u64) -> Option<Entry>,
    ) -> Verdict {
        for i in self.committed.len() as u64 + 1..=commit {
            let e = entry_at(i).ok_or_else(|| format!("{node} commits {commit} but lacks entry {i}"))?;
            self.committed.push((e.term, e.payload.clone()));
            let highest = self.committed_in.entry(term).or_default();
            *highest = (*highest).max(i);
        }
        if commit > 0 {
            let e = entry_at(commit).ok_or_else(|| format!("{node} commits {commit} past its log"))?;
            let want = &self.committed[commit as usize - 1];
            if (e.term, &e.payload) != (want.0, &want.1) {
                return Err(format!(
                    "committed entry changed: {node} has ({commit}, {}) {:?}, committed was ({commit}, {}) {:?}",
                    e.term, e.payload, want.0, want.1
                ));
            }
        }
        Ok(())
    }

    /// Invariant 3: a leader of `term` holds every entry committed in earlier terms
    /// (committed *in* them: an old entry committed by a later leader need not be there).
    fn leader_complete(&self, node: &str, term: u64, term_at: impl Fn(u64) -> Option<u64>) -> Verdict {
        // By log matching, holding the highest such entry means holding all of them.
        let Some(index) = self.committed_in.range(..term).map(|(_, &i)| i).max() else {
            return Ok(());
        };
        let want = self.committed[index as usize - 1].0;
        let have = term_at(index);
        if have != Some(want) {
            return Err(format!(
                "leader completeness: {node} leads term {term} with {have:?} at {index}, where term {want} was committed"
            ));
        }
        Ok(())
    }

    /// Invariant 8: the durable term never decreases; a durable vote never changes within its term.
    fn hard_state_written(&mut self, node: &str, hs: &HardState) -> Verdict {
        if let Some(prev) = self.durable.get(node) {
            if hs.term < prev.term {
                return Err(format!(
                    "{node}'s durable term went back from {} to {}",
                    prev.term, hs.term
                ));
            }
            if hs.term == prev.term && prev.vote.is_some() && hs.vote != prev.vote {
                return Err(format!(
                    "{node}'s durable vote in term {} changed from {:?} to {:?}",
                    hs.term, prev.vote, hs.vote
                ));
            }
        }
        self.durable.insert(node.to_string(), hs.clone());
        Ok(())
    }

    /// Invariants 4 and 10: entries are applied once, in index order, and are the committed ones.
    fn applying(&self, node: &str, applied: u64, e: &Entry) -> Verdict {
        if e.index != applied + 1 {
            return Err(format!(
                "{node} applies entry {} after {applied}: applied twice or out of order",
                e.index
            ));
        }
        match self.committed.get(e.index as usize - 1) {
            Some((t, p)) if *t == e.term && *p == e.payload => Ok(()),
            other => Err(format!(
                "state machine safety: {node} applies ({}, {}) {:?}; committed there: {other:?}",
                e.index, e.term, e.payload
            )),
        }
    }

    /// Invariant 6: the last committed entry (hence, by log matching, all) is on a quorum of disks.
    fn on_quorum_of_disks<'a>(&self, disks: impl Iterator<Item = &'a [Entry]>, quorum: usize) -> Verdict {
        let Some((term, _)) = self.committed.last() else {
            return Ok(());
        };
        let index = self.committed.len();
        let holders = disks
            .filter(|d| d.get(index - 1).is_some_and(|e| e.term == *term))
            .count();
        if holders < quorum {
            return Err(format!(
                "committed entry ({index}, {term}) is durable on {holders} disks, fewer than a quorum of {quorum}"
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The simulated world.
// ---------------------------------------------------------------------------

/// A Ready taken from a core but not yet written to its disk.
struct Pending {
    hard_state: Option<HardState>,
    truncate_from: Option<u64>,
    entries: Vec<Entry>,
    must_sync: bool,
    position: Option<(u64, u64)>,
    after_persist: Vec<Envelope>,
}

#[derive(Default)]
struct Disk {
    /// Durable hard state.
    hard_state: HardState,
    /// A commit-only hard state written without fsync: a crash may lose it.
    unsynced: Option<HardState>,
    entries: Vec<Entry>,
}

impl Disk {
    fn latest_hard_state(&self) -> &HardState {
        self.unsynced.as_ref().unwrap_or(&self.hard_state)
    }
}

struct SimNode {
    id: NodeId,
    core: Option<RaftCore>,
    cfg: Config,
    pending: VecDeque<Pending>,
    disk: Disk,
    /// The state machine: applied (index, term, payload), persisted atomically with `applied`.
    sm: Vec<(u64, u64, Bytes)>,
    applied: u64,
    incarnation: u64,
    /// Probability that a Ready is persisted as soon as it is taken.
    persist_at_once: f64,
    // What this incarnation showed last, to check monotonicity.
    last_term: u64,
    last_vote: Option<NodeId>,
    last_commit: u64,
    last_hard_state: HardState,
}

struct InFlight {
    from: usize,
    to: usize,
    msg: Message,
}

struct Proposal {
    incarnation: u64,
    term: u64,
    payload: Bytes,
}

/// Deliberate driver bugs, to show that the checks catch them.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mutation {
    /// Sends `messages_after_persist` at once, before the Ready is durable.
    SendBeforePersist,
    /// Ignores `truncate_from` when writing a Ready.
    IgnoreTruncate,
    /// Restores a restarted node without its durable vote.
    ForgetVoteOnRestart,
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    nodes: usize,
    committed: usize,
    /// Committed entries that are client proposals (not no-ops).
    committed_proposals: usize,
    acked: usize,
    proposals: usize,
    crashes: usize,
    partitions: usize,
    max_term: u64,
    /// Terms that had a leader.
    leaders: usize,
    truncations: usize,
    unsynced_lost: usize,
    /// Longest the network queue got.
    max_in_flight: usize,
    delivered: usize,
    dropped: usize,
}

struct Sim {
    seed: u64,
    rng: SmallRng,
    nodes: Vec<SimNode>,
    index_of: HashMap<NodeId, usize>,
    net: VecDeque<InFlight>,
    /// Directed links that drop every message.
    blocked: BTreeSet<(usize, usize)>,
    loss: f64,
    duplication: f64,
    crash_rate: f64,
    /// While healing: no loss, no duplication, no crash.
    calm: bool,
    mutation: Option<Mutation>,
    checker: Checker,
    proposals: HashMap<(usize, u64), Proposal>,
    /// Acknowledged proposals: (index, term, payload).
    acked: Vec<(u64, u64, Bytes)>,
    next_payload: u64,
    violation: Option<String>,
    trace: VecDeque<String>,
    /// `FLOYD_SIM_TRACE=1`: print every event as it happens.
    verbose: bool,
    step: usize,
    stats: Stats,
}

macro_rules! trace {
    ($sim:expr, $($arg:tt)*) => {{
        let line = format!("[{}] {}", $sim.step, format_args!($($arg)*));
        if $sim.verbose {
            eprintln!("{line}");
        }
        if $sim.trace.len() == 60 {
            $sim.trace.pop_front();
        }
        $sim.trace.push_back(line);
    }};
}

fn summary(m: &Message) -> String {
    match m {
        Message::RequestVote(r) => format!(
            "{}Vote t{} last ({}, {})",
            if r.pre_vote { "Pre" } else { "" },
            r.term,
            r.last_log_index,
            r.last_log_term
        ),
        Message::RequestVoteResponse(r) => format!(
            "{}VoteResp t{} granted={}",
            if r.pre_vote { "Pre" } else { "" },
            r.term,
            r.granted
        ),
        Message::AppendEntries(a) => format!(
            "Append t{} prev ({}, {}) entries {:?} commit {}",
            a.term,
            a.prev_log_index,
            a.prev_log_term,
            a.entries.iter().map(|e| (e.index, e.term)).collect::<Vec<_>>(),
            a.leader_commit
        ),
        Message::AppendEntriesResponse(r) => format!(
            "AppendResp t{} ok={} match {} last {} conflict ({}, {}) prev {}",
            r.term,
            r.success,
            r.match_index,
            r.last_log_index,
            r.conflict_term,
            r.conflict_index,
            r.rejected_prev_index
        ),
    }
}

impl Sim {
    fn new(seed: u64, mutation: Option<Mutation>) -> Sim {
        let mut rng = SmallRng::seed_from_u64(seed);
        let n = *[3, 3, 4, 5, 5, 6, 7].get(rng.random_range(0..7)).unwrap();
        let names: Vec<NodeId> = (1..=n).map(|i| format!("n{i}")).collect();
        let heartbeat_ticks = rng.random_range(1..=3);
        let max_inflight = rng.random_range(1..=8);
        let max_entries = rng.random_range(1..=8);
        let pre_vote = rng.random_bool(0.8);
        let check_quorum = rng.random_bool(0.7);
        let nodes = names
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let mut cfg = Config::new(id.clone(), names.clone());
                cfg.election_ticks = 10;
                cfg.heartbeat_ticks = heartbeat_ticks;
                cfg.max_inflight = max_inflight;
                cfg.max_entries_per_message = max_entries;
                cfg.max_bytes_per_message = 256;
                cfg.pre_vote = pre_vote;
                cfg.check_quorum = check_quorum;
                let core = RaftCore::new(cfg.clone(), Restored::default(), node_seed(seed, i, 0));
                SimNode {
                    id: id.clone(),
                    core: Some(core),
                    cfg,
                    pending: VecDeque::new(),
                    disk: Disk::default(),
                    sm: Vec::new(),
                    applied: 0,
                    incarnation: 0,
                    persist_at_once: rng.random_range(0.2..0.9),
                    last_term: 0,
                    last_vote: None,
                    last_commit: 0,
                    last_hard_state: HardState::default(),
                }
            })
            .collect();
        let loss = rng.random_range(0.0..0.2);
        let duplication = rng.random_range(0.0..0.05);
        let crash_rate = rng.random_range(0.0005..0.003);
        Sim {
            seed,
            rng,
            nodes,
            index_of: names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect(),
            net: VecDeque::new(),
            blocked: BTreeSet::new(),
            loss,
            duplication,
            crash_rate,
            calm: false,
            mutation,
            checker: Checker::default(),
            proposals: HashMap::new(),
            acked: Vec::new(),
            next_payload: 0,
            violation: None,
            trace: VecDeque::new(),
            verbose: std::env::var_os("FLOYD_SIM_TRACE").is_some(),
            step: 0,
            stats: Stats {
                nodes: n,
                ..Stats::default()
            },
        }
    }

    fn quorum(&self) -> usize {
        self.nodes.len() / 2 + 1
    }

    fn note(&mut self, verdict: Verdict) {
        if let Err(e) = verdict {
            if self.violation.is_none() {
                self.violation = Some(e);
            }
        }
    }

    fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].core.is_some())
            .collect()
    }

    // -- the network ------------------------------------------------------

    fn send(&mut self, from: usize, env: Envelope) {
        let from_id = self.nodes[from].id.clone();
        match &env.msg {
            Message::AppendEntries(a) => {
                let v = self.checker.append_sent(&from_id, a.term);
                self.note(v);
            }
            Message::RequestVoteResponse(r) if r.granted && !r.pre_vote => {
                let v = self.checker.vote_granted(&from_id, r.term, &env.to);
                self.note(v);
            }
            _ => {}
        }
        let Some(&to) = self.index_of.get(&env.to) else {
            self.note(Err(format!("{from_id} sent to unknown node {}", env.to)));
            return;
        };
        if !self.calm && self.rng.random_bool(self.loss) {
            self.stats.dropped += 1;
            return;
        }
        if !self.calm && self.rng.random_bool(self.duplication) {
            self.net.push_back(InFlight {
                from,
                to,
                msg: env.msg.clone(),
            });
        }
        self.net.push_back(InFlight {
            from,
            to,
            msg: env.msg,
        });
        self.stats.max_in_flight = self.stats.max_in_flight.max(self.net.len());
    }

    /// Delivers one message: usually one of the oldest, sometimes any (reordering).
    fn deliver_one(&mut self) {
        if self.net.is_empty() {
            return;
        }
        let k = if self.calm {
            0
        } else if self.rng.random_bool(0.7) {
            self.rng.random_range(0..self.net.len().min(3))
        } else {
            self.rng.random_range(0..self.net.len())
        };
        let m = self.net.remove(k).unwrap();
        self.deliver(m);
    }

    fn deliver(&mut self, m: InFlight) {
        if self.blocked.contains(&(m.from, m.to)) || self.nodes[m.to].core.is_none() {
            self.stats.dropped += 1;
            return;
        }
        self.stats.delivered += 1;
        trace!(
            self,
            "{} -> {}: {}",
            self.nodes[m.from].id,
            self.nodes[m.to].id,
            summary(&m.msg)
        );
        let from = self.nodes[m.from].id.clone();
        self.nodes[m.to].core.as_mut().unwrap().step(&from, m.msg);
        self.process(m.to);
    }

    // -- Ready handling ---------------------------------------------------

    /// Takes a node's Ready: checks it, sends what may leave at once, queues the
    /// rest for persistence, and maybe persists at once.
    fn process(&mut self, i: usize) {
        let Some(core) = self.nodes[i].core.as_mut() else {
            return;
        };
        let rd = core.ready();
        if rd.is_empty() {
            return;
        }
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
        // must_sync whenever term, vote or the log change.
        let hs_changed = rd
            .hard_state
            .as_ref()
            .is_some_and(|hs| (hs.term, &hs.vote) != (node.last_hard_state.term, &node.last_hard_state.vote));
        if (hs_changed || rd.truncate_from.is_some() || !rd.entries.is_empty()) && !rd.must_sync {
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
                Message::AppendEntries(_) => false,
            };
            if early {
                verdicts.push(Err(format!(
                    "{id} may send before persisting: {}",
                    summary(&env.msg)
                )));
            }
        }
        for v in verdicts {
            self.note(v);
        }
        if let Some(hs) = &rd.hard_state {
            self.nodes[i].last_hard_state = hs.clone();
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
        };
        if self.mutation == Some(Mutation::SendBeforePersist) {
            for env in std::mem::take(&mut pending.after_persist) {
                self.send(i, env);
            }
        }
        let writes =
            pending.hard_state.is_some() || pending.truncate_from.is_some() || !pending.entries.is_empty();
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
    fn persist(&mut self, i: usize, count: usize) {
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
                    disk.entries.truncate(from as usize - 1);
                }
            }
            let mut verdicts = Vec::new();
            for e in &p.entries {
                let k = e.index as usize;
                if k <= disk.entries.len() {
                    disk.entries[k - 1] = e.clone(); // a put by index overwrites
                } else if k == disk.entries.len() + 1 {
                    disk.entries.push(e.clone());
                } else {
                    verdicts.push(Err(format!(
                        "{id}: Ready writes entry {k} past the end of the disk log"
                    )));
                }
            }
            if let Some(hs) = &p.hard_state {
                verdicts.push(self.checker.hard_state_written(&id, hs));
            }
            // Once every taken Ready is written, the disk holds exactly the core's state.
            let node = &self.nodes[i];
            if node.pending.is_empty() {
                let core = node.core.as_ref().unwrap();
                let log = core.log().slice(1, core.log().last_index(), usize::MAX, u64::MAX);
                if node.disk.entries != log {
                    verdicts.push(Err(format!(
                        "{id}: disk log ({} entries) differs from the core's ({} entries) with nothing pending",
                        node.disk.entries.len(),
                        log.len()
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
                "{id} persisted {:?} trunc {:?} pos {:?} sync {}",
                p.hard_state.as_ref().map(|h| (h.term, h.vote.clone(), h.commit)),
                p.truncate_from,
                p.position,
                p.must_sync
            );
            for env in p.after_persist {
                self.send(i, env);
            }
            if let Some((index, term)) = p.position {
                self.nodes[i].core.as_mut().unwrap().on_persisted(index, term);
            }
        }
    }

    // -- the state machine --------------------------------------------------

    fn apply(&mut self, i: usize, max: usize) {
        let Some(core) = self.nodes[i].core.as_ref() else {
            return;
        };
        let id = self.nodes[i].id.clone();
        let commit = core.commit();
        let v = self
            .checker
            .commit(&id, core.term(), commit, |k| core.log().entry(k).cloned());
        let entries = core.entries_to_apply(max);
        self.note(v);
        let Some(last) = entries.last().map(|e| e.index) else {
            return;
        };
        for e in entries {
            let v = self.checker.applying(&id, self.nodes[i].applied, &e);
            self.note(v);
            // Only entries durable in this node's own log may be applied.
            if self.nodes[i].disk.entries.get(e.index as usize - 1) != Some(&e) {
                self.note(Err(format!(
                    "{id} applies entry {} before it is on its disk",
                    e.index
                )));
            }
            let node = &mut self.nodes[i];
            node.sm.push((e.index, e.term, e.payload.clone()));
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
    }

    // -- faults and clients ---------------------------------------------------

    fn crash(&mut self, i: usize) {
        let keep_unsynced = self.rng.random_bool(0.5);
        let node = &mut self.nodes[i];
        node.core = None;
        node.pending.clear();
        if let Some(hs) = node.disk.unsynced.take() {
            if keep_unsynced {
                node.disk.hard_state = hs;
            } else {
                self.stats.unsynced_lost += 1;
            }
        }
        node.incarnation += 1;
        self.stats.crashes += 1;
        trace!(self, "{} crashed", self.nodes[i].id);
    }

    fn restart(&mut self, i: usize) {
        let seed = node_seed(self.seed, i, self.nodes[i].incarnation);
        let forget_vote = self.mutation == Some(Mutation::ForgetVoteOnRestart);
        let node = &mut self.nodes[i];
        let mut restored = Restored {
            hard_state: node.disk.hard_state.clone(),
            entries: node.disk.entries.clone(),
            applied: node.applied,
        };
        if forget_vote {
            restored.hard_state.vote = None;
        }
        let hs = restored.hard_state.clone();
        let core = RaftCore::new(node.cfg.clone(), restored, seed);
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
        if (s.role, s.term, &s.vote, &s.leader) != (Role::Follower, hs.term, &hs.vote, &None) {
            self.note(Err(format!("{id} restarted as {s:?} from {hs:?}")));
        }
        trace!(
            self,
            "{id} restarted: term {} vote {:?} commit {} log {} applied {}",
            s.term,
            s.vote,
            s.commit,
            s.last_log_index,
            s.applied
        );
    }

    fn partition(&mut self) {
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
        let names = |s: &[usize]| s.iter().map(|&i| self.nodes[i].id.clone()).collect::<Vec<_>>();
        trace!(
            self,
            "partition {:?} | {:?}{}",
            names(a),
            names(b),
            if one_way { " (one-way)" } else { "" }
        );
    }

    fn propose(&mut self) {
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
                verdicts.push(self.checker.leader_complete(id, s.term, |k| core.log().term(k)));
            }
            if !(s.applied <= s.commit && s.commit <= s.last_log_index) {
                verdicts.push(Err(format!(
                    "{id}: not applied {} <= commit {} <= last {}",
                    s.applied, s.commit, s.last_log_index
                )));
            }
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
            verdicts.push(
                self.checker
                    .commit(id, s.term, s.commit, |k| core.log().entry(k).cloned()),
            );
            let node = &mut self.nodes[i];
            node.last_term = s.term;
            node.last_vote = s.vote;
            node.last_commit = s.commit;
        }
        let quorum = self.quorum();
        verdicts.push(
            self.checker
                .on_quorum_of_disks(self.nodes.iter().map(|n| n.disk.entries.as_slice()), quorum),
        );
        for v in verdicts {
            self.note(v);
        }
    }

    // -- driving ------------------------------------------------------------

    fn random_step(&mut self) {
        self.step += 1;
        let live = self.live();
        let roll = self.rng.random_range(0..1000);
        match roll {
            // Deliver a few messages.
            0..=499 => {
                for _ in 0..self.rng.random_range(1..=6) {
                    self.deliver_one();
                }
            }
            // Tick every live node (a node now and then misses a tick: clock drift).
            500..=579 => {
                for &i in &live {
                    if self.rng.random_bool(0.9) {
                        self.nodes[i].core.as_mut().unwrap().tick();
                    }
                }
            }
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
            // Apply some committed entries on one node.
            730..=849 => {
                if !live.is_empty() {
                    let i = live[self.rng.random_range(0..live.len())];
                    let max = self.rng.random_range(1..=8);
                    self.apply(i, max);
                }
            }
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
                // Mostly a minority is down at a time; now and then more, up to all.
                let minority = self.nodes.len() - self.quorum();
                let may_crash = down.len() < minority || self.rng.random_bool(0.1);
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
        self.check();
    }

    /// One calm round: every node ticks, then messages, persistence and
    /// application run until the network is quiet.
    fn calm_round(&mut self) {
        self.step += 1;
        for i in self.live() {
            self.nodes[i].core.as_mut().unwrap().tick();
        }
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
        let log = lead_core.log().slice(1, leader.commit, usize::MAX, u64::MAX);
        if leader.commit != leader.last_log_index {
            return Err(format!(
                "leader {} commit {} < last {}",
                leader.id, leader.commit, leader.last_log_index
            ));
        }
        for (n, s) in self.nodes.iter().zip(&statuses) {
            let core = n.core.as_ref().unwrap();
            if s.term != leader.term || s.leader.as_deref() != Some(leader.id.as_str()) {
                return Err(format!("{} at term {} follows {:?}", s.id, s.term, s.leader));
            }
            if s.commit != leader.commit || s.applied != leader.commit || n.applied != leader.commit {
                return Err(format!(
                    "{}: commit {} applied {} (leader commit {})",
                    s.id, s.commit, s.applied, leader.commit
                ));
            }
            if core.log().slice(1, s.commit, usize::MAX, u64::MAX) != log {
                return Err(format!("{}'s log differs from the leader's", s.id));
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
        for _ in 0..HEAL_ROUNDS {
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

    /// After convergence: every acknowledged proposal is applied, once, at its place, everywhere.
    fn check_final(&mut self) {
        let mut verdicts = Vec::new();
        for n in &self.nodes {
            let by_index: HashMap<u64, (u64, &Bytes)> = n.sm.iter().map(|(i, t, p)| (*i, (*t, p))).collect();
            for (index, term, payload) in &self.acked {
                if by_index.get(index) != Some(&(*term, payload)) {
                    verdicts.push(Err(format!(
                        "{}: acknowledged ({index}, {term}) {payload:?} is not applied",
                        n.id
                    )));
                }
            }
            let mut seen = HashSet::new();
            for (_, _, p) in &n.sm {
                if !p.is_empty() && !seen.insert(p.clone()) {
                    verdicts.push(Err(format!("{}: {p:?} applied twice", n.id)));
                }
            }
            let indexes: Vec<u64> = n.sm.iter().map(|e| e.0).collect();
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

fn node_seed(seed: u64, node: usize, incarnation: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ ((node as u64) << 32)
        ^ incarnation.wrapping_mul(0xD6E8_FEB8_6659_FD93)
}

fn repro_command(seed: u64, steps: usize) -> String {
    let steps = if steps == DEFAULT_STEPS {
        String::new()
    } else {
        format!("FLOYD_SIM_STEPS={steps} ")
    };
    format!("FLOYD_SIM_SEED={seed} {steps}cargo test --test simulation -- --nocapture")
}

/// Runs one seed; returns its stats, or the failure report.
fn run_seed(seed: u64, steps: usize, mutation: Option<Mutation>) -> Result<Stats, String> {
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
    Ok(sim.stats)
}

fn env_number(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
    )
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn simulation_random_seeds() {
    let steps = env_number("FLOYD_SIM_STEPS").map_or(DEFAULT_STEPS, |s| s as usize);
    let seeds: Vec<u64> = match env_number("FLOYD_SIM_SEED") {
        Some(s) => vec![s],
        None => (0..env_number("FLOYD_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS)).collect(),
    };
    let mut total = Stats::default();
    // Seeds whose faults left no time to commit any client proposal.
    let mut idle_seeds = Vec::new();
    for &seed in &seeds {
        let stats = run_seed(seed, steps, None).unwrap_or_else(|report| panic!("{report}"));
        if seeds.len() == 1 || std::env::var_os("FLOYD_SIM_VERBOSE").is_some() {
            eprintln!("seed {seed}: {stats:?}");
        }
        if stats.committed_proposals == 0 {
            idle_seeds.push(seed);
        }
        total.committed += stats.committed;
        total.committed_proposals += stats.committed_proposals;
        total.acked += stats.acked;
        total.proposals += stats.proposals;
        total.crashes += stats.crashes;
        total.partitions += stats.partitions;
        total.delivered += stats.delivered;
        total.dropped += stats.dropped;
        total.max_term = total.max_term.max(stats.max_term);
        total.truncations += stats.truncations;
        total.leaders += stats.leaders;
        total.max_in_flight = total.max_in_flight.max(stats.max_in_flight);
        total.unsynced_lost += stats.unsynced_lost;
        total.nodes = total.nodes.max(stats.nodes);
    }
    eprintln!("{} seeds x {steps} steps: {total:?}", seeds.len());
    // The runs must not pass vacuously: clients' proposals get committed and
    // acknowledged (given time for elections: a few hundred steps are a few ticks).
    if steps < 1000 {
        return;
    }
    assert!(
        total.committed_proposals > 0 && total.acked > 0,
        "no progress at all: {total:?}"
    );
    if seeds.len() > 1 {
        assert!(
            idle_seeds.len() * 10 <= seeds.len(),
            "{} of {} seeds committed no client proposal ({idle_seeds:?}): {total:?}",
            idle_seeds.len(),
            seeds.len()
        );
        assert!(
            total.acked * 4 >= total.proposals,
            "too few proposals acknowledged: {total:?}"
        );
    }
}

#[test]
fn checker_detects_fabricated_violations() {
    let e = |index, term, p: &str| Entry {
        index,
        term,
        r#type: 1,
        payload: Bytes::from(p.to_string()),
    };

    // Two leaders in one term.
    let mut c = Checker::default();
    assert!(c.leader(3, "n1").is_ok());
    assert!(c.leader(3, "n1").is_ok());
    assert!(c.leader(4, "n2").is_ok());
    assert!(c.leader(3, "n2").unwrap_err().contains("election safety"));

    // AppendEntries from someone who does not lead the term.
    assert!(c.append_sent("n1", 3).is_ok());
    assert!(c.append_sent("n2", 3).is_err());
    assert!(c.append_sent("n1", 5).is_err());

    // Two votes in one term.
    assert!(c.vote_granted("n3", 4, "n2").is_ok());
    assert!(c.vote_granted("n3", 4, "n2").is_ok());
    assert!(c.vote_granted("n3", 4, "n1").is_err());

    // Log matching: same (index, term), different payload or predecessor.
    assert!(c.entry_written("n1", &e(2, 2, "a"), 1).is_ok());
    assert!(c.entry_written("n2", &e(2, 2, "a"), 1).is_ok());
    assert!(c.entry_written("n2", &e(2, 2, "b"), 1).is_err());
    assert!(c.entry_written("n3", &e(2, 2, "a"), 0).is_err());

    // A committed entry that changes, and leader completeness.
    let log_a = [e(1, 1, "x"), e(2, 2, "y")];
    let log_b = [e(1, 1, "x"), e(2, 3, "z")];
    assert!(c
        .commit("n1", 2, 2, |k| log_a.get(k as usize - 1).cloned())
        .is_ok());
    assert!(c
        .commit("n2", 3, 1, |k| log_b.get(k as usize - 1).cloned())
        .is_ok());
    assert!(c
        .commit("n2", 3, 2, |k| log_b.get(k as usize - 1).cloned())
        .unwrap_err()
        .contains("committed entry changed"));
    assert!(c
        .leader_complete("n1", 5, |k| log_a.get(k as usize - 1).map(|e| e.term))
        .is_ok());
    assert!(c
        .leader_complete("n2", 5, |k| log_b.get(k as usize - 1).map(|e| e.term))
        .is_err());
    assert!(
        c.leader_complete("n3", 3, |_| None).is_err(),
        "entries 1-2 were committed in term 2"
    );
    assert!(
        c.leader_complete("n3", 2, |_| None).is_ok(),
        "nothing was committed before term 2"
    );
    // An entry of term 4 first committed in term 9 need not be in the log of term 8's leader.
    let mut late = Checker::default();
    let log_c = [e(1, 4, "old")];
    assert!(late
        .commit("n1", 9, 1, |k| log_c.get(k as usize - 1).cloned())
        .is_ok());
    assert!(late.leader_complete("n3", 8, |_| Some(7)).is_ok());
    assert!(late.leader_complete("n3", 10, |_| Some(7)).is_err());

    // Applying twice, out of order, or something not committed.
    assert!(c.applying("n1", 0, &log_a[0]).is_ok());
    assert!(c.applying("n1", 1, &log_a[0]).is_err());
    assert!(c.applying("n1", 0, &log_a[1]).is_err());
    assert!(c.applying("n2", 1, &log_b[1]).is_err());

    // Durable term and vote going backwards.
    let hs = |term, vote: Option<&str>| HardState {
        term,
        vote: vote.map(str::to_string),
        commit: 0,
    };
    assert!(c.hard_state_written("n1", &hs(2, Some("n1"))).is_ok());
    assert!(c.hard_state_written("n1", &hs(2, Some("n1"))).is_ok());
    assert!(c.hard_state_written("n1", &hs(2, Some("n2"))).is_err());
    assert!(c.hard_state_written("n1", &hs(1, None)).is_err());

    // A committed entry on too few disks.
    let full: Vec<Entry> = log_a.to_vec();
    let short: Vec<Entry> = log_a[..1].to_vec();
    let disks = [full.as_slice(), full.as_slice(), short.as_slice()];
    assert!(c.on_quorum_of_disks(disks.iter().copied(), 2).is_ok());
    assert!(c.on_quorum_of_disks(disks.iter().copied(), 3).is_err());
}

#[test]
fn simulation_detects_injected_driver_bugs() {
    // A driver that acknowledges before persisting, forgets truncations or loses
    // votes must be caught; otherwise the simulation could be passing vacuously.
    for mutation in [
        Mutation::SendBeforePersist,
        Mutation::IgnoreTruncate,
        Mutation::ForgetVoteOnRestart,
    ] {
        let caught = (0..40).find_map(|seed| run_seed(seed, 3000, Some(mutation)).err());
        let report = caught.unwrap_or_else(|| panic!("{mutation:?} was never detected"));
        assert!(report.contains("reproduce with: FLOYD_SIM_SEED="), "{report}");
        eprintln!(
            "{mutation:?} caught: {}",
            report.lines().next().unwrap_or_default()
        );
    }
}
