//! `floyd_options_t`: how to open a node.

use super::args::text;
use super::{boundary, FLOYD_INVALID_ARGUMENT};
use crate::logging::{LogCallback, LogLevel};
use crate::options::Options;
use std::ffi::{c_char, c_int, c_void};
use std::sync::Arc;

/// Options for `floyd_open` (opaque). Not thread-safe: fill it on one thread.
/// Created by `floyd_options_new`, freed by `floyd_options_free`; the setters
/// store values, which `floyd_open` checks.
#[allow(non_camel_case_types)]
pub struct floyd_options_t {
    pub(super) opts: Options,
    /// Why the arguments of `floyd_options_new` were unusable; reported by `floyd_open`.
    pub(super) invalid: Option<String>,
    /// `floyd_options_set_cluster_id` was called: a group's options may not
    /// name a cluster other than its host's.
    pub(super) cluster_id_set: bool,
}

/// A log callback: `level` is FLOYD_LOG_DEBUG..FLOYD_LOG_FATAL, `msg` is one NUL-terminated
/// line `msg_len` bytes long, owned by the library and valid only during the call.
/// Called on library threads, possibly several at once.
#[allow(non_camel_case_types)]
pub type floyd_log_callback_t =
    Option<unsafe extern "C" fn(user_data: *mut c_void, level: c_int, msg: *const c_char, msg_len: usize)>;

/// The C callback and its user data, called from library threads.
struct CLogCallback {
    cb: unsafe extern "C" fn(*mut c_void, c_int, *const c_char, usize),
    user_data: *mut c_void,
}

impl CLogCallback {
    fn call(&self, level: LogLevel, msg: &str) {
        let mut line = Vec::with_capacity(msg.len() + 1);
        line.extend_from_slice(msg.as_bytes());
        line.push(0);
        // SAFETY: the caller promised `cb` is callable with its user data from any thread.
        unsafe { (self.cb)(self.user_data, level as c_int, line.as_ptr().cast(), msg.len()) };
    }
}

// SAFETY: the API contract makes the callback and its user data usable from any thread.
unsafe impl Send for CLogCallback {}
unsafe impl Sync for CLogCallback {}

/// New options: `members` is `"ip:port,ip:port,..."`, `local_ip`/`local_port` this
/// node's address, `path` the data directory (NULL for a group opened on a host, which
/// ignores it: `floyd_open` then refuses the empty path); everything else at its default.
///
/// Thread-safety: any thread; the result is not thread-safe (see `floyd_options_t`).
/// Ownership: the strings are borrowed and copied; the caller owns the result and frees it with
/// `floyd_options_free` (at any time after `floyd_open`).
/// Returns: the new options; NULL only on an internal error (a caught panic). Unusable arguments
/// (NULL, not UTF-8, a port outside 1..65535) are reported by `floyd_open` as
/// FLOYD_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn floyd_options_new(
    members: *const c_char,
    local_ip: *const c_char,
    local_port: c_int,
    path: *const c_char,
) -> *mut floyd_options_t {
    let built = std::panic::catch_unwind(|| {
        let args = (|| {
            let members = text(members, "members").map_err(|e| e.to_string())?;
            let ip = text(local_ip, "local_ip").map_err(|e| e.to_string())?;
            // NULL for a group opened on a host, which ignores it.
            let path = match path.is_null() {
                true => "",
                false => text(path, "path").map_err(|e| e.to_string())?,
            };
            let port =
                u16::try_from(local_port).map_err(|_| format!("local_port {local_port} is out of range"))?;
            Ok::<_, String>(Options::new(members, ip, port, path))
        })();
        let (opts, invalid) = match args {
            Ok(o) => (o, None),
            Err(why) => (Options::new("", "", 0, ""), Some(why)),
        };
        Box::into_raw(Box::new(floyd_options_t {
            opts,
            invalid,
            cluster_id_set: false,
        }))
    });
    built.unwrap_or(std::ptr::null_mut())
}

/// Frees options.
///
/// Thread-safety: no other call may use `opts` at the same time; nodes opened from it are
/// unaffected.
/// Ownership: takes `opts` (from `floyd_options_new`, not yet freed). NULL-safe.
/// Returns: nothing.
#[no_mangle]
pub unsafe extern "C" fn floyd_options_free(opts: *mut floyd_options_t) {
    if !opts.is_null() {
        drop(Box::from_raw(opts));
    }
}

