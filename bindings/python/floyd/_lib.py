"""Loading libfloyd and declaring its C API (include/floyd.h) for ctypes.

Every function's argtypes and restype are declared here, so ctypes never
guesses. Memory the library hands back (values, messages, status text) is
received as ``c_void_p`` -- never ``c_char_p``, which would convert it to
``bytes`` and lose the pointer that must go back to ``floyd_free`` (and would
stop at the first NUL of a binary value). Only the two static strings
(``floyd_status_str``, ``floyd_version``) use ``c_char_p``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_bool,
    c_char_p,
    c_int,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path

__all__ = ["lib", "lib_path", "LOG_CALLBACK", "WATCH_FN", "KvMetaStruct", "WatchEventStruct", "candidate_paths", "has"]


def _file_name() -> str:
    if sys.platform == "darwin":
        return "libfloyd.dylib"
    if sys.platform == "win32":
        return "floyd.dll"
    return "libfloyd.so"


def candidate_paths() -> list[Path]:
    """Where the library is looked for, in order (FLOYD_LIB and find_library aside)."""
    name = _file_name()
    roots: list[Path] = []
    target = os.environ.get("CARGO_TARGET_DIR")
    if target:
        roots.append(Path(target))
    roots.append(Path.home() / ".cache" / "floyd" / "target")
    # bindings/python/floyd/_lib.py -> parents[3] is the repository root.
    here = Path(__file__).resolve()
    if len(here.parents) > 3:
        roots.append(here.parents[3] / "target")
    return [root / profile / name for root in roots for profile in ("release", "debug")]


def _load() -> tuple[ctypes.CDLL, str]:
    tried: list[str] = []

    explicit = os.environ.get("FLOYD_LIB")
    if explicit:
        # An explicit choice is final: do not silently fall back to another build.
        try:
            return ctypes.CDLL(explicit), explicit
        except OSError as e:
            raise ImportError(
                f"floyd: cannot load FLOYD_LIB={explicit!r}: {e}. "
                "Set FLOYD_LIB to the full path of libfloyd.so, or unset it to search the usual places."
            ) from e
    tried.append("FLOYD_LIB (not set)")

    for path in candidate_paths():
        if path.is_file():
            try:
                return ctypes.CDLL(str(path)), str(path)
            except OSError as e:
                tried.append(f"{path} (exists but failed to load: {e})")
        else:
            tried.append(str(path))

    found = ctypes.util.find_library("floyd")
    if found:
        try:
            return ctypes.CDLL(found), found
        except OSError as e:
            tried.append(f"find_library('floyd') -> {found} (failed to load: {e})")
    else:
        tried.append("ctypes.util.find_library('floyd') (nothing found)")

    raise ImportError(
        "floyd: cannot find the floyd shared library. Build it with `cargo build` "
        "(or `cargo build --release`) in the floyd repository, or set FLOYD_LIB to "
        "the full path of libfloyd.so. Looked in:\n  " + "\n  ".join(tried)
    )


lib, lib_path = _load()

# void (*floyd_log_callback_t)(void* user_data, int level, const char* msg, size_t msg_len)
# msg is c_void_p so that ctypes does not convert it: it is read with string_at(msg, msg_len).
LOG_CALLBACK = CFUNCTYPE(None, c_void_p, c_int, c_void_p, c_size_t)

_P = POINTER(c_void_p)  # char** / floyd_t** out parameters: read as raw pointers


class KvMetaStruct(Structure):
    """floyd_kv_meta_t: a key's revisions."""

    _fields_ = [
        ("create_revision", c_uint64),
        ("mod_revision", c_uint64),
        ("version", c_uint64),
        ("lease", c_uint64),
    ]


_META = POINTER(KvMetaStruct)


class WatchEventStruct(Structure):
    """floyd_watch_event_t: one change, as a watch callback gets it (``key``
    and ``value`` are raw pointers, valid during the call only)."""

    _fields_ = [
        ("type", c_int),
        ("key", c_void_p),
        ("key_len", c_size_t),
        ("value", c_void_p),
        ("value_len", c_size_t),
        ("mod_revision", c_uint64),
    ]


# void (*floyd_watch_fn)(void* user_data, const floyd_watch_event_t* events, size_t n, int code)
WATCH_FN = CFUNCTYPE(None, c_void_p, POINTER(WatchEventStruct), c_size_t, c_int)

