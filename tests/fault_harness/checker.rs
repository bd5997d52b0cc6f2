//! A linearizability checker for a key-value register, in the manner of
//! Porcupine (Wing & Gong's search with Lowe's memoisation): each key is
//! checked on its own (a register per key composes, P-compositionality).
//!
//! An operation is a write (or delete), a read, or a compare-and-set (the
//! value becomes `new` only if it is `old`: Jepsen's cas-register) with its
//! invocation and completion times. A write whose outcome is unknown (a timeout, a
//! dropped connection, a node killed under it) may have taken effect at
//! any point after its invocation, or never: it completes at "infinity".
//! A read whose outcome is unknown says nothing and is dropped, and so is
//! an operation that certainly failed. The search has a budget; past it
//! the verdict is `Unknown`, never a hang.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

pub type Value = Option<Vec<u8>>;

/// What an operation asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Set the key to the value (`None`: delete it).
    Write(Value),
    Read,
    /// Set the key to `new` if it holds `old`.
    Cas {
        old: Vec<u8>,
        new: Vec<u8>,
    },
}

/// How it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A write acknowledged.
    Written,
    /// A read's answer (`None`: the key did not exist).
    Read(Value),
    /// A compare-and-set's answer: whether it set the value.
    Swapped(bool),
    /// Certainly not applied (the system said so): the op is left out.
    Failed,
    /// No answer: it may or may not have taken effect.
    Unknown,
}

#[derive(Debug, Clone)]
pub struct Op {
    pub client: usize,
    pub key: Vec<u8>,
    pub input: Input,
    pub output: Output,
    /// Nanoseconds on one monotonic clock.
    pub call: u64,
    pub ret: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order fits; `key` is the first key found without one.
    Violation {
        key: Vec<u8>,
    },
    /// The budget ran out before a verdict.
    Unknown,
}

/// Checks every key's history; the first violation found wins.
pub fn check(ops: &[Op], budget: Duration) -> Verdict {
    let deadline = Instant::now() + budget;
    let mut by_key: HashMap<&[u8], Vec<&Op>> = HashMap::new();
    for op in ops {
        by_key.entry(op.key.as_slice()).or_default().push(op);
    }
    let mut unknown = false;
    let mut keys: Vec<_> = by_key.into_iter().collect();
    keys.sort_by(|a, b| a.0.cmp(b.0));
    for (key, ops) in keys {
        match check_register(&ops, deadline) {
            Some(true) => {}
            Some(false) => return Verdict::Violation { key: key.to_vec() },
            None => unknown = true,
        }
    }
    if unknown {
        Verdict::Unknown
    } else {
        Verdict::Linearizable
    }
}

