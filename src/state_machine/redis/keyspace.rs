//! What a Redis command sees of a group's keys: [`Keyspace`], with two
//! sides. An apply's ([`Writing`]) reads and writes through the batch's
//! [`View`] at the entry's log time, so revisions, watches and the history
//! follow every change; a read's ([`Reading`]) looks at the store as last
//! applied, at the time this node can tell. On both, a key past its
//! deadline is gone.

use super::super::expiry::ExpiryTable;
use super::super::revision::View;
use super::super::typed::Kind;
use super::super::KvKeys;
use crate::error::{Error, Result};
use bytes::Bytes;

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

/// The error of a command on a key of another kind (Redis's text).
pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

pub fn wrong_type() -> Error {
    Error::InvalidArgument(WRONGTYPE.into())
}

pub trait Keyspace {
    /// The log's time (ms) the command runs at.
    fn now(&self) -> u64;
    /// What a live key holds.
    fn kind(&mut self, key: &[u8]) -> Result<Option<Kind>>;
    /// A live string's value; WRONGTYPE for a key of another kind.
    fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>>;
    /// A live key's header if it is of `kind`; WRONGTYPE if of another.
    fn header(&mut self, key: &[u8], kind: Kind) -> Result<Option<Bytes>> {
        match self.kind(key)? {
            None => Ok(None),
            Some(k) if k == kind => self.raw_value(key),
            Some(_) => Err(wrong_type()),
        }
    }
    /// The stored value of a key whatever its kind (a header for a hash or list).
    fn raw_value(&mut self, key: &[u8]) -> Result<Option<Bytes>>;
    /// Writes the header of a hash or list (creating it), keeping its TTL and items.
    fn put_header(&mut self, key: &[u8], kind: Kind, header: Bytes) -> Result<()>;
    fn item(&mut self, key: &[u8], sub: &[u8]) -> Result<Option<Bytes>>;
    fn put_item(&mut self, key: &[u8], sub: &[u8], value: Bytes) -> Result<()>;
    fn delete_item(&mut self, key: &[u8], sub: &[u8]) -> Result<()>;
    /// Deletes every item of the key (its header stays).
    fn clear_items(&mut self, key: &[u8]) -> Result<()>;
    /// Up to `limit` items of the key after item `after`, in order, and
    /// whether more lie beyond.
    fn items(
        &mut self,
        key: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<(Bytes, Bytes)>, bool)>;
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

    /// Deletes `key` if it expired (not yet swept): a write then finds it
    /// gone, items and all.
    fn sweep(&mut self, key: &[u8]) -> Result<()> {
        if self.expired(key) {
            self.changed |= self.view.delete(&Bytes::copy_from_slice(key))?;
        }
        Ok(())
    }

    fn item_key(&self, key: &[u8], sub: &[u8]) -> Vec<u8> {
        self.view.keys.redis_item(key, sub)
    }
}

impl Keyspace for Writing<'_, '_> {
    fn now(&self) -> u64 {
        self.now
    }

