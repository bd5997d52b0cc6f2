//! The apply thread: drains committed, durable entries into the state machine
//! and hands each proposer its result.

use super::node::Node;
use crossbeam_channel::Receiver;
use std::sync::Arc;
use std::time::Duration;

/// Entries applied per state-machine batch.
const APPLY_BATCH: usize = 1024;

/// Runs until the node stops; woken through `wake` whenever commit may have moved.
pub fn run(node: Arc<Node>, wake: Receiver<()>) {
    while !node.is_stopping() {
        let _ = wake.recv_timeout(Duration::from_millis(100));
        if node.failure().is_some() {
            return;
        }
        loop {
            let entries = node.with_core(|core| core.entries_to_apply(APPLY_BATCH));
            let Some(last) = entries.last().map(|e| e.index) else {
                break;
            };
            let applied = match node.state_machine.apply(&entries) {
                Ok(a) => a,
                Err(e) => return node.fail(e),
            };
            node.with_core(|core| core.on_applied(last));
            node.proposals.complete(applied);
        }
    }
}
