//! A watcher on every node (issue 22): each streams every change of the
//! group through raftis's `FLOYD.WATCH` while the nemesis kills, stops and
//! cuts nodes. When its node dies or its connection breaks, it watches
//! again from the last revision it saw: the changes of that revision it
//! already has must come again identical, and are dropped. At the end,
//! once every node applied the same revision, every watcher must hold the
//! same sequence: every revision from the first on, in order, each once,
//! ending at that revision, and folding it gives the data every node holds.

use crate::common::watch_stream::{watch, Change, Streamed};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What one node's watcher saw.
#[derive(Debug, Default)]
pub struct Watched {
    pub node: usize,
    pub changes: Vec<Change>,
    /// Watches started (1 + how often it had to watch again).
    pub watches: usize,
    /// Why watches ended by themselves, and replays that differed.
    pub notes: Vec<String>,
}

/// The watchers, one per node, running until [`Watchers::finish`].
pub struct Watchers {
    stop: Arc<AtomicBool>,
    /// Per watcher, the last revision it holds.
    last: Vec<Arc<AtomicUsize>>,
    threads: Vec<JoinHandle<Watched>>,
}

impl Watchers {
    /// Starts a watcher per address, each from revision `from` (the
    /// group's next), and returns once each one's first watch is in place.
    pub fn start(addrs: Vec<String>, from: u64) -> Watchers {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Arc::new(AtomicUsize::new(0));
        let mut last = Vec::new();
        let threads = addrs
            .into_iter()
            .enumerate()
            .map(|(node, addr)| {
                let (stop, started) = (stop.clone(), started.clone());
                let seen = Arc::new(AtomicUsize::new(0));
                last.push(seen.clone());
                std::thread::spawn(move || run(node, &addr, from, (&stop, &started, &seen)))
            })
            .collect::<Vec<_>>();
        let n = threads.len();
        let deadline = Instant::now() + crate::common::DEADLINE;
        while started.load(Ordering::Acquire) < n {
            assert!(Instant::now() < deadline, "the watchers never started");
            std::thread::park_timeout(Duration::from_millis(10));
        }
        Watchers { stop, last, threads }
    }

    /// Waits until every watcher holds revision `revision`, then stops them.
    pub fn finish(self, revision: u64) -> Vec<Watched> {
        let deadline = Instant::now() + crate::common::DEADLINE;
        while self
            .last
            .iter()
            .any(|l| l.load(Ordering::Acquire) as u64 != revision)
        {
            if Instant::now() > deadline {
                break; // (the check below says who fell short)
            }
            std::thread::park_timeout(Duration::from_millis(20));
        }
        self.stop.store(true, Ordering::Release);
        self.threads.into_iter().map(|t| t.join().unwrap()).collect()
    }
}

/// `stop`: set when the run is over; `started`: counts first watches in
/// place; `last`: the last revision this watcher holds.
type Shared<'a> = (&'a AtomicBool, &'a AtomicUsize, &'a AtomicUsize);

fn run(node: usize, addr: &str, first: u64, (stop, started, last): Shared<'_>) -> Watched {
    let mut w = Watched {
        node,
        ..Watched::default()
    };
    while !stop.load(Ordering::Acquire) {
        // Again from the last revision seen.
        let from = w.changes.last().map_or(first, |c| c.revision);
        let mut stream = match watch(addr, b"", b"", from, Duration::from_millis(100)) {
            Ok(Ok(s)) => s,
            Ok(Err(refused)) => {
                w.notes.push(format!("refused from {from}: {refused}"));
                std::thread::park_timeout(Duration::from_millis(50));
                continue;
            }
            Err(_) => {
                // The node is down (killed, stopped) or cut off: again soon.
                std::thread::park_timeout(Duration::from_millis(50));
                continue;
            }
        };
        if w.watches == 0 {
            started.fetch_add(1, Ordering::Release);
        }
        w.watches += 1;
        // The changes of `from` already held come again first.
        let held = w.changes.len() - w.changes.iter().rev().take_while(|c| c.revision == from).count();
        let mut replay = held..w.changes.len();
        while !stop.load(Ordering::Acquire) {
            match stream.next() {
                Ok(Streamed::Change(c)) => {
                    if let Some(i) = replay.next() {
                        if w.changes[i] != c {
                            w.notes
                                .push(format!("replay differs: had {:?}, now {c:?}", w.changes[i]));
                        }
                        continue;
                    }
                    last.store(c.revision as usize, Ordering::Release);
                    w.changes.push(c);
                }
                Ok(Streamed::Idle) => {}
                Ok(Streamed::End(why)) => {
                    w.notes.push(format!("ended: {why}"));
                    break;
                }
                Err(_) => break,
            }
        }
    }
    w
}

