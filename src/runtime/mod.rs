//! The threads that drive the core, in the original Floyd's shape:
//! `floyd-primary-<port>` (CheckLeader, HeartBeat, NewCommand),
//! `floyd-log-<port>` (log writes), `floyd-peer-<port>-><peer>` (one per
//! member), `floyd-apply-<port>`, `floyd-snapshot-<port>`, and the RPC
//! server's `floyd-listen-<port>` with one `floyd-conn-<port>-<n>` per
//! connection. `threads.rs` starts and joins the node's own.

mod apply;
pub mod execute;
pub mod faults;
pub mod forward;
mod inbound;
mod links;
mod log_throttle;
mod log_writer;
mod membership;
pub mod node;
mod primary;
pub mod proposals;
mod reads;
mod ready;
mod snapshot;
mod threads;
pub(crate) mod transfer;
mod waiters;

use crate::core::{Config, RaftCore, Restored};
use crate::error::{Error, Result};
use crate::logging::{NodeLog, Rotation};
use crate::options::Options;
use crate::state_machine::{Machine, StateMachine};
use crate::storage::snapshots::SnapshotStore;
use crate::storage::LogStore;
use crate::transport::{Identity, Server, ServerConfig, TlsConfig};
use inbound::Inbound;
use node::Node;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;
use threads::{Role, Threads};

/// The one group of a node opened on its own (a private host).
const GROUP: crate::storage::GroupId = 0;

/// A started node and its threads. `close` stops and joins all of them and
/// closes both stores; so does dropping it, which is how a failed start
/// cleans up what it had started.
pub struct Runtime {
    pub node: Arc<Node>,
    server: Option<Server>,
    threads: Threads,
    closed: bool,
}

/// The core's tick: a tenth of the heartbeat interval, within [1 ms, 10 ms].
fn tick_of(opts: &Options) -> Duration {
    Duration::from_micros((opts.heartbeat_us / 10).clamp(1_000, 10_000))
}

/// The core's timers in ticks. Saturating: `validate` caps the timers, but an
/// overflow here must never turn into a panic or a wrapped, tiny timeout.
fn core_config(opts: &Options, tick: Duration, bootstrap: Vec<String>) -> Config {
    let tick_us = u64::try_from(tick.as_micros()).unwrap_or(u64::MAX).max(1);
    let ticks = |us: u64| u32::try_from(us / tick_us).unwrap_or(u32::MAX);
    let mut cfg = Config::new(opts.local_id(), bootstrap);
    cfg.heartbeat_ticks = ticks(opts.heartbeat_us).max(1);
    cfg.election_ticks = ticks(opts.check_leader_us).max(cfg.heartbeat_ticks.saturating_add(1));
    cfg.max_entries_per_message = opts.append_entries_count_once as usize;
    cfg.max_bytes_per_message = opts.append_entries_size_once;
    // Four full messages in flight per follower: enough to keep a LAN link
    // busy, and a bound on the leader's memory whatever the value size.
    cfg.max_inflight_bytes = opts.append_entries_size_once.saturating_mul(4);
    if opts.lease_reads {
        cfg.lease_us = lease_us(cfg.election_ticks, tick_us);
        // The same lockout as the ticks give, timed on the monotonic clock
        // from the leader's message, so a late burst of ticks cannot end it.
        cfg.lockout_us = u64::from(cfg.election_ticks.saturating_sub(1)).saturating_mul(tick_us);
    }
    cfg
}

/// The lease: a follower refuses votes for at least `election_ticks - 1`
/// ticks after hearing from its leader (its first tick may come at once);
/// one tick less for scheduling, and 10% off for clock drift.
fn lease_us(election_ticks: u32, tick_us: u64) -> u64 {
    u64::from(election_ticks.saturating_sub(2)).saturating_mul(tick_us) / 10 * 9
}

/// Microseconds on the monotonic clock since the first call in this process.
pub(crate) fn monotonic_us() -> u64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(std::time::Instant::now);
    u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Opens the stores, restores the core and starts every thread, all of them
/// logging through the node's own log.
pub fn start(mut opts: Options, user: Option<Box<dyn StateMachine>>) -> Result<Runtime> {
    opts.validate()?;
    std::fs::create_dir_all(&opts.path)
        .map_err(|e| Error::Io(format!("cannot create {}: {e}", opts.path.display())))?;
    let rotation = Rotation {
        max_bytes: opts.log_max_bytes,
        keep_files: opts.log_keep_files,
    };
    let log = NodeLog::open(&opts.path, opts.log_level, opts.log_callback.clone(), rotation);
    let dispatch = log.dispatch();
    let started = tracing::dispatcher::with_default(&dispatch, || start_logged(opts, log.clone(), user));
    if let Err(e) = &started {
        tracing::dispatcher::with_default(&dispatch, || tracing::error!(error = %e, "node failed to start"));
    }
    started
}

