//! Pub/Sub on one node: SUBSCRIBE, PSUBSCRIBE, UNSUBSCRIBE, PUNSUBSCRIBE,
//! PUBLISH and PUBSUB, as Redis (RESP2). PUBLISH reaches the subscribers
//! connected to this node (it is not replicated); the keyspace
//! notifications (`notify.rs`) are published on every node for every
//! change, so a subscriber may be on any node.
//!
//! A connection in subscribe mode gets a writer thread: messages go to it
//! through a bounded queue, and so do the replies to the commands the
//! connection still reads, so the two never interleave. A subscriber that
//! falls 100,000 messages behind is disconnected, as Redis's
//! `client-output-buffer-limit pubsub` does.

use crate::commands::{Context, Session};
use crate::resp::{Parsed, Parser, Reply};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::RwLock;
use std::collections::{BTreeSet, HashMap};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Messages a subscriber may have queued before it is disconnected.
const QUEUE: usize = 100_000;

/// Where a subscriber's messages go.
#[derive(Clone)]
struct Outbox {
    tx: Sender<Vec<u8>>,
    overflowed: Arc<AtomicBool>,
}

impl Outbox {
    fn send(&self, msg: Vec<u8>) {
        match self.tx.try_send(msg) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => self.overflowed.store(true, Ordering::Release),
        }
    }
}

type Subscribers = HashMap<Vec<u8>, HashMap<u64, Outbox>>;

/// This node's channels and patterns and who listens.
#[derive(Default)]
pub struct Hub {
    subs: RwLock<(Subscribers, Subscribers)>,
}

fn encode(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    Reply::Array(parts.iter().map(|p| Reply::Bulk(p.to_vec())).collect()).encode(&mut out);
    out
}

impl Hub {
    /// Sends `payload` to `channel`'s subscribers and to the patterns that
    /// match it; how many received it.
    pub fn publish(&self, channel: &[u8], payload: &[u8]) -> usize {
        let subs = self.subs.read();
        let mut n = 0;
        if let Some(to) = subs.0.get(channel) {
            let msg = encode(&[b"message", channel, payload]);
            for o in to.values() {
                o.send(msg.clone());
            }
            n += to.len();
        }
        for (pattern, to) in &subs.1 {
            if glob(pattern, channel) {
                let msg = encode(&[b"pmessage", pattern, channel, payload]);
                for o in to.values() {
                    o.send(msg.clone());
                }
                n += to.len();
            }
        }
        n
    }

    /// Whether anyone listens to a channel that starts with `prefix`, or
    /// to a pattern (which might match one).
    pub fn listens_under(&self, prefix: &[u8]) -> bool {
        let subs = self.subs.read();
        !subs.1.is_empty() || subs.0.keys().any(|c| c.starts_with(prefix))
    }

    /// How many channels and patterns have a subscriber here (INFO stats).
    pub fn counts(&self) -> (usize, usize) {
        let subs = self.subs.read();
        (subs.0.len(), subs.1.len())
    }

    /// `PUBSUB CHANNELS [pattern]`, `NUMSUB [channel…]`, `NUMPAT`.
    pub fn pubsub(&self, a: &[Vec<u8>]) -> Reply {
        let subs = self.subs.read();
        let sub = String::from_utf8_lossy(&a[0]).to_ascii_uppercase();
        match (sub.as_str(), a.len()) {
            ("CHANNELS", 1 | 2) => Reply::Array(
                subs.0
                    .keys()
                    .filter(|c| a.get(1).is_none_or(|p| glob(p, c)))
                    .map(|c| Reply::Bulk(c.clone()))
                    .collect(),
            ),
            ("NUMSUB", _) => Reply::Array(
                a[1..]
                    .iter()
                    .flat_map(|c| {
                        [
                            Reply::Bulk(c.clone()),
                            Reply::Int(subs.0.get(c).map_or(0, |s| s.len()) as i64),
                        ]
                    })
                    .collect(),
            ),
            ("NUMPAT", 1) => Reply::Int(subs.1.values().map(|s| s.len() as i64).sum()),
            _ => Reply::err(format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'",
                sub.to_ascii_lowercase()
            )),
        }
    }

    fn add(&self, pattern: bool, name: &[u8], id: u64, to: &Outbox) {
        let mut subs = self.subs.write();
        let map = if pattern { &mut subs.1 } else { &mut subs.0 };
        map.entry(name.to_vec()).or_default().insert(id, to.clone());
    }

    fn remove(&self, pattern: bool, name: &[u8], id: u64) {
        let mut subs = self.subs.write();
        let map = if pattern { &mut subs.1 } else { &mut subs.0 };
        if let Some(s) = map.get_mut(name) {
            s.remove(&id);
            if s.is_empty() {
                map.remove(name);
            }
        }
    }
}

