//! Frames, handshake, the RPC server and peer connections.
//!
//! Every member keeps one outgoing connection to each peer (a [`PeerLink`])
//! and serves the peers' connections to it (a [`Server`]). Messages are
//! one-way: requests go out on our link, answers come back on the peer's.
//! The only exception is liveness: the server answers each `Ping` with a
//! `Pong` on the same connection, so a link learns within its liveness
//! timeout that the connection under it is dead, instead of writing into it.
//!
//! The handshake names the cluster, the sender, the protocol version, the
//! cluster identity and the bootstrap member list ([`config_id`]); the rules
//! are in [`Identity`]. Frames are limited to [`MAX_FRAME_BYTES`] on every node.
//!
//! With mutual TLS configured ([`TlsConfig`]), both sides of every
//! connection prove with a certificate from the cluster's CA which member
//! address they speak for; without it, peer traffic is unauthenticated and
//! must stay on a trusted network.
//!
//! Snapshots travel as chunks on the leader's link ([`PeerLink::send_snapshot`]),
//! interleaved with its Raft traffic and paced; the follower assembles them
//! with a [`SnapshotReceiver`].

mod frame;
mod identity;
mod member_union;
mod outbox;
mod peer;
mod peer_worker;
mod server;
mod snapshot_receive;
mod snapshot_send;
mod stream;
mod tls;

pub use frame::{
    body_to_message, encode_frame, frame_len, message_to_body, read_frame, read_group_frame, write_frame,
    FrameError, MAX_FRAME_BYTES,
};
pub use identity::Identity;
pub use member_union::{MemberUnion, UnionChange};
pub use peer::{PeerConfig, PeerLink};
pub use server::{
    Server, ServerConfig, DATA_TYPES_VERSION, GROUPS_VERSION, MAX_PROTOCOL_VERSION, PROTOCOL_VERSION,
    QUIESCE_VERSION,
};
pub use snapshot_receive::{ReceiveError, ReceivedSnapshot, SnapshotReceiver};
pub use snapshot_send::{SnapshotOffer, DEFAULT_SNAPSHOT_CHUNK_BYTES, MAX_SNAPSHOT_CHUNK_BYTES};
pub use tls::{TlsConfig, TlsError};

use crate::core::Message;
use crate::storage::GroupId;
use crate::wire::{ClientRequest, ClientResponse, SnapshotChunk};
use std::time::Duration;

/// The messages a coalesced `Heartbeats` frame carries, each with its group:
/// the beats, then the answers.
pub fn heartbeat_messages(frame: crate::wire::Heartbeats) -> impl Iterator<Item = (GroupId, Message)> {
    let beats = frame
        .beats
        .into_iter()
        .filter_map(|b| Some((b.group_id, Message::AppendEntries(b.beat?))));
    let answers = frame
        .answers
        .into_iter()
        .filter_map(|a| Some((a.group_id, Message::AppendEntriesResponse(a.answer?))));
    beats.chain(answers)
}

/// What the transport delivers to the host. Called from server and peer
/// threads concurrently; implementations must not block for long. Every
/// message, forwarded command and snapshot names its group (the frame's).
pub trait Handler: Send + Sync + 'static {
    /// A Raft message of `group` from member `from`.
    fn on_message(&self, from: &str, group: GroupId, msg: Message);
    /// Protocol 7: the heartbeats and answers of many groups from host
    /// `from`, in one frame. By default each is handled as a message of its own.
    fn on_heartbeats(&self, from: &str, beats: crate::wire::Heartbeats) {
        for (group, msg) in heartbeat_messages(beats) {
            self.on_message(from, group, msg);
        }
    }
    /// A client command of `group` forwarded by member `from`.
    fn on_client_request(&self, from: &str, group: GroupId, req: ClientRequest);
    /// The result of a command of `group` this host forwarded to `from`.
    fn on_client_response(&self, from: &str, group: GroupId, resp: ClientResponse);
    /// A forwarded command that was certainly not delivered to `to`: there was
    /// no connection, or it was too large to encode, so not a byte of it was written.
    fn on_undeliverable(&self, to: &str, group: GroupId, req: ClientRequest);
    /// A transport thread panicked (a bug): the node can no longer be trusted.
    fn on_thread_panic(&self, thread: &str, message: &str);
    /// Member `from` opened a connection to us and passed the handshake. A
    /// fresh connection from a peer hints that our own link to it may be
    /// dead (it may have restarted, or closed our link while we were cut
    /// off): the node can [`PeerLink::probe`] its link to `from`.
    fn on_peer_connected(&self, from: &str) {
        let _ = from;
    }
    /// The connection to `to` broke (write error, closed by the peer, no
    /// answer to pings within the liveness timeout, or replaced) after these
    /// forwarded requests were written on it within the in-doubt window: they
    /// may or may not have been received, and no answer will come for those
    /// that were not. The (group, id) are in the order they were written.
    fn on_in_doubt(&self, to: &str, request_ids: Vec<(GroupId, u64)>) {
        let _ = (to, request_ids);
    }
    /// A connection was refused before or at its handshake (TLS failed, not a
    /// member, another cluster, a protocol it does not speak), or a frame on
    /// an admitted one: for counting.
    fn on_refused(&self, why: crate::metrics::Refusal) {
        let _ = why;
    }
    /// The counter of bytes read from member `from`'s connections, taken
    /// once per connection as its handshake is accepted.
    fn received_bytes_counter(&self, from: &str) -> Option<std::sync::Arc<std::sync::atomic::AtomicU64>> {
        let _ = from;
        None
    }
    /// A chunk of a snapshot of `group`, `bytes` long, was written to `to`;
    /// `finished_after` is the stream's time from its first chunk, on its last.
    fn on_snapshot_chunk_sent(
        &self,
        to: &str,
        group: GroupId,
        bytes: usize,
        finished_after: Option<Duration>,
    ) {
        let _ = (to, group, bytes, finished_after);
    }
    /// The link to `peer` connected (`true`) or lost its connection (`false`,
    /// after any `on_in_doubt` for it; also when the link stops while connected).
    fn on_link_state(&self, peer: &str, connected: bool) {
        let _ = (peer, connected);
    }
    /// A piece of a snapshot of `group` streamed by member `from` (see
    /// [`SnapshotReceiver::on_chunk`], which assembles them). Called on the
    /// connection's thread, in order: the frames behind it wait meanwhile.
    fn on_snapshot_chunk(&self, from: &str, group: GroupId, chunk: SnapshotChunk) {
        let _ = (from, group, chunk);
    }
    /// The stream of snapshot `snapshot_index` offered with
    /// [`PeerLink::send_snapshot`] ended: `ok` once its final chunk was
    /// written to the connection (not a proof of receipt: the follower's
    /// answer is), `false` if it was abandoned (connection lost, link cut or
    /// stopped, a file unreadable, or replaced by another offer).
    fn on_snapshot_sent(&self, to: &str, group: GroupId, snapshot_index: u64, ok: bool) {
        let _ = (to, group, snapshot_index, ok);
    }
}

