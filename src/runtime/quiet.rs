//! Quiet groups on a host (issue 23): what the runtime adds to the core's
//! quiescence (`core/quiesce.rs`).
//!
//! - **The veto.** On every tick the runtime tells the core whether it may
//!   go quiet: nobody waits on the node (ticks expire waiters), no lease's
//!   or key's deadline has passed unswept, no snapshot waits to be
//!   installed, and, on a leader, every member's link speaks protocol 7
//!   (a member of version 6 would take the quiesce heartbeat for an
//!   ordinary one and time its leader out).
//! - **Deadlines.** A group holding leases or keys with a TTL goes quiet
//!   too: the primary thread wakes its leader when the next deadline falls
//!   due, and the leader, ticking again, proposes the sweep that expires
//!   them (`Node::sweep_leases_if_due`), then goes quiet again.
//! - **Not ticked.** After every Ready the node notes whether its core went
//!   quiet or woke; the primary thread skips a quiet group with nobody
//!   waiting on it, and a woken group's clock starts again from now.
//! - **Host liveness.** When a link to a remote host dies (closed, reset, or
//!   pings unanswered for the liveness timeout), every quiet group with a
//!   member there hears of it: followers of a leader there campaign, leaders
//!   wake. When a host connects to us, quiet leaders with a member there
//!   wake so it catches up (it may have restarted).

use super::host::HostShared;
use super::node::Node;
use crate::core::{RaftCore, Role};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Heartbeats sent and wake-ups per second, over the last whole second:
/// sampled by the primary thread.
#[derive(Default)]
pub struct Rates {
    /// When the current second began, and the counts then.
    since: Mutex<Option<(Instant, u64, u64)>>,
    pub heartbeats_per_sec: AtomicU64,
    pub wakeups_per_sec: AtomicU64,
}

impl Node {
    /// Whether this group is quiet here.
    pub fn is_quiet(&self) -> bool {
        self.asleep.load(Ordering::Acquire)
    }

    /// The runtime's part of the decision (see the module docs), for
    /// [`RaftCore::set_quiesce_allowed`].
    pub(super) fn may_quiesce(&self, core: &RaftCore) -> bool {
        self.waiters.is_idle()
            && !self.state_machine.lease_sweep_due()
            && !self.snapshots.install_pending()
            && !self.lease_sweep.load(Ordering::Acquire)
            && (core.role() != Role::Leader || self.members_speak_quiescence(core))
    }

    /// Whether every other member's link said, in its last handshake, that
    /// it understands quiet groups.
    fn members_speak_quiescence(&self, core: &RaftCore) -> bool {
        core.membership()
            .members()
            .filter(|m| **m != self.id)
            .all(|m| self.host.links.peer(m).is_some_and(|l| l.speaks_quiescence()))
    }

