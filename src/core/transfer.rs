//! Leadership transfer (dissertation §3.10).
//!
//! The leader stops taking new entries, brings the target's log up to its
//! own last index, then sends it `TimeoutNow` (once). The target starts an
//! election at once, skipping pre-vote, and marks its `RequestVote` with
//! `leader_transfer`, so voters that heard from the leader moments ago vote
//! anyway (they would otherwise ignore it to protect a live leader, §9.6).
//! A transfer that has not made the target leader within one election
//! timeout is abandoned and the leader takes entries again; so is one whose
//! leader loses leadership or whose target stops being a voter.
//!
//! While a transfer runs the leader refuses proposals
//! ([`ProposeError::Transferring`](super::ProposeError)) and configuration
//! changes, and (for lease reads) must not trust its lease: the target may
//! be elected without it.

use super::{Message, NodeId, RaftCore, Role};
use crate::wire::TimeoutNow;

/// Why a transfer was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    #[error("this node is not the leader")]
    NotLeader { leader: Option<NodeId> },
    #[error("{0} is not a voter of the configuration in force")]
    NotVoter(NodeId),
    /// Retry once that transfer has finished or been abandoned.
    #[error("a leadership transfer to {0} is in progress")]
    InProgress(NodeId),
    /// Retry once the change has committed: the target may not be a voter of
    /// the configuration that results, and the new leader would have to
    /// finish a change it did not start.
    #[error("a membership change is in progress: {0}")]
    ConfChangeInProgress(String),
}

/// Leader: the transfer under way.
#[derive(Debug, Clone)]
pub(super) struct Transfer {
    target: NodeId,
    /// Leader ticks since it began; abandoned at `election_ticks`.
    elapsed: u32,
    /// `TimeoutNow` goes out once: a second one could start a second
    /// election at the target, in a term the first may already have won.
    timeout_now_sent: bool,
}

impl RaftCore {
    /// Leader: hands leadership to voter `target` (§3.10). `Ok` means the
    /// transfer started (or already runs to `target`); whether it succeeded
    /// shows later, as `target` becoming leader. Asking a leader to transfer
    /// to itself is an `Ok` no-op (it already leads).
    pub fn transfer_leader(&mut self, target: &str) -> Result<(), TransferError> {
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader {
                leader: self.leader.clone(),
            });
        }
        self.wake(false);
        if let Some(t) = &self.transfer {
            return match t.target == target {
                true => Ok(()),
                false => Err(TransferError::InProgress(t.target.clone())),
            };
        }
        if target == self.cfg.id {
            return Ok(());
        }
        if !self.membership().is_voter(target) {
            return Err(TransferError::NotVoter(target.to_string()));
        }
        // A configuration that commits with this leader's first entry (the
        // bootstrap one, or one inherited) is no change in progress: the
        // target holds it once caught up and commits it as leader.
        if self.deferred_change.is_some() || self.user_conf_change_uncommitted() {
            let change = self.pending_conf_change().unwrap_or_default();
            return Err(TransferError::ConfChangeInProgress(change));
        }
        self.transfer = Some(Transfer {
            target: target.to_string(),
            elapsed: 0,
            timeout_now_sent: false,
        });
        if !self.send_timeout_now_if_caught_up() {
            // Do not wait for the next heartbeat to send what it lacks.
            self.send_append(target);
        }
        Ok(())
    }

    /// Leader: the target of the transfer under way, if any.
    pub fn transferring_to(&self) -> Option<&str> {
        self.transfer.as_ref().map(|t| t.target.as_str())
    }

    /// Whether this leader is handing over: it must not serve lease reads,
    /// since the target may be elected without waiting for the lease to end.
    pub(super) fn transfer_in_progress(&self) -> bool {
        self.transfer.is_some()
    }

    /// Leader: after an acknowledgement, sends `TimeoutNow` if the target
    /// now holds the whole log; returns whether it was sent (now or before).
    pub(super) fn send_timeout_now_if_caught_up(&mut self) -> bool {
        let Some(t) = &self.transfer else {
            return false;
        };
        if t.timeout_now_sent {
            return true;
        }
        let last = self.log.last_index();
        let caught_up = self
            .progress
            .get(&t.target)
            .is_some_and(|p| p.match_index >= last);
        if !caught_up {
            return false;
        }
        let target = t.target.clone();
        let msg = Message::TimeoutNow(TimeoutNow {
            term: self.term,
            from: self.cfg.id.clone(),
        });
        self.send(&target, msg);
        // Voters may now elect the target despite having heard from us.
        self.void_lease_for_this_term();
        if let Some(t) = &mut self.transfer {
            t.timeout_now_sent = true;
        }
        true
    }

    /// A leader tick: abandons the transfer after an election timeout, or
    /// once its target is no voter any more.
    pub(super) fn tick_transfer(&mut self) {
        let election_ticks = self.cfg.election_ticks;
        let Some(t) = &mut self.transfer else {
            return;
        };
        t.elapsed = t.elapsed.saturating_add(1);
        let expired = t.elapsed >= election_ticks;
        let target_gone = !self
            .membership()
            .is_voter(self.transferring_to().unwrap_or_default());
        if expired || target_gone {
            self.transfer = None;
        }
    }

    /// Leadership ended (or changed hands): no transfer survives it.
    pub(super) fn end_transfer(&mut self) {
        self.transfer = None;
    }

    /// Target: its leader says "campaign now". Only the leader it follows,
    /// in the current term, is heard: anything else (a deposed leader's late
    /// message) would disrupt a healthy cluster.
    pub(super) fn handle_timeout_now(&mut self, from: &str, m: TimeoutNow) {
        let from_my_leader = self.leader.as_deref() == Some(from) && m.term == self.term;
        if self.role != Role::Follower || !from_my_leader || !self.is_voter() {
            return;
        }
        self.campaign_for_transfer();
    }
}
