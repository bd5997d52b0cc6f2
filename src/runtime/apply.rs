//! The apply thread: drains committed, durable entries into the state machine
//! and hands each proposer its result.

use super::node::Node;
use crate::error::Result;
use crate::state_machine::Applied;
use crate::wire::Entry;
use crossbeam_channel::Receiver;
use std::sync::Arc;
use std::time::Duration;

/// Entries applied per state-machine batch.
const APPLY_BATCH: usize = 1024;

/// Runs until the node stops; woken through `wake` whenever commit may have moved.
pub fn run(node: Arc<Node>, wake: Receiver<()>) {
    while !node.is_stopping() {
        node.state_machine
            .observe_leadership(node.inspect(|c| (c.role() == crate::core::Role::Leader).then(|| c.term())));
        let _ = wake.recv_timeout(Duration::from_millis(100));
        if node.failure().is_some() {
            return;
        }
        if let Err(e) = node.install_pending_snapshot() {
            return node.fail(e);
        }
        node.serve_reads();
        loop {
            // A read of the core: nothing to hand out afterwards, so no dispatch.
            let entries = node.inspect(|core| core.entries_to_apply(APPLY_BATCH));
            let Some(last) = entries.last().map(|e| e.index) else {
                break;
            };
            let applied = match apply_retrying(&node, &entries) {
                Ok(a) => a,
                Err(e) => return node.fail(e),
            };
            node.with_core(|core| core.on_applied(last));
            node.waiters.proposals.complete(applied);
            node.serve_reads();
            snapshot_if_due(&node);
        }
    }
}

/// Applies `entries`, retrying a transient refusal (`Busy`) for up to about a
/// second before it fails the node: a busy RocksDB is no reason to stop. A
/// full disk is waited out however long: RocksDB writes again once there is
/// room, and nothing is applied meanwhile.
fn apply_retrying(node: &Node, entries: &[Entry]) -> Result<Vec<Applied>> {
    let mut delay = Duration::from_millis(1);
    let mut disk_full = false;
    loop {
        match node
            .faults
            .before_apply()
            .and_then(|_| node.state_machine.apply(entries))
        {
            Err(e) if e.is_retryable() && delay < Duration::from_secs(1) && !node.is_stopping() => {
                tracing::warn!(error = %e, retry_in = ?delay, "state machine busy; retrying");
                std::thread::sleep(delay);
                delay *= 2;
            }
            Err(e) if crate::storage::is_no_space(&e) && !node.is_stopping() => {
                if !std::mem::replace(&mut disk_full, true) {
                    tracing::error!(node = %node.id, error = %e, "disk full: applying waits for space");
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            other => return other,
        }
    }
}

/// After applying: a user state machine is snapshotted here, on the thread
/// its callbacks run on; the built-in store by the snapshot thread, woken.
fn snapshot_if_due(node: &Node) {
    if !super::snapshot::snapshot_due(node) {
        // (Waking the snapshot thread after every batch to find nothing due
        // cost ~4% of the CPU of a write-heavy run.)
        return;
    }
    if !node.state_machine.is_user() {
        return node.snapshots.wake();
    }
    if let Err(e) = super::snapshot::take_snapshot(node) {
        tracing::warn!(node = %node.id, error = %e, "snapshot failed; will retry");
    }
}
