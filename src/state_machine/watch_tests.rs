//! Watches on the state machine alone (callbacks run on the applying
//! thread unless a dispatch queue is set): every change once, in revision
//! order, from the history then live; compaction; restart; unwatch; close;
//! a watcher too slow to keep up is ended without holding the apply up.

use super::history::{EventKind, WatchEvent};
use super::test_store::{del, put};
use super::watch::{WatchUpdate, MAX_QUEUED_EVENTS};
use super::*;
use std::sync::Arc;

fn entry(index: u64, cmd: CommandKind) -> Entry {
    Entry {
        term: 1,
        index,
        r#type: EntryType::EntryCommand as i32,
        payload: encode_command(cmd),
        leader_time_ms: 1_000 + index,
        log_time_rule: 2,
    }
}

type Seen = Arc<parking_lot::Mutex<Vec<(EventKind, String, u64)>>>;
type Ends = Arc<parking_lot::Mutex<Vec<Error>>>;

/// A callback recording what it is told.
fn recorder() -> (Seen, Ends, watch::WatchCallback) {
    let (seen, ends): (Seen, Ends) = Default::default();
    let (s, e) = (seen.clone(), ends.clone());
    let cb = Box::new(move |u: WatchUpdate<'_>| match u {
        WatchUpdate::Events(events) => s.lock().extend(events.iter().map(|ev: &WatchEvent| {
            (
                ev.kind,
                String::from_utf8(ev.key.to_vec()).unwrap(),
                ev.mod_revision,
            )
        })),
        WatchUpdate::Ended(err) => e.lock().push(err),
    });
    (seen, ends, cb)
}

struct Store {
    dir: tempfile::TempDir,
    sm: KvStateMachine,
    next: u64,
}

impl Store {
    fn new() -> Store {
        let dir = tempfile::tempdir().unwrap();
        let sm = KvStateMachine::open(dir.path()).unwrap();
        Store { dir, sm, next: 1 }
    }

    fn apply(&mut self, cmds: Vec<CommandKind>) {
        let entries: Vec<Entry> = cmds
            .into_iter()
            .map(|c| {
                self.next += 1;
                entry(self.next - 1, c)
            })
            .collect();
        self.sm.apply(&entries).unwrap();
    }
}

#[test]
fn a_watch_from_now_sees_each_later_change_in_its_range_once_in_revision_order() {
    let mut s = Store::new();
    s.apply(vec![put("a/1", "x")]);
    let (seen, ends, cb) = recorder();
    s.sm.watch(b"a/", b"a0", 0, cb).unwrap();
    s.apply(vec![put("a/2", "y"), put("b/1", "z"), del("a/1")]);
    s.apply(vec![del("a/9"), put("a/2", "w")]);
    use EventKind::*;
    assert_eq!(
        *seen.lock(),
        [
            (Put, "a/2".into(), 3),
            (Delete, "a/1".into(), 5),
            (Put, "a/2".into(), 6)
        ]
    );
    assert!(ends.lock().is_empty());
}

#[test]
fn a_watch_from_a_past_revision_reads_the_history_then_goes_on_live_without_gap_or_repeat() {
    let mut s = Store::new();
    s.apply((0..10).map(|i| put(&format!("k{i}"), "v")).collect());
    let (seen, _, cb) = recorder();
    s.sm.watch(b"k", b"", 5, cb).unwrap();
    s.apply(vec![put("k0", "again")]);
    let revisions: Vec<u64> = seen.lock().iter().map(|e| e.2).collect();
    assert_eq!(revisions, (5..=12).collect::<Vec<_>>());
}

#[test]
fn a_watch_before_the_history_kept_is_compacted_and_the_history_stays_bounded() {
    let mut s = Store::new();
    s.sm.set_history_revisions(16);
    s.apply((0..100).map(|i| put("k", &i.to_string())).collect());
    let (_, _, cb) = recorder();
    assert!(matches!(s.sm.watch(b"", b"", 2, cb), Err(Error::Compacted(_))));
    let (seen, _, cb) = recorder();
    // Revisions 2..=101: the last 16 are 86..=101.
    s.sm.watch(b"", b"", 86, cb).unwrap();
    assert_eq!(seen.lock().len(), 16, "the last 16 revisions are kept");
    let db = s.sm.db().unwrap();
    let kept = db
        .prefix_iterator(KvKeys::of(0).history_prefix())
        .take_while(|kv| kv.as_ref().unwrap().0.starts_with(b"h"))
        .count();
    assert!(kept <= 16 + 16 / 8, "{kept} changes kept");
}

