//! Keys that expire (Redis's TTL, protocol 8): a key given a deadline on
//! the log's clock is deleted by the first protocol-6 entry applied at or
//! after it, on every replica at the same index (as leases are: the log's
//! time is the leader's stamp, `log_time.rs`), and reads treat it as gone
//! from its deadline on, on the clock of the node that serves them.
//!
//! Stored as an index `t` + deadline + key (nothing beside the key's value
//! or revisions, so a key without a TTL costs nothing and stores of the
//! previous release read the same), and kept in memory per group as Redis
//! keeps its `expires` dict: a read asks the table, not the disk.
//!
//! An apply sees the table as written plus the changes of its own batch
//! ([`ExpiryStage`]); the table takes them once the batch is written.

use super::KvKeys;
use crate::error::{Error, Result};
use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use rocksdb::{WriteBatch, DB};
use std::collections::{BTreeSet, HashMap};

/// Keys expired by one entry at most: the rest go with the next ones (reads
/// already treat them as gone), so one entry stays bounded.
pub const MAX_KEYS_EXPIRED_PER_ENTRY: usize = 1_000;

/// A group's expiring keys as written.
#[derive(Debug, Default)]
pub struct ExpiryTable {
    by_key: HashMap<Vec<u8>, u64>,
    by_deadline: BTreeSet<(u64, Vec<u8>)>,
}

impl ExpiryTable {
    /// Reads the index of `keys`' group.
    pub fn load(db: &DB, keys: &KvKeys) -> Result<ExpiryTable> {
        let prefix = keys.key_expiries();
        let mut table = ExpiryTable::default();
        let mut it = db.raw_iterator();
        it.seek(&prefix);
        while let Some(k) = it.key() {
            if !k.starts_with(&prefix) {
                break;
            }
            let rest = &k[prefix.len()..];
            if rest.len() < 9 {
                return Err(Error::Corruption(format!(
                    "an expiring key's index entry of {} bytes",
                    k.len()
                )));
            }
            let deadline = u64::from_be_bytes(rest[..8].try_into().expect("8 bytes"));
            table.set(&rest[8..], Some(deadline));
            it.next();
        }
        it.status()?;
        Ok(table)
    }

    /// `key`'s deadline, if it has one.
    pub fn deadline(&self, key: &[u8]) -> Option<u64> {
        self.by_key.get(key).copied()
    }

    /// The keys whose deadline is at or before `now`.
    pub fn expired_keys(&self, now: u64) -> impl Iterator<Item = &[u8]> {
        self.by_deadline
            .iter()
            .take_while(move |(d, _)| *d <= now)
            .map(|(_, k)| k.as_slice())
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    fn set(&mut self, key: &[u8], deadline: Option<u64>) {
        if let Some(old) = self.by_key.remove(key) {
            self.by_deadline.remove(&(old, key.to_vec()));
        }
        if let Some(d) = deadline {
            self.by_key.insert(key.to_vec(), d);
            self.by_deadline.insert((d, key.to_vec()));
        }
    }
}

/// A group's table, shared by its applies and its readers; `None` until
/// first needed and after the state was replaced (a snapshot loaded).
#[derive(Default)]
pub struct Expiries {
    table: RwLock<Option<ExpiryTable>>,
}

/// The table, loaded.
pub type TableGuard<'a> = parking_lot::MappedRwLockReadGuard<'a, ExpiryTable>;

impl Expiries {
    /// The table as written, loading it first if needed.
    pub fn loaded(&self, db: &DB, keys: &KvKeys) -> Result<TableGuard<'_>> {
        {
            let read = self.table.read();
            if read.is_some() {
                return Ok(RwLockReadGuard::map(read, |t| t.as_ref().expect("loaded")));
            }
        }
        let mut write = self.table.write();
        if write.is_none() {
            *write = Some(ExpiryTable::load(db, keys)?);
        }
        let read = RwLockWriteGuard::downgrade(write);
        Ok(RwLockReadGuard::map(read, |t| t.as_ref().expect("loaded")))
    }

    /// Takes a written batch's changes.
    pub fn commit(&self, changes: HashMap<Vec<u8>, Option<u64>>) {
        if changes.is_empty() {
            return;
        }
        let mut write = self.table.write();
        // (Not loaded: the next use reads what the batch wrote.)
        if let Some(table) = write.as_mut() {
            for (key, deadline) in changes {
                table.set(&key, deadline);
            }
        }
    }

    /// Something else rewrote the group's state: read the index again.
    pub fn forget(&self) {
        *self.table.write() = None;
    }
}

/// The table as an apply sees it: as written, with its batch's changes.
pub struct ExpiryStage<'a> {
    table: Option<&'a ExpiryTable>,
    staged: HashMap<Vec<u8>, Option<u64>>,
}

