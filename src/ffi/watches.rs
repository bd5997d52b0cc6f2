//! Watches (issue 22): a C callback told of every change to a range of keys,
//! on a `floyd_t` running the built-in store.

use super::args::{bytes, out as out_arg};
use super::node::{floyd_t, node};
use super::{boundary, code_of, FLOYD_OK};
use crate::error::Error;
use crate::state_machine::history::EventKind;
use crate::state_machine::watch::WatchUpdate;
use std::ffi::{c_char, c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A watch event: a key was written.
pub const FLOYD_EVENT_PUT: c_int = 0;
/// A watch event: a key was deleted (`value` is empty).
pub const FLOYD_EVENT_DELETE: c_int = 1;

/// One change, as a watch callback gets it. `key` and `value` are valid
/// during the call only; `mod_revision` is the change's revision (the
/// changes of one transaction share it).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct floyd_watch_event_t {
    pub r#type: c_int,
    pub key: *const c_char,
    pub key_len: usize,
    pub value: *const c_char,
    pub value_len: usize,
    pub mod_revision: u64,
}

/// A watch callback: `events` (`n` of them, in revision order) with code
/// FLOYD_OK; or, once, when the watch ends by itself, `n` = 0 and the code
/// that ended it (FLOYD_STOPPED at close, FLOYD_COMPACTED when a snapshot
/// replaced the node's state, FLOYD_BUSY when it fell too far behind).
#[allow(non_camel_case_types)]
pub type floyd_watch_fn = Option<
    unsafe extern "C" fn(user_data: *mut c_void, events: *const floyd_watch_event_t, n: usize, code: c_int),
>;

/// The caller's pointer, handed back on the watch thread.
struct UserData(*mut c_void);
// SAFETY: the API contract: user_data is usable from the library's watch thread.
unsafe impl Send for UserData {}

/// Calls `fn_` with every change to a key in `[start, end)` (end NULL or
/// `end_len` 0: every key from `start` on; a prefix watch ends at
/// `floyd_prefix_end(prefix)`) from revision `start_revision` on (0: from the
/// next change), in revision order, each once, as this node applies them (a
/// follower too; across leader changes). `*watch_id` gets its id for
/// `floyd_unwatch`. Changes before now come from the history this node keeps
/// (`floyd_options_set_history_revisions`); a watcher that saw revision r and
/// starts again from r + 1, after a restart too, misses and repeats nothing.
///
/// Thread-safety: any thread. `fn_` runs on the library's watch thread, one
/// call at a time per watch; keep it short (it delays other watches, never
/// writes). It may call `floyd_unwatch` on its own watch, not `floyd_close`.
/// Ownership: `start` and `end` are borrowed and copied; `user_data` is handed
/// to every call until the last (after `floyd_unwatch` returns, or after the
/// call with a non-OK code, it is no longer used); `errmsg` as usual.
/// Returns: FLOYD_OK; FLOYD_COMPACTED (`start_revision` is older than the
/// history kept); FLOYD_INVALID_ARGUMENT (NULL `f`, `fn_` or `watch_id`, a NULL
/// pointer with a non-zero length, a bound over 64 KiB + 1, a user-defined
/// state machine); FLOYD_STOPPED; FLOYD_FAILED; FLOYD_INTERNAL.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn floyd_watch(
    f: *mut floyd_t,
    start: *const c_char,
    start_len: usize,
    end: *const c_char,
    end_len: usize,
    start_revision: u64,
    fn_: floyd_watch_fn,
    user_data: *mut c_void,
    watch_id: *mut u64,
    errmsg: *mut *mut c_char,
) -> c_int {
    boundary(errmsg, || {
        let n = node(f)?;
        let start = bytes(start, start_len, "start")?;
        let end = if end.is_null() {
            &[][..]
        } else {
            bytes(end, end_len, "end")?
        };
        let call = fn_.ok_or_else(|| Error::InvalidArgument("the watch callback is NULL".into()))?;
        let slot = out_arg(watch_id, "watch_id")?;
        let user = UserData(user_data);
        let id = n.watch(start, end, start_revision, move |update| {
            let user = &user;
            // A panic here would end the host's watch thread: none escapes.
            let _ = catch_unwind(AssertUnwindSafe(|| deliver(call, user.0, update)));
        })?;
        *slot = id;
        Ok(())
    })
}

/// Hands `update` to the C callback.
fn deliver(
    call: unsafe extern "C" fn(*mut c_void, *const floyd_watch_event_t, usize, c_int),
    user_data: *mut c_void,
    update: WatchUpdate<'_>,
) {
    match update {
        WatchUpdate::Events(events) => {
            let c_events: Vec<floyd_watch_event_t> = events
                .iter()
                .map(|e| floyd_watch_event_t {
                    r#type: match e.kind {
                        EventKind::Put => FLOYD_EVENT_PUT,
                        EventKind::Delete => FLOYD_EVENT_DELETE,
                    },
                    key: e.key.as_ptr().cast(),
                    key_len: e.key.len(),
                    value: e.value.as_ptr().cast(),
                    value_len: e.value.len(),
                    mod_revision: e.mod_revision,
                })
                .collect();
            // SAFETY: the caller's function, with its own pointer and events
            // valid for the call.
            unsafe { call(user_data, c_events.as_ptr(), c_events.len(), FLOYD_OK) }
        }
        // SAFETY: as above, with no events.
        WatchUpdate::Ended(e) => unsafe { call(user_data, std::ptr::null(), 0, code_of(&e)) },
    }
}

/// Ends watch `watch_id`: once this returns its callback is not called again
/// (called from that callback: after the current call). No last call.
///
/// Thread-safety: any thread, the watch's own callback included; waits for a
/// call of that watch under way on another thread.
/// Ownership: nothing is allocated.
/// Returns: FLOYD_OK; FLOYD_NOT_FOUND (no such watch: it ended, or never was);
/// FLOYD_INVALID_ARGUMENT (NULL `f`, a user-defined state machine).
#[no_mangle]
pub unsafe extern "C" fn floyd_unwatch(f: *mut floyd_t, watch_id: u64) -> c_int {
    // (No message to hand back: the one boundary, with none asked for.)
    boundary(std::ptr::null_mut(), || node(f)?.unwatch(watch_id))
}
