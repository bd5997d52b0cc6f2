//! Distributed locks on real nodes: mutual exclusion between holders on two
//! nodes, fencing tokens, expiry, renewal, failover and a full restart.

mod common;

use common::{retrying, wait_until, Cluster};
use floyd::{Error, Floyd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Who believes they hold the lock, and until when (the holder's own
/// conservative view: `ttl` after it sent the request that granted it).
#[derive(Default)]
struct Beliefs {
    holder: Option<(String, Instant)>,
    last_token: Option<(String, u64)>,
    acquisitions: usize,
    renewals: usize,
}

fn contend(node: &Floyd, me: &str, beliefs: &Mutex<Beliefs>, until: Instant) {
    let ttl = Duration::from_millis(300);
    while Instant::now() < until {
        let sent = Instant::now();
        let token = match node.try_lock(b"the-lock", me.as_bytes(), ttl.as_millis() as u64) {
            Ok(t) => t,
            Err(Error::Locked(_)) | Err(Error::Timeout(_)) => continue,
            Err(e) if e.is_retryable() => continue,
            Err(e) => panic!("{me}: try_lock failed: {e}"),
        };
        {
            let mut b = beliefs.lock().unwrap();
            if let Some((other, valid_until)) = &b.holder {
                assert!(
                    other == me || *valid_until <= Instant::now(),
                    "{me} got the lock while {other} still believes it holds it"
                );
            }
            if let Some((last_holder, last)) = &b.last_token {
                if last_holder != me {
                    assert!(token > *last, "token {token} after {last_holder}'s {last}");
                }
            }
            b.holder = Some((me.to_string(), sent + ttl));
            b.last_token = Some((me.to_string(), token));
            b.acquisitions += 1;
        }
        // Renew once while held: the token stays.
        let sent = Instant::now();
        if let Ok(renewed) = node.try_lock(b"the-lock", me.as_bytes(), ttl.as_millis() as u64) {
            assert_eq!(renewed, token, "{me}: a renewal keeps the token");
            let mut b = beliefs.lock().unwrap();
            b.holder = Some((me.to_string(), sent + ttl));
            b.renewals += 1;
        }
        // Give up the belief before releasing: then the lock is free to others.
        beliefs.lock().unwrap().holder = None;
        match node.unlock(b"the-lock", me.as_bytes()) {
            Ok(()) | Err(Error::NotHolder(_)) | Err(Error::Timeout(_)) => {}
            Err(e) if e.is_retryable() => {}
            Err(e) => panic!("{me}: unlock failed: {e}"),
        }
    }
}

#[test]
fn two_holders_on_two_nodes_never_both_believe_they_hold_the_lock() {
    let c = Cluster::start(3);
    let leader = c.wait_for_leader();
    let follower = c.follower_of(leader);
    let beliefs = Mutex::new(Beliefs::default());
    let until = Instant::now() + Duration::from_secs(3);
    std::thread::scope(|s| {
        let (a, b) = (c.node(leader), c.node(follower));
        let beliefs = &beliefs;
        s.spawn(move || contend(a, "on-leader", beliefs, until));
        s.spawn(move || contend(b, "on-follower", beliefs, until));
    });
    let b = beliefs.into_inner().unwrap();
    assert!(b.acquisitions >= 4, "only {} acquisitions", b.acquisitions);
    assert!(b.renewals >= 1);
    assert_eq!(c.node(leader).server_status().locks_held, 0);
}

#[test]
fn an_expired_lock_is_free_and_a_renewal_extends_it() {
    let c = Cluster::start(3);
    let leader = c.wait_for_leader();
    let (a, b) = (c.node(leader), c.node(c.follower_of(leader)));
    let ttl = 400;
    let sent = Instant::now();
    let first = retrying(|| a.try_lock(b"L", b"a", ttl)).unwrap();
    assert!(matches!(b.try_lock(b"L", b"b", ttl), Err(Error::Locked(_))));
    assert!(matches!(b.unlock(b"L", b"b"), Err(Error::NotHolder(_))));
    // Renewed: b cannot have it before the renewal's lease ran out.
    let renewed_at = Instant::now();
    assert_eq!(retrying(|| a.try_lock(b"L", b"a", ttl)).unwrap(), first);
    let mut second = 0;
    wait_until("the lease to run out", || match b.try_lock(b"L", b"b", ttl) {
        Ok(t) => {
            second = t;
            true
        }
        Err(Error::Locked(_)) => false,
        Err(e) => panic!("try_lock failed: {e}"),
    });
    let granted = Instant::now();
    assert!(
        granted.duration_since(renewed_at) >= Duration::from_millis(ttl),
        "b got the lock {:?} after a's renewal of {ttl} ms",
        granted.duration_since(renewed_at)
    );
    assert!(granted.duration_since(sent) >= Duration::from_millis(ttl));
    assert!(second > first, "token {second} after {first}");
    // a's lease is gone: it is not the holder any more.
    assert!(matches!(a.unlock(b"L", b"a"), Err(Error::NotHolder(_))));
    b.unlock(b"L", b"b").unwrap();
    assert!(matches!(b.unlock(b"L", b"b"), Err(Error::NotHolder(_))));
}

#[test]
fn a_lock_survives_a_leader_failover_and_a_full_restart() {
    let mut c = Cluster::start(3);
    let leader = c.wait_for_leader();
    let holder_node = c.follower_of(leader);
    let ttl = 60_000;
    let token = retrying(|| c.node(holder_node).try_lock(b"L", b"a", ttl)).unwrap();
    c.stop(leader);
    let new_leader = c.wait_for_leader();
    assert_ne!(new_leader, leader);
    let other = retrying(|| c.node(new_leader).try_lock(b"L", b"b", ttl));
    assert!(matches!(other, Err(Error::Locked(_))), "{other:?}");
    assert_eq!(
        retrying(|| c.node(holder_node).try_lock(b"L", b"a", ttl)).unwrap(),
        token
    );
    c.restart(leader);
    for i in 0..3 {
        c.stop(i);
    }
    for i in 0..3 {
        c.restart(i);
    }
    let leader = c.wait_for_leader();
    let other = retrying(|| c.node(leader).try_lock(b"L", b"b", ttl));
    assert!(matches!(other, Err(Error::Locked(_))), "{other:?}");
    assert_eq!(c.node(leader).server_status().locks_held, 1);
    retrying(|| c.node(holder_node).unlock(b"L", b"a")).unwrap();
    let next = retrying(|| c.node(leader).try_lock(b"L", b"b", ttl)).unwrap();
    assert!(next > token);
}

#[test]
fn bad_lock_requests_are_invalid_arguments() {
    let c = Cluster::start(1);
    let n = c.node(0);
    for r in [
        n.try_lock(b"", b"h", 100),
        n.try_lock(b"n", b"", 100),
        n.try_lock(b"n", b"h", 0),
        n.try_lock(b"n", b"h", floyd::state_machine::MAX_LOCK_TTL_MS + 1),
    ] {
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    }
    assert!(matches!(n.unlock(b"", b"h"), Err(Error::InvalidArgument(_))));
}
