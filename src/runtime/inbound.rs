//! What the transport hands a node: Raft messages, forwarded commands and
//! their answers, snapshot chunks, link states.

use super::host::HostShared;
use super::node::Node;
use super::proposals::Completion;
use crate::error::Error;
use crate::state_machine::CommandKind;
use crate::storage::GroupId;
use crate::transport::Handler;
use crate::wire::{ClientRequest, ClientResponse};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// What the transport calls into, for the whole host: a weak reference, so
/// links and servers never keep a closed host alive. Every message names
/// its group and goes to that group's node; one of a group the host does not
/// have is dropped, logged and counted (it never creates a group).
pub struct HostInbound(pub Weak<HostShared>);

impl HostInbound {
    /// The node of `group`, if the host has it open and it is not closing.
    fn node(&self, from: &str, group: GroupId) -> Option<Arc<Node>> {
        let host = self.0.upgrade()?;
        host.links.note_contact(from);
        match host.node(group) {
            Some(node) if !node.is_stopping() => Some(node),
            Some(_) => None,
            None => {
                host.unknown_group(from, group);
                None
            }
        }
    }

    /// The node of `group` for a report about our own traffic (no contact).
    fn own(&self, group: GroupId) -> Option<Arc<Node>> {
        self.0.upgrade()?.node(group)
    }
}

impl Handler for HostInbound {
    fn on_message(&self, from: &str, group: GroupId, msg: crate::core::Message) {
        if let Some(node) = self.node(from, group) {
            if let Err(why) = node.step(from, msg) {
                node.log_refusal(from, &why);
            }
        }
    }

    fn on_heartbeats(&self, from: &str, beats: crate::wire::Heartbeats) {
        let Some(host) = self.0.upgrade() else { return };
        // The answers go back coalesced too, in one frame.
        super::coalesce::in_pass(&host, || {
            for (group, msg) in crate::transport::heartbeat_messages(beats) {
                self.on_message(from, group, msg);
            }
        });
    }

    fn on_client_request(&self, from: &str, group: GroupId, req: ClientRequest) {
        let Some(node) = self.node(from, group) else {
            return;
        };
        let id = req.request_id;
        let session = req.command.as_ref().and_then(|c| c.session.as_deref().copied());
        let command = req
            .command
            .ok_or_else(|| Error::InvalidArgument("forwarded request without a command".into()))
            .and_then(CommandKind::from_wire)
            .and_then(|c| c.validate().map(|_| c));
        let cmd = match command {
            Ok(c) => c,
            Err(e) => return node.reply(from, id, Err(e)),
        };
        let weak = Arc::downgrade(&node);
        let reply_to = from.to_string();
        // Runs on the apply or primary thread: it only queues a frame.
        let done: Completion = Box::new(move |result| {
            if let Some(node) = weak.upgrade() {
                node.reply(&reply_to, id, result);
            }
        });
        let deadline = Instant::now() + node.opts.request_timeout;
        node.submit_forwarded(cmd, session, deadline, done);
    }

    fn on_client_response(&self, from: &str, group: GroupId, resp: ClientResponse) {
        if let Some(node) = self.node(from, group) {
            node.waiters.forwards.resolve(from, resp);
        }
    }

    fn on_thread_panic(&self, thread: &str, message: &str) {
        if let Some(host) = self.0.upgrade() {
            host.fail(Error::Internal(format!("thread {thread} panicked: {message}")));
        }
    }

    fn on_undeliverable(&self, to: &str, group: GroupId, req: ClientRequest) {
        if let Some(node) = self.own(group) {
            node.waiters.forwards.not_sent(to, req.request_id);
        }
    }

    fn on_in_doubt(&self, to: &str, request_ids: Vec<(GroupId, u64)>) {
        let Some(host) = self.0.upgrade() else { return };
        let err = Error::Timeout(format!(
            "the connection to leader {to} broke with the command in flight; it may or may not have been applied"
        ));
        let mut by_group: std::collections::BTreeMap<GroupId, Vec<u64>> = Default::default();
        for (group, id) in request_ids {
            by_group.entry(group).or_default().push(id);
        }
        for (group, ids) in by_group {
            if let Some(node) = host.node(group) {
                node.waiters.forwards.in_doubt(to, &ids, &err);
            }
        }
    }

    fn on_link_state(&self, peer: &str, connected: bool) {
        if let Some(host) = self.0.upgrade() {
            for node in host.nodes() {
                node.note_link(peer, connected);
            }
            if !connected {
                // Host liveness: what quiet groups watch instead of heartbeats.
                host.peer_host_down(peer);
            }
        }
    }

    fn on_snapshot_chunk(&self, from: &str, group: GroupId, chunk: crate::wire::SnapshotChunk) {
        if let Some(node) = self.node(from, group) {
            let bytes = chunk.data.len() as u64;
            let relaxed = std::sync::atomic::Ordering::Relaxed;
            node.metrics.snapshot_bytes_received.fetch_add(bytes, relaxed);
            node.receive_snapshot_chunk(from, chunk);
        }
    }

    fn on_snapshot_sent(&self, to: &str, group: GroupId, snapshot_index: u64, ok: bool) {
        if let Some(node) = self.own(group).filter(|n| !n.is_stopping()) {
            if ok {
                node.metrics
                    .snapshots_sent
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            node.with_core(|core| core.report_snapshot(to, snapshot_index, ok));
        }
    }

    fn on_snapshot_chunk_sent(
        &self,
        _to: &str,
        group: GroupId,
        bytes: usize,
        finished_after: Option<Duration>,
    ) {
        if let Some(node) = self.own(group) {
            node.metrics
                .snapshot_bytes_sent
                .fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
            if let Some(took) = finished_after {
                node.host_metrics().snapshot_send.observe(took);
            }
        }
    }

    fn on_refused(&self, why: crate::metrics::Refusal) {
        if let Some(host) = self.0.upgrade() {
            host.metrics.refused.count(why);
        }
    }

    fn received_bytes_counter(&self, from: &str) -> Option<Arc<std::sync::atomic::AtomicU64>> {
        Some(self.0.upgrade()?.metrics.received_from(from))
    }

    fn on_peer_connected(&self, from: &str) {
        // A fresh connection from a peer hints that our own link to it may
        // have died unnoticed (its close lost in a partition): check it.
        let Some(host) = self.0.upgrade() else { return };
        if let Some(link) = host.links.peer(from) {
            link.probe();
        }
        host.peer_host_up(from);
    }
}
