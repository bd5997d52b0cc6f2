//! The host's apply workers (`floyd-apply-<port>-<n>`): they drain
//! committed, durable entries into each group's state machine and hand each
//! proposer its result. A group woken (commit moved, a snapshot to load, a
//! leader change) is queued once; a worker takes it, applies a few batches
//! and, if more is left, queues it again behind the others: one group is
//! applied by one worker at a time, in order, and a busy group does not hold
//! the others up (a slow user state machine holds up only the worker running
//! it).

use super::host::HostShared;
use super::node::Node;
use crate::error::Result;
use crate::state_machine::Applied;
use crate::storage::GroupId;
use crate::wire::Entry;
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Entries applied per state-machine batch.
const APPLY_BATCH: usize = 1024;
/// Batches a worker applies for one group before it serves the next group.
const BATCHES_PER_TURN: usize = 8;

/// The groups waiting for an apply worker, in the order they were woken.
#[derive(Default)]
pub struct ApplyQueue {
    queue: Mutex<VecDeque<GroupId>>,
    ready: Condvar,
    stopping: std::sync::atomic::AtomicBool,
}

impl ApplyQueue {
    pub fn push(&self, group: GroupId) {
        self.queue.lock().push_back(group);
        self.ready.notify_one();
    }

    /// Wakes every worker to exit.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _q = self.queue.lock();
        self.ready.notify_all();
    }

    /// The next group to serve; `None` once stopping.
    fn pop(&self) -> Option<GroupId> {
        let mut q = self.queue.lock();
        loop {
            if self.stopping.load(Ordering::SeqCst) {
                return None;
            }
            if let Some(g) = q.pop_front() {
                return Some(g);
            }
            self.ready.wait(&mut q);
        }
    }
}

/// One apply worker: runs until the host stops.
pub fn run(host: Arc<HostShared>) {
    while let Some(group) = host.apply.pop() {
        let Some(node) = host.node(group) else { continue };
        // Cleared before the turn: a wake-up during it queues the group again.
        node.apply_scheduled.store(false, Ordering::Release);
        let guard = match node.applying.try_lock() {
            Some(g) => g,
            None => {
                // Another worker serves it now: it looks again once it has
                // let go (unless it let go in between, and then this one does).
                node.apply_again.store(true, Ordering::Release);
                match node.applying.try_lock() {
                    Some(g) => g,
                    None => continue,
                }
            }
        };
        node.apply_again.store(false, Ordering::Release);
        let more = !node.is_stopping() && node.failure().is_none() && turn(&node);
        drop(guard);
        if more || node.apply_again.swap(false, Ordering::AcqRel) {
            node.wake_apply();
        }
    }
}

/// Serves one group for a while; whether it has more to apply.
fn turn(node: &Arc<Node>) -> bool {
    node.state_machine
        .observe_leadership(node.inspect(|c| (c.role() == crate::core::Role::Leader).then(|| c.term())));
    if let Err(e) = node.install_pending_snapshot() {
        node.fail(e);
        return false;
    }
    node.serve_reads();
    for _ in 0..BATCHES_PER_TURN {
        // A read of the core: nothing to hand out afterwards, so no dispatch.
        let entries = node.inspect(|core| core.entries_to_apply(APPLY_BATCH));
        let Some(last) = entries.last().map(|e| e.index) else {
            return false;
        };
        let started = std::time::Instant::now();
        let applied = match apply_retrying(node, &entries) {
            Ok(a) => a,
            Err(e) => {
                node.fail(e);
                return false;
            }
        };
        node.host.metrics.apply_batch.observe(started.elapsed());
        let m = &node.metrics;
        m.applied_entries
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        let bytes: usize = entries.iter().map(|e| e.payload.len()).sum();
        m.applied_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        node.with_core(|core| core.on_applied(last));
        node.waiters.proposals.complete(applied);
        node.serve_reads();
        snapshot_if_due(node);
    }
    node.inspect(|core| core.applicable_index() > core.applied())
}

/// Applies `entries`, retrying a transient refusal (`Busy`) for up to about a
/// second before it fails the group: a busy RocksDB is no reason to stop. A
/// full disk is waited out however long: RocksDB writes again once there is
/// room, and nothing is applied meanwhile.
fn apply_retrying(node: &Node, entries: &[Entry]) -> Result<Vec<Applied>> {
    let mut disk_full = false;
    let result = apply_waiting_for_space(node, entries, &mut disk_full);
    if disk_full {
        node.host
            .applies_waiting_for_space
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
    result
}

/// [`apply_retrying`]'s loop; `disk_full` is set (and the host told) while
/// the apply waits for space.
fn apply_waiting_for_space(node: &Node, entries: &[Entry], disk_full: &mut bool) -> Result<Vec<Applied>> {
    let mut delay = Duration::from_millis(1);
    loop {
        match node
            .faults()
            .before_apply()
            .and_then(|_| node.state_machine.apply(entries))
        {
            Err(e) if e.is_retryable() && delay < Duration::from_secs(1) && !node.is_stopping() => {
                tracing::warn!(error = %e, retry_in = ?delay, "state machine busy; retrying");
                std::thread::sleep(delay);
                delay *= 2;
            }
            Err(e) if crate::storage::is_no_space(&e) && !node.is_stopping() => {
                if !std::mem::replace(disk_full, true) {
                    tracing::error!(node = %node.id, error = %e, "disk full: applying waits for space; writes are refused meanwhile");
                    node.host
                        .applies_waiting_for_space
                        .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            other => return other,
        }
    }
}

/// After applying: a user state machine is snapshotted here, on the thread
/// its callbacks run on; the built-in store by the snapshot thread, woken.
fn snapshot_if_due(node: &Arc<Node>) {
    if !super::snapshot::snapshot_due(node) {
        // (Waking the snapshot thread after every batch to find nothing due
        // cost ~4% of the CPU of a write-heavy run.)
        return;
    }
    if !node.state_machine.is_user() {
        return node.snapshots.wake(&node.host);
    }
    if let Err(e) = super::snapshot::take_snapshot(node) {
        tracing::warn!(node = %node.id, error = %e, "snapshot failed; will retry");
    }
}
