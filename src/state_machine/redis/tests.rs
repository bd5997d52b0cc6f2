//! The Redis commands applied as entries, and read back, on a store: the
//! replies Redis gives, one revision per command that changed something,
//! TTLs that end on the log's clock, and replicas that agree.

use super::super::test_store::{assert_replicas_agree, in_random_batches, Rng, Store};
use super::super::{encode_command, CommandKind};
use crate::floyd::RedisValue;
use crate::wire::{Entry, EntryType, RedisBatch, RedisCall, RedisReplies};
use bytes::Bytes;
use prost::Message as _;
use RedisValue::*;

/// The log's time of the first entry (ms); each test moves it on.
pub(super) const T0: u64 = 1_700_000_000_000;

fn batch(cmds: &[&[&str]]) -> RedisBatch {
    RedisBatch {
        calls: cmds
            .iter()
            .map(|c| RedisCall {
                args: c.iter().map(|a| Bytes::from(a.to_string())).collect(),
            })
            .collect(),
        guards: Vec::new(),
    }
}

pub(super) fn entry(index: u64, time: u64, cmds: &[&[&str]]) -> Entry {
    Entry {
        term: 1,
        index,
        r#type: EntryType::EntryCommand as i32,
        payload: encode_command(CommandKind::Redis(batch(cmds))),
        leader_time_ms: time,
        log_time_rule: 2,
    }
}

/// A store and the next entry's index and log time.
pub(super) struct Redis {
    pub(super) store: Store,
    index: u64,
    time: u64,
}

impl Redis {
    pub(super) fn new() -> Redis {
        Redis {
            store: Store::new(),
            index: 0,
            time: T0,
        }
    }

    /// Applies `cmds` as one entry `after_ms` after the previous one.
    pub(super) fn write_at(&mut self, after_ms: u64, cmds: &[&[&str]]) -> Vec<RedisValue> {
        self.index += 1;
        self.time += after_ms;
        let mut out = self.store.apply(&[entry(self.index, self.time, cmds)]);
        let bytes = out.pop().unwrap().unwrap().unwrap();
        let replies = RedisReplies::decode(bytes.as_ref()).unwrap();
        replies.items.into_iter().map(RedisValue::from).collect()
    }

    pub(super) fn w(&mut self, cmd: &[&str]) -> RedisValue {
        self.write_at(1, &[cmd]).pop().unwrap()
    }

    /// A read of the store as applied (at the log's time of the last entry,
    /// give or take the milliseconds the test takes).
    pub(super) fn r(&self, cmd: &[&str]) -> RedisValue {
        let replies = self.store.sm.redis_read(&batch(&[cmd])).unwrap();
        RedisValue::from(replies.items.into_iter().next().unwrap())
    }
}

pub(super) fn ok() -> RedisValue {
    Status("OK".into())
}

pub(super) fn b(s: &str) -> RedisValue {
    Bulk(s.as_bytes().to_vec())
}

pub(super) fn err(s: &str) -> RedisValue {
    Error(s.into())
}

