//! The one error type of floyd. Its mapping to C status codes lives in the FFI layer.

/// Everything that can go wrong in a floyd call.
///
/// Retry-safe (the command certainly was not applied): `NoLeader`, `Busy`.
/// Outcome unknown (it may or may not have been applied): `Timeout`, and
/// `Stopped` for a command that was in flight when the node closed. A retried
/// write after those is a new command and may be applied a second time: the
/// client session makes the library's own retries safe, not the caller's.
/// Fatal (the node stopped taking part): `Failed` for every call after the
/// failure; `Io`, `Corruption` and `Internal` name the cause where it happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("not found")]
    NotFound,
    #[error("no leader: {0}")]
    NoLeader(String),
    #[error("timed out, outcome unknown: {0}")]
    Timeout(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("I/O error: {0}")]
    Io(String),
    #[error("corruption: {0}")]
    Corruption(String),
    /// The node is closing or closed. A command that was already in flight
    /// may or may not have been applied.
    #[error("stopped: {0}")]
    Stopped(String),
    #[error("busy: {0}")]
    Busy(String),
    /// `try_lock`: the lock is held by another holder and has not expired.
    #[error("locked: {0}")]
    Locked(String),
    /// `unlock`: the caller does not hold the lock (another does, it expired, or it is free).
    #[error("not the holder: {0}")]
    NotHolder(String),
    #[error("internal error (a bug, please report): {0}")]
    Internal(String),
    /// `propose`: the user-defined state machine's `apply` returned this
    /// error. Deterministic: every replica refused the command alike, and
    /// the node goes on.
    #[error("the state machine refused the command: {0}")]
    StateMachine(String),
    /// The node hit a fatal error earlier (the message says which: I/O,
    /// corruption, a bug) and no longer takes part in the cluster; it answers
    /// every call with this until it is closed and reopened.
    #[error("node failed: {0}")]
    Failed(String),
    /// A compare-and-swap or a transaction's condition did not hold:
    /// nothing was written.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The revision asked for is older than the history kept.
    #[error("compacted: {0}")]
    Compacted(String),
    /// The client session a command was sent under is unknown to the
    /// group (it expired, or was evicted): the command was not applied.
    /// The library opens a new session and tries again itself when no
    /// earlier try can have been applied; a caller sees it only through
    /// what it turns into (`Timeout` when an earlier try's outcome is unknown).
    #[error("session expired: {0}")]
    SessionExpired(String),
}

impl Error {
    /// Whether retrying the same call is safe: the command was certainly not
    /// applied. `Timeout` is not: its command may have been applied, and a
    /// retried write could be applied twice.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::NoLeader(_) | Error::Busy(_))
    }

    /// Whether the node that returned it cannot continue safely.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Error::Io(_) | Error::Corruption(_) | Error::Internal(_) | Error::Failed(_)
        )
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

impl From<rocksdb::Error> for Error {
    fn from(e: rocksdb::Error) -> Self {
        match e.kind() {
            rocksdb::ErrorKind::Corruption => Error::Corruption(e.into_string()),
            rocksdb::ErrorKind::InvalidArgument => Error::InvalidArgument(e.into_string()),
            rocksdb::ErrorKind::Busy | rocksdb::ErrorKind::TryAgain => Error::Busy(e.into_string()),
            _ => Error::Io(e.into_string()),
        }
    }
}

/// Result with floyd's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 6, item 13: a timed-out write may have been applied; retrying it
    /// blindly could apply it twice, so it is not called retry-safe.
    #[test]
    fn only_errors_whose_command_was_certainly_not_applied_are_retryable() {
        assert!(!Error::Timeout("t".into()).is_retryable());
        assert!(!Error::Stopped("s".into()).is_retryable());
        assert!(Error::NoLeader("n".into()).is_retryable());
        assert!(Error::Busy("b".into()).is_retryable());
        assert!(Error::Failed("f".into()).is_fatal() && !Error::Failed("f".into()).is_retryable());
    }
}
