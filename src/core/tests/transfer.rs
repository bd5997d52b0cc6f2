//! Leadership transfer (dissertation §3.10): the leader catches the target
//! up, sends TimeoutNow once, takes no entries meanwhile, and gives up after
//! an election timeout; the target campaigns without pre-vote and voters
//! grant it despite having heard from the leader.

use super::membership::cluster;
use super::*;
use crate::wire::TimeoutNow;

fn is_timeout_now(env: &Envelope) -> bool {
    matches!(env.msg, Message::TimeoutNow(_))
}

/// TimeoutNow messages waiting in the network.
fn queued_timeout_nows(net: &Net) -> usize {
    net.queue.iter().filter(|(_, env)| is_timeout_now(env)).count()
}

/// Every RequestVote `from` sent that was delivered.
fn vote_requests_from<'a>(net: &'a Net, from: &str) -> Vec<&'a RequestVote> {
    net.delivered
        .iter()
        .filter(|(f, _)| f == from)
        .filter_map(|(_, env)| match &env.msg {
            Message::RequestVote(m) => Some(m),
            _ => None,
        })
        .collect()
}

fn transfer(net: &mut Net, leader: &str, target: &str) -> Result<(), TransferError> {
    let r = net.core_mut(leader).transfer_leader(target);
    net.flush(leader);
    r
}

#[test]
fn section_3_10_transfer_sends_timeout_now_once_target_caught_up() {
    let mut net = cluster(3, |_| {});
    // Up to date already: TimeoutNow goes out at once, and only to the target.
    transfer(&mut net, "n1", "n2").unwrap();
    assert_eq!(net.core("n1").transferring_to(), Some("n2"));
    assert_eq!(net.core("n1").status().transferring_to.as_deref(), Some("n2"));
    let sent: Vec<&Envelope> = net
        .queue
        .iter()
        .map(|(_, e)| e)
        .filter(|e| is_timeout_now(e))
        .collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, "n2");
    assert_eq!(
        sent[0].msg,
        Message::TimeoutNow(TimeoutNow { term: 1, from: id(1) })
    );
    // Heartbeats and their answers (the TimeoutNow lost) send no second one.
    let mut seen = 0;
    for _ in 0..3 {
        net.tick("n1");
        net.deliver_where(|_, env| {
            seen += usize::from(is_timeout_now(env));
            !is_timeout_now(env)
        });
    }
    assert_eq!(seen, 1, "TimeoutNow is sent once");
    assert_eq!(net.core("n1").role(), Role::Leader);

    // Delivered, it makes the target leader in the next term.
    let mut net = cluster(3, |_| {});
    transfer(&mut net, "n1", "n2").unwrap();
    net.deliver_all();
    assert_eq!(net.leaders(), vec![(id(2), 2)]);
    assert_eq!(net.core("n1").role(), Role::Follower);
    assert_eq!(
        net.core("n1").transferring_to(),
        None,
        "leadership lost ends the transfer"
    );
    let pos = net.propose("n2", &["after"]);
    net.deliver_all();
    assert!(net.nodes.values().all(|n| n.core.commit() >= pos[0].0));
}

#[test]
fn section_3_10_proposals_refused_during_transfer() {
    let mut net = cluster(3, |_| {});
    net.isolate("n2");
    transfer(&mut net, "n1", "n2").unwrap();
    let last = net.core("n1").log().last_index();
    assert_eq!(
        net.core_mut("n1").propose(vec![Bytes::from("x")]),
        Err(ProposeError::Transferring { target: id(2) })
    );
    assert_eq!(
        net.core_mut("n1")
            .propose_conf_change(ConfChange::AddServer("n4".into())),
        Err(ConfChangeError::Transferring(id(2)))
    );
    assert_eq!(net.core("n1").log().last_index(), last, "nothing appended");
    // Asked again for the same target: nothing changes; for another: refused.
    assert_eq!(transfer(&mut net, "n1", "n2"), Ok(()));
    assert_eq!(
        transfer(&mut net, "n1", "n3"),
        Err(TransferError::InProgress(id(2)))
    );
    assert_eq!(
        transfer(&mut net, "n1", "n1"),
        Err(TransferError::InProgress(id(2)))
    );

    // Refusals that start nothing.
    let mut net = cluster(3, |_| {});
    assert_eq!(
        transfer(&mut net, "n2", "n3"),
        Err(TransferError::NotLeader { leader: Some(id(1)) })
    );
    assert_eq!(
        transfer(&mut net, "n1", "n9"),
        Err(TransferError::NotVoter("n9".into()))
    );
    assert_eq!(transfer(&mut net, "n1", "n1"), Ok(()), "to itself: a no-op");
    assert_eq!(net.core("n1").transferring_to(), None);
    net.add_node("n4", Vec::new(), |_| {});
    net.change("n1", ConfChange::AddServer("n4".into())).unwrap();
    assert!(matches!(
        transfer(&mut net, "n1", "n3"),
        Err(TransferError::ConfChangeInProgress(_))
    ));
    assert_eq!(
        transfer(&mut net, "n1", "n4"),
        Err(TransferError::NotVoter("n4".into()))
    );
    assert_eq!(net.core("n1").transferring_to(), None);
}

