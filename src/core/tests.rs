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
use rand::seq::IndexedRandom;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

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
    core.log().slice(1, core.log().last_index(), usize::MAX, u64::MAX)
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
    })
}

fn vote_request(term: u64, candidate: &str, last: (u64, u64), pre_vote: bool) -> Message {
    Message::RequestVote(RequestVote {
        term,
        candidate: candidate.to_string(),
        last_log_index: last.0,
        last_log_term: last.1,
        pre_vote,
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
fn persist(disk: &mut Restored, rd: &Ready) {
    if let Some(hs) = &rd.hard_state {
        disk.hard_state = hs.clone();
    }
    if let Some(from) = rd.truncate_from {
        disk.entries.truncate(from as usize - 1);
    }
    for e in &rd.entries {
        let i = e.index as usize;
        assert!(
            i >= 1 && i <= disk.entries.len() + 1,
            "Ready leaves a gap before entry {i}"
        );
        if i <= disk.entries.len() {
            disk.entries[i - 1] = e.clone();
        } else {
            disk.entries.push(e.clone());
        }
    }
}

struct Node {
    core: RaftCore,
    cfg: Config,
    disk: Restored,
    applied: Vec<Entry>,
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
                    seed,
                },
            );
        }
        Net {
            nodes,
            queue: VecDeque::new(),
            blocked: BTreeSet::new(),
            delivered: Vec::new(),
        }
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
            if let Some((index, term)) = rd.persisted_position() {
                n.core.on_persisted(index, term);
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
        self.core_mut(&to).step(&from, env.msg);
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
        n.core = RaftCore::new(n.cfg.clone(), r, n.seed);
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

// ---------------------------------------------------------------------------
// §5.1 Terms
// ---------------------------------------------------------------------------

#[test]
fn section_5_1_nodes_start_as_followers() {
    let net = Net::new(3, |_| {});
    for n in net.nodes.values() {
        let s = n.core.status();
        assert_eq!(
            (s.role, s.term, s.vote.clone(), s.leader.clone()),
            (Role::Follower, 0, None, None)
        );
        assert_eq!((s.commit, s.applied, s.last_log_index), (0, 0, 0));
    }
    // A restarted node also starts as a follower, in its persisted term, with its vote.
    let r = Restored {
        hard_state: HardState {
            term: 7,
            vote: Some(id(2)),
            commit: 2,
        },
        entries: log_of(&[1, 2, 7]),
        applied: 1,
    };
    let core = RaftCore::new(cfg("n1", 3), r, 1);
    let s = core.status();
    assert_eq!(
        (s.role, s.term, s.vote, s.leader),
        (Role::Follower, 7, Some(id(2)), None)
    );
    assert_eq!(
        (s.commit, s.applied, s.last_log_index, s.stable_index),
        (2, 1, 3, 3)
    );
    assert_eq!(core.applicable_index(), 2);
    assert_eq!(core.entries_to_apply(10), vec![ent(2, 2)]);
}

#[test]
fn section_5_1_higher_term_makes_leader_candidate_and_follower_step_down() {
    // Leader: an AppendEntriesResponse of a later term deposes it.
    let mut net = Net::new(3, |_| {});
    net.elect("n1");
    assert_eq!((net.core("n1").role(), net.core("n1").term()), (Role::Leader, 1));
    let rsp = Message::AppendEntriesResponse(AppendEntriesResponse {
        term: 5,
        success: false,
        from: id(2),
        ..Default::default()
    });
    net.core_mut("n1").step("n2", rsp);
    let s = net.core("n1").status();
    assert_eq!(
        (s.role, s.term, s.vote, s.leader),
        (Role::Follower, 5, None, None)
    );
    let rd = net.core_mut("n1").ready();
    assert_eq!(rd.hard_state.map(|h| (h.term, h.vote)), Some((5, None)));
    assert!(rd.must_sync, "a new term must be fsynced");

    // Candidate: an AppendEntries of a later term makes it follow that leader.
    let mut c = RaftCore::new(
        Config {
            pre_vote: false,
            ..cfg("n2", 3)
        },
        Restored::default(),
        2,
    );
    while c.role() != Role::Candidate {
        c.tick();
    }
    assert_eq!(c.term(), 1);
    c.step("n3", append(3, "n3", (0, 0), vec![], 0));
    assert_eq!((c.role(), c.term(), c.leader()), (Role::Follower, 3, Some("n3")));

    // Pre-candidate: a real RequestVote of a later term makes it a follower of that term.
    let mut p = RaftCore::new(cfg("n2", 3), Restored::default(), 3);
    while p.role() != Role::PreCandidate {
        p.tick();
    }
    assert_eq!(p.term(), 0, "a pre-vote campaign does not bump the term");
    p.step("n3", vote_request(4, "n3", (0, 0), false));
    assert_eq!((p.role(), p.term()), (Role::Follower, 4));

    // Follower: even a vote response carries news of a later term.
    let mut f = RaftCore::new(cfg("n2", 3), Restored::default(), 4);
    let rsp = Message::RequestVoteResponse(RequestVoteResponse {
        term: 2,
        granted: false,
        pre_vote: false,
        from: id(3),
    });
    f.step("n3", rsp);
    assert_eq!((f.role(), f.term()), (Role::Follower, 2));
}

#[test]
fn section_5_1_stale_term_messages_are_rejected() {
    let mut f = RaftCore::new(cfg("n2", 3), restored(3, &[1, 3]), 2);
    let _ = f.ready();

    // A stale leader's AppendEntries is refused and changes nothing.
    f.step("n1", append(2, "n1", (2, 3), vec![ent(3, 2)], 2));
    assert_eq!(terms_of(&f), vec![1, 3]);
    assert_eq!((f.term(), f.commit(), f.leader()), (3, 0, None));
    let rd = f.ready();
    assert!(rd.hard_state.is_none() && rd.entries.is_empty() && rd.messages_after_persist.is_empty());
    let rsp = append_responses(&rd.messages);
    assert_eq!(rsp.len(), 1);
    assert_eq!((rsp[0].0, rsp[0].1.term, rsp[0].1.success), ("n1", 3, false));

    // A stale candidate's RequestVote is refused, even with a longer log.
    f.step("n3", vote_request(2, "n3", (10, 2), false));
    assert_eq!(f.status().vote, None);
    let rd = f.ready();
    assert!(rd.messages_after_persist.is_empty());
    let rsp = vote_responses(&rd.messages);
    assert_eq!(rsp.len(), 1);
    assert_eq!((rsp[0].0, rsp[0].1.term, rsp[0].1.granted), ("n3", 3, false));

    // Stale responses are ignored by a leader: elect n1 in term 1, then feed it a term-0 rejection.
    let mut net = Net::new(3, |_| {});
    net.elect("n1");
    let before = net.core("n1").status();
    let stale = Message::AppendEntriesResponse(AppendEntriesResponse {
        term: 0,
        success: false,
        from: id(2),
        rejected_prev_index: 1,
        ..Default::default()
    });
    net.core_mut("n1").step("n2", stale);
    assert_eq!(net.core("n1").status(), before);
    assert_eq!(net.core("n1").progress("n2").unwrap().match_index, 1);

    // And the stale leader learns the newer term from the rejection: n2 restarts
    // having (durably) seen term 5, then n1's heartbeat is answered with term 5.
    net.nodes.get_mut("n2").unwrap().disk.hard_state.term = 5;
    net.restart("n2");
    net.tick("n1");
    net.deliver_all();
    assert_eq!(
        (net.core("n1").role(), net.core("n1").term()),
        (Role::Follower, 5)
    );
}

// ---------------------------------------------------------------------------
// §5.2 Leader election
// ---------------------------------------------------------------------------

#[test]
fn election_safety_one_leader_per_term() {
    // Deterministic split: n1 and n2 campaign at once; n3 hears n1 first and
    // must then refuse n2 in the same term.
    let mut net = Net::new(5, |c| c.pre_vote = false);
    net.campaign("n1");
    net.campaign("n2");
    assert_eq!((net.core("n1").term(), net.core("n2").term()), (1, 1));
    net.flush_all();
    let n1_to_n3 = net
        .queue
        .iter()
        .position(|(f, e)| f == "n1" && e.to == "n3")
        .unwrap();
    let (f, e) = net.queue.remove(n1_to_n3).unwrap();
    net.deliver(f, e);
    let n2_to_n3 = net
        .queue
        .iter()
        .position(|(f, e)| f == "n2" && e.to == "n3")
        .unwrap();
    let (f, e) = net.queue.remove(n2_to_n3).unwrap();
    net.deliver(f, e);
    assert_eq!(net.core("n3").status().vote, Some(id(1)));
    let from_n3: Vec<(String, bool)> = net
        .queue
        .iter()
        .filter(|(f, _)| f == "n3")
        .filter_map(|(_, e)| match &e.msg {
            Message::RequestVoteResponse(r) => Some((e.to.clone(), r.granted)),
            _ => None,
        })
        .collect();
    assert_eq!(from_n3, vec![(id(1), true), (id(2), false)]);

    // Randomized: many delivery orders and competing timeouts, never two leaders in a term,
    // never two votes by one node in a term, and eventually a leader.
    for seed in 0..40 {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut net = Net::new(5, |c| {
            c.pre_vote = seed % 2 == 0;
            c.check_quorum = seed % 3 == 0;
        });
        let mut leaders: BTreeMap<u64, NodeId> = BTreeMap::new();
        let names: Vec<NodeId> = net.nodes.keys().cloned().collect();
        for _ in 0..3000 {
            if rng.random_bool(0.1) || !net.deliver_random(&mut rng) {
                let n = names.choose(&mut rng).unwrap().clone();
                net.tick(&n);
            }
            for (leader, term) in net.leaders() {
                let prev = leaders.entry(term).or_insert_with(|| leader.clone());
                assert_eq!(*prev, leader, "seed {seed}: two leaders in term {term}");
            }
        }
        let mut votes: BTreeMap<(NodeId, u64), NodeId> = BTreeMap::new();
        for (from, env) in &net.delivered {
            if let Message::RequestVoteResponse(r) = &env.msg {
                if r.granted && !r.pre_vote {
                    let prev = votes
                        .entry((from.clone(), r.term))
                        .or_insert_with(|| env.to.clone());
                    assert_eq!(
                        *prev, env.to,
                        "seed {seed}: {from} voted twice in term {}",
                        r.term
                    );
                }
            }
        }
        assert!(!leaders.is_empty(), "seed {seed}: no leader was ever elected");
    }
}

#[test]
fn votes_are_sent_only_after_persist() {
    // The candidate's own term and vote are durable before it asks anyone.
    let mut c = RaftCore::new(
        Config {
            pre_vote: false,
            ..cfg("n1", 3)
        },
        Restored::default(),
        1,
    );
    while c.role() != Role::Candidate {
        c.tick();
    }
    let rd = c.ready();
    assert_eq!(
        rd.hard_state,
        Some(HardState {
            term: 1,
            vote: Some(id(1)),
            commit: 0
        })
    );
    assert!(rd.must_sync);
    assert!(rd.messages.is_empty());
    assert_eq!(rd.messages_after_persist.len(), 2);
    assert!(rd
        .messages_after_persist
        .iter()
        .all(|e| matches!(&e.msg, Message::RequestVote(r) if !r.pre_vote && r.term == 1)));

    // The voter's grant leaves only with (term, vote) persisted.
    let mut v = RaftCore::new(cfg("n2", 3), Restored::default(), 2);
    v.step("n1", vote_request(1, "n1", (0, 0), false));
    let rd = v.ready();
    assert_eq!(
        rd.hard_state,
        Some(HardState {
            term: 1,
            vote: Some(id(1)),
            commit: 0
        })
    );
    assert!(rd.must_sync);
    assert!(rd.messages.is_empty());
    let rsp = vote_responses(&rd.messages_after_persist);
    assert_eq!(rsp.len(), 1);
    assert!(rsp[0].1.granted && rsp[0].1.term == 1 && rsp[0].0 == "n1");

    // A pre-vote grant changes nothing durable and may leave at once.
    let mut p = RaftCore::new(cfg("n3", 3), Restored::default(), 3);
    p.step("n1", vote_request(1, "n1", (0, 0), true));
    let rd = p.ready();
    assert!(rd.hard_state.is_none() && !rd.must_sync && rd.messages_after_persist.is_empty());
    let rsp = vote_responses(&rd.messages);
    assert!(rsp.len() == 1 && rsp[0].1.granted && rsp[0].1.pre_vote && rsp[0].1.term == 1);
    assert_eq!(p.term(), 0);
}

#[test]
fn vote_survives_restart() {
    let c = Config {
        pre_vote: false,
        ..cfg("n2", 3)
    };
    let mut disk = Restored::default();
    let mut v = RaftCore::new(c.clone(), disk.clone(), 2);
    v.step("n1", vote_request(1, "n1", (0, 0), false));
    let rd = v.ready();
    persist(&mut disk, &rd);
    assert_eq!(
        disk.hard_state,
        HardState {
            term: 1,
            vote: Some(id(1)),
            commit: 0
        }
    );

    // Crash and restart from disk: still term 1, still voted for n1.
    let mut v = RaftCore::new(c.clone(), disk.clone(), 22);
    assert_eq!((v.term(), v.status().vote), (1, Some(id(1))));
    v.step("n3", vote_request(1, "n3", (5, 1), false));
    let rd = v.ready();
    assert!(rd.hard_state.is_none(), "the vote must not change");
    let rsp = vote_responses(&rd.messages);
    assert!(rsp.len() == 1 && !rsp[0].1.granted && rsp[0].0 == "n3");
    // The same candidate asking again (its first answer may have been lost) is granted again.
    v.step("n1", vote_request(1, "n1", (0, 0), false));
    let rd = v.ready();
    let rsp = vote_responses(&rd.messages_after_persist);
    assert!(rsp.len() == 1 && rsp[0].1.granted && rsp[0].0 == "n1");

    // A vote whose Ready was never persisted never left the node either: after a crash
    // the node may vote for someone else in that term.
    let mut fresh = Restored::default();
    let mut w = RaftCore::new(c.clone(), fresh.clone(), 3);
    w.step("n1", vote_request(1, "n1", (0, 0), false));
    let lost = w.ready();
    assert!(lost.messages.is_empty(), "the grant must wait for persistence");
    let mut w = RaftCore::new(c, fresh.clone(), 33);
    w.step("n3", vote_request(1, "n3", (0, 0), false));
    let rd = w.ready();
    persist(&mut fresh, &rd);
    assert_eq!(fresh.hard_state.vote, Some(id(3)));
}

// ---------------------------------------------------------------------------
// §5.4.1 Election restriction
// ---------------------------------------------------------------------------

#[test]
fn section_5_4_1_stale_log_candidate_loses_whatever_its_term() {
    // Direct: a voter whose log ends at (3, 2).
    let mut v = RaftCore::new(cfg("n1", 3), restored(2, &[1, 1, 2]), 1);
    v.step("n2", vote_request(9, "n2", (10, 1), false)); // longer, but older last term
    assert_eq!(
        (v.term(), v.status().vote),
        (9, None),
        "adopts the term, refuses the vote"
    );
    v.step("n2", vote_request(9, "n2", (2, 2), false)); // same last term, shorter
    assert_eq!(v.status().vote, None);
    let rd = v.ready();
    assert!(vote_responses(&rd.messages)
        .iter()
        .all(|(_, r)| !r.granted && r.term == 9));
    assert!(rd.messages_after_persist.is_empty());
    v.step("n3", vote_request(9, "n3", (3, 2), false)); // as up to date: granted
    assert_eq!(v.status().vote, Some(id(3)));

    // In a cluster: n3 misses every entry and inflates its term while cut off.
    let mut net = Net::new(3, |c| {
        c.pre_vote = false;
        c.check_quorum = false;
    });
    net.elect("n1");
    net.isolate("n3");
    net.propose("n1", &["a", "b", "c"]);
    net.deliver_all();
    assert_eq!(net.core("n1").commit(), 4);
    for _ in 0..100 {
        net.tick("n3");
    }
    let t3 = net.core("n3").term();
    assert!(t3 >= 5, "n3 campaigned repeatedly: term {t3}");
    net.queue.clear();
    net.heal();
    // Its next campaign reaches everyone, with a higher term but an empty log.
    let before = t3;
    while net.core("n3").term() == before {
        net.tick("n3");
    }
    net.deliver_all();
    assert_ne!(net.core("n3").role(), Role::Leader);
    assert!(
        net.leaders().is_empty(),
        "the old leader stepped down to the higher term"
    );
    for n in ["n1", "n2", "n3"] {
        assert_eq!(net.core(n).term(), before + 1);
    }
    assert_eq!(net.core("n1").status().vote, None);
    assert_eq!(net.core("n2").status().vote, None);
    // A node with the full log wins the next term and repairs n3.
    net.elect("n2");
    net.tick("n2");
    net.deliver_all();
    assert_eq!(net.core("n2").term(), before + 2);
    assert_eq!(terms_of(net.core("n3")), vec![1, 1, 1, 1, before + 2]);
    assert_eq!(net.core("n3").commit(), 5);
    assert_eq!(entries_of(net.core("n3")), entries_of(net.core("n1")));
}

// ---------------------------------------------------------------------------
// §5.3 Log replication
// ---------------------------------------------------------------------------

#[test]
fn figure_7_follower_repair() {
    // Figure 7: the leader (term 8) and followers (a)–(f).
    let leader = vec![1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    let followers = [
        vec![1, 1, 1, 4, 4, 5, 5, 6, 6],          // (a) missing one entry
        vec![1, 1, 1, 4],                         // (b) missing many
        vec![1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],    // (c) one extra uncommitted entry
        vec![1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7], // (d) extra entries of a later term
        vec![1, 1, 1, 4, 4, 4, 4],                // (e) missing and extra
        vec![1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],    // (f) divergent since index 4
    ];
    let mut logs = vec![(7, leader.clone())];
    logs.extend(followers.iter().map(|f| (7, f.clone())));
    let mut net = Net::with_logs(&logs, |c| c.max_entries_per_message = 3);
    net.elect("n1");
    assert_eq!(net.core("n1").term(), 8);
    net.tick("n1");
    net.deliver_all();

    let mut want = leader.clone();
    want.push(8); // the new leader's no-op
    let want_entries = entries_of(net.core("n1"));
    assert_eq!(terms_of(net.core("n1")), want);
    for n in 2..=7 {
        let node = &net.nodes[&id(n)];
        assert_eq!(terms_of(&node.core), want, "follower {} was not repaired", id(n));
        assert_eq!(entries_of(&node.core), want_entries);
        assert_eq!(
            node.disk.entries,
            want_entries,
            "{}'s disk disagrees with its log",
            id(n)
        );
        assert_eq!(node.core.commit(), 11);
        assert_eq!(
            node.applied,
            want_entries,
            "{} applied a different sequence",
            id(n)
        );
    }
}

#[test]
fn reordered_or_duplicated_append_entries_never_truncate() {
    let mut f = RaftCore::new(cfg("n2", 3), restored(1, &[]), 2);
    let ae1 = append(1, "n1", (0, 0), vec![ent(1, 1), ent(2, 1)], 0);
    let ae2 = append(1, "n1", (2, 1), vec![ent(3, 1)], 1);

    // ae2 overtakes ae1: refused (prev missing), nothing appended.
    f.step("n1", ae2.clone());
    assert_eq!(f.log().last_index(), 0);
    let rd = f.ready();
    let rsp = append_responses(&rd.messages);
    assert!(rsp.len() == 1 && !rsp[0].1.success);
    assert_eq!(
        (
            rsp[0].1.last_log_index,
            rsp[0].1.conflict_term,
            rsp[0].1.rejected_prev_index
        ),
        (0, 0, 2)
    );

    f.step("n1", ae1.clone());
    f.step("n1", ae2.clone());
    assert_eq!(terms_of(&f), vec![1, 1, 1]);
    let rd = f.ready();
    assert_eq!(rd.entries, log_of(&[1, 1, 1]));
    let (index, term) = rd.persisted_position().unwrap();
    f.on_persisted(index, term);

    // Duplicates and stale prefixes of what we hold: acknowledged, nothing removed.
    for m in [
        ae1.clone(),
        ae2.clone(),
        append(1, "n1", (0, 0), vec![ent(1, 1)], 0),
        ae1,
    ] {
        f.step("n1", m);
        assert_eq!(terms_of(&f), vec![1, 1, 1]);
        let rd = f.ready();
        assert!(rd.truncate_from.is_none() && rd.entries.is_empty());
        assert!(rd.messages.is_empty());
        let acks = append_responses(&rd.messages_after_persist);
        assert!(acks.len() == 1 && acks[0].1.success);
    }
    assert_eq!(f.commit(), 1);
    assert_eq!(f.log().stable_index(), 3);

    // A real conflict (a later leader's different entry 3) does truncate, only the suffix.
    f.step("n3", append(2, "n3", (2, 1), vec![ent(3, 2), ent(4, 2)], 1));
    assert_eq!(terms_of(&f), vec![1, 1, 2, 2]);
    let rd = f.ready();
    assert_eq!(rd.truncate_from, Some(3));
    assert_eq!(rd.entries, vec![ent(3, 2), ent(4, 2)]);
    assert!(rd.must_sync);
    assert_eq!(
        f.log().stable_index(),
        2,
        "the replaced entry is no longer durable"
    );
}

#[test]
fn follower_acknowledges_only_after_persist_and_applies_only_durable_entries() {
    let mut f = RaftCore::new(cfg("n2", 3), restored(1, &[]), 2);
    f.step("n1", append(1, "n1", (0, 0), vec![ent(1, 1), ent(2, 1)], 2));
    assert_eq!(f.commit(), 2);
    assert_eq!(f.applicable_index(), 0, "committed but not yet durable here");
    assert!(f.entries_to_apply(10).is_empty());
    let rd = f.ready();
    assert!(rd.must_sync);
    assert!(rd.messages.is_empty());
    let acks = append_responses(&rd.messages_after_persist);
    assert!(acks.len() == 1 && acks[0].1.success && acks[0].1.match_index == 2);
    f.on_persisted(2, 1);
    assert_eq!(f.applicable_index(), 2);
    assert_eq!(f.entries_to_apply(10), log_of(&[1, 1]));
    f.on_applied(2);
    assert_eq!(f.status().applied, 2);
}

#[test]
fn fast_back_off_converges_in_few_round_trips() {
    // Case 1: the follower's divergent term is unknown to the leader.
    // Leader: 1..=10 term 1, 11..=100 term 3. Follower: 1..=10 term 1, 11..=60 term 2.
    let mut leader_log = vec![1; 10];
    leader_log.extend(vec![3; 90]);
    let mut follower_log = vec![1; 10];
    follower_log.extend(vec![2; 50]);
    let mut net = Net::with_logs(
        &[
            (3, leader_log.clone()),
            (3, follower_log),
            (3, leader_log.clone()),
        ],
        |c| c.max_entries_per_message = 1000,
    );
    net.isolate("n2");
    net.elect("n1");
    net.heal();
    net.tick("n1");
    net.deliver_all();
    let rejections: Vec<AppendEntriesResponse> = net
        .delivered
        .iter()
        .filter(|(from, _)| from == "n2")
        .filter_map(|(_, e)| match &e.msg {
            Message::AppendEntriesResponse(r) if !r.success => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(rejections.len(), 2, "{rejections:?}");
    // First: the follower's log is too short; it says where it ends.
    assert_eq!(
        (
            rejections[0].conflict_term,
            rejections[0].last_log_index,
            rejections[0].rejected_prev_index
        ),
        (0, 60, 100)
    );
    // Then: term 2 at 60, first held at 11; the leader has no term 2, so it jumps to 11.
    assert_eq!(
        (
            rejections[1].conflict_term,
            rejections[1].conflict_index,
            rejections[1].rejected_prev_index
        ),
        (2, 11, 60)
    );
    let mut want = leader_log.clone();
    want.push(4);
    assert_eq!(terms_of(net.core("n2")), want);
    assert_eq!(entries_of(net.core("n2")), entries_of(net.core("n1")));

    // Case 2: the leader holds the conflicting term, so it resumes after its last entry of it.
    // Leader: 1..=5 t1, 6..=8 t2, 9..=20 t4. Follower: 1..=5 t1, 6..=15 t2.
    let mut leader_log = vec![1; 5];
    leader_log.extend([2, 2, 2]);
    leader_log.extend(vec![4; 12]);
    let mut follower_log = vec![1; 5];
    follower_log.extend(vec![2; 10]);
    let mut net = Net::with_logs(
        &[
            (4, leader_log.clone()),
            (4, follower_log),
            (4, leader_log.clone()),
        ],
        |_| {},
    );
    net.isolate("n2");
    net.elect("n1");
    net.heal();
    net.tick("n1");
    net.deliver_all();
    let rejections: Vec<AppendEntriesResponse> = net
        .delivered
        .iter()
        .filter(|(from, _)| from == "n2")
        .filter_map(|(_, e)| match &e.msg {
            Message::AppendEntriesResponse(r) if !r.success => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(rejections.len(), 2, "{rejections:?}");
    assert_eq!(
        (rejections[1].conflict_term, rejections[1].conflict_index),
        (2, 6)
    );
    // The next probe is at prev = 8 (the leader's last term-2 entry), which matches.
    let probes: Vec<u64> = net
        .delivered
        .iter()
        .filter(|(from, e)| from == "n1" && e.to == "n2")
        .filter_map(|(_, e)| match &e.msg {
            Message::AppendEntries(a) => Some(a.prev_log_index),
            _ => None,
        })
        .collect();
    assert_eq!(&probes[..3], &[20, 15, 8]);
    let mut want = leader_log;
    want.push(5);
    assert_eq!(terms_of(net.core("n2")), want);
}

// ---------------------------------------------------------------------------
// §5.4.2 Committing entries from previous terms
// ---------------------------------------------------------------------------

/// Figure 8 set-up: S1 (n1) led term 2 and wrote (2,2) on S2; S5 led term 3 and wrote
/// (2,3) only locally. Now S1 leads term 4 and copies (2,2) to S3, but S3 never gets
/// the term-4 no-op. S4 and S5 are cut off.
fn figure_8_setup() -> Net {
    let logs = [
        (3, vec![1, 2]),
        (3, vec![1, 2]),
        (3, vec![1]),
        (3, vec![1]),
        (3, vec![1, 3]),
    ];
    let mut net = Net::with_logs(&logs, |c| {
        c.max_entries_per_message = 1;
        c.check_quorum = false;
    });
    net.isolate("n4");
    net.isolate("n5");
    net.campaign("n1");
    let mut noop_to_n3 = 0;
    net.deliver_where(|_, env| match &env.msg {
        // S3 hears the first probe (and rejects it, its log being too short) but
        // none of the AppendEntries that would give it the term-4 no-op.
        Message::AppendEntries(a) if env.to == "n3" && a.entries.iter().any(|e| e.term == 4) => {
            noop_to_n3 += 1;
            noop_to_n3 == 1
        }
        _ => true,
    });
    assert_eq!((net.core("n1").role(), net.core("n1").term()), (Role::Leader, 4));
    net
}

#[test]
fn figure_8_no_commit_of_earlier_term_entries_by_counting() {
    let mut net = figure_8_setup();
    // (2,2) is now stored on a majority: S1, S2, S3 ...
    for n in ["n1", "n2", "n3"] {
        assert_eq!(net.core(n).log().term(2), Some(2), "{n}");
    }
    assert_eq!(terms_of(net.core("n3")), vec![1, 2]);
    assert_eq!(net.core("n1").progress("n3").unwrap().match_index, 2);
    assert_eq!(net.core("n1").progress("n2").unwrap().match_index, 3);
    // ... yet the leader of term 4 must not commit it by counting replicas.
    assert_eq!(net.core("n1").commit(), 0);
    for n in 1..=5 {
        assert_eq!(net.core(&id(n)).commit(), 0);
    }

    // Figure 8(d): why. S1 crashes; S5 (last entry (2,3)) wins term 5 with S3 and S4
    // and overwrites (2,2) everywhere it reaches, S2 included.
    net.heal();
    net.isolate("n1");
    net.queue.clear();
    net.elect("n5");
    net.tick("n5");
    net.deliver_all();
    assert_eq!(net.core("n5").term(), 5);
    for n in ["n2", "n3", "n4", "n5"] {
        assert_eq!(terms_of(net.core(n)), vec![1, 3, 5], "{n}");
        assert_eq!(net.core(n).commit(), 3);
    }
}

#[test]
fn figure_8_earlier_term_entries_commit_with_an_entry_of_the_current_term() {
    // Figure 8(e): once entries of term 4 reach S3, a majority holds an entry of
    // the leader's term, and (2,2) commits with it.
    let mut net = figure_8_setup();
    assert_eq!(net.core("n1").commit(), 0);
    assert_eq!(net.propose("n1", &["x"]), vec![(4, 4)]);
    net.deliver_all();
    net.tick("n1");
    net.deliver_all();
    assert_eq!(terms_of(net.core("n3")), vec![1, 2, 4, 4]);
    for n in ["n1", "n2", "n3"] {
        assert_eq!(net.core(n).commit(), 4, "{n}");
    }
    assert_eq!(net.nodes["n3"].applied, entries_of(net.core("n1")));
}

#[test]
fn new_leader_commits_its_noop_and_proposals_only_on_a_quorum() {
    let mut net = Net::new(3, |_| {});
    net.elect("n1");
    assert_eq!(net.core("n1").commit(), 1, "the no-op of term 1");
    let pos = net.propose("n1", &["x"]);
    assert_eq!(pos, vec![(2, 1)]);
    assert_eq!(net.core("n1").log().stable_index(), 2);
    assert_eq!(net.core("n1").commit(), 1, "stored only on the leader");
    net.blocked.insert((id(1), id(3)));
    net.deliver_all();
    assert_eq!(net.core("n1").commit(), 2, "stored on n1 and n2");
    assert_eq!(net.core("n2").commit(), 2);
    assert_eq!(net.core("n3").log().last_index(), 1);
    assert_eq!(
        net.nodes["n1"].applied.last().map(|e| e.payload.clone()),
        Some(Bytes::from("x"))
    );
}

#[test]
fn leader_counts_itself_only_once_its_own_entries_are_durable() {
    let mut net = Net::new(3, |_| {});
    net.elect("n1");
    assert_eq!(net.core("n1").commit(), 1);
    net.isolate("n3");
    // The leader's own write of entry 2 is slow: its Ready is taken, not yet persisted.
    net.core_mut("n1").propose(vec![Bytes::from("x")]).unwrap();
    let rd = net.core_mut("n1").ready();
    assert_eq!(rd.persisted_position(), Some((2, 1)));
    for env in rd.messages.clone() {
        net.queue.push_back((id(1), env));
    }
    net.deliver_all();
    // n2 holds entry 2 durably; n1 + n2 would be a majority, but n1's copy is not durable.
    assert_eq!(net.core("n2").log().stable_index(), 2);
    assert_eq!(net.core("n1").progress("n2").unwrap().match_index, 2);
    assert_eq!(net.core("n1").commit(), 1);
    persist(&mut net.nodes.get_mut("n1").unwrap().disk, &rd);
    net.core_mut("n1").on_persisted(2, 1);
    assert_eq!(net.core("n1").commit(), 2);
    net.deliver_all();
    assert_eq!(net.core("n2").commit(), 2);
}

// ---------------------------------------------------------------------------
// Dissertation §9.6: pre-vote and check-quorum
// ---------------------------------------------------------------------------

/// n1 leads a 3-node cluster; n3 is cut off for `ticks` ticks while n1 and n2
/// keep exchanging heartbeats.
fn partition_n3(pre_vote: bool, ticks: usize) -> Net {
    let mut net = Net::new(3, |c| c.pre_vote = pre_vote);
    net.elect("n1");
    net.deliver_all();
    net.isolate("n3");
    for _ in 0..ticks {
        net.tick("n1");
        net.tick("n2");
        net.tick("n3");
        net.deliver_all();
    }
    net
}

#[test]
fn pre_vote_partitioned_node_does_not_inflate_term_or_depose_leader() {
    let mut net = partition_n3(true, 100);
    assert_eq!(net.core("n3").term(), 1, "pre-votes never bump the term");
    assert_eq!((net.core("n1").role(), net.core("n1").term()), (Role::Leader, 1));

    // n3 comes back while still campaigning: its pre-votes are refused (n1 and n2
    // hear a live leader), and n1's heartbeats bring it back as a follower.
    net.heal();
    net.queue.clear();
    assert_eq!(net.core("n3").role(), Role::PreCandidate);
    while net.queue.is_empty() {
        net.tick("n3");
    }
    let pre_votes = net.queue.len();
    assert_eq!(pre_votes, 2);
    assert!(net
        .queue
        .iter()
        .all(|(_, e)| matches!(&e.msg, Message::RequestVote(r) if r.pre_vote && r.term == 2)));
    net.deliver_all();
    let refusals: Vec<bool> = net.delivered[net.delivered.len() - 2..]
        .iter()
        .map(|(_, e)| matches!(&e.msg, Message::RequestVoteResponse(r) if r.pre_vote && !r.granted && r.term == 1))
        .collect();
    assert_eq!(refusals, vec![true, true]);
    assert_eq!(net.core("n3").role(), Role::Follower, "refused by a majority");
    for _ in 0..3 {
        net.tick("n1");
        net.tick("n2");
        net.deliver_all();
    }
    for n in ["n1", "n2", "n3"] {
        assert_eq!(net.core(n).term(), 1, "{n}");
        assert_eq!(net.core(n).leader(), Some("n1"), "{n}");
    }
    assert_eq!(net.core("n1").role(), Role::Leader);
    assert_eq!(net.core("n3").role(), Role::Follower);
}

#[test]
fn without_pre_vote_partitioned_node_inflates_term_and_deposes_leader() {
    // The contrast that shows the previous test can fail.
    let mut net = partition_n3(false, 100);
    let t3 = net.core("n3").term();
    assert!(t3 > 3, "n3 kept starting elections: term {t3}");
    net.heal();
    // n3's rejection of n1's next heartbeat carries its inflated term and deposes n1.
    net.tick("n1");
    net.deliver_all();
    assert_eq!(net.core("n1").role(), Role::Follower);
    assert!(net.core("n1").term() >= t3);
}

#[test]
fn check_quorum_leader_steps_down_without_majority() {
    for check_quorum in [true, false] {
        let mut net = Net::new(3, |c| c.check_quorum = check_quorum);
        net.elect("n1");
        // With one follower reachable the leader keeps its majority.
        net.isolate("n3");
        for _ in 0..50 {
            net.tick("n1");
            net.deliver_all();
        }
        assert_eq!(net.core("n1").role(), Role::Leader);
        // Alone, it steps down within two election timeouts — only with check-quorum.
        net.isolate("n1");
        for _ in 0..2 * net.nodes["n1"].cfg.election_ticks {
            net.tick("n1");
            net.deliver_all();
        }
        let s = net.core("n1").status();
        if check_quorum {
            assert_eq!((s.role, s.term, s.leader), (Role::Follower, 1, None));
            assert!(net.core_mut("n1").propose(vec![Bytes::from("x")]).is_err());
        } else {
            assert_eq!((s.role, s.term), (Role::Leader, 1));
        }
    }
}

// ---------------------------------------------------------------------------
// Single node, liveness after loss
// ---------------------------------------------------------------------------

#[test]
fn single_node_cluster_elects_itself_and_commits_on_local_persist() {
    let mut n = RaftCore::new(cfg("n1", 1), Restored::default(), 1);
    for _ in 0..20 {
        n.tick();
        if n.role() == Role::Leader {
            break;
        }
    }
    assert_eq!((n.role(), n.term(), n.leader()), (Role::Leader, 1, Some("n1")));
    assert_eq!(n.commit(), 0, "nothing commits before it is durable");
    let rd = n.ready();
    assert_eq!(
        rd.hard_state.as_ref().map(|h| (h.term, h.vote.clone())),
        Some((1, Some(id(1))))
    );
    assert_eq!(rd.entries.len(), 1);
    assert_eq!(rd.entries[0].r#type, EntryType::EntryNoop as i32);
    assert!(rd.must_sync);
    n.on_persisted(1, 1);
    assert_eq!(n.commit(), 1);

    let pos = n.propose(vec![Bytes::from("a"), Bytes::from("b")]).unwrap();
    assert_eq!(pos, vec![(2, 1), (3, 1)]);
    assert_eq!(n.commit(), 1);
    let rd = n.ready();
    assert_eq!(rd.entries.len(), 2);
    n.on_persisted(3, 1);
    assert_eq!(n.commit(), 3);
    let applied: Vec<Bytes> = n.entries_to_apply(10).into_iter().map(|e| e.payload).collect();
    assert_eq!(applied, vec![Bytes::new(), Bytes::from("a"), Bytes::from("b")]);
}

#[test]
fn lost_append_entries_are_resent_by_heartbeats_without_new_proposals() {
    // A pipelined AppendEntries to n2 is lost while n3 is down; the cluster stays
    // idle. Heartbeats alone must get the entry to n2 so that it commits.
    let mut net = Net::new(3, |_| {});
    net.elect("n1");
    net.deliver_all();
    assert_eq!(
        net.core("n1").progress("n2").unwrap().state,
        ProgressState::Replicate
    );
    net.isolate("n3");
    net.propose("n1", &["lost"]);
    net.queue
        .retain(|(_, e)| !matches!(&e.msg, Message::AppendEntries(a) if !a.entries.is_empty()));
    assert_eq!(net.core("n1").commit(), 1);
    for _ in 0..5 {
        net.tick("n1");
        net.deliver_all();
    }
    assert_eq!(net.core("n2").log().last_index(), 2);
    assert_eq!(net.core("n1").commit(), 2);
    assert_eq!(net.core("n2").commit(), 2);
}

#[test]
fn restart_does_not_reapply_entries_applied_beyond_the_persisted_commit() {
    // The commit index is persisted lazily (a commit-only Ready need not be fsynced),
    // so a state machine may have applied past the commit index on disk.
    let disk = Restored {
        hard_state: HardState {
            term: 1,
            vote: Some(id(1)),
            commit: 2,
        },
        entries: log_of(&[1, 1, 1, 1]),
        applied: 3,
    };
    let n = RaftCore::new(cfg("n2", 3), disk, 2);
    let s = n.status();
    assert_eq!(s.applied, 3);
    assert!(s.commit >= 3);
    assert_eq!(
        n.entries_to_apply(10),
        Vec::<Entry>::new(),
        "entry 3 is already applied"
    );
}
