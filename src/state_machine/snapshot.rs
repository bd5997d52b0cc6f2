//! Snapshots of the key-value state machine as RocksDB checkpoints: hard
//! links to its immutable files, so taking one is cheap and does not stall
//! applies. A snapshot holds everything the state machine has, `m:applied`
//! and `m:time` included, so restoring one restores the point it was taken.
//!
//! Restoring swaps directories: `db` → `db.old`, snapshot → `db`, then
//! `db.old` is deleted. A crash in between leaves `db.old` (and maybe no
//! `db`); the next open finishes or undoes the swap.

use super::{applied_index, open_db, KvStateMachine};
use crate::error::Result;
use crate::storage::snapshots::io;
use rocksdb::checkpoint::Checkpoint;
use rocksdb::{Options as DbOptions, DB};
use std::path::{Path, PathBuf};

impl KvStateMachine {
    /// Writes a consistent copy of the state machine to `dir` (which must
    /// not exist; its parent must be on the same file system) and returns
    /// the applied index it holds.
    pub fn checkpoint(&self, dir: &Path) -> Result<u64> {
        {
            let db = self.db.get()?;
            Checkpoint::new(&db)?
                .create_checkpoint(dir)
                .map_err(|e| crate::storage::annotate(e, dir))?;
        }
        snapshot_applied_index(dir)
    }

    /// Replaces the whole state with the snapshot in `dir` (moved into
    /// place, so it is consumed) and returns its applied index. Calls in
    /// progress finish first; none sees a half-restored state.
    pub fn restore(&self, dir: &Path) -> Result<u64> {
        let index = snapshot_applied_index(dir)?;
        let old = with_suffix(&self.dir, ".old");
        self.db.replace(|| {
            if old.exists() {
                std::fs::remove_dir_all(&old).map_err(|e| io(&old, e))?;
            }
            std::fs::rename(&self.dir, &old).map_err(|e| io(&self.dir, e))?;
            std::fs::rename(dir, &self.dir).map_err(|e| io(dir, e))?;
            sync_parent(&self.dir)?;
            let db = open_db(&self.dir)?;
            std::fs::remove_dir_all(&old).map_err(|e| io(&old, e))?;
            Ok(db)
        })?;
        Ok(index)
    }
}

/// The applied index stored in a snapshot directory.
fn snapshot_applied_index(dir: &Path) -> Result<u64> {
    let db = DB::open_for_read_only(&DbOptions::default(), dir, false)
        .map_err(|e| crate::storage::annotate(e, dir))?;
    applied_index(&db)
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
