//! §7 (log compaction) and Figure 13 (InstallSnapshot).

use super::*;

fn install_offers(net: &Net) -> Vec<(NodeId, u64)> {
    net.delivered
        .iter()
        .filter_map(|(_, env)| match &env.msg {
            Message::InstallSnapshot(m) => Some((env.to.clone(), m.meta.as_ref().unwrap().last_index)),
            _ => None,
        })
        .collect()
}

/// A 3-node cluster where n3 was cut off while n1 committed `writes`
/// entries and then compacted its log to its applied index.
fn lagging_follower(writes: usize) -> Net {
    let mut net = Net::new(3, |_| {});
    net.elect("n1");
    net.isolate("n3");
    for i in 0..writes {
        net.propose("n1", &[&format!("w{i}")]);
        net.deliver_all();
    }
    net.snapshot("n1", 0);
    net.heal();
    net
}

#[test]
fn section7_a_follower_behind_the_compacted_log_is_sent_the_snapshot_and_then_entries() {
    let mut net = lagging_follower(5);
    let start = net.core("n1").log().start_index();
    assert_eq!(start, 6, "noop + 5 writes compacted");
    assert!(net.core("n1").log().entry(start).is_none());
    // A write after the snapshot: replicated by entries once n3 holds the snapshot.
    net.propose("n1", &["after"]);
    for _ in 0..3 {
        net.tick("n1");
        net.deliver_all();
    }
    assert_eq!(install_offers(&net), vec![("n3".to_string(), 6)]);
    let n3 = net.core("n3");
    assert_eq!(n3.log().start_index(), 6);
    assert_eq!(n3.commit(), 7);
    assert_eq!(net.nodes["n3"].applied, net.nodes["n1"].applied);
    assert_eq!(net.core("n1").progress("n3").unwrap().match_index, 7);
    assert_eq!(
        net.core("n1").progress("n3").unwrap().state,
        ProgressState::Replicate
    );
}

#[test]
fn figure13_a_follower_holding_the_snapshots_last_entry_keeps_the_entries_after_it() {
    let mut f = RaftCore::new(cfg("n2", 3), restored(1, &[1, 1, 1, 1]), 1);
    f.step("n1", append(1, "n1", (4, 1), vec![], 2)).unwrap();
    f.ready();
    let meta = SnapshotMeta {
        last_index: 3,
        last_term: 1,
        config_index: 0,
        config: Some(Membership::new(ids(3)).to_wire()),
    };
    let offer = InstallSnapshot {
        term: 1,
        leader: "n1".into(),
        meta: Some(meta),
    };
    f.step("n1", Message::InstallSnapshot(offer)).unwrap();
    let rd = f.ready();
    assert!(rd.snapshot.is_some() && rd.truncate_from.is_none());
    assert_eq!(f.log().start_index(), 3);
    assert_eq!(
        f.log().last_index(),
        4,
        "entry 4 follows the snapshot and is kept"
    );
    assert_eq!(f.commit(), 3);
}

#[test]
fn figure13_a_conflicting_log_is_discarded_and_the_snapshots_configuration_rules() {
    // n2 holds entries of a deposed term 2 past its commit point.
    let mut f = RaftCore::new(cfg("n2", 3), restored(2, &[1, 2, 2, 2]), 1);
    let five = Membership::new(ids(5));
    let meta = SnapshotMeta {
        last_index: 10,
        last_term: 3,
        config_index: 8,
        config: Some(five.to_wire()),
    };
    let offer = InstallSnapshot {
        term: 3,
        leader: "n1".into(),
        meta: Some(meta),
    };
    f.step("n1", Message::InstallSnapshot(offer)).unwrap();
    let rd = f.ready();
    assert_eq!(rd.snapshot.as_ref().map(|m| m.last_index), Some(10));
    assert_eq!(rd.config.as_ref().map(|c| c.0), Some(8));
    assert!(rd.truncate_from.is_some_and(|t| t <= 2));
    assert_eq!(
        (f.log().start_index(), f.log().last_index(), f.log().last_term()),
        (10, 10, 3)
    );
    assert_eq!(f.membership().voters.len(), 5);
    // Nothing applies before the state machine has loaded the snapshot.
    assert_eq!(f.applicable_index(), 0);
    assert!(f.entries_to_apply(10).is_empty());
    // The acknowledgement waits for the log reset to be durable.
    let acks = append_responses(&rd.messages_after_persist);
    assert_eq!(acks.len(), 1);
    assert!(acks[0].1.success && acks[0].1.match_index == 10);
    f.on_snapshot_installed(10);
    assert_eq!(f.status().applied, 10);
}

