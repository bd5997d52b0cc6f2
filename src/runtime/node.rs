//! A running node: the core behind one lock, the stores, the peer links, and
//! the glue that turns the core's Readies into sends, writes and wake-ups.

use super::forward::{response_from_result, Forwards};
use super::proposals::{Completion, Proposals};
use crate::core::{CoreStatus, Envelope, RaftCore, Ready, Role};
use crate::error::{Error, Result};
use crate::logging::NodeLog;
use crate::options::Options;
use crate::state_machine::{encode_command, CommandKind, KvStateMachine};
use crate::storage::LogStore;
use crate::transport::{message_to_body, Handler, PeerLink};
use crate::wire::{frame::Body, ClientRequest, ClientResponse};
use bytes::Bytes;
use crossbeam_channel::Sender;
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};

/// Work for the primary thread.
pub enum PrimaryEvent {
    /// A Ready whose writes (or after-persist messages) are due, in the order taken.
    Persist(Ready),
    /// Commands are queued in `Proposals`.
    NewCommand,
    Stop,
}

/// Shared state of a node; every thread holds an `Arc` of it.
pub struct Node {
    pub id: String,
    pub opts: Options,
    /// Guarded like Floyd's `global_mu`: held briefly, never across I/O.
    core: Mutex<RaftCore>,
    pub log_store: LogStore,
    pub state_machine: KvStateMachine,
    pub proposals: Proposals,
    pub forwards: Forwards,
    peers: OnceLock<HashMap<String, PeerLink>>,
    primary_tx: Sender<PrimaryEvent>,
    apply_tx: Sender<()>,
    /// The leader last seen, with a condvar for callers waiting for one.
    leader: Mutex<Option<String>>,
    leader_changed: Condvar,
    stopping: AtomicBool,
    failure: Mutex<Option<Error>>,
    pub log: Arc<NodeLog>,
}

impl Node {
    pub fn new(
        opts: Options,
        core: RaftCore,
        log_store: LogStore,
        state_machine: KvStateMachine,
        primary_tx: Sender<PrimaryEvent>,
        apply_tx: Sender<()>,
        log: Arc<NodeLog>,
    ) -> Self {
        Node {
            id: opts.local_id(),
            opts,
            core: Mutex::new(core),
            log_store,
            state_machine,
            proposals: Proposals::default(),
            forwards: Forwards::default(),
            peers: OnceLock::new(),
            primary_tx,
            apply_tx,
            leader: Mutex::new(None),
            leader_changed: Condvar::new(),
            stopping: AtomicBool::new(false),
            failure: Mutex::new(None),
            log,
        }
    }

    pub fn set_peers(&self, peers: HashMap<String, PeerLink>) {
        let _ = self.peers.set(peers);
    }

    pub fn peers(&self) -> impl Iterator<Item = &PeerLink> {
        self.peers.get().into_iter().flat_map(|p| p.values())
    }

    /// Runs `f` on the core under its lock, then hands out what it produced.
    pub fn with_core<T>(&self, f: impl FnOnce(&mut RaftCore) -> T) -> T {
        let mut core = self.core.lock();
        let out = f(&mut core);
        let new_leader = self.dispatch(&mut core);
        drop(core);
        // Logged after unlocking: logging may write to disk or call back into the host.
        if let Some(leader) = new_leader {
            tracing::info!(node = %self.id, leader = ?leader, "leader changed");
        }
        out
    }

    pub fn status(&self) -> CoreStatus {
        self.core.lock().status()
    }

    /// Sends what may go now; queues persistence (and what waits on it) to the
    /// primary thread. Called with the core locked, so Readies queue in order.
    /// Returns the new leader if it changed.
    fn dispatch(&self, core: &mut RaftCore) -> Option<Option<String>> {
        let mut ready = core.ready();
        let new_leader = self.note_leader(core.leader());
        if ready.is_empty() || self.failure.lock().is_some() {
            // (A node that cannot persist must not speak.)
            return new_leader;
        }
        for env in std::mem::take(&mut ready.messages) {
            self.send_message(env);
        }
        if ready.needs_persist() || !ready.messages_after_persist.is_empty() {
            let _ = self.primary_tx.send(PrimaryEvent::Persist(ready));
        }
        self.wake_apply();
        new_leader
    }

