//! When a leader proposed its recent entries, so that their commit can be
//! timed: a ring of (index, time) slots. An entry whose slot was taken by a
//! later one before it committed (more than `RING` entries in flight) goes
//! untimed.
//!
//! The ring is empty until the node proposes (a follower never does), then
//! starts small and doubles, up to `RING`, only when an entry still in
//! flight would lose its slot: with a full ring made for every group member
//! (64 KiB each), an idle host of 1,000 groups held 190 MiB of rings.
//! Proposals and commits both come under the core's lock, so the ring's own
//! lock is never contended; a scrape reads only the histogram.

use super::Histogram;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Instant;

/// The most slots a ring grows to.
const RING: usize = 4096;
/// The slots it starts with at the first proposal.
const FIRST_SLOTS: usize = 64;

/// Microseconds since a fixed point of this process.
fn micros(at: Instant) -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    at.saturating_duration_since(origin).as_micros() as u64
}

#[derive(Debug, Default)]
pub struct ProposalTimes {
    /// Per slot: the index proposed there and when (µs); empty until the
    /// first proposal.
    slots: parking_lot::Mutex<Vec<(u64, u64)>>,
    /// The commit index timed up to.
    timed_to: AtomicU64,
}

impl ProposalTimes {
    /// The leader proposed `index` at `at`.
    pub fn proposed(&self, index: u64, at: Instant) {
        let mut slots = self.slots.lock();
        if slots.is_empty() {
            slots.resize(FIRST_SLOTS, (0, 0));
        }
        let timed_to = self.timed_to.load(Relaxed);
        loop {
            let held = slots[slot_of(index, slots.len())].0;
            let in_flight = held > timed_to && held != index;
            if !in_flight || slots.len() >= RING {
                break;
            }
            grow(&mut slots, timed_to);
        }
        let i = slot_of(index, slots.len());
        slots[i] = (index, micros(at));
    }

    /// The commit index is `commit` now: each entry committed since the
    /// last call, proposed here, has its latency observed in `into`.
    pub fn committed_up_to(&self, commit: u64, into: &Histogram) {
        // (Every leader's core call comes here: a load when nothing committed.)
        if self.timed_to.load(Relaxed) >= commit {
            return;
        }
        let slots = self.slots.lock();
        let from = self.timed_to.swap(commit, Relaxed);
        if commit <= from || slots.is_empty() {
            return;
        }
        let now = micros(Instant::now());
        let n = slots.len() as u64;
        for index in (from + 1).max(commit.saturating_sub(n - 1))..=commit {
            let (at_index, at) = slots[slot_of(index, slots.len())];
            if at_index == index {
                into.observe(std::time::Duration::from_micros(now.saturating_sub(at)));
            }
        }
    }

    /// How many slots the ring has now.
    #[cfg(test)]
    fn slots(&self) -> usize {
        self.slots.lock().len()
    }
}

fn slot_of(index: u64, len: usize) -> usize {
    (index % len as u64) as usize
}

/// Doubles the ring, keeping the entries still in flight (two of them never
/// share a slot after: they did not before, in half as many).
fn grow(slots: &mut Vec<(u64, u64)>, timed_to: u64) {
    let mut bigger = vec![(0, 0); slots.len() * 2];
    for &(index, at) in slots.iter().filter(|(index, _)| *index > timed_to) {
        let i = slot_of(index, bigger.len());
        bigger[i] = (index, at);
    }
    *slots = bigger;
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
        t.proposed(5 + RING as u64, at);
        t.committed_up_to(5, &h);
        assert_eq!(h.count(), 3);
        assert_eq!(t.slots(), RING, "grown as far as it goes, and no further");
    }

    /// A node that never proposes (a follower, an idle group) holds no
    /// ring; one that does grows it only as far as its entries in flight.
    #[test]
    fn the_ring_is_made_at_the_first_proposal_and_grows_with_the_entries_in_flight() {
        let (t, h) = (ProposalTimes::default(), Histogram::default());
        t.committed_up_to(10, &h);
        assert_eq!((t.slots(), h.count()), (0, 0));
        let at = Instant::now();
        // One in flight at a time: the first ring is enough.
        for i in 11..=1_000 {
            t.proposed(i, at);
            t.committed_up_to(i, &h);
        }
        assert_eq!((t.slots(), h.count()), (FIRST_SLOTS, 990));
        // 1,000 in flight at once: every one is timed at its commit.
        for i in 1_001..=2_000 {
            t.proposed(i, at);
        }
        assert_eq!(t.slots(), 1_024);
        t.committed_up_to(2_000, &h);
        assert_eq!(h.count(), 1_990);
    }
}
