//! raftis as Redis (issue 24): the string, counter, TTL and key commands
//! through any node with a real Redis client, each write one atomic log
//! entry; MULTI/EXEC as one; SCAN with numbered cursors.

mod common;

use common::raftis::Cluster;
use common::wait_until;
use redis::{Connection, RedisResult, Value};

fn error_text(r: RedisResult<Value>) -> String {
    match r {
        Err(e) => format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or("")),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

/// Every element a SCAN-like command (`cmd`, its cursor marked) yields,
/// following the cursors to the end.
fn scan_all(cmd: &redis::Cmd, con: &mut Connection) -> Vec<String> {
    cmd.clone().iter(con).unwrap().map(|k| k.unwrap()).collect()
}

fn get(con: &mut Connection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query(con).unwrap()
}

#[test]
fn strings_counters_and_ttls_through_any_node() {
    let c = Cluster::start(3);
    let leader = c.wait_for_leader();
    let follower = (leader + 1) % 3;
    let mut f = c.connect(follower);
    let mut all: Vec<Connection> = (0..3).map(|i| c.connect(i)).collect();

    // SET NX as a lock: one winner, through a follower.
    let won: Option<String> = redis::cmd("SET")
        .arg(&["lock", "me", "NX", "PX", "60000"])
        .query(&mut f)
        .unwrap();
    assert_eq!(won.as_deref(), Some("OK"));
    let lost: Option<String> = redis::cmd("SET")
        .arg(&["lock", "you", "NX"])
        .query(&mut all[leader])
        .unwrap();
    assert_eq!(lost, None);
    let ttl: i64 = redis::cmd("TTL").arg("lock").query(&mut all[2]).unwrap();
    assert!((59..=60).contains(&ttl), "{ttl}");

    // Counters: 4 clients × 50 INCRs through every node, none lost or doubled.
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let mut con = c.connect(t % 3);
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let _: i64 = redis::cmd("INCR").arg("hits").query(&mut con).unwrap();
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    for con in &mut all {
        assert_eq!(get(con, "hits").as_deref(), Some("200"));
    }
    let n: i64 = redis::cmd("INCRBY").arg(&["hits", "-200"]).query(&mut f).unwrap();
    assert_eq!(n, 0);
    let _: () = redis::cmd("SET").arg(&["word", "abc"]).query(&mut f).unwrap();
    let e = error_text(redis::cmd("INCR").arg("word").query(&mut f));
    assert_eq!(e, "ERR value is not an integer or out of range");
    let e = error_text(redis::cmd("GETSET").arg("word").query(&mut f));
    assert_eq!(e, "ERR wrong number of arguments for 'getset' command");
    let old: String = redis::cmd("GETSET").arg(&["word", "xyz"]).query(&mut f).unwrap();
    assert_eq!(old, "abc");
    let len: i64 = redis::cmd("APPEND")
        .arg(&["word", "!"])
        .query(&mut all[2])
        .unwrap();
    assert_eq!(len, 4);

    // A TTL ends on every node.
    let _: () = redis::cmd("SET")
        .arg(&["brief", "v", "PX", "1500"])
        .query(&mut f)
        .unwrap();
    for con in &mut all {
        assert_eq!(get(con, "brief").as_deref(), Some("v"));
    }
    for con in &mut all {
        wait_until("the key to expire on every node", || get(con, "brief").is_none());
        let ttl: i64 = redis::cmd("TTL").arg("brief").query(con).unwrap();
        assert_eq!(ttl, -2);
    }
    // Deleted by its TTL on every node: INFO stats counts it there.
    for con in &mut all {
        wait_until("INFO stats to count the expired key", || {
            let info: String = redis::cmd("INFO").arg("stats").query(con).unwrap();
            info.lines()
                .find_map(|l| l.strip_prefix("expired_keys:"))
                .is_some_and(|v| v.trim().parse::<u64>().unwrap() >= 1)
        });
    }

    // Keys: TYPE, RENAME, KEYS, DBSIZE, SCAN with a client's numbered cursors.
    let kind: String = redis::cmd("TYPE").arg("word").query(&mut f).unwrap();
    assert_eq!(kind, "string");
    let _: () = redis::cmd("RENAME").arg(&["word", "text"]).query(&mut f).unwrap();
    let _: () = redis::cmd("MSET")
        .arg(&["s:1", "a", "s:2", "b", "s:3", "c"])
        .query(&mut f)
        .unwrap();
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("s:*").query(&mut all[leader]).unwrap();
    keys.sort();
    assert_eq!(keys, ["s:1", "s:2", "s:3"]);
    let size: i64 = redis::cmd("DBSIZE").query(&mut f).unwrap();
    assert_eq!(size, 6, "lock, hits, text, s:1..3");
    let mut scanned = scan_all(redis::cmd("SCAN").cursor_arg(0).arg(&["COUNT", "2"]), &mut f);
    scanned.sort();
    assert_eq!(scanned, ["hits", "lock", "s:1", "s:2", "s:3", "text"]);
    let e = error_text(redis::cmd("NOSUCHCMD").arg("x").query(&mut f));
    assert!(e.starts_with("ERR unknown command 'NOSUCHCMD'"), "{e}");
}

#[test]
fn multi_exec_is_one_atomic_step_seen_from_another_connection() {
    let c = Cluster::start(3);
    let leader = c.wait_for_leader();
    let mut writer = c.connect((leader + 1) % 3);
    let mut reader = c.connect((leader + 2) % 3);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let checker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut checks = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (a, b): (Option<i64>, Option<i64>) =
                    redis::cmd("MGET").arg(&["a", "b"]).query(&mut reader).unwrap();
                assert_eq!(a, b, "MGET saw half a transaction");
                checks += 1;
            }
            checks
        })
    };
    for i in 1..=40 {
        let (a, b): (i64, i64) = redis::pipe()
            .atomic()
            .cmd("INCR")
            .arg("a")
            .cmd("INCR")
            .arg("b")
            .query(&mut writer)
            .unwrap();
        assert_eq!((a, b), (i, i));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(checker.join().unwrap() > 0);
    // Errors while queuing abort the EXEC; DISCARD drops the queue.
    let _: () = redis::cmd("MULTI").query(&mut writer).unwrap();
    let queued: String = redis::cmd("INCR").arg("a").query(&mut writer).unwrap();
    assert_eq!(queued, "QUEUED");
    let e = error_text(redis::cmd("FLOYD.LEADER").query(&mut writer));
    assert!(e.starts_with("ERR 'floyd.leader' cannot run inside MULTI"), "{e}");
    let e = error_text(redis::cmd("EXEC").query(&mut writer));
    assert!(e.starts_with("EXECABORT"), "{e}");
    let _: () = redis::cmd("MULTI").query(&mut writer).unwrap();
    let _: String = redis::cmd("INCR").arg("a").query(&mut writer).unwrap();
    let _: () = redis::cmd("DISCARD").query(&mut writer).unwrap();
    assert_eq!(get(&mut writer, "a").as_deref(), Some("40"));
    let e = error_text(redis::cmd("EXEC").query(&mut writer));
    assert_eq!(e, "ERR EXEC without MULTI");

    // WATCH: EXEC answers nil, and runs nothing, if a watched key changed
    // (written from another node) since.
    let mut other = c.connect(leader);
    let _: () = redis::cmd("WATCH")
        .arg(&["a", "never-set"])
        .query(&mut writer)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(&["a", "changed"])
        .query(&mut other)
        .unwrap();
    let _: () = redis::cmd("MULTI").query(&mut writer).unwrap();
    let _: String = redis::cmd("SET").arg(&["a", "mine"]).query(&mut writer).unwrap();
    let r: Value = redis::cmd("EXEC").query(&mut writer).unwrap();
    assert_eq!(r, Value::Nil, "a watched key changed");
    assert_eq!(get(&mut writer, "a").as_deref(), Some("changed"));
    // Unchanged, it runs; EXEC forgets the watch.
    let _: () = redis::cmd("WATCH").arg("a").query(&mut writer).unwrap();
    let _: () = redis::cmd("MULTI").query(&mut writer).unwrap();
    let _: String = redis::cmd("SET").arg(&["a", "mine"]).query(&mut writer).unwrap();
    let r: Vec<String> = redis::cmd("EXEC").query(&mut writer).unwrap();
    assert_eq!(r, ["OK"]);
    let e = error_text(
        redis::cmd("MULTI")
            .query(&mut writer)
            .and_then(|_: Value| redis::cmd("WATCH").arg("a").query(&mut writer)),
    );
    assert_eq!(e, "ERR WATCH inside MULTI is not allowed");
}

