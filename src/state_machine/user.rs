//! User-defined state machines: the [`StateMachine`] trait a service
//! implements, and [`UserMachine`], which guards every call into it.
//!
//! A user machine's state is volatile as far as floyd knows: floyd keeps no
//! applied index for it on disk, so it starts at 0 at every open. After a
//! restart floyd loads the latest snapshot (if there is one) with
//! [`StateMachine::snapshot_load`], then replays every log entry after it;
//! without a snapshot it replays the whole log. A machine that persists its
//! state itself must therefore start from empty (or accept a load) at open,
//! or it would apply entries twice.
//!
//! A panic in a callback is caught: it never unwinds into floyd's threads
//! (or, through the C API, into C). The machine's state is unknown after
//! one, so the machine refuses everything afterwards and the node fails with
//! the panic's message.

use super::{decode_command, Applied};
use crate::error::{Error, Result};
use crate::wire::{command::Op, Entry, EntryType};
use bytes::Bytes;
use parking_lot::Mutex;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// A state machine of the user's own, replicated by floyd. Called from the
/// node's apply thread, one call at a time, but for two exceptions: at open,
/// `snapshot_load` of the latest snapshot runs on the opening thread, before
/// the apply thread starts; at close, a last `on_leader_stop` and the drop
/// run on the closing thread, once the apply thread has stopped.
///
/// Every replica applies the same commands in the same order, so every
/// callback must be deterministic: the same state and command give the
/// same state and answer everywhere (no clocks, randomness or local files
/// beyond the snapshot directory). A callback must not call into the
/// `Floyd` that runs it (that would deadlock) and should not block for long:
/// nothing is applied, and no proposer answered, while it runs.
pub trait StateMachine: Send + 'static {
    /// Applies one committed command (`data` as given to propose) at log `index`; returns what the proposer receives, or an error message (deterministic: every replica must return the same).
    ///
    /// An error leaves the node working: the proposer gets
    /// [`Error::StateMachine`] with the message. It should also leave the
    /// state as it was (the command is refused, not half-applied).
    fn apply(&mut self, index: u64, data: &[u8]) -> std::result::Result<Vec<u8>, String>;
    /// Writes the whole state into `dir` (exists, empty); floyd syncs and ships the files.
    fn snapshot_save(&mut self, dir: &std::path::Path) -> std::result::Result<(), String>;
    /// Replaces the whole state with the one saved in `dir`.
    ///
    /// `dir` belongs to floyd: read it, never keep or change it. On error
    /// the state should be left as it was.
    fn snapshot_load(&mut self, dir: &std::path::Path) -> std::result::Result<(), String>;
    /// This node became the leader in `term` (as the apply thread sees it:
    /// entries of earlier terms may still be being applied).
    fn on_leader_start(&mut self, _term: u64) {}
    /// This node is no longer the leader (also called at close if it was).
    fn on_leader_stop(&mut self) {}
}

/// A [`StateMachine`] as floyd runs it: one call at a time, panics caught,
/// the applied index tracked (in memory only: 0 at open).
pub struct UserMachine {
    inner: Mutex<Inner>,
    /// Outside the lock so that status calls never wait for a long apply.
    applied: AtomicU64,
}

struct Inner {
    /// `None` once closed.
    machine: Option<Box<dyn StateMachine>>,
    /// The term the machine was last told this node leads in.
    leading: Option<u64>,
    /// Set by a panic: the state is unknown, so nothing more is applied.
    broken: Option<Error>,
}

impl Inner {
    /// Runs one callback, turning a closed or broken machine, or a panic, into an error.
    fn call<T>(&mut self, what: &str, f: impl FnOnce(&mut dyn StateMachine) -> T) -> Result<T> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        let machine = self
            .machine
            .as_deref_mut()
            .ok_or_else(|| Error::Stopped("the state machine was closed".into()))?;
        catch_unwind(AssertUnwindSafe(|| f(machine))).map_err(|panic| {
            let e = Error::Internal(format!(
                "state machine {what} panicked: {}",
                crate::transport::panic_message(&*panic)
            ));
            self.broken = Some(e.clone());
            e
        })
    }
}

impl UserMachine {
    pub fn new(machine: Box<dyn StateMachine>) -> UserMachine {
        UserMachine {
            inner: Mutex::new(Inner {
                machine: Some(machine),
                leading: None,
                broken: None,
            }),
            applied: AtomicU64::new(0),
        }
    }

