//! `floyd_t`: a running node, and the calls made on it.

use super::args::{alloc_bytes, bytes, key as key_arg, non_empty, out as out_arg, text};
use super::options::floyd_options_t;
use super::{boundary, boundary_value};
use crate::error::Error;
use crate::floyd::Floyd;
use crate::logging::LogLevel;
use std::ffi::{c_char, c_int};

/// A node (opaque). Thread-safe: any function may be called on it from many
/// threads at once. Created by `floyd_open`, closed and freed by `floyd_close`.
#[allow(non_camel_case_types)]
pub struct floyd_t {
    floyd: Floyd,
}

unsafe fn node<'a>(f: *const floyd_t) -> Result<&'a Floyd, Error> {
    f.as_ref()
        .map(|n| &n.floyd)
        .ok_or_else(|| Error::InvalidArgument("floyd handle is NULL".into()))
}

/// Opens a node and starts its threads; on `FLOYD_OK`, `*out` is the new handle.
#[no_mangle]
pub unsafe extern "C" fn floyd_open(
    opts: *const floyd_options_t,
    out: *mut *mut floyd_t,
    errmsg: *mut *mut c_char,
) -> c_int {
    boundary(errmsg, || {
        let slot = out_arg(out, "out")?;
        let o = opts
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("options are NULL".into()))?;
        if let Some(why) = &o.invalid {
            return Err(Error::InvalidArgument(why.clone()));
        }
        let floyd = Floyd::open(o.opts.clone())?;
        *slot = Box::into_raw(Box::new(floyd_t { floyd }));
        Ok(())
    })
}

/// Closes a node: stops and joins all its threads, then frees it. NULL-safe.
/// Like any free function it must not overlap other calls on the same handle.
#[no_mangle]
pub unsafe extern "C" fn floyd_close(f: *mut floyd_t) {
    if !f.is_null() {
        let handle = Box::from_raw(f);
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(handle)));
    }
}

/// Stores `value` under `key` once a majority has it (forwarded to the leader if needed).
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

/// Linearizable read; `*value` (free with `floyd_free`, NUL-terminated) and
/// `*value_len` are set on `FLOYD_OK` only.
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

/// Local read of this node's copy: fast, possibly stale.
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
/// `FLOYD_LOCKED` if another holder has it. Thread-safe; inputs are copied.
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

/// Releases lock `name` held by `holder`; `FLOYD_NOT_HOLDER` if another holds it,
/// it expired or it is free. Thread-safe; inputs are copied.
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
/// returns once it votes (`FLOYD_OK` at once if it is a voter already). `FLOYD_BUSY`
/// while another change is in progress. Thread-safe; `server` is copied.
#[no_mangle]
pub unsafe extern "C" fn floyd_add_server(
    f: *mut floyd_t,
    server: *const c_char,
    errmsg: *mut *mut c_char,
) -> c_int {
    boundary(errmsg, || node(f)?.add_server(text(server, "server")?))
}

/// Removes `server` ("ip:port") from the cluster; returns once the change is
/// committed (a removed leader steps down). `FLOYD_INVALID_ARGUMENT` for a
/// non-member or the last voter, `FLOYD_BUSY` while another change is in progress.
/// Thread-safe; `server` is copied.
#[no_mangle]
pub unsafe extern "C" fn floyd_remove_server(
    f: *mut floyd_t,
    server: *const c_char,
    errmsg: *mut *mut c_char,
) -> c_int {
    boundary(errmsg, || node(f)?.remove_server(text(server, "server")?))
}

/// The leader's "ip:port" in `*ip_port` (free with `floyd_free`); `FLOYD_NO_LEADER` when none.
#[no_mangle]
pub unsafe extern "C" fn floyd_get_leader(f: *mut floyd_t, ip_port: *mut *mut c_char) -> c_int {
    text_out(f, ip_port, "ip_port", std::ptr::null_mut(), |n| {
        n.get_leader().ok_or_else(|| Error::NoLeader("no leader".into()))
    })
}

/// Whether a leader is known. False for a NULL handle.
#[no_mangle]
pub unsafe extern "C" fn floyd_has_leader(f: *mut floyd_t) -> bool {
    boundary_value(false, || node(f).ok().map(Floyd::has_leader))
}

/// Whether this node is the leader. False for a NULL handle.
#[no_mangle]
pub unsafe extern "C" fn floyd_is_leader(f: *mut floyd_t) -> bool {
    boundary_value(false, || node(f).ok().map(Floyd::is_leader))
}

/// Floyd's status header line plus this node's row, in `*text` (free with `floyd_free`).
#[no_mangle]
pub unsafe extern "C" fn floyd_get_server_status(f: *mut floyd_t, text: *mut *mut c_char) -> c_int {
    text_out(f, text, "text", std::ptr::null_mut(), |n| {
        Ok(n.server_status().to_string())
    })
}

/// This node's status as one JSON object, in `*json` (free with `floyd_free`).
#[no_mangle]
pub unsafe extern "C" fn floyd_get_server_status_json(f: *mut floyd_t, json: *mut *mut c_char) -> c_int {
    text_out(f, json, "json", std::ptr::null_mut(), |n| {
        Ok(n.server_status().to_json())
    })
}

/// Every member of this node's latest configuration (voters and learners) as
/// "ip:port,ip:port" in `*servers_csv` (free with `floyd_free`).
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
/// WARN=3 ERROR=4 FATAL=5 NONE=6. Ignored for a NULL handle or another number.
#[no_mangle]
pub unsafe extern "C" fn floyd_set_log_level(f: *mut floyd_t, level: c_int) {
    boundary_value((), || {
        let level = LogLevel::from_number(level)?;
        node(f).ok().map(|n| n.set_log_level(level))
    });
}
