//! The coordination calls (issue 22): revisions, compare-and-swap, range
//! scans and transactions, on a `floyd_t` running the built-in store.

use super::args::{alloc_bytes, bytes, key as key_arg, out as out_arg};
use super::node::{floyd_t, node};
use super::{boundary, boundary_value};
use crate::error::Error;
use crate::floyd::{Branch, Cmp, KeyValue, KvList, KvMeta, Txn};
use std::ffi::{c_char, c_int};

/// Comparison: equal.
pub const FLOYD_CMP_EQUAL: c_int = 0;
/// Comparison: not equal.
pub const FLOYD_CMP_NOT_EQUAL: c_int = 1;
/// Comparison: less than.
pub const FLOYD_CMP_LESS: c_int = 2;
/// Comparison: greater than.
pub const FLOYD_CMP_GREATER: c_int = 3;
/// A transaction's branch run when some comparison fails.
pub const FLOYD_TXN_ELSE: c_int = 0;
/// A transaction's branch run when every comparison holds.
pub const FLOYD_TXN_THEN: c_int = 1;

/// A key's revisions: the group's revision when it was created (since its
/// last deletion) and last modified, its writes since creation, and its
/// lease (0 if none). A key written before revisions were counted reads as
/// created and modified at revision 1, version 1.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, Default)]
pub struct floyd_kv_meta_t {
    pub create_revision: u64,
    pub mod_revision: u64,
    pub version: u64,
    pub lease: u64,
}

impl From<KvMeta> for floyd_kv_meta_t {
    fn from(m: KvMeta) -> Self {
        floyd_kv_meta_t {
            create_revision: m.create_revision,
            mod_revision: m.mod_revision,
            version: m.version,
            lease: m.lease,
        }
    }
}

/// Keys with values and revisions: a page of a scan, or a transaction's
/// gets. Freed with `floyd_kv_list_free`.
#[allow(non_camel_case_types)]
pub struct floyd_kv_list_t {
    list: KvList,
}

/// A transaction being built: comparisons and two branches of operations.
/// Freed with `floyd_txn_free`.
#[allow(non_camel_case_types)]
pub struct floyd_txn_t {
    txn: Txn,
}

/// `key`'s value and revisions, linearizable (a ReadIndex round, as `floyd_read`).
///
/// Thread-safety: any thread, concurrently with any call on `f` but `floyd_close`; blocks at most
/// the request timeout.
/// Ownership: `key` is borrowed; on FLOYD_OK `*value` (NUL-terminated after `*value_len` bytes)
/// is the caller's to free with `floyd_free`; `meta` is filled; `errmsg` may be NULL, else on
/// failure `*errmsg` gets a message to free with `floyd_free`.
/// Returns: FLOYD_OK; FLOYD_NOT_FOUND; FLOYD_INVALID_ARGUMENT (NULL `f`, `value`, `value_len` or
/// `meta`, an empty key or one over 64 KiB, a user-defined state machine); FLOYD_NO_LEADER,
/// FLOYD_TIMEOUT, FLOYD_STOPPED; FLOYD_FAILED; FLOYD_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn floyd_read_meta(
    f: *mut floyd_t,
    key: *const c_char,
    key_len: usize,
    value: *mut *mut c_char,
    value_len: *mut usize,
    meta: *mut floyd_kv_meta_t,
    errmsg: *mut *mut c_char,
) -> c_int {
    boundary(errmsg, || {
        let n = node(f)?;
        let k = key_arg(key, key_len)?;
        let (value_slot, len_slot) = (out_arg(value, "value")?, out_arg(value_len, "value_len")?);
        let meta_slot = out_arg(meta, "meta")?;
        let (v, m) = n.read_meta(k)?;
        *value_slot = alloc_bytes(&v)?;
        *len_slot = v.len();
        *meta_slot = m.into();
        Ok(())
    })
}

/// Stores `value` under `key` only if the key was last modified at revision
/// `expected_mod_revision` (0: only if the key is absent). Compare-and-swap.
///
/// Thread-safety: as `floyd_write`.
/// Ownership: `key` and `value` are borrowed and copied; `new_revision` may be NULL, else on
/// FLOYD_OK it gets the revision of the write; `errmsg` as usual.
/// Returns: FLOYD_OK; FLOYD_CONFLICT (the key is not at that revision: nothing written);
/// FLOYD_INVALID_ARGUMENT (as `floyd_write`); not applied: FLOYD_NO_LEADER, FLOYD_BUSY (also while
/// a member of the group runs a release without revisions); outcome unknown: FLOYD_TIMEOUT,
/// FLOYD_STOPPED; FLOYD_FAILED; FLOYD_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn floyd_write_if(
    f: *mut floyd_t,
    key: *const c_char,
    key_len: usize,
    value: *const c_char,
    value_len: usize,
    expected_mod_revision: u64,
    new_revision: *mut u64,
    errmsg: *mut *mut c_char,
) -> c_int {
    boundary(errmsg, || {
        let n = node(f)?;
        let (k, v) = (key_arg(key, key_len)?, bytes(value, value_len, "value")?);
        let rev = n.write_if(k, v, expected_mod_revision)?;
        if let Some(slot) = new_revision.as_mut() {
            *slot = rev;
        }
        Ok(())
    })
}

