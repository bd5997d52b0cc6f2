//! RocksDB storage of the Raft log and metadata (`<path>/log`), for every
//! group of a host (`keys.rs` has the layout; group 0, the one group of a
//! node opened on its own, keeps the keys of stores from before groups).
//!
//! A group's entries live in the default column family under its prefix +
//! big-endian index (so its first and last index are one seek each). The
//! metadata lives in the `meta` column family: term, vote and commit for
//! the hard state, the latest configuration in the log (written with the
//! entries that bring it), the log start (the last compacted entry's index
//! and term), and the member list the group bootstrapped with. Apart, a
//! table file of entries holds nothing else, so a compacted prefix of a log
//! can go by dropping whole files ([`LogStore::compact`]). Every write is
//! one WriteBatch across both, for one group or many; a Ready's log changes
//! and (term, vote) are synced together before anything that depends on
//! them leaves the node.

mod keys;
pub mod memory;
pub mod snapshots;

use crate::core::{HardState, Membership};
use crate::error::{Error, Result};
use crate::wire::ConfigState;
use crate::wire::Entry;
use parking_lot::{MappedRwLockReadGuard, RwLock, RwLockReadGuard};
use prost::Message as _;
use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, IteratorMode, WriteBatch, WriteOptions, DB};
use std::path::Path;

use keys::Meta;
pub(crate) use keys::INSERT_HINT_PREFIX_LEN;
pub use keys::{entry_key, GroupId, ENTRY_PREFIX};

/// The column family of the metadata keys (`m:*`).
const META_CF: &str = "meta";
use crate::limits::MAX_WAL_BYTES;

/// What the log store holds after a restart.
#[derive(Debug, Clone, Default)]
pub struct LoadedLog {
    pub hard_state: HardState,
    /// The last compacted entry's (index, term); (0, 0) if none.
    pub log_start: (u64, u64),
    /// Contiguous from `log_start.0 + 1`.
    pub entries: Vec<Entry>,
    /// `m:conf`: the latest configuration in the log, with its index.
    pub config: Option<(u64, Membership)>,
}

/// The Raft log and metadata in RocksDB. Thread-safe; writes are serialised by the caller
/// (one persisting thread) so that Readies reach the disk in the order they were taken.
/// After [`LogStore::close`] every call fails with `Stopped`.
pub struct LogStore {
    db: Db,
    /// Tests' power cuts: how long each write-ahead log file was at the
    /// last sync (see [`LogStore::power_cut_image`]).
    #[cfg(test)]
    synced: power_cut::SyncedWal,
}

/// A RocksDB handle that can be closed while others still hold its owner:
/// a closed node releases its directory's lock even if its handle lives on.
/// Using it costs one uncontended read lock.
pub(crate) struct Db {
    db: RwLock<Option<DB>>,
    what: &'static str,
}

impl Db {
    pub(crate) fn new(db: DB, what: &'static str) -> Db {
        Db {
            db: RwLock::new(Some(db)),
            what,
        }
    }

    /// The open database, or `Stopped` once closed. Hold the guard briefly and
    /// never take a second one while holding it (a waiting `close` would deadlock).
    pub(crate) fn get(&self) -> Result<MappedRwLockReadGuard<'_, DB>> {
        RwLockReadGuard::try_map(self.db.read(), Option::as_ref)
            .map_err(|_| Error::Stopped(format!("the {} is closed", self.what)))
    }

    /// Swaps the database for the one `reopen` returns, once every call in
    /// progress has finished: the old one is closed before `reopen` runs (it
    /// may move directories). `Stopped` if closed already.
    pub(crate) fn replace(&self, reopen: impl FnOnce() -> Result<DB>) -> Result<()> {
        let mut slot = self.db.write();
        if slot.take().is_none() {
            return Err(Error::Stopped(format!("the {} is closed", self.what)));
        }
        *slot = Some(reopen()?);
        Ok(())
    }

    /// Closes the database once every call in progress has finished. Idempotent.
    pub(crate) fn close(&self) {
        let db = self.db.write().take();
        drop(db);
    }
}

