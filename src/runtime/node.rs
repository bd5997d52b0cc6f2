//! A running node: the core behind one lock, the stores, the peer links, and
//! the glue that turns the core's Readies into sends, writes and wake-ups.

use super::faults::Faults;
use super::forward::response_from_result;
use super::inbound::Inbound;
use super::membership::Want;
use super::proposals::{Completion, PendingCommand};
use crate::core::{ConfChange, ConfChangeError, Membership, ProposeError, RaftCore, Ready, Role};
use crate::error::{Error, Result};
use crate::logging::NodeLog;
use crate::options::Options;
use crate::state_machine::{encode_command, CommandKind, Machine};
use crate::storage::LogStore;
use crate::transport::{Identity, PeerLink, TlsConfig};
use crate::wire::frame::Body;
use bytes::Bytes;
use crossbeam_channel::Sender;
use parking_lot::{Mutex, RwLock};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Work for the primary thread.
pub enum PrimaryEvent {
    /// Commands are queued in `Proposals`.
    NewCommand,
    Stop,
}

/// Work for the log writer thread.
pub enum LogEvent {
    /// A Ready whose writes (or after-persist messages) are due, in the order taken.
    Persist(Box<Ready>),
    /// The log may start after (index, term): its entries up to there are in a snapshot.
    Compact(u64, u64),
    Stop,
}

/// What callers wait on: the leader as last seen, and which peer links are up.
#[derive(Default)]
pub(super) struct Watch {
    pub(super) leader: Option<String>,
    pub(super) links_up: HashSet<String>,
}

/// Shared state of a node; every thread holds an `Arc` of it.
pub struct Node {
    pub id: String,
    /// The group this node is a member of, on its host.
    pub group: crate::storage::GroupId,
    pub opts: Options,
    /// Guarded like Floyd's `global_mu`: held briefly, never across I/O.
    pub(super) core: Mutex<RaftCore>,
    pub log_store: LogStore,
    pub state_machine: Machine,
    pub snapshots: super::snapshot::Snapshots,
    /// Everyone waiting on this node.
    pub waiters: super::waiters::Waiters,
    /// One link per other member of the configuration in force (and to a
    /// leader outside it); changed as the configuration changes.
    pub(super) peers: RwLock<HashMap<String, Arc<PeerLink>>>,
    /// Links to peers that left the configuration, kept until then: the
    /// removed server still gets the answer to its own request and the
    /// acknowledgements that let a removed leader learn the commit.
    pub(super) retiring: Mutex<HashMap<String, Instant>>,
    /// Links told to stop, joined once finished (or at close).
    pub(super) stopped_links: Mutex<Vec<Arc<PeerLink>>>,
    /// Who the links and the server admit, following the configuration.
    pub identity: Arc<Identity>,
    pub(super) local_ip: IpAddr,
    /// Mutual TLS on every link, when configured.
    pub(super) tls: Option<Arc<TlsConfig>>,
    /// Keeps the core's messages in order between its lock and the links (see `with_core`).
    pub(super) send_order: Mutex<()>,
    /// What the links deliver to; set once at start.
    pub(super) handler: OnceLock<Arc<Inbound>>,
    /// When each peer was last heard from (status only).
    pub(super) contacts: Mutex<HashMap<String, Instant>>,
    /// Index of the committed configuration last acted on.
    pub(super) committed_config: AtomicU64,
    pub(super) primary_tx: Sender<PrimaryEvent>,
    pub(super) log_tx: Sender<LogEvent>,
    /// Readies handed to the log writer and not yet written (and their
    /// messages sent). Changed under the core lock or after a write.
    pub(super) log_queued: AtomicUsize,
    pub(super) apply_tx: Sender<()>,
    /// The leader and the links, as parked commands look at them.
    pub(super) watch: Mutex<Watch>,
    pub(super) stopping: AtomicBool,
    /// The log writer found the disk full and is waiting for space.
    pub(super) disk_full: AtomicBool,
    pub(super) failure: Mutex<Option<Error>>,
    /// Refused messages are logged in bursts, then counted.
    pub(super) refusals_logged: super::log_throttle::LogThrottle,
    /// Frames dropped for naming a group this host does not have.
    pub(super) unknown_group_frames: AtomicU64,
    pub faults: Faults,
    pub log: Arc<NodeLog>,
}

