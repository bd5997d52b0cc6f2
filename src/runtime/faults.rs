//! Faults a test can inject into a running node: a slow or failing disk, a
//! busy state machine, a link cut for a while, a clock set ahead, answers lost. Every hook is off unless set
//! and costs one relaxed atomic load when off.

use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Injected faults of one node. Thread-safe.
#[derive(Debug, Default)]
pub struct Faults {
    fsync_delay_us: AtomicU64,
    fail_log_writes: AtomicBool,
    busy_applies: AtomicU32,
    skip_fsync: AtomicBool,
    clock_ahead_ms: AtomicU64,
    drop_replies: AtomicU32,
}

impl Faults {
    /// Every synced log write first waits `delay` (zero turns it off).
    pub fn set_fsync_delay(&self, delay: Duration) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.fsync_delay_us.store(us, Ordering::Relaxed);
    }

    /// Every later log write fails as if the disk had.
    pub fn set_fail_log_writes(&self, on: bool) {
        self.fail_log_writes.store(on, Ordering::Relaxed);
    }

    /// The next `n` state-machine applies are refused as `Busy`.
    pub fn set_busy_applies(&self, n: u32) {
        self.busy_applies.store(n, Ordering::Relaxed);
    }

    /// Diagnosis only, never in use: log writes are no longer synced, so an
    /// acknowledged write can be lost. Benchmarks use it to measure what a
    /// write costs apart from its fsyncs (`bench --no-fsync`).
    pub fn set_skip_fsync(&self, on: bool) {
        self.skip_fsync.store(on, Ordering::Relaxed);
    }

    /// The node's clock runs `ahead` of the host's from now on (as a leader
    /// it stamps entries so), as a badly set clock would.
    pub fn set_clock_ahead(&self, ahead: Duration) {
        let ms = u64::try_from(ahead.as_millis()).unwrap_or(u64::MAX);
        self.clock_ahead_ms.store(ms, Ordering::Relaxed);
    }

    /// The next `n` answers this node (as leader) gives to forwarded
    /// commands are lost on their way, after the command was applied.
    pub fn set_drop_replies(&self, n: u32) {
        self.drop_replies.store(n, Ordering::Relaxed);
    }

    /// Whether the answer to a forwarded command is lost (`set_drop_replies`).
    pub fn drop_reply(&self) -> bool {
        self.drop_replies
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    /// The wall clock `now_ms` as this node reads it.
    pub fn clock_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_add(self.clock_ahead_ms.load(Ordering::Relaxed))
    }

    /// Whether a log write that must be synced is synced.
    pub fn sync_log(&self, sync: bool) -> bool {
        sync && !self.skip_fsync.load(Ordering::Relaxed)
    }

    /// Called by the log writer before every write.
    pub fn before_log_write(&self, sync: bool) -> Result<()> {
        let us = self.fsync_delay_us.load(Ordering::Relaxed);
        if sync && us > 0 {
            std::thread::sleep(Duration::from_micros(us));
        }
        // Checked after the delay, so a test can fail a write already under way.
        if self.fail_log_writes.load(Ordering::Relaxed) {
            return Err(Error::Io("injected log write failure".into()));
        }
        Ok(())
    }

    /// Called by the apply thread before every apply.
    pub fn before_apply(&self) -> Result<()> {
        let refused = self
            .busy_applies
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if refused {
            return Err(Error::Busy("injected busy state machine".into()));
        }
        Ok(())
    }
}
