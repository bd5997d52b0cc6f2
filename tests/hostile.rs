//! Issue 6, item 3: anyone who passes the handshake (the cluster id and the
//! member names are no secret) sends forged or corrupt Raft messages to a
//! live cluster. Nothing is persisted from them, no node panics or fails,
//! and the cluster goes on electing and serving.

mod common;

use common::{wait_until, Cluster};
use floyd::transport::{config_id, read_frame, write_frame, PROTOCOL_VERSION};
use floyd::wire::frame::Body;
use floyd::wire::{AppendEntries, AppendEntriesResponse, Entry, Handshake, RequestVote};
use std::net::TcpStream;
use std::time::Duration;

/// A connection to node `target` that passed the handshake as member `as_member`.
fn impostor(c: &Cluster, target: usize, as_member: &str) -> TcpStream {
    let members: Vec<String> = (0..c.ports.len()).map(|i| c.id(i)).collect();
    let mut s = TcpStream::connect(("127.0.0.1", c.ports[target])).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let hello = Handshake {
        cluster_id: "floyd".into(),
        from: as_member.to_string(),
        protocol_version: PROTOCOL_VERSION,
        max_protocol_version: floyd::transport::MAX_PROTOCOL_VERSION,
        config_id: config_id(&members),
        cluster_uid: String::new(),
    };
    write_frame(&mut s, Body::Handshake(hello)).unwrap();
    match read_frame(&mut s, 1 << 16).unwrap() {
        Body::HandshakeAck(ack) => assert!(ack.accepted, "{}", ack.reason),
        other => panic!("expected a handshake ack, got {other:?}"),
    }
    s
}

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        ..Default::default()
    }
}

/// Every kind of message no honest member sends, posing as `me` to a node
/// whose leader is `leader` at `term` with `last` entries.
fn forgeries(me: &str, leader: &str, term: u64, last: u64) -> Vec<Body> {
    let append = |term, prev: (u64, u64), entries, leader_commit| {
        Body::AppendEntries(AppendEntries {
            term,
            leader: me.to_string(),
            prev_log_index: prev.0,
            prev_log_term: prev.1,
            entries,
            leader_commit,
            read_seq: 0,
            quiesce: false,
            commit_notice: false,
        })
    };
    let ack = |match_index| {
        Body::AppendEntriesResponse(AppendEntriesResponse {
            term,
            success: true,
            from: me.to_string(),
            match_index,
            ..Default::default()
        })
    };
    vec![
        append(u64::MAX, (0, 0), vec![], 0),
        append(u64::MAX - 1, (0, 0), vec![], 0),
        append(term, (last, term), vec![], u64::MAX),
        // The same as a commit notice, which a matching follower does not answer.
        Body::AppendEntries(AppendEntries {
            term,
            leader: me.to_string(),
            prev_log_index: last,
            prev_log_term: term,
            leader_commit: u64::MAX,
            commit_notice: true,
            ..Default::default()
        }),
        append(term, (last, term), vec![entry(last + 2, term)], 0),
        append(term, (last, term), vec![entry(last + 1, term + 5)], 0),
        ack(u64::MAX),
        ack(last + 1),
        Body::RequestVote(RequestVote {
            term: u64::MAX,
            candidate: me.to_string(),
            last_log_index: u64::MAX,
            last_log_term: u64::MAX,
            pre_vote: false,
            leader_transfer: false,
        }),
        // Over `me`'s connection, but in the leader's name.
        Body::AppendEntries(AppendEntries {
            term: term + 1,
            leader: leader.to_string(),
            ..Default::default()
        }),
    ]
}

fn refusals_logged(c: &Cluster, i: usize) -> usize {
    std::fs::read_to_string(c.path(i).join("LOG"))
        .unwrap_or_default()
        .matches("refused a message")
        .count()
}

