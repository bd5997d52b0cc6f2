//! Commands a follower forwards to the leader, and their answers.
//!
//! Request ids start at a random point in every incarnation of a node, and an
//! answer is matched by the id *and* the member it was sent to: a reply meant
//! for an earlier incarnation (sent before a restart) or coming from another
//! member can never resolve a different request.

use super::proposals::ExpiryScan;
use crate::error::Error;
use crate::wire::ClientResponse;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Called once with how a forwarded request ended. Runs on a library
/// thread (a connection, a peer link or the primary thread): must not block.
pub type Reply = Box<dyn FnOnce(Answer) + Send>;

struct Pending {
    /// The member the request was sent to: only its answer counts.
    to: String,
    /// When the caller gives up: [`Forwards::expire`] answers it then.
    deadline: Instant,
    reply: Reply,
}

/// How a forwarded request ended.
#[derive(Debug)]
pub enum Answer {
    /// The member it was sent to answered.
    Response(ClientResponse),
    /// It never left this node: certainly not applied.
    NotSent,
    /// The link to the member broke with it in flight: it may or may not
    /// have arrived and been applied (`err`, a `Timeout`, says so). A
    /// command under a client session may be sent again: it applies once.
    InDoubt(Error),
    /// This node stopped waiting for the answer (the caller's deadline
    /// passed, the queue to the member was full, the node failed or
    /// closed): `err` says how sure that is.
    GaveUp(Error),
}

/// Forwarded commands awaiting the leader's answer. Thread-safe; every
/// reply is called outside the lock, so it may forward again.
pub struct Forwards {
    next_id: AtomicU64,
    /// `None` once closed by [`Forwards::fail_all`]: nothing is registered after.
    waiting: Mutex<Option<HashMap<u64, Pending>>>,
    expiry_scan: ExpiryScan,
}

impl Default for Forwards {
    fn default() -> Self {
        // The lower half of the id space: a node would need centuries of
        // forwards to wrap, and two incarnations collide with odds of 2^-63.
        Forwards {
            next_id: AtomicU64::new(rand::random::<u64>() >> 1),
            waiting: Mutex::new(Some(HashMap::new())),
            expiry_scan: ExpiryScan::default(),
        }
    }
}

impl Forwards {
    /// No forwarded command waits for its answer.
    pub fn is_empty(&self) -> bool {
        self.waiting.lock().as_ref().is_none_or(|w| w.is_empty())
    }

    /// Registers a new request to member `to`; `reply` gets how it ended,
    /// at the latest (as a timeout) shortly after `deadline`. `Err`: closed,
    /// `reply` is the caller's to answer (nothing was sent).
    pub fn register(&self, to: &str, deadline: Instant, reply: Reply) -> std::result::Result<u64, Reply> {
        let mut waiting = self.waiting.lock();
        let Some(waiting) = waiting.as_mut() else {
            return Err(reply);
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        let pending = Pending {
            to: to.to_string(),
            deadline,
            reply,
        };
        waiting.insert(id, pending);
        Ok(id)
    }

    /// Delivers a response from member `from` to its waiter. Ignored if the
    /// waiter gave up, or if the request was not sent to `from`.
    pub fn resolve(&self, from: &str, resp: ClientResponse) {
        let id = resp.request_id;
        self.answer(from, id, Answer::Response(resp));
    }

    /// Reports that request `id` to `to` could not be sent at all.
    pub fn not_sent(&self, to: &str, id: u64) {
        self.answer(to, id, Answer::NotSent);
    }

    /// Answers with `err` the requests among `ids` sent to `to` that are still waiting.
    pub fn fail_some(&self, to: &str, ids: &[u64], err: &Error) {
        for &id in ids {
            self.answer(to, id, Answer::GaveUp(err.clone()));
        }
    }

    /// Reports that the link to `to` broke with the requests among `ids` in
    /// flight (`err` says their outcome is unknown).
    pub fn in_doubt(&self, to: &str, ids: &[u64], err: &Error) {
        for &id in ids {
            self.answer(to, id, Answer::InDoubt(err.clone()));
        }
    }

    fn answer(&self, member: &str, id: u64, answer: Answer) {
        let taken = {
            let mut waiting = self.waiting.lock();
            let waiting = waiting.as_mut();
            match waiting {
                Some(w) if w.get(&id).is_some_and(|p| p.to == member) => w.remove(&id),
                _ => None,
            }
        };
        if let Some(p) = taken {
            (p.reply)(answer);
        }
    }

    /// Answers `Timeout` to the requests whose caller's deadline passed
    /// (scanning at most every 100 ms: [`ExpiryScan`]).
    pub fn expire(&self, now: Instant) {
        if !self.expiry_scan.due(now) {
            return;
        }
        let expired: Vec<Pending> = {
            let mut waiting = self.waiting.lock();
            let Some(waiting) = waiting.as_mut() else {
                return;
            };
            let ids: Vec<u64> = waiting
                .iter()
                .filter(|(_, p)| p.deadline <= now)
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| waiting.remove(id)).collect()
        };
        for p in expired {
            (p.reply)(Answer::GaveUp(Error::Timeout(format!(
                "no answer from the leader {} in time; the command may or may not have been applied",
                p.to
            ))));
        }
    }

