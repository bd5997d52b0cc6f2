//! The boundary from the Rust side: NULLs, bad buffers, codes, memory.

use super::*;
use std::ffi::CStr;
use std::ptr::{null, null_mut};

#[test]
fn every_error_has_its_code_and_name() {
    let cases = [
        (Error::NotFound, FLOYD_NOT_FOUND, "NOT_FOUND"),
        (Error::NoLeader(String::new()), FLOYD_NO_LEADER, "NO_LEADER"),
        (Error::Timeout(String::new()), FLOYD_TIMEOUT, "TIMEOUT"),
        (
            Error::InvalidArgument(String::new()),
            FLOYD_INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
        ),
        (Error::Io(String::new()), FLOYD_IO_ERROR, "IO_ERROR"),
        (Error::Corruption(String::new()), FLOYD_CORRUPTION, "CORRUPTION"),
        (Error::Stopped(String::new()), FLOYD_STOPPED, "STOPPED"),
        (Error::Busy(String::new()), FLOYD_BUSY, "BUSY"),
        (Error::Locked(String::new()), FLOYD_LOCKED, "LOCKED"),
        (Error::NotHolder(String::new()), FLOYD_NOT_HOLDER, "NOT_HOLDER"),
        (Error::Internal(String::new()), FLOYD_INTERNAL, "INTERNAL"),
        (Error::Failed(String::new()), FLOYD_FAILED, "FAILED"),
        (
            Error::StateMachine(String::new()),
            FLOYD_STATE_MACHINE,
            "STATE_MACHINE",
        ),
        (Error::Conflict(String::new()), FLOYD_CONFLICT, "CONFLICT"),
        (Error::Compacted(String::new()), FLOYD_COMPACTED, "COMPACTED"),
    ];
    for (e, code, name) in cases {
        assert_eq!(code_of(&e), code);
        let s = unsafe { CStr::from_ptr(floyd_status_str(code)) };
        assert_eq!(s.to_str().unwrap(), name);
    }
    assert_eq!(
        unsafe { CStr::from_ptr(floyd_status_str(99)) }.to_str().unwrap(),
        "UNKNOWN"
    );
}

#[test]
fn version_macros_match_the_crate_version() {
    let v = unsafe { CStr::from_ptr(floyd_version()) }.to_str().unwrap();
    assert_eq!(
        v,
        format!("{FLOYD_VERSION_MAJOR}.{FLOYD_VERSION_MINOR}.{FLOYD_VERSION_PATCH}")
    );
    assert_eq!(v, env!("CARGO_PKG_VERSION"));
}

#[test]
fn a_panic_becomes_internal_with_a_message() {
    let mut msg: *mut c_char = null_mut();
    let code = boundary(&mut msg, || panic!("boom"));
    assert_eq!(code, FLOYD_INTERNAL);
    let text = unsafe { CStr::from_ptr(msg) }.to_str().unwrap().to_string();
    assert!(text.contains("boom"), "{text}");
    unsafe { floyd_free(msg.cast()) };
}

#[test]
fn null_handles_and_pointers_are_invalid_arguments() {
    let mut msg: *mut c_char = null_mut();
    unsafe {
        assert_eq!(
            floyd_write(null_mut(), c"k".as_ptr(), 1, null(), 0, &mut msg),
            FLOYD_INVALID_ARGUMENT
        );
        assert!(!msg.is_null());
        floyd_free(msg.cast());
        assert_eq!(
            floyd_delete(null_mut(), c"k".as_ptr(), 1, null_mut()),
            FLOYD_INVALID_ARGUMENT
        );
        assert!(!floyd_is_leader(null_mut()));
        assert!(!floyd_has_leader(null_mut()));
        assert_eq!(floyd_get_leader(null_mut(), null_mut()), FLOYD_INVALID_ARGUMENT);
        floyd_set_log_level(null_mut(), 2);
        floyd_close(null_mut());
        floyd_free(null_mut());
        floyd_options_free(null_mut());
        assert_eq!(
            floyd_options_set_heartbeat_us(null_mut(), 1),
            FLOYD_INVALID_ARGUMENT
        );
        let mut out: *mut floyd_t = null_mut();
        assert_eq!(floyd_open(null(), &mut out, null_mut()), FLOYD_INVALID_ARGUMENT);
        assert!(out.is_null());
    }
}