/// Redis's glob for channels (floyd's, as KEYS and SCAN use it).
pub use floyd::redis_glob as glob;

/// One connection's subscriptions.
struct Subscriber<'a> {
    hub: &'a Hub,
    id: u64,
    outbox: Outbox,
    channels: BTreeSet<Vec<u8>>,
    patterns: BTreeSet<Vec<u8>>,
}

impl Subscriber<'_> {
    fn count(&self) -> i64 {
        (self.channels.len() + self.patterns.len()) as i64
    }

    fn confirm(&self, kind: &str, name: Option<&[u8]>) {
        let mut out = Vec::new();
        Reply::Array(vec![
            Reply::Bulk(kind.as_bytes().to_vec()),
            name.map_or(Reply::Nil, |n| Reply::Bulk(n.to_vec())),
            Reply::Int(self.count()),
        ])
        .encode(&mut out);
        self.outbox.send(out);
    }

    fn subscribe(&mut self, pattern: bool, names: &[Vec<u8>]) {
        for n in names {
            let set = if pattern {
                &mut self.patterns
            } else {
                &mut self.channels
            };
            if set.insert(n.clone()) {
                self.hub.add(pattern, n, self.id, &self.outbox);
            }
            self.confirm(if pattern { "psubscribe" } else { "subscribe" }, Some(n));
        }
    }

    /// Unsubscribes from `names` (all of the kind if none are given).
    fn unsubscribe(&mut self, pattern: bool, names: &[Vec<u8>]) {
        let kind = if pattern { "punsubscribe" } else { "unsubscribe" };
        let set = if pattern { &self.patterns } else { &self.channels };
        let names: Vec<Vec<u8>> = if names.is_empty() {
            set.iter().cloned().collect()
        } else {
            names.to_vec()
        };
        if names.is_empty() {
            return self.confirm(kind, None);
        }
        for n in names {
            let set = if pattern {
                &mut self.patterns
            } else {
                &mut self.channels
            };
            if set.remove(&n) {
                self.hub.remove(pattern, &n, self.id);
            }
            self.confirm(kind, Some(&n));
        }
    }

    fn unsubscribe_silently(&mut self) {
        for n in std::mem::take(&mut self.channels) {
            self.hub.remove(false, &n, self.id);
        }
        for n in std::mem::take(&mut self.patterns) {
            self.hub.remove(true, &n, self.id);
        }
    }
}

/// What the connection does after subscribe mode.
pub enum After {
    /// Every subscription is gone: back to ordinary commands.
    Commands,
    /// Close the connection.
    Close,
}

/// Serves a connection in subscribe mode from its first (P)SUBSCRIBE
/// `first`, writing what `out` holds first.
pub fn serve(
    stream: &mut TcpStream,
    ctx: &Context,
    session: &Session,
    parser: &mut Parser,
    out: &mut Vec<u8>,
    first: &[Vec<u8>],
) -> After {
    let Ok(mut writer_sock) = stream.try_clone() else {
        return After::Close;
    };
    let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(QUEUE);
    let overflowed = Arc::new(AtomicBool::new(false));
    tx.send(std::mem::take(out)).ok();
    let writer = {
        let overflowed = overflowed.clone();
        std::thread::Builder::new()
            .name("raftis-sub".into())
            .stack_size(256 << 10)
            .spawn(move || write_messages(&mut writer_sock, &rx, &overflowed))
    };
    let Ok(writer) = writer else { return After::Close };
    let mut me = Subscriber {
        hub: &ctx.hub,
        id: session.id,
        outbox: Outbox {
            tx,
            overflowed: overflowed.clone(),
        },
        channels: BTreeSet::new(),
        patterns: BTreeSet::new(),
    };
    let after = run(stream, ctx, parser, &mut me, first);
    me.unsubscribe_silently();
    drop(me);
    // The writer drains what is queued, then ends.
    if writer.join().unwrap_or(false) {
        ctx.output_disconnections.fetch_add(1, Ordering::Relaxed);
        eprintln!("raftis: closing a subscriber {QUEUE} messages behind");
        return After::Close;
    }
    after
}

