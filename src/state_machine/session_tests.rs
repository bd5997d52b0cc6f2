//! Client sessions in the state machine (dissertation §6.3): a command
//! sent again under its session and seq is answered, not applied again,
//! whatever batches the copies come in; sessions expire by the log's time
//! alone; answers the client acknowledged go.

use super::test_store::{assert_replicas_agree, in_random_batches, put, Rng, Store};
use super::*;
use crate::limits::MAX_SESSIONS;
use crate::wire::{Range, SessionRef};
use prost::Message as _;

fn entry(index: u64, term: u64, time: u64, cmd: CommandKind, session: Option<SessionRef>) -> Entry {
    Entry {
        term,
        index,
        r#type: EntryType::EntryCommand as i32,
        payload: encode_command_in(cmd, session),
        leader_time_ms: time,
        log_time_rule: 2,
    }
}

fn register(index: u64, time: u64, ttl_ms: u64) -> Entry {
    entry(index, 1, time, CommandKind::RegisterSession { ttl_ms }, None)
}

fn under(client_id: u64, seq: u64, lowest_unacked: u64) -> Option<SessionRef> {
    Some(SessionRef {
        client_id,
        seq,
        lowest_unacked,
    })
}

impl Store {
    fn version(&self, key: &str) -> u64 {
        let r = Range {
            start: Bytes::from(key.to_string()),
            ..Range::default()
        };
        let list = self.sm.range(&r).unwrap();
        list.kvs.first().map_or(0, |kv| kv.version)
    }

    /// How many answers the store keeps, over every session.
    fn answers_kept(&self) -> usize {
        let db = self.sm.db().unwrap();
        db.prefix_iterator(b"r")
            .filter(|kv| kv.as_ref().unwrap().0[0] == b'r')
            .count()
    }
}

fn apply_to(sm: &KvStateMachine, entries: &[Entry]) -> Vec<Result<Option<Bytes>>> {
    sm.apply(entries).unwrap().into_iter().map(|a| a.result).collect()
}

fn session_id(r: &Result<Option<Bytes>>) -> u64 {
    u64::from_be_bytes(r.as_ref().unwrap().as_ref().unwrap().as_ref().try_into().unwrap())
}

#[test]
fn section_6_3_a_session_is_named_by_the_index_of_its_entry() {
    let s = Store::new();
    let r = s.apply(&[register(1, 1_000, 60_000), register(2, 1_000, 60_000)]);
    assert_eq!((session_id(&r[0]), session_id(&r[1])), (1, 2));
}

#[test]
fn section_6_3_a_copy_of_a_command_is_answered_not_applied_again() {
    let s = Store::new();
    s.apply(&[register(1, 1_000, 60_000)]);
    let rev = s.revision();
    // The copy in the same batch, and in a later one.
    let r = s.apply(&[
        entry(2, 1, 1_000, put("k", "a"), under(1, 1, 1)),
        entry(3, 1, 1_000, put("k", "a"), under(1, 1, 1)),
    ]);
    assert_eq!(r, [Ok(None), Ok(None)]);
    let r = s.apply(&[entry(4, 1, 1_000, put("k", "a"), under(1, 1, 1))]);
    assert!(r[0].is_ok());
    assert_eq!((s.version("k"), s.revision()), (1, rev + 1), "applied once");
    // A compare-and-swap's copy gets the first one's answer: the revision
    // it wrote, not the conflict a second apply would meet.
    let cas = CommandKind::Txn(crate::wire::Txn {
        compares: vec![crate::wire::Compare {
            key: Bytes::from_static(b"k"),
            target: crate::wire::compare::Target::ModRevision as i32,
            op: crate::wire::compare::Op::Equal as i32,
            value: Bytes::new(),
            number: rev + 1,
        }],
        then: vec![crate::wire::TxnOp {
            op: Some(crate::wire::txn_op::Op::Put(crate::wire::Put {
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(b"b"),
                lease: 0,
            })),
        }],
        otherwise: vec![],
    });
    let first = s.apply(&[entry(5, 1, 1_000, cas.clone(), under(1, 2, 2))]);
    let copy = s.apply(&[entry(6, 1, 1_000, cas, under(1, 2, 2))]);
    let succeeded = crate::wire::TxnResult::decode(first[0].clone().unwrap().unwrap())
        .unwrap()
        .succeeded;
    assert!(succeeded);
    assert_eq!(first, copy);
    assert_eq!((s.version("k"), s.revision()), (2, rev + 2));
}

