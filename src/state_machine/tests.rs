//! State machine tests: apply, reads within a batch, exactly-once replay.

use super::*;

fn cmd_entry(index: u64, cmd: CommandKind) -> Entry {
    Entry {
        term: 1,
        index,
        r#type: EntryType::EntryCommand as i32,
        payload: encode_command(cmd),
        leader_time_ms: 0,
        log_time_rule: 0,
    }
}

fn put(index: u64, k: &str, v: &str) -> Entry {
    cmd_entry(
        index,
        CommandKind::Put {
            key: Bytes::from(k.to_string()),
            value: Bytes::from(v.to_string()),
        },
    )
}

fn get(index: u64, k: &str) -> Entry {
    cmd_entry(
        index,
        CommandKind::Get {
            key: Bytes::from(k.to_string()),
        },
    )
}

#[test]
fn put_get_delete() {
    let dir = tempfile::tempdir().unwrap();
    let sm = KvStateMachine::open(dir.path()).unwrap();
    let noop = Entry {
        term: 1,
        index: 1,
        r#type: EntryType::EntryNoop as i32,
        payload: Bytes::new(),
        leader_time_ms: 0,
        log_time_rule: 0,
    };
    let del = cmd_entry(
        5,
        CommandKind::Delete {
            key: Bytes::from_static(b"k"),
        },
    );
    let out = sm
        .apply(&[
            noop,
            put(2, "k", "v1"),
            get(3, "k"),
            get(4, "missing"),
            del,
            get(6, "k"),
        ])
        .unwrap();
    let results: Vec<_> = out.iter().map(|a| a.result.clone()).collect();
    assert_eq!(
        results,
        vec![
            Ok(None),
            Ok(None),
            Ok(Some(Bytes::from_static(b"v1"))),
            Err(Error::NotFound),
            Ok(None),
            Err(Error::NotFound)
        ]
    );
    assert_eq!(sm.applied_index().unwrap(), 6);
    assert_eq!(sm.get(b"k").unwrap(), None);
}

#[test]
fn crash_between_commit_and_apply_replays_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let entries = [put(1, "a", "1"), put(2, "b", "2"), get(3, "a")];
    {
        let sm = KvStateMachine::open(dir.path()).unwrap();
        sm.apply(&entries[..2]).unwrap();
    } // "crash": entry 3 committed but not applied
    let sm = KvStateMachine::open(dir.path()).unwrap();
    assert_eq!(sm.applied_index().unwrap(), 2);
    // The runtime replays from the log, including entries already applied.
    let out = sm.apply(&entries).unwrap();
    assert_eq!(out.len(), 1, "entries 1 and 2 must not be applied twice");
    assert_eq!(out[0].index, 3);
    assert_eq!(out[0].result, Ok(Some(Bytes::from_static(b"1"))));
    assert_eq!(sm.applied_index().unwrap(), 3);
}

#[test]
fn binary_keys_and_values_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let sm = KvStateMachine::open(dir.path()).unwrap();
    let key = Bytes::from_static(b"k\0\xff");
    let value = Bytes::from_static(b"\0\x01\0");
    sm.apply(&[cmd_entry(
        1,
        CommandKind::Put {
            key: key.clone(),
            value: value.clone(),
        },
    )])
    .unwrap();
    assert_eq!(sm.get(&key).unwrap().as_deref(), Some(&value[..]));
}

#[test]
fn garbage_command_yields_an_error_result_everywhere_alike() {
    let dir = tempfile::tempdir().unwrap();
    let sm = KvStateMachine::open(dir.path()).unwrap();
    let bad = Entry {
        term: 1,
        index: 1,
        r#type: EntryType::EntryCommand as i32,
        payload: Bytes::from_static(b"\xff\xff"),
        leader_time_ms: 0,
        log_time_rule: 0,
    };
    let out = sm.apply(&[bad, put(2, "x", "y")]).unwrap();
    assert!(matches!(out[0].result, Err(Error::InvalidArgument(_))));
    assert_eq!(out[1].result, Ok(None));
    assert_eq!(sm.applied_index().unwrap(), 2);
}

#[test]
fn apply_gap_is_an_internal_error() {
    let dir = tempfile::tempdir().unwrap();
    let sm = KvStateMachine::open(dir.path()).unwrap();
    assert!(matches!(sm.apply(&[put(2, "a", "b")]), Err(Error::Internal(_))));
}

#[test]
fn oversized_and_empty_keys_are_rejected_before_proposal() {
    assert!(CommandKind::Get { key: Bytes::new() }.validate().is_err());
    let big = Bytes::from(vec![0u8; crate::options::MAX_VALUE_BYTES + 1]);
    assert!(CommandKind::Put {
        key: Bytes::from_static(b"k"),
        value: big
    }
    .validate()
    .is_err());
}

#[test]
fn a_closed_state_machine_releases_its_directory_and_answers_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let sm = KvStateMachine::open(dir.path()).unwrap();
    sm.apply(&[put(1, "k", "v")]).unwrap();
    assert!(KvStateMachine::open(dir.path()).is_err());
    sm.close();
    assert!(matches!(sm.get(b"k"), Err(Error::Stopped(_))));
    assert!(matches!(sm.applied_index(), Err(Error::Stopped(_))));
    assert!(matches!(sm.apply(&[put(2, "k", "w")]), Err(Error::Stopped(_))));
    let again = KvStateMachine::open(dir.path()).unwrap();
    assert_eq!(again.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
}
