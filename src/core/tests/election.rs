//! Terms (§5.1), leader election (§5.2), the election restriction (§5.4.1),
//! and pre-vote and check-quorum (dissertation §9.6).

use super::*;
use rand::seq::IndexedRandom;

// ---------------------------------------------------------------------------
// §5.1 Terms
// ---------------------------------------------------------------------------

#[test]
fn section_5_1_nodes_start_as_followers() {
    let net = Net::new(3, |_| {});
    for n in net.nodes.values() {
        let s = n.core.status();
        assert_eq!(
            (s.role, s.term, s.vote.clone(), s.leader.clone()),
            (Role::Follower, 0, None, None)
        );
        assert_eq!((s.commit, s.applied, s.last_log_index), (0, 0, 0));
    }
    // A restarted node also starts as a follower, in its persisted term, with its vote.
    let r = Restored {
        hard_state: HardState {
            term: 7,
            vote: Some(id(2)),
            commit: 2,
        },
        entries: log_of(&[1, 2, 7]),
        applied: 1,
        config: None,
        ..Default::default()
    };
    let core = RaftCore::new(cfg("n1", 3), r, 1);
    let s = core.status();
    assert_eq!(
        (s.role, s.term, s.vote, s.leader),
        (Role::Follower, 7, Some(id(2)), None)
    );
    assert_eq!(
        (s.commit, s.applied, s.last_log_index, s.stable_index),
        (2, 1, 3, 3)
    );
    assert_eq!(core.applicable_index(), 2);
    assert_eq!(core.entries_to_apply(10), vec![ent(2, 2)]);
}

#[test]
fn section_5_1_higher_term_makes_leader_candidate_and_follower_step_down() {
    // Leader: an AppendEntriesResponse of a later term deposes it.
    let mut net = Net::new(3, |_| {});
    net.elect("n1");
    assert_eq!((net.core("n1").role(), net.core("n1").term()), (Role::Leader, 1));
    let rsp = Message::AppendEntriesResponse(AppendEntriesResponse {
        term: 5,
        success: false,
        from: id(2),
        ..Default::default()
    });
    net.core_mut("n1").step("n2", rsp).expect("a valid message");
    let s = net.core("n1").status();
    assert_eq!(
        (s.role, s.term, s.vote, s.leader),
        (Role::Follower, 5, None, None)
    );
    let rd = net.core_mut("n1").ready();
    assert_eq!(rd.hard_state.map(|h| (h.term, h.vote)), Some((5, None)));
    assert!(rd.must_sync, "a new term must be fsynced");

    // Candidate: an AppendEntries of a later term makes it follow that leader.
    let mut c = RaftCore::new(
        Config {
            pre_vote: false,
            ..cfg("n2", 3)
        },
        Restored::default(),
        2,
    );
    while c.role() != Role::Candidate {
        c.tick();
    }
    assert_eq!(c.term(), 1);
    c.step("n3", append(3, "n3", (0, 0), vec![], 0))
        .expect("a valid message");
    assert_eq!((c.role(), c.term(), c.leader()), (Role::Follower, 3, Some("n3")));

    // Pre-candidate: a real RequestVote of a later term makes it a follower of that term.
    let mut p = RaftCore::new(cfg("n2", 3), Restored::default(), 3);
    while p.role() != Role::PreCandidate {
        p.tick();
    }
    assert_eq!(p.term(), 0, "a pre-vote campaign does not bump the term");
    p.step("n3", vote_request(4, "n3", (0, 0), false))
        .expect("a valid message");
    assert_eq!((p.role(), p.term()), (Role::Follower, 4));

    // Follower: even a vote response carries news of a later term.
    let mut f = RaftCore::new(cfg("n2", 3), Restored::default(), 4);
    let rsp = Message::RequestVoteResponse(RequestVoteResponse {
        term: 2,
        granted: false,
        pre_vote: false,
        from: id(3),
    });
    f.step("n3", rsp).expect("a valid message");
    assert_eq!((f.role(), f.term()), (Role::Follower, 2));
}

