//! Redis's commands on the group's keys (protocol 8): strings, counters,
//! TTLs and the commands on keys, each one atomic step
//! (`state_machine/redis/`). raftis speaks RESP over these; a program can
//! call them directly.

use super::Floyd;
use crate::error::{Error, Result};
use crate::state_machine::CommandKind;
use crate::wire::{redis_reply::Kind, RedisBatch, RedisCall, RedisGuard, RedisReplies, RedisReply};
use bytes::Bytes;
use prost::Message as _;

/// A Redis reply, of RESP2's kinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisValue {
    /// A status (`+OK`).
    Status(String),
    /// An error reply (`-ERR ...`, `-WRONGTYPE ...`): the command ran (or
    /// was refused) alike on every replica; nothing went wrong with floyd.
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    /// A missing value.
    Nil,
    Array(Vec<RedisValue>),
}

impl From<RedisReply> for RedisValue {
    fn from(r: RedisReply) -> Self {
        match r.kind {
            Some(Kind::Status(s)) => RedisValue::Status(s),
            Some(Kind::Error(e)) => RedisValue::Error(e),
            Some(Kind::Integer(n)) => RedisValue::Int(n),
            Some(Kind::Bulk(b)) => RedisValue::Bulk(b.to_vec()),
            Some(Kind::Nil(_)) | None => RedisValue::Nil,
            Some(Kind::Array(a)) => RedisValue::Array(a.items.into_iter().map(RedisValue::from).collect()),
        }
    }
}

/// Whether floyd runs the Redis command `name` (any case): `Some(true)` if
/// it only reads, `Some(false)` if it writes, `None` if it is not one.
pub fn redis_command_reads(name: &[u8]) -> Option<bool> {
    crate::state_machine::redis::is_read(name)
}

/// Whether `s` matches Redis's glob `pattern` (KEYS, SCAN MATCH,
/// PSUBSCRIBE): `*`, `?`, `[abc]`, `[^a]`, `[a-z]`, `\` to take the next
/// byte as it is; case-sensitive, in time linear in the pattern times the text.
pub fn redis_glob(pattern: &[u8], s: &[u8]) -> bool {
    crate::state_machine::redis::glob_matches(pattern, s)
}

/// The Redis commands floyd runs, upper case.
pub fn redis_commands() -> impl Iterator<Item = &'static str> {
    crate::state_machine::redis::command_names()
}

impl Floyd {
    /// Runs one Redis command (`args[0]` its name) on the group's keys. A
    /// command that writes is one log entry, applied atomically; one that
    /// reads is served linearizably by ReadIndex (on a follower too), with
    /// no log entry. Redis's refusals (a bad argument, `WRONGTYPE`) come
    /// back as [`RedisValue::Error`]; `Err` is floyd's (no leader, a
    /// timeout with the outcome unknown, an unknown command).
    pub fn redis(&self, args: &[&[u8]]) -> Result<RedisValue> {
        let mut out = self.redis_atomic(&[args.to_vec()])?;
        Ok(out.pop().unwrap_or(RedisValue::Nil))
    }

    /// Runs Redis commands in order as one atomic step (MULTI/EXEC): one
    /// log entry if any of them writes, else one linearizable read. One
    /// reply per command; a command's error reply does not undo the others
    /// (as in Redis). Listing keys (KEYS, SCAN, DBSIZE, RANDOMKEY) runs only
    /// among reads.
    pub fn redis_atomic(&self, commands: &[Vec<&[u8]>]) -> Result<Vec<RedisValue>> {
        self.redis_atomic_if(&[], commands).map(|r| r.unwrap_or_default())
    }

    /// [`Floyd::redis_atomic`] run only if every key of `guards` still has
    /// the `mod_revision` given (0: the key is missing), all checked in the
    /// same step (Redis's WATCH, with [`Floyd::key_revision`] read first):
    /// `None`, and nothing run, if one changed.
    pub fn redis_atomic_if(
        &self,
        guards: &[(&[u8], u64)],
        commands: &[Vec<&[u8]>],
    ) -> Result<Option<Vec<RedisValue>>> {
        self.key_value_only("redis")?;
        let mut reads = true;
        for c in commands {
            let name = c.first().copied().unwrap_or_default();
            match redis_command_reads(name) {
                Some(r) => reads &= r,
                None => {
                    return Err(Error::InvalidArgument(format!(
                        "unknown Redis command '{}'",
                        String::from_utf8_lossy(name)
                    )))
                }
            }
        }
        let batch = RedisBatch {
            calls: commands
                .iter()
                .map(|c| RedisCall {
                    args: c.iter().map(|a| Bytes::copy_from_slice(a)).collect(),
                })
                .collect(),
            guards: guards
                .iter()
                .map(|(key, mod_revision)| RedisGuard {
                    key: Bytes::copy_from_slice(key),
                    mod_revision: *mod_revision,
                })
                .collect(),
        };
        // (Guards are checked in the log, with the commands.)
        let cmd = if reads && guards.is_empty() {
            CommandKind::RedisRead(batch)
        } else {
            CommandKind::Redis(batch)
        };
        let bytes = self.execute(cmd)?;
        let replies = RedisReplies::decode(bytes.as_ref())
            .map_err(|e| Error::Internal(format!("Redis replies do not decode: {e}")))?;
        if replies.aborted {
            return Ok(None);
        }
        Ok(Some(replies.items.into_iter().map(RedisValue::from).collect()))
    }

    /// [`Floyd::redis`] without waiting: `done` gets the reply, as for
    /// [`Floyd::write_async`] (`Err` now: refused at once, `done` is not
    /// called).
    pub fn redis_async(
        &self,
        args: &[&[u8]],
        done: impl FnOnce(Result<RedisValue>) + Send + 'static,
    ) -> Result<()> {
        self.key_value_only("redis_async")?;
        let name = args.first().copied().unwrap_or_default();
        let Some(reads) = redis_command_reads(name) else {
            return Err(Error::InvalidArgument(format!(
                "unknown Redis command '{}'",
                String::from_utf8_lossy(name)
            )));
        };
        let batch = RedisBatch {
            calls: vec![RedisCall {
                args: args.iter().map(|a| Bytes::copy_from_slice(a)).collect(),
            }],
            guards: Vec::new(),
        };
        let cmd = if reads {
            CommandKind::RedisRead(batch)
        } else {
            CommandKind::Redis(batch)
        };
        self.node.execute_async(
            cmd,
            Box::new(move |r| {
                done(r.and_then(|bytes| {
                    let replies = RedisReplies::decode(bytes.as_ref())
                        .map_err(|e| Error::Internal(format!("Redis replies do not decode: {e}")))?;
                    Ok(replies
                        .items
                        .into_iter()
                        .next()
                        .map_or(RedisValue::Nil, RedisValue::from))
                }))
            }),
        )
    }

    /// `key`'s `mod_revision` (0 if it is missing or expired), read
    /// linearizably: what a WATCH remembers.
    pub fn key_revision(&self, key: &[u8]) -> Result<u64> {
        let mut end = key.to_vec();
        end.push(0);
        let page = self.scan(key, &end, 1)?;
        Ok(page
            .kvs
            .first()
            .filter(|kv| kv.key == key)
            .map_or(0, |kv| kv.meta.mod_revision))
    }
}
