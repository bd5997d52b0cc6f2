//! Frames, handshake, the RPC server and peer connections.
//!
//! Every member keeps one outgoing connection to each peer (a [`PeerLink`])
//! and serves the peers' connections to it (a [`Server`]). Messages are
//! one-way: requests go out on our link, answers come back on the peer's.

mod frame;
mod peer;
mod server;

pub use frame::{body_to_message, encode_frame, message_to_body, read_frame, write_frame, FrameError};
pub use peer::{PeerConfig, PeerLink};
pub use server::{Server, ServerConfig, PROTOCOL_VERSION};

use crate::core::Message;
use crate::wire::{ClientRequest, ClientResponse};

/// What the transport delivers to the node. Called from server and peer
/// threads concurrently; implementations must not block for long.
pub trait Handler: Send + Sync + 'static {
    /// A Raft message from member `from`.
    fn on_message(&self, from: &str, msg: Message);
    /// A client command forwarded by member `from`.
    fn on_client_request(&self, from: &str, req: ClientRequest);
    /// The result of a command this node forwarded to `from`.
    fn on_client_response(&self, from: &str, resp: ClientResponse);
    /// A forwarded command that could not be sent to `to` at all (no connection).
    fn on_undeliverable(&self, to: &str, req: ClientRequest);
}
