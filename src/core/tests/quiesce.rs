//! Quiescence (`core/quiesce.rs`; CockroachDB's quiesced ranges): an idle
//! group stops ticking on every member, wakes on any activity, and a
//! follower times out a quiet leader only when the runtime says the
//! leader's host is gone. The Raft rules themselves (§5.2 elections, §6.2
//! check-quorum, §6.4 ReadIndex) hold unchanged around it.

use super::*;

const QUIET_AFTER: u32 = 3;

fn quiet_net(n: usize) -> Net {
    let mut net = Net::new(n, |c| c.quiesce_after_ticks = QUIET_AFTER);
    net.elect("n1");
    net.deliver_all();
    net
}

/// One tick on every node, then every message delivered.
fn tick_all(net: &mut Net) {
    let names: Vec<NodeId> = net.nodes.keys().cloned().collect();
    for n in &names {
        net.tick(n);
    }
    net.deliver_all();
}

/// Ticks until every node is quiet; panics if that takes too long.
fn until_quiet(net: &mut Net) {
    for _ in 0..10 * QUIET_AFTER {
        tick_all(net);
        if net.nodes.values().all(|n| n.core.is_quiesced()) {
            return;
        }
    }
    let states: Vec<_> = net
        .nodes
        .iter()
        .map(|(id, n)| (id.clone(), n.core.is_quiesced(), n.core.status()))
        .collect();
    panic!("the group never went quiet: {states:?}");
}

fn quiet(net: &Net) -> Vec<bool> {
    net.nodes.values().map(|n| n.core.is_quiesced()).collect()
}

#[test]
fn an_idle_group_goes_quiet_on_every_member_and_then_sends_nothing() {
    let mut net = quiet_net(3);
    net.propose("n1", &["a"]);
    net.deliver_all();
    until_quiet(&mut net);
    let before = net.delivered.len();
    for _ in 0..100 {
        tick_all(&mut net);
    }
    assert_eq!(net.delivered.len(), before, "a quiet group sends nothing");
    assert_eq!(net.leaders(), vec![(id(1), 1)]);
    assert_eq!(quiet(&net), vec![true; 3]);
}

#[test]
fn a_quiet_group_wakes_on_a_proposal_and_commits_it() {
    let mut net = quiet_net(3);
    until_quiet(&mut net);
    let (index, term) = net.propose("n1", &["b"])[0];
    net.deliver_all();
    for n in ["n1", "n2", "n3"] {
        assert!(net.core(n).commit() >= index, "{n} did not commit the proposal");
        assert_eq!(net.core(n).log().term(index), Some(term));
    }
    assert_eq!(quiet(&net), vec![false; 3], "the proposal woke every member");
    // And the group goes quiet again once idle.
    until_quiet(&mut net);
}

/// §5.2 under quiescence: the election timer of a quiet follower stops, so
/// however long the leader's host stays alive and silent, nobody campaigns.
#[test]
fn a_follower_of_a_quiet_group_does_not_campaign_while_the_leaders_host_lives() {
    let mut net = quiet_net(3);
    until_quiet(&mut net);
    for _ in 0..50 * net.nodes["n2"].cfg.election_ticks {
        tick_all(&mut net);
    }
    assert_eq!(net.leaders(), vec![(id(1), 1)]);
    for n in ["n2", "n3"] {
        assert_eq!(net.core(n).role(), Role::Follower);
        assert_eq!(net.core(n).term(), 1);
    }
}

/// The runtime declares the leader's host dead: its quiet followers wake,
/// forget it and elect one of themselves within two election timeouts.
#[test]
fn a_follower_of_a_quiet_group_campaigns_once_the_leaders_host_is_declared_dead() {
    let mut net = quiet_net(3);
    until_quiet(&mut net);
    net.isolate("n1");
    for n in ["n2", "n3"] {
        net.core_mut(n).peer_host_down("n1");
        assert!(!net.core(n).is_quiesced(), "{n} woke");
        assert_eq!(net.core(n).leader(), None, "{n} forgot its leader");
    }
    let limit = 2 * net.nodes["n2"].cfg.election_ticks + 2;
    for _ in 0..limit {
        for n in ["n2", "n3"] {
            net.tick(n);
        }
        net.deliver_all();
        if net.leaders().iter().any(|(l, _)| l != "n1") {
            break;
        }
    }
    let new: Vec<_> = net.leaders().into_iter().filter(|(l, _)| l != "n1").collect();
    assert_eq!(
        new.len(),
        1,
        "one new leader within two election timeouts: {new:?}"
    );
    assert!(new[0].1 > 1);
}

