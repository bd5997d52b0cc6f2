//! The built-in key-value state machine (`<path>/db`), and [`Machine`]: it
//! or a user-defined [`StateMachine`], whichever the node runs.
//!
//! One RocksDB ([`KvStore`]) holds the state of every group of a host, each
//! group's keys one range (`kv_keys.rs`): data, locks, the applied index,
//! the log's time (see `log_time.rs`) and the term and leader stamp it was
//! last moved by. Each batch of committed entries is applied in one
//! WriteBatch that also moves the applied index and the time, so a crash
//! between commit and apply replays every entry exactly once: entries at or
//! below the stored applied index are skipped.

mod apply;
mod command;
mod expiry;
pub mod history;
mod kv_keys;
pub mod lease;
mod lock;
mod log_time;
mod machine;
mod progress;
pub mod range;
pub mod redis;
pub mod revision;
mod session;
mod snapshot;
mod txn;
mod typed;
mod user;
pub mod watch;

pub use command::{
    decode_command, decode_command_in, encode_command, encode_command_in, CommandKind, MAX_LOCK_TTL_MS,
};
pub use kv_keys::KvKeys;
pub use machine::Machine;
pub use session::check_ttl as check_session_ttl;
pub use user::{StateMachine, UserMachine};

use crate::error::{Error, Result};
use crate::storage::{Db, GroupId};
#[cfg(test)]
use crate::wire::{Entry, EntryType};
use bytes::Bytes;
use rocksdb::{WriteBatch, WriteOptions, DB};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Revisions of changes kept for watches unless `history_revisions` says
/// otherwise.
pub const DEFAULT_HISTORY_REVISIONS: u64 = 10_000;

/// What applying one entry produced, handed to whoever proposed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub index: u64,
    pub term: u64,
    /// `Ok(Some(value))` for a read that found its key, `Ok(None)` for writes,
    /// `Err(NotFound)` for a read of a missing key.
    pub result: Result<Option<Bytes>>,
}

/// The database of the key-value store (`<path>/db`), shared by the groups
/// of a host. After [`KvStore::close`] every call fails with `Stopped`.
pub struct KvStore {
    db: Db,
    /// Its directory: a restored checkpoint takes its place (a private store only).
    dir: PathBuf,
    /// A host's groups share it (its options differ: `open_db`).
    shared: bool,
}

impl KvStore {
    /// Opens (creating if needed) the database in `dir`, which a host's
    /// groups share.
    pub fn open(dir: &Path) -> Result<Arc<KvStore>> {
        Self::open_as(dir, true)
    }

    /// Opens (creating if needed) the database in `dir`, a private store
    /// (group 0 alone) unless `shared`.
    fn open_as(dir: &Path, shared: bool) -> Result<Arc<KvStore>> {
        snapshot::finish_interrupted_restore(dir)?;
        let db = open_db(dir, shared)?;
        Ok(Arc::new(KvStore {
            db: Db::new(db, "state machine"),
            dir: dir.to_path_buf(),
            shared,
        }))
    }

    /// Closes the database, releasing its directory; later calls fail with `Stopped`.
    pub fn close(&self) {
        self.db.close();
    }
}

