//! Many groups in one key-value store (issue 21): each applies, snapshots
//! and restores its own state, never another group's.

use super::*;

fn put(index: u64, k: &str, v: &str) -> Entry {
    Entry {
        term: 1,
        index,
        r#type: EntryType::EntryCommand as i32,
        payload: encode_command(CommandKind::Put {
            key: Bytes::from(k.to_string()),
            value: Bytes::from(v.to_string()),
        }),
        leader_time_ms: 1_000 + index,
        log_time_rule: 2,
    }
}

fn lock(index: u64, name: &str) -> Entry {
    Entry {
        payload: encode_command(CommandKind::TryLock {
            name: Bytes::from(name.to_string()),
            holder: Bytes::from_static(b"h"),
            ttl_ms: 60_000,
        }),
        ..put(index, "", "")
    }
}

fn value(sm: &KvStateMachine, key: &str) -> Option<String> {
    sm.get(key.as_bytes())
        .unwrap()
        .map(|v| String::from_utf8(v).unwrap())
}

#[test]
fn groups_in_one_store_keep_their_own_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = KvStore::open(dir.path()).unwrap();
    let (zero, one, big) = (
        KvStateMachine::in_store(store.clone(), 0),
        KvStateMachine::in_store(store.clone(), 1),
        KvStateMachine::in_store(store.clone(), u64::MAX),
    );
    zero.apply(&[put(1, "k", "zero"), lock(2, "L")]).unwrap();
    one.apply(&[
        put(1, "k", "one"),
        put(2, "only-one", "x"),
        put(3, "k", "one again"),
    ])
    .unwrap();
    big.apply(&[put(1, "k", "big")]).unwrap();
    assert_eq!(value(&zero, "k").as_deref(), Some("zero"));
    assert_eq!(value(&one, "k").as_deref(), Some("one again"));
    assert_eq!(value(&big, "k").as_deref(), Some("big"));
    assert_eq!(value(&zero, "only-one"), None);
    assert_eq!(
        (
            zero.applied_index().unwrap(),
            one.applied_index().unwrap(),
            big.applied_index().unwrap()
        ),
        (2, 3, 1)
    );
    assert_eq!((zero.locks_held().unwrap(), one.locks_held().unwrap()), (1, 0));
    // Closing a group of a shared store leaves the store and the others open.
    one.close();
    assert!(matches!(one.get(b"k"), Err(Error::Stopped(_))));
    assert_eq!(value(&zero, "k").as_deref(), Some("zero"));
    // A group's keys in the store: group 0 keeps the layout of before.
    let db = store.db.get().unwrap();
    assert_eq!(db.get(b"dk").unwrap().as_deref(), Some(&b"zero"[..]));
}

#[test]
fn an_export_restores_one_group_in_one_step_and_leaves_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let store = KvStore::open(&dir.path().join("db")).unwrap();
    let (a, b) = (
        KvStateMachine::in_store(store.clone(), 7),
        KvStateMachine::in_store(store.clone(), 8),
    );
    a.apply(&[put(1, "x", "1"), put(2, "y", "2"), lock(3, "L")])
        .unwrap();
    b.apply(&[put(1, "x", "b")]).unwrap();
    let snap = dir.path().join("snap");
    std::fs::create_dir(&snap).unwrap();
    assert_eq!(a.export(&snap).unwrap(), 3);
    // Later changes: an overwrite, a new key, a lock released by expiry
    // (gone from the snapshot's point of view).
    a.apply(&[put(4, "x", "changed"), put(5, "z", "new")]).unwrap();
    let file = snap.join(snapshot::EXPORT_FILE);
    assert_eq!(a.import(&file).unwrap(), 3);
    assert_eq!(value(&a, "x").as_deref(), Some("1"));
    assert_eq!(value(&a, "z"), None, "a key written after the snapshot is gone");
    assert_eq!(a.locks_held().unwrap(), 1);
    assert_eq!(
        value(&b, "x").as_deref(),
        Some("b"),
        "the other group is untouched"
    );
    assert!(file.exists(), "the snapshot stays");
    // Another store's group 7 (a follower) loads it too, through Machine.
    let other = KvStore::open(&dir.path().join("other")).unwrap();
    let follower = Machine::in_store(&other, 7, None);
    follower.apply(&[put(1, "stale", "s")]).unwrap();
    follower.snapshot_load(&snap, 3).unwrap();
    assert_eq!(follower.get(b"y").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(follower.get(b"stale").unwrap(), None);
    assert_eq!(follower.applied_index().unwrap(), 3);
    assert!(follower.snapshot_load(&snap, 4).is_err(), "the index is checked");
}