/// Another host going down leaves a quiet follower quiet: only its
/// leader's host matters to it.
#[test]
fn another_followers_host_going_down_leaves_a_quiet_follower_quiet() {
    let mut net = quiet_net(3);
    until_quiet(&mut net);
    net.core_mut("n2").peer_host_down("n3");
    assert!(net.core("n2").is_quiesced());
    // The leader wakes for a follower's host: check-quorum and replication see to it.
    net.core_mut("n1").peer_host_down("n3");
    assert!(!net.core("n1").is_quiesced());
}

/// A follower that missed entries keeps the group awake: the leader sees
/// it behind and never sends the quiesce heartbeat; once it catches up,
/// the group goes quiet.
#[test]
fn a_follower_that_missed_entries_does_not_let_the_group_go_quiet() {
    let mut net = quiet_net(3);
    net.blocked.insert((id(1), id(3)));
    net.propose("n1", &["x", "y"]);
    net.deliver_all();
    for _ in 0..5 * QUIET_AFTER {
        tick_all(&mut net);
        assert!(!net.core("n1").is_quiesced(), "quiet with n3 behind");
    }
    assert!(net.core("n3").log().last_index() < net.core("n1").log().last_index());
    net.heal();
    until_quiet(&mut net);
    assert_eq!(
        net.core("n3").log().last_index(),
        net.core("n1").log().last_index()
    );
}

/// A follower that cannot go quiet (here the runtime has something waiting
/// on it) answers the quiesce heartbeat with `wake`, and the leader wakes:
/// the group goes quiet only together.
#[test]
fn a_follower_that_cannot_go_quiet_wakes_its_leader() {
    let mut net = quiet_net(3);
    net.core_mut("n3").set_quiesce_allowed(false);
    let mut quiesce_beats = 0;
    for _ in 0..10 * QUIET_AFTER {
        let names: Vec<NodeId> = net.nodes.keys().cloned().collect();
        for n in &names {
            net.tick(n);
        }
        net.deliver_where(|_, env| {
            quiesce_beats += usize::from(matches!(&env.msg, Message::AppendEntries(m) if m.quiesce));
            true
        });
        assert!(!net.core("n3").is_quiesced());
        assert!(!net.core("n1").is_quiesced(), "n3's answer woke the leader");
    }
    assert!(quiesce_beats > 0, "the leader did try");
    net.core_mut("n3").set_quiesce_allowed(true);
    until_quiet(&mut net);
}

/// §6.4: a ReadIndex round waiting for its quorum keeps the leader awake,
/// and a read on a quiet leader wakes it and is confirmed by a round.
#[test]
fn quiescence_never_hides_a_pending_read_index() {
    let mut net = quiet_net(3);
    net.propose("n1", &["a"]);
    net.deliver_all();
    // A round that cannot complete: both followers unreachable.
    net.blocked.insert((id(1), id(2)));
    net.blocked.insert((id(1), id(3)));
    net.core_mut("n1").read_index(7, 0);
    net.flush("n1");
    // (Fewer ticks than an election timeout: check-quorum would depose it.)
    for _ in 0..2 * QUIET_AFTER {
        tick_all(&mut net);
        assert!(!net.core("n1").is_quiesced(), "quiet with a read pending");
    }
    net.heal();
    until_quiet(&mut net);
    assert!(
        net.nodes["n1"].reads.iter().any(|r| r.ctx == 7),
        "{:?} {:?}",
        net.nodes["n1"].reads,
        net.nodes["n1"].read_failures
    );
    // A read on the quiet leader wakes it; its round confirms it.
    net.core_mut("n1").read_index(8, 0);
    assert!(!net.core("n1").is_quiesced());
    net.deliver_all();
    assert!(net.nodes["n1"].reads.iter().any(|r| r.ctx == 8));
}

/// A follower's read wakes the quiet group through its request to the leader.
#[test]
fn a_read_on_a_quiet_follower_is_served_through_its_leader() {
    let mut net = quiet_net(3);
    until_quiet(&mut net);
    net.core_mut("n2").read_index(9, 0);
    net.deliver_all();
    assert!(net.nodes["n2"].reads.iter().any(|r| r.ctx == 9));
    assert!(net.nodes["n2"].read_failures.is_empty());
}

/// §6.2 (check-quorum) is untouched for an active group: a leader cut off
/// from its followers steps down after an election timeout, quiescence on.
#[test]
fn check_quorum_still_steps_down_a_partitioned_leader_of_an_active_group() {
    let mut net = quiet_net(3);
    net.isolate("n1");
    net.propose("n1", &["lost"]);
    let limit = 2 * net.nodes["n1"].cfg.election_ticks + 1;
    for _ in 0..limit {
        net.tick("n1");
        net.deliver_all();
    }
    assert_eq!(net.core("n1").role(), Role::Follower);
    assert!(!net.core("n1").is_quiesced());
}

