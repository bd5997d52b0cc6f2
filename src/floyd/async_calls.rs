//! The async calls: each returns at once and hands its outcome to a
//! completion, so one thread can keep thousands of commands in flight.

use super::Floyd;
use crate::error::Result;
use crate::state_machine::CommandKind;
use bytes::Bytes;

impl Floyd {
    /// [`Floyd::write`] without waiting: `done` gets the outcome, once.
    ///
    /// `Err` means the command was refused at once and `done` will not be
    /// called: an invalid key or value, a closed node, or `Busy` when
    /// [`Options::max_async_in_flight`](crate::Options::max_async_in_flight)
    /// commands are unanswered. Otherwise `done` runs exactly once, on one of
    /// the node's threads (never on the calling thread before this returns),
    /// at the latest shortly after `request_timeout`; it must not block, and
    /// it may call the async API again. Commands submitted one after another
    /// from one thread are applied in that order when they go through the
    /// same leader; a retried one (after a leader change) may overtake.
    pub fn write_async(
        &self,
        key: &[u8],
        value: &[u8],
        done: impl FnOnce(Result<()>) + Send + 'static,
    ) -> Result<()> {
        self.key_value_only("write_async")?;
        let cmd = CommandKind::Put {
            key: Bytes::copy_from_slice(key),
            value: Bytes::copy_from_slice(value),
        };
        self.node
            .execute_async(cmd, Box::new(move |r| done(r.map(|_| ()))))
    }

    /// [`Floyd::delete`] without waiting; `done` as for [`Floyd::write_async`].
    pub fn delete_async(&self, key: &[u8], done: impl FnOnce(Result<()>) + Send + 'static) -> Result<()> {
        self.key_value_only("delete_async")?;
        let cmd = CommandKind::Delete {
            key: Bytes::copy_from_slice(key),
        };
        self.node
            .execute_async(cmd, Box::new(move |r| done(r.map(|_| ()))))
    }

    /// [`Floyd::read`] (linearizable, ReadIndex or lease) without waiting;
    /// `done` gets the value or `NotFound`, as for [`Floyd::write_async`].
    pub fn read_async(&self, key: &[u8], done: impl FnOnce(Result<Vec<u8>>) + Send + 'static) -> Result<()> {
        self.read_async_bytes(key, Box::new(move |r| done(r.map(|v| v.to_vec()))))
    }

    /// [`Floyd::read_async`] handing over the value without a copy (the C API's).
    pub(crate) fn read_async_bytes(&self, key: &[u8], done: crate::runtime::execute::Done) -> Result<()> {
        self.key_value_only("read_async")?;
        let cmd = CommandKind::Get {
            key: Bytes::copy_from_slice(key),
        };
        self.node.execute_async(cmd, done)
    }

    /// How many async commands are unanswered on this handle.
    pub fn async_in_flight(&self) -> usize {
        self.node.waiters.async_in_flight.count()
    }
}
