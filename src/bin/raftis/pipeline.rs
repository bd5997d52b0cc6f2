//! Pipelined requests run together: plain `SET key value` and `GET key`
//! that a client sent in one go are handed to floyd's async calls at once,
//! so they share replication rounds (group commit) and read confirmations,
//! and their replies go back in request order.
//!
//! Order as a client sees it, per key as in Redis: a GET of a key written
//! earlier in the same run, a SET of a key read or written earlier in it,
//! and every other command first wait for the run to finish. So a
//! connection reads its own writes, and a read never sees a write sent
//! after it. GETs of one key with no SET of it between them run together.
//! Requests on different keys of one run overlap in time and may take
//! effect in any order, as they could from different connections.

use crate::cluster::Redirect;
use crate::commands::{error_reply, get_reply, Context};
use crate::limits::Reservation;
use crate::resp::Reply;
use std::collections::HashSet;
use std::sync::mpsc::{channel, Receiver, Sender};

/// The requests in flight for one connection, with their places in the reply stream.
pub struct Pipeline {
    tx: Sender<(usize, Reply)>,
    rx: Receiver<(usize, Reply)>,
    /// A reply per request of the run, in order; `None` until it is answered.
    replies: Vec<Option<Reply>>,
    pending: usize,
    /// Keys the run writes, and keys it reads.
    written: HashSet<Vec<u8>>,
    read: HashSet<Vec<u8>>,
    /// What the run's requests hold of the request budget: floyd holds a
    /// copy of each until it answers.
    held: Vec<Reservation>,
}

impl Default for Pipeline {
    fn default() -> Self {
        let (tx, rx) = channel();
        Pipeline {
            tx,
            rx,
            replies: Vec::new(),
            pending: 0,
            written: HashSet::new(),
            read: HashSet::new(),
            held: Vec::new(),
        }
    }
}

/// A request the pipeline can run without waiting.
enum Async<'a> {
    Set(&'a [u8], &'a [u8]),
    Get(&'a [u8]),
    /// Another data command on one key (`args[1]`): a read or a write.
    Data {
        key: &'a [u8],
        reads: bool,
    },
}

/// Data commands whose only key is their first argument (EXISTS and
/// TOUCH too when they name one key; DEL runs on its own, as it falls back
/// to deleting key by key beside members of an earlier release).
const SINGLE_KEY: &[&str] = &[
    "SETNX",
    "SETEX",
    "PSETEX",
    "GETSET",
    "GETDEL",
    "GETEX",
    "INCR",
    "DECR",
    "INCRBY",
    "DECRBY",
    "INCRBYFLOAT",
    "APPEND",
    "STRLEN",
    "GETRANGE",
    "SETRANGE",
    "EXPIRE",
    "PEXPIRE",
    "EXPIREAT",
    "PEXPIREAT",
    "TTL",
    "PTTL",
    "EXPIRETIME",
    "PEXPIRETIME",
    "PERSIST",
    "TYPE",
    "HSET",
    "HMSET",
    "HSETNX",
    "HGET",
    "HMGET",
    "HGETALL",
    "HKEYS",
    "HVALS",
    "HLEN",
    "HEXISTS",
    "HSTRLEN",
    "HDEL",
    "HINCRBY",
    "HINCRBYFLOAT",
    "LPUSH",
    "RPUSH",
    "LPUSHX",
    "RPUSHX",
    "LPOP",
    "RPOP",
    "LRANGE",
    "LLEN",
    "LINDEX",
    "LSET",
    "LINSERT",
    "LREM",
    "LTRIM",
    "LPOS",
    "SADD",
    "SREM",
    "SCARD",
    "SMEMBERS",
    "SISMEMBER",
    "SMISMEMBER",
    "SPOP",
    "SRANDMEMBER",
];

