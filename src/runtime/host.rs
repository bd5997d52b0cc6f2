//! A host: one listen address, one data directory, one LOG, one log store,
//! one key-value store and one set of threads, shared by every Raft group
//! opened on it ([`Host::open_group`]). A node opened on its own
//! (`Floyd::open`) is a private host with one group, 0, whose data keeps
//! the layout of before groups.
//!
//! The threads (`threads.rs`) do not grow with the groups: the primary
//! thread ticks them all and proposes their commands, the log writer
//! persists every group's Readies in one batch with one fsync, a few apply
//! workers take groups one at a time, one snapshot thread takes the
//! built-in store's snapshots; a peer worker per remote *host* carries every
//! group's frames, and the server a thread per connection from one.
//!
//! Failure domains: an I/O error on the shared log fails the host (every
//! group answers `Failed`); a full disk refuses writes host-wide until there
//! is room; a user state machine that fails fails its group only.

use super::apply::ApplyQueue;
use super::faults::Faults;
use super::inbound::HostInbound;
use super::links::Links;
use super::log_throttle::LogThrottle;
use super::node::{LogEvent, Node, PrimaryEvent, REFUSALS_LOGGED, REFUSAL_WINDOW};
use super::threads::Threads;
use crate::error::{Error, Result};
use crate::logging::{NodeLog, Rotation};
use crate::options::{GroupOptions, HostOptions};
use crate::state_machine::{KvStore, StateMachine};
use crate::storage::{GroupId, LogStore};
use crate::transport::{Identity, Server, ServerConfig, TlsConfig};
use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a host's groups and threads share.
pub struct HostShared {
    pub opts: HostOptions,
    /// The host's address, `ip:port`: what its groups call their member here.
    pub id: String,
    pub local_ip: IpAddr,
    /// A node opened on its own: one group, 0, with stores and an identity of its own.
    pub private: bool,
    pub log: Arc<NodeLog>,
    pub tls: Option<Arc<TlsConfig>>,
    /// Who the links and the server admit.
    pub identity: Arc<Identity>,
    pub log_store: LogStore,
    /// Every group's built-in key-value state (a shared host only: a private
    /// host's one group keeps a store of its own, with checkpoints).
    pub kv: Option<Arc<KvStore>>,
    pub links: Links,
    pub groups: RwLock<BTreeMap<GroupId, Arc<Node>>>,
    /// Groups taken out of `groups` whose close has not finished: neither
    /// reopened nor dropped until it has.
    pub closing: Mutex<BTreeSet<GroupId>>,
    pub primary_tx: Sender<PrimaryEvent>,
    pub log_tx: super::mailbox::Mailbox<LogEvent>,
    pub apply: ApplyQueue,
    /// Wakes the snapshot thread.
    pub snapshot_tx: Sender<()>,
    /// Watchers with changes to deliver, for the watch thread.
    pub watch_tx: Sender<Arc<crate::state_machine::watch::Watcher>>,
    pub faults: Faults,
    pub stopping: AtomicBool,
    failure: Mutex<Option<Error>>,
    /// The log writer found the disk full and is waiting for space.
    pub disk_full: AtomicBool,
    /// Groups whose apply waits for space in the key-value store: the host
    /// refuses writes meanwhile, as it does when the log is full (a write
    /// would be logged, never applied, and time out).
    pub applies_waiting_for_space: std::sync::atomic::AtomicUsize,
    /// Batches the log writer wrote, and how many of them it synced: with
    /// many groups busy, one sync covers all of their entries.
    pub log_writes: AtomicU64,
    pub log_syncs: AtomicU64,
    /// Refused messages are logged in bursts, then counted.
    pub refusals_logged: LogThrottle,
    /// Groups quiet here now, and how often one woke (`quiet.rs`).
    pub quiet_groups: AtomicU64,
    pub wakeups: AtomicU64,
    /// Heartbeats sent (AppendEntries without entries), by every group.
    pub heartbeats_sent: AtomicU64,
    /// Heartbeats and answers sent coalesced, and the frames that carried
    /// them (`coalesce.rs`).
    pub coalesced_beats: AtomicU64,
    pub coalesced_frames: AtomicU64,
    /// Heartbeats and wake-ups in the last whole second (`quiet.rs`).
    pub rates: super::quiet::Rates,
    /// Latencies and more counters (`crate::metrics`).
    pub metrics: crate::metrics::HostMetrics,
}

