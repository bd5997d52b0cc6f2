//! Leases (issue 22): keys that vanish when their lease runs out, on a
//! `floyd_t` running the built-in store.

use super::args::{bytes, key as key_arg, out as out_arg};
use super::boundary;
use super::node::{floyd_t, node};
use std::ffi::{c_char, c_int};

/// Grants a lease of `ttl_ms` (raised to 2 × `check_leader_us` if shorter,
/// the longest an election takes; at most a year) and stores its id (never 0) in `*lease_id`. The
/// lease ends, deleting every key attached to it at one revision, once
/// `ttl_ms` pass without a keep-alive, or when revoked.
///
/// Thread-safety: as `floyd_write`.
/// Ownership: `errmsg` as usual.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT (NULL `f` or `lease_id`, `ttl_ms` 0 or over a year, a
/// user-defined state machine); not applied: FLOYD_NO_LEADER, FLOYD_BUSY (also while a member of
/// the group runs a release without leases); outcome unknown: FLOYD_TIMEOUT, FLOYD_STOPPED;
/// FLOYD_FAILED; FLOYD_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn floyd_lease_grant(
    f: *mut floyd_t,
    ttl_ms: u64,
    lease_id: *mut u64,
    errmsg: *mut *mut c_char,
) -> c_int {
    boundary(errmsg, || {
        let n = node(f)?;
        let slot = out_arg(lease_id, "lease_id")?;
        *slot = n.lease_grant(ttl_ms)?;
        Ok(())
    })
}

/// Renews lease `lease_id` for its TTL from now; `*ttl_ms_left` (may be
/// NULL) gets the TTL. The lease lasts at least that long from when this
/// call began, across leader changes too. Keep-alives from many threads on
/// one `floyd_t` share log entries: call it freely (a third of the TTL is
/// the usual period).
///
/// Thread-safety: as `floyd_write`.
/// Ownership: `errmsg` as usual.
/// Returns: FLOYD_OK; FLOYD_NOT_FOUND (expired or revoked: its keys are gone or going);
/// FLOYD_INVALID_ARGUMENT (NULL `f`, lease id 0); the other codes as `floyd_lease_grant` (a
/// keep-alive is safe to retry whatever the outcome).
#[no_mangle]
pub unsafe extern "C" fn floyd_lease_keepalive(
    f: *mut floyd_t,
    lease_id: u64,
    ttl_ms_left: *mut u64,
    errmsg: *mut *mut c_char,
) -> c_int {
    boundary(errmsg, || {
        let n = node(f)?;
        let ttl = n.lease_keepalive(lease_id)?;
        if let Some(slot) = ttl_ms_left.as_mut() {
            *slot = ttl;
        }
        Ok(())
    })
}

/// Ends lease `lease_id` now, deleting every key attached to it at one revision.
///
/// Thread-safety: as `floyd_write`.
/// Ownership: `errmsg` as usual.
/// Returns: FLOYD_OK; FLOYD_NOT_FOUND (no such lease); FLOYD_INVALID_ARGUMENT (NULL `f`, lease id
/// 0); the other codes as `floyd_lease_grant`.
#[no_mangle]
pub unsafe extern "C" fn floyd_lease_revoke(
    f: *mut floyd_t,
    lease_id: u64,
    errmsg: *mut *mut c_char,
) -> c_int {
    boundary(errmsg, || node(f)?.lease_revoke(lease_id))
}

/// Lease `lease_id`'s TTL (`*ttl_ms`), what is left of it (`*remaining_ms`)
/// and its number of keys (`*keys`); each out-pointer may be NULL.
/// Linearizable (a ReadIndex round, as `floyd_read`).
///
/// Thread-safety: as `floyd_read`.
/// Ownership: `errmsg` as usual.
/// Returns: FLOYD_OK; FLOYD_NOT_FOUND (no such lease); FLOYD_INVALID_ARGUMENT (NULL `f`, lease id
/// 0); FLOYD_NO_LEADER, FLOYD_TIMEOUT, FLOYD_STOPPED; FLOYD_FAILED; FLOYD_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn floyd_lease_time_to_live(
    f: *mut floyd_t,
    lease_id: u64,
    ttl_ms: *mut u64,
    remaining_ms: *mut u64,
    keys: *mut u64,
    errmsg: *mut *mut c_char,
) -> c_int {
    boundary(errmsg, || {
        let s = node(f)?.lease_time_to_live(lease_id)?;
        for (ptr, v) in [(ttl_ms, s.ttl_ms), (remaining_ms, s.remaining_ms), (keys, s.keys)] {
            if let Some(slot) = ptr.as_mut() {
                *slot = v;
            }
        }
        Ok(())
    })
}

/// Stores `value` under `key` attached to lease `lease_id`: deleted when the
/// lease ends (a later write without a lease detaches the key).
///
/// Thread-safety: as `floyd_write`.
/// Ownership: `key` and `value` are borrowed and copied; `errmsg` as usual.
/// Returns: FLOYD_OK; FLOYD_NOT_FOUND (no such lease: nothing written); FLOYD_INVALID_ARGUMENT (as
/// `floyd_write`, lease id 0); the other codes as `floyd_lease_grant`.
#[no_mangle]
pub unsafe extern "C" fn floyd_write_with_lease(
    f: *mut floyd_t,
    key: *const c_char,
    key_len: usize,
    value: *const c_char,
    value_len: usize,
    lease_id: u64,
    errmsg: *mut *mut c_char,
) -> c_int {
    boundary(errmsg, || {
        let n = node(f)?;
        let (k, v) = (key_arg(key, key_len)?, bytes(value, value_len, "value")?);
        n.write_with_lease(k, v, lease_id)
    })
}
