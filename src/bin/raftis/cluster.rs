//! Redis Cluster's view of raftis: CLUSTER SLOTS, SHARDS, NODES, INFO,
//! KEYSLOT, MYID; `-MOVED` for clients that opted in; and the balancer,
//! which spreads the groups' leaders over the nodes.
//!
//! A shard is a floyd group: its slots, its leader (the "master") and its
//! followers (the "replicas"). Every node holds every group, so a node is
//! master of the groups it leads and a replica of the rest; CLUSTER NODES,
//! which gives a node one role, lists a node as the master of the slots of
//! the groups it leads, or, leading none, as a replica.

use crate::commands::{Context, Session};
use crate::resp::Reply;
use crate::shards::Shards;
use crate::slots;
use floyd::ServerStatus;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a connection is answered for a key whose group another node leads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Redirect {
    /// Run here (a follower forwards to the leader): plain clients.
    Forward,
    /// `-MOVED` for every command (READWRITE).
    Moved,
    /// `-MOVED` for writes; reads run here (READONLY).
    MovedWrites,
}

/// A node's 40-hex-digit id, the same on every node: from its Raft address.
pub fn node_id(member: &str) -> String {
    let mut out = String::with_capacity(48);
    for seed in [
        0xcbf2_9ce4_8422_2325u64,
        0x6c62_272e_07bb_0142,
        0x9e37_79b9_7f4a_7c15,
    ] {
        let mut h = seed;
        for b in member.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        out += &format!("{h:016x}");
    }
    out.truncate(40);
    out
}

fn split_addr(addr: &str) -> (String, i64) {
    match addr.parse::<std::net::SocketAddr>() {
        Ok(a) => (a.ip().to_string(), i64::from(a.port())),
        Err(_) => (addr.to_string(), 0),
    }
}

fn bulk(s: impl Into<Vec<u8>>) -> Reply {
    Reply::Bulk(s.into())
}

/// One group as CLUSTER commands see it.
struct Shard {
    first: usize,
    last: usize,
    status: ServerStatus,
}

impl Shard {
    /// Its members, the leader first (none if no leader is known).
    fn members(&self) -> Vec<String> {
        let mut m: Vec<String> = self.status.leader.iter().cloned().collect();
        m.extend(
            self.status
                .voters
                .iter()
                .filter(|v| Some(*v) != self.status.leader.as_ref())
                .cloned(),
        );
        m
    }
}

fn shards(s: &Shards) -> Vec<Shard> {
    (0..s.count())
        .map(|g| {
            let (first, last) = slots::slot_range(g, s.count());
            Shard {
                first,
                last,
                status: s.group(g).server_status(),
            }
        })
        .collect()
}

/// `CLUSTER <subcommand>`.
pub fn cluster(ctx: &Context, session: &mut Session, a: &[Vec<u8>]) -> Reply {
    let sub = String::from_utf8_lossy(&a[0]).to_ascii_uppercase();
    let s = &ctx.shards;
    match (sub.as_str(), a.len()) {
        ("KEYSLOT", 2) => Reply::Int(i64::from(slots::slot_of(&a[1]))),
        ("MYID", 1) => bulk(node_id(&s.me)),
        ("INFO", 1) => bulk(info(s)),
        ("SLOTS", 1) => cluster_slots(s),
        ("SHARDS", 1) => cluster_shards(s),
        ("NODES", 1) => bulk(cluster_nodes(s)),
        ("COUNTKEYSINSLOT", 2) => Reply::err("ERR CLUSTER COUNTKEYSINSLOT is not supported by raftis"),
        ("REDIRECTS", 2) => {
            session.redirect = match String::from_utf8_lossy(&a[1]).to_ascii_uppercase().as_str() {
                "ON" => Redirect::Moved,
                "OFF" => Redirect::Forward,
                _ => return Reply::err("ERR CLUSTER REDIRECTS takes ON or OFF"),
            };
            Reply::ok()
        }
        _ => Reply::err(format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try CLUSTER KEYSLOT, MYID, INFO, SLOTS, SHARDS, NODES.",
            sub.to_ascii_lowercase()
        )),
    }
}

