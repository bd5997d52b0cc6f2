//! Exactly-once client sessions on a real cluster (issue 22, item 6;
//! dissertation §6.3): a write whose answer is lost is tried again by the
//! library under the same session and seq, and the group applies it once,
//! to the same leader or, after a failover, to the next.

mod common;

use common::{retrying, wait_until, Cluster};
use floyd::Floyd;
use std::time::Duration;

/// The key's version and the group's revision, read on `node`.
fn version_and_revision(node: &Floyd, key: &[u8]) -> (u64, u64) {
    let (_, meta) = retrying(|| node.read_meta(key)).unwrap();
    let revision = retrying(|| node.scan(b"", b"", 1)).unwrap().revision;
    (meta.version, revision)
}

fn applied_on(node: &Floyd, key: &[u8], value: &[u8]) -> bool {
    node.dirty_read(key).is_ok_and(|v| v == value)
}

/// Writes `k = 1` through follower `f`; the leader applies it and its
/// answer is lost. Once the follower applied it too, `then` breaks the way
/// to the leader. The write must still be answered: by the library's retry
/// under its session. (Before sessions it was `Timeout`, outcome unknown,
/// and a caller's retry applied the write a second time.)
fn write_whose_answer_is_lost(c: &Cluster, leader: usize, f: usize, then: impl FnOnce()) {
    c.node(leader).faults().set_drop_replies(1);
    std::thread::scope(|s| {
        let write = s.spawn(|| c.node(f).write(b"k", b"1"));
        wait_until("the write applied on the follower", || {
            applied_on(c.node(f), b"k", b"1")
        });
        then();
        write.join().unwrap().expect("the library's retry is answered");
    });
}

#[test]
fn section_6_3_a_forwarded_write_whose_reply_is_lost_is_retried_and_applied_once() {
    let c = Cluster::start(3);
    let leader = c.wait_for_leader();
    let f = c.follower_of(leader);
    retrying(|| c.node(f).write(b"k", b"0")).unwrap();
    let before = version_and_revision(c.node(leader), b"k");
    // Then the follower's connection to it breaks with the write in flight.
    write_whose_answer_is_lost(&c, leader, f, || {
        assert!(c.node(f).cut_link_for(&c.id(leader), Duration::from_millis(200)));
    });
    let after = version_and_revision(c.node(leader), b"k");
    assert_eq!(
        after,
        (before.0 + 1, before.1 + 1),
        "applied once: version and revision grew by one"
    );
    // One handle wrote (the follower's, through its retry too): one session,
    // on every replica.
    for i in 0..3 {
        wait_until("the session in every status", || {
            c.node(i).server_status().client_sessions == 1
        });
    }
    assert!(c
        .node(f)
        .server_status()
        .to_json()
        .contains("\"client_sessions\":1"));
}

#[test]
fn section_6_3_retry_after_leader_change_applies_once() {
    let mut c = Cluster::start(3);
    let leader = c.wait_for_leader();
    let f = c.follower_of(leader);
    retrying(|| c.node(f).write(b"k", b"0")).unwrap();
    let before = version_and_revision(c.node(f), b"k");
    // The leader dies with the answer unsent; the retry goes to the next
    // leader, which knows the command from the replicated session.
    write_whose_answer_is_lost(&c, leader, f, || {
        c.node(leader).close();
        let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
        c.wait_for_leader_among(&survivors);
    });
    c.stop(leader);
    let after = version_and_revision(c.node(f), b"k");
    assert_eq!(
        after,
        (before.0 + 1, before.1 + 1),
        "applied once across the failover"
    );
}

#[test]
fn section_6_3_a_handle_idle_past_its_session_opens_another() {
    let c = Cluster::start_tweaked(3, |mut o| {
        o.session_timeout = Duration::from_secs(1);
        o
    });
    let leader = c.wait_for_leader();
    let f = c.follower_of(leader);
    retrying(|| c.node(f).write(b"k", b"0")).unwrap();
    // Idle longer than the session lives: the next write opens a new one
    // rather than be refused; so does the leader's own.
    let log = |i: usize| c.node(i).server_status().last_log_index;
    let idle_from = log(leader);
    // (Time itself must pass here: there is no condition to wait on.)
    std::thread::sleep(Duration::from_millis(1_200));
    retrying(|| c.node(f).write(b"k", b"1")).unwrap();
    retrying(|| c.node(leader).write(b"k", b"2")).unwrap();
    assert_eq!(c.node(leader).read(b"k").unwrap(), b"2");
    // Two writes and the two sessions they opened.
    wait_until("four entries", || log(leader) == idle_from + 4);
}
