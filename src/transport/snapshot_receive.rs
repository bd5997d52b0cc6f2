//! The follower's side of InstallSnapshot: chunks assembled into a snapshot.
//!
//! Data goes to a staging directory as it arrives (one file open at a time),
//! so memory stays at one chunk whatever the snapshot's size. The stream is
//! trusted only at its end: every file the final chunk lists must have
//! arrived with its size and CRC, and nothing else; only then is the
//! staging directory committed as a snapshot. Anything that does not
//! continue the stream exactly drops it: the leader starts over from seq 0,
//! which is simpler and safer than resuming from a position the two sides
//! might disagree on.

use crate::storage::snapshots::{SnapshotHandle, SnapshotStore, Staging};
use crate::wire::SnapshotChunk;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::sync::Arc;

/// A snapshot that arrived whole, checked and committed to the store.
#[derive(Debug, Clone)]
pub struct ReceivedSnapshot {
    /// The sending leader's term and id, from the stream.
    pub term: u64,
    pub leader: String,
    /// What the store holds after the commit: the received snapshot, or the
    /// store's own current one if that was already as new or newer (its
    /// index is then at least the stream's).
    pub snapshot: Arc<SnapshotHandle>,
}

/// Why a chunk was refused. Except for [`ReceiveError::Stale`], the partial
/// stream (if any) is dropped: the leader has to start over from seq 0.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiveError {
    #[error("chunk {seq} of snapshot {index} without a stream in progress")]
    NoStream { seq: u64, index: u64 },
    #[error("chunk {got} where chunk {expected} was expected")]
    OutOfOrder { expected: u64, got: u64 },
    #[error(
        "a chunk of another stream (leader {leader}, term {term}, snapshot {index}) in the middle of one"
    )]
    OtherStream { leader: String, term: u64, index: u64 },
    /// A chunk of an older term than the stream in progress (a deposed
    /// leader still streaming): refused, and the current stream kept.
    #[error("a chunk of term {term}, older than the stream in progress (term {current})")]
    Stale { term: u64, current: u64 },
    #[error("the chunk names leader {leader} but came from {from}")]
    WrongSender { from: String, leader: String },
    #[error("unsafe file name {0:?}")]
    BadName(String),
    #[error("{file}: data at offset {got} where {expected} was expected")]
    BadOffset { file: String, expected: u64, got: u64 },
    #[error("{file}: checksum mismatch in the chunk at offset {offset}")]
    BadChecksum { file: String, offset: u64 },
    #[error("chunk of {0} bytes exceeds the chunk limit")]
    ChunkTooLarge(usize),
    #[error("the snapshot exceeds the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the snapshot does not check out: {0}")]
    Mismatch(String),
    #[error("storage: {0}")]
    Storage(#[from] crate::error::Error),
    #[error("{file}: {error}")]
    Io { file: String, error: std::io::Error },
}

/// Assembles incoming snapshot streams. Thread-safe; one stream at a time.
pub struct SnapshotReceiver {
    store: Arc<SnapshotStore>,
    max_snapshot_bytes: u64,
    current: Mutex<Option<Incoming>>,
}

/// A stream in progress.
struct Incoming {
    from: String,
    term: u64,
    index: u64,
    snapshot_term: u64,
    next_seq: u64,
    /// Data bytes received so far.
    total: u64,
    staging: Staging,
    open: Option<OpenFile>,
    /// Files received in full: size and CRC.
    done: HashMap<String, (u64, u32)>,
}

struct OpenFile {
    name: String,
    file: File,
    size: u64,
    crc: crc32fast::Hasher,
}

impl SnapshotReceiver {
    /// Streams of more than `max_snapshot_bytes` of data are refused.
    pub fn new(store: Arc<SnapshotStore>, max_snapshot_bytes: u64) -> Self {
        SnapshotReceiver {
            store,
            max_snapshot_bytes,
            current: Mutex::new(None),
        }
    }

    /// Whether a stream is in progress (for status and tests).
    pub fn in_progress(&self) -> Option<(String, u64)> {
        self.current.lock().as_ref().map(|s| (s.from.clone(), s.index))
    }

