//! Redis commands on a group's keys (protocol 8), for raftis and for any
//! program that wants Redis's data model on a replicated store.
//!
//! A command that writes travels in a log entry as the client sent it
//! (`RedisBatch`) and runs at apply, on every replica alike, at the
//! entry's log time: `INCR`, `SET NX`, `GETSET`, `RENAME`, `MSETNX` and
//! the rest are each one atomic step at one revision, never a read and a
//! write that another client can come between. Several commands in one
//! batch (MULTI/EXEC) run in order in the same entry. A command that only
//! reads runs on the store as applied, after a ReadIndex round, as a Get
//! does. Keys are the store's keys: a Redis string is a floyd key and its
//! value, read and written by `Floyd::read`/`write` too; a TTL is a
//! deadline on the log's clock (`expiry.rs`).

mod glob;
mod hashes;
mod keys;
mod keyspace;
mod lists;
mod notify;
pub mod reply;
mod sets;
mod strings;
mod typed_header;

pub use glob::matches as glob_matches;
pub use keyspace::wrong_type;

use super::revision::View;
use super::KvStateMachine;
use crate::error::{Error, Result};
use crate::wire::{RedisBatch, RedisReplies};
use bytes::Bytes;
use keyspace::{Keyspace, Reading, Writing};
use reply::*;

/// A command raftis and `Floyd::redis` know: its name, its arity as Redis
/// counts it (with the name; negative: at least that many), and whether
/// it only reads.
struct Spec {
    name: &'static str,
    arity: i32,
    read: bool,
}

const fn spec(name: &'static str, arity: i32, read: bool) -> Spec {
    Spec { name, arity, read }
}

const COMMANDS: &[Spec] = &[
    spec("GET", 2, true),
    spec("MGET", -2, true),
    spec("STRLEN", 2, true),
    spec("GETRANGE", 4, true),
    spec("SUBSTR", 4, true),
    spec("EXISTS", -2, true),
    spec("TOUCH", -2, true),
    spec("TYPE", 2, true),
    spec("TTL", 2, true),
    spec("PTTL", 2, true),
    spec("EXPIRETIME", 2, true),
    spec("PEXPIRETIME", 2, true),
    spec("KEYS", 2, true),
    spec("SCAN", -2, true),
    spec("RANDOMKEY", 1, true),
    spec("DBSIZE", 1, true),
    // raftis's INFO keyspace: [keys, keys with a TTL].
    spec("FLOYD.KEYSPACE", 1, true),
    spec("SET", -3, false),
    spec("SETNX", 3, false),
    spec("SETEX", 4, false),
    spec("PSETEX", 4, false),
    spec("GETSET", 3, false),
    spec("GETDEL", 2, false),
    spec("GETEX", -2, false),
    spec("MSET", -3, false),
    spec("MSETNX", -3, false),
    spec("INCR", 2, false),
    spec("DECR", 2, false),
    spec("INCRBY", 3, false),
    spec("DECRBY", 3, false),
    spec("INCRBYFLOAT", 3, false),
    spec("APPEND", 3, false),
    spec("SETRANGE", 4, false),
    spec("DEL", -2, false),
    spec("UNLINK", -2, false),
    spec("RENAME", 3, false),
    spec("RENAMENX", 3, false),
    spec("COPY", -3, false),
    spec("FLUSHDB", -1, false),
    spec("FLUSHALL", -1, false),
    spec("EXPIRE", -3, false),
    spec("PEXPIRE", -3, false),
    spec("EXPIREAT", -3, false),
    spec("PEXPIREAT", -3, false),
    spec("PERSIST", 2, false),
    spec("HGET", 3, true),
    spec("HMGET", -3, true),
    spec("HGETALL", 2, true),
    spec("HKEYS", 2, true),
    spec("HVALS", 2, true),
    spec("HLEN", 2, true),
    spec("HEXISTS", 3, true),
    spec("HSTRLEN", 3, true),
    spec("HSCAN", -3, true),
    spec("HSET", -4, false),
    spec("HMSET", -4, false),
    spec("HSETNX", 4, false),
    spec("HDEL", -3, false),
    spec("HINCRBY", 4, false),
    spec("HINCRBYFLOAT", 4, false),
    spec("LRANGE", 4, true),
    spec("LLEN", 2, true),
    spec("LINDEX", 3, true),
    spec("LPOS", -3, true),
    spec("LPUSH", -3, false),
    spec("RPUSH", -3, false),
    spec("LPUSHX", -3, false),
    spec("RPUSHX", -3, false),
    spec("LPOP", -2, false),
    spec("RPOP", -2, false),
    spec("LSET", 4, false),
    spec("LINSERT", 5, false),
    spec("LREM", 4, false),
    spec("LTRIM", 4, false),
    spec("LMOVE", 5, false),
    spec("RPOPLPUSH", 3, false),
    // Blocking pops: here they never block (nil when every list is
    // empty); raftis waits for a push and asks again.
    spec("BLPOP", -3, false),
    spec("BRPOP", -3, false),
    spec("BLMOVE", 6, false),
    spec("BRPOPLPUSH", 4, false),
    spec("SADD", -3, false),
    spec("SREM", -3, false),
    spec("SCARD", 2, true),
    spec("SMEMBERS", 2, true),
    spec("SISMEMBER", 3, true),
    spec("SMISMEMBER", -3, true),
    spec("SPOP", -2, false),
    spec("SRANDMEMBER", -2, true),
    spec("SMOVE", 4, false),
    spec("SUNION", -2, true),
    spec("SINTER", -2, true),
    spec("SDIFF", -2, true),
    spec("SUNIONSTORE", -3, false),
    spec("SINTERSTORE", -3, false),
    spec("SDIFFSTORE", -3, false),
    spec("SINTERCARD", -3, true),
    spec("SSCAN", -3, true),
];

