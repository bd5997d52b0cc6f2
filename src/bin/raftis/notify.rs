//! Redis keyspace notifications: with `CONFIG SET notify-keyspace-events`
//! (Redis's flags: `K` `E` and the classes `g$lshxe…`, `A` for all), every
//! change of a key, in any group, is published on this node as
//! `__keyspace@0__:<key>` (message: the event, `set`, `incrby`, `hset`,
//! `expired`…) and `__keyevent@0__:<event>` (message: the key). The
//! changes come from floyd watches on this node's replicas, which carry
//! the event names the Redis commands gave them at apply; so a
//! subscriber on any node hears every change, in each group's order, once
//! this node applied it. The setting is this node's, as in Redis.
//!
//! Like Redis's, the notifications are fire and forget: a watch that ends
//! (the node's state replaced by a snapshot, or too far behind) is
//! started again from the next change, and what happened in between is
//! not told.

use crate::pubsub::Hub;
use crate::shards::{is_reserved, Shards};
use floyd::{EventKind, WatchEvent, WatchUpdate};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

const K: u32 = 1 << 0;
const E: u32 = 1 << 1;
/// The classes, in Redis's order of `A`'s letters and the two outside it.
const CLASSES: &[(char, u32)] = &[
    ('g', 1 << 2),
    ('$', 1 << 3),
    ('l', 1 << 4),
    ('s', 1 << 5),
    ('h', 1 << 6),
    ('z', 1 << 7),
    ('x', 1 << 8),
    ('e', 1 << 9),
    ('t', 1 << 10),
    ('d', 1 << 11),
    ('m', 1 << 12),
    ('n', 1 << 13),
];
/// `A`: every class but `m` and `n`.
const ALL: u32 = (1 << 12) - (1 << 2);

/// Parses Redis's flags; `None` for a character it does not know.
pub fn parse_flags(s: &[u8]) -> Option<u32> {
    let mut flags = 0;
    for &c in s {
        flags |= match c {
            b'K' => K,
            b'E' => E,
            b'A' => ALL,
            _ => CLASSES.iter().find(|(l, _)| *l as u8 == c)?.1,
        };
    }
    Some(flags)
}

/// The flags as CONFIG GET gives them back.
pub fn flags_text(flags: u32) -> String {
    let mut out = String::new();
    if flags & ALL == ALL {
        out.push('A');
    }
    for (letter, bit) in CLASSES {
        if flags & bit != 0 && !(flags & ALL == ALL && bit & ALL != 0) {
            out.push(*letter);
        }
    }
    if flags & K != 0 {
        out.push('K');
    }
    if flags & E != 0 {
        out.push('E');
    }
    out
}

/// The class of an event name, as Redis files it.
fn class_of(event: &str) -> u32 {
    let letter = match event {
        "set" | "setrange" | "incrby" | "incrbyfloat" | "append" => '$',
        "lpush" | "rpush" | "lpop" | "rpop" | "linsert" | "lset" | "lrem" | "ltrim" => 'l',
        "sadd" | "srem" | "spop" | "sinterstore" | "sunionstore" | "sdiffstore" => 's',
        "hset" | "hdel" | "hincrby" | "hincrbyfloat" => 'h',
        "expired" => 'x',
        _ => 'g',
    };
    CLASSES.iter().find(|(l, _)| *l == letter).map_or(0, |c| c.1)
}

/// This node's setting and its watches.
pub struct Notifier {
    flags: AtomicU32,
    /// (group, watch id) while notifications are on.
    watches: Mutex<Vec<(usize, u64)>>,
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier {
            flags: AtomicU32::new(0),
            watches: Mutex::new(Vec::new()),
        }
    }
}

/// What a watch callback needs, held weakly so the watches never keep
/// the node alive.
struct Feed {
    notifier: Weak<Notifier>,
    hub: Weak<Hub>,
    shards: Weak<Shards>,
}

impl Notifier {
    pub fn flags(&self) -> u32 {
        self.flags.load(Ordering::Acquire)
    }

