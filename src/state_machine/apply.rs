//! Applying committed entries to the built-in store: each batch in one
//! WriteBatch with the new applied index, the log's time and the group's
//! revision, so a crash between commit and apply replays every entry
//! exactly once (entries at or below the stored applied index are skipped).

use super::expiry::{self, ExpiryStage};
use super::history;
use super::lease::{self, LeaseTable};
use super::progress::{Layout, Progress};
use super::revision::View;
use super::session::{Check, SessionTable};
use super::{lock, read_progress_laid_out, txn, Applied, AppliedState, KvStateMachine, TYPED_YES};
use crate::error::{Error, Result};
use crate::wire::{command::Op, Entry, EntryType};
use bytes::Bytes;
use rocksdb::WriteOptions;

/// Where an entry is applied: its index, the log's time there, and whether
/// its leader marked it as proposed under protocol 6 (revisions counted,
/// transactions applied).
#[derive(Clone, Copy)]
struct At {
    index: u64,
    time: u64,
    protocol_6: bool,
}

impl KvStateMachine {
    /// Applies committed entries in order, atomically with the new applied index.
    /// Entries already applied (index at or below the stored applied index) are skipped.
    pub fn apply(&self, entries: &[Entry]) -> Result<Vec<Applied>> {
        let db = self.db()?;
        let keys = &self.keys;
        // Held through the write: one apply of a group at a time.
        let mut cached = self.applied.lock();
        let state = match *cached {
            Some(s) => s,
            None => {
                let (progress, layout) = read_progress_laid_out(&db, keys)?;
                let history_start = history::stored_start(&db, keys)?;
                AppliedState {
                    progress,
                    layout,
                    legacy: super::revision::legacy_possible(&db, keys)?,
                    legacy_stored: db.get_pinned(keys.legacy())?.is_some(),
                    // A store without a history has none of its revisions so far.
                    history_start: history_start.unwrap_or(progress.revision() + 1),
                    history_start_stored: history_start.is_some(),
                }
            }
        };
        let keep = self.history_revisions.load(std::sync::atomic::Ordering::Relaxed);
        let mut history_start = state.history_start;
        let mut history_start_stored = state.history_start_stored;
        if keep > 0 && history_start == history::NONE_KEPT {
            // Kept again from now on.
            history_start = state.progress.revision() + 1;
            history_start_stored = false;
        }
        let (applied, mut time) = (state.progress.applied, state.progress.time);
        // Until the batch is written, nothing is known for sure: taken out,
        // put back only once it is.
        *cached = None;
        let mut leases = match self.leases.lock().take() {
            Some(table) => table,
            None => LeaseTable::load(&db, keys)?,
        };
        let mut sessions = match self.sessions.lock().take() {
            Some(table) => table,
            None => SessionTable::load(&db, keys)?,
        };
        let expiry_table = self.expiries.loaded(&db, keys)?;
        let expiring = ExpiryStage::new(Some(&expiry_table));
        let typed = self.may_hold_types(&db)?;
        let mut view = View::new(
            &db,
            keys,
            &mut leases,
            state.progress.revision(),
            state.legacy,
            expiring,
            typed,
        );
        let mut out = Vec::with_capacity(entries.len());
        let mut last = applied;
        let mut expired = 0u64;
        for e in entries.iter().filter(|e| e.index > applied) {
            if e.index != last + 1 {
                return Err(Error::Internal(format!(
                    "apply gap: entry {} after {last}",
                    e.index
                )));
            }
            last = e.index;
            let protocol_6 = e.log_time_rule == 2;
            time.advance(e.index, e.term, e.leader_time_ms, protocol_6);
            view.counting = protocol_6;
            let (changes_before, revision_before) = (view.events.len(), view.revision);
            if protocol_6 {
                lease::before_entry(&mut view, e.term, time.time)?;
                let promoted_at = view.leases.promoted_at();
                sessions.expire_due(&mut view.batch, keys, time.time, promoted_at);
                let before = view.events.len();
                expiry::expire_due(&mut view, time.time)?;
                expired += (view.events.len() - before) as u64;
                for e in &mut view.events[before..] {
                    e.redis_events = Some(&["expired"]);
                }
            }
            let result = if e.r#type == EntryType::EntryCommand as i32 {
                let at = At {
                    index: e.index,
                    time: time.time,
                    protocol_6,
                };
                apply_in_session(&mut view, &mut sessions, &e.payload, at)?
            } else {
                Ok(None)
            };
            out.push(Applied {
                index: e.index,
                term: e.term,
                result,
            });
            if view.revision != revision_before && keep > 0 {
                history::store(&mut view.batch, keys, &view.events[changes_before..]);
                history::trim(&mut view.batch, keys, &mut history_start, view.revision, keep);
            } else if view.revision != revision_before && history_start != history::NONE_KEPT {
                // None kept: what there was goes, once, and a watch can start
                // from now only.
                history::drop_all(&mut view.batch, keys);
                history_start = history::NONE_KEPT;
                history_start_stored = false;
            }
        }
        let (revision, legacy) = (view.revision, view.legacy);
        let typed_now = view.typed;
        let next_key_deadline = view.expiry.next_deadline();
        let expiry_changes = std::mem::replace(&mut view.expiry, ExpiryStage::new(None)).into_changes();
        let changes = view.events;
        let after = progress_after(&state.progress, last, time, revision);
        if last > applied {
            let mut batch = view.batch;
            sessions.flush(&mut batch, keys);
            if !history_start_stored {
                batch.put(keys.history_start(), history_start.to_be_bytes());
            }
            after.write(
                &mut batch,
                keys,
                self.progress_layout(),
                &state.progress,
                state.layout,
            );
            if legacy && !state.legacy_stored {
                // Keys from before revisions stay possible once `m:rev` exists.
                batch.put(keys.legacy(), [1u8]);
            }
            // Not synced: the log is the durable source; after a power loss the
            // state machine rolls back with its applied index and replays.
            let mut wo = WriteOptions::default();
            wo.set_sync(false);
            db.write_opt(batch, &wo)?;
            self.expired_keys
                .fetch_add(expired, std::sync::atomic::Ordering::Relaxed);
        }
        drop(expiry_table);
        self.expiries.commit(expiry_changes);
        if typed_now && !typed {
            self.typed.store(TYPED_YES, std::sync::atomic::Ordering::Release);
        }
        let next_deadline = leases.next_deadline().into_iter().chain(next_key_deadline).min();
        self.lease_clock.lock().applied(time.time, next_deadline);
        self.deadlines_held
            .store(next_deadline.is_some(), std::sync::atomic::Ordering::Release);
        *self.leases.lock() = Some(leases);
        self.sessions_open
            .store(sessions.len() as u64, std::sync::atomic::Ordering::Relaxed);
        *self.sessions.lock() = Some(sessions);
        let (progress, layout) = match last > applied {
            true => (after, self.progress_layout()),
            false => (state.progress, state.layout),
        };
        *cached = Some(AppliedState {
            progress,
            layout,
            legacy,
            legacy_stored: legacy && last > applied || state.legacy_stored,
            history_start,
            history_start_stored: history_start_stored || last > applied,
        });
        // Under the apply's lock: watchers see batches in order.
        self.watches.publish(&changes, revision);
        Ok(out)
    }
}

