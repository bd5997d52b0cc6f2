//! What clients send on connect and what tools read: CLIENT, HELLO,
//! CONFIG and INFO, shaped as Redis's so client libraries, redis-cli and
//! redis-benchmark find the fields they look for.

use crate::commands::{Context, Session};
use crate::resp::Reply;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The connections of this node, for CLIENT LIST and CLIENT INFO.
#[derive(Default)]
pub struct Clients {
    next_id: AtomicU64,
    by_id: Mutex<BTreeMap<u64, Client>>,
    /// Connections accepted and commands run since the start (INFO stats).
    pub connections: AtomicU64,
    pub commands: AtomicU64,
}

#[derive(Clone)]
struct Client {
    addr: String,
    laddr: String,
    name: String,
    lib_name: String,
    lib_ver: String,
    since: Instant,
}

impl Clients {
    /// A new connection's id.
    pub fn register(&self, addr: String, laddr: String) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.connections.fetch_add(1, Ordering::Relaxed);
        let c = Client {
            addr,
            laddr,
            name: String::new(),
            lib_name: String::new(),
            lib_ver: String::new(),
            since: Instant::now(),
        };
        self.by_id.lock().insert(id, c);
        id
    }

    pub fn unregister(&self, id: u64) {
        self.by_id.lock().remove(&id);
    }

    fn line(id: u64, c: &Client, session: Option<&Session>) -> String {
        let multi = session
            .and_then(|s| s.queued.as_ref())
            .map_or(-1, |q| q.len() as i64);
        format!(
            "id={id} addr={} laddr={} fd=0 name={} age={} idle=0 flags=N db=0 sub=0 psub=0 ssub=0 multi={multi} watch={} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd=client|info user=default redir=-1 resp=2 lib-name={} lib-ver={}\n",
            c.addr,
            c.laddr,
            c.name,
            c.since.elapsed().as_secs(),
            session.map_or(0, |s| s.watched.len()),
            c.lib_name,
            c.lib_ver,
        )
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `CLIENT ID|SETNAME|GETNAME|INFO|LIST|SETINFO|NO-EVICT|NO-TOUCH|REPLY`.
pub fn client(ctx: &Context, session: &Session, a: &[Vec<u8>]) -> Reply {
    let registry = &ctx.registry;
    let sub = text(&a[0]).to_ascii_uppercase();
    let mut by_id = registry.by_id.lock();
    let me = by_id.get_mut(&session.id);
    match (sub.as_str(), a.len(), me) {
        ("ID", 1, _) => Reply::Int(session.id as i64),
        ("GETNAME", 1, Some(c)) => match c.name.is_empty() {
            true => Reply::Nil,
            false => Reply::Bulk(c.name.clone().into_bytes()),
        },
        ("SETNAME", 2, Some(c)) => {
            if a[1].iter().any(|b| *b <= b' ' || *b > b'~') {
                return Reply::err("ERR Client names cannot contain spaces, newlines or special characters.");
            }
            c.name = text(&a[1]);
            Reply::ok()
        }
        ("SETINFO", 3, Some(c)) => {
            match text(&a[1]).to_ascii_uppercase().as_str() {
                "LIB-NAME" => c.lib_name = text(&a[2]),
                "LIB-VER" => c.lib_ver = text(&a[2]),
                other => return Reply::err(format!("ERR Unrecognized option '{other}'")),
            }
            Reply::ok()
        }
        ("INFO", 1, Some(c)) => Reply::Bulk(Clients::line(session.id, c, Some(session)).into_bytes()),
        ("LIST", 1, _) => {
            let all: String = by_id
                .iter()
                .map(|(id, c)| Clients::line(*id, c, (*id == session.id).then_some(session)))
                .collect();
            Reply::Bulk(all.into_bytes())
        }
        ("NO-EVICT" | "NO-TOUCH" | "REPLY", 2, _) => Reply::ok(),
        _ => Reply::err(format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. raftis serves CLIENT ID, SETNAME, GETNAME, SETINFO, INFO, LIST",
            sub.to_ascii_lowercase()
        )),
    }
}