#[test]
fn forged_messages_leave_the_cluster_electing_and_serving() {
    let mut c = Cluster::start(3);
    let leader = c.wait_for_leader();
    c.write_retrying(leader, b"k", b"before");
    let leader_id = c.id(leader);
    let mut expected = Vec::new();
    for target in 0..3 {
        // Posing as a member that is neither the target nor the leader, so
        // the message in the leader's name is a mismatch.
        let me = c.id((0..3).find(|&i| i != target && i != leader).unwrap());
        let s = c.node(target).server_status();
        let bodies = forgeries(&me, &leader_id, s.term, s.last_log_index);
        // The forgeries and one vote posing as the node itself; a follower
        // ignores the two acknowledgements without judging them.
        let ignored = if target == leader { 0 } else { 2 };
        expected.push(bodies.len() + 1 - ignored);
        let mut conn = impostor(&c, target, &me);
        for body in bodies {
            write_frame(&mut conn, body).unwrap();
        }
        let mut conn = impostor(&c, target, &c.id(target));
        let vote = RequestVote {
            term: u64::MAX,
            candidate: c.id(target),
            ..Default::default()
        };
        write_frame(&mut conn, Body::RequestVote(vote)).unwrap();
    }
    for (i, &n) in expected.iter().enumerate() {
        let what = format!("node {i} to refuse {n} forgeries");
        wait_until(&what, || refusals_logged(&c, i) >= n);
    }
    for (i, n) in c.running() {
        let s = n.server_status();
        assert!(s.term < 1000, "node {i} took a forged term: {}", s.term);
        assert!(n.dirty_read(b"k").is_ok(), "node {i} failed");
    }
    // The cluster still elects: stop the leader, a new one takes over and serves.
    c.stop(leader);
    let next = c.wait_for_leader();
    c.write_retrying(next, b"k", b"after");
    c.restart(leader);
    c.wait_caught_up(leader, next);
    assert_eq!(c.node(leader).read(b"k").unwrap(), b"after");
}

/// Junk at every node's Raft port, before and after a handshake: random
/// bytes, oversized length prefixes, frames cut short and left open, random
/// protobuf, Raft frames with no handshake. Every node refuses it, says so
/// in its LOG, and goes on serving reads and writes while the cut-short
/// connections stay open.
#[test]
fn junk_on_every_raft_port_is_refused_logged_and_every_node_keeps_serving() {
    use rand::{Rng, SeedableRng};
    use std::io::Write;
    let c = Cluster::start(3);
    c.wait_for_leader();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(5);
    let mut held = Vec::new();
    let mut random = |n: usize| -> Vec<u8> { (0..n).map(|_| rng.random()).collect() };
    for target in 0..3 {
        for n in 0..50 {
            let junk: Vec<u8> = match n % 5 {
                0 => random(1 + n * 7),
                1 => [&u32::MAX.to_be_bytes()[..], &random(16)].concat(),
                2 => [&100u32.to_be_bytes()[..], &random(10)].concat(),
                3 => [&64u32.to_be_bytes()[..], &random(64)].concat(),
                _ => {
                    let mut buf = Vec::new();
                    let ae = AppendEntries {
                        leader: c.id((target + 1) % 3),
                        ..Default::default()
                    };
                    write_frame(&mut buf, Body::AppendEntries(ae)).unwrap();
                    buf
                }
            };
            let mut s = if n % 2 == 0 {
                TcpStream::connect(("127.0.0.1", c.ports[target])).unwrap()
            } else {
                impostor(&c, target, &c.id((target + 1) % 3))
            };
            let _ = s.write_all(&junk);
            if n % 5 == 2 {
                held.push(s); // cut short, left open
            }
        }
    }
    for i in 0..3 {
        let key = format!("after-junk-{i}");
        c.write_retrying(i, key.as_bytes(), b"ok");
        for j in 0..3 {
            assert_eq!(c.node(j).read(key.as_bytes()).unwrap(), b"ok", "node {j}");
        }
    }
    for i in 0..3 {
        wait_until("the refusals in the LOG", || {
            let log = std::fs::read_to_string(c.path(i).join("LOG")).unwrap_or_default();
            log.contains("connection refused") && log.contains("closing connection")
        });
    }
    drop(held);
}

