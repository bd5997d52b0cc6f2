//! A new server joins as a learner and is caught up before it votes
//! (dissertation §4.2.1): rounds of replication, promotion once a round
//! finished within an election timeout and left it close to the leader.

use super::*;

const MARGIN: u64 = 4;

fn tweak(c: &mut Config) {
    c.max_entries_per_message = MARGIN as usize;
    c.check_quorum = false;
}

/// n1 leads {n1, n2, n3} with 100 committed entries; n4 joins (empty log,
/// no bootstrap configuration) and has been added, but received nothing.
/// Returns the net and the index of the add.
fn learner_added(tweak: impl Fn(&mut Config) + Copy) -> (Net, u64) {
    let mut net = Net::new(3, tweak);
    net.add_node("n4", vec![], tweak);
    net.elect("n1");
    for _ in 0..25 {
        net.propose("n1", &["a", "b", "c", "d"]);
    }
    net.deliver_all();
    assert_eq!(net.core("n1").commit(), 101);
    let k = match net.change("n1", ConfChange::AddServer(id(4))) {
        Ok(ConfChangeAccepted::Appended(k, _)) => k,
        other => panic!("{other:?}"),
    };
    net.deliver_where(|from, env| from != "n4" && env.to != "n4");
    assert_eq!(net.core("n1").commit(), k);
    assert_eq!(net.learners("n1"), vec![id(4)]);
    assert_eq!(net.core("n4").log().last_index(), 0);
    (net, k)
}

/// What the leader knew when it first put `learner` among its voters.
#[derive(Debug)]
struct Promotion {
    /// Index of the promoting configuration entry.
    index: u64,
    /// The learner's match index then.
    matched: u64,
    /// Highest catch-up round seen before it.
    rounds: u32,
}

/// Whether n1 has promoted n4; if so, what it knew then.
fn promotion(net: &Net, rounds: &mut u32) -> Option<Promotion> {
    let n1 = net.core("n1");
    if let Some(cu) = n1.catch_up() {
        assert_eq!(cu.learner, id(4));
        *rounds = (*rounds).max(cu.round);
    }
    n1.membership().is_voter("n4").then(|| Promotion {
        index: n1.config_index(),
        matched: n1.progress("n4").unwrap().match_index,
        rounds: *rounds,
    })
}

#[test]
fn section_4_2_1_learner_is_promoted_after_catching_up() {
    // One AppendEntries in flight, four entries each: catching up 100 entries
    // takes some 26 round trips, and a tick passes with each. The first
    // round (up to the add) takes longer than an election timeout, so n4 is
    // not promoted when it ends, though then nothing is left to send: a
    // second round must end in time first.
    let (mut net, _) = learner_added(|c| {
        tweak(c);
        c.max_inflight = 1;
    });
    // n1 and n4 alone: commits would need n4 to count.
    net.isolate("n2");
    net.isolate("n3");
    let (x, _) = net.propose("n1", &["x"])[0];
    net.tick("n1"); // resends to n4 what was dropped
    let mut rounds = 0;
    let mut promoted = None;
    for _ in 0..10_000 {
        net.flush_all();
        let Some((from, env)) = net.queue.pop_front() else {
            break;
        };
        let before = net.core("n1").progress("n4").unwrap().match_index;
        net.deliver(from, env);
        promoted = promotion(&net, &mut rounds);
        if promoted.is_none() && net.core("n1").progress("n4").unwrap().match_index > before {
            net.tick("n1");
            net.tick("n4");
            promoted = promotion(&net, &mut rounds);
        }
        assert!(net.core("n1").commit() < x, "a learner's acknowledgement counted");
        assert_eq!(net.core("n4").role(), Role::Follower, "a learner campaigned");
        if promoted.is_some() {
            break;
        }
    }
    let p = promoted.expect("n4 was never promoted");
    assert!(
        p.rounds >= 2,
        "promoted at the end of a round that took too long: {p:?}"
    );
    assert!(
        p.index - 1 - p.matched <= MARGIN,
        "promoted while far behind: {p:?}"
    );
    // Everyone agrees, the promotion commits, and n4 is a full voter: it can lead.
    net.heal();
    net.tick("n1");
    net.deliver_all();
    assert!(net.core("n1").commit() >= p.index);
    for n in ["n1", "n2", "n3", "n4"] {
        assert_eq!(net.voters(n), ids(4), "{n}");
    }
    net.isolate("n1");
    net.elect("n4");
}

