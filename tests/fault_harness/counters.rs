//! Checks of the Redis data commands under faults, judged from a client
//! history alone: a counter's INCRs (none lost, none doubled) and SET NX PX
//! as a lock (two holders never at once).

/// What one `INCR ctr` came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Increment {
    /// Acknowledged, with the value it returned.
    Acked(i64),
    /// Timed out or cut off: applied or not.
    Unknown,
}

/// The counter's rules, given its final value: every acknowledged
/// increment returned a value of its own, none above the final one, and
/// the final value counts every acknowledged increment and at most the
/// unknown ones besides. The first broken rule, described.
pub fn check_counter(increments: &[Increment], last: i64) -> Option<String> {
    let mut acked: Vec<i64> = increments
        .iter()
        .filter_map(|i| match i {
            Increment::Acked(v) => Some(*v),
            Increment::Unknown => None,
        })
        .collect();
    let unknown = increments.len() - acked.len();
    acked.sort_unstable();
    if let Some(w) = acked.windows(2).find(|w| w[0] == w[1]) {
        return Some(format!(
            "two INCRs both returned {}: one was applied twice or lost",
            w[0]
        ));
    }
    if let Some(v) = acked.last().filter(|v| **v > last) {
        return Some(format!("an INCR returned {v}, above the final value {last}"));
    }
    let n = acked.len() as i64;
    if last < n || last > n + unknown as i64 {
        return Some(format!(
            "final value {last} for {n} acknowledged and {unknown} unknown INCRs: increments were lost or doubled"
        ));
    }
    None
}

/// A successful `SET lock holder NX PX ttl`, and when (ns).
#[derive(Debug, Clone)]
pub struct NxLock {
    pub holder: String,
    pub call: u64,
    pub ret: u64,
}

/// The lock's rule: a key set NX lives `ttl_ms` (nothing else deletes it),
/// so two successful acquisitions were applied at least `ttl_ms` apart on
/// the log's clock, which is the leader's wall clock (one machine here:
/// the harness's clock too). Each was applied between its call and its
/// return, so two whose windows cannot be `ttl_ms` apart held the lock at
/// once. The first such pair, described.
pub fn check_nx_locks(acquired: &[NxLock], ttl_ms: u64) -> Option<String> {
    // A millisecond of rounding on the log's clock, either side.
    let apart = (ttl_ms.saturating_sub(2)) * 1_000_000;
    for (i, a) in acquired.iter().enumerate() {
        for b in &acquired[i + 1..] {
            if b.ret.saturating_sub(a.call) < apart && a.ret.saturating_sub(b.call) < apart {
                return Some(format!(
                    "{} (call {} ns, return {} ns) and {} (call {} ns, return {} ns) both took the lock within {ttl_ms} ms",
                    a.holder, a.call, a.ret, b.holder, b.call, b.ret
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counter_rules_catch_lost_and_doubled_increments() {
        use Increment::*;
        assert_eq!(check_counter(&[Acked(1), Acked(2), Unknown], 3), None);
        assert_eq!(check_counter(&[Acked(1), Acked(2), Unknown], 2), None);
        assert!(check_counter(&[Acked(1), Acked(1)], 2).is_some(), "doubled");
        assert!(check_counter(&[Acked(1), Acked(2)], 1).is_some(), "lost");
        assert!(check_counter(&[Acked(1), Acked(2)], 3).is_some(), "one too many");
    }

    #[test]
    fn two_holders_at_once_are_caught() {
        let at = |holder: &str, call_ms: u64, ret_ms: u64| NxLock {
            holder: holder.into(),
            call: call_ms * 1_000_000,
            ret: ret_ms * 1_000_000,
        };
        assert_eq!(check_nx_locks(&[at("a", 0, 10), at("b", 305, 320)], 300), None);
        assert_eq!(
            check_nx_locks(&[at("a", 0, 200), at("b", 100, 400)], 300),
            None,
            "can be 300 apart"
        );
        assert!(check_nx_locks(&[at("a", 0, 10), at("b", 100, 150)], 300).is_some());
    }
}