fn as_async(args: &[Vec<u8>]) -> Option<Async<'_>> {
    let name = &args[0];
    if args.len() == 3 && name.eq_ignore_ascii_case(b"SET") {
        return Some(Async::Set(&args[1], &args[2]));
    }
    if args.len() == 2 && name.eq_ignore_ascii_case(b"GET") {
        return Some(Async::Get(&args[1]));
    }
    if args.len() < 2 {
        return None;
    }
    let upper = String::from_utf8_lossy(name).to_ascii_uppercase();
    let one_key = SINGLE_KEY.contains(&upper.as_str())
        || (args.len() == 2 && matches!(upper.as_str(), "EXISTS" | "TOUCH"));
    let reads = floyd::redis_command_reads(name)?;
    one_key.then_some(Async::Data { key: &args[1], reads })
}

impl Pipeline {
    /// Starts `args` if it can run in this run; `false` means the caller
    /// must [`finish`](Pipeline::finish) the run and execute it itself.
    pub fn try_start(&mut self, ctx: &Context, redirect: Redirect, args: &[Vec<u8>]) -> bool {
        let Some(req) = as_async(args) else {
            return false;
        };
        let (key, reads) = match &req {
            Async::Get(k) => (*k, true),
            Async::Set(k, _) => (*k, false),
            Async::Data { key, reads } => (*key, *reads),
        };
        let group = ctx.shards.group_of_key(key);
        // A redirected key is answered by `execute` (MOVED).
        if crate::cluster::moved(ctx, redirect, group, key, reads).is_some() {
            return false;
        }
        let f = ctx.shards.group(group);
        let waits = match &req {
            Async::Get(k) | Async::Data { key: k, reads: true } => self.written.contains(*k),
            // A write must not overtake a read of its key sent before it.
            Async::Set(k, _) | Async::Data { key: k, reads: false } => {
                self.written.contains(*k) || self.read.contains(*k)
            }
        };
        if waits {
            return false;
        }
        let slot = self.replies.len();
        let tx = self.tx.clone();
        let started = match req {
            Async::Set(k, v) => {
                self.written.insert(k.to_vec());
                f.write_async(k, v, move |r| {
                    let _ = tx.send((slot, r.map_or_else(|e| error_reply(&e), |_| Reply::ok())));
                })
            }
            Async::Get(k) => {
                self.read.insert(k.to_vec());
                f.read_async(k, move |r| {
                    let _ = tx.send((slot, get_reply(r)));
                })
            }
            Async::Data { key, reads } => {
                if reads {
                    self.read.insert(key.to_vec());
                } else {
                    self.written.insert(key.to_vec());
                }
                let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                f.redis_async(&refs, move |r| {
                    let reply = r.map_or_else(|e| error_reply(&e), crate::data::to_reply);
                    let _ = tx.send((slot, reply));
                })
            }
        };
        match started {
            Ok(()) => {
                self.replies.push(None);
                self.pending += 1;
            }
            Err(e) => self.replies.push(Some(error_reply(&e))),
        }
        true
    }

    /// Keeps the budget a started request holds until the run finishes.
    pub fn keep(&mut self, r: Option<Reservation>) {
        self.held.extend(r);
    }

    /// Waits for every request of the run and encodes their replies, in
    /// order. `Err` with the bytes pending once they, with what `out`
    /// holds, pass `limit` (0: none): the connection is to be closed; the
    /// replies still to come are dropped as they arrive.
    pub fn finish(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<(), usize> {
        let answered: usize = self.replies.iter().flatten().map(Reply::size).sum();
        let mut pending_bytes = out.len() + answered;
        while self.pending > 0 {
            // Every started request is answered (floyd answers each async
            // call once, at the latest at its deadline or at close).
            let Ok((slot, reply)) = self.rx.recv() else {
                break;
            };
            pending_bytes += reply.size();
            if limit > 0 && pending_bytes > limit {
                return Err(pending_bytes);
            }
            self.replies[slot] = Some(reply);
            self.pending -= 1;
        }
        self.held.clear();
        for reply in self.replies.drain(..) {
            reply
                .unwrap_or_else(|| Reply::err("ERR internal: no reply"))
                .encode(out);
        }
        self.written.clear();
        self.read.clear();
        Ok(())
    }
}