/// Changes accumulated from one or more Readies, written as one WriteBatch.
#[derive(Default)]
pub struct LogBatch {
    /// The entries' changes.
    batch: WriteBatch,
    /// The metadata's: a value to put, or `None` to delete the key. Kept
    /// apart until the write, which has the column family's handle.
    meta: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ops: usize,
}

impl LogBatch {
    /// Adds one Ready's worth of `group`'s changes: truncation first, then
    /// entries, then hard state (all of it).
    pub fn add(
        &mut self,
        group: GroupId,
        hard_state: Option<&HardState>,
        truncate_from: Option<u64>,
        entries: &[Entry],
    ) {
        self.add_entries(group, truncate_from, entries);
        if let Some(hs) = hard_state {
            self.set_hard_state(group, hs, true);
        }
    }

    /// Records `group`'s hard state: its commit index, and its term and vote
    /// too unless `with_term_and_vote` is false because those are stored
    /// already (a commit moving is the common case, once per write per
    /// group: two puts fewer each time).
    pub fn set_hard_state(&mut self, group: GroupId, hs: &HardState, with_term_and_vote: bool) {
        if with_term_and_vote {
            self.put_meta(group, Meta::Term, hs.term.to_be_bytes().to_vec());
            let vote = hs.vote.as_ref().map(|v| v.as_bytes().to_vec());
            self.meta.push((keys::meta_key(group, Meta::Vote), vote));
        }
        self.put_meta(group, Meta::Commit, hs.commit.to_be_bytes().to_vec());
        self.ops += 1;
    }

    /// Truncation first, then entries.
    fn add_entries(&mut self, group: GroupId, truncate_from: Option<u64>, entries: &[Entry]) {
        if let Some(from) = truncate_from {
            self.batch
                .delete_range(entry_key(group, from), entry_key(group, u64::MAX));
            self.ops += 1;
        }
        for e in entries {
            self.batch.put(entry_key(group, e.index), e.encode_to_vec());
            self.ops += 1;
        }
    }

    /// Makes `group`'s log start after (`index`, `term`): deletes every entry
    /// up to `index` (a compaction, or the point of an installed snapshot).
    pub fn set_log_start(&mut self, group: GroupId, index: u64, term: u64) {
        self.batch
            .delete_range(entry_key(group, 0), entry_key(group, index + 1));
        let mut v = [0u8; 16];
        v[..8].copy_from_slice(&index.to_be_bytes());
        v[8..].copy_from_slice(&term.to_be_bytes());
        self.put_meta(group, Meta::LogStart, v.to_vec());
        self.ops += 1;
    }

    /// Records `group`'s configuration in force after these changes.
    pub fn set_config(&mut self, group: GroupId, index: u64, m: &Membership) {
        let state = ConfigState {
            index,
            config: Some(m.to_wire()),
        };
        self.put_meta(group, Meta::Config, state.encode_to_vec());
        self.ops += 1;
    }

    fn put_meta(&mut self, group: GroupId, what: Meta, value: Vec<u8>) {
        self.meta.push((keys::meta_key(group, what), Some(value)));
    }

    pub fn is_empty(&self) -> bool {
        self.ops == 0
    }

    /// About how many bytes it writes: the entries' batch and the metadata.
    pub fn size_in_bytes(&self) -> usize {
        let meta: usize = self
            .meta
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
            .sum();
        self.batch.size_in_bytes() + meta
    }
}

