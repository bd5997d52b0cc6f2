//! The pure Raft state machine: messages and ticks in; state to persist,
//! messages to send and entries to apply out. No threads, clocks, sockets or
//! disk live here, so every rule can be stepped by hand in a test.
//!
//! Driving it: call [`RaftCore::tick`] at a fixed period, [`RaftCore::step`]
//! for every message received and [`RaftCore::propose`] for client commands,
//! then take [`RaftCore::ready`]. Persist its `hard_state` and log changes
//! (in the order Readies were taken), send `messages` at once and
//! `messages_after_persist` only once that persistence is durable, then report
//! it with [`RaftCore::on_persisted`]. Apply entries up to
//! [`RaftCore::applicable_index`] and report them with [`RaftCore::on_applied`].

mod election;
mod log;
mod membership;
mod progress;
mod quiesce;
mod read;
mod replication;
mod snapshot;
#[cfg(test)]
mod tests;
mod transfer;
mod validate;

pub use log::RaftLog;
pub use membership::{CatchUp, ConfChange, ConfChangeAccepted, ConfChangeError, ConfigHistory, Membership};
pub use progress::{Progress, ProgressState};
pub use read::ReadState;
pub use transfer::TransferError;
pub use validate::{Rejected, MAX_WIRE_VALUE};

use crate::wire::{
    AppendEntries, AppendEntriesResponse, Entry, InstallSnapshot, ReadIndexRequest, ReadIndexResponse,
    RequestVote, RequestVoteResponse, SnapshotMeta, TimeoutNow,
};
use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

/// A member's name: its `"ip:port"`.
pub type NodeId = String;

/// The Raft messages exchanged between members.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    RequestVote(RequestVote),
    RequestVoteResponse(RequestVoteResponse),
    AppendEntries(AppendEntries),
    AppendEntriesResponse(AppendEntriesResponse),
    /// Leader → runtime: stream this snapshot to the follower. Follower's
    /// runtime → core: the snapshot arrived whole and is on disk. Never a
    /// frame itself: the snapshot travels as `SnapshotChunk`s.
    InstallSnapshot(InstallSnapshot),
    ReadIndexRequest(ReadIndexRequest),
    ReadIndexResponse(ReadIndexResponse),
    /// Leader → transfer target: start an election now (§3.10).
    TimeoutNow(TimeoutNow),
}

impl Message {
    /// The sender's term carried by the message.
    pub fn term(&self) -> u64 {
        match self {
            Message::RequestVote(m) => m.term,
            Message::RequestVoteResponse(m) => m.term,
            Message::AppendEntries(m) => m.term,
            Message::AppendEntriesResponse(m) => m.term,
            Message::InstallSnapshot(m) => m.term,
            Message::ReadIndexRequest(m) => m.term,
            Message::ReadIndexResponse(m) => m.term,
            Message::TimeoutNow(m) => m.term,
        }
    }
}

/// A message with its destination.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub to: NodeId,
    pub msg: Message,
}

/// The state that must be durable before the node acts on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: u64,
    pub vote: Option<NodeId>,
    pub commit: u64,
}

/// Role of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        }
    }
}

/// Static configuration of the core. Times are in ticks.
#[derive(Debug, Clone)]
pub struct Config {
    pub id: NodeId,
    /// The bootstrap configuration: the voters a node starts with while its
    /// log holds no configuration entry. Empty for a node that joins (it
    /// waits to be added). Once the log has a configuration, that one rules.
    pub voters: Vec<NodeId>,
    /// Base election timeout; the real one is random in `[base, 2 * base)`.
    pub election_ticks: u32,
    pub heartbeat_ticks: u32,
    pub max_entries_per_message: usize,
    pub max_bytes_per_message: u64,
    /// AppendEntries a leader may have unacknowledged per follower.
    pub max_inflight: usize,
    /// Entry payload bytes a leader may have unacknowledged per follower: with
    /// large values the message count alone let a leader queue hundreds of
    /// MiB per follower (1 MiB values, 5 nodes: 1.3 GiB of RSS).
    pub max_inflight_bytes: u64,
    pub pre_vote: bool,
    pub check_quorum: bool,
    /// Lease reads (dissertation §6.4.1), in µs of the runtime's monotonic
    /// clock; 0 = off. Must be shorter than the shortest time a follower
    /// refuses votes after hearing from its leader (`election_ticks - 1`
    /// ticks), by the bound on clock drift. Needs `check_quorum`.
    pub lease_us: u64,
    /// With lease reads: how long, in µs of the monotonic clock, a voter
    /// refuses votes and holds back its own campaign after a message from
    /// its leader arrived, however late its ticks run (a burst of ticks due
    /// before that message must not shorten it). At least `lease_us` is
    /// used; the runtime sets it to the election timeout's length.
    pub lockout_us: u64,
    /// Quiescence (`quiesce.rs`): a leader idle for this many ticks in a
    /// row quiets its group; 0 = never. Every member must understand the
    /// quiesce heartbeat (protocol 7): the runtime says so.
    pub quiesce_after_ticks: u32,
}

