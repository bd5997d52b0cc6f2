//! Watches on a real cluster (issue 22, item 5): every member delivers
//! every change it applies, once, in revision order, across a leader change
//! and a restart of the watching node; `Compacted` before the history kept;
//! unwatch and close.

mod common;

use common::{retrying, wait_until, Cluster};
use floyd::{prefix_end, Branch, Error, EventKind, Floyd, Txn, WatchUpdate};
use std::sync::{Arc, Mutex};

/// What a watcher was told: (revision, kind, key), and how it ended.
#[derive(Default)]
struct Log {
    events: Vec<(u64, EventKind, Vec<u8>)>,
    ended: Option<Error>,
    /// Calls after the last: must stay 0.
    late_calls: usize,
}

fn watch(node: &Floyd, prefix: &[u8], from: u64) -> (u64, Arc<Mutex<Log>>) {
    let log = Arc::new(Mutex::new(Log::default()));
    let l = log.clone();
    let id = node
        .watch(prefix, &prefix_end(prefix), from, move |u| {
            // (No assertion here: a panic would fail the host's watch thread.)
            let Ok(mut l) = l.lock() else { return };
            if l.ended.is_some() {
                l.late_calls += 1;
            }
            match u {
                WatchUpdate::Events(events) => l
                    .events
                    .extend(events.iter().map(|e| (e.mod_revision, e.kind, e.key.to_vec()))),
                WatchUpdate::Ended(e) => l.ended = Some(e),
            }
        })
        .unwrap();
    (id, log)
}

/// Revisions never go back, and no (revision, key) comes twice.
fn assert_in_order_once(events: &[(u64, EventKind, Vec<u8>)]) {
    for w in events.windows(2) {
        assert!(
            w[0].0 < w[1].0 || (w[0].0 == w[1].0 && w[0].2 != w[1].2),
            "out of order or repeated: {:?} then {:?}",
            w[0],
            w[1]
        );
    }
}

fn put_all(node: &Floyd, keys: impl IntoIterator<Item = String>) {
    for k in keys {
        retrying(|| node.write(k.as_bytes(), b"v")).unwrap();
    }
}

#[test]
fn every_member_delivers_every_change_once_in_revision_order_across_a_leader_change() {
    let mut c = Cluster::start(3);
    let leader = c.wait_for_leader();
    retrying(|| c.node(leader).write(b"w/warm", b"")).unwrap();
    // Every node has applied it: the watches all start after it.
    for i in 0..3 {
        wait_until("the warm-up write everywhere", || {
            c.node(i).dirty_read(b"w/warm").is_ok()
        });
    }
    let watchers: Vec<_> = (0..3).map(|i| watch(c.node(i), b"w/", 0)).collect();
    let f = c.follower_of(leader);
    put_all(c.node(f), (0..20).map(|i| format!("w/a{i}")));
    c.node(leader).delete(b"w/a3").unwrap();
    c.node(f).write(b"other", b"not watched").unwrap();
    let mut t = Txn::new();
    t.put(Branch::Then, b"w/t1", b"1", 0)
        .put(Branch::Then, b"w/t2", b"2", 0)
        .delete(Branch::Then, b"w/a4");
    c.node(f).txn(&t).unwrap();

    c.stop(leader);
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    c.wait_for_leader_among(&survivors);
    put_all(c.node(survivors[0]), (0..20).map(|i| format!("w/b{i}")));
    // 20 puts, a delete, 3 changes of the transaction, 20 puts.
    let expected = 44;
    for &i in &survivors {
        let deadline = std::time::Instant::now() + common::DEADLINE;
        while watchers[i].1.lock().unwrap().events.len() < expected {
            if std::time::Instant::now() > deadline {
                let l = watchers[i].1.lock().unwrap();
                panic!(
                    "node {i}: {} changes, ended {:?}: {:?}",
                    l.events.len(),
                    l.ended,
                    l.events
                );
            }
            std::thread::park_timeout(std::time::Duration::from_millis(5));
        }
    }
    let first = watchers[survivors[0]].1.lock().unwrap().events.clone();
    assert_eq!(first.len(), expected, "nothing twice");
    assert_in_order_once(&first);
    assert_eq!(
        first,
        watchers[survivors[1]].1.lock().unwrap().events,
        "members agree"
    );
    // The transaction's three changes share one revision.
    let txn_rev = first.iter().find(|e| e.2 == b"w/t1").unwrap().0;
    assert_eq!(first.iter().filter(|e| e.0 == txn_rev).count(), 3);
    assert!(first.iter().any(|e| e.1 == EventKind::Delete && e.2 == b"w/a4"));
    // The stopped node's watcher got its last call.
    let stopped = watchers[leader].1.lock().unwrap();
    assert!(
        matches!(stopped.ended, Some(Error::Stopped(_))),
        "{:?}",
        stopped.ended
    );
    assert_eq!(stopped.late_calls, 0, "no call after the last");
    assert_in_order_once(&stopped.events);
    assert_eq!(
        stopped.events[..],
        first[..stopped.events.len()],
        "a prefix of the others'"
    );
}