#[test]
fn hashes_and_lists_through_any_node_with_wrongtype_across_kinds() {
    let c = Cluster::start(3);
    let leader = c.wait_for_leader();
    let mut f = c.connect((leader + 1) % 3);
    let mut other = c.connect((leader + 2) % 3);
    let added: i64 = redis::cmd("HSET")
        .arg(&["user:1", "name", "ada", "age", "36"])
        .query(&mut f)
        .unwrap();
    assert_eq!(added, 2);
    let all: std::collections::HashMap<String, String> =
        redis::cmd("HGETALL").arg("user:1").query(&mut other).unwrap();
    assert_eq!(all.get("name").map(String::as_str), Some("ada"));
    let age: i64 = redis::cmd("HINCRBY")
        .arg(&["user:1", "age", "1"])
        .query(&mut other)
        .unwrap();
    assert_eq!(age, 37);
    // A plain GET (pipelined or not) of a hash is refused as Redis does.
    let e = error_text(redis::cmd("GET").arg("user:1").query(&mut f));
    assert_eq!(
        e,
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    );
    let piped: RedisResult<(String, String)> = redis::pipe()
        .cmd("GET")
        .arg("user:1")
        .cmd("GET")
        .arg("user:1")
        .query(&mut f);
    assert!(piped.is_err());
    let kind: String = redis::cmd("TYPE").arg("user:1").query(&mut other).unwrap();
    assert_eq!(kind, "hash");

    let n: i64 = redis::cmd("RPUSH")
        .arg(&["jobs", "a", "b", "c"])
        .query(&mut f)
        .unwrap();
    assert_eq!(n, 3);
    let n: i64 = redis::cmd("LPUSH").arg(&["jobs", "z"]).query(&mut other).unwrap();
    assert_eq!(n, 4);
    let all: Vec<String> = redis::cmd("LRANGE")
        .arg(&["jobs", "0", "-1"])
        .query(&mut other)
        .unwrap();
    assert_eq!(all, ["z", "a", "b", "c"]);
    let moved: String = redis::cmd("LMOVE")
        .arg(&["jobs", "done", "RIGHT", "LEFT"])
        .query(&mut f)
        .unwrap();
    assert_eq!(moved, "c");
    let popped: Vec<String> = redis::cmd("LPOP").arg(&["jobs", "5"]).query(&mut f).unwrap();
    assert_eq!(popped, ["z", "a", "b"]);
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&["jobs", "done"])
        .query(&mut other)
        .unwrap();
    assert_eq!(exists, 1, "the emptied list is gone, the other stays");
    // Sets, and the field and member scans with a client's numbered cursors.
    let n: i64 = redis::cmd("SADD")
        .arg(&["tags", "a", "b", "c"])
        .query(&mut f)
        .unwrap();
    assert_eq!(n, 3);
    let mut members = scan_all(
        redis::cmd("SSCAN").arg("tags").cursor_arg(0).arg(&["COUNT", "1"]),
        &mut other,
    );
    members.sort();
    assert_eq!(members, ["a", "b", "c"]);
    let fields = scan_all(
        redis::cmd("HSCAN")
            .arg("user:1")
            .cursor_arg(0)
            .arg(&["COUNT", "1"]),
        &mut other,
    );
    assert_eq!(fields.len(), 4, "two fields, two values: {fields:?}");
    // SET replaces a list whole; a list command on a string is refused.
    let _: () = redis::cmd("SET")
        .arg(&["done", "now a string"])
        .query(&mut f)
        .unwrap();
    let e = error_text(redis::cmd("LLEN").arg("done").query(&mut other));
    assert!(e.starts_with("WRONGTYPE"), "{e}");
}

