//! A group's progress, stored with every applied batch: its applied index,
//! the log's time (with the last stamp it was computed from) and its
//! revision. Two layouts:
//!
//! - **separate keys** (`m:applied`, `m:time` of 8 bytes each, `m:stamp` of
//!   16, `m:rev` of 8): the layout of every earlier release, kept by private
//!   stores, whose checkpoints members of an earlier release load as they are;
//! - **one key** (`m:applied` alone, 17 to 41 bytes): written by the groups
//!   of a shared store, where a batch is often one entry of one group, and
//!   three puts fewer per batch is a large part of an apply's work
//!   (BENCHMARKS.md, "Many groups on a host"). A group's export
//!   ([`super::snapshot`]) writes the separate keys, so a snapshot reads the
//!   same in this release and the one before; the first apply after an
//!   import (or after opening a store of the previous release) turns them
//!   into the one key.
//!
//! An earlier release reads the one key as a corrupt applied index (not 8
//! bytes), never as a wrong one: opening a shared store with it (a
//! downgrade) stops there instead of applying anything twice.

use super::log_time::LogTime;
use super::revision::FIRST_REVISION;
use super::KvKeys;
use crate::error::{Error, Result};
use rocksdb::WriteBatch;

const HAS_REVISION: u8 = 1;
const HAS_STAMP: u8 = 2;

/// Where a group is, as of its last applied batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    pub applied: u64,
    pub time: LogTime,
    /// `None` until the group counts a revision (a store of a release
    /// before revisions: `revision::legacy_possible` tells such keys apart).
    pub revision: Option<u64>,
}

/// Whether `m:applied`'s value is the whole progress in one key (17 to 41
/// bytes) rather than the applied index alone (8 bytes, the separate keys).
fn holds_one_key(applied: &[u8]) -> bool {
    applied.len() != 8
}

/// How a store holds a group's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Separate,
    OneKey,
}

impl Progress {
    /// Reads the progress through `get` (a store or one of its snapshots),
    /// and which layout holds it.
    pub fn read(
        keys: &KvKeys,
        mut get: impl FnMut(&[u8]) -> Result<Option<Vec<u8>>>,
    ) -> Result<(Progress, Layout)> {
        let Some(applied) = get(&keys.applied())? else {
            return Ok((Progress::default(), Layout::Separate));
        };
        if holds_one_key(&applied) {
            return Ok((Progress::decode(&applied)?, Layout::OneKey));
        }
        let time = match get(&keys.time())? {
            Some(v) => u64_of(&v, "log time")?,
            None => 0,
        };
        let last = match get(&keys.stamp())? {
            Some(v) => Some(
                LogTime::decode_last(&v)
                    .ok_or_else(|| Error::Corruption("m:stamp is not 16 bytes".into()))?,
            ),
            None => None,
        };
        let revision = match get(&keys.revision())? {
            Some(v) => Some(u64_of(&v, "the revision")?),
            None => None,
        };
        let progress = Progress {
            applied: u64_of(&applied, "applied index")?,
            time: LogTime { time, last },
            revision,
        };
        Ok((progress, Layout::Separate))
    }

    /// The group's revision alone, as a scan reads it: without the log's
    /// time and stamp.
    pub fn read_revision(
        keys: &KvKeys,
        mut get: impl FnMut(&[u8]) -> Result<Option<Vec<u8>>>,
    ) -> Result<u64> {
        match get(&keys.applied())? {
            Some(one_key) if holds_one_key(&one_key) => Ok(Progress::decode(&one_key)?.revision()),
            _ => match get(&keys.revision())? {
                Some(v) => u64_of(&v, "the revision"),
                None => Ok(FIRST_REVISION),
            },
        }
    }

    /// The group's revision (the first one before any was counted).
    pub fn revision(&self) -> u64 {
        self.revision.unwrap_or(FIRST_REVISION)
    }

