//! The host's log writer (`floyd-log-<port>`): the one writer of the log
//! store. It takes every Ready queued so far, of every group, and writes
//! them in one batch with one fsync (group commit across groups), then lets
//! out what waited on them, group by group, each in the order its core
//! produced them; the next round takes what arrived meanwhile.
//!
//! A full disk is not fatal: the batch that failed is kept and written
//! again, with what arrives meanwhile, until space comes back (RocksDB
//! recovers from "no space" by itself once there is room). Meanwhile the
//! host's groups propose nothing new (their callers get a clear `Io`
//! error), answer nothing that waits for durability, and stay up; any other
//! write error fails the host, every group with it.

use super::group_map::GroupMap;
use super::host::HostShared;
use super::node::{LogEvent, Node};
use crate::core::{HardState, Membership, Ready};
use crate::error::{Error, Result};
use crate::storage::{is_no_space, GroupId, LogBatch};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The longest wait between two tries of a batch on a full disk.
const MAX_RETRY: Duration = Duration::from_secs(1);

/// What the writer holds between rounds.
#[derive(Default)]
struct Pending {
    /// Readies not yet written, with their group, in the order they came.
    readies: Vec<(Arc<Node>, Ready)>,
    /// Per group, the compaction asked for last.
    compact: GroupMap<(Arc<Node>, u64, u64)>,
    /// Per group, where its log on disk starts: a compaction queued before
    /// an install (which moved the start further) must not move it back.
    starts: GroupMap<u64>,
}

/// One write of the log store, made of a round's Readies.
struct Built {
    batch: LogBatch,
    /// Whether any of them must be synced.
    sync: bool,
    /// Per group, the point of the newest snapshot installed in them.
    snapshot_starts: GroupMap<u64>,
}

/// Puts `readies` (with their groups, in the order their cores produced
/// them) in one batch.
fn build<'a>(readies: impl Iterator<Item = (GroupId, &'a Ready)>) -> Built {
    let mut batch = LogBatch::default();
    let mut sync = false;
    // Per group, only the newest (term, vote, commit) and configuration
    // matter (and whether any Ready changed term or vote: if none did, only
    // the commit index is written), and the newest snapshot's point. (Maps,
    // not scans: a batch may hold a Ready of each of thousands of groups.)
    let mut last: GroupMap<Last<'a>> = GroupMap::default();
    let mut snapshot_starts: GroupMap<u64> = GroupMap::default();
    for (g, r) in readies {
        if let Some(meta) = &r.snapshot {
            // Before this Ready's entries, which follow the snapshot's point.
            batch.add(g, None, r.truncate_from, &[]);
            batch.set_log_start(g, meta.last_index, meta.last_term);
            batch.add(g, None, None, &r.entries);
            let start = snapshot_starts.entry(g).or_insert(0);
            *start = (*start).max(meta.last_index);
        } else {
            batch.add(g, None, r.truncate_from, &r.entries);
        }
        sync |= r.must_sync;
        let entry = last.entry(g).or_default();
        if let Some(hs) = &r.hard_state {
            entry.hard_state = Some(hs);
            entry.term_or_vote |= r.term_or_vote_changed;
        }
        if let Some((index, m)) = &r.config {
            entry.config = Some((*index, m));
        }
    }
    for (g, l) in &last {
        if let Some(hs) = l.hard_state {
            batch.set_hard_state(*g, hs, l.term_or_vote);
        }
        if let Some((index, m)) = l.config {
            batch.set_config(*g, index, m);
        }
    }
    Built {
        batch,
        sync,
        snapshot_starts,
    }
}

/// Per group in a batch: which Readies hold its newest hard state and
/// configuration, and whether any changed its term or vote.
#[derive(Default)]
struct Last<'a> {
    hard_state: Option<&'a HardState>,
    config: Option<(u64, &'a Membership)>,
    term_or_vote: bool,
}

