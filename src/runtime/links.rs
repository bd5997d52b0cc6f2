//! A host's links: one per remote host that any of its groups has as a
//! member (or as a leader outside its configuration), carrying the frames of
//! all of them; made and retired as the groups' configurations change.
//! Also what a group's callers waiting for a leader watch (the leader as
//! last seen, the links that are up) and when each peer was last heard from.

use super::inbound::HostInbound;
use super::node::Node;
use crate::core::{Envelope, RaftCore};
use crate::error::Result;
use crate::options::Options;
use crate::storage::GroupId;
use crate::transport::{message_to_body, Identity, MemberUnion, PeerConfig, PeerLink};
use crate::wire::frame::Body;
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The host's links to its peers. Thread-safe.
#[derive(Default)]
pub struct Links {
    peers: RwLock<HashMap<String, Arc<PeerLink>>>,
    /// Per group, the peers it wants links to.
    wanted: Mutex<MemberUnion>,
    /// Links no group wants any more, kept until then: a removed server
    /// still gets the answer to its own request and the acknowledgements
    /// that let a removed leader learn the commit.
    retiring: Mutex<HashMap<String, Instant>>,
    /// Links told to stop, joined once finished (or at close).
    stopped: Mutex<Vec<Arc<PeerLink>>>,
    /// What the links deliver to; set once at start.
    handler: OnceLock<Arc<HostInbound>>,
    /// When each peer was last heard from (status only).
    contacts: Mutex<HashMap<String, Instant>>,
}

impl Links {
    pub(super) fn set_handler(&self, handler: Arc<HostInbound>) {
        let _ = self.handler.set(handler);
    }

    pub fn peer(&self, id: &str) -> Option<Arc<PeerLink>> {
        self.peers.read().get(id).cloned()
    }

    /// Every peer and its link (metrics).
    pub fn all(&self) -> Vec<(String, Arc<PeerLink>)> {
        let mut links: Vec<(String, Arc<PeerLink>)> = self
            .peers
            .read()
            .iter()
            .map(|(p, l)| (p.clone(), l.clone()))
            .collect();
        links.sort_by(|a, b| a.0.cmp(&b.0));
        links
    }

    /// Every link, for closing.
    pub fn take_all(&self) -> Vec<Arc<PeerLink>> {
        let mut links: Vec<Arc<PeerLink>> = self.peers.write().drain().map(|(_, l)| l).collect();
        links.append(&mut self.stopped.lock());
        links
    }

    /// Makes the links serve what `group` wants (`opts`: the group's, for a
    /// link it is the first to want); links no group wants any more retire
    /// after a grace period ([`Links::reap`]).
    fn want(&self, group: GroupId, wanted: BTreeSet<String>, opts: &Options, cfg: &LinkBase) -> Result<()> {
        let Some(handler) = self.handler.get() else {
            return Ok(());
        };
        let unwanted = self.wanted.lock().set(group, Some(wanted.clone())).removed;
        let mut peers = self.peers.write();
        let mut retiring = self.retiring.lock();
        let grace = Instant::now() + link_grace(opts);
        for p in unwanted.into_iter().filter(|p| peers.contains_key(p)) {
            retiring.entry(p).or_insert(grace);
        }
        for peer in wanted {
            retiring.remove(&peer);
            if let std::collections::hash_map::Entry::Vacant(slot) = peers.entry(peer) {
                let link = PeerLink::spawn(cfg.peer_config(slot.key(), opts), handler.clone())?;
                slot.insert(Arc::new(link));
            }
        }
        Ok(())
    }

    /// A group closed: the links only it wanted retire, and a host of many
    /// groups forgets its members.
    pub(super) fn forget(&self, identity: &Identity, group: GroupId, private: bool) {
        let unwanted = self.wanted.lock().set(group, None).removed;
        if !private {
            identity.update_group(group, None::<Vec<String>>);
        }
        let peers = self.peers.read();
        let mut retiring = self.retiring.lock();
        let grace = Instant::now() + Duration::from_secs(1);
        for p in unwanted.into_iter().filter(|p| peers.contains_key(p)) {
            retiring.entry(p).or_insert(grace);
        }
    }