#[test]
fn unusable_option_arguments_are_reported_by_open() {
    unsafe {
        let o = floyd_options_new(null(), c"127.0.0.1".as_ptr(), 70000, c"/tmp/x".as_ptr());
        assert!(!o.is_null());
        let mut f: *mut floyd_t = null_mut();
        let mut msg: *mut c_char = null_mut();
        assert_eq!(floyd_open(o, &mut f, &mut msg), FLOYD_INVALID_ARGUMENT);
        assert!(f.is_null());
        assert!(CStr::from_ptr(msg).to_str().unwrap().contains("members"));
        floyd_free(msg.cast());
        floyd_options_free(o);
    }
}

#[test]
fn buffers_are_checked_before_anything_happens() {
    unsafe {
        assert!(args::bytes(null(), 0, "v").unwrap().is_empty());
        assert!(args::bytes(null(), 3, "v").is_err());
        assert!(args::key(c"".as_ptr(), 0).is_err());
        let p = args::alloc_bytes(b"a\0b").unwrap();
        assert_eq!(std::slice::from_raw_parts(p.cast::<u8>(), 4), b"a\0b\0");
        floyd_free(p.cast());
    }
}

#[test]
fn huge_option_values_are_invalid_arguments_from_open_not_panics() {
    type Setter = unsafe extern "C" fn(*mut floyd_options_t, u64) -> c_int;
    let cases: [(Setter, &str); 6] = [
        (floyd_options_set_request_timeout_ms, "request_timeout"),
        (floyd_options_set_leader_wait_ms, "leader_wait"),
        (floyd_options_set_heartbeat_us, "heartbeat_us"),
        (floyd_options_set_check_leader_us, "check_leader_us"),
        (
            floyd_options_set_append_entries_size_once,
            "append_entries_size_once",
        ),
        (floyd_options_set_log_max_bytes, "log_max_bytes"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = std::ffi::CString::new(dir.path().to_str().unwrap()).unwrap();
    for (set, field) in cases {
        let value = if field == "log_max_bytes" { 0 } else { u64::MAX };
        unsafe {
            let o = floyd_options_new(c"127.0.0.1:1".as_ptr(), c"127.0.0.1".as_ptr(), 1, path.as_ptr());
            assert_eq!(set(o, value), FLOYD_OK, "{field}");
            let mut f: *mut floyd_t = null_mut();
            let mut msg: *mut c_char = null_mut();
            assert_eq!(floyd_open(o, &mut f, &mut msg), FLOYD_INVALID_ARGUMENT, "{field}");
            assert!(f.is_null());
            let text = CStr::from_ptr(msg).to_str().unwrap().to_string();
            assert!(text.contains(field), "{field}: {text}");
            floyd_free(msg.cast());
            floyd_options_free(o);
        }
    }
    unsafe {
        let o = floyd_options_new(c"127.0.0.1:1".as_ptr(), c"127.0.0.1".as_ptr(), 1, path.as_ptr());
        assert_eq!(floyd_options_set_log_keep_files(o, u32::MAX), FLOYD_OK);
        let mut f: *mut floyd_t = null_mut();
        assert_eq!(floyd_open(o, &mut f, null_mut()), FLOYD_INVALID_ARGUMENT);
        floyd_options_free(o);
        assert_eq!(
            floyd_options_set_log_max_bytes(null_mut(), 1),
            FLOYD_INVALID_ARGUMENT
        );
        assert_eq!(
            floyd_options_set_log_keep_files(null_mut(), 1),
            FLOYD_INVALID_ARGUMENT
        );
    }
}

// --- locks and membership through the C functions --------------------------

/// A node opened through the C API, closed on drop.
struct CNode {
    f: *mut floyd_t,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for CNode {
    fn drop(&mut self) {
        unsafe { floyd_close(self.f) };
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn cstring(s: &str) -> std::ffi::CString {
    std::ffi::CString::new(s).unwrap()
}

/// Takes and frees a library message.
unsafe fn take_msg(msg: &mut *mut c_char) -> String {
    if msg.is_null() {
        return String::new();
    }
    let text = CStr::from_ptr(*msg).to_string_lossy().into_owned();
    floyd_free((*msg).cast());
    *msg = null_mut();
    text
}

/// Opens a node at a free port; `members` of `None` means this node alone.
fn open_node(members: Option<&str>, join: bool) -> CNode {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let members = cstring(members.unwrap_or(&addr));
    let path = cstring(dir.path().to_str().unwrap());
    unsafe {
        let o = floyd_options_new(
            members.as_ptr(),
            c"127.0.0.1".as_ptr(),
            c_int::from(port),
            path.as_ptr(),
        );
        assert_eq!(floyd_options_set_heartbeat_us(o, 30_000), FLOYD_OK);
        assert_eq!(floyd_options_set_check_leader_us(o, 300_000), FLOYD_OK);
        assert_eq!(floyd_options_set_join(o, join), FLOYD_OK);
        let mut f: *mut floyd_t = null_mut();
        let mut msg: *mut c_char = null_mut();
        let rc = floyd_open(o, &mut f, &mut msg);
        floyd_options_free(o);
        assert_eq!(rc, FLOYD_OK, "open {addr}: {}", take_msg(&mut msg));
        CNode { f, addr, _dir: dir }
    }
}

/// Polls `cond` every 10 ms until it holds; panics after `secs` seconds.
fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

unsafe fn try_lock(f: *mut floyd_t, name: &[u8], holder: &[u8], ttl_ms: u64) -> (c_int, u64, String) {
    let (mut token, mut msg) = (u64::MAX, null_mut());
    let rc = floyd_try_lock(
        f,
        name.as_ptr().cast(),
        name.len(),
        holder.as_ptr().cast(),
        holder.len(),
        ttl_ms,
        &mut token,
        &mut msg,
    );
    (rc, token, take_msg(&mut msg))
}

unsafe fn unlock(f: *mut floyd_t, name: &[u8], holder: &[u8]) -> (c_int, String) {
    let mut msg = null_mut();
    let rc = floyd_unlock(
        f,
        name.as_ptr().cast(),
        name.len(),
        holder.as_ptr().cast(),
        holder.len(),
        &mut msg,
    );
    (rc, take_msg(&mut msg))
}

unsafe fn all_servers(f: *mut floyd_t) -> String {
    let mut csv: *mut c_char = null_mut();
    assert_eq!(floyd_get_all_servers(f, &mut csv, null_mut()), FLOYD_OK);
    take_msg(&mut csv)
}

unsafe fn membership(
    change: unsafe extern "C" fn(*mut floyd_t, *const c_char, *mut *mut c_char) -> c_int,
    f: *mut floyd_t,
    server: &str,
) -> (c_int, String) {
    let server = cstring(server);
    let mut msg = null_mut();
    let rc = change(f, server.as_ptr(), &mut msg);
    (rc, take_msg(&mut msg))
}

#[test]
fn locks_through_the_c_api() {
    let n = open_node(None, false);
    unsafe {
        let (rc, t1, msg) = try_lock(n.f, b"lock\0a", b"alice", 10_000);
        assert_eq!(rc, FLOYD_OK, "{msg}");
        assert!(t1 > 0);
        let (rc, renewed, msg) = try_lock(n.f, b"lock\0a", b"alice", 10_000);
        assert_eq!((rc, renewed), (FLOYD_OK, t1), "a renewal keeps the token: {msg}");
        let (rc, token, msg) = try_lock(n.f, b"lock\0a", b"bob", 10_000);
        assert_eq!(rc, FLOYD_LOCKED, "{msg}");
        assert_eq!(token, u64::MAX, "LOCKED writes no token");
        assert!(!msg.is_empty(), "LOCKED sets errmsg");
        let (rc, msg) = unlock(n.f, b"lock\0a", b"bob");
        assert_eq!(rc, FLOYD_NOT_HOLDER, "{msg}");
        let (rc, msg) = unlock(n.f, b"lock\0a", b"alice");
        assert_eq!(rc, FLOYD_OK, "{msg}");
        let (rc, msg) = unlock(n.f, b"lock\0a", b"alice");
        assert_eq!(rc, FLOYD_NOT_HOLDER, "unlock of a free lock: {msg}");
        let (rc, t2, msg) = try_lock(n.f, b"lock\0a", b"bob", 10_000);
        assert_eq!(rc, FLOYD_OK, "{msg}");
        assert!(t2 > t1, "tokens grow: {t2} after {t1}");
        assert_eq!(
            floyd_try_lock(
                n.f,
                c"lock".as_ptr(),
                4,
                c"bob".as_ptr(),
                3,
                1000,
                null_mut(),
                null_mut()
            ),
            FLOYD_OK,
            "a NULL token pointer is allowed"
        );
        // The name is binary: "lock" is another lock than "lock\0a".
        let (rc, _, msg) = try_lock(n.f, b"lock", b"alice", 1000);
        assert_eq!(rc, FLOYD_LOCKED, "{msg}");

        // A short lease runs out: another holder gets the lock, the first one lost it.
        let (rc, t3, msg) = try_lock(n.f, b"short", b"alice", 200);
        assert_eq!(rc, FLOYD_OK, "{msg}");
        let mut t4 = 0;
        wait_until(10, "the 200 ms lease to run out", || {
            let (rc, token, msg) = try_lock(n.f, b"short", b"bob", 10_000);
            assert!(rc == FLOYD_OK || rc == FLOYD_LOCKED, "{rc}: {msg}");
            t4 = token;
            rc == FLOYD_OK
        });
        assert!(t4 > t3);
        let (rc, msg) = unlock(n.f, b"short", b"alice");
        assert_eq!(rc, FLOYD_NOT_HOLDER, "the expired holder: {msg}");

        let mut json: *mut c_char = null_mut();
        assert_eq!(floyd_get_server_status_json(n.f, &mut json), FLOYD_OK);
        let json = take_msg(&mut json);
        assert!(json.contains("\"locks_held\":"), "{json}");
    }
}

#[test]
fn lock_arguments_are_checked() {
    let n = open_node(None, false);
    let day = 24 * 60 * 60 * 1000;
    unsafe {
        for (name, holder, ttl, what) in [
            (&b""[..], &b"h"[..], 1000, "name"),
            (b"n", b"", 1000, "holder"),
            (b"n", b"h", 0, "ttl"),
            (b"n", b"h", day + 1, "ttl"),
        ] {
            let (rc, token, msg) = try_lock(n.f, name, holder, ttl);
            assert_eq!(rc, FLOYD_INVALID_ARGUMENT, "{what}: {msg}");
            assert_eq!(token, u64::MAX);
            assert!(!msg.is_empty());
        }
        let (rc, _, msg) = try_lock(n.f, b"n", b"h", day);
        assert_eq!(rc, FLOYD_OK, "a ttl of 24 h is allowed: {msg}");
        let mut token = 7u64;
        assert_eq!(
            floyd_try_lock(n.f, null(), 3, c"h".as_ptr(), 1, 1000, &mut token, null_mut()),
            FLOYD_INVALID_ARGUMENT
        );
        assert_eq!(
            floyd_try_lock(n.f, c"n".as_ptr(), 1, null(), 1, 1000, &mut token, null_mut()),
            FLOYD_INVALID_ARGUMENT
        );
        assert_eq!(
            floyd_try_lock(
                null_mut(),
                c"n".as_ptr(),
                1,
                c"h".as_ptr(),
                1,
                1000,
                &mut token,
                null_mut()
            ),
            FLOYD_INVALID_ARGUMENT
        );
        assert_eq!(token, 7);
        for (name, holder) in [(&b""[..], &b"h"[..]), (b"n", b"")] {
            let (rc, msg) = unlock(n.f, name, holder);
            assert_eq!(rc, FLOYD_INVALID_ARGUMENT, "{msg}");
        }
        assert_eq!(
            floyd_unlock(n.f, null(), 1, c"h".as_ptr(), 1, null_mut()),
            FLOYD_INVALID_ARGUMENT
        );
        assert_eq!(
            floyd_unlock(null_mut(), c"n".as_ptr(), 1, c"h".as_ptr(), 1, null_mut()),
            FLOYD_INVALID_ARGUMENT
        );
    }
}

#[test]
fn membership_of_a_single_node() {
    let n = open_node(None, false);
    unsafe {
        assert_eq!(all_servers(n.f), n.addr);
        // Serving: the leader's first configuration entry is committed.
        assert_eq!(
            floyd_write(n.f, c"k".as_ptr(), 1, c"v".as_ptr(), 1, null_mut()),
            FLOYD_OK
        );
        let (rc, msg) = membership(floyd_add_server, n.f, &n.addr);
        assert_eq!(rc, FLOYD_OK, "adding a voter again: {msg}");
        for bad in ["not-an-address", "127.0.0.1", "127.0.0.1:99999", ""] {
            let (rc, msg) = membership(floyd_add_server, n.f, bad);
            assert_eq!(rc, FLOYD_INVALID_ARGUMENT, "add {bad:?}: {msg}");
            let (rc, msg) = membership(floyd_remove_server, n.f, bad);
            assert_eq!(rc, FLOYD_INVALID_ARGUMENT, "remove {bad:?}: {msg}");
        }
        let (rc, msg) = membership(floyd_remove_server, n.f, "127.0.0.1:1");
        assert_eq!(rc, FLOYD_INVALID_ARGUMENT, "remove of a non-member: {msg}");
        let (rc, msg) = membership(floyd_remove_server, n.f, &n.addr);
        assert_eq!(rc, FLOYD_INVALID_ARGUMENT, "remove of the last voter: {msg}");
        assert!(!msg.is_empty());
        assert_eq!(all_servers(n.f), n.addr);
        assert_eq!(floyd_add_server(n.f, null(), null_mut()), FLOYD_INVALID_ARGUMENT);
        assert_eq!(
            floyd_remove_server(n.f, null(), null_mut()),
            FLOYD_INVALID_ARGUMENT
        );
        let server = cstring(&n.addr);
        assert_eq!(
            floyd_add_server(null_mut(), server.as_ptr(), null_mut()),
            FLOYD_INVALID_ARGUMENT
        );
        assert_eq!(
            floyd_remove_server(null_mut(), server.as_ptr(), null_mut()),
            FLOYD_INVALID_ARGUMENT
        );
        assert_eq!(
            floyd_get_all_servers(n.f, null_mut(), null_mut()),
            FLOYD_INVALID_ARGUMENT
        );
        let mut json: *mut c_char = null_mut();
        assert_eq!(floyd_get_server_status_json(n.f, &mut json), FLOYD_OK);
        let json = take_msg(&mut json);
        let voters = format!("\"voters\":[\"{}\"]", n.addr);
        for field in [
            &voters[..],
            "\"learners\":[]",
            "\"config_index\":",
            "\"pending_change\":null",
            "\"peers\":[",
        ] {
            assert!(json.contains(field), "{field} in {json}");
        }
    }
}

#[test]
fn join_option() {
    unsafe {
        assert_eq!(floyd_options_set_join(null_mut(), true), FLOYD_INVALID_ARGUMENT);
        let dir = tempfile::tempdir().unwrap();
        let path = cstring(dir.path().to_str().unwrap());
        let port = free_port();
        let me = cstring(&format!("127.0.0.1:{port}"));
        let o = floyd_options_new(
            me.as_ptr(),
            c"127.0.0.1".as_ptr(),
            c_int::from(port),
            path.as_ptr(),
        );
        assert_eq!(floyd_options_set_join(o, true), FLOYD_OK);
        assert_eq!(floyd_options_set_single_mode(o, true), FLOYD_OK);
        let mut f: *mut floyd_t = null_mut();
        let mut msg: *mut c_char = null_mut();
        assert_eq!(floyd_open(o, &mut f, &mut msg), FLOYD_INVALID_ARGUMENT);
        assert!(f.is_null());
        let text = take_msg(&mut msg);
        assert!(text.contains("join"), "{text}");
        floyd_options_free(o);
    }
}

#[test]
fn a_joining_node_is_added_then_removed() {
    let a = open_node(None, false);
    // The new node knows only the existing member: members need not name it.
    let b = open_node(Some(&a.addr), true);
    unsafe {
        assert!(!floyd_is_leader(b.f), "a joining node does not campaign");
        let (rc, msg) = membership(floyd_add_server, a.f, &b.addr);
        assert_eq!(rc, FLOYD_OK, "add {}: {msg}", b.addr);
        let mut both = [a.addr.clone(), b.addr.clone()];
        both.sort();
        let both = both.join(",");
        assert_eq!(all_servers(a.f), both);
        wait_until(20, "the new member to learn the configuration", || {
            all_servers(b.f) == both
        });
        assert_eq!(
            floyd_write(b.f, c"joined".as_ptr(), 6, c"yes".as_ptr(), 3, null_mut()),
            FLOYD_OK,
            "a write through the new member"
        );
        let (rc, msg) = membership(floyd_add_server, b.f, &b.addr);
        assert_eq!(rc, FLOYD_OK, "adding a voter again, through a follower: {msg}");
        let (rc, msg) = membership(floyd_remove_server, a.f, &b.addr);
        assert_eq!(rc, FLOYD_OK, "remove {}: {msg}", b.addr);
        assert_eq!(all_servers(a.f), a.addr);
        let (mut value, mut len) = (null_mut(), 0usize);
        assert_eq!(
            floyd_read(a.f, c"joined".as_ptr(), 6, &mut value, &mut len, null_mut()),
            FLOYD_OK
        );
        assert_eq!(std::slice::from_raw_parts(value.cast::<u8>(), len), b"yes");
        floyd_free(value.cast());
    }
}

/// Two voters: `a` (it led alone first, so it leads) and `b`, added through `join`.
fn two_voters() -> (CNode, CNode) {
    let a = open_node(None, false);
    let b = open_node(Some(&a.addr), true);
    let (rc, msg) = unsafe { membership(floyd_add_server, a.f, &b.addr) };
    assert_eq!(rc, FLOYD_OK, "add {}: {msg}", b.addr);
    (a, b)
}

#[test]
fn a_member_removes_itself_through_its_own_handle() {
    let (a, b) = two_voters();
    unsafe {
        wait_until(20, "b to know the leader", || floyd_has_leader(b.f));
        let (rc, msg) = membership(floyd_remove_server, b.f, &b.addr);
        assert_eq!(rc, FLOYD_OK, "remove {} through itself: {msg}", b.addr);
        assert_eq!(all_servers(a.f), a.addr);
    }
}

#[test]
fn removing_the_leader_makes_it_step_down() {
    let (a, b) = two_voters();
    unsafe {
        assert!(floyd_is_leader(a.f));
        let (rc, msg) = membership(floyd_remove_server, a.f, &a.addr);
        assert_eq!(rc, FLOYD_OK, "remove the leader {}: {msg}", a.addr);
        wait_until(20, "the remaining member to lead", || floyd_is_leader(b.f));
        assert!(!floyd_is_leader(a.f));
        assert_eq!(all_servers(b.f), b.addr);
        assert_eq!(
            floyd_write(b.f, c"after".as_ptr(), 5, c"1".as_ptr(), 1, null_mut()),
            FLOYD_OK
        );
    }
}

#[test]
fn lease_reads_option() {
    unsafe {
        assert_eq!(
            floyd_options_set_lease_reads(null_mut(), true),
            FLOYD_INVALID_ARGUMENT
        );
        let dir = tempfile::tempdir().unwrap();
        let path = cstring(dir.path().to_str().unwrap());
        let port = free_port();
        let me = cstring(&format!("127.0.0.1:{port}"));
        let o = floyd_options_new(
            me.as_ptr(),
            c"127.0.0.1".as_ptr(),
            c_int::from(port),
            path.as_ptr(),
        );
        assert_eq!(floyd_options_set_lease_reads(o, true), FLOYD_OK);
        let mut f: *mut floyd_t = null_mut();
        assert_eq!(floyd_open(o, &mut f, null_mut()), FLOYD_OK);
        floyd_options_free(o);
        assert_eq!(
            floyd_write(f, c"k".as_ptr(), 1, c"v".as_ptr(), 1, null_mut()),
            FLOYD_OK
        );
        let (mut value, mut len) = (null_mut(), 0usize);
        assert_eq!(
            floyd_read(f, c"k".as_ptr(), 1, &mut value, &mut len, null_mut()),
            FLOYD_OK
        );
        assert_eq!(std::slice::from_raw_parts(value.cast::<u8>(), len), b"v");
        floyd_free(value.cast());
        floyd_close(f);
    }
}

#[test]
fn quiesce_option() {
    unsafe {
        assert_eq!(
            floyd_options_set_quiesce(null_mut(), true),
            FLOYD_INVALID_ARGUMENT
        );
        let o = floyd_options_new(c"127.0.0.1:1".as_ptr(), c"127.0.0.1".as_ptr(), 1, null_mut());
        assert!(!o.is_null());
        assert_eq!(floyd_options_set_quiesce(o, false), FLOYD_OK);
        assert_eq!((*o).opts.quiesce, Some(false));
        floyd_options_free(o);
    }
}
