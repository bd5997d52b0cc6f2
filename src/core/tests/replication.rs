//! Log replication (§5.3): Figure 7 repair, reordered or duplicated
//! AppendEntries, fast back-off, acknowledging only durable entries, and
//! resending lost entries.

use super::*;

// ---------------------------------------------------------------------------
// §5.3 Log replication
// ---------------------------------------------------------------------------

#[test]
fn figure_7_follower_repair() {
    // Figure 7: the leader (term 8) and followers (a)–(f).
    let leader = vec![1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    let followers = [
        vec![1, 1, 1, 4, 4, 5, 5, 6, 6],          // (a) missing one entry
        vec![1, 1, 1, 4],                         // (b) missing many
        vec![1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],    // (c) one extra uncommitted entry
        vec![1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7], // (d) extra entries of a later term
        vec![1, 1, 1, 4, 4, 4, 4],                // (e) missing and extra
        vec![1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],    // (f) divergent since index 4
    ];
    let mut logs = vec![(7, leader.clone())];
    logs.extend(followers.iter().map(|f| (7, f.clone())));
    let mut net = Net::with_logs(&logs, |c| c.max_entries_per_message = 3);
    net.elect("n1");
    assert_eq!(net.core("n1").term(), 8);
    net.tick("n1");
    net.deliver_all();

    let mut want = leader.clone();
    want.push(8); // the new leader's no-op
    let want_entries = entries_of(net.core("n1"));
    assert_eq!(terms_of(net.core("n1")), want);
    for n in 2..=7 {
        let node = &net.nodes[&id(n)];
        assert_eq!(terms_of(&node.core), want, "follower {} was not repaired", id(n));
        assert_eq!(entries_of(&node.core), want_entries);
        assert_eq!(
            node.disk.entries,
            want_entries,
            "{}'s disk disagrees with its log",
            id(n)
        );
        assert_eq!(node.core.commit(), 11);
        assert_eq!(
            node.applied,
            want_entries,
            "{} applied a different sequence",
            id(n)
        );
    }
}

#[test]
fn reordered_or_duplicated_append_entries_never_truncate() {
    let mut f = RaftCore::new(cfg("n2", 3), restored(1, &[]), 2);
    let ae1 = append(1, "n1", (0, 0), vec![ent(1, 1), ent(2, 1)], 0);
    let ae2 = append(1, "n1", (2, 1), vec![ent(3, 1)], 1);

    // ae2 overtakes ae1: refused (prev missing), nothing appended.
    f.step("n1", ae2.clone()).expect("a valid message");
    assert_eq!(f.log().last_index(), 0);
    let rd = f.ready();
    let rsp = append_responses(&rd.messages);
    assert!(rsp.len() == 1 && !rsp[0].1.success);
    assert_eq!(
        (
            rsp[0].1.last_log_index,
            rsp[0].1.conflict_term,
            rsp[0].1.rejected_prev_index
        ),
        (0, 0, 2)
    );

    f.step("n1", ae1.clone()).expect("a valid message");
    f.step("n1", ae2.clone()).expect("a valid message");
    assert_eq!(terms_of(&f), vec![1, 1, 1]);
    let rd = f.ready();
    assert_eq!(rd.entries, log_of(&[1, 1, 1]));
    let (index, term) = rd.persisted_position().unwrap();
    f.on_persisted(index, term);

    // Duplicates and stale prefixes of what we hold: acknowledged, nothing removed.
    for m in [
        ae1.clone(),
        ae2.clone(),
        append(1, "n1", (0, 0), vec![ent(1, 1)], 0),
        ae1,
    ] {
        f.step("n1", m).expect("a valid message");
        assert_eq!(terms_of(&f), vec![1, 1, 1]);
        let rd = f.ready();
        assert!(rd.truncate_from.is_none() && rd.entries.is_empty());
        assert!(rd.messages.is_empty());
        let acks = append_responses(&rd.messages_after_persist);
        assert!(acks.len() == 1 && acks[0].1.success);
    }
    assert_eq!(f.commit(), 1);
    assert_eq!(f.log().stable_index(), 3);

    // A real conflict (a later leader's different entry 3) does truncate, only the suffix.
    f.step("n3", append(2, "n3", (2, 1), vec![ent(3, 2), ent(4, 2)], 1))
        .expect("a valid message");
    assert_eq!(terms_of(&f), vec![1, 1, 2, 2]);
    let rd = f.ready();
    assert_eq!(rd.truncate_from, Some(3));
    assert_eq!(rd.entries, vec![ent(3, 2), ent(4, 2)]);
    assert!(rd.must_sync);
    assert_eq!(
        f.log().stable_index(),
        2,
        "the replaced entry is no longer durable"
    );
}

#[test]
fn follower_acknowledges_only_after_persist_and_applies_only_durable_entries() {
    let mut f = RaftCore::new(cfg("n2", 3), restored(1, &[]), 2);
    f.step("n1", append(1, "n1", (0, 0), vec![ent(1, 1), ent(2, 1)], 2))
        .expect("a valid message");
    assert_eq!(f.commit(), 2);
    assert_eq!(f.applicable_index(), 0, "committed but not yet durable here");
    assert!(f.entries_to_apply(10).is_empty());
    let rd = f.ready();
    assert!(rd.must_sync);
    assert!(rd.messages.is_empty());
    let acks = append_responses(&rd.messages_after_persist);
    assert!(acks.len() == 1 && acks[0].1.success && acks[0].1.match_index == 2);
    f.on_persisted(2, 1);
    assert_eq!(f.applicable_index(), 2);
    assert_eq!(f.entries_to_apply(10), log_of(&[1, 1]));
    f.on_applied(2);
    assert_eq!(f.status().applied, 2);
}

#[test]
fn fast_back_off_converges_in_few_round_trips() {
    // Case 1: the follower's divergent term is unknown to the leader.
    // Leader: 1..=10 term 1, 11..=100 term 3. Follower: 1..=10 term 1, 11..=60 term 2.
    let mut leader_log = vec![1; 10];
    leader_log.extend(vec![3; 90]);
    let mut follower_log = vec![1; 10];
    follower_log.extend(vec![2; 50]);
    let mut net = Net::with_logs(
        &[
            (3, leader_log.clone()),
            (3, follower_log),
            (3, leader_log.clone()),
        ],
        |c| c.max_entries_per_message = 1000,
    );
    net.isolate("n2");
    net.elect("n1");
    net.heal();
    net.tick("n1");
    net.deliver_all();
    let rejections: Vec<AppendEntriesResponse> = net
        .delivered
        .iter()
        .filter(|(from, _)| from == "n2")
        .filter_map(|(_, e)| match &e.msg {
            Message::AppendEntriesResponse(r) if !r.success => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(rejections.len(), 2, "{rejections:?}");
    // First: the follower's log is too short; it says where it ends.
    assert_eq!(
        (
            rejections[0].conflict_term,
            rejections[0].last_log_index,
            rejections[0].rejected_prev_index
        ),
        (0, 60, 100)
    );
    // Then: term 2 at 60, first held at 11; the leader has no term 2, so it jumps to 11.
    assert_eq!(
        (
            rejections[1].conflict_term,
            rejections[1].conflict_index,
            rejections[1].rejected_prev_index
        ),
        (2, 11, 60)
    );
    let mut want = leader_log.clone();
    want.push(4);
    assert_eq!(terms_of(net.core("n2")), want);
    assert_eq!(entries_of(net.core("n2")), entries_of(net.core("n1")));

    // Case 2: the leader holds the conflicting term, so it resumes after its last entry of it.
    // Leader: 1..=5 t1, 6..=8 t2, 9..=20 t4. Follower: 1..=5 t1, 6..=15 t2.
    let mut leader_log = vec![1; 5];
    leader_log.extend([2, 2, 2]);
    leader_log.extend(vec![4; 12]);
    let mut follower_log = vec![1; 5];
    follower_log.extend(vec![2; 10]);
    let mut net = Net::with_logs(
        &[
            (4, leader_log.clone()),
            (4, follower_log),
            (4, leader_log.clone()),
        ],
        |_| {},
    );
    net.isolate("n2");
    net.elect("n1");
    net.heal();
    net.tick("n1");
    net.deliver_all();
    let rejections: Vec<AppendEntriesResponse> = net
        .delivered
        .iter()
        .filter(|(from, _)| from == "n2")
        .filter_map(|(_, e)| match &e.msg {
            Message::AppendEntriesResponse(r) if !r.success => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(rejections.len(), 2, "{rejections:?}");
    assert_eq!(
        (rejections[1].conflict_term, rejections[1].conflict_index),
        (2, 6)
    );
    // The next probe is at prev = 8 (the leader's last term-2 entry), which matches.
    let probes: Vec<u64> = net
        .delivered
        .iter()
        .filter(|(from, e)| from == "n1" && e.to == "n2")
        .filter_map(|(_, e)| match &e.msg {
            Message::AppendEntries(a) => Some(a.prev_log_index),
            _ => None,
        })
        .collect();
    assert_eq!(&probes[..3], &[20, 15, 8]);
    let mut want = leader_log;
    want.push(5);
    assert_eq!(terms_of(net.core("n2")), want);
}

// ---------------------------------------------------------------------------
// Liveness after loss
// ---------------------------------------------------------------------------

#[test]
fn lost_append_entries_are_resent_by_heartbeats_without_new_proposals() {
    // A pipelined AppendEntries to n2 is lost while n3 is down; the cluster stays
    // idle. Heartbeats alone must get the entry to n2 so that it commits.
    let mut net = Net::new(3, |_| {});
    net.elect("n1");
    net.deliver_all();
    assert_eq!(
        net.core("n1").progress("n2").unwrap().state,
        ProgressState::Replicate
    );
    net.isolate("n3");
    net.propose("n1", &["lost"]);
    net.queue
        .retain(|(_, e)| !matches!(&e.msg, Message::AppendEntries(a) if !a.entries.is_empty()));
    assert_eq!(net.core("n1").commit(), 1);
    for _ in 0..5 {
        net.tick("n1");
        net.deliver_all();
    }
    assert_eq!(net.core("n2").log().last_index(), 2);
    assert_eq!(net.core("n1").commit(), 2);
    assert_eq!(net.core("n2").commit(), 2);
}

/// AppendEntries with entries to `to` waiting in the network, and their payload bytes.
fn queued_appends_to(net: &Net, to: &str) -> (usize, u64) {
    net.queue
        .iter()
        .filter(|(_, env)| env.to == to)
        .filter_map(|(_, env)| match &env.msg {
            Message::AppendEntries(m) if !m.entries.is_empty() => {
                Some(m.entries.iter().map(|e| e.payload.len() as u64).sum::<u64>())
            }
            _ => None,
        })
        .fold((0, 0), |(n, b), bytes| (n + 1, b + bytes))
}

#[test]
fn section_5_3_unacknowledged_bytes_per_follower_are_bounded() {
    // Large entries: the message window (64) alone would let the leader queue
    // 64 messages for a silent follower; the byte window stops it at 4 KiB.
    let mut net = cluster_of(3, |c| {
        c.max_bytes_per_message = 1024;
        c.max_inflight_bytes = 4096;
    });
    let big = "x".repeat(1000);
    for _ in 0..40 {
        net.propose("n1", &[big.as_str()]);
    }
    let (messages, bytes) = queued_appends_to(&net, "n2");
    assert!(messages > 0, "something was sent");
    assert!(
        bytes <= 4096 + 1000,
        "{messages} messages, {bytes} bytes queued for a silent follower"
    );
    // Acknowledged, the window reopens and the follower gets everything.
    for _ in 0..40 {
        net.deliver_all();
        net.tick("n1");
    }
    net.deliver_all();
    let last = net.core("n1").log().last_index();
    assert_eq!(net.core("n2").log().last_index(), last);
    assert_eq!(net.core("n1").commit(), last);
}

/// `n` nodes with n1 elected and everything delivered.
fn cluster_of(n: usize, tweak: impl Fn(&mut Config)) -> Net {
    let mut net = Net::new(n, tweak);
    net.elect("n1");
    net.deliver_all();
    net
}

/// Issue 21 (rolling upgrade): a leader marks its entries with the per-term
/// time rule only while the runtime says every member speaks protocol 6,
/// and followers keep the mark as the leader wrote it.
#[test]
fn entries_carry_the_time_rule_the_leader_was_told_and_followers_keep_it() {
    let mut net = Net::new(3, |_| {});
    net.elect("n1");
    let (old, _) = net.propose("n1", &["under v5"])[0];
    net.core_mut("n1").set_time_rule_2(true);
    let (new, _) = net.propose("n1", &["all v6"])[0];
    net.deliver_all();
    for n in ["n1", "n2", "n3"] {
        let log = net.core(n).log();
        assert_eq!(log.entry(old).unwrap().log_time_rule, 0, "{n}");
        assert_eq!(log.entry(new).unwrap().log_time_rule, 2, "{n}");
    }
}

/// A leader restarted while a member is down has no handshake from it; the
/// log tells it the group speaks protocol 6 while a marked entry follows
/// the latest configuration entry, and not once a configuration entry (a
/// member perhaps of the previous release) follows the marks.
#[test]
fn the_log_says_protocol_6_while_a_marked_entry_follows_the_latest_configuration() {
    let mut net = Net::new(3, |_| {});
    net.elect("n1");
    net.propose("n1", &["under v5"]);
    net.deliver_all();
    assert!(!net.core("n2").log_says_protocol_6(), "nothing marked yet");
    net.core_mut("n1").set_time_rule_2(true);
    net.propose("n1", &["all v6"]);
    net.core_mut("n1").set_time_rule_2(false);
    net.propose("n1", &["unmarked after"]);
    net.deliver_all();
    for n in ["n1", "n2", "n3"] {
        assert!(net.core(n).log_says_protocol_6(), "{n}");
    }
    net.add_node("n4", vec![], |_| {});
    net.change("n1", crate::core::ConfChange::AddServer(id(4)))
        .unwrap();
    net.deliver_all();
    for n in ["n1", "n4"] {
        assert!(
            !net.core(n).log_says_protocol_6(),
            "{n}: a configuration entry after the marks"
        );
    }
}

/// Messages delivered since the `from`th, counted by `what`.
fn delivered_since(net: &Net, from: usize, what: impl Fn(&Message) -> bool) -> usize {
    net.delivered[from..].iter().filter(|(_, e)| what(&e.msg)).count()
}

/// §5.3, commit notices: once a write commits, the leader tells each
/// follower in step with it, which takes the commit without answering, so
/// a write costs each follower one answer (for its entry). A follower that
/// missed the entry rejects the notice and is repaired.
#[test]
fn section_5_3_a_follower_takes_a_commit_notice_without_answering() {
    let mut net = cluster_of(3, |_| {});
    let notice = |m: &Message| matches!(m, Message::AppendEntries(a) if a.commit_notice);
    let answer = |m: &Message| matches!(m, Message::AppendEntriesResponse(_));
    let before = net.delivered.len();
    let (index, _) = net.propose("n1", &["x"])[0];
    net.deliver_all();
    assert_eq!(delivered_since(&net, before, notice), 2);
    assert_eq!(
        delivered_since(&net, before, answer),
        2,
        "{:?}",
        &net.delivered[before..]
    );
    for n in ["n1", "n2", "n3"] {
        assert_eq!(net.core(n).commit(), index, "{n}");
    }

    let before = net.delivered.len();
    let (index, _) = net.propose("n1", &["y"])[0];
    let mut lost = false;
    net.deliver_where(|_, e| {
        let drop =
            !lost && e.to == "n3" && matches!(&e.msg, Message::AppendEntries(a) if !a.entries.is_empty());
        lost |= drop;
        !drop
    });
    assert!(lost);
    let rejected = |m: &Message| matches!(m, Message::AppendEntriesResponse(r) if !r.success);
    assert_eq!(
        delivered_since(&net, before, rejected),
        1,
        "n3 rejects the notice"
    );
    for n in ["n1", "n2", "n3"] {
        assert_eq!(net.core(n).log().last_index(), index, "{n}");
        assert_eq!(net.core(n).commit(), index, "{n}");
    }
}