fn find(name: &[u8]) -> Option<&'static Spec> {
    COMMANDS
        .iter()
        .find(|s| s.name.as_bytes().eq_ignore_ascii_case(name))
}

/// Whether the command only reads (`Some(true)`), writes (`Some(false)`),
/// or is not one of these (`None`).
pub fn is_read(name: &[u8]) -> Option<bool> {
    find(name).map(|s| s.read)
}

/// The names of the commands run here, upper case.
pub fn command_names() -> impl Iterator<Item = &'static str> {
    COMMANDS.iter().map(|s| s.name)
}

/// Runs one command (`args[0]` its name); an `Err` only for a failure of
/// the store, never for a bad command (that is an error reply).
fn execute(ks: &mut dyn Keyspace, args: &[Bytes]) -> Result<Reply> {
    let Some(name) = args.first() else {
        return Ok(error("ERR empty command"));
    };
    let Some(spec) = find(name) else {
        return Ok(error(format!(
            "ERR unknown command '{}'",
            String::from_utf8_lossy(name)
        )));
    };
    let n = args.len() as i32;
    if (spec.arity > 0 && n != spec.arity) || (spec.arity < 0 && n < -spec.arity) {
        return Ok(wrong_args(spec.name));
    }
    match run(ks, spec.name, &args[1..]) {
        Err(Error::InvalidArgument(m)) if m.starts_with("WRONGTYPE") => Ok(error(m)),
        Err(Error::InvalidArgument(m)) => Ok(error(format!("ERR {m}"))),
        other => other,
    }
}

