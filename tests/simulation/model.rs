//! The simulated world: a network that loses, duplicates and reorders
//! messages, per-node disks and state machines, and the cores they drive.
//! Ready handling, faults and clients, and the driving loop live in the
//! submodules, as further `impl Sim` blocks.

use crate::checker::{Checker, Verdict};
use bytes::Bytes;
use floyd::core::{
    Config, Envelope, HardState, Membership, Message, NodeId, RaftCore, ReadState, Rejected, Restored, Role,
};
use floyd::wire::{Entry, SnapshotMeta};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeSet, HashMap, VecDeque};

/// Spare nodes a seed may start beside its initial voters, to add later.
const MAX_SPARES: usize = 2;

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
    config: Option<(u64, Membership)>,
    /// An installed snapshot: the log starts after it (see `Ready::snapshot`).
    snapshot: Option<SnapshotMeta>,
}

#[derive(Default)]
struct Disk {
    /// Durable hard state.
    hard_state: HardState,
    /// A commit-only hard state written without fsync: a crash may lose it.
    unsynced: Option<HardState>,
    /// Index and term of the last compacted entry: the log holds what follows.
    log_start: (u64, u64),
    /// The log, contiguous from `log_start.0 + 1`.
    entries: Vec<Entry>,
    /// The snapshot store: the newest snapshot taken or received.
    snapshot: Option<StoredSnapshot>,
    /// The configuration in force as the Readies reported it, written with
    /// the log changes it belongs to.
    config: Option<(u64, Membership)>,
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
    /// The state machine: every applied entry, from index 1 (an installed
    /// snapshot brings the sender's), persisted atomically with `applied`.
    sm: Vec<Entry>,
    applied: u64,
    /// The apply thread's next job: a snapshot whose log reset is durable, to load.
    pending_load: Option<SnapshotMeta>,
    /// An install the core holds applies back for (taken in a Ready, not yet loaded).
    installing: Option<u64>,
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
    /// For an `InstallSnapshot`: what the sender's runtime streams, and the
    /// sender's incarnation (a crash ends the stream).
    snapshot: Option<StoredSnapshot>,
    incarnation: u64,
}

struct Proposal {
    incarnation: u64,
    term: u64,
    payload: Bytes,
}

/// Deliberate driver bugs, to show that the checks catch them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Mutation {
    /// Sends `messages_after_persist` at once, before the Ready is durable.
    SendBeforePersist,
    /// Ignores `truncate_from` when writing a Ready.
    IgnoreTruncate,
    /// Restores a restarted node without its durable vote.
    ForgetVoteOnRestart,
    /// Reports an installed snapshot (and moves the state machine's applied
    /// index to it) without loading its content into the state machine.
    InstallWithoutLoad,
    /// Serves a read from the local state machine at once, without asking
    /// the core (a follower's or a deposed leader's stale read).
    StaleRead,
    /// Serves a read as soon as its `ReadState` arrives, without waiting
    /// for the state machine to apply its index.
    NoApplyWait,
}

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Stats {
    pub(crate) nodes: usize,
    pub(crate) committed: usize,
    /// Committed entries that are client proposals (not no-ops).
    pub(crate) committed_proposals: usize,
    pub(crate) acked: usize,
    pub(crate) proposals: usize,
    pub(crate) crashes: usize,
    pub(crate) partitions: usize,
    pub(crate) max_term: u64,
    /// Terms that had a leader.
    pub(crate) leaders: usize,
    pub(crate) truncations: usize,
    pub(crate) unsynced_lost: usize,
    /// Longest the network queue got.
    pub(crate) max_in_flight: usize,
    pub(crate) delivered: usize,
    pub(crate) dropped: usize,
    /// Membership changes appended, deferred, refused (one at a time, last voter).
    pub(crate) conf_appended: usize,
    pub(crate) conf_deferred: usize,
    pub(crate) conf_refused: usize,
    /// Learners promoted and members removed, in the final log.
    pub(crate) promotions: usize,
    pub(crate) removals: usize,
    /// Nodes outside the final configuration.
    pub(crate) outsiders: usize,
    /// Answers refused because their sender was not a member.
    pub(crate) non_member_answers: usize,
    /// Snapshots nodes took, InstallSnapshot offers leaders made, snapshots
    /// received and loaded into a state machine (installs), installs a newer
    /// one overtook before they were loaded, state machines loaded from the
    /// stored snapshot at restart.
    pub(crate) snapshots_taken: usize,
    pub(crate) snapshot_offers: usize,
    pub(crate) installs: usize,
    pub(crate) superseded_installs: usize,
    pub(crate) restart_loads: usize,
    /// Offers the sender's transport dropped without a report.
    pub(crate) unreported_offers: usize,
    /// Rounds healing took to converge (the most any seed took).
    pub(crate) heal_rounds: usize,
    /// Reads begun; served (checked), failed (to retry), served after
    /// waiting to apply their index, dropped by a crash, never answered.
    pub(crate) reads: usize,
    pub(crate) reads_served: usize,
    pub(crate) reads_failed: usize,
    pub(crate) reads_waited: usize,
    /// Reads a leader served on its lease (lease seeds), and nodes that
    /// took the ticks they missed at once (see `clock.rs`).
    pub(crate) reads_on_lease: usize,
    pub(crate) late_bursts: usize,
    pub(crate) reads_dropped: usize,
    pub(crate) reads_unanswered: usize,
    /// Quiet groups (issue 23): tick periods a live node spent quiet, and
    /// host-down notices delivered (a crash, a partition, a false alarm).
    pub(crate) quiet_periods: usize,
    pub(crate) host_down_notices: usize,
}

