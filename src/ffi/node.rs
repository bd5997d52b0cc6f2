//! `floyd_t`: a running node, and the calls made on it.

use super::args::{alloc_bytes, bytes, key as key_arg, non_empty, out as out_arg, text};
use super::options::floyd_options_t;
use super::{boundary, boundary_value};
use crate::error::Error;
use crate::floyd::Floyd;
use crate::logging::LogLevel;
use crate::state_machine::StateMachine;
use std::ffi::{c_char, c_int};

/// A node (opaque). Thread-safe: any function may be called on it from many
/// threads at once, except `floyd_close`, which must not overlap any other call.
/// Created by `floyd_open`, closed and freed by `floyd_close`.
#[allow(non_camel_case_types)]
pub struct floyd_t {
    floyd: Floyd,
}

pub(super) unsafe fn node<'a>(f: *const floyd_t) -> Result<&'a Floyd, Error> {
    f.as_ref()
        .map(|n| &n.floyd)
        .ok_or_else(|| Error::InvalidArgument("floyd handle is NULL".into()))
}

/// Opens a node and starts its threads; on `FLOYD_OK`, `*out` is the new handle.
///
/// Thread-safety: any thread; `opts` must not be modified during the call. Blocks while the
/// databases open; the log callback may run inside it.
/// Ownership: `opts` is borrowed and copied (free it any time after); on FLOYD_OK the caller owns
/// `*out` and ends it with `floyd_close`, never `floyd_free`; `errmsg` may be NULL, else on failure
/// `*errmsg` gets a message to free with `floyd_free`.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT (NULL `opts` or `out`, an unusable argument or
/// option); FLOYD_IO_ERROR (the directory, a database or the port cannot be opened, e.g. the path
/// is in use by another node); FLOYD_CORRUPTION (data on disk failed a check); FLOYD_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn floyd_open(
    opts: *const floyd_options_t,
    out: *mut *mut floyd_t,
    errmsg: *mut *mut c_char,
) -> c_int {
    boundary(errmsg, || open_node(opts, out, None))
}

/// Shared body of the two opens: checks, opens, hands the handle out.
pub(super) unsafe fn open_node(
    opts: *const floyd_options_t,
    out: *mut *mut floyd_t,
    machine: Option<Box<dyn StateMachine>>,
) -> Result<(), Error> {
    let slot = out_arg(out, "out")?;
    let o = opts
        .as_ref()
        .ok_or_else(|| Error::InvalidArgument("options are NULL".into()))?;
    if let Some(why) = &o.invalid {
        return Err(Error::InvalidArgument(why.clone()));
    }
    let floyd = match machine {
        None => Floyd::open(o.opts.clone())?,
        Some(m) => Floyd::open_with_state_machine(o.opts.clone(), m)?,
    };
    *slot = handle(floyd);
    Ok(())
}

/// A handle for C: the caller owns it and ends it with `floyd_close`.
pub(super) fn handle(floyd: Floyd) -> *mut floyd_t {
    Box::into_raw(Box::new(floyd_t { floyd }))
}

/// Closes a node: stops and joins all its threads, closes its databases, then frees it.
///
/// Thread-safety: like any free function it must not overlap other calls on the same handle (let
/// them return first); blocks until every thread of the node has stopped.
/// Ownership: takes `f` (from `floyd_open`), invalid afterwards. NULL-safe.
/// Returns: nothing.
#[no_mangle]
pub unsafe extern "C" fn floyd_close(f: *mut floyd_t) {
    if !f.is_null() {
        let handle = Box::from_raw(f);
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(handle)));
    }
}

/// Stores `value` under `key` once a majority has it (forwarded to the leader if needed).
///
/// Thread-safety: any thread, concurrently with any call on `f` but `floyd_close`; blocks until it
/// is applied, at most the request timeout.
/// Ownership: `key` and `value` are borrowed and copied (`value` may be NULL when `value_len` is
/// 0); `errmsg` may be NULL, else on failure `*errmsg` gets a message to free with `floyd_free`.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT (NULL `f`, an empty key or one over 64 KiB, a value
/// over 16 MiB, a NULL pointer with a non-zero length); not applied: FLOYD_NO_LEADER, FLOYD_BUSY
/// (the queue to the leader is full); outcome unknown: FLOYD_TIMEOUT, FLOYD_STOPPED (the leader
/// closed); FLOYD_FAILED; FLOYD_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn floyd_write(
    f: *mut floyd_t,
    key: *const c_char,
    key_len: usize,
    value: *const c_char,
    value_len: usize,
    errmsg: *mut *mut c_char,
) -> c_int {
    boundary(errmsg, || {
        let n = node(f)?;
        let (k, v) = (key_arg(key, key_len)?, bytes(value, value_len, "value")?);
        n.write(k, v)
    })
}

