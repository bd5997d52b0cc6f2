//! Quiet groups that hold deadlines (issue 23's leftover): a group holding
//! keys with a TTL (or leases) goes quiet like any idle group; its leader
//! is woken when the next deadline falls due, proposes the sweep that
//! expires it on every replica, and the group goes quiet again.

mod common;

use common::hosts::{counter, Hosts};
use common::metrics_text::sample;
use common::wait_until;
use floyd::RedisValue;

fn all_quiet(h: &Hosts) -> bool {
    (0..3).all(|i| counter(h, i, "quiesced_groups") == 1)
}

fn expired_on(h: &Hosts, i: usize) -> f64 {
    sample(&h.host(i).metrics(), r#"floyd_expired_keys_total{group="1"}"#)
}

#[test]
fn a_group_holding_keys_with_a_ttl_goes_quiet_and_wakes_to_expire_them() {
    let mut h = Hosts::start(3);
    for i in 0..3 {
        h.open_group(i, 1);
    }
    let leader = h.wait_for_leader(1);
    let set = |key: &[u8], ms: &[u8]| {
        let r = common::retrying(|| h.node(leader, 1).redis(&[b"SET", key, b"v", b"PX", ms]));
        assert_eq!(r.unwrap(), RedisValue::Status("OK".into()));
    };
    // Held through the whole test: before, such a group never went quiet.
    set(b"long", b"120000");
    wait_until("the group quiet on every host while it holds a deadline", || {
        all_quiet(&h)
    });
    assert!((0..3).all(|i| expired_on(&h, i) == 0.0));
    // A write wakes it; it goes quiet again, and wakes when the short TTL
    // runs out: the key is swept on every replica, by a log entry.
    set(b"short", b"4000");
    wait_until("the group quiet again", || all_quiet(&h));
    wait_until("the short key swept on every replica", || {
        (0..3).all(|i| expired_on(&h, i) == 1.0)
    });
    wait_until("the group quiet after the sweep", || all_quiet(&h));
    let node = h.node(leader, 1);
    assert_eq!(
        node.redis(&[b"EXISTS", b"short", b"long"]).unwrap(),
        RedisValue::Int(1)
    );
}