    /// Drops the partial stream, if any (its staging directory goes with
    /// it): for a node that stops being a follower, say.
    pub fn reset(&self) {
        *self.current.lock() = None;
    }

    /// Takes one chunk from member `from`. Returns the snapshot once its
    /// final chunk arrived and everything checked out.
    pub fn on_chunk(
        &self,
        from: &str,
        chunk: SnapshotChunk,
    ) -> Result<Option<ReceivedSnapshot>, ReceiveError> {
        let mut current = self.current.lock();
        let result = self.step(&mut current, from, chunk);
        if matches!(result, Err(ref e) if !matches!(e, ReceiveError::Stale { .. })) {
            // Dropping the staging deletes its directory.
            *current = None;
        }
        result
    }

    fn step(
        &self,
        current: &mut Option<Incoming>,
        from: &str,
        chunk: SnapshotChunk,
    ) -> Result<Option<ReceivedSnapshot>, ReceiveError> {
        if chunk.leader != from {
            return Err(ReceiveError::WrongSender {
                from: from.to_string(),
                leader: chunk.leader,
            });
        }
        if chunk.data.len() > super::MAX_SNAPSHOT_CHUNK_BYTES {
            return Err(ReceiveError::ChunkTooLarge(chunk.data.len()));
        }
        if chunk.seq == 0 {
            // A new stream replaces any partial one, whoever sent it.
            *current = None;
            *current = Some(Incoming {
                from: from.to_string(),
                term: chunk.term,
                index: chunk.snapshot_index,
                snapshot_term: chunk.snapshot_term,
                next_seq: 0,
                total: 0,
                staging: self.store.stage("incoming")?,
                open: None,
                done: HashMap::new(),
            });
        }
        let Some(s) = current.as_mut() else {
            return Err(ReceiveError::NoStream {
                seq: chunk.seq,
                index: chunk.snapshot_index,
            });
        };
        let same_stream = (s.from.as_str(), s.term, s.index, s.snapshot_term)
            == (from, chunk.term, chunk.snapshot_index, chunk.snapshot_term);
        if !same_stream {
            if chunk.term < s.term {
                return Err(ReceiveError::Stale {
                    term: chunk.term,
                    current: s.term,
                });
            }
            return Err(ReceiveError::OtherStream {
                leader: chunk.leader,
                term: chunk.term,
                index: chunk.snapshot_index,
            });
        }
        if chunk.seq != s.next_seq {
            return Err(ReceiveError::OutOfOrder {
                expected: s.next_seq,
                got: chunk.seq,
            });
        }
        if crc32fast::hash(&chunk.data) != chunk.crc32 {
            return Err(ReceiveError::BadChecksum {
                file: chunk.file,
                offset: chunk.offset,
            });
        }
        s.next_seq += 1;
        if chunk.done {
            if !chunk.data.is_empty() {
                return Err(ReceiveError::Mismatch("the final chunk carries data".into()));
            }
            let s = current.take().expect("checked above");
            return self.finish(s, chunk).map(Some);
        }
        s.write(chunk, self.max_snapshot_bytes)?;
        Ok(None)
    }