#[test]
fn set_and_its_options_answer_as_redis() {
    let mut r = Redis::new();
    assert_eq!(r.w(&["SET", "k", "v1"]), ok());
    assert_eq!(r.w(&["SET", "k", "v2", "NX"]), Nil);
    assert_eq!(r.w(&["SET", "n", "v", "XX"]), Nil);
    assert_eq!(r.w(&["SET", "k", "v3", "XX", "GET"]), b("v1"));
    assert_eq!(r.w(&["set", "k", "v4", "nx", "get"]), b("v3"));
    assert_eq!(r.r(&["GET", "k"]), b("v3"));
    assert_eq!(r.w(&["SET", "k", "v", "NX", "XX"]), err("ERR syntax error"));
    assert_eq!(
        r.w(&["SET", "k", "v", "EX", "0"]),
        err("ERR invalid expire time in 'set' command")
    );
    assert_eq!(
        r.w(&["SET", "k", "v", "EX", "x"]),
        err("ERR value is not an integer or out of range")
    );
    assert_eq!(
        r.w(&["SET", "k", "v", "EX", "10", "KEEPTTL"]),
        err("ERR syntax error")
    );
    assert_eq!(
        r.w(&["SET", "k"]),
        err("ERR wrong number of arguments for 'set' command")
    );
    assert_eq!(r.w(&["SETNX", "k", "x"]), Int(0));
    assert_eq!(r.w(&["SETNX", "fresh", "x"]), Int(1));
    assert_eq!(r.w(&["GETSET", "fresh", "y"]), b("x"));
    assert_eq!(r.w(&["GETDEL", "fresh"]), b("y"));
    assert_eq!(r.w(&["GETDEL", "fresh"]), Nil);
    assert_eq!(r.w(&["MSET", "a", "1", "b", "2"]), ok());
    assert_eq!(
        r.w(&["MSET", "a", "1", "b"]),
        err("ERR wrong number of arguments for 'mset' command")
    );
    assert_eq!(r.w(&["MSETNX", "b", "x", "c", "3"]), Int(0));
    assert_eq!(r.r(&["EXISTS", "c"]), Int(0), "MSETNX set nothing");
    assert_eq!(r.w(&["MSETNX", "c", "3", "d", "4"]), Int(1));
    assert_eq!(r.r(&["MGET", "a", "nope", "d"]), Array(vec![b("1"), Nil, b("4")]));
    assert_eq!(r.w(&["APPEND", "a", "23"]), Int(3));
    assert_eq!(r.r(&["STRLEN", "a"]), Int(3));
    assert_eq!(r.r(&["GETRANGE", "a", "1", "-1"]), b("23"));
    assert_eq!(r.r(&["GETRANGE", "a", "0", "-100"]), b("1"));
    assert_eq!(r.r(&["GETRANGE", "a", "5", "10"]), b(""));
    assert_eq!(r.w(&["SETRANGE", "pad", "3", "x"]), Int(4));
    assert_eq!(r.r(&["GET", "pad"]), Bulk(b"\0\0\0x".to_vec()));
    assert_eq!(
        r.w(&["SETRANGE", "pad", "-1", "x"]),
        err("ERR offset is out of range")
    );
    assert_eq!(r.r(&["TYPE", "a"]), Status("string".into()));
    assert_eq!(r.r(&["TYPE", "nope"]), Status("none".into()));
    assert_eq!(r.w(&["NOSUCH", "a"]), err("ERR unknown command 'NOSUCH'"));
}

#[test]
fn counters_are_one_atomic_step_with_redis_errors() {
    let mut r = Redis::new();
    assert_eq!(r.w(&["INCR", "c"]), Int(1));
    assert_eq!(r.w(&["INCRBY", "c", "41"]), Int(42));
    assert_eq!(r.w(&["DECR", "c"]), Int(41));
    assert_eq!(r.w(&["DECRBY", "c", "-9"]), Int(50));
    assert_eq!(r.r(&["GET", "c"]), b("50"));
    r.w(&["SET", "s", "abc"]);
    assert_eq!(
        r.w(&["INCR", "s"]),
        err("ERR value is not an integer or out of range")
    );
    r.w(&["SET", "big", "9223372036854775807"]);
    assert_eq!(
        r.w(&["INCR", "big"]),
        err("ERR increment or decrement would overflow")
    );
    assert_eq!(
        r.w(&["DECRBY", "c", "-9223372036854775808"]),
        err("ERR increment or decrement would overflow")
    );
    assert_eq!(
        r.w(&["INCRBY", "c", "1.5"]),
        err("ERR value is not an integer or out of range")
    );
    assert_eq!(r.w(&["INCRBYFLOAT", "f", "10.5"]), b("10.5"));
    assert_eq!(r.w(&["INCRBYFLOAT", "f", "0.1"]), b("10.6"));
    assert_eq!(r.w(&["INCRBYFLOAT", "f", "-5.6"]), b("5"));
    assert_eq!(
        r.w(&["INCRBYFLOAT", "s", "1"]),
        err("ERR value is not a valid float")
    );
    // A refused command changes nothing, not even the revision.
    let rev = r.store.revision();
    assert_eq!(
        r.w(&["INCR", "s"]),
        err("ERR value is not an integer or out of range")
    );
    assert_eq!(r.store.revision(), rev);
    r.w(&["INCR", "c"]);
    assert_eq!(r.store.revision(), rev + 1);
}

#[test]
fn a_ttl_ends_on_the_log_clock_and_the_key_goes_at_one_index() {
    let mut r = Redis::new();
    assert_eq!(r.w(&["SET", "k", "v", "PX", "1000"]), ok());
    let pttl = |r: &Redis| match r.r(&["PTTL", "k"]) {
        Int(n) => n,
        other => panic!("{other:?}"),
    };
    assert!((900..=1000).contains(&pttl(&r)), "{}", pttl(&r));
    assert_eq!(r.r(&["TTL", "k"]), Int(1));
    // Half way, a write that keeps TTLs (INCR-like APPEND) keeps it.
    assert_eq!(r.write_at(500, &[&["APPEND", "k", "w"]]), vec![Int(2)]);
    assert!(pttl(&r) <= 500);
    // A plain SET clears it; GETEX gives it back.
    r.w(&["SET", "k", "v"]);
    assert_eq!(r.r(&["TTL", "k"]), Int(-1));
    assert_eq!(r.w(&["GETEX", "k", "PX", "300"]), b("v"));
    let at = r.time + 300;
    assert_eq!(r.r(&["PEXPIRETIME", "k"]), Int(at as i64));
    // An entry at the deadline deletes it, watchers told.
    let before = r.store.revision();
    assert_eq!(r.write_at(300, &[&["GET", "k"]]), vec![Nil]);
    assert_eq!(r.store.revision(), before + 1, "the expiry is one revision");
    assert_eq!(r.r(&["TTL", "k"]), Int(-2));
    let dump = r.store.dump();
    assert!(
        dump.iter().all(|(k, _)| !k.starts_with(b"t") && k != b"dk"),
        "{dump:?}"
    );
}