/// Keeps `n` connections to `port` in the middle of a handshake: each sent
/// part of a length prefix and then one byte a second (a slowloris), so
/// none ever times out; a connection the server closes is opened again.
fn slowloris(
    port: u16,
    n: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    opened: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> std::thread::JoinHandle<()> {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    std::thread::spawn(move || {
        let open = || {
            let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
            s.set_nonblocking(true).ok()?;
            // A 1000-byte frame announced, then trickled.
            s.write_all(&[0, 0, 3, 232]).ok()?;
            Some(s)
        };
        let mut conns: Vec<Option<TcpStream>> = (0..n).map(|_| open()).collect();
        opened.store(conns.iter().flatten().count(), Ordering::Relaxed);
        let mut last_trickle = std::time::Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let trickle = last_trickle.elapsed() >= Duration::from_millis(500);
            for c in conns.iter_mut() {
                let closed = match c {
                    None => true,
                    Some(s) => {
                        let mut b = [0u8; 64];
                        let eof = matches!(s.read(&mut b), Ok(0))
                            || matches!(s.read(&mut b), Err(e) if e.kind() != std::io::ErrorKind::WouldBlock);
                        eof || (trickle && s.write_all(&[0]).is_err())
                    }
                };
                if closed {
                    *c = open();
                }
            }
            if trickle {
                last_trickle = std::time::Instant::now();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    })
}

#[test]
fn connections_stuck_in_their_handshake_cannot_lock_a_member_out() {
    let mut c = Cluster::start(3);
    let leader = c.wait_for_leader();
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    for &f in &followers {
        c.stop(f);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // More than the server's 256 at once, kept there.
    let opened = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let junk = slowloris(c.ports[leader], 300, stop.clone(), opened.clone());
    wait_until("the junk connections open", || {
        opened.load(std::sync::atomic::Ordering::Relaxed) >= 256
    });
    // The leader needs this follower's answers, which come over a connection
    // to the leader's full server, to commit anything.
    c.restart(followers[0]);
    c.write_retrying(leader, b"k", b"v");
    assert_eq!(c.node(leader).read(b"k").unwrap(), b"v");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    junk.join().unwrap();
}

fn lines_with(c: &Cluster, i: usize, text: &str) -> usize {
    std::fs::read_to_string(c.path(i).join("LOG"))
        .unwrap_or_default()
        .matches(text)
        .count()
}

/// Issue 20, item 10: a stream of refused messages (here 2,000 frames in
/// another member's name) was logged one line each: a peer could fill the
/// disk. A burst is logged, the rest counted.
#[test]
fn a_stream_of_refused_messages_is_logged_in_a_bounded_number_of_lines() {
    use std::io::Write;
    let c = Cluster::start(3);
    let leader = c.wait_for_leader();
    let target = (leader + 1) % 3;
    let me = c.id((0..3).find(|&i| i != target && i != leader).unwrap());
    let closed_before = lines_with(&c, target, "closing connection");
    let mut conn = impostor(&c, target, &me);
    let term = c.node(target).server_status().term;
    for _ in 0..2_000 {
        let forged = AppendEntries {
            term,
            leader: c.id(leader),
            ..Default::default()
        };
        write_frame(&mut conn, Body::AppendEntries(forged)).unwrap();
    }
    // Then junk: the server closes the connection once it has read (and
    // refused) every frame before it.
    let _ = conn.write_all(&[0, 0, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    wait_until("the connection to be closed", || {
        lines_with(&c, target, "closing connection") > closed_before
    });
    let logged = refusals_logged(&c, target);
    assert!(logged >= 1, "the refusals are logged");
    assert!(logged <= 25, "{logged} lines for 2,000 refused messages");
    c.write_retrying(target, b"k", b"still serving");
}

/// Issue 21: a frame for a group this host does not have (here, a node of
/// group 0 only) is dropped and logged, never acted on, whoever sends it.
#[test]
fn frames_for_a_group_the_host_does_not_have_are_dropped_and_logged() {
    use floyd::transport::encode_frame;
    use std::io::Write;
    let c = Cluster::start(3);
    let leader = c.wait_for_leader();
    let target = (leader + 1) % 3;
    let term = c.node(target).server_status().term;
    let mut conn = impostor(&c, target, &c.id(leader));
    let forged = AppendEntries {
        term: term + 5,
        leader: c.id(leader),
        ..Default::default()
    };
    let mut buf = Vec::new();
    encode_frame(77, &Body::AppendEntries(forged), &mut buf).unwrap();
    conn.write_all(&buf).unwrap();
    wait_until("the frame to be dropped", || {
        lines_with(&c, target, "dropped a frame for a group this host does not have") >= 1
    });
    let s = c.node(target).server_status();
    assert_eq!(s.term, term, "a frame of another group moved no term");
    c.write_retrying(target, b"k", b"still serving");
}