impl Config {
    /// A configuration with LAN-appropriate defaults for tests and simulations.
    pub fn new(id: impl Into<NodeId>, voters: Vec<NodeId>) -> Self {
        Config {
            id: id.into(),
            voters,
            election_ticks: 10,
            heartbeat_ticks: 1,
            max_entries_per_message: 256,
            max_bytes_per_message: 1 << 20,
            max_inflight: 64,
            max_inflight_bytes: 4 << 20,
            pre_vote: true,
            check_quorum: true,
            lease_us: 0,
            lockout_us: 0,
            quiesce_after_ticks: 0,
        }
    }
}

/// What the core needs restored after a restart.
#[derive(Debug, Clone, Default)]
pub struct Restored {
    pub hard_state: HardState,
    /// Index and term of the last compacted entry ((0, 0) if none).
    pub log_start: (u64, u64),
    /// The persisted log, contiguous from `log_start.0 + 1`.
    pub entries: Vec<Entry>,
    /// The latest snapshot on disk; the state machine holds at least it.
    pub snapshot: Option<SnapshotMeta>,
    /// Highest index already applied to the state machine.
    pub applied: u64,
    /// The latest configuration as stored in meta, with its index: used
    /// when the log no longer holds that entry.
    pub config: Option<(u64, Membership)>,
}

/// How far back [`RaftCore::log_says_protocol_6`] looks for a marked entry.
pub const MARK_SCAN_ENTRIES: u64 = 10_000;

/// The work the core hands to the runtime. See the module docs for the order.
#[derive(Debug, Default)]
pub struct Ready {
    /// New (term, vote, commit), if any of them changed.
    pub hard_state: Option<HardState>,
    /// Whether term or vote changed in this Ready (else only the commit
    /// index did, and the stored term and vote are already these).
    pub term_or_vote_changed: bool,
    /// Delete every log entry from this index on, before appending `entries`.
    pub truncate_from: Option<u64>,
    pub entries: Vec<Entry>,
    /// Whether this Ready must be fsynced before `messages_after_persist` go out
    /// (true when term, vote or log changed; a commit-only change need not be).
    pub must_sync: bool,
    /// Messages that may leave at once.
    pub messages: Vec<Envelope>,
    /// Messages that depend on persistence (votes, acks): they leave only once
    /// this Ready and every earlier one are durable, even if this one writes nothing.
    pub messages_after_persist: Vec<Envelope>,
    /// The configuration in force changed (appended, or reverted by a
    /// truncation): its index and members, to store with this Ready's log
    /// changes and to connect to.
    pub config: Option<(u64, Membership)>,
    /// A snapshot from the leader was accepted (it is on disk already): make
    /// the log start at its point (delete entries up to it, with
    /// `truncate_from` removing the rest when they did not match), then load
    /// it into the state machine and report [`RaftCore::on_snapshot_installed`].
    pub snapshot: Option<SnapshotMeta>,
    /// Reads confirmed ([`RaftCore::read_index`]): serve each once applied to its index.
    pub read_states: Vec<ReadState>,
    /// Reads that could not be confirmed (no leader, or leadership lost): retry.
    pub read_failures: Vec<u64>,
}

impl Ready {
    /// Whether anything must be written to disk.
    pub fn needs_persist(&self) -> bool {
        self.hard_state.is_some()
            || self.truncate_from.is_some()
            || !self.entries.is_empty()
            || self.config.is_some()
            || self.snapshot.is_some()
    }

    /// Last log (index, term) this Ready makes durable, if it writes entries.
    pub fn persisted_position(&self) -> Option<(u64, u64)> {
        self.entries.last().map(|e| (e.index, e.term))
    }

    pub fn is_empty(&self) -> bool {
        !self.needs_persist()
            && self.messages.is_empty()
            && self.messages_after_persist.is_empty()
            && self.read_states.is_empty()
            && self.read_failures.is_empty()
    }
}

