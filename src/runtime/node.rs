//! A group on its host: the core behind one lock, its state machine and
//! snapshots, everyone waiting on it, and the glue that turns the core's
//! Readies into sends, writes and wake-ups. The threads, the connections and
//! the log store are the host's (`host.rs`), shared by all its groups.

use super::faults::Faults;
use super::forward::response_from_result;
use super::host::HostShared;
use super::membership::Want;
use super::primary::Clock;
use super::proposals::{Completion, PendingCommand};
use super::reads::Query;
use crate::core::{ConfChange, ConfChangeError, Membership, ProposeError, RaftCore, Ready, Role};
use crate::error::{Error, Result};
use crate::logging::NodeLog;
use crate::options::Options;
use crate::state_machine::{encode_command, encode_command_in, CommandKind, Machine};
use crate::storage::GroupId;
use crate::wire::frame::Body;
use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Work for the host's primary thread.
pub enum PrimaryEvent {
    /// Commands are queued in this group's `Proposals`.
    NewCommand(GroupId),
    Stop,
}

/// Work for the host's log writer thread.
pub enum LogEvent {
    /// A Ready of this group whose writes (or after-persist messages) are
    /// due, in the order taken.
    Persist(Arc<Node>, Box<Ready>),
    /// The group's log may start after (index, term): its entries up to
    /// there are in a snapshot.
    Compact(Arc<Node>, u64, u64),
    Stop,
}

/// What callers wait on: the leader as last seen, and which peer links are up.
#[derive(Default)]
pub(super) struct Watch {
    pub(super) leader: Option<String>,
    pub(super) links_up: HashSet<String>,
}

/// Shared state of a group on its host; every thread holds an `Arc` of it.
pub struct Node {
    /// This member's name: the host's address.
    pub id: String,
    /// The group, on its host.
    pub group: GroupId,
    pub opts: Options,
    pub(super) host: Arc<HostShared>,
    /// This node, for what it hands the host's threads.
    pub(super) me: std::sync::Weak<Node>,
    /// Guarded like Floyd's `global_mu`: held briefly, never across I/O.
    pub(super) core: Mutex<RaftCore>,
    /// The core's logical clock, read by the host's primary thread.
    pub(super) clock: Mutex<Clock>,
    pub state_machine: Machine,
    pub snapshots: super::snapshot::Snapshots,
    /// Everyone waiting on this node.
    pub waiters: super::waiters::Waiters,
    /// Keeps the core's messages in order between its lock and the links (see `with_core`).
    pub(super) send_order: Mutex<()>,
    /// Index of the committed configuration last acted on.
    pub(super) committed_config: AtomicU64,
    /// Readies handed to the log writer and not yet written (and their
    /// messages sent). Changed under the core lock or after a write.
    pub(super) log_queued: AtomicUsize,
    /// Signalled when `log_queued` drops to zero (a closing group waits for it).
    pub(super) log_idle: Condvar,
    pub(super) log_idle_lock: Mutex<()>,
    /// In the host's apply queue (or about to be): another wake-up adds nothing.
    pub(super) apply_scheduled: AtomicBool,
    /// Held by the apply worker serving the group: one at a time, and a
    /// closing group waits for it.
    pub(super) applying: Mutex<()>,
    /// Woken while a worker served it: that worker queues it again.
    pub(super) apply_again: AtomicBool,
    /// A sweep of expired leases proposed by this node is under way.
    pub(super) lease_sweep: Arc<AtomicBool>,
    /// The configuration (its index + 1) every member of which is known to
    /// speak protocol 8 (`links.rs`, `members_speak_v8`): members are never
    /// downgraded, so it stays known until the configuration changes.
    pub(super) v8_config: std::sync::atomic::AtomicU64,
    /// How far the log was found to hold no Redis command since its latest
    /// configuration (`links.rs`): the next look starts after it.
    pub(super) v8_scanned: Mutex<Option<super::links::ScanMark>>,
    /// The leader and the links, as parked commands look at them.
    pub(super) watch: Mutex<Watch>,
    pub(super) stopping: AtomicBool,
    pub(super) failure: Mutex<Option<Error>>,
    pub log: Arc<NodeLog>,
    /// The core is quiet (`quiet.rs`): the primary thread skips the group.
    pub(super) asleep: AtomicBool,
    /// What the group counts here (`crate::metrics`).
    pub metrics: crate::metrics::GroupMetrics,
}

