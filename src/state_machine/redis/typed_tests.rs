//! Hashes and lists: Redis's replies, WRONGTYPE across kinds, items that
//! go with their key (a SET over it, DEL, an expiry), and replicas that
//! agree whatever batches they apply in.

use super::super::test_store::{assert_replicas_agree, in_random_batches, Rng};
use super::tests::{b, entry, err, ok, Redis, T0};
use crate::floyd::RedisValue::{self, *};

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

fn bulks(items: &[&str]) -> RedisValue {
    Array(items.iter().map(|s| b(s)).collect())
}

/// Whether the store holds any item or kind record (bookkeeping of hashes
/// and lists) at all.
fn holds_items(r: &Redis) -> bool {
    r.store
        .dump()
        .iter()
        .any(|(k, _)| k.starts_with(b"f") || k.starts_with(b"y"))
}

#[test]
fn hashes_answer_as_redis_and_go_with_their_key() {
    let mut r = Redis::new();
    assert_eq!(r.w(&["HSET", "h", "a", "1", "b", "2"]), Int(2));
    assert_eq!(r.w(&["HSET", "h", "b", "3", "c", "4"]), Int(1));
    assert_eq!(
        r.w(&["HSET", "h", "x"]),
        err("ERR wrong number of arguments for 'hset' command")
    );
    assert_eq!(r.r(&["HGET", "h", "b"]), b("3"));
    assert_eq!(
        r.r(&["HMGET", "h", "a", "zz", "c"]),
        Array(vec![b("1"), Nil, b("4")])
    );
    assert_eq!(r.r(&["HGETALL", "h"]), bulks(&["a", "1", "b", "3", "c", "4"]));
    assert_eq!(r.r(&["HKEYS", "h"]), bulks(&["a", "b", "c"]));
    assert_eq!(r.r(&["HVALS", "h"]), bulks(&["1", "3", "4"]));
    assert_eq!(r.r(&["HLEN", "h"]), Int(3));
    assert_eq!(r.r(&["HEXISTS", "h", "a"]), Int(1));
    assert_eq!(r.r(&["HSTRLEN", "h", "a"]), Int(1));
    assert_eq!(r.r(&["TYPE", "h"]), Status("hash".into()));
    assert_eq!(r.w(&["HSETNX", "h", "a", "9"]), Int(0));
    assert_eq!(r.w(&["HINCRBY", "h", "a", "41"]), Int(42));
    assert_eq!(r.w(&["HINCRBYFLOAT", "h", "f", "1.5"]), b("1.5"));
    r.w(&["HSET", "h", "s", "text"]);
    assert_eq!(
        r.w(&["HINCRBY", "h", "s", "1"]),
        err("ERR hash value is not an integer")
    );
    // Kinds do not mix.
    assert_eq!(r.r(&["GET", "h"]), err(WRONGTYPE));
    assert_eq!(r.w(&["INCR", "h"]), err(WRONGTYPE));
    assert_eq!(r.w(&["LPUSH", "h", "x"]), err(WRONGTYPE));
    assert_eq!(
        r.r(&["MGET", "h"]),
        Array(vec![Nil]),
        "MGET reads another kind as nil"
    );
    assert!(matches!(r.store.sm.get(b"h"), Err(crate::Error::InvalidArgument(m)) if m == WRONGTYPE));
    r.w(&["SET", "s", "v"]);
    assert_eq!(r.w(&["HSET", "s", "a", "1"]), err(WRONGTYPE));
    // The last field gone, the key goes; so do its records.
    assert_eq!(r.w(&["HDEL", "h", "a", "b", "c", "f", "s", "nope"]), Int(5));
    assert_eq!(r.r(&["EXISTS", "h"]), Int(0));
    assert!(!holds_items(&r));
    // A SET over a hash replaces it whole.
    r.w(&["HSET", "h", "a", "1"]);
    assert_eq!(r.w(&["SET", "h", "plain"]), ok());
    assert_eq!(r.r(&["GET", "h"]), b("plain"));
    assert!(!holds_items(&r));
    // RENAME and COPY carry the fields and the TTL.
    assert_eq!(r.w(&["HSET", "h", "a", "1"]), err(WRONGTYPE), "h holds a string");
    r.w(&["DEL", "h"]);
    r.w(&["HSET", "h", "a", "1", "b", "2"]);
    r.w(&["EXPIRE", "h", "100"]);
    assert_eq!(r.w(&["RENAME", "h", "h2"]), ok());
    assert_eq!(r.w(&["COPY", "h2", "h3"]), Int(1));
    assert_eq!(r.r(&["HGETALL", "h3"]), bulks(&["a", "1", "b", "2"]));
    assert_eq!(r.r(&["TTL", "h3"]), Int(100));
    assert_eq!(r.r(&["HGETALL", "h"]), Array(vec![]));
    // An expiry takes the fields too.
    r.w(&["PEXPIRE", "h2", "10"]);
    r.w(&["PEXPIRE", "h3", "10"]);
    r.write_at(20, &[&["DEL", "s"], &["GET", "nope"]]);
    assert_eq!(r.r(&["EXISTS", "h2", "h3"]), Int(0));
    assert!(!holds_items(&r));
}

