//! Checks on every message before the core acts on it. Anyone who passes the
//! handshake can send frames, so nothing a message says is trusted: a
//! message that no honest member could have sent is refused whole — never
//! persisted, never a panic — and the runtime logs why.

use super::{Message, RaftCore};
use crate::wire::{AppendEntries, AppendEntriesResponse};

pub use crate::limits::MAX_WIRE_VALUE;

/// Why the core refused a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejected {
    #[error("{0} is not a member of the configuration")]
    NotMember(String),
    #[error("a message from this node itself")]
    FromSelf,
    #[error("the message names {named} as its sender, but came from {from}")]
    SenderMismatch { from: String, named: String },
    #[error("{field} {value} is beyond the largest accepted ({MAX_WIRE_VALUE})")]
    OutOfRange { field: &'static str, value: u64 },
    #[error("malformed AppendEntries: {0}")]
    MalformedAppend(String),
    #[error("malformed InstallSnapshot: {0}")]
    MalformedSnapshot(String),
    #[error("acknowledges index {acked}, past this leader's last index {last}")]
    AckBeyondLog { acked: u64, last: u64 },
    /// An entry at or below this node's commit index that differs from the
    /// committed one: no honest leader sends it (§5.4, Leader Completeness).
    #[error("entry {index} of term {term} contradicts the committed entry of term {committed_term}")]
    ContradictsCommitted {
        index: u64,
        term: u64,
        committed_term: u64,
    },
}

impl RaftCore {
    /// Checks a message from `from` against everything that does not depend
    /// on timing: membership, the sender's name, ranges, the shape of entries.
    pub(super) fn validate(&self, from: &str, msg: &Message) -> Result<(), Rejected> {
        if from == self.cfg.id {
            return Err(Rejected::FromSelf);
        }
        // A leader outside our configuration may be one of a newer one that
        // we have not received yet (§4.1): its AppendEntries are heard, and
        // requests for votes from non-voters are ignored by the term rules
        // (unless their log is ahead of ours).
        // Only answers must come from someone we asked.
        let answer = matches!(
            msg,
            Message::RequestVoteResponse(_)
                | Message::AppendEntriesResponse(_)
                | Message::ReadIndexRequest(_)
        );
        // (A member leaving by an uncommitted configuration still answers the leader.)
        if answer && !self.membership().contains(from) && !self.progress.contains_key(from) {
            return Err(Rejected::NotMember(from.to_string()));
        }
        let named = match msg {
            Message::RequestVote(m) => &m.candidate,
            Message::RequestVoteResponse(m) => &m.from,
            Message::AppendEntries(m) => &m.leader,
            Message::AppendEntriesResponse(m) => &m.from,
            Message::InstallSnapshot(m) => &m.leader,
            Message::ReadIndexRequest(m) => &m.from,
            Message::ReadIndexResponse(m) => &m.from,
            Message::TimeoutNow(m) => &m.from,
        };
        if named != from {
            return Err(Rejected::SenderMismatch {
                from: from.to_string(),
                named: named.clone(),
            });
        }
        in_range("term", msg.term())?;
        match msg {
            Message::RequestVote(m) => {
                in_range("last_log_index", m.last_log_index)?;
                in_range("last_log_term", m.last_log_term)
            }
            Message::RequestVoteResponse(_) => Ok(()),
            Message::AppendEntries(m) => validate_append(m).and_then(|_| self.validate_against_commit(m)),
            Message::AppendEntriesResponse(m) => self.validate_append_response(m),
            Message::InstallSnapshot(m) => validate_install(m),
            Message::ReadIndexRequest(_) => Ok(()),
            Message::ReadIndexResponse(m) => in_range("read index", m.index),
            // (Heard only from the leader this node follows: see handle_timeout_now.)
            Message::TimeoutNow(_) => Ok(()),
        }
    }