/// The progress after a batch that applied up to `last`: a revision is
/// stored once one was counted (or the store had one).
fn progress_after(before: &Progress, last: u64, time: super::log_time::LogTime, revision: u64) -> Progress {
    let counted = before.revision.is_some() || revision != before.revision();
    Progress {
        applied: last,
        time,
        revision: counted.then_some(revision),
    }
}

impl KvStateMachine {
    /// One key in a shared store; the separate keys of earlier releases in
    /// a private one, whose checkpoints they may load (`progress.rs`).
    fn progress_layout(&self) -> Layout {
        match self.private {
            true => Layout::Separate,
            false => Layout::OneKey,
        }
    }
}

/// One command's effect on `view`, applied once per client session and
/// seq (`session.rs`): a copy gets the first one's answer. Sessions hold in
/// protocol-6 entries only; elsewhere every replica applies as the
/// previous release does.
fn apply_in_session(
    view: &mut View<'_>,
    sessions: &mut SessionTable,
    payload: &[u8],
    at: At,
) -> Result<Result<Option<Bytes>>> {
    // A command that does not decode was committed everywhere alike: every
    // replica answers the same error and moves on.
    let (op, session) = match super::decode_command_in(payload) {
        Ok(decoded) => decoded,
        Err(e) => return Ok(Err(e)),
    };
    let session = session.filter(|_| at.protocol_6);
    if let Op::RegisterSession(r) = &op {
        if !at.protocol_6 {
            return Ok(Err(Error::InvalidArgument(
                "a session registered while not every member ran protocol 6".into(),
            )));
        }
        sessions.register(&mut view.batch, view.keys, at.index, r.ttl_ms, at.time);
        return Ok(Ok(Some(Bytes::copy_from_slice(&at.index.to_be_bytes()))));
    }
    let Some(r) = session else {
        return apply_command(view, op, at);
    };
    match sessions.check(view.db, view.keys, &r)? {
        Check::New => {
            let result = apply_command(view, op, at)?;
            sessions.answered(&mut view.batch, view.keys, &r, &result, at.time);
            Ok(result)
        }
        Check::Duplicate(answer) => {
            sessions.touch(&mut view.batch, view.keys, &r, at.time);
            Ok(answer)
        }
        Check::Refused(e) => {
            sessions.touch(&mut view.batch, view.keys, &r, at.time);
            Ok(Err(e))
        }
    }
}