    /// Checks the stream against its final chunk and commits it.
    fn finish(&self, mut s: Incoming, last: SnapshotChunk) -> Result<ReceivedSnapshot, ReceiveError> {
        s.close_file();
        let meta = last
            .meta
            .ok_or_else(|| ReceiveError::Mismatch("the final chunk has no meta".into()))?;
        if (meta.last_index, meta.last_term) != (s.index, s.snapshot_term) {
            return Err(ReceiveError::Mismatch(format!(
                "meta is of {}/{}, the stream of {}/{}",
                meta.last_index, meta.last_term, s.index, s.snapshot_term
            )));
        }
        let mut listed = HashSet::new();
        for f in &last.files {
            if !listed.insert(f.name.as_str()) {
                return Err(ReceiveError::Mismatch(format!("{} is listed twice", f.name)));
            }
            match s.done.get(&f.name) {
                Some(&(size, crc)) if (size, crc) == (f.size, f.crc32) => {}
                Some(&(size, crc)) => {
                    return Err(ReceiveError::Mismatch(format!(
                        "{}: received {size} bytes with CRC {crc:08x}, listed {} with {:08x}",
                        f.name, f.size, f.crc32
                    )))
                }
                None => return Err(ReceiveError::Mismatch(format!("{} never arrived", f.name))),
            }
        }
        if let Some(extra) = s.done.keys().find(|n| !listed.contains(n.as_str())) {
            return Err(ReceiveError::Mismatch(format!(
                "{extra} arrived but is not listed"
            )));
        }
        let snapshot = self.store.commit(s.staging, meta)?;
        Ok(ReceivedSnapshot {
            term: s.term,
            leader: s.from,
            snapshot,
        })
    }
}

impl Incoming {
    /// Appends a data chunk to its file (opening it if it is a new one).
    fn write(&mut self, chunk: SnapshotChunk, max_bytes: u64) -> Result<(), ReceiveError> {
        self.total += chunk.data.len() as u64;
        if self.total > max_bytes {
            return Err(ReceiveError::TooLarge { limit: max_bytes });
        }
        if self.open.as_ref().is_some_and(|f| f.name != chunk.file) {
            self.close_file();
        }
        if self.open.is_none() {
            check_name(&chunk.file)?;
            if self.done.contains_key(&chunk.file) {
                return Err(ReceiveError::Mismatch(format!(
                    "{} arrives a second time",
                    chunk.file
                )));
            }
            if chunk.offset != 0 {
                return Err(ReceiveError::BadOffset {
                    file: chunk.file,
                    expected: 0,
                    got: chunk.offset,
                });
            }
            let path = self.staging.data_dir().join(&chunk.file);
            let io = |error| ReceiveError::Io {
                file: chunk.file.clone(),
                error,
            };
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            let file = File::options()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(io)?;
            self.open = Some(OpenFile {
                name: chunk.file.clone(),
                file,
                size: 0,
                crc: crc32fast::Hasher::new(),
            });
        }
        let f = self.open.as_mut().expect("opened above");
        if chunk.offset != f.size {
            return Err(ReceiveError::BadOffset {
                file: chunk.file,
                expected: f.size,
                got: chunk.offset,
            });
        }
        f.file.write_all(&chunk.data).map_err(|error| ReceiveError::Io {
            file: chunk.file.clone(),
            error,
        })?;
        f.size += chunk.data.len() as u64;
        f.crc.update(&chunk.data);
        Ok(())
    }

    /// Records the open file as received in full. The commit syncs it.
    fn close_file(&mut self) {
        if let Some(f) = self.open.take() {
            self.done.insert(f.name, (f.size, f.crc.finalize()));
        }
    }
}

