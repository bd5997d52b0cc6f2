//! The data commands on no key in particular — KEYS, SCAN, RANDOMKEY,
//! DBSIZE, FLUSHDB, FLUSHALL, and INFO's keyspace count — run in every
//! group, in order, and their answers are put together as one Redis would
//! give them. raftis's reserved keys (`shards.rs`) are left out.
//!
//! With more than one group these are not one atomic step: a DBSIZE adds
//! counts read one group after another, a FLUSHALL empties the groups one
//! after another (each group's part atomic).

use crate::commands::{error_reply, Context};
use crate::data::{cursor, group_start_cursor, reserved, scan, to_reply};
use crate::resp::Reply;
use floyd::RedisValue;

/// Runs `name` (`args[0]`) in every group.
pub fn run(ctx: &Context, name: &str, args: &[Vec<u8>]) -> Reply {
    match name {
        "SCAN" if args.len() >= 2 => scan_groups(ctx, args),
        "KEYS" => keys(ctx, args),
        "DBSIZE" => match counts(ctx) {
            Ok((keys, _)) => Reply::Int(keys),
            Err(r) => r,
        },
        "FLOYD.KEYSPACE" => match counts(ctx) {
            Ok((keys, expires)) => Reply::Array(vec![Reply::Int(keys), Reply::Int(expires)]),
            Err(r) => r,
        },
        "RANDOMKEY" => random_key(ctx, args),
        // FLUSHDB, FLUSHALL, and a wrong arity of any of these (every group
        // answers the same error).
        _ => each_group(ctx, args),
    }
}

fn call(ctx: &Context, g: usize, args: &[Vec<u8>]) -> Result<RedisValue, Reply> {
    let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    match ctx.shards.group(g).redis(&refs) {
        Ok(RedisValue::Error(e)) => Err(Reply::Error(e)),
        Ok(v) => Ok(v),
        Err(e) => Err(error_reply(&e)),
    }
}

/// Runs `args` in each group; the first group's answer, or the first error.
fn each_group(ctx: &Context, args: &[Vec<u8>]) -> Reply {
    let mut first = None;
    for g in 0..ctx.shards.count() {
        match call(ctx, g, args) {
            Ok(v) => {
                first.get_or_insert(v);
            }
            Err(r) => return r,
        }
    }
    first.map_or(Reply::Nil, to_reply)
}

fn keys(ctx: &Context, args: &[Vec<u8>]) -> Reply {
    let mut all = Vec::new();
    for g in 0..ctx.shards.count() {
        match call(ctx, g, args) {
            Ok(RedisValue::Array(keys)) => {
                all.extend(keys.into_iter().filter(|k| !reserved(k)).map(to_reply))
            }
            Ok(other) => return to_reply(other),
            Err(r) => return r,
        }
    }
    Reply::Array(all)
}

/// Keys and keys with a TTL, over every group, less the reserved keys.
fn counts(ctx: &Context) -> Result<(i64, i64), Reply> {
    let (mut keys, mut expires) = (0, 0);
    for g in 0..ctx.shards.count() {
        match call(ctx, g, &[b"FLOYD.KEYSPACE".to_vec()])? {
            RedisValue::Array(v) => {
                if let [RedisValue::Int(k), RedisValue::Int(e)] = v.as_slice() {
                    keys += k;
                    expires += e;
                }
            }
            other => return Err(to_reply(other)),
        }
        let hidden = ctx.shards.reserved_count(g).map_err(|e| error_reply(&e))?;
        keys -= hidden as i64;
    }
    Ok((keys.max(0), expires))
}

/// SCAN over the groups one after another: the client's cursor names the
/// group and floyd's cursor in it.
fn scan_groups(ctx: &Context, args: &[Vec<u8>]) -> Reply {
    let Some((g, _)) = cursor(ctx, &args[1]) else {
        return Reply::err("ERR invalid cursor");
    };
    if g >= ctx.shards.count() {
        return Reply::err("ERR invalid cursor");
    }
    let (reply, ended) = scan(ctx, g, args, 1);
    match reply {
        Reply::Array(mut parts) if ended && g + 1 < ctx.shards.count() => {
            // This group is done: the next cursor starts the next group's keys.
            parts[0] = Reply::Bulk(group_start_cursor(ctx, g + 1).to_string().into_bytes());
            Reply::Array(parts)
        }
        other => other,
    }
}

/// Tries of RANDOMKEY in a group before listing its keys instead (it may
/// keep landing on reserved keys in a group that holds little else).
const RANDOM_TRIES: usize = 8;

fn random_key(ctx: &Context, args: &[Vec<u8>]) -> Reply {
    let n = ctx.shards.count();
    let start = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos()) as usize)
        % n;
    'groups: for g in (0..n).map(|i| (start + i) % n) {
        for _ in 0..RANDOM_TRIES {
            match call(ctx, g, args) {
                Ok(RedisValue::Nil) => continue 'groups,
                Ok(v) if reserved(&v) => continue,
                Ok(v) => return to_reply(v),
                Err(r) => return r,
            }
        }
        match call(ctx, g, &[b"KEYS".to_vec(), b"*".to_vec()]) {
            Ok(RedisValue::Array(keys)) => {
                if let Some(k) = keys.into_iter().find(|k| !reserved(k)) {
                    return to_reply(k);
                }
            }
            Ok(other) => return to_reply(other),
            Err(r) => return r,
        }
    }
    Reply::Nil
}
