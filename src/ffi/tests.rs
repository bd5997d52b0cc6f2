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
        (Error::Internal(String::new()), FLOYD_INTERNAL, "INTERNAL"),
        (Error::Failed(String::new()), FLOYD_FAILED, "FAILED"),
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