/// Runs until `LogEvent::Stop` (or the host's failure).
pub fn run(host: Arc<HostShared>) {
    let mut p = Pending::default();
    let mut retry = None::<Duration>;
    let mut events = Vec::new();
    loop {
        host.log_tx.take_all(&mut events, retry);
        let mut stop = false;
        for ev in events.drain(..) {
            stop |= p.take(ev);
        }
        if host.failure().is_some() || (stop && retry.is_some()) {
            // Failed, or closing on a full disk: what is unwritten was never
            // acknowledged, so dropping it loses nothing.
            p.drop_unwritten();
            return;
        }
        if retry.is_some() {
            // Nor does a group closing on a full disk wait for space: it
            // would hold up its close (and its host's) for good.
            p.drop_unwritten_of(|node| node.is_stopping());
        }
        // A clean close still writes what the cores already produced.
        let writing = !p.readies.is_empty();
        match p.write(&host) {
            Ok(()) => {
                // (With nothing left to write, the next write tries the disk.)
                if retry.take().is_some() {
                    host.set_disk_full(false);
                    if writing {
                        tracing::warn!(host = %host.id, "the log is written again: disk space came back");
                    }
                }
                p.let_out();
            }
            Err(e) if is_no_space(&e) => {
                if retry.is_none() {
                    host.set_disk_full(true);
                    tracing::error!(host = %host.id, error = %e,
                        "disk full: the log cannot be written; new writes are refused until there is space");
                }
                retry = Some(retry.map_or(Duration::from_millis(50), |r| (r * 2).min(MAX_RETRY)));
            }
            Err(e) => {
                p.drop_unwritten();
                return host.fail(Error::Io(format!("cannot persist the Raft log: {e}")));
            }
        }
        if retry.is_none() {
            p.compact(&host);
        }
        if stop {
            return;
        }
    }
}

impl Pending {
    /// Takes one event; whether it says to stop.
    fn take(&mut self, ev: LogEvent) -> bool {
        match ev {
            LogEvent::Persist(node, r) => self.readies.push((node, *r)),
            LogEvent::Compact(node, i, t) => {
                let later = self.compact.get(&node.group).is_none_or(|c| (i, t) > (c.1, c.2));
                if later {
                    self.compact.insert(node.group, (node, i, t));
                }
            }
            LogEvent::Stop => return true,
        }
        false
    }

    fn start_of(&mut self, host: &HostShared, group: GroupId) -> Result<u64> {
        if let Some(s) = self.starts.get(&group) {
            return Ok(*s);
        }
        let s = host.log_store.log_start(group)?.0;
        self.starts.insert(group, s);
        Ok(s)
    }

    /// Writes every pending Ready in one batch, synced if any needs it.
    fn write(&mut self, host: &HostShared) -> Result<()> {
        let Built {
            batch,
            sync,
            snapshot_starts,
        } = build(self.readies.iter().map(|(node, r)| (node.group, r)));
        let starts: Vec<(GroupId, u64)> = snapshot_starts.into_iter().collect();
        if !batch.is_empty() {
            let sync = host.faults.sync_log(sync);
            let entries: usize = self.readies.iter().map(|(_, r)| r.entries.len()).sum();
            host.metrics.log_write_entries.record(entries as u64);
            host.metrics.log_write_bytes.record(batch.size_in_bytes() as u64);
            let started = std::time::Instant::now();
            host.faults
                .before_log_write(sync)
                .and_then(|_| host.log_store.write(batch, sync))?;
            host.log_writes.fetch_add(1, Ordering::Relaxed);
            host.metrics
                .log_entries
                .fetch_add(entries as u64, Ordering::Relaxed);
            if sync {
                host.log_syncs.fetch_add(1, Ordering::Relaxed);
                host.metrics.fsync.observe(started.elapsed());
            }
        }
        for (g, s) in starts {
            let start = self.start_of(host, g)?;
            self.starts.insert(g, start.max(s));
        }
        Ok(())
    }

