//! The C API (`include/floyd.h`, generated from this module by cbindgen).
//!
//! Every `extern "C"` body goes through `boundary`: NULL and argument checks
//! become `FLOYD_INVALID_ARGUMENT`, a panic becomes `FLOYD_INTERNAL`, and Rust
//! errors are mapped to status codes in [`code_of`], the one place that does it.
//! Memory handed to C is allocated with `malloc` and freed only by `floyd_free`.
//!
//! Safety, for every function here: pointer arguments are NULL or valid as
//! the header's conventions say (strings NUL-terminated, `(ptr, len)` buffers
//! readable for `len` bytes, output pointers writable, handles from this
//! library and not yet freed).
#![allow(clippy::missing_safety_doc)]

mod args;
mod async_calls;
mod coordination;
mod host;
mod leases;
mod node;
mod options;
mod state_machine;
mod watches;

pub use async_calls::*;
pub use coordination::*;
pub use host::*;
pub use leases::*;
pub use node::*;
pub use options::*;
pub use state_machine::*;
pub use watches::*;

use crate::error::Error;
use args::set_errmsg;
use std::ffi::{c_char, c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Done.
pub const FLOYD_OK: c_int = 0;
/// The key does not exist.
pub const FLOYD_NOT_FOUND: c_int = 1;
/// No leader is known right now (retry later).
pub const FLOYD_NO_LEADER: c_int = 2;
/// No answer in time: the command may or may not have been applied.
pub const FLOYD_TIMEOUT: c_int = 3;
/// The lock is held by another holder.
pub const FLOYD_LOCKED: c_int = 4;
/// Unlock by someone who does not hold the lock (or it expired).
pub const FLOYD_NOT_HOLDER: c_int = 5;
/// Bad input (NULL, empty key, bad address, value over the size limit, ...).
pub const FLOYD_INVALID_ARGUMENT: c_int = 6;
/// Storage or network failure on this node (disk full, permission, ...).
pub const FLOYD_IO_ERROR: c_int = 7;
/// On-disk data failed a check.
pub const FLOYD_CORRUPTION: c_int = 8;
/// The node is closing or closed.
pub const FLOYD_STOPPED: c_int = 9;
/// A membership change is already in progress, or the node is overloaded.
pub const FLOYD_BUSY: c_int = 10;
/// A bug: please report.
pub const FLOYD_INTERNAL: c_int = 11;
/// This node stopped after a fatal error (I/O, corruption or a bug, as the
/// message says) and takes no further part; close it and open it again.
pub const FLOYD_FAILED: c_int = 12;
/// `floyd_propose`: the user-defined state machine's `apply` refused the
/// command (its message says why); every replica refused it alike.
pub const FLOYD_STATE_MACHINE: c_int = 13;
/// A compare-and-swap or a transaction's condition did not hold: nothing
/// was written.
pub const FLOYD_CONFLICT: c_int = 14;
/// The revision asked for is older than the history kept.
pub const FLOYD_COMPACTED: c_int = 15;

/// Library version, major part.
pub const FLOYD_VERSION_MAJOR: c_int = 0;
/// Library version, minor part.
pub const FLOYD_VERSION_MINOR: c_int = 1;
/// Library version, patch part.
pub const FLOYD_VERSION_PATCH: c_int = 0;

/// Log level (for `floyd_set_log_level`, `floyd_options_set_log_level` and the
/// log callback): debugging detail, the lowest.
pub const FLOYD_LOG_DEBUG: c_int = 1;
/// Log level: normal events (elections, membership changes, start and close); the default.
pub const FLOYD_LOG_INFO: c_int = 2;
/// Log level: something unexpected that floyd handles (a refused message, a retry).
pub const FLOYD_LOG_WARN: c_int = 3;
/// Log level: a failure (a node failing is logged at this level).
pub const FLOYD_LOG_ERROR: c_int = 4;
/// Log level: fatal, kept from the original Floyd; floyd emits no line at it, so as
/// a filter it passes nothing.
pub const FLOYD_LOG_FATAL: c_int = 5;
/// Log level filter only: log nothing (never passed to the callback).
pub const FLOYD_LOG_NONE: c_int = 6;

/// The status code of an error: the one mapping from Rust errors to C codes.
pub fn code_of(e: &Error) -> c_int {
    match e {
        Error::NotFound => FLOYD_NOT_FOUND,
        Error::NoLeader(_) => FLOYD_NO_LEADER,
        Error::Timeout(_) => FLOYD_TIMEOUT,
        Error::InvalidArgument(_) => FLOYD_INVALID_ARGUMENT,
        Error::Io(_) => FLOYD_IO_ERROR,
        Error::Corruption(_) => FLOYD_CORRUPTION,
        Error::Stopped(_) => FLOYD_STOPPED,
        Error::Busy(_) => FLOYD_BUSY,
        Error::Locked(_) => FLOYD_LOCKED,
        Error::NotHolder(_) => FLOYD_NOT_HOLDER,
        Error::Internal(_) => FLOYD_INTERNAL,
        Error::Failed(_) => FLOYD_FAILED,
        Error::StateMachine(_) => FLOYD_STATE_MACHINE,
        Error::Conflict(_) => FLOYD_CONFLICT,
        Error::Compacted(_) => FLOYD_COMPACTED,
        // (The library turns it into a retry or a `Timeout` before a caller
        // sees it; if one ever did, its outcome is as unknown as a timeout's.)
        Error::SessionExpired(_) => FLOYD_TIMEOUT,
    }
}

/// Runs the body of an `extern "C"` function: maps its error to a code and
/// `errmsg`, and turns a panic into `FLOYD_INTERNAL` instead of unwinding into C.
fn boundary(errmsg: *mut *mut c_char, body: impl FnOnce() -> Result<(), Error>) -> c_int {
    let outcome = catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|panic| {
        Err(Error::Internal(format!(
            "panic: {}",
            crate::transport::panic_message(&*panic)
        )))
    });
    match outcome {
        Ok(()) => FLOYD_OK,
        Err(e) => {
            // SAFETY: errmsg is NULL or points to a writable char* (the API contract).
            unsafe { set_errmsg(errmsg, &e.to_string()) };
            code_of(&e)
        }
    }
}

