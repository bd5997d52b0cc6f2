//! Snapshots of a group's key-value state, in one of two forms:
//!
//! - a **checkpoint** (`kv/`, taken by a group whose store is its own, a
//!   node opened on its own): a RocksDB checkpoint of the whole store, hard
//!   links to its immutable files, so taking one is cheap and does not stall
//!   applies; restoring one into a private store swaps directories (`db` →
//!   `db.old`, snapshot → `db`, then `db.old` is deleted; a crash in
//!   between leaves `db.old`, and the next open finishes or undoes the swap).
//!   Nodes of earlier versions take and load only this form.
//! - an **export** (`kv.sst`, taken by a group of a shared store): one table
//!   file with the group's keys and range deletions over every key the group
//!   may have, so ingesting it replaces the group's state in one step, and
//!   the other groups of the store are untouched.
//!
//! Either holds everything the state machine has, the applied index and the
//! log's time included, so restoring one restores the point it was taken.

use super::progress::Progress;
use super::{applied_index, open_db, KvKeys, KvStateMachine};
use crate::error::{Error, Result};
use crate::storage::snapshots::io;
use rocksdb::checkpoint::Checkpoint;
use rocksdb::{IngestExternalFileOptions, IteratorMode, Options as DbOptions, SstFileWriter, DB};
use std::path::{Path, PathBuf};

/// The table file of an export, inside its directory.
pub(super) const EXPORT_FILE: &str = "kv.sst";

impl KvStateMachine {
    /// Whether this group's store is its own (checkpoints) or shared (exports).
    pub fn is_private(&self) -> bool {
        self.private
    }

    /// Writes a consistent copy of the whole store to `dir` (which must
    /// not exist; its parent must be on the same file system) and returns
    /// the applied index it holds. For a private store.
    pub fn checkpoint(&self, dir: &Path) -> Result<u64> {
        {
            let db = self.db()?;
            Checkpoint::new(&db)?
                .create_checkpoint(dir)
                .map_err(|e| crate::storage::annotate(e, dir))?;
        }
        snapshot_applied_index(dir)
    }

    /// Replaces the whole store with the checkpoint in `dir` (moved into
    /// place, so it is consumed) and returns its applied index. Calls in
    /// progress finish first; none sees a half-restored state. For a private store.
    pub fn restore(&self, dir: &Path) -> Result<u64> {
        if !self.private {
            return Err(Error::Internal("a shared store is never restored whole".into()));
        }
        let index = snapshot_applied_index(dir)?;
        let store = &self.store;
        let old = with_suffix(&store.dir, ".old");
        // (Forgotten after the swap: nothing applies to this group meanwhile,
        // its apply worker being the one restoring.)
        let restored = store.db.replace(|| {
            if old.exists() {
                std::fs::remove_dir_all(&old).map_err(|e| io(&old, e))?;
            }
            std::fs::rename(&store.dir, &old).map_err(|e| io(&store.dir, e))?;
            std::fs::rename(dir, &store.dir).map_err(|e| io(dir, e))?;
            sync_parent(&store.dir)?;
            let db = open_db(&store.dir, store.shared)?;
            std::fs::remove_dir_all(&old).map_err(|e| io(&old, e))?;
            Ok(db)
        });
        self.forget_applied();
        restored.map(|_| index)
    }

    /// Writes the group's state, as of now, to `dir/kv.sst` (`dir` exists)
    /// and returns the applied index it holds. Applies may go on meanwhile.
    pub fn export(&self, dir: &Path) -> Result<u64> {
        let db = self.db()?;
        let snapshot = db.snapshot();
        let applied = Progress::read(&self.keys, |k| Ok(snapshot.get(k)?))?.0.applied;
        let file = dir.join(EXPORT_FILE);
        write_export(&file, &self.keys, |start| {
            snapshot.iterator(IteratorMode::From(start, rocksdb::Direction::Forward))
        })?;
        Ok(applied)
    }

