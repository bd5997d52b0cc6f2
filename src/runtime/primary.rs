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

/// CheckLeader, HeartBeat and NewCommand for every group until `PrimaryEvent::Stop`.
pub fn run(host: Arc<HostShared>, rx: Receiver<PrimaryEvent>) {
    let mut new_commands: BTreeSet<GroupId> = BTreeSet::new();
    loop {
        let nodes = host.nodes();
        let wait = nodes
            .iter()
            .map(|n| n.clock.lock().until_next(Instant::now()))
            .min()
            .unwrap_or(IDLE_WAIT);
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
        let mut ticked = false;
        for node in host.nodes() {
            if node.is_stopping() {
                continue;
            }
            ticked |= tick(&node, now);
            if new_commands.remove(&node.group) {
                node.propose_pending();
                node.start_read_round();
            }
            node.resume_parked(now);
        }
        new_commands.clear();
        if ticked {
            host.links.reap(now);
        }
    }
}

/// The group's ticks due at `now`, and what runs with them; whether any was.
fn tick(node: &Arc<Node>, now: Instant) -> bool {
    let due = node.clock.lock().take_due(now);
    if due == 0 {
        return false;
    }
    // Election and heartbeat timers live in the core.
    let now_ms = super::wall_clock_ms();
    let now_us = super::monotonic_us();
    node.with_core(|core| {
        core.set_clock(now_ms);
        core.set_monotonic(now_us);
        (0..due).for_each(|_| core.tick())
    });
    node.waiters.expire(now);
    node.restart_stalled_reads();
    if node.snapshots.install_pending() {
        // Loaded once the log has caught up with a newer snapshot (see
        // `snapshot_for_install`): looked at again on every tick.
        node.wake_apply();
    }
    true
}

/// The logical clock: how many ticks are due, by elapsed time, so that a
/// late wake-up never loses ticks.
pub(super) struct Clock {
    next: Instant,
    tick: Duration,
}

impl Clock {
    pub(super) fn new(now: Instant, tick: Duration) -> Self {
        Clock {
            next: now + tick,
            tick,
        }
    }

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
            now + self.tick
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
        assert_eq!(c.take_due(t0 + Duration::from_millis(5)), 0);
        assert_eq!(c.take_due(t0 + Duration::from_millis(10)), 1);
        assert_eq!(c.take_due(t0 + Duration::from_millis(105)), 9);
        assert_eq!(
            c.until_next(t0 + Duration::from_millis(105)),
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
        assert_eq!(c.until_next(later), tick);
    }
}