fn info(s: &Shards) -> String {
    let all = shards(s);
    let ok: usize = all
        .iter()
        .filter(|sh| sh.status.leader.is_some())
        .map(|sh| sh.last - sh.first + 1)
        .sum();
    let mut masters: Vec<&String> = all.iter().filter_map(|sh| sh.status.leader.as_ref()).collect();
    masters.sort();
    masters.dedup();
    let epoch = all.iter().map(|sh| sh.status.term).max().unwrap_or(0);
    format!(
        "cluster_enabled:1\r\ncluster_state:{}\r\ncluster_slots_assigned:{}\r\ncluster_slots_ok:{ok}\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:{}\r\ncluster_known_nodes:{}\r\ncluster_size:{}\r\ncluster_current_epoch:{epoch}\r\ncluster_my_epoch:{}\r\ncluster_stats_messages_sent:0\r\ncluster_stats_messages_received:0\r\ntotal_cluster_links_buffer_limit_exceeded:0\r\nraftis_groups:{}\r\n",
        if ok == slots::SLOTS { "ok" } else { "fail" },
        slots::SLOTS,
        slots::SLOTS - ok,
        s.first().get_all_servers().len(),
        masters.len(),
        all[0].status.term,
        s.count(),
    )
}

/// A node's entry in CLUSTER SLOTS: ip, port, id, (no) metadata.
fn slot_node(s: &Shards, member: &str) -> Option<Reply> {
    let (ip, port) = split_addr(&s.redis_addr(member)?);
    Some(Reply::Array(vec![
        bulk(ip),
        Reply::Int(port),
        bulk(node_id(member)),
        Reply::Array(Vec::new()),
    ]))
}

fn cluster_slots(s: &Shards) -> Reply {
    Reply::Array(
        shards(s)
            .iter()
            .filter(|sh| sh.status.leader.is_some())
            .map(|sh| {
                let mut row = vec![Reply::Int(sh.first as i64), Reply::Int(sh.last as i64)];
                row.extend(sh.members().iter().filter_map(|m| slot_node(s, m)));
                Reply::Array(row)
            })
            .collect(),
    )
}

fn cluster_shards(s: &Shards) -> Reply {
    Reply::Array(
        shards(s)
            .iter()
            .map(|sh| {
                let nodes = sh
                    .members()
                    .iter()
                    .filter_map(|m| {
                        let (ip, port) = split_addr(&s.redis_addr(m)?);
                        let leads = sh.status.leader.as_deref() == Some(m.as_str());
                        Some(Reply::Array(vec![
                            bulk("id"),
                            bulk(node_id(m)),
                            bulk("port"),
                            Reply::Int(port),
                            bulk("ip"),
                            bulk(ip.clone()),
                            bulk("endpoint"),
                            bulk(ip),
                            bulk("role"),
                            bulk(if leads { "master" } else { "replica" }),
                            bulk("replication-offset"),
                            Reply::Int(sh.status.commit_index as i64),
                            bulk("health"),
                            bulk("online"),
                        ]))
                    })
                    .collect();
                Reply::Array(vec![
                    bulk("slots"),
                    Reply::Array(vec![Reply::Int(sh.first as i64), Reply::Int(sh.last as i64)]),
                    bulk("nodes"),
                    Reply::Array(nodes),
                ])
            })
            .collect(),
    )
}

fn cluster_nodes(s: &Shards) -> String {
    let all = shards(s);
    let mut members = s.first().get_all_servers();
    members.sort();
    let leaders: Vec<&str> = all.iter().filter_map(|sh| sh.status.leader.as_deref()).collect();
    let some_master = leaders.first().map(|m| node_id(m));
    let epoch = all.iter().map(|sh| sh.status.term).max().unwrap_or(0);
    let mut out = String::new();
    for m in &members {
        let Some(addr) = s.redis_addr(m) else { continue };
        let (_, bus) = split_addr(m);
        let ranges: Vec<String> = all
            .iter()
            .filter(|sh| sh.status.leader.as_deref() == Some(m.as_str()))
            .map(|sh| format!("{}-{}", sh.first, sh.last))
            .collect();
        let myself = if *m == s.me { "myself," } else { "" };
        let (role, master) = match (&some_master, ranges.is_empty()) {
            (Some(master), true) => ("slave", master.clone()),
            _ => ("master", "-".to_string()),
        };
        out += &format!(
            "{} {addr}@{bus} {myself}{role} {master} 0 0 {epoch} connected{}{}\n",
            node_id(m),
            if ranges.is_empty() { "" } else { " " },
            ranges.join(" ")
        );
    }
    out
}

