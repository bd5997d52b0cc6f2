//! Leases (protocol 6), etcd's model with expiry decided in the log: keys
//! attached to a lease are deleted when it is revoked or runs out.
//!
//! Every step is an entry, so every replica does the same at the same
//! index and none consults its own clock: a grant (the lease's id is the
//! index of its entry), a keep-alive (the lease lives its TTL again from
//! the entry's log time), a revoke, and an expiry, which happens *before*
//! any protocol-6 entry whose log time has passed a lease's deadline (the
//! leader proposes an empty `LeaseSweep` entry when the group is otherwise
//! idle). Keep-alives cost no entry per lease: a handle batches the
//! keep-alives of all its callers into one entry at a time.
//!
//! No early expiry across leader changes: at the first protocol-6 entry of
//! each term every lease is *promoted*, its deadline raised to at least the
//! log's time there plus its TTL (etcd's `Promote`). A new leader's clock
//! may be ahead of the old one's (the log's time then jumps), and clients
//! could not keep their leases alive during the election; the promotion
//! gives each lease a whole TTL from a point after every keep-alive the old
//! leader answered. Stored as one record (`m:lpromo`: the term and the
//! time), applied lazily: a lease whose stored deadline falls due before
//! its promoted one is moved, not expired.
//!
//! Stored: `e` + id → [`Lease`]; `x` + deadline + id, the leases by
//! deadline; `a` + id + key for each attached key (a key's lease is also in
//! its revisions, `KvMeta::lease`). In memory, while the group applies, a
//! [`LeaseTable`] of the same, so that finding what is due and checking a
//! put's lease read nothing from the database.

use super::revision::View;
use super::KvKeys;
use crate::error::{Error, Result};
use crate::limits::{MAX_LEASES_EXPIRED_PER_ENTRY, MAX_LEASES_MOVED_PER_ENTRY, MAX_LEASE_TTL_MS};
use crate::wire::LeaseKeepAliveResult;
use bytes::Bytes;
use prost::Message as _;
use rocksdb::DB;
use std::collections::{BTreeSet, HashMap};

/// A lease: its TTL and the log time it expires at (before promotion).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub ttl_ms: u64,
    pub deadline: u64,
}

impl Lease {
    fn encode(&self) -> [u8; 16] {
        pair(self.ttl_ms, self.deadline)
    }

    fn decode(v: &[u8]) -> Result<Lease> {
        let (ttl_ms, deadline) = unpair(v, "a lease")?;
        Ok(Lease { ttl_ms, deadline })
    }
}

/// The last promotion: at the first protocol-6 entry of `term`, at log time `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Promotion {
    pub term: u64,
    pub at: u64,
}

impl Promotion {
    /// When `lease` runs out: its deadline, or a whole TTL from the promotion.
    pub fn deadline_of(&self, lease: &Lease) -> u64 {
        lease.deadline.max(self.at.saturating_add(lease.ttl_ms))
    }

    pub fn read(db: &DB, keys: &KvKeys) -> Result<Promotion> {
        Ok(match db.get_pinned(keys.lease_promotion())? {
            None => Promotion::default(),
            Some(v) => {
                let (term, at) = unpair(&v, "the leases' promotion")?;
                Promotion { term, at }
            }
        })
    }
}

fn pair(a: u64, b: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&a.to_be_bytes());
    v[8..].copy_from_slice(&b.to_be_bytes());
    v
}

fn unpair(v: &[u8], what: &str) -> Result<(u64, u64)> {
    if v.len() != 16 {
        return Err(Error::Corruption(format!("{what} is {} bytes, not 16", v.len())));
    }
    let n = |i: usize| u64::from_be_bytes(v[i..i + 8].try_into().expect("8 bytes"));
    Ok((n(0), n(8)))
}

/// A group's leases as stored, kept in memory between applies.
#[derive(Debug, Clone, Default)]
pub struct LeaseTable {
    leases: HashMap<u64, Lease>,
    by_deadline: BTreeSet<(u64, u64)>,
    promotion: Promotion,
}