/// A node of an earlier version (or one opened on its own) sends a
/// checkpoint of its whole store: group 0 of a shared store loads it.
#[test]
fn a_checkpoint_from_a_private_store_loads_into_group_zero_of_a_shared_one() {
    let dir = tempfile::tempdir().unwrap();
    let private = Machine::open(&dir.path().join("private"), None).unwrap();
    private.apply(&[put(1, "k", "v"), lock(2, "L")]).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    assert_eq!(private.snapshot_save(&data).unwrap(), 2);
    assert!(data.join("kv").is_dir(), "a checkpoint");
    let store = KvStore::open(&dir.path().join("shared")).unwrap();
    let neighbour = KvStateMachine::in_store(store.clone(), 3);
    neighbour.apply(&[put(1, "k", "3")]).unwrap();
    let zero = Machine::in_store(&store, 0, None);
    zero.apply(&[put(1, "old", "o")]).unwrap();
    zero.snapshot_load(&data, 2).unwrap();
    assert_eq!(zero.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(zero.get(b"old").unwrap(), None);
    assert_eq!(zero.locks_held().unwrap(), 1);
    assert_eq!(value(&neighbour, "k").as_deref(), Some("3"));
    // A group other than 0 refuses one.
    assert!(Machine::in_store(&store, 3, None)
        .snapshot_load(&data, 2)
        .is_err());
    // A shared store's group snapshots as an export.
    let exported = dir.path().join("exported");
    std::fs::create_dir(&exported).unwrap();
    assert_eq!(zero.snapshot_save(&exported).unwrap(), 2);
    assert!(exported.join(snapshot::EXPORT_FILE).is_file());
}

/// The applied index and log time an apply keeps in memory follow every
/// other rewrite of the group's state: a snapshot loaded behind or ahead of
/// what was applied, and the group's data deleted.
#[test]
fn applying_after_a_snapshot_load_or_a_delete_starts_from_the_stored_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = KvStore::open(&dir.path().join("db")).unwrap();
    let a = KvStateMachine::in_store(store.clone(), 3);
    a.apply(&[put(1, "x", "1"), put(2, "x", "2")]).unwrap();
    let snap = dir.path().join("snap");
    std::fs::create_dir(&snap).unwrap();
    assert_eq!(a.export(&snap).unwrap(), 2);
    a.apply(&[put(3, "x", "3"), put(4, "x", "4")]).unwrap();
    // Back to 2: entries 3 and 4 apply again (a stale memory would skip them).
    assert_eq!(a.import(&snap.join(snapshot::EXPORT_FILE)).unwrap(), 2);
    a.apply(&[put(3, "x", "3 again"), put(4, "y", "4 again")])
        .unwrap();
    assert_eq!(value(&a, "x").as_deref(), Some("3 again"));
    assert_eq!(value(&a, "y").as_deref(), Some("4 again"));
    assert_eq!(a.applied_index().unwrap(), 4);
    // Ahead: a follower at 1 loads the snapshot at 2 and goes on from 3
    // (a stale memory would call entry 3 a gap after 1).
    let other = KvStore::open(&dir.path().join("other")).unwrap();
    let b = KvStateMachine::in_store(other, 3);
    b.apply(&[put(1, "x", "b")]).unwrap();
    assert_eq!(b.import(&snap.join(snapshot::EXPORT_FILE)).unwrap(), 2);
    b.apply(&[put(3, "x", "b3")]).unwrap();
    assert_eq!(
        (value(&b, "x").as_deref(), b.applied_index().unwrap()),
        (Some("b3"), 3)
    );
    // Deleted: the group starts from nothing again.
    a.delete_all().unwrap();
    a.apply(&[put(1, "fresh", "f")]).unwrap();
    assert_eq!((value(&a, "fresh").as_deref(), value(&a, "x")), (Some("f"), None));
    assert_eq!(a.applied_index().unwrap(), 1);
}