#[test]
fn blocking_pops_wait_for_a_push_on_any_node_and_time_out_with_nil() {
    let c = Cluster::start(3);
    let leader = c.wait_for_leader();
    let mut f = c.connect((leader + 1) % 3);
    let started = std::time::Instant::now();
    let r: Value = redis::cmd("BLPOP").arg(&["empty", "0.3"]).query(&mut f).unwrap();
    assert_eq!(r, Value::Nil);
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    let e = error_text(redis::cmd("BLPOP").arg(&["empty", "-1"]).query(&mut f));
    assert_eq!(e, "ERR timeout is negative");
    // Blocked on a follower, woken by pushes through the leader.
    let waiters: Vec<_> = (0..2)
        .map(|i| {
            let mut con = c.connect((leader + 1 + i) % 3);
            std::thread::spawn(move || -> (String, String) {
                redis::cmd("BRPOP")
                    .arg(&["q1", "q2", "0"])
                    .query(&mut con)
                    .unwrap()
            })
        })
        .collect();
    let mut l = c.connect(leader);
    let _: i64 = redis::cmd("LPUSH").arg(&["q2", "x"]).query(&mut l).unwrap();
    let _: i64 = redis::cmd("LPUSH").arg(&["q1", "y"]).query(&mut l).unwrap();
    let mut got: Vec<(String, String)> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("q1".to_string(), "y".to_string()),
            ("q2".to_string(), "x".to_string())
        ]
    );
    let _: i64 = redis::cmd("RPUSH").arg(&["src", "a"]).query(&mut l).unwrap();
    let moved: String = redis::cmd("BLMOVE")
        .arg(&["src", "dst", "LEFT", "RIGHT", "1"])
        .query(&mut f)
        .unwrap();
    assert_eq!(moved, "a");
}