/// `HELLO [2 [AUTH user pass] [SETNAME name]]`: RESP2 only (3 answers
/// NOPROTO, so clients fall back to 2).
pub fn hello(ctx: &Context, session: &mut Session, a: &[Vec<u8>]) -> Reply {
    if let Some(v) = a.first() {
        match text(v).parse::<i64>() {
            Ok(2) => {}
            Ok(_) => return Reply::err("NOPROTO unsupported protocol version"),
            Err(_) => return Reply::err("ERR Protocol version is not an integer or out of range"),
        }
    }
    let mut i = 1;
    while i < a.len() {
        match text(&a[i]).to_ascii_uppercase().as_str() {
            "AUTH" if i + 2 < a.len() => {
                let r = crate::commands::auth(ctx, session, &a[i + 1..i + 3]);
                if matches!(r, Reply::Error(_)) {
                    return r;
                }
                i += 3;
            }
            "SETNAME" if i + 1 < a.len() => {
                let r = client(ctx, session, &[b"SETNAME".to_vec(), a[i + 1].clone()]);
                if matches!(r, Reply::Error(_)) {
                    return r;
                }
                i += 2;
            }
            _ => return Reply::err("ERR syntax error"),
        }
    }
    if !session.authenticated {
        return Reply::err("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
    }
    let role = if ctx.shards.first().is_leader() {
        "master"
    } else {
        "replica"
    };
    let pairs: Vec<(&str, Reply)> = vec![
        ("server", Reply::Bulk(b"redis".to_vec())),
        (
            "version",
            Reply::Bulk(crate::commands::REDIS_VERSION.as_bytes().to_vec()),
        ),
        ("proto", Reply::Int(2)),
        ("id", Reply::Int(session.id as i64)),
        ("mode", Reply::Bulk(b"standalone".to_vec())),
        ("role", Reply::Bulk(role.as_bytes().to_vec())),
        ("modules", Reply::Array(Vec::new())),
    ];
    Reply::Array(
        pairs
            .into_iter()
            .flat_map(|(k, v)| [Reply::Bulk(k.as_bytes().to_vec()), v])
            .collect(),
    )
}

/// The parameters CONFIG GET shows: what raftis has, and what clients and
/// tools ask for (redis-benchmark asks for `save` and `appendonly`).
fn parameters(ctx: &Context) -> Vec<(&'static str, String)> {
    vec![
        ("port", ctx.port.to_string()),
        ("databases", "1".into()),
        ("maxclients", ctx.max_clients.to_string()),
        ("maxmemory", "0".into()),
        ("maxmemory-policy", "noeviction".into()),
        // Every write is synced to a majority's log: nothing to save.
        ("save", String::new()),
        ("appendonly", "no".into()),
        ("appendfsync", "always".into()),
        (
            "notify-keyspace-events",
            crate::notify::flags_text(ctx.notifier.flags()),
        ),
        ("client-output-buffer-limit", ctx.output_limit.to_string()),
        ("timeout", "0".into()),
        (
            "cluster-enabled",
            if ctx.shards.count() > 1 { "yes" } else { "no" }.into(),
        ),
        ("proto-max-bulk-len", floyd::options::MAX_VALUE_BYTES.to_string()),
    ]
}

/// `CONFIG GET pattern…`, `CONFIG SET` (`notify-keyspace-events` only:
/// the rest come from the command line, refused as Redis refuses an
/// immutable one), `CONFIG RESETSTAT`.
pub fn config(ctx: &Context, a: &[Vec<u8>]) -> Reply {
    match (text(&a[0]).to_ascii_uppercase().as_str(), a.len()) {
        ("GET", n) if n >= 2 => {
            let mut out = Vec::new();
            for (name, value) in parameters(ctx) {
                if a[1..]
                    .iter()
                    .any(|p| crate::commands::glob_match(p, name.as_bytes()))
                {
                    out.push(Reply::Bulk(name.as_bytes().to_vec()));
                    out.push(Reply::Bulk(value.into_bytes()));
                }
            }
            Reply::Array(out)
        }
        ("SET", n) if n >= 3 && n % 2 == 1 => config_set(ctx, &a[1..]),
        ("RESETSTAT", 1) => {
            ctx.registry.commands.store(0, Ordering::Relaxed);
            ctx.registry.connections.store(0, Ordering::Relaxed);
            Reply::ok()
        }
        ("REWRITE", 1) => Reply::err("ERR The server is running without a config file"),
        (sub, _) => Reply::err(format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'",
            sub.to_ascii_lowercase()
        )),
    }
}