/// Like [`boundary`] for functions that return a value instead of a code:
/// `fallback` on error or panic.
fn boundary_value<T>(fallback: T, body: impl FnOnce() -> Option<T>) -> T {
    catch_unwind(AssertUnwindSafe(body))
        .ok()
        .flatten()
        .unwrap_or(fallback)
}

/// Frees memory returned by the library (values, `errmsg` messages, status text, addresses).
///
/// Thread-safety: any thread; `p` must not be in use by another thread.
/// Ownership: takes `p`, which must be NULL or memory this library returned and not yet freed;
/// never a handle (use `floyd_close` / `floyd_options_free`). NULL-safe.
/// Returns: nothing.
#[no_mangle]
pub unsafe extern "C" fn floyd_free(p: *mut c_void) {
    if !p.is_null() {
        libc::free(p);
    }
}

/// A static, NUL-terminated name for a status code ("OK", "NOT_FOUND", ...).
///
/// Thread-safety: any thread.
/// Ownership: the result is static; never free it.
/// Returns: the name, or "UNKNOWN" for a number that is no FLOYD_* code; never NULL.
#[no_mangle]
pub extern "C" fn floyd_status_str(code: c_int) -> *const c_char {
    let name: &'static [u8] = match code {
        FLOYD_OK => b"OK\0",
        FLOYD_NOT_FOUND => b"NOT_FOUND\0",
        FLOYD_NO_LEADER => b"NO_LEADER\0",
        FLOYD_TIMEOUT => b"TIMEOUT\0",
        FLOYD_LOCKED => b"LOCKED\0",
        FLOYD_NOT_HOLDER => b"NOT_HOLDER\0",
        FLOYD_INVALID_ARGUMENT => b"INVALID_ARGUMENT\0",
        FLOYD_IO_ERROR => b"IO_ERROR\0",
        FLOYD_CORRUPTION => b"CORRUPTION\0",
        FLOYD_STOPPED => b"STOPPED\0",
        FLOYD_BUSY => b"BUSY\0",
        FLOYD_INTERNAL => b"INTERNAL\0",
        FLOYD_FAILED => b"FAILED\0",
        FLOYD_STATE_MACHINE => b"STATE_MACHINE\0",
        FLOYD_CONFLICT => b"CONFLICT\0",
        FLOYD_COMPACTED => b"COMPACTED\0",
        _ => b"UNKNOWN\0",
    };
    name.as_ptr().cast()
}

/// The library version as a static string, e.g. "0.1.0" (the FLOYD_VERSION_* of the build).
///
/// Thread-safety: any thread.
/// Ownership: the result is static; never free it.
/// Returns: the version, never NULL.
#[no_mangle]
pub extern "C" fn floyd_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests;
