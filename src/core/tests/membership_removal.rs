//! Removing servers (dissertation §4.2.2, §4.2.3): a removed leader steps
//! down once the configuration without it commits, and servers outside the
//! configuration (removed, or not added yet) cannot disrupt the cluster.

use super::membership::{among, appended, cluster, names};
use super::*;

#[test]
fn section_4_2_2_removed_leader_steps_down_after_commit() {
    let mut net = cluster(3, |_| {});
    let t = net.core("n1").term();
    let k = appended(net.change("n1", ConfChange::RemoveServer(id(1))));
    assert_eq!(net.voters("n1"), names(&["n2", "n3"]));
    // n2 alone acknowledges: 1 of {n2, n3}. n1 stores the entry but does not
    // count itself, and leads on meanwhile.
    net.deliver_where(among(&["n1", "n2"]));
    assert_eq!(net.core("n2").log().last_index(), k);
    assert!(net.core("n1").commit() < k, "the removed leader counted itself");
    assert_eq!(
        net.core("n1").role(),
        Role::Leader,
        "it leads until the configuration commits"
    );
    let (y, _) = net.propose("n1", &["y"])[0];
    net.deliver_where(among(&["n1", "n2"]));
    assert!(net.core("n1").commit() < k);
    // n3 acknowledges as well: the configuration commits and n1 steps down
    // at once, after telling the others.
    net.tick("n1");
    let mut stepped_down = false;
    while let Some((from, env)) = net.queue.pop_front() {
        net.deliver(from, env);
        net.flush_all();
        let n1 = net.core("n1");
        match (n1.commit() >= k, n1.role()) {
            (false, role) => assert_eq!(role, Role::Leader),
            (true, role) => {
                assert_eq!(role, Role::Follower, "still leading with its removal committed");
                stepped_down = true;
            }
        }
    }
    assert!(stepped_down, "the removal never committed");
    // (What it sent while leading has been delivered.)
    let mark = net.delivered.len();
    assert_eq!(net.core("n1").term(), t);
    assert!(net.core("n1").commit() >= y);
    assert!(!net.core("n1").is_voter());
    for n in ["n2", "n3"] {
        assert!(net.core(n).commit() >= k, "{n} was told of the commit");
        assert_eq!(net.core(n).committed_membership().1.voters.len(), 2);
    }
    // n2 or n3 takes over; n1 never campaigns again.
    let mut new_leader = None;
    for _ in 0..100 {
        for n in ["n1", "n2", "n3"] {
            net.tick(n);
        }
        net.deliver_all();
        assert_eq!(net.core("n1").role(), Role::Follower);
        new_leader = net.leaders().into_iter().next();
        if new_leader.is_some() {
            break;
        }
    }
    let (leader, term) = new_leader.expect("no new leader");
    assert!(leader != "n1" && term > t);
    let (z, _) = net.propose(&leader, &["z"])[0];
    net.deliver_all();
    assert!(net.core(&leader).commit() >= z);
    assert!(
        net.delivered[mark..].iter().all(|(from, _)| from != "n1"),
        "the removed leader kept talking"
    );
}

/// Neither pre-vote nor check-quorum leases: only the configuration protects.
fn unprotected(c: &mut Config) {
    c.pre_vote = false;
    c.check_quorum = false;
}

/// Ticks `outsiders` (and the leader n1) for a hundred election timeouts'
/// worth of ticks and checks that they got no vote and changed no term.
fn outsiders_do_not_disrupt(net: &mut Net, outsiders: &[&str]) {
    let terms: Vec<u64> = ["n1", "n2", "n3"].iter().map(|n| net.core(n).term()).collect();
    let mark = net.delivered.len();
    for _ in 0..200 {
        for n in outsiders.iter().chain(&["n1"]) {
            net.tick(n);
        }
        net.deliver_all();
        for n in outsiders {
            assert_ne!(net.core(n).role(), Role::Leader, "{n} won an election");
        }
    }
    let after: Vec<u64> = ["n1", "n2", "n3"].iter().map(|n| net.core(n).term()).collect();
    assert_eq!(after, terms, "an outsider changed a member's term");
    assert_eq!(net.core("n1").role(), Role::Leader);
    for (from, env) in &net.delivered[mark..] {
        if outsiders.contains(&env.to.as_str()) {
            assert!(
                !matches!(env.msg, Message::RequestVoteResponse(_)),
                "{from} answered {}'s request for votes",
                env.to
            );
        }
    }
    // The cluster goes on committing.
    let (x, _) = net.propose("n1", &["x"])[0];
    net.deliver_all();
    assert!(net.core("n1").commit() >= x);
}

fn requests_for_votes_from(net: &Net, node: &str) -> usize {
    net.delivered
        .iter()
        .filter(|(from, env)| from == node && matches!(env.msg, Message::RequestVote(_)))
        .count()
}

#[test]
fn section_4_2_3_removed_server_does_not_disrupt() {
    // n4 is removed while cut off: it never learns, believes it still votes,
    // and campaigns with ever higher terms once it can reach everyone.
    let mut net = cluster(4, unprotected);
    let k = appended(net.change("n1", ConfChange::RemoveServer(id(4))));
    net.deliver_where(|from, env| from != "n4" && env.to != "n4");
    assert!(net.core("n1").commit() >= k);
    assert_eq!(net.voters("n4"), ids(4), "n4 never learned it was removed");
    outsiders_do_not_disrupt(&mut net, &["n4"]);
    assert!(
        requests_for_votes_from(&net, "n4") > 0,
        "n4 never campaigned: vacuous"
    );
    assert!(net.core("n4").term() > 10);
}

