"""Client sessions from Python (issue 22, item 6): the session_timeout_ms
option, its bounds, and writes under a session: each write of a handle is
applied once (the version grows by one per write), the first one opening the
session with an entry of its own.
"""

import pytest

import floyd
from test_coordination import retrying
from test_watches import solo


def test_writes_under_a_session_are_each_applied_once(tmp_path):
    node = solo(tmp_path, session_timeout_ms=60_000)
    try:
        before = node.server_status_json()["last_log_index"]
        for i in range(1, 6):
            retrying(lambda: node.write(b"k", str(i).encode()))
        _, meta = node.read_meta(b"k")
        assert meta.version == 5
        # Five writes, and the entry that opened the handle's session.
        status = node.server_status_json()
        assert status["last_log_index"] == before + 6
        assert status["client_sessions"] == 1
    finally:
        node.close()


def test_session_timeout_bounds(tmp_path):
    with pytest.raises(floyd.InvalidArgumentError, match="session_timeout"):
        solo(tmp_path, "short", session_timeout_ms=999)
    with pytest.raises(floyd.InvalidArgumentError, match="session_timeout"):
        solo(tmp_path, "long", session_timeout_ms=31 * 24 * 60 * 60 * 1000)
    with pytest.raises(TypeError):
        solo(tmp_path, "bad", session_timeout_ms="1000")
