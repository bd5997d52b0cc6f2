//! `floyd_host_t`: a host of many Raft groups, and `floyd_host_options_t`.

use super::args::{alloc_bytes, out as out_arg, text};
use super::node::floyd_t;
use super::options::{floyd_log_callback_t, floyd_options_t, log_callback, tls_files};
use super::state_machine::{checked_machine, floyd_state_machine_t, take_machine};
use super::{boundary, FLOYD_INVALID_ARGUMENT};
use crate::error::Error;
use crate::options::HostOptions;
use crate::runtime::host::Host;
use crate::state_machine::StateMachine;
use std::ffi::{c_char, c_int, c_void};

/// Options for `floyd_host_open` (opaque). Not thread-safe: fill it on one thread.
/// Created by `floyd_host_options_new`, freed by `floyd_host_options_free`.
#[allow(non_camel_case_types)]
pub struct floyd_host_options_t {
    opts: HostOptions,
    /// Why the arguments of `floyd_host_options_new` were unusable; reported by `floyd_host_open`.
    invalid: Option<String>,
}

/// A host of Raft groups (opaque): one address, one directory, one LOG and one set of threads
/// for every group opened on it. Thread-safe, but `floyd_host_close` must not overlap other calls
/// on it. Created by `floyd_host_open`, closed and freed by `floyd_host_close`.
#[allow(non_camel_case_types)]
pub struct floyd_host_t {
    host: Host,
}

unsafe fn host<'a>(h: *const floyd_host_t) -> Result<&'a Host, Error> {
    h.as_ref()
        .map(|h| &h.host)
        .ok_or_else(|| Error::InvalidArgument("host handle is NULL".into()))
}

/// New host options: the host listens on `local_ip:local_port` (its address, which its groups
/// name as their member here) and keeps its data under `path`; everything else at its default.
///
/// Thread-safety: any thread; the result is not thread-safe.
/// Ownership: the strings are borrowed and copied; the caller owns the result and frees it with
/// `floyd_host_options_free`.
/// Returns: the new options; NULL only on an internal error. Unusable arguments are reported by
/// `floyd_host_open` as FLOYD_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn floyd_host_options_new(
    local_ip: *const c_char,
    local_port: c_int,
    path: *const c_char,
) -> *mut floyd_host_options_t {
    let built = std::panic::catch_unwind(|| {
        let args = (|| {
            let ip = text(local_ip, "local_ip").map_err(|e| e.to_string())?;
            let path = text(path, "path").map_err(|e| e.to_string())?;
            let port =
                u16::try_from(local_port).map_err(|_| format!("local_port {local_port} is out of range"))?;
            Ok::<_, String>(HostOptions::new(ip, port, path))
        })();
        let (opts, invalid) = match args {
            Ok(o) => (o, None),
            Err(why) => (HostOptions::new("", 0, ""), Some(why)),
        };
        Box::into_raw(Box::new(floyd_host_options_t { opts, invalid }))
    });
    built.unwrap_or(std::ptr::null_mut())
}

/// Frees host options.
///
/// Thread-safety: no other call may use `opts` at the same time.
/// Ownership: takes `opts`. NULL-safe.
/// Returns: nothing.
#[no_mangle]
pub unsafe extern "C" fn floyd_host_options_free(opts: *mut floyd_host_options_t) {
    if !opts.is_null() {
        let o = Box::from_raw(opts);
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(o)));
    }
}

unsafe fn with_host_options(opts: *mut floyd_host_options_t, set: impl FnOnce(&mut HostOptions)) -> c_int {
    match opts.as_mut() {
        Some(o) => boundary(std::ptr::null_mut(), || {
            set(&mut o.opts);
            Ok(())
        }),
        None => FLOYD_INVALID_ARGUMENT,
    }
}