/// Deletes `key` (deleting a missing key succeeds).
///
/// Thread-safety: any thread, concurrently with any call on `f` but `floyd_close`; blocks like
/// `floyd_write`.
/// Ownership: `key` is borrowed and copied; `errmsg` may be NULL, else on failure `*errmsg` gets a
/// message to free with `floyd_free`.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT (NULL `f`, an empty key or one over 64 KiB); not
/// applied: FLOYD_NO_LEADER, FLOYD_BUSY (the queue to the leader is full); outcome unknown:
/// FLOYD_TIMEOUT, FLOYD_STOPPED (the leader closed); FLOYD_FAILED; FLOYD_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn floyd_delete(
    f: *mut floyd_t,
    key: *const c_char,
    key_len: usize,
    errmsg: *mut *mut c_char,
) -> c_int {
    boundary(errmsg, || node(f)?.delete(key_arg(key, key_len)?))
}

// Output slots are always taken before anything is allocated for them, so a
// NULL output pointer never leaks a buffer.

/// Shared body of the two reads: checks, reads, hands the value out.
unsafe fn read_with(
    f: *mut floyd_t,
    key: *const c_char,
    key_len: usize,
    value: *mut *mut c_char,
    value_len: *mut usize,
    errmsg: *mut *mut c_char,
    read: fn(&Floyd, &[u8]) -> Result<Vec<u8>, Error>,
) -> c_int {
    boundary(errmsg, || {
        let n = node(f)?;
        let k = key_arg(key, key_len)?;
        let (value_slot, len_slot) = (out_arg(value, "value")?, out_arg(value_len, "value_len")?);
        let v = read(n, k)?;
        *value_slot = alloc_bytes(&v)?;
        *len_slot = v.len();
        Ok(())
    })
}

/// Shared body of the calls that hand out a string made from the node.
unsafe fn text_out(
    f: *mut floyd_t,
    slot: *mut *mut c_char,
    what: &str,
    errmsg: *mut *mut c_char,
    make: impl FnOnce(&Floyd) -> Result<String, Error>,
) -> c_int {
    boundary(errmsg, || {
        let (n, slot) = (node(f)?, out_arg(slot, what)?);
        *slot = alloc_bytes(make(n)?.as_bytes())?;
        Ok(())
    })
}

/// Linearizable read (ReadIndex: no log entry; a follower forwards it to the leader).
///
/// Thread-safety: any thread, concurrently with any call on `f` but `floyd_close`; blocks like
/// `floyd_write`.
/// Ownership: `key` is borrowed; `value` and `value_len` must not be NULL; on FLOYD_OK only, the
/// caller owns `*value` (NUL-terminated, `*value_len` bytes before the NUL) and frees it with
/// `floyd_free`; `errmsg` may be NULL, else on failure `*errmsg` gets a message to free with
/// `floyd_free`.
/// Returns: FLOYD_OK; FLOYD_NOT_FOUND (nothing written); FLOYD_INVALID_ARGUMENT (NULL `f`, `value`
/// or `value_len`, a bad key); FLOYD_IO_ERROR (out of memory for the value); not applied:
/// FLOYD_NO_LEADER, FLOYD_BUSY (the queue to the leader is full); outcome unknown: FLOYD_TIMEOUT,
/// FLOYD_STOPPED (the leader closed); FLOYD_FAILED; FLOYD_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn floyd_read(
    f: *mut floyd_t,
    key: *const c_char,
    key_len: usize,
    value: *mut *mut c_char,
    value_len: *mut usize,
    errmsg: *mut *mut c_char,
) -> c_int {
    read_with(f, key, key_len, value, value_len, errmsg, Floyd::read)
}

