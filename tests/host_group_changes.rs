//! Groups of hosts that change while the others write (issue 21): a
//! membership change in one group and a leader transfer in each; and
//! frames naming groups from hosts that should not send them (an unknown,
//! a mismatched or a forged group; a host that is no member): dropped,
//! logged and counted, never applied. (Failure domains: `host_failures.rs`.)

mod common;

use common::hosts::{connect_as, counter, send, Hosts};
use common::wait_until;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Runs `body` while a writer writes round after round to each of `groups`
/// (through hosts 0, 1 and 2 in turn); returns what it acknowledged and
/// its slowest write. The writer has done at least two more rounds after
/// `body` returns.
fn with_writer(
    h: &Hosts,
    groups: &[u64],
    prefix: &str,
    body: impl FnOnce(),
) -> (Vec<(u64, String)>, Duration) {
    let stop = AtomicBool::new(false);
    let rounds = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut acknowledged = Vec::new();
            let mut slowest = Duration::ZERO;
            for n in 0.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                for &g in groups {
                    let key = format!("{prefix}{n}");
                    let t = Instant::now();
                    h.write(n % 3, g, key.as_bytes(), b"v");
                    slowest = slowest.max(t.elapsed());
                    acknowledged.push((g, key));
                }
                rounds.fetch_add(1, Ordering::SeqCst);
            }
            (acknowledged, slowest)
        });
        wait_until("the writer to start", || rounds.load(Ordering::SeqCst) >= 2);
        body();
        let done = rounds.load(Ordering::SeqCst);
        wait_until("the writer to go on", || {
            rounds.load(Ordering::SeqCst) >= done + 2
        });
        stop.store(true, Ordering::SeqCst);
        writer.join().unwrap()
    })
}

/// One group changes its membership (a fourth host joins, then one of the
/// first three leaves) while five other groups on the same hosts take
/// writes without a pause; then every group hands its leadership to
/// another member, the writes still going on. No acknowledged write is lost.
#[test]
fn a_membership_change_in_one_group_and_a_leader_transfer_in_each_while_the_others_write() {
    const BUSY: [u64; 5] = [1, 2, 3, 4, 5];
    const CHANGING: u64 = 9;
    let mut h = Hosts::start(4);
    let first = [0, 1, 2];
    for i in first {
        for g in BUSY.into_iter().chain([CHANGING]) {
            h.open_group_with(i, g, h.group_options_of(&first));
        }
    }
    for g in BUSY.into_iter().chain([CHANGING]) {
        h.wait_for_leader(g);
    }
    h.write(0, CHANGING, b"k", b"before");
    let leader = h.wait_for_leader(CHANGING);
    // Host 3 waits to be added.
    let mut join = h.group_options_of(&first);
    join.join = true;
    h.open_group_with(3, CHANGING, join);

    // Host 3 joins the changing group, then host 0 leaves it.
    let (mut acknowledged, slowest) = with_writer(&h, &BUSY, "m", || {
        common::retrying(|| h.node(leader, CHANGING).add_server(&h.id(3)))
            .unwrap_or_else(|e| panic!("add host 3: {e}"));
        h.wait_applied(3, CHANGING, b"k", b"before");
        common::retrying(|| h.node(1, CHANGING).remove_server(&h.id(0)))
            .unwrap_or_else(|e| panic!("remove host 0: {e}"));
        wait_until("host 0 out of the changing group's configuration", || {
            [1, 2, 3].iter().all(|&i| {
                let s = h.node(i, CHANGING).server_status();
                s.voters == [h.id(1), h.id(2), h.id(3)] && s.pending_change.is_none()
            })
        });
    });
    assert!(
        slowest < Duration::from_secs(3),
        "a write to another group took {slowest:?} during the membership change"
    );
    h.close_group(0, CHANGING);
    h.host(0).drop_group(CHANGING).unwrap();
    h.write(3, CHANGING, b"k", b"after the change");
    for i in [1, 2, 3] {
        assert_eq!(h.read(i, CHANGING, b"k").unwrap(), b"after the change");
    }

    // A leader transfer in every group, one after the other.
    let (more, slowest) = with_writer(&h, &BUSY, "t", || {
        for g in BUSY.into_iter().chain([CHANGING]) {
            let members = h.members_open(g);
            let old = h.wait_for_leader(g);
            let target = members[(members.iter().position(|&i| i == old).unwrap() + 1) % members.len()];
            let via = *members.iter().find(|&&i| i != old && i != target).unwrap();
            common::retrying(|| h.node(via, g).transfer_leader(&h.id(target)))
                .unwrap_or_else(|e| panic!("transfer: {e}"));
            assert_eq!(h.wait_for_leader(g), target, "group {g}");
            let key = format!("led by {target}");
            h.write(target, g, key.as_bytes(), b"v");
            for &i in &members {
                assert_eq!(h.read(i, g, key.as_bytes()).unwrap(), b"v");
            }
        }
    });
    assert!(
        slowest < Duration::from_secs(3),
        "a write took {slowest:?} during the leader transfers"
    );
    acknowledged.extend(more);
    for i in first {
        for (g, key) in &acknowledged {
            assert_eq!(h.read(i, *g, key.as_bytes()).unwrap(), b"v", "group {g} {key}");
        }
    }
}