/// Refused messages logged per [`REFUSAL_WINDOW`]; beyond, they are counted
/// and the count is logged with the next one logged.
pub const REFUSALS_LOGGED: u32 = 20;
pub const REFUSAL_WINDOW: Duration = Duration::from_secs(10);

impl Node {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        group: GroupId,
        opts: Options,
        host: Arc<HostShared>,
        core: RaftCore,
        state_machine: Machine,
        snapshots: super::snapshot::Snapshots,
        tick: Duration,
        me: std::sync::Weak<Node>,
    ) -> Self {
        Node {
            id: opts.local_id(),
            group,
            me,
            log: host.log.clone(),
            opts,
            host,
            core: Mutex::new(core),
            clock: Mutex::new(Clock::new(Instant::now(), tick)),
            state_machine,
            snapshots,
            waiters: Default::default(),
            send_order: Mutex::new(()),
            committed_config: AtomicU64::new(0),
            log_queued: AtomicUsize::new(0),
            log_idle: Condvar::new(),
            log_idle_lock: Mutex::new(()),
            apply_scheduled: AtomicBool::new(false),
            applying: Mutex::new(()),
            apply_again: AtomicBool::new(false),
            lease_sweep: Arc::new(AtomicBool::new(false)),
            v8_config: std::sync::atomic::AtomicU64::new(0),
            v8_scanned: Mutex::new(None),
            watch: Mutex::new(Watch::default()),
            stopping: AtomicBool::new(false),
            failure: Mutex::new(None),
            asleep: AtomicBool::new(false),
            metrics: Default::default(),
        }
    }

    /// The host's latencies and counters.
    pub fn host_metrics(&self) -> &crate::metrics::HostMetrics {
        &self.host.metrics
    }

    /// The metrics of the host and of this group, in the OpenMetrics text format.
    pub fn metrics_text(self: &Arc<Self>) -> String {
        super::exposition::group_text(self)
    }

    /// The host's injected faults (its log writer is shared by every group).
    pub fn faults(&self) -> &Faults {
        &self.host.faults
    }

    /// The log writer wrote `n` of this group's Readies (or gave up on them)
    /// and sent their messages.
    pub(super) fn log_written(&self, n: usize) {
        if self.log_queued.fetch_sub(n, Ordering::AcqRel) == n {
            let _guard = self.log_idle_lock.lock();
            self.log_idle.notify_all();
        }
    }

    /// Waits until the log writer has written every Ready of this group
    /// queued so far, at most until `deadline`; whether it has.
    pub(super) fn wait_log_idle(&self, deadline: Instant) -> bool {
        let mut guard = self.log_idle_lock.lock();
        while self.log_queued.load(Ordering::Acquire) > 0 {
            if self.log_idle.wait_until(&mut guard, deadline).timed_out() {
                return self.log_queued.load(Ordering::Acquire) == 0;
            }
        }
        true
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
        self.host.log_tx.send(ev);
    }

    /// Schedules the group on the host's apply workers (once, however often woken).
    pub fn wake_apply(&self) {
        if !self.apply_scheduled.swap(true, Ordering::AcqRel) {
            self.host.apply.push(self.group);
        }
    }

    pub fn wake_primary(&self) {
        let _ = self.host.primary_tx.send(PrimaryEvent::NewCommand(self.group));
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
    /// A command sent under client session `session` (`session.rs`) is
    /// applied once by the group, whatever copies of it come.
    pub fn submit_command_in(
        &self,
        cmd: CommandKind,
        session: Option<crate::wire::SessionRef>,
        deadline: Instant,
        done: Completion,
    ) {
        if cmd.is_membership() {
            self.change_membership(cmd, deadline, done);
        } else if let CommandKind::TransferLeader { server } = cmd {
            self.transfer_leadership(server, deadline, done);
        } else if let CommandKind::Get { key } = cmd {
            // ReadIndex: confirmed leadership, then the local state machine; no log entry.
            self.read_by_index(Query::Get(key), deadline, done);
        } else if let CommandKind::Range(r) = cmd {
            self.read_by_index(Query::Range(r), deadline, done);
        } else if let CommandKind::LeaseQuery { id } = cmd {
            self.read_by_index(Query::Lease(id), deadline, done);
        } else if let CommandKind::RedisRead(b) = cmd {
            self.read_by_index(Query::Redis(b), deadline, done);
        } else if cmd.needs_protocol_8() && !(self.members_speak_v8() && self.marks_protocol_6()) {
            done(Err(Error::Busy(
                "Redis commands wait until every member of the group runs this release (a rolling upgrade is under way)"
                    .into(),
            )))
        } else if cmd.needs_protocol_6() && !self.marks_protocol_6() {
            // Applied only in entries marked as proposed under protocol 6
            // (`state_machine/revision.rs`); refused here rather than
            // committed to be refused by every replica.
            done(Err(Error::Busy(
                "transactions and leases wait until every member of the group runs this release (a rolling upgrade is under way)"
                    .into(),
            )))
        } else {
            self.submit(encode_command_in(cmd, session), deadline, done);
        }
    }

    /// On the leader of a group whose lease has run out with no entry since
    /// to expire it (every protocol-6 entry expires what is due): proposes
    /// an empty one, one at a time. Called on every tick.
    pub(super) fn sweep_leases_if_due(&self) {
        if !self.state_machine.lease_sweep_due() || self.lease_sweep.load(Ordering::Acquire) {
            return;
        }
        // Leading, and proposing protocol-6 entries (one look at the core).
        if self.with_core(|core| self.refresh_marking(core)) != Some(true) {
            return;
        }
        self.lease_sweep.store(true, Ordering::Release);
        let under_way = self.lease_sweep.clone();
        let deadline = Instant::now() + self.opts.request_timeout;
        let done: Completion = Box::new(move |_| under_way.store(false, Ordering::Release));
        self.submit(encode_command(CommandKind::LeaseSweep), deadline, done);
    }

    /// Whether the entries this node proposes now are marked as proposed
    /// under protocol 6: every member's link said so. (Set on every tick
    /// too; looked at afresh here so a leader's first proposals need not
    /// wait for its first tick.)
    fn marks_protocol_6(&self) -> bool {
        self.with_core(|core| {
            self.refresh_marking(core)
                .unwrap_or_else(|| self.members_speak_v6(core))
        })
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
        // (The entries' log time is the leader's clock as it proposes them,
        // not at its last tick: `with_core` reads the clock.)
        let refused = self.with_core(|core| {
            // Marked as the members speak now: a leader elected since the
            // last tick must not propose unmarked entries (they would drop
            // their keys' revisions and go unseen by watches).
            self.refresh_marking(core);
            match core.propose(payloads) {
                Ok(positions) => {
                    let now = std::time::Instant::now();
                    self.metrics
                        .proposals
                        .fetch_add(positions.len() as u64, Ordering::Relaxed);
                    for (index, _) in &positions {
                        self.metrics.proposed.proposed(*index, now);
                    }
                    // Register under the core lock: nothing can be applied before it.
                    for ((index, term), cmd) in positions.into_iter().zip(pending) {
                        unregistered.extend(self.waiters.proposals.wait_for(index, term, cmd).err());
                    }
                    None
                }
                Err(e) => Some((e, pending)),
            }
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
        if self.faults().drop_reply() {
            return;
        }
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

    /// Errors if the node is closing or has failed (or its host).
    pub fn check_usable(&self) -> Result<()> {
        if let Some(e) = self.failure.lock().clone() {
            return Err(e);
        }
        if let Some(e) = self.host.failure() {
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

    /// Counts a message the core refused, and logs it: at most
    /// [`REFUSALS_LOGGED`] lines per [`REFUSAL_WINDOW`]; a stream of them is
    /// counted, not logged.
    pub(super) fn log_refusal(&self, from: &str, why: &crate::core::Rejected) {
        self.host
            .metrics
            .refused
            .count(crate::metrics::Refusal::of_rejected(why));
        if let Some(left_out) = self.host.refusals_logged.admit(Instant::now()) {
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

    /// The group's failure, or its host's.
    pub fn failure(&self) -> Option<Error> {
        self.failure.lock().clone().or_else(|| self.host.failure())
    }

    /// Whether this node's log cannot be written for lack of space (the host's disk).
    pub fn is_disk_full(&self) -> bool {
        self.host.is_disk_full()
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Marks the group as closing: the host's threads leave it alone.
    pub fn begin_stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
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
