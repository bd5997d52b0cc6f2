//! Running a client command to its end without holding a thread: on this
//! node when it leads (and for reads, which every node serves), forwarded
//! to the leader otherwise, and tried again while it certainly was not
//! applied (no leader known yet, the leader changed, the link to it was
//! down) until the caller's deadline. The blocking calls wait on it; the
//! async ones hand it their completion.
//!
//! A command that must wait for a leader is parked, not slept on: the
//! primary thread looks at the parked ones on every turn of its loop and
//! whenever the leader or a link changes, so waiting costs no thread.

use super::forward::{result_from_response, Answer};
use super::node::Node;
use super::proposals::Completion;
use super::session::Stamped;
use crate::error::{Error, Result};
use crate::state_machine::CommandKind;
use crate::wire::{frame::Body, ClientRequest, SessionRef};
use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// Called once with a command's outcome (a read's value, a lock's token, a
/// proposal's result; empty for writes). Runs on a library thread, or on
/// the caller's when the command ends at once: must not block.
pub type Done = Box<dyn FnOnce(Result<Bytes>) + Send>;

/// A command on its way, with everything needed to try it again.
pub struct Command {
    cmd: CommandKind,
    deadline: Instant,
    /// Until when the lack of a leader is waited out (`leader_wait`).
    leader_deadline: Instant,
    done: Done,
    /// The client session's stamp (`session.rs`), the same on every try.
    session: Option<SessionRef>,
    /// A try's outcome is unknown (its answer was lost): it may have been
    /// applied, so only a try under the same stamp may follow.
    in_doubt: bool,
    /// Stamped again after its session expired (once at most).
    renewed: bool,
    /// Forwarded by a member to this node as leader: tried again here
    /// only, never forwarded on (the member waits for another leader).
    forwarded: bool,
}

impl Command {
    pub(super) fn deadline(&self) -> Instant {
        self.deadline
    }

    pub(super) fn stamp(&mut self, r: SessionRef) {
        self.session = Some(r);
    }

    pub(super) fn answer(self, r: Result<Bytes>) {
        (self.done)(r)
    }

    /// Whether a try whose answer was lost is tried again, under its stamp.
    fn retries_in_doubt(&self) -> bool {
        self.session.is_some() && Instant::now() < self.deadline
    }
}

/// What a parked command waits for.
enum Wait {
    /// Any leader.
    Leader,
    /// A leader other than `old` or, with `or_link_up`, the link to `old`
    /// back up; `err` answers the caller if neither comes by `until`.
    Change {
        old: String,
        or_link_up: bool,
        until: Instant,
        err: Error,
    },
    /// A Redis command on leader `leader` while some member's link is down,
    /// so what release it runs is not known yet (`Node::a_member_unheard`):
    /// over when every member's link is up or another leader comes; `err`
    /// answers the caller if neither comes by `until`.
    Handshakes {
        leader: String,
        until: Instant,
        err: Error,
    },
}

impl Wait {
    /// Whether the wait is over, given the leader and the links that are up.
    fn over(&self, leader: Option<&str>, links_up: &HashSet<String>) -> bool {
        match self {
            Wait::Leader => leader.is_some(),
            Wait::Change { old, or_link_up, .. } => {
                leader.is_some_and(|l| l != old)
                    || (*or_link_up && leader == Some(old) && links_up.contains(old))
            }
            // (Every link up is looked at apart: `resume_parked`.)
            Wait::Handshakes { leader: old, .. } => leader.is_some_and(|l| l != old),
        }
    }

    /// When the caller stops waiting for it.
    fn until(&self, op: &Command) -> Instant {
        match self {
            Wait::Leader => op.leader_deadline,
            Wait::Change { until, .. } | Wait::Handshakes { until, .. } => *until,
        }
    }
}

/// An answer known before its async call returned, with its completion.
type Answered = (Done, Result<Bytes>);

/// Commands waiting for a leader, and async answers to hand over on a
/// library thread. Thread-safe.
#[derive(Default)]
pub struct Parked {
    inner: Mutex<ParkedInner>,
    /// Whether `inner` may hold anything: the primary thread looks every turn.
    any: AtomicBool,
}

#[derive(Default)]
struct ParkedInner {
    waiting: Vec<(Command, Wait)>,
    /// Answers known before their async call returned: an async caller's
    /// completion never runs on its own thread (it may hold a lock the
    /// completion takes), so these wait for the primary thread's next turn.
    answers: Vec<Answered>,
    /// Set by [`Parked::fail_all`] (the node closes or failed): nothing is
    /// parked after it, so nothing parked is left unanswered.
    closed: bool,
}