#[test]
fn section_4_2_1_learner_far_behind_is_not_promoted() {
    // The first round ends at once (no ticks pass), but 60 entries arrived
    // meanwhile: n4 is promoted only after a further round left it within
    // one AppendEntries of the leader.
    let (mut net, k) = learner_added(tweak);
    for _ in 0..15 {
        net.propose("n1", &["e", "f", "g", "h"]);
    }
    net.deliver_where(|from, env| from != "n4" && env.to != "n4");
    assert_eq!(net.core("n1").commit(), k + 60);
    net.tick("n1");
    let mut rounds = 0;
    let mut promoted = None;
    for _ in 0..10_000 {
        net.flush_all();
        let Some((from, env)) = net.queue.pop_front() else {
            break;
        };
        net.deliver(from, env);
        promoted = promotion(&net, &mut rounds);
        if promoted.is_some() {
            break;
        }
    }
    let p = promoted.expect("n4 was never promoted");
    assert!(p.rounds >= 2, "{p:?}");
    assert!(
        p.index - 1 - p.matched <= MARGIN,
        "promoted while far behind: {p:?}"
    );
    net.deliver_all();
    assert_eq!(net.core("n1").commit(), p.index);
}

#[test]
fn section_4_2_no_promotion_before_own_term_commit() {
    // A promotion is a configuration change like any other: a new leader
    // makes none before it has committed an entry of its own term, even for
    // a learner of an earlier term that has caught up with it.
    let (mut net, _) = learner_added(tweak);
    net.isolate("n1");
    net.campaign("n2");
    net.deliver_where(|_, env| matches!(env.msg, Message::RequestVote(_) | Message::RequestVoteResponse(_)));
    assert_eq!(net.core("n2").role(), Role::Leader);
    let noop = net.core("n2").log().last_index();
    // n4 catches up with n2, n3 hears nothing: the no-op cannot commit.
    net.isolate("n3");
    for _ in 0..5 {
        net.tick("n2");
        net.deliver_all();
        assert_eq!(net.core("n4").log().last_index(), noop, "n4 caught up");
        assert!(net.core("n2").commit() < noop);
        assert_eq!(
            net.learners("n2"),
            vec![id(4)],
            "promoted before the leader's first commit"
        );
        assert_eq!(net.core("n2").log().last_index(), noop);
    }
    // n3 is back: the no-op commits, then n4 is promoted.
    net.heal();
    net.isolate("n1");
    net.tick("n2");
    net.deliver_all();
    assert!(net.core("n2").commit() > noop);
    assert_eq!(net.voters("n2"), ids(4));
    assert_eq!(net.core("n2").config_index(), noop + 1);
}

#[test]
fn a_promoted_voter_unknown_to_a_lagging_voter_can_still_be_elected() {
    promoted_voter_unknown_to_a_lagging_voter(true);
}

#[test]
fn a_promoted_voter_unknown_to_a_lagging_voter_can_still_be_elected_without_pre_vote() {
    // The same with real votes only: n2 campaigns in vain with ever higher
    // terms, and still votes for n3 once n3's term passes its own.
    promoted_voter_unknown_to_a_lagging_voter(false);
}

/// {n1, n2} promotes n3 while n2 is cut off: {n1, n2, n3} commits with n1
/// and n3. n1 then fails. n2 still counts on {n1, n2} and needs n1; only n3
/// (whose log is longer) can win, with n2's vote: n2 must hear a candidate
/// whose log is ahead of its own even if it does not know it as a voter, or
/// the cluster never elects a leader again.
fn promoted_voter_unknown_to_a_lagging_voter(pre_vote: bool) {
    let tweak = |c: &mut Config| c.pre_vote = pre_vote;
    let mut net = Net::new(2, tweak);
    net.add_node("n3", vec![], tweak);
    net.elect("n1");
    net.deliver_all();
    let k = match net.change("n1", ConfChange::AddServer(id(3))) {
        Ok(ConfChangeAccepted::Appended(k, _)) => k,
        other => panic!("{other:?}"),
    };
    net.deliver_where(|from, env| from != "n3" && env.to != "n3");
    assert_eq!(net.core("n2").commit(), k);
    net.isolate("n2");
    net.tick("n1");
    net.deliver_all();
    assert_eq!(net.voters("n1"), ids(3));
    assert!(
        net.core("n1").commit() > k,
        "the promotion committed with n1 and n3"
    );
    assert_eq!(net.voters("n2"), ids(2), "n2 never heard of it");
    net.heal();
    net.isolate("n1");
    for _ in 0..100 {
        for n in ["n2", "n3"] {
            net.tick(n);
        }
        net.deliver_all();
        if net.core("n3").role() == Role::Leader {
            break;
        }
    }
    assert_eq!(
        net.core("n3").role(),
        Role::Leader,
        "no leader: {:?}",
        net.core("n2").status()
    );
    net.tick("n3");
    net.deliver_all();
    assert_eq!(net.voters("n2"), ids(3));
}

