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

import atexit
import contextlib
import ctypes
import json
import os
import threading
import time
import weakref
from ctypes import byref, c_bool, c_size_t, c_uint64, c_void_p
from concurrent.futures import Future
from typing import Callable, Iterable, List, NamedTuple, Optional, Tuple, Union

from . import _async, _lib, _watch
from ._state_machine import StateMachine, make_callbacks
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
    error_for,
)

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

# Log levels (FLOYD_LOG_*), for set_log_level, log_level= and the log callback.
LOG_DEBUG = 1
LOG_INFO = 2
LOG_WARN = 3
LOG_ERROR = 4
LOG_FATAL = 5
LOG_NONE = 6

# Transaction comparisons (FLOYD_CMP_*), for Txn.if_value and its siblings.
CMP_EQUAL = 0
CMP_NOT_EQUAL = 1
CMP_LESS = 2
CMP_GREATER = 3

# Transaction branches (FLOYD_TXN_*), for Txn.put, Txn.delete and Txn.get;
# THEN and ELSE are short names for them.
TXN_ELSE = 0  # runs when some comparison fails
TXN_THEN = 1  # runs when every comparison holds
ELSE = TXN_ELSE
THEN = TXN_THEN

_L = _lib.lib

BytesLike = Union[bytes, bytearray, memoryview, str]
LogCallback = Callable[[int, str], None]


def version() -> str:
    """The version of the loaded libfloyd, e.g. ``"0.1.0"``."""
    return _L.floyd_version().decode("utf-8")


def status_str(code: int) -> str:
    """The library's name for a status code (``"NOT_FOUND"``, ``"UNKNOWN"`` for unknown codes)."""
    return _L.floyd_status_str(code).decode("utf-8")


def library_path() -> str:
    """Path of the loaded libfloyd."""
    return _lib.lib_path


# --------------------------------------------------------------------------
# helpers


def _take_string(ptr: c_void_p, length: Optional[int] = None) -> bytes:
    """Copies a library-allocated buffer and frees it with floyd_free."""
    if not ptr.value:
        if length:
            raise InternalError(f"libfloyd returned a NULL buffer of length {length}")
        return b""
    try:
        if length is None:
            return ctypes.string_at(ptr.value)
        return ctypes.string_at(ptr.value, length)
    finally:
        _L.floyd_free(ptr.value)
        ptr.value = None


def _check(code: int, errmsg: Optional[c_void_p] = None, what: str = "") -> None:
    """Frees errmsg (whatever the code) and raises the error for a non-OK code;
    `what` names the call when the library gives no message."""
    message = ""
    if errmsg is not None and errmsg.value:
        message = _take_string(errmsg).decode("utf-8", "replace")
    if code != OK and not message and what:
        message = f"{what} failed"
    if code != OK:
        raise error_for(code, message)


def _to_bytes(data: BytesLike, what: str) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"{what} must be bytes or str, not {type(data).__name__}")


_Path = Union[str, "os.PathLike[str]"]


def _tls_paths(tls) -> Tuple[bytes, bytes, bytes]:
    """``tls`` as the three C paths ``(ca, cert, key)``."""
    if isinstance(tls, (str, bytes)) or len(tls) != 3:
        raise TypeError("tls must be a (ca_pem_path, cert_pem_path, key_pem_path) tuple")
    ca, cert, key = tls
    return (_c_text(ca, "tls ca_pem_path"), _c_text(cert, "tls cert_pem_path"), _c_text(key, "tls key_pem_path"))


def _c_text(value: Union[str, bytes, "os.PathLike[str]"], what: str) -> bytes:
    """A NUL-terminated UTF-8 argument (members, address, path, cluster id)."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    if not isinstance(value, bytes):
        raise TypeError(f"{what} must be str, not {type(value).__name__}")
    if b"\0" in value:
        raise InvalidArgumentError(f"{what} contains a NUL character")
    return value


def _members_csv(members: Union[str, Iterable[str]]) -> str:
    if isinstance(members, str):
        return members
    if isinstance(members, bytes):
        return members.decode("utf-8")
    items = list(members)
    for m in items:
        if not isinstance(m, str):
            raise TypeError(f"members must be 'ip:port' strings, not {type(m).__name__}")
        if "," in m:
            raise InvalidArgumentError(f"member {m!r} contains a comma")
    return ",".join(items)


def _uint64(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not 0 <= value < 1 << 64:
        raise InvalidArgumentError(f"{what} must be in [0, 2**64), got {value}")
    return value


def _level(level: int) -> int:
    if isinstance(level, bool) or not isinstance(level, int):
        raise TypeError(f"log level must be an int (floyd.LOG_*), not {type(level).__name__}")
    if not LOG_DEBUG <= level <= LOG_NONE:
        raise InvalidArgumentError(f"log level must be LOG_DEBUG..LOG_NONE (1..6), got {level}")
    return level


# Set on a library thread while it runs a callback of a Floyd or a Host (a
# weak reference to it): the contract forbids calling that node's API from
# there (floyd_close would join the very thread it runs on), so such calls
# raise instead of deadlocking. A host's callbacks (its log callback, its
# groups' state machines) run on the threads every group of the host shares:
# from there, neither the host nor any of its groups may be called.
_in_callback = threading.local()

# Every open node and host, closed at interpreter exit (the nodes, groups
# included, first) before ctypes and the callbacks go away.
_open_nodes: "weakref.WeakSet[Floyd]" = weakref.WeakSet()
_open_hosts: "weakref.WeakSet[Host]" = weakref.WeakSet()
_leaked: list = []  # (handle, callback, ...) tuples that could not be closed safely


@atexit.register
def _close_all() -> None:
    for node in list(_open_nodes):
        try:
            node.close()
        except Exception:
            pass
    for host in list(_open_hosts):
        try:
            host.close()
        except Exception:
            pass


def _calling_own(obj) -> bool:
    """Whether this thread runs a callback of `obj` or of what shares its
    threads (a host and all of its groups)."""
    owner = getattr(_in_callback, "node", None)
    current = owner() if owner is not None else None
    return current is not None and current._domain() is obj._domain()


@contextlib.contextmanager
def _callback_of(owner: "weakref.ref[Floyd]"):
    """Marks this thread as running one of `owner`'s callbacks (a weak
    reference: the callbacks must not keep their node alive)."""
    outer = getattr(_in_callback, "node", None)
    _in_callback.node = owner
    try:
        yield
    finally:
        _in_callback.node = outer


def _make_trampoline(callback: LogCallback, owner: "weakref.ref[Floyd]"):
    """The C log callback: decodes the line and calls `callback(level, message)`."""

    def trampoline(_user_data, level, msg, msg_len):
        text = ctypes.string_at(msg, msg_len).decode("utf-8", "replace") if msg else ""
        outer = getattr(_in_callback, "node", None)
        _in_callback.node = owner
        try:
            callback(level, text)
        finally:
            _in_callback.node = outer
        # An exception escapes to ctypes, which reports it via sys.unraisablehook
        # and returns normally to the library.

    return _lib.LOG_CALLBACK(trampoline)


# Group options (floyd_options_set_<name>): what each group of a host has of
# its own, and what Floyd and Host.open_group both take.
_GROUP_NUMBERS = (
    "check_leader_us",
    "heartbeat_us",
    "append_entries_size_once",
    "append_entries_count_once",
    "request_timeout_ms",
    "snapshot_log_entries",
    "snapshot_log_bytes",
    "snapshot_keep_entries",
    "snapshot_chunk_bytes",
    "snapshot_bytes_per_sec",
    "max_async_in_flight",
    "history_revisions",
    "session_timeout_ms",
)
_GROUP_FLAGS = ("single_mode", "join", "lease_reads", "quiesce")


def _setopt(opts, name: str, *values) -> None:
    _check(getattr(_L, name)(opts, *values), what=name)


def _set_group_options(opts, options: dict) -> None:
    """Sets the group options in `options` (name: value; None keeps the default) on `opts`."""
    for field in _GROUP_NUMBERS:
        value = options.get(field)
        if value is not None:
            _setopt(opts, f"floyd_options_set_{field}", _uint64(value, field))
    for field in _GROUP_FLAGS:
        value = options.get(field)
        if value is not None:
            _setopt(opts, f"floyd_options_set_{field}", bool(value))


# --------------------------------------------------------------------------
# coordination: revisions, range scans, transactions


class KvMeta(NamedTuple):
    """A key's revisions: the group's revision when it was created (since its
    last deletion) and last modified, its writes since creation, and its
    lease (0: none). A key written before revisions were counted reads as
    created and modified at revision 1, version 1."""

    create_revision: int
    mod_revision: int
    version: int
    lease: int


class KeyValue(NamedTuple):
    """A key with its value and revisions."""

    key: bytes
    value: bytes
    meta: KvMeta


class KvList(NamedTuple):
    """One page of :meth:`Floyd.scan`: ``kvs`` in key order; ``more`` when the
    range goes on past the last key (scan again from its key + ``b"\\0"``);
    ``revision`` the group's revision at the state read."""

    kvs: List[KeyValue]
    more: bool
    revision: int