/// Local read of this node's copy: fast, possibly stale; works with no leader.
///
/// Thread-safety: any thread, concurrently with any call on `f` but `floyd_close`; never waits on
/// the network.
/// Ownership: `key` is borrowed; `value` and `value_len` must not be NULL; on FLOYD_OK only, the
/// caller owns `*value` (as for `floyd_read`) and frees it with `floyd_free`; `errmsg` may be NULL,
/// else on failure `*errmsg` gets a message to free with `floyd_free`.
/// Returns: FLOYD_OK; FLOYD_NOT_FOUND (nothing written); FLOYD_INVALID_ARGUMENT (NULL `f`, `value`
/// or `value_len`, a bad key); FLOYD_IO_ERROR, FLOYD_CORRUPTION, FLOYD_BUSY (reading the local
/// database failed; FLOYD_IO_ERROR also for out of memory); FLOYD_FAILED; FLOYD_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn floyd_dirty_read(
    f: *mut floyd_t,
    key: *const c_char,
    key_len: usize,
    value: *mut *mut c_char,
    value_len: *mut usize,
    errmsg: *mut *mut c_char,
) -> c_int {
    read_with(f, key, key_len, value, value_len, errmsg, Floyd::dirty_read)
}

/// A lock's name and holder: both non-empty `(ptr, len)` buffers.
unsafe fn lock_args<'a>(
    name: *const c_char,
    name_len: usize,
    holder: *const c_char,
    holder_len: usize,
) -> Result<(&'a [u8], &'a [u8]), Error> {
    Ok((
        non_empty(name, name_len, "name")?,
        non_empty(holder, holder_len, "holder")?,
    ))
}

/// Takes lock `name` for `holder` for `ttl_ms` ms (1 ms to 24 h), or renews it if
/// `holder` holds it; on `FLOYD_OK` the fencing token goes to `*token` (nullable).
///
/// Thread-safety: any thread, concurrently with any call on `f` but `floyd_close`; blocks like
/// `floyd_write`.
/// Ownership: `name` and `holder` are borrowed and copied; `token` may be NULL and is written on
/// FLOYD_OK only; `errmsg` may be NULL, else on failure `*errmsg` gets a message to free with
/// `floyd_free`.
/// Returns: FLOYD_OK; FLOYD_LOCKED (another holder has it; nothing written); FLOYD_INVALID_ARGUMENT
/// (NULL `f`, an empty name or holder, `ttl_ms` out of range); not applied: FLOYD_NO_LEADER,
/// FLOYD_BUSY (the queue to the leader is full); outcome unknown: FLOYD_TIMEOUT, FLOYD_STOPPED (the
/// leader closed); FLOYD_FAILED; FLOYD_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn floyd_try_lock(
    f: *mut floyd_t,
    name: *const c_char,
    name_len: usize,
    holder: *const c_char,
    holder_len: usize,
    ttl_ms: u64,
    token: *mut u64,
    errmsg: *mut *mut c_char,
) -> c_int {
    boundary(errmsg, || {
        let n = node(f)?;
        let (name, holder) = lock_args(name, name_len, holder, holder_len)?;
        let t = n.try_lock(name, holder, ttl_ms)?;
        if let Some(slot) = token.as_mut() {
            *slot = t;
        }
        Ok(())
    })
}

/// Releases lock `name` held by `holder`.
///
/// Thread-safety: any thread, concurrently with any call on `f` but `floyd_close`; blocks like
/// `floyd_write`.
/// Ownership: `name` and `holder` are borrowed and copied; `errmsg` may be NULL, else on failure
/// `*errmsg` gets a message to free with `floyd_free`.
/// Returns: FLOYD_OK; FLOYD_NOT_HOLDER (another holds it, its lease ran out, or it is free);
/// FLOYD_INVALID_ARGUMENT (NULL `f`, an empty name or holder); not applied: FLOYD_NO_LEADER,
/// FLOYD_BUSY (the queue to the leader is full); outcome unknown: FLOYD_TIMEOUT, FLOYD_STOPPED (the
/// leader closed); FLOYD_FAILED; FLOYD_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn floyd_unlock(
    f: *mut floyd_t,
    name: *const c_char,
    name_len: usize,
    holder: *const c_char,
    holder_len: usize,
    errmsg: *mut *mut c_char,
) -> c_int {
    boundary(errmsg, || {
        let n = node(f)?;
        let (name, holder) = lock_args(name, name_len, holder, holder_len)?;
        n.unlock(name, holder)
    })
}

/// Adds `server` ("ip:port") to the cluster: caught up as a learner, then a voter;
/// returns once it votes (`FLOYD_OK` at once if it is a voter already).
///
/// Thread-safety: any thread, concurrently with any call on `f` but `floyd_close`; blocks until the
/// change is committed, at most the request timeout.
/// Ownership: `server` (NUL-terminated) is borrowed and copied; `errmsg` may be NULL, else on
/// failure `*errmsg` gets a message to free with `floyd_free`.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT (NULL `f` or `server`, a bad address); nothing
/// changed: FLOYD_BUSY (another change is in progress or waiting), FLOYD_NO_LEADER; FLOYD_TIMEOUT
/// (the change may still finish); FLOYD_STOPPED (the leader closed); FLOYD_FAILED; FLOYD_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn floyd_add_server(
    f: *mut floyd_t,
    server: *const c_char,
    errmsg: *mut *mut c_char,
) -> c_int {
    boundary(errmsg, || node(f)?.add_server(text(server, "server")?))
}

