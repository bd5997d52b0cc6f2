//! Linearizable reads by ReadIndex (issue 11, item 1) and by lease (item 2)
//! on live clusters: reads write nothing to the log, see every acknowledged
//! write from every node, and a leader cut off from its majority never
//! answers a stale value.

mod common;

use common::{wait_until, Cluster};
use floyd::Error;
use std::time::Duration;

#[test]
fn section6_4_reads_append_nothing_to_the_log() {
    let c = Cluster::start(3);
    let leader = c.wait_for_leader();
    c.write_retrying(leader, b"k", b"v");
    let f = c.follower_of(leader);
    c.wait_caught_up(f, leader);
    let before = c.node(leader).server_status().last_log_index;
    for i in 0..200 {
        let via = if i % 2 == 0 { leader } else { f };
        assert_eq!(c.node(via).read(b"k").unwrap(), b"v");
    }
    assert!(matches!(c.node(f).read(b"missing"), Err(Error::NotFound)));
    assert_eq!(
        c.node(leader).server_status().last_log_index,
        before,
        "a read appended to the log"
    );
}

#[test]
fn section6_4_a_read_from_any_node_sees_every_write_acknowledged_before_it() {
    let c = Cluster::start(3);
    c.wait_for_leader();
    for i in 0..60 {
        let (w, r) = (i % 3, (i + 1) % 3);
        let value = format!("v{i}");
        c.write_retrying(w, b"k", value.as_bytes());
        assert_eq!(
            c.node(r).read(b"k").unwrap(),
            value.as_bytes(),
            "read {i} through node {r}"
        );
    }
}

/// Check-quorum plus ReadIndex: the old leader, cut off while the majority
/// elects another and acknowledges a newer write, answers an error or the
/// newer value, never the value it had.
#[test]
fn section6_4_a_partitioned_leader_never_returns_a_value_older_than_an_acknowledged_write() {
    partitioned_leader_serves_nothing_stale(&Cluster::start(3));
}

/// The same with lease reads: the old leader's lease ends before the
/// majority can elect another (its voters refuse candidates meanwhile).
#[test]
fn section6_4_1_a_partitioned_leader_never_serves_a_stale_value_on_its_lease() {
    let c = Cluster::start_tweaked(3, |mut o| {
        o.lease_reads = true;
        o
    });
    partitioned_leader_serves_nothing_stale(&c);
}

#[test]
fn section6_4_1_lease_reads_see_every_write_acknowledged_before_them() {
    let c = Cluster::start_tweaked(3, |mut o| {
        o.lease_reads = true;
        o
    });
    let leader = c.wait_for_leader();
    let before = c.node(leader).server_status().last_log_index;
    for i in 0..300 {
        let value = format!("v{i}");
        c.write_retrying(i % 3, b"k", value.as_bytes());
        assert_eq!(
            c.node((i + 1) % 3).read(b"k").unwrap(),
            value.as_bytes(),
            "read {i}"
        );
        assert_eq!(c.node(leader).read(b"k").unwrap(), value.as_bytes(), "read {i}");
    }
    // (And one per handle: the entry that opened its client session.)
    assert_eq!(
        c.node(leader).server_status().last_log_index,
        before + 300 + 3,
        "one entry per write, none for a read"
    );
}

fn partitioned_leader_serves_nothing_stale(c: &Cluster) {
    for round in 0..3 {
        let old = c.wait_for_leader();
        let before = format!("before{round}");
        c.write_retrying(old, b"k", before.as_bytes());
        assert_eq!(c.node(old).read(b"k").unwrap(), before.as_bytes());
        let others: Vec<usize> = (0..3).filter(|i| *i != old).collect();
        let cut = Duration::from_secs(4);
        for &o in &others {
            c.node(old).cut_link_for(&c.id(o), cut);
            c.node(o).cut_link_for(&c.id(old), cut);
        }
        let new = c.wait_for_leader_among(&others);
        let after = format!("after{round}");
        c.write_retrying(new, b"k", after.as_bytes());
        match c.node(old).read(b"k") {
            Ok(v) => assert_eq!(v, after.as_bytes(), "round {round}: a stale read"),
            Err(e) => assert!(
                matches!(e, Error::NoLeader(_) | Error::Timeout(_)),
                "round {round}: {e:?}"
            ),
        }
        // After the cut heals the old leader catches up and serves the new value.
        wait_until("the old leader serves the newer value", || {
            c.node(old)
                .read(b"k")
                .map(|v| v == after.as_bytes())
                .unwrap_or(false)
        });
    }
}
