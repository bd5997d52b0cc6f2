//! raftis: a Redis-protocol (RESP2) and HTTP server over floyd, one process per node.
//!
//! ```text
//! raftis --members 127.0.0.1:8901,127.0.0.1:8902,127.0.0.1:8903 --local 127.0.0.1:8901 \
//!        --path ./data1 --port 6379 [--http-port 8081] [--join]
//! ```
//! Any node takes any command (a follower forwards to the leader); GET is
//! linearizable. SIGTERM or SIGINT closes the node cleanly. floyd logs to
//! `<path>/LOG` and, through a log callback, to stderr. See README.md, "raftis".

#[path = "raftis/commands.rs"]
mod commands;
#[path = "raftis/http.rs"]
mod http;
#[path = "raftis/pipeline.rs"]
mod pipeline;
#[path = "raftis/resp.rs"]
mod resp;
#[path = "raftis/server.rs"]
mod server;

use floyd::{Floyd, LogCallback, LogLevel, Options};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Instant;

const USAGE: &str = "usage: raftis --members IP:PORT,IP:PORT,... --local IP:PORT --path DIR
              [--port 6379] [--http-port PORT] [--bind IP] [--join] [--lease-reads]
              [--max-clients 10000] [--heartbeat-us N] [--check-leader-us N] [--log-level debug|info|warn|error]
              [--tls-ca CA.pem --tls-cert CERT.pem --tls-key KEY.pem]
  --members      every member's Raft address (with --join: the existing members)
  --local        this node's Raft address (peers connect here; peer sockets bind to its IP)
  --path         data directory (Raft log, state machine, LOG)
  --port         Redis-protocol port (default 6379), on --bind (default: --local's IP)
  --http-port    HTTP API port (default: none)
  --join         start empty and wait to be added (FLOYD.ADDSERVER on a member)
  --lease-reads  a leader whose lease holds serves GET without a confirmation round
  --tls-ca, --tls-cert, --tls-key  mutual TLS between members (PEM files; all three or none):
                 peers must hold a certificate from the CA naming their IP. Without it,
                 member traffic is unauthenticated: keep it on a trusted network.
                 (The Redis and HTTP ports stay plain.)
  --fault-injection  accept FLOYD.DEBUG.CUT (cut this node's link to a peer for a while)
                 and FLOYD.DEBUG.SLOWDISK (delay every synced log write); for fault tests
                 only, never on a production port";

struct Args {
    opts: Options,
    bind: String,
    port: u16,
    http_port: Option<u16>,
    max_clients: usize,
    fault_injection: bool,
}

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let mut it = argv.iter();
    let (mut members, mut local, mut path) = (None, None, None);
    let (mut port, mut http_port, mut bind, mut join) = (6379u16, None, None, false);
    let (mut lease_reads, mut fault_injection) = (false, false);
    let (mut tls_ca, mut tls_cert, mut tls_key) = (None, None, None);
    let (mut heartbeat, mut check_leader, mut max_clients, mut level) =
        (None, None, 10_000usize, LogLevel::Info);
    fn num<T: std::str::FromStr>(name: &str, v: Option<&String>) -> Result<T, String> {
        let v = v.ok_or(format!("{name} needs a value"))?;
        v.parse().map_err(|_| format!("bad {name} {v:?}"))
    }
    while let Some(a) = it.next() {
        match a.as_str() {
            "--members" => members = it.next().cloned(),
            "--local" => local = it.next().cloned(),
            "--path" => path = it.next().cloned(),
            "--bind" => bind = it.next().cloned(),
            "--port" => port = num(a, it.next())?,
            "--http-port" => http_port = Some(num(a, it.next())?),
            "--heartbeat-us" => heartbeat = Some(num(a, it.next())?),
            "--check-leader-us" => check_leader = Some(num(a, it.next())?),
            "--max-clients" => max_clients = num(a, it.next())?,
            "--log-level" => {
                level = match it.next().map(|s| s.to_ascii_lowercase()).as_deref() {
                    Some("debug") => LogLevel::Debug,
                    Some("info") => LogLevel::Info,
                    Some("warn") => LogLevel::Warn,
                    Some("error") => LogLevel::Error,
                    other => return Err(format!("bad --log-level {other:?}")),
                }
            }
            "--tls-ca" => tls_ca = it.next().cloned(),
            "--tls-cert" => tls_cert = it.next().cloned(),
            "--tls-key" => tls_key = it.next().cloned(),
            "--join" => join = true,
            "--lease-reads" => lease_reads = true,
            "--fault-injection" => fault_injection = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let members = members.ok_or("missing --members")?;
    let local = local.ok_or("missing --local")?;
    let path = path.ok_or("missing --path")?;
    let local: SocketAddr = local
        .parse()
        .map_err(|_| format!("--local {local:?} is not IP:PORT"))?;
    let mut opts = Options::new(&members, &local.ip().to_string(), local.port(), path);
    opts.join = join;
    opts.lease_reads = lease_reads;
    opts.log_level = level;
    opts.tls = floyd::TlsFiles::from_parts(tls_ca, tls_cert, tls_key)
        .map_err(|_| "--tls-ca, --tls-cert and --tls-key go together")?;
    if let Some(h) = heartbeat {
        opts.heartbeat_us = h;
    }
    if let Some(c) = check_leader {
        opts.check_leader_us = c;
    }
    let me = local.to_string();
    opts.log_callback = Some(LogCallback(Arc::new(move |lvl, line: &str| {
        eprintln!("raftis {me} {lvl:?} {line}");
    })));
    let bind = bind.unwrap_or_else(|| local.ip().to_string());
    Ok(Args {
        opts,
        bind,
        port,
        http_port,
        max_clients,
        fault_injection,
    })
}

/// Blocks SIGINT and SIGTERM in this thread and every thread started after
/// it, so that only [`wait_for_signal`] receives them.
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc calls on a local, initialised sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_for_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: `set` is initialised and blocked in every thread.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}

/// Raises the soft limit on open files to the hard one, as Redis does: a
/// client is a descriptor, and 1024 is a common soft default.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn listen_addr(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = parse_args(&argv).unwrap_or_else(|e| {
        eprintln!("raftis: {e}\n{USAGE}");
        std::process::exit(2);
    });
    let signals = block_signals();
    raise_fd_limit();
    let resp_addr = listen_addr(&args.bind, args.port);
    let listener = TcpListener::bind(&resp_addr).unwrap_or_else(|e| {
        eprintln!("raftis: cannot listen on {resp_addr}: {e}");
        std::process::exit(1);
    });
    let node = args.opts.local_id();
    let floyd = Arc::new(Floyd::open(args.opts).unwrap_or_else(|e| {
        eprintln!("raftis: cannot open the floyd node: {e}");
        std::process::exit(1);
    }));
    let http = args.http_port.map(|p| {
        let addr = listen_addr(&args.bind, p);
        http::start(&addr, floyd.clone()).unwrap_or_else(|e| {
            eprintln!("raftis: {e}");
            floyd.close();
            std::process::exit(1);
        })
    });
    let ctx = Arc::new(commands::Context {
        floyd: floyd.clone(),
        port: args.port,
        http_port: args.http_port,
        started: Instant::now(),
        clients: AtomicUsize::new(0),
        fault_injection: args.fault_injection,
    });
    let max_clients = args.max_clients;
    std::thread::Builder::new()
        .name("raftis-accept".into())
        .spawn(move || server::serve(listener, ctx, max_clients))
        .expect("start the accept thread");
    eprintln!(
        "raftis: node {node} serving RESP on {resp_addr}{}",
        args.http_port.map_or(String::new(), |p| format!(
            ", HTTP on {}",
            listen_addr(&args.bind, p)
        ))
    );
    let sig = wait_for_signal(&signals);
    eprintln!("raftis: signal {sig}: closing node {node}");
    if let Some(h) = &http {
        h.unblock();
    }
    floyd.close();
    eprintln!("raftis: node {node} closed");
    std::process::exit(0);
}