/// Removes `server` ("ip:port") from the cluster; returns once the change is
/// committed (a removed leader steps down).
///
/// Thread-safety: any thread, concurrently with any call on `f` but `floyd_close`; blocks like
/// `floyd_add_server`.
/// Ownership: `server` (NUL-terminated) is borrowed and copied; `errmsg` may be NULL, else on
/// failure `*errmsg` gets a message to free with `floyd_free`.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT (NULL `f` or `server`, a bad address, a non-member,
/// the last voter); FLOYD_BUSY, FLOYD_NO_LEADER, FLOYD_TIMEOUT, FLOYD_STOPPED, FLOYD_FAILED,
/// FLOYD_INTERNAL as for `floyd_add_server`.
#[no_mangle]
pub unsafe extern "C" fn floyd_remove_server(
    f: *mut floyd_t,
    server: *const c_char,
    errmsg: *mut *mut c_char,
) -> c_int {
    boundary(errmsg, || node(f)?.remove_server(text(server, "server")?))
}

/// Hands leadership to voter `server` ("ip:port", Raft dissertation §3.10): the leader catches
/// it up and has it campaign at once; returns once `server` leads (`FLOYD_OK` at once if it does).
/// Asked of a follower, it is forwarded to the leader. Writes made meanwhile wait for the handover.
///
/// Thread-safety: any thread, concurrently with any call on `f` but `floyd_close`; blocks until
/// `server` leads, at most about three election timeouts (`check_leader_us`).
/// Ownership: `server` (NUL-terminated) is borrowed and copied; `errmsg` may be NULL, else on
/// failure `*errmsg` gets a message to free with `floyd_free`.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT (NULL `f` or `server`, a bad address, a server that
/// is not a voter); FLOYD_TIMEOUT (`server` did not take over in time, e.g. it is down: the old
/// leader leads on and takes writes again); nothing started: FLOYD_BUSY (a membership change or
/// another transfer runs), FLOYD_NO_LEADER; FLOYD_STOPPED; FLOYD_FAILED; FLOYD_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn floyd_transfer_leader(
    f: *mut floyd_t,
    server: *const c_char,
    errmsg: *mut *mut c_char,
) -> c_int {
    boundary(errmsg, || node(f)?.transfer_leader(text(server, "server")?))
}

/// The leader's "ip:port" as this node knows it, in `*ip_port`.
///
/// Thread-safety: any thread, concurrently with any call on `f` but `floyd_close`; never waits on
/// the network.
/// Ownership: `ip_port` must not be NULL; on FLOYD_OK only, the caller owns `*ip_port`
/// (NUL-terminated) and frees it with `floyd_free`. No errmsg.
/// Returns: FLOYD_OK; FLOYD_NO_LEADER (none known; nothing written); FLOYD_STOPPED (the group or
/// its host is closed); FLOYD_FAILED; FLOYD_INVALID_ARGUMENT (NULL `f` or `ip_port`);
/// FLOYD_IO_ERROR (out of memory); FLOYD_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn floyd_get_leader(f: *mut floyd_t, ip_port: *mut *mut c_char) -> c_int {
    text_out(f, ip_port, "ip_port", std::ptr::null_mut(), |n| {
        n.check_usable()?;
        n.get_leader().ok_or_else(|| Error::NoLeader("no leader".into()))
    })
}

/// Whether a leader is known to this node.
///
/// Thread-safety: any thread, concurrently with any call on `f` but `floyd_close`; never waits on
/// the network.
/// Ownership: `f` is borrowed; nothing is allocated.
/// Returns: true or false; false for a NULL handle, a closed group or host, a failed node (or an
/// internal error).
#[no_mangle]
pub unsafe extern "C" fn floyd_has_leader(f: *mut floyd_t) -> bool {
    boundary_value(false, || node(f).ok().map(Floyd::has_leader))
}

/// Whether this node is the leader.
///
/// Thread-safety: any thread, concurrently with any call on `f` but `floyd_close`; never waits on
/// the network.
/// Ownership: `f` is borrowed; nothing is allocated.
/// Returns: true or false; false for a NULL handle, a closed group or host, a failed node (or an
/// internal error).
#[no_mangle]
pub unsafe extern "C" fn floyd_is_leader(f: *mut floyd_t) -> bool {
    boundary_value(false, || node(f).ok().map(Floyd::is_leader))
}