    /// Sets the flags; starts or stops the watches to match.
    pub fn set(self: &Arc<Self>, flags: u32, shards: &Arc<Shards>, hub: &Arc<Hub>) {
        self.flags.store(flags, Ordering::Release);
        let on = flags & (K | E) != 0 && flags & !(K | E) != 0;
        let mut watches = self.watches.lock();
        match (on, watches.is_empty()) {
            (true, true) => {
                for g in 0..shards.count() {
                    if let Some(id) = self.watch_group(g, shards, hub) {
                        watches.push((g, id));
                    }
                }
            }
            (false, false) => {
                for (g, id) in watches.drain(..) {
                    let _ = shards.group(g).unwatch(id);
                }
            }
            _ => {}
        }
    }

    /// A watch of every key of group `g` from its next change.
    fn watch_group(self: &Arc<Self>, g: usize, shards: &Arc<Shards>, hub: &Arc<Hub>) -> Option<u64> {
        let feed = Feed {
            notifier: Arc::downgrade(self),
            hub: Arc::downgrade(hub),
            shards: Arc::downgrade(shards),
        };
        let started = shards.group(g).watch(b"", b"", 0, move |update| match update {
            WatchUpdate::Events(events) => feed.publish(events),
            WatchUpdate::Ended(_) => feed.restart(g),
        });
        match started {
            Ok(id) => Some(id),
            Err(e) => {
                eprintln!("raftis: keyspace notifications of group {g} not started: {e}");
                None
            }
        }
    }
}

impl Feed {
    fn publish(&self, events: &[WatchEvent]) {
        let (Some(notifier), Some(hub)) = (self.notifier.upgrade(), self.hub.upgrade()) else {
            return;
        };
        if !hub.listens_under(b"__key") {
            return;
        }
        let flags = notifier.flags();
        for e in events.iter().filter(|e| !is_reserved(&e.key)) {
            let names: &[&str] = match (e.redis_events, e.kind) {
                (Some(names), _) => names,
                (None, EventKind::Put) => &["set"],
                (None, EventKind::Delete) => &["del"],
            };
            for name in names.iter().filter(|n| flags & class_of(n) != 0) {
                if flags & K != 0 {
                    let mut channel = b"__keyspace@0__:".to_vec();
                    channel.extend_from_slice(&e.key);
                    hub.publish(&channel, name.as_bytes());
                }
                if flags & E != 0 {
                    let channel = format!("__keyevent@0__:{name}");
                    hub.publish(channel.as_bytes(), &e.key);
                }
            }
        }
    }

    /// The watch of group `g` ended: another from the next change, off
    /// floyd's watch thread (which called this), unless notifications
    /// were turned off meanwhile.
    fn restart(&self, g: usize) {
        let (notifier, hub, shards) = (self.notifier.clone(), self.hub.clone(), self.shards.clone());
        let _ = std::thread::Builder::new()
            .name("raftis-notify".into())
            .spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                let (Some(n), Some(h), Some(s)) = (notifier.upgrade(), hub.upgrade(), shards.upgrade())
                else {
                    return;
                };
                let mut watches = n.watches.lock();
                let Some(at) = watches.iter().position(|(group, _)| *group == g) else {
                    return;
                };
                if let Some(id) = n.watch_group(g, &s, &h) {
                    watches[at].1 = id;
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_and_print_as_redis_does() {
        assert_eq!(parse_flags(b"KEA").map(flags_text).as_deref(), Some("AKE"));
        assert_eq!(parse_flags(b"Kx$").map(flags_text).as_deref(), Some("$xK"));
        assert_eq!(parse_flags(b""), Some(0));
        assert_eq!(parse_flags(b"Kq"), None);
        assert_eq!(class_of("incrby"), CLASSES[1].1);
        assert_eq!(class_of("expired"), CLASSES[6].1);
        assert_eq!(class_of("rename_to"), CLASSES[0].1);
    }
}
