//! Exactly-once client sessions (dissertation §6.3), decided in apply so
//! every replica answers a retried command alike.
//!
//! A handle registers a session through the log (`RegisterSession`; the
//! session's id is its entry's index) and numbers the commands it sends
//! under it. A replica applies a (session, seq) once and keeps its answer;
//! a copy of it (the library's retry of a command whose answer was lost)
//! gets that answer without being applied again. The client's lowest
//! unanswered seq rides on every command, and the answers below it go.
//! A session lives `ttl_ms` of the log's time past its last command and
//! then expires, on every replica at the same entry; a command of an
//! unknown or expired session is refused (`SessionExpired`), never applied.
//!
//! Stored beside the effect, in the apply's WriteBatch: `s` + id → the
//! session with the seqs it had applied (as ranges, rewritten once per
//! batch), `r` + id + seq → an answer (a `ClientResponse`) unless it was a
//! plain success without a value, as a put's or a delete's is: the common
//! write costs the store no key of its own. A crash between effect and
//! session cannot happen, so a replay after a restart dedupes exactly as
//! the first apply did.

use super::kv_keys::KvKeys;
use crate::error::{Error, Result};
use crate::limits::{
    MAX_SESSIONS, MAX_SESSIONS_EXPIRED_PER_ENTRY, MAX_SESSION_ANSWERS, MAX_SESSION_TTL_MS, MIN_SESSION_TTL_MS,
};
use crate::wire::result::{response_from_result, result_from_response};
use crate::wire::{ClientResponse, SessionRecord, SessionRef};
use bytes::Bytes;
use prost::Message as _;
use rocksdb::{WriteBatch, DB};
use std::collections::{BTreeSet, HashMap};

/// Refuses a session TTL outside `MIN_SESSION_TTL_MS..=MAX_SESSION_TTL_MS`.
pub fn check_ttl(ttl_ms: u64) -> Result<()> {
    if !(MIN_SESSION_TTL_MS..=MAX_SESSION_TTL_MS).contains(&ttl_ms) {
        return Err(Error::InvalidArgument(format!(
            "session ttl {ttl_ms} ms is outside {MIN_SESSION_TTL_MS}..={MAX_SESSION_TTL_MS}"
        )));
    }
    Ok(())
}

/// One session as a replica keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Session {
    ttl_ms: u64,
    last_active_ms: u64,
    /// Every seq up to it was answered to the client: a copy is stale.
    responded_to: u64,
    /// Seqs above `responded_to` applied.
    answered: BTreeSet<u64>,
    /// Those of them whose answer is stored (not a plain `Ok(None)`).
    stored: BTreeSet<u64>,
}

impl Session {
    fn deadline(&self) -> u64 {
        self.last_active_ms.saturating_add(self.ttl_ms)
    }

    fn record(&self) -> SessionRecord {
        let mut applied_ranges = Vec::new();
        for &seq in &self.answered {
            match applied_ranges.last_mut() {
                Some(last) if *last + 1 == seq => *last = seq,
                _ => applied_ranges.extend([seq, seq]),
            }
        }
        SessionRecord {
            ttl_ms: self.ttl_ms,
            last_active_ms: self.last_active_ms,
            responded_to: self.responded_to,
            applied_ranges,
        }
    }

    /// Forgets seq `seq`'s answer (and its stored key, if any).
    fn forget(&mut self, batch: &mut WriteBatch, keys: &KvKeys, id: u64, seq: u64) {
        self.answered.remove(&seq);
        if self.stored.remove(&seq) {
            batch.delete(keys.session_answer(id, seq));
        }
    }
}

/// What a replica does with a command sent under a session.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// Not seen before: apply it, then [`SessionTable::answered`].
    New,
    /// Applied before: this answer, and nothing applied.
    Duplicate(Result<Option<Bytes>>),
    /// Not applied: the session is unknown or expired, or the command is
    /// one its client stopped waiting for (its answer is forgotten).
    Refused(Error),
}

/// A group's sessions as stored, kept in memory between applies (taken out
/// while a batch is applied and put back once it is written, as leases are).
#[derive(Debug, Default)]
pub struct SessionTable {
    sessions: HashMap<u64, Session>,
    /// (deadline, id): the next to expire first.
    by_deadline: BTreeSet<(u64, u64)>,
    /// Sessions changed in the batch under way: written once at its end.
    dirty: BTreeSet<u64>,
    /// Answers written in the batch under way, not yet readable from the store.
    unwritten: HashMap<(u64, u64), Bytes>,
}