/// Deletes `key` only if it was last modified at revision `expected_mod_revision`
/// (0: only if absent, which deletes nothing).
///
/// Thread-safety: as `floyd_delete`.
/// Ownership: `key` is borrowed and copied; `errmsg` as usual.
/// Returns: FLOYD_OK; FLOYD_CONFLICT (nothing deleted); the other codes as `floyd_write_if`.
#[no_mangle]
pub unsafe extern "C" fn floyd_delete_if(
    f: *mut floyd_t,
    key: *const c_char,
    key_len: usize,
    expected_mod_revision: u64,
    errmsg: *mut *mut c_char,
) -> c_int {
    boundary(errmsg, || {
        node(f)?.delete_if(key_arg(key, key_len)?, expected_mod_revision)
    })
}

/// The keys in `[start, end)` in byte order, with values and revisions, linearizable: at most
/// `limit` of them (0: as many as a 32 MiB page holds); `floyd_kv_list_more` says whether the
/// range goes on (scan again from the last key followed by a zero byte). `end_len` 0 (`end`
/// then may be NULL): to the last key; a prefix scan ends at `floyd_prefix_end` of the prefix.
/// Read from one snapshot of the store: never half a transaction, and writes go on meanwhile.
///
/// Thread-safety: as `floyd_read`.
/// Ownership: `start` and `end` are borrowed; on FLOYD_OK `*out` is the caller's, freed with
/// `floyd_kv_list_free`; `errmsg` as usual.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT (NULL `f` or `out`, a NULL pointer with a non-zero
/// length, a bound over 64 KiB + 1 byte (a key and a zero byte), a user-defined state machine);
/// FLOYD_NO_LEADER, FLOYD_TIMEOUT, FLOYD_STOPPED; FLOYD_FAILED; FLOYD_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn floyd_scan(
    f: *mut floyd_t,
    start: *const c_char,
    start_len: usize,
    end: *const c_char,
    end_len: usize,
    limit: usize,
    out: *mut *mut floyd_kv_list_t,
    errmsg: *mut *mut c_char,
) -> c_int {
    boundary(errmsg, || {
        let n = node(f)?;
        let s = bytes(start, start_len, "start")?;
        let e = if end.is_null() {
            &[][..]
        } else {
            bytes(end, end_len, "end")?
        };
        let slot = out_arg(out, "out")?;
        let list = n.scan(s, e, limit)?;
        *slot = Box::into_raw(Box::new(floyd_kv_list_t { list }));
        Ok(())
    })
}

/// The number of keys in `[start, end)` (as `floyd_scan`'s range), linearizable.
///
/// Thread-safety: as `floyd_read`.
/// Ownership: `start` and `end` are borrowed; `*count` is set on FLOYD_OK; `errmsg` as usual.
/// Returns: as `floyd_scan` (FLOYD_INVALID_ARGUMENT also for a NULL `count`).
#[no_mangle]
pub unsafe extern "C" fn floyd_count(
    f: *mut floyd_t,
    start: *const c_char,
    start_len: usize,
    end: *const c_char,
    end_len: usize,
    count: *mut u64,
    errmsg: *mut *mut c_char,
) -> c_int {
    boundary(errmsg, || {
        let n = node(f)?;
        let s = bytes(start, start_len, "start")?;
        let e = if end.is_null() {
            &[][..]
        } else {
            bytes(end, end_len, "end")?
        };
        let slot = out_arg(count, "count")?;
        *slot = n.count(s, e)?;
        Ok(())
    })
}

