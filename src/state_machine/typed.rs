//! Keys of Redis's other types (protocol 8): a hash, a list or a set is a
//! key whose value is a small header (a count, or a list's ends),
//! marked in `y` + key with its kind, and whose items are keys of their
//! own, `f` + the key's length + key + item, so writing a field or pushing
//! an element writes that item and the header, never the whole value.
//!
//! The header is written through [`View::put`]'s revision path, so a
//! change of any item moves the key's `mod_revision` (WATCH compares it)
//! and tells its watchers. A plain put or delete of the key, an expiry or
//! another type's write drops the kind and every item with it.
//!
//! Items written earlier in a batch are seen by later entries of it
//! through an overlay, as the data keys are through `View::value`.

use super::revision::View;
use crate::error::Result;
use bytes::Bytes;

/// Internal keys with their values, in key order, and whether more lie beyond.
pub type Page = (Vec<(Vec<u8>, Bytes)>, bool);

/// What a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Hash,
    List,
    Set,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::String => b's',
            Kind::Hash => b'h',
            Kind::List => b'l',
            Kind::Set => b't',
        }
    }

    pub fn from_code(c: &[u8]) -> Kind {
        match c {
            b"h" => Kind::Hash,
            b"l" => Kind::List,
            b"t" => Kind::Set,
            _ => Kind::String,
        }
    }

    /// As TYPE names it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Hash => "hash",
            Kind::List => "list",
            Kind::Set => "set",
        }
    }
}

/// The end of the keys that start with `prefix` (exclusive).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xff; prefix.len() + 1]
}

impl View<'_> {
    /// An internal key as the batch so far leaves it.
    pub fn raw_get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        if let Some(v) = self.raw.get(key) {
            return Ok(v.clone());
        }
        if self
            .raw_cleared
            .iter()
            .any(|(s, e)| key >= s.as_slice() && key < e.as_slice())
        {
            return Ok(None);
        }
        Ok(self.db.get(key)?.map(Bytes::from))
    }

    pub fn raw_put(&mut self, key: Vec<u8>, value: Bytes) {
        self.batch.put(&key, &value);
        self.raw.insert(key, Some(value));
    }

    pub fn raw_delete(&mut self, key: Vec<u8>) {
        self.batch.delete(&key);
        self.raw.insert(key, None);
    }

    /// Deletes every internal key that starts with `prefix`.
    pub fn raw_delete_prefix(&mut self, prefix: &[u8]) {
        let end = prefix_end(prefix);
        self.batch.delete_range(prefix, &end);
        let inside: Vec<Vec<u8>> = self
            .raw
            .range(prefix.to_vec()..end.clone())
            .map(|(k, _)| k.clone())
            .collect();
        for k in inside {
            self.raw.insert(k, None);
        }
        self.raw_cleared.push((prefix.to_vec(), end));
    }

    /// Up to `limit` internal keys under `prefix` after `after` (a full
    /// key; `None`: from the first), with their values, in key order, and
    /// whether more lie beyond.
    pub fn raw_scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Page> {
        let end = prefix_end(prefix);
        let mut found: std::collections::BTreeMap<Vec<u8>, Bytes> = std::collections::BTreeMap::new();
        let beyond = |k: &[u8]| after.is_none_or(|a| k > a);
        // From the store: enough to fill `limit` whatever the batch hides.
        let hidden = self.raw.range(prefix.to_vec()..end.clone()).count();
        let mut it = self.db.raw_iterator();
        it.seek(after.unwrap_or(prefix));
        let mut more_in_store = false;
        while let Some(k) = it.key() {
            if k >= end.as_slice() {
                break;
            }
            if found.len() > limit + hidden {
                more_in_store = true;
                break;
            }
            let cleared = self
                .raw_cleared
                .iter()
                .any(|(s, e)| k >= s.as_slice() && k < e.as_slice());
            if beyond(k) && !cleared && !self.raw.contains_key(k) {
                found.insert(k.to_vec(), Bytes::copy_from_slice(it.value().unwrap_or_default()));
            }
            it.next();
        }
        it.status()?;
        for (k, v) in self.raw.range(prefix.to_vec()..end) {
            if let (true, Some(v)) = (beyond(k), v) {
                found.insert(k.clone(), v.clone());
            }
        }
        let more = more_in_store || found.len() > limit;
        Ok((found.into_iter().take(limit).collect(), more))
    }

    /// What `key` holds, if it exists (as a key: expiry aside).
    pub fn kind(&self, key: &[u8]) -> Result<Option<Kind>> {
        if self.typed {
            if let Some(code) = self.raw_get(&self.keys.redis_type(key))? {
                return Ok(Some(Kind::from_code(&code)));
            }
        }
        Ok(self.value(key)?.map(|_| Kind::String))
    }

    /// Drops `key`'s kind and items, if it has any: a put or delete of the
    /// key replaces it whole.
    pub(super) fn drop_typed(&mut self, key: &[u8]) -> Result<()> {
        if !self.typed {
            return Ok(());
        }
        let tag = self.keys.redis_type(key);
        if self.raw_get(&tag)?.is_some() {
            self.raw_delete(tag);
            let items = self.keys.redis_items(key);
            self.raw_delete_prefix(&items);
        }
        Ok(())
    }

    /// Writes the header of a key of `kind` (a hash's or a list's) at
    /// revision `at`, marking the key with its kind; its items stay.
    pub fn put_header(&mut self, key: &Bytes, kind: Kind, header: &Bytes, at: u64) -> Result<()> {
        let tag = self.keys.redis_type(key);
        if self.raw_get(&tag)?.is_none() {
            // A string (or nothing) before: replaced.
            self.put(key, header, 0, Some(at))?;
            self.typed = true;
            self.raw_put(tag, Bytes::from(vec![kind.code()]));
            return Ok(());
        }
        self.put_keeping_type(key, header, at)
    }
}