#[test]
fn section_6_3_a_deterministic_refusal_is_kept_as_its_answer() {
    let s = Store::new();
    s.apply(&[register(1, 1_000, 60_000)]);
    let unlock = CommandKind::Unlock {
        name: Bytes::from_static(b"l"),
        holder: Bytes::from_static(b"h"),
    };
    let r = s.apply(&[
        entry(2, 1, 1_000, unlock.clone(), under(1, 1, 1)),
        entry(3, 1, 1_000, unlock, under(1, 1, 1)),
    ]);
    assert!(matches!(r[0], Err(Error::NotHolder(_))), "{r:?}");
    assert_eq!(r[0], r[1]);
}

#[test]
fn section_6_3_expired_session_rejected_everywhere() {
    let s = Store::new();
    s.apply(&[register(1, 1_000, 1_000)]);
    assert!(s.apply(&[entry(2, 1, 1_900, put("k", "a"), under(1, 1, 1))])[0].is_ok());
    // Idle a whole TTL since its last command: gone, and what it sends is refused.
    let r = s.apply(&[entry(3, 1, 2_900, put("k", "b"), under(1, 2, 2))]);
    assert!(matches!(r[0], Err(Error::SessionExpired(_))), "{r:?}");
    assert_eq!(s.version("k"), 1, "not applied");
    // Its stored state went with it.
    assert!(s.dump().iter().all(|(k, _)| k[0] != b's' && k[0] != b'r'));
    let never = s.apply(&[entry(4, 1, 2_900, put("k", "c"), under(77, 1, 1))]);
    assert!(matches!(never[0], Err(Error::SessionExpired(_))));
}

#[test]
fn section_6_3_answers_below_the_lowest_unacked_seq_are_forgotten() {
    let s = Store::new();
    s.apply(&[register(1, 1_000, 60_000)]);
    let grant = CommandKind::LeaseGrant { ttl_ms: 60_000 };
    // A plain put's answer needs no key of its own; a grant's (its id) does.
    s.apply(&[
        entry(2, 1, 1_000, put("a", "1"), under(1, 1, 1)),
        entry(3, 1, 1_000, grant.clone(), under(1, 2, 1)),
        entry(4, 1, 1_000, grant.clone(), under(1, 3, 1)),
    ]);
    assert_eq!(s.answers_kept(), 2);
    let copy = s.apply(&[entry(5, 1, 1_000, grant.clone(), under(1, 3, 1))]);
    assert_eq!(
        session_id(&copy[0]),
        4,
        "the first grant's lease id, not a new lease"
    );
    // The client has the first two answers: its next command says so.
    s.apply(&[entry(6, 1, 1_000, put("c", "1"), under(1, 4, 3))]);
    assert_eq!(s.answers_kept(), 1);
    // A late copy of an acknowledged command is refused, not applied.
    let r = s.apply(&[
        entry(7, 1, 1_000, put("a", "2"), under(1, 1, 1)),
        entry(8, 1, 1_000, grant, under(1, 2, 1)),
    ]);
    assert!(r.iter().all(|r| matches!(r, Err(Error::Timeout(_)))), "{r:?}");
    assert_eq!(s.version("a"), 1);
    assert_eq!(s.sm.lease_info(7).unwrap_err(), Error::NotFound);
}

#[test]
fn section_6_3_sessions_and_answers_outlive_a_reopen() {
    let s = Store::new();
    s.apply(&[
        register(1, 1_000, 60_000),
        entry(2, 1, 1_000, put("k", "a"), under(1, 1, 1)),
    ]);
    s.sm.close();
    let sm = KvStateMachine::open(s.dir.path()).unwrap();
    let r = apply_to(&sm, &[entry(3, 1, 1_000, put("k", "a"), under(1, 1, 1))]);
    assert_eq!(r, [Ok(None)]);
    let r = apply_to(&sm, &[entry(4, 1, 1_000, put("k", "b"), under(1, 2, 2))]);
    assert_eq!(r, [Ok(None)]);
    let list = sm.range(&Range::default()).unwrap();
    assert_eq!(
        (list.kvs[0].version, list.revision),
        (2, list.kvs[0].create_revision + 1)
    );
    // An answer that carries something (a lease id) comes back from the store.
    let grant = CommandKind::LeaseGrant { ttl_ms: 60_000 };
    let first = apply_to(&sm, &[entry(5, 1, 1_000, grant.clone(), under(1, 3, 3))]);
    sm.close();
    let sm = KvStateMachine::open(s.dir.path()).unwrap();
    let copy = apply_to(&sm, &[entry(6, 1, 1_000, grant, under(1, 3, 3))]);
    assert_eq!((session_id(&first[0]), session_id(&copy[0])), (5, 5));
}

