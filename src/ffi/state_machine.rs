//! User-defined state machines from C: `floyd_state_machine_t`,
//! `floyd_open_with_state_machine` and `floyd_propose`.

use super::args::{alloc_bytes, bytes, out as out_arg};
use super::boundary;
use super::node::{floyd_t, node, open_node};
use super::options::floyd_options_t;
use crate::error::Error;
use crate::state_machine::StateMachine;
use std::ffi::{c_char, c_int, c_void, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A user-defined state machine: its callbacks and their `user_data`.
/// `floyd_open_with_state_machine` copies the struct; floyd then owns
/// `user_data` until it calls `destroy`.
///
/// Every callback runs on the node's apply thread, one at a time, never two
/// at once, with two exceptions: at open, `snapshot_load` of the latest
/// snapshot runs on the thread calling `floyd_open_with_state_machine`,
/// before the apply thread starts; `destroy`, and an `on_leader_stop` at
/// close, run on the thread that calls `floyd_close`, after the apply
/// thread has stopped. A callback
/// must not call into the same `floyd_t` (that deadlocks) and should not
/// block for long: nothing is applied, and no proposer answered, while it
/// runs. Every replica applies the same commands in the same order, so
/// `apply` must be deterministic. floyd keeps no state of the machine on
/// disk: at every open it calls `snapshot_load` with the latest snapshot, if
/// there is one, then `apply` for every log entry after it, so the machine
/// must start empty.
#[repr(C)]
#[derive(Clone, Copy)]
#[allow(non_camel_case_types)]
pub struct floyd_state_machine_t {
    /// Passed to every callback; floyd never looks at it.
    pub user_data: *mut c_void,
    /// Required. Applies the committed command `data` (`len` bytes, as given to `floyd_propose`,
    /// followed by a NUL not counted in `len`; valid only during the call) at log `index`.
    /// Returns 0 when applied, with the answer for the proposer in `*result`/`*result_len` (may be
    /// left NULL/0 for an empty answer); nonzero when refused, with an error message in `*result`
    /// (`*result_len` bytes, or NUL-terminated when `*result_len` is 0; may be left NULL), which
    /// the proposer receives as FLOYD_STATE_MACHINE. `*result` must be allocated with `malloc`;
    /// floyd frees it with `free`. A refusal should leave the state as it was.
    pub apply: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            index: u64,
            data: *const c_char,
            len: usize,
            result: *mut *mut c_char,
            result_len: *mut usize,
        ) -> c_int,
    >,
    /// Required. Writes the whole state as files into the directory `dir` (NUL-terminated; it
    /// exists and is empty; valid only during the call); floyd syncs and ships them. Returns 0,
    /// or nonzero on failure.
    pub snapshot_save: Option<unsafe extern "C" fn(user_data: *mut c_void, dir: *const c_char) -> c_int>,
    /// Required. Replaces the whole state with the one `snapshot_save` wrote into `dir` (read
    /// it only: it belongs to floyd). Returns 0, or nonzero on failure (leaving the state as it
    /// was).
    pub snapshot_load: Option<unsafe extern "C" fn(user_data: *mut c_void, dir: *const c_char) -> c_int>,
    /// May be NULL. This node became the leader in `term`.
    pub on_leader_start: Option<unsafe extern "C" fn(user_data: *mut c_void, term: u64)>,
    /// May be NULL. This node is no longer the leader (also called at close if it was).
    pub on_leader_stop: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
    /// May be NULL. Called exactly once, last: by `floyd_close`, or before
    /// `floyd_open_with_state_machine` returns if it fails.
    pub destroy: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
}

/// The C callbacks as a [`StateMachine`]. Dropping it finalizes it.
pub(super) struct CMachine(floyd_state_machine_t);

// SAFETY: the API contract lets the callbacks and `user_data` be used from
// the library's threads (one call at a time, which `UserMachine` ensures).
unsafe impl Send for CMachine {}