fn run(ks: &mut dyn Keyspace, name: &str, a: &[Bytes]) -> Result<Reply> {
    match name {
        "GET" => strings::get(ks, a),
        "MGET" => strings::mget(ks, a),
        "STRLEN" => strings::strlen(ks, a),
        "GETRANGE" | "SUBSTR" => strings::getrange(ks, a),
        "SET" => strings::set(ks, a),
        "SETNX" => strings::setnx(ks, a),
        "SETEX" | "PSETEX" => strings::setex(ks, a, name),
        "GETSET" => strings::getset(ks, a),
        "GETDEL" => strings::getdel(ks, a),
        "GETEX" => strings::getex(ks, a),
        "MSET" | "MSETNX" if a.len() % 2 != 0 => Ok(wrong_args(name)),
        "MSET" => strings::mset(ks, a),
        "MSETNX" => strings::msetnx(ks, a),
        "INCR" => strings::incr_by(ks, &a[0], 1),
        "DECR" => strings::incr_by(ks, &a[0], -1),
        "INCRBY" | "DECRBY" => match strings::increment(&a[1], name == "DECRBY") {
            Ok(by) => strings::incr_by(ks, &a[0], by),
            Err(r) => Ok(r),
        },
        "INCRBYFLOAT" => strings::incrbyfloat(ks, a),
        "APPEND" => strings::append(ks, a),
        "SETRANGE" => strings::setrange(ks, a),
        "DEL" | "UNLINK" => keys::del(ks, a),
        "EXISTS" | "TOUCH" => keys::exists(ks, a),
        "TYPE" => keys::type_of(ks, a),
        "RENAME" => keys::rename(ks, a, false),
        "RENAMENX" => keys::rename(ks, a, true),
        "COPY" => keys::copy(ks, a),
        "KEYS" => keys::keys(ks, a),
        "SCAN" => keys::scan(ks, a),
        "RANDOMKEY" => keys::randomkey(ks),
        "DBSIZE" => keys::dbsize(ks),
        "FLOYD.KEYSPACE" => keys::keyspace(ks),
        "FLUSHDB" | "FLUSHALL" => keys::flush(ks, a),
        "EXPIRE" | "PEXPIRE" | "EXPIREAT" | "PEXPIREAT" => keys::expire(ks, a, name),
        "TTL" | "PTTL" | "EXPIRETIME" | "PEXPIRETIME" => keys::ttl(ks, a, name),
        "PERSIST" => keys::persist(ks, a),
        "HSET" | "HMSET" => hashes::hset(ks, a, name),
        "HSETNX" => hashes::hsetnx(ks, a),
        "HGET" => hashes::hget(ks, a),
        "HMGET" => hashes::hmget(ks, a),
        "HDEL" => hashes::hdel(ks, a),
        "HEXISTS" => hashes::hexists(ks, a),
        "HLEN" => hashes::hlen(ks, a),
        "HSTRLEN" => hashes::hstrlen(ks, a),
        "HGETALL" | "HKEYS" | "HVALS" => hashes::hgetall(ks, a, name),
        "HINCRBY" => hashes::hincr(ks, a, false),
        "HINCRBYFLOAT" => hashes::hincr(ks, a, true),
        "HSCAN" => hashes::hscan(ks, a),
        "LPUSH" => lists::push(ks, a, true, false),
        "RPUSH" => lists::push(ks, a, false, false),
        "LPUSHX" => lists::push(ks, a, true, true),
        "RPUSHX" => lists::push(ks, a, false, true),
        "LPOP" | "RPOP" if a.len() > 2 => Ok(wrong_args(name)),
        "LPOP" => lists::pop(ks, a, true),
        "RPOP" => lists::pop(ks, a, false),
        "LLEN" => lists::llen(ks, a),
        "LRANGE" => lists::lrange(ks, a),
        "LINDEX" => lists::lindex(ks, a),
        "LSET" => lists::lset(ks, a),
        "LINSERT" => lists::linsert(ks, a),
        "LREM" => lists::lrem(ks, a),
        "LTRIM" => lists::ltrim(ks, a),
        "LPOS" => lists::lpos(ks, a),
        "LMOVE" => match (lists::side(&a[2]), lists::side(&a[3])) {
            (Some(from), Some(to)) => lists::lmove(ks, &a[0], &a[1], from, to),
            _ => Ok(syntax()),
        },
        "RPOPLPUSH" => lists::lmove(ks, &a[0], &a[1], false, true),
        "BLPOP" => lists::bpop(ks, a, true),
        "BRPOP" => lists::bpop(ks, a, false),
        "BLMOVE" => match (lists::side(&a[2]), lists::side(&a[3])) {
            (Some(from), Some(to)) => lists::bmove(ks, a, Some((from, to))),
            _ => Ok(syntax()),
        },
        "BRPOPLPUSH" => lists::bmove(ks, a, None),
        "SADD" => sets::sadd(ks, a),
        "SREM" => sets::srem(ks, a),
        "SCARD" => sets::scard(ks, a),
        "SMEMBERS" => sets::smembers(ks, a),
        "SISMEMBER" => sets::sismember(ks, a),
        "SMISMEMBER" => sets::smismember(ks, a),
        "SPOP" | "SRANDMEMBER" if a.len() > 2 => Ok(wrong_args(name)),
        "SPOP" => sets::spop_or_random(ks, a, true),
        "SRANDMEMBER" => sets::spop_or_random(ks, a, false),
        "SMOVE" => sets::smove(ks, a),
        "SUNION" => sets::sop(ks, a, sets::Combine::Union),
        "SINTER" => sets::sop(ks, a, sets::Combine::Inter),
        "SDIFF" => sets::sop(ks, a, sets::Combine::Diff),
        "SUNIONSTORE" => sets::sop_store(ks, a, sets::Combine::Union),
        "SINTERSTORE" => sets::sop_store(ks, a, sets::Combine::Inter),
        "SDIFFSTORE" => sets::sop_store(ks, a, sets::Combine::Diff),
        "SINTERCARD" => sets::sintercard(ks, a),
        "SSCAN" => sets::sscan(ks, a),
        _ => Ok(error(format!("ERR unknown command '{name}'"))),
    }
}

