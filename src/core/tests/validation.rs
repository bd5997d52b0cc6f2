//! Issue 6, item 3: forged or corrupt messages from someone who passed the
//! handshake. Each is refused whole: no term change, nothing to persist, no
//! panic, and the cluster goes on electing and committing.

use super::*;

fn ack(term: u64, from: &str, success: bool, match_index: u64, rejected_prev: u64) -> Message {
    Message::AppendEntriesResponse(AppendEntriesResponse {
        term,
        success,
        from: from.to_string(),
        match_index,
        rejected_prev_index: rejected_prev,
        ..Default::default()
    })
}

/// Steps `msg` into `node`, expects a refusal, and checks that nothing changed.
fn refused(net: &mut Net, node: &str, from: &str, msg: Message) -> Rejected {
    net.flush_all();
    let before = net.core(node).status();
    let why = net
        .core_mut(node)
        .step(from, msg)
        .expect_err("a forged message is refused");
    assert_eq!(net.core(node).status(), before, "refusing {why} changed the core");
    assert!(
        net.core_mut(node).ready().is_empty(),
        "refusing {why} produced work"
    );
    why
}

/// The cluster still elects a new leader once `old_leader` is cut off, and
/// commits through it.
fn still_works(net: &mut Net, old_leader: &str) {
    net.isolate(old_leader);
    let others: Vec<NodeId> = net.nodes.keys().filter(|n| *n != old_leader).cloned().collect();
    let mut new_leader = None;
    for _ in 0..200 {
        for n in &others {
            net.tick(n);
        }
        net.deliver_all();
        new_leader = net
            .leaders()
            .into_iter()
            .map(|(id, _)| id)
            .find(|id| id != old_leader);
        if new_leader.is_some() {
            break;
        }
    }
    let new_leader = new_leader.expect("the others elect a new leader");
    let (index, _) = net.propose(&new_leader, &["after"])[0];
    net.deliver_all();
    assert!(net.core(&new_leader).commit() >= index);
    net.heal();
}

#[test]
fn a_term_near_u64_max_is_refused_and_never_persisted() {
    let mut net = Net::new(3, |_| {});
    net.elect("n1");
    for term in [u64::MAX, u64::MAX - 1, MAX_WIRE_VALUE + 1] {
        let why = refused(&mut net, "n2", "n1", append(term, "n1", (0, 0), vec![], 0));
        assert!(matches!(why, Rejected::OutOfRange { field: "term", .. }), "{why}");
        refused(&mut net, "n2", "n3", vote_request(term, "n3", (9, 9), false));
    }
    still_works(&mut net, "n1");
    assert!(net.core("n2").term() < 10);
}

#[test]
fn an_acknowledgement_beyond_the_leaders_log_is_refused() {
    let mut net = Net::new(3, |_| {});
    net.elect("n1");
    let term = net.core("n1").term();
    let last = net.core("n1").log().last_index();
    for (matched, rejected) in [(u64::MAX, 0), (last + 1, 0), (0, last + 1), (0, u64::MAX)] {
        let success = rejected == 0;
        refused(&mut net, "n1", "n2", ack(term, "n2", success, matched, rejected));
    }
    // The leader keeps replicating to that follower.
    let (index, _) = net.propose("n1", &["x"])[0];
    net.flush_all();
    net.deliver_all();
    assert_eq!(net.core("n1").commit(), index);
    assert_eq!(net.core("n1").progress("n2").unwrap().match_index, index);
}

#[test]
fn non_contiguous_or_inconsistent_entries_are_refused() {
    let mut net = Net::new(3, |_| {});
    net.elect("n1");
    let t = net.core("n1").term();
    let bad = [
        append(t, "n1", (1, t), vec![ent(3, t)], 0), // a gap after prev
        append(t, "n1", (1, t), vec![ent(2, t), ent(2, t)], 0), // repeated index
        append(t, "n1", (1, t), vec![ent(2, t + 1)], 0), // term above the leader's
        append(t, "n1", (0, 0), vec![ent(1, t), ent(2, t - 1)], 0), // terms going down
        append(t, "n1", (0, 0), vec![ent(1, 0)], 0), // term 0
        append(t, "n1", (0, 1), vec![], 0),          // index 0 has term 0
        append(t, "n1", (u64::MAX, t), vec![ent(0, t)], 0), // index overflow
    ];
    for msg in bad {
        let why = refused(&mut net, "n2", "n1", msg);
        assert!(
            matches!(why, Rejected::MalformedAppend(_) | Rejected::OutOfRange { .. }),
            "{why}"
        );
    }
    still_works(&mut net, "n1");
}

#[test]
fn a_message_naming_another_sender_or_from_self_or_a_stranger_is_refused() {
    let mut net = Net::new(3, |_| {});
    net.elect("n1");
    let t = net.core("n1").term();
    // Sent over n3's connection, but claiming to be the leader n1.
    let why = refused(&mut net, "n2", "n3", append(t + 1, "n1", (0, 0), vec![], 0));
    assert!(matches!(why, Rejected::SenderMismatch { .. }), "{why}");
    let why = refused(&mut net, "n2", "n2", vote_request(t + 1, "n2", (9, 9), false));
    assert_eq!(why, Rejected::FromSelf);
    // Answers must come from members: a stranger's vote or acknowledgement
    // (here with a higher term, which would otherwise depose the leader) is refused.
    let grant = Message::RequestVoteResponse(RequestVoteResponse {
        term: t + 1,
        granted: true,
        pre_vote: false,
        from: "n9".into(),
    });
    let why = refused(&mut net, "n1", "n9", grant);
    assert_eq!(why, Rejected::NotMember("n9".into()));
    let why = refused(&mut net, "n1", "n9", ack(t + 1, "n9", false, 0, 0));
    assert_eq!(why, Rejected::NotMember("n9".into()));
    // A stranger's request for votes is not refused (it may be a server of a
    // newer configuration) but, its log not being ahead, ignored: no term
    // change, no vote (§4.2.3).
    net.flush_all();
    let last = (
        net.core("n2").log().last_index(),
        net.core("n2").log().last_term(),
    );
    net.core_mut("n2")
        .step("n9", vote_request(t + 1, "n9", last, false))
        .unwrap();
    assert_eq!(net.core("n2").term(), t);
    assert!(net.core_mut("n2").ready().is_empty());
    still_works(&mut net, "n1");
}

/// Found by fuzzing (rpc_step): a leader of term 10 sends entry 1 of term
/// 10, which the follower commits; then, in the same term, entry 1 again
/// but of term 1. No honest leader does that (§5.4, Leader Completeness);
/// the follower used to panic on the truncation of a committed entry. Now
/// it refuses the message.
#[test]
fn section_5_4_an_append_entries_contradicting_a_committed_entry_is_refused() {
    let mut net = Net::new(3, |_| {});
    let first = append(10, "n3", (0, 0), vec![ent(1, 10)], 8);
    net.core_mut("n1").step("n3", first).unwrap();
    let rd = net.core_mut("n1").ready();
    net.core_mut("n1").on_persisted(1, 10);
    drop(rd);
    assert_eq!(net.core("n1").commit(), 1);
    let contradiction = append(10, "n3", (0, 0), vec![ent(1, 1)], 0);
    let why = refused(&mut net, "n1", "n3", contradiction);
    assert!(
        matches!(
            why,
            Rejected::ContradictsCommitted {
                index: 1,
                term: 1,
                committed_term: 10
            }
        ),
        "{why}"
    );
    assert_eq!(terms_of(net.core("n1")), vec![10], "the committed entry stays");
}