/// The receiving ends of the host's queues, for its threads.
pub(super) struct HostQueues {
    pub primary: Receiver<PrimaryEvent>,
    pub snapshot: Receiver<()>,
    pub watch: Receiver<Arc<crate::state_machine::watch::Watcher>>,
}

impl HostShared {
    pub fn failure(&self) -> Option<Error> {
        self.failure.lock().clone()
    }

    /// Records a fatal error of the host (its log cannot be written): every
    /// group fails with it.
    pub fn fail(&self, err: Error) {
        {
            let mut failure = self.failure.lock();
            if failure.is_some() {
                return;
            }
            *failure = Some(Error::Failed(err.to_string()));
        }
        tracing::error!(host = %self.id, error = %err, "host failed; none of its groups takes part any more");
        for node in self.nodes() {
            node.fail(err.clone());
        }
    }

    /// The groups open now.
    pub fn nodes(&self) -> Vec<Arc<Node>> {
        self.groups.read().values().cloned().collect()
    }

    pub fn node(&self, group: GroupId) -> Option<Arc<Node>> {
        self.groups.read().get(&group).cloned()
    }

    pub(super) fn set_disk_full(&self, full: bool) {
        self.disk_full.store(full, Ordering::Release);
    }

    /// The log or a group's state machine cannot be written for lack of space.
    pub fn is_disk_full(&self) -> bool {
        self.disk_full.load(Ordering::Acquire) || self.applies_waiting_for_space.load(Ordering::Acquire) > 0
    }

    /// The other hosts linked to, and each connection's age ([`Host::peer_hosts`]).
    pub fn peer_hosts(&self) -> Vec<PeerHost> {
        self.links
            .all()
            .into_iter()
            .map(|(id, link)| PeerHost {
                id,
                connected_for: link.connected_for(),
            })
            .collect()
    }

    /// A frame for a group this host does not have: dropped (never does it
    /// create a group), counted, and logged like a refused message.
    pub(super) fn unknown_group(&self, from: &str, group: GroupId) {
        self.metrics.refused.count(crate::metrics::Refusal::UnknownGroup);
        if let Some(left_out) = self.refusals_logged.admit(Instant::now()) {
            tracing::warn!(host = %self.id, peer = %from, group, left_out,
                "dropped a frame for a group this host does not have");
        }
    }
}

/// A host of Raft groups (see the module docs). `close` stops every group
/// still open on it and joins every thread; so does dropping it.
pub struct Host {
    shared: Arc<HostShared>,
    server: Mutex<Option<Server>>,
    threads: Mutex<Threads>,
    closed: AtomicBool,
    /// Opening and dropping groups, one at a time: a drop's check that the
    /// group is not open holds until its data is gone.
    admin: Mutex<()>,
}

/// Another host this one links to ([`Host::peer_hosts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerHost {
    /// Its address (`ip:port`), as groups name their members.
    pub id: String,
    /// How long its connection has been up; `None` while it is down.
    pub connected_for: Option<std::time::Duration>,
}

impl Host {
    /// Opens a host for many groups: its directory, log store, key-value
    /// store, listener and threads. No group runs until `open_group`.
    pub fn open(opts: HostOptions) -> Result<Host> {
        Host::start(opts, false, &[])
    }

    /// A private host for a node opened on its own; `members` (its group's)
    /// serve the TLS checks at open.
    pub(crate) fn open_private(opts: HostOptions, members: &[String]) -> Result<Host> {
        Host::start(opts, true, members)
    }