#[test]
fn section_5_1_stale_term_messages_are_rejected() {
    let mut f = RaftCore::new(cfg("n2", 3), restored(3, &[1, 3]), 2);
    let _ = f.ready();

    // A stale leader's AppendEntries is refused and changes nothing.
    f.step("n1", append(2, "n1", (1, 1), vec![ent(2, 2)], 2))
        .expect("a valid message");
    assert_eq!(terms_of(&f), vec![1, 3]);
    assert_eq!((f.term(), f.commit(), f.leader()), (3, 0, None));
    let rd = f.ready();
    assert!(rd.hard_state.is_none() && rd.entries.is_empty() && rd.messages_after_persist.is_empty());
    let rsp = append_responses(&rd.messages);
    assert_eq!(rsp.len(), 1);
    assert_eq!((rsp[0].0, rsp[0].1.term, rsp[0].1.success), ("n1", 3, false));

    // A stale candidate's RequestVote is refused, even with a longer log.
    f.step("n3", vote_request(2, "n3", (10, 2), false))
        .expect("a valid message");
    assert_eq!(f.status().vote, None);
    let rd = f.ready();
    assert!(rd.messages_after_persist.is_empty());
    let rsp = vote_responses(&rd.messages);
    assert_eq!(rsp.len(), 1);
    assert_eq!((rsp[0].0, rsp[0].1.term, rsp[0].1.granted), ("n3", 3, false));

    // Stale responses are ignored by a leader: elect n1 in term 1, then feed it a term-0 rejection.
    let mut net = Net::new(3, |_| {});
    net.elect("n1");
    let before = net.core("n1").status();
    let stale = Message::AppendEntriesResponse(AppendEntriesResponse {
        term: 0,
        success: false,
        from: id(2),
        rejected_prev_index: 1,
        ..Default::default()
    });
    net.core_mut("n1").step("n2", stale).expect("a valid message");
    assert_eq!(net.core("n1").status(), before);
    assert_eq!(net.core("n1").progress("n2").unwrap().match_index, 1);

    // And the stale leader learns the newer term from the rejection: n2 restarts
    // having (durably) seen term 5, then n1's heartbeat is answered with term 5.
    net.nodes.get_mut("n2").unwrap().disk.hard_state.term = 5;
    net.restart("n2");
    net.tick("n1");
    net.deliver_all();
    assert_eq!(
        (net.core("n1").role(), net.core("n1").term()),
        (Role::Follower, 5)
    );
}

// ---------------------------------------------------------------------------
// §5.2 Leader election
// ---------------------------------------------------------------------------

#[test]
fn election_safety_one_leader_per_term() {
    // Deterministic split: n1 and n2 campaign at once; n3 hears n1 first and
    // must then refuse n2 in the same term.
    let mut net = Net::new(5, |c| c.pre_vote = false);
    net.campaign("n1");
    net.campaign("n2");
    assert_eq!((net.core("n1").term(), net.core("n2").term()), (1, 1));
    net.flush_all();
    let n1_to_n3 = net
        .queue
        .iter()
        .position(|(f, e)| f == "n1" && e.to == "n3")
        .unwrap();
    let (f, e) = net.queue.remove(n1_to_n3).unwrap();
    net.deliver(f, e);
    let n2_to_n3 = net
        .queue
        .iter()
        .position(|(f, e)| f == "n2" && e.to == "n3")
        .unwrap();
    let (f, e) = net.queue.remove(n2_to_n3).unwrap();
    net.deliver(f, e);
    assert_eq!(net.core("n3").status().vote, Some(id(1)));
    let from_n3: Vec<(String, bool)> = net
        .queue
        .iter()
        .filter(|(f, _)| f == "n3")
        .filter_map(|(_, e)| match &e.msg {
            Message::RequestVoteResponse(r) => Some((e.to.clone(), r.granted)),
            _ => None,
        })
        .collect();
    assert_eq!(from_n3, vec![(id(1), true), (id(2), false)]);

    // Randomized: many delivery orders and competing timeouts, never two leaders in a term,
    // never two votes by one node in a term, and eventually a leader.
    for seed in 0..40 {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut net = Net::new(5, |c| {
            c.pre_vote = seed % 2 == 0;
            c.check_quorum = seed % 3 == 0;
        });
        let mut leaders: BTreeMap<u64, NodeId> = BTreeMap::new();
        let names: Vec<NodeId> = net.nodes.keys().cloned().collect();
        for _ in 0..3000 {
            if rng.random_bool(0.1) || !net.deliver_random(&mut rng) {
                let n = names.choose(&mut rng).unwrap().clone();
                net.tick(&n);
            }
            for (leader, term) in net.leaders() {
                let prev = leaders.entry(term).or_insert_with(|| leader.clone());
                assert_eq!(*prev, leader, "seed {seed}: two leaders in term {term}");
            }
        }
        let mut votes: BTreeMap<(NodeId, u64), NodeId> = BTreeMap::new();
        for (from, env) in &net.delivered {
            if let Message::RequestVoteResponse(r) = &env.msg {
                if r.granted && !r.pre_vote {
                    let prev = votes
                        .entry((from.clone(), r.term))
                        .or_insert_with(|| env.to.clone());
                    assert_eq!(
                        *prev, env.to,
                        "seed {seed}: {from} voted twice in term {}",
                        r.term
                    );
                }
            }
        }
        assert!(!leaders.is_empty(), "seed {seed}: no leader was ever elected");
    }
}

