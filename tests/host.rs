//! Many Raft groups per process (issue 21): hosts that share their threads,
//! connections, log store and key-value store among their groups.

mod common;

use common::hosts::{connect_as, counter, send, Hosts};
use common::wait_until;
use floyd::Error;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// The test that counts this process's threads runs alone (`exclusive`);
/// the others, which start hosts of their own, may run together (`shared`).
static THREAD_COUNT: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    THREAD_COUNT.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> std::sync::RwLockWriteGuard<'static, ()> {
    THREAD_COUNT.write().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn fifty_groups_on_three_hosts_elect_write_read_and_keep_apart_on_a_fixed_set_of_threads() {
    let _alone = exclusive();
    let mut h = Hosts::start(3);
    for g in 1..=2 {
        for i in 0..3 {
            h.open_group(i, g);
        }
    }
    h.wait_for_leader(1);
    h.write(0, 1, b"k", b"warm");
    let before = threads();
    for g in 3..=50 {
        for i in 0..3 {
            h.open_group(i, g);
        }
    }
    for g in 1..=50 {
        h.wait_for_leader(g);
    }
    // The hosts' threads do not grow with their groups (other tests of this
    // process may start threads meanwhile: a margin, far below 3 per group).
    assert!(
        threads() <= before + 20,
        "{before} threads before, {} after",
        threads()
    );
    for g in 1..=50 {
        let value = format!("v{g}");
        h.write((g % 3) as usize, g, b"k", value.as_bytes());
    }
    for g in 1..=50 {
        let want = format!("v{g}");
        for i in 0..3 {
            assert_eq!(
                h.node(i, g).read(b"k").unwrap(),
                want.as_bytes(),
                "group {g} host {i}"
            );
        }
    }
    let json = h.hosts[0].as_ref().unwrap().status_json();
    assert!(json.contains("\"group\":50"), "{json}");
    assert_eq!(
        h.hosts[1].as_ref().unwrap().list_groups(),
        (1..=50).collect::<Vec<_>>()
    );
}

#[test]
fn a_group_closes_reopens_and_is_dropped_while_the_others_serve() {
    let _together = shared();
    let mut h = Hosts::start(3);
    for g in [7, 8] {
        for i in 0..3 {
            h.open_group(i, g);
        }
    }
    h.wait_for_leader(7);
    h.wait_for_leader(8);
    h.write(0, 7, b"a", b"1");
    h.write(0, 8, b"a", b"2");
    // Group 7 closes on host 2 and comes back with its data.
    h.groups[2].remove(&7).unwrap().close();
    h.write(1, 8, b"b", b"while 7 is closed on host 2");
    let host = h.hosts[2].as_ref().unwrap();
    assert!(
        matches!(host.drop_group(8), Err(Error::InvalidArgument(_))),
        "an open group is not dropped"
    );
    h.open_group(2, 7);
    wait_until("group 7 caught up on host 2", || {
        h.node(2, 7).dirty_read(b"a").is_ok_and(|v| v == b"1")
    });
    // Opening a group twice is refused.
    let again = h.hosts[2].as_ref().unwrap().open_group(7, h.group_options());
    assert!(matches!(again, Err(Error::InvalidArgument(_))));
    // Group 8 closes on host 2 and its data there is dropped.
    h.groups[2].remove(&8).unwrap().close();
    h.hosts[2].as_ref().unwrap().drop_group(8).unwrap();
    assert_eq!(h.hosts[2].as_ref().unwrap().list_groups(), vec![7]);
    h.write(0, 8, b"c", b"two of three serve");
    assert_eq!(h.node(0, 8).read(b"c").unwrap(), b"two of three serve");
    // Host 2 restarts: group 7 reopens from its data.
    h.groups[2].clear();
    h.hosts[2].take().unwrap().close();
    h.open_host(2);
    h.open_group(2, 7);
    wait_until("group 7 reopened on host 2", || {
        h.node(2, 7).dirty_read(b"a").is_ok_and(|v| v == b"1")
    });
    assert_eq!(h.node(2, 7).read(b"a").unwrap(), b"1");
}

#[test]
fn closing_a_host_stops_its_groups_and_their_handles_answer_stopped() {
    let _together = shared();
    let mut h = Hosts::start(3);
    for i in 0..3 {
        h.open_group(i, 1);
    }
    h.wait_for_leader(1);
    h.write(0, 1, b"k", b"v");
    h.hosts[0].take().unwrap().close();
    let handle = h.groups[0].get(&1).unwrap();
    assert!(
        matches!(handle.write(b"k", b"x"), Err(Error::Stopped(_))),
        "{:?}",
        handle.write(b"k", b"x")
    );
    // The two others go on.
    h.write(1, 1, b"k", b"after");
    assert_eq!(h.node(2, 1).read(b"k").unwrap(), b"after");
}

