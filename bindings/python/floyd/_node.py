"""A node of a floyd cluster: one Raft group, on a private host or a shared one."""

from __future__ import annotations

import ctypes
import json
import os
import time
import weakref
from ctypes import byref, c_size_t, c_uint64, c_void_p
from concurrent.futures import Future
from typing import TYPE_CHECKING, Iterable, Optional, Tuple, Union

from . import _async, _watch
from ._state_machine import StateMachine, make_callbacks
from ._handle import _Handle
from ._node_coordination import _CoordinationCalls
from ._errors import (
    InternalError,
    InvalidArgumentError,
    NoLeaderError,
    OK,
    error_for,
)
from ._util import (
    BytesLike,
    LogCallback,
    _L,
    _Path,
    _c_text,
    _callback_of,
    _check,
    _leaked,
    _level,
    _make_trampoline,
    _members_csv,
    _open_nodes,
    _set_group_options,
    _setopt,
    _take_string,
    _tls_paths,
    _to_bytes,
    _uint64,
)

if TYPE_CHECKING:
    from ._host import Host


# the node


class Floyd(_CoordinationCalls, _Handle):
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


