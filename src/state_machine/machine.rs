//! [`Machine`]: the state machine a node runs, the built-in key-value store
//! or a user-defined one, behind the one interface the runtime calls.

use super::user::{StateMachine, UserMachine};
use super::{Applied, KvStateMachine, KvStore};
use crate::error::{Error, Result};
use crate::storage::GroupId;
use crate::wire::Entry;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The directory of a key-value checkpoint inside a snapshot's data directory
/// (an export is `kv.sst` beside it).
const KV_DIR: &str = "kv";

/// Whichever state machine the node runs.
pub enum Machine {
    /// (Boxed: it holds its caches, leases and watchers inline.)
    Kv(Box<KvStateMachine>),
    User(UserMachine),
}

impl Machine {
    /// `None`: the key-value store at `dir`; `Some`: the user's machine (`dir` unused).
    pub fn open(dir: &Path, user: Option<Box<dyn StateMachine>>) -> Result<Machine> {
        Ok(match user {
            None => Machine::Kv(Box::new(KvStateMachine::open(dir)?)),
            Some(machine) => Machine::User(UserMachine::new(machine)),
        })
    }

    /// `None`: `group`'s state in the host's shared key-value store; `Some`: the user's machine.
    pub fn in_store(store: &Arc<KvStore>, group: GroupId, user: Option<Box<dyn StateMachine>>) -> Machine {
        match user {
            None => Machine::Kv(Box::new(KvStateMachine::in_store(store.clone(), group))),
            Some(machine) => Machine::User(UserMachine::new(machine)),
        }
    }

    pub fn applied_index(&self) -> Result<u64> {
        match self {
            Machine::Kv(kv) => kv.applied_index(),
            Machine::User(user) => Ok(user.applied_index()),
        }
    }

    /// Applies committed entries in order; entries at or below the applied
    /// index are skipped, a gap is an `Internal` error. A command the machine
    /// refuses is a per-entry result, not an error of the call.
    pub fn apply(&self, entries: &[Entry]) -> Result<Vec<Applied>> {
        match self {
            Machine::Kv(kv) => kv.apply(entries),
            Machine::User(user) => user.apply(entries),
        }
    }

    /// Releases the machine: the key-value store's database, or the user's
    /// machine itself (dropped). Later calls fail with `Stopped`.
    pub fn close(&self) {
        match self {
            Machine::Kv(kv) => kv.close(),
            Machine::User(user) => user.close(),
        }
    }

