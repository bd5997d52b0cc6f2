//! Hand-stepped tests of the pure core, named after the rule of the Raft paper
//! (§) or of Ongaro's dissertation they check.
//!
//! `Net` is a tiny deterministic harness: it takes every node's `Ready`,
//! "persists" it at once to an in-memory disk, reports it with `on_persisted`,
//! applies what is applicable and queues every outgoing message. Tests then
//! deliver the messages they choose (all of them, a filtered subset, or in a
//! random order) and assert concrete terms, roles, commit indexes and logs.

use super::*;
use crate::wire::{AppendEntries, AppendEntriesResponse, EntryType, RequestVote, RequestVoteResponse};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

mod commitment;
mod election;
mod lease;
mod membership;
mod membership_catch_up;
mod membership_removal;
mod quiesce;
mod read;
mod replication;
mod snapshot;
mod transfer;
mod validation;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn id(i: usize) -> NodeId {
    format!("n{i}")
}

fn ids(n: usize) -> Vec<NodeId> {
    (1..=n).map(id).collect()
}

/// A command entry whose payload names its position, so two entries are equal
/// exactly when their (index, term) are.
fn ent(index: u64, term: u64) -> Entry {
    Entry {
        term,
        index,
        r#type: EntryType::EntryCommand as i32,
        payload: Bytes::from(format!("{index}@{term}")),
        leader_time_ms: 0,
        log_time_rule: 0,
    }
}

/// A log holding one entry per element of `terms`, from index 1.
fn log_of(terms: &[u64]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(i, &t)| ent(i as u64 + 1, t))
        .collect()
}

fn entries_of(core: &RaftCore) -> Vec<Entry> {
    let log = core.log();
    log.slice(log.first_index(), log.last_index(), usize::MAX, u64::MAX)
}

fn terms_of(core: &RaftCore) -> Vec<u64> {
    entries_of(core).iter().map(|e| e.term).collect()
}

fn cfg(me: &str, n: usize) -> Config {
    Config::new(me, ids(n))
}

fn restored(term: u64, terms: &[u64]) -> Restored {
    Restored {
        hard_state: HardState {
            term,
            vote: None,
            commit: 0,
        },
        entries: log_of(terms),
        applied: 0,
        config: None,
        ..Default::default()
    }
}

fn append(term: u64, leader: &str, prev: (u64, u64), entries: Vec<Entry>, commit: u64) -> Message {
    Message::AppendEntries(AppendEntries {
        term,
        leader: leader.to_string(),
        prev_log_index: prev.0,
        prev_log_term: prev.1,
        entries,
        leader_commit: commit,
        read_seq: 0,
        quiesce: false,
        commit_notice: false,
    })
}

fn vote_request(term: u64, candidate: &str, last: (u64, u64), pre_vote: bool) -> Message {
    Message::RequestVote(RequestVote {
        term,
        candidate: candidate.to_string(),
        last_log_index: last.0,
        last_log_term: last.1,
        pre_vote,
        leader_transfer: false,
    })
}

fn vote_responses(msgs: &[Envelope]) -> Vec<(&str, &RequestVoteResponse)> {
    msgs.iter()
        .filter_map(|e| match &e.msg {
            Message::RequestVoteResponse(r) => Some((e.to.as_str(), r)),
            _ => None,
        })
        .collect()
}

fn append_responses(msgs: &[Envelope]) -> Vec<(&str, &AppendEntriesResponse)> {
    msgs.iter()
        .filter_map(|e| match &e.msg {
            Message::AppendEntriesResponse(r) => Some((e.to.as_str(), r)),
            _ => None,
        })
        .collect()
}

