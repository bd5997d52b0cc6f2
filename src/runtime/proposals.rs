//! Commands waiting to be proposed (group commit) and callers waiting for
//! their entries to be applied.

use crate::error::{Error, Result};
use crate::state_machine::Applied;
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::BTreeMap;

/// Called once with a command's outcome. Runs on a library thread: must not block.
pub type Completion = Box<dyn FnOnce(Result<Option<Bytes>>) + Send>;

struct Waiter {
    term: u64,
    done: Completion,
}

/// Thread-safe queues of proposals; shared by callers, the primary thread and the apply thread.
#[derive(Default)]
pub struct Proposals {
    pending: Mutex<Vec<(Bytes, Completion)>>,
    waiting: Mutex<BTreeMap<u64, Waiter>>,
}

impl Proposals {
    /// Queues a command for the next NewCommand round; returns whether the queue was empty
    /// (the caller then wakes the primary thread).
    pub fn push(&self, payload: Bytes, done: Completion) -> bool {
        let mut pending = self.pending.lock();
        pending.push((payload, done));
        pending.len() == 1
    }

    /// Takes every queued command.
    pub fn take_pending(&self) -> Vec<(Bytes, Completion)> {
        std::mem::take(&mut *self.pending.lock())
    }

    /// Waits for the entry at `index` of `term`.
    pub fn wait_for(&self, index: u64, term: u64, done: Completion) {
        self.waiting.lock().insert(index, Waiter { term, done });
    }

    /// Hands the outcome of each applied entry to its waiter, if any (one lock for
    /// the whole batch). A waiter whose entry was replaced by another term's learns
    /// that its command was not applied.
    pub fn complete(&self, applied: Vec<Applied>) {
        let found: Vec<(Applied, Waiter)> = {
            let mut waiting = self.waiting.lock();
            applied
                .into_iter()
                .filter_map(|a| waiting.remove(&a.index).map(|w| (a, w)))
                .collect()
        };
        for (a, w) in found {
            if w.term == a.term {
                (w.done)(a.result);
            } else {
                (w.done)(Err(Error::NoLeader(format!(
                    "leadership changed before entry {} committed; the command was not applied",
                    a.index
                ))));
            }
        }
    }

    /// Fails every queued and waiting command (the node is closing or failed).
    pub fn fail_all(&self, err: &Error) {
        for (_, done) in self.take_pending() {
            done(Err(err.clone()));
        }
        let waiting = std::mem::take(&mut *self.waiting.lock());
        for (_, w) in waiting {
            (w.done)(Err(err.clone()));
        }
    }
}