impl LeaseTable {
    pub fn load(db: &DB, keys: &KvKeys) -> Result<LeaseTable> {
        let mut table = LeaseTable {
            promotion: Promotion::read(db, keys)?,
            ..LeaseTable::default()
        };
        let prefix = keys.leases();
        let mut it = db.raw_iterator();
        it.seek(&prefix);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !k.starts_with(&prefix) {
                break;
            }
            let id = k[prefix.len()..]
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| Error::Corruption("a lease's key is not its prefix and 8 bytes".into()))?;
            let lease = Lease::decode(v)?;
            table.leases.insert(id, lease);
            table.by_deadline.insert((lease.deadline, id));
            it.next();
        }
        it.status()?;
        Ok(table)
    }

    pub fn contains(&self, id: u64) -> bool {
        self.leases.contains_key(&id)
    }

    /// The log's time at the first entry of the latest term (0 before any).
    pub fn promoted_at(&self) -> u64 {
        self.promotion.at
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    pub fn len(&self) -> usize {
        self.leases.len()
    }

    /// The earliest stored deadline (a lease due then may be moved rather
    /// than expired, if promoted): when an idle group's leader should
    /// propose a sweep.
    pub fn next_deadline(&self) -> Option<u64> {
        self.by_deadline.first().map(|(d, _)| *d)
    }

    fn set(&mut self, view_batch: &mut rocksdb::WriteBatch, keys: &KvKeys, id: u64, lease: Lease) {
        if let Some(old) = self.leases.insert(id, lease) {
            self.by_deadline.remove(&(old.deadline, id));
            view_batch.delete(keys.expiry(old.deadline, id));
        }
        self.by_deadline.insert((lease.deadline, id));
        view_batch.put(keys.expiry(lease.deadline, id), []);
        view_batch.put(keys.lease(id), lease.encode());
    }

    fn remove(&mut self, view_batch: &mut rocksdb::WriteBatch, keys: &KvKeys, id: u64) -> Option<Lease> {
        let old = self.leases.remove(&id)?;
        self.by_deadline.remove(&(old.deadline, id));
        view_batch.delete(keys.expiry(old.deadline, id));
        view_batch.delete(keys.lease(id));
        Some(old)
    }
}

/// Before every protocol-6 entry, at its term and log time `now`: the
/// first entry of a term promotes every lease, then what is due expires.
pub(super) fn before_entry(view: &mut View<'_>, term: u64, now: u64) -> Result<()> {
    if term > view.leases.promotion.term {
        view.leases.promotion = Promotion { term, at: now };
        view.batch.put(view.keys.lease_promotion(), pair(term, now));
    }
    expire_due(view, now)
}

/// Expires the leases whose deadline has passed at `now` (each deletes its
/// keys; all of them at one revision), up to the per-entry caps.
fn expire_due(view: &mut View<'_>, now: u64) -> Result<()> {
    let (mut expired, mut moved, mut deleted) = (0, 0, false);
    while let Some(&(deadline, id)) = view.leases.by_deadline.first() {
        if deadline > now || expired >= MAX_LEASES_EXPIRED_PER_ENTRY || moved >= MAX_LEASES_MOVED_PER_ENTRY {
            break;
        }
        let lease = view.leases.leases[&id];
        let promoted = view.leases.promotion.deadline_of(&lease);
        if promoted > now {
            let moved_lease = Lease {
                deadline: promoted,
                ..lease
            };
            view.leases.set(&mut view.batch, view.keys, id, moved_lease);
            moved += 1;
            continue;
        }
        deleted |= remove(view, id)?;
        expired += 1;
    }
    if deleted {
        view.revision += 1;
    }
    Ok(())
}

/// Removes lease `id` and deletes its keys; whether any key was deleted.
/// The caller moves the revision.
fn remove(view: &mut View<'_>, id: u64) -> Result<bool> {
    // The keys first: a delete detaches a key only while leases exist.
    let mut deleted = false;
    for key in view.attached_keys(id)? {
        deleted |= view.delete(&Bytes::from(key))?;
    }
    view.leases.remove(&mut view.batch, view.keys, id);
    Ok(deleted)
}

/// Grants a lease of `ttl_ms` at log time `now`; its id (the entry's
/// `index`) as 8 big-endian bytes.
pub(super) fn grant(view: &mut View<'_>, index: u64, ttl_ms: u64, now: u64) -> Result<Option<Bytes>> {
    check_ttl(ttl_ms)?;
    let lease = Lease {
        ttl_ms,
        deadline: now.saturating_add(ttl_ms),
    };
    view.leases.set(&mut view.batch, view.keys, index, lease);
    Ok(Some(Bytes::copy_from_slice(&index.to_be_bytes())))
}

