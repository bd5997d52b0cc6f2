//! The core's in-memory view of the replicated log.
//!
//! Index 0 is the empty prefix (term 0); real entries start at 1. Until
//! snapshots land, the whole log since index 1 is kept here as well as on
//! disk; entries are `Bytes`-backed, so handing them to messages is cheap.

use crate::wire::Entry;

/// The log as the core sees it: every entry, persisted or not, plus how far
/// it is known to be durable.
#[derive(Debug, Default, Clone)]
pub struct RaftLog {
    entries: Vec<Entry>,
    /// Highest index known durable on this node's disk (with the term it had then).
    stable_index: u64,
}

impl RaftLog {
    /// A log restored from storage: `entries` must be contiguous from index 1.
    pub fn restore(entries: Vec<Entry>) -> Self {
        debug_assert!(entries.iter().enumerate().all(|(i, e)| e.index == i as u64 + 1));
        let stable_index = entries.len() as u64;
        RaftLog {
            entries,
            stable_index,
        }
    }

    pub fn last_index(&self) -> u64 {
        self.entries.len() as u64
    }

    pub fn last_term(&self) -> u64 {
        self.entries.last().map_or(0, |e| e.term)
    }

    pub fn stable_index(&self) -> u64 {
        self.stable_index
    }

    /// Term of the entry at `index`; 0 for index 0; `None` past the end.
    pub fn term(&self, index: u64) -> Option<u64> {
        if index == 0 {
            return Some(0);
        }
        self.entries.get(index as usize - 1).map(|e| e.term)
    }

    pub fn entry(&self, index: u64) -> Option<&Entry> {
        if index == 0 {
            return None;
        }
        self.entries.get(index as usize - 1)
    }

    /// Entries `[lo, hi]` (inclusive, clamped to the log), at most `max_count`
    /// of them and about `max_bytes` of payload (always at least one).
    pub fn slice(&self, lo: u64, hi: u64, max_count: usize, max_bytes: u64) -> Vec<Entry> {
        let hi = hi.min(self.last_index());
        if lo == 0 || lo > hi {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut bytes = 0u64;
        for e in &self.entries[lo as usize - 1..hi as usize] {
            bytes += e.payload.len() as u64 + 24;
            if !out.is_empty() && (out.len() >= max_count || bytes > max_bytes) {
                break;
            }
            out.push(e.clone());
        }
        out
    }

    /// Whether a log ending at (`last_index`, `last_term`) is at least as up
    /// to date as this one (§5.4.1).
    pub fn is_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        last_term > self.last_term() || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// Whether the log holds an entry at `index` with `term`.
    pub fn matches(&self, index: u64, term: u64) -> bool {
        self.term(index) == Some(term)
    }

    /// First index of the run of entries with the same term as `index`,
    /// not looking below `floor` (used as a conflict hint for the leader).
    pub fn first_index_of_term_at(&self, index: u64, floor: u64) -> u64 {
        let term = self.term(index);
        let mut i = index;
        while i > floor.max(1) && self.term(i - 1) == term {
            i -= 1;
        }
        i
    }

    /// Last index whose term is `term`, if the log has any such entry.
    pub fn last_index_of_term(&self, term: u64) -> Option<u64> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.term == term)
            .map(|e| e.index)
    }

    /// Appends entries that follow the last one.
    pub fn append(&mut self, new: impl IntoIterator<Item = Entry>) {
        for e in new {
            debug_assert_eq!(e.index, self.last_index() + 1);
            self.entries.push(e);
        }
    }

    /// Removes every entry from `index` on.
    pub fn truncate_from(&mut self, index: u64) {
        let keep = index.saturating_sub(1) as usize;
        self.entries.truncate(keep);
        self.stable_index = self.stable_index.min(keep as u64);
    }

    /// Records that the log up to `index`, whose entry then had `term`, is on disk.
    /// A report for entries that have since been replaced is ignored.
    pub fn mark_stable(&mut self, index: u64, term: u64) {
        if index > self.stable_index && self.matches(index, term) {
            self.stable_index = index;
        }
    }
}
