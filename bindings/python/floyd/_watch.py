"""Watches' plumbing: one C trampoline for every watch, kept alive for the
life of the module (so no ctypes callback object is ever freed while the
library may call it), and the live watches keyed by the ``user_data`` token
the library hands back.

A watch is forgotten exactly once, by whoever learns first that the library
will not call it again: the trampoline after the last call (a non-OK code),
``Floyd.unwatch`` once ``floyd_unwatch`` answered OK (it returns only once no
call runs, or, called from the watch's own callback, once that call is the
last), ``Floyd.close`` once ``floyd_close`` made every last call, or
``Floyd.watch`` itself when the last call came before it learnt the id.
Forgetting twice is harmless here (dictionary pops), but the bookkeeping
below keeps each watch's state consistent under one lock."""

from __future__ import annotations

import ctypes
import itertools
import threading
from typing import Callable, Dict, List, NamedTuple, Optional

from . import _lib
from ._errors import BUSY, COMPACTED, OK, STOPPED, FloydError, error_for

# What happened to a key (FLOYD_EVENT_*): WatchEvent.type.
EVENT_PUT = 0
EVENT_DELETE = 1


class WatchEvent(NamedTuple):
    """One change to a watched key: ``type`` (``EVENT_PUT`` or
    ``EVENT_DELETE``), the key, the value written (``b""`` for a delete) and
    the change's revision (the changes of one transaction share it)."""

    type: int
    key: bytes
    value: bytes
    mod_revision: int


WatchCallback = Callable[[List[WatchEvent], Optional[FloydError]], None]

# Why a watch ended by itself, as the last call's exception says.
_END_MESSAGES = {
    STOPPED: "the watch ended: its node was closed",
    COMPACTED: "the watch ended: a snapshot replaced the node's state; watch again from the last revision seen + 1",
    BUSY: "the watch ended: it fell too far behind; watch again from the last revision seen + 1",
}


class Watch:
    """One watch: the Python callback, the node's table of live watches, and
    what the library has told about it so far. Fields but ``callback`` and
    ``context`` are guarded by ``_lock``."""

    __slots__ = ("token", "callback", "context", "table", "id", "registered", "ended")

    def __init__(self, token: int, callback: WatchCallback, context, table: Dict[int, "Watch"]):
        self.token = token
        self.callback = callback
        self.context = context  # () -> a context manager marking the thread as in a callback of the node
        self.table = table  # the node's live watches by id
        self.id = 0
        self.registered = False  # the id is known and the watch is in `table`
        self.ended = False  # the last call ran


_lock = threading.Lock()
_live: Dict[int, Watch] = {}  # token -> watch, while the library may call it
_tokens = itertools.count(1)
_current = threading.local()  # .depth: watch callbacks this thread is running


def in_callback() -> bool:
    """Whether this thread runs a watch callback."""
    return getattr(_current, "depth", 0) > 0


def new(callback: WatchCallback, context, table: Dict[int, Watch]) -> Watch:
    """A watch about to be handed to floyd_watch (its token as user_data)."""
    w = Watch(next(_tokens), callback, context, table)
    with _lock:
        _live[w.token] = w
    return w


def refused(w: Watch) -> None:
    """floyd_watch refused it: the library never calls it."""
    with _lock:
        _live.pop(w.token, None)


def started(w: Watch, watch_id: int) -> None:
    """floyd_watch answered OK with `watch_id`: the node's table gets it,
    unless its last call came first."""
    with _lock:
        if w.ended:
            return
        w.id = watch_id
        w.registered = True
        w.table[watch_id] = w


def unwatched(table: Dict[int, Watch], watch_id: int) -> bool:
    """floyd_unwatch answered OK: forgets the watch; whether it was still
    live here (False: it had ended by itself, its last call has run)."""
    with _lock:
        w = table.pop(watch_id, None)
        if w is None:
            return False
        _live.pop(w.token, None)
        return True


def closed(table: Dict[int, Watch]) -> None:
    """The node is closed: floyd_close made every watch's last call; forgets
    whatever is left (nothing, by the C contract)."""
    with _lock:
        for w in table.values():
            _live.pop(w.token, None)
        table.clear()


def _events(events, n: int) -> List[WatchEvent]:
    out = []
    for i in range(n):
        e = events[i]
        # Copied here: the library's buffers are valid only during the call.
        key = ctypes.string_at(e.key, e.key_len) if e.key_len else b""
        value = ctypes.string_at(e.value, e.value_len) if e.value_len else b""
        out.append(WatchEvent(e.type, key, value, e.mod_revision))
    return out


def _on_watch(user_data, events, n, code) -> None:
    with _lock:
        w = _live.get(user_data or 0)
    if w is None:
        return
    last = code != OK
    _current.depth = getattr(_current, "depth", 0) + 1
    try:
        if last:
            batch: List[WatchEvent] = []
            error: Optional[FloydError] = error_for(code, _END_MESSAGES.get(code, "the watch ended"))
        else:
            batch = _events(events, n) if events else []
            error = None
        with w.context():
            w.callback(batch, error)
        # An exception the callback raised escapes to ctypes, which reports
        # it through sys.unraisablehook and returns normally to the library.
    finally:
        _current.depth -= 1
        if last:
            with _lock:
                w.ended = True
                _live.pop(w.token, None)
                if w.registered:
                    w.table.pop(w.id, None)


on_watch = _lib.WATCH_FN(_on_watch)