/// Why a proposal was refused; nothing was appended, so it may be retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProposeError {
    /// Retry on the leader, if one is known.
    #[error("this node is not the leader")]
    NotLeader { leader: Option<NodeId> },
    /// §3.10: this leader hands over to `target` and appends nothing
    /// meanwhile; retry once the transfer is over (on `target` if it won).
    #[error("leadership is being transferred to {target}")]
    Transferring { target: NodeId },
}

/// A snapshot of the core's state, for status pages and invariant checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreStatus {
    pub id: NodeId,
    pub role: Role,
    pub term: u64,
    pub vote: Option<NodeId>,
    pub leader: Option<NodeId>,
    pub last_log_index: u64,
    pub last_log_term: u64,
    pub commit: u64,
    pub applied: u64,
    pub stable_index: u64,
    pub first_log_index: u64,
    /// Leader: the target of a leadership transfer under way (§3.10).
    pub transferring_to: Option<NodeId>,
}

/// The Raft state machine of one node.
pub struct RaftCore {
    cfg: Config,
    rng: SmallRng,
    role: Role,
    term: u64,
    vote: Option<NodeId>,
    leader: Option<NodeId>,
    log: RaftLog,
    commit: u64,
    applied: u64,
    /// Ticks since the last election reset (follower/candidate) or quorum check (leader).
    election_elapsed: u32,
    heartbeat_elapsed: u32,
    randomized_election_ticks: u32,
    /// Votes received in the current (pre-)campaign.
    votes: BTreeMap<NodeId, bool>,
    /// Replication state per peer (leader only).
    progress: BTreeMap<NodeId, Progress>,
    /// Configurations in the log, the one in force last.
    configs: ConfigHistory,
    /// Leader: the learner being caught up.
    catch_up: Option<CatchUp>,
    /// Leader: a change requested before it committed an entry of its term.
    deferred_change: Option<ConfChange>,
    /// Leader: index of its first entry of this term.
    term_start_index: u64,
    /// The latest snapshot on disk, the one sent to followers that need it.
    snapshot: Option<SnapshotMeta>,
    /// Follower: a snapshot accepted but not yet loaded by the state machine;
    /// nothing is applied until it is.
    pending_install: Option<u64>,
    /// Leader: ReadIndex rounds and the reads waiting on them.
    reads: read::ReadTracker,
    /// Latest wall-clock time the runtime reported (ms since the epoch),
    /// stamped on the entries this node appends as leader.
    clock_ms: u64,
    /// Stamp new entries with the per-term time rule (`log_time_rule` 2):
    /// set by the runtime while every member speaks protocol 6.
    time_rule_2: bool,
    /// Latest monotonic time the runtime reported (µs): when a lease round was sent.
    mono_us: u64,
    /// With lease reads, a node refuses votes for an election timeout after
    /// it starts: it may have acknowledged a leader's lease before a restart.
    boot_quiet: bool,
    /// With lease reads: `mono_us` when the leader's last message arrived
    /// (or, after a start, the first clock reading), from which the voter's
    /// lockout is timed.
    lockout_since_us: Option<u64>,
    /// Hard state as last handed out in a Ready.
    last_hard_state: HardState,
    /// Leader: the leadership transfer under way (§3.10).
    transfer: Option<transfer::Transfer>,
    /// The group is quiet here: ticks do nothing (`quiesce.rs`).
    quiesced: bool,
    /// Leader: ticks in a row it has been idle.
    idle_ticks: u32,
    /// The runtime has nothing waiting on this node (`set_quiesce_allowed`).
    quiesce_allowed: bool,
    ready: Ready,
}

