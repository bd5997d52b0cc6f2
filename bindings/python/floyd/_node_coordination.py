"""A node's coordination calls: revisions, compare-and-set, range scans,
transactions, leases and watches (the methods of :class:`Floyd` they are)."""

from __future__ import annotations

import weakref
from ctypes import byref, c_bool, c_size_t, c_uint64, c_void_p
from typing import Optional, Tuple

from . import _lib, _watch
from ._coordination import (
    KvList,
    KvMeta,
    LeaseStatus,
    Txn,
    TxnResponse,
    _free_kv_list,
    _meta,
    _size,
    _take_kv_list,
)
from ._errors import (
    NOT_FOUND,
    NotFoundError,
    OK,
)
from ._util import (
    BytesLike,
    _L,
    _callback_of,
    _check,
    _take_string,
    _to_bytes,
    _uint64,
)



class _CoordinationCalls:
    """Mixed into :class:`Floyd`: needs its ``_enter``/``_leave`` and handle."""

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