/// `CONFIG SET name value…`: all or nothing, as in Redis.
fn config_set(ctx: &Context, pairs: &[Vec<u8>]) -> Reply {
    let mut flags = None;
    for kv in pairs.chunks(2) {
        if !text(&kv[0]).eq_ignore_ascii_case("notify-keyspace-events") {
            return Reply::err(format!(
                "ERR CONFIG SET failed (possibly related to argument '{}') - raftis takes this setting from the command line",
                text(&kv[0])
            ));
        }
        match crate::notify::parse_flags(&kv[1]) {
            Some(f) => flags = Some(f),
            None => {
                return Reply::err(format!(
                    "ERR CONFIG SET failed (possibly related to argument 'notify-keyspace-events') - Invalid event class character. Use 'Ag$lshzxeKEtmd'. (value '{}')",
                    text(&kv[1])
                ))
            }
        }
    }
    if let Some(f) = flags {
        ctx.notifier.set(f, &ctx.shards, &ctx.hub);
    }
    Reply::ok()
}

/// Resident memory of the process, in bytes.
fn rss_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf only reads a value.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}

/// INFO's `# Memory`.
pub fn memory() -> String {
    let rss = rss_bytes();
    format!(
        "# Memory\r\nused_memory:{rss}\r\nused_memory_rss:{rss}\r\nused_memory_peak:{rss}\r\nmaxmemory:0\r\nmaxmemory_policy:noeviction\r\nmem_allocator:{}\r\n\r\n",
        if cfg!(feature = "jemalloc") { "jemalloc" } else { "libc" }
    )
}

/// INFO's `# Keyspace` (`db0:keys=…,expires=…`, a linearizable count;
/// left out if it cannot be had now).
pub fn keyspace(ctx: &Context) -> String {
    let mut out = "# Keyspace\r\n".to_string();
    if let Reply::Array(v) = crate::everywhere::run(ctx, "FLOYD.KEYSPACE", &[b"FLOYD.KEYSPACE".to_vec()]) {
        if let [Reply::Int(keys), Reply::Int(expires)] = v.as_slice() {
            if *keys > 0 {
                out += &format!("db0:keys={keys},expires={expires},avg_ttl=0\r\n");
            }
        }
    }
    out + "\r\n"
}

/// The sum of every series of metric `name` in an OpenMetrics text (0 if none).
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// INFO's `# Persistence`, in Redis's terms: floyd's log plays the part of
/// an append-only file synced on every write (`appendfsync always`), on a
/// majority; its numbers come from the node's metrics.
pub fn persistence(ctx: &Context) -> String {
    let m = ctx.shards.metrics();
    let failing = metric(&m, "floyd_disk_full") + metric(&m, "floyd_host_failed") > 0;
    format!(
        "# Persistence\r\nloading:0\r\nasync_loading:0\r\nrdb_bgsave_in_progress:0\r\naof_enabled:1\r\naof_rewrite_in_progress:0\r\naof_last_write_status:{}\r\nfloyd_log_writes:{}\r\nfloyd_log_syncs:{}\r\nfloyd_log_entries_written:{}\r\nfloyd_snapshots_taken:{}\r\nfloyd_snapshots_installed:{}\r\n\r\n",
        if failing { "err" } else { "ok" },
        metric(&m, "floyd_log_writes_total"),
        metric(&m, "floyd_log_syncs_total"),
        metric(&m, "floyd_log_entries_written_total"),
        metric(&m, "floyd_snapshots_taken_total"),
        metric(&m, "floyd_snapshots_installed_total"),
    )
}

/// INFO's `# Stats` counters: Redis's fields that mean something here
/// (keys expired on this node, in every group; nothing is ever evicted),
/// then floyd's own from its metrics.
pub fn stats(ctx: &Context) -> String {
    let m = ctx.shards.metrics();
    let (channels, patterns) = ctx.hub.counts();
    let mut out = format!(
        "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nclient_output_buffer_limit_disconnections:{}\r\nexpired_keys:{}\r\nevicted_keys:0\r\npubsub_channels:{channels}\r\npubsub_patterns:{patterns}\r\n",
        ctx.registry.connections.load(Ordering::Relaxed),
        ctx.registry.commands.load(Ordering::Relaxed),
        ctx.output_disconnections.load(Ordering::Relaxed),
        metric(&m, "floyd_expired_keys_total"),
    );
    for (field, name) in [
        ("floyd_proposals", "floyd_proposals_total"),
        ("floyd_forwarded", "floyd_forwarded_total"),
        ("floyd_timeouts", "floyd_timeouts_total"),
        ("floyd_leader_changes", "floyd_leader_changes_total"),
        ("floyd_elections_won", "floyd_elections_won_total"),
        ("floyd_read_index_reads", "floyd_read_index_reads_total"),
        ("floyd_lease_reads", "floyd_lease_reads_total"),
        ("floyd_refused_frames", "floyd_refused_frames_total"),
    ] {
        out.push_str(&format!("{field}:{}\r\n", metric(&m, name)));
    }
    out.push_str("\r\n");
    out
}
