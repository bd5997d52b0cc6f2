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
    /// A transport thread panicked (a bug): the node can no longer be trusted.
    fn on_thread_panic(&self, thread: &str, message: &str);
}

/// Starts a named thread that logs where its creator logs (the node's own
/// `tracing` dispatcher, not a global one).
pub(crate) fn spawn_named<T: Send + 'static>(
    name: String,
    body: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<T>> {
    let dispatch = tracing::dispatcher::get_default(|d| d.clone());
    std::thread::Builder::new()
        .name(name)
        .spawn(move || tracing::dispatcher::with_default(&dispatch, body))
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
