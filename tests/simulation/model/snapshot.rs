//! Snapshots and log compaction (§7, Figure 13) in the simulation.
//!
//! A node snapshots its state machine at random moments (at a per-seed
//! rate) at its applied index, stores it in its snapshot store (which keeps
//! the newest) and compacts its log keeping 0..=20 entries behind it, on
//! disk as in the core. A leader's `InstallSnapshot` stands for the
//! runtime's stream: the sender's latest stored snapshot (meta and state
//! machine content) is captured when it is sent, travels (and is lost,
//! duplicated, delayed, cut by partitions) like any message, and on
//! arrival is stored by the receiver before its core is stepped with the
//! meta of what actually arrived. The sender's runtime reports some
//! streams finished and some broken (`report_snapshot`). Once the
//! receiver's log reset (`Ready::snapshot`) is durable, its "apply thread"
//! loads the stored content into the state machine, at once or at a later
//! apply step (a crash in between is a crash point), and reports
//! `on_snapshot_installed`. At restart, a state machine behind the stored
//! snapshot is loaded from it first, as the runtime does.
//!
//! Invariant 7 of `raft-acceptance.md` is checked after every step on every
//! live node: `snapshot_index ≤ applied ≤ commit ≤ last_log_index`, where
//! `snapshot_index` is the core's latest snapshot. While an install is in
//! progress (the core reset its log to a snapshot the state machine has not
//! loaded yet) the state machine is behind the snapshot by design: then the
//! snapshot must be the one being installed, committed, and no apply may
//! happen until it is loaded.

use super::*;
use crate::checker::DurableLog;
use floyd::wire::SnapshotMeta;
use std::rc::Rc;

/// Entries a compaction keeps behind the snapshot point, at most.
const MAX_KEEP: u64 = 20;
/// Probability that the sender's transport drops an offer unreported.
const UNREPORTED_OFFERS: f64 = 0.03;
/// Per step, probability that a node in the middle of an install crashes
/// (before its log reset is durable, or before the state machine loaded it).
const INSTALL_CRASH: f64 = 0.01;

/// A snapshot in a node's store: its meta and the state machine it holds
/// (every applied entry, from index 1).
#[derive(Clone)]
pub(super) struct StoredSnapshot {
    pub(super) meta: SnapshotMeta,
    pub(super) content: Rc<Vec<Entry>>,
}

impl StoredSnapshot {
    pub(super) fn index(&self) -> u64 {
        self.meta.last_index
    }
}

impl Disk {
    /// The entry at `index` in the durable log, if it holds it.
    pub(super) fn entry(&self, index: u64) -> Option<&Entry> {
        let pos = index.checked_sub(self.log_start.0 + 1)?;
        self.entries.get(usize::try_from(pos).ok()?)
    }

    pub(super) fn snapshot_index(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, StoredSnapshot::index)
    }

    /// Deletes every entry from `from` on.
    pub(super) fn truncate_from(&mut self, from: u64) {
        self.entries.retain(|e| e.index < from);
    }

    /// The log now starts after (`index`, `term`): entries up to it go.
    pub(super) fn start_after(&mut self, index: u64, term: u64) {
        self.entries.retain(|e| e.index > index);
        self.log_start = (index, term);
    }

    /// Puts an entry by index, as a store keyed by index would.
    pub(super) fn put(&mut self, e: &Entry) -> Result<(), String> {
        let first = self.log_start.0 + 1;
        if e.index < first {
            return Err(format!(
                "Ready writes entry {} before the log start {}",
                e.index, self.log_start.0
            ));
        }
        let k = (e.index - first) as usize;
        match k.cmp(&self.entries.len()) {
            std::cmp::Ordering::Less => self.entries[k] = e.clone(),
            std::cmp::Ordering::Equal => self.entries.push(e.clone()),
            std::cmp::Ordering::Greater => {
                return Err(format!(
                    "Ready writes entry {} past the end of the disk log",
                    e.index
                ))
            }
        }
        Ok(())
    }
}

impl DurableLog for Disk {
    /// In the log, or in the stored snapshot (committed state, so it
    /// outranks whatever stale entries the log may still hold there).
    fn holds(&self, index: u64, term: u64) -> bool {
        if let Some(s) = &self.snapshot {
            if let Some(e) = s.content.get((index as usize).wrapping_sub(1)) {
                return e.term == term;
            }
        }
        self.entry(index).is_some_and(|e| e.term == term)
    }
}

impl SimNode {
    /// The entry at `index` as this node knows it: in its core's log, or
    /// compacted into (or installed from) its stored snapshot.
    pub(super) fn entry_at(&self, index: u64) -> Option<Entry> {
        if let Some(e) = self.core.as_ref().and_then(|c| c.log().entry(index)) {
            return Some(e.clone());
        }
        let s = self.disk.snapshot.as_ref()?;
        s.content
            .get(usize::try_from(index).ok()?.checked_sub(1)?)
            .cloned()
    }