/// A new leader's clock far ahead must not expire a session whose client
/// it has not heard yet: every session lives a whole TTL from the first
/// entry of the term.
#[test]
fn section_6_3_a_new_term_gives_every_session_a_whole_ttl() {
    let s = Store::new();
    s.apply(&[register(1, 1_000, 1_000)]);
    // Term 2's leader stamps 20 s later than term 1's last entry.
    let r = s.apply(&[
        entry(2, 2, 21_000, CommandKind::LeaseSweep, None),
        entry(3, 2, 21_500, put("k", "a"), under(1, 1, 1)),
    ]);
    assert_eq!(r[1], Ok(None));
    let r = s.apply(&[entry(4, 2, 23_000, put("k", "b"), under(1, 2, 2))]);
    assert!(
        matches!(r[0], Err(Error::SessionExpired(_))),
        "idle a TTL after its last command"
    );
}

#[test]
fn entries_not_marked_protocol_6_apply_as_the_previous_release_does() {
    let s = Store::new();
    s.apply(&[register(1, 1_000, 60_000)]);
    let mut old = [
        entry(2, 1, 1_000, put("k", "a"), under(1, 1, 1)),
        entry(3, 1, 1_000, put("k", "a"), under(1, 1, 1)),
        register(4, 1_000, 60_000),
    ];
    old.iter_mut().for_each(|e| e.log_time_rule = 0);
    let r = s.apply(&old);
    assert_eq!(r[..2], [Ok(None), Ok(None)], "no session: both applied");
    assert!(matches!(r[2], Err(Error::InvalidArgument(_))));
}

#[test]
fn registering_past_the_cap_forgets_the_least_recently_active_session() {
    let s = Store::new();
    let mut entries: Vec<Entry> = (1..=MAX_SESSIONS as u64)
        .map(|i| register(i, 1_000 + i, 600_000))
        .collect();
    s.apply(&entries);
    // Session 1 is heard again: session 2 is now the least recently active.
    let next = MAX_SESSIONS as u64 + 1;
    entries = vec![
        entry(next, 1, 20_000, put("k", "a"), under(1, 1, 1)),
        register(next + 1, 20_000, 600_000),
    ];
    s.apply(&entries);
    let r = s.apply(&[
        entry(next + 2, 1, 20_000, put("k", "b"), under(2, 1, 1)),
        entry(next + 3, 1, 20_000, put("k", "c"), under(1, 2, 2)),
    ]);
    assert!(matches!(r[0], Err(Error::SessionExpired(_))), "{r:?}");
    assert_eq!(r[1], Ok(None));
}