#[test]
fn figure13_a_snapshot_at_or_below_the_commit_index_is_acknowledged_not_installed() {
    let mut f = RaftCore::new(cfg("n2", 3), restored(1, &[1, 1, 1, 1]), 1);
    f.step("n1", append(1, "n1", (4, 1), vec![], 4)).unwrap();
    f.ready();
    let offer = InstallSnapshot {
        term: 1,
        leader: "n1".into(),
        meta: Some(SnapshotMeta {
            last_index: 2,
            last_term: 1,
            config_index: 0,
            config: Some(Membership::new(ids(3)).to_wire()),
        }),
    };
    f.step("n1", Message::InstallSnapshot(offer)).unwrap();
    let rd = f.ready();
    assert!(rd.snapshot.is_none());
    assert_eq!(f.log().start_index(), 0);
    let acks = append_responses(&rd.messages_after_persist);
    assert_eq!(acks[0].1.match_index, 4);
}

#[test]
fn section7_a_failed_stream_is_offered_again_and_a_silent_one_after_patience() {
    let mut net = lagging_follower(3);
    // Every offer to n3 is lost.
    net.deliver_where(|_, env| !matches!(env.msg, Message::InstallSnapshot(_)));
    net.tick("n1");
    net.deliver_where(|_, env| !matches!(env.msg, Message::InstallSnapshot(_)));
    let pr = net.core("n1").progress("n3").unwrap();
    assert_eq!(pr.state, ProgressState::Snapshot);
    let index = pr.pending_snapshot;
    // The runtime reports the stream broke: offered again at once.
    net.core_mut("n1").report_snapshot("n3", index, false);
    net.tick("n1");
    let offered = net
        .queue
        .iter()
        .any(|(_, e)| e.to == "n3" && matches!(e.msg, Message::InstallSnapshot(_)));
    assert!(offered, "a failed stream is offered again");
    // Sent whole but never acknowledged: offered again after patience (n2
    // keeps answering, so n1 stays leader).
    net.deliver_where(|_, env| env.to != "n3");
    net.core_mut("n1").report_snapshot("n3", index, true);
    let heartbeats = net.core("n1").snapshot_patience(true);
    let mut offers = 0;
    for _ in 0..heartbeats * net.nodes["n1"].cfg.heartbeat_ticks {
        net.tick("n1");
        net.deliver_where(|_, env| {
            offers += usize::from(env.to == "n3" && matches!(env.msg, Message::InstallSnapshot(_)));
            env.to != "n3"
        });
    }
    assert_eq!(
        offers, 0,
        "patience: no offer while the acknowledgement may still come"
    );
    net.tick("n1");
    let offered = net
        .queue
        .iter()
        .any(|(_, e)| e.to == "n3" && matches!(e.msg, Message::InstallSnapshot(_)));
    assert!(offered, "an unacknowledged snapshot is offered again");
    // Delivered at last: n3 catches up.
    net.deliver_all();
    assert_eq!(net.nodes["n3"].applied, net.nodes["n1"].applied);
}

#[test]
fn section7_an_append_reaching_before_the_followers_start_is_trimmed_not_refused() {
    let mut net = Net::new(3, |_| {});
    net.elect("n1");
    net.propose("n1", &["a", "b", "c"]);
    net.deliver_all();
    net.snapshot("n2", 0);
    assert_eq!(net.core("n2").log().start_index(), 4);
    // A duplicate of an old AppendEntries (entries 1..=4) arrives late.
    let old = append(1, "n1", (0, 0), log_of(&[1, 1, 1, 1]), 4);
    net.core_mut("n2").step("n1", old).unwrap();
    let rd = net.core_mut("n2").ready();
    assert!(rd.entries.is_empty() && rd.truncate_from.is_none());
    let acks = append_responses(&rd.messages_after_persist);
    assert!(acks[0].1.success, "{acks:?}");
    assert_eq!(acks[0].1.match_index, 4);
}

