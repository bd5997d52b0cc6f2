//! The coordination calls on a real cluster (issue 22): revisions,
//! compare-and-swap, transactions and range scans, from every node
//! (followers forward their transactions and serve their scans by
//! ReadIndex).

mod common;

use common::{retrying, wait_until, Cluster, DEADLINE};
use floyd::{prefix_end, Branch, Cmp, Error, Floyd, Txn};
use std::time::Instant;

#[test]
fn compare_and_swap_from_any_node_conflicts_on_a_stale_revision_and_succeeds_on_the_current_one() {
    let c = Cluster::start(3);
    let leader = c.wait_for_leader();
    let f = c.follower_of(leader);
    let other = (0..3).find(|i| *i != leader && *i != f).unwrap();
    let (on_f, on_other) = (c.node(f), c.node(other));

    let created = retrying(|| on_f.write_if(b"cfg", b"v1", 0)).unwrap();
    assert!(matches!(
        on_other.write_if(b"cfg", b"again", 0),
        Err(Error::Conflict(_))
    ));
    let (value, meta) = on_other.read_meta(b"cfg").unwrap();
    assert_eq!(value, b"v1");
    assert_eq!(
        (meta.create_revision, meta.mod_revision, meta.version),
        (created, created, 1)
    );

    let next = on_other.write_if(b"cfg", b"v2", created).unwrap();
    assert!(next > created);
    let stale = on_f.write_if(b"cfg", b"lost update", created);
    assert!(matches!(stale, Err(Error::Conflict(_))), "{stale:?}");
    assert_eq!(c.node(leader).read(b"cfg").unwrap(), b"v2");

    assert!(matches!(on_f.delete_if(b"cfg", created), Err(Error::Conflict(_))));
    assert_eq!(
        on_f.read(b"cfg").unwrap(),
        b"v2",
        "a failed delete deletes nothing"
    );
    on_f.delete_if(b"cfg", next).unwrap();
    assert!(matches!(on_other.read_meta(b"cfg"), Err(Error::NotFound)));
    // Created again: a new life, version 1.
    let again = on_other.write_if(b"cfg", b"v3", 0).unwrap();
    let (_, meta) = on_f.read_meta(b"cfg").unwrap();
    assert_eq!((meta.create_revision, meta.version), (again, 1));
}

/// The read-modify-write that compare-and-swap exists for: increments from
/// every node at once, each retried on conflict; none is lost.
#[test]
fn a_counter_incremented_by_compare_and_swap_from_every_node_loses_no_increment() {
    const PER_NODE: u64 = 25;
    let c = Cluster::start(3);
    c.wait_for_leader();
    retrying(|| c.node(0).write_if(b"counter", b"0", 0)).unwrap();
    std::thread::scope(|s| {
        for i in 0..3 {
            let node: &Floyd = c.node(i);
            s.spawn(move || {
                for _ in 0..PER_NODE {
                    increment(node);
                }
            });
        }
    });
    let (value, meta) = c.node(1).read_meta(b"counter").unwrap();
    assert_eq!(String::from_utf8(value).unwrap(), (3 * PER_NODE).to_string());
    assert_eq!(meta.version, 3 * PER_NODE + 1);
}

fn increment(node: &Floyd) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        assert!(Instant::now() < deadline, "no increment got through");
        let Ok((value, meta)) = node.read_meta(b"counter") else {
            continue;
        };
        let n: u64 = String::from_utf8(value).unwrap().parse().unwrap();
        match node.write_if(b"counter", (n + 1).to_string().as_bytes(), meta.mod_revision) {
            Ok(_) => return,
            Err(Error::Conflict(_)) => continue,
            Err(e) if e.is_retryable() => continue,
            Err(e) => panic!("increment failed: {e}"),
        }
    }
}

