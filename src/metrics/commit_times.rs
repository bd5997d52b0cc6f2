//! When a leader proposed its recent entries, so that their commit can be
//! timed: a ring of (index, time) slots written and read with atomics
//! (both under the core lock, but a scrape never waits on it). An entry
//! whose slot was taken by a later one before it committed (more than
//! `RING` entries in flight) goes untimed.

use super::Histogram;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Instant;

const RING: u64 = 4096;

/// Microseconds since a fixed point of this process.
fn micros(at: Instant) -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    at.saturating_duration_since(origin).as_micros() as u64
}

#[derive(Debug)]
pub struct ProposalTimes {
    /// Per slot: the index proposed there and when.
    slots: Box<[(AtomicU64, AtomicU64)]>,
    /// The commit index timed up to.
    timed_to: AtomicU64,
}

impl Default for ProposalTimes {
    fn default() -> Self {
        ProposalTimes {
            slots: (0..RING)
                .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
                .collect(),
            timed_to: AtomicU64::new(0),
        }
    }
}

impl ProposalTimes {
    /// The leader proposed `index` at `at`.
    pub fn proposed(&self, index: u64, at: Instant) {
        let slot = &self.slots[(index % RING) as usize];
        slot.1.store(micros(at), Relaxed);
        slot.0.store(index, Relaxed);
    }

    /// The commit index is `commit` now: each entry committed since the
    /// last call, proposed here, has its latency observed in `into`.
    pub fn committed_up_to(&self, commit: u64, into: &Histogram) {
        // (Every leader's core call comes here: a load when nothing committed.)
        if self.timed_to.load(Relaxed) >= commit {
            return;
        }
        let from = self.timed_to.swap(commit, Relaxed);
        if commit <= from {
            return;
        }
        let now = micros(Instant::now());
        for index in (from + 1).max(commit.saturating_sub(RING - 1))..=commit {
            let slot = &self.slots[(index % RING) as usize];
            if slot.0.load(Relaxed) == index {
                let at = slot.1.load(Relaxed);
                into.observe(std::time::Duration::from_micros(now.saturating_sub(at)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_entry_proposed_here_is_timed_once_at_its_commit() {
        let (t, h) = (ProposalTimes::default(), Histogram::default());
        let at = Instant::now();
        for i in 1..=3 {
            t.proposed(i, at);
        }
        t.committed_up_to(2, &h);
        assert_eq!(h.count(), 2);
        t.committed_up_to(2, &h);
        assert_eq!(h.count(), 2, "no entry timed twice");
        // Index 4 was proposed elsewhere (a former leader): not timed.
        t.committed_up_to(4, &h);
        assert_eq!(h.count(), 3);
        // An entry whose slot a later one took is not timed.
        t.proposed(5, at);
        t.proposed(5 + RING, at);
        t.committed_up_to(5, &h);
        assert_eq!(h.count(), 3);
    }
}
