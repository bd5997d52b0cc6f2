//! Membership changes (dissertation §4.1–§4.2.3): configurations in force
//! from append, one single-server change at a time, learners caught up before
//! they vote, removing the leader, and servers outside the configuration that
//! cannot disrupt it.

use super::*;

/// The index of an appended change, or a panic naming what happened instead.
pub(super) fn appended(r: Result<ConfChangeAccepted, ConfChangeError>) -> u64 {
    match r {
        Ok(ConfChangeAccepted::Appended(index, _)) => index,
        other => panic!("the change was not appended: {other:?}"),
    }
}

pub(super) fn in_progress(r: Result<ConfChangeAccepted, ConfChangeError>) -> bool {
    matches!(r, Err(ConfChangeError::InProgress(_)))
}

/// (index, term, members) of every configuration entry in `node`'s log.
pub(super) fn config_entries(core: &RaftCore) -> Vec<(u64, u64, Membership)> {
    entries_of(core)
        .into_iter()
        .filter(|e| e.r#type == EntryType::EntryConfig as i32)
        .map(|e| {
            (
                e.index,
                e.term,
                Membership::decode(&e.payload).expect("a valid configuration"),
            )
        })
        .collect()
}

pub(super) fn names(ns: &[&str]) -> Vec<NodeId> {
    ns.iter().map(|n| n.to_string()).collect()
}

/// Whether a message travels only between the nodes named.
pub(super) fn among<'a>(ns: &'a [&'a str]) -> impl Fn(&str, &Envelope) -> bool + 'a {
    move |from, env| ns.contains(&from) && ns.contains(&env.to.as_str())
}

/// An `n`-voter cluster led by n1 (term 1) with a proposal committed everywhere.
pub(super) fn cluster(n: usize, tweak: impl Fn(&mut Config)) -> Net {
    let mut net = Net::new(n, tweak);
    net.elect("n1");
    net.propose("n1", &["a"]);
    net.deliver_all();
    assert_eq!(net.core("n1").commit(), 2);
    net
}

/// Makes `node` leader with votes only: its no-op reaches nobody.
pub(super) fn elect_without_appends(net: &mut Net, node: &str) {
    net.campaign(node);
    net.deliver_where(|_, env| matches!(env.msg, Message::RequestVote(_) | Message::RequestVoteResponse(_)));
    assert_eq!(net.core(node).role(), Role::Leader, "{node} lost the election");
}

// ---------------------------------------------------------------------------
// §4.1 A configuration is in force from the moment it is in the log
// ---------------------------------------------------------------------------

#[test]
fn section_4_1_config_takes_effect_when_appended() {
    // Leader: removing n4 from {n1..n4} makes the quorum 2 of {n1, n2, n3} at
    // once. The entry commits with n2's acknowledgement alone, where the old
    // configuration would need a third voter.
    let mut net = cluster(4, |_| {});
    let k = appended(net.change("n1", ConfChange::RemoveServer(id(4))));
    assert_eq!(
        net.voters("n1"),
        ids(3),
        "in force on the leader before it commits"
    );
    assert!(net.core("n1").commit() < k);
    net.deliver_where(among(&["n1", "n2"]));
    assert_eq!(
        net.core("n1").commit(),
        k,
        "committed by 2 of the 3 voters in force"
    );

    // Follower: n2 receives the same entry and nothing commits it; n2 then
    // counts votes in the new configuration and wins with n3's vote alone (2
    // of 3), where {n1..n4} would need a third.
    let mut net = cluster(4, |c| c.check_quorum = false);
    let k = appended(net.change("n1", ConfChange::RemoveServer(id(4))));
    net.deliver_where(|from, env| from == "n1" && env.to == "n2");
    assert_eq!(
        net.voters("n2"),
        ids(3),
        "in force on the follower before it commits"
    );
    assert!(net.core("n2").commit() < k);
    assert_eq!(net.voters("n3"), ids(4), "n3 never received it");
    net.isolate("n1");
    net.isolate("n4");
    net.elect("n2");
    assert_eq!(net.core("n2").term(), 2);
    assert!(
        net.core("n2").commit() > k,
        "n2's no-op committed the configuration with n3"
    );
    assert_eq!(net.voters("n3"), ids(3));
}

#[test]
fn section_4_1_removing_a_voter_commits_what_the_rest_hold() {
    // {n1, n2} with n2 gone: nothing commits. Removing n2 makes n1 a quorum
    // by itself: the stalled entry commits with the configuration.
    let mut net = cluster(2, |_| {});
    net.isolate("n2");
    let (x, _) = net.propose("n1", &["x"])[0];
    net.deliver_all();
    assert!(net.core("n1").commit() < x);
    let k = appended(net.change("n1", ConfChange::RemoveServer(id(2))));
    assert_eq!(
        net.core("n1").commit(),
        k,
        "x and the configuration committed on n1's own disk"
    );
    assert_eq!(net.nodes["n1"].applied.last().map(|e| e.index), Some(k));
}

#[test]
fn section_4_1_truncated_config_reverts() {
    // n1 appends "remove n5" and only n2 receives it. n3 wins term 2 with n4
    // and n5 (3 of the 5 voters it knows), overwrites that index, and n1 and
    // n2 go back to the configuration before the truncated one.
    let mut net = cluster(5, |c| c.check_quorum = false);
    let k = appended(net.change("n1", ConfChange::RemoveServer(id(5))));
    net.deliver_where(|from, env| from == "n1" && env.to == "n2");
    assert_eq!(net.voters("n2"), ids(4));
    net.isolate("n1");
    net.isolate("n2");
    net.elect("n3");
    let t = net.core("n3").term();
    assert_eq!(net.core("n3").log().term(k), Some(t), "n3's no-op took index {k}");
    net.heal();
    net.tick("n3");
    net.deliver_all();
    for n in ["n1", "n2"] {
        assert_eq!(net.core(n).role(), Role::Follower);
        assert_eq!(
            net.core(n).log().term(k),
            Some(t),
            "{n} truncated the configuration"
        );
        assert_eq!(
            net.voters(n),
            ids(5),
            "{n} is back on the configuration before it"
        );
        assert_eq!(net.core(n).config_index(), 1);
        // The runtime is told, so it stores and connects to the right members.
        let stored = net.nodes[n].disk.config.clone().expect("the revert was reported");
        assert_eq!((stored.0, stored.1.voters.len()), (1, 5), "{n}");
    }
    // n2 counts n5 again: cut off from n3 and n4, it wins with n1 and n5 (3
    // of 5), which the truncated {n1..n4} would not allow.
    net.isolate("n3");
    net.isolate("n4");
    net.elect("n2");
    assert!(net.core("n2").term() > t);
}

// ---------------------------------------------------------------------------
// §4.2 One change at a time, and none before the leader's first commit
// ---------------------------------------------------------------------------

#[test]
fn section_4_2_no_change_before_own_term_commit() {
    let mut net = cluster(3, |c| c.check_quorum = false);
    net.add_node("n4", vec![], |c| c.check_quorum = false);
    net.isolate("n1");
    elect_without_appends(&mut net, "n2");
    let noop = net.core("n2").log().last_index();
    assert!(net.core("n2").commit() < noop);
    // Asked before its no-op committed, the leader defers the change.
    assert_eq!(
        net.change("n2", ConfChange::AddServer(id(4))),
        Ok(ConfChangeAccepted::Deferred)
    );
    assert_eq!(net.core("n2").log().last_index(), noop, "nothing appended yet");
    assert_eq!(net.learners("n2"), Vec::<NodeId>::new());
    assert!(net.core("n2").pending_conf_change().is_some());
    assert!(in_progress(net.change("n2", ConfChange::RemoveServer(id(3)))));
    assert!(in_progress(net.change("n2", ConfChange::AddServer(id(4)))));
    // The no-op commits (the heartbeat resends what was dropped): the change
    // is appended then, after it.
    net.tick("n2");
    net.deliver_all();
    // (n4 then caught up and was promoted.)
    let configs = config_entries(net.core("n2"));
    let (index, term, m) = configs.iter().find(|c| c.0 > noop).unwrap().clone();
    assert_eq!((index, term), (noop + 1, 2));
    assert_eq!(m.learners.iter().cloned().collect::<Vec<_>>(), vec![id(4)]);
    assert!(net.core("n2").commit() >= index, "{:?}", net.core("n2").status());
}

#[test]
fn section_4_2_one_change_at_a_time() {
    let mut net = cluster(3, |_| {});
    net.add_node("n4", vec![], |_| {});
    net.add_node("n5", vec![], |_| {});
    let k = appended(net.change("n1", ConfChange::AddServer(id(4))));
    for change in [
        ConfChange::AddServer(id(5)),
        ConfChange::RemoveServer(id(3)),
        ConfChange::RemoveServer(id(4)),
    ] {
        let r = net.change("n1", change.clone());
        assert!(
            in_progress(r.clone()),
            "{change:?} while {k} is uncommitted: {r:?}"
        );
    }
    assert_eq!(net.core("n1").log().last_index(), k, "nothing else appended");
    // The add commits while n4 is cut off: a learner still being caught up
    // blocks any other add.
    net.deliver_where(|from, env| from != "n4" && env.to != "n4");
    assert!(net.core("n1").commit() >= k);
    assert_eq!(net.learners("n1"), vec![id(4)]);
    assert!(in_progress(net.change("n1", ConfChange::AddServer(id(5)))));
    assert_eq!(
        net.change("n1", ConfChange::AddServer(id(4))),
        Ok(ConfChangeAccepted::Unchanged)
    );
    assert_eq!(net.core("n1").log().last_index(), k);
    // Once n4 has caught up and its promotion committed, the next change is accepted.
    net.tick("n1");
    net.deliver_all();
    assert_eq!(net.voters("n1"), ids(4));
    assert_eq!(net.voters("n4"), ids(4));
    assert_eq!(net.core("n1").commit(), net.core("n1").log().last_index());
    appended(net.change("n1", ConfChange::AddServer(id(5))));
    // Never two configurations above the commit index of the leader's log.
    let commit = net.core("n1").commit();
    let above = config_entries(net.core("n1"))
        .iter()
        .filter(|c| c.0 > commit)
        .count();
    assert_eq!(above, 1);
    // Membership survives restarts (checked by `restart`).
    net.deliver_all();
    for n in ["n1", "n2", "n5"] {
        net.restart(n);
    }
}

#[test]
fn remove_of_last_voter_or_stranger_refused_and_add_of_voter_unchanged() {
    let mut net = Net::new(1, |_| {});
    net.elect("n1");
    assert_eq!(
        net.change("n1", ConfChange::RemoveServer(id(1))),
        Err(ConfChangeError::LastVoter(id(1)))
    );

    let mut net = cluster(3, |_| {});
    let last = net.core("n1").log().last_index();
    assert_eq!(
        net.change("n1", ConfChange::RemoveServer("n9".into())),
        Err(ConfChangeError::NotMember("n9".into()))
    );
    assert_eq!(
        net.change("n1", ConfChange::AddServer(id(2))),
        Ok(ConfChangeAccepted::Unchanged)
    );
    assert_eq!(
        net.change("n1", ConfChange::AddServer(id(1))),
        Ok(ConfChangeAccepted::Unchanged)
    );
    assert_eq!(
        net.change("n2", ConfChange::AddServer(id(4))),
        Err(ConfChangeError::NotLeader { leader: Some(id(1)) })
    );
    assert_eq!(
        net.core("n1").log().last_index(),
        last,
        "no refused change appended anything"
    );

    // Down to one voter; then that one cannot go.
    appended(net.change("n1", ConfChange::RemoveServer(id(3))));
    net.deliver_all();
    appended(net.change("n1", ConfChange::RemoveServer(id(2))));
    net.deliver_all();
    assert_eq!(net.voters("n1"), vec![id(1)]);
    assert_eq!(
        net.change("n1", ConfChange::RemoveServer(id(1))),
        Err(ConfChangeError::LastVoter(id(1)))
    );
}

#[test]
fn first_leader_config_entry_carries_the_cluster_uid() {
    let mut net = Net::new(3, |c| c.check_quorum = false);
    net.add_node("n4", vec![], |c| c.check_quorum = false);
    assert!(net.nodes.values().all(|n| n.core.cluster_uid().is_none()));
    net.elect("n1");
    let first = net.core("n1").log().entry(1).unwrap().clone();
    assert_eq!(first.r#type, EntryType::EntryConfig as i32, "not a plain no-op");
    let m = Membership::decode(&first.payload).unwrap();
    assert_eq!(m.voters.iter().cloned().collect::<Vec<_>>(), ids(3));
    assert!(m.learners.is_empty());
    assert_eq!(m.uid.len(), 32, "{:?}", m.uid);
    let uid = m.uid.clone();
    net.deliver_all();
    for n in ["n1", "n2", "n3"] {
        assert_eq!(net.core(n).cluster_uid(), Some(uid.as_str()), "{n}");
    }
    // A node that joins later adopts it with the log.
    appended(net.change("n1", ConfChange::AddServer(id(4))));
    net.deliver_all();
    assert_eq!(net.core("n4").cluster_uid(), Some(uid.as_str()));
    // Later leaders append a plain no-op and keep it; so do restarts.
    net.isolate("n1");
    net.elect("n2");
    let noop = net.core("n2").log().last_index();
    assert_eq!(
        net.core("n2").log().entry(noop).unwrap().r#type,
        EntryType::EntryNoop as i32
    );
    net.restart("n3");
    for n in ["n2", "n3", "n4"] {
        assert_eq!(net.core(n).cluster_uid(), Some(uid.as_str()), "{n}");
    }
    // Another cluster (another first leader, another random draw) has another one.
    let mut other = Net::new(3, |_| {});
    other.elect("n2");
    let other_uid = other.core("n2").cluster_uid().unwrap().to_string();
    assert_ne!(other_uid, uid);
}

#[test]
fn section_4_2_change_before_own_term_commit_would_lose_committed_entries() {
    // The 2015 single-server-change bug, with a promotion as the first change.
    // {n1..n4} with learner n5. n1 (term 1) promotes n5: {n1..n5} reaches n5
    // only. n2 wins term 2 with n3 and n4 and is asked to remove n4. Were the
    // change appended at once, {n1, n2, n3} would commit n2's entries with
    // n3 alone; then n1 (or n5) wins term 3 with n4 and n5, a majority of
    // {n1..n5}, without those entries, and overwrites them. Deferred until
    // n2's no-op commits (which needs n4 or n1), nothing of term 2 commits.
    let tweak = |c: &mut Config| c.check_quorum = false;
    let mut net = cluster(4, tweak);
    net.add_node("n5", vec![], tweak);
    appended(net.change("n1", ConfChange::AddServer(id(5))));
    net.deliver_where(|from, env| from != "n5" && env.to != "n5");
    for n in ["n2", "n3", "n4"] {
        net.isolate(n);
    }
    net.tick("n1");
    net.deliver_all();
    assert_eq!(net.voters("n1"), ids(5), "n1 promoted n5");
    assert_eq!(net.voters("n2"), ids(4));
    let before = net.core("n1").commit();

    net.heal();
    net.isolate("n1");
    net.isolate("n5");
    elect_without_appends(&mut net, "n2");
    let r = net.change("n2", ConfChange::RemoveServer(id(4)));
    assert!(r.is_ok(), "{r:?}");
    net.isolate("n4");
    net.tick("n2");
    net.deliver_all();
    let committed: Vec<(u64, u64)> = (1..=net.core("n2").commit())
        .map(|i| (i, net.core("n2").log().term(i).unwrap()))
        .collect();

    // n2 and n3 cut off, n1 restarted: n1 or n5 wins term 3.
    net.heal();
    net.isolate("n2");
    net.isolate("n3");
    net.restart("n1");
    net.queue.clear();
    let mut leader = None;
    for _ in 0..300 {
        for n in ["n1", "n4", "n5"] {
            net.tick(n);
        }
        net.deliver_all();
        leader = net.leaders().into_iter().find(|(_, t)| *t >= 3);
        if leader.is_some() {
            break;
        }
    }
    let (leader, _) = leader.expect("a majority of {n1..n5} elects a leader");
    net.heal();
    net.tick(&leader);
    net.deliver_all();
    // Whatever n2 ever committed is still there, everywhere.
    for n in ["n1", "n2", "n3", "n4", "n5"] {
        for &(i, t) in &committed {
            assert_eq!(net.core(n).log().term(i), Some(t), "{n} lost committed entry {i}");
        }
    }
    assert_eq!(r, Ok(ConfChangeAccepted::Deferred));
    assert_eq!(committed.len() as u64, before, "n2 committed nothing of its term");
}

#[test]
fn section_4_2_a_change_asked_before_the_bootstrap_configuration_commits_is_deferred() {
    // The first leader's first entry is the bootstrap configuration: a change
    // asked before it commits waits for it (it would otherwise be refused as
    // "in progress" for a change nobody asked for).
    let mut net = Net::new(3, |_| {});
    net.add_node("n4", vec![], |_| {});
    elect_without_appends(&mut net, "n1");
    let (bootstrap, _) = net.core("n1").configs.latest();
    assert!(net.core("n1").commit() < bootstrap);
    assert_eq!(
        net.change("n1", ConfChange::AddServer(id(4))),
        Ok(ConfChangeAccepted::Deferred)
    );
    assert!(
        in_progress(net.change("n1", ConfChange::RemoveServer(id(3)))),
        "one change at a time still"
    );
    net.tick("n1");
    net.deliver_all();
    net.tick("n1");
    net.deliver_all();
    assert_eq!(net.voters("n1"), ids(4), "added, caught up and promoted");
}
