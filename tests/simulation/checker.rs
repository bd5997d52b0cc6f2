//! The invariant checker of the simulation: fed observations, it keeps the
//! whole history of a run and reports the first violated invariant.

use bytes::Bytes;
use floyd::core::{HardState, NodeId};
use floyd::wire::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};

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

/// What a node's disk durably holds, for invariant 6.
pub(crate) trait DurableLog {
    /// Whether the entry (`index`, `term`) is durable here (in the log, or
    /// in a stored snapshot).
    fn holds(&self, index: u64, term: u64) -> bool;
}

/// A whole log, from index 1.
impl DurableLog for [Entry] {
    fn holds(&self, index: u64, term: u64) -> bool {
        self.get((index as usize).wrapping_sub(1))
            .is_some_and(|e| e.term == term)
    }
}

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

    /// Invariant 6, with membership changes: a leader's commit index `index`
    /// (an entry of `term`; by log matching, with everything before it) is
    /// durable on a majority of the voters of one of `configs`, when that
    /// leader advanced its commit index to it.
    ///
    /// Why this formulation: a leader counts acknowledgements in the
    /// configuration in force in its log, the latest one, committed or not
    /// (§4.1). That is the configuration in force at its commit index or a
    /// later one in its log (at most one is ever uncommitted), so `configs`
    /// are exactly those; a majority of the configuration at the entry's own
    /// index would be too strict (adding a fifth voter to four lets 3 of 5
    /// commit what only 2 of the old 4 hold, and safely so: each majority of
    /// one overlaps each majority of the other). Disks never lose a
    /// committed entry, so checking when a leader shows the commit, and
    /// re-checking that quorum afterwards, covers every committed entry.
    pub(crate) fn on_quorum_of_disks<'a, D: DurableLog + ?Sized + 'a>(
        &self,
        index: u64,
        term: u64,
        disks: impl Iterator<Item = (&'a str, &'a D)>,
        configs: &[&BTreeSet<NodeId>],
    ) -> Result<BTreeSet<NodeId>, String> {
        if index == 0 {
            return Ok(BTreeSet::new());
        }
        let holders: BTreeSet<&str> = disks
            .filter(|(_, d)| d.holds(index, term))
            .map(|(n, _)| n)
            .collect();
        for voters in configs {
            let held = voters.iter().filter(|v| holders.contains(v.as_str())).count();
            if held > voters.len() / 2 {
                return Ok((*voters).clone());
            }
        }
        Err(format!(
            "committed entry ({index}, {term}) is durable on {holders:?}, no majority of any of {configs:?}"
        ))
    }

    /// The floor of a read beginning now: the highest index known committed
    /// anywhere, what a live node shows now (`commits`) or what any node
    /// showed before (the history). Every write acknowledged before is at or
    /// below it, and a ReadIndex covers it all: the confirming leader holds
    /// every entry committed in an earlier term and has committed one of its
    /// own term after them; one committed in its term it committed itself.
    pub(crate) fn read_floor(&self, commits: impl Iterator<Item = u64>) -> u64 {
        commits.fold(self.committed.len() as u64, u64::max)
    }

    /// A read confirmed at `index` (a `ReadState`): the state there or later
    /// must reflect every write before the read, whatever the node applied by then.
    pub(crate) fn read_confirmed(&self, node: &str, ctx: u64, floor: u64, index: u64) -> Verdict {
        if index < floor {
            return Err(format!(
                "stale read index: {node} confirmed read ctx {ctx} at {index}, but {floor} was committed before it began"
            ));
        }
        Ok(())
    }

    /// Linearizable reads: a read served with the state as of `value` (the
    /// last write applied) saw every write that completed before it began.
    pub(crate) fn read_served(&self, node: &str, ctx: u64, floor: u64, value: u64) -> Verdict {
        if value < floor {
            return Err(format!(
                "stale read: {node} served read ctx {ctx} at {value}, but {floor} was committed before it began"
            ));
        }
        Ok(())
    }

    /// One change at a time: a log holds at most one configuration entry
    /// above the highest index committed anywhere.
    pub(crate) fn one_config_above_commit(
        &self,
        node: &str,
        config_indexes: impl Iterator<Item = u64>,
    ) -> Verdict {
        let committed = self.committed.len() as u64;
        let above: Vec<u64> = config_indexes.filter(|&i| i > committed).collect();
        if above.len() > 1 {
            return Err(format!(
                "{node} holds configurations at {above:?}, all above the commit index {committed}"
            ));
        }
        Ok(())
    }
}