pub fn check_ttl(ttl_ms: u64) -> Result<()> {
    if ttl_ms == 0 || ttl_ms > MAX_LEASE_TTL_MS {
        return Err(Error::InvalidArgument(format!(
            "lease ttl {ttl_ms} ms is outside 1..={MAX_LEASE_TTL_MS}"
        )));
    }
    Ok(())
}

/// Renews every lease of `ids` from log time `now`; the answer per lease
/// (its TTL, or 0 if it does not exist), encoded.
pub(super) fn keep_alive(view: &mut View<'_>, ids: &[u64], now: u64) -> Bytes {
    let mut ttl_ms = Vec::with_capacity(ids.len());
    for id in ids {
        match view.leases.leases.get(id).copied() {
            Some(lease) => {
                let renewed = Lease {
                    deadline: now.saturating_add(lease.ttl_ms),
                    ..lease
                };
                // (Named twice in one entry: renewed once.)
                if renewed != lease {
                    view.leases.set(&mut view.batch, view.keys, *id, renewed);
                }
                ttl_ms.push(lease.ttl_ms);
            }
            None => ttl_ms.push(0),
        }
    }
    Bytes::from(LeaseKeepAliveResult { ttl_ms }.encode_to_vec())
}

/// Revokes lease `id`, deleting its keys at one new revision (if any
/// existed); `NotFound` if there is no such lease.
pub(super) fn revoke(view: &mut View<'_>, id: u64) -> Result<Result<Option<Bytes>>> {
    if !view.leases.contains(id) {
        return Ok(Err(Error::NotFound));
    }
    if remove(view, id)? {
        view.revision += 1;
    }
    Ok(Ok(None))
}

/// Whether `lease` (0: none) may be attached to.
pub(super) fn check_exists(view: &View<'_>, lease: u64) -> Result<()> {
    if lease == 0 || view.leases.contains(lease) {
        Ok(())
    } else {
        Err(Error::NotFound)
    }
}

/// What the runtime asks of a group's leases between applies: when the
/// next one falls due, and the log's time now as this node sees it.
#[derive(Debug, Default)]
pub(super) struct LeaseClock {
    /// The log's time at the last apply, and when that was on this node's
    /// monotonic clock.
    time: u64,
    at: Option<std::time::Instant>,
    next_deadline: Option<u64>,
}

impl LeaseClock {
    pub fn applied(&mut self, time: u64, next_deadline: Option<u64>) {
        self.time = time;
        self.at = Some(std::time::Instant::now());
        self.next_deadline = next_deadline;
    }

    /// The log's time now: at the last apply, plus what passed here since.
    /// (On the leader, a little behind the time its next entry gets: the
    /// entry applied last was stamped before it was applied.)
    pub fn now(&self) -> Option<u64> {
        let elapsed = self.at?.elapsed().as_millis();
        Some(
            self.time
                .saturating_add(u64::try_from(elapsed).unwrap_or(u64::MAX)),
        )
    }

    /// When the next deadline falls due on this node's monotonic clock
    /// (by this estimate); `None` if none is held or nothing was applied.
    pub fn due_at(&self) -> Option<std::time::Instant> {
        let wait = self.next_deadline?.saturating_sub(self.time);
        Some(self.at? + std::time::Duration::from_millis(wait))
    }

    /// Whether a lease's deadline has passed (by this estimate).
    pub fn sweep_due(&self) -> bool {
        self.due_at().is_some_and(|due| due <= std::time::Instant::now())
    }
}

/// Lease `id` as stored: its TTL, what is left of it at the log's time
/// `now`, and its keys. `NotFound` if there is no such lease.
pub(super) fn info(db: &DB, keys: &KvKeys, id: u64, now: u64) -> Result<crate::wire::LeaseInfo> {
    let Some(v) = db.get_pinned(keys.lease(id))? else {
        return Err(Error::NotFound);
    };
    let lease = Lease::decode(&v)?;
    let deadline = Promotion::read(db, keys)?.deadline_of(&lease);
    let prefix = keys.attached_to(id);
    let mut count = 0;
    let mut it = db.raw_iterator();
    it.seek(&prefix);
    while it.key().is_some_and(|k| k.starts_with(&prefix)) {
        count += 1;
        it.next();
    }
    it.status()?;
    Ok(crate::wire::LeaseInfo {
        id,
        ttl_ms: lease.ttl_ms,
        remaining_ms: deadline.saturating_sub(now),
        keys: count,
    })
}