    /// The value of `key` as of the last applied entry (a local, possibly stale read).
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self {
            Machine::Kv(kv) => kv.get(key),
            Machine::User(_) => Err(user_has_no_keys()),
        }
    }

    /// Lease `id` as of the last applied entry (a local read).
    pub fn lease_info(&self, id: u64) -> Result<crate::wire::LeaseInfo> {
        match self {
            Machine::Kv(kv) => kv.lease_info(id),
            Machine::User(_) => Err(user_has_no_keys()),
        }
    }

    /// Whether any lease is held or key expires.
    pub fn has_deadlines(&self) -> bool {
        match self {
            Machine::Kv(kv) => kv.has_deadlines(),
            Machine::User(_) => false,
        }
    }

    /// When the next lease or key's deadline falls due here; `None` if
    /// none is held. A quiet leader is woken then (`runtime/quiet.rs`).
    pub fn sweep_due_at(&self) -> Option<std::time::Instant> {
        match self {
            Machine::Kv(kv) => kv.sweep_due_at(),
            Machine::User(_) => None,
        }
    }

    /// Whether the leader should propose a sweep of expired leases.
    pub fn lease_sweep_due(&self) -> bool {
        match self {
            Machine::Kv(kv) => kv.lease_sweep_due(),
            Machine::User(_) => false,
        }
    }

    /// The keys of range `r` as of the last applied entry (a local read).
    pub fn range(&self, r: &crate::wire::Range) -> Result<crate::wire::KvList> {
        match self {
            Machine::Kv(kv) => kv.range(r),
            Machine::User(_) => Err(user_has_no_keys()),
        }
    }

    /// Read-only Redis commands on the store as last applied (a local read).
    pub fn redis_read(&self, b: &crate::wire::RedisBatch) -> Result<crate::wire::RedisReplies> {
        match self {
            Machine::Kv(kv) => kv.redis_read(b),
            Machine::User(_) => Err(user_has_no_keys()),
        }
    }

    /// Locks held at the log's time; a user machine has none floyd knows of.
    pub fn locks_held(&self) -> Result<u64> {
        match self {
            Machine::Kv(kv) => kv.locks_held(),
            Machine::User(_) => Ok(0),
        }
    }

    /// Keys deleted here by their TTL since the group opened (none in a
    /// user machine).
    pub fn expired_keys(&self) -> u64 {
        match self {
            Machine::Kv(kv) => kv.expired_keys(),
            Machine::User(_) => 0,
        }
    }

    /// Client sessions the group keeps, as of the last apply; a user
    /// machine's commands go without one.
    pub fn client_sessions(&self) -> u64 {
        match self {
            Machine::Kv(kv) => kv.client_sessions(),
            Machine::User(_) => 0,
        }
    }

    pub fn is_user(&self) -> bool {
        matches!(self, Machine::User(_))
    }

    /// Writes a snapshot of the state into `data_dir` (exists, empty) and returns the applied index it reflects.
    /// Kv: a checkpoint in `data_dir/kv` (a private store) or an export in
    /// `data_dir/kv.sst` (a shared one), safe from any thread, concurrently
    /// with apply. User: the machine's `snapshot_save`, which the runtime
    /// calls from the apply thread only (so no apply runs meanwhile).
    pub fn snapshot_save(&self, data_dir: &Path) -> Result<u64> {
        match self {
            Machine::Kv(kv) if kv.is_private() => kv.checkpoint(&data_dir.join(KV_DIR)),
            Machine::Kv(kv) => kv.export(data_dir),
            Machine::User(user) => user.snapshot_save(data_dir),
        }
    }

    /// Replaces the state with the snapshot in `data_dir` (NOT consumed: it stays a valid snapshot), as of `index`.
    pub fn snapshot_load(&self, data_dir: &Path, index: u64) -> Result<()> {
        let loaded = match self {
            Machine::Kv(kv) => load_kv(kv, data_dir)?,
            Machine::User(user) => return user.snapshot_load(data_dir, index),
        };
        if loaded != index {
            return Err(Error::Corruption(format!(
                "the snapshot in {} holds applied index {loaded}, expected {index}",
                data_dir.display()
            )));
        }
        Ok(())
    }

    /// The apply thread reports leadership as it sees it: Some(term) when this node leads in `term`, None otherwise.
    /// The user's machine hears of changes only; the key-value store does not care.
    pub fn observe_leadership(&self, leading: Option<u64>) {
        if let Machine::User(user) = self {
            user.observe_leadership(leading);
        }
    }
}

fn user_has_no_keys() -> Error {
    Error::InvalidArgument(
        "this node runs a user-defined state machine: a user-defined state machine has no keys \
         floyd can read (use propose)"
            .into(),
    )
}

/// Loads a key-value snapshot, whichever its form and the store's, and
/// returns the applied index it holds. The snapshot itself stays (it may
/// still be sent to other followers, or be the latest one kept).
fn load_kv(kv: &KvStateMachine, data_dir: &Path) -> Result<u64> {
    let export = data_dir.join(super::snapshot::EXPORT_FILE);
    if export.exists() {
        return kv.import(&export);
    }
    let checkpoint = data_dir.join(KV_DIR);
    if !kv.is_private() {
        return kv.import_checkpoint(&checkpoint, &sibling(data_dir, ".import.sst"));
    }
    // Restoring moves the directory it is given into place: give it a copy.
    let incoming = sibling(kv.dir(), ".incoming");
    if incoming.exists() {
        // Left by a load that a crash interrupted: never in use.
        std::fs::remove_dir_all(&incoming).map_err(|e| io(&incoming, e))?;
    }
    copy_tree(&checkpoint, &incoming)?;
    sync_dir(&incoming)?;
    kv.restore(&incoming)
}

/// Copies a directory tree. RocksDB never rewrites a table file (`*.sst`)
/// once written, so those are hard-linked when the file system allows it:
/// cheap, and the snapshot keeps its own name for the same immutable data.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir(to).map_err(|e| io(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| io(from, e))? {
        let entry = entry.map_err(|e| io(from, e))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().map_err(|e| io(&src, e))?;
        if kind.is_dir() {
            copy_tree(&src, &dst)?;
            sync_dir(&dst)?;
        } else if src.extension().is_some_and(|x| x == "sst") && std::fs::hard_link(&src, &dst).is_ok() {
            continue;
        } else {
            std::fs::copy(&src, &dst).map_err(|e| io(&src, e))?;
            // Synced before the restore renames it into place: a crash then
            // must not leave a database with torn files.
            std::fs::File::open(&dst)
                .and_then(|f| f.sync_all())
                .map_err(|e| io(&dst, e))?;
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Io(format!("{}: {e}", path.display()))
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
