//! Everyone waiting on a node, in one registry: commands queued and
//! proposed, reads, commands forwarded to the leader, membership changes,
//! leadership transfers, commands parked until a leader is known, and the
//! count of async calls in flight.
//!
//! Two things are done to all of them alike, here and nowhere else: callers
//! whose deadline passed are answered ([`Waiters::expire`], on the primary
//! thread's tick), and when the node closes or fails every caller is
//! answered and every table closed ([`Waiters::close`]): a caller that
//! passed its check just before gets its command back to answer, never a
//! wait nobody ends.

use super::execute::{InFlight, Parked};
use super::forward::Forwards;
use super::membership::ConfigWaiters;
use super::proposals::Proposals;
use super::reads::Reads;
use super::session::ClientSession;
use super::transfer::TransferWaiters;
use crate::error::Error;
use std::time::Instant;

/// The waiter tables of one node. Thread-safe.
#[derive(Default)]
pub struct Waiters {
    pub proposals: Proposals,
    pub reads: Reads,
    pub forwards: Forwards,
    pub config: ConfigWaiters,
    pub transfers: TransferWaiters,
    /// Commands waiting for a leader before their next attempt.
    pub parked: Parked,
    /// Async commands not yet answered (admission control).
    pub async_in_flight: InFlight,
    /// The handle's client session, and the writes waiting for it to open.
    pub session: std::sync::Arc<ClientSession>,
}

impl Waiters {
    /// Answers `Timeout` to every caller whose deadline passed at `now`.
    /// (Parked commands are looked at on every turn of the primary thread.)
    pub fn expire(&self, now: Instant) {
        self.proposals.expire(now);
        self.forwards.expire(now);
        self.reads.expire(now);
        self.config.expire(now);
        self.transfers.expire(now);
        for op in self.session.take_expired(now) {
            op.answer(Err(Error::Timeout(
                "no client session could be opened in time; the command was not sent".into(),
            )));
        }
    }

    /// Whether nobody waits on the node: only then may its group go quiet
    /// (a quiet group is not ticked, and ticks expire the waiters).
    pub fn is_idle(&self) -> bool {
        self.proposals.is_empty()
            && self.reads.is_empty()
            && self.forwards.is_empty()
            && self.config.is_empty()
            && self.transfers.is_empty()
            && self.parked.is_empty()
            && self.session.is_idle()
            && self.async_in_flight.count() == 0
    }

    /// Answers every caller and closes every table. `not_applied` for what
    /// certainly was not applied, `in_doubt` for what may have been.
    pub fn close(&self, not_applied: &Error, in_doubt: &Error) {
        self.proposals.fail_all(not_applied, in_doubt);
        self.forwards.fail_all(in_doubt);
        self.config.fail_all(in_doubt);
        self.transfers.fail_all(in_doubt);
        self.reads.fail_all(not_applied);
        self.parked.fail_all(not_applied);
        for op in self.session.close() {
            op.answer(Err(not_applied.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Membership;
    use crate::runtime::membership::Want;
    use crate::runtime::proposals::{Completion, PendingCommand};
    use crossbeam_channel::{unbounded, Sender};
    use std::time::Duration;

    fn answer_to(tx: &Sender<&'static str>, name: &'static str) -> Completion {
        let tx = tx.clone();
        Box::new(move |r| {
            assert!(r.is_err(), "{name} answered {r:?}");
            let _ = tx.send(name);
        })
    }

    /// Issue 21, item 8: when the node failed, its pending reads were left
    /// out of the callers answered (three hand-kept lists), and waited for
    /// their deadline. One registry answers every table, reads included.
    #[test]
    fn closing_answers_the_callers_of_every_table_once() {
        let w = Waiters::default();
        let later = Instant::now() + Duration::from_secs(60);
        let (tx, rx) = unbounded();
        let queued = PendingCommand {
            payload: Default::default(),
            deadline: later,
            done: answer_to(&tx, "queued"),
        };
        assert!(w.proposals.push(queued).is_ok());
        let proposed = PendingCommand {
            payload: Default::default(),
            deadline: later,
            done: answer_to(&tx, "proposed"),
        };
        assert!(w.proposals.wait_for(1, 1, proposed).is_ok());
        assert!(w
            .reads
            .push(
                crate::runtime::reads::Query::Get(Default::default()),
                later,
                answer_to(&tx, "read")
            )
            .is_ok());
        let forwarded = answer_to(&tx, "forwarded");
        let reply = Box::new(move |a| match a {
            super::super::forward::Answer::GaveUp(e) => forwarded(Err(e)),
            other => panic!("{other:?}"),
        });
        assert!(w.forwards.register("l:1", later, reply).is_ok());
        let m = Membership::new(["a:1".to_string()]);
        let change = w
            .config
            .wait(Want::Voter("b:2".into()), &m, later, answer_to(&tx, "change"));
        assert!(matches!(change, Ok(None)));
        assert!(w
            .transfers
            .wait("b:2".into(), later, answer_to(&tx, "transfer"))
            .is_ok());
        drop(tx);
        let stopped = Error::Stopped("closed".into());
        w.close(&stopped, &stopped);
        let mut answered: Vec<&str> = rx.iter().collect();
        answered.sort_unstable();
        assert_eq!(
            answered,
            ["change", "forwarded", "proposed", "queued", "read", "transfer"]
        );
    }
}
