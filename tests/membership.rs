//! Membership changes on real nodes (dissertation §4): adding servers while
//! writes go on (join mode and the original Floyd's way), removing a
//! follower and the leader, restarting everyone, and servers outside the
//! configuration that must not disrupt it.

mod common;

use common::{wait_until, Cluster, DEADLINE};
use floyd::{Error, Floyd};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

fn set(ids: &[String]) -> BTreeSet<String> {
    ids.iter().cloned().collect()
}

/// Keys acknowledged by a writer running on `node` until `stop`.
fn write_until(node: &Floyd, stop: &AtomicBool, acked: &Mutex<Vec<String>>, tag: &str) {
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("{tag}-{i}");
        match node.write(key.as_bytes(), b"v") {
            Ok(()) => acked.lock().unwrap().push(key),
            // A change of leader or configuration: the outcome of this one
            // write may be unknown, but only acknowledged ones are checked.
            Err(e) if e.is_retryable() || matches!(e, Error::Timeout(_)) => {}
            Err(e) => panic!("write failed: {e}"),
        }
        i += 1;
    }
}

/// Retries a membership change while another is in progress or leadership moves.
fn change(what: &str, mut f: impl FnMut() -> Result<(), Error>) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match f() {
            Ok(()) => return,
            Err(e) if (e.is_retryable() || matches!(e, Error::Timeout(_))) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{what} failed: {e}"),
        }
    }
}

fn voters_of(n: &Floyd) -> BTreeSet<String> {
    set(&n.server_status().voters)
}

#[test]
fn servers_added_during_writes_hold_all_data_and_vote_and_removals_survive_a_restart() {
    let mut c = Cluster::start_partial(5, 3);
    let leader = c.wait_for_leader();
    let follower = c.follower_of(leader);
    // Node 3 joins: it starts empty and waits. Node 4 the original Floyd's
    // way: its member list names the cluster and itself.
    let mut join = c.options(3);
    join.join = true;
    c.open_with(3, join);
    let mut floyd_way = c.options(4);
    floyd_way.members.push(c.id(4));
    c.open_with(4, floyd_way);

    let stop = AtomicBool::new(false);
    let acked = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        let (leader_node, follower_node) = (c.node(leader), c.node(follower));
        s.spawn(|| write_until(leader_node, &stop, &acked, "l"));
        s.spawn(|| write_until(follower_node, &stop, &acked, "f"));
        // Added through a follower (forwarded) and through the leader.
        change("add the joining node", || c.node(follower).add_server(&c.id(3)));
        change("add the Floyd-way node", || c.node(leader).add_server(&c.id(4)));
        stop.store(true, Ordering::Relaxed);
    });
    let all: BTreeSet<String> = (0..5).map(|i| c.id(i)).collect();
    assert_eq!(voters_of(c.node(leader)), all);
    let acked = acked.into_inner().unwrap();
    assert!(!acked.is_empty());
    // No acknowledged write is lost, and the new nodes hold every one.
    let commit = c.node(leader).server_status().commit_index;
    for i in [3, 4] {
        wait_until(&format!("node {i} applying everything"), || {
            c.node(i).server_status().last_applied >= commit
        });
        assert_eq!(voters_of(c.node(i)), all, "node {i} knows the configuration");
        for key in &acked {
            assert_eq!(
                c.node(i).dirty_read(key.as_bytes()).unwrap(),
                b"v",
                "node {i} lacks {key}"
            );
        }
    }
    for key in acked.iter().step_by(97) {
        assert_eq!(c.node(3).read(key.as_bytes()).unwrap(), b"v");
    }

    // The new nodes vote: with two of the original three stopped, the
    // remaining three (one original, both new) still elect and commit.
    let keep = c.follower_of(leader);
    let stopped: Vec<usize> = (0..3).filter(|i| *i != keep).collect();
    for &i in &stopped {
        c.stop(i);
    }
    let leader = c.wait_for_leader();
    c.write_retrying(leader, b"after-two-stopped", b"ok");
    for &i in &stopped {
        c.restart(i);
    }

    // Remove a follower, then the leader.
    let leader = c.wait_for_leader();
    let removed_follower = c.follower_of(leader);
    change("remove a follower", || {
        c.node(leader).remove_server(&c.id(removed_follower))
    });
    change("remove the leader", || {
        c.node(leader).remove_server(&c.id(leader))
    });
    let members: BTreeSet<String> = all
        .iter()
        .filter(|m| **m != c.id(leader) && **m != c.id(removed_follower))
        .cloned()
        .collect();
    c.stop(removed_follower);
    c.stop(leader);
    let new_leader = c.wait_for_leader();
    assert!(members.contains(&c.id(new_leader)));
    assert_eq!(voters_of(c.node(new_leader)), members);
    c.write_retrying(new_leader, b"after-removals", b"ok");

    // Everyone restarts: the configuration is the one in the log, not the
    // member lists in the options.
    for i in 0..5 {
        c.stop(i);
    }
    for i in 0..5 {
        if members.contains(&c.id(i)) {
            c.restart(i);
        }
    }
    let leader = c.wait_for_leader();
    assert_eq!(voters_of(c.node(leader)), members);
    assert_eq!(c.node(leader).read(b"after-removals").unwrap(), b"ok");
    assert_eq!(c.node(leader).read(acked[0].as_bytes()).unwrap(), b"v");
    let mut servers = c.node(leader).get_all_servers();
    servers.sort();
    assert_eq!(set(&servers), members);
}

