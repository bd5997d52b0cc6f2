//! The Redis commands raftis understands, each mapped onto one floyd call
//! (or a few), and floyd's errors mapped onto RESP errors; AUTH and the
//! switch that turns the admin commands off.

use crate::limits::Budget;
use crate::resp::Reply;
use floyd::{Error, Floyd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// What every connection shares.
pub struct Context {
    /// The node's groups (`--groups`), and the other nodes' Redis addresses.
    pub shards: Arc<crate::shards::Shards>,
    /// This node's Pub/Sub channels and subscribers.
    pub hub: Arc<crate::pubsub::Hub>,
    /// `notify-keyspace-events` and the watches that feed it.
    pub notifier: Arc<crate::notify::Notifier>,
    /// How connections are answered for a key another node leads, until
    /// they say (`--moved`: MOVED; else forwarded).
    pub redirect: crate::cluster::Redirect,
    pub port: u16,
    pub http_port: Option<u16>,
    pub started: Instant,
    pub clients: AtomicUsize,
    /// `--fault-injection`: FLOYD.DEBUG.CUT is accepted.
    pub fault_injection: bool,
    /// `--requirepass`: every command but AUTH, QUIT and HELLO needs it first.
    pub password: Option<Vec<u8>>,
    /// Membership, transfer and debug commands are served (no `--no-admin`).
    pub admin: bool,
    /// `--max-request-buffer-bytes`: what large requests reserve from.
    pub budget: Arc<Budget>,
    /// `--client-output-buffer-limit`: most reply bytes a connection may
    /// have pending (0: no limit).
    pub output_limit: usize,
    /// Connections closed for going over `output_limit`.
    pub output_disconnections: AtomicU64,
    /// SCAN's numbered cursors.
    pub cursors: crate::data::Cursors,
    /// The connections, for CLIENT LIST (and INFO's counters).
    pub registry: crate::introspect::Clients,
    /// `--max-clients`.
    pub max_clients: usize,
}

/// The Redis version raftis answers as (HELLO, INFO): the commands it
/// runs are Redis 7.0's.
pub const REDIS_VERSION: &str = "7.0.0";

/// One connection's state.
pub struct Session {
    /// CLIENT ID.
    pub id: u64,
    pub authenticated: bool,
    /// Between MULTI and EXEC: the commands queued.
    pub queued: Option<Vec<Vec<Vec<u8>>>>,
    /// A command was refused while queuing: EXEC aborts.
    pub queue_failed: bool,
    /// WATCHed keys and their mod_revision then: EXEC runs only if none changed.
    pub watched: Vec<(Vec<u8>, u64)>,
    /// The client's socket, to tell whether it went away while a blocking
    /// pop waits.
    pub socket: Option<std::os::fd::RawFd>,
    /// Forwarded or `-MOVED` for a key another node leads (READWRITE,
    /// READONLY, CLUSTER REDIRECTS).
    pub redirect: crate::cluster::Redirect,
}

impl Session {
    /// Whether the client closed its end (a read would see the end of it).
    pub fn client_gone(&self) -> bool {
        let Some(fd) = self.socket else { return false };
        let mut byte = 0u8;
        // SAFETY: `fd` is the connection's socket, open while the session
        // lives; a one-byte peek that does not wait reads nothing out of it.
        let n = unsafe {
            libc::recv(
                fd,
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n == 0
    }
}

impl Session {
    pub fn new(ctx: &Context) -> Session {
        Session {
            id: 0,
            authenticated: ctx.password.is_none(),
            queued: None,
            queue_failed: false,
            watched: Vec::new(),
            socket: None,
            redirect: ctx.redirect,
        }
    }
}

/// What to do after a command.
pub enum Outcome {
    Reply(Reply),
    /// Send the reply, then close the connection.
    Close(Reply),
    /// The reply would take more than `--client-output-buffer-limit` bytes
    /// (at least this many): close the connection without it.
    Overflow(usize),
    /// `FLOYD.WATCH`: the connection streams the watch from now on.
    Watch(crate::watch::WatchStream),
    /// SUBSCRIBE or PSUBSCRIBE: the connection enters subscribe mode.
    Subscribe(Vec<Vec<u8>>),
}

/// The admin commands `--no-admin` turns off (and `FLOYD.DEBUG.*`).
const ADMIN: &[&str] = &["FLOYD.ADDSERVER", "FLOYD.REMOVESERVER", "FLOYD.TRANSFER"];

fn is_admin(name: &str) -> bool {
    ADMIN.contains(&name) || name.starts_with("FLOYD.DEBUG.")
}

/// Compares `given` with `secret` in time that depends only on `given`'s length.
pub fn same_secret(given: &[u8], secret: &[u8]) -> bool {
    if secret.is_empty() {
        return given.is_empty();
    }
    let mut diff = u8::from(given.len() != secret.len());
    for (i, b) in given.iter().enumerate() {
        diff |= b ^ secret[i % secret.len()];
    }
    std::hint::black_box(diff) == 0
}

/// `AUTH password` or `AUTH username password`, as Redis 6 and later with
/// only the `default` user: `-WRONGPASS` for a wrong pair (the session
/// keeps its state, as in Redis).
pub fn auth(ctx: &Context, session: &mut Session, a: &[Vec<u8>]) -> Reply {
    let (user, pass) = match a {
        [pass] => (None, pass),
        [user, pass] => (Some(user.as_slice()), pass),
        [] => return wrong_args("AUTH"),
        _ => return Reply::err("ERR syntax error"),
    };
    let Some(secret) = &ctx.password else {
        return match user {
            None => Reply::err(
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            ),
            // The default user has no password: any one will do, as in Redis.
            Some(b"default") => Reply::ok(),
            Some(_) => wrongpass(),
        };
    };
    let good_user = user.is_none_or(|u| u == b"default");
    if same_secret(pass, secret) & good_user {
        session.authenticated = true;
        Reply::ok()
    } else {
        wrongpass()
    }
}

fn wrongpass() -> Reply {
    Reply::err("WRONGPASS invalid username-password pair or user is disabled.")
}

/// The commands `execute` handles itself (`COMMAND COUNT` adds floyd's
/// data commands, `data.rs`).
const COMMANDS: &[&str] = &[
    "PING",
    "ECHO",
    "MULTI",
    "EXEC",
    "DISCARD",
    "WATCH",
    "UNWATCH",
    "INFO",
    "CONFIG",
    "ROLE",
    "COMMAND",
    "QUIT",
    "SELECT",
    "CLIENT",
    "HELLO",
    "AUTH",
    "FLOYD.TRYLOCK",
    "FLOYD.UNLOCK",
    "FLOYD.LEADER",
    "FLOYD.SERVERS",
    "FLOYD.ADDSERVER",
    "FLOYD.REMOVESERVER",
    "FLOYD.TRANSFER",
    "FLOYD.STATUS",
    "FLOYD.DIRTYGET",
    "FLOYD.CAS",
    "FLOYD.WATCH",
    "CLUSTER",
    "READWRITE",
    "READONLY",
    "SUBSCRIBE",
    "PSUBSCRIBE",
    "UNSUBSCRIBE",
    "PUNSUBSCRIBE",
    "PUBLISH",
    "PUBSUB",
];

/// A floyd error as a RESP error: its first word says what kind it is.
pub fn error_reply(e: &Error) -> Reply {
    Reply::Error(match e {
        Error::NoLeader(m) => format!("NOLEADER {m}"),
        Error::Timeout(m) => format!("TIMEOUT outcome unknown: {m}"),
        Error::Locked(m) => format!("LOCKED {m}"),
        Error::NotHolder(m) => format!("NOTHOLDER {m}"),
        Error::Busy(m) => format!("BUSY {m}"),
        // Redis's own text for a command on a hash or list.
        Error::InvalidArgument(m) if m.starts_with("WRONGTYPE") => m.clone(),
        Error::InvalidArgument(m) => format!("ERR invalid argument: {m}"),
        Error::Stopped(m) => format!("ERR node stopped, outcome unknown: {m}"),
        Error::NotFound => "ERR not found".to_string(),
        Error::Conflict(m) => format!("CONFLICT {m}"),
        other => format!("ERR {other}"),
    })
}

/// `FLOYD.CAS key old new`: sets `key` to `new` only if it holds `old` (one
/// transaction); 1 if it did, 0 if not (the key missing or another value).
fn cas(f: &floyd::Floyd, a: &[Vec<u8>]) -> Reply {
    let mut t = floyd::Txn::new();
    t.if_value(&a[0], floyd::Cmp::Equal, &a[1])
        .put(floyd::Branch::Then, &a[0], &a[2], 0);
    result(f.txn(&t).map(|r| Reply::Int(i64::from(r.succeeded))))
}

fn result(r: Result<Reply, Error>) -> Reply {
    r.unwrap_or_else(|e| error_reply(&e))
}

fn wrong_args(name: &str) -> Reply {
    Reply::err(format!(
        "ERR wrong number of arguments for '{}' command",
        name.to_ascii_lowercase()
    ))
}

fn text(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).into_owned()
}

/// Runs one request.
pub fn execute(ctx: &Context, session: &mut Session, args: &[Vec<u8>]) -> Outcome {
    let name = text(&args[0]).to_ascii_uppercase();
    let a = &args[1..];
    let f = &**ctx.shards.first();
    ctx.registry.commands.fetch_add(1, Ordering::Relaxed);
    if !session.authenticated && !matches!(name.as_str(), "AUTH" | "QUIT" | "HELLO") {
        return Outcome::Reply(Reply::err("NOAUTH Authentication required."));
    }
    if !ctx.admin && is_admin(&name) {
        return Outcome::Reply(Reply::err("ERR admin commands are disabled on this node"));
    }
    if name != "QUIT" {
        if let Some(r) = crate::data::transaction(ctx, session, &name, args) {
            return Outcome::Reply(r);
        }
    }
    if crate::data::is_data_command(&name) {
        let reply = match (name.as_str(), redirected(ctx, session, &name, args)) {
            (_, Some(moved)) => moved,
            ("BLPOP" | "BRPOP" | "BLMOVE" | "BRPOPLPUSH", None) => {
                crate::data::blocking(ctx, session, &name, args)
            }
            _ => crate::data::run(ctx, args),
        };
        let size = reply.size();
        if ctx.output_limit > 0 && size > ctx.output_limit {
            return Outcome::Overflow(size);
        }
        return Outcome::Reply(reply);
    }
    let reply = match (name.as_str(), a.len()) {
        ("PING", 0) => Reply::Simple("PONG".into()),
        ("PING", 1) => Reply::Bulk(a[0].clone()),
        ("ECHO", 1) => Reply::Bulk(a[0].clone()),
        ("QUIT", _) => return Outcome::Close(Reply::ok()),
        ("SELECT", 1) if a[0] == b"0" => Reply::ok(),
        ("SELECT", 1) => Reply::err("ERR DB index is out of range (raftis has only database 0)"),
        ("INFO", n) if n <= 1 => Reply::Bulk(info(ctx, a.first().map(|s| text(s))).into_bytes()),
        ("ROLE", 0) => role(f),
        ("COMMAND", _) => command(a),
        ("CLIENT", n) if n >= 1 => crate::introspect::client(ctx, session, a),
        ("HELLO", _) => crate::introspect::hello(ctx, session, a),
        ("CONFIG", n) if n >= 1 => crate::introspect::config(ctx, a),
        ("CLUSTER", n) if n >= 1 => crate::cluster::cluster(ctx, session, a),
        ("SUBSCRIBE" | "PSUBSCRIBE", n) if n >= 1 => return Outcome::Subscribe(args.to_vec()),
        ("UNSUBSCRIBE" | "PUNSUBSCRIBE", _) => Reply::Array(vec![
            Reply::Bulk(name.to_ascii_lowercase().into_bytes()),
            Reply::Nil,
            Reply::Int(0),
        ]),
        ("PUBLISH", 2) => Reply::Int(ctx.hub.publish(&a[0], &a[1]) as i64),
        ("PUBSUB", n) if n >= 1 => ctx.hub.pubsub(a),
        ("READWRITE", 0) => {
            session.redirect = crate::cluster::Redirect::Moved;
            Reply::ok()
        }
        ("READONLY", 0) => {
            session.redirect = crate::cluster::Redirect::MovedWrites;
            Reply::ok()
        }
        ("AUTH", _) => auth(ctx, session, a),
        ("FLOYD.TRYLOCK", 3) => match text(&a[2]).parse::<u64>() {
            Ok(ttl) => result(
                ctx.shards
                    .for_key(&a[0])
                    .try_lock(&a[0], &a[1], ttl)
                    .map(|t| Reply::Int(t as i64)),
            ),
            Err(_) => Reply::err("ERR ttl_ms is not a number of milliseconds"),
        },
        ("FLOYD.UNLOCK", 2) => result(
            ctx.shards
                .for_key(&a[0])
                .unlock(&a[0], &a[1])
                .map(|_| Reply::ok()),
        ),
        ("FLOYD.LEADER", 0) => f.get_leader().map_or(Reply::Nil, |l| Reply::Bulk(l.into_bytes())),
        ("FLOYD.SERVERS", 0) => Reply::Array(
            f.get_all_servers()
                .into_iter()
                .map(|s| Reply::Bulk(s.into_bytes()))
                .collect(),
        ),
        ("FLOYD.ADDSERVER", 1) => every_group(ctx, |f| f.add_server(&text(&a[0]))),
        ("FLOYD.REMOVESERVER", 1) => every_group(ctx, |f| f.remove_server(&text(&a[0]))),
        ("FLOYD.TRANSFER", 1) => every_group(ctx, |f| f.transfer_leader(&text(&a[0]))),
        ("FLOYD.STATUS", 0) => Reply::Bulk(f.server_status().to_string().into_bytes()),
        ("FLOYD.STATUS", 1) if text(&a[0]).eq_ignore_ascii_case("host") => {
            Reply::Bulk(ctx.shards.status_json().into_bytes())
        }
        ("FLOYD.STATUS", 1) if text(&a[0]).eq_ignore_ascii_case("json") => {
            Reply::Bulk(f.server_status().to_json().into_bytes())
        }
        ("FLOYD.DIRTYGET", 1) => get_reply(ctx.shards.for_key(&a[0]).dirty_read(&a[0])),
        ("FLOYD.CAS", 3) => cas(ctx.shards.for_key(&a[0]), a),
        ("FLOYD.WATCH", 3) if ctx.shards.count() > 1 && a[1] != [&a[0][..], &[0u8]].concat() => Reply::err(
            "ERR with --groups above 1, FLOYD.WATCH takes one key (end = key + \\0): a range spans groups",
        ),
        ("FLOYD.WATCH", 3) => match text(&a[2]).parse::<u64>() {
            Ok(rev) => match crate::watch::start(ctx.shards.for_key(&a[0]), &a[0], &a[1], rev) {
                Ok(w) => return Outcome::Watch(w),
                Err(e) => error_reply(&e),
            },
            Err(_) => Reply::err("ERR start_revision is not a number"),
        },
        ("FLOYD.DEBUG.CUT", 2) if ctx.fault_injection => cut(f, a),
        ("FLOYD.DEBUG.SLOWDISK", 1) if ctx.fault_injection => match text(&a[0]).parse::<u64>() {
            Ok(ms) => {
                f.faults().set_fsync_delay(std::time::Duration::from_millis(ms));
                Reply::ok()
            }
            Err(_) => Reply::err("ERR ms is not a number of milliseconds"),
        },
        (n, _) if COMMANDS.contains(&n) => wrong_args(n),
        _ => {
            let shown: Vec<String> = a.iter().take(3).map(|s| format!("'{}'", text(s))).collect();
            Reply::err(format!(
                "ERR unknown command '{}', with args beginning with: {}",
                text(&args[0]),
                shown.join(" ")
            ))
        }
    };
    Outcome::Reply(reply)
}

/// Runs `call` on every group in order (membership and transfer are per
/// group): OK once every group did, else the first error.
fn every_group(ctx: &Context, call: impl Fn(&Floyd) -> Result<(), Error>) -> Reply {
    for f in ctx.shards.all() {
        if let Err(e) = call(f) {
            return error_reply(&e);
        }
    }
    Reply::ok()
}

/// `-MOVED` (or `-CROSSSLOT`) for a data command if this connection is
/// redirected and another node leads the group of its keys.
fn redirected(ctx: &Context, session: &Session, name: &str, args: &[Vec<u8>]) -> Option<Reply> {
    if session.redirect == crate::cluster::Redirect::Forward {
        return None;
    }
    let at = crate::slots::key_positions(name, args)?;
    let first = *at.first()?;
    match ctx.shards.route(name, args) {
        crate::shards::Route::Group(g) => {
            let reads = floyd::redis_command_reads(name.as_bytes()).unwrap_or(false);
            crate::cluster::moved(ctx, session.redirect, g, &args[first], reads)
        }
        crate::shards::Route::CrossSlot => Some(Reply::err(crate::shards::CROSSSLOT)),
        crate::shards::Route::All => None,
    }
}

/// `FLOYD.DEBUG.CUT peer ms` (with `--fault-injection`): this node drops
/// its link to `peer` and sends it nothing for `ms` (one direction of a
/// partition; the peer cuts its own side for the other).
fn cut(f: &Floyd, a: &[Vec<u8>]) -> Reply {
    let Ok(ms) = text(&a[1]).parse::<u64>() else {
        return Reply::err("ERR ms is not a number of milliseconds");
    };
    match f.cut_link_for(&text(&a[0]), std::time::Duration::from_millis(ms)) {
        true => Reply::ok(),
        false => Reply::err("ERR not a peer of this node"),
    }
}

/// A read's outcome as RESP: the value, nil for a missing key, or the error.
pub fn get_reply(r: Result<Vec<u8>, Error>) -> Reply {
    match r {
        Ok(v) => Reply::Bulk(v),
        Err(Error::NotFound) => Reply::Nil,
        Err(e) => error_reply(&e),
    }
}

/// `SET key value`: floyd's own replicated put (which clears a TTL, as
/// Redis's SET does).
pub fn set_plain(f: &Floyd, key: &[u8], value: &[u8]) -> Reply {
    result(f.write(key, value).map(|_| Reply::ok()))
}

/// DEL and MSET as raftis ran them before Redis commands were in floyd's
/// log, key by key and not atomic: what a cluster with members of an
/// earlier release (a rolling upgrade) still gets.
pub fn legacy(f: &Floyd, name: &str, a: &[Vec<u8>]) -> Reply {
    if name == "MSET" {
        for kv in a.chunks(2) {
            if let Err(e) = f.write(&kv[0], &kv[1]) {
                return error_reply(&e);
            }
        }
        return Reply::ok();
    }
    let mut deleted = 0;
    for k in a {
        match f.read(k) {
            Ok(_) => {}
            Err(Error::NotFound) => continue,
            Err(e) => return error_reply(&e),
        }
        if let Err(e) = f.delete(k) {
            return error_reply(&e);
        }
        deleted += 1;
    }
    Reply::Int(deleted)
}

/// `INFO [section]`: `# Server`, `# Clients` (with the request budget and
/// the output bound), `# Stats` and `# Replication` (this node's Raft view,
/// with Redis's `role:master`/`role:slave` for tools that read it).
fn info(ctx: &Context, section: Option<String>) -> String {
    let section = section.map(|s| s.to_ascii_lowercase());
    let want = |name: &str| {
        section
            .as_deref()
            .is_none_or(|s| s == name || s == "all" || s == "default" || s == "everything")
    };
    let s = ctx.shards.first().server_status();
    let mut out = String::new();
    if want("server") {
        out += &format!(
            "# Server\r\nraftis_version:{}\r\nredis_version:{REDIS_VERSION}\r\nredis_mode:{}\r\nos:{}\r\narch_bits:64\r\nprocess_id:{}\r\ntcp_port:{}\r\nhttp_port:{}\r\nuptime_in_seconds:{}\r\nfloyd_node:{}\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            if ctx.shards.count() > 1 { "cluster" } else { "standalone" },
            std::env::consts::OS,
            std::process::id(),
            ctx.port,
            ctx.http_port.map_or(String::new(), |p| p.to_string()),
            ctx.started.elapsed().as_secs(),
            s.node,
        );
    }
    if want("clients") {
        out += &format!(
            "# Clients\r\nconnected_clients:{}\r\nclients_waiting_for_request_buffer:{}\r\nrequest_buffer_bytes:{}\r\nmax_request_buffer_bytes:{}\r\nclient_output_buffer_limit:{}\r\n\r\n",
            ctx.clients.load(Ordering::Relaxed),
            ctx.budget.waiting(),
            ctx.budget.used(),
            ctx.budget.limit(),
            ctx.output_limit,
        );
    }
    if want("memory") {
        out += &crate::introspect::memory();
    }
    if want("persistence") {
        out += &crate::introspect::persistence(ctx);
    }
    if want("stats") {
        out += &crate::introspect::stats(ctx);
    }
    if want("replication") {
        let redis_role = if s.role == "leader" { "master" } else { "slave" };
        out += &format!(
            "# Replication\r\nrole:{redis_role}\r\nraft_role:{}\r\nleader:{}\r\nterm:{}\r\nvoted_for:{}\r\nlast_log_index:{}\r\nlast_log_term:{}\r\ncommit_index:{}\r\nlast_applied:{}\r\nvoters:{}\r\nlearners:{}\r\npending_change:{}\r\nlocks_held:{}\r\nclient_sessions:{}\r\nrevision:{}\r\n",
            s.role,
            s.leader.as_deref().unwrap_or(""),
            s.term,
            s.voted_for.as_deref().unwrap_or(""),
            s.last_log_index,
            s.last_log_term,
            s.commit_index,
            s.last_applied,
            s.voters.join(","),
            s.learners.join(","),
            s.pending_change.as_deref().unwrap_or(""),
            s.locks_held,
            s.client_sessions,
            // The group's revision as this node applied it (its watches
            // have seen everything up to it).
            ctx.shards.first().dirty_scan(b"", b"", 1).map_or(0, |l| l.revision),
        );
        let led = ctx.shards.all().iter().filter(|f| f.is_leader()).count();
        out += &format!("raftis_groups:{}\r\ngroups_led:{led}\r\n\r\n", ctx.shards.count());
    }
    if want("cluster") {
        let enabled = u8::from(ctx.shards.count() > 1);
        out += &format!("# Cluster\r\ncluster_enabled:{enabled}\r\n\r\n");
    }
    // (Counted by walking the keys: only when asked for by name.)
    let keyspace = section.as_deref().is_some_and(|s| s != "default") && want("keyspace");
    if keyspace {
        out += &crate::introspect::keyspace(ctx);
    }
    out
}

/// Redis's glob patterns for CONFIG GET, case-insensitive: `*` and `?`.
pub fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.split_first(), name.split_first()) {
        (None, None) => true,
        (Some((b'*', rest)), _) => {
            glob_match(rest, name) || (!name.is_empty() && glob_match(pattern, &name[1..]))
        }
        (Some((b'?', rest)), Some((_, n))) => glob_match(rest, n),
        (Some((p, rest)), Some((c, n))) if p.eq_ignore_ascii_case(c) => glob_match(rest, n),
        _ => false,
    }
}

