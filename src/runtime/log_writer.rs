//! The log writer (`floyd-log-<port>`): the one writer of the log store.
//! It takes every Ready queued so far and writes them in one batch, with
//! one fsync (group commit), then lets out what waited on them; the next
//! round takes what arrived meanwhile.
//!
//! A full disk is not fatal: the batch that failed is kept and written
//! again, with what arrives meanwhile, until space comes back (RocksDB
//! recovers from "no space" by itself once there is room). Meanwhile the
//! node proposes nothing new (its callers get a clear `Io` error), answers
//! nothing that waits for durability, and stays up; any other write
//! error fails the node.

use super::node::{LogEvent, Node};
use crate::core::Ready;
use crate::error::{Error, Result};
use crate::storage::{is_no_space, LogBatch};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

/// The longest wait between two tries of a batch on a full disk.
const MAX_RETRY: Duration = Duration::from_secs(1);

/// Runs until `LogEvent::Stop` (or the node's failure).
pub fn run(node: Arc<Node>, rx: Receiver<LogEvent>) {
    // Where the log on disk starts: a compaction queued before an install
    // (which moved the start further) must not move it back.
    let mut start = match node.log_store.log_start(node.group) {
        Ok(s) => s.0,
        Err(e) => return node.fail(Error::Io(format!("cannot read the log start: {e}"))),
    };
    let mut readies: Vec<Ready> = Vec::new();
    let mut compact = None;
    let mut retry = None::<Duration>;
    loop {
        let mut stop = false;
        let mut take = |ev: Result<LogEvent, RecvTimeoutError>, readies: &mut Vec<Ready>| match ev {
            Ok(LogEvent::Persist(r)) => readies.push(*r),
            Ok(LogEvent::Compact(i, t)) => compact = Some((i, t)).max(compact),
            Ok(LogEvent::Stop) | Err(RecvTimeoutError::Disconnected) => stop = true,
            Err(RecvTimeoutError::Timeout) => {}
        };
        let first = match retry {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(wait) => rx.recv_timeout(wait),
        };
        take(first, &mut readies);
        while let Ok(ev) = rx.try_recv() {
            take(Ok(ev), &mut readies);
        }
        if node.failure().is_some() || (stop && retry.is_some()) {
            // Failed, or closing on a full disk: what is unwritten was never
            // acknowledged by this node, so dropping it loses nothing.
            node.log_written(readies.len());
            return;
        }
        // A clean close still writes what the core already produced.
        match write(&node, &readies, &mut start) {
            Ok(()) => {
                if retry.take().is_some() {
                    node.set_disk_full(false);
                    tracing::warn!(node = %node.id, "the log is written again: disk space came back");
                }
                let written = readies.len();
                super::ready::let_out(&node, std::mem::take(&mut readies));
                node.log_written(written);
            }
            Err(e) if is_no_space(&e) => {
                if retry.is_none() {
                    node.set_disk_full(true);
                    tracing::error!(node = %node.id, error = %e,
                        "disk full: the log cannot be written; new writes are refused until there is space");
                }
                retry = Some(retry.map_or(Duration::from_millis(50), |r| (r * 2).min(MAX_RETRY)));
            }
            Err(e) => {
                node.log_written(readies.len());
                return node.fail(Error::Io(format!("cannot persist the Raft log: {e}")));
            }
        }
        if retry.is_none() {
            if let Some((index, term)) = compact.take().filter(|c| c.0 > start) {
                compact_log(&node, index, term);
                start = index;
            }
        }
        if stop {
            return;
        }
    }
}

/// Deletes the log up to `index` (in a snapshot now) and gives the disk space back.
fn compact_log(node: &Node, index: u64, term: u64) {
    if let Err(e) = node.log_store.compact(node.group, index, term) {
        tracing::warn!(node = %node.id, error = %e, "cannot compact the log store");
    }
}

/// Writes the Readies in one batch, synced if any needs it.
fn write(node: &Node, readies: &[Ready], start: &mut u64) -> Result<()> {
    let mut batch = LogBatch::default();
    let mut sync = false;
    let mut hard_state = None;
    let mut config = None;
    let mut log_start = *start;
    for r in readies {
        if let Some(meta) = &r.snapshot {
            // Before this Ready's entries, which follow the snapshot's point.
            batch.add(node.group, None, r.truncate_from, &[]);
            batch.set_log_start(node.group, meta.last_index, meta.last_term);
            log_start = log_start.max(meta.last_index);
            batch.add(node.group, None, None, &r.entries);
        } else {
            batch.add(node.group, None, r.truncate_from, &r.entries);
        }
        config = r.config.as_ref().or(config);
        sync |= r.must_sync;
        hard_state = r.hard_state.as_ref().or(hard_state);
    }
    // Only the newest (term, vote, commit) matters; its keys are apart from the entries'.
    batch.add(node.group, hard_state, None, &[]);
    if let Some((index, m)) = config {
        batch.set_config(node.group, *index, m);
    }
    if !batch.is_empty() {
        let sync = node.faults.sync_log(sync);
        node.faults
            .before_log_write(sync)
            .and_then(|_| node.log_store.write(batch, sync))?;
    }
    *start = log_start;
    Ok(())
}
