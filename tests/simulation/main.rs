//! A seeded, deterministic, randomized simulation of the pure Raft core.
//!
//! 3–7 cores (and up to two spares) talk through a simulated network that loses, duplicates and
//! reorders messages and is split by (possibly one-way) partitions that heal.
//! Nodes crash and restart: each has a simulated disk (hard state + log) that
//! only holds what the simulation persisted, and Readies are persisted
//! sometimes at once, sometimes later (a per-node queue persisted in order), so
//! messages that must wait for persistence really wait, and a crash loses every
//! Ready not yet persisted. A commit-only Ready (`must_sync == false`) is
//! written without fsync and may be lost by a crash. Each node's state machine
//! is a list of applied (index, term, payload), persisted atomically with its
//! applied index. Clients propose unique payloads to whichever node leads; a
//! proposal is acknowledged when its proposer applies it at the (index, term)
//! `propose` returned.
//!
//! Most seeds also change the membership: spare nodes run from the start
//! (joining with no configuration, or misconfigured with a member list naming
//! the cluster and themselves) and clients ask the leader to add a node
//! outside its configuration (a spare, or a removed node with its old disk)
//! or to remove a voter or learner; learners are promoted by the leader.
//! Removed nodes keep running, ticking and crashing (see `model/membership.rs`).
//!
//! Most seeds also compact logs (see `model/snapshot.rs`): nodes snapshot
//! their state machine at random moments and compact their log, on disk
//! too (a log start and a snapshot store beside the log); a leader offers
//! its latest snapshot to followers behind its log (crashed, partitioned or
//! new ones), which store it, reset their log and load it into their state
//! machine, with crashes in the middle of installs; restarts load the
//! stored snapshot into a state machine behind it.
//!
//! Half the seeds let idle groups go quiet (`core/quiesce.rs`): a crash
//! or a partition tells the nodes on the other side that the link to a
//! host died (`peer_host_down`; now and then a crash goes unnoticed, and
//! now and then a live host is reported dead), as the runtime's links do.
//!
//! Clients also read (see `model/reads.rs`): on any live node, by
//! ReadIndex; a read is served once its node applied the confirmed index,
//! and must see every write committed before it began (linearizability).
//!
//! Every node has its own clock, a little fast or slow, and now and then
//! nodes are held up (their ticks come late, all at once, while they keep
//! receiving messages), as a late primary thread is (see `model/clock.rs`).
//! Most seeds with check-quorum turn lease reads on: a leader then serves
//! reads on its lease, and after every step no node may lead a later term
//! while a leader's lease holds (dissertation §6.4.1).
//!
//! After every step a [`Checker`] verifies the invariants of
//! `raft-acceptance.md` that apply to the core (election safety, log
//! matching, leader completeness, state machine safety, committed entries
//! never change and stay on a quorum of disks (a majority of the voters the
//! committing leader counted: see [`Checker::on_quorum_of_disks`]; a stored
//! snapshot holds what it covers), `snapshot_index ≤ applied ≤ commit ≤
//! last_log_index` (invariant 7; during an install the state machine is
//! behind the snapshot until it loads it, and applies nothing meanwhile), an
//! installed state machine is the committed prefix, monotonic terms and durable votes, AppendEntries only from
//! the term's leader, acknowledged proposals applied exactly once, in order),
//! the membership rules (at most one configuration above the commit index in
//! any log, a leader never leads on with its removal committed, votes only to
//! voters of the granter's configuration or to candidates whose log is ahead
//! of the granter's, the stored configuration is the one in force), plus the
//! driving contract of the core's `Ready`. At the end everything heals and
//! the members of the final configuration must converge.
//!
//! `FLOYD_SIM_SEEDS=N` runs seeds `0..N` (default 200), `FLOYD_SIM_SEED=S`
//! runs only seed S, `FLOYD_SIM_STEPS=M` sets the number of random steps per
//! seed (default 4000); `FLOYD_SIM_TRACE=1` prints every event and
//! `FLOYD_SIM_VERBOSE=1` each seed's statistics. A failure prints the seed, the
//! last events and the command that reproduces it, e.g.
//! `FLOYD_SIM_SEED=1234 cargo test --test simulation -- --nocapture`.
//! Long runs: `FLOYD_SIM_SEEDS=5000 cargo test --release --test simulation -- --nocapture`.

mod checker;
mod model;

use bytes::Bytes;
use checker::Checker;
use floyd::core::{HardState, NodeId};
use floyd::wire::Entry;
use model::{run_seed, Mutation, Stats};
use std::collections::BTreeSet;

const DEFAULT_SEEDS: u64 = 200;
const DEFAULT_STEPS: usize = 4000;

fn repro_command(seed: u64, steps: usize) -> String {
    let steps = if steps == DEFAULT_STEPS {
        String::new()
    } else {
        format!("FLOYD_SIM_STEPS={steps} ")
    };
    format!("FLOYD_SIM_SEED={seed} {steps}cargo test --test simulation -- --nocapture")
}