impl<'a> ExpiryStage<'a> {
    pub fn new(table: Option<&'a ExpiryTable>) -> Self {
        ExpiryStage {
            table,
            staged: HashMap::new(),
        }
    }

    /// Whether no key has a deadline (a put or delete then skips the lookup).
    pub fn is_empty(&self) -> bool {
        self.staged.is_empty() && self.table.is_none_or(ExpiryTable::is_empty)
    }

    pub fn deadline(&self, key: &[u8]) -> Option<u64> {
        match self.staged.get(key) {
            Some(d) => *d,
            None => self.table.and_then(|t| t.deadline(key)),
        }
    }

    /// Gives `key` a deadline (`None`: none), in `batch` too.
    pub fn set(&mut self, batch: &mut WriteBatch, keys: &KvKeys, key: &[u8], deadline: Option<u64>) {
        let old = self.deadline(key);
        if old == deadline {
            return;
        }
        if let Some(old) = old {
            batch.delete(keys.key_expiry(old, key));
        }
        if let Some(d) = deadline {
            batch.put(keys.key_expiry(d, key), []);
        }
        self.staged.insert(key.to_vec(), deadline);
    }

    /// Up to `cap` keys whose deadline is at or before `now`, earliest first.
    pub fn due(&self, now: u64, cap: usize) -> Vec<Vec<u8>> {
        let mut due: Vec<(u64, Vec<u8>)> = Vec::new();
        if let Some(table) = self.table {
            for (d, key) in &table.by_deadline {
                if *d > now || due.len() >= cap {
                    break;
                }
                // (Unless the batch moved or removed it.)
                if !self.staged.contains_key(key) {
                    due.push((*d, key.clone()));
                }
            }
        }
        for (key, d) in &self.staged {
            if let Some(d) = d.filter(|d| *d <= now) {
                due.push((d, key.clone()));
            }
        }
        due.sort();
        due.truncate(cap);
        due.into_iter().map(|(_, k)| k).collect()
    }

    /// The earliest deadline, changes included.
    pub fn next_deadline(&self) -> Option<u64> {
        let staged = self.staged.values().flatten().min().copied();
        let written = self.table.and_then(|t| {
            t.by_deadline
                .iter()
                .find(|(_, k)| !self.staged.contains_key(k))
                .map(|(d, _)| *d)
        });
        staged.into_iter().chain(written).min()
    }

    pub fn into_changes(self) -> HashMap<Vec<u8>, Option<u64>> {
        self.staged
    }
}

/// Before every protocol-6 entry, at its log time `now`: deletes the keys
/// whose deadline has passed (up to [`MAX_KEYS_EXPIRED_PER_ENTRY`]), all at
/// one revision, each with a delete event for watchers.
pub(super) fn expire_due(view: &mut super::revision::View<'_>, now: u64) -> Result<()> {
    if view.expiry.is_empty() {
        return Ok(());
    }
    let mut deleted = false;
    for key in view.expiry.due(now, MAX_KEYS_EXPIRED_PER_ENTRY) {
        deleted |= view.delete(&bytes::Bytes::from(key))?;
    }
    if deleted {
        view.revision += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_sees_its_changes_over_the_table_and_lists_what_is_due_in_order() {
        let keys = KvKeys::of(3);
        let mut table = ExpiryTable::default();
        table.set(b"a", Some(10));
        table.set(b"b", Some(20));
        table.set(b"c", Some(30));
        let mut stage = ExpiryStage::new(Some(&table));
        let mut batch = WriteBatch::default();
        stage.set(&mut batch, &keys, b"b", None);
        stage.set(&mut batch, &keys, b"d", Some(5));
        stage.set(&mut batch, &keys, b"c", Some(15));
        assert_eq!(stage.deadline(b"a"), Some(10));
        assert_eq!(stage.deadline(b"b"), None);
        assert_eq!(
            stage.due(15, 10),
            vec![b"d".to_vec(), b"a".to_vec(), b"c".to_vec()]
        );
        assert_eq!(stage.due(15, 2), vec![b"d".to_vec(), b"a".to_vec()]);
        assert_eq!(stage.next_deadline(), Some(5));
        // Index: delete b@20, put d@5, delete c@30, put c@15.
        assert_eq!(batch.len(), 4);
        let changes = stage.into_changes();
        let shared = Expiries::default();
        *shared.table.write() = Some(table);
        shared.commit(changes);
        let t = shared.table.read();
        let t = t.as_ref().unwrap();
        assert_eq!(
            (t.deadline(b"b"), t.deadline(b"c"), t.deadline(b"d")),
            (None, Some(15), Some(5))
        );
        assert_eq!(t.len(), 3);
    }
}
