use super::*;
use crate::state_machine::{encode_command, CommandKind};
use std::sync::{Arc, Mutex as StdMutex};

/// What the test machine was asked to do, in order.
type Calls = Arc<StdMutex<Vec<String>>>;

/// A counter: "add N" adds, "fail" refuses, "panic" panics; the snapshot is one file.
struct Counter {
    total: i64,
    calls: Calls,
}

impl Counter {
    fn new() -> (Box<Counter>, Calls) {
        let calls = Calls::default();
        (
            Box::new(Counter {
                total: 0,
                calls: calls.clone(),
            }),
            calls,
        )
    }

    fn note(&self, what: String) {
        self.calls.lock().unwrap().push(what);
    }
}

impl StateMachine for Counter {
    fn apply(&mut self, index: u64, data: &[u8]) -> std::result::Result<Vec<u8>, String> {
        let cmd = std::str::from_utf8(data).unwrap().to_string();
        self.note(format!("apply {index} {cmd}"));
        match cmd.split_once(' ') {
            Some(("add", n)) => {
                self.total += n.parse::<i64>().map_err(|e| e.to_string())?;
                Ok(self.total.to_string().into_bytes())
            }
            _ if cmd == "fail" => Err("refused".into()),
            _ if cmd == "panic" => panic!("counter exploded"),
            _ => Err(format!("unknown command {cmd}")),
        }
    }

    fn snapshot_save(&mut self, dir: &Path) -> std::result::Result<(), String> {
        std::fs::write(dir.join("total"), self.total.to_string()).map_err(|e| e.to_string())
    }

    fn snapshot_load(&mut self, dir: &Path) -> std::result::Result<(), String> {
        let text = std::fs::read_to_string(dir.join("total")).map_err(|e| e.to_string())?;
        self.total = text.parse().map_err(|e: std::num::ParseIntError| e.to_string())?;
        Ok(())
    }

    fn on_leader_start(&mut self, term: u64) {
        self.note(format!("start {term}"));
    }

    fn on_leader_stop(&mut self) {
        self.note("stop".into());
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.note("dropped".into());
    }
}

pub(super) fn custom(index: u64, data: &str) -> Entry {
    entry(
        index,
        EntryType::EntryCommand,
        encode_command(CommandKind::Custom {
            data: Bytes::from(data.to_string()),
        }),
    )
}

fn entry(index: u64, kind: EntryType, payload: Bytes) -> Entry {
    Entry {
        term: 2,
        index,
        r#type: kind as i32,
        payload,
        leader_time_ms: 0,
        log_time_rule: 0,
    }
}

fn results(applied: Vec<Applied>) -> Vec<(u64, Result<Option<Bytes>>)> {
    applied.into_iter().map(|a| (a.index, a.result)).collect()
}

fn ok(s: &str) -> Result<Option<Bytes>> {
    Ok(Some(Bytes::from(s.to_string())))
}

#[test]
fn commands_reach_the_machine_and_their_answers_the_proposer() {
    let (counter, calls) = Counter::new();
    let m = UserMachine::new(counter);
    assert_eq!(m.applied_index(), 0, "volatile: nothing applied at open");
    let noop = entry(2, EntryType::EntryNoop, Bytes::new());
    let out = m
        .apply(&[custom(1, "add 5"), noop, custom(3, "add 2"), custom(4, "fail")])
        .unwrap();
    assert_eq!(
        results(out),
        vec![
            (1, ok("5")),
            (2, Ok(None)),
            (3, ok("7")),
            (4, Err(Error::StateMachine("refused".into()))),
        ]
    );
    assert_eq!(m.applied_index(), 4);
    // Already applied: skipped; the refusal did not stop the machine.
    let out = m
        .apply(&[custom(3, "add 2"), custom(4, "fail"), custom(5, "add 1")])
        .unwrap();
    assert_eq!(results(out), vec![(5, ok("8"))]);
    assert_eq!(
        *calls.lock().unwrap(),
        ["apply 1 add 5", "apply 3 add 2", "apply 4 fail", "apply 5 add 1"]
    );
}

#[test]
fn a_key_value_command_or_a_bad_payload_is_refused_per_entry() {
    let m = UserMachine::new(Counter::new().0);
    let put = entry(
        1,
        EntryType::EntryCommand,
        encode_command(CommandKind::Put {
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"v"),
        }),
    );
    let garbage = entry(2, EntryType::EntryCommand, Bytes::from_static(b"\xff\xff"));
    let out = results(m.apply(&[put, garbage, custom(3, "add 1")]).unwrap());
    assert!(matches!(&out[0], (1, Err(Error::InvalidArgument(m))) if m.contains("user-defined")));
    assert!(matches!(&out[1], (2, Err(Error::InvalidArgument(_)))));
    assert_eq!(out[2], (3, ok("1")));
}

#[test]
fn a_gap_is_a_bug() {
    let m = UserMachine::new(Counter::new().0);
    m.apply(&[custom(1, "add 1")]).unwrap();
    assert!(matches!(m.apply(&[custom(3, "add 1")]), Err(Error::Internal(_))));
}

#[test]
fn a_panic_is_an_error_and_the_machine_applies_nothing_more() {
    let (counter, calls) = Counter::new();
    let m = UserMachine::new(counter);
    let err = m
        .apply(&[custom(1, "add 1"), custom(2, "panic"), custom(3, "add 1")])
        .unwrap_err();
    assert!(
        matches!(&err, Error::Internal(msg) if msg.contains("state machine apply panicked: counter exploded")),
        "{err}"
    );
    assert_eq!(m.applied_index(), 1, "the entry before the panic was applied");
    assert_eq!(m.apply(&[custom(2, "add 1")]).unwrap_err(), err);
    assert!(m.snapshot_save(Path::new("/nonexistent")).is_err());
    m.close();
    let calls = calls.lock().unwrap();
    assert_eq!(*calls, ["apply 1 add 1", "apply 2 panic", "dropped"]);
}

#[test]
fn snapshots_round_trip_and_set_the_applied_index() {
    let dir = tempfile::tempdir().unwrap();
    let a = UserMachine::new(Counter::new().0);
    a.apply(&[custom(1, "add 40"), custom(2, "add 2")]).unwrap();
    assert_eq!(a.snapshot_save(dir.path()).unwrap(), 2);
    let b = UserMachine::new(Counter::new().0);
    b.snapshot_load(dir.path(), 2).unwrap();
    assert_eq!(b.applied_index(), 2);
    let out = b.apply(&[custom(2, "add 100"), custom(3, "add 1")]).unwrap();
    assert_eq!(results(out), vec![(3, ok("43"))]);
    // A failing load is an error, and the state stays.
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(b.snapshot_load(empty.path(), 9), Err(Error::Io(_))));
    assert_eq!(b.applied_index(), 3);
}

#[test]
fn leadership_changes_are_told_once_each_and_close_ends_the_machine() {
    let (counter, calls) = Counter::new();
    let m = UserMachine::new(counter);
    for seen in [None, Some(3), Some(3), None, None, Some(5), Some(7)] {
        m.observe_leadership(seen);
    }
    m.close();
    m.close();
    assert!(matches!(m.apply(&[custom(1, "add 1")]), Err(Error::Stopped(_))));
    assert_eq!(
        *calls.lock().unwrap(),
        ["start 3", "stop", "start 5", "stop", "start 7", "stop", "dropped"]
    );
}

#[test]
fn dropping_without_close_still_ends_the_machine() {
    let (counter, calls) = Counter::new();
    drop(UserMachine::new(counter));
    assert_eq!(*calls.lock().unwrap(), ["dropped"]);
}