#[test]
fn votes_are_sent_only_after_persist() {
    // The candidate's own term and vote are durable before it asks anyone.
    let mut c = RaftCore::new(
        Config {
            pre_vote: false,
            ..cfg("n1", 3)
        },
        Restored::default(),
        1,
    );
    while c.role() != Role::Candidate {
        c.tick();
    }
    let rd = c.ready();
    assert_eq!(
        rd.hard_state,
        Some(HardState {
            term: 1,
            vote: Some(id(1)),
            commit: 0
        })
    );
    assert!(rd.must_sync && rd.term_or_vote_changed);
    assert!(rd.messages.is_empty());
    assert_eq!(rd.messages_after_persist.len(), 2);
    assert!(rd
        .messages_after_persist
        .iter()
        .all(|e| matches!(&e.msg, Message::RequestVote(r) if !r.pre_vote && r.term == 1)));

    // The voter's grant leaves only with (term, vote) persisted.
    let mut v = RaftCore::new(cfg("n2", 3), Restored::default(), 2);
    v.step("n1", vote_request(1, "n1", (0, 0), false))
        .expect("a valid message");
    let rd = v.ready();
    assert_eq!(
        rd.hard_state,
        Some(HardState {
            term: 1,
            vote: Some(id(1)),
            commit: 0
        })
    );
    assert!(rd.must_sync && rd.term_or_vote_changed);
    assert!(rd.messages.is_empty());
    let rsp = vote_responses(&rd.messages_after_persist);
    assert_eq!(rsp.len(), 1);
    assert!(rsp[0].1.granted && rsp[0].1.term == 1 && rsp[0].0 == "n1");

    // A pre-vote grant changes nothing durable and may leave at once.
    let mut p = RaftCore::new(cfg("n3", 3), Restored::default(), 3);
    p.step("n1", vote_request(1, "n1", (0, 0), true))
        .expect("a valid message");
    let rd = p.ready();
    assert!(rd.hard_state.is_none() && !rd.must_sync && rd.messages_after_persist.is_empty());
    assert!(!rd.term_or_vote_changed);
    let rsp = vote_responses(&rd.messages);
    assert!(rsp.len() == 1 && rsp[0].1.granted && rsp[0].1.pre_vote && rsp[0].1.term == 1);
    assert_eq!(p.term(), 0);
}