    /// Once written: each core learns what is durable, and what waited on it goes.
    fn let_out(&mut self) {
        // In the order the groups first appear; found by map, not by scan.
        let mut by_group: Vec<(Arc<Node>, Vec<Ready>)> = Vec::new();
        let mut slot: GroupMap<usize> = GroupMap::default();
        for (node, r) in self.readies.drain(..) {
            match slot.get(&node.group) {
                Some(&i) => by_group[i].1.push(r),
                None => {
                    slot.insert(node.group, by_group.len());
                    by_group.push((node, vec![r]));
                }
            }
        }
        for (node, readies) in by_group {
            let n = readies.len();
            super::ready::let_out(&node, readies);
            node.log_written(n);
        }
    }

    /// Gives up on what is unwritten (failure, or closing on a full disk).
    fn drop_unwritten(&mut self) {
        self.drop_unwritten_of(|_| true);
    }

    /// Gives up on what is unwritten of the groups `which` picks.
    fn drop_unwritten_of(&mut self, which: impl Fn(&Node) -> bool) {
        let (dropped, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.readies)
            .into_iter()
            .partition(|(node, _)| which(node));
        self.readies = kept;
        let mut counts: GroupMap<(Arc<Node>, usize)> = GroupMap::default();
        for (node, _) in dropped {
            counts.entry(node.group).or_insert_with(|| (node.clone(), 0)).1 += 1;
        }
        for (node, c) in counts.into_values() {
            node.log_written(c);
        }
    }

    /// Deletes each group's log up to the point asked (in a snapshot now)
    /// and gives the disk space back.
    fn compact(&mut self, host: &HostShared) {
        let asked: Vec<(Arc<Node>, u64, u64)> = self.compact.drain().map(|(_, c)| c).collect();
        for (node, index, term) in asked {
            let g = node.group;
            let Ok(start) = self.start_of(host, g) else {
                continue;
            };
            if index <= start {
                continue;
            }
            if let Err(e) = host.log_store.compact(g, index, term) {
                tracing::warn!(node = %node.id, group = g, error = %e, "cannot compact the log store");
                continue;
            }
            self.starts.insert(g, index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LogStore;
    use crate::wire::Entry;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    fn hard_state(term: u64, vote: Option<&str>, commit: u64) -> HardState {
        HardState {
            term,
            vote: vote.map(str::to_string),
            commit,
        }
    }

    /// A round's Readies of one group: a new term and vote, then entries,
    /// then only the commit moving. The batch stores the term and vote of
    /// the first with the commit of the last; a round with only commits
    /// moving leaves the stored term and vote as they are.
    #[test]
    fn a_round_stores_the_newest_commit_with_the_term_and_vote_any_of_its_readies_changed() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        let readies = [
            Ready {
                hard_state: Some(hard_state(2, Some("a:1"), 0)),
                term_or_vote_changed: true,
                must_sync: true,
                ..Default::default()
            },
            Ready {
                entries: vec![entry(1, 2), entry(2, 2)],
                must_sync: true,
                ..Default::default()
            },
            Ready {
                hard_state: Some(hard_state(2, Some("a:1"), 2)),
                ..Default::default()
            },
        ];
        let other = Ready {
            hard_state: Some(hard_state(7, None, 0)),
            term_or_vote_changed: true,
            ..Default::default()
        };
        let round = readies.iter().map(|r| (5, r)).chain([(9, &other)]);
        let built = build(round);
        assert!(built.sync);
        store.write(built.batch, true).unwrap();
        assert_eq!(store.hard_state(5).unwrap(), hard_state(2, Some("a:1"), 2));
        assert_eq!(store.hard_state(9).unwrap(), hard_state(7, None, 0));
        assert_eq!(store.load(5).unwrap().entries.len(), 2);

        // Only commits move: not a sync, and term and vote stay stored.
        let commit = Ready {
            hard_state: Some(hard_state(2, Some("a:1"), 3)),
            ..Default::default()
        };
        let built = build([(5, &commit)].into_iter());
        assert!(!built.sync);
        store.write(built.batch, false).unwrap();
        assert_eq!(store.hard_state(5).unwrap(), hard_state(2, Some("a:1"), 3));
    }
}