/// The first key after every key that starts with `prefix`: the end of a prefix scan or watch.
/// Empty (`*end_len` 0: to the last key) when there is none (an empty prefix, or 0xff bytes only).
///
/// Thread-safety: any thread.
/// Ownership: `prefix` is borrowed; on FLOYD_OK `*end` (NUL-terminated after `*end_len` bytes)
/// is the caller's to free with `floyd_free`.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT (NULL `end` or `end_len`, a NULL `prefix` with a
/// non-zero length); FLOYD_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn floyd_prefix_end(
    prefix: *const c_char,
    prefix_len: usize,
    end: *mut *mut c_char,
    end_len: *mut usize,
) -> c_int {
    boundary(std::ptr::null_mut(), || {
        let p = bytes(prefix, prefix_len, "prefix")?;
        let (end_slot, len_slot) = (out_arg(end, "end")?, out_arg(end_len, "end_len")?);
        let e = crate::floyd::prefix_end(p);
        *end_slot = alloc_bytes(&e)?;
        *len_slot = e.len();
        Ok(())
    })
}

/// The number of keys in `list` (0 for NULL).
///
/// Thread-safety: any thread, while no thread frees `list`.
/// Ownership: `list` is borrowed.
/// Returns: the number.
#[no_mangle]
pub unsafe extern "C" fn floyd_kv_list_len(list: *const floyd_kv_list_t) -> usize {
    boundary_value(0, || list.as_ref().map(|l| l.list.kvs.len()))
}

/// The `i`-th key of `list`, its value and its revisions.
///
/// Thread-safety: as `floyd_kv_list_len`.
/// Ownership: `*key` and `*value` point into `list` (not NUL-terminated; an empty value points
/// to a static empty string, never dangles) and stay valid until it is freed; `key_len`,
/// `value_len` and `meta` may each be NULL if not wanted (`key` and `value` too).
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT (NULL `list`, `i` out of range).
#[no_mangle]
pub unsafe extern "C" fn floyd_kv_list_get(
    list: *const floyd_kv_list_t,
    i: usize,
    key: *mut *const c_char,
    key_len: *mut usize,
    value: *mut *const c_char,
    value_len: *mut usize,
    meta: *mut floyd_kv_meta_t,
) -> c_int {
    boundary(std::ptr::null_mut(), || {
        let l = list
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("list is NULL".into()))?;
        let kv: &KeyValue =
            l.list.kvs.get(i).ok_or_else(|| {
                Error::InvalidArgument(format!("index {i} of a list of {}", l.list.kvs.len()))
            })?;
        if let Some(s) = key.as_mut() {
            *s = readable(&kv.key);
        }
        if let Some(s) = key_len.as_mut() {
            *s = kv.key.len();
        }
        if let Some(s) = value.as_mut() {
            *s = readable(&kv.value);
        }
        if let Some(s) = value_len.as_mut() {
            *s = kv.value.len();
        }
        if let Some(s) = meta.as_mut() {
            *s = kv.meta.into();
        }
        Ok(())
    })
}

/// Whether the scanned range goes on past `list`'s last key (false for NULL).
///
/// Thread-safety: as `floyd_kv_list_len`.
/// Ownership: `list` is borrowed.
/// Returns: the flag.
#[no_mangle]
pub unsafe extern "C" fn floyd_kv_list_more(list: *const floyd_kv_list_t) -> bool {
    boundary_value(false, || list.as_ref().map(|l| l.list.more))
}

/// The group's revision at the state `list` was read from (0 for NULL).
///
/// Thread-safety: as `floyd_kv_list_len`.
/// Ownership: `list` is borrowed.
/// Returns: the revision.
#[no_mangle]
pub unsafe extern "C" fn floyd_kv_list_revision(list: *const floyd_kv_list_t) -> u64 {
    boundary_value(0, || list.as_ref().map(|l| l.list.revision))
}

/// Frees a list. NULL-safe.
///
/// Thread-safety: any thread; no other thread may use `list`.
/// Ownership: takes `list`.
/// Returns: nothing.
#[no_mangle]
pub unsafe extern "C" fn floyd_kv_list_free(list: *mut floyd_kv_list_t) {
    if !list.is_null() {
        let l = Box::from_raw(list);
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(l)));
    }
}

/// A new, empty transaction (its comparisons all hold: it runs its THEN branch).
///
/// Thread-safety: any thread.
/// Ownership: the caller owns the result and frees it with `floyd_txn_free`.
/// Returns: the transaction (never NULL).
#[no_mangle]
pub extern "C" fn floyd_txn_new() -> *mut floyd_txn_t {
    boundary_value(std::ptr::null_mut(), || {
        Some(Box::into_raw(Box::new(floyd_txn_t { txn: Txn::new() })))
    })
}