class TxnResponse(NamedTuple):
    """What :meth:`Floyd.txn` answered: whether the THEN branch ran, the
    group's revision after the transaction, and the gets of the branch that
    ran, in order (a missing key left out)."""

    succeeded: bool
    revision: int
    gets: List[KeyValue]


class LeaseStatus(NamedTuple):
    """What :meth:`Floyd.lease_time_to_live` answered: the lease's id, the
    TTL it was granted with (each keep-alive renews it for as long), what is
    left of it now, and the number of keys attached to it."""

    id: int
    ttl_ms: int
    remaining_ms: int
    keys: int


def _size(value: int, what: str) -> int:
    n = _uint64(value, what)
    if n >= 1 << (8 * ctypes.sizeof(c_size_t)):
        raise InvalidArgumentError(f"{what} must be below 2**{8 * ctypes.sizeof(c_size_t)}, got {n}")
    return n


def _cmp(cmp: int) -> int:
    if isinstance(cmp, bool) or not isinstance(cmp, int):
        raise TypeError(f"cmp must be an int (floyd.CMP_*), not {type(cmp).__name__}")
    if not CMP_EQUAL <= cmp <= CMP_GREATER:
        raise InvalidArgumentError(f"unknown comparison {cmp}: use floyd.CMP_EQUAL, CMP_NOT_EQUAL, CMP_LESS or CMP_GREATER")
    return cmp


def _branch(branch: int) -> int:
    if isinstance(branch, bool) or not isinstance(branch, int):
        raise TypeError(f"branch must be floyd.THEN or floyd.ELSE, not {type(branch).__name__}")
    if branch not in (TXN_THEN, TXN_ELSE):
        raise InvalidArgumentError(f"unknown branch {branch}: use floyd.THEN (1) or floyd.ELSE (0)")
    return branch


def _meta(m: "_lib.KvMetaStruct") -> KvMeta:
    return KvMeta(int(m.create_revision), int(m.mod_revision), int(m.version), int(m.lease))


def _copy(ptr: c_void_p, length: int) -> bytes:
    """Copies `length` bytes the library lends (not freed here)."""
    if length == 0:
        return b""  # the pointer of an empty buffer may dangle: never read it
    if not ptr.value:
        raise InternalError(f"libfloyd returned a NULL buffer of length {length}")
    return ctypes.string_at(ptr.value, length)


def _take_kv_list(ptr: c_void_p) -> KvList:
    """Copies a floyd_kv_list_t (keys, values, revisions, more, revision) and
    frees it with floyd_kv_list_free."""
    if not ptr.value:
        raise InternalError("libfloyd returned OK without a list")
    try:
        key, key_len, value, value_len = c_void_p(), c_size_t(0), c_void_p(), c_size_t(0)
        meta = _lib.KvMetaStruct()
        kvs = []
        for i in range(_L.floyd_kv_list_len(ptr.value)):
            code = _L.floyd_kv_list_get(
                ptr.value, i, byref(key), byref(key_len), byref(value), byref(value_len), byref(meta)
            )
            _check(code, what=f"floyd_kv_list_get({i})")
            kvs.append(KeyValue(_copy(key, key_len.value), _copy(value, value_len.value), _meta(meta)))
        return KvList(kvs, bool(_L.floyd_kv_list_more(ptr.value)), int(_L.floyd_kv_list_revision(ptr.value)))
    finally:
        _L.floyd_kv_list_free(ptr.value)
        ptr.value = None


def _free_kv_list(ptr: c_void_p) -> None:
    if ptr.value:
        _L.floyd_kv_list_free(ptr.value)
        ptr.value = None


def prefix_end(prefix: BytesLike) -> bytes:
    """The first key after every key that starts with ``prefix``: a prefix
    scan is ``scan(prefix, prefix_end(prefix))``. ``b""`` (to the last key)
    when there is none (an empty prefix, or one of 0xff bytes only)."""
    p = _to_bytes(prefix, "prefix")
    end, length = c_void_p(), c_size_t(0)
    code = _L.floyd_prefix_end(p, len(p), byref(end), byref(length))
    if code != OK:
        _take_string(end)
    _check(code, what="floyd_prefix_end")
    return _take_string(end, length.value)


