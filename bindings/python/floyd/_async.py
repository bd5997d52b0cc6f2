"""The async calls' plumbing: one C trampoline per callback type, kept alive
for the life of the module, and a table of pending futures keyed by the
``user_data`` token the library hands back."""

from __future__ import annotations

import ctypes
import itertools
import threading
from concurrent.futures import Future
from ctypes import CFUNCTYPE, c_int, c_size_t, c_void_p

from ._errors import OK, error_for

# void (*floyd_done_fn)(void* user_data, int code, const char* errmsg)
DONE_FN = CFUNCTYPE(None, c_void_p, c_int, c_void_p)
# void (*floyd_read_done_fn)(void* user_data, int code, const char* value, size_t value_len, const char* errmsg)
READ_DONE_FN = CFUNCTYPE(None, c_void_p, c_int, c_void_p, c_size_t, c_void_p)

_lock = threading.Lock()
_pending: dict[int, Future] = {}
_tokens = itertools.count(1)


def register() -> tuple[int, Future]:
    """A new future and the token that the library will hand back for it."""
    fut: Future = Future()
    token = next(_tokens)
    with _lock:
        _pending[token] = fut
    return token, fut


def forget(token: int) -> None:
    """Drops a future whose call was refused (the library never calls back)."""
    with _lock:
        _pending.pop(token, None)


def _take(token) -> Future | None:
    with _lock:
        return _pending.pop(token or 0, None)


def _error(code: int, errmsg) -> Exception:
    message = ctypes.string_at(errmsg).decode("utf-8", "replace") if errmsg else ""
    return error_for(code, message)


def _on_done(user_data, code, errmsg) -> None:
    fut = _take(user_data)
    if fut is None:
        return
    if code == OK:
        fut.set_result(None)
    else:
        fut.set_exception(_error(code, errmsg))


def _on_read(user_data, code, value, value_len, errmsg) -> None:
    fut = _take(user_data)
    if fut is None:
        return
    if code == OK:
        # Copied here: the library's buffer is valid only during this call.
        fut.set_result(ctypes.string_at(value, value_len) if value_len else b"")
    else:
        fut.set_exception(_error(code, errmsg))


on_done = DONE_FN(_on_done)
on_read = READ_DONE_FN(_on_read)
