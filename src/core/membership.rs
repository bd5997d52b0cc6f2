//! Cluster configuration (dissertation §4.1–4.2.3): who votes, who is being
//! caught up, single-server changes and the promotion of learners.
//!
//! A configuration takes effect on every node as soon as its entry is in the
//! log, committed or not (§4.1); a truncated configuration entry gives way to
//! the one before it. One change is in flight at a time, and a leader makes
//! none before it has committed an entry of its own term (the 2015
//! single-server-change bug). A new server first joins as a learner that the
//! leader replicates to without counting it; the leader promotes it once a
//! catch-up round (§4.2.1) finished within an election timeout and left it
//! close to the leader's log.

use super::replication::Carry;
use super::{NodeId, Progress, RaftCore, Role};
use crate::wire::{Configuration, EntryType};
use bytes::Bytes;
use prost::Message as _;
use std::collections::BTreeSet;

/// The members of a configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    pub voters: BTreeSet<NodeId>,
    /// Replicated to, never counted; promoted once caught up.
    pub learners: BTreeSet<NodeId>,
    /// The cluster identity; empty before the first leader created it.
    pub uid: String,
}

impl Membership {
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Self {
        Membership {
            voters: voters.into_iter().collect(),
            ..Default::default()
        }
    }

    pub fn is_voter(&self, id: &str) -> bool {
        self.voters.contains(id)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.voters.contains(id) || self.learners.contains(id)
    }

    /// Voters and learners, sorted.
    pub fn members(&self) -> impl Iterator<Item = &NodeId> {
        let all: BTreeSet<&NodeId> = self.voters.iter().chain(&self.learners).collect();
        all.into_iter()
    }

    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    pub fn to_wire(&self) -> Configuration {
        Configuration {
            cluster_uid: self.uid.clone(),
            voters: self.voters.iter().cloned().collect(),
            learners: self.learners.iter().cloned().collect(),
        }
    }

    pub fn from_wire(c: Configuration) -> Self {
        Membership {
            voters: c.voters.into_iter().collect(),
            learners: c.learners.into_iter().collect(),
            uid: c.cluster_uid,
        }
    }

    /// The configuration carried by a config entry's payload (`None` if it does not decode).
    pub fn decode(payload: &[u8]) -> Option<Self> {
        Configuration::decode(payload).ok().map(Membership::from_wire)
    }
}

/// Every configuration in the log, oldest first, above the bootstrap one
/// (index 0: the member list a fresh node starts with).
#[derive(Debug, Clone)]
pub struct ConfigHistory {
    configs: Vec<(u64, Membership)>,
}

impl ConfigHistory {
    pub fn new(bootstrap: Membership) -> Self {
        ConfigHistory {
            configs: vec![(0, bootstrap)],
        }
    }

    /// The configuration in force: the latest in the log.
    pub fn latest(&self) -> (u64, &Membership) {
        let (i, m) = self.configs.last().expect("the bootstrap configuration stays");
        (*i, m)
    }

    /// The latest configuration at or below `index`.
    pub fn at(&self, index: u64) -> (u64, &Membership) {
        let (i, m) = self
            .configs
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .unwrap_or(&self.configs[0]);
        (*i, m)
    }

    /// Whether the log holds any configuration entry (a cluster that has had a leader).
    pub fn has_log_config(&self) -> bool {
        self.configs.len() > 1 || self.configs[0].0 > 0
    }

    pub fn push(&mut self, index: u64, m: Membership) {
        debug_assert!(index > self.latest().0);
        self.configs.push((index, m));
    }

    /// Forgets configurations at or after `index` (their entries were
    /// truncated); returns whether the one in force changed.
    pub fn truncate_from(&mut self, index: u64) -> bool {
        let before = self.configs.len();
        while self.configs.len() > 1 && self.configs.last().is_some_and(|(i, _)| *i >= index) {
            self.configs.pop();
        }
        self.configs.len() != before
    }
}

/// A single-server change requested of the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfChange {
    AddServer(NodeId),
    RemoveServer(NodeId),
}

/// What became of a requested change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfChangeAccepted {
    /// Appended at this (index, term).
    Appended(u64, u64),
    /// Will be appended once this leader has committed an entry of its term.
    Deferred,
    /// Nothing to do: the server already is a voter (add) or a learner being
    /// caught up (add: it will be promoted).
    Unchanged,
}

/// Why a change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfChangeError {
    #[error("this node is not the leader")]
    NotLeader { leader: Option<NodeId> },
    /// Retry once the change in flight has finished.
    #[error("a membership change is in progress: {0}")]
    InProgress(String),
    #[error("{0} is not a member of the cluster")]
    NotMember(NodeId),
    #[error("{0} is the last voter: a cluster cannot remove it")]
    LastVoter(NodeId),
    /// Retry once the leadership transfer to this node is over (§3.10).
    #[error("leadership is being transferred to {0}")]
    Transferring(NodeId),
}

