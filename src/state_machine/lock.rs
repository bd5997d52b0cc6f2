//! Locks with fencing tokens, judged at apply time.
//!
//! A lock is `l` + name → `LockState{holder, token, lease_end_ms}`. Time is
//! the log's: the largest `leader_time_ms` of the entries applied so far
//! (`m:time`), so every replica decides expiry alike whatever its own clock
//! says. A fast leader clock can only end leases early; fencing tokens keep
//! that safe for whoever checks them.

use super::KvKeys;
use crate::error::{Error, Result};
use crate::wire::LockState;
use bytes::Bytes;
use prost::Message as _;
use rocksdb::{WriteBatch, DB};
use std::collections::HashMap;

/// Lock changes earlier in the batch being applied, so later entries see them.
pub(super) type PendingLocks = HashMap<Vec<u8>, Option<LockState>>;

fn current(db: &DB, pending: &PendingLocks, key: &[u8]) -> Result<Option<LockState>> {
    if let Some(state) = pending.get(key) {
        return Ok(state.clone());
    }
    match db.get_pinned(key)? {
        None => Ok(None),
        Some(v) => LockState::decode(v.as_ref())
            .map(Some)
            .map_err(|e| Error::Corruption(format!("lock state does not decode: {e}"))),
    }
}

/// Grants `name` to `holder` at log time `now` if it is free, expired, or
/// already `holder`'s (a renewal keeps the token). The result is the token
/// as 8 big-endian bytes, or `Locked`.
#[allow(clippy::too_many_arguments)]
pub(super) fn try_lock(
    db: &DB,
    keys: &KvKeys,
    batch: &mut WriteBatch,
    pending: &mut PendingLocks,
    name: &[u8],
    holder: &Bytes,
    ttl_ms: u64,
    index: u64,
    now: u64,
) -> Result<Result<Option<Bytes>>> {
    let key = keys.lock(name);
    let held = current(db, pending, &key)?.filter(|l| l.lease_end_ms > now);
    let token = match held {
        Some(l) if l.holder != *holder => {
            return Ok(Err(Error::Locked(format!(
                "held by {} until log time {} ms (token {})",
                String::from_utf8_lossy(&l.holder),
                l.lease_end_ms,
                l.token
            ))))
        }
        Some(l) => l.token,
        None => index,
    };
    let state = LockState {
        holder: holder.clone(),
        token,
        lease_end_ms: now.saturating_add(ttl_ms),
    };
    batch.put(&key, state.encode_to_vec());
    pending.insert(key, Some(state));
    Ok(Ok(Some(Bytes::copy_from_slice(&token.to_be_bytes()))))
}

/// Releases `name` if `holder` holds it at log time `now`; else `NotHolder`.
pub(super) fn unlock(
    db: &DB,
    keys: &KvKeys,
    batch: &mut WriteBatch,
    pending: &mut PendingLocks,
    name: &[u8],
    holder: &[u8],
    now: u64,
) -> Result<Result<Option<Bytes>>> {
    let key = keys.lock(name);
    match current(db, pending, &key)? {
        Some(l) if l.holder == holder && l.lease_end_ms > now => {
            batch.delete(&key);
            pending.insert(key, None);
            Ok(Ok(None))
        }
        Some(l) if l.holder == holder => Ok(Err(Error::NotHolder("the lease expired".into()))),
        Some(l) if l.lease_end_ms > now => Ok(Err(Error::NotHolder(format!(
            "held by {}",
            String::from_utf8_lossy(&l.holder)
        )))),
        _ => Ok(Err(Error::NotHolder("the lock is not held".into()))),
    }
}

/// Locks whose lease has not run out at log time `now`.
pub(super) fn count_held(db: &DB, keys: &KvKeys, now: u64) -> Result<u64> {
    let mut count = 0;
    let prefix = keys.locks();
    let iter = db.iterator(rocksdb::IteratorMode::From(&prefix, rocksdb::Direction::Forward));
    for item in iter {
        let (key, value) = item?;
        if !key.starts_with(&prefix) {
            break;
        }
        let state = LockState::decode(value.as_ref())
            .map_err(|e| Error::Corruption(format!("lock state does not decode: {e}")))?;
        if state.lease_end_ms > now {
            count += 1;
        }
    }
    Ok(count)
}
