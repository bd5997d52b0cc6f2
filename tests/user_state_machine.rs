//! User-defined state machines on a live 3-node cluster: proposals through
//! the leader and a follower get apply's answer, every node applies the same
//! sequence, a refusal reaches the proposer and the node goes on, a panic
//! fails only its node (the process lives), and the machine is dropped once.

mod common;

use common::{wait_until, Cluster};
use floyd::{Error, Floyd, Options, StateMachine};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What one node's machine went through, for the test to look at.
#[derive(Default)]
struct Seen {
    applied: Vec<(u64, Vec<u8>)>,
    leading: Option<u64>,
    dropped: usize,
    /// Snapshots loaded, and account "a" after the latest apply or load.
    loads: usize,
    balance_a: u64,
}

type Shared = Arc<Mutex<Seen>>;

/// A bank ledger: "deposit A N", "withdraw A N" (refused when short),
/// "balance A"; "boom" panics where armed (on purpose, on one node only).
struct Ledger {
    accounts: BTreeMap<String, u64>,
    seen: Shared,
    armed: Arc<AtomicBool>,
}

impl StateMachine for Ledger {
    fn apply(&mut self, index: u64, data: &[u8]) -> Result<Vec<u8>, String> {
        self.seen.lock().unwrap().applied.push((index, data.to_vec()));
        let text = std::str::from_utf8(data).map_err(|_| "not UTF-8".to_string())?;
        let words: Vec<&str> = text.split(' ').collect();
        let amount = |n: &str| n.parse::<u64>().map_err(|e| format!("bad amount {n}: {e}"));
        let answer = match words[..] {
            ["deposit", account, n] => {
                let balance = self.accounts.entry(account.to_string()).or_default();
                *balance += amount(n)?;
                *balance
            }
            ["withdraw", account, n] => {
                let (n, balance) = (amount(n)?, self.accounts.get(account).copied().unwrap_or(0));
                if balance < n {
                    return Err(format!("insufficient funds: {account} has {balance}"));
                }
                self.accounts.insert(account.to_string(), balance - n);
                balance - n
            }
            ["balance", account] => self.accounts.get(account).copied().unwrap_or(0),
            ["boom"] if self.armed.load(Ordering::SeqCst) => panic!("ledger exploded at {index}"),
            ["boom"] => 0,
            _ => return Err(format!("bad command {text:?}")),
        };
        self.seen.lock().unwrap().balance_a = self.accounts.get("a").copied().unwrap_or(0);
        Ok(answer.to_string().into_bytes())
    }

    fn snapshot_save(&mut self, dir: &Path) -> Result<(), String> {
        let text: String = self.accounts.iter().map(|(a, b)| format!("{a} {b}\n")).collect();
        std::fs::write(dir.join("ledger.txt"), text).map_err(|e| e.to_string())
    }

    fn snapshot_load(&mut self, dir: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(dir.join("ledger.txt")).map_err(|e| e.to_string())?;
        self.accounts = text
            .lines()
            .map(|l| {
                let (a, b) = l.split_once(' ').ok_or("bad line")?;
                Ok((a.to_string(), b.parse().map_err(|_| "bad balance")?))
            })
            .collect::<Result<_, &str>>()?;
        let mut seen = self.seen.lock().unwrap();
        seen.loads += 1;
        seen.balance_a = self.accounts.get("a").copied().unwrap_or(0);
        Ok(())
    }

    fn on_leader_start(&mut self, term: u64) {
        self.seen.lock().unwrap().leading = Some(term);
    }

    fn on_leader_stop(&mut self) {
        self.seen.lock().unwrap().leading = None;
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.seen.lock().unwrap().dropped += 1;
    }
}

fn ledger(seen: &Shared, armed: &Arc<AtomicBool>) -> Box<Ledger> {
    Box::new(Ledger {
        accounts: BTreeMap::new(),
        seen: seen.clone(),
        armed: armed.clone(),
    })
}

