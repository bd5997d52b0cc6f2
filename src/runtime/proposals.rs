//! Commands waiting to be proposed (group commit) and callers waiting for
//! their entries to be applied.

use crate::error::{Error, Result};
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

    /// Hands the outcome of the applied entry (`index`, `term`) to its waiter, if any.
    /// A waiter whose entry was replaced by another term's learns that its command
    /// was not applied.
    pub fn complete(&self, index: u64, term: u64, result: Result<Option<Bytes>>) {
        let waiter = self.waiting.lock().remove(&index);
        if let Some(w) = waiter {
            if w.term == term {
                (w.done)(result);
            } else {
                (w.done)(Err(Error::NoLeader(format!(
                    "leadership changed before entry {index} committed; the command was not applied"
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