/// Floyd's status header line plus this node's row, in `*text`.
///
/// Thread-safety: any thread, concurrently with any call on `f` but `floyd_close`; never waits on
/// the network.
/// Ownership: `text` must not be NULL; on FLOYD_OK only, the caller owns `*text` (NUL-terminated)
/// and frees it with `floyd_free`. No errmsg.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT (NULL `f` or `text`); FLOYD_IO_ERROR (out of memory);
/// FLOYD_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn floyd_get_server_status(f: *mut floyd_t, text: *mut *mut c_char) -> c_int {
    text_out(f, text, "text", std::ptr::null_mut(), |n| {
        Ok(n.server_status().to_string())
    })
}

/// This node's status as one JSON object, in `*json` (fields: see README, "Status").
///
/// Thread-safety: any thread, concurrently with any call on `f` but `floyd_close`; never waits on
/// the network.
/// Ownership: `json` must not be NULL; on FLOYD_OK only, the caller owns `*json` (NUL-terminated)
/// and frees it with `floyd_free`. No errmsg.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT (NULL `f` or `json`); FLOYD_IO_ERROR (out of memory);
/// FLOYD_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn floyd_get_server_status_json(f: *mut floyd_t, json: *mut *mut c_char) -> c_int {
    text_out(f, json, "json", std::ptr::null_mut(), |n| {
        Ok(n.server_status().to_json())
    })
}

/// The metrics of this node's host and of its group, in the OpenMetrics text format that
/// Prometheus scrapes (serve it with the content type `application/openmetrics-text;
/// version=1.0.0; charset=utf-8`): counters (log writes and syncs, entries applied, leader
/// changes, elections, ReadIndex and lease reads, forwards, timeouts, snapshots, refused
/// frames), gauges (term, role, commit and applied index, apply lag, log entries held) and
/// latency histograms (fsync, blocking writes and reads, apply batches), the group's series
/// labelled `group`. README.md, "Metrics", lists them.
///
/// Thread-safety: any thread, concurrently with any call on `f` but `floyd_close`; never waits on
/// the network.
/// Ownership: `text` must not be NULL; on FLOYD_OK only, the caller owns `*text` (NUL-terminated)
/// and frees it with `floyd_free`. No errmsg.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT (NULL `f` or `text`); FLOYD_IO_ERROR (out of memory);
/// FLOYD_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn floyd_get_metrics(f: *mut floyd_t, text: *mut *mut c_char) -> c_int {
    text_out(f, text, "text", std::ptr::null_mut(), |n| Ok(n.metrics()))
}

/// Every member of this node's latest configuration (voters and learners), sorted, as
/// "ip:port,ip:port" in `*servers_csv` (empty for a joining node not yet added).
///
/// Thread-safety: any thread, concurrently with any call on `f` but `floyd_close`; never waits on
/// the network.
/// Ownership: `servers_csv` must not be NULL; on FLOYD_OK only, the caller owns `*servers_csv`
/// (NUL-terminated) and frees it with `floyd_free`; `errmsg` may be NULL, else on failure `*errmsg`
/// gets a message to free with `floyd_free`.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT (NULL `f` or `servers_csv`); FLOYD_IO_ERROR (out of
/// memory); FLOYD_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn floyd_get_all_servers(
    f: *mut floyd_t,
    servers_csv: *mut *mut c_char,
    errmsg: *mut *mut c_char,
) -> c_int {
    text_out(f, servers_csv, "servers_csv", errmsg, |n| {
        Ok(n.get_all_servers().join(","))
    })
}

/// Lowest level written to `<path>/LOG` and the log callback: DEBUG=1 INFO=2
/// WARN=3 ERROR=4 FATAL=5 NONE=6 (the FLOYD_LOG_* constants); takes effect at once.
///
/// Thread-safety: any thread, concurrently with any call on `f` but `floyd_close`.
/// Ownership: `f` is borrowed; nothing is allocated.
/// Returns: nothing; ignored for a NULL handle or a number outside 1..6.
#[no_mangle]
pub unsafe extern "C" fn floyd_set_log_level(f: *mut floyd_t, level: c_int) {
    boundary_value((), || {
        let level = LogLevel::from_number(level)?;
        node(f).ok().map(|n| n.set_log_level(level))
    });
}