/// Registrations, commands, copies of earlier commands (some of them long
/// acknowledged) and idle spells over terms whose leaders' clocks jump,
/// applied by three replicas in different random batches: at every index
/// where two replicas both ended a batch, their stores are byte-identical,
/// and no (session, seq) was applied twice.
#[test]
fn replicas_agree_at_every_common_index_on_random_session_histories() {
    for seed in 1..=6u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let (mut term, mut time) = (1, 1_000u64);
        let mut entries = Vec::new();
        // Per session: its next seq; the commands sent, to copy later.
        let mut clients: Vec<(u64, u64)> = Vec::new();
        let mut sent: Vec<(CommandKind, SessionRef)> = Vec::new();
        for index in 1..=400u64 {
            match rng.below(40) {
                0 => {
                    term += 1;
                    time = (time + rng.below(8_000)).saturating_sub(2_000);
                }
                1 => time += 3_000, // an idle spell: short sessions expire
                _ => time += rng.below(100),
            }
            let e = match rng.below(10) {
                0 => {
                    clients.push((index, 1));
                    entry(
                        index,
                        term,
                        time,
                        CommandKind::RegisterSession {
                            ttl_ms: 1_000 + rng.below(4_000),
                        },
                        None,
                    )
                }
                1 | 2 if !sent.is_empty() => {
                    let (cmd, r) = sent[rng.below(sent.len() as u64) as usize].clone();
                    entry(index, term, time, cmd, Some(r))
                }
                _ if !clients.is_empty() => {
                    let c = rng.below(clients.len() as u64) as usize;
                    let (id, seq) = clients[c];
                    clients[c].1 += 1;
                    let lowest = seq.saturating_sub(rng.below(4)).max(1);
                    let r = SessionRef {
                        client_id: id,
                        seq,
                        lowest_unacked: lowest,
                    };
                    // A key of its own (applied twice, it would be at version
                    // 2), or a lock call, whose answer the session stores.
                    let cmd = match rng.below(4) {
                        0 => CommandKind::TryLock {
                            name: Bytes::from(format!("lock{}", rng.below(3))),
                            holder: Bytes::from(format!("h{id}")),
                            ttl_ms: 500 + rng.below(2_000),
                        },
                        _ => put(&format!("k{id}/{seq}"), "v"),
                    };
                    sent.push((cmd.clone(), r));
                    entry(index, term, time, cmd, Some(r))
                }
                _ => entry(index, term, time, CommandKind::LeaseSweep, None),
            };
            entries.push(e);
        }
        let (first, states) = in_random_batches(&entries, &mut rng);
        let mut replicas = vec![states];
        replicas.extend((0..2).map(|_| in_random_batches(&entries, &mut rng).1));
        assert_replicas_agree(seed, &replicas);
        let kvs = first.sm.range(&Range::default()).unwrap().kvs;
        assert!(kvs.len() > 30, "seed {seed}: only {} applied", kvs.len());
        for kv in kvs {
            assert_eq!(kv.version, 1, "seed {seed}: {:?} applied twice", kv.key);
        }
    }
}

/// Sessions travel in snapshots: a follower that loads one answers a copy
/// of a command applied before it from the snapshot, for a group of a
/// shared store (an export) and for a store of its own (a checkpoint).
#[test]
fn section_6_3_sessions_survive_snapshot() {
    let grant = CommandKind::LeaseGrant { ttl_ms: 60_000 };
    let before = [
        register(1, 1_000, 60_000),
        entry(2, 1, 1_000, put("k", "a"), under(1, 1, 1)),
        entry(3, 1, 1_000, grant.clone(), under(1, 2, 1)),
    ];
    let copies = [
        entry(4, 1, 1_000, put("k", "a"), under(1, 1, 1)),
        entry(5, 1, 1_000, grant, under(1, 2, 1)),
    ];
    let dir = tempfile::tempdir().unwrap();
    let check = |follower: &Machine| {
        let r: Vec<_> = follower
            .apply(&copies)
            .unwrap()
            .into_iter()
            .map(|a| a.result)
            .collect();
        assert_eq!(r[0], Ok(None));
        assert_eq!(
            session_id(&r[1]),
            3,
            "the grant's lease id, from the snapshot's answer"
        );
        assert_eq!(
            follower.lease_info(5).unwrap_err(),
            Error::NotFound,
            "no second lease"
        );
        let kv = follower.range(&Range::default()).unwrap();
        assert_eq!(kv.kvs[0].version, 1, "the put not applied again");
    };
    // A group of a shared store: an export.
    let shared = KvStore::open(&dir.path().join("shared")).unwrap();
    let leader = Machine::in_store(&shared, 9, None);
    leader.apply(&before).unwrap();
    let snap = dir.path().join("export");
    std::fs::create_dir(&snap).unwrap();
    assert_eq!(leader.snapshot_save(&snap).unwrap(), 3);
    let other = KvStore::open(&dir.path().join("other")).unwrap();
    let follower = Machine::in_store(&other, 9, None);
    follower.snapshot_load(&snap, 3).unwrap();
    check(&follower);
    // A store of its own: a checkpoint.
    let private = Machine::open(&dir.path().join("private"), None).unwrap();
    private.apply(&before).unwrap();
    let snap = dir.path().join("checkpoint");
    std::fs::create_dir(&snap).unwrap();
    assert_eq!(private.snapshot_save(&snap).unwrap(), 3);
    let follower = Machine::open(&dir.path().join("follower"), None).unwrap();
    follower.snapshot_load(&snap, 3).unwrap();
    check(&follower);
}
