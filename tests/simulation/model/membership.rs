//! Membership changes in the schedule, and the invariants they bring.
//!
//! Some seeds start spare nodes beside the initial voters. Spares run from
//! the start in join mode (no bootstrap configuration) or, now and then,
//! misconfigured with a member list naming the cluster and themselves;
//! either way they tick, crash and restart like everyone, and must not
//! disrupt the cluster until added. A client now and then asks the leader to
//! add a node outside its configuration (a spare, or a removed node with
//! whatever its disk still holds) or to remove a voter or learner; the leader
//! makes the learner a voter by itself once it has caught up. Removed nodes
//! keep running too, most of them never told of their removal.

use super::*;
use floyd::core::{ConfChange, ConfChangeAccepted, ConfChangeError, Membership};
use floyd::wire::EntryType;
use std::collections::BTreeSet;

/// The configurations in `core`'s log above `from` (index, members).
fn configs_above(core: &RaftCore, from: u64) -> Vec<(u64, Membership)> {
    let config = EntryType::EntryConfig as i32;
    let log = core.log();
    // (By reference: this runs for every node after every step.)
    (from.max(log.start_index()) + 1..=log.last_index())
        .filter_map(|k| log.entry(k))
        .filter(|e| e.r#type == config)
        .map(|e| {
            (
                e.index,
                Membership::decode(&e.payload).expect("a valid configuration"),
            )
        })
        .collect()
}

impl Sim {
    /// The voters of the latest configuration committed on any live node (the
    /// initial voters before any is).
    pub(super) fn committed_voters(&self) -> BTreeSet<NodeId> {
        let mut best = (
            0,
            self.nodes[..self.initial].iter().map(|n| n.id.clone()).collect(),
        );
        for n in &self.nodes {
            if let Some(core) = &n.core {
                let (index, m) = core.committed_membership();
                if index > best.0 {
                    best = (index, m.voters.clone());
                }
            }
        }
        best.1
    }

    /// A client asks the leader for a single-server change.
    pub(super) fn conf_change(&mut self) {
        let leaders: Vec<usize> = self
            .live()
            .into_iter()
            .filter(|&i| self.nodes[i].core.as_ref().unwrap().role() == Role::Leader)
            .collect();
        if leaders.is_empty() {
            return;
        }
        let l = leaders[self.rng.random_range(0..leaders.len())];
        let m = self.nodes[l].core.as_ref().unwrap().membership().clone();
        let outside: Vec<NodeId> = self
            .nodes
            .iter()
            .map(|n| n.id.clone())
            .filter(|id| !m.contains(id))
            .collect();
        let members: Vec<NodeId> = m.members().cloned().collect();
        let p_add = match m.voters.len() {
            0..=2 => 0.8,
            3..=4 => 0.5,
            _ => 0.3,
        };
        let change = if !outside.is_empty() && self.rng.random_bool(p_add) {
            ConfChange::AddServer(outside[self.rng.random_range(0..outside.len())].clone())
        } else {
            ConfChange::RemoveServer(members[self.rng.random_range(0..members.len())].clone())
        };
        let leader = self.nodes[l].id.clone();
        let r = self.nodes[l]
            .core
            .as_mut()
            .unwrap()
            .propose_conf_change(change.clone());
        trace!(self, "{leader} asked for {change:?}: {r:?}");
        match r {
            Ok(ConfChangeAccepted::Appended(..)) => self.stats.conf_appended += 1,
            Ok(ConfChangeAccepted::Deferred) => self.stats.conf_deferred += 1,
            Ok(ConfChangeAccepted::Unchanged) => {}
            Err(ConfChangeError::InProgress(_)) => self.stats.conf_refused += 1,
            Err(ConfChangeError::LastVoter(who)) if m.voters.len() == 1 && m.is_voter(&who) => {
                self.stats.conf_refused += 1
            }
            Err(e) => self.note(Err(format!("{leader} refused {change:?}: {e}"))),
        }
    }

    /// The membership invariants, after every step.
    pub(super) fn check_membership(&mut self, verdicts: &mut Vec<Verdict>) {
        let disks: Vec<(&str, &Disk)> = self.nodes.iter().map(|n| (n.id.as_str(), &n.disk)).collect();
        let mut best_quorum = self.commit_quorum.clone();
        for (i, n) in self.nodes.iter().enumerate() {
            let Some(core) = &n.core else { continue };
            let commit = core.commit();
            let above = configs_above(core, commit);
            verdicts.push(
                self.checker
                    .one_config_above_commit(&n.id, above.iter().map(|c| c.0)),
            );
            if core.role() != Role::Leader {
                continue;
            }
            // §4.2.2: a leader outside its configuration steps down once it is committed.
            if !core.is_voter() && core.config_index() <= commit {
                verdicts.push(Err(format!(
                    "{} still leads term {} with its removal committed",
                    n.id,
                    core.term()
                )));
            }
            // Only commits this leader made: one it learned from an earlier
            // leader was counted in that leader's configuration, which this
            // log may lack (the first commit seen is taken as learned).
            let base = *self.leader_base.entry((i, core.term())).or_insert(commit);
            let Some(term) = core.log().term(commit).filter(|_| commit > base) else {
                continue;
            };
            let mut configs = vec![&core.committed_membership().1.voters];
            configs.extend(above.iter().map(|c| &c.1.voters));
            match self
                .checker
                .on_quorum_of_disks(commit, term, disks.iter().copied(), &configs)
            {
                Ok(voters) => {
                    if best_quorum.as_ref().is_none_or(|q| q.0 < commit) {
                        best_quorum = Some((commit, term, voters));
                    }
                }
                Err(e) => verdicts.push(Err(format!("{} (leader {}): {e}", n.id, core.term()))),
            }
        }
        // The quorum the highest leader commit was stored on stays.
        if let Some((index, term, voters)) = &best_quorum {
            verdicts.push(
                self.checker
                    .on_quorum_of_disks(*index, *term, disks.iter().copied(), &[voters])
                    .map(|_| ()),
            );
        }
        self.commit_quorum = best_quorum;
    }

    /// Votes (real or pre-votes) go only to voters of the granter's
    /// configuration, or to candidates whose log is ahead of its own: removed
    /// and not-yet-added servers get none (§4.2.3). A Ready is taken after
    /// every delivered message, and only a request for votes makes a grant.
    pub(super) fn check_grants(&self, i: usize, envs: &[&Envelope]) -> Vec<Verdict> {
        let core = self.nodes[i].core.as_ref().unwrap();
        envs.iter()
            .filter(|env| matches!(&env.msg, Message::RequestVoteResponse(r) if r.granted))
            .filter(|env| self.vote_request != Some((i, env.to.clone(), true)))
            .map(|env| {
                Err(format!(
                    "{} granted a vote to {}, not a voter of its configuration {:?} nor ahead of its log",
                    self.nodes[i].id,
                    env.to,
                    core.membership()
                ))
            })
            .collect()
    }

    /// Counts the changes the final, converged leader's log went through
    /// (all applied: its state machine holds them, compacted or not).
    pub(super) fn count_changes(&mut self, leader: usize) {
        let core = self.nodes[leader].core.as_ref().unwrap();
        let config = EntryType::EntryConfig as i32;
        let configs = self.nodes[leader]
            .sm
            .iter()
            .filter(|e| e.r#type == config)
            .map(|e| Membership::decode(&e.payload).expect("a valid configuration"));
        let mut prev: Option<Membership> = None;
        for m in configs {
            if let Some(p) = &prev {
                self.stats.promotions += m.voters.iter().filter(|v| p.learners.contains(*v)).count();
                self.stats.removals += p.members().filter(|v| !m.contains(v)).count();
            }
            prev = Some(m);
        }
        let m = core.membership();
        self.stats.outsiders = self.nodes.iter().filter(|n| !m.contains(&n.id)).count();
    }
}