/// The reading side of subscribe mode.
fn run(
    stream: &mut TcpStream,
    ctx: &Context,
    parser: &mut Parser,
    me: &mut Subscriber<'_>,
    first: &[Vec<u8>],
) -> After {
    let mut input = vec![0u8; 16 << 10];
    let mut next = Some(first.to_vec());
    loop {
        if let Some(args) = next.take() {
            if let Some(after) = command(ctx, me, &args) {
                return after;
            }
            if me.count() == 0 {
                return After::Commands;
            }
        }
        match parser.next() {
            Ok(Some(Parsed::Command(args))) => next = Some(args),
            Ok(Some(Parsed::Refused(msg))) => {
                let mut out = Vec::new();
                Reply::Error(msg).encode(&mut out);
                me.outbox.send(out);
            }
            Ok(None) => {
                if me.outbox.overflowed.load(Ordering::Acquire) {
                    return After::Close;
                }
                match stream.read(&mut input) {
                    Ok(0) => return After::Close,
                    Ok(n) => parser.feed(&input[..n]),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return After::Close,
                }
            }
            Err(_) => return After::Close,
        }
    }
}

/// One command in subscribe mode; `Some` to leave it.
fn command(ctx: &Context, me: &mut Subscriber<'_>, args: &[Vec<u8>]) -> Option<After> {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
    let a = &args[1..];
    ctx.registry.commands.fetch_add(1, Ordering::Relaxed);
    let reply = match (name.as_str(), a.len()) {
        ("SUBSCRIBE" | "PSUBSCRIBE", n) if n >= 1 => {
            me.subscribe(name == "PSUBSCRIBE", a);
            return None;
        }
        ("UNSUBSCRIBE" | "PUNSUBSCRIBE", _) => {
            me.unsubscribe(name == "PUNSUBSCRIBE", a);
            return None;
        }
        ("PING", 0) => Reply::Array(vec![Reply::Bulk(b"pong".to_vec()), Reply::Bulk(Vec::new())]),
        ("PING", 1) => Reply::Array(vec![Reply::Bulk(b"pong".to_vec()), Reply::Bulk(a[0].clone())]),
        ("QUIT", _) => {
            let mut out = Vec::new();
            Reply::ok().encode(&mut out);
            me.outbox.send(out);
            return Some(After::Close);
        }
        ("RESET", 0) => {
            me.unsubscribe_silently();
            let mut out = Vec::new();
            Reply::Simple("RESET".into()).encode(&mut out);
            me.outbox.send(out);
            return Some(After::Commands);
        }
        _ => Reply::err(format!(
            "ERR Can't execute '{}': only (P)SUBSCRIBE / (P)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
            name.to_ascii_lowercase()
        )),
    };
    let mut out = Vec::new();
    reply.encode(&mut out);
    me.outbox.send(out);
    None
}

/// The writing side: sends what is queued, in order, until the queue's
/// senders are gone; `true` if it stopped because the subscriber fell too
/// far behind (the connection is then shut down).
fn write_messages(sock: &mut TcpStream, rx: &Receiver<Vec<u8>>, overflowed: &AtomicBool) -> bool {
    loop {
        if overflowed.load(Ordering::Acquire) {
            let _ = sock.shutdown(std::net::Shutdown::Both);
            return true;
        }
        match rx.recv_timeout(Duration::from_millis(250)) {
            Ok(mut msg) => {
                // What else is queued goes in the same write.
                while msg.len() < 64 << 10 {
                    match rx.try_recv() {
                        Ok(more) => msg.extend_from_slice(&more),
                        Err(_) => break,
                    }
                }
                if sock.write_all(&msg).is_err() {
                    let _ = sock.shutdown(std::net::Shutdown::Both);
                    return false;
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn channel_patterns_are_redis_globs() {
        assert!(glob(b"news.*", b"news.art"));
        assert!(!glob(b"news.*", b"old.news"));
        assert!(glob(b"h?llo", b"hello") && !glob(b"h?llo", b"hllo"));
        assert!(glob(b"h[ae]llo", b"hallo") && !glob(b"h[ae]llo", b"hillo"));
        assert!(glob(b"h[^e]llo", b"hallo") && !glob(b"h[^e]llo", b"hello"));
        assert!(glob(b"h[a-b]llo", b"hbllo") && !glob(b"h[a-b]llo", b"hcllo"));
        assert!(glob(b"a\\*", b"a*") && !glob(b"a\\*", b"ab"));
        assert!(glob(b"__keyspace@0__:*", b"__keyspace@0__:k"));
        assert!(!glob(b"News", b"news"), "case-sensitive");
    }
}