/// A name from the wire must stay inside the staging directory: relative,
/// `/`-separated, no empty, `.` or `..` component, no backslash (a separator
/// elsewhere) and no NUL.
fn check_name(name: &str) -> Result<(), ReceiveError> {
    let bad = name.is_empty()
        || name.contains('\\')
        || name.contains('\0')
        || name.split('/').any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(ReceiveError::BadName(name.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{SnapshotFile, SnapshotMeta};

    const L: &str = "10.0.0.1:1";

    struct Fixture {
        dir: tempfile::TempDir,
        store: Arc<SnapshotStore>,
        rx: SnapshotReceiver,
    }

    fn fixture(max: u64) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SnapshotStore::open(dir.path()).unwrap());
        let rx = SnapshotReceiver::new(store.clone(), max);
        Fixture { dir, store, rx }
    }

    /// The chunks a leader would send for `files` (each in chunks of up to 4 bytes).
    fn stream(index: u64, files: &[(&str, &[u8])]) -> Vec<SnapshotChunk> {
        let head = SnapshotChunk {
            term: 2,
            leader: L.into(),
            snapshot_index: index,
            snapshot_term: 1,
            ..Default::default()
        };
        let mut out = Vec::new();
        for (name, data) in files {
            let pieces: Vec<&[u8]> = if data.is_empty() {
                vec![&[]]
            } else {
                data.chunks(4).collect()
            };
            let mut offset = 0;
            for p in pieces {
                out.push(SnapshotChunk {
                    file: name.to_string(),
                    offset,
                    data: p.to_vec().into(),
                    crc32: crc32fast::hash(p),
                    ..head.clone()
                });
                offset += p.len() as u64;
            }
        }
        out.push(SnapshotChunk {
            done: true,
            meta: Some(SnapshotMeta {
                last_index: index,
                last_term: 1,
                ..Default::default()
            }),
            files: files
                .iter()
                .map(|(n, d)| SnapshotFile {
                    name: n.to_string(),
                    size: d.len() as u64,
                    crc32: crc32fast::hash(d),
                })
                .collect(),
            ..head
        });
        for (i, c) in out.iter_mut().enumerate() {
            c.seq = i as u64;
        }
        out
    }

    /// Feeds chunks; returns the result of the last one.
    fn feed(f: &Fixture, chunks: Vec<SnapshotChunk>) -> Result<Option<ReceivedSnapshot>, ReceiveError> {
        let mut last = Ok(None);
        for c in chunks {
            last = f.rx.on_chunk(L, c);
            if last.is_err() {
                break;
            }
        }
        last
    }

    const FILES: &[(&str, &[u8])] = &[("a", b"0123456789"), ("d/e/f", b"xyz"), ("empty", b"")];

    /// Nothing committed, nothing staged: the snapshots directory holds no file.
    fn assert_nothing_left(f: &Fixture) {
        assert!(f.store.latest().is_none());
        assert!(f.rx.in_progress().is_none());
        assert_eq!(f.store.disk_bytes(), 0);
    }

    #[test]
    fn a_whole_stream_is_committed_byte_identical() {
        let f = fixture(1 << 20);
        let got = feed(&f, stream(9, FILES)).unwrap().unwrap();
        assert_eq!((got.term, got.leader.as_str(), got.snapshot.index()), (2, L, 9));
        assert_eq!(got.snapshot.files().unwrap(), ["a", "d/e/f", "empty"]);
        for (name, data) in FILES {
            assert_eq!(&std::fs::read(got.snapshot.data_dir().join(name)).unwrap(), data);
        }
        assert_eq!(f.store.latest_index(), 9);
        assert!(f.rx.in_progress().is_none());
    }

    fn refused(f: &Fixture, chunks: Vec<SnapshotChunk>) -> ReceiveError {
        match feed(f, chunks) {
            Err(e) => e,
            Ok(r) => panic!("accepted: {r:?}"),
        }
    }

    #[test]
    fn a_corrupted_chunk_is_refused_and_nothing_committed() {
        let f = fixture(1 << 20);
        let mut chunks = stream(9, FILES);
        let mut data = chunks[1].data.to_vec();
        data[0] ^= 1;
        chunks[1].data = data.into();
        assert!(matches!(refused(&f, chunks), ReceiveError::BadChecksum { .. }));
        assert_nothing_left(&f);
    }

    #[test]
    fn unsafe_names_are_refused() {
        for name in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "",
            "a//b",
            "a/",
            "./a",
            "a\\b",
            "a\0b",
        ] {
            let f = fixture(1 << 20);
            let e = refused(&f, stream(9, &[("ok", b"1"), (name, b"evil")]));
            assert!(
                matches!(&e, ReceiveError::BadName(n) if n == name),
                "{name:?}: {e}"
            );
            assert_nothing_left(&f);
        }
    }

    #[test]
    fn gaps_and_chunks_without_a_start_drop_the_stream() {
        let f = fixture(1 << 20);
        let mut chunks = stream(9, FILES);
        chunks.remove(2);
        assert!(matches!(
            refused(&f, chunks),
            ReceiveError::OutOfOrder { expected: 2, got: 3 }
        ));
        assert_nothing_left(&f);
        let chunks = stream(9, FILES);
        assert!(matches!(
            refused(&f, chunks[1..].to_vec()),
            ReceiveError::NoStream { seq: 1, .. }
        ));
        assert_nothing_left(&f);
    }

    #[test]
    fn wrong_offsets_sizes_and_lists_are_refused() {
        let f = fixture(1 << 20);
        let mut chunks = stream(9, FILES);
        chunks[1].offset += 1;
        assert!(matches!(
            refused(&f, chunks),
            ReceiveError::BadOffset {
                expected: 4,
                got: 5,
                ..
            }
        ));
        // The list disagrees with what arrived: a missing file, a wrong CRC, an unlisted file.
        let mut chunks = stream(9, FILES);
        chunks.last_mut().unwrap().files.push(SnapshotFile {
            name: "ghost".into(),
            ..Default::default()
        });
        assert!(matches!(refused(&f, chunks), ReceiveError::Mismatch(_)));
        let mut chunks = stream(9, FILES);
        chunks.last_mut().unwrap().files[1].crc32 ^= 1;
        assert!(matches!(refused(&f, chunks), ReceiveError::Mismatch(_)));
        let mut chunks = stream(9, FILES);
        chunks.last_mut().unwrap().files.pop();
        assert!(matches!(refused(&f, chunks), ReceiveError::Mismatch(_)));
        // The meta names another snapshot than the stream.
        let mut chunks = stream(9, FILES);
        chunks.last_mut().unwrap().meta.as_mut().unwrap().last_index = 8;
        assert!(matches!(refused(&f, chunks), ReceiveError::Mismatch(_)));
        // A file split by another one.
        let chunks = stream(9, &[("a", b"01234567"), ("b", b"x")]);
        let mut chunks = vec![
            chunks[0].clone(),
            chunks[2].clone(),
            chunks[1].clone(),
            chunks[3].clone(),
        ];
        for (i, c) in chunks.iter_mut().enumerate() {
            c.seq = i as u64;
        }
        assert!(matches!(refused(&f, chunks), ReceiveError::Mismatch(_)));
        assert_nothing_left(&f);
    }

    #[test]
    fn a_stream_over_the_limit_or_from_an_impostor_is_refused() {
        let f = fixture(12);
        assert!(matches!(
            refused(&f, stream(9, &[("a", b"0123456789"), ("b", b"0123")])),
            ReceiveError::TooLarge { limit: 12 }
        ));
        assert_nothing_left(&f);
        let f = fixture(1 << 20);
        let first = stream(9, FILES).remove(0);
        assert!(matches!(
            f.rx.on_chunk("10.0.0.2:1", first),
            Err(ReceiveError::WrongSender { .. })
        ));
        assert_nothing_left(&f);
    }

    #[test]
    fn a_new_start_replaces_a_partial_stream_and_a_stale_leader_cannot_break_in() {
        let f = fixture(1 << 20);
        let old = stream(9, FILES);
        feed(&f, old[..3].to_vec()).unwrap();
        assert_eq!(f.rx.in_progress(), Some((L.to_string(), 9)));
        let mut new = stream(20, &[("n", b"new data")]);
        for c in &mut new {
            c.term = 3;
        }
        let (first, rest) = new.split_first().unwrap();
        f.rx.on_chunk(L, first.clone()).unwrap();
        // The rest of the older stream (term 2) is refused without harm to the new one.
        assert!(matches!(
            f.rx.on_chunk(L, old[3].clone()),
            Err(ReceiveError::Stale { .. })
        ));
        let got = feed(&f, rest.to_vec()).unwrap().unwrap();
        feed(&f, old[..2].to_vec()).unwrap();
        f.rx.reset();
        assert!(f.rx.in_progress().is_none());
        assert_eq!(got.snapshot.index(), 20);
        assert_eq!(got.snapshot.files().unwrap(), ["n"]);
        // Only the committed snapshot is left on disk: the partial staging is gone.
        let entries: Vec<_> = std::fs::read_dir(f.dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
    }
}