/// Group 1 on all three hosts and group 2 on hosts 0 and 1 only (host 2 is
/// no member of it), both with a leader: the hosts, group 2's leader and
/// its other member.
fn group_2_without_host_2() -> (Hosts, usize, usize) {
    let mut h = Hosts::start(3);
    for i in 0..3 {
        h.open_group(i, 1);
    }
    for i in 0..2 {
        h.open_group_with(i, 2, h.group_options_of(&[0, 1]));
    }
    h.wait_for_leader(1);
    let leader = h.wait_for_leader(2);
    (h, leader, 1 - leader)
}

/// Issue 21: frames whose group is wrong, from hosts that passed the
/// handshake. Group 1 runs on hosts 0, 1 and 2, group 2 on two of them
/// only. Sent to group 2's leader: a frame for a group it does not have; a
/// frame of group 1 labelled group 2 (an acknowledgement of an index only
/// group 1 has); and frames naming group 2 from host 2, which is no member
/// of it (answers, a vote request, a message in a member's name). Each is
/// dropped (no term moves, the leader stays, nothing is acknowledged),
/// logged, and counted in the host's status; both groups go on serving.
#[test]
fn frames_naming_an_unknown_a_mismatched_or_a_forged_group_are_dropped_logged_and_counted() {
    use floyd::wire::frame::Body;
    use floyd::wire::{AppendEntries, AppendEntriesResponse, RequestVote, RequestVoteResponse};
    let (h, leader, member) = group_2_without_host_2();
    // Group 1's log runs well past group 2's.
    for k in 0..30 {
        h.write(2, 1, format!("k{k}").as_bytes(), b"v");
    }
    h.write(member, 2, b"k", b"before");
    let one = h.node(leader, 1).server_status();
    let two = h.node(leader, 2).server_status();
    assert!(one.last_log_index > two.last_log_index + 20);
    let (unknown_before, refused_before) = (
        counter(&h, leader, "unknown_group_frames"),
        counter(&h, leader, "refused_messages"),
    );

    // A group this host does not have.
    let mut conn = connect_as(&h, leader, &h.id(2));
    let append = |leader: &str, term: u64| AppendEntries {
        term,
        leader: leader.to_string(),
        prev_log_index: two.last_log_index,
        prev_log_term: two.last_log_term,
        leader_commit: two.commit_index,
        ..Default::default()
    };
    send(&mut conn, 77, Body::AppendEntries(append(&h.id(2), two.term + 5)));
    wait_until("the frame of an unknown group to be counted", || {
        counter(&h, leader, "unknown_group_frames") == unknown_before + 1
    });

    // Group 1's acknowledgement, from a member of both, labelled group 2.
    let mut from_member = connect_as(&h, leader, &h.id(member));
    let ack = AppendEntriesResponse {
        term: two.term,
        success: true,
        from: h.id(member),
        match_index: one.last_log_index,
        last_log_index: one.last_log_index,
        ..Default::default()
    };
    send(&mut from_member, 2, Body::AppendEntriesResponse(ack));

    // Host 2, connected (it is a member of group 1), naming group 2.
    let stranger = h.id(2);
    let forged = [
        Body::RequestVoteResponse(RequestVoteResponse {
            term: two.term,
            granted: true,
            from: stranger.clone(),
            ..Default::default()
        }),
        Body::AppendEntriesResponse(AppendEntriesResponse {
            term: two.term,
            success: true,
            from: stranger.clone(),
            match_index: two.last_log_index,
            last_log_index: two.last_log_index,
            ..Default::default()
        }),
        // In the other member's name.
        Body::AppendEntries(append(&h.id(member), two.term + 5)),
    ];
    let refusals = forged.len() as u64 + 1;
    for body in forged {
        send(&mut conn, 2, body);
    }
    // A vote request of a later term from a non-member whose log is not
    // ahead: ignored (no term moves; §4.2.3), though not refused as malformed.
    let vote = RequestVote {
        term: two.term + 5,
        candidate: stranger.clone(),
        last_log_index: two.last_log_index,
        last_log_term: two.last_log_term,
        ..Default::default()
    };
    send(&mut conn, 2, Body::RequestVote(vote));
    wait_until("the refused messages to be counted", || {
        counter(&h, leader, "refused_messages") >= refused_before + refusals
    });
    wait_until("the refusals in the host's LOG", || {
        let log = h.log(leader);
        log.contains("dropped a frame for a group this host does not have")
            && log.contains("is not a member of the configuration")
            && log.contains(&format!("acknowledges index {}", one.last_log_index))
            && log.contains("as its sender, but came from")
    });

    // Nothing moved: the same leader in the same term, nothing committed
    // past what the member has.
    let after = h.node(leader, 2).server_status();
    assert_eq!(
        (after.term, after.role.as_str()),
        (two.term, "leader"),
        "{after:?}"
    );
    assert_eq!(after.commit_index, two.commit_index);
    assert_eq!(h.node(member, 2).server_status().term, two.term);
    assert_eq!(h.node(leader, 1).server_status().term, one.term);
    h.write(member, 2, b"k", b"after");
    assert_eq!(h.read(leader, 2, b"k").unwrap(), b"after");
    h.write(2, 1, b"k", b"after");
    for i in 0..3 {
        assert_eq!(h.read(i, 1, b"k").unwrap(), b"after");
    }
    assert_eq!(
        counter(&h, leader, "unknown_group_frames"),
        unknown_before + 1,
        "only the frame of group 77 names an unknown group"
    );
}