/// Apply workers of the host: each applies one group at a time, in order (default 0: one per
/// core, at most 8).
///
/// Thread-safety: no other call may use `opts` at the same time.
/// Ownership: `opts` is borrowed.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT for a NULL `opts`.
#[no_mangle]
pub unsafe extern "C" fn floyd_host_options_set_workers(opts: *mut floyd_host_options_t, n: u32) -> c_int {
    with_host_options(opts, |o| o.workers = n)
}

/// Mutual TLS between hosts (see `floyd_options_set_tls`; a certificate names the host's
/// address). All three NULL turns it off.
///
/// Thread-safety: no other call may use `opts` at the same time.
/// Ownership: `opts` and the paths are borrowed; the paths are copied.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT for a NULL `opts`, or some paths NULL, empty or not
/// UTF-8.
#[no_mangle]
pub unsafe extern "C" fn floyd_host_options_set_tls(
    opts: *mut floyd_host_options_t,
    ca: *const c_char,
    cert: *const c_char,
    key: *const c_char,
) -> c_int {
    match tls_files(ca, cert, key) {
        Ok(files) => with_host_options(opts, |o| o.tls = files),
        Err(()) => FLOYD_INVALID_ARGUMENT,
    }
}

/// The cluster id every handshake names (default "floyd"): hosts of two clusters never talk.
///
/// Thread-safety: no other call may use `opts` at the same time.
/// Ownership: `opts` and `id` are borrowed; `id` is copied.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT for a NULL `opts` or `id`, or one not UTF-8.
#[no_mangle]
pub unsafe extern "C" fn floyd_host_options_set_cluster_id(
    opts: *mut floyd_host_options_t,
    id: *const c_char,
) -> c_int {
    let id = match text(id, "id") {
        Ok(id) => id.to_string(),
        Err(_) => return FLOYD_INVALID_ARGUMENT,
    };
    with_host_options(opts, |o| o.cluster_id = id)
}

/// Also sends every line of the host's LOG (all its groups') to `cb` (see
/// `floyd_options_set_log_callback`); NULL `cb` removes it.
///
/// Thread-safety: no other call may use `opts` at the same time; `cb` is called from library
/// threads, possibly several at once, with `user_data`.
/// Ownership: `opts` is borrowed; `user_data` must stay valid while the host is open.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT for a NULL `opts`.
#[no_mangle]
pub unsafe extern "C" fn floyd_host_options_set_log_callback(
    opts: *mut floyd_host_options_t,
    cb: floyd_log_callback_t,
    user_data: *mut c_void,
) -> c_int {
    let callback = log_callback(cb, user_data);
    with_host_options(opts, |o| o.log_callback = callback)
}

/// Opens a host: its directory, stores, port and threads; no group runs until
/// `floyd_host_open_group`. On `FLOYD_OK`, `*out` is the new handle.
///
/// Thread-safety: any thread; `opts` must not be modified during the call.
/// Ownership: `opts` is borrowed and copied; on FLOYD_OK the caller owns `*out` and ends it with
/// `floyd_host_close`; `errmsg` may be NULL, else on failure `*errmsg` gets a message to free
/// with `floyd_free`.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT (NULL `opts` or `out`, an unusable option);
/// FLOYD_IO_ERROR (the directory, a database or the port cannot be opened); FLOYD_CORRUPTION;
/// FLOYD_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn floyd_host_open(
    opts: *const floyd_host_options_t,
    out: *mut *mut floyd_host_t,
    errmsg: *mut *mut c_char,
) -> c_int {
    boundary(errmsg, || {
        let slot = out_arg(out, "out")?;
        let o = opts
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("host options are NULL".into()))?;
        if let Some(why) = &o.invalid {
            return Err(Error::InvalidArgument(why.clone()));
        }
        let host = Host::open(o.opts.clone())?;
        *slot = Box::into_raw(Box::new(floyd_host_t { host }));
        Ok(())
    })
}