    /// Stops links no group has wanted for longer than the grace period
    /// (without waiting for them: the caller keeps ticking).
    pub fn reap(&self, now: Instant) {
        self.stopped.lock().retain(|l| !l.is_finished());
        if self.retiring.lock().values().all(|at| *at > now) {
            return;
        }
        let mut peers = self.peers.write();
        let mut retiring = self.retiring.lock();
        let due: Vec<String> = retiring
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(p, _)| p.clone())
            .collect();
        for peer in due {
            retiring.remove(&peer);
            if let Some(link) = peers.remove(&peer) {
                tracing::info!(peer = %peer, "no group has it as a member any more: link closed");
                link.request_stop();
                self.stopped.lock().push(link);
            }
        }
    }

    pub(super) fn note_contact(&self, peer: &str) {
        let now = Instant::now();
        let mut contacts = self.contacts.lock();
        match contacts.get_mut(peer) {
            Some(at) => *at = now,
            None => {
                contacts.insert(peer.to_string(), now);
            }
        }
    }

    /// Milliseconds since `peer` was last heard from.
    pub fn last_contact_ms(&self, peer: &str) -> Option<u64> {
        let at = *self.contacts.lock().get(peer)?;
        Some(u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX))
    }
}

/// What every link of a host shares.
struct LinkBase<'a> {
    node: &'a Node,
}

impl LinkBase<'_> {
    fn peer_config(&self, peer: &str, opts: &Options) -> PeerConfig {
        let host = &self.node.host;
        let heartbeat = Duration::from_micros(opts.heartbeat_us);
        let liveness_timeout = (3 * heartbeat).max(Duration::from_micros(opts.check_leader_us));
        // A host of many groups pings less often: with its idle groups quiet,
        // pings are most of the traffic between two hosts, and four per
        // liveness timeout still tell a dead host within it.
        let keepalive = match host.private {
            true => heartbeat,
            false => liveness_timeout / 4,
        };
        PeerConfig {
            name: opts.local_port.to_string(),
            local_ip: host.local_ip,
            my_id: host.id.clone(),
            peer: peer.to_string(),
            identity: host.identity.clone(),
            connect_timeout: heartbeat.max(Duration::from_millis(200)),
            write_timeout: Duration::from_micros(opts.check_leader_us),
            // Within the server's idle timeout, whatever the group's heartbeat.
            keepalive: keepalive.min(Duration::from_secs(1)),
            liveness_timeout,
            in_doubt_window: opts.request_timeout,
            max_backoff: Duration::from_micros(opts.check_leader_us / 2).max(heartbeat),
            snapshot_chunk_bytes: usize::try_from(opts.snapshot_chunk_bytes)
                .unwrap_or(crate::transport::DEFAULT_SNAPSHOT_CHUNK_BYTES),
            snapshot_bytes_per_sec: opts.snapshot_bytes_per_sec,
            tls: host.tls.clone(),
        }
    }
}

impl Node {
    pub(crate) fn peer(&self, id: &str) -> Option<Arc<PeerLink>> {
        self.host.links.peer(id)
    }

    /// Milliseconds since `peer` was last heard from.
    pub fn last_contact_ms(&self, peer: &str) -> Option<u64> {
        self.host.links.last_contact_ms(peer)
    }

    /// Makes the links match the configuration in force (plus the leader, who
    /// may be outside it), and the handshake rules follow it.
    pub(super) fn reconcile_links(&self, core: &RaftCore) -> Result<()> {
        let m = core.membership();
        let host = &self.host;
        if host.private {
            host.identity.update(&m.uid, m.members().cloned());
        } else {
            host.identity.update_group(self.group, Some(m.members().cloned()));
        }
        let mut wanted: BTreeSet<String> = m.members().cloned().collect();
        wanted.extend(core.leader().map(str::to_string));
        wanted.extend(core.replication_targets());
        wanted.remove(&self.id);
        host.links
            .want(self.group, wanted, &self.opts, &LinkBase { node: self })
    }

    /// Whether every member of the configuration but this node announced
    /// protocol 8 (Redis commands) in its link's last handshake, or the log
    /// says so: a Redis command entry since the latest configuration entry
    /// was proposed while every member of that configuration had (members
    /// are never downgraded), so a leader restarted while a member is down
    /// still takes Redis commands. Looks back at most
    /// [`crate::core::MARK_SCAN_ENTRIES`] entries.
    pub(super) fn members_speak_v8(&self) -> bool {
        self.with_core(|core| {
            let known = core.config_index() + 1;
            if self.v8_config.load(std::sync::atomic::Ordering::Relaxed) == known {
                return true;
            }
            let handshakes = core.membership().members().filter(|m| **m != self.id).all(|m| {
                self.host
                    .links
                    .peer(m)
                    .is_some_and(|l| l.speaks(crate::transport::DATA_TYPES_VERSION))
            });
            let speak = handshakes || log_has_redis_entry(core, &mut self.v8_scanned.lock());
            if speak {
                self.v8_config.store(known, std::sync::atomic::Ordering::Relaxed);
            }
            speak
        })
    }

