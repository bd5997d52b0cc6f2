//! Callers waiting for a membership change to be committed.
//!
//! A change is done when this node's committed configuration shows it: the
//! server votes (add: it was caught up and promoted) or is gone (remove).
//! Judging by the committed configuration, not by the entry a particular
//! leader appended, lets a change finish under the next leader too (a new
//! leader promotes any learner that caught up).

use super::proposals::Completion;
use crate::core::Membership;
use crate::error::Error;
use parking_lot::Mutex;
use std::time::Instant;

/// What the caller waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    Voter(String),
    Absent(String),
}

impl Want {
    fn met_by(&self, m: &Membership) -> bool {
        match self {
            Want::Voter(s) => m.is_voter(s),
            Want::Absent(s) => !m.contains(s),
        }
    }
}

struct Waiter {
    want: Want,
    deadline: Instant,
    done: Completion,
}

/// Thread-safe list of waiters; short, since one change runs at a time.
#[derive(Default)]
pub struct ConfigWaiters {
    waiting: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    waiters: Vec<Waiter>,
    /// Set by [`ConfigWaiters::fail_all`]: nobody waits after it.
    closed: bool,
}

impl ConfigWaiters {
    /// Nobody waits for a change.
    pub fn is_empty(&self) -> bool {
        self.waiting.lock().waiters.is_empty()
    }

    /// Waits for `want`. If `committed` already meets it, hands `done` back
    /// (`Ok(Some)`) to be answered `Ok` by the caller (outside its locks);
    /// `Err` if closed (the node closes or failed), for the caller to answer.
    pub fn wait(
        &self,
        want: Want,
        committed: &Membership,
        deadline: Instant,
        done: Completion,
    ) -> Result<Option<Completion>, Completion> {
        if want.met_by(committed) {
            return Ok(Some(done));
        }
        let mut waiting = self.waiting.lock();
        if waiting.closed {
            return Err(done);
        }
        waiting.waiters.push(Waiter { want, deadline, done });
        Ok(None)
    }

    /// Takes the waiters that `committed` satisfies, to be answered `Ok`
    /// outside any lock.
    pub fn satisfied_by(&self, committed: &Membership) -> Vec<Completion> {
        let mut waiting = self.waiting.lock();
        let (met, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut waiting.waiters)
            .into_iter()
            .partition(|w| w.want.met_by(committed));
        waiting.waiters = rest;
        met.into_iter().map(|w| w.done).collect()
    }

    /// Answers `Timeout` to waiters whose deadline passed.
    pub fn expire(&self, now: Instant) {
        let expired: Vec<Waiter> = {
            let mut waiting = self.waiting.lock();
            if waiting.waiters.is_empty() {
                return;
            }
            let (gone, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut waiting.waiters)
                .into_iter()
                .partition(|w| w.deadline <= now);
            waiting.waiters = keep;
            gone
        };
        for w in expired {
            let what = match &w.want {
                Want::Voter(s) => {
                    format!("{s} is not a voter yet (a learner is promoted once it has caught up)")
                }
                Want::Absent(s) => format!("the removal of {s} is not committed yet"),
            };
            (w.done)(Err(Error::Timeout(format!(
                "{what}; the change may still complete"
            ))));
        }
    }

    /// Answers every waiter with `err`, and closes: nobody waits after it.
    pub fn fail_all(&self, err: &Error) {
        let all = {
            let mut waiting = self.waiting.lock();
            waiting.closed = true;
            std::mem::take(&mut waiting.waiters)
        };
        for w in all {
            (w.done)(Err(err.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::unbounded;
    use std::time::Duration;

    #[test]
    fn a_waiter_is_answered_when_the_committed_configuration_shows_the_change() {
        let w = ConfigWaiters::default();
        let (tx, rx) = unbounded();
        let before = Membership::new(["a:1".to_string()]);
        let later = Instant::now() + Duration::from_secs(60);
        let done = w.wait(
            Want::Voter("b:2".into()),
            &before,
            later,
            Box::new(move |r| tx.send(r).unwrap()),
        );
        assert!(matches!(done, Ok(None)));
        assert!(w.satisfied_by(&before).is_empty());
        let mut learner = before.clone();
        learner.learners.insert("b:2".into());
        assert!(w.satisfied_by(&learner).is_empty(), "a learner does not vote yet");
        let after = Membership::new(["a:1".to_string(), "b:2".to_string()]);
        for done in w.satisfied_by(&after) {
            done(Ok(None));
        }
        assert_eq!(rx.try_recv().unwrap(), Ok(None));
    }

    #[test]
    fn a_waiter_past_its_deadline_learns_the_outcome_is_unknown() {
        let w = ConfigWaiters::default();
        let (tx, rx) = unbounded();
        let m = Membership::new(["a:1".to_string()]);
        let now = Instant::now();
        let waiting = w.wait(
            Want::Absent("a:1".into()),
            &m,
            now,
            Box::new(move |r| tx.send(r).unwrap()),
        );
        assert!(matches!(waiting, Ok(None)));
        w.expire(now + Duration::from_millis(1));
        assert!(matches!(rx.try_recv().unwrap(), Err(Error::Timeout(_))));
    }

    /// Issue 20, item 9: a change requested as the node closed is handed
    /// back to its caller, not left waiting in a table nobody drains.
    #[test]
    fn nobody_waits_once_the_waiters_are_failed() {
        let w = ConfigWaiters::default();
        w.fail_all(&Error::Stopped("closed".into()));
        let m = Membership::new(["a:1".to_string()]);
        let later = Instant::now() + Duration::from_secs(60);
        let waiting = w.wait(Want::Absent("a:1".into()), &m, later, Box::new(|_| {}));
        assert!(waiting.is_err());
    }
}
