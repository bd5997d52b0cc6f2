//! Snapshots in the runtime: taking them (`floyd-snapshot-<port>`, or the
//! apply thread for a user state machine, whose callbacks run there),
//! compacting the log behind them, offering them to followers, and
//! installing one received from the leader.
//!
//! Taking one: the state machine writes its files into a staging directory
//! and says which applied index they hold; the core gives the term and the
//! configuration there; the directory is synced and renamed into place;
//! the core learns of it and drops log entries up to `keep_entries` behind
//! it; the log writer deletes them from disk. The built-in store's snapshot
//! is a RocksDB checkpoint (hard links), taken while applies go on.
//!
//! Installing one (follower): the stream is assembled and committed to the
//! snapshot store before the core hears of it, so once the core resets its
//! log to the snapshot's point a crash finds the snapshot on disk; the log
//! writer makes the reset durable (and only then is it acknowledged), and
//! the apply thread loads the state machine from it before applying more.

use super::host::HostShared;
use super::node::{LogEvent, Node};
use crate::core::Message;
use crate::error::{Error, Result};
use crate::storage::snapshots::{SnapshotHandle, SnapshotStore};
use crate::transport::{SnapshotOffer, SnapshotReceiver};
use crate::wire::{InstallSnapshot, SnapshotChunk, SnapshotMeta};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

use crate::limits::MAX_SNAPSHOT_BYTES;
/// How often the snapshot thread checks the thresholds when not woken.
const CHECK_EVERY: Duration = Duration::from_millis(500);

/// A node's snapshots: the store, the receiver of streams from the leader
/// and the install the apply thread has to do.
pub struct Snapshots {
    pub store: Arc<SnapshotStore>,
    receiver: SnapshotReceiver,
    /// Follower: a snapshot the core accepted, for the apply thread to load.
    pending_install: Mutex<Option<SnapshotMeta>>,
    /// Follower: the snapshot the core accepted last, held until loaded so
    /// that a newer stream committed meanwhile (which makes it obsolete on
    /// disk) cannot delete it from under the install.
    accepted: Mutex<Option<Arc<SnapshotHandle>>>,
    /// Serialises snapshot taking (thread vs. apply thread vs. an explicit
    /// call); a closing group waits for it.
    pub(super) taking: Mutex<()>,
}

impl Snapshots {
    pub fn new(store: Arc<SnapshotStore>) -> Snapshots {
        Snapshots {
            receiver: SnapshotReceiver::new(store.clone(), MAX_SNAPSHOT_BYTES),
            store,
            pending_install: Mutex::new(None),
            accepted: Mutex::new(None),
            taking: Mutex::new(()),
        }
    }

    /// Wakes the host's snapshot thread to check its groups' thresholds.
    pub fn wake(&self, host: &HostShared) {
        let _ = host.snapshot_tx.try_send(());
    }

    /// Whether an install waits for the apply thread.
    pub(super) fn install_pending(&self) -> bool {
        self.pending_install.lock().is_some()
    }
}

/// The host's snapshot thread (`floyd-snapshot-<port>`): takes a snapshot of
/// each group running the built-in store whenever one of its thresholds is
/// passed, one at a time.
pub fn run(host: Arc<HostShared>, wake: Receiver<()>) {
    while !host.stopping.load(std::sync::atomic::Ordering::SeqCst) {
        match wake.recv_timeout(CHECK_EVERY) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if host.failure().is_some() {
            return;
        }
        for node in host.nodes() {
            if node.state_machine.is_user() || node.is_stopping() || node.failure().is_some() {
                continue;
            }
            if snapshot_due(&node) {
                if let Err(e) = take_snapshot(&node) {
                    tracing::warn!(node = %node.id, group = node.group, error = %e, "snapshot failed; will retry");
                }
            }
        }
    }
}

/// Whether the log grew past a threshold since the last snapshot.
pub fn snapshot_due(node: &Node) -> bool {
    let (entries, bytes) = (node.opts.snapshot_log_entries, node.opts.snapshot_log_bytes);
    if entries == 0 && bytes == 0 {
        return false;
    }
    let last = node.snapshots.store.latest_index();
    node.inspect(|core| {
        let applied = core.applied();
        let (_, held_bytes) = core.log().held();
        let since = applied.saturating_sub(last);
        since > 0 && ((entries > 0 && since >= entries) || (bytes > 0 && held_bytes >= bytes))
    })
}