/// Writes a Ready to an in-memory disk the way a key-value store keyed by
/// index would: truncate, then put every entry at its index.
/// As the log writer does, term and vote are written only when the Ready
/// says they changed (the commit index always): a Ready that failed to say
/// so would lose them here, and the restart tests would see it.
fn persist(disk: &mut Restored, rd: &Ready) {
    if let Some(hs) = &rd.hard_state {
        if rd.term_or_vote_changed {
            disk.hard_state = hs.clone();
        } else {
            disk.hard_state.commit = hs.commit;
        }
    }
    if let Some(from) = rd.truncate_from {
        disk.entries.retain(|e| e.index < from);
    }
    if let Some(c) = &rd.config {
        disk.config = Some(c.clone());
    }
    if let Some(meta) = &rd.snapshot {
        disk.log_start = (meta.last_index, meta.last_term);
        disk.entries.retain(|e| e.index > meta.last_index);
        disk.snapshot = Some(meta.clone());
    }
    let first = disk.log_start.0 + 1;
    for e in &rd.entries {
        let i = (e.index - first) as usize;
        assert!(
            e.index >= first && i <= disk.entries.len(),
            "Ready leaves a gap before entry {}",
            e.index
        );
        if i < disk.entries.len() {
            disk.entries[i] = e.clone();
        } else {
            disk.entries.push(e.clone());
        }
    }
}

struct Node {
    core: RaftCore,
    cfg: Config,
    disk: Restored,
    /// Every entry applied, from index 1 (an installed snapshot brings the
    /// leader's applied prefix, as the real state machine would its state).
    applied: Vec<Entry>,
    /// The content of a snapshot received but not yet installed.
    incoming: Option<Vec<Entry>>,
    /// Reads confirmed and reads failed, as the Readies reported them.
    reads: Vec<ReadState>,
    read_failures: Vec<u64>,
    seed: u64,
}

/// A network of cores with instant persistence and a message queue the test controls.
struct Net {
    nodes: BTreeMap<NodeId, Node>,
    queue: VecDeque<(NodeId, Envelope)>,
    /// Directed links that drop every message.
    blocked: BTreeSet<(NodeId, NodeId)>,
    /// Every message delivered so far, in order.
    delivered: Vec<(NodeId, Envelope)>,
    /// Answers refused because their sender is not in the receiver's
    /// configuration (from, to): legitimate after a removal.
    refused_non_members: Vec<(NodeId, NodeId)>,
}

impl Net {
    /// `n` fresh nodes `n1..nN`.
    fn new(n: usize, tweak: impl Fn(&mut Config)) -> Net {
        let logs: Vec<(u64, Vec<u64>)> = (0..n).map(|_| (0, Vec::new())).collect();
        Net::with_logs(&logs, tweak)
    }

    /// One node per element: (persisted term, terms of its persisted log).
    fn with_logs(logs: &[(u64, Vec<u64>)], tweak: impl Fn(&mut Config)) -> Net {
        let n = logs.len();
        let mut nodes = BTreeMap::new();
        for (i, (term, terms)) in logs.iter().enumerate() {
            let mut c = cfg(&id(i + 1), n);
            tweak(&mut c);
            let disk = restored(*term, terms);
            let seed = i as u64 + 1;
            let core = RaftCore::new(c.clone(), disk.clone(), seed);
            nodes.insert(
                id(i + 1),
                Node {
                    core,
                    cfg: c,
                    disk,
                    applied: Vec::new(),
                    incoming: None,
                    reads: Vec::new(),
                    read_failures: Vec::new(),
                    seed,
                },
            );
        }
        Net {
            nodes,
            queue: VecDeque::new(),
            blocked: BTreeSet::new(),
            delivered: Vec::new(),
            refused_non_members: Vec::new(),
        }
    }

