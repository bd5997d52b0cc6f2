//! A TTL's deadline (Redis commands through `Floyd::redis`) runs from no
//! earlier than the call: an entry's log time is its leader's clock when it
//! proposes it, not at the leader's last tick.

mod common;

use common::Cluster;
use floyd::RedisValue;
use std::time::{SystemTime, UNIX_EPOCH};

fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

#[test]
fn a_ttl_set_by_a_command_runs_from_no_earlier_than_the_call() {
    // Rare ticks: before the fix, an entry carried the clock of the
    // leader's last tick, up to a tick before the command came.
    let c = Cluster::start_tweaked(1, |mut o| {
        o.heartbeat_us = 300_000;
        o.check_leader_us = 1_500_000;
        o
    });
    let f = c.node(c.wait_for_leader());
    for i in 0..20 {
        let key = format!("k{i}");
        let before = wall_ms();
        let r = f
            .redis(&[b"SET", key.as_bytes(), b"v", b"PX", b"100000"])
            .unwrap();
        assert_eq!(r, RedisValue::Status("OK".into()));
        let RedisValue::Int(deadline) = f.redis(&[b"PEXPIRETIME", key.as_bytes()]).unwrap() else {
            panic!("PEXPIRETIME")
        };
        assert!(
            deadline as u64 >= before + 100_000,
            "the deadline {deadline} runs from {} ms before the call",
            before + 100_000 - deadline as u64
        );
    }
}

/// The other side, after leaders change: the log's time never runs ahead of
/// the clock, so a TTL's deadline runs from no later than the reply. A new
/// leader used to stamp its first entry with its last tick's clock; the
/// log's time stayed at the previous leader's (later) stamp and then moved
/// on by the new leader's clock from that stale reading, ahead of real time
/// by up to a tick for the whole term: two `SET lock NX PX 300` 297 ms
/// apart both took the lock (the fault harness, four groups on a host).
#[test]
fn after_leader_changes_a_ttl_runs_from_no_later_than_the_reply() {
    use common::hosts::Hosts;
    let mut h = Hosts::start(3);
    let mut opts = h.group_options();
    // Rare ticks on a shared host (a tick is half a heartbeat): the stale
    // reading was up to 100 ms old.
    opts.heartbeat_us = 200_000;
    opts.check_leader_us = 1_000_000;
    for i in 0..3 {
        h.open_group_with(i, 1, opts.clone());
    }
    for round in 0..6 {
        let leader = h.wait_for_leader(1);
        // An entry of the old leader just before the handover.
        h.write(leader, 1, b"before", format!("{round}").as_bytes());
        let next = (leader + 1) % 3;
        // (Retried: a loaded machine may time a transfer out.)
        common::wait_until("the leadership handed over", || {
            h.node(leader, 1).transfer_leader(&h.id(next)).is_ok()
        });
        let key = format!("k{round}");
        let r = h
            .node(next, 1)
            .redis(&[b"SET", key.as_bytes(), b"v", b"PX", b"100000"])
            .unwrap();
        let after = wall_ms();
        assert_eq!(r, RedisValue::Status("OK".into()));
        let RedisValue::Int(deadline) = h.node(next, 1).redis(&[b"PEXPIRETIME", key.as_bytes()]).unwrap()
        else {
            panic!("PEXPIRETIME")
        };
        // A millisecond of rounding.
        assert!(
            deadline as u64 <= after + 100_000 + 1,
            "round {round}: the deadline {deadline} runs from {} ms after the reply",
            deadline as u64 - (after + 100_000)
        );
    }
}
