//! The leader's side of InstallSnapshot: one snapshot streamed as chunks.
//!
//! A [`PeerLink`](super::PeerLink) worker owns at most one outgoing stream.
//! It writes one chunk per turn of its loop, after whatever Raft and client
//! frames are queued, so heartbeats and appends never wait behind more than
//! one chunk; a [`Pacer`] spaces the chunks to the configured rate. Files
//! are read one chunk at a time (never whole) and their checksums computed
//! on the way, so the final chunk can list every file with its size and CRC.

use crate::storage::snapshots::SnapshotHandle;
use crate::wire::{SnapshotChunk, SnapshotFile};
use std::fs::File;
use std::io::{self, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::limits::{DEFAULT_SNAPSHOT_CHUNK_BYTES, MAX_SNAPSHOT_CHUNK_BYTES};

/// "Send this snapshot to the peer": the leader's `InstallSnapshot`.
#[derive(Debug, Clone)]
pub struct SnapshotOffer {
    /// The group whose snapshot it is.
    pub group: crate::storage::GroupId,
    /// The leader's term, carried by every chunk.
    pub term: u64,
    /// The leader's id (the follower checks it against the connection's sender).
    pub leader: String,
    pub snapshot: Arc<SnapshotHandle>,
}

impl SnapshotOffer {
    /// What identifies a stream on both sides: the receiver restarts on any change.
    pub(super) fn key(&self) -> (crate::storage::GroupId, u64, &str, u64, u64) {
        (
            self.group,
            self.term,
            &self.leader,
            self.snapshot.index(),
            self.snapshot.term(),
        )
    }
}

/// Why a stream cannot go on.
#[derive(Debug, thiserror::Error)]
pub(super) enum SendError {
    #[error("cannot list the snapshot's files: {0}")]
    List(crate::error::Error),
    #[error("cannot read {file}: {error}")]
    Read { file: String, error: io::Error },
}

/// The file being read.
struct OpenFile {
    name: String,
    file: File,
    offset: u64,
    crc: crc32fast::Hasher,
}

/// One snapshot on its way: which file, where in it, and what was sent.
pub(super) struct OutgoingStream {
    offer: SnapshotOffer,
    names: Vec<String>,
    /// Index in `names` of the next file to open.
    next_file: usize,
    current: Option<OpenFile>,
    listed: Vec<SnapshotFile>,
    seq: u64,
    chunk_bytes: usize,
    finished: bool,
    /// When the stream began, for how long it took.
    pub started: std::time::Instant,
}

impl OutgoingStream {
    /// Lists the snapshot's files; nothing is opened yet.
    pub fn new(offer: SnapshotOffer, chunk_bytes: usize) -> Result<Self, SendError> {
        let names = offer.snapshot.files().map_err(SendError::List)?;
        Ok(OutgoingStream {
            offer,
            names,
            next_file: 0,
            current: None,
            listed: Vec::new(),
            seq: 0,
            chunk_bytes: chunk_bytes.max(1),
            finished: false,
            started: std::time::Instant::now(),
        })
    }

    pub fn offer(&self) -> &SnapshotOffer {
        &self.offer
    }

    pub fn index(&self) -> u64 {
        self.offer.snapshot.index()
    }

    /// The next chunk, or `None` once the final one was produced. Every
    /// file gets at least one chunk (an empty one for an empty file), so the
    /// receiver creates each file the final chunk lists.
    pub fn next_chunk(&mut self) -> Result<Option<SnapshotChunk>, SendError> {
        loop {
            if self.finished {
                return Ok(None);
            }
            let header = self.header();
            let Some(cur) = self.current.as_mut() else {
                if self.next_file == self.names.len() {
                    self.finished = true;
                    return Ok(Some(self.final_chunk()));
                }
                let name = self.names[self.next_file].clone();
                self.next_file += 1;
                let path = self.offer.snapshot.data_dir().join(&name);
                let file = File::open(&path).map_err(|error| SendError::Read {
                    file: name.clone(),
                    error,
                })?;
                self.current = Some(OpenFile {
                    name,
                    file,
                    offset: 0,
                    crc: crc32fast::Hasher::new(),
                });
                continue;
            };
            let mut data = vec![0u8; self.chunk_bytes];
            let n = read_full(&mut cur.file, &mut data).map_err(|error| SendError::Read {
                file: cur.name.clone(),
                error,
            })?;
            if n == 0 && cur.offset > 0 {
                self.finish_file();
                continue;
            }
            data.truncate(n);
            cur.crc.update(&data);
            let chunk = SnapshotChunk {
                file: cur.name.clone(),
                offset: cur.offset,
                crc32: crc32fast::hash(&data),
                data: data.into(),
                ..header
            };
            cur.offset += n as u64;
            if n < self.chunk_bytes {
                // A short read is the end of the file: no need for another read to learn it.
                self.finish_file();
            }
            self.seq += 1;
            return Ok(Some(chunk));
        }
    }

    fn finish_file(&mut self) {
        if let Some(f) = self.current.take() {
            self.listed.push(SnapshotFile {
                name: f.name,
                size: f.offset,
                crc32: f.crc.finalize(),
            });
        }
    }

    fn final_chunk(&mut self) -> SnapshotChunk {
        SnapshotChunk {
            done: true,
            crc32: crc32fast::hash(&[]),
            meta: Some(self.offer.snapshot.meta().clone()),
            files: std::mem::take(&mut self.listed),
            ..self.header()
        }
    }

    /// The fields every chunk of this stream carries.
    fn header(&self) -> SnapshotChunk {
        SnapshotChunk {
            term: self.offer.term,
            leader: self.offer.leader.clone(),
            snapshot_index: self.offer.snapshot.index(),
            snapshot_term: self.offer.snapshot.term(),
            seq: self.seq,
            ..Default::default()
        }
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Spaces writes to `bytes_per_sec` on average (0: no limit).
pub(super) struct Pacer {
    bytes_per_sec: u64,
    next_at: Instant,
}

impl Pacer {
    /// How far behind schedule a stream may fall and still catch up with a
    /// burst: more, and a stalled connection would be followed by a flood.
    const CATCH_UP: Duration = Duration::from_millis(100);

    pub fn new(bytes_per_sec: u64, now: Instant) -> Self {
        Pacer {
            bytes_per_sec,
            next_at: now,
        }
    }

    /// When the next write may go out.
    pub fn next_at(&self) -> Instant {
        self.next_at
    }

    /// Records a write of `bytes` at `now`.
    pub fn sent(&mut self, bytes: usize, now: Instant) {
        if self.bytes_per_sec == 0 {
            return;
        }
        let base = if self.next_at + Self::CATCH_UP < now {
            now
        } else {
            self.next_at
        };
        let nanos = bytes as u128 * 1_000_000_000 / u128::from(self.bytes_per_sec);
        self.next_at = base + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::snapshots::SnapshotStore;
    use crate::wire::SnapshotMeta;

    fn offer(store: &SnapshotStore, files: &[(&str, Vec<u8>)]) -> SnapshotOffer {
        let st = store.stage("test").unwrap();
        for (name, data) in files {
            let path = st.data_dir().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, data).unwrap();
        }
        let meta = SnapshotMeta {
            last_index: 7,
            last_term: 3,
            ..Default::default()
        };
        SnapshotOffer {
            group: 0,
            term: 5,
            leader: "l".into(),
            snapshot: store.commit(st, meta).unwrap(),
        }
    }

    fn all_chunks(s: &mut OutgoingStream) -> Vec<SnapshotChunk> {
        std::iter::from_fn(|| s.next_chunk().unwrap()).collect()
    }

    #[test]
    fn files_go_out_in_bounded_chunks_with_checksums_and_a_final_list() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path()).unwrap();
        let big: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let exact = vec![9u8; 2000];
        let o = offer(
            &store,
            &[("a", big.clone()), ("b/c", exact.clone()), ("e", Vec::new())],
        );
        let mut s = OutgoingStream::new(o, 1000).unwrap();
        let chunks = all_chunks(&mut s);
        // 10 chunks of `a`, 2 of `b/c` (no empty one for its exact end), 1 empty for `e`, the final one.
        assert_eq!(chunks.len(), 14);
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!(c.seq, i as u64);
            assert_eq!(
                (c.term, c.leader.as_str(), c.snapshot_index, c.snapshot_term),
                (5, "l", 7, 3)
            );
            assert!(c.data.len() <= 1000);
            assert_eq!(c.crc32, crc32fast::hash(&c.data));
        }
        let a: Vec<u8> = chunks
            .iter()
            .filter(|c| c.file == "a")
            .flat_map(|c| c.data.to_vec())
            .collect();
        assert_eq!(a, big);
        assert_eq!(chunks[10].offset, 0);
        assert_eq!((chunks[11].file.as_str(), chunks[11].offset), ("b/c", 1000));
        assert_eq!((chunks[12].file.as_str(), chunks[12].data.len()), ("e", 0));
        let last = chunks.last().unwrap();
        assert!(last.done && last.data.is_empty() && last.file.is_empty());
        assert_eq!(last.meta.as_ref().unwrap().last_index, 7);
        let listed: Vec<_> = last
            .files
            .iter()
            .map(|f| (f.name.as_str(), f.size, f.crc32))
            .collect();
        assert_eq!(
            listed,
            [
                ("a", 10_000, crc32fast::hash(&big)),
                ("b/c", 2000, crc32fast::hash(&exact)),
                ("e", 0, 0)
            ]
        );
        assert!(chunks[..13].iter().all(|c| !c.done));
    }

    #[test]
    fn a_file_deleted_underneath_fails_the_stream() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path()).unwrap();
        let o = offer(&store, &[("a", vec![1; 10]), ("b", vec![2; 10])]);
        let mut s = OutgoingStream::new(o.clone(), 1000).unwrap();
        assert_eq!(s.next_chunk().unwrap().unwrap().file, "a");
        std::fs::remove_file(o.snapshot.data_dir().join("b")).unwrap();
        assert!(matches!(s.next_chunk(), Err(SendError::Read { file, .. }) if file == "b"));
    }

    #[test]
    fn the_pacer_spaces_writes_to_the_rate_and_bounds_catching_up() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut p = Pacer::new(1000, t0);
        assert_eq!(p.next_at(), t0);
        p.sent(100, t0);
        assert_eq!(p.next_at(), t0 + ms(100));
        // Written a little late: the schedule holds, so the average rate does.
        p.sent(100, t0 + ms(150));
        assert_eq!(p.next_at(), t0 + ms(200));
        // Far behind (a stall): the schedule restarts from now instead of bursting.
        p.sent(100, t0 + ms(1000));
        assert_eq!(p.next_at(), t0 + ms(1100));
        let mut unlimited = Pacer::new(0, t0);
        unlimited.sent(1 << 30, t0 + ms(5));
        assert_eq!(unlimited.next_at(), t0);
    }
}
