//! Single raftis nodes started with flags: `--requirepass` (from a file or
//! the environment), `--no-admin`, a small `--max-request-buffer-bytes` and
//! a small `--client-output-buffer-limit`. (Clusters: `raftis.rs`.)

mod common;

use common::raftis_client::{error_code, http, http_with, set_acknowledged};
use common::{free_ports, wait_until, DEADLINE};
use redis::{Connection, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
