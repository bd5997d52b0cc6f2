"""User-defined state machines: the StateMachine base class, and the C
callbacks (floyd_state_machine_t) that run one.

The callbacks run on the node's apply thread (but at open, ``snapshot_load``
of the latest snapshot runs on the opening thread, and at close the last
``on_leader_stop`` on the closing one), holding the GIL while Python code
runs. No exception ever reaches the library: one raised by ``apply`` is a
refusal (the proposer gets StateMachineError with its message), one raised by
``snapshot_save``/``snapshot_load`` a failure (its traceback printed), one
raised by the leadership methods is reported through ``sys.unraisablehook``
and dropped.
"""

from __future__ import annotations

import ctypes
import os
import traceback
from ctypes import CFUNCTYPE, POINTER, Structure, c_char_p, c_int, c_size_t, c_uint64, c_void_p
from typing import Callable, Tuple

__all__ = ["StateMachine"]

APPLY_FN = CFUNCTYPE(c_int, c_void_p, c_uint64, c_void_p, c_size_t, POINTER(c_void_p), POINTER(c_size_t))
DIR_FN = CFUNCTYPE(c_int, c_void_p, c_char_p)
TERM_FN = CFUNCTYPE(None, c_void_p, c_uint64)
VOID_FN = CFUNCTYPE(None, c_void_p)


class StateMachineStruct(Structure):
    """floyd_state_machine_t (include/floyd.h)."""

    _fields_ = [
        ("user_data", c_void_p),
        ("apply", APPLY_FN),
        ("snapshot_save", DIR_FN),
        ("snapshot_load", DIR_FN),
        ("on_leader_start", TERM_FN),
        ("on_leader_stop", VOID_FN),
        ("destroy", VOID_FN),
    ]


# apply's answer must come from malloc: floyd frees it with free().
_libc = ctypes.CDLL(None)
_libc.malloc.restype = c_void_p
_libc.malloc.argtypes = [c_size_t]


class StateMachine:
    """A state machine of your own, replicated by floyd: pass an instance as
    ``Floyd(..., state_machine=machine)`` and drive it with ``propose``.

    Every node applies the same commands in the same order, so ``apply`` must
    be deterministic (no clocks, randomness or outside state). Methods run on
    the node's apply thread, one at a time (at open, ``snapshot_load`` of the
    latest snapshot on the opening thread), and must not call the node that
    runs them (such calls raise RuntimeError). floyd keeps no state of the
    machine on disk: at every open it calls ``snapshot_load`` with the latest
    snapshot, if there is one, then ``apply`` for every later command, so the
    machine must start empty.
    """

    def apply(self, index: int, data: bytes) -> bytes:
        """Applies the command ``data`` at log ``index``; returns the answer for
        the proposer (bytes or str). Raise to refuse it: the proposer gets
        StateMachineError with the exception's message. A refusal should leave
        the state as it was."""
        raise NotImplementedError

    def snapshot_save(self, directory: str) -> None:
        """Writes the whole state as files into ``directory`` (it exists and is
        empty); floyd syncs and ships them. Raise on failure."""
        raise NotImplementedError

    def snapshot_load(self, directory: str) -> None:
        """Replaces the whole state with what ``snapshot_save`` wrote into
        ``directory`` (read it only). Raise on failure, leaving the state as it was."""
        raise NotImplementedError

    def on_leader_start(self, term: int) -> None:
        """This node became the leader in ``term``."""

    def on_leader_stop(self) -> None:
        """This node is no longer the leader (also called at close if it was)."""


def _answer_bytes(answer) -> bytes:
    if answer is None:
        return b""
    if isinstance(answer, str):
        return answer.encode("utf-8")
    return bytes(answer)


def _malloc_copy(data: bytes) -> int:
    p = _libc.malloc(len(data) + 1)
    if p:
        ctypes.memmove(p, data, len(data))
        ctypes.memset(p + len(data), 0, 1)
    return p or 0


def make_callbacks(machine: StateMachine, guard: Callable) -> Tuple[StateMachineStruct, tuple]:
    """The struct for floyd_open_with_state_machine and the CFUNCTYPE objects
    behind it, which must stay alive until the node is closed. ``guard()`` is
    a context manager marking the thread as inside a callback of the node."""

    def apply(_user_data, index, data, length, result, result_len):
        with guard():
            try:
                answer, code = _answer_bytes(machine.apply(index, ctypes.string_at(data, length))), 0
            except BaseException as e:  # noqa: B036 -- nothing may unwind into the library
                answer, code = (str(e) or type(e).__name__).encode("utf-8", "replace"), 1
        p = _malloc_copy(answer)
        result[0] = p or None
        result_len[0] = len(answer) if p else 0
        return code

    def directory_call(method):
        def call(_user_data, directory):
            with guard():
                try:
                    method(os.fsdecode(directory))
                    return 0
                except BaseException:  # noqa: B036 -- a failure, not an unwind into the library
                    traceback.print_exc()
                    return 1

        return call

    # (An exception here escapes to ctypes, which reports it through
    # sys.unraisablehook and returns normally: nothing depends on the result.)
    def leader_start(_user_data, term):
        with guard():
            machine.on_leader_start(term)

    def leader_stop(_user_data):
        with guard():
            machine.on_leader_stop()

    funcs = (
        APPLY_FN(apply),
        DIR_FN(directory_call(machine.snapshot_save)),
        DIR_FN(directory_call(machine.snapshot_load)),
        TERM_FN(leader_start),
        VOID_FN(leader_stop),
    )
    struct = StateMachineStruct(None, *funcs, VOID_FN())
    return struct, funcs

