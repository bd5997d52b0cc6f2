//! A running node: the core behind one lock, the stores, the peer links, and
//! the glue that turns the core's Readies into sends, writes and wake-ups.

use super::faults::Faults;
use super::forward::response_from_result;
use super::membership::Want;
use super::proposals::{Completion, PendingCommand};
use crate::core::{ConfChange, ConfChangeError, Envelope, Membership, ProposeError, RaftCore, Ready, Role};
use crate::error::{Error, Result};
use crate::logging::NodeLog;
use crate::options::Options;
use crate::state_machine::{encode_command, CommandKind, Machine};
use crate::storage::LogStore;
use crate::transport::{message_to_body, Handler, Identity, PeerConfig, PeerLink, TlsConfig};
use crate::wire::{frame::Body, ClientRequest, ClientResponse};
use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

/// Work for the primary thread.
pub enum PrimaryEvent {
    /// Commands are queued in `Proposals`.
    NewCommand,
    Stop,
}

/// Work for the log writer thread.
pub enum LogEvent {
    /// A Ready whose writes (or after-persist messages) are due, in the order taken.
    Persist(Box<Ready>),
    /// The log may start after (index, term): its entries up to there are in a snapshot.
    Compact(u64, u64),
    Stop,
}

/// What callers wait on: the leader as last seen, and which peer links are up.
#[derive(Default)]
struct Watch {
    leader: Option<String>,
    links_up: HashSet<String>,
}

/// Shared state of a node; every thread holds an `Arc` of it.
pub struct Node {
    pub id: String,
    pub opts: Options,
    /// Guarded like Floyd's `global_mu`: held briefly, never across I/O.
    core: Mutex<RaftCore>,
    pub log_store: LogStore,
    pub state_machine: Machine,
    pub snapshots: super::snapshot::Snapshots,
    /// Everyone waiting on this node.
    pub waiters: super::waiters::Waiters,
    /// One link per other member of the configuration in force (and to a
    /// leader outside it); changed as the configuration changes.
    peers: RwLock<HashMap<String, Arc<PeerLink>>>,
    /// Links to peers that left the configuration, kept until then: the
    /// removed server still gets the answer to its own request and the
    /// acknowledgements that let a removed leader learn the commit.
    retiring: Mutex<HashMap<String, Instant>>,
    /// Links told to stop, joined once finished (or at close).
    stopped_links: Mutex<Vec<Arc<PeerLink>>>,
    /// Who the links and the server admit, following the configuration.
    pub identity: Arc<Identity>,
    local_ip: IpAddr,
    /// Mutual TLS on every link, when configured.
    tls: Option<Arc<TlsConfig>>,
    /// Keeps the core's messages in order between its lock and the links (see `with_core`).
    send_order: Mutex<()>,
    /// What the links deliver to; set once at start.
    handler: OnceLock<Arc<Inbound>>,
    /// When each peer was last heard from (status only).
    contacts: Mutex<HashMap<String, Instant>>,
    /// Index of the committed configuration last acted on.
    committed_config: AtomicU64,
    primary_tx: Sender<PrimaryEvent>,
    log_tx: Sender<LogEvent>,
    /// Readies handed to the log writer and not yet written (and their
    /// messages sent). Changed under the core lock or after a write.
    log_queued: AtomicUsize,
    /// Taken by the primary thread, which starts the log writer.
    log_rx: Mutex<Option<Receiver<LogEvent>>>,
    apply_tx: Sender<()>,
    /// The leader and the links, as parked commands look at them.
    watch: Mutex<Watch>,
    stopping: AtomicBool,
    /// The log writer found the disk full and is waiting for space.
    disk_full: AtomicBool,
    failure: Mutex<Option<Error>>,
    /// Refused messages are logged in bursts, then counted.
    refusals_logged: super::log_throttle::LogThrottle,
    pub faults: Faults,
    pub log: Arc<NodeLog>,
}

/// Refused messages logged per [`REFUSAL_WINDOW`]; beyond, they are counted
/// and the count is logged with the next one logged.
pub const REFUSALS_LOGGED: u32 = 20;
pub const REFUSAL_WINDOW: Duration = Duration::from_secs(10);