impl CMachine {
    fn dir_call(
        &mut self,
        what: &str,
        cb: Option<unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int>,
        dir: &Path,
    ) -> Result<(), String> {
        let cb = cb.ok_or_else(|| format!("{what} is NULL"))?;
        let dir =
            CString::new(dir.as_os_str().as_bytes()).map_err(|_| "a NUL in the directory".to_string())?;
        // SAFETY: `cb` is the caller's callback, called as the contract says.
        match unsafe { cb(self.0.user_data, dir.as_ptr()) } {
            0 => Ok(()),
            rc => Err(format!("{what} returned {rc}")),
        }
    }
}

impl StateMachine for CMachine {
    fn apply(&mut self, index: u64, data: &[u8]) -> Result<Vec<u8>, String> {
        let apply = self.0.apply.ok_or("apply is NULL")?;
        // A NUL after the command, so text commands can be parsed in place.
        let mut command = Vec::with_capacity(data.len() + 1);
        command.extend_from_slice(data);
        command.push(0);
        let (mut result, mut result_len): (*mut c_char, usize) = (std::ptr::null_mut(), 0);
        // SAFETY: `apply` is the caller's callback; every pointer is valid for the call.
        let rc = unsafe {
            apply(
                self.0.user_data,
                index,
                command.as_ptr().cast(),
                data.len(),
                &mut result,
                &mut result_len,
            )
        };
        // SAFETY: the callback allocated `result` with malloc, `result_len` bytes long.
        let answer = unsafe { take_malloced(result, result_len, rc != 0) };
        match rc {
            0 => Ok(answer),
            _ if answer.is_empty() => Err(format!("apply returned {rc}")),
            _ => Err(String::from_utf8_lossy(&answer).into_owned()),
        }
    }

    fn snapshot_save(&mut self, dir: &Path) -> Result<(), String> {
        self.dir_call("snapshot_save", self.0.snapshot_save, dir)
    }

    fn snapshot_load(&mut self, dir: &Path) -> Result<(), String> {
        self.dir_call("snapshot_load", self.0.snapshot_load, dir)
    }

    fn on_leader_start(&mut self, term: u64) {
        if let Some(cb) = self.0.on_leader_start {
            // SAFETY: the caller's callback, called as the contract says.
            unsafe { cb(self.0.user_data, term) };
        }
    }

    fn on_leader_stop(&mut self) {
        if let Some(cb) = self.0.on_leader_stop {
            // SAFETY: the caller's callback, called as the contract says.
            unsafe { cb(self.0.user_data) };
        }
    }
}

impl Drop for CMachine {
    fn drop(&mut self) {
        if let Some(destroy) = self.0.destroy {
            // SAFETY: the caller's callback; called once, as this runs once.
            unsafe { destroy(self.0.user_data) };
        }
    }
}

/// Copies a buffer a callback allocated with `malloc`, then frees it. An error
/// message may come NUL-terminated without a length (`nul_terminated_ok`).
///
/// # Safety
/// `p` must be NULL or a `malloc`ed buffer of at least `len` bytes (NUL-terminated if `len` is 0
/// and `nul_terminated_ok`).
unsafe fn take_malloced(p: *mut c_char, len: usize, nul_terminated_ok: bool) -> Vec<u8> {
    if p.is_null() {
        return Vec::new();
    }
    let out = match len {
        0 if nul_terminated_ok => std::ffi::CStr::from_ptr(p).to_bytes().to_vec(),
        _ => std::slice::from_raw_parts(p.cast::<u8>(), len).to_vec(),
    };
    libc::free(p.cast());
    out
}