#[test]
fn section_3_10_transfer_aborts_after_election_timeout() {
    let mut net = cluster(3, |_| {});
    let election_ticks = net.nodes["n1"].cfg.election_ticks;
    net.isolate("n2");
    transfer(&mut net, "n1", "n2").unwrap();
    for _ in 1..election_ticks {
        net.tick("n1");
        net.deliver_all();
    }
    assert_eq!(
        net.core("n1").transferring_to(),
        Some("n2"),
        "still within the timeout"
    );
    assert!(net.core_mut("n1").propose(vec![Bytes::from("x")]).is_err());
    net.tick("n1");
    net.deliver_all();
    assert_eq!(net.core("n1").transferring_to(), None);
    assert_eq!(net.core("n1").role(), Role::Leader, "n3 keeps it in power");
    let pos = net.propose("n1", &["after the transfer"]);
    net.deliver_all();
    assert!(net.core("n3").commit() >= pos[0].0, "proposals resume");
    assert_eq!(net.core("n2").term(), 1, "the target never campaigned");
}

#[test]
fn section_3_10_transfer_ends_when_leadership_is_lost_or_the_target_leaves() {
    let mut net = cluster(3, |_| {});
    net.isolate("n2");
    transfer(&mut net, "n1", "n2").unwrap();
    let deposing = Message::AppendEntriesResponse(AppendEntriesResponse {
        term: 7,
        from: id(3),
        ..Default::default()
    });
    net.core_mut("n1").step("n3", deposing).unwrap();
    assert_eq!(net.core("n1").role(), Role::Follower);
    assert_eq!(net.core("n1").transferring_to(), None);

    // A target removed: a leader refuses changes while it transfers (and
    // transfers while a change runs), so the change is forced in here.
    let mut net = cluster(3, |_| {});
    transfer(&mut net, "n1", "n3").unwrap();
    net.queue.retain(|(_, env)| !is_timeout_now(env));
    let mut m = net.core("n1").membership().clone();
    m.voters.remove("n3");
    net.core_mut("n1").append_config(m);
    assert_eq!(net.core("n1").transferring_to(), Some("n3"));
    net.tick("n1");
    assert_eq!(
        net.core("n1").transferring_to(),
        None,
        "the target is no voter now"
    );
}

#[test]
fn section_3_10_target_campaigns_without_pre_vote_and_voters_bypass_lease() {
    let mut net = cluster(3, |c| {
        c.pre_vote = true;
        c.check_quorum = true;
    });
    // Every follower heard from n1 just now: each is inside its leader lease.
    net.tick("n1");
    net.deliver_all();
    assert!(net.core("n3").in_leader_lease());
    transfer(&mut net, "n1", "n2").unwrap();
    net.deliver_all();
    let requests = vote_requests_from(&net, "n2");
    assert!(!requests.is_empty());
    assert!(
        requests
            .iter()
            .all(|m| !m.pre_vote && m.leader_transfer && m.term == 2),
        "{requests:?}"
    );
    assert_eq!(net.leaders(), vec![(id(2), 2)], "n3 voted despite its lease");

    // Without the flag, the same request is ignored by a voter in its lease,
    // both as a vote and as a pre-vote; with it, both are granted.
    let last = (
        net.core("n3").log().last_index(),
        net.core("n3").log().last_term(),
    );
    net.tick("n2");
    net.deliver_all();
    assert!(net.core("n3").in_leader_lease());
    for pre_vote in [true, false] {
        let plain = vote_request(3, "n1", last, pre_vote);
        net.core_mut("n3").step("n1", plain).unwrap();
        net.flush("n3");
        let replies = net.queue.drain(..).map(|(_, e)| e).collect::<Vec<_>>();
        assert!(vote_responses(&replies).iter().all(|(_, r)| !r.granted));
        assert_eq!(net.core("n3").term(), 2, "the lease keeps its term");
    }
    for pre_vote in [true, false] {
        let mut flagged = vote_request(3, "n1", last, pre_vote);
        if let Message::RequestVote(m) = &mut flagged {
            m.leader_transfer = true;
        }
        net.core_mut("n3").step("n1", flagged).unwrap();
        net.flush("n3");
        let replies = net.queue.drain(..).map(|(_, e)| e).collect::<Vec<_>>();
        let granted = vote_responses(&replies)
            .iter()
            .any(|(to, r)| *to == "n1" && r.granted);
        assert!(granted, "pre_vote {pre_vote}: {replies:?}");
    }
}

