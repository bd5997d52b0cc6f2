//! Snapshots on disk (`<path>/snapshots`).
//!
//! Each snapshot is a directory `snap-<index>-<term>` (both zero-padded to
//! 20 digits, so names sort by index) holding `meta` (an encoded
//! `SnapshotMeta` followed by its CRC-32) and `data/`, the state machine's
//! files. A snapshot is built in a `tmp-*` directory and renamed into place
//! once every file is synced, so a crash never leaves a half-written
//! snapshot under a real name: at open, `tmp-*` directories are deleted and
//! the newest snapshot whose meta checks out is the current one.
//!
//! Older snapshots are deleted once a newer one is current and nobody holds
//! them (a leader may still be streaming one to a follower).

use crate::error::{Error, Result};
use crate::wire::SnapshotMeta;
use parking_lot::Mutex;
use prost::Message as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const META: &str = "meta";
const DATA: &str = "data";
const TMP_PREFIX: &str = "tmp-";
const SNAP_PREFIX: &str = "snap-";

/// One snapshot on disk. Shared: the directory lives while a handle does,
/// even once a newer snapshot replaced it.
#[derive(Debug)]
pub struct SnapshotHandle {
    dir: PathBuf,
    meta: SnapshotMeta,
    /// Set once a newer snapshot is current: the last holder deletes it.
    obsolete: AtomicBool,
}

impl SnapshotHandle {
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    pub fn index(&self) -> u64 {
        self.meta.last_index
    }

    pub fn term(&self) -> u64 {
        self.meta.last_term
    }

    /// The state machine's files.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join(DATA)
    }

    /// Every file under the data directory, as `/`-separated relative names, sorted.
    pub fn files(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        list_files(&self.data_dir(), "", &mut out)?;
        out.sort();
        Ok(out)
    }
}

impl Drop for SnapshotHandle {
    fn drop(&mut self) {
        if self.obsolete.load(Ordering::Acquire) {
            if let Err(e) = std::fs::remove_dir_all(&self.dir) {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot delete an old snapshot");
            }
        }
    }
}

/// A directory being filled with a snapshot's data; deleted if dropped
/// before [`SnapshotStore::commit`].
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    committed: bool,
}