    pub(super) fn term_at(&self, index: u64) -> Option<u64> {
        let core = self.core.as_ref()?;
        if index >= core.log().start_index() {
            return core.log().term(index);
        }
        self.entry_at(index).map(|e| e.term)
    }

    /// The stored snapshot, loaded into the state machine if it is behind
    /// it (the runtime's `restore_at_start`). Returns whether it loaded.
    pub(super) fn load_if_behind(&mut self) -> bool {
        let Some(s) = &self.disk.snapshot else {
            return false;
        };
        if self.applied >= s.index() {
            return false;
        }
        self.sm = s.content.as_ref().clone();
        self.applied = s.index();
        true
    }
}

impl Sim {
    /// Whether this seed's nodes take snapshots, and how often.
    pub(super) fn snapshot_rate(rng: &mut SmallRng) -> f64 {
        if rng.random_bool(0.2) {
            0.0
        } else {
            rng.random_range(0.02..0.3)
        }
    }

    /// Node `i` snapshots its state machine at its applied index, then
    /// compacts its log keeping a few entries behind that point.
    pub(super) fn take_snapshot(&mut self, i: usize) {
        let keep = self.rng.random_range(0..=MAX_KEEP);
        let node = &mut self.nodes[i];
        let Some(core) = node.core.as_mut() else { return };
        let applied = node.applied;
        // (None before anything is applied, or while an install is pending:
        // the applied index is then behind the log's start.)
        let Some(meta) = core.snapshot_meta(applied).filter(|_| applied > 0) else {
            return;
        };
        let id = node.id.clone();
        let mut verdicts = Vec::new();
        if node.sm.last().map(|e| (e.index, e.term)) != Some((meta.last_index, meta.last_term)) {
            verdicts.push(Err(format!(
                "{id}: snapshot meta ({}, {}) is not the state machine's last entry",
                meta.last_index, meta.last_term
            )));
        }
        if node.disk.snapshot_index() < applied {
            node.disk.snapshot = Some(StoredSnapshot {
                meta: meta.clone(),
                content: Rc::new(node.sm.clone()),
            });
        }
        core.snapshot_taken(meta);
        let compacted = core.compact(applied.saturating_sub(keep));
        if let Some((index, term)) = compacted {
            // Only entries durable in the log (applied ones) are compacted.
            if node.disk.entry(index).map(|e| e.term) != Some(term) {
                verdicts.push(Err(format!(
                    "{id} compacts to ({index}, {term}), which its disk does not hold"
                )));
            }
            node.disk.start_after(index, term);
        }
        self.stats.snapshots_taken += 1;
        trace!(self, "{id} snapshot at {applied}, log compacted to {compacted:?}");
        for v in verdicts {
            self.note(v);
        }
    }

    /// What the sender's runtime streams for an `InstallSnapshot`: its latest
    /// stored snapshot, which may be newer than the one the core named.
    pub(super) fn snapshot_to_send(&mut self, from: usize, msg: &Message) -> Option<StoredSnapshot> {
        let Message::InstallSnapshot(m) = msg else {
            return None;
        };
        self.stats.snapshot_offers += 1;
        if !self.calm && self.rng.random_bool(UNREPORTED_OFFERS) {
            // The transport dropped the offer (too many waiting): never
            // streamed, never reported; the leader's patience runs out.
            self.stats.unreported_offers += 1;
            return None;
        }
        let node = &self.nodes[from];
        let named = m.meta.as_ref().map_or(0, |s| s.last_index);
        match &node.disk.snapshot {
            Some(s) if s.index() >= named => Some(s.clone()),
            other => {
                let have = other.as_ref().map(StoredSnapshot::index);
                self.note(Err(format!(
                    "{} offers snapshot {named}, its store holds {have:?}",
                    node.id
                )));
                None
            }
        }
    }

    /// An `InstallSnapshot` the sender's runtime did not stream.
    pub(super) fn unsent(m: &InFlight) -> bool {
        matches!(m.msg, Message::InstallSnapshot(_)) && m.snapshot.is_none()
    }

    /// The sender's runtime reports how a stream ended (the transport
    /// reports every stream it started: `ok` once the last chunk is
    /// written, which does not prove receipt).
    pub(super) fn report_stream(&mut self, m: &InFlight, ok: bool) {
        let Some(s) = &m.snapshot else { return };
        let sender = &self.nodes[m.from];
        if sender.incarnation != m.incarnation || sender.core.is_none() {
            return;
        }
        let (from, to) = (sender.id.clone(), self.nodes[m.to].id.clone());
        let core = self.nodes[m.from].core.as_mut().unwrap();
        core.report_snapshot(&to, s.index(), ok);
        trace!(
            self,
            "{from}: stream of snapshot {} to {to} {}",
            s.index(),
            if ok { "sent" } else { "broke" }
        );
    }