#[test]
fn vote_survives_restart() {
    let c = Config {
        pre_vote: false,
        ..cfg("n2", 3)
    };
    let mut disk = Restored::default();
    let mut v = RaftCore::new(c.clone(), disk.clone(), 2);
    v.step("n1", vote_request(1, "n1", (0, 0), false))
        .expect("a valid message");
    let rd = v.ready();
    persist(&mut disk, &rd);
    assert_eq!(
        disk.hard_state,
        HardState {
            term: 1,
            vote: Some(id(1)),
            commit: 0
        }
    );

    // Crash and restart from disk: still term 1, still voted for n1.
    let mut v = RaftCore::new(c.clone(), disk.clone(), 22);
    assert_eq!((v.term(), v.status().vote), (1, Some(id(1))));
    v.step("n3", vote_request(1, "n3", (5, 1), false))
        .expect("a valid message");
    let rd = v.ready();
    assert!(rd.hard_state.is_none(), "the vote must not change");
    let rsp = vote_responses(&rd.messages);
    assert!(rsp.len() == 1 && !rsp[0].1.granted && rsp[0].0 == "n3");
    // The same candidate asking again (its first answer may have been lost) is granted again.
    v.step("n1", vote_request(1, "n1", (0, 0), false))
        .expect("a valid message");
    let rd = v.ready();
    let rsp = vote_responses(&rd.messages_after_persist);
    assert!(rsp.len() == 1 && rsp[0].1.granted && rsp[0].0 == "n1");

    // A vote whose Ready was never persisted never left the node either: after a crash
    // the node may vote for someone else in that term.
    let mut fresh = Restored::default();
    let mut w = RaftCore::new(c.clone(), fresh.clone(), 3);
    w.step("n1", vote_request(1, "n1", (0, 0), false))
        .expect("a valid message");
    let lost = w.ready();
    assert!(lost.messages.is_empty(), "the grant must wait for persistence");
    let mut w = RaftCore::new(c, fresh.clone(), 33);
    w.step("n3", vote_request(1, "n3", (0, 0), false))
        .expect("a valid message");
    let rd = w.ready();
    persist(&mut fresh, &rd);
    assert_eq!(fresh.hard_state.vote, Some(id(3)));
}

// ---------------------------------------------------------------------------
// §5.4.1 Election restriction
// ---------------------------------------------------------------------------

#[test]
fn section_5_4_1_stale_log_candidate_loses_whatever_its_term() {
    // Direct: a voter whose log ends at (3, 2).
    let mut v = RaftCore::new(cfg("n1", 3), restored(2, &[1, 1, 2]), 1);
    v.step("n2", vote_request(9, "n2", (10, 1), false))
        .expect("a valid message"); // longer, but older last term
    assert_eq!(
        (v.term(), v.status().vote),
        (9, None),
        "adopts the term, refuses the vote"
    );
    v.step("n2", vote_request(9, "n2", (2, 2), false))
        .expect("a valid message"); // same last term, shorter
    assert_eq!(v.status().vote, None);
    let rd = v.ready();
    assert!(vote_responses(&rd.messages)
        .iter()
        .all(|(_, r)| !r.granted && r.term == 9));
    assert!(rd.messages_after_persist.is_empty());
    v.step("n3", vote_request(9, "n3", (3, 2), false))
        .expect("a valid message"); // as up to date: granted
    assert_eq!(v.status().vote, Some(id(3)));

    // In a cluster: n3 misses every entry and inflates its term while cut off.
    let mut net = Net::new(3, |c| {
        c.pre_vote = false;
        c.check_quorum = false;
    });
    net.elect("n1");
    net.isolate("n3");
    net.propose("n1", &["a", "b", "c"]);
    net.deliver_all();
    assert_eq!(net.core("n1").commit(), 4);
    for _ in 0..100 {
        net.tick("n3");
    }
    let t3 = net.core("n3").term();
    assert!(t3 >= 5, "n3 campaigned repeatedly: term {t3}");
    net.queue.clear();
    net.heal();
    // Its next campaign reaches everyone, with a higher term but an empty log.
    let before = t3;
    while net.core("n3").term() == before {
        net.tick("n3");
    }
    net.deliver_all();
    assert_ne!(net.core("n3").role(), Role::Leader);
    assert!(
        net.leaders().is_empty(),
        "the old leader stepped down to the higher term"
    );
    for n in ["n1", "n2", "n3"] {
        assert_eq!(net.core(n).term(), before + 1);
    }
    assert_eq!(net.core("n1").status().vote, None);
    assert_eq!(net.core("n2").status().vote, None);
    // A node with the full log wins the next term and repairs n3.
    net.elect("n2");
    net.tick("n2");
    net.deliver_all();
    assert_eq!(net.core("n2").term(), before + 2);
    assert_eq!(terms_of(net.core("n3")), vec![1, 1, 1, 1, before + 2]);
    assert_eq!(net.core("n3").commit(), 5);
    assert_eq!(entries_of(net.core("n3")), entries_of(net.core("n1")));
}

