//! Log store tests: append, conflict truncation, read-back across reopen,
//! (term, vote) persistence, corruption reported as an error.

use super::*;
use bytes::Bytes;

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        term,
        index,
        r#type: 1,
        payload: Bytes::from(format!("v{index}-{term}")),
        leader_time_ms: 0,
    }
}

fn append(store: &LogStore, hs: Option<&HardState>, truncate: Option<u64>, entries: &[Entry]) {
    let mut b = LogBatch::default();
    b.add(hs, truncate, entries);
    store.write(b, true).unwrap();
}

#[test]
fn empty_store_loads_empty() {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(dir.path()).unwrap();
    let l = s.load().unwrap();
    assert_eq!(l.hard_state, HardState::default());
    assert!(l.entries.is_empty());
    assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (0, 0));
}

#[test]
fn append_and_read_back_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<_> = (1..=5).map(|i| entry(i, 1)).collect();
    let hs = HardState {
        term: 3,
        vote: Some("127.0.0.1:7".into()),
        commit: 4,
    };
    {
        let s = LogStore::open(dir.path()).unwrap();
        append(&s, Some(&hs), None, &entries);
        assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (1, 5));
    }
    let s = LogStore::open(dir.path()).unwrap();
    let l = s.load().unwrap();
    assert_eq!(l.entries, entries);
    assert_eq!(l.hard_state, hs);
    assert_eq!(s.entry(3).unwrap(), Some(entry(3, 1)));
    assert_eq!(s.entry(6).unwrap(), None);
}

#[test]
fn conflict_truncation_replaces_the_suffix() {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(dir.path()).unwrap();
    append(&s, None, None, &(1..=6).map(|i| entry(i, 1)).collect::<Vec<_>>());
    append(&s, None, Some(4), &[entry(4, 2), entry(5, 2)]);
    let l = s.load().unwrap();
    let terms: Vec<_> = l.entries.iter().map(|e| (e.index, e.term)).collect();
    assert_eq!(terms, vec![(1, 1), (2, 1), (3, 1), (4, 2), (5, 2)]);
    assert_eq!(s.last_index().unwrap(), 5);
}

#[test]
fn several_readies_in_one_batch_apply_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(dir.path()).unwrap();
    let mut b = LogBatch::default();
    b.add(None, None, &[entry(1, 1), entry(2, 1), entry(3, 1)]);
    b.add(
        Some(&HardState {
            term: 2,
            vote: None,
            commit: 1,
        }),
        Some(2),
        &[entry(2, 2)],
    );
    assert!(!b.is_empty());
    s.write(b, true).unwrap();
    let l = s.load().unwrap();
    assert_eq!(l.entries, vec![entry(1, 1), entry(2, 2)]);
    assert_eq!(l.hard_state.term, 2);
}

#[test]
fn vote_can_be_cleared_and_term_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = LogStore::open(dir.path()).unwrap();
        append(
            &s,
            Some(&HardState {
                term: 5,
                vote: Some("a:1".into()),
                commit: 0,
            }),
            None,
            &[],
        );
        append(
            &s,
            Some(&HardState {
                term: 6,
                vote: None,
                commit: 0,
            }),
            None,
            &[],
        );
    }
    let s = LogStore::open(dir.path()).unwrap();
    assert_eq!(
        s.hard_state().unwrap(),
        HardState {
            term: 6,
            vote: None,
            commit: 0
        }
    );
}

#[test]
fn undecodable_entry_is_corruption_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = LogStore::open(dir.path()).unwrap();
        append(&s, None, None, &[entry(1, 1)]);
        s.db.get()
            .unwrap()
            .put(entry_key(2), b"\xff\xff\xff garbage")
            .unwrap();
    }
    let s = LogStore::open(dir.path()).unwrap();
    assert!(matches!(s.load(), Err(Error::Corruption(_))));
}

#[test]
fn gap_in_log_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(dir.path()).unwrap();
    append(&s, None, None, &[entry(1, 1), entry(3, 1)]);
    assert!(matches!(s.load(), Err(Error::Corruption(_))));
}

#[test]
fn malformed_meta_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(dir.path()).unwrap();
    s.db.get().unwrap().put(keys::TERM, b"abc").unwrap();
    assert!(matches!(s.hard_state(), Err(Error::Corruption(_))));
}

