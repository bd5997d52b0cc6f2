//! The Redis data commands (strings, counters, TTLs, keys) over floyd's
//! `Floyd::redis`: each write one atomic log entry, each read a
//! linearizable ReadIndex read; MULTI/EXEC as one `redis_atomic` step; and
//! SCAN's cursors, which floyd gives as the hex of a key and Redis clients
//! want as a number.

use crate::commands::{error_reply, Context, Session};
use crate::resp::Reply;
use crate::shards::{is_reserved, Route, CROSSSLOT};
use floyd::{Error, RedisValue};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// SCAN cursors a node remembers (the oldest are forgotten past it: a scan
/// resumed from a forgotten cursor gets `ERR invalid cursor`).
const MAX_CURSORS: usize = 65_536;

/// Numbered SCAN cursors of this node.
#[derive(Default)]
pub struct Cursors {
    next: AtomicU64,
    by_number: Mutex<Numbered>,
}

/// floyd's cursors by number, and the numbers oldest first.
#[derive(Default)]
struct Numbered {
    cursors: HashMap<u64, Vec<u8>>,
    order: VecDeque<u64>,
}

impl Cursors {
    /// A number for `floyd_cursor` in group `group`.
    fn number(&self, group: usize, floyd_cursor: &[u8]) -> u64 {
        let mut c = (group as u32).to_be_bytes().to_vec();
        c.extend_from_slice(floyd_cursor);
        self.number_raw(c)
    }

    fn number_raw(&self, floyd_cursor: Vec<u8>) -> u64 {
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let mut map = self.by_number.lock();
        map.cursors.insert(n, floyd_cursor);
        map.order.push_back(n);
        while map.order.len() > MAX_CURSORS {
            if let Some(old) = map.order.pop_front() {
                map.cursors.remove(&old);
            }
        }
        n
    }

    /// The group and floyd's cursor a number stands for ("0": the start).
    fn floyd_cursor(&self, number: &[u8]) -> Option<(usize, Vec<u8>)> {
        if number == b"0" {
            return Some((0, b"0".to_vec()));
        }
        let n: u64 = std::str::from_utf8(number).ok()?.parse().ok()?;
        let c = self.by_number.lock().cursors.get(&n).cloned()?;
        let (group, cursor) = c.split_at_checked(4)?;
        Some((
            u32::from_be_bytes(group.try_into().ok()?) as usize,
            cursor.to_vec(),
        ))
    }
}

pub fn to_reply(v: RedisValue) -> Reply {
    match v {
        RedisValue::Status(s) => Reply::Simple(s),
        RedisValue::Error(e) => Reply::Error(e),
        RedisValue::Int(n) => Reply::Int(n),
        RedisValue::Bulk(b) => Reply::Bulk(b),
        RedisValue::Nil => Reply::Nil,
        RedisValue::Array(a) => Reply::Array(a.into_iter().map(to_reply).collect()),
    }
}

/// Whether floyd runs `name` as a Redis data command.
pub fn is_data_command(name: &str) -> bool {
    floyd::redis_command_reads(name.as_bytes()).is_some()
}

/// Runs one data command (`args[0]` its name) in the group of its keys,
/// or in every group for a command on no key in particular.
pub fn run(ctx: &Context, args: &[Vec<u8>]) -> Reply {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
    match ctx.shards.route(&name, args) {
        Route::CrossSlot => Reply::err(CROSSSLOT),
        Route::All => crate::everywhere::run(ctx, &name, args),
        Route::Group(g) => run_in(ctx, g, &name, args),
    }
}

/// Runs a command on keys of group `g`.
fn run_in(ctx: &Context, g: usize, name: &str, args: &[Vec<u8>]) -> Reply {
    let f = &**ctx.shards.group(g);
    match name {
        // A plain SET and GET are floyd's own write and read: the same
        // effect, and they work beside nodes of earlier releases.
        "SET" if args.len() == 3 => return crate::commands::set_plain(f, &args[1], &args[2]),
        "GET" if args.len() == 2 => return crate::commands::get_reply(f.read(&args[1])),
        "HSCAN" | "SSCAN" if args.len() >= 3 => return scan(ctx, g, args, 2).0,
        _ => {}
    }
    let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    match f.redis(&refs) {
        Ok(v) => to_reply(v),
        // Members of an earlier release: DEL and MSET as before, key by key.
        Err(Error::Busy(_)) if name == "DEL" || name == "MSET" => {
            crate::commands::legacy(f, name, &args[1..])
        }
        Err(e) => error_reply(&e),
    }
}

/// The group and floyd cursor a client's SCAN-like cursor stands for.
pub fn cursor(ctx: &Context, number: &[u8]) -> Option<(usize, Vec<u8>)> {
    ctx.cursors.floyd_cursor(number)
}

