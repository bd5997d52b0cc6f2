"""What a node and a host share: a handle, calls in flight, an orderly close."""

from __future__ import annotations

import threading
from typing import Optional
from . import _watch
from ._errors import (
    StoppedError,
)
from ._util import (
    _calling_own,
)



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