/// Identifies a membership: FNV-1a (64-bit) of the sorted, deduplicated
/// member list joined by `,`. Stable across builds, platforms and Rust
/// versions (unlike std's `DefaultHasher`), because nodes built apart compare it.
pub fn config_id(members: &[String]) -> u64 {
    let mut sorted: Vec<&str> = members.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut hash = Fnv1a::new();
    for (i, m) in sorted.iter().enumerate() {
        if i > 0 {
            hash.write(b",");
        }
        hash.write(m.as_bytes());
    }
    hash.0
}

struct Fnv1a(u64);

impl Fnv1a {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Self {
        Fnv1a(Self::OFFSET)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(Self::PRIME);
        }
    }
}

/// Starts a named thread that logs where its creator logs (the node's own
/// `tracing` dispatcher, not a global one).
pub(crate) fn spawn_named<T: Send + 'static>(
    name: String,
    body: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<T>> {
    let dispatch = tracing::dispatcher::get_default(|d| d.clone());
    std::thread::Builder::new().name(name.clone()).spawn(move || {
        LIBRARY_THREAD.with(|t| t.set(true));
        let _cpu = crate::metrics::thread_cpu::register_current(&name);
        tracing::dispatcher::with_default(&dispatch, body)
    })
}

thread_local! {
    static LIBRARY_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the current thread is one of floyd's own (started with
/// `spawn_named`), not a caller's.
pub(crate) fn on_library_thread() -> bool {
    LIBRARY_THREAD.with(|t| t.get())
}

/// Runs `body`, reporting a panic to `handler` instead of letting it vanish with the thread.
pub(crate) fn guarded(handler: &dyn Handler, body: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        let thread = std::thread::current().name().unwrap_or("floyd").to_string();
        handler.on_thread_panic(&thread, &panic_message(&*panic));
    }
}

/// The text of a panic payload.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(members: &[&str]) -> u64 {
        config_id(&members.iter().map(|m| m.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn config_id_is_fnv1a_of_the_sorted_list() {
        // Published FNV-1a 64 test vectors: a change here breaks mixed-version clusters.
        assert_eq!(ids(&[]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(ids(&["a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(ids(&["foobar"]), 0x8594_4171_f739_67e8);
        let mut h = Fnv1a::new();
        h.write(b"10.0.0.1:1,10.0.0.2:1");
        assert_eq!(ids(&["10.0.0.2:1", "10.0.0.1:1", "10.0.0.2:1"]), h.0);
    }

    #[test]
    fn config_id_ignores_order_and_duplicates_but_not_membership() {
        let abc = ids(&["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]);
        assert_eq!(
            abc,
            ids(&["127.0.0.1:3", "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:1"])
        );
        assert_ne!(abc, ids(&["127.0.0.1:1", "127.0.0.1:2"]));
        assert_ne!(abc, ids(&["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:4"]));
        // The separator keeps "a,b" and "ab" apart.
        assert_ne!(ids(&["a", "b"]), ids(&["ab"]));
    }
}