/// `-MOVED slot ip:port` if this connection is redirected for `args` (a
/// keyed command of `group`, `reads` if it only reads) and another node,
/// whose Redis address is known, leads the group.
pub fn moved(ctx: &Context, redirect: Redirect, group: usize, key: &[u8], reads: bool) -> Option<Reply> {
    match redirect {
        Redirect::Forward => return None,
        Redirect::MovedWrites if reads => return None,
        _ => {}
    }
    let f = ctx.shards.group(group);
    if f.is_leader() {
        return None;
    }
    let leader = f.get_leader()?;
    let addr = ctx.shards.redis_addr(&leader)?;
    Some(Reply::err(format!("MOVED {} {addr}", slots::slot_of(key))))
}

/// The member that should lead group `g`: the voters in order, round robin.
fn preferred_leader(g: usize, voters: &[String]) -> Option<String> {
    let mut v = voters.to_vec();
    v.sort();
    (!v.is_empty()).then(|| v[g % v.len()].clone())
}

/// How long a member may have been silent and still take a leadership.
const TAKER_HEARD_WITHIN_MS: u64 = 2_000;

/// Allowed error in telling one connection from the next by when it was
/// made (its age is read in milliseconds, at a moment of its own).
const SAME_CONNECTION_SLACK: Duration = Duration::from_secs(1);

/// What the balancer saw of a member in a group since the member's host
/// last connected to this one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    /// Seen from early in the connection (within the window): not caught
    /// up yet, however long that takes (a snapshot to install).
    Waiting,
    /// Caught up and heard from since then: the group is handed back to it
    /// for the window's length.
    ReadySince(Instant),
    /// Seen only once the connection was older than the window, or its
    /// window is over: leaderships stay where they are (an operator's
    /// transfer holds).
    Settled,
}

/// When the balancer hands a group back to the member that should lead
/// it: at start and when the member comes back (its host's connection to
/// this one is new), once it is caught up, for `window`. Otherwise never,
/// so that an operator's transfer (say, every leader off a node before
/// its maintenance) holds until that node reconnects.
#[derive(Default)]
pub struct Comebacks {
    /// When each member's connection to this host was made (estimated).
    connected_at: HashMap<String, Instant>,
    seen: HashMap<(usize, String), Seen>,
}

impl Comebacks {
    /// Whether group `g` goes to `member` now: its host's connection is
    /// `up` old (`None`: down) and it is `ready` (caught up, heard from).
    pub fn hand_back(
        &mut self,
        g: usize,
        member: &str,
        up: Option<Duration>,
        ready: bool,
        now: Instant,
        window: Duration,
    ) -> bool {
        let Some(at) = up.and_then(|up| now.checked_sub(up)) else {
            self.forget(member);
            return false;
        };
        let new_connection = self
            .connected_at
            .get(member)
            .is_none_or(|prev| at > *prev + SAME_CONNECTION_SLACK);
        if new_connection {
            self.forget(member);
            self.connected_at.insert(member.to_string(), at);
        }
        let early = now.duration_since(at) <= window;
        let seen = self.seen.entry((g, member.to_string())).or_insert(if early {
            Seen::Waiting
        } else {
            Seen::Settled
        });
        match *seen {
            Seen::Settled => false,
            Seen::Waiting if ready => {
                *seen = Seen::ReadySince(now);
                true
            }
            Seen::Waiting => false,
            Seen::ReadySince(t) if now.duration_since(t) <= window => ready,
            Seen::ReadySince(_) => {
                *seen = Seen::Settled;
                false
            }
        }
    }

    fn forget(&mut self, member: &str) {
        self.connected_at.remove(member);
        self.seen.retain(|(_, m), _| m != member);
    }
}

