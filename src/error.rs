//! The one error type of floyd. Its mapping to C status codes lives in the FFI layer.

/// Everything that can go wrong in a floyd call.
///
/// `NoLeader`, `Timeout` and `Busy` are retryable; `Io`, `Corruption` and
/// `Internal` mean this node cannot go on safely; `Timeout` means the outcome
/// of the command is unknown (it may or may not have been applied).
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
    #[error("internal error (a bug, please report): {0}")]
    Internal(String),
}

impl Error {
    /// Whether the same call may succeed if retried later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::NoLeader(_) | Error::Timeout(_) | Error::Busy(_))
    }

    /// Whether the node that returned it cannot continue safely.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Error::Io(_) | Error::Corruption(_) | Error::Internal(_))
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