/// Checks the watchers' sequences; `None` if they hold, else what broke.
/// `final_revision`: the revision every node applied at the end;
/// `data`: the value of each key the run wrote (`None`: absent) on every node then.
pub fn check(
    watched: &[Watched],
    final_revision: u64,
    data: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
) -> Option<String> {
    let first = &watched.first()?.changes;
    for w in watched {
        if let Some(note) = w.notes.iter().find(|n| n.starts_with("replay differs")) {
            return Some(format!("node {}'s watcher: {note}", w.node));
        }
        let c = &w.changes;
        if c.last().map(|c| c.revision) != Some(final_revision) {
            return Some(format!(
                "node {}'s watcher ends at {:?}, the group at revision {final_revision} ({:?})",
                w.node,
                c.last().map(|c| c.revision),
                w.notes
            ));
        }
        for pair in c.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            let in_order = b.revision == a.revision + 1 || (b.revision == a.revision && b.key != a.key);
            if !in_order {
                return Some(format!(
                    "node {}'s watcher: {a:?} then {b:?} (a gap, a repeat or out of order)",
                    w.node
                ));
            }
        }
        if c != first {
            let at = c.iter().zip(first).position(|(x, y)| x != y);
            return Some(format!(
                "node {}'s watcher differs from node {}'s at change {at:?} ({} vs {} changes)",
                w.node,
                watched[0].node,
                c.len(),
                first.len()
            ));
        }
    }
    let mut folded = BTreeMap::new();
    for ch in first {
        match ch.put {
            true => folded.insert(ch.key.clone(), ch.value.clone()),
            false => folded.remove(&ch.key),
        };
    }
    for (key, value) in data {
        if folded.get(key) != value.as_ref() {
            return Some(format!(
                "the changes fold to {:?} for {key:?}, the nodes hold {value:?}",
                folded.get(key)
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(revision: u64, key: &str, value: &str) -> Change {
        Change {
            revision,
            put: true,
            key: key.into(),
            value: value.into(),
        }
    }

    fn watched(node: usize, changes: Vec<Change>) -> Watched {
        Watched {
            node,
            changes,
            watches: 1,
            notes: Vec::new(),
        }
    }

    fn data(pairs: &[(&str, Option<&str>)]) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn identical_gapless_sequences_that_fold_to_the_data_pass() {
        let seq = vec![
            put(5, "a", "1"),
            put(6, "b", "1"),
            put(6, "c", "1"),
            put(7, "a", "2"),
        ];
        let w = [watched(0, seq.clone()), watched(1, seq)];
        let d = data(&[("a", Some("2")), ("b", Some("1")), ("d", None)]);
        assert_eq!(check(&w, 7, &d), None);
    }

    #[test]
    fn a_gap_a_repeat_a_difference_a_short_end_or_a_wrong_fold_is_caught() {
        let d = data(&[("a", Some("2"))]);
        let good = vec![put(5, "a", "1"), put(6, "a", "2")];
        let cases = [
            vec![put(5, "a", "1"), put(7, "a", "2")],                   // gap
            vec![put(5, "a", "1"), put(5, "a", "1"), put(6, "a", "2")], // repeat
            vec![put(6, "a", "2"), put(5, "a", "1")],                   // out of order
        ];
        for bad in cases {
            let w = [watched(0, bad.clone()), watched(1, bad)];
            assert!(check(&w, 6, &d).is_some());
        }
        let w = [
            watched(0, good.clone()),
            watched(1, vec![put(5, "a", "1"), put(6, "a", "3")]),
        ];
        assert!(check(&w, 6, &d).is_some(), "two watchers differ");
        let w = [watched(0, good.clone()), watched(1, good[..1].to_vec())];
        assert!(check(&w, 6, &d).is_some(), "one fell short");
        let w = [watched(0, good.clone())];
        assert!(
            check(&w, 6, &data(&[("a", Some("9"))])).is_some(),
            "folds to another value"
        );
        let mut noted = watched(0, good);
        noted.notes.push("replay differs: …".into());
        assert!(check(&[noted], 6, &d).is_some());
    }
}
