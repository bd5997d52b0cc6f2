//! The async calls (issue 9, item 2): every accepted command is answered
//! exactly once, never on the submitting thread, by its deadline or at close;
//! refusals are immediate and never call back; admission control bounds what
//! is in flight.

mod common;

use common::{Cluster, DEADLINE};
use crossbeam_channel::{unbounded, Receiver, Sender};
use floyd::{Error, Floyd, Options};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::ThreadId;
use std::time::Duration;

type Outcome = (usize, Result<(), Error>, ThreadId);

fn write_many(node: &Floyd, prefix: &str, n: usize, tx: &Sender<Outcome>) {
    for i in 0..n {
        let tx = tx.clone();
        let key = format!("{prefix}-{i}");
        node.write_async(key.as_bytes(), key.as_bytes(), move |r| {
            let _ = tx.send((i, r, std::thread::current().id()));
        })
        .expect("accepted");
    }
}

/// Collects `n` outcomes; panics on a duplicate answer or a missing one.
fn collect(rx: &Receiver<Outcome>, n: usize) -> Vec<Outcome> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    while out.len() < n {
        let o = rx.recv_timeout(DEADLINE).expect("every command is answered");
        assert!(seen.insert(o.0), "command {} answered twice", o.0);
        out.push(o);
    }
    assert!(
        rx.recv_timeout(Duration::from_millis(50)).is_err(),
        "no extra answers"
    );
    out
}

#[test]
fn async_writes_through_the_leader_and_a_follower_are_all_applied_and_answered_once() {
    let c = Cluster::start(3);
    let leader = c.wait_for_leader();
    c.write_retrying(leader, b"warm", b"up");
    let follower = c.follower_of(leader);
    let me = std::thread::current().id();
    for (via, prefix) in [(leader, "l"), (follower, "f")] {
        let (tx, rx) = unbounded();
        write_many(c.node(via), prefix, 2000, &tx);
        for (i, r, thread) in collect(&rx, 2000) {
            r.unwrap_or_else(|e| panic!("write {prefix}-{i}: {e}"));
            assert_ne!(thread, me, "a completion ran on the submitting thread");
        }
    }
    assert_eq!(c.node(leader).async_in_flight(), 0);
    // Read back asynchronously from every node: each sees every write.
    for (_, node) in c.running() {
        let (tx, rx) = unbounded();
        for prefix in ["l", "f"] {
            for i in (0..2000).step_by(97) {
                let key = format!("{prefix}-{i}");
                let tx = tx.clone();
                let want = key.clone();
                node.read_async(key.as_bytes(), move |r| {
                    let _ = tx.send(r.map(|v| v == want.as_bytes()));
                })
                .unwrap();
            }
        }
        drop(tx);
        let answers: Vec<_> = rx.iter().collect();
        assert_eq!(answers.len(), 2 * 2000usize.div_ceil(97));
        assert!(answers.iter().all(|a| a == &Ok(true)), "{answers:?}");
    }
    let (tx, rx) = unbounded();
    c.node(follower)
        .delete_async(b"l-0", move |r| {
            let _ = tx.send(r);
        })
        .unwrap();
    rx.recv_timeout(DEADLINE).unwrap().unwrap();
    assert_eq!(c.node(leader).read(b"l-0"), Err(Error::NotFound));
}

#[test]
fn refused_async_calls_return_an_error_and_never_call_back() {
    let c = Cluster::start(1);
    c.wait_for_leader();
    let n = c.node(0);
    let called = Arc::new(AtomicUsize::new(0));
    fn count<T>(called: &Arc<AtomicUsize>) -> impl FnOnce(T) + Send + 'static {
        let called = called.clone();
        move |_| {
            called.fetch_add(1, Ordering::SeqCst);
        }
    }
    assert!(matches!(
        n.write_async(b"", b"v", count(&called)),
        Err(Error::InvalidArgument(_))
    ));
    let huge = vec![0u8; floyd::options::MAX_VALUE_BYTES + 1];
    assert!(matches!(
        n.write_async(b"k", &huge, count(&called)),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        n.delete_async(b"", count(&called)),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        n.read_async(b"", count(&called)),
        Err(Error::InvalidArgument(_))
    ));
    n.close();
    assert!(matches!(
        n.write_async(b"k", b"v", count(&called)),
        Err(Error::Stopped(_))
    ));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(called.load(Ordering::SeqCst), 0);
}

/// Ports and directories for a 3-member cluster, no node started.
fn reserved() -> Cluster {
    let mut c = Cluster::start_partial(3, 0);
    c.initial = 3;
    c
}

/// A node of a 3-member cluster whose peers never start: it never has a leader.
fn leaderless(c: &Cluster, max_in_flight: usize) -> Floyd {
    let mut o: Options = c.options(0);
    o.max_async_in_flight = max_in_flight;
    o.leader_wait = Duration::from_secs(60);
    o.request_timeout = Duration::from_secs(60);
    Floyd::open(o).unwrap()
}

#[test]
fn admission_control_refuses_past_max_async_in_flight_then_admits_again() {
    let c = reserved();
    let node = leaderless(&c, 2);
    let (tx, rx) = unbounded();
    write_many(&node, "k", 2, &tx);
    let tx2 = tx.clone();
    let third = node.write_async(b"k-2", b"v", move |r| {
        let _ = tx2.send((2, r, std::thread::current().id()));
    });
    assert!(matches!(third, Err(Error::Busy(_))), "{third:?}");
    assert_eq!(node.async_in_flight(), 2);
    // Closing answers the two in flight, so there is room again (and the
    // node refuses as closed, not as full).
    node.close();
    for (_, r, _) in collect(&rx, 2) {
        assert!(matches!(r, Err(Error::Stopped(_))), "{r:?}");
    }
    assert_eq!(node.async_in_flight(), 0);
}