/// A 3-node ledger cluster, with each node's view and panic switch.
fn ledger_cluster() -> (Cluster, Vec<Shared>, Vec<Arc<AtomicBool>>) {
    let seen: Vec<Shared> = (0..3).map(|_| Shared::default()).collect();
    let armed: Vec<Arc<AtomicBool>> = (0..3).map(|_| Arc::default()).collect();
    let c = Cluster::start_with_machines(3, |i| ledger(&seen[i], &armed[i]));
    (c, seen, armed)
}

fn propose(node: &Floyd, command: &str) -> Result<String, Error> {
    node.propose(command.as_bytes())
        .map(|answer| String::from_utf8(answer).unwrap())
}

#[test]
fn proposals_are_answered_by_apply_and_applied_alike_on_every_node() {
    let (mut c, seen, _) = ledger_cluster();
    let leader = c.wait_for_leader();
    let follower = c.follower_of(leader);
    let term = c.node(leader).server_status().term;
    wait_until("on_leader_start on the leader", || {
        seen[leader].lock().unwrap().leading == Some(term)
    });

    let (l, f) = (c.node(leader), c.node(follower));
    assert_eq!(propose(l, "deposit alice 100").unwrap(), "100");
    assert_eq!(
        propose(f, "deposit alice 20").unwrap(),
        "120",
        "forwarded: the leader's answer"
    );
    assert_eq!(propose(f, "withdraw alice 30").unwrap(), "90");
    // A refusal reaches the proposer, from the leader and through a follower alike.
    for node in [l, f] {
        match propose(node, "withdraw alice 1000") {
            Err(Error::StateMachine(m)) => assert_eq!(m, "insufficient funds: alice has 90"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    assert!(matches!(propose(f, "nonsense"), Err(Error::StateMachine(_))));
    // ... and the node goes on.
    assert_eq!(propose(f, "deposit bob 5").unwrap(), "5");
    assert_eq!(propose(l, "balance alice").unwrap(), "90");
    assert_eq!(
        propose(f, "").unwrap_err(),
        Error::StateMachine("bad command \"\"".into())
    );

    // The key-value and lock calls are refused before reaching the log.
    for node in [l, f] {
        let refused = [
            node.write(b"k", b"v").err(),
            node.delete(b"k").err(),
            node.read(b"k").err(),
            node.dirty_read(b"k").err(),
            node.try_lock(b"n", b"h", 1000).err(),
            node.unlock(b"n", b"h").err(),
        ];
        for e in refused {
            assert!(
                matches!(&e, Some(Error::InvalidArgument(m)) if m.contains("user-defined state machine")),
                "{e:?}"
            );
        }
    }

    // Every node applies the same commands at the same indexes.
    wait_until("every node applied all 9 commands", || {
        seen.iter().all(|s| s.lock().unwrap().applied.len() == 9)
    });
    let applied: Vec<Vec<(u64, Vec<u8>)>> = seen.iter().map(|s| s.lock().unwrap().applied.clone()).collect();
    assert!(applied.iter().all(|a| *a == applied[0]), "{applied:?}");
    assert!(applied[0].windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(applied[0][0].1, b"deposit alice 100");
    assert_eq!(c.node(follower).server_status().locks_held, 0);

    for i in 0..3 {
        c.stop(i);
    }
    for (i, s) in seen.iter().enumerate() {
        let s = s.lock().unwrap();
        assert_eq!(s.dropped, 1, "node {i}'s machine dropped once, at close");
        assert_eq!(s.leading, None, "node {i} told it no longer leads");
    }
}

#[test]
fn a_panicking_apply_fails_only_its_node_and_the_process_lives_on() {
    let (c, seen, armed) = ledger_cluster();
    let leader = c.wait_for_leader();
    let follower = c.follower_of(leader);
    armed[follower].store(true, Ordering::SeqCst);
    assert_eq!(propose(c.node(leader), "boom").unwrap(), "0");
    let mut failure = None;
    wait_until("the armed follower fails", || {
        match propose(c.node(follower), "balance a") {
            Err(Error::Failed(m)) => {
                failure = Some(m);
                true
            }
            _ => false,
        }
    });
    let m = failure.unwrap();
    assert!(
        m.contains("state machine apply panicked: ledger exploded at"),
        "{m}"
    );
    // The other two go on without it.
    assert_eq!(propose(c.node(leader), "deposit a 5").unwrap(), "5");
    assert!(seen[follower]
        .lock()
        .unwrap()
        .applied
        .iter()
        .all(|(_, d)| d != b"deposit a 5"));
}

#[test]
fn the_key_value_store_refuses_propose_and_a_failed_open_drops_the_machine() {
    let c = Cluster::start(1);
    match c.node(0).propose(b"deposit a 1") {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("key-value store"), "{m}"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    let seen = Shared::default();
    let machine = Box::new(Ledger {
        accounts: BTreeMap::new(),
        seen: seen.clone(),
        armed: Arc::default(),
    });
    let bad = Options::new("", "127.0.0.1", 1, c.dir.path().join("bad"));
    assert!(Floyd::open_with_state_machine(bad, machine).is_err());
    assert_eq!(seen.lock().unwrap().dropped, 1);
}

/// With the runtime's snapshots (issue 10): a follower that missed entries
/// compacted away is rebuilt from the leader's snapshot, and a restarted
/// node loads its own latest snapshot, then applies only the entries after it.
#[test]
fn snapshots_rebuild_a_lagging_follower_and_a_restarted_node() {
    let seen: Vec<Shared> = (0..3).map(|_| Shared::default()).collect();
    let armed = Arc::new(AtomicBool::new(false));
    let mut c = Cluster::start_partial(3, 0);
    c.initial = 3;
    for (i, s) in seen.iter().enumerate() {
        let mut o = c.options(i);
        o.snapshot_log_entries = 20;
        o.snapshot_log_bytes = 0;
        o.snapshot_keep_entries = 5;
        c.custom[i] = Some(o);
        c.open_machine(i, ledger(s, &armed));
    }
    let leader = c.wait_for_leader();
    let lagging = c.follower_of(leader);
    let restarted = (0..3).find(|i| *i != leader && *i != lagging).unwrap();
    c.stop(lagging);
    for n in 1..=60u64 {
        assert_eq!(propose(c.node(leader), "deposit a 1").unwrap(), n.to_string());
    }
    wait_until("the leader's log compacted", || {
        c.node(leader).server_status().first_log_index > 10
    });

    // A fresh machine: it cannot replay entries that are gone, so it gets a snapshot.
    seen[lagging].lock().unwrap().applied.clear();
    c.open_machine(lagging, ledger(&seen[lagging], &armed));
    wait_until("the lagging follower rebuilt", || {
        seen[lagging].lock().unwrap().balance_a == 60
    });
    assert!(seen[lagging].lock().unwrap().loads >= 1, "it loaded a snapshot");

    c.wait_caught_up(restarted, leader);
    c.stop(restarted);
    let last_applied = {
        let s = std::mem::take(&mut *seen[restarted].lock().unwrap());
        assert_eq!(s.dropped, 1);
        s.applied.last().unwrap().0
    };
    c.open_machine(restarted, ledger(&seen[restarted], &armed));
    assert_eq!(propose(c.node(restarted), "deposit a 1").unwrap(), "61");
    wait_until("the restarted node caught up", || {
        seen[restarted].lock().unwrap().balance_a == 61
    });
    let s = seen[restarted].lock().unwrap();
    assert!(s.loads >= 1, "it loaded its snapshot at start");
    assert!(
        s.applied.len() < 30 && s.applied.windows(2).all(|w| w[0].0 < w[1].0),
        "only the tail after the snapshot is applied, once each (it had applied up to {last_applied}): {:?}",
        s.applied.iter().map(|(i, _)| *i).collect::<Vec<_>>()
    );
}
