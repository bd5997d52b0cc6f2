//! What floyd counts as it runs, for Prometheus (`Floyd::metrics`,
//! `Host::metrics`, raftis's `GET /metrics`): counters a group bumps on
//! its own events and latency histograms its host keeps, all plain
//! atomics touched without a lock or an allocation; the gauges (term,
//! commit and applied index, log held, role) are read from the group's
//! status when scraped. `runtime/exposition.rs` encodes them.

mod commit_times;
mod histogram;

pub use commit_times::ProposalTimes;
pub use histogram::Histogram;

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};

/// One group's counters on one node.
#[derive(Debug, Default)]
pub struct GroupMetrics {
    /// Blocking calls this node's callers made (writes, reads, locks,
    /// membership), before any forwarding.
    pub submitted: AtomicU64,
    /// Commands a follower forwarded to its leader.
    pub forwarded: AtomicU64,
    /// Calls answered `Timeout` (outcome unknown).
    pub timeouts: AtomicU64,
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
        if self.last_role.swap(role, Relaxed) == role {
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

/// A host's latencies and counters besides those `HostShared` has.
#[derive(Debug, Default)]
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
    /// Connections refused before or at their handshake.
    pub connections_refused: AtomicU64,
    /// Bytes of snapshot chunks received, for every group.
    pub snapshot_bytes_received: AtomicU64,
}