#[test]
fn hscan_visits_every_field() {
    let mut r = Redis::new();
    let mut cmd = vec!["HSET".to_string(), "h".into()];
    for i in 0..25 {
        cmd.push(format!("f{i:02}"));
        cmd.push(i.to_string());
    }
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    assert_eq!(r.w(&cmd), Int(25));
    let (mut cursor, mut seen) = ("0".to_string(), 0);
    loop {
        let Array(reply) = r.r(&["HSCAN", "h", &cursor, "COUNT", "4"]) else {
            panic!()
        };
        let (Bulk(next), Array(found)) = (&reply[0], &reply[1]) else {
            panic!()
        };
        seen += found.len() / 2;
        cursor = String::from_utf8(next.clone()).unwrap();
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen, 25);
}

#[test]
fn lists_answer_as_redis() {
    let mut r = Redis::new();
    assert_eq!(r.w(&["RPUSH", "l", "a", "b", "c"]), Int(3));
    assert_eq!(r.w(&["LPUSH", "l", "y", "z"]), Int(5));
    assert_eq!(
        r.r(&["LRANGE", "l", "0", "-1"]),
        bulks(&["z", "y", "a", "b", "c"])
    );
    assert_eq!(r.r(&["LRANGE", "l", "-2", "10"]), bulks(&["b", "c"]));
    assert_eq!(r.r(&["LRANGE", "l", "3", "1"]), bulks(&[]));
    assert_eq!(r.r(&["LLEN", "l"]), Int(5));
    assert_eq!(r.r(&["LINDEX", "l", "-1"]), b("c"));
    assert_eq!(r.r(&["LINDEX", "l", "9"]), Nil);
    assert_eq!(r.r(&["TYPE", "l"]), Status("list".into()));
    assert_eq!(r.w(&["LPUSHX", "nope", "a"]), Int(0));
    assert_eq!(r.w(&["LSET", "l", "1", "Y"]), ok());
    assert_eq!(r.w(&["LSET", "l", "9", "x"]), err("ERR index out of range"));
    assert_eq!(r.w(&["LSET", "nope", "0", "x"]), err("ERR no such key"));
    assert_eq!(r.w(&["LINSERT", "l", "BEFORE", "a", "m"]), Int(6));
    assert_eq!(r.w(&["LINSERT", "l", "AFTER", "none", "m"]), Int(-1));
    assert_eq!(
        r.r(&["LRANGE", "l", "0", "-1"]),
        bulks(&["z", "Y", "m", "a", "b", "c"])
    );
    r.w(&["RPUSH", "l", "m", "m"]);
    assert_eq!(r.w(&["LREM", "l", "-2", "m"]), Int(2));
    assert_eq!(
        r.r(&["LRANGE", "l", "0", "-1"]),
        bulks(&["z", "Y", "m", "a", "b", "c"])
    );
    assert_eq!(r.r(&["LPOS", "l", "b"]), Int(4));
    assert_eq!(r.r(&["LPOS", "l", "nope"]), Nil);
    assert_eq!(r.w(&["LTRIM", "l", "1", "-2"]), ok());
    assert_eq!(r.r(&["LRANGE", "l", "0", "-1"]), bulks(&["Y", "m", "a", "b"]));
    assert_eq!(r.w(&["LPOP", "l"]), b("Y"));
    assert_eq!(r.w(&["RPOP", "l", "2"]), bulks(&["b", "a"]));
    assert_eq!(
        r.w(&["RPOP", "l", "-1"]),
        err("ERR value is out of range, must be positive")
    );
    assert_eq!(r.w(&["LMOVE", "l", "l2", "LEFT", "RIGHT"]), b("m"));
    assert_eq!(r.r(&["EXISTS", "l"]), Int(0), "the last pop deleted the list");
    assert_eq!(r.w(&["RPOPLPUSH", "l2", "l2"]), b("m"));
    assert_eq!(r.w(&["LPOP", "nope", "2"]), Nil);
    assert_eq!(r.w(&["GET", "l2"]), err(WRONGTYPE));
    r.w(&["DEL", "l2"]);
    assert!(!holds_items(&r));
}