    /// Highest log index applied since open (or loaded from a snapshot).
    pub fn applied_index(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Applies committed entries in order, with the same rules as the
    /// key-value store: entries at or below the applied index are skipped, a
    /// gap is a bug, no-op and configuration entries only move the index.
    pub fn apply(&self, entries: &[Entry]) -> Result<Vec<Applied>> {
        let mut inner = self.inner.lock();
        // A closed or broken machine refuses the batch before any entry counts as applied.
        inner.call("apply", |_| ())?;
        let applied = self.applied_index();
        let mut last = applied;
        let mut out = Vec::with_capacity(entries.len());
        for e in entries.iter().filter(|e| e.index > applied) {
            if e.index != last + 1 {
                return Err(Error::Internal(format!(
                    "apply gap: entry {} after {last}",
                    e.index
                )));
            }
            let result = if e.r#type == EntryType::EntryCommand as i32 {
                match decode_command(&e.payload) {
                    Ok(Op::Custom(c)) => match inner.call("apply", |m| m.apply(e.index, &c.data))? {
                        Ok(answer) => Ok(Some(Bytes::from(answer))),
                        Err(message) => Err(Error::StateMachine(message)),
                    },
                    Ok(_) => Err(Error::InvalidArgument(
                        "a key-value or lock command, but this node runs a user-defined state machine (use propose)"
                            .into(),
                    )),
                    // Committed everywhere alike: every replica answers the same.
                    Err(e) => Err(e),
                }
            } else {
                Ok(None)
            };
            last = e.index;
            // Per entry: the machine's state has moved even if a later entry panics.
            self.applied.store(last, Ordering::Release);
            out.push(Applied {
                index: e.index,
                term: e.term,
                result,
            });
        }
        Ok(out)
    }

    /// Has the machine write its state into `dir`; returns the applied index it reflects.
    pub fn snapshot_save(&self, dir: &Path) -> Result<u64> {
        let mut inner = self.inner.lock();
        inner
            .call("snapshot_save", |m| m.snapshot_save(dir))?
            .map_err(|m| Error::Io(format!("state machine snapshot_save into {}: {m}", dir.display())))?;
        Ok(self.applied_index())
    }

    /// Has the machine replace its state with the one in `dir`, as of `index`.
    pub fn snapshot_load(&self, dir: &Path, index: u64) -> Result<()> {
        let mut inner = self.inner.lock();
        inner
            .call("snapshot_load", |m| m.snapshot_load(dir))?
            .map_err(|m| Error::Io(format!("state machine snapshot_load from {}: {m}", dir.display())))?;
        self.applied.store(index, Ordering::Release);
        Ok(())
    }

    /// Tells the machine when this node starts or stops leading (changes only).
    /// A panic here surfaces at the next apply, which fails the node.
    pub fn observe_leadership(&self, leading: Option<u64>) {
        let mut inner = self.inner.lock();
        if inner.leading == leading || inner.machine.is_none() || inner.broken.is_some() {
            return;
        }
        let was = std::mem::replace(&mut inner.leading, leading);
        let outcome = inner.call("on_leader_start/on_leader_stop", |m| {
            if was.is_some() {
                m.on_leader_stop();
            }
            if let Some(term) = leading {
                m.on_leader_start(term);
            }
        });
        if let Err(e) = outcome {
            tracing::error!(error = %e, "the state machine's leadership callback failed");
        }
    }

    /// Ends the machine (dropping it, which for a C machine calls its
    /// finalizer); later calls fail with `Stopped`. Idempotent.
    pub fn close(&self) {
        let mut inner = self.inner.lock();
        if inner.leading.take().is_some() {
            let _ = inner.call("on_leader_stop", |m| m.on_leader_stop());
        }
        if let Some(machine) = inner.machine.take() {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(move || drop(machine))) {
                tracing::error!(
                    panic = %crate::transport::panic_message(&*panic),
                    "the state machine panicked while being dropped"
                );
            }
        }
    }
}

impl Drop for UserMachine {
    /// A start that failed before the runtime took the machine still ends it,
    /// through the same guarded path.
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
#[path = "user_tests.rs"]
mod tests;
