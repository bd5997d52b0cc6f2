"""Python binding of floyd, an embeddable Raft library: a replicated, durable,
linearizable key-value store inside your own process.

    import floyd

    with floyd.Floyd("127.0.0.1:8901,127.0.0.1:8902,127.0.0.1:8903",
                     "127.0.0.1", 8901, "/var/lib/app/floyd-1") as node:
        node.write(b"key", b"value")
        node.read(b"key")        # b"value"

The shared library is found through FLOYD_LIB (full path to libfloyd.so), else
in $CARGO_TARGET_DIR/{release,debug}, ~/.cache/floyd/target/{release,debug},
<repo>/target/{release,debug}, else ctypes.util.find_library("floyd").

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
from ctypes import byref, c_size_t, c_uint64, c_void_p
from concurrent.futures import Future
from typing import Callable, Iterable, Optional, Tuple, Union

from . import _async, _lib
from ._state_machine import StateMachine, make_callbacks
from ._errors import (
    BUSY,
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
    "StateMachine",
    "version",
    "status_str",
    "library_path",
    "LOG_DEBUG",
    "LOG_INFO",
    "LOG_WARN",
    "LOG_ERROR",
    "LOG_FATAL",
    "LOG_NONE",
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
]

# Log levels (FLOYD_LOG_*), for set_log_level, log_level= and the log callback.
LOG_DEBUG = 1
LOG_INFO = 2
LOG_WARN = 3
LOG_ERROR = 4
LOG_FATAL = 5
LOG_NONE = 6

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


# Set on a library thread while it runs a Floyd's log callback: the contract
# forbids calling that node's API from there (floyd_close would join the very
# thread it runs on), so such calls raise instead of deadlocking.
_in_callback = threading.local()

# Every open node, closed at interpreter exit before ctypes and the callbacks go away.
_open_nodes: "weakref.WeakSet[Floyd]" = weakref.WeakSet()
_leaked: list = []  # (handle, callback) pairs that could not be closed safely


@atexit.register
def _close_all() -> None:
    for node in list(_open_nodes):
        try:
            node.close()
        except Exception:
            pass


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


# --------------------------------------------------------------------------
# the node


class Floyd:
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

    With ``state_machine`` (a :class:`StateMachine`) the node replicates it
    instead of the key-value store: :meth:`propose` drives it, and the
    key-value and lock methods raise InvalidArgumentError. Every member must
    run the same kind of machine.

    ``tls=(ca_pem_path, cert_pem_path, key_pem_path)`` turns on mutual TLS
    between members: a member then talks only to peers whose certificate
    chains to the CA and speaks for the member they are (it names the
    member's IP as an IP subjectAltName and its address as a URI
    subjectAltName ``floyd://ip:port``; one naming only the IP is accepted
    only where no other member shares that IP). Without it, peer traffic is unauthenticated and must
    stay on a trusted network.
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
        max_async_in_flight: Optional[int] = None,
        tls: Optional[Tuple[_Path, _Path, _Path]] = None,
        state_machine: Optional[StateMachine] = None,
    ):
        self._handle: Optional[int] = None
        self._cond = threading.Condition()
        self._busy = 0  # calls in flight
        self._closing = False
        self._closed = threading.Event()
        self._callback_ref = None  # the CFUNCTYPE object: must outlive the handle
        self._machine_refs = None  # the state machine's callbacks: must outlive the handle too
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

            def setopt(name: str, *values) -> None:
                _check(getattr(_L, name)(opts, *values), what=name)

            numbers = (
                ("check_leader_us", check_leader_us),
                ("heartbeat_us", heartbeat_us),
                ("append_entries_size_once", append_entries_size_once),
                ("append_entries_count_once", append_entries_count_once),
                ("request_timeout_ms", request_timeout_ms),
                ("snapshot_log_entries", snapshot_log_entries),
                ("snapshot_log_bytes", snapshot_log_bytes),
                ("snapshot_keep_entries", snapshot_keep_entries),
                ("snapshot_chunk_bytes", snapshot_chunk_bytes),
                ("snapshot_bytes_per_sec", snapshot_bytes_per_sec),
                ("max_async_in_flight", max_async_in_flight),
            )
            for field, value in numbers:
                if value is not None:
                    setopt(f"floyd_options_set_{field}", _uint64(value, field))
            if single_mode is not None:
                setopt("floyd_options_set_single_mode", bool(single_mode))
            if cluster_id is not None:
                setopt("floyd_options_set_cluster_id", _c_text(cluster_id, "cluster_id"))
            if log_level is not None:
                setopt("floyd_options_set_log_level", _level(log_level))
            if join is not None:
                setopt("floyd_options_set_join", bool(join))
            if lease_reads is not None:
                setopt("floyd_options_set_lease_reads", bool(lease_reads))
            if tls is not None:
                ca, cert, key = _tls_paths(tls)
                setopt("floyd_options_set_tls", ca, cert, key)
            if log_callback is not None:
                if not callable(log_callback):
                    raise TypeError("log_callback must be callable(level, message)")
                self._callback_ref = _make_trampoline(log_callback, weakref.ref(self))
                setopt("floyd_options_set_log_callback", self._callback_ref, None)

            handle = c_void_p()
            errmsg = c_void_p()
            if state_machine is None:
                code = _L.floyd_open(opts, byref(handle), byref(errmsg))
            else:
                if not isinstance(state_machine, StateMachine):
                    raise TypeError("state_machine must be a floyd.StateMachine")
                owner = weakref.ref(self)
                self._machine_refs = make_callbacks(state_machine, lambda: _callback_of(owner))
                struct = self._machine_refs[0]
                code = _L.floyd_open_with_state_machine(opts, byref(struct), byref(handle), byref(errmsg))
            _check(code, errmsg)
            if not handle.value:
                raise InternalError("floyd_open returned OK without a handle")
            self._handle = handle.value
        finally:
            _L.floyd_options_free(opts)
        _open_nodes.add(self)

    # -- lifecycle ---------------------------------------------------------

    def _enter(self) -> int:
        """Marks a call in flight and returns the handle; raises StoppedError once closed."""
        owner = getattr(_in_callback, "node", None)
        if owner is not None and owner() is self:
            raise RuntimeError("floyd: a callback must not call its own node's API")
        with self._cond:
            if self._handle is None or self._closing:
                raise StoppedError("the node is closed")
            self._busy += 1
            return self._handle

    def _leave(self) -> None:
        with self._cond:
            self._busy -= 1
            if self._busy == 0:
                self._cond.notify_all()

    def close(self) -> None:
        """Stops the node and joins its threads. Idempotent; waits for calls
        in flight on other threads to return first."""
        owner = getattr(_in_callback, "node", None)
        if owner is not None and owner() is self:
            raise RuntimeError("floyd: a callback must not close its own node")
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
            return
        try:
            _L.floyd_close(handle)
        finally:
            # Every library thread is joined: the callbacks can no longer run.
            self._callback_ref = None
            self._machine_refs = None
            _open_nodes.discard(self)
            self._closed.set()

    @property
    def closed(self) -> bool:
        return self._handle is None

    def __enter__(self) -> "Floyd":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

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
                )
            )

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<floyd.Floyd {self._name} {state}>"

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
        match_index, next_index, last_contact_ms) and locks_held."""
        return json.loads(self._text(_L.floyd_get_server_status_json))

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