impl RaftCore {
    /// Creates a node from its persisted state. `seed` drives the randomized timeouts.
    pub fn new(cfg: Config, restored: Restored, seed: u64) -> Self {
        assert!(cfg.election_ticks > cfg.heartbeat_ticks && cfg.heartbeat_ticks > 0);
        let hs = restored.hard_state;
        let snapshot_config = restored.snapshot.as_ref().and_then(|s| {
            let m = Membership::from_wire(s.config.clone()?);
            Some((s.config_index, m))
        });
        let configs = restore_configs(&cfg, [restored.config, snapshot_config], &restored.entries);
        let log = RaftLog::restore(restored.log_start, restored.entries);
        let snapshot = restored.snapshot.filter(|s| s.last_index > 0);
        // Applied entries were committed, even if the commit index written with
        // them was not synced.
        let last = log
            .last_index()
            .max(snapshot.as_ref().map_or(0, |s| s.last_index));
        let commit = hs.commit.max(restored.applied).min(last);
        let mut core = RaftCore {
            rng: SmallRng::seed_from_u64(seed),
            role: Role::Follower,
            term: hs.term,
            vote: hs.vote.clone(),
            leader: None,
            commit,
            applied: restored.applied.min(commit),
            log,
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_election_ticks: cfg.election_ticks,
            votes: BTreeMap::new(),
            progress: BTreeMap::new(),
            configs,
            catch_up: None,
            deferred_change: None,
            term_start_index: u64::MAX,
            snapshot: None,
            pending_install: None,
            reads: Default::default(),
            clock_ms: 0,
            time_rule_2: false,
            mono_us: 0,
            boot_quiet: cfg.lease_us > 0,
            lockout_since_us: None,
            last_hard_state: HardState { commit, ..hs },
            transfer: None,
            quiesced: false,
            idle_ticks: 0,
            quiesce_allowed: true,
            ready: Ready::default(),
            cfg,
        };
        if let Some(meta) = snapshot {
            core.adopt_restored_snapshot(meta);
        }
        core.commit = core.commit.min(core.log.last_index());
        core.applied = core.applied.min(core.commit);
        core.last_hard_state.commit = core.commit;
        core.reset_randomized_timeout();
        core
    }

    pub fn id(&self) -> &str {
        &self.cfg.id
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn term(&self) -> u64 {
        self.term
    }
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }
    pub fn log(&self) -> &RaftLog {
        &self.log
    }
    /// Highest index applied to the state machine (as reported).
    pub fn applied(&self) -> u64 {
        self.applied
    }
    pub fn commit(&self) -> u64 {
        self.commit
    }
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    pub fn progress(&self, peer: &str) -> Option<&Progress> {
        self.progress.get(peer)
    }

    pub fn status(&self) -> CoreStatus {
        CoreStatus {
            id: self.cfg.id.clone(),
            role: self.role,
            term: self.term,
            vote: self.vote.clone(),
            leader: self.leader.clone(),
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
            commit: self.commit,
            applied: self.applied,
            stable_index: self.log.stable_index(),
            first_log_index: self.log.first_index(),
            transferring_to: self.transferring_to().map(str::to_string),
        }
    }

    /// Highest index that may be applied: committed and durable here.
    pub fn applicable_index(&self) -> u64 {
        if self.pending_install.is_some() {
            return self.applied;
        }
        self.commit.min(self.log.stable_index())
    }

    /// Committed entries after `applied`, up to `max_count` of them.
    pub fn entries_to_apply(&self, max_count: usize) -> Vec<Entry> {
        let hi = self.applicable_index();
        self.log.slice(self.applied + 1, hi, max_count, u64::MAX)
    }

    /// Advances the logical clock by one tick.
    pub fn tick(&mut self) {
        if self.quiesced {
            return;
        }
        if self.role == Role::Leader {
            self.tick_leader();
        } else {
            self.election_elapsed += 1;
            self.nudge_silent_leader();
            if self.election_elapsed >= self.cfg.election_ticks {
                self.boot_quiet = false;
            }
            if !self.may_campaign() {
                // Learners, removed and joining nodes never campaign (§4.2.3),
                // but for a voter whose removal it has not seen committed.
                return;
            }
            // A lone voter has no leader to hear from: no reason to wait.
            let alone = self.is_voter() && self.membership().voters.len() == 1;
            let timed_out = self.election_elapsed >= self.randomized_election_ticks;
            // But with lease reads, not before its lockout has passed, timed
            // from its leader's last message: ticks that were due before it
            // may run after it (a late runtime catching up), and a voter left
            // alone by a configuration not yet committed still holds up the
            // lease of the leader that sent it (which counts its answers).
            if (alone || timed_out) && !self.in_lease_lockout() {
                self.election_elapsed = 0;
                self.campaign();
            }
        }
    }