#[test]
fn expire_and_its_conditions_follow_redis() {
    let mut r = Redis::new();
    r.w(&["SET", "k", "v"]);
    assert_eq!(r.w(&["EXPIRE", "nope", "10"]), Int(0));
    assert_eq!(r.w(&["EXPIRE", "k", "100", "XX"]), Int(0));
    assert_eq!(r.w(&["EXPIRE", "k", "100", "GT"]), Int(0), "no TTL is forever");
    assert_eq!(r.w(&["EXPIRE", "k", "100", "NX"]), Int(1));
    assert_eq!(r.w(&["EXPIRE", "k", "50", "NX"]), Int(0));
    assert_eq!(r.w(&["EXPIRE", "k", "50", "GT"]), Int(0));
    assert_eq!(r.w(&["EXPIRE", "k", "50", "LT"]), Int(1));
    assert_eq!(r.r(&["TTL", "k"]), Int(50));
    assert_eq!(
        r.w(&["EXPIRE", "k", "5", "NX", "XX"]),
        err("ERR NX and XX, GT or LT options at the same time are not compatible")
    );
    assert_eq!(
        r.w(&["EXPIRE", "k", "5", "GT", "LT"]),
        err("ERR GT and LT options at the same time are not compatible")
    );
    assert_eq!(r.w(&["PERSIST", "k"]), Int(1));
    assert_eq!(r.w(&["PERSIST", "k"]), Int(0));
    let at = (r.time / 1000 + 100).to_string();
    assert_eq!(r.w(&["EXPIREAT", "k", &at]), Int(1));
    assert_eq!(r.r(&["EXPIRETIME", "k"]), Int(at.parse().unwrap()));
    // A time already past deletes the key.
    assert_eq!(r.w(&["PEXPIRE", "k", "-1"]), Int(1));
    assert_eq!(r.r(&["EXISTS", "k"]), Int(0));
    r.w(&["SET", "k", "v", "EX", "100"]);
    assert_eq!(r.w(&["EXPIREAT", "k", "1"]), Int(1));
    assert_eq!(r.r(&["GET", "k"]), Nil);
}

#[test]
fn keys_move_copy_list_and_flush() {
    let mut r = Redis::new();
    r.w(&["MSET", "user:1", "a", "user:2", "b", "item:1", "c"]);
    r.w(&["EXPIRE", "user:1", "100"]);
    assert_eq!(r.w(&["RENAME", "nope", "x"]), err("ERR no such key"));
    assert_eq!(r.w(&["RENAME", "user:1", "user:9"]), ok());
    assert_eq!(r.r(&["TTL", "user:9"]), Int(100), "the TTL moves with the key");
    assert_eq!(r.w(&["RENAMENX", "user:9", "user:2"]), Int(0));
    assert_eq!(r.w(&["COPY", "user:9", "user:2"]), Int(0));
    assert_eq!(r.w(&["COPY", "user:9", "user:2", "REPLACE"]), Int(1));
    assert_eq!(
        r.w(&["COPY", "user:9", "x", "DB", "1"]),
        err("ERR DB index is out of range")
    );
    assert_eq!(r.r(&["GET", "user:2"]), b("a"));
    assert_eq!(r.r(&["EXISTS", "user:2", "user:2", "nope"]), Int(2));
    assert_eq!(r.r(&["KEYS", "user:*"]), Array(vec![b("user:2"), b("user:9")]));
    assert_eq!(r.r(&["KEYS", "*1"]), Array(vec![b("item:1")]));
    assert_eq!(r.r(&["DBSIZE"]), Int(3));
    assert!(matches!(r.r(&["RANDOMKEY"]), Bulk(_)));
    assert_eq!(r.w(&["DEL", "user:2", "nope", "user:2"]), Int(1));
    assert_eq!(
        r.w(&["KEYS", "*"]),
        err("ERR listing keys is a read: it does not run in a write")
    );
    // FLUSHDB takes the keys written earlier in the same entry too.
    assert_eq!(
        r.write_at(1, &[&["SET", "late", "1"], &["FLUSHDB"], &["DBSIZE"]])[..2],
        [ok(), ok()]
    );
    assert_eq!(r.r(&["DBSIZE"]), Int(0));
    assert_eq!(r.r(&["RANDOMKEY"]), Nil);
}

