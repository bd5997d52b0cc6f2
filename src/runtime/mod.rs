//! The threads that drive the cores, in the original Floyd's shape, shared
//! by every group of a host (`host.rs`): `floyd-primary-<port>` (CheckLeader,
//! HeartBeat, NewCommand), `floyd-log-<port>` (log writes),
//! `floyd-peer-<port>-><peer>` (one per remote host), the apply workers
//! `floyd-apply-<port>-<n>`, `floyd-snapshot-<port>`, and the RPC server's
//! `floyd-listen-<port>` with one `floyd-conn-<port>-<n>` per connection.
//! `threads.rs` starts and joins the host's own; `group.rs` opens and
//! closes a group on its host.

mod apply;
mod coalesce;
pub mod execute;
pub mod exposition;
pub mod faults;
pub mod forward;
mod group;
pub(crate) mod group_map;
pub mod host;
mod inbound;
mod links;
mod log_throttle;
mod log_writer;
mod mailbox;
mod membership;
pub mod node;
mod primary;
pub mod proposals;
mod quiet;
mod reads;
mod ready;
mod session;
mod snapshot;
mod threads;
pub(crate) mod transfer;
mod waiters;

use crate::core::Config;
use crate::options::Options;
use std::sync::Arc;
use std::time::Duration;

/// The core's tick: a tenth of the heartbeat interval, within [1 ms, 10 ms],
/// for a node on its own. A host of many groups ticks every group, so there
/// its tick is half the heartbeat interval, within [1 ms, 1 s] (etcd's is
/// the whole interval): 100 ms heartbeats tick 20 times a second instead of
/// 100, timers are still 2.5% of a default election timeout apart, and
/// groups with slower heartbeats cost fewer ticks still.
fn tick_of(opts: &Options, shared_host: bool) -> Duration {
    match shared_host {
        false => Duration::from_micros((opts.heartbeat_us / 10).clamp(1_000, 10_000)),
        true => Duration::from_micros((opts.heartbeat_us / 2).clamp(1_000, 1_000_000)),
    }
}

/// The core's timers in ticks. Saturating: `validate` caps the timers, but an
/// overflow here must never turn into a panic or a wrapped, tiny timeout.
fn core_config(opts: &Options, tick: Duration, bootstrap: Vec<String>, shared_host: bool) -> Config {
    let tick_us = u64::try_from(tick.as_micros()).unwrap_or(u64::MAX).max(1);
    let ticks = |us: u64| u32::try_from(us / tick_us).unwrap_or(u32::MAX);
    let mut cfg = Config::new(opts.local_id(), bootstrap);
    cfg.heartbeat_ticks = ticks(opts.heartbeat_us).max(1);
    cfg.election_ticks = ticks(opts.check_leader_us).max(cfg.heartbeat_ticks.saturating_add(1));
    if opts.quiesce.unwrap_or(shared_host) {
        // Idle for an election timeout: long enough that a group between
        // two bursts of writes stays awake, short enough that idle ones
        // stop costing within a second (default timers).
        cfg.quiesce_after_ticks = cfg.election_ticks;
    }
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

/// Stops a group on its host (see `group::close`).
pub(crate) fn close_group(node: &Arc<node::Node>) {
    let dispatch = node.log.dispatch();
    tracing::dispatcher::with_default(&dispatch, || group::close(node));
}

/// Milliseconds since the Unix epoch, as leaders stamp them on entries:
/// the wall clock read once, when the process first asks, moved on by the
/// monotonic clock since (LogCabin's cluster clock does the same). So the
/// log's time, by which locks and leases expire, moves at the pace of real
/// time within a term even when the wall clock is stepped (NTP, an
/// operator): a step forward would otherwise expire every lease at once.
/// Between leaders, `state_machine::log_time` bounds what their clocks'
/// difference can do.
/// (Summed in microseconds and rounded down once, so a stamp is never
/// more than a millisecond behind the wall clock.)
pub(crate) fn wall_clock_ms() -> u64 {
    static ANCHOR: std::sync::OnceLock<(u64, std::time::Instant)> = std::sync::OnceLock::new();
    let (wall_us, at) = *ANCHOR.get_or_init(|| {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        (wall, std::time::Instant::now())
    });
    wall_us.saturating_add(u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX)) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_beyond_the_validated_range_saturate_instead_of_panicking_or_wrapping() {
        let mut o = Options::new("127.0.0.1:1", "127.0.0.1", 1, "/tmp/x");
        o.heartbeat_us = u64::MAX;
        o.check_leader_us = u64::MAX;
        let tick = tick_of(&o, false);
        assert_eq!(tick, Duration::from_millis(10));
        assert_eq!(tick_of(&o, true), Duration::from_secs(1));
        let cfg = core_config(&o, tick, vec![], false);
        assert_eq!((cfg.heartbeat_ticks, cfg.election_ticks), (u32::MAX, u32::MAX));
        // The largest validated timers still fit without saturating.
        o.heartbeat_us = crate::options::MAX_TIMER_US / 2;
        o.check_leader_us = crate::options::MAX_TIMER_US;
        let cfg = core_config(&o, tick_of(&o, false), vec![], false);
        assert_eq!((cfg.heartbeat_ticks, cfg.election_ticks), (180_000, 360_000));
    }

    #[test]
    fn the_lease_is_shorter_than_the_shortest_vote_lockout_by_the_drift_bound() {
        let mut o = Options::new("127.0.0.1:1", "127.0.0.1", 1, "/tmp/x");
        o.lease_reads = true;
        let tick = tick_of(&o, false);
        let cfg = core_config(&o, tick, vec![], false);
        // Defaults: 10 ms ticks, 100 of them; a follower refuses votes for >= 99.
        assert_eq!(cfg.election_ticks, 100);
        assert_eq!(cfg.lease_us, 98 * 10_000 / 10 * 9);
        let lockout = u64::from(cfg.election_ticks - 1) * tick.as_micros() as u64;
        assert!(cfg.lease_us * 10 / 9 < lockout);
        // The same lockout on the monotonic clock, whatever the ticks do.
        assert_eq!(cfg.lockout_us, lockout);
        // On a host of many groups: 50 ms ticks, 20 of them, the same margins.
        let tick = tick_of(&o, true);
        let cfg = core_config(&o, tick, vec![], false);
        assert_eq!(cfg.election_ticks, 20);
        let lockout = u64::from(cfg.election_ticks - 1) * tick.as_micros() as u64;
        assert!(cfg.lease_us > 0 && cfg.lease_us * 10 / 9 < lockout);
        o.lease_reads = false;
        assert_eq!(core_config(&o, tick, vec![], false).lease_us, 0);
    }
}
