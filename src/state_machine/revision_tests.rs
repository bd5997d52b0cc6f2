//! Revisions, transactions and ranges (protocol 6) in the state machine:
//! etcd's rules, and the same state on every replica whatever batches the
//! entries were applied in.

use super::revision::{KvMeta, FIRST_REVISION, LEGACY};
use super::test_store::{del, put};
use super::*;
use crate::wire::{compare, txn_op, Compare, KvList, Range, TxnOp, TxnResult};
use prost::Message as _;

/// An entry marked as proposed under protocol 6 (`v6`) or not.
fn entry(index: u64, cmd: CommandKind, v6: bool) -> Entry {
    Entry {
        term: 1,
        index,
        r#type: EntryType::EntryCommand as i32,
        payload: encode_command(cmd),
        leader_time_ms: 1_000 + index,
        log_time_rule: if v6 { 2 } else { 0 },
    }
}

fn op_put(k: &str, v: &str) -> TxnOp {
    TxnOp {
        op: Some(txn_op::Op::Put(crate::wire::Put {
            key: Bytes::from(k.to_string()),
            value: Bytes::from(v.to_string()),
            lease: 0,
        })),
    }
}

fn op_get(k: &str) -> TxnOp {
    TxnOp {
        op: Some(txn_op::Op::Get(crate::wire::Get {
            key: Bytes::from(k.to_string()),
        })),
    }
}

fn op_del(k: &str) -> TxnOp {
    TxnOp {
        op: Some(txn_op::Op::Delete(crate::wire::Delete {
            key: Bytes::from(k.to_string()),
        })),
    }
}

fn cmp(k: &str, target: compare::Target, op: compare::Op, number: u64) -> Compare {
    Compare {
        key: Bytes::from(k.to_string()),
        target: target as i32,
        op: op as i32,
        value: Bytes::new(),
        number,
    }
}

fn txn(compares: Vec<Compare>, then: Vec<TxnOp>, otherwise: Vec<TxnOp>) -> CommandKind {
    CommandKind::Txn(crate::wire::Txn {
        compares,
        then,
        otherwise,
    })
}

/// A store fed entries one per apply (`apply` numbers them from 1).
struct Store {
    _dir: tempfile::TempDir,
    sm: KvStateMachine,
    next: u64,
}

impl Store {
    fn new() -> Store {
        let dir = tempfile::tempdir().unwrap();
        let sm = KvStateMachine::open(dir.path()).unwrap();
        Store {
            _dir: dir,
            sm,
            next: 1,
        }
    }

    fn apply(&mut self, cmd: CommandKind, v6: bool) -> Result<Option<Bytes>> {
        let e = entry(self.next, cmd, v6);
        self.next += 1;
        self.sm.apply(&[e]).unwrap().remove(0).result
    }

    fn txn(&mut self, cmd: CommandKind) -> TxnResult {
        let bytes = self.apply(cmd, true).unwrap().unwrap();
        TxnResult::decode(bytes.as_ref()).unwrap()
    }

    fn all(&self) -> KvList {
        self.sm.range(&Range::default()).unwrap()
    }

    fn meta(&self, k: &str) -> Option<KvMeta> {
        let kv = self
            .all()
            .kvs
            .into_iter()
            .find(|kv| kv.key.as_ref() == k.as_bytes())?;
        Some(KvMeta {
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: kv.lease,
        })
    }
}

fn meta(create: u64, modified: u64, version: u64) -> Option<KvMeta> {
    Some(KvMeta {
        create_revision: create,
        mod_revision: modified,
        version,
        lease: 0,
    })
}

#[test]
fn each_change_moves_the_revision_by_one_and_a_delete_starts_the_key_over() {
    let mut s = Store::new();
    assert_eq!(s.all().revision, FIRST_REVISION);
    s.apply(put("a", "1"), true).unwrap();
    assert_eq!((s.all().revision, s.meta("a")), (2, meta(2, 2, 1)));
    s.apply(put("a", "2"), true).unwrap();
    s.apply(put("b", "1"), true).unwrap();
    assert_eq!(
        (s.all().revision, s.meta("a"), s.meta("b")),
        (4, meta(2, 3, 2), meta(4, 4, 1))
    );
    s.apply(del("a"), true).unwrap();
    assert_eq!((s.all().revision, s.meta("a")), (5, None));
    // Deleting what is absent changes nothing, so counts nothing.
    s.apply(del("a"), true).unwrap();
    assert_eq!(s.all().revision, 5);
    s.apply(put("a", "again"), true).unwrap();
    assert_eq!((s.all().revision, s.meta("a")), (6, meta(6, 6, 1)));
    // A lock is no key: it moves no revision.
    s.apply(
        CommandKind::TryLock {
            name: Bytes::from_static(b"L"),
            holder: Bytes::from_static(b"h"),
            ttl_ms: 1_000,
        },
        true,
    )
    .unwrap();
    assert_eq!(s.all().revision, 6);
}