/// A group of a shared store keeps its applied index, log time and revision
/// in one key (`progress.rs`), and exports them as the separate keys of a
/// private store, which every release reads; a group loading separate keys
/// (an export, or a store of the previous release) goes on from them and
/// turns them into the one key.
#[test]
fn a_shared_group_keeps_its_progress_in_one_key_and_exports_the_separate_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = KvStore::open(&dir.path().join("db")).unwrap();
    let a = KvStateMachine::in_store(store.clone(), 5);
    let entries = [put(1, "x", "1"), lock(2, "L"), put(3, "y", "2")];
    a.apply(&entries).unwrap();
    let keys = KvKeys::of(5);
    let stored = |sm: &KvStateMachine, k: Vec<u8>| sm.db().unwrap().get(k).unwrap();
    assert!(stored(&a, keys.applied()).is_some_and(|v| v.len() > 8));
    for k in [keys.time(), keys.stamp(), keys.revision()] {
        assert_eq!(stored(&a, k), None);
    }
    // The export holds what a private store applying the same entries holds.
    let snap = dir.path().join("snap");
    std::fs::create_dir(&snap).unwrap();
    assert_eq!(a.export(&snap).unwrap(), 3);
    let exported = DB::open_default(dir.path().join("exported")).unwrap();
    exported
        .ingest_external_file(vec![snap.join(snapshot::EXPORT_FILE)])
        .unwrap();
    let private = KvStateMachine::open(&dir.path().join("private")).unwrap();
    private.apply(&entries).unwrap();
    let zero = KvKeys::of(0);
    let separate = |k: &KvKeys| [k.applied(), k.time(), k.stamp(), k.revision()];
    for (in_export, in_private) in separate(&keys).into_iter().zip(separate(&zero)) {
        let want = stored(&private, in_private.clone());
        assert!(want.is_some(), "{in_private:?}");
        assert_eq!(exported.get(&in_export).unwrap(), want, "{in_private:?}");
    }
    // Loaded elsewhere, the separate keys say where to go on from; the next
    // apply turns them into one key.
    let other = KvStateMachine::in_store(KvStore::open(&dir.path().join("other")).unwrap(), 5);
    assert_eq!(other.import(&snap.join(snapshot::EXPORT_FILE)).unwrap(), 3);
    assert!(stored(&other, keys.time()).is_some());
    let revision = other.range(&crate::wire::Range::default()).unwrap().revision;
    assert_eq!(
        revision,
        a.range(&crate::wire::Range::default()).unwrap().revision
    );
    other.apply(&[put(4, "x", "3")]).unwrap();
    for k in [keys.time(), keys.stamp(), keys.revision()] {
        assert_eq!(stored(&other, k), None);
    }
    assert_eq!(other.applied_index().unwrap(), 4);
    assert_eq!(
        other.range(&crate::wire::Range::default()).unwrap().revision,
        revision + 1
    );
    let time = read_progress(&other.db().unwrap(), &keys).unwrap().time.time;
    assert_eq!(time, 1_004, "the log's time goes on from the snapshot's");
    // A private store keeps the separate keys (its checkpoints go to
    // members of earlier releases as they are).
    assert!(stored(&private, zero.applied()).is_some_and(|v| v.len() == 8));
}

/// The insert hints a store's memtable keeps, as RocksDB recorded the
/// options it opened with (its newest `OPTIONS-*` file in `dir`).
fn insert_hint_option(dir: &std::path::Path) -> String {
    let newest = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.starts_with("OPTIONS-"))
        .max()
        .expect("an OPTIONS file");
    let text = std::fs::read_to_string(dir.join(newest)).unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.trim_start()
                .starts_with("memtable_insert_with_hint_prefix_extractor=")
        })
        .expect("the insert hint option");
    line.split_once('=').unwrap().1.trim().to_string()
}

/// A host's shared store inserts each group's keys from its last insert
/// point of that kind (`memory::shared_kv_options`); a private store, all
/// group 0, goes without (a hint per distinct key prefix would cost memory
/// and save nothing). Both still apply and read the same.
#[test]
fn a_shared_store_keeps_an_insert_hint_per_group_and_a_private_store_none() {
    let dir = tempfile::tempdir().unwrap();
    let shared = KvStore::open(&dir.path().join("shared")).unwrap();
    let private = KvStateMachine::open(&dir.path().join("private")).unwrap();
    assert_eq!(
        insert_hint_option(&dir.path().join("shared")),
        "rocksdb.FixedPrefix.10"
    );
    assert_eq!(insert_hint_option(&dir.path().join("private")), "nullptr");
    let group = KvStateMachine::in_store(shared, 7);
    for sm in [&group, &private] {
        sm.apply(&[put(1, "k", "v"), put(2, "k", "w"), lock(3, "L")])
            .unwrap();
        assert_eq!(value(sm, "k").as_deref(), Some("w"));
        assert_eq!(sm.applied_index().unwrap(), 3);
    }
}

/// A figure of a store's table files, from RocksDB's aggregated table
/// properties (`name=value; ...`).
fn table_property(sm: &KvStateMachine, name: &str) -> u64 {
    let db = sm.db().unwrap();
    db.flush().unwrap();
    let props = db
        .property_value("rocksdb.aggregated-table-properties")
        .unwrap()
        .expect("table properties");
    props
        .split("; ")
        .find_map(|p| p.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {props}"))
        .parse()
        .unwrap()
}

/// The key-value store's table files keep their filters and indexes in
/// partitions under a pinned top level (`memory::kv_options`): a write
/// looks its key's revisions up, and a filter as one block per file grew
/// past what the shared block cache keeps, so every lookup read it back
/// from the file (async writes into 500,000 keys: 29,000 a second, against
/// 56,000-62,000 partitioned; `BENCHMARKS.md`). Both kinds of store.
#[test]
fn table_files_of_both_kinds_of_store_partition_their_filters_and_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let shared = KvStateMachine::in_store(KvStore::open(&dir.path().join("shared")).unwrap(), 3);
    let private = KvStateMachine::open(&dir.path().join("private")).unwrap();
    for sm in [&shared, &private] {
        let batch: Vec<Entry> = (1..=2_000).map(|i| put(i, &format!("key-{i}"), "v")).collect();
        sm.apply(&batch).unwrap();
        assert!(table_property(sm, "# index partitions") >= 1);
        assert!(table_property(sm, "top-level index size") > 0);
        assert_eq!(value(sm, "key-1999").as_deref(), Some("v"));
        assert_eq!(value(sm, "key-2001"), None);
    }
}