fn env_number(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
    )
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn simulation_random_seeds() {
    let steps = env_number("FLOYD_SIM_STEPS").map_or(DEFAULT_STEPS, |s| s as usize);
    let seeds: Vec<u64> = match env_number("FLOYD_SIM_SEED") {
        Some(s) => vec![s],
        None => (0..env_number("FLOYD_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS)).collect(),
    };
    let mut total = Stats::default();
    // Seeds whose faults left no time to commit any client proposal.
    let mut idle_seeds = Vec::new();
    for &seed in &seeds {
        let stats = run_seed(seed, steps, None).unwrap_or_else(|report| panic!("{report}"));
        if seeds.len() == 1 || std::env::var_os("FLOYD_SIM_VERBOSE").is_some() {
            eprintln!("seed {seed}: {stats:?}");
        }
        if stats.committed_proposals == 0 {
            idle_seeds.push(seed);
        }
        total.add(&stats);
    }
    eprintln!("{} seeds x {steps} steps: {total:?}", seeds.len());
    // The runs must not pass vacuously: clients' proposals get committed and
    // acknowledged (given time for elections: a few hundred steps are a few ticks).
    if steps < 1000 {
        return;
    }
    assert!(
        total.committed_proposals > 0 && total.acked > 0,
        "no progress at all: {total:?}"
    );
    if seeds.len() > 1 {
        assert!(
            idle_seeds.len() * 10 <= seeds.len(),
            "{} of {} seeds committed no client proposal ({idle_seeds:?}): {total:?}",
            idle_seeds.len(),
            seeds.len()
        );
        assert!(
            total.acked * 4 >= total.proposals,
            "too few proposals acknowledged: {total:?}"
        );
        // Membership changes happened, and went all the way.
        if seeds.len() >= 20 {
            assert!(
                total.promotions > 0 && total.removals > 0 && total.outsiders > 0,
                "no learner promoted or no member removed: {total:?}"
            );
            // Logs were compacted, and followers behind them caught up by snapshot.
            assert!(
                total.snapshots_taken > 0 && total.installs > 0 && total.restart_loads > 0,
                "no snapshot taken, installed or loaded at restart: {total:?}"
            );
            // Reads were served, some only after waiting to apply their index.
            assert!(
                total.reads_served > 0 && total.reads_waited > 0,
                "no read served, or none waited for its index: {total:?}"
            );
            // Lease reads were served, and nodes woke late and took their ticks at once.
            assert!(
                total.reads_on_lease > 0 && total.late_bursts > 0,
                "no lease read, or no late burst of ticks: {total:?}"
            );
            // Groups went quiet, and nodes heard of dead hosts.
            assert!(
                total.quiet_periods > 0 && total.host_down_notices > 0,
                "no quiet group, or no host-down notice: {total:?}"
            );
        }
    }
}

#[test]
fn checker_detects_fabricated_violations() {
    let e = |index, term, p: &str| Entry {
        index,
        term,
        r#type: 1,
        payload: Bytes::from(p.to_string()),
        leader_time_ms: 0,
        log_time_rule: 0,
    };

    // Two leaders in one term.
    let mut c = Checker::default();
    assert!(c.leader(3, "n1").is_ok());
    assert!(c.leader(3, "n1").is_ok());
    assert!(c.leader(4, "n2").is_ok());
    assert!(c.leader(3, "n2").unwrap_err().contains("election safety"));

    // AppendEntries from someone who does not lead the term.
    assert!(c.append_sent("n1", 3).is_ok());
    assert!(c.append_sent("n2", 3).is_err());
    assert!(c.append_sent("n1", 5).is_err());

    // Two votes in one term.
    assert!(c.vote_granted("n3", 4, "n2").is_ok());
    assert!(c.vote_granted("n3", 4, "n2").is_ok());
    assert!(c.vote_granted("n3", 4, "n1").is_err());

    // Log matching: same (index, term), different payload or predecessor.
    assert!(c.entry_written("n1", &e(2, 2, "a"), 1).is_ok());
    assert!(c.entry_written("n2", &e(2, 2, "a"), 1).is_ok());
    assert!(c.entry_written("n2", &e(2, 2, "b"), 1).is_err());
    assert!(c.entry_written("n3", &e(2, 2, "a"), 0).is_err());

    // A committed entry that changes, and leader completeness.
    let log_a = [e(1, 1, "x"), e(2, 2, "y")];
    let log_b = [e(1, 1, "x"), e(2, 3, "z")];
    assert!(c
        .commit("n1", 2, 2, |k| log_a.get(k as usize - 1).cloned())
        .is_ok());
    assert!(c
        .commit("n2", 3, 1, |k| log_b.get(k as usize - 1).cloned())
        .is_ok());
    assert!(c
        .commit("n2", 3, 2, |k| log_b.get(k as usize - 1).cloned())
        .unwrap_err()
        .contains("committed entry changed"));
    assert!(c
        .leader_complete("n1", 5, |k| log_a.get(k as usize - 1).map(|e| e.term))
        .is_ok());
    assert!(c
        .leader_complete("n2", 5, |k| log_b.get(k as usize - 1).map(|e| e.term))
        .is_err());
    assert!(
        c.leader_complete("n3", 3, |_| None).is_err(),
        "entries 1-2 were committed in term 2"
    );
    assert!(
        c.leader_complete("n3", 2, |_| None).is_ok(),
        "nothing was committed before term 2"
    );
    // An entry of term 4 first committed in term 9 need not be in the log of term 8's leader.
    let mut late = Checker::default();
    let log_c = [e(1, 4, "old")];
    assert!(late
        .commit("n1", 9, 1, |k| log_c.get(k as usize - 1).cloned())
        .is_ok());
    assert!(late.leader_complete("n3", 8, |_| Some(7)).is_ok());
    assert!(late.leader_complete("n3", 10, |_| Some(7)).is_err());

    // Applying twice, out of order, or something not committed.
    assert!(c.applying("n1", 0, &log_a[0]).is_ok());
    assert!(c.applying("n1", 1, &log_a[0]).is_err());
    assert!(c.applying("n1", 0, &log_a[1]).is_err());
    assert!(c.applying("n2", 1, &log_b[1]).is_err());

    // Durable term and vote going backwards.
    let hs = |term, vote: Option<&str>| HardState {
        term,
        vote: vote.map(str::to_string),
        commit: 0,
    };
    assert!(c.hard_state_written("n1", &hs(2, Some("n1"))).is_ok());
    assert!(c.hard_state_written("n1", &hs(2, Some("n1"))).is_ok());
    assert!(c.hard_state_written("n1", &hs(2, Some("n2"))).is_err());
    assert!(c.hard_state_written("n1", &hs(1, None)).is_err());

    // A committed entry on too few disks: (2, 2) is on n1, n2 and n5, which is
    // 3 of {n1..n5} but only 2 of {n1..n4}.
    let full: Vec<Entry> = log_a.to_vec();
    let short: Vec<Entry> = log_a[..1].to_vec();
    let disks = [
        ("n1", full.as_slice()),
        ("n2", full.as_slice()),
        ("n3", short.as_slice()),
        ("n4", short.as_slice()),
        ("n5", full.as_slice()),
    ];
    let set = |ns: &[&str]| ns.iter().map(|n| n.to_string()).collect::<BTreeSet<NodeId>>();
    let (four, five, three) = (
        set(&["n1", "n2", "n3", "n4"]),
        set(&["n1", "n2", "n3", "n4", "n5"]),
        set(&["n1", "n2", "n3"]),
    );
    assert!(c
        .on_quorum_of_disks(2, 2, disks.iter().copied(), &[&four])
        .is_err());
    assert_eq!(
        c.on_quorum_of_disks(2, 2, disks.iter().copied(), &[&four, &five]),
        Ok(five.clone())
    );
    assert!(c
        .on_quorum_of_disks(2, 2, disks.iter().copied(), &[&three])
        .is_ok());
    assert!(
        c.on_quorum_of_disks(2, 3, disks.iter().copied(), &[&five])
            .is_err(),
        "another term"
    );

    // Two configurations above the commit index: two changes at once.
    assert!(c.one_config_above_commit("n1", [1, 2].into_iter()).is_ok());
    assert!(c.one_config_above_commit("n1", [1, 3].into_iter()).is_ok());
    assert!(c.one_config_above_commit("n1", [3, 4].into_iter()).is_err());

    // Reads: the floor is the highest commit seen (2, above) or shown now;
    // the confirmed index and the state served must reach it.
    assert_eq!(c.read_floor([1, 0].into_iter()), 2);
    assert_eq!(c.read_floor([5, 1].into_iter()), 5);
    assert!(c.read_confirmed("n1", 7, 5, 5).is_ok());
    assert!(c.read_confirmed("n1", 7, 5, 4).is_err());
    assert!(c.read_served("n2", 8, 5, 6).is_ok());
    assert!(c.read_served("n2", 8, 5, 4).unwrap_err().contains("stale read"));
}

#[test]
fn simulation_detects_injected_driver_bugs() {
    // A driver that acknowledges before persisting, forgets truncations, loses
    // votes, reports a snapshot installed without loading it, or serves reads
    // without ReadIndex or without waiting to apply its index must be caught;
    // otherwise the simulation could be passing vacuously.
    for mutation in [
        Mutation::SendBeforePersist,
        Mutation::IgnoreTruncate,
        Mutation::ForgetVoteOnRestart,
        Mutation::InstallWithoutLoad,
        Mutation::StaleRead,
        Mutation::NoApplyWait,
    ] {
        let caught = (0..40).find_map(|seed| run_seed(seed, 3000, Some(mutation)).err());
        let report = caught.unwrap_or_else(|| panic!("{mutation:?} was never detected"));
        assert!(report.contains("reproduce with: FLOYD_SIM_SEED="), "{report}");
        eprintln!(
            "{mutation:?} caught: {}",
            report.lines().next().unwrap_or_default()
        );
    }
}
