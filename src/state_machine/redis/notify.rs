//! The names Redis gives its keyspace notifications, for the changes a
//! command made: `INCR` notifies `incrby`, `HSET` `hset`, `LMOVE` a pop
//! on its source and a push on its destination, a list or set emptied by
//! a pop also `del`, and so on (Redis's `notify-keyspace-events` docs).
//! Attached to the live watch events (`WatchEvent::redis_events`), so
//! raftis can turn them into `__keyspace@0__` and `__keyevent@0__`
//! messages on any node.

use super::reply::upper;
use crate::state_machine::history::{EventKind, WatchEvent};
use bytes::Bytes;

/// Names each event among `events`, the changes of the command `args`.
pub fn name_events(events: &mut [WatchEvent], args: &[Bytes]) {
    let Some(name) = args.first().map(|n| upper(n)) else {
        return;
    };
    for e in events {
        e.redis_events = Some(names(&name, args, e));
    }
}

/// Whether `side` (LEFT/RIGHT of LMOVE and BLMOVE) is LEFT.
fn left(side: Option<&Bytes>) -> bool {
    side.is_some_and(|s| s.eq_ignore_ascii_case(b"LEFT"))
}

fn names(name: &str, args: &[Bytes], e: &WatchEvent) -> &'static [&'static str] {
    let deleted = e.kind == EventKind::Delete;
    // The source and destination of the commands that move an element.
    let (source, dest) = (args.get(1) == Some(&e.key), args.get(2) == Some(&e.key));
    match name {
        "SET" if !deleted && args.len() > 3 && has_ttl_option(&args[3..]) => &["set", "expire"],
        "SET" | "SETNX" | "GETSET" | "MSET" | "MSETNX" if !deleted => &["set"],
        "SETEX" | "PSETEX" if !deleted => &["set", "expire"],
        "INCR" | "DECR" | "INCRBY" | "DECRBY" => &["incrby"],
        "INCRBYFLOAT" => &["incrbyfloat"],
        "APPEND" => &["append"],
        "SETRANGE" => &["setrange"],
        "GETEX" if !deleted && args[2..].iter().any(|a| a.eq_ignore_ascii_case(b"PERSIST")) => &["persist"],
        "GETEX" | "EXPIRE" | "PEXPIRE" | "EXPIREAT" | "PEXPIREAT" if !deleted => &["expire"],
        "PERSIST" => &["persist"],
        "RENAME" | "RENAMENX" if deleted => &["rename_from"],
        "RENAME" | "RENAMENX" => &["rename_to"],
        "COPY" => &["copy_to"],
        // Redis notifies no key of a flush.
        "FLUSHDB" | "FLUSHALL" => &[],
        "HSET" | "HMSET" | "HSETNX" => &["hset"],
        "HINCRBY" => &["hincrby"],
        "HINCRBYFLOAT" => &["hincrbyfloat"],
        "HDEL" if deleted => &["hdel", "del"],
        "HDEL" => &["hdel"],
        "LPUSH" | "LPUSHX" => &["lpush"],
        "RPUSH" | "RPUSHX" => &["rpush"],
        "LPOP" | "BLPOP" if deleted => &["lpop", "del"],
        "LPOP" | "BLPOP" => &["lpop"],
        "RPOP" | "BRPOP" if deleted => &["rpop", "del"],
        "RPOP" | "BRPOP" => &["rpop"],
        "LSET" => &["lset"],
        "LINSERT" => &["linsert"],
        "LREM" if deleted => &["lrem", "del"],
        "LREM" => &["lrem"],
        "LTRIM" if deleted => &["ltrim", "del"],
        "LTRIM" => &["ltrim"],
        "LMOVE" | "BLMOVE" | "RPOPLPUSH" | "BRPOPLPUSH" => {
            let (from_left, to_left) = match name {
                "LMOVE" | "BLMOVE" => (left(args.get(3)), left(args.get(4))),
                _ => (false, true),
            };
            match (source, dest, deleted, from_left, to_left) {
                (true, false, true, true, _) => &["lpop", "del"],
                (true, false, true, false, _) => &["rpop", "del"],
                (true, false, false, true, _) => &["lpop"],
                (true, false, false, false, _) => &["rpop"],
                (false, true, _, _, true) => &["lpush"],
                (false, true, _, _, false) => &["rpush"],
                // A rotation of one list: popped and pushed.
                (true, true, _, true, true) => &["lpop", "lpush"],
                (true, true, _, true, false) => &["lpop", "rpush"],
                (true, true, _, false, true) => &["rpop", "lpush"],
                (true, true, _, false, false) => &["rpop", "rpush"],
                _ => &["del"],
            }
        }
        "SADD" => &["sadd"],
        "SREM" if deleted => &["srem", "del"],
        "SREM" => &["srem"],
        "SPOP" if deleted => &["spop", "del"],
        "SPOP" => &["spop"],
        "SMOVE" if source && deleted => &["srem", "del"],
        "SMOVE" if source => &["srem"],
        "SMOVE" => &["sadd"],
        "SUNIONSTORE" if !deleted => &["sunionstore"],
        "SINTERSTORE" if !deleted => &["sinterstore"],
        "SDIFFSTORE" if !deleted => &["sdiffstore"],
        _ if deleted => &["del"],
        _ => &["set"],
    }
}

/// Whether SET's options (after the key and value) give a TTL.
fn has_ttl_option(opts: &[Bytes]) -> bool {
    opts.iter().any(|o| {
        ["EX", "PX", "EXAT", "PXAT"]
            .iter()
            .any(|t| o.eq_ignore_ascii_case(t.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, key: &str) -> WatchEvent {
        WatchEvent {
            kind,
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::new(),
            mod_revision: 1,
            redis_events: None,
        }
    }

    fn named(cmd: &str, kind: EventKind, key: &str) -> &'static [&'static str] {
        let args: Vec<Bytes> = cmd
            .split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect();
        let mut e = [event(kind, key)];
        name_events(&mut e, &args);
        e[0].redis_events.unwrap()
    }

    #[test]
    fn commands_notify_as_redis_names_them() {
        use EventKind::{Delete, Put};
        assert_eq!(named("SET k v", Put, "k"), ["set"]);
        assert_eq!(named("set k v ex 10", Put, "k"), ["set", "expire"]);
        assert_eq!(named("INCR k", Put, "k"), ["incrby"]);
        assert_eq!(named("DEL k", Delete, "k"), ["del"]);
        assert_eq!(named("EXPIRE k 0", Delete, "k"), ["del"]);
        assert_eq!(named("EXPIRE k 10", Put, "k"), ["expire"]);
        assert_eq!(named("RENAME a b", Delete, "a"), ["rename_from"]);
        assert_eq!(named("RENAME a b", Put, "b"), ["rename_to"]);
        assert_eq!(named("LMOVE a b LEFT RIGHT", Put, "a"), ["lpop"]);
        assert_eq!(named("LMOVE a b LEFT RIGHT", Delete, "a"), ["lpop", "del"]);
        assert_eq!(named("LMOVE a b LEFT RIGHT", Put, "b"), ["rpush"]);
        assert_eq!(named("RPOPLPUSH a a", Put, "a"), ["rpop", "lpush"]);
        assert_eq!(named("SMOVE a b m", Put, "b"), ["sadd"]);
        assert_eq!(named("HSET h f v", Put, "h"), ["hset"]);
        assert_eq!(named("FLUSHALL", Delete, "k"), [] as [&str; 0]);
    }
}
