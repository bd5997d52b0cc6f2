//! Committing entries (§5.4.2): Figure 8, quorum and durability rules for the
//! commit index, the single-node cluster, and applying after a restart.

use super::*;

// ---------------------------------------------------------------------------
// §5.4.2 Committing entries from previous terms
// ---------------------------------------------------------------------------

/// Figure 8 set-up: S1 (n1) led term 2 and wrote (2,2) on S2; S5 led term 3 and wrote
/// (2,3) only locally. Now S1 leads term 4 and copies (2,2) to S3, but S3 never gets
/// the term-4 no-op. S4 and S5 are cut off.
fn figure_8_setup() -> Net {
    let logs = [
        (3, vec![1, 2]),
        (3, vec![1, 2]),
        (3, vec![1]),
        (3, vec![1]),
        (3, vec![1, 3]),
    ];
    let mut net = Net::with_logs(&logs, |c| {
        c.max_entries_per_message = 1;
        c.check_quorum = false;
    });
    net.isolate("n4");
    net.isolate("n5");
    net.campaign("n1");
    let mut noop_to_n3 = 0;
    net.deliver_where(|_, env| match &env.msg {
        // S3 hears the first probe (and rejects it, its log being too short) but
        // none of the AppendEntries that would give it the term-4 no-op.
        Message::AppendEntries(a) if env.to == "n3" && a.entries.iter().any(|e| e.term == 4) => {
            noop_to_n3 += 1;
            noop_to_n3 == 1
        }
        _ => true,
    });
    assert_eq!((net.core("n1").role(), net.core("n1").term()), (Role::Leader, 4));
    net
}

#[test]
fn figure_8_no_commit_of_earlier_term_entries_by_counting() {
    let mut net = figure_8_setup();
    // (2,2) is now stored on a majority: S1, S2, S3 ...
    for n in ["n1", "n2", "n3"] {
        assert_eq!(net.core(n).log().term(2), Some(2), "{n}");
    }
    assert_eq!(terms_of(net.core("n3")), vec![1, 2]);
    assert_eq!(net.core("n1").progress("n3").unwrap().match_index, 2);
    assert_eq!(net.core("n1").progress("n2").unwrap().match_index, 3);
    // ... yet the leader of term 4 must not commit it by counting replicas.
    assert_eq!(net.core("n1").commit(), 0);
    for n in 1..=5 {
        assert_eq!(net.core(&id(n)).commit(), 0);
    }

    // Figure 8(d): why. S1 crashes; S5 (last entry (2,3)) wins term 5 with S3 and S4
    // and overwrites (2,2) everywhere it reaches, S2 included.
    net.heal();
    net.isolate("n1");
    net.queue.clear();
    net.elect("n5");
    net.tick("n5");
    net.deliver_all();
    assert_eq!(net.core("n5").term(), 5);
    for n in ["n2", "n3", "n4", "n5"] {
        assert_eq!(terms_of(net.core(n)), vec![1, 3, 5], "{n}");
        assert_eq!(net.core(n).commit(), 3);
    }
}

#[test]
fn figure_8_earlier_term_entries_commit_with_an_entry_of_the_current_term() {
    // Figure 8(e): once entries of term 4 reach S3, a majority holds an entry of
    // the leader's term, and (2,2) commits with it.
    let mut net = figure_8_setup();
    assert_eq!(net.core("n1").commit(), 0);
    assert_eq!(net.propose("n1", &["x"]), vec![(4, 4)]);
    net.deliver_all();
    net.tick("n1");
    net.deliver_all();
    assert_eq!(terms_of(net.core("n3")), vec![1, 2, 4, 4]);
    for n in ["n1", "n2", "n3"] {
        assert_eq!(net.core(n).commit(), 4, "{n}");
    }
    assert_eq!(net.nodes["n3"].applied, entries_of(net.core("n1")));
}