    /// Handles one message from member `from` (the identity its connection
    /// proved). A message no honest member could have sent is refused whole,
    /// changing nothing.
    pub fn step(&mut self, from: &str, msg: Message) -> Result<(), Rejected> {
        if let Err(why) = self.validate(from, &msg) {
            if let (Rejected::NotMember(_), Message::ReadIndexRequest(m)) = (&why, &msg) {
                // A removed follower still asking for reads: tell it no, or
                // it waits on every one of them until its caller gives up.
                let reply = self.read_index_refusal(m.ctx);
                self.send(from, reply);
                return Ok(());
            }
            return Err(why);
        }
        if self.quiesced && !self.is_quiet_message(from, &msg) {
            let from_leader = self.leader.as_deref() == Some(from);
            self.wake(self.role != Role::Leader && !from_leader);
        }
        if !self.step_term(from, &msg) {
            return Ok(());
        }
        match msg {
            Message::RequestVote(m) => self.handle_request_vote(from, m),
            Message::RequestVoteResponse(m) => self.handle_vote_response(from, m),
            Message::AppendEntries(m) => self.handle_append_entries(from, m),
            Message::AppendEntriesResponse(m) => self.handle_append_response(from, m),
            Message::InstallSnapshot(m) => self.handle_install_snapshot(from, m),
            Message::ReadIndexRequest(m) => self.handle_read_index_request(from, m),
            Message::ReadIndexResponse(m) => self.handle_read_index_response(from, m),
            Message::TimeoutNow(m) => self.handle_timeout_now(from, m),
        }
        Ok(())
    }