impl Parked {
    /// `Some`: closed, the command comes back, the caller's to answer.
    #[must_use]
    fn park(&self, op: Command, wait: Wait) -> Option<Command> {
        let mut inner = self.inner.lock();
        if inner.closed {
            return Some(op);
        }
        inner.waiting.push((op, wait));
        self.any.store(true, Ordering::Release);
        None
    }

    /// `Err`: closed, nobody is left to hand the answer over: it comes back.
    fn hand_over(&self, done: Done, result: Result<Bytes>) -> std::result::Result<(), Answered> {
        let mut inner = self.inner.lock();
        if inner.closed {
            return Err((done, result));
        }
        inner.answers.push((done, result));
        self.any.store(true, Ordering::Release);
        Ok(())
    }

    fn take(&self) -> (Vec<Answered>, Vec<(Command, Wait)>) {
        if !self.any.swap(false, Ordering::AcqRel) {
            return Default::default();
        }
        let mut inner = self.inner.lock();
        (
            std::mem::take(&mut inner.answers),
            std::mem::take(&mut inner.waiting),
        )
    }

    pub fn is_empty(&self) -> bool {
        !self.any.load(Ordering::Acquire)
    }

    /// Answers every parked command with `err` (none of them was applied),
    /// hands over the answers waiting for a thread, and closes.
    pub fn fail_all(&self, err: &Error) {
        let (answers, waiting) = {
            let mut inner = self.inner.lock();
            inner.closed = true;
            (
                std::mem::take(&mut inner.answers),
                std::mem::take(&mut inner.waiting),
            )
        };
        for (done, result) in answers {
            done(result);
        }
        for (op, _) in waiting {
            (op.done)(Err(err.clone()));
        }
    }
}

/// Runs an async call's completion, on this thread if it is one of floyd's;
/// a caller's thread (inside a later call of its own, which may hold a lock
/// the completion takes) hands it to the primary thread instead. (Once the
/// node is closed, it runs here, as the close itself would run it.)
fn answer_off_caller_threads(node: Option<&Node>, done: Done, r: Result<Bytes>) {
    let node = node.filter(|_| !crate::transport::on_library_thread());
    let Some(node) = node else {
        return done(r);
    };
    match node.waiters.parked.hand_over(done, r) {
        Ok(()) => node.wake_primary(),
        Err((done, r)) => done(r),
    }
}

/// An async call's answer that came before the call returned.
enum EarlyAnswer {
    /// The call is still running; the answer, if one came.
    Calling(Option<Answered>),
    /// The call returned: answers go straight to the completion.
    Returned,
}

/// Where a blocking caller waits for its command's answer. It parks at once:
/// a channel's receive would spin and yield first, and with many callers
/// waiting on a two-core machine that spinning takes the CPU from the
/// threads doing the work (a fifth of it, measured with 20 writers).
struct Rendezvous {
    answer: Mutex<Option<Result<Bytes>>>,
    ready: Condvar,
}

/// Admission control for the async calls: how many are unanswered.
#[derive(Default)]
pub struct InFlight(AtomicUsize);

