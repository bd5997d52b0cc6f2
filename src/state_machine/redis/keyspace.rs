//! What a Redis command sees of a group's keys: [`Keyspace`], with two
//! sides. An apply's ([`Writing`]) reads and writes through the batch's
//! [`View`] at the entry's log time, so revisions, watches and the history
//! follow every change; a read's ([`Reading`]) looks at the store as last
//! applied, at the time this node can tell. On both, a key past its
//! deadline is gone.

use super::super::expiry::ExpiryTable;
use super::super::revision::View;
use super::super::KvKeys;
use crate::error::{Error, Result};
use bytes::Bytes;
use rocksdb::DB;

/// What a write does to the key's deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// None from now on (a plain SET).
    Clear,
    /// The key keeps the one it has (KEEPTTL, INCR, APPEND...).
    Keep,
    /// This deadline, on the log's clock (ms).
    At(u64),
}

pub trait Keyspace {
    /// The log's time (ms) the command runs at.
    fn now(&self) -> u64;
    /// A live key's value.
    fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>>;
    /// A live key's deadline.
    fn deadline(&self, key: &[u8]) -> Option<u64>;
    fn put(&mut self, key: &[u8], value: Bytes, ttl: Ttl) -> Result<()>;
    /// Whether a live key was deleted.
    fn delete(&mut self, key: &[u8]) -> Result<bool>;
    /// Sets a live key's deadline (`None`: persist it).
    fn set_deadline(&mut self, key: &[u8], deadline: Option<u64>) -> Result<()>;
    /// Up to `limit` live keys after `after` (from the first: `None`) in
    /// byte order, and whether more lie beyond.
    fn keys_after(&mut self, after: Option<&[u8]>, limit: usize) -> Result<(Vec<Bytes>, bool)>;
    /// Deletes every key; how many were live.
    fn delete_all(&mut self) -> Result<u64>;
}

/// The apply's side: the entry's batch at its log time.
pub struct Writing<'v, 'a> {
    pub view: &'v mut View<'a>,
    pub now: u64,
    /// The revision this command's changes take.
    pub next: u64,
    /// Whether it changed anything (and so takes `next`).
    pub changed: bool,
}

impl Writing<'_, '_> {
    fn expired(&self, key: &[u8]) -> bool {
        self.view.expiry.deadline(key).is_some_and(|d| d <= self.now)
    }
}

impl Keyspace for Writing<'_, '_> {
    fn now(&self) -> u64 {
        self.now
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>> {
        if self.expired(key) {
            return Ok(None);
        }
        self.view.value(key)
    }

    fn deadline(&self, key: &[u8]) -> Option<u64> {
        self.view.expiry.deadline(key).filter(|d| *d > self.now)
    }

    fn put(&mut self, key: &[u8], value: Bytes, ttl: Ttl) -> Result<()> {
        let kept = match ttl {
            Ttl::Keep => self.deadline(key),
            Ttl::At(d) => Some(d),
            Ttl::Clear => None,
        };
        let key = Bytes::copy_from_slice(key);
        self.view.put(&key, &value, 0, Some(self.next))?;
        if kept.is_some() {
            self.view.set_deadline(&key, kept);
        }
        self.changed = true;
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<bool> {
        let live = !self.expired(key);
        // (An expired key still stored goes too, counted as absent.)
        let existed = self.view.delete(&Bytes::copy_from_slice(key))?;
        self.changed |= existed;
        Ok(existed && live)
    }

    fn set_deadline(&mut self, key: &[u8], deadline: Option<u64>) -> Result<()> {
        if self.deadline(key) == deadline {
            return Ok(());
        }
        // A TTL change is a change of the key: a new revision, and a put
        // event with its value for watchers.
        let Some(value) = self.get(key)? else {
            return Ok(());
        };
        self.put(key, value, deadline.map_or(Ttl::Clear, Ttl::At))
    }

    fn keys_after(&mut self, _after: Option<&[u8]>, _limit: usize) -> Result<(Vec<Bytes>, bool)> {
        Err(Error::InvalidArgument(
            "listing keys is a read: it does not run in a write".into(),
        ))
    }

    fn delete_all(&mut self) -> Result<u64> {
        let keys = self.view.keys;
        let (prefix, skip) = (keys.data(b""), keys.data_prefix_len());
        let mut all = std::collections::BTreeSet::new();
        let mut it = self.view.db.raw_iterator();
        it.seek(&prefix);
        while let Some(k) = it.key() {
            if !k.starts_with(&prefix) {
                break;
            }
            all.insert(Bytes::copy_from_slice(&k[skip..]));
            it.next();
        }
        it.status()?;
        drop(it);
        // And what earlier entries of the batch wrote.
        all.extend(self.view.keys_written());
        let mut live = 0;
        for k in all {
            live += u64::from(self.delete(&k)?);
        }
        Ok(live)
    }
}

/// A read's side: the store as last applied, at the time this node can tell.
pub struct Reading<'a> {
    pub db: &'a DB,
    pub keys: &'a KvKeys,
    pub expiries: &'a ExpiryTable,
    pub now: u64,
}

impl Reading<'_> {
    fn expired(&self, key: &[u8]) -> bool {
        self.expiries.deadline(key).is_some_and(|d| d <= self.now)
    }
}

fn read_only() -> Error {
    Error::InvalidArgument("a write in a read: it needs the log".into())
}

impl Keyspace for Reading<'_> {
    fn now(&self) -> u64 {
        self.now
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>> {
        if self.expired(key) {
            return Ok(None);
        }
        Ok(self.db.get(self.keys.data(key))?.map(Bytes::from))
    }

    fn deadline(&self, key: &[u8]) -> Option<u64> {
        self.expiries.deadline(key).filter(|d| *d > self.now)
    }

    fn put(&mut self, _: &[u8], _: Bytes, _: Ttl) -> Result<()> {
        Err(read_only())
    }

    fn delete(&mut self, _: &[u8]) -> Result<bool> {
        Err(read_only())
    }

    fn set_deadline(&mut self, _: &[u8], _: Option<u64>) -> Result<()> {
        Err(read_only())
    }

    fn delete_all(&mut self) -> Result<u64> {
        Err(read_only())
    }

    fn keys_after(&mut self, after: Option<&[u8]>, limit: usize) -> Result<(Vec<Bytes>, bool)> {
        let prefix = self.keys.data(b"");
        let skip = self.keys.data_prefix_len();
        let mut it = self.db.raw_iterator();
        match after {
            Some(a) => {
                it.seek(self.keys.data(a));
                if it.key().is_some_and(|k| &k[skip..] == a) {
                    it.next();
                }
            }
            None => it.seek(&prefix),
        }
        let mut out = Vec::new();
        while let Some(k) = it.key() {
            if !k.starts_with(&prefix) {
                break;
            }
            let key = &k[skip..];
            if !self.expired(key) {
                if out.len() == limit {
                    return Ok((out, true));
                }
                out.push(Bytes::copy_from_slice(key));
            }
            it.next();
        }
        it.status()?;
        Ok((out, false))
    }
}
