//! Time in the simulation: a clock per node (each running a little fast or
//! slow), ticks that come late, and lease reads (dissertation §6.4.1).
//!
//! Simulated time moves by one tick period at every tick step. Every node
//! reads its own monotonic clock (`now × rate`, the rate within ±3% of real
//! time, well inside the 10% drift the lease leaves room for) before it
//! ticks, steps a message or starts a read, as the runtime does. Now and
//! then some nodes (up to all of them: a majority SIGSTOPped, an overloaded
//! machine) are *held up*: they keep receiving messages but miss their ticks
//! for a while, then take all of them at once, as the runtime's primary
//! thread does when it wakes late. That burst is what made a leader's lease
//! unsafe when ticks alone timed a voter's lockout.
//!
//! Most seeds with check-quorum turn lease reads on, with the runtime's
//! settings: a lease of 0.9 × (E − 2) ticks, a lockout of E − 1 ticks.

use super::*;
use rand::seq::SliceRandom;

/// A tick period of the simulation, in µs.
pub(super) const TICK_US: u64 = 10_000;
/// Probability, per tick step, that a stall begins.
const STALL_RATE: f64 = 0.05;

/// Per node: its clock's rate and the ticks it owes.
pub(super) struct Clocks {
    pub(super) now_us: u64,
    /// Per node, in parts per million of real time.
    rate_ppm: Vec<u64>,
    /// Per node: tick steps left in its stall, and ticks missed during it.
    held: Vec<Option<(u32, u32)>>,
}

impl Clocks {
    pub(super) fn new(rng: &mut SmallRng, nodes: usize) -> Clocks {
        Clocks {
            now_us: 1_000_000,
            rate_ppm: (0..nodes)
                .map(|_| rng.random_range(970_000..=1_030_000))
                .collect(),
            held: vec![None; nodes],
        }
    }

    fn node_us(&self, i: usize) -> u64 {
        self.now_us * self.rate_ppm[i] / 1_000_000
    }
}

/// The runtime's lease settings for an election timeout of `election_ticks`.
pub(super) fn lease_settings(cfg: &mut Config) {
    let e = u64::from(cfg.election_ticks);
    cfg.lease_us = (e - 2) * TICK_US / 10 * 9;
    cfg.lockout_us = (e - 1) * TICK_US;
}

impl Sim {
    /// Node `i` reads its clock (before a tick, a message or a read).
    pub(super) fn read_clock(&mut self, i: usize) {
        let now = self.clocks.node_us(i);
        if let Some(core) = self.nodes[i].core.as_mut() {
            core.set_monotonic(now);
        }
    }

    /// One tick period passes: every live node ticks, but those held up,
    /// which count the tick they miss and, when the stall ends, take every
    /// tick they missed at once. Now and then some nodes get held up.
    pub(super) fn tick_period(&mut self, calm: bool) {
        self.clocks.now_us += TICK_US;
        let live = self.live();
        if !calm && self.rng.random_bool(STALL_RATE) {
            self.hold_up(&live);
        }
        for i in live {
            let due = match self.clocks.held[i] {
                Some((left, missed)) if left > 1 && !calm => {
                    self.clocks.held[i] = Some((left - 1, missed + 1));
                    continue;
                }
                Some((_, missed)) => {
                    self.clocks.held[i] = None;
                    self.stats.late_bursts += 1;
                    trace!(
                        self,
                        "{} wakes late: {} ticks at once",
                        self.nodes[i].id,
                        missed + 1
                    );
                    missed + 1
                }
                // Now and then a tick is lost (clock drift).
                None if calm || self.rng.random_bool(0.9) => 1,
                None => 0,
            };
            self.read_clock(i);
            if self.nodes[i].core.as_ref().unwrap().is_quiesced() {
                self.stats.quiet_periods += 1;
            }
            for _ in 0..due {
                self.nodes[i].core.as_mut().unwrap().tick();
            }
        }
    }

    /// Holds up some live nodes (any of them, or every follower of a
    /// leader: it keeps its lease, as they still answer it, while their
    /// ticks pile up) for up to two election timeouts.
    fn hold_up(&mut self, live: &[usize]) {
        let mut who = live.to_vec();
        who.shuffle(&mut self.rng);
        who.truncate(self.rng.random_range(0..=live.len()));
        if self.rng.random_bool(0.5) {
            let leads = |i: usize| self.nodes[i].core.as_ref().unwrap().role() == Role::Leader;
            who = live.iter().copied().filter(|&i| !leads(i)).collect();
        }
        let Some(&first) = who.first() else { return };
        let periods = self
            .rng
            .random_range(2..=2 * self.nodes[first].cfg.election_ticks);
        for &i in &who {
            self.clocks.held[i].get_or_insert((periods, 0));
        }
        let names: Vec<&NodeId> = who.iter().map(|&i| &self.nodes[i].id).collect();
        trace!(self, "held up for {periods} ticks: {names:?}");
    }

    /// Node `i` crashed: it owes no ticks.
    pub(super) fn forget_held(&mut self, i: usize) {
        self.clocks.held[i] = None;
    }
}

impl Sim {
    /// Dissertation §6.4.1, the promise a lease makes: while a leader could
    /// serve a read on its lease (by its own clock, now), no node leads a
    /// later term. Checked after every step, whether or not a read comes.
    pub(super) fn check_leases(&self) -> Verdict {
        for (i, n) in self.nodes.iter().enumerate() {
            let Some(core) = n.core.as_ref().filter(|c| c.role() == Role::Leader) else {
                continue;
            };
            if core.lease_read_index(self.clocks.node_us(i)).is_none() {
                continue;
            }
            let rival = self
                .nodes
                .iter()
                .filter_map(|m| m.core.as_ref())
                .find(|c| c.role() == Role::Leader && c.term() > core.term());
            if let Some(r) = rival {
                return Err(format!(
                    "{} leads term {} while {}'s lease of term {} holds",
                    r.id(),
                    r.term(),
                    n.id,
                    core.term()
                ));
            }
        }
        Ok(())
    }
}