    /// Appends client commands to the leader's log; returns each one's (index, term).
    pub fn propose(&mut self, payloads: Vec<Bytes>) -> Result<Vec<(u64, u64)>, ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader.clone(),
            });
        }
        self.wake(false);
        if let Some(target) = self.transferring_to() {
            // §3.10: the target must reach our last index, so it stays put.
            return Err(ProposeError::Transferring {
                target: target.to_string(),
            });
        }
        let kind = crate::wire::EntryType::EntryCommand as i32;
        let positions = payloads
            .into_iter()
            .map(|payload| self.append_local(kind, payload))
            .collect();
        self.broadcast_append(replication::Carry::Nothing);
        Ok(positions)
    }

    /// Takes everything produced since the last call.
    pub fn ready(&mut self) -> Ready {
        // Compared in place: most calls change none of them, and building
        // the state first cloned the vote (a member id) on every call.
        let last = &self.last_hard_state;
        let term_or_vote = self.term != last.term || self.vote != last.vote;
        if term_or_vote || self.commit != last.commit {
            if term_or_vote {
                self.ready.must_sync = true;
                self.ready.term_or_vote_changed = true;
            }
            let hs = HardState {
                term: self.term,
                vote: self.vote.clone(),
                commit: self.commit,
            };
            self.last_hard_state = hs.clone();
            self.ready.hard_state = Some(hs);
        }
        if self.ready.truncate_from.is_some()
            || !self.ready.entries.is_empty()
            || self.ready.snapshot.is_some()
        {
            self.ready.must_sync = true;
        }
        std::mem::take(&mut self.ready)
    }

    /// Reports that the log up to `index` (whose entry had `term`) is durable.
    pub fn on_persisted(&mut self, index: u64, term: u64) {
        self.log.mark_stable(index, term);
        if self.role == Role::Leader && self.maybe_commit() {
            self.commit_advanced();
        }
    }

    /// Reports that entries up to `index` have been applied.
    pub fn on_applied(&mut self, index: u64) {
        // (An install may have overtaken a batch being applied: no assertion on applicable_index.)
        debug_assert!(index <= self.commit);
        self.applied = self.applied.max(index);
    }

    /// Reports the wall clock (ms since the Unix epoch); a leader stamps it
    /// on the entries it appends. Never goes back.
    pub fn set_clock(&mut self, now_ms: u64) {
        self.clock_ms = self.clock_ms.max(now_ms);
    }

    /// Whether entries this node appends as leader carry the per-term time
    /// rule (`Entry::log_time_rule` 2); the runtime says so while every
    /// member it replicates to speaks protocol 6.
    pub fn set_time_rule_2(&mut self, on: bool) {
        self.time_rule_2 = on;
    }

    /// Whether this node's log shows that every member of the configuration
    /// in force speaks protocol 6: an entry marked so (`log_time_rule` 2)
    /// comes after the latest configuration entry. The leader that marked it
    /// had every member's handshake for that same configuration, and members
    /// are never downgraded, so a leader restarted while a member is down
    /// (and so without its handshake) may go on marking: otherwise it would
    /// refuse transactions and drop keys' revisions until the member is back.
    /// Looks back at most [`MARK_SCAN_ENTRIES`] entries.
    pub fn log_says_protocol_6(&self) -> bool {
        let first = self.log.first_index().max(1);
        let last = self.log.last_index();
        let floor = last.saturating_sub(MARK_SCAN_ENTRIES).max(first);
        for index in (floor..=last).rev() {
            let Some(e) = self.log.entry(index) else { break };
            if e.log_time_rule == 2 {
                return true;
            }
            if e.r#type == crate::wire::EntryType::EntryConfig as i32 {
                return false;
            }
        }
        false
    }

    /// Reports the monotonic clock (µs from any fixed origin), which times
    /// lease rounds. Never goes back.
    pub fn set_monotonic(&mut self, now_us: u64) {
        self.mono_us = self.mono_us.max(now_us);
        if self.boot_quiet && self.lockout_since_us.is_none() {
            // The start-up lockout runs from the first reading after a start.
            self.lockout_since_us = Some(self.mono_us);
        }
    }

    fn quorum(&self) -> usize {
        self.membership().quorum()
    }

    /// Leader: everyone it replicates to, members and those leaving by an
    /// uncommitted configuration. Empty on other nodes.
    pub fn replication_targets(&self) -> Vec<NodeId> {
        self.progress.keys().cloned().collect()
    }

    /// Voters and learners but this node.
    fn peers(&self) -> Vec<NodeId> {
        let me = &self.cfg.id;
        self.membership()
            .members()
            .filter(|p| *p != me)
            .cloned()
            .collect()
    }

    fn reset_randomized_timeout(&mut self) {
        let base = self.cfg.election_ticks;
        self.randomized_election_ticks = self.rng.random_range(base..2 * base);
    }

    fn send(&mut self, to: &str, msg: Message) {
        self.ready.messages.push(Envelope {
            to: to.to_string(),
            msg,
        });
    }

    fn send_after_persist(&mut self, to: &str, msg: Message) {
        self.ready.messages_after_persist.push(Envelope {
            to: to.to_string(),
            msg,
        });
    }

    /// Appends one entry of the current term to the local log, to be persisted.
    fn append_local(&mut self, entry_type: i32, payload: Bytes) -> (u64, u64) {
        let entry = Entry {
            term: self.term,
            index: self.log.last_index() + 1,
            r#type: entry_type,
            payload,
            leader_time_ms: self.clock_ms,
            log_time_rule: if self.time_rule_2 { 2 } else { 0 },
        };
        let pos = (entry.index, entry.term);
        self.ready.entries.push(entry.clone());
        self.log.append([entry.clone()]);
        if entry_type == crate::wire::EntryType::EntryConfig as i32 {
            self.config_appended(entry.index, &entry.payload);
        }
        pos
    }

    /// Replaces the log from `index` on (a conflict found by a follower).
    fn truncate_log(&mut self, index: u64) {
        assert!(
            index > self.commit,
            "attempt to truncate committed entry {index} (commit {})",
            self.commit
        );
        self.log.truncate_from(index);
        self.ready.entries.retain(|e| e.index < index);
        self.ready.truncate_from = Some(self.ready.truncate_from.map_or(index, |t| t.min(index)));
        if self.configs.truncate_from(index) {
            // §4.1: the configuration before the truncated one is back in force.
            self.config_changed();
        }
    }
}

/// The configurations a restarted node has: the bootstrap one, those the
/// log no longer holds (the one stored in meta, the one recorded in the
/// latest snapshot), and every one in the log.
fn restore_configs(cfg: &Config, stored: [Option<(u64, Membership)>; 2], entries: &[Entry]) -> ConfigHistory {
    let mut configs = ConfigHistory::new(Membership::new(cfg.voters.iter().cloned()));
    let first_in_log = entries.first().map_or(u64::MAX, |e| e.index);
    let mut older: Vec<(u64, Membership)> = stored
        .into_iter()
        .flatten()
        .filter(|(index, _)| *index > 0 && *index < first_in_log)
        .collect();
    older.sort_by_key(|(index, _)| *index);
    older.dedup_by_key(|(index, _)| *index);
    for (index, m) in older {
        configs.push(index, m);
    }
    let config = crate::wire::EntryType::EntryConfig as i32;
    for e in entries.iter().filter(|e| e.r#type == config) {
        if let Some(mut m) = Membership::decode(&e.payload) {
            if m.uid.is_empty() {
                m.uid = configs.latest().1.uid.clone();
            }
            configs.push(e.index, m);
        }
    }
    configs
}
