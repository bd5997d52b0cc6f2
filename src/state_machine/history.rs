//! The history of recent changes (protocol 6), for watches: every put and
//! delete counted at a revision is also stored under `h` + revision +
//! its position within the revision, in the same WriteBatch as the change,
//! so a watcher can start from any revision the history still holds — after
//! a restart too — and see each change once, in revision order.
//!
//! Bounded: after each entry, changes more than `keep` revisions old are
//! dropped (one range deletion every `keep / 8` revisions, decided by the
//! revision alone, so replicas with the same `keep` store the same history
//! whatever batches they applied). `m:hstart` says from which revision on
//! the history is whole; a store that kept revisions before it kept a
//! history starts it at its next revision.

use super::KvKeys;
use crate::error::{Error, Result};
use crate::wire::HistoryEvent;
use bytes::Bytes;
use prost::Message as _;
use rocksdb::{WriteBatch, DB};

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// A change of one key, as a watcher gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventKind,
    pub key: Bytes,
    /// The value written (empty for a delete).
    pub value: Bytes,
    /// The revision of the change.
    pub mod_revision: u64,
    /// The names of the Redis keyspace notifications this change makes
    /// (`set`, `incrby`, `hset`, `lpush`, `expired`, `del`…, as Redis
    /// names them; empty for a FLUSHALL, which Redis does not notify per
    /// key), when a Redis command or expiry made it; `None` for floyd's
    /// own calls, and for changes read back from the stored history (a
    /// live change carries them, a replayed one does not).
    pub redis_events: Option<&'static [&'static str]>,
}

impl WatchEvent {
    /// Memory it holds, for the bound on a watcher's queue.
    pub fn size(&self) -> usize {
        self.key.len() + self.value.len() + 32
    }
}

/// `m:hstart` when no history is kept (`history_revisions` 0): a watch
/// can start from the next revision only.
pub const NONE_KEPT: u64 = u64::MAX;

/// Drops the whole history (none is kept any more).
pub(super) fn drop_all(batch: &mut WriteBatch, keys: &KvKeys) {
    batch.delete_range(keys.history_from(0), keys.history_from(u64::MAX));
}

/// Writes the changes of one entry (in revision order) into `batch`.
pub(super) fn store(batch: &mut WriteBatch, keys: &KvKeys, events: &[WatchEvent]) {
    let mut position = (0, 0u32);
    for e in events {
        let sub = if position.0 == e.mod_revision {
            position.1 + 1
        } else {
            0
        };
        position = (e.mod_revision, sub);
        let stored = HistoryEvent {
            r#type: match e.kind {
                EventKind::Put => 0,
                EventKind::Delete => 1,
            },
            key: e.key.clone(),
            value: e.value.clone(),
        };
        batch.put(keys.history(e.mod_revision, sub), stored.encode_to_vec());
    }
}

/// After an entry that brought the group to `revision`: drops what is more
/// than `keep` revisions old, in steps of `keep / 8`. `start` is the oldest
/// revision kept, moved here and in `m:hstart`.
pub(super) fn trim(batch: &mut WriteBatch, keys: &KvKeys, start: &mut u64, revision: u64, keep: u64) {
    let step = (keep / 8).max(1);
    let oldest_kept = revision.saturating_sub(keep) / step * step;
    if oldest_kept <= *start {
        return;
    }
    batch.delete_range(keys.history_from(*start), keys.history_from(oldest_kept));
    *start = oldest_kept;
    batch.put(keys.history_start(), start.to_be_bytes());
}

/// The oldest revision the history holds whole, as stored (`None`: it was
/// never started).
pub(super) fn stored_start(db: &DB, keys: &KvKeys) -> Result<Option<u64>> {
    match db.get_pinned(keys.history_start())? {
        None => Ok(None),
        Some(v) => {
            Ok(Some(u64::from_be_bytes(v.as_ref().try_into().map_err(|_| {
                Error::Corruption("m:hstart is not 8 bytes".into())
            })?)))
        }
    }
}

/// The changes of revisions `from..=to` to keys in `[start, end)` (`end`
/// empty: to the last key), in revision order.
pub fn read(db: &DB, keys: &KvKeys, from: u64, to: u64, start: &[u8], end: &[u8]) -> Result<Vec<WatchEvent>> {
    let mut out = Vec::new();
    if from > to {
        return Ok(out);
    }
    let prefix = keys.history_prefix();
    let mut it = db.raw_iterator();
    it.seek(keys.history_from(from));
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        if !k.starts_with(&prefix) || k.len() != prefix.len() + 12 {
            break;
        }
        let rev = u64::from_be_bytes(k[prefix.len()..prefix.len() + 8].try_into().expect("8 bytes"));
        if rev > to {
            break;
        }
        let e = HistoryEvent::decode(v)
            .map_err(|e| Error::Corruption(format!("a history event does not decode: {e}")))?;
        if in_range(&e.key, start, end) {
            out.push(WatchEvent {
                kind: if e.r#type == 1 {
                    EventKind::Delete
                } else {
                    EventKind::Put
                },
                key: e.key,
                value: e.value,
                mod_revision: rev,
                redis_events: None,
            });
        }
        it.next();
    }
    it.status()?;
    Ok(out)
}

/// Whether `key` lies in `[start, end)` (`end` empty: no upper bound).
pub fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    key >= start && (end.is_empty() || key < end)
}
