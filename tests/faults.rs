//! Injected faults on a live in-process cluster: a slow disk, a failing
//! disk, a busy state machine (issue 6, items 5 and 6).

mod common;

use common::{wait_until, Cluster};
use floyd::Error;
use std::time::Duration;

/// Item 6: the clock and heartbeats do not share a thread with the fsync, so
/// a leader whose fsync takes 1.5 s (five election timeouts here) stays leader.
#[test]
fn a_slow_fsync_on_the_leader_neither_stops_heartbeats_nor_forces_an_election() {
    let c = Cluster::start(3);
    let leader = c.wait_for_leader();
    c.write_retrying(leader, b"k", b"before");
    let term = c.node(leader).server_status().term;
    c.node(leader)
        .faults()
        .set_fsync_delay(Duration::from_millis(1500));
    for i in 0..3 {
        // Each write waits for the leader's own slow fsync before it is applied there.
        let value = format!("slow{i}");
        c.node(leader)
            .write(b"k", value.as_bytes())
            .expect("write on a slow leader");
    }
    c.node(leader).faults().set_fsync_delay(Duration::ZERO);
    for (i, n) in c.running() {
        let s = n.server_status();
        assert_eq!(s.term, term, "node {i} moved to a new term: an election happened");
        assert_eq!(s.leader.as_deref(), Some(c.id(leader).as_str()), "node {i}");
    }
    assert_eq!(c.node(leader).read(b"k").unwrap(), b"slow2");
}

/// Item 5: when the leader's disk fails, a command already proposed may still
/// commit on the others, so its caller learns Timeout (outcome unknown), not a
/// definite error; every later call on the failed node answers Failed, and
/// the rest of the cluster goes on.
#[test]
fn a_failed_node_answers_in_flight_commands_timeout_and_later_calls_failed() {
    let c = Cluster::start(3);
    let leader = c.wait_for_leader();
    c.write_retrying(leader, b"k", b"before");
    let f = c.node(leader);
    // Slow first, so the write is proposed and in flight when the disk fails.
    f.faults().set_fsync_delay(Duration::from_millis(300));
    let last = f.server_status().last_log_index;
    std::thread::scope(|s| {
        let writer = s.spawn(|| f.write(b"k", b"in-flight"));
        wait_until("the write to be proposed", || {
            f.server_status().last_log_index > last
        });
        f.faults().set_fail_log_writes(true);
        let outcome = writer.join().unwrap();
        assert!(
            matches!(outcome, Err(Error::Timeout(_))),
            "in-flight command got {outcome:?}"
        );
    });
    for call in [f.write(b"k", b"later"), f.delete(b"k")] {
        assert!(matches!(call, Err(Error::Failed(_))), "{call:?}");
    }
    assert!(matches!(f.read(b"k"), Err(Error::Failed(_))));
    assert!(matches!(f.dirty_read(b"k"), Err(Error::Failed(_))));
    // The two others elect a leader between them and serve.
    let other = c.follower_of(leader);
    c.write_retrying(other, b"k", b"after");
    assert_eq!(c.node(other).read(b"k").unwrap(), b"after");
}

/// Item 5: a busy state machine is waited out, not a reason to fail the node.
#[test]
fn a_busy_state_machine_is_retried_and_the_node_goes_on() {
    let c = Cluster::start(3);
    let leader = c.wait_for_leader();
    for (_, n) in c.running() {
        n.faults().set_busy_applies(3);
    }
    c.write_retrying(leader, b"k", b"v");
    assert_eq!(c.node(leader).read(b"k").unwrap(), b"v");
    for (i, _) in c.running() {
        c.wait_caught_up(i, leader);
        assert_eq!(c.node(i).dirty_read(b"k").unwrap(), b"v", "node {i}");
    }
}

/// Item 8: while a follower's link to the leader is down for a moment, a
/// forward cannot be sent; the call waits for the link (the same leader) and
/// succeeds, instead of failing with NoLeader while waiting for a new leader.
#[test]
fn a_brief_disconnect_from_the_leader_is_waited_out() {
    let c = Cluster::start(3);
    let leader = c.wait_for_leader();
    let f = c.follower_of(leader);
    c.write_retrying(f, b"k", b"before");
    let term = c.node(leader).server_status().term;
    assert!(c.node(f).cut_link_for(&c.id(leader), Duration::from_millis(600)));
    c.node(f)
        .write(b"k", b"during")
        .expect("a write through a briefly cut link");
    assert_eq!(c.node(f).read(b"k").unwrap(), b"during");
    let s = c.node(leader).server_status();
    assert_eq!((s.term, s.role.as_str()), (term, "leader"), "the leader stayed");
}