    /// A closed group no longer counts among the host's quiet groups (a
    /// quiet follower closes without waking).
    pub(super) fn forget_quiet(&self) {
        if self.asleep.swap(false, Ordering::AcqRel) {
            self.host.quiet_groups.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// After every Ready (under the core lock): notes the core going quiet
    /// or waking, for the primary thread and the host's counts.
    pub(super) fn note_quiet(&self, core: &RaftCore) {
        let quiet = core.is_quiesced();
        if self.asleep.swap(quiet, Ordering::AcqRel) == quiet {
            return;
        }
        if quiet {
            self.host.quiet_groups.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.host.quiet_groups.fetch_sub(1, Ordering::Relaxed);
        self.host.wakeups.fetch_add(1, Ordering::Relaxed);
        self.clock.lock().restart(Instant::now());
        // The primary thread may sleep past this group's next tick.
        self.wake_primary();
    }
}

/// What the primary thread's pass over the groups finds.
#[derive(Default)]
pub(super) struct Pass {
    /// The groups to tick: those not quiet.
    pub awake: Vec<Arc<Node>>,
    /// When the next deadline of a quiet group's leader here falls due.
    pub next_deadline: Option<Instant>,
}

impl HostShared {
    /// The groups to tick; the quiet leaders here whose lease or key
    /// deadline fell due are woken (they then tick, propose the sweep that
    /// expires it and go quiet again).
    pub(super) fn pass_over_groups(&self, now: Instant) -> Pass {
        let mut pass = Pass::default();
        let mut holding_deadlines = Vec::new();
        for n in self.groups.read().values() {
            if !n.is_quiet() {
                pass.awake.push(n.clone());
            } else if n.state_machine.has_deadlines() {
                holding_deadlines.push(n.clone());
            }
        }
        // (A follower waits for its leader's sweep.)
        let leading = |n: &Arc<Node>| n.inspect(|core| core.role() == Role::Leader);
        for n in holding_deadlines.iter().filter(|n| leading(n)) {
            let Some(due) = n.state_machine.sweep_due_at() else {
                continue;
            };
            if due > now {
                pass.next_deadline = Some(pass.next_deadline.map_or(due, |d| d.min(due)));
                continue;
            }
            n.with_core(|core| {
                if core.role() == Role::Leader {
                    core.unquiesce();
                }
            });
        }
        pass
    }

    /// The primary thread's housekeeping, once a second: the rates, and
    /// the callers of quiet groups whose deadline passed.
    pub(super) fn once_a_second(&self, now: Instant) {
        self.sample_rates(now);
        self.expire_quiet_waiters(now);
    }

    /// Answers the callers of quiet groups whose deadline passed. A group
    /// goes quiet only with nobody waiting, and whatever comes later usually
    /// wakes it (a read or a proposal reaches its core, a forward its
    /// leader), but a caller must never outwait its deadline by more than a
    /// second.
    fn expire_quiet_waiters(&self, now: Instant) {
        let quiet: Vec<Arc<Node>> = self
            .groups
            .read()
            .values()
            .filter(|n| n.is_quiet())
            .cloned()
            .collect();
        for node in quiet.iter().filter(|n| !n.waiters.is_idle()) {
            node.waiters.expire(now);
            node.resume_parked(now);
        }
    }

    /// The rates over the time since the last sample.
    fn sample_rates(&self, now: Instant) {
        let beats = self.heartbeats_sent.load(Ordering::Relaxed);
        let wakes = self.wakeups.load(Ordering::Relaxed);
        let mut since = self.rates.since.lock();
        let Some((at, beats0, wakes0)) = *since else {
            *since = Some((now, beats, wakes));
            return;
        };
        let elapsed = now.saturating_duration_since(at).max(Duration::from_millis(1));
        let per_sec = |n: u64| (n as f64 / elapsed.as_secs_f64()).round() as u64;
        self.rates
            .heartbeats_per_sec
            .store(per_sec(beats - beats0), Ordering::Relaxed);
        self.rates
            .wakeups_per_sec
            .store(per_sec(wakes - wakes0), Ordering::Relaxed);
        *since = Some((now, beats, wakes));
    }

    /// The link to `peer` died: every quiet group, and every group led
    /// from there, hears of it (`RaftCore::peer_host_down`).
    pub(super) fn peer_host_down(&self, peer: &str) {
        let concerned = |n: &&Arc<Node>| n.is_quiet() || n.leader().as_deref() == Some(peer);
        for node in self.nodes().iter().filter(concerned) {
            node.with_core(|core| core.peer_host_down(peer));
        }
    }

    /// `peer` connected to us (it may have restarted): quiet leaders with a
    /// member there wake, so it hears from them and catches up.
    pub(super) fn peer_host_up(&self, peer: &str) {
        for node in self.nodes().iter().filter(|n| n.is_quiet()) {
            node.with_core(|core| {
                if core.role() == Role::Leader && core.progress(peer).is_some() {
                    core.unquiesce();
                }
            });
        }
    }
}
