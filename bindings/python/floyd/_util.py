"""Constants, and what the node, the host and the coordination calls share:
turning Python values into the C API's and back, status codes into
exceptions, and the guard that keeps callbacks from calling their own node."""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
import weakref
from ctypes import c_void_p
from typing import TYPE_CHECKING, Callable, Iterable, Optional, Tuple, Union
import atexit

from . import _lib
from ._errors import error_for
from ._errors import (
    InternalError,
    InvalidArgumentError,
    OK,
)

if TYPE_CHECKING:
    from ._node import Floyd
    from ._host import Host


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


