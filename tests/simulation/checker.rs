//! The invariant checker of the simulation: fed observations, it keeps the
//! whole history of a run and reports the first violated invariant.

use bytes::Bytes;
use floyd::core::{HardState, NodeId};
use floyd::wire::Entry;
use std::collections::{BTreeMap, HashMap};

// ---------------------------------------------------------------------------
// The invariant checker: fed observations, it keeps the whole history.
// ---------------------------------------------------------------------------

/// Checks the safety invariants over the whole history of a run. It only sees
/// what it is told, so it can also be fed a fabricated history.
#[derive(Default)]
pub(crate) struct Checker {
    /// Term → the only node ever seen leading it (election safety).
    pub(crate) leaders: BTreeMap<u64, NodeId>,
    /// (voter, term) → the candidate it granted its vote to.
    votes: BTreeMap<(NodeId, u64), NodeId>,
    /// (index, term) → (term at index - 1, payload) of every entry ever in any log (log matching).
    entries: HashMap<(u64, u64), (u64, Bytes)>,
    /// (term, payload) of every committed index, from index 1.
    pub(crate) committed: Vec<(u64, Bytes)>,
    /// Term in which an index was first seen committed → the highest such index.
    /// (The observer's current term: the term the commitment happened in, or later.)
    committed_in: BTreeMap<u64, u64>,
    /// Last (term, vote) written to each node's disk.
    durable: BTreeMap<NodeId, HardState>,
}

pub(crate) type Verdict = Result<(), String>;

impl Checker {
    /// Invariant 1: at most one leader per term.
    pub(crate) fn leader(&mut self, term: u64, node: &str) -> Verdict {
        match self.leaders.get(&term) {
            Some(l) if l != node => Err(format!("election safety: {l} and {node} both lead term {term}")),
            Some(_) => Ok(()),
            None => {
                self.leaders.insert(term, node.to_string());
                Ok(())
            }
        }
    }

    /// One vote per term and voter, restarts included.
    pub(crate) fn vote_granted(&mut self, voter: &str, term: u64, candidate: &str) -> Verdict {
        let prev = self
            .votes
            .entry((voter.to_string(), term))
            .or_insert_with(|| candidate.to_string());
        if prev != candidate {
            return Err(format!(
                "{voter} granted its term-{term} vote to both {prev} and {candidate}"
            ));
        }
        Ok(())
    }

    /// Invariant 9: AppendEntries of term T come only from T's leader.
    pub(crate) fn append_sent(&self, from: &str, term: u64) -> Verdict {
        match self.leaders.get(&term) {
            Some(l) if l == from => Ok(()),
            other => Err(format!(
                "{from} sent AppendEntries of term {term}, whose leader is {other:?}"
            )),
        }
    }

    /// Invariant 2 (inductively): an entry is fixed by its (index, term), and so is its predecessor's term.
    pub(crate) fn entry_written(&mut self, node: &str, e: &Entry, prev_term: u64) -> Verdict {
        let seen = self
            .entries
            .entry((e.index, e.term))
            .or_insert_with(|| (prev_term, e.payload.clone()));
        if *seen != (prev_term, e.payload.clone()) {
            return Err(format!(
                "log matching: {node} holds ({}, {}) after term {prev_term} with payload {:?}; \
                 elsewhere it follows term {} with payload {:?}",
                e.index, e.term, e.payload, seen.0, seen.1
            ));
        }
        Ok(())
    }

    /// Invariant 5: a node's committed prefix is the one committed everywhere, forever.
    pub(crate) fn commit(
        &mut self,
        node: &str,
        term: u64,
        commit: u64,
        entry_at: impl Fn(u64) -> Option<Entry>,
    ) -> Verdict {
        for i in self.committed.len() as u64 + 1..=commit {
            let e = entry_at(i).ok_or_else(|| format!("{node} commits {commit} but lacks entry {i}"))?;
            self.committed.push((e.term, e.payload.clone()));
            let highest = self.committed_in.entry(term).or_default();
            *highest = (*highest).max(i);
        }
        if commit > 0 {
            let e = entry_at(commit).ok_or_else(|| format!("{node} commits {commit} past its log"))?;
            let want = &self.committed[commit as usize - 1];
            if (e.term, &e.payload) != (want.0, &want.1) {
                return Err(format!(
                    "committed entry changed: {node} has ({commit}, {}) {:?}, committed was ({commit}, {}) {:?}",
                    e.term, e.payload, want.0, want.1
                ));
            }
        }
        Ok(())
    }

    /// Invariant 3: a leader of `term` holds every entry committed in earlier terms
    /// (committed *in* them: an old entry committed by a later leader need not be there).
    pub(crate) fn leader_complete(
        &self,
        node: &str,
        term: u64,
        term_at: impl Fn(u64) -> Option<u64>,
    ) -> Verdict {
        // By log matching, holding the highest such entry means holding all of them.
        let Some(index) = self.committed_in.range(..term).map(|(_, &i)| i).max() else {
            return Ok(());
        };
        let want = self.committed[index as usize - 1].0;
        let have = term_at(index);
        if have != Some(want) {
            return Err(format!(
                "leader completeness: {node} leads term {term} with {have:?} at {index}, where term {want} was committed"
            ));
        }
        Ok(())
    }

    /// Invariant 8: the durable term never decreases; a durable vote never changes within its term.
    pub(crate) fn hard_state_written(&mut self, node: &str, hs: &HardState) -> Verdict {
        if let Some(prev) = self.durable.get(node) {
            if hs.term < prev.term {
                return Err(format!(
                    "{node}'s durable term went back from {} to {}",
                    prev.term, hs.term
                ));
            }
            if hs.term == prev.term && prev.vote.is_some() && hs.vote != prev.vote {
                return Err(format!(
                    "{node}'s durable vote in term {} changed from {:?} to {:?}",
                    hs.term, prev.vote, hs.vote
                ));
            }
        }
        self.durable.insert(node.to_string(), hs.clone());
        Ok(())
    }

    /// Invariants 4 and 10: entries are applied once, in index order, and are the committed ones.
    pub(crate) fn applying(&self, node: &str, applied: u64, e: &Entry) -> Verdict {
        if e.index != applied + 1 {
            return Err(format!(
                "{node} applies entry {} after {applied}: applied twice or out of order",
                e.index
            ));
        }
        match self.committed.get(e.index as usize - 1) {
            Some((t, p)) if *t == e.term && *p == e.payload => Ok(()),
            other => Err(format!(
                "state machine safety: {node} applies ({}, {}) {:?}; committed there: {other:?}",
                e.index, e.term, e.payload
            )),
        }
    }

    /// Invariant 6: the last committed entry (hence, by log matching, all) is on a quorum of disks.
    pub(crate) fn on_quorum_of_disks<'a>(
        &self,
        disks: impl Iterator<Item = &'a [Entry]>,
        quorum: usize,
    ) -> Verdict {
        let Some((term, _)) = self.committed.last() else {
            return Ok(());
        };
        let index = self.committed.len();
        let holders = disks
            .filter(|d| d.get(index - 1).is_some_and(|e| e.term == *term))
            .count();
        if holders < quorum {
            return Err(format!(
                "committed entry ({index}, {term}) is durable on {holders} disks, fewer than a quorum of {quorum}"
            ));
        }
        Ok(())
    }
}