    /// Fails every waiting request, and closes: nothing is registered after.
    pub fn fail_all(&self, err: &Error) {
        let all: Vec<Pending> = self
            .waiting
            .lock()
            .take()
            .into_iter()
            .flatten()
            .map(|(_, p)| p)
            .collect();
        for p in all {
            (p.reply)(Answer::GaveUp(err.clone()));
        }
    }
}

pub use crate::wire::result::{response_from_result, result_from_response};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ResultCode;
    use bytes::Bytes;
    use std::time::Duration;

    #[test]
    fn every_error_round_trips_through_the_wire() {
        let errors = [
            Error::NotFound,
            Error::NoLeader("a".into()),
            Error::Timeout("b".into()),
            Error::InvalidArgument("c".into()),
            Error::Io("d".into()),
            Error::Corruption("e".into()),
            Error::Stopped("f".into()),
            Error::Busy("g".into()),
            Error::Locked("l".into()),
            Error::NotHolder("n".into()),
            Error::Internal("h".into()),
            Error::StateMachine("s".into()),
            Error::Conflict("c".into()),
            Error::Compacted("p".into()),
            Error::SessionExpired("x".into()),
        ];
        for e in errors {
            let resp = response_from_result(7, Err(e.clone()), "");
            assert_eq!(result_from_response(resp), Err(e));
        }
        let failed = response_from_result(7, Err(Error::Failed("disk".into())), "");
        assert!(matches!(result_from_response(failed), Err(Error::NoLeader(_))));
        let ok = response_from_result(1, Ok(Some(Bytes::from_static(b"v"))), "");
        assert_eq!(result_from_response(ok), Ok(Bytes::from_static(b"v")));
    }

    /// Registers a request whose answer lands in a channel.
    fn register(f: &Forwards, to: &str, deadline: Instant) -> (u64, crossbeam_channel::Receiver<Answer>) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let Ok(id) = f.register(
            to,
            deadline,
            Box::new(move |a| {
                let _ = tx.send(a);
            }),
        ) else {
            panic!("closed")
        };
        (id, rx)
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn responses_reach_their_waiter_only() {
        let f = Forwards::default();
        let (a, rx_a) = register(&f, "l:1", later());
        let (b, rx_b) = register(&f, "l:1", later());
        f.resolve("l:1", response_from_result(b, Ok(None), ""));
        assert!(rx_a.try_recv().is_err());
        assert!(matches!(rx_b.try_recv().unwrap(), Answer::Response(r) if r.request_id == b));
        f.resolve("l:1", response_from_result(a, Ok(None), ""));
        assert!(matches!(rx_a.try_recv().unwrap(), Answer::Response(r) if r.request_id == a));
        f.resolve("l:1", response_from_result(a, Ok(None), ""));
        assert!(rx_a.try_recv().is_err(), "answered once");
    }

    /// Issue 6, item 1: a restarted node's first request must not share the
    /// id of the one its previous incarnation had in flight.
    #[test]
    fn request_ids_differ_across_incarnations() {
        let before_restart = register(&Forwards::default(), "l:1", later()).0;
        let after_restart = register(&Forwards::default(), "l:1", later()).0;
        assert_ne!(before_restart, after_restart);
    }

    /// Issue 6, item 1: only the member a request went to can answer it.
    #[test]
    fn a_reply_from_another_member_is_ignored() {
        let f = Forwards::default();
        let (id, rx) = register(&f, "leader:1", later());
        f.resolve(
            "other:2",
            response_from_result(id, Err(Error::NoLeader("x".into())), ""),
        );
        assert!(rx.try_recv().is_err());
        f.resolve("leader:1", response_from_result(id, Ok(None), ""));
        assert!(
            matches!(rx.try_recv().unwrap(), Answer::Response(r) if r.code == ResultCode::ResultOk as i32)
        );
    }

    #[test]
    fn in_doubt_requests_are_answered_once() {
        let f = Forwards::default();
        let (a, rx_a) = register(&f, "l:1", later());
        let (b, rx_b) = register(&f, "m:2", later());
        f.in_doubt("l:1", &[a, b], &Error::Timeout("link broke".into()));
        assert!(matches!(
            rx_a.try_recv().unwrap(),
            Answer::InDoubt(Error::Timeout(_))
        ));
        assert!(rx_b.try_recv().is_err(), "b went to another member");
        f.not_sent("m:2", b);
        assert!(matches!(rx_b.try_recv().unwrap(), Answer::NotSent));
    }

    /// Issue 9: an async caller is answered by its deadline even if the
    /// leader never answers, and the request is forgotten.
    #[test]
    fn requests_past_their_deadline_are_answered_timeout_and_forgotten() {
        let f = Forwards::default();
        let now = Instant::now();
        let (a, rx_a) = register(&f, "l:1", now);
        let (_, rx_b) = register(&f, "l:1", now + Duration::from_secs(60));
        f.expire(now);
        assert!(matches!(
            rx_a.try_recv().unwrap(),
            Answer::GaveUp(Error::Timeout(_))
        ));
        assert!(rx_b.try_recv().is_err(), "not due yet");
        f.resolve("l:1", response_from_result(a, Ok(None), ""));
        assert!(rx_a.try_recv().is_err(), "forgotten");
        assert_eq!(f.waiting.lock().as_ref().unwrap().len(), 1);
    }

    /// A reply may forward again: it runs outside the lock.
    #[test]
    fn a_reply_may_register_another_request() {
        let f = std::sync::Arc::new(Forwards::default());
        let f2 = f.clone();
        let Ok(id) = f.register(
            "l:1",
            later(),
            Box::new(move |_| {
                assert!(f2.register("l:1", later(), Box::new(|_| {})).is_ok());
            }),
        ) else {
            panic!("closed")
        };
        f.not_sent("l:1", id);
        assert_eq!(f.waiting.lock().as_ref().unwrap().len(), 1);
    }

    /// Issue 20, item 9: a request registered after the node closed comes
    /// back to its caller instead of waiting for an answer that never comes.
    #[test]
    fn nothing_is_registered_once_the_forwards_are_failed() {
        let f = Forwards::default();
        let (_, rx) = register(&f, "l:1", later());
        f.fail_all(&Error::Stopped("closed".into()));
        assert!(matches!(
            rx.try_recv().unwrap(),
            Answer::GaveUp(Error::Stopped(_))
        ));
        assert!(f.register("l:1", later(), Box::new(|_| {})).is_err());
    }
}