impl Stats {
    /// Adds another seed's counts (maxima for the maxima).
    pub(crate) fn add(&mut self, s: &Stats) {
        self.committed += s.committed;
        self.committed_proposals += s.committed_proposals;
        self.acked += s.acked;
        self.proposals += s.proposals;
        self.crashes += s.crashes;
        self.partitions += s.partitions;
        self.delivered += s.delivered;
        self.dropped += s.dropped;
        self.max_term = self.max_term.max(s.max_term);
        self.truncations += s.truncations;
        self.leaders += s.leaders;
        self.max_in_flight = self.max_in_flight.max(s.max_in_flight);
        self.unsynced_lost += s.unsynced_lost;
        self.nodes = self.nodes.max(s.nodes);
        self.conf_appended += s.conf_appended;
        self.conf_deferred += s.conf_deferred;
        self.conf_refused += s.conf_refused;
        self.promotions += s.promotions;
        self.removals += s.removals;
        self.outsiders += s.outsiders;
        self.non_member_answers += s.non_member_answers;
        self.snapshots_taken += s.snapshots_taken;
        self.quiet_periods += s.quiet_periods;
        self.host_down_notices += s.host_down_notices;
        self.snapshot_offers += s.snapshot_offers;
        self.installs += s.installs;
        self.superseded_installs += s.superseded_installs;
        self.restart_loads += s.restart_loads;
        self.unreported_offers += s.unreported_offers;
        self.heal_rounds = self.heal_rounds.max(s.heal_rounds);
        self.reads += s.reads;
        self.reads_served += s.reads_served;
        self.reads_failed += s.reads_failed;
        self.reads_waited += s.reads_waited;
        self.reads_on_lease += s.reads_on_lease;
        self.late_bursts += s.late_bursts;
        self.reads_dropped += s.reads_dropped;
        self.reads_unanswered += s.reads_unanswered;
    }
}