/// Applies `set` to the options behind `opts`.
unsafe fn with_options(opts: *mut floyd_options_t, set: impl FnOnce(&mut Options)) -> c_int {
    match opts.as_mut() {
        Some(o) => boundary(std::ptr::null_mut(), || {
            set(&mut o.opts);
            Ok(())
        }),
        None => FLOYD_INVALID_ARGUMENT,
    }
}

/// Election timeout base in microseconds (default 1 s; random in [1x, 2x)); at most
/// one hour and at least twice the heartbeat, else `floyd_open` fails with FLOYD_INVALID_ARGUMENT.
///
/// Thread-safety: no other call may use `opts` at the same time (fill it on one thread).
/// Ownership: `opts` is borrowed; nothing is allocated.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT for a NULL `opts`.
#[no_mangle]
pub unsafe extern "C" fn floyd_options_set_check_leader_us(opts: *mut floyd_options_t, us: u64) -> c_int {
    with_options(opts, |o| o.check_leader_us = us)
}

/// Leader heartbeat interval in microseconds (default 100 ms; 1 ms to one hour, checked by
/// `floyd_open`).
///
/// Thread-safety: no other call may use `opts` at the same time (fill it on one thread).
/// Ownership: `opts` is borrowed; nothing is allocated.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT for a NULL `opts`.
#[no_mangle]
pub unsafe extern "C" fn floyd_options_set_heartbeat_us(opts: *mut floyd_options_t, us: u64) -> c_int {
    with_options(opts, |o| o.heartbeat_us = us)
}

/// Payload bytes per AppendEntries (default 4 MiB; 1 byte to 32 MiB, half the frame limit,
/// checked by `floyd_open`).
///
/// Thread-safety: no other call may use `opts` at the same time (fill it on one thread).
/// Ownership: `opts` is borrowed; nothing is allocated.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT for a NULL `opts`.
#[no_mangle]
pub unsafe extern "C" fn floyd_options_set_append_entries_size_once(
    opts: *mut floyd_options_t,
    bytes: u64,
) -> c_int {
    with_options(opts, |o| o.append_entries_size_once = bytes)
}

/// Entries per AppendEntries (default 4096; 0 is rejected by `floyd_open`).
///
/// Thread-safety: no other call may use `opts` at the same time (fill it on one thread).
/// Ownership: `opts` is borrowed; nothing is allocated.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT for a NULL `opts`.
#[no_mangle]
pub unsafe extern "C" fn floyd_options_set_append_entries_count_once(
    opts: *mut floyd_options_t,
    count: u64,
) -> c_int {
    with_options(opts, |o| o.append_entries_count_once = count)
}

/// Snapshot once the log holds this many entries past the last snapshot
/// (default 50,000; 0: never by count).
///
/// Thread-safety: no other call may use `opts` at the same time (fill it on one thread).
/// Ownership: `opts` is borrowed; nothing is allocated.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT for a NULL `opts`.
#[no_mangle]
pub unsafe extern "C" fn floyd_options_set_snapshot_log_entries(
    opts: *mut floyd_options_t,
    entries: u64,
) -> c_int {
    with_options(opts, |o| o.snapshot_log_entries = entries)
}

/// ... or once the entries held in memory exceed this many payload bytes
/// (default 32 MiB; 0: never by size; with both 0 the log is never compacted).
///
/// Thread-safety: no other call may use `opts` at the same time (fill it on one thread).
/// Ownership: `opts` is borrowed; nothing is allocated.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT for a NULL `opts`.
#[no_mangle]
pub unsafe extern "C" fn floyd_options_set_snapshot_log_bytes(
    opts: *mut floyd_options_t,
    bytes: u64,
) -> c_int {
    with_options(opts, |o| o.snapshot_log_bytes = bytes)
}

/// Entries kept in the log behind a snapshot, so a follower a little behind
/// catches up from the log rather than by snapshot (default 5,000).
///
/// Thread-safety: no other call may use `opts` at the same time (fill it on one thread).
/// Ownership: `opts` is borrowed; nothing is allocated.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT for a NULL `opts`.
#[no_mangle]
pub unsafe extern "C" fn floyd_options_set_snapshot_keep_entries(
    opts: *mut floyd_options_t,
    entries: u64,
) -> c_int {
    with_options(opts, |o| o.snapshot_keep_entries = entries)
}

/// Revisions of changes the built-in store keeps for watches (default 10,000; 0: none, and a
/// watch can only start from now). A `floyd_watch` from an older revision answers
/// FLOYD_COMPACTED.
///
/// Thread-safety: no other call may use `opts` at the same time (fill it on one thread).
/// Ownership: `opts` is borrowed; nothing is allocated.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT for a NULL `opts`.
#[no_mangle]
pub unsafe extern "C" fn floyd_options_set_history_revisions(opts: *mut floyd_options_t, n: u64) -> c_int {
    with_options(opts, |o| o.history_revisions = n)
}

