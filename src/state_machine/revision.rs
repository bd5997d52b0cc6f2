//! Revisions (protocol 6), etcd's model: a group-wide revision that grows by
//! one with each applied write, delete or transaction that changed
//! something, and per key its `create_revision`, `mod_revision`, `version`
//! (writes since creation: a delete ends a key's life, and the next write
//! starts again at 1) and `lease`.
//!
//! Stored beside the data: `k` + key → [`KvMeta`] (32 bytes), and the
//! group's revision in `m:rev`, all in the apply's WriteBatch. The value
//! under `d` + key stays as it was, so stores, snapshots and replicas of
//! the previous release read the same values.
//!
//! Counted only for entries a leader marked as proposed under protocol 6
//! (`log_time_rule` 2: every member spoke it), because a replica of the
//! previous release keeps no revisions: an unmarked put or delete drops the
//! key's revisions instead, on every replica of this release, so the key is
//! then as keys written before revisions existed ([`LEGACY`]) everywhere,
//! and later comparisons decide alike on all replicas once they all run
//! this release.
//!
//! Whether a key without revisions exists is asked only while such keys
//! may exist at all ([`legacy_possible`]): in a group that has only ever
//! counted, a key without revisions is absent, and writing a new key costs
//! one lookup (its revisions), not two.

use super::history::{EventKind, WatchEvent};
use super::lease::LeaseTable;
use super::KvKeys;
use crate::error::{Error, Result};
use bytes::Bytes;
use rocksdb::{WriteBatch, DB};
use std::collections::HashMap;

/// The revision of a store where nothing was counted yet (etcd starts at 1
/// too): the first counted change makes it 2.
pub const FIRST_REVISION: u64 = 1;

/// What a key written before revisions were counted (or by an unmarked
/// entry) reads as: created and last modified at the first revision, once.
/// Never 0: 0 means absent, and a compare-and-swap on such a key must be
/// able to name its revision.
pub const LEGACY: KvMeta = KvMeta {
    create_revision: FIRST_REVISION,
    mod_revision: FIRST_REVISION,
    version: 1,
    lease: 0,
};

/// A key's revisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KvMeta {
    pub create_revision: u64,
    pub mod_revision: u64,
    /// Writes since the key was created (1 after its first).
    pub version: u64,
    /// The lease the key is attached to; 0 if none.
    pub lease: u64,
}

impl KvMeta {
    pub fn encode(&self) -> [u8; 32] {
        let mut v = [0u8; 32];
        for (i, n) in [self.create_revision, self.mod_revision, self.version, self.lease]
            .iter()
            .enumerate()
        {
            v[i * 8..i * 8 + 8].copy_from_slice(&n.to_be_bytes());
        }
        v
    }