    /// Committed entries are never replaced: from a leader of this term or
    /// a later one, entries at or below the commit index must be the ones
    /// this node has (or compacted away). A message of an earlier term may
    /// well differ (its leader's entries were overwritten since); the term
    /// check refuses it anyway.
    fn validate_against_commit(&self, m: &AppendEntries) -> Result<(), Rejected> {
        if m.term < self.term {
            return Ok(());
        }
        for e in m.entries.iter().take_while(|e| e.index <= self.commit) {
            match self.log.term(e.index) {
                Some(committed_term) if committed_term != e.term => {
                    return Err(Rejected::ContradictsCommitted {
                        index: e.index,
                        term: e.term,
                        committed_term,
                    })
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn validate_append_response(&self, m: &AppendEntriesResponse) -> Result<(), Rejected> {
        in_range("last_log_index", m.last_log_index)?;
        in_range("conflict_term", m.conflict_term)?;
        in_range("conflict_index", m.conflict_index)?;
        // A leader's log only grows within its term, and a response counts only
        // in the term it answers: an honest member never acknowledges, or
        // rejects, an index this leader does not have. (A node that led this
        // term before a crash may have lost unsynced entries, but it is no
        // leader now, and a follower ignores acknowledgements anyway.)
        let last = self.log.last_index();
        if m.term == self.term && self.role == super::Role::Leader {
            for acked in [m.match_index, m.rejected_prev_index] {
                if acked > last {
                    return Err(Rejected::AckBeyondLog { acked, last });
                }
            }
        }
        Ok(())
    }
}

fn in_range(field: &'static str, value: u64) -> Result<(), Rejected> {
    if value > MAX_WIRE_VALUE {
        return Err(Rejected::OutOfRange { field, value });
    }
    Ok(())
}

/// Entries follow `prev_log_index` one by one, with terms that never go
/// down, never exceed the leader's term, and never fall below `prev_log_term`.
fn validate_append(m: &AppendEntries) -> Result<(), Rejected> {
    let bad = |why: String| Err(Rejected::MalformedAppend(why));
    in_range("prev_log_index", m.prev_log_index)?;
    in_range("prev_log_term", m.prev_log_term)?;
    in_range("leader_commit", m.leader_commit)?;
    if m.prev_log_term > m.term {
        return bad(format!("prev_log_term {} above term {}", m.prev_log_term, m.term));
    }
    if m.prev_log_index == 0 && m.prev_log_term != 0 {
        return bad("prev_log_term must be 0 at index 0".into());
    }
    let mut prev_term = m.prev_log_term;
    for (i, e) in m.entries.iter().enumerate() {
        let expected = m.prev_log_index + 1 + i as u64;
        if e.index != expected {
            return bad(format!("entry {} where {expected} was due", e.index));
        }
        if e.term == 0 || e.term < prev_term || e.term > m.term {
            return bad(format!(
                "entry {} has term {} (previous {prev_term}, leader's {})",
                e.index, e.term, m.term
            ));
        }
        prev_term = e.term;
        if e.r#type == crate::wire::EntryType::EntryConfig as i32
            && super::Membership::decode(&e.payload).is_none_or(|m| m.voters.is_empty())
        {
            return bad(format!("entry {} is a configuration without voters", e.index));
        }
    }
    Ok(())
}

fn validate_install(m: &crate::wire::InstallSnapshot) -> Result<(), Rejected> {
    let Some(meta) = &m.meta else {
        return Err(Rejected::MalformedSnapshot("no meta".into()));
    };
    in_range("snapshot last_index", meta.last_index)?;
    in_range("snapshot last_term", meta.last_term)?;
    if meta.last_index == 0 || meta.last_term == 0 || meta.last_term > m.term {
        return Err(Rejected::MalformedSnapshot(format!(
            "snapshot at index {} term {} from a leader of term {}",
            meta.last_index, meta.last_term, m.term
        )));
    }
    if meta.config_index > meta.last_index || meta.config.as_ref().is_none_or(|c| c.voters.is_empty()) {
        return Err(Rejected::MalformedSnapshot(
            "no configuration at or before its index".into(),
        ));
    }
    Ok(())
}