/// Known gap (issue 21, item 4: the cluster id and configuration are
/// checked per host at the handshake, not per group): a host of the cluster
/// that is no member of group 2 sends, in its own name and group 2's, a
/// well-formed AppendEntries of a later term with one entry and a commit
/// index over it. A follower hears a leader outside its configuration (it
/// may lead a configuration not received yet, §4.1), so it follows the
/// stranger, commits the entry and applies it: its copy diverges from the
/// leader's. Ignored until frames are checked per group.
#[test]
#[ignore = "known gap: a non-member host's AppendEntries for a group is heard (§4.1), see the doc comment"]
fn a_host_that_is_no_member_cannot_make_a_follower_of_a_group_apply_its_entries() {
    use floyd::wire::frame::Body;
    use floyd::wire::{command::Op, AppendEntries, Command, Entry, EntryType, Put};
    use prost::Message as _;
    let (h, _, member) = group_2_without_host_2();
    h.write(member, 2, b"k", b"before");
    h.wait_applied(member, 2, b"k", b"before");
    let s = h.node(member, 2).server_status();
    let put = Command {
        op: Some(Op::Put(Put {
            key: "k".into(),
            value: bytes::Bytes::from_static(b"forged"),
            lease: 0,
        })),
        session: None,
    };
    let entry = Entry {
        index: s.last_log_index + 1,
        term: s.term + 5,
        r#type: EntryType::EntryCommand as i32,
        payload: put.encode_to_vec().into(),
        ..Default::default()
    };
    let forged = AppendEntries {
        term: s.term + 5,
        leader: h.id(2),
        prev_log_index: s.last_log_index,
        prev_log_term: s.last_log_term,
        entries: vec![entry],
        leader_commit: s.last_log_index + 1,
        ..Default::default()
    };
    let mut conn = connect_as(&h, member, &h.id(2));
    send(&mut conn, 2, Body::AppendEntries(forged));
    wait_until("the forged frame to be refused or heard", || {
        counter(&h, member, "refused_messages") > 0 || h.node(member, 2).server_status().term != s.term
    });
    assert_eq!(
        h.node(member, 2).server_status().term,
        s.term,
        "the stranger moved the term"
    );
    assert_eq!(h.node(member, 2).dirty_read(b"k").unwrap(), b"before");
}