#[test]
fn a_watcher_restarted_after_a_reopen_from_its_last_revision_plus_one_misses_nothing() {
    let mut s = Store::new();
    let (seen, _, cb) = recorder();
    s.sm.watch(b"", b"", 0, cb).unwrap();
    s.apply(vec![put("a", "1"), put("b", "2")]);
    let last = seen.lock().last().unwrap().2;
    s.sm.close();
    let sm = KvStateMachine::open(s.dir.path()).unwrap();
    let (again, _, cb) = recorder();
    sm.watch(b"", b"", last + 1, cb).unwrap();
    sm.apply(&[entry(3, put("c", "3"))]).unwrap();
    assert_eq!(*again.lock(), [(EventKind::Put, "c".into(), last + 1)]);
}

#[test]
fn unwatch_stops_the_calls_and_close_ends_the_others_with_a_last_call() {
    let mut s = Store::new();
    let (gone, gone_ends, cb) = recorder();
    let id = s.sm.watch(b"", b"", 0, cb).unwrap();
    let (kept, kept_ends, cb) = recorder();
    s.sm.watch(b"", b"", 0, cb).unwrap();
    s.sm.unwatch(id).unwrap();
    assert_eq!(s.sm.unwatch(id), Err(Error::NotFound));
    s.apply(vec![put("a", "1")]);
    assert!(gone.lock().is_empty() && gone_ends.lock().is_empty());
    assert_eq!(kept.lock().len(), 1);
    s.sm.close();
    assert!(matches!(kept_ends.lock().as_slice(), [Error::Stopped(_)]));
}

#[test]
fn a_watcher_that_falls_too_far_behind_is_ended_and_the_apply_goes_on() {
    let mut s = Store::new();
    // A watch thread that does not come round: the apply must not wait for it.
    let (tx, rx) = crossbeam_channel::unbounded();
    s.sm.set_watch_dispatch(tx);
    let (seen, ends, cb) = recorder();
    let id = s.sm.watch(b"", b"", 0, cb).unwrap();
    let per_txn = crate::limits::MAX_TXN_OPS;
    let txns = MAX_QUEUED_EVENTS / per_txn + 1;
    for t in 0..txns {
        let then = (0..per_txn)
            .map(|i| crate::wire::TxnOp {
                op: Some(crate::wire::txn_op::Op::Put(crate::wire::Put {
                    key: Bytes::from(format!("t{t}/{i}")),
                    value: Bytes::from_static(b"v"),
                    lease: 0,
                })),
            })
            .collect();
        let txn = CommandKind::Txn(crate::wire::Txn {
            compares: vec![],
            then,
            otherwise: vec![],
        });
        s.apply(vec![txn]);
    }
    assert_eq!(s.sm.applied_index().unwrap(), txns as u64);
    // The watch thread comes round at last: one last call, no flood.
    while let Ok(w) = rx.try_recv() {
        w.deliver();
    }
    assert!(seen.lock().is_empty());
    assert!(
        matches!(ends.lock().as_slice(), [Error::Busy(_)]),
        "{:?}",
        ends.lock()
    );
    // It takes nothing more and leaves the hub (before, it went on queueing
    // after its last call, and stayed registered).
    s.apply(vec![put("later", "x")]);
    assert!(rx.try_recv().is_err(), "nothing more to deliver");
    assert_eq!(s.sm.unwatch(id), Err(Error::NotFound));
}

/// With no history kept, a watch can start from now only: a past revision
/// is `Compacted`, not accepted and silently missed (it was, before).
#[test]
fn with_no_history_kept_a_watch_from_a_past_revision_is_compacted() {
    let mut s = Store::new();
    s.apply(vec![put("a", "1")]);
    s.sm.set_history_revisions(0);
    s.apply(vec![put("b", "1"), put("c", "1")]);
    let (_, _, cb) = recorder();
    assert!(matches!(s.sm.watch(b"", b"", 2, cb), Err(Error::Compacted(_))));
    let (seen, _, cb) = recorder();
    s.sm.watch(b"", b"", 0, cb).unwrap();
    s.apply(vec![put("d", "1")]);
    assert_eq!(seen.lock().len(), 1);
    // Kept again: from the next revision on.
    s.sm.set_history_revisions(100);
    s.apply(vec![put("e", "1"), put("f", "1")]);
    let (_, _, cb) = recorder();
    assert!(matches!(s.sm.watch(b"", b"", 5, cb), Err(Error::Compacted(_))));
    let (again, _, cb) = recorder();
    s.sm.watch(b"", b"", 6, cb).unwrap();
    assert_eq!(again.lock().len(), 2, "e and f");
}