    /// Stores the progress in `batch` in `layout`. `before` is what the
    /// store held: separate keys turned into one key are deleted, and a
    /// separate `m:rev` is written only when the revision moved (as the
    /// previous release does).
    pub fn write(
        &self,
        batch: &mut WriteBatch,
        keys: &KvKeys,
        layout: Layout,
        before: &Progress,
        before_layout: Layout,
    ) {
        match layout {
            Layout::OneKey => {
                batch.put(keys.applied(), self.encode());
                if before_layout == Layout::Separate {
                    for key in [keys.time(), keys.stamp(), keys.revision()] {
                        batch.delete(key);
                    }
                }
            }
            Layout::Separate => {
                batch.put(keys.applied(), self.applied.to_be_bytes());
                batch.put(keys.time(), self.time.time.to_be_bytes());
                if let Some(stamp) = self.time.encode_last() {
                    batch.put(keys.stamp(), stamp);
                }
                if let Some(rev) = self.revision.filter(|_| self.revision != before.revision) {
                    batch.put(keys.revision(), rev.to_be_bytes());
                }
            }
        }
    }

    /// The separate keys that hold this progress, in key order.
    pub fn separate_keys(&self, keys: &KvKeys) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = vec![(keys.applied(), self.applied.to_be_bytes().to_vec())];
        if let Some(rev) = self.revision {
            out.push((keys.revision(), rev.to_be_bytes().to_vec()));
        }
        if let Some(stamp) = self.time.encode_last() {
            out.push((keys.stamp(), stamp.to_vec()));
        }
        out.push((keys.time(), self.time.time.to_be_bytes().to_vec()));
        out
    }

    /// The one key's value: applied index, log time, which of the rest
    /// follow, then the revision and the last stamp if any.
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(41);
        v.extend_from_slice(&self.applied.to_be_bytes());
        v.extend_from_slice(&self.time.time.to_be_bytes());
        let stamp = self.time.encode_last();
        let flags = if self.revision.is_some() { HAS_REVISION } else { 0 }
            | if stamp.is_some() { HAS_STAMP } else { 0 };
        v.push(flags);
        if let Some(rev) = self.revision {
            v.extend_from_slice(&rev.to_be_bytes());
        }
        if let Some(stamp) = stamp {
            v.extend_from_slice(&stamp);
        }
        v
    }

    /// The one key's value (`m:applied` of other than 8 bytes).
    pub fn decode(v: &[u8]) -> Result<Progress> {
        let corrupt = || Error::Corruption(format!("a group's progress (m:applied) of {} bytes", v.len()));
        let (head, mut rest) = (v.get(..17).ok_or_else(corrupt)?, &v[17..]);
        let flags = head[16];
        let mut take = |n: usize| -> Result<&[u8]> {
            let (a, b) = (rest.get(..n).ok_or_else(corrupt)?, &rest[n..]);
            rest = b;
            Ok(a)
        };
        let revision = match flags & HAS_REVISION {
            0 => None,
            _ => Some(u64_of(take(8)?, "the revision")?),
        };
        let last = match flags & HAS_STAMP {
            0 => None,
            _ => Some(LogTime::decode_last(take(16)?).ok_or_else(corrupt)?),
        };
        if !rest.is_empty() || flags & !(HAS_REVISION | HAS_STAMP) != 0 {
            return Err(corrupt());
        }
        Ok(Progress {
            applied: u64_of(&head[..8], "applied index")?,
            time: LogTime {
                time: u64_of(&head[8..16], "log time")?,
                last,
            },
            revision,
        })
    }
}