/// One round of the balancer: each group this node leads but should not,
/// whose preferred leader is caught up, heard from and came back
/// ([`Comebacks`]), is handed to it. Returns how many transfers it asked for.
pub fn balance_round(shards: &Shards, comebacks: &mut Comebacks, window: Duration) -> usize {
    let mut moved = 0;
    for g in 0..shards.count() {
        let f = shards.group(g);
        let s = f.server_status();
        if s.role != "leader" {
            continue;
        }
        let Some(want) = preferred_leader(g, &s.voters) else {
            continue;
        };
        if want == s.node {
            continue;
        }
        let ready = s.peers.iter().any(|p| {
            p.id == want
                && p.match_index >= s.commit_index
                && p.last_contact_ms.is_some_and(|ms| ms <= TAKER_HEARD_WITHIN_MS)
        });
        let up = shards.connected_for(&want);
        if comebacks.hand_back(g, &want, up, ready, Instant::now(), window) {
            moved += 1;
            if let Err(e) = f.transfer_leader(&want) {
                eprintln!("raftis: group {g}: leadership to {want} not handed over: {e}");
            }
        }
    }
    moved
}

/// The background thread: keeps the address directory fresh and, with more
/// than one group, the leaders spread (at start, and when a node is back:
/// for `window` once it is caught up).
pub fn start_background(
    shards: Arc<Shards>,
    window: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("raftis-cluster".into())
        .spawn(move || {
            let (mut round, mut announced) = (0u64, false);
            let mut comebacks = Comebacks::default();
            while !stop.load(Ordering::Relaxed) {
                if (!announced || round % 10 == 0) && shards.first().has_leader() {
                    announced = shards.refresh_directory();
                }
                if shards.count() > 1 {
                    balance_round(&shards, &mut comebacks, window);
                }
                round += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
        })
        .expect("start the cluster thread")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_forty_hex_digits_and_differ_by_member() {
        let a = node_id("127.0.0.1:8901");
        assert_eq!(a.len(), 40);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(a, node_id("127.0.0.1:8901"));
        assert_ne!(a, node_id("127.0.0.1:8902"));
    }

    const WINDOW: Duration = Duration::from_secs(60);
    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_member_seen_from_early_in_its_connection_gets_its_group_once_caught_up_however_long_that_takes() {
        let mut c = Comebacks::default();
        let t0 = Instant::now();
        assert!(!c.hand_back(0, "m", Some(S), false, t0, WINDOW));
        // Catching up for longer than the window (a snapshot to install).
        assert!(!c.hand_back(0, "m", Some(91 * S), false, t0 + 90 * S, WINDOW));
        assert!(c.hand_back(0, "m", Some(101 * S), true, t0 + 100 * S, WINDOW));
        // Handed back for the window's length after that, then never.
        assert!(c.hand_back(0, "m", Some(131 * S), true, t0 + 130 * S, WINDOW));
        assert!(!c.hand_back(0, "m", Some(170 * S), true, t0 + 169 * S, WINDOW));
        assert!(!c.hand_back(0, "m", Some(171 * S), true, t0 + 170 * S, WINDOW));
    }

    #[test]
    fn a_transfer_holds_until_the_member_reconnects() {
        let mut c = Comebacks::default();
        let t0 = Instant::now() + 1000 * S;
        // First seen (this node just took the group, by a transfer) on a
        // connection older than the window: left where it is.
        assert!(!c.hand_back(3, "m", Some(600 * S), true, t0, WINDOW));
        assert!(!c.hand_back(3, "m", Some(601 * S), true, t0 + S, WINDOW));
        // Down, then a new connection (the member restarted).
        assert!(!c.hand_back(3, "m", None, false, t0 + 10 * S, WINDOW));
        assert!(!c.hand_back(3, "m", Some(S), false, t0 + 20 * S, WINDOW));
        assert!(c.hand_back(3, "m", Some(3 * S), true, t0 + 22 * S, WINDOW));
        // A reconnection seen only through a younger connection (no
        // round saw the link down) counts too.
        assert!(!c.hand_back(4, "n", Some(600 * S), true, t0, WINDOW));
        assert!(c.hand_back(4, "n", Some(2 * S), true, t0 + 30 * S, WINDOW));
    }

    #[test]
    fn leaders_are_spread_round_robin_over_the_voters_in_order() {
        let v: Vec<String> = ["c:1", "a:1", "b:1"].iter().map(|s| s.to_string()).collect();
        let picks: Vec<String> = (0..4).filter_map(|g| preferred_leader(g, &v)).collect();
        assert_eq!(picks, ["a:1", "b:1", "c:1", "a:1"]);
        assert_eq!(preferred_leader(0, &[]), None);
    }
}