#[test]
fn scan_visits_every_key_once_without_a_change() {
    let mut r = Redis::new();
    let keys: Vec<String> = (0..57).map(|i| format!("key:{i:03}")).collect();
    let mut mset = vec!["MSET"];
    for k in &keys {
        mset.push(k);
        mset.push("v");
    }
    r.w(&mset);
    let (mut cursor, mut seen) = ("0".to_string(), Vec::new());
    for _ in 0..100 {
        let Array(reply) = r.r(&["SCAN", &cursor, "COUNT", "7", "MATCH", "key:*"]) else {
            panic!()
        };
        let (Bulk(next), Array(found)) = (&reply[0], &reply[1]) else {
            panic!("{reply:?}")
        };
        seen.extend(found.iter().map(|k| match k {
            Bulk(k) => String::from_utf8(k.clone()).unwrap(),
            _ => panic!(),
        }));
        cursor = String::from_utf8(next.clone()).unwrap();
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(cursor, "0", "the scan never ended");
    assert_eq!(seen, keys);
    assert_eq!(r.r(&["SCAN", "zz"]), err("ERR invalid cursor"));
}

#[test]
fn replicas_applying_in_any_batches_agree_ttls_and_expiries_included() {
    let cmds: Vec<Vec<String>> = (0..120)
        .map(|i| {
            let k = format!("k{}", i % 9);
            match i % 6 {
                0 => vec!["SET".into(), k, format!("v{i}"), "PX".into(), "40".into()],
                1 => vec!["INCR".into(), format!("n{}", i % 4)],
                2 => vec!["EXPIRE".into(), k, "1".into()],
                3 => vec!["APPEND".into(), k, "x".into()],
                4 => vec!["RENAME".into(), k, format!("k{}", (i + 1) % 9)],
                _ => vec!["DEL".into(), k],
            }
        })
        .collect();
    replicas_agree_on(&cmds, 7919);
}

/// Applies `cmds` (an entry each, 10 ms apart) on three replicas in
/// random batches, four times, and checks they agree wherever two ended a
/// batch.
pub(super) fn replicas_agree_on(cmds: &[Vec<String>], seed_factor: u64) {
    let entries: Vec<Entry> = cmds
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let c: Vec<&str> = c.iter().map(String::as_str).collect();
            entry(i as u64 + 1, T0 + 10 * i as u64, &[&c])
        })
        .collect();
    for seed in 1..=4 {
        let mut rng = Rng(seed * seed_factor);
        let replicas: Vec<_> = (0..3).map(|_| in_random_batches(&entries, &mut rng).1).collect();
        assert_replicas_agree(seed, &replicas);
    }
}

#[test]
fn guards_run_the_batch_only_while_every_watched_key_is_unchanged() {
    let mut r = Redis::new();
    r.w(&["SET", "k", "v"]);
    let rev = r.store.revision();
    let guarded = |r: &mut Redis, key: &str, mod_revision: u64| {
        r.index += 1;
        r.time += 1;
        let mut b = batch(&[&["INCR", "n"]]);
        b.guards.push(crate::wire::RedisGuard {
            key: Bytes::from(key.to_string()),
            mod_revision,
        });
        let e = Entry {
            payload: encode_command(CommandKind::Redis(b)),
            ..entry(r.index, r.time, &[])
        };
        let bytes = r.store.apply(&[e]).pop().unwrap().unwrap().unwrap();
        RedisReplies::decode(bytes.as_ref()).unwrap()
    };
    let ran = guarded(&mut r, "k", rev);
    assert!(!ran.aborted && ran.items.len() == 1);
    assert!(
        guarded(&mut r, "missing", 0).items.len() == 1,
        "0: a key still missing"
    );
    r.w(&["APPEND", "k", "w"]);
    let refused = guarded(&mut r, "k", rev);
    assert!(refused.aborted && refused.items.is_empty());
    assert_eq!(r.r(&["GET", "n"]), b("2"), "the refused batch ran nothing");
    // A key that expired since counts as changed.
    r.w(&["SET", "t", "v", "PX", "5"]);
    let t_rev = r.store.revision();
    r.time += 10;
    assert!(guarded(&mut r, "t", t_rev).aborted);
}