impl SessionTable {
    pub fn load(db: &DB, keys: &KvKeys) -> Result<SessionTable> {
        let mut table = SessionTable::default();
        for_each_under(db, &keys.sessions(), |rest, v| {
            let id = id_of(rest, "a session's key")?;
            let r = SessionRecord::decode(v)
                .map_err(|e| Error::Corruption(format!("session {id} does not decode: {e}")))?;
            if r.applied_ranges.len() % 2 != 0 {
                return Err(Error::Corruption(format!(
                    "session {id}'s applied ranges are not pairs"
                )));
            }
            let answered = r
                .applied_ranges
                .chunks(2)
                .flat_map(|pair| pair[0]..=pair[1])
                .collect();
            let s = Session {
                ttl_ms: r.ttl_ms,
                last_active_ms: r.last_active_ms,
                responded_to: r.responded_to,
                answered,
                stored: BTreeSet::new(),
            };
            table.by_deadline.insert((s.deadline(), id));
            table.sessions.insert(id, s);
            Ok(())
        })?;
        for_each_under(db, &keys.session_answers(), |rest, _| {
            if rest.len() != 16 {
                return Err(Error::Corruption(
                    "a session answer's key is not its prefix and 16 bytes".into(),
                ));
            }
            let (id, seq) = (id_of(&rest[..8], "")?, id_of(&rest[8..], "")?);
            match table.sessions.get_mut(&id) {
                Some(s) if s.answered.contains(&seq) => {
                    s.stored.insert(seq);
                    Ok(())
                }
                _ => Err(Error::Corruption(format!(
                    "an answer to command {seq} of session {id}, which did not apply it"
                ))),
            }
        })?;
        Ok(table)
    }

    /// How many sessions the group keeps.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Opens session `id` (its entry's index) at log time `now`; when the
    /// group holds `MAX_SESSIONS`, the least recently active goes first.
    pub fn register(&mut self, batch: &mut WriteBatch, keys: &KvKeys, id: u64, ttl_ms: u64, now: u64) {
        while self.sessions.len() >= MAX_SESSIONS {
            let Some(&(_, oldest)) = self.by_deadline.first() else {
                break;
            };
            self.remove(batch, keys, oldest);
        }
        let s = Session {
            ttl_ms,
            last_active_ms: now,
            ..Session::default()
        };
        self.by_deadline.insert((s.deadline(), id));
        self.sessions.insert(id, s);
        self.dirty.insert(id);
    }

    /// Expires the sessions idle past their TTL at log time `now` (at most
    /// `MAX_SESSIONS_EXPIRED_PER_ENTRY`). A session whose client may not
    /// have been heard since a new leader took over (`promoted_at`, the
    /// log's time at its term's first entry) lives its whole TTL from
    /// there: a new leader's clock ahead expires nobody early.
    pub fn expire_due(&mut self, batch: &mut WriteBatch, keys: &KvKeys, now: u64, promoted_at: u64) {
        let mut expired = 0;
        while let Some(&(deadline, id)) = self.by_deadline.first() {
            if deadline > now || expired >= MAX_SESSIONS_EXPIRED_PER_ENTRY {
                break;
            }
            let s = &self.sessions[&id];
            let promoted = promoted_at.saturating_add(s.ttl_ms);
            if promoted > now {
                // Moved, as if active at the promotion (stored at the batch's end).
                self.by_deadline.remove(&(deadline, id));
                let s = self.sessions.get_mut(&id).expect("indexed");
                s.last_active_ms = promoted_at;
                self.by_deadline.insert((s.deadline(), id));
                self.dirty.insert(id);
                continue;
            }
            self.remove(batch, keys, id);
            expired += 1;
        }
    }

