//! raftis: a Redis-protocol (RESP2) and HTTP server over floyd, one process per node.
//!
//! ```text
//! raftis --members 127.0.0.1:8901,127.0.0.1:8902,127.0.0.1:8903 --local 127.0.0.1:8901 \
//!        --path ./data1 --port 6379 [--http-port 8081] [--join]
//! ```
//! Any node takes any command (a follower forwards to the leader); GET is
//! linearizable. SIGTERM or SIGINT closes the node cleanly. floyd logs to
//! `<path>/LOG` and, through a log callback, to stderr. See README.md, "raftis".

#[path = "raftis/cluster.rs"]
mod cluster;
#[path = "raftis/commands.rs"]
mod commands;
#[path = "raftis/data.rs"]
mod data;
#[path = "raftis/everywhere.rs"]
mod everywhere;
#[path = "raftis/http.rs"]
mod http;
#[path = "raftis/introspect.rs"]
mod introspect;
#[path = "raftis/limits.rs"]
mod limits;
#[path = "raftis/notify.rs"]
mod notify;
#[path = "raftis/pipeline.rs"]
mod pipeline;
#[path = "raftis/pubsub.rs"]
mod pubsub;
#[path = "raftis/resp.rs"]
mod resp;
#[path = "raftis/server.rs"]
mod server;
#[path = "raftis/shards.rs"]
mod shards;
#[path = "raftis/slots.rs"]
mod slots;
#[path = "raftis/watch.rs"]
mod watch;

use floyd::{Floyd, Host, LogCallback, LogLevel, Options};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::Instant;