/// Takes a snapshot of the state machine now and compacts the log behind
/// it; returns its index. For a user state machine, call from the apply thread only.
pub fn take_snapshot(node: &Arc<Node>) -> Result<u64> {
    let _one_at_a_time = node.snapshots.taking.lock();
    let started = std::time::Instant::now();
    let staging = node.snapshots.store.stage("snapshot")?;
    let index = node.state_machine.snapshot_save(&staging.data_dir())?;
    failpoint(node, "snapshot-staged");
    if index <= node.snapshots.store.latest_index() {
        return Ok(node.snapshots.store.latest_index());
    }
    let meta = node
        .inspect(|core| core.snapshot_meta(index))
        .ok_or_else(|| Error::Internal(format!("snapshot at {index}: not in the log")))?;
    let handle = node.snapshots.store.commit(staging, meta.clone())?;
    failpoint(node, "snapshot-committed");
    let (keep, max_bytes) = (node.opts.snapshot_keep_entries, node.opts.snapshot_log_bytes);
    let compacted = node.with_core(|core| {
        core.snapshot_taken(meta);
        let to = compaction_point(core.log(), index, keep, max_bytes);
        core.compact(to)
    });
    if let Some((start, term)) = compacted {
        node.send_log_event(LogEvent::Compact(node.clone(), start, term));
    }
    node.metrics
        .snapshots_taken
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    node.host.metrics.snapshot_take.observe(started.elapsed());
    tracing::info!(node = %node.id, index, term = handle.term(), compacted_to = ?compacted.map(|c| c.0),
        "snapshot taken");
    Ok(index)
}

/// Where to compact after a snapshot at `index`: `keep` entries behind it,
/// fewer if they would hold more than half the size threshold (else large
/// entries would keep the log over the threshold and trigger a snapshot
/// after every write).
fn compaction_point(log: &crate::core::RaftLog, index: u64, keep: u64, max_bytes: u64) -> u64 {
    let mut to = index.saturating_sub(keep);
    if max_bytes == 0 {
        return to;
    }
    let mut kept: u64 = (to + 1..=index)
        .filter_map(|i| log.entry(i))
        .map(|e| e.payload.len() as u64)
        .sum();
    while kept > max_bytes / 2 && to < index {
        to += 1;
        kept -= log.entry(to).map_or(0, |e| e.payload.len() as u64);
    }
    to
}

impl Node {
    /// Leader: the core wants `to` sent the snapshot (the latest on disk,
    /// which may be newer than the one it named: the follower's
    /// acknowledgement says which it got).
    pub(super) fn offer_snapshot(&self, to: &str, m: InstallSnapshot) {
        let Some(snapshot) = self.snapshots.store.latest() else {
            tracing::warn!(node = %self.id, peer = %to, "a snapshot is wanted but none is on disk");
            return;
        };
        let Some(link) = self.peer(to) else { return };
        tracing::info!(node = %self.id, peer = %to, index = snapshot.index(), "sending a snapshot");
        link.send_snapshot(SnapshotOffer {
            group: self.group,
            term: m.term,
            leader: m.leader,
            snapshot,
        });
    }

    /// Follower: a chunk of a snapshot from the leader; once the stream is
    /// whole and on disk, the core is told.
    pub(super) fn receive_snapshot_chunk(&self, from: &str, chunk: SnapshotChunk) {
        if chunk.term < self.inspect(|c| c.term()) {
            return; // a deposed leader's stream: its next heartbeat learns the term
        }
        match self.snapshots.receiver.on_chunk(from, chunk) {
            Ok(None) => {}
            Ok(Some(received)) => {
                let meta = received.snapshot.meta().clone();
                failpoint(self, "install-received");
                tracing::info!(node = %self.id, leader = %from, index = meta.last_index, "snapshot received");
                let index = meta.last_index;
                let msg = Message::InstallSnapshot(InstallSnapshot {
                    term: received.term,
                    leader: received.leader,
                    meta: Some(meta),
                });
                let now_us = super::monotonic_us();
                let stepped = self.with_core(|core| {
                    core.set_monotonic(now_us);
                    let stepped = core.step(from, msg);
                    // Before this call's Ready reaches the log writer, so
                    // before the apply thread can look for it.
                    if core.pending_install() == Some(index) {
                        *self.snapshots.accepted.lock() = Some(received.snapshot.clone());
                    }
                    stepped
                });
                if let Err(why) = stepped {
                    self.log_refusal(from, &why);
                }
            }
            Err(e) => tracing::warn!(node = %self.id, peer = %from, error = %e, "dropped a snapshot stream"),
        }
    }

    /// Log writer: the reset of an installed snapshot is durable; the apply
    /// thread loads the state machine next.
    pub(super) fn snapshot_reset_durable(&self, meta: SnapshotMeta) {
        failpoint(self, "install-reset");
        *self.snapshots.pending_install.lock() = Some(meta);
        self.wake_apply();
    }