/// A learner being caught up (§4.2.1): rounds end when it has everything the
/// leader had when the round began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatchUp {
    pub learner: NodeId,
    pub round: u32,
    pub round_target: u64,
    pub round_ticks: u32,
}

impl RaftCore {
    /// The configuration in force on this node.
    pub fn membership(&self) -> &Membership {
        self.configs.latest().1
    }

    /// Index of the entry of the configuration in force (0: bootstrap).
    pub fn config_index(&self) -> u64 {
        self.configs.latest().0
    }

    /// The latest committed configuration.
    pub fn committed_membership(&self) -> (u64, &Membership) {
        self.configs.at(self.commit)
    }

    /// The cluster identity, once the first leader created it.
    pub fn cluster_uid(&self) -> Option<&str> {
        Some(self.membership().uid.as_str()).filter(|u| !u.is_empty())
    }

    /// The learner being caught up by this leader, if any.
    pub fn catch_up(&self) -> Option<&CatchUp> {
        self.catch_up.as_ref()
    }

    /// A change waiting for this leader's first commit, or appended and not committed yet.
    pub fn pending_conf_change(&self) -> Option<String> {
        if let Some(c) = &self.deferred_change {
            return Some(format!("{c:?} (waiting for the leader's first commit)"));
        }
        let (index, _) = self.configs.latest();
        (index > self.commit).then(|| format!("configuration at index {index} not committed yet"))
    }

    /// Leader: whether a change this leader appended (after its first
    /// commit) is still uncommitted. Configurations at or below its first
    /// entry commit with that entry and block nothing for long.
    pub(super) fn user_conf_change_uncommitted(&self) -> bool {
        let (index, _) = self.configs.latest();
        index > self.commit && self.commit >= self.term_start_index
    }

    pub fn is_voter(&self) -> bool {
        self.membership().is_voter(&self.cfg.id)
    }

    /// Whether this node starts elections: as a voter of the configuration
    /// in force, or as a voter of the one before while the one that removes
    /// it is not committed (§4.2.2: it may still be needed to commit it, as
    /// the only holder of the longest log; it then does not count its own
    /// vote, and steps down once it has committed that configuration).
    pub(super) fn may_campaign(&self) -> bool {
        let (index, _) = self.configs.latest();
        self.is_voter() || (index > self.commit && self.configs.at(index - 1).1.is_voter(&self.cfg.id))
    }

    /// Requests a single-server change (leader only).
    pub fn propose_conf_change(&mut self, change: ConfChange) -> Result<ConfChangeAccepted, ConfChangeError> {
        if self.role != Role::Leader {
            return Err(ConfChangeError::NotLeader {
                leader: self.leader.clone(),
            });
        }
        self.wake(false);
        if let Some(c) = &self.deferred_change {
            return Err(ConfChangeError::InProgress(format!("{c:?} waits to be appended")));
        }
        if let Some(target) = self.transferring_to() {
            // §3.10: the target must stay a voter, and the log must stay put.
            return Err(ConfChangeError::Transferring(target.to_string()));
        }
        let (index, m) = self.configs.latest();
        if self.user_conf_change_uncommitted() {
            return Err(ConfChangeError::InProgress(format!(
                "the configuration at index {index} is not committed yet"
            )));
        }
        let next = match next_membership(m, &change)? {
            None => return Ok(ConfChangeAccepted::Unchanged),
            Some(next) => next,
        };
        // A configuration at or below the leader's first entry (the
        // bootstrap one, or one inherited from an earlier term) commits with
        // that entry: the change waits for it rather than being refused.
        if self.commit < self.term_start_index {
            self.deferred_change = Some(change);
            return Ok(ConfChangeAccepted::Deferred);
        }
        let (index, term) = self.append_config(next);
        self.broadcast_append(Carry::Nothing);
        Ok(ConfChangeAccepted::Appended(index, term))
    }

    /// Appends a configuration entry and puts it in force at once (§4.1).
    pub(super) fn append_config(&mut self, m: Membership) -> (u64, u64) {
        let payload = Bytes::from(m.to_wire().encode_to_vec());
        self.append_local(EntryType::EntryConfig as i32, payload)
    }

    /// Puts in force a configuration just appended at `index` (by the leader
    /// itself or from the leader).
    pub(super) fn config_appended(&mut self, index: u64, payload: &[u8]) {
        let Some(mut m) = Membership::decode(payload) else {
            // Validation refuses undecodable config entries; never reached.
            return;
        };
        if m.uid.is_empty() {
            m.uid = self.membership().uid.clone();
        }
        self.configs.push(index, m);
        self.config_changed();
    }

