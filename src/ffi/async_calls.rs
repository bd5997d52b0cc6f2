//! The async calls: return at once, answer through a callback.

use super::args::{bytes, key as key_arg};
use super::node::{floyd_t, node};
use super::{code_of, FLOYD_OK};
use crate::error::{Error, Result};
use bytes::Bytes;
use std::ffi::{c_char, c_int, c_void, CString};

/// Called once with the outcome of `floyd_write_async` or `floyd_delete_async`:
/// `code` is a FLOYD_* status; `errmsg` is NULL on FLOYD_OK, else a message
/// valid only during the call. Runs on a library thread; must not block.
#[allow(non_camel_case_types)]
pub type floyd_done_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, code: c_int, errmsg: *const c_char)>;

/// Called once with the outcome of `floyd_read_async`: on FLOYD_OK the value
/// as `(value, value_len)`, valid only during the call (NULL and 0 otherwise);
/// `errmsg` as for `floyd_done_fn`. Runs on a library thread; must not block.
#[allow(non_camel_case_types)]
pub type floyd_read_done_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        code: c_int,
        value: *const c_char,
        value_len: usize,
        errmsg: *const c_char,
    ),
>;

/// The caller's `user_data`, carried to the thread that answers.
struct UserData(*mut c_void);
// SAFETY: the pointer is only handed back to the caller's own callback; the
// header tells callers that it runs on a library thread.
unsafe impl Send for UserData {}

/// A message for C: the error's text, NUL bytes (from a key, say) escaped.
fn message(e: &Error) -> CString {
    CString::new(e.to_string().replace('\0', "\\0")).unwrap_or_default()
}

/// The outcome as a code and message, for a callback.
fn answer(r: &Result<Bytes>) -> (c_int, Option<CString>) {
    match r {
        Ok(_) => (FLOYD_OK, None),
        Err(e) => (code_of(e), Some(message(e))),
    }
}

fn done_completion(done: floyd_done_fn, user_data: *mut c_void) -> Result<crate::runtime::execute::Done> {
    let done = done.ok_or_else(|| Error::InvalidArgument("done callback is NULL".into()))?;
    let ud = UserData(user_data);
    Ok(Box::new(move |r: Result<Bytes>| {
        let ud = ud;
        let (code, msg) = answer(&r);
        let text = msg.as_ref().map_or(std::ptr::null(), |m| m.as_ptr());
        // SAFETY: the caller's callback, with the caller's user_data.
        unsafe { done(ud.0, code, text) };
    }))
}

/// Runs the body of an async function: [`boundary`](super::boundary) without
/// an `errmsg` (a refusal is its code alone, and the callback is then never called).
fn async_boundary(body: impl FnOnce() -> Result<()>) -> c_int {
    super::boundary(std::ptr::null_mut(), body)
}

/// Stores `value` under `key` once a majority has it, without waiting: `done(user_data, code,
/// errmsg)` is called once with the outcome (the codes of `floyd_write`).
///
/// Thread-safety: any thread, concurrently with any call on `f` but `floyd_close`. Returns at once.
/// `done` runs exactly once, on a library thread (never on the calling thread before this returns),
/// at the latest shortly after the request timeout; it must not block and may call the API again.
/// Commands still unanswered at `floyd_close` are answered FLOYD_STOPPED before it returns; no
/// callback runs after that.
/// Ownership: `key` and `value` are borrowed and copied; `user_data` is passed back untouched.
/// Returns: FLOYD_OK (then `done` will be called); without calling `done`: FLOYD_INVALID_ARGUMENT
/// (NULL `f` or `done`, an empty key or one over 64 KiB, a value over 16 MiB, a NULL pointer with
/// a non-zero length, a node with a user-defined state machine), FLOYD_BUSY (max_async_in_flight
/// commands are unanswered), FLOYD_STOPPED, FLOYD_FAILED, FLOYD_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn floyd_write_async(
    f: *mut floyd_t,
    key: *const c_char,
    key_len: usize,
    value: *const c_char,
    value_len: usize,
    done: floyd_done_fn,
    user_data: *mut c_void,
) -> c_int {
    async_boundary(|| {
        let n = node(f)?;
        let (k, v) = (key_arg(key, key_len)?, bytes(value, value_len, "value")?);
        let done = done_completion(done, user_data)?;
        n.write_async(k, v, move |r| done(r.map(|_| Bytes::new())))
    })
}

/// Deletes `key` without waiting: `done(user_data, code, errmsg)` is called once with the outcome
/// (the codes of `floyd_delete`).
///
/// Thread-safety: as `floyd_write_async`.
/// Ownership: `key` is borrowed and copied; `user_data` is passed back untouched.
/// Returns: as `floyd_write_async`.
#[no_mangle]
pub unsafe extern "C" fn floyd_delete_async(
    f: *mut floyd_t,
    key: *const c_char,
    key_len: usize,
    done: floyd_done_fn,
    user_data: *mut c_void,
) -> c_int {
    async_boundary(|| {
        let n = node(f)?;
        let k = key_arg(key, key_len)?;
        let done = done_completion(done, user_data)?;
        n.delete_async(k, move |r| done(r.map(|_| Bytes::new())))
    })
}

/// Reads `key` (linearizable, as `floyd_read`) without waiting: `done(user_data, code, value,
/// value_len, errmsg)` is called once; on FLOYD_OK with the value, FLOYD_NOT_FOUND when the key
/// does not exist, otherwise the codes of `floyd_read`.
///
/// Thread-safety: as `floyd_write_async`.
/// Ownership: `key` is borrowed and copied; the value and message given to `done` are valid only
/// during the call (copy what you keep); `user_data` is passed back untouched.
/// Returns: as `floyd_write_async`.
#[no_mangle]
pub unsafe extern "C" fn floyd_read_async(
    f: *mut floyd_t,
    key: *const c_char,
    key_len: usize,
    done: floyd_read_done_fn,
    user_data: *mut c_void,
) -> c_int {
    async_boundary(|| {
        let n = node(f)?;
        let k = key_arg(key, key_len)?;
        let done = done.ok_or_else(|| Error::InvalidArgument("done callback is NULL".into()))?;
        let ud = UserData(user_data);
        n.read_async_bytes(
            k,
            Box::new(move |r: Result<Bytes>| {
                let ud = ud;
                let (code, msg) = answer(&r);
                let text = msg.as_ref().map_or(std::ptr::null(), |m| m.as_ptr());
                let (ptr, len) = match &r {
                    Ok(v) => (v.as_ptr().cast::<c_char>(), v.len()),
                    Err(_) => (std::ptr::null(), 0),
                };
                // SAFETY: the caller's callback, with the caller's user_data.
                unsafe { done(ud.0, code, ptr, len, text) };
            }),
        )
    })
}

/// How many async commands are unanswered on `f` (0 for a NULL handle).
///
/// Thread-safety: any thread, concurrently with any call on `f` but `floyd_close`.
/// Ownership: borrows `f`.
/// Returns: the count.
#[no_mangle]
pub unsafe extern "C" fn floyd_async_in_flight(f: *mut floyd_t) -> usize {
    super::boundary_value(0, || node(f).ok().map(|n| n.async_in_flight()))
}