    /// Whether some member but this node has no link up, so what release it
    /// runs is not known yet (a leader just elected, a member restarting).
    pub(super) fn a_member_unheard(&self) -> bool {
        self.inspect(|core| {
            core.membership()
                .members()
                .filter(|m| **m != self.id)
                .any(|m| self.host.links.peer(m).is_none_or(|l| !l.is_connected()))
        })
    }

    /// Whether a command `cmd` on this node as leader waits for members
    /// not heard from yet (`execute.rs`): a Redis command while some
    /// member's release is unknown only because its link is down.
    pub(super) fn waits_for_handshakes(&self, cmd: &crate::state_machine::CommandKind) -> bool {
        cmd.needs_protocol_8() && !self.members_speak_v8() && self.a_member_unheard()
    }

    /// Whether every member of `core`'s configuration but this node speaks
    /// protocol 6 by its link's last handshake, or by the log
    /// (`RaftCore::log_says_protocol_6`): only then do the entries
    /// this node leads carry the per-term time rule, which replicas of the
    /// previous release would not follow (see `state_machine::log_time`).
    pub(super) fn members_speak_v6(&self, core: &RaftCore) -> bool {
        let handshakes = core
            .membership()
            .members()
            .filter(|m| **m != self.id)
            .all(|m| self.host.links.peer(m).is_some_and(|l| l.speaks_groups()));
        // Or the log says so (a member down since this node started).
        handshakes || core.log_says_protocol_6()
    }

    /// A leader marks the entries it appends from now on as protocol 6 if
    /// every member speaks it ([`Node::members_speak_v6`]); what it decided,
    /// or `None` on a non-leader (which appends nothing of its own).
    pub(super) fn refresh_marking(&self, core: &mut RaftCore) -> Option<bool> {
        if core.role() != crate::core::Role::Leader {
            return None;
        }
        let v6 = self.members_speak_v6(core);
        core.set_time_rule_2(v6);
        Some(v6)
    }

    /// Records the leader and wakes callers waiting for one; returns it if it changed.
    pub(super) fn note_leader(&self, leader: Option<&str>) -> Option<Option<String>> {
        let mut watch = self.watch.lock();
        if watch.leader.as_deref() == leader {
            return None;
        }
        watch.leader = leader.map(str::to_string);
        if !self.waiters.parked.is_empty() {
            self.wake_primary();
        }
        Some(watch.leader.clone())
    }

    /// Records whether the link to `peer` is connected, waking callers waiting for it.
    pub fn note_link(&self, peer: &str, connected: bool) {
        let mut watch = self.watch.lock();
        let changed = if connected {
            watch.links_up.insert(peer.to_string())
        } else {
            watch.links_up.remove(peer)
        };
        if changed && !self.waiters.parked.is_empty() {
            self.wake_primary();
        }
    }

