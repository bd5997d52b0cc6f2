//! The log's time: the clock locks expire by, the same on every replica
//! because it is computed from the entries alone (each carries its leader's
//! wall clock, `leader_time_ms`).
//!
//! The rule, per entry applied:
//! - within a term (one leader, one clock), the time moves by what that
//!   leader's clock says passed since its previous entry: never back (a
//!   clock stepped back stalls it), at most [`MAX_STEP_MS`] at once;
//! - at the first entry of a new term (another leader, whose clock may be
//!   set differently), it moves to the new leader's clock if that is ahead,
//!   but at most [`MAX_STEP_MS`] ahead, and stays put if it is behind.
//!
//! So a leader whose clock is years ahead moves the time by a day at most
//! (locks expire early: fencing tokens keep that safe for whoever checks
//! them), and the leaders after it move it on at their clocks' pace instead
//! of freezing it, with every dead holder's lock, until real time catches
//! up. A day, because no lock lives longer: a longer step would expire no
//! lock that a day does not.
//!
//! An entry applies this rule only if its leader marked it so
//! (`log_time_rule` 2). Unmarked entries move the time as the previous
//! release does, to the largest stamp so far: a leader marks its entries
//! only while every member speaks protocol 6, so during a rolling upgrade
//! replicas of both releases compute the same time, and lock expiry is
//! decided the same way on all of them.

use super::command::MAX_LOCK_TTL_MS;

/// The most one entry moves the log's time.
pub const MAX_STEP_MS: u64 = MAX_LOCK_TTL_MS;

/// A leader's stamp this far behind the log's time is logged.
const BEHIND_WARNING_MS: u64 = 60_000;

/// The log's time and what it was computed from, as stored with the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogTime {
    pub time: u64,
    /// The previous entry's term and stamp; `None` before the first entry
    /// (or in a store written before this rule).
    pub last: Option<(u64, u64)>,
}

impl LogTime {
    /// The time after entry `index` of `term`, stamped `stamp` by its
    /// leader, under the entry's rule (`per_term`: `log_time_rule` 2).
    pub fn advance(&mut self, index: u64, term: u64, stamp: u64, per_term: bool) {
        if !per_term {
            // The previous release's rule, exactly.
            self.time = self.time.max(stamp);
            self.last = Some((term, stamp));
            return;
        }
        self.time = match self.last {
            // The first entry ever: the log adopts its leader's clock.
            None if self.time == 0 => stamp,
            Some((last_term, last_stamp)) if last_term == term => {
                self.time + stamp.saturating_sub(last_stamp).min(MAX_STEP_MS)
            }
            _ => self.new_leader(index, term, stamp),
        };
        self.last = Some((term, stamp));
    }

    fn new_leader(&self, index: u64, term: u64, stamp: u64) -> u64 {
        if stamp > self.time.saturating_add(MAX_STEP_MS) {
            tracing::warn!(
                index,
                term,
                ahead_ms = stamp - self.time,
                "the leader of this term stamps entries far ahead of the log's time: its clock is \
                 probably wrong; the log's time moves by a day at most"
            );
            return self.time + MAX_STEP_MS;
        }
        if stamp.saturating_add(BEHIND_WARNING_MS) < self.time {
            tracing::warn!(
                index,
                term,
                behind_ms = self.time - stamp,
                "the leader of this term stamps entries behind the log's time: its clock, or an \
                 earlier leader's, is probably wrong; the log's time moves on at its pace"
            );
        }
        self.time.max(stamp)
    }

    /// The stored form of `last`: term and stamp, 16 bytes.
    pub fn encode_last(&self) -> Option<[u8; 16]> {
        let (term, stamp) = self.last?;
        let mut v = [0u8; 16];
        v[..8].copy_from_slice(&term.to_be_bytes());
        v[8..].copy_from_slice(&stamp.to_be_bytes());
        Some(v)
    }

    pub fn decode_last(v: &[u8]) -> Option<(u64, u64)> {
        let term = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
        let stamp = u64::from_be_bytes(v.get(8..16)?.try_into().ok()?);
        (v.len() == 16).then_some((term, stamp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000;
    const YEAR: u64 = 365 * 24 * HOUR;

    fn run(entries: &[(u64, u64)]) -> Vec<u64> {
        let mut t = LogTime::default();
        entries
            .iter()
            .enumerate()
            .map(|(i, &(term, stamp))| {
                t.advance(i as u64 + 1, term, stamp, true);
                t.time
            })
            .collect()
    }

    #[test]
    fn one_leader_moves_it_at_its_clocks_pace_and_never_back() {
        assert_eq!(
            run(&[(1, 1000), (1, 1500), (1, 1200), (1, 1300), (1, 1300 + 2 * HOUR)]),
            vec![1000, 1500, 1500, 1600, 1600 + 2 * HOUR]
        );
    }

    /// Issue 20, item 7: a leader with a clock a year ahead used to pin the
    /// time there: no lock whose holder died was freed for a year.
    #[test]
    fn a_leader_clock_far_ahead_moves_it_a_day_at_most_and_the_next_leader_moves_it_on() {
        let times = run(&[
            (1, 1000),
            (2, 1000 + YEAR),
            (2, 2000 + YEAR),
            (3, 3000),
            (3, 13_000),
        ]);
        let day = MAX_STEP_MS;
        assert_eq!(
            times,
            vec![1000, 1000 + day, 2000 + day, 2000 + day, 12_000 + day]
        );
    }

    #[test]
    fn a_new_leader_slightly_behind_or_ahead_neither_drifts_nor_freezes_it() {
        // Leaders whose clocks are 600 ms apart take turns (stamped at real
        // times 1000, 2000, 2500, 3000, 4000, 5000): the time stays within
        // 600 ms of real time, behind it, however often they alternate.
        let times = run(&[(1, 1000), (2, 1400), (2, 1900), (3, 3000), (4, 3400), (4, 4400)]);
        assert_eq!(times, vec![1000, 1400, 1900, 3000, 3400, 4400]);
    }

    #[test]
    fn a_day_long_pause_of_one_leader_moves_it_a_day() {
        assert_eq!(run(&[(1, 0), (1, 3 * MAX_STEP_MS)])[1], MAX_STEP_MS);
    }

    /// Entries not marked with the per-term rule (written by a leader while
    /// some member spoke protocol 5) move the time exactly as the previous
    /// release does, so its replicas and these agree on every lock.
    #[test]
    fn unmarked_entries_move_it_as_the_previous_release_does() {
        let entries = [(1, 1000), (2, 990), (2, 1005), (3, 1_000 + YEAR), (4, 2000)];
        let mut previous_release = 0u64;
        let mut t = LogTime::default();
        for (i, &(term, stamp)) in entries.iter().enumerate() {
            previous_release = previous_release.max(stamp);
            t.advance(i as u64 + 1, term, stamp, false);
            assert_eq!(t.time, previous_release, "entry {}", i + 1);
        }
        // Marked entries after them go on from there by the per-term rule.
        t.advance(6, 4, 2500, true);
        assert_eq!(t.time, 1_000 + YEAR + 500);
    }

    #[test]
    fn the_stored_form_round_trips() {
        let t = LogTime {
            time: 5,
            last: Some((7, 9)),
        };
        assert_eq!(LogTime::decode_last(&t.encode_last().unwrap()), Some((7, 9)));
        assert_eq!(LogTime::decode_last(&[0; 15]), None);
    }
}