    /// Records the leader and wakes callers waiting for one; returns it if it changed.
    fn note_leader(&self, leader: Option<&str>) -> Option<Option<String>> {
        let mut known = self.leader.lock();
        if known.as_deref() == leader {
            return None;
        }
        *known = leader.map(str::to_string);
        self.leader_changed.notify_all();
        Some(known.clone())
    }

    pub fn send_message(&self, env: Envelope) {
        self.send_frame(&env.to, message_to_body(env.msg));
    }

    pub fn send_frame(&self, to: &str, body: Body) -> bool {
        match self.peers.get().and_then(|p| p.get(to)) {
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
        self.leader.lock().clone()
    }

    pub fn is_leader(&self) -> bool {
        self.core.lock().role() == Role::Leader
    }

    /// Waits until a leader is known or `deadline` passes.
    pub fn wait_for_leader(&self, deadline: std::time::Instant) -> Option<String> {
        let mut known = self.leader.lock();
        while known.is_none() && !self.is_stopping() {
            if self.leader_changed.wait_until(&mut known, deadline).timed_out() {
                break;
            }
        }
        known.clone()
    }

    /// Waits until the known leader differs from `old` (and is some node);
    /// returns false if `deadline` passed first.
    pub fn wait_for_leader_change(&self, old: Option<&str>, deadline: std::time::Instant) -> bool {
        let mut known = self.leader.lock();
        loop {
            if known.is_some() && known.as_deref() != old {
                return true;
            }
            if self.is_stopping() || self.leader_changed.wait_until(&mut known, deadline).timed_out() {
                return known.is_some() && known.as_deref() != old;
            }
        }
    }

    /// Queues a command on this node (which should be the leader).
    pub fn submit(&self, payload: Bytes, done: Completion) {
        if let Err(e) = self.check_usable() {
            return done(Err(e));
        }
        if self.proposals.push(payload, done) {
            self.wake_primary();
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

    /// Records a fatal error: the node stops taking part and fails every caller.
    pub fn fail(&self, err: Error) {
        tracing::error!(node = %self.id, error = %err, "node failed; it no longer takes part in the cluster");
        self.failure.lock().get_or_insert(err.clone());
        self.proposals.fail_all(&err);
        self.forwards.fail_all(&err);
    }

    pub fn failure(&self) -> Option<Error> {
        self.failure.lock().clone()
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Marks the node as closing and wakes everyone waiting on it.
    pub fn begin_stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.primary_tx.send(PrimaryEvent::Stop);
        let _guard = self.leader.lock();
        self.leader_changed.notify_all();
    }
}

/// What the transport calls into: a weak reference, so links and servers
/// never keep a closed node alive.
pub struct Inbound(pub Weak<Node>);

impl Handler for Inbound {
    fn on_message(&self, from: &str, msg: crate::core::Message) {
        if let Some(node) = self.0.upgrade().filter(|n| !n.is_stopping()) {
            node.with_core(|core| core.step(from, msg));
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
        node.submit(encode_command(cmd), done);
    }

    fn on_client_response(&self, _from: &str, resp: ClientResponse) {
        if let Some(node) = self.0.upgrade() {
            node.forwards.resolve(resp);
        }
    }

    fn on_thread_panic(&self, thread: &str, message: &str) {
        if let Some(node) = self.0.upgrade() {
            node.fail(Error::Internal(format!("thread {thread} panicked: {message}")));
        }
    }

    fn on_undeliverable(&self, to: &str, req: ClientRequest) {
        if let Some(node) = self.0.upgrade() {
            let err = Error::NoLeader(format!("leader {to} is unreachable; the command was not sent"));
            node.forwards
                .resolve(response_from_result(req.request_id, Err(err), ""));
        }
    }
}
