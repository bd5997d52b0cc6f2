//! The core's in-memory view of the replicated log.
//!
//! The log starts after `start_index` (whose term is `start_term`): entries
//! up to there were compacted into a snapshot. A fresh log starts at 0 (the
//! empty prefix, term 0). Only entries since the last compaction are held,
//! so memory is bounded by the snapshot thresholds; entries are
//! `Bytes`-backed, so handing them to messages is cheap.

use crate::wire::Entry;

/// The log as the core sees it: every entry, persisted or not, plus how far
/// it is known to be durable.
#[derive(Debug, Default, Clone)]
pub struct RaftLog {
    /// Index and term of the last compacted entry (0, 0 for a fresh log).
    start_index: u64,
    start_term: u64,
    entries: std::collections::VecDeque<Entry>,
    /// Payload bytes of `entries`.
    bytes: u64,
    /// Highest index known durable on this node's disk (with the term it had then).
    stable_index: u64,
}

impl RaftLog {
    /// A log restored from storage: `entries` must be contiguous from `start.0 + 1`.
    pub fn restore(start: (u64, u64), entries: Vec<Entry>) -> Self {
        debug_assert!(entries
            .iter()
            .enumerate()
            .all(|(i, e)| e.index == start.0 + i as u64 + 1));
        let bytes = entries.iter().map(|e| e.payload.len() as u64).sum();
        let stable_index = start.0 + entries.len() as u64;
        RaftLog {
            start_index: start.0,
            start_term: start.1,
            entries: entries.into(),
            bytes,
            stable_index,
        }
    }

    /// Index of the last compacted entry: the log holds what follows it.
    pub fn start_index(&self) -> u64 {
        self.start_index
    }

    pub fn first_index(&self) -> u64 {
        self.start_index + 1
    }

    pub fn last_index(&self) -> u64 {
        self.start_index + self.entries.len() as u64
    }

    pub fn last_term(&self) -> u64 {
        self.entries.back().map_or(self.start_term, |e| e.term)
    }

    /// Entries held in memory, and their payload bytes.
    pub fn held(&self) -> (usize, u64) {
        (self.entries.len(), self.bytes)
    }

    fn pos(&self, index: u64) -> Option<usize> {
        if index <= self.start_index {
            return None;
        }
        usize::try_from(index - self.start_index - 1).ok()
    }

    pub fn stable_index(&self) -> u64 {
        self.stable_index
    }

    /// Term of the entry at `index`; known for the start index too; `None`
    /// past the end or before the start (compacted).
    pub fn term(&self, index: u64) -> Option<u64> {
        if index == self.start_index {
            return Some(self.start_term);
        }
        self.entries.get(self.pos(index)?).map(|e| e.term)
    }

    pub fn entry(&self, index: u64) -> Option<&Entry> {
        self.entries.get(self.pos(index)?)
    }

    /// Entries `[lo, hi]` (inclusive, clamped to the log), at most `max_count`
    /// of them and about `max_bytes` of payload (always at least one).
    pub fn slice(&self, lo: u64, hi: u64, max_count: usize, max_bytes: u64) -> Vec<Entry> {
        let hi = hi.min(self.last_index());
        if lo <= self.start_index || lo > hi {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut bytes = 0u64;
        let (from, to) = (self.pos(lo).unwrap_or(0), self.pos(hi).unwrap_or(0));
        for e in self.entries.range(from..=to) {
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
        while i > floor.max(self.first_index()) && self.term(i - 1) == term {
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
            self.bytes += e.payload.len() as u64;
            self.entries.push_back(e);
        }
    }

    /// Removes every entry from `index` on (never the start: it is compacted, hence committed).
    pub fn truncate_from(&mut self, index: u64) {
        let index = index.max(self.first_index());
        let keep = (index - self.first_index()) as usize;
        for e in self.entries.drain(keep.min(self.entries.len())..) {
            self.bytes -= e.payload.len() as u64;
        }
        self.stable_index = self.stable_index.min(index - 1);
    }

    /// Forgets the entries up to `index` (held in a snapshot now); the log
    /// then starts there. `index` must be in the log.
    pub fn compact(&mut self, index: u64) {
        let Some(term) = self.term(index) else { return };
        if index <= self.start_index {
            return;
        }
        let n = (index - self.start_index) as usize;
        for e in self.entries.drain(..n.min(self.entries.len())) {
            self.bytes -= e.payload.len() as u64;
        }
        self.start_index = index;
        self.start_term = term;
    }

    /// Replaces the whole log by the point (`index`, `term`) of an installed snapshot.
    pub fn reset(&mut self, index: u64, term: u64) {
        self.entries.clear();
        self.bytes = 0;
        self.start_index = index;
        self.start_term = term;
        self.stable_index = index;
    }

    /// Records that the log up to `index`, whose entry then had `term`, is on disk.
    /// A report for entries that have since been replaced is ignored.
    pub fn mark_stable(&mut self, index: u64, term: u64) {
        if index > self.stable_index && self.matches(index, term) {
            self.stable_index = index;
        }
    }
}
