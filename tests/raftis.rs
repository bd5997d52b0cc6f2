//! raftis as separate processes, driven by a real Redis client (the `redis`
//! crate) and plain HTTP: commands through followers, pipelines, locks,
//! malformed and oversized requests, the HTTP API, a clean SIGTERM, and
//! `kill -9` of the leader with every acknowledged SET found afterwards.
//! (Single nodes started with flags: `raftis_solo.rs`.)

mod common;

use common::metrics_text::sample;
use common::raftis::Cluster;
use common::raftis_client::{error_code, http, http_with, set_acknowledged};
use common::{wait_until, DEADLINE};
use redis::{Connection, RedisResult, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// SETs and GETs of one pipeline run together (async), yet the connection
/// reads its own writes: a GET or SET of a key set earlier in the pipeline,
/// a SET of a key read earlier in it, and any other command, wait for what
/// came before.
fn pipelined_requests_read_their_own_writes_in_order(con: &mut Connection) {
    let mut p = redis::pipe();
    p.cmd("SET").arg("q").arg("1");
    p.cmd("GET").arg("q");
    p.cmd("SET").arg("q").arg("2");
    p.cmd("SET").arg("q").arg("3");
    p.cmd("GET").arg("q");
    p.cmd("DEL").arg("q");
    p.cmd("GET").arg("q");
    p.cmd("SET").arg("q").arg("4");
    p.cmd("PING");
    p.cmd("GET").arg("q");
    let got: Vec<Value> = p.query(con).unwrap();
    let ok = || Value::Okay;
    let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
    assert_eq!(got.len(), 10);
    assert_eq!(got[..6], [ok(), bulk("1"), ok(), ok(), bulk("3"), Value::Int(1)]);
    assert_eq!(got[6], Value::Nil);
    assert_eq!(got[7], ok());
    assert_eq!(got[8], Value::SimpleString("PONG".into()));
    assert_eq!(got[9], bulk("4"));
}

#[test]
fn redis_commands_through_any_node_and_the_http_api() {
    let mut c = Cluster::start(3);
    let leader = c.wait_for_leader();
    let follower = (leader + 1) % 3;
    let mut f = c.connect(follower);
    let mut l = c.connect(leader);
    let mut all: Vec<Connection> = (0..3).map(|i| c.connect(i)).collect();

    // SET through a follower, GET (linearizable) from every node.
    let ok: String = redis::cmd("SET").arg("k").arg("v1").query(&mut f).unwrap();
    assert_eq!(ok, "OK");
    for con in &mut all {
        let v: Option<String> = redis::cmd("GET").arg("k").query(con).unwrap();
        assert_eq!(v.as_deref(), Some("v1"));
    }
    let n: i64 = redis::cmd("DEL").arg("k").arg("never-set").query(&mut f).unwrap();
    assert_eq!(n, 1);
    for con in &mut all {
        let v: Option<String> = redis::cmd("GET").arg("k").query(con).unwrap();
        assert_eq!(v, None);
    }

    // MSET / MGET / EXISTS.
    let ok: String = redis::cmd("MSET")
        .arg(&["a", "1", "b", "2", "c", "3"])
        .query(&mut f)
        .unwrap();
    assert_eq!(ok, "OK");
    let vs: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&["a", "b", "missing", "c"])
        .query(&mut all[2])
        .unwrap();
    assert_eq!(
        vs,
        [Some("1"), Some("2"), None, Some("3")].map(|v| v.map(String::from))
    );
    let n: i64 = redis::cmd("EXISTS")
        .arg(&["a", "b", "missing"])
        .query(&mut l)
        .unwrap();
    assert_eq!(n, 2);

    // A pipeline of many commands on one connection, through a follower.
    let mut p = redis::pipe();
    for i in 0..200 {
        p.cmd("SET").arg(format!("p{i}")).arg(i).ignore();
    }
    for i in 0..200 {
        p.cmd("GET").arg(format!("p{i}"));
    }
    let got: Vec<i64> = p.query(&mut f).unwrap();
    assert_eq!(got, (0..200).collect::<Vec<i64>>());
    pipelined_requests_read_their_own_writes_in_order(&mut f);

    // Locks: a fencing token, LOCKED for another holder, NOTHOLDER, a larger token after.
    let t1: i64 = redis::cmd("FLOYD.TRYLOCK")
        .arg(&["job", "w1", "10000"])
        .query(&mut f)
        .unwrap();
    assert!(t1 > 0);
    let e = error_code(
        redis::cmd("FLOYD.TRYLOCK")
            .arg(&["job", "w2", "10000"])
            .query(&mut l),
    );
    assert!(e.starts_with("LOCKED"), "{e}");
    let e = error_code(redis::cmd("FLOYD.UNLOCK").arg(&["job", "w2"]).query(&mut l));
    assert!(e.starts_with("NOTHOLDER"), "{e}");
    let ok: String = redis::cmd("FLOYD.UNLOCK")
        .arg(&["job", "w1"])
        .query(&mut f)
        .unwrap();
    assert_eq!(ok, "OK");
    let t2: i64 = redis::cmd("FLOYD.TRYLOCK")
        .arg(&["job", "w2", "10000"])
        .query(&mut f)
        .unwrap();
    assert!(t2 > t1, "{t2} after {t1}");

    // INFO, ROLE, FLOYD.LEADER, FLOYD.SERVERS, FLOYD.STATUS.
    let leader_addr = c.node(leader).raft.clone();
    let info: String = redis::cmd("INFO").arg("replication").query(&mut l).unwrap();
    assert!(
        info.contains("role:master\r\n") && info.contains("raft_role:leader"),
        "{info}"
    );
    assert!(info.contains(&format!("leader:{leader_addr}\r\n")), "{info}");
    let info: String = redis::cmd("INFO").query(&mut f).unwrap();
    assert!(
        info.contains("# Replication\r\nrole:slave\r\nraft_role:follower"),
        "{info}"
    );
    let role: Vec<Value> = redis::cmd("ROLE").query(&mut l).unwrap();
    assert_eq!(role[0], Value::BulkString(b"master".to_vec()));
    let role: Vec<Value> = redis::cmd("ROLE").query(&mut f).unwrap();
    assert_eq!(role[0], Value::BulkString(b"slave".to_vec()));
    for con in &mut all {
        let named: String = redis::cmd("FLOYD.LEADER").query(con).unwrap();
        assert_eq!(named, leader_addr);
        let servers: Vec<String> = redis::cmd("FLOYD.SERVERS").query(con).unwrap();
        assert_eq!(servers.len(), 3);
    }
    let status: String = redis::cmd("FLOYD.STATUS").query(&mut l).unwrap();
    assert!(
        status.contains("LastApplied") && status.contains("leader"),
        "{status}"
    );
    let v: Option<String> = redis::cmd("FLOYD.DIRTYGET").arg("a").query(&mut l).unwrap();
    assert_eq!(v.as_deref(), Some("1"));

    // Malformed requests get an error; the connection stays usable.
    for bad in [
        redis::cmd("NOSUCHCOMMAND"),
        redis::cmd("GET"),
        redis::cmd("FLOYD.TRYLOCK").arg(&["x", "y", "soon"]).clone(),
        redis::cmd("MSET").arg(&["odd", "count", "args"]).clone(),
    ] {
        let e = error_code(bad.query(&mut f));
        assert!(e.starts_with("ERR"), "{e}");
    }
    // SET's options run (tests/raftis_data.rs has the rest).
    let kept: Option<String> = redis::cmd("SET").arg(&["a", "v", "NX"]).query(&mut f).unwrap();
    assert_eq!(kept, None, "a exists: NX sets nothing");
    let pong: String = redis::cmd("PING").query(&mut f).unwrap();
    assert_eq!(pong, "PONG");

    // A bulk string over the value limit is refused; the same connection goes on.
    let big = vec![b'x'; floyd::options::MAX_VALUE_BYTES + 1];
    let e = error_code(redis::cmd("SET").arg("big").arg(&big).query(&mut f));
    assert!(e.contains("over the limit"), "{e}");
    let pong: String = redis::cmd("PING").query(&mut f).unwrap();
    assert_eq!(pong, "PONG");

    // Raw bytes: inline commands, then a protocol error that closes the connection.
    let mut raw = TcpStream::connect(("127.0.0.1", c.node(follower).port)).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    raw.write_all(b"PING\r\nECHO \"a b\"\r\n*1\r\n$x\r\nPING\r\n")
        .unwrap();
    let mut out = Vec::new();
    raw.read_to_end(&mut out).unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.starts_with("+PONG\r\n$3\r\na b\r\n-ERR Protocol error"),
        "{out}"
    );

    // HTTP: PUT on one node, GET on another, DELETE, status, leader.
    let (h0, h1) = (c.node(follower).http, c.node(leader).http);
    assert_eq!(http(h0, "PUT", "/hk", b"hello").0, 204);
    assert_eq!(http(h1, "GET", "/hk", b""), (200, b"hello".to_vec()));
    let v: String = redis::cmd("GET").arg("hk").query(&mut l).unwrap();
    assert_eq!(v, "hello");
    assert_eq!(http(h1, "DELETE", "/hk", b"").0, 204);
    assert_eq!(http(h0, "GET", "/hk", b"").0, 404);
    let (code, body) = http(h0, "GET", "/-/status", b"");
    let body = String::from_utf8(body).unwrap();
    assert_eq!(code, 200);
    assert!(
        body.starts_with('{') && body.contains("\"role\":\"follower\""),
        "{body}"
    );
    assert_eq!(
        http(h0, "GET", "/-/leader", b""),
        (200, format!("{leader_addr}\n").into_bytes())
    );
    assert_eq!(http(h0, "POST", "/-/servers", b"not-an-address").0, 400);
    // INFO persistence: floyd's log as Redis's append-only file.
    let info: String = redis::cmd("INFO").arg("persistence").query(&mut l).unwrap();
    let syncs: u64 = info
        .lines()
        .find_map(|x| x.strip_prefix("floyd_log_syncs:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        info.contains("aof_enabled:1") && info.contains("aof_last_write_status:ok") && syncs > 0,
        "{info}"
    );
    // Prometheus's scrape; the key "metrics" stays reachable by /-/kv/.
    let (code, _, body) = http_with(h1, "GET", "/metrics", &[], b"");
    let body = String::from_utf8(body).unwrap();
    assert_eq!(code, 200);
    assert!(
        body.contains("floyd_is_leader{group=\"0\"} 1\n") && body.ends_with("# EOF\n"),
        "{body}"
    );
    // A client of another protocol on the members' port is refused and
    // counted, by reason.
    let refused =
        |body: &str| -> f64 { sample(body, r#"floyd_refused_frames_total{reason="bad_handshake"}"#) };
    let before = refused(&body);
    let mut garbage = TcpStream::connect(leader_addr.as_str()).unwrap();
    garbage.write_all(b"PING\r\n").unwrap();
    drop(garbage);
    wait_until("the garbage counted in /metrics", || {
        let (_, _, body) = http_with(h1, "GET", "/metrics", &[], b"");
        refused(&String::from_utf8(body).unwrap()) > before
    });
    assert_eq!(http(h0, "PUT", "/-/kv/metrics", b"m").0, 204);
    assert_eq!(http(h1, "GET", "/-/kv/metrics", b""), (200, b"m".to_vec()));

    // SIGTERM: the node closes and exits 0.
    let mut n = c.nodes[follower].take().unwrap();
    assert_eq!(
        unsafe { libc::kill(n.child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(s) = n.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "raftis did not exit on SIGTERM");
        std::thread::park_timeout(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}

/// Issue 20, item 4: a GET pipelined before a SET of the same key reads
/// the value from before that SET, never the SET's own, as Redis executes a
/// connection's commands in order. Connections to both followers each
/// pipeline `GET k`, `SET k i+1` and a write of another key, round after
/// round: the GET of round `i` must read `i`.
#[test]
fn a_pipelined_get_never_reads_the_set_sent_after_it() {
    const CONNECTIONS: usize = 4;
    const ROUNDS: i64 = 300;
    let c = Cluster::start(3);
    let leader = c.wait_for_leader();
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|t| {
            let mut con = c.connect((leader + 1 + t % 2) % 3);
            std::thread::spawn(move || {
                let key = format!("order{t}");
                set_acknowledged(&mut con, &key, "0");
                let mut early = Vec::new();
                for i in 0..ROUNDS {
                    let mut p = redis::pipe();
                    p.cmd("GET").arg(&key);
                    p.cmd("SET").arg(&key).arg(i + 1).ignore();
                    p.cmd("SET").arg(format!("other{t}")).arg(i).ignore();
                    let (v,): (i64,) = p.query(&mut con).unwrap();
                    if v != i {
                        early.push((i, v));
                    }
                }
                early
            })
        })
        .collect();
    let early: Vec<(i64, i64)> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    assert!(
        early.is_empty(),
        "{} of {} GETs read another value than the one before the SET sent after them \
         (round, value read), e.g. {:?}",
        early.len(),
        CONNECTIONS as i64 * ROUNDS,
        &early[..early.len().min(5)]
    );
}

#[test]
fn acknowledged_sets_survive_kill_9_of_the_leader() {
    let mut c = Cluster::start(3);
    let leader = c.wait_for_leader();
    let mut cons: Vec<Connection> = (0..3).map(|i| c.connect(i)).collect();
    let mut acknowledged = Vec::new();
    for i in 0..60 {
        set_acknowledged(&mut cons[i % 3], &format!("k{i}"), &format!("v{i}"));
        acknowledged.push(i);
    }
    c.kill9(leader);
    let new_leader = c.wait_for_leader();
    assert_ne!(new_leader, leader);
    let survivors: Vec<usize> = c.running();
    for i in 60..100 {
        let via = survivors[i % 2];
        set_acknowledged(&mut cons[via], &format!("k{i}"), &format!("v{i}"));
        acknowledged.push(i);
    }
    for s in survivors {
        for i in &acknowledged {
            let v: Option<String> = redis::cmd("GET")
                .arg(format!("k{i}"))
                .query(&mut cons[s])
                .unwrap();
            assert_eq!(v, Some(format!("v{i}")), "acknowledged SET k{i} lost (node {s})");
        }
    }
}

/// Issue 22, item 5 over RESP: `FLOYD.WATCH` streams every change to a
/// range, in revision order, each once, on a follower; after the node's
/// restart a watch from a past revision replays exactly what followed it.
#[test]
fn floyd_watch_streams_each_change_once_and_resumes_after_a_restart() {
    use common::watch_stream::{watch, Change, Streamed};
    let mut c = Cluster::start(3);
    let leader = c.wait_for_leader();
    let follower = (leader + 1) % 3;
    let addr = |c: &Cluster| c.resp_addr(follower);
    let mut w = watch(&addr(&c), b"w/", b"w0", 0, DEADLINE).unwrap().unwrap();
    let mut l = c.connect(leader);
    for i in 0..5 {
        set_acknowledged(&mut l, &format!("w/{i}"), &format!("v{i}"));
    }
    set_acknowledged(&mut l, "outside", "x");
    let n: i64 = redis::cmd("DEL").arg("w/0").query(&mut l).unwrap();
    assert_eq!(n, 1);
    let mut seen: Vec<Change> = Vec::new();
    while seen.len() < 6 {
        match w.next().unwrap() {
            Streamed::Change(ch) => seen.push(ch),
            Streamed::Idle => panic!("no change within {DEADLINE:?}"),
            end => panic!("the watch ended: {end:?}"),
        }
    }
    let keys: Vec<&[u8]> = seen.iter().map(|ch| ch.key.as_slice()).collect();
    assert_eq!(keys, [&b"w/0"[..], b"w/1", b"w/2", b"w/3", b"w/4", b"w/0"]);
    assert!(seen[..5].iter().all(|ch| ch.put) && !seen[5].put);
    assert_eq!(seen[2].value, b"v2");
    assert!(seen.windows(2).all(|p| p[0].revision < p[1].revision), "{seen:?}");
    // (The write outside the range took a revision of its own.)
    assert_eq!(seen[5].revision, seen[4].revision + 2);
    drop(w);
    c.stop(follower);
    c.restart(follower);
    let mut con = c.connect(follower); // (waits until it listens)
    let from = seen[3].revision;
    let mut again = watch(&addr(&c), b"w/", b"w0", from, DEADLINE).unwrap().unwrap();
    for want in &seen[3..] {
        assert_eq!(again.next().unwrap(), Streamed::Change(want.clone()));
    }
    // Bad input.
    let r: RedisResult<Value> = redis::cmd("FLOYD.WATCH")
        .arg("a")
        .arg("b")
        .arg("x")
        .query(&mut con);
    assert!(r.unwrap_err().to_string().contains("start_revision"));
    let r: RedisResult<Value> = redis::cmd("FLOYD.WATCH").arg("a").query(&mut con);
    assert!(r.is_err());
}
