//! Lock tests: tokens, renewal, expiry by the log's time only.

use super::*;

fn lock_entry(index: u64, time: u64, cmd: CommandKind) -> Entry {
    Entry {
        term: 1,
        index,
        r#type: EntryType::EntryCommand as i32,
        payload: encode_command(cmd),
        leader_time_ms: time,
        log_time_rule: 2,
    }
}

fn try_lock(index: u64, time: u64, holder: &str, ttl_ms: u64) -> Entry {
    let cmd = CommandKind::TryLock {
        name: Bytes::from_static(b"L"),
        holder: Bytes::from(holder.to_string()),
        ttl_ms,
    };
    lock_entry(index, time, cmd)
}

fn unlock(index: u64, time: u64, holder: &str) -> Entry {
    let cmd = CommandKind::Unlock {
        name: Bytes::from_static(b"L"),
        holder: Bytes::from(holder.to_string()),
    };
    lock_entry(index, time, cmd)
}

fn token(a: &Applied) -> u64 {
    match &a.result {
        Ok(Some(v)) => u64::from_be_bytes(v.as_ref().try_into().unwrap()),
        other => panic!("expected a token, got {other:?}"),
    }
}

fn results(sm: &KvStateMachine, entries: &[Entry]) -> Vec<Applied> {
    sm.apply(entries).unwrap()
}

#[test]
fn a_lock_is_granted_with_its_entry_index_and_renewed_with_the_same_token() {
    let dir = tempfile::tempdir().unwrap();
    let sm = KvStateMachine::open(dir.path()).unwrap();
    let out = results(
        &sm,
        &[
            try_lock(1, 1000, "a", 100),
            try_lock(2, 1050, "b", 100),
            try_lock(3, 1080, "a", 100),
            // a renewed until 1180: b still cannot have it at 1150.
            try_lock(4, 1150, "b", 100),
        ],
    );
    assert_eq!(token(&out[0]), 1);
    assert!(matches!(out[1].result, Err(Error::Locked(_))));
    assert_eq!(token(&out[2]), 1, "a renewal keeps the token");
    assert!(matches!(out[3].result, Err(Error::Locked(_))));
    assert_eq!(sm.locks_held().unwrap(), 1);
}

#[test]
fn section_6_3_lock_expiry_uses_entry_time_not_the_replica_clock() {
    let dir = tempfile::tempdir().unwrap();
    let sm = KvStateMachine::open(dir.path()).unwrap();
    // Entry times, not wall time, decide: the lease of 100 ms runs out at
    // log time 1100 however long ago that was on this machine.
    let out = results(
        &sm,
        &[
            try_lock(1, 1000, "a", 100),
            try_lock(2, 1099, "b", 100),
            try_lock(3, 1100, "b", 100),
        ],
    );
    assert!(matches!(out[1].result, Err(Error::Locked(_))));
    assert_eq!(token(&out[2]), 3, "a new acquisition gets a larger token");
    // A leader whose clock is behind does not move the log's time back: the
    // lease of b (until 1200) is judged at 1100, not at 500.
    let out = results(&sm, &[try_lock(4, 500, "a", 100), unlock(5, 1250, "b")]);
    assert!(matches!(out[0].result, Err(Error::Locked(_))));
    assert!(
        matches!(out[1].result, Err(Error::NotHolder(_))),
        "b's lease expired"
    );
    assert_eq!(sm.locks_held().unwrap(), 0);
}

#[test]
fn unlock_by_a_non_holder_is_refused_and_by_the_holder_frees_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let sm = KvStateMachine::open(dir.path()).unwrap();
    let out = results(
        &sm,
        &[
            unlock(1, 10, "a"),
            try_lock(2, 10, "a", 1000),
            unlock(3, 20, "b"),
            unlock(4, 30, "a"),
            try_lock(5, 40, "b", 1000),
        ],
    );
    assert!(matches!(out[0].result, Err(Error::NotHolder(_))), "not held");
    assert!(matches!(out[2].result, Err(Error::NotHolder(_))), "held by a");
    assert_eq!(out[3].result, Ok(None));
    assert_eq!(token(&out[4]), 5);
}

#[test]
fn lock_state_and_time_survive_a_reopen_and_replay_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    {
        let sm = KvStateMachine::open(dir.path()).unwrap();
        results(&sm, &[try_lock(1, 1000, "a", 100)]);
    }
    let sm = KvStateMachine::open(dir.path()).unwrap();
    // Entry 1 again (a replay after a crash) changes nothing.
    let out = results(&sm, &[try_lock(1, 1000, "a", 100), try_lock(2, 1001, "b", 100)]);
    assert_eq!(out.len(), 1);
    assert!(matches!(out[0].result, Err(Error::Locked(_))));
}

/// Issue 20, item 7: one leader with a clock a year ahead, then leaders
/// with good clocks. A lock taken under the first must expire after its
/// TTL by the later leaders' clocks, not a year later.
#[test]
fn a_lock_taken_under_a_leader_clock_far_ahead_expires_by_the_next_leaders_clock() {
    let year = 365 * 24 * 3_600_000;
    let in_term = |term: u64, e: Entry| Entry { term, ..e };
    let dir = tempfile::tempdir().unwrap();
    let sm = KvStateMachine::open(dir.path()).unwrap();
    let out = results(
        &sm,
        &[
            in_term(1, try_lock(1, 1_000, "a", 10_000)),
            // The leader of term 2 is a year ahead: b takes the lock for 10 s.
            in_term(2, try_lock(2, 2_000 + year, "b", 10_000)),
            // Term 3's leader has a good clock; b has died.
            in_term(3, try_lock(3, 5_000, "c", 10_000)),
            in_term(3, try_lock(4, 16_000, "c", 10_000)),
        ],
    );
    assert_eq!(
        token(&out[1]),
        2,
        "a's lease ended early (the clock ahead): b has it"
    );
    assert!(
        matches!(out[2].result, Err(Error::Locked(_))),
        "b's 10 s are not over"
    );
    assert_eq!(
        token(&out[3]),
        4,
        "11 s later by term 3's clock, b's lease is over"
    );
}
