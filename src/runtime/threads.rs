//! The node's own threads, started and joined here and nowhere else:
//! `floyd-primary-<port>` (the clock and NewCommand), `floyd-log-<port>`
//! (the one writer of the log store), `floyd-apply-<port>` and, for the
//! built-in store, `floyd-snapshot-<port>`. (The peer links' threads belong
//! to the links, the RPC server's to the server.)
//!
//! Each catches its own panic, which fails the node instead of vanishing.
//! They are joined in the order that lets each finish its work: the primary
//! thread first, as it produces Readies; then the log writer, told to stop
//! once nothing more can come, after writing what is queued; then the rest.

use super::node::Node;
use crate::error::{Error, Result};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::thread::JoinHandle;

#[derive(Default)]
pub struct Threads {
    primary: Option<JoinHandle<()>>,
    log_writer: Option<JoinHandle<()>>,
    others: Vec<JoinHandle<()>>,
}

/// Which of the node's threads a spawn starts.
pub enum Role {
    Primary,
    LogWriter,
    Other,
}

impl Threads {
    /// Starts thread `name` as `role`.
    pub fn spawn(
        &mut self,
        node: &Arc<Node>,
        role: Role,
        name: String,
        body: impl FnOnce() + Send + 'static,
    ) -> Result<()> {
        let handle = spawn_guarded(node, name, body)?;
        match role {
            Role::Primary => self.primary = Some(handle),
            Role::LogWriter => self.log_writer = Some(handle),
            Role::Other => self.others.push(handle),
        }
        Ok(())
    }

    /// Joins every thread (the node must be stopping): the primary thread,
    /// then the log writer, then the rest.
    pub fn join(&mut self, node: &Node) {
        if let Some(t) = self.primary.take() {
            let _ = t.join();
        }
        node.stop_log_writer();
        if let Some(t) = self.log_writer.take() {
            let _ = t.join();
        }
        for t in self.others.drain(..) {
            let _ = t.join();
        }
    }
}

/// Spawns a named thread whose panic marks the node failed instead of vanishing.
fn spawn_guarded(
    node: &Arc<Node>,
    name: String,
    body: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>> {
    if let Some(prefix) = node.opts.fail_spawn_of.as_deref() {
        if name.starts_with(prefix) {
            return Err(Error::Io(format!("cannot start thread {name}: injected failure")));
        }
    }
    let n = Arc::downgrade(node);
    let thread_name = name.clone();
    Ok(crate::transport::spawn_named(name, move || {
        if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(body)) {
            let what = crate::transport::panic_message(&*panic);
            if let Some(node) = n.upgrade() {
                node.fail(Error::Internal(format!("thread {thread_name} panicked: {what}")));
            }
        }
    })?)
}