class Txn:
    """A transaction being built for :meth:`Floyd.txn`: comparisons, then a
    THEN branch (run when every comparison holds; an empty transaction runs
    it) and an ELSE branch of puts, deletes and gets, applied atomically at
    one revision on every replica. At most 128 comparisons and 128
    operations per branch, a key written at most once per branch (both
    checked when it is committed: InvalidArgumentError).

    The builder methods return the transaction, so they chain::

        with floyd.Txn() as t:
            t.if_mod_revision(b"k", floyd.CMP_EQUAL, rev).put(floyd.THEN, b"k", b"v").get(floyd.ELSE, b"k")
            response = node.txn(t)

    It holds library memory: :meth:`close` (or the end of a ``with`` block)
    frees it, as does garbage collection. A transaction may be committed
    many times, from many threads at once; the builder methods wait for
    commits in flight on other threads. Keys and values are bytes or str
    (UTF-8)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._commits = 0  # commits in flight
        self._ptr: Optional[int] = None
        ptr = _L.floyd_txn_new()
        if not ptr:
            raise MemoryError("floyd_txn_new returned NULL")
        self._ptr = ptr

    def _add(self, what: str, key: bytes, call) -> "Txn":
        with self._cond:
            while self._commits:
                self._cond.wait()
            if self._ptr is None:
                raise InvalidArgumentError("the transaction is closed")
            code = call(self._ptr)
        if code != OK:
            raise error_for(code, f"Txn.{what}: " + ("key is empty" if not key else "refused"))
        return self

    def if_value(self, key: BytesLike, cmp: int, value: BytesLike) -> "Txn":
        """Compares ``key``'s value with ``value`` (a missing key is unequal
        to every value, and neither less nor greater)."""
        k, c, v = _to_bytes(key, "key"), _cmp(cmp), _to_bytes(value, "value")
        return self._add("if_value", k, lambda t: _L.floyd_txn_if_value(t, k, len(k), c, v, len(v)))

    def if_version(self, key: BytesLike, cmp: int, version: int) -> "Txn":
        """Compares ``key``'s version (its writes since creation; 0: absent)."""
        k, c, n = _to_bytes(key, "key"), _cmp(cmp), _uint64(version, "version")
        return self._add("if_version", k, lambda t: _L.floyd_txn_if_version(t, k, len(k), c, n))

    def if_mod_revision(self, key: BytesLike, cmp: int, revision: int) -> "Txn":
        """Compares the revision ``key`` was last modified at (0: absent)."""
        k, c, n = _to_bytes(key, "key"), _cmp(cmp), _uint64(revision, "revision")
        return self._add("if_mod_revision", k, lambda t: _L.floyd_txn_if_mod_revision(t, k, len(k), c, n))

    def if_create_revision(self, key: BytesLike, cmp: int, revision: int) -> "Txn":
        """Compares the revision ``key`` was created at (0: absent)."""
        k, c, n = _to_bytes(key, "key"), _cmp(cmp), _uint64(revision, "revision")
        return self._add("if_create_revision", k, lambda t: _L.floyd_txn_if_create_revision(t, k, len(k), c, n))

    def put(self, branch: int, key: BytesLike, value: BytesLike, lease: int = 0) -> "Txn":
        """Puts ``key`` in ``branch`` (floyd.THEN or floyd.ELSE), attached to
        lease ``lease`` (0: none; see :meth:`Floyd.lease_grant`). If the
        branch runs and the lease does not exist (expired, revoked or never
        granted), the commit raises NotFoundError, nothing written."""
        b, k, v, n = _branch(branch), _to_bytes(key, "key"), _to_bytes(value, "value"), _uint64(lease, "lease")
        return self._add("put", k, lambda t: _L.floyd_txn_put(t, b, k, len(k), v, len(v), n))

    def delete(self, branch: int, key: BytesLike) -> "Txn":
        """Deletes ``key`` in ``branch`` (a missing key: nothing to do)."""
        b, k = _branch(branch), _to_bytes(key, "key")
        return self._add("delete", k, lambda t: _L.floyd_txn_delete(t, b, k, len(k)))

    def get(self, branch: int, key: BytesLike) -> "Txn":
        """Reads ``key`` with its revisions in ``branch``, after the branch's
        earlier writes; a missing key is left out of the response's gets."""
        b, k = _branch(branch), _to_bytes(key, "key")
        return self._add("get", k, lambda t: _L.floyd_txn_get(t, b, k, len(k)))

    def _begin_commit(self) -> int:
        with self._cond:
            if self._ptr is None:
                raise InvalidArgumentError("the transaction is closed")
            self._commits += 1
            return self._ptr

    def _end_commit(self) -> None:
        with self._cond:
            self._commits -= 1
            if self._commits == 0:
                self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def close(self) -> None:
        """Frees the transaction (after commits in flight on other threads
        return). Idempotent; afterwards using it raises InvalidArgumentError."""
        with self._cond:
            while self._commits:
                self._cond.wait()
            ptr, self._ptr = self._ptr, None
        if ptr:
            _L.floyd_txn_free(ptr)

    def __enter__(self) -> "Txn":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_ptr", None) is not None:
            try:
                self.close()
            except Exception:
                pass

    def __repr__(self) -> str:
        return f"<floyd.Txn {'closed' if self.closed else 'open'}>"


# --------------------------------------------------------------------------
# what a node and a host share: a handle, calls in flight, an orderly close


class _Handle:
    _kind = "node"

    def _init_handle(self) -> None:
        self._handle: Optional[int] = None
        self._cond = threading.Condition()
        self._busy = 0  # calls in flight
        self._closing = False
        self._closed = threading.Event()

    def _domain(self):
        """What shares this object's threads: calls from its callbacks are refused."""
        return self

    def _enter(self, in_watch_ok: bool = False) -> int:
        """Marks a call in flight and returns the handle; raises StoppedError
        once closed. `in_watch_ok`: the call may come from a watch callback
        of this node (unwatch)."""
        if _calling_own(self) and not (in_watch_ok and _watch.in_callback()):
            raise RuntimeError(f"floyd: a callback must not call its own {self._kind}'s API")
        with self._cond:
            if self._handle is None or self._closing:
                raise StoppedError(f"the {self._kind} is closed")
            self._busy += 1
            return self._handle

    def _leave(self) -> None:
        with self._cond:
            self._busy -= 1
            if self._busy == 0:
                self._cond.notify_all()

    def _take_for_close(self) -> Optional[int]:
        """Starts closing: waits for calls in flight on other threads and
        returns the handle to close, or None when there is nothing to close
        (never opened, closed, or closing on another thread: then once that
        is done)."""
        if _calling_own(self):
            raise RuntimeError(f"floyd: a callback must not close its own {self._kind}")
        with self._cond:
            if self._closing or self._handle is None:
                first = False
            else:
                first = True
                self._closing = True
                while self._busy:
                    self._cond.wait()
                handle, self._handle = self._handle, None
        if not first:
            if self._closing:
                self._closed.wait()  # another thread is closing: return once it is done
            return None
        return handle

    @property
    def closed(self) -> bool:
        return self._handle is None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------
# the node


