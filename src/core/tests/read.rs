//! Dissertation §6.4: linearizable reads by ReadIndex, without log writes.

use super::*;

fn read_at(net: &Net, node: &str, ctx: u64) -> Option<u64> {
    net.nodes[node]
        .reads
        .iter()
        .find(|r| r.ctx == ctx)
        .map(|r| r.index)
}

#[test]
fn section6_4_a_leader_serves_a_read_at_its_commit_index_once_a_quorum_answers_the_round() {
    let mut net = Net::new(3, |_| {});
    net.elect("n1");
    net.propose("n1", &["a"]);
    net.deliver_all();
    let last = net.core("n1").log().last_index();
    net.core_mut("n1").read_index(7, 0);
    net.flush("n1");
    assert_eq!(read_at(&net, "n1", 7), None, "not before the round is answered");
    // Nothing was appended for the read.
    assert_eq!(net.core("n1").log().last_index(), last);
    net.deliver_all();
    assert_eq!(read_at(&net, "n1", 7), Some(net.core("n1").commit()));
    assert_eq!(net.core("n1").log().last_index(), last);
}

#[test]
fn section6_4_one_answer_of_a_later_round_confirms_every_earlier_read() {
    let mut net = Net::new(3, |_| {});
    net.elect("n1");
    net.core_mut("n1").read_index(1, 0);
    net.core_mut("n1").read_index(2, 0);
    net.flush("n1");
    // Only n2 answers, and only to the newest messages: a quorum of 2 of 3.
    net.deliver_where(|from, env| !(from == "n1" && env.to == "n3"));
    assert!(read_at(&net, "n1", 1).is_some() && read_at(&net, "n1", 2).is_some());
}

#[test]
fn section6_4_a_leader_cut_off_from_its_majority_confirms_no_read_and_fails_them_when_it_steps_down() {
    let mut net = Net::new(3, |_| {});
    net.elect("n1");
    net.isolate("n1");
    net.core_mut("n1").read_index(9, 0);
    net.deliver_all();
    assert_eq!(read_at(&net, "n1", 9), None);
    // Check-quorum deposes it; the read fails (the caller retries elsewhere).
    for _ in 0..2 * net.nodes["n1"].cfg.election_ticks {
        net.tick("n1");
        net.deliver_all();
    }
    assert_ne!(net.core("n1").role(), Role::Leader);
    assert_eq!(net.nodes["n1"].read_failures, vec![9]);
    assert_eq!(read_at(&net, "n1", 9), None);
}

#[test]
fn section6_4_a_new_leader_serves_no_read_before_an_entry_of_its_term_commits() {
    let mut net = Net::new(3, |_| {});
    net.campaign("n1");
    // Deliver the votes but not the no-op's acknowledgements yet.
    net.deliver_where(|_, env| !matches!(env.msg, Message::AppendEntriesResponse(_)));
    assert_eq!(net.core("n1").role(), Role::Leader);
    let noop = net.core("n1").log().last_index();
    assert!(net.core("n1").commit() < noop);
    net.core_mut("n1").read_index(3, 0);
    net.flush("n1");
    net.tick("n1");
    net.deliver_all();
    assert_eq!(
        read_at(&net, "n1", 3),
        Some(noop),
        "served at the no-op, once committed"
    );
}

#[test]
fn section6_4_a_follower_read_gets_the_leaders_confirmed_commit_index() {
    let mut net = Net::new(3, |_| {});
    net.elect("n1");
    net.propose("n1", &["x", "y"]);
    net.deliver_all();
    let commit = net.core("n1").commit();
    net.core_mut("n2").read_index(5, 0);
    net.deliver_all();
    assert_eq!(read_at(&net, "n2", 5), Some(commit));
    // A node that knows no leader fails the read at once.
    let mut lone = RaftCore::new(cfg("n3", 3), restored(0, &[]), 1);
    lone.read_index(6, 0);
    assert_eq!(lone.ready().read_failures, vec![6]);
}

#[test]
fn section6_4_a_single_voter_serves_reads_without_a_round() {
    let mut net = Net::new(1, |_| {});
    net.elect("n1");
    net.core_mut("n1").read_index(1, 0);
    net.flush("n1");
    assert_eq!(read_at(&net, "n1", 1), Some(net.core("n1").commit()));
}

#[test]
fn section6_4_a_follower_read_in_flight_fails_when_a_new_term_begins() {
    let mut net = Net::new(3, |_| {});
    net.elect("n1");
    net.core_mut("n2").read_index(8, 0);
    net.flush("n2");
    // The request is lost; n2 then hears from the leader of a later term.
    net.queue.clear();
    let last = net.core("n2").log().last_index();
    let term = net.core("n2").log().last_term();
    net.core_mut("n2")
        .step("n3", append(2, "n3", (last, term), vec![], 0))
        .unwrap();
    net.flush("n2");
    assert_eq!(net.nodes["n2"].read_failures, vec![8], "the caller asks again");
    // A late answer of the old leader is ignored.
    let late = Message::ReadIndexResponse(crate::wire::ReadIndexResponse {
        term: 1,
        from: "n1".into(),
        ctx: 8,
        index: 1,
        ok: true,
    });
    net.core_mut("n2").step("n1", late).unwrap();
    net.flush("n2");
    assert!(read_at(&net, "n2", 8).is_none());
}

/// Issue 20, item 6: an answer to a read comes only from the member asked.
/// A matching ctx from anyone else (a late answer meant for an earlier read,
/// say of this node's previous incarnation) must not confirm it.
#[test]
fn section6_4_a_read_answer_from_a_member_not_asked_is_ignored() {
    let mut net = Net::new(3, |_| {});
    net.elect("n1");
    net.core_mut("n2").read_index(4, 0);
    net.flush("n2");
    net.queue.clear();
    let forged = Message::ReadIndexResponse(crate::wire::ReadIndexResponse {
        term: net.core("n2").term(),
        from: "n3".into(),
        ctx: 4,
        index: 1,
        ok: true,
    });
    net.core_mut("n2").step("n3", forged).unwrap();
    net.flush("n2");
    assert!(
        read_at(&net, "n2", 4).is_none(),
        "confirmed by a member not asked"
    );
    assert!(net.nodes["n2"].read_failures.is_empty());
    assert_eq!(net.core("n2").reads_asked(), 1, "still waiting for the leader");
}

/// Issue 20, item 10: a follower removed from the configuration still
/// forwards its reads to the leader, which refused them as from a
/// non-member without an answer: every read waited for its deadline and the
/// list of reads asked grew without bound. It is answered now: no.
#[test]
fn section6_4_a_removed_followers_reads_are_answered_not_dropped() {
    let mut net = Net::new(3, |_| {});
    net.elect("n1");
    net.change("n1", ConfChange::RemoveServer(id(3))).unwrap();
    net.deliver_all();
    assert!(!net.core("n1").membership().contains("n3"));
    assert_eq!(net.core("n3").leader(), Some("n1"));
    for ctx in 1..=3 {
        net.core_mut("n3").read_index(ctx, 0);
    }
    net.flush("n3");
    net.deliver_all();
    assert_eq!(
        net.nodes["n3"].read_failures,
        vec![1, 2, 3],
        "refused: ask elsewhere"
    );
    assert_eq!(net.core("n3").reads_asked(), 0);
}