    /// Starts node `name` with an empty disk and `voters` as its bootstrap
    /// configuration (empty: it joins, waiting to be added).
    fn add_node(&mut self, name: &str, voters: Vec<NodeId>, tweak: impl Fn(&mut Config)) {
        let mut c = Config::new(name, voters);
        tweak(&mut c);
        let seed = 100 + self.nodes.len() as u64;
        let disk = Restored::default();
        let core = RaftCore::new(c.clone(), disk.clone(), seed);
        let node = Node {
            core,
            cfg: c,
            disk,
            applied: Vec::new(),
            incoming: None,
            reads: Vec::new(),
            read_failures: Vec::new(),
            seed,
        };
        assert!(
            self.nodes.insert(name.to_string(), node).is_none(),
            "{name} exists"
        );
    }

    /// Asks `leader` for a membership change and flushes what it produced.
    fn change(&mut self, leader: &str, change: ConfChange) -> Result<ConfChangeAccepted, ConfChangeError> {
        let r = self.core_mut(leader).propose_conf_change(change);
        self.flush(leader);
        r
    }

    /// The voters of `node`'s configuration in force.
    fn voters(&self, node: &str) -> Vec<NodeId> {
        self.core(node).membership().voters.iter().cloned().collect()
    }

    fn learners(&self, node: &str) -> Vec<NodeId> {
        self.core(node).membership().learners.iter().cloned().collect()
    }

    fn core(&self, node: &str) -> &RaftCore {
        &self.nodes[node].core
    }

    fn core_mut(&mut self, node: &str) -> &mut RaftCore {
        &mut self.nodes.get_mut(node).unwrap().core
    }

    /// Takes the node's Ready, persists it, reports it, queues its messages and
    /// applies what became applicable, until the node has nothing more to say.
    fn flush(&mut self, node: &str) {
        let n = self.nodes.get_mut(node).unwrap();
        loop {
            let rd = n.core.ready();
            let to_apply = n.core.entries_to_apply(usize::MAX);
            if rd.is_empty() && to_apply.is_empty() {
                break;
            }
            persist(&mut n.disk, &rd);
            n.reads.extend(&rd.read_states);
            n.read_failures.extend(&rd.read_failures);
            if let Some((index, term)) = rd.persisted_position() {
                n.core.on_persisted(index, term);
            }
            if let Some(meta) = &rd.snapshot {
                let content = n.incoming.take().expect("a snapshot arrived before its install");
                assert_eq!(content.len() as u64, meta.last_index);
                n.applied = content;
                n.core.on_snapshot_installed(meta.last_index);
            }
            for env in rd.messages.into_iter().chain(rd.messages_after_persist) {
                self.queue.push_back((node.to_string(), env));
            }
            let to_apply = n.core.entries_to_apply(usize::MAX);
            if let Some(last) = to_apply.last() {
                n.core.on_applied(last.index);
            }
            n.applied.extend(to_apply);
        }
    }

    fn flush_all(&mut self) {
        let names: Vec<NodeId> = self.nodes.keys().cloned().collect();
        for name in names {
            self.flush(&name);
        }
    }

    fn deliver(&mut self, from: NodeId, env: Envelope) {
        if self.blocked.contains(&(from.clone(), env.to.clone())) {
            return;
        }
        self.delivered.push((from.clone(), env.clone()));
        let to = env.to.clone();
        if let Message::InstallSnapshot(m) = &env.msg {
            // The runtime's part: stream the snapshot's content, then step.
            let index = m.meta.as_ref().unwrap().last_index as usize;
            let content = self.nodes[&from].applied[..index].to_vec();
            self.nodes.get_mut(&to).unwrap().incoming = Some(content);
        }
        match self.core_mut(&to).step(&from, env.msg) {
            Ok(()) => {}
            // An answer from a server the receiver no longer (or not yet) counts.
            Err(Rejected::NotMember(who)) if who == from && !self.core(&to).membership().contains(&from) => {
                self.refused_non_members.push((from, to.clone()));
            }
            Err(e) => panic!("{to} refused a message from {from}: {e}"),
        }
        self.flush(&to);
    }