/// SCAN (in group `g`, from the client's cursor), HSCAN, SSCAN: the
/// cursor (at `at`) numbered for the client, and whether the group's scan
/// ended there. SCAN leaves raftis's reserved keys out.
pub fn scan(ctx: &Context, g: usize, args: &[Vec<u8>], at: usize) -> (Reply, bool) {
    let Some((_, cursor)) = ctx.cursors.floyd_cursor(&args[at]) else {
        return (Reply::err("ERR invalid cursor"), true);
    };
    let mut refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    refs[at] = &cursor;
    match ctx.shards.group(g).redis(&refs) {
        Ok(RedisValue::Array(mut parts)) if parts.len() == 2 => {
            let keys = match parts.pop() {
                Some(RedisValue::Array(items)) if at == 1 => {
                    Reply::Array(items.into_iter().filter(|k| !reserved(k)).map(to_reply).collect())
                }
                other => other.map(to_reply).unwrap_or(Reply::Nil),
            };
            let (number, ended) = match parts.pop() {
                Some(RedisValue::Bulk(c)) if c != b"0" => (ctx.cursors.number(g, &c), false),
                _ => (0, true),
            };
            (
                Reply::Array(vec![Reply::Bulk(number.to_string().into_bytes()), keys]),
                ended,
            )
        }
        Ok(other) => (to_reply(other), true),
        Err(e) => (error_reply(&e), true),
    }
}

/// The cursor a client gets for the start of group `g`'s keys.
pub fn group_start_cursor(ctx: &Context, g: usize) -> u64 {
    ctx.cursors.number(g, b"0")
}

/// Whether a listed key is one of raftis's own.
pub fn reserved(v: &RedisValue) -> bool {
    matches!(v, RedisValue::Bulk(k) if is_reserved(k))
}

/// How often a blocked pop looks whether its client went away.
const BLOCKED_CHECK: Duration = Duration::from_millis(250);

/// BLPOP, BRPOP, BLMOVE, BRPOPLPUSH: the pop is one atomic entry (floyd's
/// form never waits: nil while every list is empty); meanwhile the client
/// waits here for a change of one of its keys, seen through a floyd watch
/// on this node, registered before each try so no push slips between, and
/// asks again, until the timeout (0: for ever) or until it disconnects.
pub fn blocking(ctx: &Context, session: &Session, name: &str, args: &[Vec<u8>]) -> Reply {
    let f = match ctx.shards.route(name, args) {
        Route::Group(g) => &**ctx.shards.group(g),
        _ => return Reply::err(CROSSSLOT),
    };
    let keys: &[Vec<u8>] = match name {
        "BLPOP" | "BRPOP" if args.len() >= 3 => &args[1..args.len() - 1],
        _ if args.len() >= 3 => &args[1..2],
        _ => &[],
    };
    let timeout = args
        .last()
        .and_then(|t| std::str::from_utf8(t).ok()?.parse::<f64>().ok())
        .filter(|t| t.is_finite() && *t >= 0.0);
    let deadline = timeout
        .filter(|t| *t > 0.0)
        .map(|t| Instant::now() + Duration::from_secs_f64(t));
    loop {
        // Registered before the first try and kept through the tries: a
        // push between a try and the wait is an event waiting already.
        let (tx, rx) = crossbeam_channel::unbounded::<()>();
        let watches: Vec<u64> = keys
            .iter()
            .filter_map(|k| {
                let tx = tx.clone();
                let mut end = k.clone();
                end.push(0);
                f.watch(k, &end, 0, move |_| {
                    let _ = tx.send(());
                })
                .ok()
            })
            .collect();
        drop(tx);
        let stop_watching = || watches.iter().for_each(|id| drop(f.unwatch(*id)));
        'tries: loop {
            let reply = run(ctx, args);
            // Not nil (an element, an error), or a timeout that did not
            // parse (floyd answered its error): done.
            if !matches!(reply, Reply::Nil) || timeout.is_none() || watches.len() < keys.len() {
                stop_watching();
                return reply;
            }
            loop {
                let slice = deadline.map_or(BLOCKED_CHECK, |d| {
                    d.saturating_duration_since(Instant::now()).min(BLOCKED_CHECK)
                });
                match rx.recv_timeout(slice) {
                    // A change: every change seen so far, then try again.
                    Ok(()) => {
                        while rx.try_recv().is_ok() {}
                        continue 'tries;
                    }
                    // The watches ended (the node's state was replaced).
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break 'tries,
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                        if deadline.is_some_and(|d| Instant::now() >= d) || session.client_gone() {
                            stop_watching();
                            return Reply::Nil;
                        }
                    }
                }
            }
        }
        stop_watching();
    }
}

/// `WATCH key…`: remembers each key's mod_revision (read linearizably).
fn watch(ctx: &Context, session: &mut Session, keys: &[Vec<u8>]) -> Reply {
    for k in keys {
        match ctx.shards.for_key(k).key_revision(k) {
            Ok(rev) => session.watched.push((k.clone(), rev)),
            Err(e) => return error_reply(&e),
        }
    }
    Reply::ok()
}

