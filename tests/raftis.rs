//! raftis as separate processes, driven by a real Redis client (the `redis`
//! crate) and plain HTTP: commands through followers, pipelines, locks,
//! malformed and oversized requests, the HTTP API, a clean SIGTERM, and
//! `kill -9` of the leader with every acknowledged SET found afterwards;
//! then single nodes with `--requirepass`, `--no-admin`, a small
//! `--max-request-buffer-bytes` and a small `--client-output-buffer-limit`.

mod common;

use common::metrics_text::sample;
use common::raftis::Cluster;
use common::{free_ports, wait_until, DEADLINE};
use redis::{Connection, RedisResult, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
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

fn error_code(r: RedisResult<Value>) -> String {
    match r {
        Err(e) => format!("{} {}", e.code().unwrap_or("?"), e.detail().unwrap_or("")),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

/// SET until acknowledged, retrying errors that say "not applied" or
/// "unknown" (the same value written again is harmless).
fn set_acknowledged(con: &mut Connection, key: &str, value: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match redis::cmd("SET").arg(key).arg(value).query::<String>(con) {
            Ok(ok) => return assert_eq!(ok, "OK"),
            Err(e) => {
                let code = e.code().unwrap_or("").to_string();
                assert!(
                    matches!(code.as_str(), "NOLEADER" | "TIMEOUT" | "BUSY"),
                    "SET {key}: {e}"
                );
                assert!(Instant::now() < deadline, "SET {key} never acknowledged: {e}");
            }
        }
    }
}

/// One HTTP/1.1 request; the status code and the body.
fn http(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let (code, _, body) = http_with(port, method, path, &[], body);
    (code, body)
}

/// One HTTP/1.1 request with extra header lines; the status code, the
/// response's header lines and its body.
fn http_with(port: u16, method: &str, path: &str, headers: &[&str], body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let text = String::from_utf8_lossy(&resp);
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let at = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers")
        + 4;
    (code, text[..at].to_string(), resp[at..].to_vec())
}

/// One raftis process, a cluster of its own, started with extra flags.
struct Solo {
    child: Child,
    port: u16,
    http: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Solo {
    fn start(flags: &[&str]) -> Solo {
        Self::start_with_env(flags, &[])
    }

    fn start_with_env(flags: &[&str], env: &[(&str, &str)]) -> Solo {
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(3);
        let raft = format!("127.0.0.1:{}", ports[0]);
        let log = dir.path().join("stderr");
        let child = Command::new(env!("CARGO_BIN_EXE_raftis"))
            .args(["--members", &raft, "--local", &raft])
            .arg("--path")
            .arg(dir.path().join("data"))
            .args([
                "--port",
                &ports[1].to_string(),
                "--http-port",
                &ports[2].to_string(),
            ])
            .args(["--heartbeat-us", "30000", "--check-leader-us", "300000"])
            .args(flags)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn raftis");
        let mut solo = Solo {
            child,
            port: ports[1],
            http: ports[2],
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + DEADLINE;
        while solo.try_raw().is_none() {
            if let Some(status) = solo.child.try_wait().unwrap() {
                panic!("raftis exited ({status}); its stderr:\n{}", solo.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "raftis never listened; its stderr:\n{}",
                solo.stderr()
            );
            std::thread::park_timeout(Duration::from_millis(20));
        }
        solo
    }

    fn try_raw(&self) -> Option<TcpStream> {
        let s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Some(s)
    }

    /// A plain socket to the RESP port.
    fn raw(&self) -> TcpStream {
        self.try_raw().expect("raftis listens")
    }

    /// A `redis` connection, sending `AUTH password` first if given.
    fn client(&self, password: Option<&str>) -> Connection {
        let auth = password.map_or(String::new(), |p| format!(":{p}@"));
        let url = format!("redis://{auth}127.0.0.1:{}/", self.port);
        let con = redis::Client::open(url).unwrap().get_connection().unwrap();
        con.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        con
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The value of `field` in `INFO everything`.
    fn info(&self, con: &mut Connection, field: &str) -> u64 {
        let info: String = redis::cmd("INFO").arg("everything").query(con).unwrap();
        let prefix = format!("{field}:");
        info.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {field} in INFO:\n{info}"))
            .parse()
            .unwrap()
    }
}

impl Drop for Solo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads one RESP reply's first line (and a bulk string's body) from `s`.
fn read_reply(s: &mut TcpStream) -> Vec<u8> {
    let mut line = Vec::new();
    let mut byte = [0u8];
    while !line.ends_with(b"\r\n") {
        s.read_exact(&mut byte).expect("a reply");
        line.push(byte[0]);
    }
    if line[0] == b'$' && line[1] != b'-' {
        let n: usize = String::from_utf8_lossy(&line[1..line.len() - 2]).parse().unwrap();
        let mut body = vec![0u8; n + 2];
        s.read_exact(&mut body).unwrap();
        line.extend(body);
    }
    line
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

/// Issue 20, item 8: with `--requirepass` (here read from a file, so `ps`
/// does not show it) every command but AUTH, QUIT and HELLO gets `-NOAUTH`
/// until the client authenticates, a wrong password `-WRONGPASS`, and
/// every HTTP request needs the password (Bearer, or Basic with any user),
/// else 401 with `WWW-Authenticate`.
#[test]
fn requirepass_guards_every_command_and_every_http_request() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, "s3cret-pw\n").unwrap();
    let solo = Solo::start(&["--requirepass-file", file.to_str().unwrap()]);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", solo.child.id())).unwrap();
    assert!(
        !cmdline.windows(6).any(|w| w == b"s3cret"),
        "the password shows in ps"
    );

    // Before AUTH: NOAUTH for anything but AUTH, QUIT and HELLO.
    let mut con = solo.client(None);
    for cmd in [
        redis::cmd("GET").arg("k").clone(),
        redis::cmd("SET").arg(&["k", "v"]).clone(),
        redis::cmd("PING"),
        redis::cmd("INFO"),
        redis::cmd("FLOYD.ADDSERVER").arg("127.0.0.1:1").clone(),
        redis::cmd("FLOYD.TRANSFER").arg("127.0.0.1:1").clone(),
    ] {
        assert_eq!(error_code(cmd.query(&mut con)), "NOAUTH Authentication required.");
    }
    // A pipeline of plain GETs and SETs (the async path) is held back too.
    let mut p = redis::pipe();
    p.cmd("SET").arg("k").arg("v").cmd("GET").arg("k");
    let e = p.query::<Vec<Value>>(&mut con).unwrap_err().to_string();
    assert_eq!(e.matches("NOAUTH").count(), 2, "{e}");
    let e = error_code(redis::cmd("HELLO").arg(3).query(&mut con));
    assert!(e.starts_with("NOPROTO"), "{e}");

    // Wrong passwords, and another user than `default`.
    for args in [&["wrong"][..], &["default", "wrong"], &["alice", "s3cret-pw"]] {
        let e = error_code(redis::cmd("AUTH").arg(args).query(&mut con));
        assert_eq!(e, "WRONGPASS invalid username-password pair or user is disabled.");
    }
    assert_eq!(
        error_code(redis::cmd("GET").arg("k").query(&mut con)),
        "NOAUTH Authentication required."
    );

    // AUTH password, then everything works; AUTH default password on another connection.
    let ok: String = redis::cmd("AUTH").arg("s3cret-pw").query(&mut con).unwrap();
    assert_eq!(ok, "OK");
    set_acknowledged(&mut con, "k", "v1");
    let v: String = redis::cmd("GET").arg("k").query(&mut con).unwrap();
    assert_eq!(v, "v1");
    let mut other = solo.client(None);
    let ok: String = redis::cmd("AUTH")
        .arg(&["default", "s3cret-pw"])
        .query(&mut other)
        .unwrap();
    assert_eq!(ok, "OK");
    let v: String = redis::cmd("GET").arg("k").query(&mut other).unwrap();
    assert_eq!(v, "v1");
    // The client library's own AUTH (password in the URL).
    let mut by_url = solo.client(Some("s3cret-pw"));
    let v: String = redis::cmd("GET").arg("k").query(&mut by_url).unwrap();
    assert_eq!(v, "v1");

    // QUIT before AUTH is answered; a large argument before AUTH is a
    // protocol error, as in Redis (an unauthenticated client buffers little).
    let mut raw = solo.raw();
    raw.write_all(b"QUIT\r\n").unwrap();
    assert_eq!(read_reply(&mut raw), b"+OK\r\n");
    let mut raw = solo.raw();
    raw.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n")
        .unwrap();
    let mut out = Vec::new();
    raw.read_to_end(&mut out).unwrap();
    assert_eq!(out, b"-ERR Protocol error: unauthenticated bulk length\r\n");

    // HTTP: 401 without the password or with a wrong one, 200/204 with it.
    let basic = |user_pass: &str| {
        const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let b = user_pass.as_bytes();
        let mut out = String::new();
        for chunk in b.chunks(3) {
            let n = (u32::from(chunk[0]) << 16)
                | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
                | u32::from(*chunk.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ABC[(n >> (18 - 6 * i)) as usize & 63] as char);
                } else {
                    out.push('=');
                }
            }
        }
        format!("Authorization: Basic {out}")
    };
    let h = solo.http;
    for headers in [
        vec![],
        vec!["Authorization: Bearer wrong".to_string()],
        vec![basic("any:wrong")],
    ] {
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        for (method, path) in [("GET", "/k"), ("GET", "/-/status"), ("POST", "/-/servers")] {
            let (code, head, _) = http_with(h, method, path, &headers, b"");
            assert_eq!(code, 401, "{method} {path} with {headers:?}");
            assert!(
                head.contains("WWW-Authenticate: Basic realm=\"raftis\""),
                "{head}"
            );
        }
    }
    let bearer = ["Authorization: Bearer s3cret-pw"];
    assert_eq!(http_with(h, "GET", "/k", &bearer, b"").2, b"v1");
    assert_eq!(http_with(h, "GET", "/-/status", &bearer, b"").0, 200);
    let basic = [basic("anyone:s3cret-pw")];
    let basic: Vec<&str> = basic.iter().map(String::as_str).collect();
    assert_eq!(http_with(h, "PUT", "/k", &basic, b"v2").0, 204);
    let (code, _, body) = http_with(h, "GET", "/k", &basic, b"");
    assert_eq!((code, body), (200, b"v2".to_vec()));
}

/// Issue 20, item 8: the password may come from `RAFTIS_REQUIREPASS`.
#[test]
fn the_password_may_come_from_the_environment() {
    let solo = Solo::start_with_env(&[], &[("RAFTIS_REQUIREPASS", "env-pw")]);
    let mut con = solo.client(None);
    assert_eq!(
        error_code(redis::cmd("PING").query(&mut con)),
        "NOAUTH Authentication required."
    );
    let mut con = solo.client(Some("env-pw"));
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    let (code, _, _) = http_with(
        solo.http,
        "GET",
        "/-/leader",
        &["Authorization: Bearer env-pw"],
        b"",
    );
    assert_ne!(code, 401);
}

/// Issue 20, item 8: `--no-admin` turns membership changes, leadership
/// transfer and the debug commands off on both protocols; the rest works.
#[test]
fn no_admin_refuses_the_admin_commands_on_both_protocols() {
    let solo = Solo::start(&["--no-admin", "--fault-injection"]);
    let mut con = solo.client(None);
    for cmd in [
        redis::cmd("FLOYD.ADDSERVER").arg("127.0.0.1:1").clone(),
        redis::cmd("FLOYD.REMOVESERVER").arg("127.0.0.1:1").clone(),
        redis::cmd("FLOYD.TRANSFER").arg("127.0.0.1:1").clone(),
        redis::cmd("FLOYD.DEBUG.CUT").arg(&["127.0.0.1:1", "10"]).clone(),
        redis::cmd("FLOYD.DEBUG.SLOWDISK").arg("10").clone(),
        redis::cmd("floyd.addserver").arg("127.0.0.1:1").clone(),
    ] {
        let e = error_code(cmd.query(&mut con));
        assert_eq!(e, "ERR admin commands are disabled on this node");
    }
    set_acknowledged(&mut con, "k", "v");
    let servers: Vec<String> = redis::cmd("FLOYD.SERVERS").query(&mut con).unwrap();
    assert_eq!(servers.len(), 1);
    let h = solo.http;
    assert_eq!(http(h, "POST", "/-/servers", b"127.0.0.1:1").0, 403);
    assert_eq!(http(h, "DELETE", "/-/servers/127.0.0.1:1", b"").0, 403);
    assert_eq!(http(h, "GET", "/-/servers", b"").0, 200);
    assert_eq!(http(h, "GET", "/k", b""), (200, b"v".to_vec()));
}

/// Issue 20, item 8: the bytes all connections buffer for large requests
/// are bounded together. With a 4 MiB bound, three connections each hold a
/// half-sent SET of 1 MiB; an MSET whose second value no longer fits is
/// refused with -OOM (it held part of the budget, and waiting could
/// deadlock); a SET of 1.5 MiB waits, its connection unread, until one of
/// the three completes, and then goes through. The reserved bytes never
/// pass the bound.
#[test]
fn large_requests_share_one_bounded_buffer_budget() {
    const MIB: usize = 1 << 20;
    let solo = Solo::start(&["--max-request-buffer-bytes", &(4 * MIB).to_string()]);
    let mut con = solo.client(None);
    set_acknowledged(&mut con, "warm", "up");
    let limit = solo.info(&mut con, "max_request_buffer_bytes");
    assert_eq!(limit, 4 * MIB as u64);
    let reserved = |con: &mut Connection| {
        let r = solo.info(con, "request_buffer_bytes");
        assert!(r <= limit, "{r} bytes reserved, over the bound of {limit}");
        r
    };
    let header = |cmd: &str, key: &str, len: usize| {
        format!(
            "*3\r\n${}\r\n{cmd}\r\n${}\r\n{key}\r\n${len}\r\n",
            cmd.len(),
            key.len()
        )
        .into_bytes()
    };

    // Three half-sent SETs of 1 MiB each hold about 3 MiB.
    let mut holders: Vec<TcpStream> = (0..3)
        .map(|i| {
            let mut s = solo.raw();
            s.write_all(&header("SET", &format!("h{i}"), MIB)).unwrap();
            s.write_all(&vec![b'h'; MIB / 2]).unwrap();
            s
        })
        .collect();
    wait_until("three reservations", || {
        reserved(&mut con) > 3 * (MIB as u64 - (32 << 10))
    });

    // An MSET gets its first value (0.5 MiB), not its second: -OOM.
    let mut m = solo.raw();
    m.write_all(b"*5\r\n$4\r\nMSET\r\n$2\r\nm1\r\n$524288\r\n")
        .unwrap();
    m.write_all(&vec![b'm'; MIB / 2]).unwrap();
    m.write_all(format!("\r\n$2\r\nm2\r\n${MIB}\r\n").as_bytes())
        .unwrap();
    m.write_all(&vec![b'm'; MIB]).unwrap();
    m.write_all(b"\r\n").unwrap();
    let reply = String::from_utf8(read_reply(&mut m)).unwrap();
    assert!(reply.starts_with("-OOM "), "{reply}");
    let v: Option<String> = redis::cmd("GET").arg("m1").query(&mut con).unwrap();
    assert_eq!(v, None, "a refused MSET writes nothing");

    // A SET of 1.5 MiB does not fit: it waits, its connection unread.
    let big = vec![b'w'; 3 * MIB / 2];
    let mut w = solo.raw();
    w.write_all(&header("SET", "waiter", big.len())).unwrap();
    wait_until("the SET to wait", || {
        solo.info(&mut con, "clients_waiting_for_request_buffer") == 1
    });
    let writer = {
        let mut w = w.try_clone().unwrap();
        let mut body = big.clone();
        body.extend_from_slice(b"\r\n");
        // Blocks while raftis does not read this connection.
        std::thread::spawn(move || w.write_all(&body).unwrap())
    };
    reserved(&mut con);

    // One holder completes: its room goes to the waiting SET.
    holders[0].write_all(&vec![b'h'; MIB / 2]).unwrap();
    holders[0].write_all(b"\r\n").unwrap();
    assert_eq!(read_reply(&mut holders[0]), b"+OK\r\n");
    writer.join().unwrap();
    assert_eq!(read_reply(&mut w), b"+OK\r\n");
    let v: Vec<u8> = redis::cmd("GET").arg("waiter").query(&mut con).unwrap();
    assert!(v == big, "the waiting SET's value");
    assert_eq!(solo.info(&mut con, "clients_waiting_for_request_buffer"), 0);

    // The others complete; everything is given back.
    for h in &mut holders[1..] {
        h.write_all(&vec![b'h'; MIB / 2]).unwrap();
        h.write_all(b"\r\n").unwrap();
        assert_eq!(read_reply(h), b"+OK\r\n");
    }
    wait_until("the budget to be given back", || reserved(&mut con) == 0);
}

/// Issue 20, item 8: a client whose pending replies pass
/// `--client-output-buffer-limit` is disconnected, and the closing logged:
/// one that pipelines many GETs of a large value and reads nothing, and one
/// whose MGET would produce more. A client under the limit is served.
#[test]
fn a_client_whose_pending_replies_pass_the_output_limit_is_disconnected() {
    const MIB: usize = 1 << 20;
    let solo = Solo::start(&["--client-output-buffer-limit", &(4 * MIB).to_string()]);
    let mut con = solo.client(None);
    let value = vec![b'v'; MIB];
    let deadline = Instant::now() + DEADLINE;
    while redis::cmd("SET")
        .arg("big")
        .arg(&value)
        .query::<()>(&mut con)
        .is_err()
    {
        assert!(Instant::now() < deadline, "the SET of big was never acknowledged");
    }

    // 64 GETs of 1 MiB in one go, and nothing read.
    let mut greedy = solo.raw();
    greedy.write_all("GET big\r\n".repeat(64).as_bytes()).unwrap();
    wait_until("the greedy client to be disconnected", || {
        solo.info(&mut con, "client_output_buffer_limit_disconnections") == 1
    });
    let mut got = Vec::new();
    let _ = greedy.read_to_end(&mut got); // EOF or a reset: closed either way
    assert!(
        got.len() < 8 * MIB,
        "{} bytes of replies reached the client",
        got.len()
    );
    assert!(
        solo.stderr().contains("--client-output-buffer-limit"),
        "the closing is logged:\n{}",
        solo.stderr()
    );

    // An MGET whose reply would pass the limit.
    let mut mget = solo.raw();
    mget.write_all(b"MGET big big big big big big\r\n").unwrap();
    let mut got = Vec::new();
    let _ = mget.read_to_end(&mut got);
    assert!(got.is_empty(), "{} bytes", got.len());
    assert_eq!(
        solo.info(&mut con, "client_output_buffer_limit_disconnections"),
        2
    );

    // Under the limit: served, pipelined or not.
    let mut p = redis::pipe();
    p.cmd("GET")
        .arg("big")
        .cmd("GET")
        .arg("big")
        .cmd("GET")
        .arg("big");
    let got: Vec<Vec<u8>> = p.query(&mut con).unwrap();
    assert!(got.iter().all(|v| *v == value));
    let got: Vec<Vec<u8>> = redis::cmd("MGET")
        .arg(&["big", "big", "big"])
        .query(&mut con)
        .unwrap();
    assert_eq!(got.len(), 3);
    wait_until("the closed clients to be gone", || {
        solo.info(&mut con, "connected_clients") == 1
    });
}