impl Staging {
    /// Where the state machine's (or the stream's) files go.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join(DATA)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The snapshots of one node. Thread-safe.
#[derive(Debug)]
pub struct SnapshotStore {
    root: PathBuf,
    current: Mutex<Option<Arc<SnapshotHandle>>>,
    next_tmp: std::sync::atomic::AtomicU64,
}

impl SnapshotStore {
    /// Opens `root`: removes leftovers of interrupted snapshots, keeps the
    /// newest valid one and deletes the others. A missing `root` is an empty
    /// store, made on the first snapshot (a host of thousands of groups makes
    /// no directory for a group that never snapshots).
    pub fn open(root: &Path) -> Result<SnapshotStore> {
        let store = SnapshotStore {
            root: root.to_path_buf(),
            current: Mutex::new(None),
            next_tmp: std::sync::atomic::AtomicU64::new(0),
        };
        if !root.exists() {
            return Ok(store);
        }
        let mut snaps = Vec::new();
        for entry in std::fs::read_dir(root).map_err(|e| io(root, e))? {
            let entry = entry.map_err(|e| io(root, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with(TMP_PREFIX) {
                std::fs::remove_dir_all(&path).map_err(|e| io(&path, e))?;
            } else if name.starts_with(SNAP_PREFIX) {
                snaps.push(path);
            }
        }
        snaps.sort();
        let mut current = None;
        while let Some(path) = snaps.pop() {
            match read_meta(&path) {
                Ok(meta) if current.is_none() => {
                    current = Some(Arc::new(SnapshotHandle {
                        dir: path,
                        meta,
                        obsolete: AtomicBool::new(false),
                    }));
                }
                Ok(_) => std::fs::remove_dir_all(&path).map_err(|e| io(&path, e))?,
                Err(e) => {
                    tracing::warn!(dir = %path.display(), error = %e, "deleting a snapshot that does not check out");
                    std::fs::remove_dir_all(&path).map_err(|e| io(&path, e))?;
                }
            }
        }
        *store.current.lock() = current;
        Ok(store)
    }

    /// Makes `root` if it is missing, its entry durable in its parents.
    fn make_root(&self) -> Result<()> {
        if self.root.exists() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.root).map_err(|e| io(&self.root, e))?;
        // Its parents may be new too (a group's `groups/<id>/`): three levels
        // cover every layout floyd makes; beyond the first, one that cannot
        // be opened (not ours) is left alone.
        let mut parents = self.root.ancestors().skip(1).take(3);
        if let Some(parent) = parents.next() {
            sync_dir(parent)?;
        }
        parents.for_each(|p| {
            let _ = sync_dir(p);
        });
        Ok(())
    }

    /// The newest snapshot, if any.
    pub fn latest(&self) -> Option<Arc<SnapshotHandle>> {
        self.current.lock().clone()
    }

    /// Index of the newest snapshot, 0 without one.
    pub fn latest_index(&self) -> u64 {
        self.current.lock().as_ref().map_or(0, |s| s.index())
    }

    /// A new, empty staging directory (with an empty `data/`), named after `purpose`.
    pub fn stage(&self, purpose: &str) -> Result<Staging> {
        self.make_root()?;
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let dir = self.root.join(format!("{TMP_PREFIX}{purpose}-{n}"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
        }
        let data = dir.join(DATA);
        std::fs::create_dir_all(&data).map_err(|e| io(&data, e))?;
        Ok(Staging {
            dir,
            committed: false,
        })
    }

    /// Makes a filled staging directory a snapshot: syncs every file, writes
    /// the meta, renames it into place. It becomes the current one if it is
    /// newer than the current one (else it is dropped, and the current one returned).
    pub fn commit(&self, mut staging: Staging, meta: SnapshotMeta) -> Result<Arc<SnapshotHandle>> {
        sync_tree(&staging.data_dir())?;
        write_meta(&staging.dir, &meta)?;
        let name = format!("{SNAP_PREFIX}{:020}-{:020}", meta.last_index, meta.last_term);
        let dir = self.root.join(name);
        let mut current = self.current.lock();
        if let Some(cur) = current.as_ref() {
            if cur.index() >= meta.last_index {
                return Ok(cur.clone());
            }
        }
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
        }
        std::fs::rename(&staging.dir, &dir).map_err(|e| io(&staging.dir, e))?;
        staging.committed = true;
        sync_dir(&self.root)?;
        let handle = Arc::new(SnapshotHandle {
            dir,
            meta,
            obsolete: AtomicBool::new(false),
        });
        if let Some(old) = current.replace(handle.clone()) {
            old.obsolete.store(true, Ordering::Release);
        }
        Ok(handle)
    }

    /// Total bytes of every file under the snapshots directory (for status and tests).
    pub fn disk_bytes(&self) -> u64 {
        dir_bytes(&self.root)
    }
}

fn read_meta(dir: &Path) -> Result<SnapshotMeta> {
    let path = dir.join(META);
    let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
    if bytes.len() < 4 {
        return Err(Error::Corruption(format!("{}: too short", path.display())));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body).to_be_bytes() != crc {
        return Err(Error::Corruption(format!(
            "{}: checksum mismatch",
            path.display()
        )));
    }
    SnapshotMeta::decode(body).map_err(|e| Error::Corruption(format!("{}: {e}", path.display())))
}

fn write_meta(dir: &Path, meta: &SnapshotMeta) -> Result<()> {
    let path = dir.join(META);
    let mut bytes = meta.encode_to_vec();
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_be_bytes());
    let file = std::fs::File::create(&path).map_err(|e| io(&path, e))?;
    use std::io::Write as _;
    (&file).write_all(&bytes).map_err(|e| io(&path, e))?;
    file.sync_all().map_err(|e| io(&path, e))?;
    sync_dir(dir)
}

fn list_files(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let ty = entry.file_type().map_err(|e| io(&entry.path(), e))?;
        if ty.is_dir() {
            list_files(&entry.path(), &format!("{name}/"), out)?;
        } else {
            out.push(name);
        }
    }
    Ok(())
}

