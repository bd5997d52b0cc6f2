//! Commands waiting to be proposed (group commit) and callers waiting for
//! their entries to be applied.
//!
//! A waiter is answered when its index is applied: with the command's result
//! if the entry there is still its own (same term), or with `NoLeader` ("not
//! applied", retry-safe) if another entry took that index. Only that moment
//! is certain: an entry truncated from this node's log, or left behind by a
//! leader that stepped down, may still be committed by a later leader, so it
//! is not answered earlier. A waiter whose caller's deadline passed is dropped
//! by [`Proposals::expire`], so a deposed leader cut off from the cluster does
//! not accumulate them.

use crate::error::{Error, Result};
use crate::state_machine::Applied;
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Called once with a command's outcome. Runs on a library thread: must not block.
pub type Completion = Box<dyn FnOnce(Result<Option<Bytes>>) + Send>;

/// How often a waiter table is scanned for callers past their deadline.
const EXPIRY_SCAN_PERIOD: Duration = Duration::from_millis(100);

/// Throttles the deadline scans of a waiter table (proposals, forwards):
/// called on every tick, a scan runs at most every [`EXPIRY_SCAN_PERIOD`].
pub struct ExpiryScan(Mutex<Instant>);

impl Default for ExpiryScan {
    fn default() -> Self {
        ExpiryScan(Mutex::new(Instant::now()))
    }
}

impl ExpiryScan {
    /// Whether a scan is due at `now` (and, if so, the next one is scheduled).
    pub fn due(&self, now: Instant) -> bool {
        let mut next = self.0.lock();
        if now < *next {
            return false;
        }
        *next = now + EXPIRY_SCAN_PERIOD;
        true
    }
}

/// A command queued for the next NewCommand round.
pub struct PendingCommand {
    pub payload: Bytes,
    pub deadline: Instant,
    pub done: Completion,
}

struct Waiter {
    term: u64,
    deadline: Instant,
    done: Completion,
}

/// Thread-safe queues of proposals; shared by callers, the primary thread and the apply thread.
///
/// Closed by [`Proposals::fail_all`] (the node closes or fails): from then
/// on nothing is queued or registered, and whoever tried gets the command
/// back to answer, so a caller that passed its check just before the close
/// is still answered exactly once.
pub struct Proposals {
    pending: Mutex<Queue>,
    /// Several waiters may share an index: one per leadership that proposed there.
    waiting: Mutex<BTreeMap<u64, Vec<Waiter>>>,
    /// Set under `waiting`'s lock; read under it too.
    closed: std::sync::atomic::AtomicBool,
    expiry_scan: ExpiryScan,
}

#[derive(Default)]
struct Queue {
    cmds: Vec<PendingCommand>,
    closed: bool,
}

impl Default for Proposals {
    fn default() -> Self {
        Proposals {
            pending: Mutex::new(Queue::default()),
            waiting: Mutex::new(BTreeMap::new()),
            closed: Default::default(),
            expiry_scan: ExpiryScan::default(),
        }
    }
}

impl Proposals {
    /// No command queued or proposed and unanswered.
    pub fn is_empty(&self) -> bool {
        self.pending.lock().cmds.is_empty() && self.waiting.lock().is_empty()
    }

    /// Queues a command for the next NewCommand round; returns whether the queue was empty
    /// (the caller then wakes the primary thread). `Err`: closed, the command is
    /// the caller's to answer (it was not proposed).
    pub fn push(&self, cmd: PendingCommand) -> std::result::Result<bool, PendingCommand> {
        let mut pending = self.pending.lock();
        if pending.closed {
            return Err(cmd);
        }
        pending.cmds.push(cmd);
        Ok(pending.cmds.len() == 1)
    }

    /// Takes every queued command.
    pub fn take_pending(&self) -> Vec<PendingCommand> {
        std::mem::take(&mut self.pending.lock().cmds)
    }

    /// Puts commands that could not be proposed yet back at the head of the
    /// queue, in order, before anything queued meanwhile. Returns them if closed.
    pub fn put_back(&self, mut cmds: Vec<PendingCommand>) -> Vec<PendingCommand> {
        let mut pending = self.pending.lock();
        if pending.closed {
            return cmds;
        }
        cmds.append(&mut pending.cmds);
        pending.cmds = cmds;
        Vec::new()
    }