#[test]
fn a_watch_restarted_after_its_node_restarts_from_the_last_revision_plus_one_misses_and_repeats_nothing() {
    let mut c = Cluster::start(3);
    let leader = c.wait_for_leader();
    let f = c.follower_of(leader);
    let (_, reference) = watch(c.node(leader), b"r/", 0);
    let (_, before) = watch(c.node(f), b"r/", 0);
    put_all(c.node(leader), (0..10).map(|i| format!("r/{i}")));
    wait_until("the follower applies", || {
        before.lock().unwrap().events.len() == 10
    });
    let last = before.lock().unwrap().events.last().unwrap().0;
    c.stop(f);
    put_all(c.node(leader), (10..25).map(|i| format!("r/{i}")));
    c.restart(f);
    let (_, after) = watch(c.node(f), b"r/", last + 1);
    put_all(c.node(leader), (25..30).map(|i| format!("r/{i}")));
    wait_until("the restarted node catches up", || {
        after.lock().unwrap().events.len() == 20
    });
    let mut joined = before.lock().unwrap().events.clone();
    joined.extend(after.lock().unwrap().events.iter().cloned());
    wait_until("the leader delivers all", || {
        reference.lock().unwrap().events.len() == 30
    });
    assert_eq!(joined, reference.lock().unwrap().events, "no gap, no repeat");
}

#[test]
fn a_watch_from_before_the_history_kept_is_compacted_and_unwatch_ends_the_calls() {
    let c = Cluster::start_tweaked(1, |mut o| {
        o.history_revisions = 8;
        o
    });
    c.wait_for_leader();
    let n = c.node(0);
    put_all(n, (0..40).map(|i| format!("h/{i}")));
    let cb = |_: WatchUpdate<'_>| {};
    assert!(matches!(n.watch(b"h/", b"", 2, cb), Err(Error::Compacted(_))));
    let meta = n.read_meta(b"h/39").unwrap().1;
    let (id, log) = watch(n, b"h/", meta.mod_revision);
    wait_until("the last change from the history", || {
        log.lock().unwrap().events.len() == 1
    });
    n.unwatch(id).unwrap();
    assert!(matches!(n.unwatch(id), Err(Error::NotFound)));
    put_all(n, ["h/after".to_string()]);
    // A second watch sees the write: the first would have by now.
    let (_, other) = watch(n, b"h/", meta.mod_revision + 1);
    wait_until("the second watch", || other.lock().unwrap().events.len() == 1);
    assert_eq!(log.lock().unwrap().events.len(), 1, "no call after unwatch");
    assert!(log.lock().unwrap().ended.is_none(), "no last call after unwatch");
    assert!(matches!(
        n.watch(&vec![b'k'; 70_000], b"", 0, cb),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn no_call_runs_once_unwatch_returns() {
    let c = Cluster::start(1);
    c.wait_for_leader();
    let node = c.node(0);
    let calls = Arc::new(Mutex::new(0));
    let counted = calls.clone();
    let id = node
        .watch(b"s/", b"", 0, move |_| {
            *counted.lock().unwrap() += 1;
            // A slow callback: unwatch must wait for it, not return under it.
            std::thread::park_timeout(std::time::Duration::from_millis(20));
        })
        .unwrap();
    put_all(node, (0..5).map(|i| format!("s/{i}")));
    wait_until("a call", || *calls.lock().unwrap() > 0);
    node.unwatch(id).unwrap();
    let after = *calls.lock().unwrap();
    put_all(node, (5..10).map(|i| format!("s/{i}")));
    assert_eq!(*calls.lock().unwrap(), after, "no call once unwatch returned");
}
