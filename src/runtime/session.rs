//! The handle's client session in a group (dissertation §6.3): what makes
//! the library's own retries of a write apply once.
//!
//! Opened lazily through the log on the first write (its id is the index of
//! its `RegisterSession` entry), it numbers every write the handle sends
//! and tells the group the lowest number still waiting for its answer, so
//! the group forgets older answers. A write is stamped once, when it
//! starts; every retry of it (after a lost answer, a broken link, a leader
//! change) carries the same stamp, and the group answers a copy with the
//! first one's answer instead of applying it again
//! (`state_machine/session.rs`).
//!
//! While the session is being opened, writes wait here. A group that cannot
//! open one (a member runs an older release) gets writes without a
//! session, as before, and is asked again later.

use super::execute::Command;
use crate::error::{Error, Result};
use crate::wire::SessionRef;
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// How long a group that refused a session is left without one before
/// the handle asks again (a rolling upgrade is usually done by then).
const ASK_AGAIN_AFTER: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Opening,
    Open {
        id: u64,
    },
    /// Refused: writes go without one until then.
    Unavailable {
        until: Instant,
    },
}

struct Inner {
    state: State,
    next_seq: u64,
    /// Seqs of the open session whose caller has no answer yet.
    unanswered: BTreeSet<u64>,
    /// When the group last answered a write under the open session: one
    /// idle for half its life is replaced rather than risk its expiry.
    last_answer: Instant,
    /// Writes waiting for the session to open.
    waiting: Vec<Command>,
    /// Set once the node closes: nothing waits after.
    closed: bool,
}

/// What a write does next, given the session.
pub enum Stamped {
    /// Go, under this stamp (or with none: `None`).
    Go(Command),
    /// Queued until the session opens; `open` asks the caller to open it.
    Queued { open: bool },
    /// The node is closing: the write comes back, not sent.
    Closing(Command),
}

/// One node's client session. Thread-safe.
pub struct ClientSession {
    inner: Mutex<Inner>,
}

impl Default for ClientSession {
    fn default() -> Self {
        ClientSession {
            inner: Mutex::new(Inner {
                state: State::Closed,
                next_seq: 1,
                unanswered: BTreeSet::new(),
                last_answer: Instant::now(),
                waiting: Vec::new(),
                closed: false,
            }),
        }
    }
}

impl ClientSession {
    /// No write waits for the session to open.
    pub fn is_idle(&self) -> bool {
        self.inner.lock().waiting.is_empty()
    }

    /// Gives `op` its stamp, or queues it while the session opens. A
    /// session idle for more than half of `ttl` is replaced first.
    pub fn stamp(&self, mut op: Command, ttl: Duration, now: Instant) -> Stamped {
        let mut inner = self.inner.lock();
        if inner.closed {
            return Stamped::Closing(op);
        }
        if let State::Open { .. } = inner.state {
            if inner.unanswered.is_empty() && now.saturating_duration_since(inner.last_answer) > ttl / 2 {
                inner.state = State::Closed;
            }
        }
        match inner.state {
            State::Open { id } => {
                let seq = inner.next_seq;
                inner.next_seq += 1;
                inner.unanswered.insert(seq);
                let lowest_unacked = *inner.unanswered.first().expect("just inserted");
                op.stamp(SessionRef {
                    client_id: id,
                    seq,
                    lowest_unacked,
                });
                Stamped::Go(op)
            }
            State::Unavailable { until } if now < until => Stamped::Go(op),
            State::Opening => {
                inner.waiting.push(op);
                Stamped::Queued { open: false }
            }
            State::Closed | State::Unavailable { .. } => {
                inner.state = State::Opening;
                inner.waiting.push(op);
                Stamped::Queued { open: true }
            }
        }
    }

    /// The group answered the registration: the writes that waited for it,
    /// and whether the session is open (else they go without one).
    pub fn opened(&self, result: &Result<Bytes>, now: Instant) -> (Vec<Command>, bool) {
        let mut inner = self.inner.lock();
        inner.state = match result {
            Ok(id) => match <[u8; 8]>::try_from(id.as_ref()) {
                Ok(id) => State::Open {
                    id: u64::from_be_bytes(id),
                },
                Err(_) => State::Unavailable {
                    until: now + ASK_AGAIN_AFTER,
                },
            },
            // A group with a member of an older release, or a user's machine.
            Err(Error::Busy(_) | Error::InvalidArgument(_)) => State::Unavailable {
                until: now + ASK_AGAIN_AFTER,
            },
            // No leader, a timeout: the writes go without, the next asks again.
            Err(_) => State::Closed,
        };
        let open = matches!(inner.state, State::Open { .. });
        if open {
            inner.next_seq = 1;
            inner.unanswered.clear();
            inner.last_answer = now;
        }
        (std::mem::take(&mut inner.waiting), open)
    }

    /// The write stamped `r` has its final answer.
    pub fn answered(&self, r: &SessionRef, result: &Result<Bytes>, now: Instant) {
        let mut inner = self.inner.lock();
        if inner.state != (State::Open { id: r.client_id }) {
            return;
        }
        inner.unanswered.remove(&r.seq);
        if !matches!(result, Err(Error::SessionExpired(_))) {
            inner.last_answer = now;
        }
    }

    /// The group no longer knows session `id`: the next write opens another.
    pub fn expired(&self, id: u64) {
        let mut inner = self.inner.lock();
        if inner.state == (State::Open { id }) {
            inner.state = State::Closed;
        }
    }

    /// The writes waiting for the session whose caller's time ran out.
    pub fn take_expired(&self, now: Instant) -> Vec<Command> {
        let mut inner = self.inner.lock();
        if inner.waiting.is_empty() {
            return Vec::new();
        }
        let (gone, keep) = std::mem::take(&mut inner.waiting)
            .into_iter()
            .partition(|op| op.deadline() <= now);
        inner.waiting = keep;
        gone
    }

    /// Closes: the waiting writes come back (none was sent), nothing waits after.
    pub fn close(&self) -> Vec<Command> {
        let mut inner = self.inner.lock();
        inner.closed = true;
        std::mem::take(&mut inner.waiting)
    }
}