    fn kind(&mut self, key: &[u8]) -> Result<Option<Kind>> {
        self.sweep(key)?;
        self.view.kind(key)
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>> {
        self.sweep(key)?;
        match self.view.kind(key)? {
            Some(Kind::String) => self.view.value(key),
            Some(_) => Err(wrong_type()),
            None => Ok(None),
        }
    }

    fn raw_value(&mut self, key: &[u8]) -> Result<Option<Bytes>> {
        self.sweep(key)?;
        self.view.value(key)
    }

    fn put_header(&mut self, key: &[u8], kind: Kind, header: Bytes) -> Result<()> {
        self.sweep(key)?;
        self.view
            .put_header(&Bytes::copy_from_slice(key), kind, &header, self.next)?;
        self.changed = true;
        Ok(())
    }

    fn item(&mut self, key: &[u8], sub: &[u8]) -> Result<Option<Bytes>> {
        self.view.raw_get(&self.item_key(key, sub))
    }

    fn put_item(&mut self, key: &[u8], sub: &[u8], value: Bytes) -> Result<()> {
        let k = self.item_key(key, sub);
        self.view.raw_put(k, value);
        self.changed = true;
        Ok(())
    }

    fn delete_item(&mut self, key: &[u8], sub: &[u8]) -> Result<()> {
        let k = self.item_key(key, sub);
        self.view.raw_delete(k);
        self.changed = true;
        Ok(())
    }

    fn clear_items(&mut self, key: &[u8]) -> Result<()> {
        let prefix = self.view.keys.redis_items(key);
        self.view.raw_delete_prefix(&prefix);
        self.changed = true;
        Ok(())
    }

    fn items(
        &mut self,
        key: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<(Bytes, Bytes)>, bool)> {
        let prefix = self.view.keys.redis_items(key);
        let after = after.map(|a| [prefix.as_slice(), a].concat());
        let (found, more) = self.view.raw_scan(&prefix, after.as_deref(), limit)?;
        let skip = prefix.len();
        Ok((
            found
                .into_iter()
                .map(|(k, v)| (Bytes::copy_from_slice(&k[skip..]), v))
                .collect(),
            more,
        ))
    }

    fn deadline(&self, key: &[u8]) -> Option<u64> {
        self.view.expiry.deadline(key).filter(|d| *d > self.now)
    }

    fn put(&mut self, key: &[u8], value: Bytes, ttl: Ttl) -> Result<()> {
        self.sweep(key)?;
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
        let Some(kind) = self.kind(key)? else {
            return Ok(());
        };
        let Some(value) = self.view.value(key)? else {
            return Ok(());
        };
        if kind == Kind::String {
            return self.put(key, value, deadline.map_or(Ttl::Clear, Ttl::At));
        }
        self.put_header(key, kind, value)?;
        let key = Bytes::copy_from_slice(key);
        self.view.set_deadline(&key, deadline);
        Ok(())
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
    /// One snapshot for the whole read: a MGET or an EXEC's reads see one
    /// state, never half of a batch applied between two of their gets.
    pub db: &'a rocksdb::Snapshot<'a>,
    pub keys: &'a KvKeys,
    pub expiries: &'a ExpiryTable,
    pub now: u64,
    /// A hash or list may exist in the group.
    pub typed: bool,
}

impl Reading<'_> {
    fn expired(&self, key: &[u8]) -> bool {
        self.expiries.deadline(key).is_some_and(|d| d <= self.now)
    }
}

impl Reading<'_> {
    /// Up to `limit` keys under `prefix` (less the prefix) after `after`
    /// that `keep` keeps, in order, with their values if `values` (else
    /// empty ones); whether more lie beyond.
    fn page(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        values: bool,
        keep: impl Fn(&[u8]) -> bool,
    ) -> Result<(Vec<(Bytes, Bytes)>, bool)> {
        let mut it = self.db.raw_iterator();
        match after {
            Some(a) => {
                let from = [prefix, a].concat();
                it.seek(&from);
                if it.key() == Some(from.as_slice()) {
                    it.next();
                }
            }
            None => it.seek(prefix),
        }
        let mut out = Vec::new();
        while let Some(k) = it.key() {
            if !k.starts_with(prefix) {
                break;
            }
            let rest = &k[prefix.len()..];
            if keep(rest) {
                if out.len() == limit {
                    return Ok((out, true));
                }
                let v = match values {
                    true => Bytes::copy_from_slice(it.value().unwrap_or_default()),
                    false => Bytes::new(),
                };
                out.push((Bytes::copy_from_slice(rest), v));
            }
            it.next();
        }
        it.status()?;
        Ok((out, false))
    }
}

fn read_only() -> Error {
    Error::InvalidArgument("a write in a read: it needs the log".into())
}

impl Keyspace for Reading<'_> {
    fn now(&self) -> u64 {
        self.now
    }

    fn kind(&mut self, key: &[u8]) -> Result<Option<Kind>> {
        if self.expired(key) {
            return Ok(None);
        }
        if self.typed {
            if let Some(code) = self.db.get_pinned(self.keys.redis_type(key))? {
                return Ok(Some(Kind::from_code(&code)));
            }
        }
        Ok(self.db.get_pinned(self.keys.data(key))?.map(|_| Kind::String))
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>> {
        if self.expired(key) {
            return Ok(None);
        }
        if self.typed && self.db.get_pinned(self.keys.redis_type(key))?.is_some() {
            return Err(wrong_type());
        }
        Ok(self.db.get(self.keys.data(key))?.map(Bytes::from))
    }

    fn raw_value(&mut self, key: &[u8]) -> Result<Option<Bytes>> {
        if self.expired(key) {
            return Ok(None);
        }
        Ok(self.db.get(self.keys.data(key))?.map(Bytes::from))
    }

    fn put_header(&mut self, _: &[u8], _: Kind, _: Bytes) -> Result<()> {
        Err(read_only())
    }

    fn item(&mut self, key: &[u8], sub: &[u8]) -> Result<Option<Bytes>> {
        Ok(self.db.get(self.keys.redis_item(key, sub))?.map(Bytes::from))
    }

    fn put_item(&mut self, _: &[u8], _: &[u8], _: Bytes) -> Result<()> {
        Err(read_only())
    }

    fn delete_item(&mut self, _: &[u8], _: &[u8]) -> Result<()> {
        Err(read_only())
    }

    fn clear_items(&mut self, _: &[u8]) -> Result<()> {
        Err(read_only())
    }

    fn items(
        &mut self,
        key: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<(Bytes, Bytes)>, bool)> {
        self.page(&self.keys.redis_items(key), after, limit, true, |_| true)
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
        let (page, more) = self.page(&self.keys.data(b""), after, limit, false, |key| {
            !self.expired(key)
        })?;
        Ok((page.into_iter().map(|(k, _)| k).collect(), more))
    }
}