#[test]
fn section_4_2_3_server_not_yet_added_does_not_disrupt() {
    // n4 was started with a member list naming the cluster and itself but was
    // never added; n5 joins properly (no configuration at all).
    let mut net = cluster(3, unprotected);
    net.add_node("n4", ids(4), unprotected);
    net.add_node("n5", vec![], unprotected);
    outsiders_do_not_disrupt(&mut net, &["n4", "n5"]);
    assert!(
        requests_for_votes_from(&net, "n4") > 0,
        "n4 never campaigned: vacuous"
    );
    // A joining node never campaigns, and never speaks unasked.
    let n5 = net.core("n5").status();
    assert_eq!((n5.role, n5.term, n5.last_log_index), (Role::Follower, 0, 0));
    assert!(net.delivered.iter().all(|(from, _)| from != "n5"));
}

#[test]
fn section_4_2_2_server_outside_its_latest_config_campaigns_until_it_commits() {
    // {n1, n3} (n2 removed). Leader n1 removes itself, appends {n3} and
    // crashes before anyone has it. n3 still counts on {n1, n3} and needs
    // n1's vote, which n1 refuses: n1's log is longer. Only n1 can finish
    // the change, so, though outside its own latest configuration, it must
    // still campaign (dissertation §4.2.2: "it might still be needed until
    // the C_new entry is committed"), not counting its own vote.
    let mut net = cluster(3, |_| {});
    appended(net.change("n1", ConfChange::RemoveServer(id(2))));
    net.deliver_all();
    net.isolate("n2");
    let k = appended(net.change("n1", ConfChange::RemoveServer(id(1))));
    net.queue.clear();
    net.restart("n1");
    assert_eq!(net.voters("n1"), vec![id(3)]);
    assert_eq!(net.voters("n3"), names(&["n1", "n3"]));
    for _ in 0..300 {
        for n in ["n1", "n3"] {
            net.tick(n);
        }
        net.deliver_all();
        if net.core("n3").role() == Role::Leader && net.core("n3").commit() >= k {
            break;
        }
    }
    // n1 led a later term (and stepped down in the same round).
    let n1_led = net
        .delivered
        .iter()
        .any(|(from, env)| from == "n1" && matches!(&env.msg, Message::AppendEntries(a) if a.term > 1));
    assert!(n1_led, "n1 never campaigned");
    assert_eq!(net.core("n3").role(), Role::Leader, "the cluster is stuck");
    assert_eq!(net.core("n3").committed_membership().1.voters.len(), 1);
    assert_eq!(
        net.core("n1").role(),
        Role::Follower,
        "n1 stepped down once {k} committed"
    );
    // Its change committed, n1 never campaigns again.
    let term = net.core("n1").term();
    for _ in 0..50 {
        net.tick("n1");
        net.deliver_all();
    }
    assert_eq!(
        (net.core("n1").role(), net.core("n1").term()),
        (Role::Follower, term)
    );
}

#[test]
fn section_4_2_3_a_removed_follower_receives_its_removal_and_its_commit() {
    let mut net = cluster(3, |_| {});
    let k = appended(net.change("n1", ConfChange::RemoveServer(id(3))));
    net.deliver_all();
    assert!(net.core("n1").commit() >= k);
    // The leader replicated to n3 until the change committed, commit index included.
    let n3 = net.core("n3");
    assert!(n3.log().last_index() >= k, "n3 never got the entry removing it");
    assert!(n3.commit() >= k, "n3 never learned that its removal committed");
    assert!(!n3.is_voter());
    assert!(
        !n3.may_campaign(),
        "a removed node whose removal committed campaigns"
    );
    assert!(net.core("n1").replication_targets().iter().all(|p| p != &id(3)));
    // From then on the leader sends it nothing.
    let mark = net.delivered.len();
    for _ in 0..30 {
        for n in ["n1", "n2", "n3"] {
            net.tick(n);
        }
        net.deliver_all();
    }
    assert!(net.delivered[mark..].iter().all(|(_, env)| env.to != id(3)));
    assert_eq!(net.core("n3").role(), Role::Follower);
}

#[test]
fn section_4_2_2_a_removed_leader_learns_its_removal_committed_from_its_successor() {
    // {n1, n2}, n1 leads and removes itself: {n2}. n2 stores the entry but
    // its answer is lost, and n2 (the only voter of {n2}) times out and
    // wins before n1 hears. Were n1 left out of the new leader's
    // replication, it would never learn that its removal committed: the
    // caller of remove_server would time out with the outcome unknown.
    let mut net = cluster(2, |_| {});
    let k = appended(net.change("n1", ConfChange::RemoveServer(id(1))));
    net.deliver_where(|from, _| from == "n1");
    assert_eq!(net.core("n2").log().last_index(), k);
    assert!(net.core("n1").commit() < k, "the answer was dropped");
    // n2 hears nothing more from n1 and elects itself.
    net.campaign("n2");
    net.flush_all();
    assert_eq!(net.core("n2").role(), Role::Leader);
    net.deliver_all();
    assert!(net.core("n2").commit() > k);
    let n1 = net.core("n1");
    assert!(n1.commit() >= k, "n1 never learned its removal committed");
    assert_eq!(n1.committed_membership().1.voters.len(), 1);
    assert_eq!(n1.role(), Role::Follower);
    assert!(!n1.may_campaign());
    // The new leader is done with n1.
    assert!(net.core("n2").replication_targets().is_empty());
    let mark = net.delivered.len();
    for _ in 0..30 {
        for n in ["n1", "n2"] {
            net.tick(n);
        }
        net.deliver_all();
    }
    assert!(net.delivered[mark..].iter().all(|(_, env)| env.to != id(1)));
    assert_eq!(net.leaders(), vec![(id(2), net.core("n2").term())]);
}