/// Closes a host: stops every group still open on it, then every thread, and closes its stores;
/// then frees it. The `floyd_t` handles of its groups then answer FLOYD_STOPPED and are still
/// released with `floyd_close`.
///
/// Thread-safety: must not overlap other calls on `h`; blocks until every thread has stopped.
/// Ownership: takes `h`, invalid afterwards. NULL-safe.
/// Returns: nothing.
#[no_mangle]
pub unsafe extern "C" fn floyd_host_close(h: *mut floyd_host_t) {
    if !h.is_null() {
        let handle = Box::from_raw(h);
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(handle)));
    }
}

/// Opens (creates or restarts) group `group_id` on the host, running the built-in key-value
/// store; on `FLOYD_OK`, `*out` is its handle, which every `floyd_*` call works on.
/// `opts` gives the group's members (host addresses), timers, snapshot, read and join options;
/// its `local_ip`/`local_port` must name this host; its path is ignored (may be NULL). TLS, a
/// cluster id other than the host's and a log callback belong to the host: set on `opts` they
/// are refused; the log level is the host's (`floyd_set_log_level` on any of its groups sets it).
/// `floyd_close` on the handle stops the group here and keeps its data.
///
/// Thread-safety: any thread; `opts` must not be modified during the call.
/// Ownership: `h` and `opts` are borrowed; on FLOYD_OK the caller owns `*out` (ended with
/// `floyd_close`); `errmsg` as for `floyd_open`.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT (NULL arguments, an unusable option, a host's
/// option, an address that is not the host's, a group already open or still closing on this
/// host); FLOYD_IO_ERROR; FLOYD_CORRUPTION;
/// FLOYD_STOPPED (the host is closed); FLOYD_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn floyd_host_open_group(
    h: *mut floyd_host_t,
    group_id: u64,
    opts: *const floyd_options_t,
    out: *mut *mut floyd_t,
    errmsg: *mut *mut c_char,
) -> c_int {
    boundary(errmsg, || open_group(h, group_id, opts, out, None))
}

/// `floyd_host_open_group` with a user-defined state machine (see
/// `floyd_open_with_state_machine`: the machine is owned by floyd from this call on, and
/// `destroy` is called once, also on failure).
///
/// Thread-safety, ownership and returns: as `floyd_host_open_group`; FLOYD_INVALID_ARGUMENT also
/// for a NULL `sm` or a machine without `apply`.
#[no_mangle]
pub unsafe extern "C" fn floyd_host_open_group_with_state_machine(
    h: *mut floyd_host_t,
    group_id: u64,
    opts: *const floyd_options_t,
    sm: *const floyd_state_machine_t,
    out: *mut *mut floyd_t,
    errmsg: *mut *mut c_char,
) -> c_int {
    // Taken before any check: dropping it finalizes the machine, exactly once.
    let machine = take_machine(sm);
    boundary(errmsg, move || {
        open_group(h, group_id, opts, out, Some(checked_machine(machine)?))
    })
}

unsafe fn open_group(
    h: *mut floyd_host_t,
    group: u64,
    opts: *const floyd_options_t,
    out: *mut *mut floyd_t,
    machine: Option<Box<dyn StateMachine>>,
) -> Result<(), Error> {
    let host = host(h)?;
    let slot = out_arg(out, "out")?;
    let o = opts
        .as_ref()
        .ok_or_else(|| Error::InvalidArgument("options are NULL".into()))?;
    if let Some(why) = &o.invalid {
        return Err(Error::InvalidArgument(why.clone()));
    }
    let (h_opts, g_opts) = o.opts.clone().split();
    if h_opts.local_id() != host.id() {
        return Err(Error::InvalidArgument(format!(
            "the options name {}, not this host ({})",
            h_opts.local_id(),
            host.id()
        )));
    }
    refuse_host_fields(&h_opts, o.cluster_id_set, host.options())?;
    let floyd = match machine {
        None => host.open_group(group, g_opts)?,
        Some(m) => host.open_group_with_state_machine(group, g_opts, m)?,
    };
    *slot = super::node::handle(floyd);
    Ok(())
}

