//! Tests' power cuts: what a log store's directory would hold after the
//! machine lost power, as opposed to `kill -9`, which keeps the page cache.
//!
//! RocksDB syncs its table files and MANIFEST itself; what a power cut takes
//! is the tail of the write-ahead log written since the last sync. The store
//! records each WAL file's length after every sync it asks for;
//! [`LogStore::power_cut_image`] copies the directory with every WAL file cut
//! back to that length (a file created since: emptied).

use super::LogStore;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub(super) struct SyncedWal {
    dir: PathBuf,
    lengths: Mutex<BTreeMap<String, u64>>,
}

impl SyncedWal {
    pub(super) fn new(dir: &Path) -> SyncedWal {
        SyncedWal {
            dir: dir.to_path_buf(),
            lengths: Mutex::new(BTreeMap::new()),
        }
    }

    /// Everything written to the WAL so far is on disk.
    pub(super) fn record(&self) {
        let mut lengths = self.lengths.lock();
        for (name, len) in files(&self.dir).filter(|(n, _)| is_wal(n)) {
            lengths.insert(name, len);
        }
    }
}

fn is_wal(name: &str) -> bool {
    name.ends_with(".log") && !name.starts_with("LOG")
}

fn files(dir: &Path) -> impl Iterator<Item = (String, u64)> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| {
            let len = e.metadata().map_or(0, |m| m.len());
            (e.file_name().to_string_lossy().into_owned(), len)
        })
}

impl LogStore {
    /// Copies the store's directory into `to` as a power cut now would
    /// leave it: every write-ahead log file cut back to its synced length.
    pub(super) fn power_cut_image(&self, to: &Path) {
        let lengths = self.synced.lengths.lock().clone();
        std::fs::create_dir_all(to).unwrap();
        for (name, _) in files(&self.synced.dir) {
            let (from, dest) = (self.synced.dir.join(&name), to.join(&name));
            std::fs::copy(&from, &dest).unwrap();
            if is_wal(&name) {
                let kept = lengths.get(&name).copied().unwrap_or(0);
                let file = std::fs::OpenOptions::new().write(true).open(&dest).unwrap();
                let len = file.metadata().unwrap().len();
                file.set_len(kept.min(len)).unwrap();
            }
        }
    }
}