/// WATCH, UNWATCH, MULTI, EXEC, DISCARD, and a command while queued; `None` if `name` is
/// none of these and no transaction is open.
pub fn transaction(ctx: &Context, session: &mut Session, name: &str, args: &[Vec<u8>]) -> Option<Reply> {
    match (name, session.queued.is_some()) {
        ("WATCH", true) => Some(Reply::err("ERR WATCH inside MULTI is not allowed")),
        ("WATCH", false) if args.len() < 2 => None,
        ("WATCH", false) => Some(watch(ctx, session, &args[1..])),
        ("UNWATCH", _) => {
            session.watched.clear();
            Some(Reply::ok())
        }
        ("MULTI", true) => Some(Reply::err("ERR MULTI calls can not be nested")),
        ("MULTI", false) => {
            session.queued = Some(Vec::new());
            session.queue_failed = false;
            Some(Reply::ok())
        }
        ("EXEC", false) => Some(Reply::err("ERR EXEC without MULTI")),
        ("DISCARD", false) => Some(Reply::err("ERR DISCARD without MULTI")),
        ("DISCARD", true) => {
            session.queued = None;
            session.watched.clear();
            Some(Reply::ok())
        }
        ("EXEC", true) => {
            let queued = session.queued.take().unwrap_or_default();
            let watched = std::mem::take(&mut session.watched);
            if std::mem::take(&mut session.queue_failed) {
                return Some(Reply::err(
                    "EXECABORT Transaction discarded because of previous errors.",
                ));
            }
            if queued.is_empty() && watched.is_empty() {
                return Some(Reply::Array(Vec::new()));
            }
            let Some(g) = transaction_group(ctx, &queued, &watched) else {
                return Some(Reply::err(CROSSSLOT));
            };
            let f = &**ctx.shards.group(g);
            let cmds: Vec<Vec<&[u8]>> = queued
                .iter()
                .map(|c| c.iter().map(Vec::as_slice).collect())
                .collect();
            let guards: Vec<(&[u8], u64)> = watched.iter().map(|(k, r)| (k.as_slice(), *r)).collect();
            if cmds.is_empty() {
                // Nothing to run: whether a watched key changed is all there is.
                return Some(
                    match guards.iter().try_fold(true, |same, (k, r)| {
                        f.key_revision(k).map(|now| same && now == *r)
                    }) {
                        Ok(true) => Reply::Array(Vec::new()),
                        Ok(false) => Reply::Nil,
                        Err(e) => error_reply(&e),
                    },
                );
            }
            Some(match f.redis_atomic_if(&guards, &cmds) {
                Ok(Some(replies)) => Reply::Array(replies.into_iter().map(to_reply).collect()),
                // A watched key changed: nothing ran.
                Ok(None) => Reply::Nil,
                Err(e) => error_reply(&e),
            })
        }
        (_, true) if is_data_command(name) => {
            let q = session.queued.as_mut()?;
            q.push(args.to_vec());
            if transaction_group(ctx, q, &session.watched).is_none() {
                // As Redis Cluster: refused when queued, and then the EXEC.
                q.pop();
                session.queue_failed = true;
                return Some(Reply::err(CROSSSLOT));
            }
            Some(Reply::Simple("QUEUED".into()))
        }
        (_, true) => {
            // Redis refuses what cannot be queued, and then the EXEC.
            session.queue_failed = true;
            Some(Reply::err(format!(
                "ERR '{}' cannot run inside MULTI on raftis (only the data commands can)",
                name.to_ascii_lowercase()
            )))
        }
        _ => None,
    }
}

/// The one group every key of a transaction (queued and watched) is in;
/// `None` if they are in several (a command on no key runs in every group,
/// so it makes a transaction of several groups unless there is one).
fn transaction_group(ctx: &Context, queued: &[Vec<Vec<u8>>], watched: &[(Vec<u8>, u64)]) -> Option<usize> {
    let mut group = None;
    let mut agree = |g: usize| match group {
        Some(other) if other != g => false,
        _ => {
            group = Some(g);
            true
        }
    };
    for cmd in queued {
        let name = String::from_utf8_lossy(&cmd[0]).to_ascii_uppercase();
        let ok = match ctx.shards.route(&name, cmd) {
            Route::Group(g) if crate::slots::key_positions(&name, cmd).is_some_and(|k| !k.is_empty()) => {
                agree(g)
            }
            Route::Group(_) => true,
            Route::All => ctx.shards.count() == 1 && agree(0),
            Route::CrossSlot => false,
        };
        if !ok {
            return None;
        }
    }
    for (k, _) in watched {
        if !agree(ctx.shards.group_of_key(k)) {
            return None;
        }
    }
    Some(group.unwrap_or(0))
}