    /// Follows a change of the configuration in force: progress for new
    /// members, and a fresh catch-up. Removed members keep theirs until the
    /// change commits, so they receive the entry that removes them (and stop
    /// campaigning) and learn that it committed.
    pub(super) fn config_changed(&mut self) {
        let (index, m) = self.configs.latest();
        self.ready.config = Some((index, m.clone()));
        if self.role != Role::Leader {
            return;
        }
        let members: BTreeSet<NodeId> = m.members().filter(|p| **p != self.cfg.id).cloned().collect();
        let next = self.log.last_index() + 1;
        for p in members {
            self.progress.entry(p).or_insert_with(|| Progress::new(next));
        }
        if self
            .catch_up
            .as_ref()
            .is_some_and(|c| !self.membership().learners.contains(&c.learner))
        {
            self.catch_up = None;
        }
    }

    /// After commit moved (leader): append a deferred change, step down if
    /// this leader was removed, and promote a learner that caught up.
    pub(super) fn after_leader_commit(&mut self) {
        if self.commit >= self.term_start_index {
            if let Some(change) = self.deferred_change.take() {
                if let Ok(Some(next)) = next_membership(self.membership(), &change) {
                    self.append_config(next);
                    self.broadcast_append(Carry::Nothing);
                }
            }
        }
        let (index, m) = self.configs.latest();
        if index <= self.commit {
            // Removed members have had the entry and the commit index: done with them.
            let m = m.clone();
            self.progress.retain(|p, _| m.contains(p));
        }
        if index <= self.commit && !self.is_voter() {
            // §4.2.2: a leader outside the configuration leads until it commits, then steps down.
            self.become_follower(self.term, None);
            return;
        }
        self.advance_catch_up();
    }

    /// Moves the catch-up of the first learner along; promotes it when a
    /// round finished within an election timeout and left it close.
    pub(super) fn advance_catch_up(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let (index, m) = self.configs.latest();
        let Some(learner) = m.learners.iter().next().cloned() else {
            self.catch_up = None;
            return;
        };
        // A promotion is a configuration change: one at a time, and none
        // before this leader has committed an entry of its term (§4.2).
        if index > self.commit || self.deferred_change.is_some() || self.commit < self.term_start_index {
            return;
        }
        if self.transfer_in_progress() {
            // A promotion is a change too, and would move the transfer's target index.
            return;
        }
        let last = self.log.last_index();
        let matched = self.progress.get(&learner).map_or(0, |p| p.match_index);
        let cu = match &mut self.catch_up {
            Some(cu) if cu.learner == learner => cu,
            slot => slot.insert(CatchUp {
                learner: learner.clone(),
                round: 1,
                round_target: last,
                round_ticks: 0,
            }),
        };
        if matched < cu.round_target {
            return;
        }
        let in_time = cu.round_ticks <= self.cfg.election_ticks;
        let margin = self.cfg.max_entries_per_message as u64;
        if in_time && last.saturating_sub(matched) <= margin {
            let mut next = self.membership().clone();
            next.learners.remove(&learner);
            next.voters.insert(learner);
            self.catch_up = None;
            self.append_config(next);
            self.broadcast_append(Carry::Nothing);
        } else {
            cu.round += 1;
            cu.round_target = last;
            cu.round_ticks = 0;
        }
    }

    /// A leader tick for the catch-up round's clock.
    pub(super) fn tick_catch_up(&mut self) {
        if let Some(cu) = &mut self.catch_up {
            cu.round_ticks = cu.round_ticks.saturating_add(1);
        }
        self.advance_catch_up();
    }
}

/// The configuration `change` leads to from `m`; `None` if nothing changes.
fn next_membership(m: &Membership, change: &ConfChange) -> Result<Option<Membership>, ConfChangeError> {
    let mut next = m.clone();
    match change {
        ConfChange::AddServer(s) => {
            if m.contains(s) {
                return Ok(None);
            }
            if let Some(other) = m.learners.iter().next() {
                return Err(ConfChangeError::InProgress(format!(
                    "{other} is still being caught up; wait, or remove it"
                )));
            }
            next.learners.insert(s.clone());
        }
        ConfChange::RemoveServer(s) => {
            if !m.contains(s) {
                return Err(ConfChangeError::NotMember(s.clone()));
            }
            if m.voters.len() == 1 && m.is_voter(s) {
                return Err(ConfChangeError::LastVoter(s.clone()));
            }
            next.voters.remove(s);
            next.learners.remove(s);
        }
    }
    Ok(Some(next))
}