#[test]
fn section_3_10_timeout_now_is_heard_only_from_the_current_leader() {
    let mut net = cluster(3, |_| {});
    // From a member that is not n2's leader, or of another term: ignored.
    for (from, term) in [("n3", 1), ("n1", 0), ("n1", 5)] {
        let m = Message::TimeoutNow(TimeoutNow {
            term,
            from: from.to_string(),
        });
        net.core_mut("n2").step(from, m).unwrap();
        net.flush("n2");
        assert_eq!(
            net.core("n2").role(),
            Role::Follower,
            "from {from} in term {term}"
        );
    }
    // A message naming someone else than its sender is refused whole.
    let forged = Message::TimeoutNow(TimeoutNow { term: 1, from: id(1) });
    assert!(net.core_mut("n2").step("n3", forged).is_err());
}

#[test]
fn section_3_10_transfer_to_a_lagging_target_catches_it_up_first() {
    let mut net = cluster(3, |_| {});
    net.isolate("n2");
    for i in 0..20 {
        net.propose("n1", &[&format!("v{i}")]);
        net.deliver_all();
    }
    let last = net.core("n1").log().last_index();
    assert!(net.core("n2").log().last_index() < last);
    net.heal();
    transfer(&mut net, "n1", "n2").unwrap();
    assert_eq!(
        queued_timeout_nows(&net),
        0,
        "not before the target has the whole log"
    );
    for _ in 0..10 {
        if net.core("n2").role() == Role::Leader {
            break;
        }
        net.deliver_all();
        net.tick("n1");
    }
    assert_eq!(net.leaders(), vec![(id(2), 2)]);
    // TimeoutNow left only after n2 acknowledged the leader's last index.
    let delivered = &net.delivered;
    let timeout_now = delivered.iter().position(|(_, e)| is_timeout_now(e)).unwrap();
    let caught_up = delivered
        .iter()
        .position(|(f, e)| {
            let acks_last =
                matches!(&e.msg, Message::AppendEntriesResponse(r) if r.success && r.match_index == last);
            f == "n2" && acks_last
        })
        .unwrap();
    assert!(caught_up < timeout_now);
    let (n1, n2) = (terms_of(net.core("n1")), terms_of(net.core("n2")));
    assert_eq!(&n2[..last as usize], &n1[..last as usize]);
}

#[test]
fn section_3_10_a_transfer_asked_before_the_first_leaders_bootstrap_commits_goes_ahead() {
    // The bootstrap configuration commits with the leader's first entry; the
    // target holds it once caught up and commits it as the new leader.
    let mut net = Net::new(3, |_| {});
    super::membership::elect_without_appends(&mut net, "n1");
    let (bootstrap, _) = net.core("n1").configs.latest();
    assert!(net.core("n1").commit() < bootstrap);
    transfer(&mut net, "n1", "n2").unwrap();
    assert_eq!(net.core("n1").transferring_to(), Some("n2"));
    net.deliver_all();
    net.tick("n1");
    net.deliver_all();
    assert_eq!(net.leaders(), vec![(id(2), 2)]);
    let pos = net.propose("n2", &["after"]);
    net.deliver_all();
    assert!(net.core("n2").commit() >= pos[0].0);
    assert!(
        net.core("n2").commit() > bootstrap,
        "the bootstrap configuration committed"
    );
}