/// Entries from a leader that did not know every member speaks protocol 6
/// are applied as the previous release applies them: no revision counted,
/// and the key's revisions dropped (it reads as written before revisions).
#[test]
fn unmarked_writes_count_nothing_and_leave_the_key_as_before_revisions() {
    let mut s = Store::new();
    s.apply(put("a", "1"), true).unwrap();
    s.apply(put("a", "2"), true).unwrap();
    s.apply(put("a", "3"), false).unwrap();
    assert_eq!((s.all().revision, s.meta("a")), (3, Some(LEGACY)));
    // The next counted write goes on from there.
    s.apply(put("a", "4"), true).unwrap();
    assert_eq!((s.all().revision, s.meta("a")), (4, meta(FIRST_REVISION, 4, 2)));
    s.apply(del("a"), false).unwrap();
    assert_eq!((s.all().revision, s.meta("a")), (4, None));
    // A transaction in an unmarked entry is refused, alike everywhere.
    let refused = s.apply(txn(vec![], vec![op_put("t", "x")], vec![]), false);
    assert!(matches!(refused, Err(Error::InvalidArgument(_))));
    assert_eq!(s.meta("t"), None);
}

#[test]
fn a_transaction_runs_one_branch_at_one_revision_and_its_gets_see_its_writes() {
    let mut s = Store::new();
    s.apply(put("a", "1"), true).unwrap();
    use compare::{Op, Target};
    // Holds: a's mod revision is 2 and b is absent.
    let r = s.txn(txn(
        vec![
            cmp("a", Target::ModRevision, Op::Equal, 2),
            cmp("b", Target::Version, Op::Equal, 0),
        ],
        vec![op_put("a", "2"), op_put("b", "1"), op_get("a"), op_get("missing")],
        vec![op_put("else", "ran")],
    ));
    assert!(r.succeeded);
    assert_eq!(r.revision, 3, "one revision for the whole branch");
    assert_eq!(r.gets.len(), 1, "a missing key is left out");
    assert_eq!(
        (
            r.gets[0].value.as_ref(),
            r.gets[0].mod_revision,
            r.gets[0].version
        ),
        (&b"2"[..], 3, 2)
    );
    assert_eq!(
        (s.meta("a"), s.meta("b"), s.meta("else")),
        (meta(2, 3, 2), meta(3, 3, 1), None)
    );
    // Fails now: the else branch runs; a branch of gets only moves nothing.
    let r = s.txn(txn(
        vec![cmp("a", Target::ModRevision, Op::Equal, 2)],
        vec![op_put("then", "ran")],
        vec![op_get("b")],
    ));
    assert!(!r.succeeded);
    assert_eq!((r.revision, r.gets[0].value.as_ref()), (3, &b"1"[..]));
    assert_eq!(s.meta("then"), None);
    // Deleting only what is absent moves nothing either.
    assert_eq!(s.txn(txn(vec![], vec![op_del("nothing")], vec![])).revision, 3);
}

#[test]
fn comparisons_follow_etcd_for_missing_keys_values_and_order() {
    let mut s = Store::new();
    s.apply(put("k", "m"), true).unwrap();
    use compare::{Op, Target};
    let value = |k: &str, op: Op, v: &str| Compare {
        value: Bytes::from(v.to_string()),
        ..cmp(k, Target::Value, op, 0)
    };
    let cases = [
        (value("k", Op::Equal, "m"), true),
        (value("k", Op::Less, "n"), true),
        (value("k", Op::Greater, "n"), false),
        (value("k", Op::NotEqual, "m"), false),
        // A missing key is unequal to every value, neither less nor greater.
        (value("gone", Op::NotEqual, "m"), true),
        (value("gone", Op::Equal, ""), false),
        (value("gone", Op::Less, "z"), false),
        (cmp("gone", Target::CreateRevision, Op::Equal, 0), true),
        (cmp("k", Target::CreateRevision, Op::Greater, 1), true),
        (cmp("k", Target::Version, Op::Less, 2), true),
    ];
    for (c, holds) in cases {
        let r = s.txn(txn(vec![c.clone()], vec![], vec![]));
        assert_eq!(r.succeeded, holds, "{c:?}");
    }
}