struct Sim {
    seed: u64,
    rng: SmallRng,
    nodes: Vec<SimNode>,
    /// The first `initial` nodes are the bootstrap voters; the rest are spares.
    initial: usize,
    /// Whether clients ask for membership changes in this seed.
    changes: bool,
    /// The highest commit index a leader showed, with the voters it was
    /// durable on a majority of: it must stay so.
    commit_quorum: Option<(u64, u64, BTreeSet<NodeId>)>,
    /// The last request for votes delivered: (to, from, whether it may be granted).
    vote_request: Option<(usize, NodeId, bool)>,
    /// (node, term) → the commit index the node had when first seen leading that term.
    leader_base: HashMap<(usize, u64), u64>,
    index_of: HashMap<NodeId, usize>,
    net: VecDeque<InFlight>,
    /// Directed links that drop every message.
    blocked: BTreeSet<(usize, usize)>,
    loss: f64,
    duplication: f64,
    crash_rate: f64,
    /// Probability that a node takes a snapshot after an apply step (0: never in this seed).
    snapshot_rate: f64,
    /// While healing: no loss, no duplication, no crash.
    calm: bool,
    mutation: Option<Mutation>,
    checker: Checker,
    proposals: HashMap<(usize, u64), Proposal>,
    /// Acknowledged proposals: (index, term, payload).
    acked: Vec<(u64, u64, Bytes)>,
    next_payload: u64,
    /// Clients' reads in progress (see `model/reads.rs`).
    reads: reads::Reads,
    /// Every node's clock, and the nodes held up (see `model/clock.rs`).
    clocks: clock::Clocks,
    violation: Option<String>,
    trace: VecDeque<String>,
    /// `FLOYD_SIM_TRACE=1`: print every event as it happens.
    verbose: bool,
    step: usize,
    /// Clients rest until this step: no proposal, read or change, so that
    /// groups may go quiet.
    lull_until: usize,
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

// Declared after `trace!`, so that they can use it.
mod clock;
mod driver;
mod faults;
mod membership;
mod reads;
mod ready;
mod snapshot;

use snapshot::StoredSnapshot;

pub(crate) use driver::run_seed;

fn summary(m: &Message) -> String {
    match m {
        Message::ReadIndexRequest(r) => format!("ReadIndex t{} ctx {}", r.term, r.ctx),
        Message::TimeoutNow(t) => format!("TimeoutNow t{}", t.term),
        Message::ReadIndexResponse(r) => format!(
            "ReadIndexResp t{} ctx {} at {} ok={}",
            r.term, r.ctx, r.index, r.ok
        ),
        Message::InstallSnapshot(s) => {
            let meta = s.meta.clone().unwrap_or_default();
            format!(
                "InstallSnapshot t{} at ({}, {})",
                s.term, meta.last_index, meta.last_term
            )
        }
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
        let changes = rng.random_bool(0.75);
        let spares = if changes {
            rng.random_range(0..=MAX_SPARES)
        } else {
            0
        };
        let initial: Vec<NodeId> = (1..=n).map(|i| format!("n{i}")).collect();
        let names: Vec<NodeId> = (1..=n + spares).map(|i| format!("n{i}")).collect();
        let heartbeat_ticks = rng.random_range(1..=3);
        let max_inflight = rng.random_range(1..=8);
        let max_entries = rng.random_range(1..=8);
        let pre_vote = rng.random_bool(0.8);
        let check_quorum = rng.random_bool(0.7);
        let lease_reads = check_quorum && rng.random_bool(0.6);
        // Half the seeds let idle groups go quiet (`core/quiesce.rs`).
        let quiesce_after = match rng.random_bool(0.5) {
            true => rng.random_range(2..=12),
            false => 0,
        };
        let nodes = names
            .iter()
            .enumerate()
            .map(|(i, id)| {
                // A spare joins with no configuration, or now and then with
                // a member list naming the cluster and itself (never added).
                let bootstrap = if i < n {
                    initial.clone()
                } else if rng.random_bool(0.3) {
                    initial.iter().chain([id]).cloned().collect()
                } else {
                    Vec::new()
                };
                let mut cfg = Config::new(id.clone(), bootstrap);
                cfg.election_ticks = 10;
                cfg.heartbeat_ticks = heartbeat_ticks;
                cfg.max_inflight = max_inflight;
                cfg.max_entries_per_message = max_entries;
                cfg.max_bytes_per_message = 256;
                cfg.pre_vote = pre_vote;
                cfg.check_quorum = check_quorum;
                cfg.quiesce_after_ticks = quiesce_after;
                if lease_reads {
                    clock::lease_settings(&mut cfg);
                }
                let core = RaftCore::new(cfg.clone(), Restored::default(), node_seed(seed, i, 0));
                SimNode {
                    id: id.clone(),
                    core: Some(core),
                    cfg,
                    pending: VecDeque::new(),
                    disk: Disk::default(),
                    sm: Vec::new(),
                    applied: 0,
                    pending_load: None,
                    installing: None,
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
        let snapshot_rate = Sim::snapshot_rate(&mut rng);
        let clocks = clock::Clocks::new(&mut rng, n + spares);
        Sim {
            seed,
            rng,
            nodes,
            initial: n,
            changes,
            commit_quorum: None,
            leader_base: HashMap::new(),
            vote_request: None,
            index_of: names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect(),
            net: VecDeque::new(),
            blocked: BTreeSet::new(),
            loss,
            duplication,
            crash_rate,
            snapshot_rate,
            calm: false,
            mutation,
            checker: Checker::default(),
            proposals: HashMap::new(),
            acked: Vec::new(),
            next_payload: 0,
            reads: reads::Reads::new(n + spares),
            clocks,
            violation: None,
            trace: VecDeque::new(),
            verbose: std::env::var_os("FLOYD_SIM_TRACE").is_some(),
            step: 0,
            lull_until: 0,
            stats: Stats {
                nodes: n + spares,
                ..Stats::default()
            },
        }
    }

    /// A quorum of the latest committed configuration.
    fn quorum(&self) -> usize {
        self.committed_voters().len() / 2 + 1
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
        let m = InFlight {
            from,
            to,
            snapshot: self.snapshot_to_send(from, &env.msg),
            incarnation: self.nodes[from].incarnation,
            msg: env.msg,
        };
        if Self::unsent(&m) {
            return;
        }
        if !self.calm && self.rng.random_bool(self.loss) {
            self.stats.dropped += 1;
            self.report_stream(&m, false);
            return;
        }
        if !self.calm && self.rng.random_bool(self.duplication) {
            self.net.push_back(InFlight {
                msg: m.msg.clone(),
                snapshot: m.snapshot.clone(),
                ..m
            });
        }
        self.net.push_back(m);
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

    fn deliver(&mut self, mut m: InFlight) {
        if self.blocked.contains(&(m.from, m.to))
            || self.nodes[m.to].core.is_none()
            || self.receive_snapshot(&mut m).is_none()
        {
            self.stats.dropped += 1;
            if m.snapshot.is_some() {
                // Written whole to a connection that then failed, or broken.
                let ok = self.rng.random_bool(0.5);
                self.report_stream(&m, ok);
            }
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
        let core = self.nodes[m.to].core.as_mut().unwrap();
        if let Message::RequestVote(r) = &m.msg {
            self.vote_request = Some((m.to, from.clone(), may_get_vote(core, r)));
        }
        let msg = std::mem::replace(&mut m.msg, Message::InstallSnapshot(Default::default()));
        self.read_clock(m.to);
        let core = self.nodes[m.to].core.as_mut().unwrap();
        let result = core.step(&from, msg);
        self.report_stream(&m, true);
        let core = self.nodes[m.to].core.as_mut().unwrap();
        match result {
            Ok(()) => {}
            // An answer from a server outside the receiver's configuration
            // (removed, or added in an entry the receiver does not have).
            Err(Rejected::NotMember(who)) if who == from && !core.membership().contains(&from) => {
                self.stats.non_member_answers += 1;
                trace!(self, "  refused: {from} is not a member");
            }
            Err(e) => {
                let to = self.nodes[m.to].id.clone();
                self.note(Err(format!("{to} refused an honest message from {from}: {e}")));
            }
        }
        self.process(m.to);
    }
}

/// §4.2.3: a vote (or pre-vote) goes only to a voter of the granter's
/// configuration, or to a candidate whose log is ahead of the granter's (it
/// may be a voter of a configuration the granter has not received).
fn may_get_vote(core: &RaftCore, r: &floyd::wire::RequestVote) -> bool {
    let (index, term) = (core.log().last_index(), core.log().last_term());
    core.membership().is_voter(&r.candidate)
        || r.last_log_term > term
        || (r.last_log_term == term && r.last_log_index > index)
}

fn node_seed(seed: u64, node: usize, incarnation: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ ((node as u64) << 32)
        ^ incarnation.wrapping_mul(0xD6E8_FEB8_6659_FD93)
}