#[test]
fn close_answers_every_unanswered_async_command_before_it_returns() {
    let c = reserved();
    let node = leaderless(&c, 1000);
    let (tx, rx) = unbounded();
    write_many(&node, "k", 300, &tx);
    let tx2 = tx.clone();
    node.read_async(b"k-0", move |r| {
        let _ = tx2.send((300, r.map(|_| ()), std::thread::current().id()));
    })
    .unwrap();
    assert!(rx.try_recv().is_err(), "nothing can be answered without a leader");
    node.close();
    // Every answer is in the channel already: close returned after them.
    let answers: Vec<Outcome> = rx.try_iter().collect();
    assert_eq!(answers.len(), 301);
    assert!(answers
        .iter()
        .all(|(_, r, _)| matches!(r, Err(Error::Stopped(_)))));
}

#[test]
fn an_async_command_with_no_leader_is_answered_no_leader_after_leader_wait() {
    let c = reserved();
    let mut o = c.options(0);
    o.leader_wait = Duration::from_millis(300);
    let node = Floyd::open(o).unwrap();
    let (tx, rx) = unbounded();
    write_many(&node, "k", 1, &tx);
    let (_, r, _) = rx.recv_timeout(DEADLINE).unwrap();
    assert!(matches!(r, Err(Error::NoLeader(_))), "{r:?}");
}

#[test]
fn lease_reads_answered_at_once_still_call_back_on_a_library_thread() {
    // On its lease the leader knows the answer inside the call; the
    // completion must still run elsewhere (the caller may hold a lock it takes).
    let c = Cluster::start_tweaked(3, |mut o| {
        o.lease_reads = true;
        o
    });
    let leader = c.wait_for_leader();
    c.write_retrying(leader, b"k", b"v");
    let me = std::thread::current().id();
    let (tx, rx) = unbounded();
    for _ in 0..200 {
        let tx = tx.clone();
        c.node(leader)
            .read_async(b"k", move |r| {
                let _ = tx.send((r, std::thread::current().id()));
            })
            .unwrap();
    }
    for _ in 0..200 {
        let (r, thread) = rx.recv_timeout(DEADLINE).unwrap();
        assert_eq!(r.unwrap(), b"v");
        assert_ne!(thread, me, "a completion ran on the submitting thread");
    }
}

/// Issue 20, item 9: async calls racing `close` from other threads. Every
/// call that was accepted (returned `Ok`) is answered exactly once, whether
/// it got in before the close or slipped in between the close's check and
/// its sweep of the waiting callers; refused calls are never answered.
#[test]
fn async_calls_racing_close_are_each_answered_exactly_once() {
    for round in 0..5 {
        let c = reserved();
        let node = Arc::new(leaderless(&c, 1_000_000));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = unbounded::<usize>();
        let callers: Vec<_> = (0..2)
            .map(|t| {
                let (node, accepted, tx) = (node.clone(), accepted.clone(), tx.clone());
                std::thread::spawn(move || {
                    for i in 0.. {
                        let id = t * 1_000_000 + i;
                        let tx = tx.clone();
                        let key = format!("k{i}");
                        let call = match i % 2 {
                            0 => node.write_async(key.as_bytes(), b"v", move |_| {
                                let _ = tx.send(id);
                            }),
                            _ => node.read_async(key.as_bytes(), move |_| {
                                let _ = tx.send(id);
                            }),
                        };
                        match call {
                            Ok(()) => accepted.fetch_add(1, Ordering::SeqCst),
                            Err(_) => return,
                        };
                    }
                })
            })
            .collect();
        common::wait_until("the callers have calls in flight", || {
            accepted.load(Ordering::SeqCst) > 100 * (round + 1)
        });
        node.close();
        for t in callers {
            t.join().unwrap();
        }
        drop(tx);
        let accepted = accepted.load(Ordering::SeqCst);
        let mut seen = HashSet::new();
        for _ in 0..accepted {
            let id = rx
                .recv_timeout(DEADLINE)
                .expect("every accepted call is answered");
            assert!(seen.insert(id), "call {id} answered twice");
        }
        assert!(rx.try_recv().is_err(), "a refused call was answered");
    }
}

/// A completion never runs on a caller's thread inside a later floyd call
/// either (the caller may hold a lock it takes): a lease read queued until
/// its index is applied used to be served, and answered, by whichever call
/// came next on the submitting thread.
#[test]
fn no_completion_runs_on_the_submitting_thread_during_a_later_call() {
    let c = Cluster::start_tweaked(3, |mut o| {
        o.lease_reads = true;
        o
    });
    let leader = c.wait_for_leader();
    c.write_retrying(leader, b"k", b"v");
    let me = std::thread::current().id();
    let (tx, rx) = unbounded();
    let n = 3000;
    for i in 0..n {
        let tx = tx.clone();
        let key = format!("k{}", i % 50);
        let node = c.node(leader);
        if i % 3 == 0 {
            node.write_async(key.as_bytes(), b"v", move |_| {
                let _ = tx.send(std::thread::current().id());
            })
        } else {
            node.read_async(key.as_bytes(), move |_| {
                let _ = tx.send(std::thread::current().id());
            })
        }
        .unwrap();
    }
    for _ in 0..n {
        let thread = rx.recv_timeout(DEADLINE).unwrap();
        assert_ne!(thread, me, "a completion ran on the submitting thread");
    }
}