    /// Replaces the group's state with the export at `file`, in one step
    /// (readers see the state before or after, nothing in between), and
    /// returns the applied index it holds. The file stays.
    pub fn import(&self, file: &Path) -> Result<u64> {
        let db = self.db()?;
        let mut opts = IngestExternalFileOptions::default();
        opts.set_move_files(false);
        let ingested = db.ingest_external_file_opts(&opts, vec![file]);
        self.forget_applied();
        ingested.map_err(|e| crate::storage::annotate(e, file))?;
        applied_index(&db, &self.keys)
    }

    /// Loads a checkpoint (`dir`, a whole store of one group 0) into this
    /// group of a shared store: its keys are exported to a table file beside
    /// it, which is then imported.
    pub fn import_checkpoint(&self, dir: &Path, scratch: &Path) -> Result<u64> {
        if self.keys != KvKeys::of(0) {
            return Err(Error::Corruption(
                "a checkpoint snapshot holds group 0's state, not this group's".into(),
            ));
        }
        let source = DB::open_for_read_only(&DbOptions::default(), dir, false)
            .map_err(|e| crate::storage::annotate(e, dir))?;
        write_export(scratch, &self.keys, |start| {
            source.iterator(IteratorMode::From(start, rocksdb::Direction::Forward))
        })?;
        drop(source);
        let index = self.import(scratch);
        let _ = std::fs::remove_file(scratch);
        index
    }
}

/// Writes a table file that replaces every key `keys` covers: range
/// deletions over all of them, then the keys `scan` finds in those ranges,
/// the group's progress in the separate keys every release reads
/// (`progress.rs`).
fn write_export<'a, I>(file: &Path, keys: &KvKeys, mut scan: impl FnMut(&[u8]) -> I) -> Result<()>
where
    I: Iterator<Item = std::result::Result<(Box<[u8]>, Box<[u8]>), rocksdb::Error>> + 'a,
{
    let opts = crate::storage::memory::kv_options();
    let mut writer = SstFileWriter::create(&opts);
    writer.open(file).map_err(|e| crate::storage::annotate(e, file))?;
    let ranges = keys.ranges();
    for (start, end) in &ranges {
        writer.delete_range(start, end)?;
    }
    for (start, end) in &ranges {
        // The separate keys of a progress found in one key, each written
        // at its place in key order.
        let mut pending = std::collections::VecDeque::new();
        for item in scan(start) {
            let (key, value) = item?;
            if key.as_ref() >= end.as_slice() {
                break;
            }
            while pending
                .front()
                .is_some_and(|(k, _): &(Vec<u8>, _)| k.as_slice() < key.as_ref())
            {
                let (k, v) = pending.pop_front().expect("a pending key");
                writer.put(k, v)?;
            }
            if pending.front().is_some_and(|(k, _)| k.as_slice() == key.as_ref()) {
                // A separate key left beside the one key (never written so):
                // the one key holds the progress.
                continue;
            }
            if key.as_ref() == keys.applied().as_slice() && value.len() != 8 {
                pending = Progress::decode(&value)?.separate_keys(keys).into();
                continue;
            }
            writer.put(key, value)?;
        }
        for (k, v) in pending {
            writer.put(&k, v)?;
        }
    }
    writer.finish().map_err(|e| crate::storage::annotate(e, file))?;
    // Synced with the rest of the snapshot's directory before it is committed.
    std::fs::File::open(file)
        .and_then(|f| f.sync_all())
        .map_err(|e| io(file, e))
}

/// The applied index stored in a checkpoint directory.
fn snapshot_applied_index(dir: &Path) -> Result<u64> {
    let db = DB::open_for_read_only(&DbOptions::default(), dir, false)
        .map_err(|e| crate::storage::annotate(e, dir))?;
    applied_index(&db, &KvKeys::of(0))
}

