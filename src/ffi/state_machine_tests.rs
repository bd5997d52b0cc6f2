//! The C state machine from the Rust side: callbacks reached with the right
//! arguments, codes and messages carried back, `destroy` exactly once.

use super::*;
use crate::ffi::{floyd_free, floyd_options_free, floyd_options_new, FLOYD_INVALID_ARGUMENT};
use crate::state_machine::UserMachine;
use crate::wire::{Entry, EntryType};
use std::ffi::CStr;
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicUsize, Ordering};

/// What the callbacks see: `user_data` points at one.
#[derive(Default)]
struct Probe {
    finalized: AtomicUsize,
    leader_calls: AtomicUsize,
}

fn malloced(text: &[u8]) -> *mut c_char {
    // SAFETY: malloc'ed and filled, as the contract asks of a callback.
    unsafe {
        let p = libc::malloc(text.len() + 1).cast::<u8>();
        std::ptr::copy_nonoverlapping(text.as_ptr(), p, text.len());
        *p.add(text.len()) = 0;
        p.cast()
    }
}

/// "fail": refused with a NUL-terminated message and no length; "code": refused
/// with no message; anything else: answered with itself, reversed.
unsafe extern "C" fn apply(
    _user_data: *mut c_void,
    index: u64,
    data: *const c_char,
    len: usize,
    result: *mut *mut c_char,
    result_len: *mut usize,
) -> c_int {
    let command = std::slice::from_raw_parts(data.cast::<u8>(), len + 1);
    assert_eq!(command[len], 0, "the command is NUL-terminated");
    match &command[..len] {
        b"fail" => {
            *result = malloced(format!("no to {index}").as_bytes());
            7
        }
        b"code" => 3,
        c => {
            let answer: Vec<u8> = c.iter().rev().copied().collect();
            *result = malloced(&answer);
            *result_len = answer.len();
            0
        }
    }
}

unsafe extern "C" fn save(_user_data: *mut c_void, dir: *const c_char) -> c_int {
    let dir = CStr::from_ptr(dir).to_str().unwrap();
    std::fs::write(Path::new(dir).join("state"), b"saved").map_or(1, |_| 0)
}

unsafe extern "C" fn load(_user_data: *mut c_void, dir: *const c_char) -> c_int {
    let dir = CStr::from_ptr(dir).to_str().unwrap();
    match std::fs::read(Path::new(dir).join("state")) {
        Ok(s) if s == b"saved" => 0,
        _ => 5,
    }
}

unsafe extern "C" fn leader_start(user_data: *mut c_void, _term: u64) {
    (*user_data.cast::<Probe>())
        .leader_calls
        .fetch_add(1, Ordering::SeqCst);
}

unsafe extern "C" fn finalize(user_data: *mut c_void) {
    (*user_data.cast::<Probe>())
        .finalized
        .fetch_add(1, Ordering::SeqCst);
}

fn callbacks(probe: &Probe) -> floyd_state_machine_t {
    floyd_state_machine_t {
        user_data: (probe as *const Probe).cast_mut().cast(),
        apply: Some(apply),
        snapshot_save: Some(save),
        snapshot_load: Some(load),
        on_leader_start: Some(leader_start),
        on_leader_stop: None,
        destroy: Some(finalize),
    }
}

fn custom(index: u64, data: &[u8]) -> Entry {
    Entry {
        term: 1,
        index,
        r#type: EntryType::EntryCommand as i32,
        payload: crate::state_machine::encode_command(crate::state_machine::CommandKind::Custom {
            data: bytes::Bytes::copy_from_slice(data),
        }),
        leader_time_ms: 0,
        log_time_rule: 0,
    }
}

#[test]
fn answers_refusals_and_snapshots_cross_the_boundary() {
    let probe = Probe::default();
    let m = UserMachine::new(Box::new(CMachine(callbacks(&probe))));
    let out = m
        .apply(&[
            custom(1, b"abc"),
            custom(2, b"fail"),
            custom(3, b"code"),
            custom(4, b""),
        ])
        .unwrap();
    let results: Vec<_> = out.into_iter().map(|a| a.result).collect();
    assert_eq!(results[0], Ok(Some(bytes::Bytes::from_static(b"cba"))));
    assert_eq!(results[1], Err(Error::StateMachine("no to 2".into())));
    assert_eq!(results[2], Err(Error::StateMachine("apply returned 3".into())));
    assert_eq!(results[3], Ok(Some(bytes::Bytes::new())));

    let dir = tempfile::tempdir().unwrap();
    assert_eq!(m.snapshot_save(dir.path()).unwrap(), 4);
    m.snapshot_load(dir.path(), 9).unwrap();
    assert_eq!(m.applied_index(), 9);
    let empty = tempfile::tempdir().unwrap();
    let err = m.snapshot_load(empty.path(), 10).unwrap_err();
    assert!(
        matches!(&err, Error::Io(msg) if msg.contains("snapshot_load returned 5")),
        "{err}"
    );

    m.observe_leadership(Some(2));
    m.observe_leadership(None); // on_leader_stop is NULL: skipped
    assert_eq!(probe.leader_calls.load(Ordering::SeqCst), 1);
    assert_eq!(probe.finalized.load(Ordering::SeqCst), 0);
    m.close();
    m.close();
    assert_eq!(probe.finalized.load(Ordering::SeqCst), 1);
}

#[test]
fn a_failed_open_finalizes_once_and_null_arguments_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = CString::new(dir.path().to_str().unwrap()).unwrap();
    unsafe {
        let o = floyd_options_new(c"127.0.0.1:1".as_ptr(), c"127.0.0.1".as_ptr(), 1, path.as_ptr());
        let mut f: *mut floyd_t = null_mut();
        let mut msg: *mut c_char = null_mut();
        assert_eq!(
            floyd_open_with_state_machine(o, null(), &mut f, &mut msg),
            FLOYD_INVALID_ARGUMENT
        );
        assert!(CStr::from_ptr(msg)
            .to_str()
            .unwrap()
            .contains("state machine is NULL"));
        floyd_free(msg.cast());

        let probe = Probe::default();
        let mut no_apply = callbacks(&probe);
        no_apply.apply = None;
        let mut no_load = callbacks(&probe);
        no_load.snapshot_load = None;
        let sm = callbacks(&probe);
        let cases: [(*const floyd_options_t, &floyd_state_machine_t, *mut *mut floyd_t); 4] = [
            (null(), &sm, &mut f),
            (o, &sm, null_mut()),
            (o, &no_apply, &mut f),
            (o, &no_load, &mut f),
        ];
        for (i, (opts, sm, out)) in cases.into_iter().enumerate() {
            assert_eq!(
                floyd_open_with_state_machine(opts, sm, out, null_mut()),
                FLOYD_INVALID_ARGUMENT
            );
            assert_eq!(probe.finalized.load(Ordering::SeqCst), i + 1, "case {i}");
        }
        assert!(f.is_null());
        floyd_options_free(o);

        let mut result: *mut c_char = null_mut();
        let mut len = 0usize;
        assert_eq!(
            floyd_propose(null_mut(), c"x".as_ptr(), 1, &mut result, &mut len, null_mut()),
            FLOYD_INVALID_ARGUMENT
        );
        assert!(result.is_null());
    }
}