    pub fn decode(v: &[u8]) -> Result<KvMeta> {
        if v.len() != 32 {
            return Err(Error::Corruption(format!(
                "a key's revisions are {} bytes, not 32",
                v.len()
            )));
        }
        let n = |i: usize| u64::from_be_bytes(v[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        Ok(KvMeta {
            create_revision: n(0),
            mod_revision: n(1),
            version: n(2),
            lease: n(3),
        })
    }
}

/// The batch being applied, seen as the store will be once it is written:
/// reads see the writes of earlier entries (and ops) in it.
pub(super) struct View<'a> {
    pub db: &'a DB,
    pub keys: &'a KvKeys,
    pub batch: WriteBatch,
    /// Keys written earlier in the batch: their value (`None`: deleted) and
    /// revisions (`None`: deleted, or dropped by an unmarked write).
    written: HashMap<Vec<u8>, (Option<Bytes>, Option<KvMeta>)>,
    pub locks: super::lock::PendingLocks,
    /// The group's leases as of the batch so far (`lease.rs`).
    pub leases: &'a mut LeaseTable,
    /// Keys attached to (`true`) or detached from a lease earlier in the batch.
    attached: HashMap<(u64, Vec<u8>), bool>,
    /// The entry being applied counts revisions (protocol 6).
    pub counting: bool,
    /// The changes counted so far in the batch, in revision order, for the
    /// history and the watchers (`history.rs`).
    pub events: Vec<WatchEvent>,
    /// The group's revision as of the batch so far.
    pub revision: u64,
    /// Keys without revisions may exist ([`legacy_possible`]).
    pub legacy: bool,
    /// Keys' deadlines (`expiry.rs`): a put or delete clears a key's.
    pub expiry: super::expiry::ExpiryStage<'a>,
    /// A hash or list may exist (`typed.rs`): puts and deletes look for
    /// their kind and items.
    pub typed: bool,
    /// Internal keys (hashes' and lists' items and kinds) written earlier
    /// in the batch (`None`: deleted), and prefixes deleted whole.
    pub(super) raw: std::collections::BTreeMap<Vec<u8>, Option<Bytes>>,
    pub(super) raw_cleared: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Whether a key of the group may exist without its revisions: one was
/// written by an unmarked entry (`m:legacy`, set then), or the group holds
/// keys but never counted a revision (a store or a snapshot of the
/// previous release). An over-estimate costs a lookup per write; an
/// under-estimate would let a replica take an existing key for a new one.
pub fn legacy_possible(db: &DB, keys: &KvKeys) -> Result<bool> {
    if db.get_pinned(keys.legacy())?.is_some() {
        return Ok(true);
    }
    if super::read_progress(db, keys)?.revision.is_some() {
        return Ok(false);
    }
    let start = keys.data(b"");
    let mut it = db.raw_iterator();
    it.seek(&start);
    let any = it.key().is_some_and(|k| k.starts_with(&start));
    it.status()?;
    Ok(any)
}

impl<'a> View<'a> {
    pub fn new(
        db: &'a DB,
        keys: &'a KvKeys,
        leases: &'a mut LeaseTable,
        revision: u64,
        legacy: bool,
        expiry: super::expiry::ExpiryStage<'a>,
        typed: bool,
    ) -> View<'a> {
        View {
            db,
            keys,
            batch: WriteBatch::default(),
            written: HashMap::new(),
            locks: HashMap::new(),
            leases,
            attached: HashMap::new(),
            counting: false,
            events: Vec::new(),
            revision,
            legacy,
            expiry,
            typed,
            raw: std::collections::BTreeMap::new(),
            raw_cleared: Vec::new(),
        }
    }

    /// The keys earlier entries and ops of the batch wrote a value to.
    pub fn keys_written(&self) -> Vec<Bytes> {
        self.written
            .iter()
            .filter(|(_, (v, _))| v.is_some())
            .map(|(k, _)| Bytes::copy_from_slice(k))
            .collect()
    }

    /// Gives `key` a deadline (`None`: none).
    pub fn set_deadline(&mut self, key: &[u8], deadline: Option<u64>) {
        if deadline.is_none() && self.expiry.is_empty() {
            return;
        }
        self.expiry.set(&mut self.batch, self.keys, key, deadline);
    }

    /// `key`'s value.
    pub fn value(&self, key: &[u8]) -> Result<Option<Bytes>> {
        match self.written.get(key) {
            Some((v, _)) => Ok(v.clone()),
            None => Ok(self.db.get(self.keys.data(key))?.map(Bytes::from)),
        }
    }

    /// Whether `key` exists.
    fn exists(&self, key: &[u8]) -> Result<bool> {
        match self.written.get(key) {
            Some((v, _)) => Ok(v.is_some()),
            None => Ok(self.db.get_pinned(self.keys.data(key))?.is_some()),
        }
    }

    /// `key`'s revisions; `None` if it does not exist.
    pub fn meta(&self, key: &[u8]) -> Result<Option<KvMeta>> {
        if let Some((_, m)) = self.written.get(key) {
            return match m {
                Some(m) => Ok(Some(*m)),
                // Dropped by an unmarked write, or deleted.
                None => self.legacy_meta(key),
            };
        }
        match self.db.get_pinned(self.keys.meta(key))? {
            Some(v) => KvMeta::decode(&v).map(Some),
            None => self.legacy_meta(key),
        }
    }

    /// The revisions of a key that has none stored: [`LEGACY`] if it exists.
    fn legacy_meta(&self, key: &[u8]) -> Result<Option<KvMeta>> {
        if !self.legacy {
            return Ok(None);
        }
        Ok(self.exists(key)?.then_some(LEGACY))
    }

    /// Writes `key` at revision `at` (`None`: an unmarked entry, which
    /// counts nothing and drops the key's revisions).
    pub fn put(&mut self, key: &Bytes, value: &Bytes, lease: u64, at: Option<u64>) -> Result<()> {
        // A write replaces the key, kind, items and TTL (as Redis's SET does).
        self.drop_typed(key)?;
        self.put_value(key, value, lease, at)?;
        self.set_deadline(key, None);
        Ok(())
    }

    /// A hash's or list's new header at `at`: its kind, items and TTL stay.
    pub fn put_keeping_type(&mut self, key: &Bytes, header: &Bytes, at: u64) -> Result<()> {
        self.put_value(key, header, 0, Some(at))
    }

    fn put_value(&mut self, key: &Bytes, value: &Bytes, lease: u64, at: Option<u64>) -> Result<()> {
        // A key keeps no lease through an unmarked write (which names none).
        let lease = if at.is_some() { lease } else { 0 };
        let old = match at {
            Some(_) => self.meta(key)?,
            // Only its lease is asked for: none can be attached without leases.
            None if self.leases.is_empty() => None,
            None => self.meta(key)?,
        };
        self.reattach(key, old.map_or(0, |m| m.lease), lease);
        let meta = at.map(|rev| match old {
            Some(old) => KvMeta {
                mod_revision: rev,
                version: old.version + 1,
                lease,
                ..old
            },
            None => KvMeta {
                create_revision: rev,
                mod_revision: rev,
                version: 1,
                lease,
            },
        });
        self.batch.put(self.keys.data(key), value);
        if let Some(m) = &meta {
            self.events.push(WatchEvent {
                kind: EventKind::Put,
                key: key.clone(),
                value: value.clone(),
                mod_revision: m.mod_revision,
                redis_events: None,
            });
        }
        match &meta {
            Some(m) => self.batch.put(self.keys.meta(key), m.encode()),
            None => {
                self.batch.delete(self.keys.meta(key));
                // (Stored with the batch: `KvStateMachine::apply`.)
                self.legacy = true;
            }
        }
        self.written.insert(key.to_vec(), (Some(value.clone()), meta));
        Ok(())
    }

    /// Deletes `key`; whether it existed.
    pub fn delete(&mut self, key: &Bytes) -> Result<bool> {
        let existed = if self.leases.is_empty() {
            self.exists(key)?
        } else {
            let meta = self.meta(key)?;
            self.reattach(key, meta.map_or(0, |m| m.lease), 0);
            meta.is_some()
        };
        self.batch.delete(self.keys.data(key));
        self.batch.delete(self.keys.meta(key));
        self.set_deadline(key, None);
        self.drop_typed(key)?;
        self.written.insert(key.to_vec(), (None, None));
        if existed && self.counting {
            // Every counted delete moves the revision by one past the
            // current (a delete, a transaction, an expiry).
            self.events.push(WatchEvent {
                kind: EventKind::Delete,
                key: key.clone(),
                value: Bytes::new(),
                mod_revision: self.revision + 1,
                redis_events: None,
            });
        }
        Ok(existed)
    }
}

impl View<'_> {
    /// Moves `key` from lease `from` to lease `to` (0: none).
    fn reattach(&mut self, key: &[u8], from: u64, to: u64) {
        if from == to {
            return;
        }
        if from != 0 {
            self.batch.delete(self.keys.attached(from, key));
            self.attached.insert((from, key.to_vec()), false);
        }
        if to != 0 {
            self.batch.put(self.keys.attached(to, key), []);
            self.attached.insert((to, key.to_vec()), true);
        }
    }

    /// The keys attached to lease `id`, in key order.
    pub fn attached_keys(&self, id: u64) -> Result<Vec<Vec<u8>>> {
        let prefix = self.keys.attached_to(id);
        let mut keys = std::collections::BTreeSet::new();
        let mut it = self.db.raw_iterator();
        it.seek(&prefix);
        while let Some(k) = it.key() {
            if !k.starts_with(&prefix) {
                break;
            }
            keys.insert(k[prefix.len()..].to_vec());
            it.next();
        }
        it.status()?;
        for ((lease, key), attached) in &self.attached {
            if *lease != id {
                continue;
            }
            if *attached {
                keys.insert(key.clone());
            } else {
                keys.remove(key);
            }
        }
        Ok(keys.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keys_revisions_round_trip_and_a_bad_length_is_corruption() {
        let m = KvMeta {
            create_revision: 2,
            mod_revision: u64::MAX,
            version: 7,
            lease: 1 << 40,
        };
        assert_eq!(KvMeta::decode(&m.encode()).unwrap(), m);
        assert!(matches!(KvMeta::decode(&[0; 31]), Err(Error::Corruption(_))));
    }
}