/// The last `count` operations on `key`, one a line, for a failure report.
pub fn describe(ops: &[Op], key: &[u8], count: usize) -> String {
    let mut on_key: Vec<&Op> = ops.iter().filter(|o| o.key == key).collect();
    on_key.sort_by_key(|o| o.call);
    let from = on_key.len().saturating_sub(count);
    on_key[from..]
        .iter()
        .map(|o| {
            let show = |v: &Value| v.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
            let what = match (&o.input, &o.output) {
                (Input::Write(v), out) => format!("write {:?} -> {out:?}", show(v)),
                (Input::Read, Output::Read(v)) => format!("read -> {:?}", show(v)),
                (Input::Read, out) => format!("read -> {out:?}"),
                (Input::Cas { old, new }, out) => format!(
                    "cas {:?} -> {:?}: {out:?}",
                    String::from_utf8_lossy(old),
                    String::from_utf8_lossy(new)
                ),
            };
            format!(
                "  client {:>3} [{:>12} ns, {:>12} ns] {what}",
                o.client, o.call, o.ret
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// An operation as the search sees it.
struct Call {
    input: Input,
    /// What it answered (`None` for a write, or an answer never seen).
    answer: Option<Output>,
}

/// The register after `call` from `state`, if the call fits there.
fn step(state: &Value, call: &Call) -> Option<Value> {
    let holds = |old: &Vec<u8>| state.as_ref() == Some(old);
    match (&call.input, &call.answer) {
        (Input::Write(v), _) => Some(v.clone()),
        (Input::Read, Some(Output::Read(seen))) => (seen == state).then(|| state.clone()),
        (Input::Read, _) => Some(state.clone()),
        (Input::Cas { old, new }, Some(Output::Swapped(true))) => holds(old).then(|| Some(new.clone())),
        (Input::Cas { old, .. }, Some(Output::Swapped(false))) => (!holds(old)).then(|| state.clone()),
        // Unknown: it set the value exactly if it held `old` when it took effect.
        (Input::Cas { old, new }, _) => Some(if holds(old) {
            Some(new.clone())
        } else {
            state.clone()
        }),
    }
}

/// One register's history (starting absent): `Some(linearizable)`, or `None` past `deadline`.
fn check_register(ops: &[&Op], deadline: Instant) -> Option<bool> {
    let mut calls = Vec::new();
    let mut events = Vec::new(); // (time, is_return, call index)
    for op in ops {
        let answer = match (&op.input, &op.output) {
            (_, Output::Failed) | (Input::Read, Output::Unknown) => continue,
            (Input::Read, Output::Read(_)) | (Input::Cas { .. }, Output::Swapped(_)) => {
                Some(op.output.clone())
            }
            // Answers that do not fit the call: a bug of the workload, not of the system.
            (Input::Read, _) | (Input::Cas { .. }, Output::Read(_) | Output::Written) => continue,
            (Input::Write(_), _) | (Input::Cas { .. }, Output::Unknown) => None,
        };
        let ret = if op.output == Output::Unknown {
            u64::MAX
        } else {
            op.ret
        };
        let id = calls.len();
        calls.push(Call {
            input: op.input.clone(),
            answer,
        });
        events.push((op.call, false, id));
        events.push((ret, true, id));
    }
    // At equal times a call comes first: the two ops count as overlapping.
    events.sort_by_key(|&(t, is_return, id)| (t, is_return, id));
    search(&calls, &events, deadline)
}

/// The search over a doubly linked list of call and return events.
fn search(calls: &[Call], events: &[(u64, bool, usize)], deadline: Instant) -> Option<bool> {
    let n = events.len();
    if n == 0 {
        return Some(true);
    }
    // Event i's neighbours; n is the list's end, and head is the first left.
    let mut next: Vec<usize> = (1..=n).collect();
    let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
    let mut head = 0usize;
    let mut return_of = vec![0usize; calls.len()];
    for (i, &(_, is_return, id)) in events.iter().enumerate() {
        if is_return {
            return_of[id] = i;
        }
    }
    let unlink = |i: usize, next: &mut Vec<usize>, prev: &mut Vec<usize>, head: &mut usize| {
        let (p, nx) = (prev[i], next[i]);
        if p == usize::MAX {
            *head = nx;
        } else {
            next[p] = nx;
        }
        if nx < n {
            prev[nx] = p;
        }
    };
    let relink = |i: usize, next: &mut Vec<usize>, prev: &mut Vec<usize>, head: &mut usize| {
        let (p, nx) = (prev[i], next[i]);
        if p == usize::MAX {
            *head = i;
        } else {
            next[p] = i;
        }
        if nx < n {
            prev[nx] = i;
        }
    };
    // Which calls are linearized, as a bitset (the memo's key with the state).
    let mut done = vec![0u64; calls.len().div_ceil(64)];
    let flip = |done: &mut Vec<u64>, id: usize| done[id / 64] ^= 1 << (id % 64);
    let mut seen: HashSet<(Vec<u64>, Value)> = HashSet::new();
    let mut stack: Vec<(usize, Value)> = Vec::new(); // (call event, state before it)
    let mut state: Value = None;
    let mut at = head;
    let mut steps = 0u64;
    while head < n {
        steps += 1;
        if steps % 4096 == 0 && Instant::now() > deadline {
            return None;
        }
        if at < n && !events[at].1 {
            let id = events[at].2;
            if let Some(after) = step(&state, &calls[id]) {
                flip(&mut done, id);
                let fresh = seen.insert((done.clone(), after.clone()));
                if fresh {
                    stack.push((at, std::mem::replace(&mut state, after)));
                    unlink(at, &mut next, &mut prev, &mut head);
                    unlink(return_of[id], &mut next, &mut prev, &mut head);
                    at = head;
                    continue;
                }
                flip(&mut done, id);
            }
            at = next[at];
        } else {
            // A return whose call is not linearized yet: undo the last choice.
            let Some((call_at, before)) = stack.pop() else {
                return Some(false);
            };
            let id = events[call_at].2;
            flip(&mut done, id);
            state = before;
            relink(return_of[id], &mut next, &mut prev, &mut head);
            relink(call_at, &mut next, &mut prev, &mut head);
            at = next[call_at];
        }
    }
    Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(client: usize, v: &str, call: u64, ret: u64) -> Op {
        op(
            client,
            Input::Write(Some(v.as_bytes().to_vec())),
            Output::Written,
            call,
            ret,
        )
    }

    fn r(client: usize, v: Option<&str>, call: u64, ret: u64) -> Op {
        let seen = v.map(|s| s.as_bytes().to_vec());
        op(client, Input::Read, Output::Read(seen), call, ret)
    }

    fn op(client: usize, input: Input, output: Output, call: u64, ret: u64) -> Op {
        Op {
            client,
            key: b"k".to_vec(),
            input,
            output,
            call,
            ret,
        }
    }

    fn verdict(ops: &[Op]) -> Verdict {
        check(ops, Duration::from_secs(10))
    }

    fn cas(client: usize, old: &str, new: &str, swapped: Option<bool>, call: u64, ret: u64) -> Op {
        let input = Input::Cas {
            old: old.as_bytes().to_vec(),
            new: new.as_bytes().to_vec(),
        };
        op(
            client,
            input,
            swapped.map_or(Output::Unknown, Output::Swapped),
            call,
            ret,
        )
    }

    #[test]
    fn a_compare_and_set_swaps_only_from_the_value_it_names() {
        let ok = [
            w(0, "a", 0, 1),
            cas(1, "a", "b", Some(true), 2, 3),
            r(2, Some("b"), 4, 5),
        ];
        assert_eq!(verdict(&ok), Verdict::Linearizable);
        let refused = [
            w(0, "a", 0, 1),
            cas(1, "x", "b", Some(false), 2, 3),
            r(2, Some("a"), 4, 5),
        ];
        assert_eq!(verdict(&refused), Verdict::Linearizable);
        // It held "a", yet the swap said no: not a register.
        let wrong_no = [w(0, "a", 0, 1), cas(1, "a", "b", Some(false), 2, 3)];
        assert!(matches!(verdict(&wrong_no), Verdict::Violation { .. }));
        // Swapped from a value the key never held.
        let wrong_yes = [w(0, "a", 0, 1), cas(1, "x", "b", Some(true), 2, 3)];
        assert!(matches!(verdict(&wrong_yes), Verdict::Violation { .. }));
    }

    #[test]
    fn two_concurrent_swaps_from_one_value_cannot_both_win() {
        let h = [
            w(0, "a", 0, 1),
            cas(1, "a", "b", Some(true), 2, 10),
            cas(2, "a", "c", Some(true), 2, 10),
        ];
        assert!(matches!(verdict(&h), Verdict::Violation { .. }));
        let one_wins = [
            w(0, "a", 0, 1),
            cas(1, "a", "b", Some(true), 2, 10),
            cas(2, "a", "c", Some(false), 2, 10),
            r(0, Some("b"), 11, 12),
        ];
        assert_eq!(verdict(&one_wins), Verdict::Linearizable);
    }

    #[test]
    fn a_swap_of_unknown_outcome_may_have_happened_or_not() {
        for seen in ["a", "b"] {
            let h = [
                w(0, "a", 0, 1),
                cas(1, "a", "b", None, 2, 3),
                r(2, Some(seen), 4, 5),
            ];
            assert_eq!(verdict(&h), Verdict::Linearizable, "{seen}");
        }
        // But not from a value the key did not hold.
        let h = [
            w(0, "a", 0, 1),
            cas(1, "x", "b", None, 2, 3),
            r(2, Some("b"), 4, 5),
        ];
        assert!(matches!(verdict(&h), Verdict::Violation { .. }));
    }

    #[test]
    fn sequential_reads_of_the_last_write_are_linearizable() {
        let h = [
            r(0, None, 0, 1),
            w(0, "a", 2, 3),
            r(1, Some("a"), 4, 5),
            w(1, "b", 6, 7),
            r(0, Some("b"), 8, 9),
        ];
        assert_eq!(verdict(&h), Verdict::Linearizable);
    }

    #[test]
    fn a_read_concurrent_with_a_write_may_see_either_value() {
        for seen in [Some("a"), Some("b")] {
            let h = [w(0, "a", 0, 1), w(1, "b", 2, 10), r(2, seen, 3, 4)];
            assert_eq!(verdict(&h), Verdict::Linearizable, "{seen:?}");
        }
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_write_is_a_violation() {
        let h = [w(0, "a", 0, 1), w(1, "b", 2, 3), r(2, Some("a"), 4, 5)];
        assert_eq!(verdict(&h), Verdict::Violation { key: b"k".to_vec() });
    }

    #[test]
    fn a_read_of_a_value_never_written_is_a_violation() {
        let h = [w(0, "a", 0, 1), r(1, Some("zzz"), 2, 3)];
        assert!(matches!(verdict(&h), Verdict::Violation { .. }));
    }

    #[test]
    fn two_readers_may_not_see_two_writes_in_opposite_orders() {
        // Both writes overlap both read pairs, but a→b for one reader and
        // b→a for the other cannot both hold.
        let h = [
            w(0, "a", 0, 100),
            w(1, "b", 0, 100),
            r(2, Some("a"), 10, 20),
            r(2, Some("b"), 30, 40),
            r(3, Some("b"), 10, 20),
            r(3, Some("a"), 30, 40),
        ];
        assert!(matches!(verdict(&h), Verdict::Violation { .. }));
    }

    #[test]
    fn a_write_of_unknown_outcome_may_or_may_not_have_happened() {
        let lost = op(1, Input::Write(Some(b"b".to_vec())), Output::Unknown, 2, 3);
        for seen in [Some("a"), Some("b")] {
            let h = [w(0, "a", 0, 1), lost.clone(), r(2, seen, 10, 11)];
            assert_eq!(verdict(&h), Verdict::Linearizable, "{seen:?}");
        }
        // But once seen, it cannot be unseen.
        let h = [
            w(0, "a", 0, 1),
            lost,
            r(2, Some("b"), 10, 11),
            r(2, Some("a"), 12, 13),
        ];
        assert!(matches!(verdict(&h), Verdict::Violation { .. }));
    }

    #[test]
    fn failed_operations_and_unanswered_reads_are_left_out() {
        let failed = op(1, Input::Write(Some(b"b".to_vec())), Output::Failed, 2, 3);
        let unanswered = op(2, Input::Read, Output::Unknown, 2, 3);
        let h = [w(0, "a", 0, 1), failed, unanswered, r(2, Some("a"), 10, 11)];
        assert_eq!(verdict(&h), Verdict::Linearizable);
    }

    #[test]
    fn deletes_make_the_key_absent_and_keys_are_checked_apart() {
        let del = op(0, Input::Write(None), Output::Written, 2, 3);
        let mut other = r(1, Some("x"), 0, 1);
        other.key = b"other".to_vec();
        let h = [w(0, "a", 0, 1), del, r(1, None, 4, 5)];
        assert_eq!(verdict(&h), Verdict::Linearizable);
        let mut with_other = h.to_vec();
        with_other.push(other);
        assert_eq!(
            verdict(&with_other),
            Verdict::Violation {
                key: b"other".to_vec()
            }
        );
    }

    #[test]
    fn a_long_concurrent_history_is_decided_within_the_budget() {
        // 8 clients, 400 ops on one key, every write overlapping others.
        let mut h = Vec::new();
        let mut t = 0;
        for i in 0..400u64 {
            let c = (i % 8) as usize;
            let v = format!("v{}", i / 2);
            if i % 2 == 0 {
                h.push(w(c, &v, t, t + 30));
            } else {
                h.push(r(c, Some(&v), t + 31, t + 40));
            }
            t += 20;
        }
        assert_eq!(check(&h, Duration::from_secs(20)), Verdict::Linearizable);
    }

    #[test]
    fn an_exhausted_budget_says_unknown() {
        let mut h = Vec::new();
        for i in 0..60u64 {
            h.push(w(i as usize, &format!("v{i}"), 0, 1_000));
        }
        h.push(r(99, Some("nope"), 2_000, 2_001));
        assert_eq!(check(&h, Duration::ZERO), Verdict::Unknown);
    }
}