fn u64_of(v: &[u8], what: &str) -> Result<u64> {
    Ok(u64::from_be_bytes(v.try_into().map_err(|_| {
        Error::Corruption(format!("{what} is not 8 bytes"))
    })?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn store(batch_of: impl FnOnce(&mut WriteBatch)) -> BTreeMap<Vec<u8>, Vec<u8>> {
        // A WriteBatch's puts and deletes, replayed into a map.
        struct Replay(BTreeMap<Vec<u8>, Vec<u8>>);
        impl rocksdb::WriteBatchIterator for Replay {
            fn put(&mut self, key: &[u8], value: &[u8]) {
                self.0.insert(key.to_vec(), value.to_vec());
            }
            fn delete(&mut self, key: &[u8]) {
                self.0.remove(key);
            }
        }
        let mut batch = WriteBatch::default();
        batch_of(&mut batch);
        let mut replay = Replay(BTreeMap::new());
        batch.iterate(&mut replay);
        replay.0
    }

    fn read(map: &BTreeMap<Vec<u8>, Vec<u8>>, keys: &KvKeys) -> (Progress, Layout) {
        Progress::read(keys, |k| Ok(map.get(k).cloned())).unwrap()
    }

    fn sample(revision: Option<u64>, last: Option<(u64, u64)>) -> Progress {
        Progress {
            applied: 42,
            time: LogTime { time: 7_000, last },
            revision,
        }
    }

    #[test]
    fn one_key_holds_what_the_separate_keys_hold() {
        let keys = KvKeys::of(3);
        for p in [
            sample(None, None),
            sample(Some(9), None),
            sample(None, Some((2, 6_990))),
            sample(Some(9), Some((2, 6_990))),
        ] {
            let none = Progress::default();
            let one = store(|b| p.write(b, &keys, Layout::OneKey, &none, Layout::OneKey));
            assert_eq!(one.len(), 1, "{p:?}");
            assert_eq!(read(&one, &keys), (p, Layout::OneKey));
            let revision_of = |map: &BTreeMap<Vec<u8>, Vec<u8>>| {
                Progress::read_revision(&keys, |k| Ok(map.get(k).cloned())).unwrap()
            };
            assert_eq!(revision_of(&one), p.revision());
            let separate = store(|b| p.write(b, &keys, Layout::Separate, &none, Layout::Separate));
            assert_eq!(read(&separate, &keys), (p, Layout::Separate));
            assert_eq!(revision_of(&separate), p.revision());
            let expanded: BTreeMap<_, _> = p.separate_keys(&keys).into_iter().collect();
            assert_eq!(expanded, separate);
        }
    }

    #[test]
    fn separate_keys_turned_into_one_key_are_deleted() {
        let keys = KvKeys::of(0);
        let old = sample(Some(9), Some((2, 6_990)));
        let mut map =
            store(|b| old.write(b, &keys, Layout::Separate, &Progress::default(), Layout::Separate));
        let new = Progress { applied: 43, ..old };
        let change = store(|b| new.write(b, &keys, Layout::OneKey, &old, Layout::Separate));
        map.insert(keys.applied(), change[&keys.applied()].clone());
        for k in [keys.time(), keys.stamp(), keys.revision()] {
            map.remove(&k);
        }
        assert_eq!(map.len(), 1);
        assert_eq!(read(&map, &keys), (new, Layout::OneKey));
    }

    #[test]
    fn a_separate_revision_is_written_only_when_it_moves() {
        let keys = KvKeys::of(0);
        let before = sample(None, None);
        let same = store(|b| before.write(b, &keys, Layout::Separate, &before, Layout::Separate));
        assert!(
            !same.contains_key(&keys.revision()),
            "absent stays absent: no revision counted"
        );
        let moved = Progress {
            revision: Some(2),
            ..before
        };
        let written = store(|b| moved.write(b, &keys, Layout::Separate, &before, Layout::Separate));
        assert_eq!(written[&keys.revision()], 2u64.to_be_bytes());
    }

    #[test]
    fn a_progress_of_a_wrong_length_is_corrupt() {
        let keys = KvKeys::of(1);
        for bad in [vec![0u8; 9], vec![0u8; 16], vec![0u8; 18], {
            let mut v = vec![0u8; 17];
            v[16] = 4;
            v
        }] {
            let map = BTreeMap::from([(keys.applied(), bad)]);
            assert!(matches!(
                Progress::read(&keys, |k| Ok(map.get(k).cloned())),
                Err(Error::Corruption(_))
            ));
        }
    }
}