    /// Delivers queued messages in FIFO order until the network is quiet;
    /// messages for which `keep` says false are dropped.
    fn deliver_where(&mut self, mut keep: impl FnMut(&str, &Envelope) -> bool) {
        self.flush_all();
        let mut steps = 0;
        while let Some((from, env)) = self.queue.pop_front() {
            steps += 1;
            assert!(steps < 100_000, "the network never went quiet");
            if keep(&from, &env) {
                self.deliver(from, env);
            }
        }
    }

    fn deliver_all(&mut self) {
        self.deliver_where(|_, _| true);
    }

    /// Delivers one queued message picked at random.
    fn deliver_random(&mut self, rng: &mut SmallRng) -> bool {
        self.flush_all();
        if self.queue.is_empty() {
            return false;
        }
        let i = rng.random_range(0..self.queue.len());
        let (from, env) = self.queue.remove(i).unwrap();
        self.deliver(from, env);
        true
    }

    fn tick(&mut self, node: &str) {
        self.core_mut(node).tick();
        self.flush(node);
    }

    fn isolate(&mut self, node: &str) {
        for other in self.nodes.keys() {
            if other != node {
                self.blocked.insert((node.to_string(), other.clone()));
                self.blocked.insert((other.clone(), node.to_string()));
            }
        }
    }

    fn heal(&mut self) {
        self.blocked.clear();
    }

    /// Ticks `node` until it starts a (pre-)campaign.
    fn campaign(&mut self, node: &str) {
        let limit = 2 * self.nodes[node].cfg.election_ticks + 1;
        for _ in 0..limit {
            self.tick(node);
            if self.core(node).role() != Role::Follower {
                return;
            }
        }
        panic!("{node} never campaigned");
    }

    /// Makes `node` campaign until it wins, delivering every message.
    fn elect(&mut self, node: &str) {
        for _ in 0..5 {
            self.campaign(node);
            self.deliver_all();
            if self.core(node).role() == Role::Leader {
                return;
            }
        }
        panic!("{node} could not win an election: {:?}", self.core(node).status());
    }

    /// Crashes and restarts `node` from its disk (nothing unpersisted survives:
    /// `flush` persists everything at once, so only the queue loses messages to it).
    fn restart(&mut self, node: &str) {
        let n = self.nodes.get_mut(node).unwrap();
        n.seed += 1000;
        let applied = n.applied.len() as u64;
        let mut r = n.disk.clone();
        r.applied = applied;
        let before = (n.core.config_index(), n.core.membership().clone());
        n.core = RaftCore::new(n.cfg.clone(), r, n.seed);
        let after = (n.core.config_index(), n.core.membership().clone());
        assert_eq!(
            after, before,
            "{node}'s configuration did not survive its restart"
        );
    }

    /// Snapshots `node` at its applied index and compacts its log up to
    /// `keep` entries before that point, as the runtime does.
    fn snapshot(&mut self, node: &str, keep: u64) {
        let n = self.nodes.get_mut(node).unwrap();
        let applied = n.applied.len() as u64;
        let meta = n.core.snapshot_meta(applied).expect("applied index in the log");
        n.core.snapshot_taken(meta.clone());
        n.disk.snapshot = Some(meta);
        if let Some((index, term)) = n.core.compact(applied.saturating_sub(keep)) {
            n.disk.log_start = (index, term);
            n.disk.entries.retain(|e| e.index > index);
        }
    }

    fn propose(&mut self, node: &str, payloads: &[&str]) -> Vec<(u64, u64)> {
        let payloads = payloads.iter().map(|p| Bytes::from(p.to_string())).collect();
        let pos = self
            .core_mut(node)
            .propose(payloads)
            .expect("proposer is the leader");
        self.flush(node);
        pos
    }

    fn leaders(&self) -> Vec<(NodeId, u64)> {
        self.nodes
            .values()
            .filter(|n| n.core.role() == Role::Leader)
            .map(|n| (n.core.id().to_string(), n.core.term()))
            .collect()
    }
}
