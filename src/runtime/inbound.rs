//! What the transport hands a node: Raft messages, forwarded commands and
//! their answers, snapshot chunks, link states.

use super::node::Node;
use super::proposals::Completion;
use crate::error::Error;
use crate::state_machine::CommandKind;
use crate::storage::GroupId;
use crate::transport::Handler;
use crate::wire::{ClientRequest, ClientResponse};
use std::sync::{Arc, Weak};
use std::time::Instant;

/// What the transport calls into: a weak reference, so links and servers
/// never keep a closed node alive. Every message names its group: one of
/// another group than the node's is dropped, logged and counted.
pub struct Inbound(pub Weak<Node>);

impl Inbound {
    /// The node of `group`, if it is this one's and it is not closing.
    fn node(&self, from: &str, group: GroupId) -> Option<Arc<Node>> {
        let node = self.0.upgrade().filter(|n| !n.is_stopping())?;
        if node.group != group {
            node.unknown_group(from, group);
            return None;
        }
        Some(node)
    }
}

impl Handler for Inbound {
    fn on_message(&self, from: &str, group: GroupId, msg: crate::core::Message) {
        if let Some(node) = self.node(from, group) {
            node.note_contact(from);
            if let Err(why) = node.step(from, msg) {
                node.log_refusal(from, &why);
            }
        }
    }

    fn on_client_request(&self, from: &str, group: GroupId, req: ClientRequest) {
        let Some(node) = self.node(from, group) else {
            return;
        };
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
        let weak = Arc::downgrade(&node);
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

    fn on_client_response(&self, from: &str, group: GroupId, resp: ClientResponse) {
        if let Some(node) = self.node(from, group) {
            node.waiters.forwards.resolve(from, resp);
        }
    }

    fn on_thread_panic(&self, thread: &str, message: &str) {
        if let Some(node) = self.0.upgrade() {
            node.fail(Error::Internal(format!("thread {thread} panicked: {message}")));
        }
    }

    fn on_undeliverable(&self, to: &str, group: GroupId, req: ClientRequest) {
        if let Some(node) = self.0.upgrade().filter(|n| n.group == group) {
            node.waiters.forwards.not_sent(to, req.request_id);
        }
    }

    fn on_in_doubt(&self, to: &str, request_ids: Vec<(GroupId, u64)>) {
        if let Some(node) = self.0.upgrade() {
            let err = Error::Timeout(format!(
                "the connection to leader {to} broke with the command in flight; it may or may not have been applied"
            ));
            let ids: Vec<u64> = request_ids
                .into_iter()
                .filter(|(g, _)| *g == node.group)
                .map(|(_, id)| id)
                .collect();
            node.waiters.forwards.fail_some(to, &ids, &err);
        }
    }

    fn on_link_state(&self, peer: &str, connected: bool) {
        if let Some(node) = self.0.upgrade() {
            node.note_link(peer, connected);
        }
    }

    fn on_snapshot_chunk(&self, from: &str, group: GroupId, chunk: crate::wire::SnapshotChunk) {
        if let Some(node) = self.node(from, group) {
            node.note_contact(from);
            node.receive_snapshot_chunk(from, chunk);
        }
    }

    fn on_snapshot_sent(&self, to: &str, group: GroupId, snapshot_index: u64, ok: bool) {
        if let Some(node) = self.0.upgrade().filter(|n| !n.is_stopping() && n.group == group) {
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