/// A transaction moves ten keys to a new generation at once: a scan, from
/// one snapshot at a linearizable point, sees them all at one generation.
#[test]
fn a_transaction_is_seen_whole_or_not_at_all() {
    let c = Cluster::start(3);
    let leader = c.wait_for_leader();
    let keys: Vec<String> = (0..10).map(|i| format!("acct/{i}")).collect();
    let mut t = Txn::new();
    for k in &keys {
        t.put(Branch::Then, k.as_bytes(), b"0", 0);
    }
    retrying(|| c.node(leader).txn(&t)).unwrap();
    let reader = c.follower_of(leader);
    std::thread::scope(|s| {
        s.spawn(|| {
            for generation in 1..=20u32 {
                let mut t = Txn::new();
                t.if_value(
                    keys[0].as_bytes(),
                    Cmp::Equal,
                    (generation - 1).to_string().as_bytes(),
                );
                for k in &keys {
                    t.put(Branch::Then, k.as_bytes(), generation.to_string().as_bytes(), 0);
                }
                t.get(Branch::Else, keys[0].as_bytes());
                let r = retrying(|| c.node(leader).txn(&t)).unwrap();
                assert!(r.succeeded, "generation {generation}: {r:?}");
            }
        });
        s.spawn(|| {
            let mut seen = 0;
            let deadline = Instant::now() + DEADLINE;
            while seen < 20 {
                assert!(
                    Instant::now() < deadline,
                    "the writer stopped at generation {seen}"
                );
                let page = retrying(|| c.node(reader).scan(b"acct/", &prefix_end(b"acct/"), 0)).unwrap();
                assert_eq!(page.kvs.len(), 10);
                let first = &page.kvs[0].value;
                assert!(
                    page.kvs.iter().all(|kv| &kv.value == first),
                    "half a transaction: {page:?}"
                );
                // One revision for the whole transaction.
                assert!(page
                    .kvs
                    .iter()
                    .all(|kv| kv.meta.mod_revision == page.kvs[0].meta.mod_revision));
                seen = String::from_utf8(first.clone()).unwrap().parse().unwrap();
            }
        });
    });
}

#[test]
fn a_scan_pages_through_a_range_once_each_while_other_keys_change() {
    let c = Cluster::start(3);
    let leader = c.wait_for_leader();
    let mut t = Txn::new();
    for i in 0..120 {
        t.put(Branch::Then, format!("dir/{i:04}").as_bytes(), b"x", 0);
    }
    retrying(|| c.node(leader).txn(&t)).unwrap();
    let reader = c.node(c.follower_of(leader));
    let writer = c.node(leader);
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..100 {
                // Outside the range, and inside it a value changing (never a key).
                retrying(|| writer.write(format!("elsewhere/{i}").as_bytes(), b"y")).unwrap();
                retrying(|| writer.write(b"dir/0050", i.to_string().as_bytes())).unwrap();
            }
        });
        let mut seen = Vec::new();
        let mut start = b"dir/".to_vec();
        loop {
            let page = reader.scan(&start, &prefix_end(b"dir/"), 25).unwrap();
            assert!(page.kvs.len() <= 25);
            seen.extend(page.kvs.iter().map(|kv| kv.key.clone()));
            if !page.more {
                break;
            }
            start = page.kvs.last().unwrap().key.clone();
            start.push(0);
        }
        let expected: Vec<Vec<u8>> = (0..120).map(|i| format!("dir/{i:04}").into_bytes()).collect();
        assert_eq!(seen, expected);
    });
    assert_eq!(reader.count(b"dir/", &prefix_end(b"dir/")).unwrap(), 120);
    // A local scan of a caught-up follower shows what the leader's does.
    c.wait_caught_up(c.follower_of(leader), leader);
    let local = reader.dirty_scan(b"", b"", 0).unwrap();
    let linear = writer.scan(b"", b"", 0).unwrap();
    assert_eq!(local, linear);
}

#[test]
fn an_oversized_or_malformed_transaction_is_refused_before_the_log() {
    let c = Cluster::start(3);
    let leader = c.wait_for_leader();
    let node = c.node(c.follower_of(leader));
    let before = c.node(leader).server_status().last_log_index;
    let mut too_many = Txn::new();
    for i in 0..=floyd::limits::MAX_TXN_OPS {
        too_many.get(Branch::Then, i.to_string().as_bytes());
    }
    let mut twice = Txn::new();
    twice.put(Branch::Then, b"k", b"1", 0).delete(Branch::Then, b"k");
    let mut empty_key = Txn::new();
    empty_key.if_value(b"", Cmp::Equal, b"");
    for t in [too_many, twice, empty_key] {
        assert!(matches!(node.txn(&t), Err(Error::InvalidArgument(_))), "{t:?}");
    }
    // A put naming a lease: none exists (leases come later), nothing written.
    let mut leased = Txn::new();
    leased
        .put(Branch::Then, b"plain", b"1", 0)
        .put(Branch::Then, b"leased", b"1", 42);
    assert_eq!(retrying(|| node.txn(&leased)).unwrap_err(), Error::NotFound);
    assert!(matches!(node.read(b"plain"), Err(Error::NotFound)));
    // Only the refused lease reached the log (after the entry that opened
    // the handle's client session); the malformed ones did not.
    wait_until("the leased transaction's entry", || {
        c.node(leader).server_status().last_log_index == before + 2
    });
}