class Floyd(_Handle):
    """A member of a floyd cluster, running inside this process.

    ``members`` is ``"ip:port,ip:port,..."`` or a list of ``"ip:port"``
    strings, this node (``ip:port``) included; ``path`` is its data directory.
    Keyword options left at ``None`` keep the library's defaults. With
    ``join=True`` the node starts empty and waits to be added by the
    cluster's leader (``add_server`` on any member); ``members`` then need
    not name it.

    Thread-safe: every method may be called from many threads at once.
    :meth:`close` waits for calls in flight on other threads to return, then
    stops and joins the node's threads; afterwards every call raises
    :class:`StoppedError`.

    ``log_callback(level, message)`` runs on library threads; it must be
    quick and must not call this node's methods (such calls raise
    ``RuntimeError``).

    ``history_revisions`` is how many revisions of changes the node keeps
    for :meth:`watch` from a past revision (default 10,000).

    ``session_timeout_ms`` is how long the handle's client session lives
    without a write (default an hour). The session makes the library's own
    retries of a write (after a lost answer or a failover) apply once.

    With ``state_machine`` (a :class:`StateMachine`) the node replicates it
    instead of the key-value store: :meth:`propose` drives it, and the
    key-value, coordination, lease, watch and lock methods raise InvalidArgumentError. Every
    member must run the same kind of machine.

    ``tls=(ca_pem_path, cert_pem_path, key_pem_path)`` turns on mutual TLS
    between members: a member then talks only to peers whose certificate
    chains to the CA and speaks for the member they are (it names the
    member's IP as an IP subjectAltName and its address as a URI
    subjectAltName ``floyd://ip:port``; one naming only the IP is accepted
    only where no other member shares that IP). Without it, peer traffic is unauthenticated and must
    stay on a trusted network.

    :meth:`Host.open_group` returns a Floyd too: one Raft group of a
    :class:`Host`, with every method below. Its :meth:`close` stops the group
    on the host and keeps its data; once the host is closed, its calls raise
    StoppedError (and :meth:`close` is still what releases it).
    """

    def __init__(
        self,
        members: Union[str, Iterable[str]],
        ip: str,
        port: int,
        path: Union[str, "os.PathLike[str]"],
        *,
        check_leader_us: Optional[int] = None,
        heartbeat_us: Optional[int] = None,
        append_entries_size_once: Optional[int] = None,
        append_entries_count_once: Optional[int] = None,
        single_mode: Optional[bool] = None,
        request_timeout_ms: Optional[int] = None,
        cluster_id: Optional[str] = None,
        log_level: Optional[int] = None,
        log_callback: Optional[LogCallback] = None,
        join: Optional[bool] = None,
        snapshot_log_entries: Optional[int] = None,
        snapshot_log_bytes: Optional[int] = None,
        snapshot_keep_entries: Optional[int] = None,
        snapshot_chunk_bytes: Optional[int] = None,
        snapshot_bytes_per_sec: Optional[int] = None,
        lease_reads: Optional[bool] = None,
        quiesce: Optional[bool] = None,
        max_async_in_flight: Optional[int] = None,
        history_revisions: Optional[int] = None,
        session_timeout_ms: Optional[int] = None,
        tls: Optional[Tuple[_Path, _Path, _Path]] = None,
        state_machine: Optional[StateMachine] = None,
    ):
        self._init_node("", None, 0)
        self._log_callback = log_callback

        members_b = _c_text(_members_csv(members), "members")
        ip_b = _c_text(ip, "ip")
        path_b = _c_text(path, "path")
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError(f"port must be an int, not {type(port).__name__}")
        if not 0 <= port <= 0xFFFF:
            raise InvalidArgumentError(f"port {port} is out of range")
        self._name = f"{ip}:{port}"

        opts = _L.floyd_options_new(members_b, ip_b, port, path_b)
        if not opts:
            raise MemoryError("floyd_options_new returned NULL")
        try:
            _set_group_options(
                opts,
                dict(
                    check_leader_us=check_leader_us,
                    heartbeat_us=heartbeat_us,
                    append_entries_size_once=append_entries_size_once,
                    append_entries_count_once=append_entries_count_once,
                    request_timeout_ms=request_timeout_ms,
                    snapshot_log_entries=snapshot_log_entries,
                    snapshot_log_bytes=snapshot_log_bytes,
                    snapshot_keep_entries=snapshot_keep_entries,
                    snapshot_chunk_bytes=snapshot_chunk_bytes,
                    snapshot_bytes_per_sec=snapshot_bytes_per_sec,
                    max_async_in_flight=max_async_in_flight,
                    history_revisions=history_revisions,
                    session_timeout_ms=session_timeout_ms,
                    single_mode=single_mode,
                    join=join,
                    lease_reads=lease_reads,
                    quiesce=quiesce,
                ),
            )
            if cluster_id is not None:
                _setopt(opts, "floyd_options_set_cluster_id", _c_text(cluster_id, "cluster_id"))
            if log_level is not None:
                _setopt(opts, "floyd_options_set_log_level", _level(log_level))
            if tls is not None:
                ca, cert, key = _tls_paths(tls)
                _setopt(opts, "floyd_options_set_tls", ca, cert, key)
            if log_callback is not None:
                if not callable(log_callback):
                    raise TypeError("log_callback must be callable(level, message)")
                self._callback_ref = _make_trampoline(log_callback, weakref.ref(self))
                _setopt(opts, "floyd_options_set_log_callback", self._callback_ref, None)
            self._open(
                lambda out, err: _L.floyd_open(opts, out, err),
                lambda sm, out, err: _L.floyd_open_with_state_machine(opts, sm, out, err),
                state_machine,
            )
        finally:
            _L.floyd_options_free(opts)
        _open_nodes.add(self)

    # -- lifecycle ---------------------------------------------------------

    def _init_node(self, name: str, host: "Optional[Host]", group_id: int) -> None:
        self._init_handle()
        self._callback_ref = None  # the CFUNCTYPE object: must outlive the handle
        self._machine_refs = None  # the state machine's callbacks: must outlive the handle too
        self._watches: dict = {}  # the live watches by id (guarded by _watch's lock)
        self._log_callback = None
        self._name = name
        self._host = host  # a group's host: kept alive while the group is open
        self._group_id = group_id
        self._is_group = host is not None

    def _open(self, open_kv, open_machine, state_machine: Optional[StateMachine]) -> None:
        """Opens the handle: ``open_kv(out, errmsg)`` for the key-value store,
        ``open_machine(sm, out, errmsg)`` for ``state_machine``."""
        handle = c_void_p()
        errmsg = c_void_p()
        if state_machine is None:
            code = open_kv(byref(handle), byref(errmsg))
        else:
            if not isinstance(state_machine, StateMachine):
                raise TypeError("state_machine must be a floyd.StateMachine")
            owner = weakref.ref(self)
            self._machine_refs = make_callbacks(state_machine, lambda: _callback_of(owner))
            struct = self._machine_refs[0]
            code = open_machine(byref(struct), byref(handle), byref(errmsg))
        _check(code, errmsg)
        if not handle.value:
            raise InternalError("floyd returned OK without a handle")
        self._handle = handle.value

    def _domain(self):
        # A group shares its host's threads with the host's other groups.
        host = self._host
        return host if host is not None else self

    def close(self) -> None:
        """Stops the node and joins its threads (a group of a Host: stops the
        group on the host, keeping its data). Idempotent; waits for calls in
        flight on other threads to return first."""
        handle = self._take_for_close()
        if handle is None:
            return
        try:
            _L.floyd_close(handle)
        finally:
            # Every library thread is joined: the callbacks can no longer run
            # (every watch had its last call).
            _watch.closed(self._watches)
            self._callback_ref = None
            self._machine_refs = None
            self._host = None
            _open_nodes.discard(self)
            self._closed.set()

    @property
    def group_id(self) -> int:
        """The Raft group this node runs on its host (0 for a node opened on its own)."""
        return self._group_id

    @property
    def host(self) -> "Optional[Host]":
        """The Host this group runs on (None for a node opened on its own, or once closed)."""
        return self._host

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            # Cannot close here (e.g. the last reference died inside this node's
            # own log callback): leak the node rather than free a callback the
            # library may still call.
            _leaked.append(
                (
                    getattr(self, "_handle", None),
                    getattr(self, "_callback_ref", None),
                    getattr(self, "_machine_refs", None),
                    getattr(self, "_host", None),
                )
            )

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        group = f" group {self._group_id}" if self._is_group else ""
        return f"<floyd.Floyd {self._name}{group} {state}>"

    # -- data --------------------------------------------------------------

    def write(self, key: BytesLike, value: BytesLike) -> None:
        """Stores ``value`` under ``key`` once a majority has it (through the leader)."""
        k, v = _to_bytes(key, "key"), _to_bytes(value, "value")
        h = self._enter()
        try:
            errmsg = c_void_p()
            code = _L.floyd_write(h, k, len(k), v, len(v), byref(errmsg))
        finally:
            self._leave()
        _check(code, errmsg)

    def delete(self, key: BytesLike) -> None:
        """Deletes ``key`` (deleting a missing key succeeds)."""
        k = _to_bytes(key, "key")
        h = self._enter()
        try:
            errmsg = c_void_p()
            code = _L.floyd_delete(h, k, len(k), byref(errmsg))
        finally:
            self._leave()
        _check(code, errmsg)

    def _read(self, fn, key: BytesLike) -> bytes:
        k = _to_bytes(key, "key")
        value, length, errmsg = c_void_p(), c_size_t(0), c_void_p()
        h = self._enter()
        try:
            code = fn(h, k, len(k), byref(value), byref(length), byref(errmsg))
        finally:
            self._leave()
        if code != OK:
            _take_string(value)  # the contract says nothing was written; free it if it was
        _check(code, errmsg)
        return _take_string(value, length.value)

    def read(self, key: BytesLike) -> bytes:
        """Linearizable read of ``key``; raises NotFoundError if it does not exist."""
        return self._read(_L.floyd_read, key)

    def dirty_read(self, key: BytesLike) -> bytes:
        """This node's local copy of ``key``: fast, possibly stale."""
        return self._read(_L.floyd_dirty_read, key)

    # -- coordination --------------------------------------------------------

    def read_meta(self, key: BytesLike) -> Tuple[bytes, KvMeta]:
        """Linearizable read of ``key``'s value and revisions, as ``(value,
        KvMeta)``; raises NotFoundError if it does not exist."""
        k = _to_bytes(key, "key")
        value, length, meta, errmsg = c_void_p(), c_size_t(0), _lib.KvMetaStruct(), c_void_p()
        h = self._enter()
        try:
            code = _L.floyd_read_meta(h, k, len(k), byref(value), byref(length), byref(meta), byref(errmsg))
        finally:
            self._leave()
        if code != OK:
            _take_string(value)
        _check(code, errmsg)
        return _take_string(value, length.value), _meta(meta)

    def write_if(self, key: BytesLike, value: BytesLike, expected_mod_revision: int) -> int:
        """Compare-and-swap: stores ``value`` under ``key`` only if the key was
        last modified at revision ``expected_mod_revision`` (0: only if it is
        absent) and returns the revision of the write. Raises ConflictError
        (nothing written) if the key is at another revision."""
        k, v = _to_bytes(key, "key"), _to_bytes(value, "value")
        expected = _uint64(expected_mod_revision, "expected_mod_revision")
        revision, errmsg = c_uint64(0), c_void_p()
        h = self._enter()
        try:
            code = _L.floyd_write_if(h, k, len(k), v, len(v), expected, byref(revision), byref(errmsg))
        finally:
            self._leave()
        _check(code, errmsg)
        return revision.value

    def delete_if(self, key: BytesLike, expected_mod_revision: int) -> None:
        """Deletes ``key`` only if it was last modified at revision
        ``expected_mod_revision`` (0: only if absent, which deletes nothing).
        Raises ConflictError (nothing deleted) otherwise."""
        k = _to_bytes(key, "key")
        expected = _uint64(expected_mod_revision, "expected_mod_revision")
        errmsg = c_void_p()
        h = self._enter()
        try:
            code = _L.floyd_delete_if(h, k, len(k), expected, byref(errmsg))
        finally:
            self._leave()
        _check(code, errmsg)

    def scan(self, start: BytesLike, end: Optional[BytesLike] = b"", limit: int = 0) -> KvList:
        """Linearizable scan of the keys in ``[start, end)`` in byte order
        (``end`` empty or None: to the last key), with values and revisions,
        read from one snapshot of the store: at most ``limit`` keys (0: as
        many as a 32 MiB page holds). When ``more`` is set the range goes on:
        scan again from the last key + ``b"\\0"``. A prefix scan is
        ``scan(prefix, floyd.prefix_end(prefix))``."""
        s = _to_bytes(start, "start")
        e = b"" if end is None else _to_bytes(end, "end")
        n = _size(limit, "limit")
        out, errmsg = c_void_p(), c_void_p()
        h = self._enter()
        try:
            code = _L.floyd_scan(h, s, len(s), e, len(e), n, byref(out), byref(errmsg))
        finally:
            self._leave()
        if code != OK:
            _free_kv_list(out)
        _check(code, errmsg)
        return _take_kv_list(out)

    def count(self, start: BytesLike, end: Optional[BytesLike] = b"") -> int:
        """The number of keys in ``[start, end)`` (as :meth:`scan`'s range), linearizable."""
        s = _to_bytes(start, "start")
        e = b"" if end is None else _to_bytes(end, "end")
        count, errmsg = c_uint64(0), c_void_p()
        h = self._enter()
        try:
            code = _L.floyd_count(h, s, len(s), e, len(e), byref(count), byref(errmsg))
        finally:
            self._leave()
        _check(code, errmsg)
        return count.value

    def txn(self, t: Txn) -> TxnResponse:
        """Runs transaction ``t`` (one log entry, atomic at one revision on
        every replica; a follower forwards it) and returns a
        :class:`TxnResponse`. Whichever branch ran, it returns; raises
        InvalidArgumentError for a transaction over the limits, NotFoundError
        for a put (of the branch that ran) naming a lease that does not exist
        (nothing written), BusyError/NoLeaderError when it was certainly not
        applied (retry)."""
        if not isinstance(t, Txn):
            raise TypeError(f"txn takes a floyd.Txn, not {type(t).__name__}")
        succeeded, gets, revision, errmsg = c_bool(False), c_void_p(), c_uint64(0), c_void_p()
        h = self._enter()
        try:
            ptr = t._begin_commit()
            try:
                code = _L.floyd_txn_commit(h, ptr, byref(succeeded), byref(gets), byref(revision), byref(errmsg))
            finally:
                t._end_commit()
        finally:
            self._leave()
        if code != OK:
            _free_kv_list(gets)
        _check(code, errmsg)
        return TxnResponse(bool(succeeded.value), revision.value, _take_kv_list(gets).kvs)

    # -- leases --------------------------------------------------------------

    def lease_grant(self, ttl_ms: int) -> int:
        """Grants a lease of ``ttl_ms`` milliseconds and returns its id (never
        0). A TTL shorter than twice the election timeout (2 x
        ``check_leader_us``) is raised to it; 0 or over a year raises
        InvalidArgumentError. The lease ends, deleting every key attached to
        it at one revision, once its TTL passes without a keep-alive, or when
        revoked. BusyError/NoLeaderError: not granted, retry."""
        ttl = _uint64(ttl_ms, "ttl_ms")
        lease_id, errmsg = c_uint64(0), c_void_p()
        h = self._enter()
        try:
            code = _L.floyd_lease_grant(h, ttl, byref(lease_id), byref(errmsg))
        finally:
            self._leave()
        _check(code, errmsg)
        return lease_id.value

    def lease_keepalive(self, lease_id: int) -> int:
        """Renews lease ``lease_id`` for its TTL from now and returns the TTL
        (ms). The lease lasts at least that long from when this call began,
        across leader changes too. NotFoundError once it expired or was
        revoked (its keys are gone or going); InvalidArgumentError for id 0.
        Keep-alives from many threads share log entries: call it freely (a
        third of the TTL is the usual period); it is safe to retry whatever
        the outcome."""
        n = _uint64(lease_id, "lease_id")
        ttl, errmsg = c_uint64(0), c_void_p()
        h = self._enter()
        try:
            code = _L.floyd_lease_keepalive(h, n, byref(ttl), byref(errmsg))
        finally:
            self._leave()
        _check(code, errmsg)
        return ttl.value

    def lease_revoke(self, lease_id: int) -> None:
        """Ends lease ``lease_id`` now, deleting every key attached to it at
        one revision. NotFoundError if there is no such lease (expired,
        revoked already or never granted); InvalidArgumentError for id 0."""
        n = _uint64(lease_id, "lease_id")
        errmsg = c_void_p()
        h = self._enter()
        try:
            code = _L.floyd_lease_revoke(h, n, byref(errmsg))
        finally:
            self._leave()
        _check(code, errmsg)

    def lease_time_to_live(self, lease_id: int) -> LeaseStatus:
        """Lease ``lease_id``'s TTL, what is left of it and its number of
        keys, as a :class:`LeaseStatus`; linearizable (as :meth:`read`).
        NotFoundError if there is no such lease; InvalidArgumentError for id 0."""
        n = _uint64(lease_id, "lease_id")
        ttl, remaining, keys, errmsg = c_uint64(0), c_uint64(0), c_uint64(0), c_void_p()
        h = self._enter()
        try:
            code = _L.floyd_lease_time_to_live(h, n, byref(ttl), byref(remaining), byref(keys), byref(errmsg))
        finally:
            self._leave()
        _check(code, errmsg)
        return LeaseStatus(n, ttl.value, remaining.value, keys.value)

    def write_with_lease(self, key: BytesLike, value: BytesLike, lease_id: int) -> None:
        """Stores ``value`` under ``key`` attached to lease ``lease_id``: the
        key is deleted when the lease ends (a later write without a lease
        detaches it). NotFoundError (nothing written) if there is no such
        lease; InvalidArgumentError as :meth:`write`'s, and for id 0."""
        k, v = _to_bytes(key, "key"), _to_bytes(value, "value")
        n = _uint64(lease_id, "lease_id")
        errmsg = c_void_p()
        h = self._enter()
        try:
            code = _L.floyd_write_with_lease(h, k, len(k), v, len(v), n, byref(errmsg))
        finally:
            self._leave()
        _check(code, errmsg)

    # -- watches -------------------------------------------------------------

    def watch(
        self,
        start: BytesLike,
        end: Optional[BytesLike],
        start_revision: int,
        callback: "_watch.WatchCallback",
    ) -> int:
        """Calls ``callback(events, error)`` with every change to a key in
        ``[start, end)`` (``end`` ``b""``/``None``: every key from ``start``
        on; a prefix watch ends at :func:`prefix_end`) from revision
        ``start_revision`` on (``0``: from the next change), in revision
        order, each change once, as this node applies them (a follower too,
        across leader changes); returns the watch id for :meth:`unwatch`.

        ``events`` is a list of :class:`WatchEvent` with ``error`` None; the
        changes of one transaction share a revision. When the watch ends by
        itself, one last call gets ``[]`` and the exception that ended it:
        StoppedError (the node closed: :meth:`close` makes that call before
        it returns), CompactedError (a snapshot replaced the node's state) or
        BusyError (the callback fell more than 100,000 changes or 64 MiB
        behind); after the last two, watch again from the last revision seen
        + 1. Changes before now come from the history the node keeps
        (``history_revisions``): CompactedError (nothing watched) if
        ``start_revision`` is older.

        The callback runs on the library's watch thread (a host's is shared
        by its groups), one call at a time per watch; the first calls may
        come before ``watch`` returns. Keep it short. It may call
        :meth:`unwatch` of this node (its own watch's too); any other call
        of the node (or of its host and groups) raises RuntimeError there.
        An exception it raises is reported through ``sys.unraisablehook``
        and otherwise ignored. The binding keeps the callback until the
        watch's last call or :meth:`unwatch`.

        InvalidArgumentError for a bound over 64 KiB + 1 bytes or a node
        running a state machine of your own; TypeError for wrong types."""
        s = _to_bytes(start, "start")
        e = b"" if end is None else _to_bytes(end, "end")
        rev = _uint64(start_revision, "start_revision")
        if not callable(callback):
            raise TypeError(f"callback must be callable(events, error), not {type(callback).__name__}")
        owner = weakref.ref(self)
        w = _watch.new(callback, lambda: _callback_of(owner), self._watches)
        watch_id, errmsg = c_uint64(0), c_void_p()
        try:
            h = self._enter()
            try:
                code = _L.floyd_watch(
                    h, s, len(s), e, len(e), rev, _watch.on_watch, w.token, byref(watch_id), byref(errmsg)
                )
            finally:
                self._leave()
        except BaseException:
            _watch.refused(w)
            raise
        if code != OK:
            _watch.refused(w)
            _check(code, errmsg)
        _watch.started(w, watch_id.value)
        return watch_id.value

    def unwatch(self, watch_id: int) -> None:
        """Ends watch ``watch_id`` without a last call: once this returns its
        callback is not called again (called from that very callback: after
        the current call). NotFoundError if there is no such watch:
        unwatched already, never made, or ended by itself (its last call has
        run, or runs at this very moment on the watch thread: if the last
        call matters, wait for it rather than for ``unwatch``)."""
        wid = _uint64(watch_id, "watch_id")
        h = self._enter(in_watch_ok=True)
        try:
            code = _L.floyd_unwatch(h, wid)
        finally:
            self._leave()
        if code == NOT_FOUND:
            raise NotFoundError("no such watch (it ended, or never was)")
        _check(code, what="floyd_unwatch")
        if not _watch.unwatched(self._watches, wid):
            # It had ended by itself and its last call ran (floyd_unwatch
            # waited for it); the library may still have held it.
            raise NotFoundError("no such watch (it ended by itself)")

    # -- async -------------------------------------------------------------

    def _submit_async(self, fn, trampoline, *args) -> "Future":
        token, fut = _async.register()
        h = self._enter()
        try:
            code = fn(h, *args, ctypes.cast(trampoline, c_void_p), c_void_p(token))
        finally:
            self._leave()
        if code != OK:
            _async.forget(token)
            raise error_for(code, f"{fn.__name__} refused")
        return fut

    def write_async(self, key: BytesLike, value: BytesLike) -> "Future":
        """:meth:`write` without waiting: returns a ``concurrent.futures.Future``
        that completes (``None``, or the error :meth:`write` would raise) on a
        library thread, at the latest shortly after the request timeout. Raises
        at once, with no future, for bad input, a closed node, or BusyError when
        ``max_async_in_flight`` calls are unanswered. Futures still pending at
        :meth:`close` fail with StoppedError before it returns."""
        k, v = _to_bytes(key, "key"), _to_bytes(value, "value")
        return self._submit_async(_L.floyd_write_async, _async.on_done, k, len(k), v, len(v))

    def delete_async(self, key: BytesLike) -> "Future":
        """:meth:`delete` without waiting; a future as for :meth:`write_async`."""
        k = _to_bytes(key, "key")
        return self._submit_async(_L.floyd_delete_async, _async.on_done, k, len(k))

    def read_async(self, key: BytesLike) -> "Future":
        """:meth:`read` without waiting: the future's result is the value
        (NotFoundError if the key does not exist), as for :meth:`write_async`."""
        k = _to_bytes(key, "key")
        return self._submit_async(_L.floyd_read_async, _async.on_read, k, len(k))

    def async_in_flight(self) -> int:
        """How many async calls are unanswered."""
        h = self._enter()
        try:
            return int(_L.floyd_async_in_flight(h))
        finally:
            self._leave()

    def propose(self, data: BytesLike) -> bytes:
        """Has the cluster's state machine apply ``data`` once a majority has it
        and returns what its ``apply`` answered on the leader (a follower
        forwards it). Raises StateMachineError when ``apply`` refused it,
        InvalidArgumentError on a node running the key-value store."""
        d = _to_bytes(data, "data")
        result, length, errmsg = c_void_p(), c_size_t(0), c_void_p()
        h = self._enter()
        try:
            code = _L.floyd_propose(h, d, len(d), byref(result), byref(length), byref(errmsg))
        finally:
            self._leave()
        if code != OK:
            _take_string(result)
        _check(code, errmsg)
        return _take_string(result, length.value)

    # -- locks and membership ----------------------------------------------

    def try_lock(self, name: BytesLike, holder: BytesLike, ttl_ms: int) -> int:
        """Takes lock ``name`` for ``holder`` for ``ttl_ms`` ms (1 ms to 24 h), or
        renews it if ``holder`` holds it; returns the fencing token (it grows
        with every acquisition, a renewal keeps it). Raises LockedError if
        another holder has it. Treat the lock as lost ``ttl_ms`` after the call
        was made, and pass the token to whatever the lock protects."""
        n, who, ttl = _to_bytes(name, "name"), _to_bytes(holder, "holder"), _uint64(ttl_ms, "ttl_ms")
        token, errmsg = c_uint64(0), c_void_p()
        h = self._enter()
        try:
            code = _L.floyd_try_lock(h, n, len(n), who, len(who), ttl, byref(token), byref(errmsg))
        finally:
            self._leave()
        _check(code, errmsg)
        return token.value

    def unlock(self, name: BytesLike, holder: BytesLike) -> None:
        """Releases lock ``name`` held by ``holder``; NotHolderError if another
        holds it, it expired or it is free."""
        n, who = _to_bytes(name, "name"), _to_bytes(holder, "holder")
        errmsg = c_void_p()
        h = self._enter()
        try:
            code = _L.floyd_unlock(h, n, len(n), who, len(who), byref(errmsg))
        finally:
            self._leave()
        _check(code, errmsg)

    def _membership(self, fn, server: str) -> None:
        s = _c_text(server, "server")
        errmsg = c_void_p()
        h = self._enter()
        try:
            code = fn(h, s, byref(errmsg))
        finally:
            self._leave()
        _check(code, errmsg)

    def add_server(self, server: str) -> None:
        """Adds ``"ip:port"`` to the cluster (caught up as a learner, then a
        voter); returns once it votes, at once if it is a voter already.
        BusyError while another change is in progress."""
        self._membership(_L.floyd_add_server, server)

    def remove_server(self, server: str) -> None:
        """Removes ``"ip:port"`` from the cluster; returns once the change is
        committed (a removed leader steps down). InvalidArgumentError for a
        non-member or the last voter, BusyError while another change is in progress."""
        self._membership(_L.floyd_remove_server, server)

    def transfer_leader(self, server: str) -> None:
        """Hands leadership to voter ``"ip:port"`` (Raft dissertation §3.10);
        returns once it leads, at once if it does already (a follower forwards
        the request). FloydTimeoutError if it did not take over in time (it is
        down, say: the old leader leads on), InvalidArgumentError for a
        non-voter, BusyError while a membership change or another transfer runs."""
        self._membership(_L.floyd_transfer_leader, server)

    # -- queries -----------------------------------------------------------

    def _text(self, fn) -> str:
        out = c_void_p()
        h = self._enter()
        try:
            code = fn(h, byref(out))
        finally:
            self._leave()
        if code != OK:
            _take_string(out)
        _check(code)
        return _take_string(out).decode("utf-8", "replace")

    def get_leader(self) -> Optional[str]:
        """The leader's ``"ip:port"``, or None when no leader is known."""
        try:
            return self._text(_L.floyd_get_leader)
        except NoLeaderError:
            return None

    def has_leader(self) -> bool:
        """Whether a leader is known."""
        h = self._enter()
        try:
            return bool(_L.floyd_has_leader(h))
        finally:
            self._leave()

    def is_leader(self) -> bool:
        """Whether this node is the leader."""
        h = self._enter()
        try:
            return bool(_L.floyd_is_leader(h))
        finally:
            self._leave()

    def wait_for_leader(self, timeout: float = 10.0, interval: float = 0.01) -> str:
        """Polls until a leader is known and returns it; NoLeaderError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            leader = self.get_leader()
            if leader is not None:
                return leader
            if time.monotonic() >= deadline:
                raise NoLeaderError(f"no leader known after {timeout} s")
            time.sleep(interval)

    def server_status(self) -> str:
        """Floyd's status header line plus this node's row."""
        return self._text(_L.floyd_get_server_status)

    def server_status_json(self) -> dict:
        """This node's status: node, role, term, leader, voted_for,
        last_log_term, last_log_index, commit_index, last_applied, voters,
        learners, config_index, pending_change, peers (on the leader: id,
        match_index, next_index, last_contact_ms), locks_held,
        first_log_index, snapshot_index and client_sessions."""
        return json.loads(self._text(_L.floyd_get_server_status_json))

    def metrics(self) -> str:
        """The metrics of this node's host and group in the OpenMetrics
        text format Prometheus scrapes (``prometheus_client``'s parsers
        read it)."""
        return self._text(_L.floyd_get_metrics)

    def all_servers(self) -> list:
        """Every member of this node's latest configuration (voters and
        learners), as ``"ip:port"`` strings."""
        out, errmsg = c_void_p(), c_void_p()
        h = self._enter()
        try:
            code = _L.floyd_get_all_servers(h, byref(out), byref(errmsg))
        finally:
            self._leave()
        if code != OK:
            _take_string(out)
        _check(code, errmsg)
        csv = _take_string(out).decode("utf-8", "replace")
        return [s for s in csv.split(",") if s]

    def set_log_level(self, level: int) -> None:
        """Lowest level written to ``<path>/LOG`` and the log callback (floyd.LOG_*)."""
        lvl = _level(level)
        h = self._enter()
        try:
            _L.floyd_set_log_level(h, lvl)
        finally:
            self._leave()


# --------------------------------------------------------------------------
# the host of many groups


class Host(_Handle):
    """A host of many Raft groups in this process: one address (``ip:port``,
    where it listens, and what its groups name as their member here), one
    data directory ``path``, one LOG, one log store (one fsync for every
    group's writes) and one fixed set of threads, whatever the number of
    groups. :meth:`open_group` runs a group on it and returns its
    :class:`Floyd`.

    ``workers`` is the number of apply workers (default: one per core, at
    most 8); ``cluster_id`` the name every handshake checks (default
    ``"floyd"``); ``tls=(ca_pem_path, cert_pem_path, key_pem_path)`` mutual
    TLS between hosts (a certificate names the host's address), as for
    :class:`Floyd`. ``log_callback(level, message)`` gets every line of the
    host's LOG, all of its groups'; it runs on library threads and must be
    quick.

    The host's callbacks (its log callback, its groups' state machines) run
    on threads all of its groups share: from there, calling the host or any
    of its groups raises ``RuntimeError``.

    Thread-safe: every method may be called from many threads at once.
    :meth:`close` (also at the end of a ``with`` block) waits for the host's
    calls in flight, then stops every group still open on it and its
    threads; those groups' :class:`Floyd` objects then raise
    :class:`StoppedError` and are released with their own ``close()`` as
    usual. An open group keeps its Host object alive.
    """

    _kind = "host"

    def __init__(
        self,
        ip: str,
        port: int,
        path: Union[str, "os.PathLike[str]"],
        *,
        workers: Optional[int] = None,
        cluster_id: Optional[str] = None,
        tls: Optional[Tuple[_Path, _Path, _Path]] = None,
        log_callback: Optional[LogCallback] = None,
    ):
        self._init_handle()
        self._callback_ref = None  # the CFUNCTYPE object: must outlive the handle
        self._log_callback = log_callback
        self._ip = _c_text(ip, "ip")
        path_b = _c_text(path, "path")
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError(f"port must be an int, not {type(port).__name__}")
        if not 0 <= port <= 0xFFFF:
            raise InvalidArgumentError(f"port {port} is out of range")
        self._port = port
        self._name = f"{self._ip.decode('utf-8', 'replace')}:{port}"

        opts = _L.floyd_host_options_new(self._ip, port, path_b)
        if not opts:
            raise MemoryError("floyd_host_options_new returned NULL")
        try:
            if workers is not None:
                n = _uint64(workers, "workers")
                if n >= 1 << 32:
                    raise InvalidArgumentError(f"workers must be below 2**32, got {n}")
                _setopt(opts, "floyd_host_options_set_workers", n)
            if cluster_id is not None:
                _setopt(opts, "floyd_host_options_set_cluster_id", _c_text(cluster_id, "cluster_id"))
            if tls is not None:
                ca, cert, key = _tls_paths(tls)
                _setopt(opts, "floyd_host_options_set_tls", ca, cert, key)
            if log_callback is not None:
                if not callable(log_callback):
                    raise TypeError("log_callback must be callable(level, message)")
                self._callback_ref = _make_trampoline(log_callback, weakref.ref(self))
                _setopt(opts, "floyd_host_options_set_log_callback", self._callback_ref, None)
            handle = c_void_p()
            errmsg = c_void_p()
            _check(_L.floyd_host_open(opts, byref(handle), byref(errmsg)), errmsg)
            if not handle.value:
                raise InternalError("floyd_host_open returned OK without a handle")
            self._handle = handle.value
        finally:
            _L.floyd_host_options_free(opts)
        _open_hosts.add(self)

    @property
    def address(self) -> str:
        """The host's ``"ip:port"``: what its groups' members name it."""
        return self._name

    def open_group(
        self,
        group_id: int,
        members: Union[str, Iterable[str]],
        *,
        check_leader_us: Optional[int] = None,
        heartbeat_us: Optional[int] = None,
        append_entries_size_once: Optional[int] = None,
        append_entries_count_once: Optional[int] = None,
        single_mode: Optional[bool] = None,
        request_timeout_ms: Optional[int] = None,
        join: Optional[bool] = None,
        snapshot_log_entries: Optional[int] = None,
        snapshot_log_bytes: Optional[int] = None,
        snapshot_keep_entries: Optional[int] = None,
        snapshot_chunk_bytes: Optional[int] = None,
        snapshot_bytes_per_sec: Optional[int] = None,
        lease_reads: Optional[bool] = None,
        quiesce: Optional[bool] = None,
        max_async_in_flight: Optional[int] = None,
        history_revisions: Optional[int] = None,
        session_timeout_ms: Optional[int] = None,
        state_machine: Optional[StateMachine] = None,
    ) -> Floyd:
        """Opens (creates or restarts) group ``group_id`` (0 to 2**64 - 1) on
        this host and returns its :class:`Floyd`. ``members`` are the group's
        members as host addresses (this host's included, unless ``join``);
        the keyword options are :class:`Floyd`'s group options (the address,
        directory, cluster id, TLS and log are the host's). With
        ``state_machine`` the group runs it instead of the key-value store.
        InvalidArgumentError for a group already open on this host,
        StoppedError once the host is closed."""
        gid = _uint64(group_id, "group_id")
        members_b = _c_text(_members_csv(members), "members")
        node = Floyd.__new__(Floyd)
        node._init_node(self._name, self, gid)
        # The host's log callback lives as long as the group's handle.
        node._callback_ref = self._callback_ref
        h = self._enter()
        try:
            opts = _L.floyd_options_new(members_b, self._ip, self._port, None)
            if not opts:
                raise MemoryError("floyd_options_new returned NULL")
            try:
                _set_group_options(
                    opts,
                    dict(
                        check_leader_us=check_leader_us,
                        heartbeat_us=heartbeat_us,
                        append_entries_size_once=append_entries_size_once,
                        append_entries_count_once=append_entries_count_once,
                        request_timeout_ms=request_timeout_ms,
                        snapshot_log_entries=snapshot_log_entries,
                        snapshot_log_bytes=snapshot_log_bytes,
                        snapshot_keep_entries=snapshot_keep_entries,
                        snapshot_chunk_bytes=snapshot_chunk_bytes,
                        snapshot_bytes_per_sec=snapshot_bytes_per_sec,
                        max_async_in_flight=max_async_in_flight,
                        history_revisions=history_revisions,
                        session_timeout_ms=session_timeout_ms,
                        single_mode=single_mode,
                        join=join,
                        lease_reads=lease_reads,
                        quiesce=quiesce,
                    ),
                )
                node._open(
                    lambda out, err: _L.floyd_host_open_group(h, gid, opts, out, err),
                    lambda sm, out, err: _L.floyd_host_open_group_with_state_machine(h, gid, opts, sm, out, err),
                    state_machine,
                )
            finally:
                _L.floyd_options_free(opts)
        finally:
            self._leave()
        _open_nodes.add(node)
        return node

    def drop_group(self, group_id: int) -> None:
        """Deletes group ``group_id``'s data on this host (its log, state and
        snapshots). InvalidArgumentError while it is open here: close its
        Floyd first."""
        gid = _uint64(group_id, "group_id")
        errmsg = c_void_p()
        h = self._enter()
        try:
            code = _L.floyd_host_drop_group(h, gid, byref(errmsg))
        finally:
            self._leave()
        _check(code, errmsg)

    def list_groups(self) -> list:
        """The ids of the groups open on this host, sorted."""
        ids, count, errmsg = c_void_p(), c_size_t(0), c_void_p()
        h = self._enter()
        try:
            code = _L.floyd_host_list_groups(h, byref(ids), byref(count), byref(errmsg))
        finally:
            self._leave()
        try:
            _check(code, errmsg)
            if not ids.value:
                if count.value:
                    raise InternalError(f"floyd_host_list_groups returned NULL for {count.value} groups")
                return []
            return list(ctypes.cast(ids.value, ctypes.POINTER(c_uint64))[: count.value])
        finally:
            if ids.value:
                _L.floyd_free(ids.value)

    def metrics(self) -> str:
        """The metrics of the host and of every group open on it, in the
        OpenMetrics text format (each group's series labelled ``group``)."""
        out = c_void_p()
        h = self._enter()
        try:
            code = _L.floyd_host_get_metrics(h, byref(out))
        finally:
            self._leave()
        if code != OK:
            _take_string(out)
        _check(code, what="floyd_host_get_metrics")
        return _take_string(out).decode("utf-8", "replace")

    def status(self) -> dict:
        """The host's status: ``host`` (its address), ``threads``, ``groups``
        (per open group: ``group``, ``role``, ``term``, ``leader``,
        ``commit``, ``applied``), ``unknown_group_frames``,
        ``refused_messages``, ``log_writes``, ``log_syncs``, ``disk_full``
        and ``failed``."""
        out = c_void_p()
        h = self._enter()
        try:
            code = _L.floyd_host_get_status_json(h, byref(out))
        finally:
            self._leave()
        if code != OK:
            _take_string(out)
        _check(code, what="floyd_host_get_status_json")
        return json.loads(_take_string(out).decode("utf-8", "replace"))

    def close(self) -> None:
        """Stops every group still open on the host, then its threads, and
        closes its stores. Idempotent; waits for the host's calls in flight on
        other threads to return first. The groups' Floyd objects then raise
        StoppedError; release them with their ``close()``."""
        handle = self._take_for_close()
        if handle is None:
            return
        try:
            _L.floyd_host_close(handle)
        finally:
            # Every thread is joined. The groups' Floyd objects hold the log
            # callback too, until they are closed.
            self._callback_ref = None
            _open_hosts.discard(self)
            self._closed.set()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            # Cannot close here (inside one of the host's own callbacks): leak it.
            _leaked.append((getattr(self, "_handle", None), getattr(self, "_callback_ref", None)))

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<floyd.Host {self._name} {state}>"
