//! Watches of the built-in store (protocol 6): every change to a range of
//! keys, as this node applies it (`state_machine/watch.rs`).

use super::Floyd;
use crate::error::{Error, Result};
use crate::limits::MAX_KEY_BYTES;
use crate::state_machine::watch::WatchUpdate;
use crate::state_machine::Machine;

impl Floyd {
    /// Calls `callback` with every change to a key in `[start, end)` (`end`
    /// empty: every key from `start` on; a prefix watch ends at
    /// [`prefix_end`](crate::prefix_end)) from revision `start_revision` on
    /// (0: from the next change), in revision order, each once, as this node
    /// applies them (on a follower too; across leader changes). Returns the
    /// watch's id, for [`Floyd::unwatch`].
    ///
    /// Changes before now come from the history this node keeps
    /// (`history_revisions`); older than it: `Compacted`. A watcher that
    /// saw revision `r` and starts again — after a restart too — from
    /// `r + 1` misses nothing and sees nothing twice.
    ///
    /// The callback runs on the host's watch thread (keep it short: it
    /// delays the other watchers, never the apply). Its last call, when the
    /// watch ends by itself, is `WatchUpdate::Ended` with `Stopped` (the
    /// node closed), `Compacted` (a snapshot replaced this node's state) or
    /// `Busy` (it fell more than 100,000 changes or 64 MiB behind); then
    /// watch again from the last revision seen + 1. Only changes counted
    /// under protocol 6 are seen (none during a rolling upgrade from the
    /// previous release).
    pub fn watch(
        &self,
        start: &[u8],
        end: &[u8],
        start_revision: u64,
        callback: impl FnMut(WatchUpdate<'_>) + Send + 'static,
    ) -> Result<u64> {
        let kv = self.kv("watch")?;
        for (bound, what) in [(start, "watch start"), (end, "watch end")] {
            if bound.len() > MAX_KEY_BYTES + 1 {
                return Err(Error::InvalidArgument(format!(
                    "{what} of {} bytes exceeds {}",
                    bound.len(),
                    MAX_KEY_BYTES + 1
                )));
            }
        }
        self.node.check_usable()?;
        kv.watch(start, end, start_revision, Box::new(callback))
    }

    /// Ends watch `id`: once this returns its callback is not called again
    /// (from inside the callback itself: after the current call). No last
    /// call. `NotFound` if there is no such watch (it ended, or never was).
    pub fn unwatch(&self, id: u64) -> Result<()> {
        self.kv("unwatch")?.unwatch(id)
    }

    fn kv(&self, call: &str) -> Result<&crate::state_machine::KvStateMachine> {
        self.key_value_only(call)?;
        match &self.node.state_machine {
            Machine::Kv(kv) => Ok(kv),
            Machine::User(_) => Err(Error::InvalidArgument(format!("{call}: not the built-in store"))),
        }
    }
}