impl LogStore {
    /// Opens (creating if needed) the log store in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let mut opts = memory::db_options();
        opts.create_missing_column_families(true);
        opts.set_max_total_wal_size(MAX_WAL_BYTES);
        let families = [
            ColumnFamilyDescriptor::new(rocksdb::DEFAULT_COLUMN_FAMILY_NAME, memory::log_options()?),
            ColumnFamilyDescriptor::new(META_CF, memory::log_options()?),
        ];
        let db = DB::open_cf_descriptors(&opts, dir, families).map_err(|e| annotate(e, dir))?;
        move_meta_out_of_entries(&db).map_err(|e| annotate(e, dir))?;
        let store = LogStore {
            db: Db::new(db, "log store"),
            #[cfg(test)]
            synced: power_cut::SyncedWal::new(dir),
        };
        store.after_sync();
        Ok(store)
    }

    /// Tests' power cuts: everything in the write-ahead log so far is on disk.
    fn after_sync(&self) {
        #[cfg(test)]
        self.synced.record();
    }

    /// Closes the database, releasing its directory; later calls fail with `Stopped`.
    pub fn close(&self) {
        self.db.close();
    }

    /// Writes a batch; with `sync`, returns only once it is on stable storage.
    pub fn write(&self, batch: LogBatch, sync: bool) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        let db = self.db.get()?;
        let meta = meta_cf(&db)?;
        let LogBatch {
            mut batch,
            meta: changes,
            ..
        } = batch;
        for (key, value) in changes {
            match value {
                Some(v) => batch.put_cf(meta, key, v),
                None => batch.delete_cf(meta, key),
            }
        }
        db.write_opt(batch, &wo)?;
        drop(db);
        if sync {
            self.after_sync();
        }
        Ok(())
    }

    /// Compacts `group`'s log up to (`index`, `term`), which a snapshot covers:
    /// records the new start, synced, then gives the disk space of the
    /// entries before it back. The order matters: dropping a table file is a
    /// synced edit of RocksDB's MANIFEST, so a start written without a sync
    /// could be lost in a power cut that keeps the files' deletion, and the
    /// log would no longer open ("not contiguous"). One sync per snapshot.
    pub fn compact(&self, group: GroupId, index: u64, term: u64) -> Result<()> {
        let mut batch = LogBatch::default();
        batch.set_log_start(group, index, term);
        self.write(batch, true)?;
        self.reclaim(group, index)
    }

    /// Reads `group`'s hard state and log, checking that the log is
    /// contiguous from its start.
    pub fn load(&self, group: GroupId) -> Result<LoadedLog> {
        let hard_state = self.hard_state(group)?;
        let log_start = self.log_start(group)?;
        let mut entries = Vec::new();
        let db = self.db.get()?;
        let first = log_start.0 + 1;
        let from = entry_key(group, first);
        let prefix = keys::entry_prefix(group);
        let iter = db.iterator(IteratorMode::From(from.as_ref(), rocksdb::Direction::Forward));
        for item in iter {
            let (key, value) = item?;
            if !key.starts_with(prefix.as_ref()) {
                break;
            }
            let index = keys::index_of(group, &key)?;
            let entry = decode_entry(index, &value)?;
            let expected = first + entries.len() as u64;
            if index != expected {
                return Err(Error::Corruption(format!(
                    "log is not contiguous: expected index {expected}, found {index}"
                )));
            }
            entries.push(entry);
        }
        drop(db);
        let config = self.stored_config(group)?;
        Ok(LoadedLog {
            hard_state,
            log_start,
            entries,
            config,
        })
    }

    /// `group`'s last compacted entry's (index, term), (0, 0) if its log was never compacted.
    pub fn log_start(&self, group: GroupId) -> Result<(u64, u64)> {
        let db = self.db.get()?;
        let Some(v) = db.get_pinned_cf(meta_cf(&db)?, keys::meta_key(group, Meta::LogStart))? else {
            return Ok((0, 0));
        };
        match (
            v.get(..8).and_then(keys::decode_u64),
            v.get(8..).and_then(keys::decode_u64),
        ) {
            (Some(i), Some(t)) if v.len() == 16 => Ok((i, t)),
            _ => Err(Error::Corruption("m:logstart is not 16 bytes".into())),
        }
    }

    /// Gives back the disk space of the deleted prefix of the log: drops the
    /// files that hold nothing but entries up to `up_to` (a log is written in
    /// index order, so past level 0 that is most of them); RocksDB's own
    /// compactions drop the rest with the range deletion. Cheap: it rewrites
    /// nothing, so the log writer that calls it never stalls (a manual
    /// compaction here held every write up for 50 to 280 ms with 4 KiB values).
    /// The start past `up_to` must be durable first: see [`LogStore::compact`].
    fn reclaim(&self, group: GroupId, up_to: u64) -> Result<()> {
        let db = self.db.get()?;
        // Both ends are inclusive: a file whose last key is entry `up_to + 1`
        // still holds a live entry. (Files that hold other groups' keys as
        // well are not dropped: the range deletion frees them in time.)
        db.delete_file_in_range(entry_key(group, 0), entry_key(group, up_to))?;
        Ok(())
    }

    /// `group`'s latest configuration, if one was ever stored.
    pub fn stored_config(&self, group: GroupId) -> Result<Option<(u64, Membership)>> {
        let db = self.db.get()?;
        let Some(v) = db.get_cf(meta_cf(&db)?, keys::meta_key(group, Meta::Config))? else {
            return Ok(None);
        };
        let state = ConfigState::decode(v.as_slice())
            .map_err(|e| Error::Corruption(format!("stored configuration does not decode: {e}")))?;
        let config = state
            .config
            .ok_or_else(|| Error::Corruption("stored configuration is empty".into()))?;
        Ok(Some((state.index, Membership::from_wire(config))))
    }

    /// The member list `group` bootstrapped with here, if it did.
    pub fn bootstrap_members(&self, group: GroupId) -> Result<Option<Vec<String>>> {
        let db = self.db.get()?;
        let Some(v) = db.get_cf(meta_cf(&db)?, keys::meta_key(group, Meta::Bootstrap))? else {
            return Ok(None);
        };
        let text =
            String::from_utf8(v).map_err(|_| Error::Corruption("bootstrap members are not UTF-8".into()))?;
        Ok(Some(
            text.split(',')
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect(),
        ))
    }

    /// Stores `group`'s bootstrap member list.
    ///
    /// Not synced: until the group's first synced write (its first vote,
    /// entry or term, synced before any message that depends on it leaves)
    /// carries this one to disk with it (one WAL, written in order), nothing
    /// depends on it, and a group that lost it bootstraps again from the same
    /// options. Opening thousands of groups costs no fsync each.
    pub fn set_bootstrap_members(&self, group: GroupId, members: &[String]) -> Result<()> {
        let db = self.db.get()?;
        let key = keys::meta_key(group, Meta::Bootstrap);
        db.put_cf(meta_cf(&db)?, key, members.join(","))?;
        Ok(())
    }

    /// `group`'s persisted (term, vote, commit).
    pub fn hard_state(&self, group: GroupId) -> Result<HardState> {
        let db = self.db.get()?;
        let meta = meta_cf(&db)?;
        let term = get_u64(&db, meta, &keys::meta_key(group, Meta::Term))?;
        let commit = get_u64(&db, meta, &keys::meta_key(group, Meta::Commit))?;
        let vote = match db.get_cf(meta, keys::meta_key(group, Meta::Vote))? {
            None => None,
            Some(v) => Some(String::from_utf8(v).map_err(|_| Error::Corruption("vote is not UTF-8".into()))?),
        };
        Ok(HardState { term, vote, commit })
    }

    /// Index of `group`'s first entry (0 when its log is empty): one seek.
    pub fn first_index(&self, group: GroupId) -> Result<u64> {
        let db = self.db.get()?;
        let mut it = db.raw_iterator();
        it.seek(entry_key(group, 0));
        index_at(group, &it)
    }

    /// Index of `group`'s last entry (0 when its log is empty): one seek.
    pub fn last_index(&self, group: GroupId) -> Result<u64> {
        let db = self.db.get()?;
        let mut it = db.raw_iterator();
        it.seek_for_prev(entry_key(group, u64::MAX));
        index_at(group, &it)
    }

    /// `group`'s entry at `index`, if present.
    pub fn entry(&self, group: GroupId, index: u64) -> Result<Option<Entry>> {
        match self.db.get()?.get_pinned(entry_key(group, index))? {
            Some(v) => Ok(Some(decode_entry(index, &v)?)),
            None => Ok(None),
        }
    }

    /// The groups that have entries or metadata here, sorted.
    pub fn groups(&self) -> Result<Vec<GroupId>> {
        let db = self.db.get()?;
        let mut groups = std::collections::BTreeSet::new();
        let meta = meta_cf(&db)?;
        for cf in [None, Some(meta)] {
            let mut it = match cf {
                None => db.raw_iterator(),
                Some(cf) => db.raw_iterator_cf(cf),
            };
            it.seek_to_first();
            while let Some(key) = it.key() {
                let Some(group) = keys::group_of_key(key) else {
                    it.next();
                    continue;
                };
                groups.insert(group);
                // Past every key of this group: one seek per group.
                match keys::past_group_of(key) {
                    Some(end) => it.seek(end),
                    None => break,
                }
            }
            it.status()?;
        }
        Ok(groups.into_iter().collect())
    }

    /// Deletes everything `group` has here (its entries and metadata), synced.
    pub fn drop_group(&self, group: GroupId) -> Result<()> {
        let db = self.db.get()?;
        let mut batch = WriteBatch::default();
        batch.delete_range(entry_key(group, 0), entry_key(group, u64::MAX));
        batch.delete(entry_key(group, u64::MAX));
        batch.delete_range_cf(meta_cf(&db)?, keys::meta_start(group), keys::meta_end(group));
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        db.write_opt(batch, &wo)?;
        drop(db);
        self.after_sync();
        Ok(())
    }
}