fn start_logged(opts: Options, log: Arc<NodeLog>, user: Option<Box<dyn StateMachine>>) -> Result<Runtime> {
    let local_ip: IpAddr = opts
        .local_ip
        .parse()
        .map_err(|_| Error::InvalidArgument("bad local_ip".into()))?;
    // Before any store opens: unusable certificates are the caller's to fix.
    let tls = match &opts.tls {
        Some(files) => Some(Arc::new(
            TlsConfig::load(files, SocketAddr::new(local_ip, opts.local_port), &opts.members)
                .map_err(|e| Error::InvalidArgument(e.to_string()))?,
        )),
        None => None,
    };
    let log_store = LogStore::open(&opts.path.join("log"))?;
    let state_machine = Machine::open(&opts.path.join("db"), user)?;
    let loaded = log_store.load(GROUP)?;
    let snapshot_store = Arc::new(SnapshotStore::open(&opts.path.join("snapshots"))?);
    let (applied, snapshot) = snapshot::restore_at_start(&snapshot_store, &state_machine)?;
    let log_end = loaded.log_start.0 + loaded.entries.len() as u64;
    let known = log_end.max(snapshot.as_ref().map_or(0, |s| s.last_index));
    if applied > known {
        return Err(Error::Corruption(format!(
            "state machine applied index {applied} is past the end of the log ({log_end}) and of the latest snapshot"
        )));
    }
    let tick = tick_of(&opts);
    let fresh = known == 0;
    let bootstrap = bootstrap_members(&opts, &log_store, fresh)?;
    let bootstrap_id = match bootstrap.is_empty() {
        true => 0,
        false => crate::transport::config_id(&bootstrap),
    };
    let restored = Restored {
        hard_state: loaded.hard_state,
        log_start: loaded.log_start,
        entries: loaded.entries,
        applied,
        config: loaded.config,
        snapshot,
    };
    let cfg = core_config(&opts, tick, bootstrap);
    if opts.lease_reads && cfg.lease_us == 0 {
        return Err(Error::InvalidArgument(format!(
            "lease reads need an election timeout of at least 3 ticks (check_leader_us {} with a tick of {} µs)",
            opts.check_leader_us,
            tick.as_micros()
        )));
    }
    let mut core = RaftCore::new(cfg, restored, rand::random());
    core.set_clock(wall_clock_ms());
    core.set_monotonic(monotonic_us());
    let membership = core.membership().clone();
    if core.config_index() > 0 && !opts.join && membership.voters.iter().ne(opts.members.iter()) {
        tracing::warn!(
            options = ?opts.members,
            log = ?membership.voters,
            "the member list in the options differs from the configuration in the log; the log's configuration is kept"
        );
    }
    let identity = Arc::new(Identity::new(&opts.cluster_id, bootstrap_id));
    let listener = TcpListener::bind(SocketAddr::new(local_ip, opts.local_port))
        .map_err(|e| Error::Io(format!("cannot listen on {}: {e}", opts.local_id())))?;

    let (primary_tx, primary_rx) = crossbeam_channel::unbounded();
    let (apply_tx, apply_rx) = crossbeam_channel::bounded(1);
    let (log_tx, log_rx) = crossbeam_channel::unbounded();
    let node = Arc::new(Node::new(
        opts,
        identity.clone(),
        local_ip,
        tls.clone(),
        core,
        log_store,
        state_machine,
        snapshot::Snapshots::new(snapshot_store),
        primary_tx,
        apply_tx,
        log_tx,
        log,
    ));
    // From here on an error drops `rt`, and its close stops whatever was
    // started and closes the stores: one cleanup path for every failure.
    let mut rt = Runtime {
        node: node.clone(),
        server: None,
        threads: Threads::default(),
        closed: false,
    };
    let handler = Arc::new(Inbound(Arc::downgrade(&node)));
    node.start_links(handler.clone())?;
    let name = node.opts.local_port.to_string();
    let server_cfg = ServerConfig {
        name: name.clone(),
        identity,
        max_frame_bytes: crate::transport::MAX_FRAME_BYTES,
        idle_timeout: Duration::from_micros(node.opts.check_leader_us.saturating_mul(3))
            .max(Duration::from_secs(3)),
        tls,
    };
    rt.server = Some(Server::start(listener, server_cfg, handler)?);
    let threads = &mut rt.threads;
    let n = node.clone();
    threads.spawn(&node, Role::LogWriter, format!("floyd-log-{name}"), move || {
        log_writer::run(n, log_rx)
    })?;
    let n = node.clone();
    threads.spawn(&node, Role::Primary, format!("floyd-primary-{name}"), move || {
        primary::run(n, primary_rx, tick)
    })?;
    let n = node.clone();
    threads.spawn(&node, Role::Other, format!("floyd-apply-{name}"), move || {
        apply::run(n, apply_rx)
    })?;
    if !node.state_machine.is_user() {
        let n = node.clone();
        threads.spawn(&node, Role::Other, format!("floyd-snapshot-{name}"), move || {
            snapshot::run(n)
        })?;
    }
    node.wake_apply();
    tracing::info!(node = %node.id, members = ?node.opts.members, "node started");
    Ok(rt)
}