#[test]
fn lagging_voters_terms_reach_the_only_electable_candidate() {
    // {n1, n2} promotes n3 while n2 is cut off ({n1, n2, n3} commits with n1
    // and n3), then n1 removes itself: {n2, n3} reaches n3 only. Without
    // pre-vote: n2 (on {n1, n2}, behind) campaigns in vain, and so does n1
    // (outside {n2, n3}, needed as far as it knows; n3 ignores it, having
    // the same log). Their campaigns move n2's term; only n3 can win, with
    // n2's vote, so it must hear those terms: a candidate asks its learners
    // too, and n3 is one of n2's.
    let tweak = |c: &mut Config| c.pre_vote = false;
    let mut net = Net::new(2, tweak);
    net.add_node("n3", vec![], tweak);
    net.elect("n1");
    net.deliver_all();
    let k = match net.change("n1", ConfChange::AddServer(id(3))) {
        Ok(ConfChangeAccepted::Appended(k, _)) => k,
        other => panic!("{other:?}"),
    };
    net.deliver_where(|from, env| from != "n3" && env.to != "n3");
    assert_eq!(net.core("n2").commit(), k);
    net.isolate("n2");
    net.tick("n1");
    net.deliver_all();
    assert_eq!(net.voters("n1"), ids(3));
    let removal = match net.change("n1", ConfChange::RemoveServer(id(1))) {
        Ok(ConfChangeAccepted::Appended(i, _)) => i,
        other => panic!("{other:?}"),
    };
    net.deliver_all();
    assert_eq!(net.core("n3").log().last_index(), removal);
    assert!(net.core("n1").commit() < removal);
    assert_eq!(net.core("n1").role(), Role::Leader);
    // n1 loses its leadership (a restart) and everyone can talk again.
    net.restart("n1");
    net.queue.clear();
    net.heal();
    for _ in 0..300 {
        for n in ["n1", "n2", "n3"] {
            net.tick(n);
        }
        net.deliver_all();
        if net.core("n3").role() == Role::Leader {
            break;
        }
    }
    assert_eq!(
        net.core("n3").role(),
        Role::Leader,
        "no leader: {:?}",
        net.core("n2").status()
    );
}

#[test]
fn section_4_2_early_promotion_would_lose_committed_entries() {
    // {n1..n4} with learner n5. n1 (term 1) removes n4: {n1, n2, n3} stays
    // on n1. n2 wins term 2 (n3, n4) and catches n5 up through n4's link
    // only. Were n5 promoted before n2's no-op commits, {n1..n5} would
    // commit n2's entries with n4 and n5; then n1 wins term 3 with n3 alone
    // (2 of {n1, n2, n3}) and overwrites them.
    let tweak = |c: &mut Config| c.check_quorum = false;
    let mut net = Net::new(4, tweak);
    net.add_node("n5", vec![], tweak);
    net.elect("n1");
    net.deliver_all();
    assert!(matches!(
        net.change("n1", ConfChange::AddServer(id(5))),
        Ok(ConfChangeAccepted::Appended(..))
    ));
    net.deliver_where(|from, env| from != "n5" && env.to != "n5");
    net.isolate("n1");
    assert!(matches!(
        net.change("n1", ConfChange::RemoveServer(id(4))),
        Ok(ConfChangeAccepted::Appended(..))
    ));
    net.deliver_all();
    net.campaign("n2");
    net.deliver_where(|_, env| matches!(env.msg, Message::RequestVote(_) | Message::RequestVoteResponse(_)));
    assert_eq!(net.core("n2").role(), Role::Leader);
    net.isolate("n3");
    net.tick("n2");
    net.deliver_all();
    assert_eq!(
        net.core("n5").log().last_index(),
        net.core("n2").log().last_index()
    );
    let committed: Vec<(u64, u64)> = (1..=net.core("n2").commit())
        .map(|i| (i, net.core("n2").log().term(i).unwrap()))
        .collect();

    net.heal();
    for n in ["n2", "n4", "n5"] {
        net.isolate(n);
    }
    net.restart("n1");
    net.queue.clear();
    for _ in 0..300 {
        net.tick("n1");
        net.tick("n3");
        net.deliver_all();
        if net.core("n1").role() == Role::Leader {
            break;
        }
    }
    assert_eq!(net.core("n1").role(), Role::Leader, "n1 wins with n3");
    net.heal();
    net.tick("n1");
    net.deliver_all();
    for n in ["n1", "n2", "n3", "n4", "n5"] {
        for &(i, t) in &committed {
            assert_eq!(net.core(n).log().term(i), Some(t), "{n} lost committed entry {i}");
        }
    }
}