#[test]
fn a_transaction_that_cannot_run_writes_nothing_and_a_malformed_one_is_refused() {
    let mut s = Store::new();
    let with_lease = TxnOp {
        op: Some(txn_op::Op::Put(crate::wire::Put {
            key: Bytes::from_static(b"l"),
            value: Bytes::new(),
            lease: 7,
        })),
    };
    let r = s.apply(txn(vec![], vec![op_put("first", "x"), with_lease], vec![]), true);
    assert_eq!(r, Err(Error::NotFound), "no lease 7 exists");
    assert_eq!((s.meta("first"), s.all().revision), (None, FIRST_REVISION));
    let twice = s.apply(txn(vec![], vec![op_put("a", "1"), op_del("a")], vec![]), true);
    assert!(matches!(twice, Err(Error::InvalidArgument(_))));
    let too_many = (0..=crate::limits::MAX_TXN_OPS)
        .map(|i| op_get(&i.to_string()))
        .collect();
    let r = s.apply(txn(vec![], too_many, vec![]), true);
    assert!(matches!(r, Err(Error::InvalidArgument(_))));
    let mut unknown = cmp("a", compare::Target::Version, compare::Op::Equal, 0);
    unknown.op = 9;
    assert!(matches!(
        s.apply(txn(vec![unknown], vec![], vec![]), true),
        Err(Error::InvalidArgument(_))
    ));
}

/// Replicas apply the same entries in different batches (a follower takes
/// what arrived, a leader what committed): the state, revisions and answers
/// must not depend on it.
#[test]
fn the_same_entries_in_one_batch_or_one_by_one_leave_the_same_state() {
    use compare::{Op, Target};
    let cmds = [
        (put("a", "1"), true),
        (put("a", "2"), true),
        (put("b", "1"), false),
        (
            txn(
                vec![cmp("a", Target::Version, Op::Equal, 2)],
                vec![op_put("a", "3"), op_del("b")],
                vec![],
            ),
            true,
        ),
        (put("b", "2"), true),
        (del("a"), true),
        (
            txn(
                vec![cmp("a", Target::Version, Op::Equal, 0)],
                vec![op_put("a", "new"), op_get("a")],
                vec![],
            ),
            true,
        ),
        (put("a", "old rules"), false),
    ];
    let entries: Vec<Entry> = cmds
        .iter()
        .enumerate()
        .map(|(i, (c, v6))| entry(i as u64 + 1, c.clone(), *v6))
        .collect();
    let (one, many) = (Store::new(), Store::new());
    let answers_one = one.sm.apply(&entries).unwrap();
    let answers_many: Vec<Applied> = entries
        .iter()
        .flat_map(|e| many.sm.apply(std::slice::from_ref(e)).unwrap())
        .collect();
    assert_eq!(answers_one, answers_many);
    assert_eq!(one.all(), many.all());
    assert_eq!(one.all().revision, 7);
}