    fn start(mut opts: HostOptions, private: bool, members: &[String]) -> Result<Host> {
        opts.validate()?;
        std::fs::create_dir_all(&opts.path)
            .map_err(|e| Error::Io(format!("cannot create {}: {e}", opts.path.display())))?;
        let rotation = Rotation {
            max_bytes: opts.log_max_bytes,
            keep_files: opts.log_keep_files,
        };
        let log = NodeLog::open(&opts.path, opts.log_level, opts.log_callback.clone(), rotation);
        let dispatch = log.dispatch();
        let started = tracing::dispatcher::with_default(&dispatch, || {
            Host::start_logged(opts, private, members, log.clone())
        });
        if let Err(e) = &started {
            tracing::dispatcher::with_default(
                &dispatch,
                || tracing::error!(error = %e, "node failed to start"),
            );
        }
        started
    }

    fn start_logged(opts: HostOptions, private: bool, members: &[String], log: Arc<NodeLog>) -> Result<Host> {
        let local_ip: IpAddr = opts
            .local_ip
            .parse()
            .map_err(|_| Error::InvalidArgument("bad local_ip".into()))?;
        let addr = SocketAddr::new(local_ip, opts.local_port);
        // Before any store opens: unusable certificates are the caller's to fix.
        let tls = match &opts.tls {
            Some(files) => Some(Arc::new(
                TlsConfig::load(files, addr, members).map_err(|e| Error::InvalidArgument(e.to_string()))?,
            )),
            None => None,
        };
        let log_store = LogStore::open(&opts.path.join("log"))?;
        let kv = match private {
            true => None,
            false => Some(KvStore::open(&opts.path.join("db"))?),
        };
        let identity = Arc::new(match private {
            true => Identity::new(&opts.cluster_id, 0),
            false => Identity::for_host(&opts.cluster_id),
        });
        let listener = TcpListener::bind(addr)
            .map_err(|e| Error::Io(format!("cannot listen on {}: {e}", opts.local_id())))?;
        let (primary_tx, primary) = crossbeam_channel::unbounded();
        let (snapshot_tx, snapshot) = crossbeam_channel::bounded(1);
        let (watch_tx, watch) = crossbeam_channel::unbounded();
        let shared = Arc::new(HostShared {
            id: opts.local_id(),
            local_ip,
            private,
            log,
            tls,
            identity,
            log_store,
            kv,
            links: Links::default(),
            groups: RwLock::new(BTreeMap::new()),
            closing: Mutex::new(BTreeSet::new()),
            primary_tx,
            log_tx: Default::default(),
            apply: ApplyQueue::default(),
            snapshot_tx,
            watch_tx,
            faults: Faults::default(),
            stopping: AtomicBool::new(false),
            failure: Mutex::new(None),
            disk_full: AtomicBool::new(false),
            applies_waiting_for_space: Default::default(),
            log_writes: AtomicU64::new(0),
            log_syncs: AtomicU64::new(0),
            refusals_logged: LogThrottle::new(REFUSALS_LOGGED, REFUSAL_WINDOW),
            quiet_groups: AtomicU64::new(0),
            wakeups: AtomicU64::new(0),
            heartbeats_sent: AtomicU64::new(0),
            coalesced_beats: AtomicU64::new(0),
            coalesced_frames: AtomicU64::new(0),
            rates: Default::default(),
            metrics: Default::default(),
            opts,
        });
        // From here on an error drops `host`, and its close stops whatever
        // was started and closes the stores: one cleanup path for every failure.
        let host = Host {
            shared: shared.clone(),
            server: Mutex::new(None),
            threads: Mutex::new(Threads::default()),
            closed: AtomicBool::new(false),
            admin: Mutex::new(()),
        };
        let handler = Arc::new(HostInbound(Arc::downgrade(&shared)));
        shared.links.set_handler(handler.clone());
        let queues = HostQueues {
            primary,
            snapshot,
            watch,
        };
        host.threads.lock().start(&shared, queues)?;
        let server_cfg = ServerConfig {
            name: shared.opts.local_port.to_string(),
            identity: shared.identity.clone(),
            max_frame_bytes: crate::transport::MAX_FRAME_BYTES,
            idle_timeout: Duration::from_secs(3),
            tls: shared.tls.clone(),
        };
        *host.server.lock() = Some(Server::start(listener, server_cfg, handler)?);
        Ok(host)
    }