/// How long the handle's client session lives without a write, in the log's time (default an
/// hour; 1 s to 30 days, checked by `floyd_open`). The session makes the library's own retries of
/// a write apply once; a handle idle for half of it opens a new one before its next write.
///
/// Thread-safety: no other call may use `opts` at the same time (fill it on one thread).
/// Ownership: `opts` is borrowed; nothing is allocated.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT for a NULL `opts`.
#[no_mangle]
pub unsafe extern "C" fn floyd_options_set_session_timeout_ms(opts: *mut floyd_options_t, ms: u64) -> c_int {
    with_options(opts, |o| o.session_timeout = std::time::Duration::from_millis(ms))
}

/// Bytes per InstallSnapshot chunk (default 1 MiB; 1 byte to 8 MiB, checked by `floyd_open`).
///
/// Thread-safety: no other call may use `opts` at the same time (fill it on one thread).
/// Ownership: `opts` is borrowed; nothing is allocated.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT for a NULL `opts`.
#[no_mangle]
pub unsafe extern "C" fn floyd_options_set_snapshot_chunk_bytes(
    opts: *mut floyd_options_t,
    bytes: u64,
) -> c_int {
    with_options(opts, |o| o.snapshot_chunk_bytes = bytes)
}

/// Snapshot streaming rate per follower in bytes/s (default 64 MiB/s; 0 = unlimited).
///
/// Thread-safety: no other call may use `opts` at the same time (fill it on one thread).
/// Ownership: `opts` is borrowed; nothing is allocated.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT for a NULL `opts`.
#[no_mangle]
pub unsafe extern "C" fn floyd_options_set_snapshot_bytes_per_sec(
    opts: *mut floyd_options_t,
    bytes_per_sec: u64,
) -> c_int {
    with_options(opts, |o| o.snapshot_bytes_per_sec = bytes_per_sec)
}

/// One-member cluster that leads itself (default off; forced on when `members` holds only
/// this node).
///
/// Thread-safety: no other call may use `opts` at the same time (fill it on one thread).
/// Ownership: `opts` is borrowed; nothing is allocated.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT for a NULL `opts`.
#[no_mangle]
pub unsafe extern "C" fn floyd_options_set_single_mode(opts: *mut floyd_options_t, on: bool) -> c_int {
    with_options(opts, |o| o.single_mode = on)
}

/// Start with no configuration and wait, without campaigning, to be added by the
/// cluster's leader (`floyd_add_server` on any member); `members` then need not
/// name this node. Default off; excludes single_mode (checked by `floyd_open`).
///
/// Thread-safety: no other call may use `opts` at the same time (fill it on one thread).
/// Ownership: `opts` is borrowed; nothing is allocated.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT for a NULL `opts`.
#[no_mangle]
pub unsafe extern "C" fn floyd_options_set_join(opts: *mut floyd_options_t, on: bool) -> c_int {
    with_options(opts, |o| o.join = on)
}

/// Lease reads (default off): a leader whose lease holds serves `floyd_read` without a
/// confirmation round. Safe only if every member runs the same `check_leader_us` and
/// clocks advance within 10% of each other; see `Options::lease_reads`.
///
/// Thread-safety: no other call may use `opts` at the same time (fill it on one thread).
/// Ownership: `opts` is borrowed; nothing is allocated.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT for a NULL `opts`.
#[no_mangle]
pub unsafe extern "C" fn floyd_options_set_lease_reads(opts: *mut floyd_options_t, on: bool) -> c_int {
    with_options(opts, |o| o.lease_reads = on)
}

/// Quiet groups (issue 23): with `on`, a group idle for an election timeout stops ticking
/// and heartbeating on every member until something happens, and its followers watch the
/// leader's host link instead of its heartbeats. Without this call: on for a group of a
/// host (`floyd_host_open_group`), off for a node opened on its own (`floyd_open`). A
/// group goes quiet only while every member runs a version that knows quiet groups.
///
/// Thread-safety: no other call may use `opts` at the same time (fill it on one thread).
/// Ownership: `opts` is borrowed; nothing is allocated.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT for a NULL `opts`.
#[no_mangle]
pub unsafe extern "C" fn floyd_options_set_quiesce(opts: *mut floyd_options_t, on: bool) -> c_int {
    with_options(opts, |o| o.quiesce = Some(on))
}