    /// Apply thread: loads a pending install into the state machine.
    pub(super) fn install_pending_snapshot(&self) -> Result<()> {
        let Some(meta) = self.snapshots.pending_install.lock().take() else {
            return Ok(());
        };
        let accepted = self.snapshots.accepted.lock().clone();
        let latest = self.snapshots.store.latest();
        let commit = self.inspect(|core| core.commit());
        let Some(snapshot) = snapshot_for_install(meta.last_index, accepted, latest, commit)? else {
            // Looked at again on the apply thread's next turn (unless a
            // newer install took its place meanwhile).
            self.snapshots.pending_install.lock().get_or_insert(meta);
            return Ok(());
        };
        let index = snapshot.index();
        if self.state_machine.applied_index()? < index {
            let started = std::time::Instant::now();
            self.state_machine.snapshot_load(&snapshot.data_dir(), index)?;
            self.host.metrics.snapshot_install.observe(started.elapsed());
        }
        self.with_core(|core| core.on_snapshot_installed(index));
        self.metrics
            .snapshots_installed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = self.snapshots.accepted.lock().take_if(|s| s.index() <= index);
        tracing::info!(node = %self.id, index, "snapshot installed");
        Ok(())
    }
}

/// Which snapshot loads the install the core waits for at `pending`: the
/// one the core accepted (held for this), else the latest on disk if it is
/// that one, or a newer one within the commit index (committed state, which
/// the core's install point is below). `None`: not yet: a newer snapshot
/// beyond the commit index is loaded once the log has caught up with it,
/// unless its own install replaces this one first.
fn snapshot_for_install(
    pending: u64,
    accepted: Option<Arc<SnapshotHandle>>,
    latest: Option<Arc<SnapshotHandle>>,
    commit: u64,
) -> Result<Option<Arc<SnapshotHandle>>> {
    if let Some(s) = accepted.filter(|s| s.index() == pending) {
        return Ok(Some(s));
    }
    match latest {
        Some(s) if s.index() == pending => Ok(Some(s)),
        Some(s) if s.index() > pending => Ok((s.index() <= commit).then_some(s)),
        other => Err(Error::Internal(format!(
            "snapshot {pending} to install is gone (latest: {:?})",
            other.map(|s| s.index())
        ))),
    }
}

/// At start: brings the state machine up to the latest snapshot if it is
/// behind it (a user machine always is; the built-in store after a crash
/// in an install). Returns the applied index and the snapshot's meta.
pub fn restore_at_start(
    store: &SnapshotStore,
    machine: &crate::state_machine::Machine,
) -> Result<(u64, Option<SnapshotMeta>)> {
    let applied = machine.applied_index()?;
    let Some(latest) = store.latest() else {
        return Ok((applied, None));
    };
    if applied < latest.index() {
        machine.snapshot_load(&latest.data_dir(), latest.index())?;
    }
    Ok((applied.max(latest.index()), Some(latest.meta().clone())))
}

/// Tests' crash points: abort the whole process, no cleanup, like `kill -9`.
fn failpoint(node: &Node, name: &str) {
    if node.opts.crash_at.as_deref() == Some(name) {
        tracing::error!(node = %node.id, failpoint = name, "crashing at a test failpoint");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_index: index,
            last_term: 1,
            ..Default::default()
        }
    }

    fn commit(store: &SnapshotStore, index: u64) -> Arc<SnapshotHandle> {
        let staging = store.stage("test").unwrap();
        std::fs::write(staging.data_dir().join("state"), index.to_string()).unwrap();
        store.commit(staging, meta(index)).unwrap()
    }

    /// Issue 20, item 3: snapshot 100 was accepted by the core; before the
    /// apply thread loaded it, a stream of snapshot 150 was committed to the
    /// store and then refused by the core (its term had moved). The install
    /// of 100 must still load (from the files the core accepted), not wait
    /// for an install of 150 that never comes: the node would never apply again.
    #[test]
    fn the_snapshot_the_core_accepted_loads_though_a_newer_refused_one_is_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path()).unwrap();
        let accepted = commit(&store, 100);
        let newer = commit(&store, 150);
        assert_eq!(store.latest().unwrap().index(), 150);
        let chosen = snapshot_for_install(100, Some(accepted), store.latest(), 100).unwrap();
        let chosen = chosen.expect("the accepted snapshot is loaded now");
        assert_eq!(chosen.index(), 100);
        let state = std::fs::read_to_string(chosen.data_dir().join("state")).unwrap();
        assert_eq!(state, "100", "its files are still there");
        // Without the held snapshot (after a restart, say), the newer one is
        // loaded once the log has caught up with it, and not before.
        assert!(snapshot_for_install(100, None, Some(newer.clone()), 149)
            .unwrap()
            .is_none());
        let later = snapshot_for_install(100, None, Some(newer), 150).unwrap();
        assert_eq!(later.map(|s| s.index()), Some(150));
    }

    #[test]
    fn an_install_whose_snapshot_is_gone_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path()).unwrap();
        let older = commit(&store, 50);
        assert!(snapshot_for_install(100, None, Some(older), 100).is_err());
        assert!(snapshot_for_install(100, None, None, 100).is_err());
    }
}
