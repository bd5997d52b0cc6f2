//! Range reads (protocol 6): a group's keys in `[start, end)` in byte
//! order, with their revisions, read from one RocksDB snapshot so that a
//! long scan sees one state and never holds writes up.

use super::progress::Progress;
use super::revision::{KvMeta, LEGACY};
use super::KvKeys;
use crate::error::Result;
use crate::limits::MAX_RANGE_PAGE_BYTES;
use crate::wire::{KvList, Range};
use bytes::Bytes;
use rocksdb::{Direction, IteratorMode, DB};

/// Reads `r` from `db`: at most `r.limit` keys (0: as many as a page holds,
/// [`MAX_RANGE_PAGE_BYTES`] of keys and values), `more` if the range goes
/// on past the last one returned; or only their number (`count_only`).
pub fn read(db: &DB, keys: &KvKeys, r: &Range) -> Result<KvList> {
    if !r.end.is_empty() && r.end <= r.start {
        return Ok(KvList {
            revision: revision(db, keys)?,
            ..Default::default()
        });
    }
    let snapshot = db.snapshot();
    let revision = Progress::read_revision(keys, |k| Ok(snapshot.get(k)?))?;
    let from = keys.data(&r.start);
    // Past the last data key of this group: the byte after its data prefix.
    let past_data = {
        let mut p = keys.data(b"");
        *p.last_mut().expect("a data prefix") += 1;
        p
    };
    let until = if r.end.is_empty() {
        past_data
    } else {
        keys.data(&r.end)
    };
    let skip = keys.data_prefix_len();
    let limit = if r.limit == 0 || r.count_only {
        u64::MAX
    } else {
        r.limit
    };
    let mut list = KvList {
        revision,
        ..Default::default()
    };
    let mut bytes = 0usize;
    // The keys' revisions, in the same order as their values: walked beside
    // them (a merge join), not looked up one by one.
    let mut metas = MetaCursor::new(&snapshot, keys, &r.start);
    for item in snapshot.iterator(IteratorMode::From(&from, Direction::Forward)) {
        let (k, v) = item?;
        if k.as_ref() >= until.as_slice() {
            break;
        }
        if list.count >= limit || bytes >= MAX_RANGE_PAGE_BYTES {
            list.more = true;
            break;
        }
        list.count += 1;
        if r.count_only {
            continue;
        }
        let key = Bytes::copy_from_slice(&k[skip..]);
        let meta = metas.of(&key)?.unwrap_or(LEGACY);
        bytes += key.len() + v.len();
        list.kvs
            .push(super::txn::with_meta(key, Bytes::from(v.into_vec()), meta));
    }
    Ok(list)
}

/// The revisions of a range's keys, read in key order from one snapshot.
struct MetaCursor<'a> {
    it: rocksdb::DBRawIteratorWithThreadMode<'a, DB>,
    /// The group's meta prefix: a user key follows it.
    prefix: Vec<u8>,
}

impl<'a> MetaCursor<'a> {
    fn new(snapshot: &'a rocksdb::SnapshotWithThreadMode<'a, DB>, keys: &KvKeys, start: &[u8]) -> Self {
        let mut it = snapshot.raw_iterator();
        it.seek(keys.meta(start));
        MetaCursor {
            it,
            prefix: keys.meta(b""),
        }
    }

    /// `key`'s revisions, if stored; keys must come in ascending order.
    fn of(&mut self, key: &[u8]) -> Result<Option<KvMeta>> {
        while let Some(k) = self.it.key() {
            let Some(user) = k.strip_prefix(self.prefix.as_slice()) else {
                break;
            };
            match user.cmp(key) {
                std::cmp::Ordering::Less => self.it.next(),
                std::cmp::Ordering::Equal => {
                    return KvMeta::decode(self.it.value().unwrap_or_default()).map(Some)
                }
                std::cmp::Ordering::Greater => break,
            }
        }
        self.it.status()?;
        Ok(None)
    }
}

/// The group's revision now.
pub fn revision(db: &DB, keys: &KvKeys) -> Result<u64> {
    Progress::read_revision(keys, |k| Ok(db.get_pinned(k)?.map(|v| v.to_vec())))
}
