//! Integration: real threads, RocksDB and TCP on loopback.

mod common;

use common::{free_ports, is_not_found, wait_until, Cluster};
use floyd::{Error, Floyd, Options};
use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

#[test]
fn three_nodes_elect_one_leader_and_serve_writes_through_any_node() {
    let c = Cluster::start(3);
    let leader = c.wait_for_leader();
    let follower = c.follower_of(leader);
    c.node(leader).write(b"from-leader", b"1").unwrap();
    c.node(follower).write(b"from-follower", b"2").unwrap();
    for (i, n) in c.running() {
        assert_eq!(n.read(b"from-leader").unwrap(), b"1", "node {i}");
        assert_eq!(n.read(b"from-follower").unwrap(), b"2", "node {i}");
        assert!(is_not_found(&n.read(b"missing")), "node {i}");
    }
    c.node(follower).delete(b"from-leader").unwrap();
    assert!(is_not_found(&c.node(leader).read(b"from-leader")));
    // Every node applies it: dirty reads converge.
    for (i, n) in c.running() {
        wait_until(&format!("node {i} applying"), || {
            is_not_found(&n.dirty_read(b"from-leader"))
        });
        assert_eq!(n.dirty_read(b"from-follower").unwrap(), b"2");
    }
    let status = c.node(leader).server_status();
    assert_eq!(status.role, "leader");
    assert!(status.commit_index >= 4, "{status}");
    assert!(status.to_string().starts_with(floyd::STATUS_HEADER));
}

#[test]
fn five_nodes_elect_one_leader() {
    let c = Cluster::start(5);
    let leader = c.wait_for_leader();
    let term = c.node(leader).server_status().term;
    for (_, n) in c.running() {
        assert_eq!(n.server_status().term, term);
    }
    c.node(c.follower_of(leader)).write(b"k", b"v").unwrap();
    assert_eq!(c.node(leader).read(b"k").unwrap(), b"v");
}

#[test]
fn killing_the_leader_elects_a_new_one_and_loses_no_acknowledged_write() {
    let mut c = Cluster::start(3);
    let old = c.wait_for_leader();
    for i in 0..50u32 {
        c.node(old)
            .write(format!("k{i}").as_bytes(), &i.to_be_bytes())
            .unwrap();
    }
    let old_term = c.node(old).server_status().term;
    c.stop(old);
    let new = c.wait_for_leader();
    assert_ne!(new, old);
    assert!(c.node(new).server_status().term > old_term);
    for i in 0..50u32 {
        assert_eq!(
            c.node(new).read(format!("k{i}").as_bytes()).unwrap(),
            i.to_be_bytes()
        );
    }
    c.write_retrying(c.follower_of(new), b"after", b"failover");
    c.restart(old);
    c.wait_caught_up(old, new);
    assert_eq!(c.node(old).dirty_read(b"after").unwrap(), b"failover");
}

#[test]
fn restarting_every_node_brings_all_data_back() {
    let mut c = Cluster::start(3);
    let leader = c.wait_for_leader();
    for i in 0..30u32 {
        c.node(leader)
            .write(format!("k{i}").as_bytes(), format!("v{i}").as_bytes())
            .unwrap();
    }
    let term = c.node(leader).server_status().term;
    for i in 0..3 {
        c.stop(i);
    }
    for i in 0..3 {
        c.restart(i);
    }
    let leader = c.wait_for_leader();
    assert!(
        c.node(leader).server_status().term > term,
        "terms never go backwards"
    );
    for i in 0..30u32 {
        assert_eq!(
            c.node(leader).read(format!("k{i}").as_bytes()).unwrap(),
            format!("v{i}").as_bytes()
        );
    }
}

#[test]
fn a_node_restarted_with_a_stale_log_catches_up() {
    let mut c = Cluster::start(3);
    let leader = c.wait_for_leader();
    let lagging = c.follower_of(leader);
    c.node(leader).write(b"before", b"1").unwrap();
    c.stop(lagging);
    for i in 0..200u32 {
        c.node(leader).write(format!("k{i}").as_bytes(), b"x").unwrap();
    }
    c.restart(lagging);
    c.wait_caught_up(lagging, leader);
    for i in (0..200u32).step_by(17) {
        assert_eq!(
            c.node(lagging).dirty_read(format!("k{i}").as_bytes()).unwrap(),
            b"x"
        );
    }
}