/// After a crash during [`KvStateMachine::restore`]: with `db` in place the
/// swap was done (only `db.old` is left to delete); without it, `db.old` goes back.
pub(super) fn finish_interrupted_restore(dir: &Path) -> Result<()> {
    let old = with_suffix(dir, ".old");
    if !old.exists() {
        return Ok(());
    }
    if dir.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| io(&old, e))
    } else {
        std::fs::rename(&old, dir).map_err(|e| io(&old, e))?;
        sync_parent(dir)
    }
}

fn with_suffix(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Makes the renames in `path`'s directory durable.
fn sync_parent(path: &Path) -> Result<()> {
    crate::storage::snapshots::sync_dir(path.parent().unwrap_or(Path::new(".")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state_machine::{encode_command, CommandKind};
    use crate::wire::{Entry, EntryType};
    use bytes::Bytes;

    fn put(index: u64, k: &str, v: &str) -> Entry {
        Entry {
            term: 1,
            index,
            r#type: EntryType::EntryCommand as i32,
            payload: encode_command(CommandKind::Put {
                key: Bytes::from(k.to_string()),
                value: Bytes::from(v.to_string()),
            }),
            leader_time_ms: 0,
            log_time_rule: 0,
        }
    }

    #[test]
    fn a_checkpoint_restores_the_state_and_applied_index_it_was_taken_at() {
        let dir = tempfile::tempdir().unwrap();
        let sm = KvStateMachine::open(&dir.path().join("db")).unwrap();
        sm.apply(&[put(1, "a", "1"), put(2, "b", "2")]).unwrap();
        let snap = dir.path().join("snap");
        assert_eq!(sm.checkpoint(&snap).unwrap(), 2);
        // Later applies do not reach the snapshot, and restoring it undoes them.
        sm.apply(&[put(3, "a", "changed"), put(4, "c", "3")]).unwrap();
        assert_eq!(sm.restore(&snap).unwrap(), 2);
        assert_eq!(sm.applied_index().unwrap(), 2);
        assert_eq!(sm.get(b"a").unwrap().unwrap(), b"1");
        assert_eq!(sm.get(b"c").unwrap(), None);
        assert!(!snap.exists(), "the snapshot was moved into place");
        // Applying goes on from the snapshot's index, and survives a reopen.
        sm.apply(&[put(3, "d", "4")]).unwrap();
        sm.close();
        let sm = KvStateMachine::open(&dir.path().join("db")).unwrap();
        assert_eq!(sm.applied_index().unwrap(), 3);
        assert_eq!(sm.get(b"d").unwrap().unwrap(), b"4");
    }

    #[test]
    fn open_finishes_or_undoes_a_restore_a_crash_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        {
            let sm = KvStateMachine::open(&db).unwrap();
            sm.apply(&[put(1, "a", "1")]).unwrap();
        }
        // Crashed after moving db aside, before the snapshot took its place.
        std::fs::rename(&db, with_suffix(&db, ".old")).unwrap();
        let sm = KvStateMachine::open(&db).unwrap();
        assert_eq!(sm.get(b"a").unwrap().unwrap(), b"1");
        sm.close();
        // Crashed after the swap, before db.old was deleted.
        std::fs::create_dir(with_suffix(&db, ".old")).unwrap();
        let sm = KvStateMachine::open(&db).unwrap();
        assert_eq!(sm.get(b"a").unwrap().unwrap(), b"1");
        assert!(!with_suffix(&db, ".old").exists());
    }

    #[test]
    fn a_corrupt_snapshot_is_refused_and_the_state_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let sm = KvStateMachine::open(&dir.path().join("db")).unwrap();
        sm.apply(&[put(1, "a", "1")]).unwrap();
        let bogus = dir.path().join("bogus");
        std::fs::create_dir(&bogus).unwrap();
        std::fs::write(bogus.join("CURRENT"), "MANIFEST-999999\n").unwrap();
        assert!(sm.restore(&bogus).is_err());
        assert_eq!(sm.get(b"a").unwrap().unwrap(), b"1");
    }
}
