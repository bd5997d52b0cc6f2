//! The gate on Redis commands (protocol 8): a leader proposes them only
//! once every member is known to run a release that applies them. A member
//! not heard from yet (a leader just elected, a member restarting) is
//! waited for within the call's time; only a member known to run an
//! earlier release refuses them (`tests/upgrade.rs`).

mod common;

use common::hosts::Hosts;
use floyd::{Error, RedisValue};

#[test]
fn a_redis_command_waits_for_a_member_not_heard_from_yet() {
    waits_for_the_third_member(Caller::Leader);
}

/// Forwarded by a follower, the command waits on the leader likewise.
#[test]
fn a_forwarded_redis_command_waits_for_a_member_not_heard_from_yet() {
    waits_for_the_third_member(Caller::Follower);
}

enum Caller {
    Leader,
    Follower,
}

fn waits_for_the_third_member(caller: Caller) {
    // Two of three hosts up: a leader, and nothing in the log says what
    // the third runs.
    let mut h = Hosts::start_with_hosts(3, 2);
    let mut opts = h.group_options();
    opts.leader_wait = std::time::Duration::from_secs(10);
    opts.request_timeout = std::time::Duration::from_secs(10);
    for i in 0..2 {
        h.open_group_with(i, 1, opts.clone());
    }
    let leader = h.wait_for_leader(1);
    h.write(leader, 1, b"plain", b"writes go on meanwhile");
    let at = match caller {
        Caller::Leader => leader,
        Caller::Follower => 1 - leader,
    };
    let f = h.groups[at].remove(&1).unwrap();
    let set = std::thread::spawn(move || {
        let r = f.redis(&[b"SET", b"k", b"v"]);
        (f, r)
    });
    // Before the fix this was refused at once (`Busy`): the third member's
    // release was unknown. It waits, and goes on once the member is up.
    h.open_host(2);
    h.open_group_with(2, 1, opts);
    let (f, r): (_, Result<RedisValue, Error>) = set.join().unwrap();
    assert_eq!(r.unwrap(), RedisValue::Status("OK".into()));
    assert_eq!(f.redis(&[b"GET", b"k"]).unwrap(), RedisValue::Bulk(b"v".to_vec()));
}

#[test]
fn a_redis_command_waits_no_longer_than_the_leader_wait_for_a_member_down() {
    let h = {
        let mut h = Hosts::start_with_hosts(3, 2);
        let mut opts = h.group_options();
        opts.leader_wait = std::time::Duration::from_millis(500);
        for i in 0..2 {
            h.open_group_with(i, 1, opts.clone());
        }
        h
    };
    let leader = h.wait_for_leader(1);
    match h.node(leader, 1).redis(&[b"SET", b"k", b"v"]) {
        Err(Error::Busy(why)) => assert!(why.contains("a member is down"), "{why}"),
        other => panic!("a member never heard from: {other:?}"),
    }
}