#[test]
fn items_written_earlier_in_a_batch_are_seen_by_later_entries() {
    let mut r = Redis::new();
    let replies = r.write_at(
        1,
        &[
            &["HSET", "h", "a", "1", "b", "2"],
            &["HDEL", "h", "a"],
            &["HGETALL", "h"],
            &["RPUSH", "l", "x", "y"],
            &["LRANGE", "l", "0", "-1"],
            &["DEL", "h"],
            &["HGETALL", "h"],
            &["HSET", "h", "c", "3"],
            &["HGETALL", "h"],
        ],
    );
    assert_eq!(
        replies,
        vec![
            Int(2),
            Int(1),
            bulks(&["b", "2"]),
            Int(2),
            bulks(&["x", "y"]),
            Int(1),
            bulks(&[]),
            Int(1),
            bulks(&["c", "3"]),
        ]
    );
    assert_eq!(r.r(&["HGETALL", "h"]), bulks(&["c", "3"]));
}

#[test]
fn replicas_agree_on_hashes_and_lists_in_any_batches() {
    let cmds: Vec<Vec<String>> = (0..150)
        .map(|i| {
            let k = format!("k{}", i % 5);
            let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
            match i % 8 {
                0 => s(&["HSET", &k, &format!("f{}", i % 3), "v"]),
                1 => s(&["HDEL", &k, "f1"]),
                2 => s(&["RPUSH", &format!("l{}", i % 3), &i.to_string()]),
                3 => s(&["LPOP", &format!("l{}", i % 3)]),
                4 => s(&["PEXPIRE", &k, "25"]),
                5 => s(&["RENAME", &k, &format!("k{}", (i + 2) % 5)]),
                6 => s(&["LREM", &format!("l{}", i % 3), "0", "7"]),
                _ => s(&["SET", &k, "plain"]),
            }
        })
        .collect();
    super::tests::replicas_agree_on(&cmds, 104_729);
}

#[test]
fn sets_answer_as_redis_and_spop_is_the_same_on_every_replica() {
    let mut r = Redis::new();
    assert_eq!(r.w(&["SADD", "s", "b", "a", "c", "a"]), Int(3));
    assert_eq!(r.w(&["SADD", "s", "a", "d"]), Int(1));
    assert_eq!(r.r(&["SMEMBERS", "s"]), bulks(&["a", "b", "c", "d"]));
    assert_eq!(r.r(&["SCARD", "s"]), Int(4));
    assert_eq!(r.r(&["SISMEMBER", "s", "c"]), Int(1));
    assert_eq!(r.r(&["SMISMEMBER", "s", "c", "z"]), Array(vec![Int(1), Int(0)]));
    assert_eq!(r.r(&["TYPE", "s"]), Status("set".into()));
    assert_eq!(r.w(&["SREM", "s", "d", "z"]), Int(1));
    r.w(&["SADD", "t", "b", "c", "x"]);
    assert_eq!(r.r(&["SINTER", "s", "t"]), bulks(&["b", "c"]));
    assert_eq!(r.r(&["SUNION", "s", "t"]), bulks(&["a", "b", "c", "x"]));
    assert_eq!(r.r(&["SDIFF", "s", "t"]), bulks(&["a"]));
    assert_eq!(r.r(&["SINTERCARD", "2", "s", "t", "LIMIT", "1"]), Int(1));
    assert_eq!(r.w(&["SINTERSTORE", "u", "s", "t"]), Int(2));
    assert_eq!(r.r(&["SMEMBERS", "u"]), bulks(&["b", "c"]));
    assert_eq!(r.w(&["SMOVE", "t", "s", "x"]), Int(1));
    assert_eq!(r.r(&["SCARD", "t"]), Int(2));
    assert_eq!(r.w(&["GET", "s"]), err(WRONGTYPE));
    assert_eq!(
        r.w(&["SADD", "s"]),
        err("ERR wrong number of arguments for 'sadd' command")
    );
    // SPOP takes members out; SRANDMEMBER only looks.
    assert!(matches!(r.r(&["SRANDMEMBER", "s"]), Bulk(_)));
    let Array(popped) = r.w(&["SPOP", "s", "2"]) else {
        panic!()
    };
    assert_eq!(popped.len(), 2);
    assert_eq!(r.r(&["SCARD", "s"]), Int(2));
    r.w(&["SPOP", "s", "5"]);
    assert_eq!(r.r(&["EXISTS", "s"]), Int(0), "the emptied set is gone");
    assert_eq!(r.w(&["SPOP", "s"]), Nil);
    // Two replicas pop the same member: picked from the log's time.
    let history: Vec<_> = (0..6)
        .map(|i| {
            let m = format!("m{i}");
            entry(i + 1, T0 + i, &[&["SADD", "p", &m]])
        })
        .chain([entry(7, T0 + 10, &[&["SPOP", "p"]])])
        .collect();
    let mut rng = Rng(5);
    let replicas: Vec<_> = (0..2).map(|_| in_random_batches(&history, &mut rng).1).collect();
    assert_replicas_agree(5, &replicas);
}
