"""The coordination calls' types (revisions, range scans, transactions,
lease status) and the transaction builder."""

from __future__ import annotations

import ctypes
import threading
from ctypes import byref, c_size_t, c_void_p
from typing import List, NamedTuple, Optional

from . import _lib
from ._errors import (
    InternalError,
    InvalidArgumentError,
    OK,
    error_for,
)
from ._util import (
    BytesLike,
    CMP_EQUAL,
    CMP_GREATER,
    TXN_ELSE,
    TXN_THEN,
    _L,
    _check,
    _take_string,
    _to_bytes,
    _uint64,
)


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


