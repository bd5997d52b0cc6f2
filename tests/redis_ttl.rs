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