    /// Waits for the entry at `index` of `term`. `Err`: closed, the command
    /// is the caller's to answer (it may be applied elsewhere: in doubt).
    pub fn wait_for(
        &self,
        index: u64,
        term: u64,
        cmd: PendingCommand,
    ) -> std::result::Result<(), PendingCommand> {
        let mut waiting = self.waiting.lock();
        if self.closed.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(cmd);
        }
        let waiter = Waiter {
            term,
            deadline: cmd.deadline,
            done: cmd.done,
        };
        waiting.entry(index).or_default().push(waiter);
        Ok(())
    }

    /// Number of callers waiting for an entry to be applied.
    #[cfg(test)]
    pub fn waiting_count(&self) -> usize {
        self.waiting.lock().values().map(Vec::len).sum()
    }

    /// Hands the outcome of each applied entry to its waiters, if any (one lock for
    /// the whole batch). A waiter whose entry was replaced by another term's learns
    /// that its command was not applied.
    pub fn complete(&self, applied: Vec<Applied>) {
        let found: Vec<(Applied, Vec<Waiter>)> = {
            let mut waiting = self.waiting.lock();
            if waiting.is_empty() {
                return;
            }
            applied
                .into_iter()
                .filter_map(|a| waiting.remove(&a.index).map(|w| (a, w)))
                .collect()
        };
        for (a, waiters) in found {
            for w in waiters {
                if w.term == a.term {
                    (w.done)(a.result.clone());
                } else {
                    (w.done)(Err(Error::NoLeader(format!(
                        "leadership changed before entry {} committed; the command was not applied",
                        a.index
                    ))));
                }
            }
        }
    }

    /// Drops waiters whose caller has given up (their deadline passed), answering
    /// them `Timeout`. Cheap when called often: it scans at most every 100 ms.
    pub fn expire(&self, now: Instant) {
        if !self.expiry_scan.due(now) {
            return;
        }
        let expired: Vec<Waiter> = {
            let mut waiting = self.waiting.lock();
            let mut out = Vec::new();
            waiting.retain(|_, ws| {
                let (gone, keep): (Vec<_>, Vec<_>) =
                    std::mem::take(ws).into_iter().partition(|w| w.deadline <= now);
                out.extend(gone);
                *ws = keep;
                !ws.is_empty()
            });
            out
        };
        for w in expired {
            (w.done)(Err(Error::Timeout(
                "no result in time; the command may or may not have been applied".into(),
            )));
        }
    }

    /// Answers every queued command (never proposed: certainly not applied)
    /// with `not_proposed`, and every command waiting for its entry with `in_flight`.
    /// Closes the queues: nothing is queued or registered after this.
    pub fn fail_all(&self, not_proposed: &Error, in_flight: &Error) {
        let queued = {
            let mut pending = self.pending.lock();
            pending.closed = true;
            std::mem::take(&mut pending.cmds)
        };
        for cmd in queued {
            (cmd.done)(Err(not_proposed.clone()));
        }
        let waiting = {
            let mut waiting = self.waiting.lock();
            self.closed.store(true, std::sync::atomic::Ordering::Relaxed);
            std::mem::take(&mut *waiting)
        };
        for w in waiting.into_values().flatten() {
            (w.done)(Err(in_flight.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::{unbounded, Receiver};

    fn command(deadline: Instant) -> (PendingCommand, Receiver<Result<Option<Bytes>>>) {
        let (tx, rx) = unbounded();
        let cmd = PendingCommand {
            payload: Bytes::new(),
            deadline,
            done: Box::new(move |r| {
                let _ = tx.send(r);
            }),
        };
        (cmd, rx)
    }

    fn applied(index: u64, term: u64) -> Applied {
        Applied {
            index,
            term,
            result: Ok(None),
        }
    }

    /// Issue 6, item 9: a leader re-elected after its entry at index 5 was
    /// truncated proposes there again; the first waiter must still be answered.
    #[test]
    fn two_waiters_at_one_index_are_both_answered() {
        let p = Proposals::default();
        let later = Instant::now() + Duration::from_secs(60);
        let (old, old_rx) = command(later);
        let (new, new_rx) = command(later);
        assert!(p.wait_for(5, 2, old).is_ok());
        assert!(p.wait_for(5, 4, new).is_ok());
        p.complete(vec![applied(5, 4)]);
        assert!(matches!(old_rx.try_recv().unwrap(), Err(Error::NoLeader(_))));
        assert_eq!(new_rx.try_recv().unwrap(), Ok(None));
        assert_eq!(p.waiting_count(), 0);
    }

    /// Issue 6, item 9: waiters of a deposed leader that applies nothing more
    /// leave once their callers have given up, instead of leaking.
    #[test]
    fn waiters_past_their_deadline_are_answered_and_dropped() {
        let p = Proposals::default();
        let now = Instant::now();
        let (gone, gone_rx) = command(now);
        let (alive, alive_rx) = command(now + Duration::from_secs(60));
        assert!(p.wait_for(7, 3, gone).is_ok());
        assert!(p.wait_for(8, 3, alive).is_ok());
        p.expire(now + Duration::from_millis(1));
        assert!(matches!(gone_rx.try_recv().unwrap(), Err(Error::Timeout(_))));
        assert!(alive_rx.try_recv().is_err());
        assert_eq!(p.waiting_count(), 1);
    }

    #[test]
    fn failing_tells_queued_and_in_flight_commands_apart() {
        let p = Proposals::default();
        let later = Instant::now() + Duration::from_secs(60);
        let (queued, queued_rx) = command(later);
        let (sent, sent_rx) = command(later);
        assert!(p.push(queued).is_ok());
        assert!(p.wait_for(1, 1, sent).is_ok());
        p.fail_all(&Error::Failed("disk".into()), &Error::Timeout("unknown".into()));
        assert!(matches!(queued_rx.try_recv().unwrap(), Err(Error::Failed(_))));
        assert!(matches!(sent_rx.try_recv().unwrap(), Err(Error::Timeout(_))));
    }

    /// Issue 20, item 9: a caller that passed its check just before the node
    /// closed pushes after the close answered everyone: its command comes back
    /// to it instead of waiting forever in a queue nobody drains.
    #[test]
    fn nothing_is_queued_or_registered_once_the_queues_are_closed() {
        let p = Proposals::default();
        let later = Instant::now() + Duration::from_secs(60);
        let stopped = Error::Stopped("closed".into());
        p.fail_all(&stopped, &stopped);
        let (late, late_rx) = command(later);
        let Err(back) = p.push(late) else {
            panic!("queued after the close")
        };
        (back.done)(Err(stopped.clone()));
        assert!(matches!(late_rx.try_recv().unwrap(), Err(Error::Stopped(_))));
        let (proposed, _rx) = command(later);
        assert!(p.wait_for(3, 1, proposed).is_err());
        let (held, _rx) = command(later);
        assert_eq!(p.put_back(vec![held]).len(), 1);
        assert!(p.take_pending().is_empty());
        assert_eq!(p.waiting_count(), 0);
    }
}
