//! Snapshots and log compaction in the core (§7, Figure 13).
//!
//! The runtime takes snapshots of the state machine and reports them
//! ([`RaftCore::snapshot_taken`]); it may then compact the log up to one
//! ([`RaftCore::compact`]). A leader whose follower needs entries compacted
//! away emits `Message::InstallSnapshot` for its latest snapshot and waits
//! (progress state Snapshot) until the follower acknowledges that point, the
//! runtime reports the stream failed, or patience runs out. On the follower
//! the runtime steps `InstallSnapshot` once the snapshot is whole on disk;
//! the core then resets its log to the snapshot's point and hands the
//! install to the runtime in `Ready::snapshot`, holding back applies until
//! [`RaftCore::on_snapshot_installed`].

use super::{Message, ProgressState, RaftCore, Role};
use crate::wire::{AppendEntries, InstallSnapshot, SnapshotMeta};

/// Heartbeats a leader waits for the acknowledgement of a snapshot it
/// streamed whole, in election timeouts (then it offers it again).
const PATIENCE_AFTER_SENT: u32 = 2;
/// ... and for a stream the runtime never reported finished (a lost report,
/// or a very large snapshot on a slow link), in election timeouts.
const PATIENCE_STREAMING: u32 = 60;

impl RaftCore {
    /// The meta a snapshot of the state machine at applied index `index`
    /// records: the term there and the configuration in force. `None` if
    /// `index` is not in the log (compacted, or not reached yet).
    pub fn snapshot_meta(&self, index: u64) -> Option<SnapshotMeta> {
        let term = self.log.term(index)?;
        // (A state machine may report an index applied just before the core hears of it.)
        if index > self.commit {
            return None;
        }
        let (config_index, m) = self.configs.at(index);
        Some(SnapshotMeta {
            last_index: index,
            last_term: term,
            config_index,
            config: Some(m.to_wire()),
        })
    }

    /// Reports that a snapshot through `meta.last_index` is on disk: the
    /// one a leader sends to followers that need compacted entries.
    pub fn snapshot_taken(&mut self, meta: SnapshotMeta) {
        if meta.last_index > self.snapshot.as_ref().map_or(0, |s| s.last_index) {
            self.snapshot = Some(meta);
        }
    }

    /// The latest snapshot reported.
    pub fn latest_snapshot(&self) -> Option<&SnapshotMeta> {
        self.snapshot.as_ref()
    }

    /// Forgets the log up to `index`, which must be covered by a reported
    /// snapshot. Returns the (index, term) the log now starts after, for
    /// the runtime to compact its store alike; `None` if nothing changed.
    pub fn compact(&mut self, index: u64) -> Option<(u64, u64)> {
        let covered = self.snapshot.as_ref().map_or(0, |s| s.last_index);
        let index = index.min(covered).min(self.applied);
        if index <= self.log.start_index() {
            return None;
        }
        let term = self.log.term(index)?;
        self.log.compact(index);
        Some((index, term))
    }

    /// Follower: the index of the snapshot accepted for install and not yet
    /// loaded by the state machine (nothing is applied meanwhile).
    pub fn pending_install(&self) -> Option<u64> {
        self.pending_install
    }

    /// Reports that the state machine now holds the snapshot installed at
    /// `index` (see `Ready::snapshot`): applying resumes after it.
    pub fn on_snapshot_installed(&mut self, index: u64) {
        if self.pending_install.is_some_and(|p| p <= index) {
            self.pending_install = None;
        }
        self.applied = self.applied.max(index);
    }

    /// Leader: the runtime's report on the snapshot stream to `peer`. A
    /// failed stream is offered again at the next heartbeat; a finished one
    /// waits for the follower's acknowledgement.
    pub fn report_snapshot(&mut self, peer: &str, index: u64, ok: bool) {
        let Some(pr) = self.progress.get_mut(peer) else {
            return;
        };
        // (The runtime may have streamed a newer snapshot than the one asked for.)
        if pr.state != ProgressState::Snapshot || index < pr.pending_snapshot {
            return;
        }
        if ok {
            pr.snapshot_sent = true;
            pr.snapshot_heartbeats = 0;
        } else {
            pr.become_probe();
        }
    }