/// Watches the cluster for `window`: the term and leader of `watched` must not change.
fn assert_undisturbed(c: &Cluster, watched: &[usize], window: Duration, outsider: usize) {
    let leader = c.wait_for_leader_among(watched);
    let term = c.node(leader).server_status().term;
    let until = Instant::now() + window;
    while Instant::now() < until {
        for &i in watched {
            let s = c.node(i).server_status();
            assert_eq!(s.term, term, "node {i}: the term moved: {s}");
            assert_eq!(s.leader.as_deref(), Some(c.id(leader).as_str()), "node {i}: {s}");
        }
        assert!(!c.node(outsider).is_leader(), "the outsider leads");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn section_4_2_3_a_removed_server_left_running_does_not_disrupt_the_cluster() {
    let c = Cluster::start(4);
    let leader = c.wait_for_leader();
    let removed = c.follower_of(leader);
    change("remove a follower", || {
        c.node(leader).remove_server(&c.id(removed))
    });
    let rest: Vec<usize> = (0..4).filter(|i| *i != removed).collect();
    // The leader replicated to it until the change committed: it knows it
    // was removed, and that the removal committed.
    wait_until("the removed node learning its removal", || {
        let s = c.node(removed).server_status();
        !s.voters.contains(&c.id(removed)) && s.commit_index >= s.config_index
    });
    // It hears no more heartbeats: its election timeouts (300–600 ms) would
    // fire many times in this window.
    assert_undisturbed(&c, &rest, Duration::from_secs(3), removed);
    assert_eq!(
        c.node(removed).server_status().role,
        "follower",
        "it does not campaign"
    );
    c.write_retrying(leader, b"k", b"v");
    assert!(!c.node(leader).get_all_servers().contains(&c.id(removed)));
}

#[test]
fn section_4_2_3_a_server_not_yet_added_cannot_win_or_disrupt() {
    let mut c = Cluster::start_partial(4, 3);
    let leader = c.wait_for_leader();
    // The original Floyd's way, without the add_server that should follow.
    let mut o = c.options(3);
    o.members.push(c.id(3));
    c.open_with(3, o);
    assert_undisturbed(&c, &[0, 1, 2], Duration::from_secs(2), 3);
    // An election among the members: the outsider still cannot win it.
    let mut c = c;
    c.stop(leader);
    let rest: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let new_leader = c.wait_for_leader_among(&rest);
    assert_ne!(new_leader, 3);
    assert!(!c.node(3).is_leader());
    assert_eq!(c.node(3).server_status().last_log_index, 0, "it got no entries");
    c.write_retrying(new_leader, b"k", b"v");
}

#[test]
fn bad_membership_requests_get_clear_errors() {
    let c = Cluster::start(3);
    let leader = c.wait_for_leader();
    let n = c.node(leader);
    assert!(matches!(
        n.add_server("not-an-address"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        n.remove_server("0.0.0.0:1"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(
        matches!(n.remove_server("127.0.0.1:1"), Err(Error::InvalidArgument(_))),
        "not a member"
    );
    // Adding a voter again changes nothing and succeeds.
    n.add_server(&c.id(c.follower_of(leader))).unwrap();
    assert_eq!(n.server_status().voters.len(), 3);
}

#[test]
fn the_last_voter_cannot_be_removed() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_ports(1)[0];
    let me = format!("127.0.0.1:{port}");
    let n = Floyd::open(floyd::Options::new(&me, "127.0.0.1", port, dir.path())).unwrap();
    wait_until("a leader", || n.is_leader());
    let mut refused = None;
    wait_until("an answer other than busy", || match n.remove_server(&me) {
        Err(Error::Busy(_)) => false,
        other => {
            refused = Some(other);
            true
        }
    });
    assert!(
        matches!(refused, Some(Err(Error::InvalidArgument(_)))),
        "{refused:?}"
    );
    assert_eq!(n.get_all_servers(), vec![me]);
}

#[test]
fn status_shows_the_configuration_each_peers_progress_and_locks_held() {
    let c = Cluster::start(3);
    let leader = c.wait_for_leader();
    c.write_retrying(leader, b"k", b"v");
    c.node(leader).try_lock(b"L", b"me", 60_000).unwrap();
    let all: BTreeSet<String> = (0..3).map(|i| c.id(i)).collect();
    wait_until("the leader hearing from both followers", || {
        let s = c.node(leader).server_status();
        s.peers.len() == 2
            && s.peers
                .iter()
                .all(|p| p.match_index >= s.commit_index && p.last_contact_ms.is_some())
    });
    let s = c.node(leader).server_status();
    assert_eq!(set(&s.voters), all);
    assert!(s.learners.is_empty() && s.pending_change.is_none(), "{s:?}");
    assert!(s.config_index >= 1, "the first leader's configuration entry");
    assert_eq!(s.locks_held, 1);
    let json = s.to_json();
    for field in [
        "\"voters\":[",
        "\"learners\":[]",
        "\"peers\":[{\"id\":",
        "\"locks_held\":1",
        "\"config_index\":",
    ] {
        assert!(json.contains(field), "{field} missing in {json}");
    }
    let follower = c.node(c.follower_of(leader)).server_status();
    assert!(follower.peers.is_empty(), "only the leader tracks progress");
    assert_eq!(set(&follower.voters), all);
    // The row keeps the original Floyd's shape.
    assert_eq!(s.to_string().lines().next(), Some(floyd::STATUS_HEADER));
}