const USAGE: &str = "usage: raftis --members IP:PORT,IP:PORT,... --local IP:PORT --path DIR
              [--port 6379] [--http-port PORT] [--bind IP] [--join] [--lease-reads]
              [--groups N] [--moved] [--announce IP:PORT] [--balance-window-secs 60]
              [--max-clients 10000] [--heartbeat-us N] [--check-leader-us N] [--log-level debug|info|warn|error]
              [--requirepass PASSWORD | --requirepass-file PATH] [--no-admin]
              [--max-request-buffer-bytes 1073741824] [--client-output-buffer-limit 268435456]
              [--tls-ca CA.pem --tls-cert CERT.pem --tls-key KEY.pem]
  --members      every member's Raft address (with --join: the existing members)
  --local        this node's Raft address (peers connect here; peer sockets bind to its IP)
  --path         data directory (Raft log, state machine, LOG)
  --port         Redis-protocol port (default 6379), on --bind (default: --local's IP)
  --http-port    HTTP API port (default: none)
  --join         start empty and wait to be added (FLOYD.ADDSERVER on a member)
  --groups       floyd groups the key space is split over (default 1), by Redis Cluster's
                 hash slots: CLUSTER SLOTS names the node leading each range. Every node
                 of a cluster is given the same number, fixed once the data exists
  --moved        answer -MOVED for a key whose group another node leads (Redis Cluster
                 clients: redis-cli -c, redis-benchmark --cluster); without it such
                 commands are forwarded, and a connection opts in with READWRITE
                 (or READONLY: writes redirected, reads served here)
  --balance-window-secs
                 with --groups > 1, for how long the leaders of the groups a node
                 should lead are handed to it once it is caught up after it (re)connects
                 (default 60); otherwise leaders stay where they are, so a FLOYD.TRANSFER
                 holds until a node comes back
  --announce     this node's Redis address as other nodes name it in CLUSTER SLOTS and
                 MOVED (default: --bind's IP, or --local's if --bind is a wildcard, and --port)
  --lease-reads  a leader whose lease holds serves GET without a confirmation round
  --requirepass  clients must AUTH with this password first (Redis: AUTH [default] PASSWORD),
                 HTTP requests must carry it (Authorization: Bearer PASSWORD, or Basic)
  --requirepass-file  the same, read from a file (its first line), so `ps` does not show it;
                 or set RAFTIS_REQUIREPASS in the environment
  --no-admin     refuse FLOYD.ADDSERVER, FLOYD.REMOVESERVER, FLOYD.TRANSFER, FLOYD.DEBUG.*
                 and POST/DELETE /-/servers on this node
  --max-request-buffer-bytes  bound on the bytes all connections buffer for large requests
                 together (default 1 GiB): past it a connection waits for room, unread
  --client-output-buffer-limit  a client whose pending replies pass this many bytes is
                 disconnected (default 256 MiB; 0: no limit)
  --tls-ca, --tls-cert, --tls-key  mutual TLS between members (PEM files; all three or none):
                 peers must hold a certificate from the CA naming their IP and, as a URI
                 subjectAltName, their address (floyd://ip:port). Without it,
                 member traffic is unauthenticated: keep it on a trusted network.
                 (The Redis and HTTP ports stay plain.)
  --fault-injection  accept FLOYD.DEBUG.CUT (cut this node's link to a peer for a while)
                 and FLOYD.DEBUG.SLOWDISK (delay every synced log write); for fault tests
                 only, never on a production port";

struct Args {
    opts: Options,
    groups: usize,
    moved: bool,
    balance_window: std::time::Duration,
    announce: String,
    bind: String,
    port: u16,
    http_port: Option<u16>,
    max_clients: usize,
    fault_injection: bool,
    password: Option<Vec<u8>>,
    admin: bool,
    max_request_buffer: usize,
    output_limit: usize,
}

/// Most groups `--groups` takes (Redis Cluster's slots split at least one per group).
const MAX_GROUPS: usize = 16_384;

/// The file in the data directory that holds `--groups`: the slots' split
/// cannot change once keys are stored by it.
const GROUPS_FILE: &str = "raftis-groups";

/// Checks `--groups` against the data directory's (a directory written
/// before this file existed, or by one group, holds 1) and records it.
fn check_groups(path: &std::path::Path, groups: usize) -> Result<(), String> {
    let file = path.join(GROUPS_FILE);
    let stored = match std::fs::read_to_string(&file) {
        Ok(t) => Some(
            t.trim()
                .parse::<usize>()
                .map_err(|_| format!("{} is corrupt", file.display()))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let has_data = std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_some());
            has_data.then_some(1)
        }
        Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
    };
    match stored {
        Some(n) if n != groups => Err(format!(
            "the data in {} is split over {n} group(s): start with --groups {n}",
            path.display()
        )),
        Some(_) => Ok(()),
        None => {
            std::fs::create_dir_all(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            std::fs::write(&file, format!("{groups}\n"))
                .map_err(|e| format!("cannot write {}: {e}", file.display()))
        }
    }
}

/// Opens the node's groups: one, as a node on its own (what earlier
/// releases ran), or `groups` on one floyd host.
fn open_shards(args: &Args) -> Result<shards::Shards, String> {
    check_groups(&args.opts.path, args.groups)?;
    if args.groups == 1 {
        let f = Floyd::open(args.opts.clone()).map_err(|e| e.to_string())?;
        return Ok(shards::Shards::single(f, args.announce.clone()));
    }
    let (host_opts, group_opts) = args.opts.clone().split();
    let host = Host::open(host_opts).map_err(|e| e.to_string())?;
    shards::Shards::on_host(host, args.groups, group_opts, args.announce.clone()).map_err(|e| e.to_string())
}

/// Environment variable with the password, if no flag gives it.
const PASSWORD_ENV: &str = "RAFTIS_REQUIREPASS";
/// Default of `--client-output-buffer-limit`.
const DEFAULT_OUTPUT_LIMIT: usize = 256 << 20;

/// The password from `--requirepass`, `--requirepass-file` or the environment.
fn password(flag: Option<String>, file: Option<String>) -> Result<Option<Vec<u8>>, String> {
    let pass = match (flag, file) {
        (Some(_), Some(_)) => return Err("--requirepass and --requirepass-file exclude each other".into()),
        (Some(p), None) => p.into_bytes(),
        (None, Some(path)) => {
            let text = std::fs::read(&path).map_err(|e| format!("--requirepass-file {path:?}: {e}"))?;
            let line = text.split(|&c| c == b'\n').next().unwrap_or_default();
            line.strip_suffix(b"\r").unwrap_or(line).to_vec()
        }
        (None, None) => match std::env::var_os(PASSWORD_ENV) {
            Some(p) => p.into_encoded_bytes(),
            None => return Ok(None),
        },
    };
    if pass.is_empty() {
        return Err("the password is empty (drop --requirepass for none)".into());
    }
    Ok(Some(pass))
}

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let mut it = argv.iter();
    let (mut members, mut local, mut path) = (None, None, None);
    let (mut port, mut http_port, mut bind, mut join) = (6379u16, None, None, false);
    let (mut lease_reads, mut fault_injection, mut admin) = (false, false, true);
    let (mut groups, mut moved, mut announce) = (1usize, false, None);
    let mut balance_window_secs = 60u64;
    let (mut requirepass, mut requirepass_file) = (None, None);
    let mut max_request_buffer = limits::DEFAULT_MAX_REQUEST_BUFFER;
    let mut output_limit = DEFAULT_OUTPUT_LIMIT;
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
            "--max-request-buffer-bytes" => max_request_buffer = num(a, it.next())?,
            "--client-output-buffer-limit" => output_limit = num(a, it.next())?,
            "--requirepass" => requirepass = Some(it.next().cloned().ok_or("--requirepass needs a value")?),
            "--requirepass-file" => {
                requirepass_file = Some(it.next().cloned().ok_or("--requirepass-file needs a value")?)
            }
            "--no-admin" => admin = false,
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
            "--groups" => groups = num(a, it.next())?,
            "--moved" => moved = true,
            "--balance-window-secs" => balance_window_secs = num(a, it.next())?,
            "--announce" => announce = it.next().cloned(),
            "--lease-reads" => lease_reads = true,
            "--fault-injection" => fault_injection = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if !(1..=MAX_GROUPS).contains(&groups) {
        return Err(format!("--groups must be 1 to {MAX_GROUPS}"));
    }
    if max_request_buffer == 0 {
        return Err("--max-request-buffer-bytes must be more than 0".into());
    }
    let password = password(requirepass, requirepass_file)?;
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
    let announce = match announce {
        Some(a) => a
            .parse::<SocketAddr>()
            .map_err(|_| format!("--announce {a:?} is not IP:PORT"))?
            .to_string(),
        None => {
            let ip: std::net::IpAddr = bind
                .parse()
                .map_err(|_| format!("--bind {bind:?} is not an IP"))?;
            let ip = if ip.is_unspecified() { local.ip() } else { ip };
            SocketAddr::new(ip, port).to_string()
        }
    };
    Ok(Args {
        opts,
        groups,
        moved,
        balance_window: std::time::Duration::from_secs(balance_window_secs),
        announce,
        bind,
        port,
        http_port,
        max_clients,
        fault_injection,
        password,
        admin,
        max_request_buffer,
        output_limit,
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
    let shards = Arc::new(open_shards(&args).unwrap_or_else(|e| {
        eprintln!("raftis: cannot open the floyd node: {e}");
        std::process::exit(1);
    }));
    let stop_background = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let background = cluster::start_background(shards.clone(), args.balance_window, stop_background.clone());
    let http = args.http_port.map(|p| {
        let addr = listen_addr(&args.bind, p);
        let access = http::Access {
            password: args.password.clone(),
            admin: args.admin,
        };
        http::start(&addr, shards.clone(), access).unwrap_or_else(|e| {
            eprintln!("raftis: {e}");
            shards.close();
            std::process::exit(1);
        })
    });
    let ctx = Arc::new(commands::Context {
        shards: shards.clone(),
        hub: Arc::default(),
        notifier: Arc::default(),
        redirect: if args.moved {
            cluster::Redirect::Moved
        } else {
            cluster::Redirect::Forward
        },
        port: args.port,
        http_port: args.http_port,
        started: Instant::now(),
        clients: AtomicUsize::new(0),
        fault_injection: args.fault_injection,
        password: args.password,
        admin: args.admin,
        budget: limits::Budget::new(args.max_request_buffer),
        output_limit: args.output_limit,
        output_disconnections: AtomicU64::new(0),
        cursors: data::Cursors::default(),
        registry: introspect::Clients::default(),
        max_clients: args.max_clients,
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
    stop_background.store(true, std::sync::atomic::Ordering::Relaxed);
    shards.close();
    let _ = background.join();
    eprintln!("raftis: node {node} closed");
    std::process::exit(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<Args, String> {
        let mut argv: Vec<String> = [
            "--members",
            "127.0.0.1:1",
            "--local",
            "127.0.0.1:1",
            "--path",
            "d",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        argv.extend(extra.iter().map(|s| s.to_string()));
        parse_args(&argv)
    }

    #[test]
    fn the_password_comes_from_the_flag_or_the_first_line_of_a_file() {
        let a = parse(&[]).unwrap();
        assert!(a.admin && a.password.is_none());
        assert_eq!(a.max_request_buffer, limits::DEFAULT_MAX_REQUEST_BUFFER);
        assert_eq!(a.output_limit, DEFAULT_OUTPUT_LIMIT);
        let a = parse(&["--requirepass", "pw", "--no-admin"]).unwrap();
        assert_eq!(a.password.as_deref(), Some(&b"pw"[..]));
        assert!(!a.admin);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from file\r\nnot this\n").unwrap();
        let path = file.to_str().unwrap();
        let a = parse(&["--requirepass-file", path]).unwrap();
        assert_eq!(a.password.as_deref(), Some(&b"from file"[..]));
        assert!(parse(&["--requirepass-file", path, "--requirepass", "x"]).is_err());
        std::fs::write(&file, "\n").unwrap();
        assert!(parse(&["--requirepass-file", path]).is_err(), "an empty password");
        assert!(parse(&["--requirepass", ""]).is_err());
        assert!(parse(&["--requirepass-file", "/no/such/file"]).is_err());
        assert!(parse(&["--max-request-buffer-bytes", "0"]).is_err());
        let a = parse(&[
            "--max-request-buffer-bytes",
            "1000",
            "--client-output-buffer-limit",
            "0",
        ])
        .unwrap();
        assert_eq!((a.max_request_buffer, a.output_limit), (1000, 0));
    }
}
