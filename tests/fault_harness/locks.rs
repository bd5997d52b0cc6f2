//! The lock checker: fencing tokens, judged from a client history alone.
//!
//! A lock's expiry is judged by log time, which clients cannot see, so
//! mutual exclusion cannot be checked from outside without clocks; what a
//! client relies on is the fencing token it passes to what the lock
//! protects. So: a token names one holder (two holders never get the same
//! one), and an acquisition that began after another one ended never gets
//! a smaller token (and, by another holder, never the same one).

/// A successful `try_lock`: who got which token, and when (ns).
#[derive(Debug, Clone)]
pub struct Acquired {
    pub lock: String,
    pub holder: String,
    pub token: u64,
    pub call: u64,
    pub ret: u64,
}

/// The first broken rule found, described; `None` if every rule holds.
pub fn check_tokens(acquired: &[Acquired]) -> Option<String> {
    let mut by_lock: std::collections::BTreeMap<&str, Vec<&Acquired>> = Default::default();
    for a in acquired {
        by_lock.entry(&a.lock).or_default().push(a);
    }
    for (lock, mut list) in by_lock {
        let mut holder_of: std::collections::HashMap<u64, &str> = Default::default();
        for a in &list {
            if let Some(other) = holder_of.insert(a.token, &a.holder) {
                if other != a.holder {
                    return Some(format!(
                        "{lock}: token {} given to {other} and to {}",
                        a.token, a.holder
                    ));
                }
            }
        }
        // Against every acquisition that ended before it began (sorted by
        // end, the latest such one with the largest token is enough).
        list.sort_by_key(|a| a.ret);
        let mut by_call = list.clone();
        by_call.sort_by_key(|a| a.call);
        let mut best: Option<&Acquired> = None;
        let mut next = 0;
        for b in by_call {
            while next < list.len() && list[next].ret < b.call {
                let a = list[next];
                if best.is_none_or(|x| a.token >= x.token) {
                    best = Some(a);
                }
                next += 1;
            }
            if let Some(a) = best {
                let ok = b.token > a.token || (b.token == a.token && b.holder == a.holder);
                if !ok {
                    return Some(format!(
                        "{lock}: {} got token {} at {} ns, after {} had token {} by {} ns",
                        b.holder, b.token, b.call, a.holder, a.token, a.ret
                    ));
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acq(holder: &str, token: u64, call: u64, ret: u64) -> Acquired {
        Acquired {
            lock: "L".into(),
            holder: holder.into(),
            token,
            call,
            ret,
        }
    }

    #[test]
    fn increasing_tokens_and_renewals_keeping_theirs_pass() {
        let h = [
            acq("a", 5, 0, 1),
            acq("a", 5, 2, 3),
            acq("b", 9, 4, 5),
            acq("a", 12, 6, 7),
        ];
        assert_eq!(check_tokens(&h), None);
    }

    #[test]
    fn overlapping_acquisitions_may_come_in_any_token_order() {
        let h = [acq("a", 9, 0, 10), acq("b", 5, 1, 11)];
        assert_eq!(check_tokens(&h), None);
    }

    #[test]
    fn a_smaller_token_after_a_finished_acquisition_is_caught() {
        let h = [acq("a", 9, 0, 1), acq("b", 5, 2, 3)];
        assert!(check_tokens(&h).is_some());
    }

    #[test]
    fn one_token_for_two_holders_is_caught() {
        let h = [acq("a", 7, 0, 10), acq("b", 7, 1, 11)];
        assert!(check_tokens(&h).unwrap().contains("token 7"));
    }

    #[test]
    fn the_same_token_for_another_holder_later_is_caught() {
        let h = [acq("a", 7, 0, 1), acq("a", 7, 2, 3), acq("b", 7, 4, 5)];
        assert!(check_tokens(&h).is_some());
    }
}