#[test]
fn unopenable_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    assert!(LogStore::open(&file.join("log")).is_err());
}

#[test]
fn a_closed_store_releases_its_directory_and_answers_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(dir.path()).unwrap();
    append(&s, None, None, &[entry(1, 1)]);
    // RocksDB's LOCK: a second open of a held directory fails.
    assert!(LogStore::open(dir.path()).is_err());
    s.close();
    s.close();
    assert!(matches!(s.load(), Err(Error::Stopped(_))));
    assert!(matches!(s.last_index(), Err(Error::Stopped(_))));
    assert!(matches!(s.entry(1), Err(Error::Stopped(_))));
    assert!(matches!(
        s.write(LogBatch::default(), true),
        Err(Error::Stopped(_))
    ));
    // Still alive, yet the directory opens again.
    let again = LogStore::open(dir.path()).unwrap();
    assert_eq!(again.load().unwrap().entries, vec![entry(1, 1)]);
}

#[test]
fn the_configuration_and_bootstrap_members_are_stored_and_recovered() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = LogStore::open(dir.path()).unwrap();
        assert_eq!(store.load().unwrap().config, None);
        assert_eq!(store.bootstrap_members().unwrap(), None);
        let mut m = Membership::new(["a:1".to_string(), "b:2".to_string()]);
        m.learners.insert("c:3".into());
        m.uid = "u".into();
        let mut batch = LogBatch::default();
        batch.add(None, None, &[entry(1, 1)]);
        batch.set_config(1, &m);
        store.write(batch, true).unwrap();
        store
            .set_bootstrap_members(&["a:1".to_string(), "b:2".to_string()])
            .unwrap();
    }
    let store = LogStore::open(dir.path()).unwrap();
    let (index, m) = store.load().unwrap().config.unwrap();
    assert_eq!(index, 1);
    assert_eq!(m.voters.len(), 2);
    assert!(m.learners.contains("c:3"));
    assert_eq!(m.uid, "u");
    assert_eq!(
        store.bootstrap_members().unwrap().unwrap(),
        vec!["a:1".to_string(), "b:2".to_string()]
    );
}

#[test]
fn a_compacted_log_loads_from_its_start_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = LogStore::open(dir.path()).unwrap();
        let entries: Vec<_> = (1..=10).map(|i| entry(i, 2)).collect();
        append(&s, None, None, &entries);
        let mut b = LogBatch::default();
        b.set_log_start(6, 2);
        s.write(b, true).unwrap();
        s.reclaim(6).unwrap();
    }
    let s = LogStore::open(dir.path()).unwrap();
    let l = s.load().unwrap();
    assert_eq!(l.log_start, (6, 2));
    assert_eq!(
        l.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
        vec![7, 8, 9, 10]
    );
    assert_eq!(s.first_index().unwrap(), 7);
    // An installed snapshot past the end of the log empties it.
    let mut b = LogBatch::default();
    b.set_log_start(20, 3);
    s.write(b, true).unwrap();
    let l = s.load().unwrap();
    assert_eq!((l.log_start, l.entries.len()), ((20, 3), 0));
}

/// The table files of the store in `dir`.
fn table_files(dir: &std::path::Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sst"))
        .collect()
}

/// Reclaiming runs on the log writer, ahead of every write: it must never
/// rewrite data (a manual compaction there held writes up for 50 to 280 ms
/// per compaction with 4 KiB values).
#[test]
fn reclaim_rewrites_no_file_and_the_log_loads_from_its_new_start() {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(dir.path()).unwrap();
    for chunk in 0..2u64 {
        let entries: Vec<_> = (1..=1000).map(|i| entry(chunk * 1000 + i, 1)).collect();
        append(&s, None, None, &entries);
        s.db.get().unwrap().flush().unwrap();
    }
    let before = table_files(dir.path());
    assert_eq!(before.len(), 2, "one file per flush");
    let mut b = LogBatch::default();
    b.set_log_start(1500, 1);
    s.write(b, true).unwrap();
    s.reclaim(1500).unwrap();
    let after = table_files(dir.path());
    assert!(
        after.is_subset(&before),
        "reclaim rewrote files: {before:?} -> {after:?}"
    );
    let l = s.load().unwrap();
    assert_eq!(l.log_start, (1500, 1));
    assert_eq!(l.entries.first().map(|e| e.index), Some(1501));
    assert_eq!(l.entries.len(), 500);
}
