"""Python binding of floyd, an embeddable Raft library: a replicated, durable,
linearizable key-value store inside your own process.

    import floyd

    with floyd.Floyd("127.0.0.1:8901,127.0.0.1:8902,127.0.0.1:8903",
                     "127.0.0.1", 8901, "/var/lib/app/floyd-1") as node:
        node.write(b"key", b"value")
        node.read(b"key")        # b"value"

Many Raft groups in one process share a Host (one address, directory and set
of threads); each group is a Floyd:

    with floyd.Host("127.0.0.1", 8901, "/var/lib/app/floyd") as host:
        users = host.open_group(1, ["127.0.0.1:8901", "127.0.0.1:8902", "127.0.0.1:8903"])
        users.write(b"key", b"value")

The shared library is found through FLOYD_LIB (full path to libfloyd.so), else
in $CARGO_TARGET_DIR/{release,debug}, ~/.cache/floyd/target/{release,debug},
<repo>/target/{release,debug}, else ctypes.util.find_library("floyd").

The coordination calls work on etcd's model: the group's revision grows by one
per change, and every key has its create and mod revisions and its version:

    value, meta = node.read_meta(b"config")
    node.write_if(b"config", b"new", meta.mod_revision)   # ConflictError if it moved
    page = node.scan(b"jobs/", floyd.prefix_end(b"jobs/"), limit=100)
    with floyd.Txn() as t:
        t.if_value(b"leader", floyd.CMP_EQUAL, b"me").put(floyd.THEN, b"epoch", b"2")
        response = node.txn(t)

Leases: keys that vanish when the lease they are attached to ends (its TTL
passes without a keep-alive, or it is revoked):

    lease = node.lease_grant(10_000)                      # the lease id
    node.write_with_lease(b"svc/me", b"10.0.0.1", lease)
    node.lease_keepalive(lease)                           # every few seconds
    node.lease_time_to_live(lease)                        # LeaseStatus(id, ttl_ms, remaining_ms, keys)
    node.lease_revoke(lease)                              # deletes b"svc/me"

Watches: a callback told of every change to a range of keys, in revision
order, from now (0) or from a past revision still in the node's history:

    def on_change(events, error):                         # on the library's watch thread
        for e in events:                                  # WatchEvent(type, key, value, mod_revision)
            print(e.type == floyd.EVENT_PUT, e.key, e.value, e.mod_revision)
        if error is not None:                             # the last call: StoppedError, CompactedError, BusyError
            print("ended:", error)
    watch_id = node.watch(b"svc/", floyd.prefix_end(b"svc/"), 0, on_change)
    node.unwatch(watch_id)                                # no call after it returns

Errors are raised as subclasses of FloydError, one per FLOYD_* status code.
Note: the timeout error is named FloydTimeoutError (it also subclasses the
built-in TimeoutError); the I/O error is FloydIOError (also an OSError).
"""

from __future__ import annotations


from ._state_machine import StateMachine
from ._watch import EVENT_DELETE, EVENT_PUT, WatchEvent
from ._errors import (
    BUSY,
    COMPACTED,
    CONFLICT,
    CORRUPTION,
    INTERNAL,
    FAILED,
    INVALID_ARGUMENT,
    IO_ERROR,
    LOCKED,
    NO_LEADER,
    NOT_FOUND,
    NOT_HOLDER,
    OK,
    STATE_MACHINE,
    STOPPED,
    TIMEOUT,
    BusyError,
    CompactedError,
    ConflictError,
    CorruptionError,
    FloydError,
    FloydIOError,
    FloydTimeoutError,
    InternalError,
    FailedError,
    InvalidArgumentError,
    LockedError,
    NoLeaderError,
    NotFoundError,
    NotHolderError,
    StateMachineError,
    StoppedError,
)

from ._util import (
    CMP_EQUAL,
    CMP_GREATER,
    CMP_LESS,
    CMP_NOT_EQUAL,
    ELSE,
    LOG_DEBUG,
    LOG_ERROR,
    LOG_FATAL,
    LOG_INFO,
    LOG_NONE,
    LOG_WARN,
    THEN,
    TXN_ELSE,
    TXN_THEN,
    library_path,
    status_str,
    version,
)
from ._coordination import (
    KeyValue,
    KvList,
    KvMeta,
    LeaseStatus,
    Txn,
    TxnResponse,
    prefix_end,
)
from ._node import Floyd
from ._host import Host
from . import _util

# Type aliases for the values the calls take (for users' own annotations).
BytesLike = _util.BytesLike
LogCallback = _util.LogCallback

__version__ = "0.1.0"

__all__ = [
    "Floyd",
    "Host",
    "StateMachine",
    "Txn",
    "KvMeta",
    "KeyValue",
    "KvList",
    "TxnResponse",
    "LeaseStatus",
    "WatchEvent",
    "EVENT_PUT",
    "EVENT_DELETE",
    "prefix_end",
    "version",
    "status_str",
    "library_path",
    "LOG_DEBUG",
    "LOG_INFO",
    "LOG_WARN",
    "LOG_ERROR",
    "LOG_FATAL",
    "LOG_NONE",
    "CMP_EQUAL",
    "CMP_NOT_EQUAL",
    "CMP_LESS",
    "CMP_GREATER",
    "TXN_ELSE",
    "TXN_THEN",
    "ELSE",
    "THEN",
    "OK",
    "NOT_FOUND",
    "NO_LEADER",
    "TIMEOUT",
    "LOCKED",
    "NOT_HOLDER",
    "INVALID_ARGUMENT",
    "IO_ERROR",
    "CORRUPTION",
    "STOPPED",
    "BUSY",
    "INTERNAL",
    "FAILED",
    "STATE_MACHINE",
    "CONFLICT",
    "COMPACTED",
    "FloydError",
    "NotFoundError",
    "NoLeaderError",
    "FloydTimeoutError",
    "LockedError",
    "NotHolderError",
    "InvalidArgumentError",
    "FloydIOError",
    "CorruptionError",
    "StoppedError",
    "BusyError",
    "InternalError",
    "FailedError",
    "StateMachineError",
    "ConflictError",
    "CompactedError",
]