/// A group's options carry the host's fields too (one `floyd_options_t` for
/// both): set there, they would be ignored, so they are refused instead
/// (above all TLS, which a caller must not believe on when it is not).
fn refuse_host_fields(group: &HostOptions, cluster_id_set: bool, host: &HostOptions) -> Result<(), Error> {
    let refuse = |what: &str, setter: &str| {
        Err(Error::InvalidArgument(format!(
            "{what} belongs to the host: set it with {setter} on the host's options, not on a group's"
        )))
    };
    if group.tls.is_some() {
        return refuse("TLS", "floyd_host_options_set_tls");
    }
    if cluster_id_set && group.cluster_id != host.cluster_id {
        return refuse("the cluster id", "floyd_host_options_set_cluster_id");
    }
    if group.log_callback.is_some() {
        return refuse("the log callback", "floyd_host_options_set_log_callback");
    }
    Ok(())
}

/// Deletes group `group_id`'s data on this host (its log, state and snapshots).
///
/// Thread-safety: any thread.
/// Ownership: `h` is borrowed; `errmsg` as for `floyd_open`.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT (NULL `h`, or the group is open on this host);
/// FLOYD_IO_ERROR; FLOYD_STOPPED (the host is closed); FLOYD_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn floyd_host_drop_group(
    h: *mut floyd_host_t,
    group_id: u64,
    errmsg: *mut *mut c_char,
) -> c_int {
    boundary(errmsg, || host(h)?.drop_group(group_id))
}

/// The ids of the groups open on this host, sorted: `*ids` is an array of `*count` of them
/// (NULL when there are none).
///
/// Thread-safety: any thread.
/// Ownership: `h` is borrowed; the caller frees `*ids` with `floyd_free`; `errmsg` as for
/// `floyd_open`.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT (a NULL argument); FLOYD_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn floyd_host_list_groups(
    h: *mut floyd_host_t,
    ids: *mut *mut u64,
    count: *mut usize,
    errmsg: *mut *mut c_char,
) -> c_int {
    boundary(errmsg, || {
        let host = host(h)?;
        let (ids, count) = (out_arg(ids, "ids")?, out_arg(count, "count")?);
        let groups = host.list_groups();
        *ids = std::ptr::null_mut();
        *count = groups.len();
        if groups.is_empty() {
            return Ok(());
        }
        let bytes: Vec<u8> = groups.iter().flat_map(|g| g.to_ne_bytes()).collect();
        *ids = alloc_bytes(&bytes)?.cast();
        Ok(())
    })
}

/// The metrics of the host and of every group open on it, in the OpenMetrics text format
/// (see `floyd_get_metrics`; each group's series labelled `group`), NUL-terminated.
///
/// Thread-safety: any thread.
/// Ownership: the caller frees `*text` with `floyd_free`.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT (a NULL argument); FLOYD_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn floyd_host_get_metrics(h: *mut floyd_host_t, text: *mut *mut c_char) -> c_int {
    boundary(std::ptr::null_mut(), || {
        let host = host(h)?;
        let slot = out_arg(text, "text")?;
        *slot = alloc_bytes(host.metrics().as_bytes())?;
        Ok(())
    })
}

/// The host's status as JSON (its address, threads, open groups and, per group, role, term,
/// leader, commit and applied index), NUL-terminated.
///
/// Thread-safety: any thread.
/// Ownership: the caller frees `*json` with `floyd_free`.
/// Returns: FLOYD_OK; FLOYD_INVALID_ARGUMENT (a NULL argument); FLOYD_INTERNAL.
#[no_mangle]
pub unsafe extern "C" fn floyd_host_get_status_json(h: *mut floyd_host_t, json: *mut *mut c_char) -> c_int {
    boundary(std::ptr::null_mut(), || {
        let host = host(h)?;
        let slot = out_arg(json, "json")?;
        *slot = alloc_bytes(host.status_json().as_bytes())?;
        Ok(())
    })
}
