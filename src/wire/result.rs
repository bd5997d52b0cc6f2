//! A command's outcome on the wire: in a forwarded command's answer, and
//! as a client session keeps it for a retry (`state_machine/session.rs`).

use super::{ClientResponse, ResultCode};
use crate::error::{Error, Result};
use bytes::Bytes;

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
                Error::Locked(_) => ResultCode::ResultLocked,
                Error::NotHolder(_) => ResultCode::ResultNotHolder,
                Error::StateMachine(_) => ResultCode::ResultStateMachine,
                Error::Conflict(_) => ResultCode::ResultConflict,
                Error::Compacted(_) => ResultCode::ResultCompacted,
                Error::SessionExpired(_) => ResultCode::ResultSessionExpired,
                // The forwarder should wait for another leader: a failed
                // leader applies nothing more.
                Error::Failed(_) => ResultCode::ResultNoLeader,
                _ => ResultCode::ResultInternal,
            };
            let message = match &e {
                Error::Failed(m) => format!("the leader failed: {m}"),
                _ => message_of(&e),
            };
            (code, Bytes::new(), message)
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
        ResultCode::ResultLocked => Err(Error::Locked(m)),
        ResultCode::ResultNotHolder => Err(Error::NotHolder(m)),
        ResultCode::ResultStateMachine => Err(Error::StateMachine(m)),
        ResultCode::ResultInternal => Err(Error::Internal(m)),
        ResultCode::ResultConflict => Err(Error::Conflict(m)),
        ResultCode::ResultCompacted => Err(Error::Compacted(m)),
        ResultCode::ResultSessionExpired => Err(Error::SessionExpired(m)),
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
        | Error::Locked(m)
        | Error::NotHolder(m)
        | Error::Internal(m)
        | Error::StateMachine(m)
        | Error::Conflict(m)
        | Error::Compacted(m)
        | Error::SessionExpired(m)
        | Error::Failed(m) => m.clone(),
    }
}