// ---------------------------------------------------------------------------
// Dissertation §9.6: pre-vote and check-quorum
// ---------------------------------------------------------------------------

/// n1 leads a 3-node cluster; n3 is cut off for `ticks` ticks while n1 and n2
/// keep exchanging heartbeats.
fn partition_n3(pre_vote: bool, ticks: usize) -> Net {
    let mut net = Net::new(3, |c| c.pre_vote = pre_vote);
    net.elect("n1");
    net.deliver_all();
    net.isolate("n3");
    for _ in 0..ticks {
        net.tick("n1");
        net.tick("n2");
        net.tick("n3");
        net.deliver_all();
    }
    net
}

#[test]
fn pre_vote_partitioned_node_does_not_inflate_term_or_depose_leader() {
    let mut net = partition_n3(true, 100);
    assert_eq!(net.core("n3").term(), 1, "pre-votes never bump the term");
    assert_eq!((net.core("n1").role(), net.core("n1").term()), (Role::Leader, 1));

    // n3 comes back while still campaigning: its pre-votes are refused (n1 and n2
    // hear a live leader), and n1's heartbeats bring it back as a follower.
    net.heal();
    net.queue.clear();
    assert_eq!(net.core("n3").role(), Role::PreCandidate);
    while net.queue.is_empty() {
        net.tick("n3");
    }
    let pre_votes = net.queue.len();
    assert_eq!(pre_votes, 2);
    assert!(net
        .queue
        .iter()
        .all(|(_, e)| matches!(&e.msg, Message::RequestVote(r) if r.pre_vote && r.term == 2)));
    net.deliver_all();
    let refusals: Vec<bool> = net.delivered[net.delivered.len() - 2..]
        .iter()
        .map(|(_, e)| matches!(&e.msg, Message::RequestVoteResponse(r) if r.pre_vote && !r.granted && r.term == 1))
        .collect();
    assert_eq!(refusals, vec![true, true]);
    assert_eq!(net.core("n3").role(), Role::Follower, "refused by a majority");
    for _ in 0..3 {
        net.tick("n1");
        net.tick("n2");
        net.deliver_all();
    }
    for n in ["n1", "n2", "n3"] {
        assert_eq!(net.core(n).term(), 1, "{n}");
        assert_eq!(net.core(n).leader(), Some("n1"), "{n}");
    }
    assert_eq!(net.core("n1").role(), Role::Leader);
    assert_eq!(net.core("n3").role(), Role::Follower);
}

#[test]
fn without_pre_vote_partitioned_node_inflates_term_and_deposes_leader() {
    // The contrast that shows the previous test can fail.
    let mut net = partition_n3(false, 100);
    let t3 = net.core("n3").term();
    assert!(t3 > 3, "n3 kept starting elections: term {t3}");
    net.heal();
    // n3's rejection of n1's next heartbeat carries its inflated term and deposes n1.
    net.tick("n1");
    net.deliver_all();
    assert_eq!(net.core("n1").role(), Role::Follower);
    assert!(net.core("n1").term() >= t3);
}

#[test]
fn check_quorum_leader_steps_down_without_majority() {
    for check_quorum in [true, false] {
        let mut net = Net::new(3, |c| c.check_quorum = check_quorum);
        net.elect("n1");
        // With one follower reachable the leader keeps its majority.
        net.isolate("n3");
        for _ in 0..50 {
            net.tick("n1");
            net.deliver_all();
        }
        assert_eq!(net.core("n1").role(), Role::Leader);
        // Alone, it steps down within two election timeouts — only with check-quorum.
        net.isolate("n1");
        for _ in 0..2 * net.nodes["n1"].cfg.election_ticks {
            net.tick("n1");
            net.deliver_all();
        }
        let s = net.core("n1").status();
        if check_quorum {
            assert_eq!((s.role, s.term, s.leader), (Role::Follower, 1, None));
            assert!(net.core_mut("n1").propose(vec![Bytes::from("x")]).is_err());
        } else {
            assert_eq!((s.role, s.term), (Role::Leader, 1));
        }
    }
}