/// Frees a transaction. NULL-safe.
///
/// Thread-safety: any thread; no other thread may use `txn`.
/// Ownership: takes `txn`.
/// Returns: nothing.
#[no_mangle]
pub unsafe extern "C" fn floyd_txn_free(txn: *mut floyd_txn_t) {
    if !txn.is_null() {
        let t = Box::from_raw(txn);
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(t)));
    }
}

/// Adds a comparison of `key`'s value with `value` (`cmp` a FLOYD_CMP_*). A missing key is
/// unequal to every value, neither less nor greater.
///
/// Thread-safety: one thread at a time per `txn`.
/// Ownership: `key` and `value` are borrowed and copied.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT (NULL `txn`, an empty key, a NULL pointer with a
/// non-zero length, an unknown `cmp`).
#[no_mangle]
pub unsafe extern "C" fn floyd_txn_if_value(
    txn: *mut floyd_txn_t,
    key: *const c_char,
    key_len: usize,
    cmp: c_int,
    value: *const c_char,
    value_len: usize,
) -> c_int {
    with_txn(txn, |t| {
        let (k, v, c) = (
            key_arg(key, key_len)?,
            bytes(value, value_len, "value")?,
            cmp_arg(cmp)?,
        );
        t.if_value(k, c, v);
        Ok(())
    })
}

/// Adds a comparison of `key`'s version (its writes since creation; 0: absent).
///
/// Thread-safety: one thread at a time per `txn`.
/// Ownership: `key` is borrowed and copied.
/// Returns: as `floyd_txn_if_value`.
#[no_mangle]
pub unsafe extern "C" fn floyd_txn_if_version(
    txn: *mut floyd_txn_t,
    key: *const c_char,
    key_len: usize,
    cmp: c_int,
    version: u64,
) -> c_int {
    compare_number(txn, key, key_len, cmp, version, Txn::if_version)
}

/// Adds a comparison of the revision `key` was last modified at (0: absent).
///
/// Thread-safety: one thread at a time per `txn`.
/// Ownership: `key` is borrowed and copied.
/// Returns: as `floyd_txn_if_value`.
#[no_mangle]
pub unsafe extern "C" fn floyd_txn_if_mod_revision(
    txn: *mut floyd_txn_t,
    key: *const c_char,
    key_len: usize,
    cmp: c_int,
    revision: u64,
) -> c_int {
    compare_number(txn, key, key_len, cmp, revision, Txn::if_mod_revision)
}

/// Adds a comparison of the revision `key` was created at (0: absent).
///
/// Thread-safety: one thread at a time per `txn`.
/// Ownership: `key` is borrowed and copied.
/// Returns: as `floyd_txn_if_value`.
#[no_mangle]
pub unsafe extern "C" fn floyd_txn_if_create_revision(
    txn: *mut floyd_txn_t,
    key: *const c_char,
    key_len: usize,
    cmp: c_int,
    revision: u64,
) -> c_int {
    compare_number(txn, key, key_len, cmp, revision, Txn::if_create_revision)
}

/// Adds a put of `key` to `branch` (FLOYD_TXN_THEN or FLOYD_TXN_ELSE), attached to lease `lease`
/// (0: none; a lease that does not exist when the branch runs makes the whole transaction answer
/// FLOYD_NOT_FOUND and write nothing).
///
/// Thread-safety: one thread at a time per `txn`.
/// Ownership: `key` and `value` are borrowed and copied.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT (NULL `txn`, an empty key, a NULL pointer with a
/// non-zero length, an unknown `branch`).
#[no_mangle]
pub unsafe extern "C" fn floyd_txn_put(
    txn: *mut floyd_txn_t,
    branch: c_int,
    key: *const c_char,
    key_len: usize,
    value: *const c_char,
    value_len: usize,
    lease: u64,
) -> c_int {
    with_txn(txn, |t| {
        let (b, k, v) = (
            branch_arg(branch)?,
            key_arg(key, key_len)?,
            bytes(value, value_len, "value")?,
        );
        t.put(b, k, v, lease);
        Ok(())
    })
}

/// Adds a delete of `key` to `branch`.
///
/// Thread-safety: one thread at a time per `txn`.
/// Ownership: `key` is borrowed and copied.
/// Returns: as `floyd_txn_put`.
#[no_mangle]
pub unsafe extern "C" fn floyd_txn_delete(
    txn: *mut floyd_txn_t,
    branch: c_int,
    key: *const c_char,
    key_len: usize,
) -> c_int {
    with_txn(txn, |t| {
        t.delete(branch_arg(branch)?, key_arg(key, key_len)?);
        Ok(())
    })
}