    /// Heartbeats to wait in the Snapshot state before offering again.
    pub(super) fn snapshot_patience(&self, sent: bool) -> u32 {
        let per_timeout = (self.cfg.election_ticks / self.cfg.heartbeat_ticks).max(1);
        per_timeout.saturating_mul(if sent {
            PATIENCE_AFTER_SENT
        } else {
            PATIENCE_STREAMING
        })
    }

    /// Leader: offers `peer` the latest snapshot; false if there is none
    /// (cannot happen once the log was compacted: compaction needs one).
    pub(super) fn send_snapshot(&mut self, peer: &str) -> bool {
        let Some(meta) = self.snapshot.clone() else {
            return false;
        };
        let Some(pr) = self.progress.get_mut(peer) else {
            return false;
        };
        pr.become_snapshot(meta.last_index);
        let msg = Message::InstallSnapshot(InstallSnapshot {
            term: self.term,
            leader: self.cfg.id.clone(),
            meta: Some(meta),
        });
        self.send(peer, msg);
        true
    }

    /// Follower: an AppendEntries reaching back before the log's start.
    /// Those entries are compacted, hence committed, hence the leader's too
    /// (Leader Completeness): drop them and start the check at our start.
    pub(super) fn skip_compacted(&self, mut m: AppendEntries) -> AppendEntries {
        let start = self.log.start_index();
        if m.prev_log_index >= start {
            return m;
        }
        let skip = usize::try_from(start - m.prev_log_index)
            .unwrap_or(usize::MAX)
            .min(m.entries.len());
        let last_new = m.prev_log_index + m.entries.len() as u64;
        m.entries.drain(..skip);
        if m.entries.is_empty() && last_new < start {
            // Everything in it is below our start: acknowledge what it held,
            // which matches (it is committed).
            m.prev_log_index = last_new;
            m.prev_log_term = self.log.term(last_new).unwrap_or(0);
            return m;
        }
        m.prev_log_index = start;
        m.prev_log_term = self.log.term(start).unwrap_or(0);
        m
    }

    /// Follower: a snapshot from the leader arrived whole (Figure 13).
    pub(super) fn handle_install_snapshot(&mut self, from: &str, m: InstallSnapshot) {
        if self.role != Role::Follower {
            self.become_follower(self.term, Some(from.to_string()));
        }
        self.heard_from_leader(from);
        let Some(meta) = m.meta else { return };
        let index = meta.last_index;
        if index <= self.commit {
            // Nothing new: we hold at least that much, committed.
            let reply = self.append_response(true, self.commit, index);
            self.send_after_persist(from, reply);
            return;
        }
        self.install(meta);
        let reply = self.append_response(true, index, index);
        // Counted by the leader: only once the log reset is durable.
        self.send_after_persist(from, reply);
    }

    /// Puts the log at a snapshot's point: entries after it are kept if the
    /// log holds its last entry, else the whole log goes.
    fn install(&mut self, meta: SnapshotMeta) {
        let (index, term) = (meta.last_index, meta.last_term);
        if self.log.matches(index, term) {
            self.log.compact(index);
        } else {
            // Everything past our commit point may be stale, configurations too.
            self.truncate_log(self.commit + 1);
            self.log.reset(index, term);
            self.configs.truncate_from(self.commit + 1);
            if let Some(config) = meta.config.clone() {
                let mut m = super::Membership::from_wire(config);
                if m.uid.is_empty() {
                    m.uid = self.membership().uid.clone();
                }
                if meta.config_index > self.configs.latest().0 {
                    self.configs.push(meta.config_index, m);
                }
            }
            self.config_changed();
        }
        self.commit = index;
        self.pending_install = Some(index);
        self.snapshot_taken(meta.clone());
        self.ready.snapshot = Some(meta);
    }

    /// At start: a snapshot newer than the log (installed, then a crash
    /// before the log was reset) puts the log at its point.
    pub(super) fn adopt_restored_snapshot(&mut self, meta: SnapshotMeta) {
        if !self.log.matches(meta.last_index, meta.last_term) && meta.last_index > self.log.start_index() {
            self.install(meta.clone());
            // The runtime restored the state machine from it before starting us.
            self.on_snapshot_installed(meta.last_index);
        } else {
            self.snapshot_taken(meta);
        }
    }
}