#[test]
fn a_range_pages_by_limit_counts_and_stays_within_its_bounds() {
    let mut s = Store::new();
    for k in ["a", "b", "b/1", "b/2", "c"] {
        s.apply(put(k, k), true).unwrap();
    }
    let range = |start: &str, end: &str, limit: u64, count_only: bool| Range {
        start: Bytes::from(start.to_string()),
        end: Bytes::from(end.to_string()),
        limit,
        count_only,
    };
    let keys = |l: &KvList| {
        l.kvs
            .iter()
            .map(|kv| String::from_utf8(kv.key.to_vec()).unwrap())
            .collect::<Vec<_>>()
    };
    let page = s.sm.range(&range("b", "c", 2, false)).unwrap();
    assert_eq!(
        (keys(&page), page.more, page.revision),
        (vec!["b".into(), "b/1".into()], true, 6)
    );
    let rest = s.sm.range(&range("b/1\0", "c", 2, false)).unwrap();
    assert_eq!((keys(&rest), rest.more), (vec!["b/2".to_string()], false));
    let prefix = s.sm.range(&range("b/", "b0", 0, false)).unwrap();
    assert_eq!(keys(&prefix), vec!["b/1", "b/2"]);
    assert_eq!(s.sm.range(&range("", "", 0, true)).unwrap().count, 5);
    assert_eq!(
        s.sm.range(&range("b", "", 1, true)).unwrap().count,
        4,
        "a count has no page"
    );
    assert!(s.sm.range(&range("c", "a", 0, false)).unwrap().kvs.is_empty());
    let b1 = &s.sm.range(&range("b/1", "b/1\0", 1, false)).unwrap().kvs[0];
    assert_eq!(
        (b1.value.as_ref(), b1.create_revision, b1.version),
        (&b"b/1"[..], 4, 1)
    );
    // Keys with and without stored revisions, interleaved: each gets its own.
    s.apply(put("b", "unmarked"), false).unwrap();
    s.apply(put("b/2", "again"), true).unwrap();
    let revs: Vec<(u64, u64)> = s
        .all()
        .kvs
        .iter()
        .map(|kv| (kv.create_revision, kv.version))
        .collect();
    assert_eq!(revs, vec![(2, 1), (FIRST_REVISION, 1), (4, 1), (5, 2), (6, 1)]);
}

#[test]
fn revisions_travel_with_a_snapshot_and_a_group_sees_only_its_own_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = KvStore::open(&dir.path().join("db")).unwrap();
    let (a, b) = (
        KvStateMachine::in_store(store.clone(), 5),
        KvStateMachine::in_store(store, 6),
    );
    a.apply(&[entry(1, put("x", "1"), true), entry(2, put("x", "2"), true)])
        .unwrap();
    b.apply(&[entry(1, put("y", "1"), true)]).unwrap();
    assert_eq!(a.range(&Range::default()).unwrap().kvs.len(), 1);
    let snap = dir.path().join("snap");
    std::fs::create_dir(&snap).unwrap();
    a.export(&snap).unwrap();
    let other = KvStore::open(&dir.path().join("other")).unwrap();
    let follower = KvStateMachine::in_store(other, 5);
    follower.import(&snap.join(snapshot::EXPORT_FILE)).unwrap();
    assert_eq!(
        follower.range(&Range::default()).unwrap(),
        a.range(&Range::default()).unwrap()
    );
    // And goes on counting from there.
    follower.apply(&[entry(3, put("x", "3"), true)]).unwrap();
    let l = follower.range(&Range::default()).unwrap();
    assert_eq!(
        (l.revision, l.kvs[0].version, l.kvs[0].create_revision),
        (4, 3, 2)
    );
}

/// A store the previous release wrote: values, no revisions, no `m:rev`.
/// Its keys exist (as written before revisions) for the first counted
/// writes too, after a reopen as well; a store that only ever counted
/// does not look for such keys (`legacy_possible`).
#[test]
fn keys_of_a_store_from_before_revisions_are_found_by_the_first_counted_writes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let sm = KvStateMachine::open(dir.path()).unwrap();
        let db = sm.db().unwrap();
        db.put(sm.keys.data(b"old"), b"v5").unwrap();
        db.put(sm.keys.applied(), 1u64.to_be_bytes()).unwrap();
        assert!(revision::legacy_possible(&db, &sm.keys).unwrap());
    }
    let sm = KvStateMachine::open(dir.path()).unwrap();
    sm.apply(&[entry(2, put("old", "v6"), true), entry(3, put("new", "x"), true)])
        .unwrap();
    let all = sm.range(&Range::default()).unwrap();
    let (new, old) = (&all.kvs[0], &all.kvs[1]);
    assert_eq!(
        (old.create_revision, old.mod_revision, old.version),
        (FIRST_REVISION, 2, 2)
    );
    assert_eq!((new.create_revision, new.version), (3, 1));
    drop(sm);
    // Reopened: the store has counted, but may still hold keys from before.
    let sm = KvStateMachine::open(dir.path()).unwrap();
    assert!(revision::legacy_possible(&sm.db().unwrap(), &sm.keys).unwrap());
    let fresh = Store::new();
    assert!(!revision::legacy_possible(&fresh.sm.db().unwrap(), &fresh.sm.keys).unwrap());
}