/// `ROLE`, shaped like Redis's: `master <commit> [[ip, port, match]…]` on the
/// leader, `slave <leader ip> <leader port> <state> <applied>` elsewhere.
fn role(f: &Floyd) -> Reply {
    let s = f.server_status();
    let split = |addr: &str| -> (String, i64) {
        match addr.parse::<std::net::SocketAddr>() {
            Ok(a) => (a.ip().to_string(), i64::from(a.port())),
            Err(_) => (addr.to_string(), 0),
        }
    };
    if s.role == "leader" {
        let peers = s
            .peers
            .iter()
            .map(|p| {
                let (ip, port) = split(&p.id);
                Reply::Array(vec![
                    Reply::Bulk(ip.into_bytes()),
                    Reply::Bulk(port.to_string().into_bytes()),
                    Reply::Bulk(p.match_index.to_string().into_bytes()),
                ])
            })
            .collect();
        return Reply::Array(vec![
            Reply::Bulk(b"master".to_vec()),
            Reply::Int(s.commit_index as i64),
            Reply::Array(peers),
        ]);
    }
    let (ip, port, state) = match &s.leader {
        Some(l) => {
            let (ip, port) = split(l);
            (ip, port, "connected")
        }
        None => (String::new(), 0, "connect"),
    };
    Reply::Array(vec![
        Reply::Bulk(b"slave".to_vec()),
        Reply::Bulk(ip.into_bytes()),
        Reply::Int(port),
        Reply::Bulk(state.as_bytes().to_vec()),
        Reply::Int(s.last_applied as i64),
    ])
}

/// Just enough of `COMMAND` for redis-cli and client libraries to start.
fn command(a: &[Vec<u8>]) -> Reply {
    match a.first().map(|s| text(s).to_ascii_uppercase()).as_deref() {
        Some("COUNT") => Reply::Int((COMMANDS.len() + floyd::redis_commands().count()) as i64),
        Some("INFO") => Reply::Array(a[1..].iter().map(|_| Reply::Nil).collect()),
        _ => Reply::Array(Vec::new()),
    }
}
