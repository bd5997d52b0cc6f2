//! The host's own threads, started and joined here and nowhere else:
//! `floyd-primary-<port>` (every group's clock and NewCommand),
//! `floyd-log-<port>` (the one writer of the log store), the apply workers
//! `floyd-apply-<port>-<n>`, `floyd-snapshot-<port>` and `floyd-watch-<port>`
//! (every group's watch callbacks). Their number does
//! not depend on how many groups the host runs. (The peer links' threads
//! belong to the links, the RPC server's to the server.)
//!
//! Each catches its own panic, which fails the host instead of vanishing.
//! They are joined in the order that lets each finish its work: the primary
//! thread first, as it produces Readies; then the log writer, told to stop
//! once nothing more can come, after writing what is queued; then the rest.

use super::host::{HostQueues, HostShared};
use super::node::{LogEvent, PrimaryEvent};
use crate::error::{Error, Result};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::thread::JoinHandle;

#[derive(Default)]
pub struct Threads {
    primary: Option<JoinHandle<()>>,
    log_writer: Option<JoinHandle<()>>,
    others: Vec<JoinHandle<()>>,
    names: Vec<String>,
}

impl Threads {
    /// Starts every thread of the host.
    pub(super) fn start(&mut self, host: &Arc<HostShared>, q: HostQueues) -> Result<()> {
        let port = host.opts.local_port;
        let h = host.clone();
        self.log_writer = Some(self.spawn(host, format!("floyd-log-{port}"), move || {
            super::log_writer::run(h)
        })?);
        let h = host.clone();
        let primary = q.primary;
        self.primary = Some(self.spawn(host, format!("floyd-primary-{port}"), move || {
            super::primary::run(h, primary)
        })?);
        for n in 0..apply_workers(host) {
            let h = host.clone();
            let t = self.spawn(host, format!("floyd-apply-{port}-{n}"), move || {
                super::apply::run(h)
            })?;
            self.others.push(t);
        }
        let h = host.clone();
        let wake = q.snapshot;
        let t = self.spawn(host, format!("floyd-snapshot-{port}"), move || {
            super::snapshot::run(h, wake)
        })?;
        self.others.push(t);
        let watchers = q.watch;
        let t = self.spawn(host, format!("floyd-watch-{port}"), move || {
            // Every group's watch callbacks, one watcher at a time.
            while let Ok(w) = watchers.recv() {
                if w.id == 0 {
                    return;
                }
                w.deliver();
            }
        })?;
        self.others.push(t);
        Ok(())
    }

    fn spawn(
        &mut self,
        host: &Arc<HostShared>,
        name: String,
        body: impl FnOnce() + Send + 'static,
    ) -> Result<JoinHandle<()>> {
        self.names.push(name.clone());
        spawn_guarded(host, name, body)
    }

    /// The names of the host's threads.
    pub fn names(&self) -> Vec<String> {
        self.names.clone()
    }

    /// Joins every thread (the host must be stopping): the primary thread,
    /// then the log writer, then the rest.
    pub(super) fn join(&mut self, host: &HostShared) {
        let _ = host.primary_tx.send(PrimaryEvent::Stop);
        if let Some(t) = self.primary.take() {
            let _ = t.join();
        }
        host.log_tx.send(LogEvent::Stop);
        if let Some(t) = self.log_writer.take() {
            let _ = t.join();
        }
        host.apply.stop();
        let _ = host.snapshot_tx.try_send(());
        let _ = host
            .watch_tx
            .send(crate::state_machine::watch::Watcher::stop_marker());
        for t in self.others.drain(..) {
            let _ = t.join();
        }
    }
}

/// How many apply workers: `HostOptions::workers` (0: one per core, at most
/// 8); one for a private host, whose one group is applied in order anyway.
fn apply_workers(host: &HostShared) -> usize {
    if host.private {
        return 1;
    }
    match host.opts.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()).min(8),
        n => n as usize,
    }
}

/// Spawns a named thread whose panic marks the host failed instead of vanishing.
fn spawn_guarded(
    host: &Arc<HostShared>,
    name: String,
    body: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>> {
    if let Some(prefix) = host.opts.fail_spawn_of.as_deref() {
        if name.starts_with(prefix) {
            return Err(Error::Io(format!("cannot start thread {name}: injected failure")));
        }
    }
    let h = Arc::downgrade(host);
    let thread_name = name.clone();
    Ok(crate::transport::spawn_named(name, move || {
        if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(body)) {
            let what = crate::transport::panic_message(&*panic);
            if let Some(host) = h.upgrade() {
                host.fail(Error::Internal(format!("thread {thread_name} panicked: {what}")));
            }
        }
    })?)
}