/// Syncs every file and directory under `dir`, `dir` included.
pub(crate) fn sync_tree(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        let path = entry.path();
        if entry.file_type().map_err(|e| io(&path, e))?.is_dir() {
            sync_tree(&path)?;
        } else {
            std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| io(&path, e))?;
        }
    }
    sync_dir(dir)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))
}

/// Bytes of every file under `path` (0 if it does not exist), each file
/// counted once as `du` does: snapshots hard-link the store's files.
pub fn dir_bytes(path: &Path) -> u64 {
    unique_bytes(path, &mut std::collections::HashSet::new())
}

fn unique_bytes(path: &Path, seen: &mut std::collections::HashSet<(u64, u64)>) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(rd) = std::fs::read_dir(path) else { return 0 };
    let mut total = 0;
    for e in rd.flatten() {
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            total += unique_bytes(&e.path(), seen);
        } else if seen.insert((meta.dev(), meta.ino())) {
            total += meta.len();
        }
    }
    total
}

pub(crate) fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Io(format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_index: index,
            last_term: 2,
            config_index: 1,
            config: None,
        }
    }

    fn snapshot(store: &SnapshotStore, index: u64, content: &str) -> Arc<SnapshotHandle> {
        let st = store.stage("test").unwrap();
        std::fs::create_dir_all(st.data_dir().join("sub")).unwrap();
        std::fs::write(st.data_dir().join("sub/f"), content).unwrap();
        store.commit(st, meta(index)).unwrap()
    }

    #[test]
    fn the_newest_snapshot_survives_a_reopen_and_older_ones_go_once_unheld() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path()).unwrap();
        assert!(store.latest().is_none());
        let first = snapshot(&store, 10, "a");
        assert_eq!(first.files().unwrap(), vec!["sub/f".to_string()]);
        let second = snapshot(&store, 20, "b");
        assert_eq!(store.latest_index(), 20);
        // Still held (a stream in progress): still on disk.
        assert!(first.data_dir().join("sub/f").exists());
        let old_dir = first.data_dir();
        drop(first);
        assert!(!old_dir.exists());
        // An older one arriving late does not replace the current one.
        assert_eq!(snapshot(&store, 15, "c").index(), 20);
        drop((store, second));
        let store = SnapshotStore::open(dir.path()).unwrap();
        let latest = store.latest().unwrap();
        assert_eq!(latest.index(), 20);
        assert_eq!(
            std::fs::read_to_string(latest.data_dir().join("sub/f")).unwrap(),
            "b"
        );
    }

    #[test]
    fn staging_left_by_a_crash_and_corrupt_snapshots_are_cleaned_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SnapshotStore::open(dir.path()).unwrap();
            snapshot(&store, 10, "good");
            let st = store.stage("crash").unwrap();
            std::fs::write(st.data_dir().join("half"), "x").unwrap();
            std::mem::forget(st);
        }
        // A newer snapshot whose meta was damaged.
        let bad = dir.path().join(format!("{SNAP_PREFIX}{:020}-{:020}", 30, 2));
        std::fs::create_dir_all(bad.join(DATA)).unwrap();
        std::fs::write(bad.join(META), b"garbage!").unwrap();
        let store = SnapshotStore::open(dir.path()).unwrap();
        assert_eq!(store.latest_index(), 10);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "only the good snapshot is left: {names:?}");
    }
}
