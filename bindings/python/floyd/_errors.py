"""Exceptions: one class per FLOYD_* status code."""

from __future__ import annotations

# Status codes (include/floyd.h).
OK = 0
NOT_FOUND = 1
NO_LEADER = 2
TIMEOUT = 3
LOCKED = 4
NOT_HOLDER = 5
INVALID_ARGUMENT = 6
IO_ERROR = 7
CORRUPTION = 8
STOPPED = 9
BUSY = 10
INTERNAL = 11
FAILED = 12
STATE_MACHINE = 13
CONFLICT = 14
COMPACTED = 15

_NAMES = {
    OK: "OK",
    NOT_FOUND: "NOT_FOUND",
    NO_LEADER: "NO_LEADER",
    TIMEOUT: "TIMEOUT",
    LOCKED: "LOCKED",
    NOT_HOLDER: "NOT_HOLDER",
    INVALID_ARGUMENT: "INVALID_ARGUMENT",
    IO_ERROR: "IO_ERROR",
    CORRUPTION: "CORRUPTION",
    STOPPED: "STOPPED",
    BUSY: "BUSY",
    INTERNAL: "INTERNAL",
    FAILED: "FAILED",
    STATE_MACHINE: "STATE_MACHINE",
    CONFLICT: "CONFLICT",
    COMPACTED: "COMPACTED",
}


class FloydError(Exception):
    """A call into floyd failed. ``code`` is the FLOYD_* status code, ``message``
    the library's explanation (may be empty)."""

    code: int = INTERNAL

    def __init__(self, message: str = "", code: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    @property
    def status(self) -> str:
        """The code's name, e.g. ``"NOT_FOUND"``."""
        return _NAMES.get(self.code, "UNKNOWN")

    def __str__(self) -> str:
        return f"{self.status}: {self.message}" if self.message else self.status

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code})"


class NotFoundError(FloydError, KeyError):
    """FLOYD_NOT_FOUND: the key does not exist (or the lease: expired, revoked
    or never granted). Also a ``KeyError``."""

    code = NOT_FOUND


class NoLeaderError(FloydError):
    """FLOYD_NO_LEADER: no leader is known right now; retry later."""

    code = NO_LEADER


class FloydTimeoutError(FloydError, TimeoutError):
    """FLOYD_TIMEOUT: no answer in time; the command may or may not have been
    applied. Also the built-in ``TimeoutError`` (so ``except TimeoutError`` works)."""

    code = TIMEOUT


class LockedError(FloydError):
    """FLOYD_LOCKED: the lock is held by another holder."""

    code = LOCKED


class NotHolderError(FloydError):
    """FLOYD_NOT_HOLDER: unlock by someone who does not hold the lock (or it expired)."""

    code = NOT_HOLDER


class InvalidArgumentError(FloydError, ValueError):
    """FLOYD_INVALID_ARGUMENT: bad input (empty key, bad address, value too big, ...).
    Also a ``ValueError``."""

    code = INVALID_ARGUMENT


class FloydIOError(FloydError, OSError):
    """FLOYD_IO_ERROR: storage or network failure on this node. Also an ``OSError``."""

    code = IO_ERROR


class CorruptionError(FloydError):
    """FLOYD_CORRUPTION: on-disk data failed a check."""

    code = CORRUPTION


class StoppedError(FloydError):
    """FLOYD_STOPPED: the node is closing or closed (also raised by the binding
    for any call on a closed ``Floyd``)."""

    code = STOPPED


class BusyError(FloydError):
    """FLOYD_BUSY: a membership change is in progress, or the node is overloaded."""

    code = BUSY


class InternalError(FloydError):
    """FLOYD_INTERNAL: a bug in floyd; please report it."""

    code = INTERNAL


class FailedError(FloydError):
    """FLOYD_FAILED: this node stopped after a fatal error (I/O, corruption or a
    bug, as the message says) and takes no further part; close and reopen it."""

    code = FAILED


class StateMachineError(FloydError):
    """FLOYD_STATE_MACHINE: ``propose``: the state machine's ``apply`` refused
    the command (the message says why); every node refused it alike and goes on."""

    code = STATE_MACHINE


class ConflictError(FloydError):
    """FLOYD_CONFLICT: a compare-and-swap (``write_if``, ``delete_if``) found
    the key at another revision than expected: nothing was written. Read the
    key again (``read_meta``) and retry."""

    code = CONFLICT


class CompactedError(FloydError):
    """FLOYD_COMPACTED: the revision asked for is older than the history kept
    (``Floyd.watch`` from it); also a watch's last call when a snapshot
    replaced the node's state (watch again from the last revision seen + 1)."""

    code = COMPACTED


_BY_CODE: dict[int, type[FloydError]] = {
    cls.code: cls
    for cls in (
        NotFoundError,
        NoLeaderError,
        FloydTimeoutError,
        LockedError,
        NotHolderError,
        InvalidArgumentError,
        FloydIOError,
        CorruptionError,
        StoppedError,
        BusyError,
        InternalError,
        FailedError,
        StateMachineError,
        ConflictError,
        CompactedError,
    )
}


def error_for(code: int, message: str = "") -> FloydError:
    """The exception for a non-OK status code (``FloydError`` for an unknown one)."""
    cls = _BY_CODE.get(code)
    if cls is None:
        return FloydError(message or f"unknown status code {code}", code)
    return cls(message)