impl InFlight {
    /// Counts one more unless `limit` are already in flight.
    fn admit(&self, limit: usize) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }

    fn release(&self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

impl Node {
    /// Runs `cmd` to its end; `done` is called once, at the latest shortly
    /// after `timeout`. Invalid commands are answered at once.
    pub fn execute(self: &Arc<Self>, cmd: CommandKind, timeout: Duration, done: Done) {
        match cmd.validate() {
            Ok(()) => self.execute_valid(cmd, timeout, done),
            Err(e) => done(Err(e)),
        }
    }

    /// [`Node::execute`] of a command already validated.
    fn execute_valid(self: &Arc<Self>, cmd: CommandKind, timeout: Duration, done: Done) {
        let start = Instant::now();
        let deadline = start + timeout;
        let leader_deadline = (start + self.opts.leader_wait).min(deadline);
        self.attempt_in_session(Command {
            cmd,
            deadline,
            leader_deadline,
            done,
            session: None,
            in_doubt: false,
            renewed: false,
            forwarded: false,
        });
    }

    /// Leader: runs a command a member forwarded. A Redis command waits,
    /// as this node's own callers' do (`attempt_here`), for members not
    /// heard from yet.
    pub(super) fn submit_forwarded(
        self: &Arc<Self>,
        cmd: CommandKind,
        session: Option<SessionRef>,
        deadline: Instant,
        done: Completion,
    ) {
        if !self.waits_for_handshakes(&cmd) {
            return self.submit_command_in(cmd, session, deadline, done);
        }
        let until = (Instant::now() + self.opts.leader_wait).min(deadline);
        let op = Command {
            cmd,
            deadline,
            leader_deadline: until,
            done: Box::new(move |r| done(r.map(Some))),
            session,
            in_doubt: false,
            renewed: false,
            forwarded: true,
        };
        self.park_for_handshakes(op, self.id.clone());
    }

    /// Parks `op` on leader `leader` until every member's link is up or
    /// another leader comes, within its leader wait.
    fn park_for_handshakes(&self, op: Command, leader: String) {
        let until = op.leader_deadline;
        let err = unheard_member_error();
        self.park(op, Wait::Handshakes { leader, until, err });
    }

    /// A forwarded command parked by [`Node::submit_forwarded`], tried again.
    fn resubmit_forwarded(self: &Arc<Self>, op: Command) {
        let done = op.done;
        let answer: Completion = Box::new(move |r| done(r.map(Option::unwrap_or_default)));
        self.submit_command_in(op.cmd, op.session, op.deadline, answer);
    }

    /// Stamps a write with the handle's client session (opened first if
    /// need be), then tries it; anything else is tried as it is.
    fn attempt_in_session(self: &Arc<Self>, op: Command) {
        if op.session.is_some() || !op.cmd.wants_session() || self.state_machine.is_user() {
            return self.attempt(op);
        }
        let session = &self.waiters.session;
        match session.stamp(op, self.opts.session_timeout, Instant::now()) {
            Stamped::Go(mut op) => {
                if let Some(r) = op.session {
                    let (session, done) = (session.clone(), op.done);
                    op.done = Box::new(move |result| {
                        session.answered(&r, &result, Instant::now());
                        done(result)
                    });
                }
                self.attempt(op)
            }
            Stamped::Queued { open: true } => self.open_session(),
            Stamped::Queued { open: false } => {}
            Stamped::Closing(op) => (op.done)(Err(self.unusable())),
        }
    }

    /// Registers the handle's client session through the log; the writes
    /// waiting for it go on once the group answered (without a session if
    /// it could not open one).
    fn open_session(self: &Arc<Self>) {
        let ttl_ms = u64::try_from(self.opts.session_timeout.as_millis()).unwrap_or(u64::MAX);
        let node = Arc::downgrade(self);
        let done: Done = Box::new(move |result| {
            let Some(node) = node.upgrade() else { return };
            let (waiting, open) = node.waiters.session.opened(&result, Instant::now());
            for op in waiting {
                match open {
                    true => node.attempt_in_session(op),
                    false => node.attempt(op),
                }
            }
        });
        self.execute_valid(
            CommandKind::RegisterSession { ttl_ms },
            self.opts.request_timeout,
            done,
        );
    }

    /// [`Node::execute`], waiting for the answer until `wait_until`; `None`
    /// if it has not come by then (the outcome is unknown).
    pub fn execute_blocking(
        self: &Arc<Self>,
        cmd: CommandKind,
        timeout: Duration,
        wait_until: Instant,
    ) -> Option<Result<Bytes>> {
        let slot = Arc::new(Rendezvous {
            answer: Mutex::new(None),
            ready: Condvar::new(),
        });
        let answer_slot = slot.clone();
        self.execute(
            cmd,
            timeout,
            Box::new(move |r| {
                *answer_slot.answer.lock() = Some(r);
                answer_slot.ready.notify_one();
            }),
        );
        let mut answer = slot.answer.lock();
        while answer.is_none() {
            if slot.ready.wait_until(&mut answer, wait_until).timed_out() {
                break;
            }
        }
        answer.take()
    }

    /// [`Node::execute`] for the async API. `Err` (and `done` never called)
    /// for an invalid command, a closed node, or `Busy` when
    /// `max_async_in_flight` commands are unanswered. `done` runs on a
    /// library thread, never on the caller's before this returns.
    pub fn execute_async(self: &Arc<Self>, cmd: CommandKind, done: Done) -> Result<()> {
        cmd.validate()?;
        self.check_usable()?;
        if !self.waiters.async_in_flight.admit(self.opts.max_async_in_flight) {
            return Err(Error::Busy(format!(
                "{} async commands are in flight (max_async_in_flight)",
                self.opts.max_async_in_flight
            )));
        }
        let node = Arc::downgrade(self);
        let early = Arc::new(Mutex::new(EarlyAnswer::Calling(None)));
        let early_slot = early.clone();
        self.execute_valid(
            cmd,
            self.opts.request_timeout,
            Box::new(move |r| {
                if let Some(n) = node.upgrade() {
                    n.waiters.async_in_flight.release();
                }
                let mut slot = early_slot.lock();
                match &mut *slot {
                    EarlyAnswer::Calling(answer) => *answer = Some((done, r)),
                    EarlyAnswer::Returned => {
                        drop(slot);
                        answer_off_caller_threads(node.upgrade().as_deref(), done, r);
                    }
                }
            }),
        );
        let answered = std::mem::replace(&mut *early.lock(), EarlyAnswer::Returned);
        if let EarlyAnswer::Calling(Some((done, r))) = answered {
            // Handed to the primary thread: never run on the caller's.
            match self.waiters.parked.hand_over(done, r) {
                Ok(()) => self.wake_primary(),
                // Closed meanwhile: no thread is left to run it; as for any
                // call on a closed node, `done` is never called.
                Err(_done) => return Err(self.unusable()),
            }
        }
        Ok(())
    }

    fn attempt(self: &Arc<Self>, op: Command) {
        if let Err(e) = self.check_usable() {
            return (op.done)(Err(e));
        }
        let Some(leader) = self.leader() else {
            self.park(op, Wait::Leader);
            return;
        };
        // A read is served here on a follower too: it asks the leader for
        // the read index and reads its own state machine once applied there.
        if leader == self.id || op.cmd.is_read() {
            self.attempt_here(op, leader);
        } else {
            self.forward_to(op, leader);
        }
    }

    fn attempt_here(self: &Arc<Self>, op: Command, leader: String) {
        if leader == self.id && self.waits_for_handshakes(&op.cmd) {
            // Refused only once every member's release is known: a leader
            // just elected, or a member restarting, is not an upgrade.
            return self.park_for_handshakes(op, leader);
        }
        let node = Arc::downgrade(self);
        let (cmd, deadline, session) = (op.cmd.clone(), op.deadline, op.session);
        self.submit_command_in(
            cmd,
            session,
            deadline,
            Box::new(move |r| match r {
                Ok(v) => (op.done)(Ok(v.unwrap_or_default())),
                Err(e @ Error::NoLeader(_)) => retry(&node, op, leader, false, e),
                Err(Error::SessionExpired(why)) => renew(&node, op, why),
                Err(e) => (op.done)(Err(e)),
            }),
        );
    }

    fn forward_to(self: &Arc<Self>, op: Command, leader: String) {
        let link = self.host.links.peer(&leader);
        if op.cmd.needs_protocol_8()
            && link
                .as_ref()
                .is_none_or(|l| !l.speaks(crate::transport::DATA_TYPES_VERSION))
        {
            // A leader of an earlier release would refuse it as a command
            // without an operation; one whose handshake this node has not
            // had yet might be one: its link is waited for.
            let err = Error::Busy(format!(
                "leader {leader} is not known to run Redis commands (a rolling upgrade, or no handshake with it yet): try again"
            ));
            if link.is_some_and(|l| l.is_connected()) {
                return (op.done)(Err(err));
            }
            return retry(&Arc::downgrade(self), op, leader, true, err);
        }
        let node = Arc::downgrade(self);
        let (cmd, deadline, to) = (op.cmd.clone(), op.deadline, leader.clone());
        let session = op.session;
        let reply = Box::new(move |answer: Answer| match answer {
            Answer::Response(resp) => match result_from_response(resp) {
                Err(e @ Error::NoLeader(_)) => retry(&node, op, leader, false, e),
                Err(Error::SessionExpired(why)) => renew(&node, op, why),
                r => (op.done)(r),
            },
            Answer::NotSent => {
                let e = Error::NoLeader(format!(
                    "leader {leader} is unreachable; the command was not sent"
                ));
                retry(&node, op, leader, true, e)
            }
            // Under its session a retry is applied at most once, so it
            // goes again once the link (or another leader) is back.
            Answer::InDoubt(e) if op.retries_in_doubt() => {
                let mut op = op;
                op.in_doubt = true;
                retry(&node, op, leader, true, e)
            }
            Answer::InDoubt(e) | Answer::GaveUp(e) => (op.done)(Err(e)),
        });
        self.metrics
            .forwarded
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let request_id = match self.waiters.forwards.register(&to, deadline, reply) {
            Ok(id) => id,
            Err(reply) => return reply(Answer::GaveUp(self.unusable())),
        };
        let req = ClientRequest {
            request_id,
            command: Some(cmd.into_wire_in(session)),
        };
        if !self.send_frame(&to, Body::ClientRequest(req)) {
            let full = Error::Busy(format!("the queue to leader {to} is full"));
            self.waiters.forwards.fail_some(&to, &[request_id], &full);
        }
    }

    fn park(&self, op: Command, wait: Wait) {
        match self.waiters.parked.park(op, wait) {
            // The primary thread looks at parked commands when it wakes.
            None => self.wake_primary(),
            Some(op) => (op.done)(Err(self.unusable())),
        }
    }

    /// Primary thread: tries again the parked commands whose wait is over,
    /// and answers those whose time ran out.
    pub(super) fn resume_parked(self: &Arc<Self>, now: Instant) {
        if self.waiters.parked.is_empty() {
            return;
        }
        let (answers, parked) = self.waiters.parked.take();
        for (done, result) in answers {
            done(result);
        }
        if parked.is_empty() {
            return;
        }
        let over: Vec<bool> = self
            .with_watch(|leader, links_up| parked.iter().map(|(_, w)| w.over(leader, links_up)).collect());
        let heard =
            parked.iter().any(|(_, w)| matches!(w, Wait::Handshakes { .. })) && !self.a_member_unheard();
        for ((op, wait), ready) in parked.into_iter().zip(over) {
            let ready = ready || (heard && matches!(wait, Wait::Handshakes { .. }));
            if ready && !self.is_stopping() && op.forwarded {
                self.resubmit_forwarded(op);
            } else if ready && !self.is_stopping() {
                self.attempt(op);
            } else if now >= wait.until(&op) || self.is_stopping() || self.failure().is_some() {
                let err = match (self.check_usable(), wait) {
                    (Err(e), _) => e,
                    (Ok(()), Wait::Change { err, .. } | Wait::Handshakes { err, .. }) => err,
                    // Without room for its vote this node cannot help elect
                    // one: that, not the wait, is what its caller must fix.
                    (Ok(()), Wait::Leader) if self.is_disk_full() => {
                        super::node::disk_full_error("no leader is known and it cannot vote")
                    }
                    (Ok(()), Wait::Leader) => Error::NoLeader(format!(
                        "no leader known after {:?}",
                        self.opts.leader_wait.min(self.opts.request_timeout)
                    )),
                };
                (op.done)(Err(err));
            } else if let Some(op) = self.waiters.parked.park(op, wait) {
                // (Not `park`: waking this very thread would spin it.)
                (op.done)(Err(self.unusable()));
            }
        }
    }
}

/// Why a Redis command waited for a member in vain: its release is not
/// known (it is down, or has not reconnected since this node started).
fn unheard_member_error() -> Error {
    Error::Busy(
        "Redis commands wait until every member of the group is known to run this release (a member is down or a rolling upgrade is under way)"
            .into(),
    )
}

/// The group no longer knows the command's session (it expired): the
/// command was not applied by this try. Stamped under a new session and
/// tried again, unless an earlier try may have been applied: then its
/// outcome is unknown, as a timeout's.
fn renew(node: &Weak<Node>, mut op: Command, why: String) {
    let Some(node) = node.upgrade() else {
        return (op.done)(Err(Error::Stopped("the node was closed".into())));
    };
    if let Some(r) = op.session.take() {
        node.waiters.session.expired(r.client_id);
    }
    if op.in_doubt || op.renewed {
        return (op.done)(Err(Error::Timeout(format!(
            "{why}; an earlier try may or may not have been applied"
        ))));
    }
    op.renewed = true;
    node.attempt_in_session(op);
}

/// After an attempt that certainly was not applied: waits for another
/// leader (or, with `or_link_up`, for the link to `leader`), within the
/// caller's time.
fn retry(node: &Weak<Node>, op: Command, leader: String, or_link_up: bool, err: Error) {
    let Some(node) = node.upgrade() else {
        return (op.done)(Err(Error::Stopped("the node was closed".into())));
    };
    // A brief disconnect is waited out until the deadline; a lost leader only
    // as long as a leader is waited for at all.
    let until = if or_link_up {
        op.deadline
    } else {
        op.leader_deadline
    };
    let wait = Wait::Change {
        old: leader,
        or_link_up,
        until,
        err,
    };
    node.park(op, wait);
}