fn index_at(group: GroupId, it: &rocksdb::DBRawIterator<'_>) -> Result<u64> {
    match it.key() {
        Some(k) if k.starts_with(keys::entry_prefix(group).as_ref()) => keys::index_of(group, k),
        _ => {
            it.status()?;
            Ok(0)
        }
    }
}

fn get_u64(db: &DB, meta: &ColumnFamily, key: &[u8]) -> Result<u64> {
    match db.get_pinned_cf(meta, key)? {
        None => Ok(0),
        Some(v) => keys::decode_u64(&v).ok_or_else(|| {
            Error::Corruption(format!(
                "{} is not an 8-byte integer",
                String::from_utf8_lossy(key)
            ))
        }),
    }
}

fn meta_cf(db: &DB) -> Result<&ColumnFamily> {
    db.cf_handle(META_CF)
        .ok_or_else(|| Error::Corruption(format!("the log store has no `{META_CF}` column family")))
}

/// A store written before the metadata had its own column family kept it
/// among the entries: moves it over, in one synced batch, so a crash leaves
/// every key in one place or the other, never in neither.
fn move_meta_out_of_entries(db: &DB) -> Result<()> {
    let meta = meta_cf(db)?;
    let mut batch = WriteBatch::default();
    for item in db.iterator(IteratorMode::From(keys::META_PREFIX, rocksdb::Direction::Forward)) {
        let (key, value) = item?;
        if !key.starts_with(keys::META_PREFIX) {
            break;
        }
        batch.put_cf(meta, &key, &value);
        batch.delete(&key);
    }
    if batch.is_empty() {
        return Ok(());
    }
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    db.write_opt(batch, &wo)?;
    Ok(())
}

fn decode_entry(index: u64, bytes: &[u8]) -> Result<Entry> {
    let entry = Entry::decode(bytes)
        .map_err(|e| Error::Corruption(format!("log entry {index} does not decode: {e}")))?;
    if entry.index != index {
        return Err(Error::Corruption(format!(
            "log key {index} holds entry {}",
            entry.index
        )));
    }
    Ok(entry)
}

/// Whether a storage error says the disk is full. RocksDB says so only in
/// words (an `IOError` whose text names it): a test against the RocksDB in
/// use (`a_full_disk_is_reported_in_words_is_no_space_knows`) catches an
/// upgrade that changes them.
pub(crate) fn is_no_space(e: &Error) -> bool {
    matches!(e, Error::Io(m) if m.contains("No space left on device") || m.contains("NoSpace"))
}

/// Adds the directory to an open error so the user knows which store failed.
pub(crate) fn annotate(e: impl Into<Error>, dir: &Path) -> Error {
    match e.into() {
        Error::Io(m) => Error::Io(format!("{}: {m}", dir.display())),
        Error::Corruption(m) => Error::Corruption(format!("{}: {m}", dir.display())),
        other => other,
    }
}

#[cfg(test)]
mod power_cut;
#[cfg(test)]
mod tests;