/// Opens a node that replicates the user-defined state machine `sm` instead of the key-value
/// store; on `FLOYD_OK`, `*out` is the new handle. The key-value and lock calls on it return
/// FLOYD_INVALID_ARGUMENT; `floyd_propose` drives the machine. Every member must run the same
/// kind of machine.
///
/// Thread-safety: any thread; blocks like `floyd_open`. The callbacks run on library threads (see
/// `floyd_state_machine_t`).
/// Ownership: `opts` is borrowed and copied; `*sm` is copied (the struct may be freed at once)
/// and floyd owns `sm->user_data` from now on: if `sm` is not NULL, `sm->destroy` (when set) is
/// called exactly once, by `floyd_close`, or before this returns when it fails. On FLOYD_OK the
/// caller owns `*out` and ends it with `floyd_close`; `errmsg` may be NULL, else on failure
/// `*errmsg` gets a message to free with `floyd_free`.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT (NULL `opts`, `sm` or `out`, a NULL `apply`,
/// `snapshot_save` or `snapshot_load`, an unusable option); FLOYD_IO_ERROR; FLOYD_CORRUPTION;
/// FLOYD_INTERNAL, as for `floyd_open`.
#[no_mangle]
pub unsafe extern "C" fn floyd_open_with_state_machine(
    opts: *const floyd_options_t,
    sm: *const floyd_state_machine_t,
    out: *mut *mut floyd_t,
    errmsg: *mut *mut c_char,
) -> c_int {
    // Taken before any check: from here on, dropping it is what finalizes
    // the machine, so every way out (a panic too) does it exactly once.
    let machine = take_machine(sm);
    boundary(errmsg, move || {
        open_node(opts, out, Some(checked_machine(machine)?))
    })
}

/// Takes the C machine: from then on, dropping it finalizes it (call before any check).
pub(super) unsafe fn take_machine(sm: *const floyd_state_machine_t) -> Option<Box<CMachine>> {
    sm.as_ref().map(|sm| Box::new(CMachine(*sm)))
}

/// Refuses a missing machine (NULL) and one without its three required callbacks.
pub(super) fn checked_machine(machine: Option<Box<CMachine>>) -> Result<Box<dyn StateMachine>, Error> {
    let machine = machine.ok_or_else(|| Error::InvalidArgument("state machine is NULL".into()))?;
    let callbacks = &machine.0;
    for (set, name) in [
        (callbacks.apply.is_some(), "apply"),
        (callbacks.snapshot_save.is_some(), "snapshot_save"),
        (callbacks.snapshot_load.is_some(), "snapshot_load"),
    ] {
        if !set {
            return Err(Error::InvalidArgument(format!(
                "the state machine's {name} is NULL"
            )));
        }
    }
    Ok(machine)
}

/// Has the cluster's user-defined state machine apply `data` once a majority has it, and hands
/// back what its `apply` answered on the leader (a follower forwards it). Linearizable.
///
/// Thread-safety: any thread, concurrently with any call on `f` but `floyd_close`; blocks until it
/// is applied, at most the request timeout. Never call it from a state-machine callback.
/// Ownership: `data` is borrowed and copied (may be NULL when `len` is 0); `result` and
/// `result_len` must not be NULL; on FLOYD_OK only, the caller owns `*result` (NUL-terminated,
/// `*result_len` bytes before the NUL) and frees it with `floyd_free`; `errmsg` may be NULL, else
/// on failure `*errmsg` gets a message to free with `floyd_free` (for FLOYD_STATE_MACHINE, it
/// ends with the message `apply` gave).
/// Returns: FLOYD_OK; FLOYD_STATE_MACHINE (`apply` refused it; the node goes on);
/// FLOYD_INVALID_ARGUMENT (NULL `f`, `result` or `result_len`, a NULL `data` with a non-zero `len`,
/// over 16 MiB, a node running the key-value store); FLOYD_IO_ERROR (out of memory for the
/// result); not applied: FLOYD_NO_LEADER, FLOYD_BUSY (the queue to the leader is full); outcome
/// unknown: FLOYD_TIMEOUT, FLOYD_STOPPED (the leader closed); FLOYD_FAILED; FLOYD_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn floyd_propose(
    f: *mut floyd_t,
    data: *const c_char,
    len: usize,
    result: *mut *mut c_char,
    result_len: *mut usize,
    errmsg: *mut *mut c_char,
) -> c_int {
    boundary(errmsg, || {
        let n = node(f)?;
        let command = bytes(data, len, "data")?;
        let (slot, len_slot) = (out_arg(result, "result")?, out_arg(result_len, "result_len")?);
        let answer = n.propose(command)?;
        *slot = alloc_bytes(&answer)?;
        *len_slot = answer.len();
        Ok(())
    })
}

#[cfg(test)]
#[path = "state_machine_tests.rs"]
mod tests;