    /// The receiving runtime's part of an `InstallSnapshot` that arrived
    /// whole: stores it (the store keeps the newest) and gives the message
    /// the meta of what arrived. `None` if the stream is dropped.
    pub(super) fn receive_snapshot(&mut self, m: &mut InFlight) -> Option<()> {
        let Message::InstallSnapshot(offer) = &mut m.msg else {
            return Some(());
        };
        let s = m.snapshot.clone()?;
        // Streamed from the sender's store: a crash ends the stream.
        let sender = &self.nodes[m.from];
        if sender.incarnation != m.incarnation || sender.core.is_none() {
            return None;
        }
        let receiver = &mut self.nodes[m.to];
        // A deposed leader's stream is dropped, as the runtime does.
        if offer.term < receiver.core.as_ref()?.term() {
            return None;
        }
        if s.index() > receiver.disk.snapshot_index() {
            receiver.disk.snapshot = Some(s.clone());
        }
        offer.meta = Some(s.meta);
        Some(())
    }

    /// The apply thread: loads a snapshot whose log reset is durable into
    /// the state machine, then tells the core.
    pub(super) fn load_snapshot(&mut self, i: usize) {
        let Some(meta) = self.nodes[i].pending_load.take() else {
            return;
        };
        let index = meta.last_index;
        let id = self.nodes[i].id.clone();
        let node = &mut self.nodes[i];
        if node.applied < index {
            let stored = node.disk.snapshot_index();
            if stored > index {
                // A newer install overtook this one: its own reset loads it.
                self.stats.superseded_installs += 1;
                trace!(self, "{id}: install of {index} superseded by {stored}");
                return;
            }
            if stored < index {
                self.note(Err(format!(
                    "{id}: snapshot {index} to install is gone (store: {stored})"
                )));
                return;
            }
            if self.mutation == Some(Mutation::InstallWithoutLoad) {
                // The applied index moves, the state stays.
                node.applied = index;
            } else {
                node.load_if_behind();
            }
            self.stats.installs += 1;
            let v = self.installed_is_committed(i);
            self.note(v);
        }
        let node = &mut self.nodes[i];
        node.core.as_mut().unwrap().on_snapshot_installed(index);
        if node.installing.is_some_and(|x| x <= index) {
            node.installing = None;
        }
        trace!(self, "{id} installed snapshot {index}");
    }

    /// The crash point "during snapshot install".
    pub(super) fn crash_while_installing(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].installing.is_some() && self.rng.random_bool(INSTALL_CRASH) {
                let durable = self.nodes[i].pending_load.is_some();
                trace!(
                    self,
                    "{} crashes installing (log reset durable: {durable})",
                    self.nodes[i].id
                );
                self.crash(i);
            }
        }
    }

    /// State machine safety for installs: the loaded state is the committed prefix.
    fn installed_is_committed(&self, i: usize) -> Verdict {
        let node = &self.nodes[i];
        let committed = &self.checker.committed;
        for e in &node.sm {
            match committed.get(e.index as usize - 1) {
                Some((t, p)) if *t == e.term && *p == e.payload => {}
                other => {
                    return Err(format!(
                        "state machine safety: {} installed ({}, {}) {:?}; committed there: {other:?}",
                        node.id, e.index, e.term, e.payload
                    ))
                }
            }
        }
        Ok(())
    }

    /// Invariant 7 and the snapshot store's, after every step on a live node.
    pub(super) fn check_snapshots(&self, i: usize, verdicts: &mut Vec<Verdict>) {
        let node = &self.nodes[i];
        let Some(core) = node.core.as_ref() else { return };
        let s = core.status();
        let id = &node.id;
        let snapshot = core.latest_snapshot().map_or(0, |m| m.last_index);
        let seven = match node.installing {
            // Installing: the state machine loads the snapshot next; nothing is applied before.
            Some(x) => snapshot == x && s.applied < x && core.applicable_index() == s.applied,
            None => snapshot <= s.applied,
        };
        if !seven || s.applied > s.commit || s.commit > s.last_log_index {
            verdicts.push(Err(format!(
                "{id}: not snapshot {snapshot} <= applied {} <= commit {} <= last {} (installing {:?})",
                s.applied, s.commit, s.last_log_index, node.installing
            )));
        }
        // Compacted entries are in a snapshot the core knows, and stored.
        let start = core.log().start_index();
        if start > snapshot || snapshot > node.disk.snapshot_index() || s.first_log_index != start + 1 {
            verdicts.push(Err(format!(
                "{id}: log starts after {start}, latest snapshot {snapshot}, stored {}",
                node.disk.snapshot_index()
            )));
        }
        // The state machine holds exactly 1..=applied.
        if node.sm.len() as u64 != node.applied || node.sm.last().is_some_and(|e| e.index != node.applied) {
            verdicts.push(Err(format!(
                "{id}: state machine holds {} entries up to {:?}, applied {}",
                node.sm.len(),
                node.sm.last().map(|e| e.index),
                node.applied
            )));
        }
    }
}
