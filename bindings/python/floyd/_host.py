"""The host of many Raft groups."""

from __future__ import annotations

import ctypes
import json
import os
import weakref
from ctypes import byref, c_size_t, c_uint64, c_void_p
from typing import Iterable, Optional, Tuple, Union

from ._state_machine import StateMachine
from ._handle import _Handle
from ._node import Floyd
from ._errors import (
    InternalError,
    InvalidArgumentError,
    OK,
)
from ._util import (
    LogCallback,
    _L,
    _Path,
    _c_text,
    _check,
    _leaked,
    _make_trampoline,
    _members_csv,
    _open_hosts,
    _open_nodes,
    _set_group_options,
    _setopt,
    _take_string,
    _tls_paths,
    _uint64,
)


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