# name: (restype, argtypes). Everything in include/floyd.h.
_REQUIRED = {
    "floyd_free": (None, [c_void_p]),
    "floyd_status_str": (c_char_p, [c_int]),  # static string: auto-conversion is fine
    "floyd_version": (c_char_p, []),  # static string
    "floyd_open": (c_int, [c_void_p, _P, _P]),
    "floyd_close": (None, [c_void_p]),
    "floyd_write": (c_int, [c_void_p, c_char_p, c_size_t, c_char_p, c_size_t, _P]),
    "floyd_delete": (c_int, [c_void_p, c_char_p, c_size_t, _P]),
    "floyd_read": (c_int, [c_void_p, c_char_p, c_size_t, _P, POINTER(c_size_t), _P]),
    "floyd_dirty_read": (c_int, [c_void_p, c_char_p, c_size_t, _P, POINTER(c_size_t), _P]),
    "floyd_get_leader": (c_int, [c_void_p, _P]),
    "floyd_has_leader": (c_bool, [c_void_p]),
    "floyd_is_leader": (c_bool, [c_void_p]),
    "floyd_get_server_status": (c_int, [c_void_p, _P]),
    "floyd_get_server_status_json": (c_int, [c_void_p, _P]),
    "floyd_get_metrics": (c_int, [c_void_p, _P]),
    "floyd_get_all_servers": (c_int, [c_void_p, _P, _P]),
    "floyd_set_log_level": (None, [c_void_p, c_int]),
    "floyd_options_new": (c_void_p, [c_char_p, c_char_p, c_int, c_char_p]),
    "floyd_options_free": (None, [c_void_p]),
    "floyd_options_set_check_leader_us": (c_int, [c_void_p, c_uint64]),
    "floyd_options_set_heartbeat_us": (c_int, [c_void_p, c_uint64]),
    "floyd_options_set_append_entries_size_once": (c_int, [c_void_p, c_uint64]),
    "floyd_options_set_append_entries_count_once": (c_int, [c_void_p, c_uint64]),
    "floyd_options_set_snapshot_log_entries": (c_int, [c_void_p, c_uint64]),
    "floyd_options_set_snapshot_log_bytes": (c_int, [c_void_p, c_uint64]),
    "floyd_options_set_snapshot_keep_entries": (c_int, [c_void_p, c_uint64]),
    "floyd_options_set_snapshot_chunk_bytes": (c_int, [c_void_p, c_uint64]),
    "floyd_options_set_snapshot_bytes_per_sec": (c_int, [c_void_p, c_uint64]),
    "floyd_options_set_single_mode": (c_int, [c_void_p, c_bool]),
    "floyd_options_set_log_callback": (c_int, [c_void_p, LOG_CALLBACK, c_void_p]),
    "floyd_options_set_log_level": (c_int, [c_void_p, c_int]),
    "floyd_options_set_request_timeout_ms": (c_int, [c_void_p, c_uint64]),
    "floyd_options_set_cluster_id": (c_int, [c_void_p, c_char_p]),
    "floyd_options_set_join": (c_int, [c_void_p, c_bool]),
    "floyd_options_set_lease_reads": (c_int, [c_void_p, c_bool]),
    "floyd_options_set_quiesce": (c_int, [c_void_p, c_bool]),
    "floyd_options_set_tls": (c_int, [c_void_p, c_char_p, c_char_p, c_char_p]),
    # int floyd_try_lock(f, name, name_len, holder, holder_len, uint64_t ttl_ms, uint64_t* token, char** errmsg)
    "floyd_try_lock": (
        c_int,
        [c_void_p, c_char_p, c_size_t, c_char_p, c_size_t, c_uint64, POINTER(c_uint64), _P],
    ),
    "floyd_unlock": (c_int, [c_void_p, c_char_p, c_size_t, c_char_p, c_size_t, _P]),
    # int floyd_open_with_state_machine(opts, const floyd_state_machine_t* sm, floyd_t** out, char** errmsg)
    "floyd_open_with_state_machine": (c_int, [c_void_p, c_void_p, _P, _P]),
    # int floyd_propose(f, data, len, char** result, size_t* result_len, char** errmsg)
    "floyd_propose": (c_int, [c_void_p, c_char_p, c_size_t, _P, POINTER(c_size_t), _P]),
    "floyd_add_server": (c_int, [c_void_p, c_char_p, _P]),
    "floyd_remove_server": (c_int, [c_void_p, c_char_p, _P]),
    "floyd_transfer_leader": (c_int, [c_void_p, c_char_p, _P]),
    # The async calls; the callback types are in _async (declared as c_void_p
    # here so that the module's trampolines pass as they are).
    "floyd_write_async": (c_int, [c_void_p, c_char_p, c_size_t, c_char_p, c_size_t, c_void_p, c_void_p]),
    "floyd_delete_async": (c_int, [c_void_p, c_char_p, c_size_t, c_void_p, c_void_p]),
    "floyd_read_async": (c_int, [c_void_p, c_char_p, c_size_t, c_void_p, c_void_p]),
    "floyd_async_in_flight": (c_size_t, [c_void_p]),
    "floyd_options_set_max_async_in_flight": (c_int, [c_void_p, c_uint64]),
    # A host of many groups (floyd_host_t, floyd_host_options_t).
    "floyd_host_options_new": (c_void_p, [c_char_p, c_int, c_char_p]),
    "floyd_host_options_free": (None, [c_void_p]),
    "floyd_host_options_set_workers": (c_int, [c_void_p, c_uint32]),
    "floyd_host_options_set_tls": (c_int, [c_void_p, c_char_p, c_char_p, c_char_p]),
    "floyd_host_options_set_cluster_id": (c_int, [c_void_p, c_char_p]),
    "floyd_host_options_set_log_callback": (c_int, [c_void_p, LOG_CALLBACK, c_void_p]),
    "floyd_host_open": (c_int, [c_void_p, _P, _P]),
    "floyd_host_close": (None, [c_void_p]),
    # int floyd_host_open_group(h, uint64_t group_id, opts, floyd_t** out, char** errmsg)
    "floyd_host_open_group": (c_int, [c_void_p, c_uint64, c_void_p, _P, _P]),
    # (h, group_id, opts, const floyd_state_machine_t* sm, floyd_t** out, char** errmsg)
    "floyd_host_open_group_with_state_machine": (c_int, [c_void_p, c_uint64, c_void_p, c_void_p, _P, _P]),
    "floyd_host_drop_group": (c_int, [c_void_p, c_uint64, _P]),
    # int floyd_host_list_groups(h, uint64_t** ids, size_t* count, char** errmsg): *ids read as a raw pointer
    "floyd_host_list_groups": (c_int, [c_void_p, _P, POINTER(c_size_t), _P]),
    "floyd_host_get_status_json": (c_int, [c_void_p, _P]),
    "floyd_host_get_metrics": (c_int, [c_void_p, _P]),
    # Coordination: revisions, compare-and-swap, range scans, transactions.
    # int floyd_read_meta(f, key, key_len, char** value, size_t* value_len, floyd_kv_meta_t* meta, char** errmsg)
    "floyd_read_meta": (c_int, [c_void_p, c_char_p, c_size_t, _P, POINTER(c_size_t), _META, _P]),
    # int floyd_write_if(f, key, key_len, value, value_len, uint64_t expected, uint64_t* new_revision, char** errmsg)
    "floyd_write_if": (
        c_int,
        [c_void_p, c_char_p, c_size_t, c_char_p, c_size_t, c_uint64, POINTER(c_uint64), _P],
    ),
    "floyd_delete_if": (c_int, [c_void_p, c_char_p, c_size_t, c_uint64, _P]),
    # int floyd_scan(f, start, start_len, end, end_len, size_t limit, floyd_kv_list_t** out, char** errmsg)
    "floyd_scan": (c_int, [c_void_p, c_char_p, c_size_t, c_char_p, c_size_t, c_size_t, _P, _P]),
    "floyd_count": (c_int, [c_void_p, c_char_p, c_size_t, c_char_p, c_size_t, POINTER(c_uint64), _P]),
    # int floyd_prefix_end(prefix, prefix_len, char** end, size_t* end_len)
    "floyd_prefix_end": (c_int, [c_char_p, c_size_t, _P, POINTER(c_size_t)]),
    "floyd_kv_list_len": (c_size_t, [c_void_p]),
    # int floyd_kv_list_get(list, i, const char** key, size_t* key_len, const char** value, size_t* value_len, meta)
    "floyd_kv_list_get": (
        c_int,
        [c_void_p, c_size_t, _P, POINTER(c_size_t), _P, POINTER(c_size_t), _META],
    ),
    "floyd_kv_list_more": (c_bool, [c_void_p]),
    "floyd_kv_list_revision": (c_uint64, [c_void_p]),
    "floyd_kv_list_free": (None, [c_void_p]),
    "floyd_txn_new": (c_void_p, []),
    "floyd_txn_free": (None, [c_void_p]),
    # int floyd_txn_if_value(txn, key, key_len, int cmp, value, value_len)
    "floyd_txn_if_value": (c_int, [c_void_p, c_char_p, c_size_t, c_int, c_char_p, c_size_t]),
    "floyd_txn_if_version": (c_int, [c_void_p, c_char_p, c_size_t, c_int, c_uint64]),
    "floyd_txn_if_mod_revision": (c_int, [c_void_p, c_char_p, c_size_t, c_int, c_uint64]),
    "floyd_txn_if_create_revision": (c_int, [c_void_p, c_char_p, c_size_t, c_int, c_uint64]),
    # int floyd_txn_put(txn, int branch, key, key_len, value, value_len, uint64_t lease)
    "floyd_txn_put": (c_int, [c_void_p, c_int, c_char_p, c_size_t, c_char_p, c_size_t, c_uint64]),
    "floyd_txn_delete": (c_int, [c_void_p, c_int, c_char_p, c_size_t]),
    "floyd_txn_get": (c_int, [c_void_p, c_int, c_char_p, c_size_t]),
    # int floyd_txn_commit(f, txn, bool* succeeded, floyd_kv_list_t** gets, uint64_t* revision, char** errmsg)
    "floyd_txn_commit": (c_int, [c_void_p, c_void_p, POINTER(c_bool), _P, POINTER(c_uint64), _P]),
    # Leases: keys that vanish when their lease ends.
    # int floyd_lease_grant(f, uint64_t ttl_ms, uint64_t* lease_id, char** errmsg)
    "floyd_lease_grant": (c_int, [c_void_p, c_uint64, POINTER(c_uint64), _P]),
    # int floyd_lease_keepalive(f, uint64_t lease_id, uint64_t* ttl_ms_left, char** errmsg)
    "floyd_lease_keepalive": (c_int, [c_void_p, c_uint64, POINTER(c_uint64), _P]),
    "floyd_lease_revoke": (c_int, [c_void_p, c_uint64, _P]),
    # int floyd_lease_time_to_live(f, lease_id, uint64_t* ttl_ms, uint64_t* remaining_ms, uint64_t* keys, char** errmsg)
    "floyd_lease_time_to_live": (
        c_int,
        [c_void_p, c_uint64, POINTER(c_uint64), POINTER(c_uint64), POINTER(c_uint64), _P],
    ),
    # int floyd_write_with_lease(f, key, key_len, value, value_len, uint64_t lease_id, char** errmsg)
    "floyd_write_with_lease": (c_int, [c_void_p, c_char_p, c_size_t, c_char_p, c_size_t, c_uint64, _P]),
    # Watches: a callback told of every change to a range of keys.
    # int floyd_watch(f, start, start_len, end, end_len, uint64_t start_revision, floyd_watch_fn fn,
    #                 void* user_data, uint64_t* watch_id, char** errmsg)
    "floyd_watch": (
        c_int,
        [c_void_p, c_char_p, c_size_t, c_char_p, c_size_t, c_uint64, WATCH_FN, c_void_p, POINTER(c_uint64), _P],
    ),
    "floyd_unwatch": (c_int, [c_void_p, c_uint64]),
    "floyd_options_set_history_revisions": (c_int, [c_void_p, c_uint64]),
    "floyd_options_set_session_timeout_ms": (c_int, [c_void_p, c_uint64]),
}

# Functions of the C API contract (shared/c-api.md) that not every libfloyd
# exports yet: declared when the loaded library has them, otherwise the Python
# methods that need them raise NotImplementedError. Empty for now: everything
# this binding uses is in include/floyd.h.
_OPTIONAL: dict = {}


def _declare() -> set[str]:
    missing = []
    for name, (restype, argtypes) in _REQUIRED.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            missing.append(name)
            continue
        fn.restype = restype
        fn.argtypes = argtypes
    if missing:
        raise ImportError(
            f"floyd: {lib_path} does not export {', '.join(missing)}; "
            "it is older than this binding: rebuild it or point FLOYD_LIB at a newer build"
        )
    present = set()
    for name, (restype, argtypes) in _OPTIONAL.items():
        fn = getattr(lib, name, None)
        if fn is not None:
            fn.restype = restype
            fn.argtypes = argtypes
            present.add(name)
    return present


_optional_present = _declare()


def has(name: str) -> bool:
    """Whether the loaded library exports the optional function `name`."""
    return name in _REQUIRED or name in _optional_present
