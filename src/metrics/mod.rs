//! What floyd counts as it runs, for Prometheus (`Floyd::metrics`,
//! `Host::metrics`, raftis's `GET /metrics`): counters a group bumps on
//! its own events and latency histograms its host keeps, all plain
//! atomics touched without a lock or an allocation; the gauges (term,
//! commit and applied index, log held, role) are read from the group's
//! status when scraped. `runtime/exposition.rs` encodes them.

mod commit_times;
mod histogram;
mod refusals;
pub mod thread_cpu;

pub use commit_times::ProposalTimes;
pub use histogram::{Histogram, BYTE_BOUNDS, ENTRY_BOUNDS};
pub use refusals::{Refusal, Refusals};

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;

/// One group's counters on one node.
#[derive(Debug, Default)]
pub struct GroupMetrics {
    /// Blocking calls this node's callers made (writes, reads, locks,
    /// membership), before any forwarding.
    pub submitted: AtomicU64,
    /// Commands a follower forwarded to its leader.
    pub forwarded: AtomicU64,
    /// Entries this node proposed as the group's leader.
    pub proposals: AtomicU64,
    /// Calls answered `Timeout` (outcome unknown), by [`CallKind`].
    pub timeouts: [AtomicU64; CallKind::ALL.len()],
    /// Entries applied to the state machine, and their payload bytes.
    pub applied_entries: AtomicU64,
    pub applied_bytes: AtomicU64,
    /// The leader this node knows changed (to another or to none).
    pub leader_changes: AtomicU64,
    /// This node became a pre-candidate, a candidate, the leader.
    pub pre_votes: AtomicU64,
    pub elections_started: AtomicU64,
    pub elections_won: AtomicU64,
    /// Linearizable reads queued for a ReadIndex round, and reads served
    /// on the leader's lease.
    pub read_index_reads: AtomicU64,
    pub lease_reads: AtomicU64,
    /// Snapshots this node took, and installed from its leader.
    pub snapshots_taken: AtomicU64,
    pub snapshots_installed: AtomicU64,
    /// Snapshots this leader streamed whole to a follower.
    pub snapshots_sent: AtomicU64,
    /// Bytes of snapshot chunks written to followers, and received.
    pub snapshot_bytes_sent: AtomicU64,
    pub snapshot_bytes_received: AtomicU64,
    /// Configurations this node saw committed.
    pub membership_changes: AtomicU64,
    /// The role seen last (`core::Role` as a number), to count changes.
    last_role: AtomicU8,
    /// When the leader proposed its recent entries, for the commit latency.
    pub proposed: ProposalTimes,
}

impl GroupMetrics {
    /// Counts a change of role to `role` (0 follower, 1 pre-candidate, 2
    /// candidate, 3 leader); called with the core locked, after each step.
    pub fn note_role(&self, role: u8) {
        // A load first: every core call comes here, and the role rarely
        // changes (a swap would take the cache line each time).
        if self.last_role.load(Relaxed) == role || self.last_role.swap(role, Relaxed) == role {
            return;
        }
        let counter = match role {
            1 => &self.pre_votes,
            2 => &self.elections_started,
            3 => &self.elections_won,
            _ => return,
        };
        counter.fetch_add(1, Relaxed);
    }
}

/// What a call that timed out was, for `floyd_timeouts_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    Write,
    Read,
    Lock,
    Membership,
    Transfer,
}

impl CallKind {
    pub const ALL: [CallKind; 5] = [
        CallKind::Write,
        CallKind::Read,
        CallKind::Lock,
        CallKind::Membership,
        CallKind::Transfer,
    ];

    pub fn of(cmd: &crate::state_machine::CommandKind) -> CallKind {
        use crate::state_machine::CommandKind as C;
        match cmd {
            _ if cmd.is_read() => CallKind::Read,
            C::TryLock { .. } | C::Unlock { .. } => CallKind::Lock,
            C::AddServer { .. } | C::RemoveServer { .. } => CallKind::Membership,
            C::TransferLeader { .. } => CallKind::Transfer,
            _ => CallKind::Write,
        }
    }

    /// The `kind` label.
    pub fn label(self) -> &'static str {
        match self {
            CallKind::Write => "write",
            CallKind::Read => "read",
            CallKind::Lock => "lock",
            CallKind::Membership => "membership",
            CallKind::Transfer => "transfer",
        }
    }
}

/// A host's latencies and counters besides those `HostShared` has.
#[derive(Debug)]
pub struct HostMetrics {
    /// A synced log write (one fsync for every group's entries in it).
    pub fsync: Histogram,
    /// Entries written to the log, over every write.
    pub log_entries: AtomicU64,
    /// A blocking call that writes, from its submission to its answer.
    pub write_call: Histogram,
    /// A blocking read, from its submission to its answer.
    pub read_call: Histogram,
    /// Applying one batch of committed entries to a state machine.
    pub apply_batch: Histogram,
    /// An entry on its leader, from its proposal to its commit.
    pub commit: Histogram,
    /// Connections and frames refused, by why (the totals of connections
    /// and of messages refused are sums of these).
    pub refused: Refusals,
    /// Each log write: its entries (every group's) and its bytes.
    pub log_write_entries: Histogram,
    pub log_write_bytes: Histogram,
    /// Taking a snapshot (the state machine's checkpoint, written out).
    pub snapshot_take: Histogram,
    /// Streaming one to a follower, from its first chunk to its last.
    pub snapshot_send: Histogram,
    /// Loading a received one into the state machine.
    pub snapshot_install: Histogram,
    /// Bytes read from each peer host's connections.
    received: parking_lot::Mutex<std::collections::BTreeMap<String, Arc<AtomicU64>>>,
}

impl Default for HostMetrics {
    fn default() -> Self {
        HostMetrics {
            fsync: Histogram::default(),
            log_entries: AtomicU64::default(),
            write_call: Histogram::default(),
            read_call: Histogram::default(),
            apply_batch: Histogram::default(),
            commit: Histogram::default(),
            refused: Refusals::default(),
            log_write_entries: Histogram::sizes(ENTRY_BOUNDS),
            log_write_bytes: Histogram::sizes(BYTE_BOUNDS),
            snapshot_take: Histogram::default(),
            snapshot_send: Histogram::default(),
            snapshot_install: Histogram::default(),
            received: Default::default(),
        }
    }
}

impl HostMetrics {
    /// The counter of bytes received from peer host `peer`.
    pub fn received_from(&self, peer: &str) -> Arc<AtomicU64> {
        self.received.lock().entry(peer.to_string()).or_default().clone()
    }

    /// Bytes received from each peer host so far.
    pub fn received_by_peer(&self) -> Vec<(String, u64)> {
        let received = self.received.lock();
        received
            .iter()
            .map(|(p, n)| (p.clone(), n.load(Relaxed)))
            .collect()
    }
}