#[test]
fn section7_a_restart_loads_the_snapshot_and_the_log_tail() {
    let mut net = Net::new(3, |_| {});
    net.elect("n1");
    for i in 0..4 {
        net.propose("n1", &[&format!("w{i}")]);
    }
    net.deliver_all();
    net.snapshot("n1", 2);
    net.propose("n1", &["tail"]);
    net.deliver_all();
    let before = net.core("n1").status();
    net.restart("n1");
    let after = net.core("n1").status();
    assert_eq!(
        (after.last_log_index, after.last_log_term),
        (before.last_log_index, before.last_log_term)
    );
    assert_eq!(net.core("n1").log().start_index(), 3);
    assert_eq!(net.core("n1").latest_snapshot().map(|s| s.last_index), Some(5));
    // n2 and n3 stop waiting for their old leader, then n1 leads again.
    for _ in 0..2 * net.nodes["n2"].cfg.election_ticks {
        net.core_mut("n2").tick();
        net.core_mut("n3").tick();
    }
    net.queue.clear();
    net.elect("n1");
    net.propose("n1", &["again"]);
    net.deliver_all();
    assert_eq!(net.nodes["n2"].applied.len(), net.nodes["n1"].applied.len());
}

#[test]
fn section7_a_restart_after_an_interrupted_install_adopts_the_snapshot() {
    // The snapshot was committed to disk, then the node crashed before the
    // log was reset: its log still ends at 2 while the snapshot is at 10.
    let mut disk = restored(3, &[1, 1]);
    disk.snapshot = Some(SnapshotMeta {
        last_index: 10,
        last_term: 3,
        config_index: 0,
        config: Some(Membership::new(ids(3)).to_wire()),
    });
    disk.applied = 10;
    let mut n = RaftCore::new(cfg("n2", 3), disk, 1);
    let s = n.status();
    assert_eq!(
        (s.last_log_index, s.last_log_term, s.commit, s.applied),
        (10, 3, 10, 10)
    );
    let rd = n.ready();
    assert!(rd.snapshot.is_some(), "the log reset is persisted");
    assert!(n.entries_to_apply(10).is_empty());
}

/// Found by the simulation (seed 359): a restarted node whose log was
/// compacted past a configuration entry, holding a later uncommitted one,
/// must fall back to the snapshot's configuration when that one is
/// truncated — not to the bootstrap list.
#[test]
fn section7_a_restart_keeps_the_snapshots_configuration_under_a_truncated_one() {
    let mut three = Membership::new(ids(3));
    three.uid = "cluster".into();
    let mut five = Membership::new(ids(5));
    five.uid = "cluster".into();
    let mut config_entry = ent(12, 1);
    config_entry.r#type = EntryType::EntryConfig as i32;
    config_entry.payload = Bytes::from(prost::Message::encode_to_vec(&five.to_wire()));
    let disk = Restored {
        hard_state: HardState {
            term: 1,
            vote: None,
            commit: 11,
        },
        log_start: (10, 1),
        entries: vec![ent(11, 1), config_entry],
        applied: 10,
        config: Some((12, five)),
        snapshot: Some(SnapshotMeta {
            last_index: 10,
            last_term: 1,
            config_index: 1,
            config: Some(three.to_wire()),
        }),
    };
    // Bootstrapped with a different list: falling back to it would be wrong.
    let mut n = RaftCore::new(Config::new("n2", vec!["n2".into()]), disk, 1);
    assert_eq!(n.config_index(), 12);
    n.step("n1", append(2, "n1", (11, 1), vec![ent(12, 2)], 11))
        .unwrap();
    assert_eq!(
        n.config_index(),
        1,
        "the snapshot's configuration is back in force"
    );
    assert_eq!(n.membership(), &three);
}