/// One group's key-value state. Thread-safe: reads may run concurrently with
/// the apply thread. After [`KvStateMachine::close`] every call fails with `Stopped`.
pub struct KvStateMachine {
    store: Arc<KvStore>,
    keys: KvKeys,
    /// The store is this group's alone (a node opened on its own): its
    /// snapshots are checkpoints of the whole database, restored by swapping
    /// directories, and closing the group closes the store.
    private: bool,
    closed: AtomicBool,
    /// The applied index and log time as last written, so that applying a
    /// batch does not read them back from the database first (with many
    /// groups each applying an entry at a time, those reads were a tenth of
    /// the apply workers' time). `None` until the first apply, and again
    /// whenever something else rewrites the group's state (a snapshot
    /// loaded, the group deleted) or a write fails.
    applied: parking_lot::Mutex<Option<AppliedState>>,
    /// The group's leases as last written; `None` as `applied` is.
    leases: parking_lot::Mutex<Option<lease::LeaseTable>>,
    /// The group's client sessions as last written; `None` as `applied` is.
    sessions: parking_lot::Mutex<Option<session::SessionTable>>,
    /// How many, as of the last apply (for the status).
    sessions_open: std::sync::atomic::AtomicU64,
    lease_clock: parking_lot::Mutex<lease::LeaseClock>,
    /// The group holds a lease or a key that expires (a deadline the
    /// leader's sweep must meet): read on every tick of every group, so a
    /// group without one costs a load, not a lock and a clock read.
    deadlines_held: AtomicBool,
    /// Revisions of changes the history keeps (0: none).
    history_revisions: std::sync::atomic::AtomicU64,
    /// Keys deleted here by their TTL since the group opened (Redis's
    /// `expired_keys`).
    expired_keys: std::sync::atomic::AtomicU64,
    watches: watch::WatchHub,
    /// Keys that expire (`expiry.rs`), as written.
    expiries: expiry::Expiries,
    /// Whether a hash or list may exist (`typed.rs`): [`TYPED_UNKNOWN`]
    /// until looked for, then [`TYPED_NO`] or [`TYPED_YES`] (never back).
    typed: std::sync::atomic::AtomicU8,
}

const TYPED_UNKNOWN: u8 = 0;
const TYPED_NO: u8 = 1;
pub(crate) const TYPED_YES: u8 = 2;

/// What applying moves besides the data: kept in memory between batches.
#[derive(Clone, Copy)]
struct AppliedState {
    /// Applied index, log time and revision (`progress.rs`), and how the
    /// store holds them.
    progress: progress::Progress,
    layout: progress::Layout,
    /// Keys without revisions may exist (`revision::legacy_possible`),
    /// and whether `m:legacy` says so on disk.
    legacy: bool,
    legacy_stored: bool,
    /// The oldest revision the history holds whole (`history.rs`), and
    /// whether `m:hstart` says so on disk.
    history_start: u64,
    history_start_stored: bool,
}

impl KvStateMachine {
    /// Opens (creating if needed) a store in `dir` of its own, for group 0.
    pub fn open(dir: &Path) -> Result<Self> {
        Ok(KvStateMachine {
            store: KvStore::open_as(dir, false)?,
            keys: KvKeys::of(0),
            private: true,
            closed: AtomicBool::new(false),
            applied: parking_lot::Mutex::new(None),
            leases: parking_lot::Mutex::new(None),
            sessions: parking_lot::Mutex::new(None),
            sessions_open: std::sync::atomic::AtomicU64::new(0),
            lease_clock: parking_lot::Mutex::new(lease::LeaseClock::default()),
            deadlines_held: AtomicBool::new(false),
            history_revisions: std::sync::atomic::AtomicU64::new(DEFAULT_HISTORY_REVISIONS),
            expired_keys: std::sync::atomic::AtomicU64::new(0),
            watches: watch::WatchHub::default(),
            expiries: expiry::Expiries::default(),
            typed: std::sync::atomic::AtomicU8::new(TYPED_UNKNOWN),
        })
    }

    /// `group`'s state in a store the host shares among its groups.
    pub fn in_store(store: Arc<KvStore>, group: GroupId) -> Self {
        KvStateMachine {
            store,
            keys: KvKeys::of(group),
            private: false,
            closed: AtomicBool::new(false),
            applied: parking_lot::Mutex::new(None),
            leases: parking_lot::Mutex::new(None),
            sessions: parking_lot::Mutex::new(None),
            sessions_open: std::sync::atomic::AtomicU64::new(0),
            lease_clock: parking_lot::Mutex::new(lease::LeaseClock::default()),
            deadlines_held: AtomicBool::new(false),
            history_revisions: std::sync::atomic::AtomicU64::new(DEFAULT_HISTORY_REVISIONS),
            expired_keys: std::sync::atomic::AtomicU64::new(0),
            watches: watch::WatchHub::default(),
            expiries: expiry::Expiries::default(),
            typed: std::sync::atomic::AtomicU8::new(TYPED_UNKNOWN),
        }
    }