#[test]
fn new_leader_commits_its_noop_and_proposals_only_on_a_quorum() {
    let mut net = Net::new(3, |_| {});
    net.elect("n1");
    assert_eq!(net.core("n1").commit(), 1, "the no-op of term 1");
    let pos = net.propose("n1", &["x"]);
    assert_eq!(pos, vec![(2, 1)]);
    assert_eq!(net.core("n1").log().stable_index(), 2);
    assert_eq!(net.core("n1").commit(), 1, "stored only on the leader");
    net.blocked.insert((id(1), id(3)));
    net.deliver_all();
    assert_eq!(net.core("n1").commit(), 2, "stored on n1 and n2");
    assert_eq!(net.core("n2").commit(), 2);
    assert_eq!(net.core("n3").log().last_index(), 1);
    assert_eq!(
        net.nodes["n1"].applied.last().map(|e| e.payload.clone()),
        Some(Bytes::from("x"))
    );
}

#[test]
fn leader_counts_itself_only_once_its_own_entries_are_durable() {
    let mut net = Net::new(3, |_| {});
    net.elect("n1");
    assert_eq!(net.core("n1").commit(), 1);
    net.isolate("n3");
    // The leader's own write of entry 2 is slow: its Ready is taken, not yet persisted.
    net.core_mut("n1").propose(vec![Bytes::from("x")]).unwrap();
    let rd = net.core_mut("n1").ready();
    assert_eq!(rd.persisted_position(), Some((2, 1)));
    for env in rd.messages.clone() {
        net.queue.push_back((id(1), env));
    }
    net.deliver_all();
    // n2 holds entry 2 durably; n1 + n2 would be a majority, but n1's copy is not durable.
    assert_eq!(net.core("n2").log().stable_index(), 2);
    assert_eq!(net.core("n1").progress("n2").unwrap().match_index, 2);
    assert_eq!(net.core("n1").commit(), 1);
    persist(&mut net.nodes.get_mut("n1").unwrap().disk, &rd);
    net.core_mut("n1").on_persisted(2, 1);
    assert_eq!(net.core("n1").commit(), 2);
    net.deliver_all();
    assert_eq!(net.core("n2").commit(), 2);
}

// ---------------------------------------------------------------------------
// Single node, restart
// ---------------------------------------------------------------------------

#[test]
fn single_node_cluster_elects_itself_and_commits_on_local_persist() {
    let mut n = RaftCore::new(cfg("n1", 1), Restored::default(), 1);
    // A lone voter has nobody to wait for: it campaigns on its first tick.
    n.tick();
    assert_eq!((n.role(), n.term(), n.leader()), (Role::Leader, 1, Some("n1")));
    assert_eq!(n.commit(), 0, "nothing commits before it is durable");
    let rd = n.ready();
    assert_eq!(
        rd.hard_state.as_ref().map(|h| (h.term, h.vote.clone())),
        Some((1, Some(id(1))))
    );
    assert_eq!(rd.entries.len(), 1);
    // The first leader of a cluster writes the bootstrap configuration in
    // place of the no-op.
    assert_eq!(rd.entries[0].r#type, EntryType::EntryConfig as i32);
    assert!(rd.must_sync);
    n.on_persisted(1, 1);
    assert_eq!(n.commit(), 1);

    let pos = n.propose(vec![Bytes::from("a"), Bytes::from("b")]).unwrap();
    assert_eq!(pos, vec![(2, 1), (3, 1)]);
    assert_eq!(n.commit(), 1);
    let rd = n.ready();
    assert_eq!(rd.entries.len(), 2);
    n.on_persisted(3, 1);
    assert_eq!(n.commit(), 3);
    let applied: Vec<Bytes> = n
        .entries_to_apply(10)
        .into_iter()
        .skip(1)
        .map(|e| e.payload)
        .collect();
    assert_eq!(applied, vec![Bytes::from("a"), Bytes::from("b")]);
}

#[test]
fn restart_does_not_reapply_entries_applied_beyond_the_persisted_commit() {
    // The commit index is persisted lazily (a commit-only Ready need not be fsynced),
    // so a state machine may have applied past the commit index on disk.
    let disk = Restored {
        hard_state: HardState {
            term: 1,
            vote: Some(id(1)),
            commit: 2,
        },
        entries: log_of(&[1, 1, 1, 1]),
        applied: 3,
        config: None,
        ..Default::default()
    };
    let n = RaftCore::new(cfg("n2", 3), disk, 2);
    let s = n.status();
    assert_eq!(s.applied, 3);
    assert!(s.commit >= 3);
    assert_eq!(
        n.entries_to_apply(10),
        Vec::<Entry>::new(),
        "entry 3 is already applied"
    );
}