/// Applies `batch` at log time `now`: each command that changed something
/// takes the next revision.
pub(super) fn apply(view: &mut View<'_>, batch: &RedisBatch, now: u64) -> Result<RedisReplies> {
    for g in &batch.guards {
        let live = view.expiry.deadline(&g.key).is_none_or(|d| d > now);
        let current = match view.meta(&g.key)? {
            Some(m) if live => m.mod_revision,
            _ => 0,
        };
        if current != g.mod_revision {
            return Ok(RedisReplies {
                items: Vec::new(),
                aborted: true,
            });
        }
    }
    let mut items = Vec::with_capacity(batch.calls.len());
    for call in &batch.calls {
        let next = view.revision + 1;
        let before = view.events.len();
        let mut w = Writing {
            view,
            now,
            next,
            changed: false,
        };
        let reply = execute(&mut w, &call.args)?;
        if w.changed {
            view.revision = next;
        }
        notify::name_events(&mut view.events[before..], &call.args);
        items.push(reply);
    }
    Ok(RedisReplies {
        items,
        aborted: false,
    })
}

impl KvStateMachine {
    /// Runs read-only Redis commands on the store as last applied, at the
    /// log's time as this node can tell. A command that writes answers an
    /// error.
    pub fn redis_read(&self, batch: &RedisBatch) -> Result<RedisReplies> {
        let db = self.db()?;
        let expiries = self.expiries.loaded(&db, &self.keys)?;
        let now = self.log_time_now(&db)?;
        let snapshot = db.snapshot();
        let mut r = Reading {
            db: &snapshot,
            keys: &self.keys,
            expiries: &expiries,
            now,
            typed: self.may_hold_types(&db)?,
        };
        let mut items = Vec::with_capacity(batch.calls.len());
        for call in &batch.calls {
            let reply = match call.args.first().and_then(|n| is_read(n)) {
                Some(false) => error("ERR a command that writes, in a read"),
                _ => execute(&mut r, &call.args)?,
            };
            items.push(reply);
        }
        Ok(RedisReplies {
            items,
            aborted: false,
        })
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod typed_tests;