/// Refused messages logged per [`REFUSAL_WINDOW`]; beyond, they are counted
/// and the count is logged with the next one logged.
pub const REFUSALS_LOGGED: u32 = 20;
pub const REFUSAL_WINDOW: Duration = Duration::from_secs(10);

impl Node {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        opts: Options,
        identity: Arc<Identity>,
        local_ip: IpAddr,
        tls: Option<Arc<TlsConfig>>,
        core: RaftCore,
        log_store: LogStore,
        state_machine: Machine,
        snapshots: super::snapshot::Snapshots,
        primary_tx: Sender<PrimaryEvent>,
        apply_tx: Sender<()>,
        log_tx: Sender<LogEvent>,
        log: Arc<NodeLog>,
    ) -> Self {
        Node {
            id: opts.local_id(),
            group: 0,
            opts,
            core: Mutex::new(core),
            log_store,
            state_machine,
            snapshots,
            waiters: Default::default(),
            peers: RwLock::new(HashMap::new()),
            retiring: Mutex::new(HashMap::new()),
            stopped_links: Mutex::new(Vec::new()),
            identity,
            local_ip,
            tls,
            send_order: Mutex::new(()),
            handler: OnceLock::new(),
            contacts: Mutex::new(HashMap::new()),
            committed_config: AtomicU64::new(0),
            primary_tx,
            log_tx,
            log_queued: AtomicUsize::new(0),
            apply_tx,
            watch: Mutex::new(Watch::default()),
            stopping: AtomicBool::new(false),
            disk_full: AtomicBool::new(false),
            failure: Mutex::new(None),
            refusals_logged: super::log_throttle::LogThrottle::new(REFUSALS_LOGGED, REFUSAL_WINDOW),
            unknown_group_frames: AtomicU64::new(0),
            faults: Faults::default(),
            log,
        }
    }

    /// Lets the log writer finish what is queued, then exit.
    pub(super) fn stop_log_writer(&self) {
        let _ = self.log_tx.send(LogEvent::Stop);
    }

    /// Reads the core under its lock (nothing it produces is sent).
    pub fn inspect<T>(&self, f: impl FnOnce(&RaftCore) -> T) -> T {
        f(&self.core.lock())
    }

    /// The configuration in force on this node.
    pub fn membership(&self) -> Membership {
        self.core.lock().membership().clone()
    }

    /// Queues work for the log writer, the one writer of the log store.
    pub(super) fn send_log_event(&self, ev: LogEvent) {
        let _ = self.log_tx.send(ev);
    }

    pub fn wake_apply(&self) {
        let _ = self.apply_tx.try_send(());
    }

    pub fn wake_primary(&self) {
        let _ = self.primary_tx.send(PrimaryEvent::NewCommand);
    }

    /// The leader as last seen by this node.
    pub fn leader(&self) -> Option<String> {
        self.watch.lock().leader.clone()
    }

    pub fn is_leader(&self) -> bool {
        self.core.lock().role() == Role::Leader
    }

    /// Runs `f` on the leader as last seen and the peers whose links are
    /// up, under their lock (quick: nothing may block in `f`).
    pub(super) fn with_watch<T>(&self, f: impl FnOnce(Option<&str>, &HashSet<String>) -> T) -> T {
        let watch = self.watch.lock();
        f(watch.leader.as_deref(), &watch.links_up)
    }

    /// Runs a client request on this node (which should be the leader):
    /// membership requests become configuration changes, the rest log commands.
    pub fn submit_command(&self, cmd: CommandKind, deadline: Instant, done: Completion) {
        if cmd.is_membership() {
            self.change_membership(cmd, deadline, done);
        } else if let CommandKind::TransferLeader { server } = cmd {
            self.transfer_leadership(server, deadline, done);
        } else if let CommandKind::Get { key } = cmd {
            // ReadIndex: confirmed leadership, then the local state machine; no log entry.
            self.read_by_index(key, deadline, done);
        } else {
            self.submit(encode_command(cmd), deadline, done);
        }
    }

    /// Asks the core for a single-server change; the caller is answered once
    /// the committed configuration shows it.
    fn change_membership(&self, cmd: CommandKind, deadline: Instant, done: Completion) {
        if let Err(e) = self.check_usable() {
            return done(Err(e));
        }
        let (change, want) = match cmd {
            CommandKind::AddServer { server } => (ConfChange::AddServer(server.clone()), Want::Voter(server)),
            CommandKind::RemoveServer { server } => {
                (ConfChange::RemoveServer(server.clone()), Want::Absent(server))
            }
            _ => return done(Err(Error::Internal("not a membership request".into()))),
        };
        // Registered under the core lock: the commit cannot slip in between.
        let refused = self.with_core(|core| match core.propose_conf_change(change) {
            Ok(_) => match self
                .waiters
                .config
                .wait(want, core.committed_membership().1, deadline, done)
            {
                Ok(met) => met.map(|done| (done, Ok(None))),
                // Closed meanwhile, the change under way: its outcome is unknown.
                Err(done) => Some((done, Err(self.unusable()))),
            },
            Err(e) => Some((done, Err(conf_change_error(e)))),
        });
        if let Some((done, result)) = refused {
            done(result);
        }
    }

    /// Queues a command on this node (which should be the leader); its caller
    /// gives up at `deadline`.
    pub fn submit(&self, payload: Bytes, deadline: Instant, done: Completion) {
        if let Err(e) = self.check_usable() {
            return done(Err(e));
        }
        let cmd = PendingCommand {
            payload,
            deadline,
            done,
        };
        match self.waiters.proposals.push(cmd) {
            Ok(true) => self.wake_primary(),
            Ok(false) => {}
            // Closed since the check: the close answered everyone else.
            Err(cmd) => (cmd.done)(Err(self.unusable())),
        }
    }

    /// NewCommand: proposes every queued command as one batch.
    pub fn propose_pending(&self) {
        let pending = self.waiters.proposals.take_pending();
        if pending.is_empty() {
            return;
        }
        if self.is_disk_full() {
            for cmd in pending {
                (cmd.done)(Err(disk_full_error("its log cannot be written")));
            }
            return;
        }
        let payloads = pending.iter().map(|c| c.payload.clone()).collect();
        let mut unregistered = Vec::new();
        let refused = self.with_core(|core| match core.propose(payloads) {
            Ok(positions) => {
                // Register under the core lock: nothing can be applied before it.
                for ((index, term), cmd) in positions.into_iter().zip(pending) {
                    unregistered.extend(self.waiters.proposals.wait_for(index, term, cmd).err());
                }
                None
            }
            Err(e) => Some((e, pending)),
        });
        // The node failed meanwhile: proposed, so perhaps applied elsewhere.
        for cmd in unregistered {
            (cmd.done)(Err(Error::Timeout(format!(
                "{}; the command may or may not have been applied",
                self.unusable()
            ))));
        }
        if let Some((refusal, pending)) = refused {
            if let ProposeError::Transferring { .. } = refusal {
                // §3.10: held until the transfer is over (within an election
                // timeout), then proposed here or refused as below. (Only this
                // thread proposes: the wake-up at its end cannot be missed.)
                return self.hold_back(pending);
            }
            let msg = match refusal {
                ProposeError::NotLeader { leader: Some(l) } => {
                    format!("this node is not the leader ({l} is)")
                }
                _ => "this node is not the leader".to_string(),
            };
            for cmd in pending {
                (cmd.done)(Err(Error::NoLeader(msg.clone())));
            }
        }
    }

    /// Answers a command forwarded by `to`.
    pub(super) fn reply(&self, to: &str, request_id: u64, result: Result<Option<Bytes>>) {
        let hint = self.leader().unwrap_or_default();
        self.send_frame(
            to,
            Body::ClientResponse(response_from_result(request_id, result, &hint)),
        );
    }

    /// Why a caller cannot be served: the node failed or is closing.
    pub(super) fn unusable(&self) -> Error {
        self.check_usable()
            .err()
            .unwrap_or_else(|| Error::Stopped("the node is closing".into()))
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

    /// Records a fatal error: the node stops taking part. Commands in flight
    /// may still commit elsewhere, so they learn `Timeout` (outcome unknown);
    /// every later call gets `Failed`.
    pub fn fail(&self, err: Error) {
        let failed = {
            let mut failure = self.failure.lock();
            if failure.is_some() {
                return;
            }
            let failed = Error::Failed(err.to_string());
            *failure = Some(failed.clone());
            failed
        };
        tracing::error!(node = %self.id, error = %err, "node failed; it no longer takes part in the cluster");
        let in_doubt = Error::Timeout(format!(
            "this node failed ({err}) with the command in flight; it may or may not have been applied"
        ));
        self.waiters.close(&failed, &in_doubt);
    }

    /// A frame for a group this host does not have: dropped (never does it
    /// create a group), counted, and logged like a refused message.
    pub(super) fn unknown_group(&self, from: &str, group: crate::storage::GroupId) {
        self.unknown_group_frames.fetch_add(1, Ordering::Relaxed);
        if let Some(left_out) = self.refusals_logged.admit(Instant::now()) {
            tracing::warn!(node = %self.id, peer = %from, group, left_out, "dropped a frame for a group this host does not have");
        }
    }

    /// Logs a message the core refused, at most [`REFUSALS_LOGGED`] lines
    /// per [`REFUSAL_WINDOW`]; a stream of them is counted, not logged.
    pub(super) fn log_refusal(&self, from: &str, why: &crate::core::Rejected) {
        if let Some(left_out) = self.refusals_logged.admit(Instant::now()) {
            tracing::warn!(node = %self.id, peer = %from, reason = %why, left_out, "refused a message");
        }
    }

    /// Steps one message from `from` into the core, timed as it arrives: a
    /// follower's read may be served on the lease, and a voter's lockout
    /// runs from its leader's last message.
    pub(super) fn step(&self, from: &str, msg: crate::core::Message) -> Result<(), crate::core::Rejected> {
        let now_us = super::monotonic_us();
        self.with_core(|core| {
            core.set_monotonic(now_us);
            core.step(from, msg)
        })
    }

    pub fn failure(&self) -> Option<Error> {
        self.failure.lock().clone()
    }

    pub(super) fn set_disk_full(&self, full: bool) {
        self.disk_full.store(full, Ordering::Release);
    }

    /// Whether this node's log cannot be written for lack of space.
    pub fn is_disk_full(&self) -> bool {
        self.disk_full.load(Ordering::Acquire)
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Marks the node as closing and wakes its threads.
    pub fn begin_stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.primary_tx.send(PrimaryEvent::Stop);
        self.snapshots.wake();
    }
}

/// The caller's view of a refused membership change.
fn conf_change_error(e: ConfChangeError) -> Error {
    match e {
        ConfChangeError::NotLeader { leader: Some(l) } => {
            Error::NoLeader(format!("this node is not the leader ({l} is)"))
        }
        ConfChangeError::NotLeader { leader: None } => Error::NoLeader("this node is not the leader".into()),
        ConfChangeError::InProgress(m) => Error::Busy(format!("a membership change is in progress: {m}")),
        ConfChangeError::Transferring(t) => Error::Busy(format!("leadership is being transferred to {t}")),
        e @ (ConfChangeError::NotMember(_) | ConfChangeError::LastVoter(_)) => {
            Error::InvalidArgument(e.to_string())
        }
    }
}

/// The refusal of a command this node did not apply because its disk is full.
pub(super) fn disk_full_error(why: &str) -> Error {
    Error::Io(format!(
        "this node's disk is full: {why}, so the command was not applied"
    ))
}
