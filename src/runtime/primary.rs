//! The host's primary thread: CheckLeader and HeartBeat (each group's core
//! clock) and NewCommand (proposing a group's queued commands as one batch),
//! for every group of the host. It never touches the disk: the log writer
//! thread (`floyd-log-<port>`) is the one writer of the log store, so a slow
//! fsync can neither stop heartbeats nor slow the clocks. Readies reach the
//! disk in the order each core produced them, batched: everything pending,
//! of every group, goes out in one WriteBatch with one fsync (group commit).

use super::host::HostShared;
use super::node::{Node, PrimaryEvent};
use crate::storage::GroupId;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most ticks taken at once after the thread was held up (a stopped
/// process, an overloaded machine): enough to fire every timer, bounded so
/// catching up stays quick.
const MAX_CATCH_UP_TICKS: u32 = 1_000;
/// The longest the thread sleeps without a group to tick.
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// How often the thread does its housekeeping (`HostShared::once_a_second`).
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// CheckLeader, HeartBeat and NewCommand for every group until `PrimaryEvent::Stop`.
///
/// The thread sleeps until the earliest tick of any group. Every group's
/// ticks fall on one grid (see [`Clock`]), so one wake-up ticks every group
/// due then; a NewCommand is handled for its group alone, without a pass
/// over the others.
pub fn run(host: Arc<HostShared>, rx: Receiver<PrimaryEvent>) {
    let mut new_commands: BTreeSet<GroupId> = BTreeSet::new();
    let mut next_tick = Instant::now();
    let mut next_housekeeping = next_tick + HOUSEKEEPING;
    loop {
        let wait = next_tick.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(PrimaryEvent::NewCommand(g)) => {
                new_commands.insert(g);
            }
            Ok(PrimaryEvent::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
        while let Ok(ev) = rx.try_recv() {
            match ev {
                PrimaryEvent::NewCommand(g) => {
                    new_commands.insert(g);
                }
                PrimaryEvent::Stop => return,
            }
        }
        let now = Instant::now();
        for g in std::mem::take(&mut new_commands) {
            let Some(node) = host.node(g) else { continue };
            if node.is_stopping() {
                continue;
            }
            node.propose_pending();
            node.start_read_round();
            node.resume_parked(now);
            // A group just opened may tick before the others' next tick.
            next_tick = next_tick.min(node.clock.lock().next());
        }
        if now >= next_tick {
            // One frame of heartbeats per remote host for the whole pass.
            next_tick = super::coalesce::in_pass(&host, || tick_every_group(&host, now));
        }
        if now >= next_housekeeping {
            host.once_a_second(now);
            next_housekeeping = now + HOUSEKEEPING;
        }
    }
}

/// Ticks every awake group due at `now`; returns when the next tick of any
/// is due. Quiet groups are not ticked (`quiet.rs`): the pass over them is
/// an atomic load each.
fn tick_every_group(host: &HostShared, now: Instant) -> Instant {
    let pass = host.pass_over_groups(now);
    let idle = now + IDLE_WAIT;
    let mut next = pass.next_deadline.map_or(idle, |d| d.min(idle));
    let mut ticked = false;
    for node in pass.awake {
        if node.is_stopping() {
            continue;
        }
        ticked |= tick(&node, now);
        node.resume_parked(now);
        next = next.min(node.clock.lock().next());
    }
    if ticked {
        host.links.reap(now);
    }
    next
}

/// The group's ticks due at `now`, and what runs with them; whether any was.
fn tick(node: &Arc<Node>, now: Instant) -> bool {
    let due = node.clock.lock().take_due(now);
    if due == 0 {
        return false;
    }
    // Election and heartbeat timers live in the core.
    let now_us = super::monotonic_us();
    node.with_core(|core| {
        core.set_monotonic(now_us);
        node.refresh_marking(core);
        if core.config().quiesce_after_ticks > 0 {
            // (Only where quiescence is on: it looks at every waiter table.)
            core.set_quiesce_allowed(node.may_quiesce(core));
        }
        (0..due).for_each(|_| core.tick())
    });
    node.waiters.expire(now);
    node.restart_stalled_reads();
    node.sweep_leases_if_due();
    if node.snapshots.install_pending() {
        // Loaded once the log has caught up with a newer snapshot (see
        // `snapshot_for_install`): looked at again on every tick.
        node.wake_apply();
    }
    true
}

/// The logical clock: how many ticks are due, by elapsed time, so that a
/// late wake-up never loses ticks.
///
/// Ticks fall on a grid shared by the whole process (multiples of the tick
/// since [`grid_origin`]): groups with the same tick are ticked together, in
/// one wake-up of the primary thread, however many there are.
pub(super) struct Clock {
    next: Instant,
    tick: Duration,
}

/// The instant every clock's grid starts from.
fn grid_origin() -> Instant {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// The first instant of `tick`'s grid after `now`.
fn next_on_grid(now: Instant, tick: Duration) -> Instant {
    let origin = grid_origin().min(now);
    let tick_ns = tick.as_nanos().max(1);
    let steps = now.duration_since(origin).as_nanos() / tick_ns + 1;
    origin + Duration::from_nanos(u64::try_from(steps * tick_ns).unwrap_or(u64::MAX))
}

impl Clock {
    pub(super) fn new(now: Instant, tick: Duration) -> Self {
        Clock {
            next: next_on_grid(now, tick),
            tick,
        }
    }

    pub(super) fn next(&self) -> Instant {
        self.next
    }

    /// Starts again from `now`, forgetting the ticks missed meanwhile: a
    /// group waking from quiet must not take them all at once (its core
    /// would time out its leader on the spot).
    pub(super) fn restart(&mut self, now: Instant) {
        self.next = next_on_grid(now, self.tick);
    }

    #[cfg(test)]
    pub(super) fn until_next(&self, now: Instant) -> Duration {
        self.next.saturating_duration_since(now)
    }

    /// Ticks that elapsed up to `now` (at most [`MAX_CATCH_UP_TICKS`]); the next one is scheduled.
    pub(super) fn take_due(&mut self, now: Instant) -> u32 {
        if now < self.next {
            return 0;
        }
        let late = now.duration_since(self.next).as_nanos() / self.tick.as_nanos().max(1);
        let due = (late + 1).min(MAX_CATCH_UP_TICKS as u128) as u32;
        self.next = if late + 1 > MAX_CATCH_UP_TICKS as u128 {
            next_on_grid(now, self.tick)
        } else {
            self.next + self.tick * due
        };
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 6, item 6: a wake-up 10 ticks late takes 10 ticks, not one.
    #[test]
    fn late_wake_ups_take_every_elapsed_tick() {
        let t0 = Instant::now();
        let tick = Duration::from_millis(10);
        let mut c = Clock::new(t0, tick);
        let first = c.next();
        assert!(first > t0 && first <= t0 + tick);
        assert_eq!(c.take_due(first - Duration::from_nanos(1)), 0);
        assert_eq!(c.take_due(first), 1);
        assert_eq!(c.take_due(first + Duration::from_millis(95)), 9);
        assert_eq!(
            c.until_next(first + Duration::from_millis(95)),
            Duration::from_millis(5)
        );
    }

    #[test]
    fn a_long_stall_is_caught_up_in_bounded_ticks() {
        let t0 = Instant::now();
        let tick = Duration::from_millis(1);
        let mut c = Clock::new(t0, tick);
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(c.take_due(later), MAX_CATCH_UP_TICKS);
        let wait = c.until_next(later);
        assert!(wait > Duration::ZERO && wait <= tick, "{wait:?}");
    }

    /// Issue 21: groups opened at different moments tick in the same
    /// wake-up, so the primary thread's wake-ups do not grow with groups.
    #[test]
    fn clocks_with_one_tick_fall_due_together_whenever_they_started() {
        let tick = Duration::from_millis(10);
        let t0 = Instant::now();
        let mut clocks: Vec<Clock> = [0, 3_700, 9_999, 51_300]
            .iter()
            .map(|us| Clock::new(t0 + Duration::from_micros(*us), tick))
            .collect();
        let last = clocks[3].next();
        for c in &mut clocks {
            while c.next() < last {
                c.take_due(c.next());
            }
            assert_eq!(c.next(), last);
        }
        // After a stall, a clock goes back onto the grid.
        let later = last + Duration::from_secs(3600) + Duration::from_micros(1_234);
        clocks[0].take_due(later);
        assert_eq!(clocks[0].next(), next_on_grid(later, tick));
        assert_eq!(
            (clocks[0].next() - last).as_nanos() % tick.as_nanos(),
            0,
            "on the same grid as before the stall"
        );
    }
}