impl Node {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        opts: Options,
        identity: Arc<Identity>,
        local_ip: IpAddr,
        tls: Option<Arc<TlsConfig>>,
        core: RaftCore,
        log_store: LogStore,
        state_machine: Machine,
        snapshots: super::snapshot::Snapshots,
        primary_tx: Sender<PrimaryEvent>,
        apply_tx: Sender<()>,
        log: Arc<NodeLog>,
    ) -> Self {
        let (log_tx, log_rx) = crossbeam_channel::unbounded();
        Node {
            id: opts.local_id(),
            opts,
            core: Mutex::new(core),
            log_store,
            state_machine,
            snapshots,
            waiters: Default::default(),
            peers: RwLock::new(HashMap::new()),
            retiring: Mutex::new(HashMap::new()),
            stopped_links: Mutex::new(Vec::new()),
            identity,
            local_ip,
            tls,
            send_order: Mutex::new(()),
            handler: OnceLock::new(),
            contacts: Mutex::new(HashMap::new()),
            committed_config: AtomicU64::new(0),
            primary_tx,
            log_tx,
            log_queued: AtomicUsize::new(0),
            log_rx: Mutex::new(Some(log_rx)),
            apply_tx,
            watch: Mutex::new(Watch::default()),
            stopping: AtomicBool::new(false),
            disk_full: AtomicBool::new(false),
            failure: Mutex::new(None),
            refusals_logged: super::log_throttle::LogThrottle::new(REFUSALS_LOGGED, REFUSAL_WINDOW),
            faults: Faults::default(),
            log,
        }
    }

    /// The log writer wrote `n` Readies (or gave up on them) and sent their messages.
    pub(super) fn log_written(&self, n: usize) {
        self.log_queued.fetch_sub(n, Ordering::AcqRel);
    }

    pub(super) fn take_log_receiver(&self) -> Option<Receiver<LogEvent>> {
        self.log_rx.lock().take()
    }

    /// Lets the log writer finish what is queued, then exit.
    pub(super) fn stop_log_writer(&self) {
        let _ = self.log_tx.send(LogEvent::Stop);
    }

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

    /// Runs `f` on the core under its lock, then hands out what it produced.
    pub fn with_core<T>(&self, f: impl FnOnce(&mut RaftCore) -> T) -> T {
        let mut core = self.core.lock();
        let out = f(&mut core);
        let mut after = self.dispatch(&mut core);
        // Sent after the core is free (a link may write on its socket right
        // away) but in the order the core produced them: the next sender
        // takes `send_order` only while it still holds the core.
        let sending = (!after.messages.is_empty()).then(|| self.send_order.lock());
        drop(core);
        for env in std::mem::take(&mut after.messages) {
            self.send_message(env);
        }
        drop(sending);
        after.run(self);
        out
    }

    /// Reads the core under its lock (nothing it produces is sent).
    pub fn inspect<T>(&self, f: impl FnOnce(&RaftCore) -> T) -> T {
        f(&self.core.lock())
    }

    /// The configuration in force on this node.
    pub fn membership(&self) -> Membership {
        self.core.lock().membership().clone()
    }

    fn note_contact(&self, peer: &str) {
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

    /// Sends what may go now; queues persistence (and what waits on it) to the
    /// primary thread. Called with the core locked, so Readies queue in order.
    fn dispatch(&self, core: &mut RaftCore) -> AfterUnlock {
        let mut ready = core.ready();
        let mut after = AfterUnlock {
            new_leader: self.note_leader(core.leader()),
            reads: self
                .waiters
                .reads
                .settle(&ready.read_states, &ready.read_failures),
            transfers: self.waiters.transfers.settle(core),
            ..Default::default()
        };
        if self.failure.lock().is_some() {
            // (A node that cannot persist must not speak.)
            return after;
        }
        let (committed_index, committed) = core.committed_membership();
        let committed_changed =
            self.committed_config.swap(committed_index, Ordering::Relaxed) != committed_index;
        if committed_changed {
            after.changes_done = self.waiters.config.satisfied_by(committed);
        }
        // (A committed change also ends the leader's replication to removed members.)
        if ready.config.is_some() || after.new_leader.is_some() || committed_changed {
            after.link_error = self.reconcile_links(core).err();
        }
        if ready.is_empty() {
            return after;
        }
        after.messages = std::mem::take(&mut ready.messages);
        if !ready.needs_persist() && self.log_queued.load(Ordering::Acquire) == 0 {
            // Nothing to write, and everything produced before is on disk: an
            // answer waiting for durability (a heartbeat's) may go now,
            // without a trip through the log writer.
            after.messages.append(&mut ready.messages_after_persist);
        } else if ready.needs_persist() || !ready.messages_after_persist.is_empty() {
            self.log_queued.fetch_add(1, Ordering::AcqRel);
            let _ = self.log_tx.send(LogEvent::Persist(Box::new(ready)));
        }
        // Only when there is something to apply, or a leader change to
        // report: most core calls (a heartbeat, an acknowledgement that
        // moved nothing) leave the apply thread nothing to do.
        if core.applicable_index() > core.applied() || after.new_leader.is_some() {
            self.wake_apply();
        }
        after
    }

    /// Makes the links match the configuration in force (plus the leader, who
    /// may be outside it), and the handshake rules follow it. Links no longer
    /// wanted retire after a grace period ([`Node::reap_links`]).
    fn reconcile_links(&self, core: &RaftCore) -> Result<()> {
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
    fn note_leader(&self, leader: Option<&str>) -> Option<Option<String>> {
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

    /// Queues work for the log writer, the one writer of the log store.
    pub(super) fn send_log_event(&self, ev: LogEvent) {
        let _ = self.log_tx.send(ev);
    }

    pub fn send_frame(&self, to: &str, body: Body) -> bool {
        match self.peer(to) {
            Some(link) => link.send(body),
            None => false,
        }
    }

    pub fn wake_apply(&self) {
        let _ = self.apply_tx.try_send(());
    }

    pub fn wake_primary(&self) {
        let _ = self.primary_tx.send(PrimaryEvent::NewCommand);
    }

    /// The leader as last seen by this node.
    pub fn leader(&self) -> Option<String> {
        self.watch.lock().leader.clone()
    }

    pub fn is_leader(&self) -> bool {
        self.core.lock().role() == Role::Leader
    }

    /// Runs `f` on the leader as last seen and the peers whose links are
    /// up, under their lock (quick: nothing may block in `f`).
    pub(super) fn with_watch<T>(&self, f: impl FnOnce(Option<&str>, &HashSet<String>) -> T) -> T {
        let watch = self.watch.lock();
        f(watch.leader.as_deref(), &watch.links_up)
    }

    /// Runs a client request on this node (which should be the leader):
    /// membership requests become configuration changes, the rest log commands.
    pub fn submit_command(&self, cmd: CommandKind, deadline: Instant, done: Completion) {
        if cmd.is_membership() {
            self.change_membership(cmd, deadline, done);
        } else if let CommandKind::TransferLeader { server } = cmd {
            self.transfer_leadership(server, deadline, done);
        } else if let CommandKind::Get { key } = cmd {
            // ReadIndex: confirmed leadership, then the local state machine; no log entry.
            self.read_by_index(key, deadline, done);
        } else {
            self.submit(encode_command(cmd), deadline, done);
        }
    }

    /// Asks the core for a single-server change; the caller is answered once
    /// the committed configuration shows it.
    fn change_membership(&self, cmd: CommandKind, deadline: Instant, done: Completion) {
        if let Err(e) = self.check_usable() {
            return done(Err(e));
        }
        let (change, want) = match cmd {
            CommandKind::AddServer { server } => (ConfChange::AddServer(server.clone()), Want::Voter(server)),
            CommandKind::RemoveServer { server } => {
                (ConfChange::RemoveServer(server.clone()), Want::Absent(server))
            }
            _ => return done(Err(Error::Internal("not a membership request".into()))),
        };
        // Registered under the core lock: the commit cannot slip in between.
        let refused = self.with_core(|core| match core.propose_conf_change(change) {
            Ok(_) => match self
                .waiters
                .config
                .wait(want, core.committed_membership().1, deadline, done)
            {
                Ok(met) => met.map(|done| (done, Ok(None))),
                // Closed meanwhile, the change under way: its outcome is unknown.
                Err(done) => Some((done, Err(self.unusable()))),
            },
            Err(e) => Some((done, Err(conf_change_error(e)))),
        });
        if let Some((done, result)) = refused {
            done(result);
        }
    }

    /// Queues a command on this node (which should be the leader); its caller
    /// gives up at `deadline`.
    pub fn submit(&self, payload: Bytes, deadline: Instant, done: Completion) {
        if let Err(e) = self.check_usable() {
            return done(Err(e));
        }
        let cmd = PendingCommand {
            payload,
            deadline,
            done,
        };
        match self.waiters.proposals.push(cmd) {
            Ok(true) => self.wake_primary(),
            Ok(false) => {}
            // Closed since the check: the close answered everyone else.
            Err(cmd) => (cmd.done)(Err(self.unusable())),
        }
    }

    /// NewCommand: proposes every queued command as one batch.
    pub fn propose_pending(&self) {
        let pending = self.waiters.proposals.take_pending();
        if pending.is_empty() {
            return;
        }
        if self.is_disk_full() {
            for cmd in pending {
                (cmd.done)(Err(disk_full_error("its log cannot be written")));
            }
            return;
        }
        let payloads = pending.iter().map(|c| c.payload.clone()).collect();
        let mut unregistered = Vec::new();
        let refused = self.with_core(|core| match core.propose(payloads) {
            Ok(positions) => {
                // Register under the core lock: nothing can be applied before it.
                for ((index, term), cmd) in positions.into_iter().zip(pending) {
                    unregistered.extend(self.waiters.proposals.wait_for(index, term, cmd).err());
                }
                None
            }
            Err(e) => Some((e, pending)),
        });
        // The node failed meanwhile: proposed, so perhaps applied elsewhere.
        for cmd in unregistered {
            (cmd.done)(Err(Error::Timeout(format!(
                "{}; the command may or may not have been applied",
                self.unusable()
            ))));
        }
        if let Some((refusal, pending)) = refused {
            if let ProposeError::Transferring { .. } = refusal {
                // §3.10: held until the transfer is over (within an election
                // timeout), then proposed here or refused as below. (Only this
                // thread proposes: the wake-up at its end cannot be missed.)
                return self.hold_back(pending);
            }
            let msg = match refusal {
                ProposeError::NotLeader { leader: Some(l) } => {
                    format!("this node is not the leader ({l} is)")
                }
                _ => "this node is not the leader".to_string(),
            };
            for cmd in pending {
                (cmd.done)(Err(Error::NoLeader(msg.clone())));
            }
        }
    }

    /// Answers a command forwarded by `to`.
    fn reply(&self, to: &str, request_id: u64, result: Result<Option<Bytes>>) {
        let hint = self.leader().unwrap_or_default();
        self.send_frame(
            to,
            Body::ClientResponse(response_from_result(request_id, result, &hint)),
        );
    }

    /// Why a caller cannot be served: the node failed or is closing.
    pub(super) fn unusable(&self) -> Error {
        self.check_usable()
            .err()
            .unwrap_or_else(|| Error::Stopped("the node is closing".into()))
    }

    /// Errors if the node is closing or has failed.
    pub fn check_usable(&self) -> Result<()> {
        if let Some(e) = self.failure.lock().clone() {
            return Err(e);
        }
        if self.is_stopping() {
            return Err(Error::Stopped("the node is closing".into()));
        }
        Ok(())
    }

    /// Records a fatal error: the node stops taking part. Commands in flight
    /// may still commit elsewhere, so they learn `Timeout` (outcome unknown);
    /// every later call gets `Failed`.
    pub fn fail(&self, err: Error) {
        let failed = {
            let mut failure = self.failure.lock();
            if failure.is_some() {
                return;
            }
            let failed = Error::Failed(err.to_string());
            *failure = Some(failed.clone());
            failed
        };
        tracing::error!(node = %self.id, error = %err, "node failed; it no longer takes part in the cluster");
        let in_doubt = Error::Timeout(format!(
            "this node failed ({err}) with the command in flight; it may or may not have been applied"
        ));
        self.waiters.close(&failed, &in_doubt);
    }

    /// Logs a message the core refused, at most [`REFUSALS_LOGGED`] lines
    /// per [`REFUSAL_WINDOW`]; a stream of them is counted, not logged.
    pub(super) fn log_refusal(&self, from: &str, why: &crate::core::Rejected) {
        if let Some(left_out) = self.refusals_logged.admit(Instant::now()) {
            tracing::warn!(node = %self.id, peer = %from, reason = %why, left_out, "refused a message");
        }
    }

    /// Steps one message from `from` into the core, timed as it arrives: a
    /// follower's read may be served on the lease, and a voter's lockout
    /// runs from its leader's last message.
    pub(super) fn step(&self, from: &str, msg: crate::core::Message) -> Result<(), crate::core::Rejected> {
        let now_us = super::monotonic_us();
        self.with_core(|core| {
            core.set_monotonic(now_us);
            core.step(from, msg)
        })
    }

    pub fn failure(&self) -> Option<Error> {
        self.failure.lock().clone()
    }

    pub(super) fn set_disk_full(&self, full: bool) {
        self.disk_full.store(full, Ordering::Release);
    }

    /// Whether this node's log cannot be written for lack of space.
    pub fn is_disk_full(&self) -> bool {
        self.disk_full.load(Ordering::Acquire)
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Marks the node as closing and wakes its threads.
    pub fn begin_stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.primary_tx.send(PrimaryEvent::Stop);
        self.snapshots.wake();
    }
}

/// What the transport calls into: a weak reference, so links and servers
/// never keep a closed node alive.
pub struct Inbound(pub Weak<Node>);

impl Handler for Inbound {
    fn on_message(&self, from: &str, msg: crate::core::Message) {
        if let Some(node) = self.0.upgrade().filter(|n| !n.is_stopping()) {
            node.note_contact(from);
            if let Err(why) = node.step(from, msg) {
                node.log_refusal(from, &why);
            }
        }
    }

    fn on_client_request(&self, from: &str, req: ClientRequest) {
        let Some(node) = self.0.upgrade() else { return };
        let id = req.request_id;
        let command = req
            .command
            .ok_or_else(|| Error::InvalidArgument("forwarded request without a command".into()))
            .and_then(CommandKind::from_wire)
            .and_then(|c| c.validate().map(|_| c));
        let cmd = match command {
            Ok(c) => c,
            Err(e) => return node.reply(from, id, Err(e)),
        };
        let weak = self.0.clone();
        let reply_to = from.to_string();
        // Runs on the apply or primary thread: it only queues a frame.
        let done: Completion = Box::new(move |result| {
            if let Some(node) = weak.upgrade() {
                node.reply(&reply_to, id, result);
            }
        });
        let deadline = Instant::now() + node.opts.request_timeout;
        node.submit_command(cmd, deadline, done);
    }

    fn on_client_response(&self, from: &str, resp: ClientResponse) {
        if let Some(node) = self.0.upgrade() {
            node.waiters.forwards.resolve(from, resp);
        }
    }

    fn on_thread_panic(&self, thread: &str, message: &str) {
        if let Some(node) = self.0.upgrade() {
            node.fail(Error::Internal(format!("thread {thread} panicked: {message}")));
        }
    }

    fn on_undeliverable(&self, to: &str, req: ClientRequest) {
        if let Some(node) = self.0.upgrade() {
            node.waiters.forwards.not_sent(to, req.request_id);
        }
    }

    fn on_in_doubt(&self, to: &str, request_ids: Vec<u64>) {
        if let Some(node) = self.0.upgrade() {
            let err = Error::Timeout(format!(
                "the connection to leader {to} broke with the command in flight; it may or may not have been applied"
            ));
            node.waiters.forwards.fail_some(to, &request_ids, &err);
        }
    }

    fn on_link_state(&self, peer: &str, connected: bool) {
        if let Some(node) = self.0.upgrade() {
            node.note_link(peer, connected);
        }
    }

    fn on_snapshot_chunk(&self, from: &str, chunk: crate::wire::SnapshotChunk) {
        if let Some(node) = self.0.upgrade().filter(|n| !n.is_stopping()) {
            node.note_contact(from);
            node.receive_snapshot_chunk(from, chunk);
        }
    }

    fn on_snapshot_sent(&self, to: &str, snapshot_index: u64, ok: bool) {
        if let Some(node) = self.0.upgrade().filter(|n| !n.is_stopping()) {
            node.with_core(|core| core.report_snapshot(to, snapshot_index, ok));
        }
    }

    fn on_peer_connected(&self, from: &str) {
        // A fresh connection from a peer hints that our own link to it may
        // have died unnoticed (its close lost in a partition): check it.
        if let Some(link) = self.0.upgrade().as_ref().and_then(|n| n.peer(from)) {
            link.probe();
        }
    }
}

/// What a core call leaves to do once the core lock is released: logging
/// (which may write to disk or call into the host), stopping links (which
/// joins threads) and answering callers.
#[derive(Default)]
struct AfterUnlock {
    /// Messages to send, in order, once the core is unlocked.
    messages: Vec<Envelope>,
    new_leader: Option<Option<String>>,
    link_error: Option<Error>,
    changes_done: Vec<Completion>,
    /// What the reads' verdicts left to do.
    reads: super::reads::Settled,
    transfers: super::transfer::Settled,
}

impl AfterUnlock {
    fn run(self, node: &Node) {
        if let Some(leader) = self.new_leader {
            tracing::info!(node = %node.id, leader = ?leader, "leader changed");
        }
        if let Some(e) = self.link_error {
            node.fail(Error::Io(format!("cannot start a peer link: {e}")));
        }
        for done in self.changes_done {
            done(Ok(None));
        }
        if let Some(target) = self.transfers.ended {
            tracing::info!(node = %node.id, target = %target, "leadership transfer over");
            // The proposals it held back.
            node.wake_primary();
        }
        for (done, result) in self.transfers.answers {
            done(result);
        }
        for done in self.reads.failed {
            done(Err(Error::NoLeader(
                "leadership changed before the read was confirmed".into(),
            )));
        }
        if self.reads.serve {
            node.serve_reads();
        }
        if self.reads.next_round {
            node.start_read_round();
        }
    }
}

/// How long a link to a peer that left the configuration stays: long
/// enough for the answers and acknowledgements it still has to carry.
fn link_grace(opts: &Options) -> Duration {
    Duration::from_micros(opts.check_leader_us.saturating_mul(2)).max(Duration::from_secs(1))
}

/// The caller's view of a refused membership change.
fn conf_change_error(e: ConfChangeError) -> Error {
    match e {
        ConfChangeError::NotLeader { leader: Some(l) } => {
            Error::NoLeader(format!("this node is not the leader ({l} is)"))
        }
        ConfChangeError::NotLeader { leader: None } => Error::NoLeader("this node is not the leader".into()),
        ConfChangeError::InProgress(m) => Error::Busy(format!("a membership change is in progress: {m}")),
        ConfChangeError::Transferring(t) => Error::Busy(format!("leadership is being transferred to {t}")),
        e @ (ConfChangeError::NotMember(_) | ConfChangeError::LastVoter(_)) => {
            Error::InvalidArgument(e.to_string())
        }
    }
}

/// The refusal of a command this node did not apply because its disk is full.
pub(super) fn disk_full_error(why: &str) -> Error {
    Error::Io(format!(
        "this node's disk is full: {why}, so the command was not applied"
    ))
}