#[test]
fn what_clients_send_on_connect_and_what_tools_read() {
    let c = Cluster::start(1);
    c.wait_for_leader();
    let mut con = c.connect(0);
    let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut con).unwrap();
    assert!(id > 0);
    let name: Option<String> = redis::cmd("CLIENT").arg("GETNAME").query(&mut con).unwrap();
    assert_eq!(name, None);
    let _: () = redis::cmd("CLIENT")
        .arg(&["SETNAME", "worker-1"])
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg(&["SETINFO", "LIB-NAME", "redis-rs"])
        .query(&mut con)
        .unwrap();
    let name: String = redis::cmd("CLIENT").arg("GETNAME").query(&mut con).unwrap();
    assert_eq!(name, "worker-1");
    let info: String = redis::cmd("CLIENT").arg("INFO").query(&mut con).unwrap();
    assert!(
        info.starts_with(&format!("id={id} "))
            && info.contains("name=worker-1")
            && info.contains("lib-name=redis-rs"),
        "{info}"
    );
    let mut other = c.connect(0);
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut other).unwrap();
    assert_eq!(list.lines().count(), 2, "{list}");
    let e = error_text(
        redis::cmd("CLIENT")
            .arg(&["SETNAME", "has space"])
            .query(&mut con),
    );
    assert!(e.starts_with("ERR Client names cannot contain spaces"), "{e}");
    let hello: Vec<Value> = redis::cmd("HELLO").arg(2).query(&mut con).unwrap();
    assert_eq!(hello[0], Value::BulkString(b"server".to_vec()));
    assert!(hello.contains(&Value::Int(2)), "proto 2");
    let e = error_text(redis::cmd("HELLO").arg(3).query(&mut con));
    assert!(e.starts_with("NOPROTO"), "{e}");
    let save: Vec<String> = redis::cmd("CONFIG")
        .arg(&["GET", "save"])
        .query(&mut con)
        .unwrap();
    assert_eq!(save, ["save", ""]);
    let all: Vec<String> = redis::cmd("CONFIG")
        .arg(&["GET", "max*"])
        .query(&mut con)
        .unwrap();
    assert!(all.contains(&"maxclients".to_string()), "{all:?}");
    let e = error_text(
        redis::cmd("CONFIG")
            .arg(&["SET", "maxmemory", "1"])
            .query(&mut con),
    );
    assert!(e.starts_with("ERR CONFIG SET failed"), "{e}");
    let _: () = redis::cmd("SET")
        .arg(&["k", "v", "EX", "100"])
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("SET").arg(&["k2", "v"]).query(&mut con).unwrap();
    let ks: String = redis::cmd("INFO").arg("keyspace").query(&mut con).unwrap();
    assert!(ks.contains("db0:keys=2,expires=1"), "{ks}");
    let all: String = redis::cmd("INFO").query(&mut con).unwrap();
    for field in [
        "redis_version:7.0.0",
        "used_memory:",
        "total_commands_processed:",
        "connected_clients:",
        "role:master",
    ] {
        assert!(all.contains(field), "{field} missing from INFO:\n{all}");
    }
}