    pub fn send_message(&self, env: Envelope) {
        if let crate::core::Message::InstallSnapshot(m) = env.msg {
            return self.offer_snapshot(&env.to, m);
        }
        if let crate::core::Message::AppendEntries(m) = &env.msg {
            if m.entries.is_empty() {
                self.host
                    .heartbeats_sent
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let Some(msg) = super::coalesce::set_aside(&self.host, &env.to, self.group, env.msg) else {
            return;
        };
        if let Some(body) = message_to_body(msg) {
            self.send_frame(&env.to, body);
        }
    }

    pub fn send_frame(&self, to: &str, body: Body) -> bool {
        match self.peer(to) {
            Some(link) => link.send(self.group, body),
            None => false,
        }
    }
}

/// How long a link to a peer that left the configuration stays: long
/// enough for the answers and acknowledgements it still has to carry.
fn link_grace(opts: &Options) -> Duration {
    Duration::from_micros(opts.check_leader_us.saturating_mul(2)).max(Duration::from_secs(1))
}

/// How far a look found no Redis command in the log: none after the
/// configuration entry at `config` up to entry `index` (of `term`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ScanMark {
    config: u64,
    index: u64,
    term: u64,
}

/// Whether the log holds a Redis command entry after its latest
/// configuration entry, looking back at most
/// [`crate::core::MARK_SCAN_ENTRIES`] entries. What an earlier look found
/// none in (`scanned`: the same configuration, and its last entry still in
/// the log, so every entry before it too) is not looked at again: each
/// entry is decoded once, not on every Redis command while a member is
/// unheard.
fn log_has_redis_entry(core: &RaftCore, scanned: &mut Option<ScanMark>) -> bool {
    use crate::wire::EntryType;
    let log = core.log();
    let last = log.last_index();
    let config = core.config_index();
    let mut from = last
        .saturating_sub(crate::core::MARK_SCAN_ENTRIES)
        .max(log.first_index().max(1))
        .max(config + 1);
    if let Some(m) = *scanned {
        if m.config == config && log.term(m.index) == Some(m.term) {
            from = from.max(m.index + 1);
        }
    }
    // Newest first: a Redis command is usually among the last entries.
    for index in (from..=last).rev() {
        let Some(e) = log.entry(index) else { break };
        if e.r#type == EntryType::EntryCommand as i32
            && matches!(
                crate::state_machine::decode_command(&e.payload),
                Ok(crate::wire::command::Op::Redis(_))
            )
        {
            return true;
        }
    }
    if let Some(term) = log.term(last).filter(|_| last >= from) {
        *scanned = Some(ScanMark {
            config,
            index: last,
            term,
        });
    }
    false
}

#[cfg(test)]
mod tests {
    use super::{log_has_redis_entry, ScanMark};
    use crate::core::{Config, RaftCore, Restored};
    use crate::wire::{command::Op, Command, Entry, EntryType, Put, RedisBatch};
    use bytes::Bytes;
    use prost::Message;

    fn entry(index: u64, term: u64, op: Op) -> Entry {
        let cmd = Command {
            op: Some(op),
            ..Default::default()
        };
        Entry {
            index,
            term,
            r#type: EntryType::EntryCommand as i32,
            payload: Bytes::from(cmd.encode_to_vec()),
            ..Default::default()
        }
    }

    fn put(index: u64, term: u64) -> Entry {
        entry(index, term, Op::Put(Put::default()))
    }

    fn core_with(entries: Vec<Entry>) -> RaftCore {
        let disk = Restored {
            entries,
            ..Default::default()
        };
        RaftCore::new(Config::new("a", vec!["a".to_string()]), disk, 1)
    }

    #[test]
    fn a_redis_entry_after_the_last_look_is_found_and_what_was_looked_at_is_not_looked_at_again() {
        let mut mark = None;
        let core = core_with((1..=5).map(|i| put(i, 1)).collect());
        assert!(!log_has_redis_entry(&core, &mut mark));
        assert_eq!(
            mark,
            Some(ScanMark {
                config: 0,
                index: 5,
                term: 1
            })
        );
        // Entries 1..=5 are not decoded again: a Redis entry planted among
        // them (an impossible log, to see what is looked at) goes unseen,
        // one appended after them is found.
        let mut entries: Vec<Entry> = (1..=5).map(|i| put(i, 1)).collect();
        entries[2] = entry(3, 1, Op::Redis(RedisBatch::default()));
        assert!(!log_has_redis_entry(&core_with(entries.clone()), &mut mark));
        entries.push(entry(6, 1, Op::Redis(RedisBatch::default())));
        assert!(log_has_redis_entry(&core_with(entries), &mut mark));
    }

    #[test]
    fn a_log_rewritten_since_the_last_look_is_looked_at_again() {
        let mut mark = None;
        assert!(!log_has_redis_entry(
            &core_with((1..=5).map(|i| put(i, 1)).collect()),
            &mut mark
        ));
        // Entry 5 now of term 2 (the old one was overwritten): the mark no
        // longer holds, and entry 4, now a Redis command, is found.
        let mut entries: Vec<Entry> = (1..=3).map(|i| put(i, 1)).collect();
        entries.push(entry(4, 2, Op::Redis(RedisBatch::default())));
        entries.push(put(5, 2));
        assert!(log_has_redis_entry(&core_with(entries), &mut mark));
    }
}