/// Adds a get of `key` to `branch`: it sees the branch's earlier writes.
///
/// Thread-safety: one thread at a time per `txn`.
/// Ownership: `key` is borrowed and copied.
/// Returns: as `floyd_txn_put`.
#[no_mangle]
pub unsafe extern "C" fn floyd_txn_get(
    txn: *mut floyd_txn_t,
    branch: c_int,
    key: *const c_char,
    key_len: usize,
) -> c_int {
    with_txn(txn, |t| {
        t.get(branch_arg(branch)?, key_arg(key, key_len)?);
        Ok(())
    })
}

/// Runs `txn` on the group (linearizable, one log entry, atomic on every replica at one
/// revision). At most 128 comparisons and 128 operations per branch, a key written at most once
/// per branch, 16 MiB + 128 KiB in all.
///
/// Thread-safety: as `floyd_write`; `txn` must not change during the call (it may be committed
/// again, or from several threads at once).
/// Ownership: `txn` is borrowed (free it when done); `succeeded` may be NULL, else it says whether
/// the THEN branch ran; `gets` may be NULL, else on FLOYD_OK `*gets` holds the gets of the branch
/// that ran, in order, a missing key left out (free with `floyd_kv_list_free`); `revision` may be
/// NULL, else the group's revision after the transaction; `errmsg` as usual.
/// Returns: FLOYD_OK (whichever branch ran); FLOYD_NOT_FOUND (a put names a lease that does not
/// exist: nothing written); FLOYD_INVALID_ARGUMENT (NULL `f` or `txn`, the bounds above, a user
/// state machine); not applied: FLOYD_NO_LEADER, FLOYD_BUSY (also while a member runs a release
/// without transactions); outcome unknown: FLOYD_TIMEOUT, FLOYD_STOPPED; FLOYD_FAILED;
/// FLOYD_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn floyd_txn_commit(
    f: *mut floyd_t,
    txn: *const floyd_txn_t,
    succeeded: *mut bool,
    gets: *mut *mut floyd_kv_list_t,
    revision: *mut u64,
    errmsg: *mut *mut c_char,
) -> c_int {
    boundary(errmsg, || {
        let n = node(f)?;
        let t = txn
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("txn is NULL".into()))?;
        let r = n.txn(&t.txn)?;
        if let Some(s) = succeeded.as_mut() {
            *s = r.succeeded;
        }
        if let Some(s) = revision.as_mut() {
            *s = r.revision;
        }
        if let Some(s) = gets.as_mut() {
            let list = KvList {
                kvs: r.gets,
                more: false,
                revision: r.revision,
            };
            *s = Box::into_raw(Box::new(floyd_kv_list_t { list }));
        }
        Ok(())
    })
}

/// A comparison of one of a key's numbers (`add` says which).
unsafe fn compare_number(
    txn: *mut floyd_txn_t,
    key: *const c_char,
    key_len: usize,
    cmp: c_int,
    n: u64,
    add: for<'a> fn(&'a mut Txn, &[u8], Cmp, u64) -> &'a mut Txn,
) -> c_int {
    with_txn(txn, |t| {
        add(t, key_arg(key, key_len)?, cmp_arg(cmp)?, n);
        Ok(())
    })
}

unsafe fn with_txn(txn: *mut floyd_txn_t, f: impl FnOnce(&mut Txn) -> Result<(), Error>) -> c_int {
    boundary(std::ptr::null_mut(), || {
        let t = txn
            .as_mut()
            .ok_or_else(|| Error::InvalidArgument("txn is NULL".into()))?;
        f(&mut t.txn)
    })
}

/// A pointer a C caller may read `data.len()` bytes from; for an empty
/// buffer a static empty string, not the dangling pointer of an empty Vec.
fn readable(data: &[u8]) -> *const c_char {
    if data.is_empty() {
        return c"".as_ptr();
    }
    data.as_ptr().cast()
}

fn cmp_arg(cmp: c_int) -> Result<Cmp, Error> {
    Ok(match cmp {
        FLOYD_CMP_EQUAL => Cmp::Equal,
        FLOYD_CMP_NOT_EQUAL => Cmp::NotEqual,
        FLOYD_CMP_LESS => Cmp::Less,
        FLOYD_CMP_GREATER => Cmp::Greater,
        other => return Err(Error::InvalidArgument(format!("unknown comparison {other}"))),
    })
}

fn branch_arg(branch: c_int) -> Result<Branch, Error> {
    Ok(match branch {
        FLOYD_TXN_THEN => Branch::Then,
        FLOYD_TXN_ELSE => Branch::Else,
        other => return Err(Error::InvalidArgument(format!("unknown branch {other}"))),
    })
}
