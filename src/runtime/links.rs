//! A node's links to its peers: one per member of the configuration in
//! force (and to a leader outside it), made and retired as the
//! configuration changes; what callers waiting for a leader watch (the
//! leader as last seen, the links that are up); and when each peer was last
//! heard from.

use super::inbound::Inbound;
use super::node::Node;
use crate::core::{Envelope, RaftCore};
use crate::error::Result;
use crate::options::Options;
use crate::transport::{message_to_body, PeerConfig, PeerLink};
use crate::wire::frame::Body;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Node {
    /// Connects to the members of the configuration in force; call once at start.
    pub fn start_links(&self, handler: Arc<Inbound>) -> Result<()> {
        let _ = self.handler.set(handler);
        let core = self.core.lock();
        self.reconcile_links(&core)
    }

    /// Every link, for closing.
    pub fn take_links(&self) -> Vec<Arc<PeerLink>> {
        let mut links: Vec<Arc<PeerLink>> = self.peers.write().drain().map(|(_, l)| l).collect();
        links.append(&mut self.stopped_links.lock());
        links
    }

    /// Stops links whose peer left the configuration longer than the grace
    /// period ago (without waiting for them: the caller keeps ticking).
    pub fn reap_links(&self, now: Instant) {
        self.stopped_links.lock().retain(|l| !l.is_finished());
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
                tracing::info!(node = %self.id, peer = %peer, "no longer a member: link closed");
                link.request_stop();
                self.stopped_links.lock().push(link);
            }
        }
    }

    pub(crate) fn peer(&self, id: &str) -> Option<Arc<PeerLink>> {
        self.peers.read().get(id).cloned()
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

    /// Makes the links match the configuration in force (plus the leader, who
    /// may be outside it), and the handshake rules follow it. Links no longer
    /// wanted retire after a grace period ([`Node::reap_links`]).
    pub(super) fn reconcile_links(&self, core: &RaftCore) -> Result<()> {
        let m = core.membership();
        self.identity.update(&m.uid, m.members().cloned());
        let mut wanted: BTreeSet<String> = m.members().cloned().collect();
        wanted.extend(core.leader().map(str::to_string));
        wanted.extend(core.replication_targets());
        wanted.remove(&self.id);
        let Some(handler) = self.handler.get() else {
            return Ok(());
        };
        let mut peers = self.peers.write();
        let mut retiring = self.retiring.lock();
        let grace = Instant::now() + link_grace(&self.opts);
        for p in peers.keys().filter(|p| !wanted.contains(*p)) {
            retiring.entry(p.clone()).or_insert(grace);
        }
        retiring.retain(|p, _| !wanted.contains(p));
        for peer in wanted {
            if let std::collections::hash_map::Entry::Vacant(slot) = peers.entry(peer) {
                let link = PeerLink::spawn(self.peer_config(slot.key()), handler.clone())?;
                slot.insert(Arc::new(link));
            }
        }
        Ok(())
    }

    fn peer_config(&self, peer: &str) -> PeerConfig {
        let opts = &self.opts;
        let heartbeat = Duration::from_micros(opts.heartbeat_us);
        PeerConfig {
            name: opts.local_port.to_string(),
            local_ip: self.local_ip,
            my_id: self.id.clone(),
            peer: peer.to_string(),
            identity: self.identity.clone(),
            connect_timeout: heartbeat.max(Duration::from_millis(200)),
            write_timeout: Duration::from_micros(opts.check_leader_us),
            keepalive: heartbeat,
            liveness_timeout: (3 * heartbeat).max(Duration::from_micros(opts.check_leader_us)),
            in_doubt_window: opts.request_timeout,
            max_backoff: Duration::from_micros(opts.check_leader_us / 2).max(heartbeat),
            snapshot_chunk_bytes: usize::try_from(opts.snapshot_chunk_bytes)
                .unwrap_or(crate::transport::DEFAULT_SNAPSHOT_CHUNK_BYTES),
            snapshot_bytes_per_sec: opts.snapshot_bytes_per_sec,
            tls: self.tls.clone(),
        }
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
        if let Some(body) = message_to_body(env.msg) {
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