/// The bootstrap member list: the one stored at the first start, else the
/// options' (stored now). A joining node that has no log has none.
fn bootstrap_members(opts: &Options, store: &LogStore, log_empty: bool) -> Result<Vec<String>> {
    if let Some(stored) = store.bootstrap_members(GROUP)? {
        if !opts.join && stored != opts.members {
            tracing::warn!(options = ?opts.members, stored = ?stored,
                "the member list in the options differs from the one this node bootstrapped with; keeping the stored one");
        }
        return Ok(stored);
    }
    if opts.join {
        if log_empty {
            tracing::info!(node = %opts.local_id(), "joining: waiting for a leader to add this node");
        }
        return Ok(Vec::new());
    }
    store.set_bootstrap_members(GROUP, &opts.members)?;
    Ok(opts.members.clone())
}

/// Milliseconds since the Unix epoch, as leaders stamp them on entries.
pub(crate) fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Runtime {
    /// Stops every thread and joins it, fails pending callers with `Stopped`
    /// and closes both stores. Idempotent. Also undoes a start that failed midway.
    pub fn close(&mut self) {
        if std::mem::replace(&mut self.closed, true) {
            return;
        }
        let dispatch = self.node.log.dispatch();
        tracing::dispatcher::with_default(&dispatch, || self.close_logged());
    }

    fn close_logged(&mut self) {
        self.node.begin_stop();
        if let Some(server) = self.server.take() {
            server.stop();
        }
        self.threads.join(&self.node);
        for link in self.node.take_links() {
            link.stop();
        }
        let stopped = Error::Stopped("the node was closed".into());
        self.node.waiters.close(&stopped, &stopped);
        // Only once no thread of the node is left: the `Floyd` handle (and so
        // the node) may live on, but the directory must open again right away.
        self.node.log_store.close();
        self.node.state_machine.close();
        tracing::info!(node = %self.node.id, "node closed");
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_beyond_the_validated_range_saturate_instead_of_panicking_or_wrapping() {
        let mut o = Options::new("127.0.0.1:1", "127.0.0.1", 1, "/tmp/x");
        o.heartbeat_us = u64::MAX;
        o.check_leader_us = u64::MAX;
        let tick = tick_of(&o);
        assert_eq!(tick, Duration::from_millis(10));
        let cfg = core_config(&o, tick, vec![]);
        assert_eq!((cfg.heartbeat_ticks, cfg.election_ticks), (u32::MAX, u32::MAX));
        // The largest validated timers still fit without saturating.
        o.heartbeat_us = crate::options::MAX_TIMER_US / 2;
        o.check_leader_us = crate::options::MAX_TIMER_US;
        let cfg = core_config(&o, tick_of(&o), vec![]);
        assert_eq!((cfg.heartbeat_ticks, cfg.election_ticks), (180_000, 360_000));
    }

    #[test]
    fn the_lease_is_shorter_than_the_shortest_vote_lockout_by_the_drift_bound() {
        let mut o = Options::new("127.0.0.1:1", "127.0.0.1", 1, "/tmp/x");
        o.lease_reads = true;
        let tick = tick_of(&o);
        let cfg = core_config(&o, tick, vec![]);
        // Defaults: 10 ms ticks, 100 of them; a follower refuses votes for >= 99.
        assert_eq!(cfg.election_ticks, 100);
        assert_eq!(cfg.lease_us, 98 * 10_000 / 10 * 9);
        let lockout = u64::from(cfg.election_ticks - 1) * tick.as_micros() as u64;
        assert!(cfg.lease_us * 10 / 9 < lockout);
        // The same lockout on the monotonic clock, whatever the ticks do.
        assert_eq!(cfg.lockout_us, lockout);
        o.lease_reads = false;
        assert_eq!(core_config(&o, tick, vec![]).lease_us, 0);
    }
}
