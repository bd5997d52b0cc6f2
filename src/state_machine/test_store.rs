//! What the state-machine tests share: a store of its own in a temporary
//! directory, a seeded generator, and replicas that apply one history in
//! different random batches, compared wherever two ended a batch.

use super::{CommandKind, KvStateMachine};
use crate::error::Result;
use crate::wire::{Entry, Range};
use bytes::Bytes;
use std::collections::BTreeMap;

pub struct Store {
    pub dir: tempfile::TempDir,
    pub sm: KvStateMachine,
}

impl Store {
    pub fn new() -> Store {
        let dir = tempfile::tempdir().unwrap();
        let sm = KvStateMachine::open(dir.path()).unwrap();
        Store { dir, sm }
    }

    pub fn apply(&self, entries: &[Entry]) -> Vec<Result<Option<Bytes>>> {
        self.sm
            .apply(entries)
            .unwrap()
            .into_iter()
            .map(|a| a.result)
            .collect()
    }

    pub fn revision(&self) -> u64 {
        self.sm.range(&Range::default()).unwrap().revision
    }

    /// Every key and value the store holds, bookkeeping included.
    pub fn dump(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let db = self.sm.db().unwrap();
        db.iterator(rocksdb::IteratorMode::Start)
            .map(|kv| kv.unwrap())
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect()
    }
}

/// A seeded xorshift generator: the same seed, the same history.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A replica's store after each batch, by the batch's last index.
pub type States = BTreeMap<u64, Vec<(Vec<u8>, Vec<u8>)>>;

/// `entries` applied by a fresh replica in random batches of 1 to 25: the
/// replica, and its store after each batch.
pub fn in_random_batches(entries: &[Entry], rng: &mut Rng) -> (Store, States) {
    let s = Store::new();
    let mut states = States::new();
    let mut next = 0;
    while next < entries.len() {
        let end = (next + 1 + rng.below(25) as usize).min(entries.len());
        s.apply(&entries[next..end]);
        states.insert(end as u64, s.dump());
        next = end;
    }
    (s, states)
}

/// Checks that at every index where two replicas both ended a batch their
/// stores are byte-identical (the last index is common to all).
pub fn assert_replicas_agree(seed: u64, replicas: &[States]) {
    let mut compared = 0;
    for (index, state) in &replicas[0] {
        for other in &replicas[1..] {
            if let Some(theirs) = other.get(index) {
                assert_eq!(state, theirs, "seed {seed}: replicas differ at index {index}");
                compared += 1;
            }
        }
    }
    assert!(compared > 0, "seed {seed}: the last index at least is common");
}

/// A put of `value` under `key`.
pub fn put(key: &str, value: &str) -> CommandKind {
    CommandKind::Put {
        key: Bytes::from(key.to_string()),
        value: Bytes::from(value.to_string()),
    }
}

/// A delete of `key`.
pub fn del(key: &str) -> CommandKind {
    CommandKind::Delete {
        key: Bytes::from(key.to_string()),
    }
}