/// Admission control for the async calls: at most `count` unanswered at once on a node
/// (default 100,000); past it `floyd_write_async` and the like return FLOYD_BUSY. 0 is refused
/// by `floyd_open`.
///
/// Thread-safety: no other call may use `opts` at the same time (fill it on one thread).
/// Ownership: `opts` is borrowed; nothing is allocated.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT for a NULL `opts`.
#[no_mangle]
pub unsafe extern "C" fn floyd_options_set_max_async_in_flight(
    opts: *mut floyd_options_t,
    count: u64,
) -> c_int {
    with_options(opts, |o| {
        o.max_async_in_flight = usize::try_from(count).unwrap_or(usize::MAX)
    })
}

/// Routes log lines (at or above the node's level) to `cb`, called on the node's
/// threads and inside `floyd_open`; `cb` must be quick and must not call this node's API.
/// NULL `cb` removes it.
///
/// Thread-safety: no other call may use `opts` at the same time; `cb` itself must be callable from
/// any thread, several at once.
/// Ownership: `user_data` is passed to `cb` untouched and never freed; it must stay valid during
/// every `floyd_open` of `opts` and until each node opened from it is closed.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT for a NULL `opts`.
#[no_mangle]
pub unsafe extern "C" fn floyd_options_set_log_callback(
    opts: *mut floyd_options_t,
    cb: floyd_log_callback_t,
    user_data: *mut c_void,
) -> c_int {
    let callback = log_callback(cb, user_data);
    with_options(opts, |o| o.log_callback = callback)
}

/// A C log callback as floyd's (None: no callback).
pub(super) fn log_callback(cb: floyd_log_callback_t, user_data: *mut c_void) -> Option<LogCallback> {
    cb.map(|cb| {
        let c = CLogCallback { cb, user_data };
        LogCallback(Arc::new(move |level: LogLevel, msg: &str| c.call(level, msg)))
    })
}

/// Lowest level logged to `<path>/LOG` and the callback (FLOYD_LOG_DEBUG..FLOYD_LOG_NONE;
/// default INFO); change it on a running node with `floyd_set_log_level`.
///
/// Thread-safety: no other call may use `opts` at the same time (fill it on one thread).
/// Ownership: `opts` is borrowed; nothing is allocated.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT for a NULL `opts`, or a level outside 1..6.
#[no_mangle]
pub unsafe extern "C" fn floyd_options_set_log_level(opts: *mut floyd_options_t, level: c_int) -> c_int {
    match LogLevel::from_number(level) {
        Some(level) => with_options(opts, |o| o.log_level = level),
        None => FLOYD_INVALID_ARGUMENT,
    }
}

/// How long consistent calls wait for their result, in milliseconds (default 5000;
/// 1 ms to 24 hours, checked by `floyd_open`); past it they fail with FLOYD_TIMEOUT
/// (outcome unknown).
///
/// Thread-safety: no other call may use `opts` at the same time (fill it on one thread).
/// Ownership: `opts` is borrowed; nothing is allocated.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT for a NULL `opts`.
#[no_mangle]
pub unsafe extern "C" fn floyd_options_set_request_timeout_ms(opts: *mut floyd_options_t, ms: u64) -> c_int {
    with_options(opts, |o| o.request_timeout = std::time::Duration::from_millis(ms))
}

/// How long calls wait for a leader to be known, in milliseconds (default 3000;
/// at most 24 hours, checked by `floyd_open`), before failing with FLOYD_NO_LEADER.
///
/// Thread-safety: no other call may use `opts` at the same time (fill it on one thread).
/// Ownership: `opts` is borrowed; nothing is allocated.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT for a NULL `opts`.
#[no_mangle]
pub unsafe extern "C" fn floyd_options_set_leader_wait_ms(opts: *mut floyd_options_t, ms: u64) -> c_int {
    with_options(opts, |o| o.leader_wait = std::time::Duration::from_millis(ms))
}

/// The cluster name checked in every connection handshake (default "floyd"; the empty
/// name is rejected by `floyd_open`).
///
/// Thread-safety: no other call may use `opts` at the same time (fill it on one thread).
/// Ownership: `opts` and `cluster_id` (a NUL-terminated string) are borrowed; `cluster_id` is
/// copied.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT for a NULL `opts`, or a NULL or non-UTF-8
/// `cluster_id`.
#[no_mangle]
pub unsafe extern "C" fn floyd_options_set_cluster_id(
    opts: *mut floyd_options_t,
    cluster_id: *const c_char,
) -> c_int {
    let id = match text(cluster_id, "cluster_id") {
        Ok(id) => id.to_string(),
        Err(_) => return FLOYD_INVALID_ARGUMENT,
    };
    if let Some(o) = opts.as_mut() {
        o.cluster_id_set = true;
    }
    with_options(opts, |o| o.cluster_id = id)
}