/// One command's effect on `view`; its result (an `Err` inside is the
/// answer every replica gives alike, not a failure of the apply).
fn apply_command(view: &mut View<'_>, op: Op, at: At) -> Result<Result<Option<Bytes>>> {
    Ok(match op {
        Op::Put(p) if at.protocol_6 => {
            if let Err(e) = lease::check_exists(view, p.lease) {
                return Ok(Err(e));
            }
            let next = view.revision + 1;
            view.put(&p.key, &p.value, p.lease, Some(next))?;
            view.revision = next;
            Ok(None)
        }
        // As the previous release applies it (and drops the key's revisions).
        Op::Put(p) => {
            view.put(&p.key, &p.value, 0, None)?;
            Ok(None)
        }
        Op::Delete(d) => {
            if view.delete(&d.key)? && at.protocol_6 {
                view.revision += 1;
            }
            Ok(None)
        }
        Op::Get(g) => view.value(&g.key)?.map(Some).ok_or(Error::NotFound),
        Op::Txn(t) if at.protocol_6 => return txn::apply(view, &t),
        Op::Redis(b) if at.protocol_6 => {
            let replies = super::redis::apply(view, &b, at.time)?;
            Ok(Some(Bytes::from(prost::Message::encode_to_vec(&replies))))
        }
        Op::LeaseGrant(g) if at.protocol_6 => lease::grant(view, at.index, g.ttl_ms, at.time),
        Op::LeaseKeepAlive(k) if at.protocol_6 => Ok(Some(lease::keep_alive(view, &k.ids, at.time))),
        Op::LeaseRevoke(r) if at.protocol_6 => return lease::revoke(view, r.id),
        // What is due expired before the entry (`lease::before_entry`).
        Op::LeaseSweep(_) => Ok(None),
        Op::Txn(_) | Op::Redis(_) | Op::LeaseGrant(_) | Op::LeaseKeepAlive(_) | Op::LeaseRevoke(_) => {
            Err(Error::InvalidArgument(
                "a transaction or lease command proposed while not every member ran protocol 6".into(),
            ))
        }
        Op::TryLock(t) => {
            return lock::try_lock(
                view.db,
                view.keys,
                &mut view.batch,
                &mut view.locks,
                &t.name,
                &t.holder,
                t.ttl_ms,
                at.index,
                at.time,
            )
        }
        Op::Unlock(u) => {
            return lock::unlock(
                view.db,
                view.keys,
                &mut view.batch,
                &mut view.locks,
                &u.name,
                &u.holder,
                at.time,
            )
        }
        // Membership requests become configuration entries, never commands;
        // reads are served without the log.
        Op::AddServer(_)
        | Op::RemoveServer(_)
        | Op::TransferLeader(_)
        | Op::Range(_)
        | Op::RedisRead(_)
        | Op::LeaseQuery(_)
        | Op::RegisterSession(_) => Err(Error::InvalidArgument(
            "a membership, leadership, range or lease request in a command entry".into(),
        )),
        // Refused, not fatal: every replica of this cluster answers the same.
        Op::Custom(_) => Err(Error::InvalidArgument(
            "a command for a user-defined state machine, but this node runs the built-in key-value store"
                .into(),
        )),
    })
}