/// Issue 23, item 1: the heartbeats of awake groups and their answers
/// travel between two hosts coalesced, many groups to a frame, and keep
/// every leader in place (each group's core sees the very messages it would
/// have seen one by one).
#[test]
fn heartbeats_of_many_groups_travel_in_one_frame_per_pair_of_hosts_and_keep_every_leader() {
    let _together = shared();
    let mut h = Hosts::start(3);
    let mut opts = h.group_options();
    opts.quiesce = Some(false);
    for g in 1..=20 {
        for i in 0..3 {
            h.open_group_with(i, g, opts.clone());
        }
    }
    let leaders: Vec<(usize, u64)> = (1..=20)
        .map(|g| {
            let l = h.wait_for_leader(g);
            (l, h.node(l, g).server_status().term)
        })
        .collect();
    let frames = |h: &Hosts, i: usize| counter(h, i, "coalesced_frames");
    let start: Vec<u64> = (0..3).map(|i| frames(&h, i)).collect();
    // Over an election timeout (10 heartbeats) of coalesced heartbeats...
    wait_until("coalesced heartbeats from every host", || {
        (0..3).all(|i| frames(&h, i) >= start[i] + 20)
    });
    for i in 0..3 {
        let (beats, frames) = (
            counter(&h, i, "coalesced_beats"),
            counter(&h, i, "coalesced_frames"),
        );
        assert!(beats > 2 * frames, "host {i}: {beats} beats in {frames} frames");
    }
    // ... no group lost its leader or changed its term.
    for (g, (l, term)) in (1..=20).zip(leaders) {
        let s = h.node(l, g).server_status();
        assert_eq!((s.role.as_str(), s.term), ("leader", term), "group {g}");
    }
}

/// Issue 23: a coalesced frame's beats are checked one by one, as frames of
/// their own would be: a beat for a group the host does not have is dropped
/// and counted, one in a member's name from another host is refused and
/// counted, and the group they named keeps its leader and term.
#[test]
fn a_forged_coalesced_heartbeat_is_dropped_and_counted_beat_by_beat() {
    let _together = shared();
    use floyd::wire::frame::Body;
    use floyd::wire::{AppendEntries, GroupBeat, Heartbeats};
    let mut h = Hosts::start(3);
    for i in 0..3 {
        h.open_group(i, 1);
    }
    let leader = h.wait_for_leader(1);
    let follower = (leader + 1) % 3;
    let term = h.node(leader, 1).server_status().term;
    let (unknown, refused) = (
        counter(&h, follower, "unknown_group_frames"),
        counter(&h, follower, "refused_messages"),
    );
    let beat = |group: u64, leader: &str, term: u64| GroupBeat {
        group_id: group,
        beat: Some(AppendEntries {
            term,
            leader: leader.to_string(),
            ..Default::default()
        }),
    };
    // From the third host, in the leader's name, a term ahead; and for a group nobody has.
    let third = 3 - leader - follower;
    let mut conn = connect_as(&h, follower, &h.id(third));
    let frame = Heartbeats {
        beats: vec![beat(1, &h.id(leader), term + 1), beat(99, &h.id(third), term)],
        answers: Vec::new(),
    };
    send(&mut conn, 0, Body::Heartbeats(frame));
    wait_until("both beats counted", || {
        counter(&h, follower, "unknown_group_frames") == unknown + 1
            && counter(&h, follower, "refused_messages") == refused + 1
    });
    let s = h.node(follower, 1).server_status();
    assert_eq!((s.term, s.leader), (term, Some(h.id(leader))));
    h.write(follower, 1, b"k", b"after");
}

/// Issue 23: the host's count of quiet groups follows closes. A quiet
/// follower closed on its host leaves quietly (its group keeps its leader),
/// and no longer counts there.
#[test]
fn closing_a_quiet_group_takes_it_out_of_the_hosts_count_of_quiet_groups() {
    let _together = shared();
    let mut h = Hosts::start(3);
    for g in 1..=2 {
        for i in 0..3 {
            h.open_group(i, g);
        }
    }
    let leader = h.wait_for_leader(1);
    let follower = (leader + 1) % 3;
    wait_until("both groups quiet on every host", || {
        (0..3).all(|i| counter(&h, i, "quiesced_groups") == 2)
    });
    h.close_group(follower, 1);
    wait_until("one quiet group left on the follower's host", || {
        counter(&h, follower, "quiesced_groups") == 1
    });
}