    /// Closes the group's view (and a private store); later calls fail with
    /// `Stopped`. Every watch ends first, with a last call (`Stopped`).
    pub fn close(&self) {
        self.watches
            .end_all(Error::Stopped("the group was closed".into()), true);
        self.closed.store(true, Ordering::Release);
        if self.private {
            self.store.close();
        }
    }

    /// The store's directory.
    pub(super) fn dir(&self) -> &Path {
        &self.store.dir
    }

    /// The open database.
    fn db(&self) -> Result<parking_lot::MappedRwLockReadGuard<'_, DB>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Stopped("the state machine is closed".into()));
        }
        self.store.db.get()
    }

    /// Deletes the group's whole state (the group was dropped from its host).
    pub fn delete_all(&self) -> Result<()> {
        let db = self.db()?;
        let mut batch = WriteBatch::default();
        for (start, end) in self.keys.ranges() {
            batch.delete_range(start, end);
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        let deleted = db.write_opt(batch, &wo);
        self.forget_applied();
        deleted?;
        Ok(())
    }

    /// Something other than `apply` rewrote the group's state: the next
    /// apply reads its applied index and time from the database again.
    pub(super) fn forget_applied(&self) {
        {
            let mut applied = self.applied.lock();
            *applied = None;
            *self.leases.lock() = None;
            *self.sessions.lock() = None;
            // Until the next apply says when the next lease is due.
            *self.lease_clock.lock() = lease::LeaseClock::default();
            self.deadlines_held.store(false, Ordering::Release);
            self.expiries.forget();
            self.typed.store(TYPED_UNKNOWN, Ordering::Release);
        }
        // The state was replaced: what the watchers saw no longer leads to
        // it. (Their last calls run with no lock of the apply's held: a
        // callback that writes and waits for the apply cannot hold it up.)
        self.watches.end_all(
            Error::Compacted(
                "the group's state was replaced (a snapshot loaded): watch again from the last revision seen + 1"
                    .into(),
            ),
            false,
        );
    }

    /// Whether any lease is held or key expires (as of the last applied
    /// entry): the group has a deadline to meet.
    pub fn has_deadlines(&self) -> bool {
        self.deadlines_held.load(Ordering::Acquire)
    }

    /// When the next lease or key's deadline falls due here (as of the
    /// last applied entry); `None` if none is held.
    pub fn sweep_due_at(&self) -> Option<std::time::Instant> {
        if !self.deadlines_held.load(Ordering::Acquire) {
            return None;
        }
        self.lease_clock.lock().due_at()
    }

    /// Whether a lease's deadline has passed with nothing applied since to
    /// expire it: the leader of an idle group proposes a sweep.
    pub fn lease_sweep_due(&self) -> bool {
        self.deadlines_held.load(Ordering::Acquire) && self.lease_clock.lock().sweep_due()
    }

    /// Lease `id`'s TTL, time left and keys, as of the last applied entry
    /// (a local read; the time left counts the time passed since). `NotFound`
    /// if it does not exist.
    pub fn lease_info(&self, id: u64) -> Result<crate::wire::LeaseInfo> {
        let db = self.db()?;
        let now = self.log_time_now(&db)?;
        lease::info(&db, &self.keys, id, now)
    }

    /// The log's time now, as this node can tell: at the last apply, plus
    /// what passed here since.
    fn log_time_now(&self, db: &DB) -> Result<u64> {
        let clock = self.lease_clock.lock().now();
        match clock {
            Some(now) => Ok(now),
            None => Ok(read_progress(db, &self.keys)?.time.time),
        }
    }

    /// Keys deleted here by their TTL since the group opened.
    pub fn expired_keys(&self) -> u64 {
        self.expired_keys.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Client sessions the group keeps, as of the last apply.
    pub fn client_sessions(&self) -> u64 {
        self.sessions_open.load(Ordering::Relaxed)
    }

    /// Highest log index whose effect is stored here.
    pub fn applied_index(&self) -> Result<u64> {
        applied_index(&*self.db()?, &self.keys)
    }

    /// Locks held at the log's time (not expired), as of the last applied entry.
    pub fn locks_held(&self) -> Result<u64> {
        let db = self.db()?;
        let now = read_progress(&db, &self.keys)?.time.time;
        lock::count_held(&db, &self.keys, now)
    }

    /// The value of `key` as of the last applied entry (a local, possibly stale read).
    /// A key past its deadline (`expiry.rs`) reads as missing; a hash or
    /// a list (`typed.rs`) is refused with Redis's WRONGTYPE.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let db = self.db()?;
        let value = db.get(self.keys.data(key))?;
        if value.is_none() || self.expired(&db, key)? {
            return Ok(None);
        }
        if self.may_hold_types(&db)? && db.get_pinned(self.keys.redis_type(key))?.is_some() {
            return Err(redis::wrong_type());
        }
        Ok(value)
    }

    /// Whether a hash or list may exist in the group.
    fn may_hold_types(&self, db: &DB) -> Result<bool> {
        match self.typed.load(Ordering::Acquire) {
            TYPED_NO => Ok(false),
            TYPED_YES => Ok(true),
            _ => {
                let prefix = self.keys.redis_types();
                let mut it = db.raw_iterator();
                it.seek(&prefix);
                let any = it.key().is_some_and(|k| k.starts_with(&prefix));
                it.status()?;
                let seen = if any { TYPED_YES } else { TYPED_NO };
                // (An apply may have found one meanwhile: never back to no.)
                let _ = self
                    .typed
                    .compare_exchange(TYPED_UNKNOWN, seen, Ordering::AcqRel, Ordering::Acquire);
                Ok(self.typed.load(Ordering::Acquire) == TYPED_YES)
            }
        }
    }

    /// Whether `key` has a deadline that passed, by this node's clock.
    fn expired(&self, db: &DB, key: &[u8]) -> Result<bool> {
        let Some(deadline) = self.expiries.loaded(db, &self.keys)?.deadline(key) else {
            return Ok(false);
        };
        Ok(deadline <= self.log_time_now(db)?)
    }

    /// The keys of range `r` as of the last applied entry, with their
    /// revisions, from one snapshot of the store (a local read).
    /// Keys past their deadline are left out.
    pub fn range(&self, r: &crate::wire::Range) -> Result<crate::wire::KvList> {
        let db = self.db()?;
        let mut list = range::read(&db, &self.keys, r)?;
        let table = self.expiries.loaded(&db, &self.keys)?;
        if table.is_empty() {
            return Ok(list);
        }
        let now = self.log_time_now(&db)?;
        let gone = |key: &[u8]| table.deadline(key).is_some_and(|d| d <= now);
        list.kvs.retain(|kv| !gone(&kv.key));
        if r.count_only {
            let in_range = |k: &[u8]| k >= r.start.as_ref() && (r.end.is_empty() || k < r.end.as_ref());
            let expired = table.expired_keys(now).filter(|k| in_range(k)).count() as u64;
            list.count = list.count.saturating_sub(expired);
        }
        Ok(list)
    }
}

/// Opens the database in `dir`: a host's shared store, or a private one.
fn open_db(dir: &Path, shared: bool) -> Result<DB> {
    let opts = match shared {
        true => crate::storage::memory::shared_kv_options()?,
        false => crate::storage::memory::kv_options(),
    };
    DB::open(&opts, dir).map_err(|e| crate::storage::annotate(e, dir))
}

/// The group's progress as `db` holds it now, in either layout.
fn read_progress(db: &DB, keys: &KvKeys) -> Result<progress::Progress> {
    read_progress_laid_out(db, keys).map(|(p, _)| p)
}

fn read_progress_laid_out(db: &DB, keys: &KvKeys) -> Result<(progress::Progress, progress::Layout)> {
    progress::Progress::read(keys, |k| Ok(db.get_pinned(k)?.map(|v| v.to_vec())))
}

fn applied_index(db: &DB, keys: &KvKeys) -> Result<u64> {
    Ok(read_progress(db, keys)?.applied)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod lock_tests;

#[cfg(test)]
mod shared_tests;

#[cfg(test)]
mod revision_tests;

#[cfg(test)]
mod lease_tests;

#[cfg(test)]
mod watch_tests;

#[cfg(test)]
mod session_tests;

#[cfg(test)]
mod test_store;