/// Paging restarts after the last key returned, followed by a zero byte:
/// after a key of the largest size too (a bound one byte over a key).
#[test]
fn a_scan_pages_on_past_a_key_of_the_largest_size() {
    let c = Cluster::start(3);
    let leader = c.wait_for_leader();
    let node = c.node(leader);
    let big = vec![b'm'; floyd::limits::MAX_KEY_BYTES];
    let mut t = Txn::new();
    t.put(Branch::Then, &big, b"big", 0)
        .put(Branch::Then, b"z", b"last", 0);
    retrying(|| node.txn(&t)).unwrap();
    let first = node.scan(b"m", b"", 1).unwrap();
    assert_eq!((first.kvs[0].key.len(), first.more), (big.len(), true));
    let mut after = first.kvs[0].key.clone();
    after.push(0);
    let rest = node.scan(&after, b"", 0).unwrap();
    assert_eq!(rest.kvs.len(), 1);
    assert_eq!((rest.kvs[0].key.as_slice(), rest.more), (&b"z"[..], false));
    let (value, _) = node.read_meta(&big).unwrap();
    assert_eq!(value, b"big", "an exact read of the largest key");
    let mut too_long = after.clone();
    too_long.push(0);
    assert!(matches!(
        node.scan(&too_long, b"", 0),
        Err(Error::InvalidArgument(_))
    ));
}

/// Nodes restarted while a member is down have no handshake from it: the
/// log (marked entries since the last configuration) tells the new leader
/// the group speaks protocol 6, so transactions go on and writes keep
/// counting revisions. (Before: Busy until the member came back, and every
/// write meanwhile dropped its key's revisions.)
#[test]
fn a_leader_restarted_while_a_member_is_down_goes_on_counting_revisions() {
    let mut c = Cluster::start(3);
    c.wait_for_leader();
    let first = retrying(|| c.node(0).write_if(b"k", b"1", 0)).unwrap();
    for i in [2, 0, 1] {
        c.stop(i);
    }
    c.restart(0);
    c.restart(1);
    c.wait_for_leader_among(&[0, 1]);
    let next = retrying(|| c.node(0).write_if(b"k", b"2", first)).expect("a transaction without member 2");
    assert!(next > first);
    retrying(|| c.node(1).write(b"k", b"3")).unwrap();
    let (_, meta) = c.node(1).read_meta(b"k").unwrap();
    assert_eq!(
        (meta.create_revision, meta.version),
        (first, 3),
        "revisions kept: {meta:?}"
    );
}

/// A new leader marks its entries protocol 6 from its first proposal, not
/// from its first tick: before, a write proposed between its election and
/// its next tick dropped the key's revisions (version back to 1, revision
/// 1) and went unseen by watches.
#[test]
fn a_new_leaders_first_write_counts_revisions() {
    let mut c = Cluster::start(3);
    let leader = c.wait_for_leader();
    retrying(|| c.node(leader).write(b"k", b"1")).unwrap();
    let before = c.node(leader).read_meta(b"k").unwrap().1;
    c.stop(leader);
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    // Proposed from both survivors as soon as either can: the first lands
    // right after the election.
    std::thread::scope(|s| {
        for &i in &survivors {
            let node = c.node(i);
            s.spawn(move || retrying(|| node.write(b"k", b"2")));
        }
    });
    let new_leader = c.wait_for_leader_among(&survivors);
    let after = c.node(new_leader).read_meta(b"k").unwrap().1;
    assert_eq!(after.version, before.version + 2, "{before:?} then {after:?}");
    assert!(after.mod_revision >= before.mod_revision + 2);
}