/// A lost quiesce heartbeat leaves a follower awake and its leader quiet:
/// the follower asks the leader to wake after two silent heartbeats, long
/// before its election timeout, and the group goes quiet together later.
#[test]
fn a_lost_quiesce_heartbeat_is_repaired_before_any_election() {
    let mut net = quiet_net(3);
    let mut dropped = false;
    for _ in 0..10 * QUIET_AFTER {
        let names: Vec<NodeId> = net.nodes.keys().cloned().collect();
        for n in &names {
            net.tick(n);
        }
        net.deliver_where(|from, env| {
            let quiesce_to_n3 =
                from == "n1" && env.to == "n3" && matches!(&env.msg, Message::AppendEntries(m) if m.quiesce);
            dropped |= quiesce_to_n3;
            !quiesce_to_n3
        });
        if dropped {
            break;
        }
    }
    assert!(dropped && net.core("n1").is_quiesced() && !net.core("n3").is_quiesced());
    for _ in 0..net.nodes["n3"].cfg.election_ticks {
        tick_all(&mut net);
    }
    assert_eq!(net.leaders(), vec![(id(1), 1)], "no election");
    until_quiet(&mut net);
}

/// A candidate's request (here a pre-vote from a node that missed the
/// group's traffic) wakes a quiet follower, which refuses it while its
/// leader lives (§9.6) and wakes the leader, so no election follows.
#[test]
fn a_stray_vote_request_wakes_the_group_without_an_election() {
    let mut net = quiet_net(3);
    until_quiet(&mut net);
    let last = net.core("n2").log().last_index();
    let pre_vote = vote_request(2, &id(3), (last, 1), true);
    net.core_mut("n2").step("n3", pre_vote).unwrap();
    net.flush("n2");
    let granted = net
        .queue
        .iter()
        .any(|(_, env)| matches!(&env.msg, Message::RequestVoteResponse(r) if r.granted));
    assert!(!granted);
    assert!(!net.core("n2").is_quiesced());
    net.deliver_all();
    assert!(!net.core("n1").is_quiesced(), "the follower woke its leader");
    for _ in 0..2 * net.nodes["n2"].cfg.election_ticks {
        tick_all(&mut net);
    }
    assert_eq!(net.leaders(), vec![(id(1), 1)]);
}

/// The runtime's veto: while it has something waiting, the leader stays awake.
#[test]
fn the_runtime_can_keep_a_group_awake() {
    let mut net = quiet_net(3);
    net.core_mut("n1").set_quiesce_allowed(false);
    for _ in 0..5 * QUIET_AFTER {
        tick_all(&mut net);
    }
    assert!(!net.core("n1").is_quiesced());
    net.core_mut("n1").set_quiesce_allowed(true);
    until_quiet(&mut net);
}

/// §6.4.1: a quiet leader serves no read from its lease (its followers
/// stopped confirming it); a sole voter still may.
#[test]
fn a_quiet_leader_serves_no_lease_read() {
    let mut net = Net::new(3, |c| {
        c.quiesce_after_ticks = QUIET_AFTER;
        c.lease_us = 1_000_000_000;
    });
    for n in ["n1", "n2", "n3"] {
        net.core_mut(n).boot_quiet = false;
    }
    net.elect("n1");
    net.deliver_all();
    tick_all(&mut net);
    assert!(
        net.core("n1").lease_read_index(1).is_some(),
        "awake: the lease holds"
    );
    until_quiet(&mut net);
    assert_eq!(net.core("n1").lease_read_index(1), None);
}

/// After the leader's host is declared dead, the voters left campaign in
/// turn rather than at random: one of them at once, the next half an
/// election timeout later. Five members, four left: one election, in one
/// new term, within a few ticks, with no split vote.
#[test]
fn the_voters_left_by_a_dead_leaders_host_campaign_in_turn_and_elect_in_one_term() {
    let mut net = Net::new(5, |c| c.quiesce_after_ticks = QUIET_AFTER);
    net.elect("n1");
    net.deliver_all();
    until_quiet(&mut net);
    net.isolate("n1");
    let left = ["n2", "n3", "n4", "n5"];
    for n in left {
        net.core_mut(n).peer_host_down("n1");
    }
    let mut ticks = 0;
    while !net.leaders().iter().any(|(l, _)| l != "n1") {
        ticks += 1;
        assert!(ticks <= 3, "no leader within 3 ticks");
        for n in left {
            net.tick(n);
        }
        net.deliver_all();
    }
    for n in left {
        assert_eq!(net.core(n).term(), 2, "{n}: one election, one term");
    }
}