/// Size in bytes past which `<path>/LOG` is rotated to `LOG.1` (default 64 MiB; 0 is
/// rejected by `floyd_open` with FLOYD_INVALID_ARGUMENT).
///
/// Thread-safety: no other call may use `opts` at the same time (fill it on one thread).
/// Ownership: `opts` is borrowed; nothing is allocated.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT for a NULL `opts`.
#[no_mangle]
pub unsafe extern "C" fn floyd_options_set_log_max_bytes(opts: *mut floyd_options_t, bytes: u64) -> c_int {
    with_options(opts, |o| o.log_max_bytes = bytes)
}

/// Rotated LOG files kept, `LOG.1` (newest) to `LOG.<count>` (default 4, at most 1000,
/// checked by `floyd_open`); 0 keeps none.
///
/// Thread-safety: no other call may use `opts` at the same time (fill it on one thread).
/// Ownership: `opts` is borrowed; nothing is allocated.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT for a NULL `opts`.
#[no_mangle]
pub unsafe extern "C" fn floyd_options_set_log_keep_files(opts: *mut floyd_options_t, count: u32) -> c_int {
    with_options(opts, |o| o.log_keep_files = count)
}

/// The TLS files of a setter's three paths: all NULL is `Ok(None)` (off);
/// some NULL or empty, or not UTF-8, is `Err`.
pub(super) unsafe fn tls_files(
    ca: *const c_char,
    cert: *const c_char,
    key: *const c_char,
) -> Result<Option<crate::options::TlsFiles>, ()> {
    if [ca, cert, key].iter().all(|p| p.is_null()) {
        return Ok(None);
    }
    let path = |p: *const c_char, what: &str| match text(p, what) {
        Ok(t) if !t.is_empty() => Some(std::path::PathBuf::from(t)),
        _ => None,
    };
    match (path(ca, "ca"), path(cert, "cert"), path(key, "key")) {
        (Some(ca), Some(cert), Some(key)) => Ok(Some(crate::options::TlsFiles { ca, cert, key })),
        _ => Err(()),
    }
}

/// Mutual TLS between members (default off): with it, this member serves and dials only
/// peers whose certificate chains to the CA in `ca_pem_path` and speaks for the member they
/// are: it names the member's IP as an IP subjectAltName and its address as a URI
/// subjectAltName `floyd://ip:port` (a certificate naming only the IP is accepted only where
/// no other member shares that IP). Every member of the cluster needs it.
/// `cert_pem_path` holds this member's certificate (then any intermediates) and
/// `key_pem_path` its private key. The files are read by `floyd_open`, which fails with
/// FLOYD_INVALID_ARGUMENT and a message if one is unreadable, invalid, expired, not from the
/// CA, or does not speak for this member (`local_ip`, `local_port`) among `members`. All
/// three NULL turns TLS off again. Without TLS, peer traffic is unauthenticated and
/// unencrypted: keep it on a trusted network.
///
/// Thread-safety: no other call may use `opts` at the same time (fill it on one thread).
/// Ownership: `opts` and the paths (NUL-terminated) are borrowed; the paths are copied.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT for a NULL `opts`, some but not all paths NULL,
/// or a path that is empty or not UTF-8.
#[no_mangle]
pub unsafe extern "C" fn floyd_options_set_tls(
    opts: *mut floyd_options_t,
    ca_pem_path: *const c_char,
    cert_pem_path: *const c_char,
    key_pem_path: *const c_char,
) -> c_int {
    match tls_files(ca_pem_path, cert_pem_path, key_pem_path) {
        Ok(files) => with_options(opts, |o| o.tls = files),
        Err(()) => FLOYD_INVALID_ARGUMENT,
    }
}

/// What `floyd_open` checks of `opts`, without opening anything (the C API
/// fuzz target's end point).
pub(crate) unsafe fn check_options(opts: *const floyd_options_t) -> Result<(), crate::Error> {
    let o = opts
        .as_ref()
        .ok_or_else(|| crate::Error::InvalidArgument("options are NULL".into()))?;
    if let Some(why) = &o.invalid {
        return Err(crate::Error::InvalidArgument(why.clone()));
    }
    o.opts.clone().validate()
}
