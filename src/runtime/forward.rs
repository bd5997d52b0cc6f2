//! Commands a follower forwards to the leader, and their answers.

use crate::error::{Error, Result};
use crate::wire::{ClientResponse, ResultCode};
use bytes::Bytes;
use crossbeam_channel::{bounded, Receiver, Sender};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Forwarded commands awaiting the leader's answer. Thread-safe.
#[derive(Default)]
pub struct Forwards {
    next_id: AtomicU64,
    waiting: Mutex<HashMap<u64, Sender<ClientResponse>>>,
}

impl Forwards {
    /// Registers a new request; the receiver gets its response.
    pub fn register(&self) -> (u64, Receiver<ClientResponse>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = bounded(1);
        self.waiting.lock().insert(id, tx);
        (id, rx)
    }

    /// Delivers a response to its waiter (ignored if the waiter gave up).
    pub fn resolve(&self, resp: ClientResponse) {
        if let Some(tx) = self.waiting.lock().remove(&resp.request_id) {
            let _ = tx.try_send(resp);
        }
    }

    /// Forgets a request whose caller stopped waiting.
    pub fn abandon(&self, id: u64) {
        self.waiting.lock().remove(&id);
    }

    /// Fails every waiting request.
    pub fn fail_all(&self, err: &Error) {
        for (id, tx) in self.waiting.lock().drain() {
            let _ = tx.try_send(response_from_result(id, Err(err.clone()), ""));
        }
    }
}

/// The wire form of a command's outcome.
pub fn response_from_result(
    request_id: u64,
    result: Result<Option<Bytes>>,
    leader_hint: &str,
) -> ClientResponse {
    let (code, value, message) = match result {
        Ok(v) => (ResultCode::ResultOk, v.unwrap_or_default(), String::new()),
        Err(e) => {
            let code = match &e {
                Error::NotFound => ResultCode::ResultNotFound,
                Error::NoLeader(_) => ResultCode::ResultNoLeader,
                Error::Timeout(_) => ResultCode::ResultTimeout,
                Error::InvalidArgument(_) => ResultCode::ResultInvalidArgument,
                Error::Io(_) => ResultCode::ResultIo,
                Error::Corruption(_) => ResultCode::ResultCorruption,
                Error::Stopped(_) => ResultCode::ResultStopped,
                Error::Busy(_) => ResultCode::ResultBusy,
                _ => ResultCode::ResultInternal,
            };
            (code, Bytes::new(), message_of(&e))
        }
    };
    ClientResponse {
        request_id,
        code: code as i32,
        value,
        message,
        leader_hint: leader_hint.to_string(),
    }
}

/// The outcome carried by a response. A `Get` that succeeded always has a value
/// (possibly empty); writes ignore it.
pub fn result_from_response(resp: ClientResponse) -> Result<Bytes> {
    let m = resp.message;
    match ResultCode::try_from(resp.code).unwrap_or(ResultCode::ResultInternal) {
        ResultCode::ResultOk => Ok(resp.value),
        ResultCode::ResultNotFound => Err(Error::NotFound),
        ResultCode::ResultNoLeader => Err(Error::NoLeader(m)),
        ResultCode::ResultTimeout => Err(Error::Timeout(m)),
        ResultCode::ResultInvalidArgument => Err(Error::InvalidArgument(m)),
        ResultCode::ResultIo => Err(Error::Io(m)),
        ResultCode::ResultCorruption => Err(Error::Corruption(m)),
        ResultCode::ResultStopped => Err(Error::Stopped(m)),
        ResultCode::ResultBusy => Err(Error::Busy(m)),
        ResultCode::ResultInternal => Err(Error::Internal(m)),
    }
}

/// The message of an error without its kind prefix.
fn message_of(e: &Error) -> String {
    match e {
        Error::NotFound => String::new(),
        Error::NoLeader(m)
        | Error::Timeout(m)
        | Error::InvalidArgument(m)
        | Error::Io(m)
        | Error::Corruption(m)
        | Error::Stopped(m)
        | Error::Busy(m)
        | Error::Internal(m) => m.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            Error::Internal("h".into()),
        ];
        for e in errors {
            let resp = response_from_result(7, Err(e.clone()), "");
            assert_eq!(result_from_response(resp), Err(e));
        }
        let ok = response_from_result(1, Ok(Some(Bytes::from_static(b"v"))), "");
        assert_eq!(result_from_response(ok), Ok(Bytes::from_static(b"v")));
    }

    #[test]
    fn responses_reach_their_waiter_only() {
        let f = Forwards::default();
        let (a, rx_a) = f.register();
        let (b, rx_b) = f.register();
        f.resolve(response_from_result(b, Ok(None), ""));
        assert!(rx_a.try_recv().is_err());
        assert_eq!(rx_b.try_recv().unwrap().request_id, b);
        f.abandon(a);
        f.resolve(response_from_result(a, Ok(None), ""));
        assert!(rx_a.try_recv().is_err());
    }
}