    /// Opens (creates or restarts) group `group` on this host, running the
    /// built-in key-value store, and returns its handle: every call of
    /// [`Floyd`](crate::Floyd) works on it. Its members are host addresses;
    /// this host's is its member. A group already open here is refused.
    pub fn open_group(&self, group: GroupId, opts: GroupOptions) -> Result<crate::Floyd> {
        self.open_group_with(group, opts, None)
    }

    /// [`Host::open_group`] with a user-defined state machine.
    pub fn open_group_with_state_machine(
        &self,
        group: GroupId,
        opts: GroupOptions,
        machine: Box<dyn StateMachine>,
    ) -> Result<crate::Floyd> {
        self.open_group_with(group, opts, Some(machine))
    }

    fn open_group_with(
        &self,
        group: GroupId,
        opts: GroupOptions,
        machine: Option<Box<dyn StateMachine>>,
    ) -> Result<crate::Floyd> {
        let node = self.start_group(group, opts, machine)?;
        Ok(crate::Floyd::for_group(node, None))
    }

    /// Opens a group and returns its node (a private host's one group too).
    pub(crate) fn start_group(
        &self,
        group: GroupId,
        opts: GroupOptions,
        machine: Option<Box<dyn StateMachine>>,
    ) -> Result<Arc<Node>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Stopped("the host is closed".into()));
        }
        if self.shared.private && group != 0 {
            return Err(Error::InvalidArgument(
                "a node opened on its own runs group 0 only".into(),
            ));
        }
        let dispatch = self.shared.log.dispatch();
        let admin = self.admin.lock();
        let started = tracing::dispatcher::with_default(&dispatch, || {
            super::group::open(&self.shared, group, opts, machine)
        });
        drop(admin);
        if let Err(e) = &started {
            tracing::dispatcher::with_default(
                &dispatch,
                || tracing::error!(group, error = %e, "group failed to start"),
            );
        }
        started
    }

    /// The host's address, `ip:port`: what its groups call their member here.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// The options the host was opened with.
    pub fn options(&self) -> &HostOptions {
        &self.shared.opts
    }

    /// The ids of the groups open on this host, sorted.
    pub fn list_groups(&self) -> Vec<GroupId> {
        self.shared.groups.read().keys().copied().collect()
    }

    /// Deletes group `group`'s data on this host (its log, metadata,
    /// state and snapshots); refused while it is open here.
    pub fn drop_group(&self, group: GroupId) -> Result<()> {
        let _admin = self.admin.lock();
        if self.shared.groups.read().contains_key(&group) || self.shared.closing.lock().contains(&group) {
            return Err(Error::InvalidArgument(format!(
                "group {group} is open on this host: close it first"
            )));
        }
        super::group::drop_data(&self.shared, group)
    }

    /// The metrics of the host and of every group open on it, in the
    /// OpenMetrics text format Prometheus scrapes (README.md, "Metrics").
    pub fn metrics(&self) -> String {
        super::exposition::host_text(&self.shared)
    }

    /// The other hosts this one has links to, and how long each link's
    /// connection has been up (`None`: down). A host that restarted or
    /// came back after a partition has a connection younger than the
    /// others (raftis's balancer hands leaderships back to it then).
    pub fn peer_hosts(&self) -> Vec<PeerHost> {
        self.shared.peer_hosts()
    }

    /// The host's threads, open groups and, per group, its role, term,
    /// leader, commit and applied index, as JSON.
    pub fn status_json(&self) -> String {
        super::group::host_status_json(&self.shared, &self.threads.lock().names())
    }

    /// Stops every group still open on this host, then every thread, and
    /// closes the stores. Idempotent. The groups' handles then answer
    /// `Stopped`.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let dispatch = self.shared.log.dispatch();
        tracing::dispatcher::with_default(&dispatch, || self.close_logged());
    }

    fn close_logged(&self) {
        for node in self.shared.nodes() {
            super::group::close(&node);
        }
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Some(server) = self.server.lock().take() {
            server.stop();
        }
        self.threads.lock().join(&self.shared);
        for link in self.shared.links.take_all() {
            link.stop();
        }
        self.shared.log_store.close();
        if let Some(kv) = &self.shared.kv {
            kv.close();
        }
        tracing::info!(host = %self.shared.id, "host closed");
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.close();
    }
}