    /// What to do with a command sent under `r`, read from `db` (for an
    /// answer written before this batch) or the batch's own answers.
    pub fn check(&self, db: &DB, keys: &KvKeys, r: &SessionRef) -> Result<Check> {
        let Some(s) = self.sessions.get(&r.client_id) else {
            return Ok(Check::Refused(Error::SessionExpired(format!(
                "client session {} is unknown or expired; the command was not applied",
                r.client_id
            ))));
        };
        if r.seq <= s.responded_to {
            return Ok(Check::Refused(Error::Timeout(format!(
                "command {} of session {} was given up by its client (or its answer forgotten); it was not applied now, and may or may not have been before",
                r.seq, r.client_id
            ))));
        }
        if !s.answered.contains(&r.seq) {
            return Ok(Check::New);
        }
        if !s.stored.contains(&r.seq) {
            return Ok(Check::Duplicate(Ok(None)));
        }
        let stored = match self.unwritten.get(&(r.client_id, r.seq)) {
            Some(a) => a.clone(),
            None => match db.get_pinned(keys.session_answer(r.client_id, r.seq))? {
                Some(v) => Bytes::copy_from_slice(&v),
                None => {
                    return Err(Error::Corruption(format!(
                        "the answer to command {} of session {} is missing",
                        r.seq, r.client_id
                    )))
                }
            },
        };
        let resp = ClientResponse::decode(stored)
            .map_err(|e| Error::Corruption(format!("a session answer does not decode: {e}")))?;
        Ok(Check::Duplicate(result_from_response(resp).map(Some)))
    }

    /// Keeps the answer of command `r` (just applied) and notes the
    /// client's activity at log time `now`.
    pub fn answered(
        &mut self,
        batch: &mut WriteBatch,
        keys: &KvKeys,
        r: &SessionRef,
        result: &Result<Option<Bytes>>,
        now: u64,
    ) {
        let Some(s) = self.sessions.get_mut(&r.client_id) else {
            return;
        };
        s.answered.insert(r.seq);
        if *result != Ok(None) {
            let answer = Bytes::from(response_from_result(0, result.clone(), "").encode_to_vec());
            batch.put(keys.session_answer(r.client_id, r.seq), &answer);
            s.stored.insert(r.seq);
            self.unwritten.insert((r.client_id, r.seq), answer);
        }
        while s.answered.len() > MAX_SESSION_ANSWERS {
            let oldest = *s.answered.first().expect("over the cap");
            s.responded_to = s.responded_to.max(oldest);
            s.forget(batch, keys, r.client_id, oldest);
        }
        self.touch(batch, keys, r, now);
    }

    /// Notes that session `r`'s client was heard at `now`, and forgets the
    /// answers it no longer waits for (below its lowest unacknowledged seq).
    pub fn touch(&mut self, batch: &mut WriteBatch, keys: &KvKeys, r: &SessionRef, now: u64) {
        let Some(s) = self.sessions.get_mut(&r.client_id) else {
            return;
        };
        let acked = r.lowest_unacked.saturating_sub(1);
        if acked > s.responded_to {
            while let Some(&seq) = s.answered.first().filter(|&&seq| seq <= acked) {
                s.forget(batch, keys, r.client_id, seq);
            }
            s.responded_to = acked;
        }
        if now > s.last_active_ms {
            self.by_deadline.remove(&(s.deadline(), r.client_id));
            s.last_active_ms = now;
            self.by_deadline.insert((s.deadline(), r.client_id));
        }
        self.dirty.insert(r.client_id);
    }

    /// Writes the sessions changed in this batch into it; the batch's
    /// answers become the store's.
    pub fn flush(&mut self, batch: &mut WriteBatch, keys: &KvKeys) {
        for id in std::mem::take(&mut self.dirty) {
            if let Some(s) = self.sessions.get(&id) {
                batch.put(keys.session(id), s.record().encode_to_vec());
            }
        }
        self.unwritten.clear();
    }

    fn remove(&mut self, batch: &mut WriteBatch, keys: &KvKeys, id: u64) {
        if let Some(s) = self.sessions.remove(&id) {
            self.by_deadline.remove(&(s.deadline(), id));
            batch.delete(keys.session(id));
            let (start, end) = keys.session_answers_of(id);
            batch.delete_range(start, end);
            self.dirty.remove(&id);
            self.unwritten.retain(|(client, _), _| *client != id);
        }
    }
}

fn id_of(bytes: &[u8], what: &str) -> Result<u64> {
    bytes
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| Error::Corruption(format!("{what} is not its prefix and 8 bytes")))
}

/// Calls `f(key after prefix, value)` for every key under `prefix`.
fn for_each_under(db: &DB, prefix: &[u8], mut f: impl FnMut(&[u8], &[u8]) -> Result<()>) -> Result<()> {
    let mut it = db.raw_iterator();
    it.seek(prefix);
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        if !k.starts_with(prefix) {
            break;
        }
        f(&k[prefix.len()..], v)?;
        it.next();
    }
    it.status()?;
    Ok(())
}