#[test]
fn concurrent_writers_are_all_acknowledged_and_applied() {
    let c = Arc::new(Cluster::start(3));
    let leader = c.wait_for_leader();
    let follower = c.follower_of(leader);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let c = c.clone();
            std::thread::spawn(move || {
                let via = if t % 2 == 0 { leader } else { follower };
                for i in 0..100u32 {
                    if let Err(e) = c
                        .node(via)
                        .write(format!("t{t}-{i}").as_bytes(), &i.to_le_bytes())
                    {
                        for (_, n) in c.running() {
                            eprintln!("{}", n.server_status());
                        }
                        panic!("thread {t} via {via} write {i}: {e}");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for t in 0..8 {
        for i in (0..100u32).step_by(9) {
            assert_eq!(
                c.node(leader).read(format!("t{t}-{i}").as_bytes()).unwrap(),
                i.to_le_bytes()
            );
        }
    }
}

#[test]
fn without_a_quorum_calls_fail_with_no_leader_after_a_bounded_wait() {
    let ports = free_ports(3);
    let members = ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let dir = tempfile::tempdir().unwrap();
    let mut o = Options::new(&members, "127.0.0.1", ports[0], dir.path());
    o.heartbeat_us = 20_000;
    o.check_leader_us = 200_000;
    o.leader_wait = Duration::from_millis(500);
    let lonely = Floyd::open(o).unwrap();
    assert!(matches!(lonely.write(b"k", b"v"), Err(Error::NoLeader(_))));
    assert!(!lonely.has_leader());
    assert!(is_not_found(&lonely.dirty_read(b"k")));
}

#[test]
fn single_mode_node_leads_itself() {
    let port = free_ports(1)[0];
    let dir = tempfile::tempdir().unwrap();
    let member = format!("127.0.0.1:{port}");
    let f = Floyd::open(Options::new(&member, "127.0.0.1", port, dir.path())).unwrap();
    f.write(b"solo", b"yes").unwrap();
    assert!(f.is_leader());
    assert_eq!(f.read(b"solo").unwrap(), b"yes");
    f.close();
    assert!(matches!(f.write(b"solo", b"no"), Err(Error::Stopped(_))));
}

#[test]
fn garbage_on_the_rpc_port_is_refused_and_the_cluster_keeps_working() {
    let c = Cluster::start(3);
    let leader = c.wait_for_leader();
    for junk in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0, 0, 0, 5, 1, 2, 3, 4, 5],
        &[0xff; 64],
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", c.ports[leader])).unwrap();
        let _ = s.write_all(junk);
    }
    c.node(c.follower_of(leader)).write(b"still", b"fine").unwrap();
    assert_eq!(c.node(leader).read(b"still").unwrap(), b"fine");
}

#[test]
fn bad_options_and_busy_ports_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bad = Floyd::open(Options::new("not-an-address", "127.0.0.1", 1, dir.path()));
    assert!(matches!(bad, Err(Error::InvalidArgument(_))));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let member = format!("127.0.0.1:{port}");
    let busy = Floyd::open(Options::new(&member, "127.0.0.1", port, dir.path()));
    assert!(matches!(busy, Err(Error::Io(_))), "{:?}", busy.err());
    let p = free_ports(1)[0];
    let unwritable = Floyd::open(Options::new(
        &format!("127.0.0.1:{p}"),
        "127.0.0.1",
        p,
        "/proc/floyd-data",
    ));
    assert!(matches!(unwritable, Err(Error::Io(_))), "{:?}", unwritable.err());
    let empty_key = {
        let p = free_ports(1)[0];
        let f = Floyd::open(Options::new(
            &format!("127.0.0.1:{p}"),
            "127.0.0.1",
            p,
            dir.path().join("x"),
        ))
        .unwrap();
        f.write(b"", b"v")
    };
    assert!(matches!(empty_key, Err(Error::InvalidArgument(_))));
}

#[test]
fn the_largest_value_travels_through_a_follower_and_back() {
    let c = Cluster::start(3);
    let leader = c.wait_for_leader();
    let follower = c.follower_of(leader);
    let big: Vec<u8> = (0..floyd::options::MAX_VALUE_BYTES)
        .map(|i| (i % 251) as u8)
        .collect();
    c.node(follower).write(b"big", &big).unwrap();
    assert!(c.node(leader).read(b"big").unwrap() == big);
    assert!(c.node(follower).read(b"big").unwrap() == big);
    let too_big = vec![0u8; floyd::options::MAX_VALUE_BYTES + 1];
    assert!(matches!(
        c.node(follower).write(b"big", &too_big),
        Err(Error::InvalidArgument(_))
    ));
}
