"""Tests of the Python binding against the real libfloyd: nodes in this process,
on loopback, with free ports and temporary data directories. Every wait is a
condition polled against a deadline."""

import os
import re
import socket
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import floyd  # noqa: E402

FAST = dict(heartbeat_us=30_000, check_leader_us=300_000)
DEADLINE = 15.0  # seconds; generous for a loaded machine, never reached when all is well


def free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_until(cond, what, timeout=DEADLINE, interval=0.01):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def agreed_leader(nodes):
    """The leader every node agrees on, if any (and it knows it leads)."""
    leaders = {n.get_leader() for n in nodes}
    if len(leaders) != 1:
        return None
    (leader,) = leaders
    if leader is None:
        return None
    by_name = {n.name: n for n in nodes}
    node = by_name.get(leader)
    return node if node is not None and node.is_leader() else None


class Node(floyd.Floyd):
    """A Floyd that remembers its "ip:port"."""

    def __init__(self, members, port, path, **kw):
        self.name = f"127.0.0.1:{port}"
        super().__init__(members, "127.0.0.1", port, str(path), **kw)


def start_cluster(tmp_path, n=3, **kw):
    ports = free_ports(n)
    members = [f"127.0.0.1:{p}" for p in ports]
    nodes = []
    try:
        for i, p in enumerate(ports):
            opts = dict(FAST)
            opts.update(kw.get("per_node", {}).get(i, {}))
            opts.update({k: v for k, v in kw.items() if k != "per_node"})
            nodes.append(Node(members, p, tmp_path / f"node{i}", **opts))
    except BaseException:
        for node in nodes:
            node.close()
        raise
    return members, nodes


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    members, nodes = start_cluster(tmp_path_factory.mktemp("cluster"))
    try:
        wait_until(lambda: agreed_leader(nodes), "a leader")
        yield members, nodes
    finally:
        for node in nodes:
            node.close()


def leader_and_followers(nodes):
    leader = wait_until(lambda: agreed_leader(nodes), "a leader")
    return leader, [n for n in nodes if n is not leader]


# -- module-level API ----------------------------------------------------------


def test_version():
    assert re.fullmatch(r"\d+\.\d+\.\d+", floyd.version())


def test_constants_and_status_names():
    assert (floyd.LOG_DEBUG, floyd.LOG_INFO, floyd.LOG_WARN) == (1, 2, 3)
    assert (floyd.LOG_ERROR, floyd.LOG_FATAL, floyd.LOG_NONE) == (4, 5, 6)
    assert floyd.status_str(floyd.NOT_FOUND) == "NOT_FOUND"
    assert floyd.status_str(99) == "UNKNOWN"
    for cls in (
        floyd.NotFoundError,
        floyd.NoLeaderError,
        floyd.FloydTimeoutError,
        floyd.LockedError,
        floyd.NotHolderError,
        floyd.InvalidArgumentError,
        floyd.FloydIOError,
        floyd.CorruptionError,
        floyd.StoppedError,
        floyd.BusyError,
        floyd.InternalError,
        floyd.FailedError,
    ):
        assert issubclass(cls, floyd.FloydError)
        assert floyd.status_str(cls.code) == cls("x").status
    assert issubclass(floyd.NotFoundError, KeyError)
    assert issubclass(floyd.InvalidArgumentError, ValueError)
    assert issubclass(floyd.FloydTimeoutError, TimeoutError)
    assert issubclass(floyd.FloydIOError, OSError)


# -- the shared 3-node cluster -------------------------------------------------


def test_write_read_through_leader_and_follower(cluster):
    _, nodes = cluster
    leader, followers = leader_and_followers(nodes)
    leader.write(b"via-leader", b"L")
    followers[0].write("via-follower", "F")
    for node in nodes:
        assert node.read(b"via-leader") == b"L"
        assert node.read("via-follower") == b"F"


def test_read_from_every_node(cluster):
    _, nodes = cluster
    for i, node in enumerate(nodes):
        node.write(f"every-{i}", f"value-{i}")
    for node in nodes:
        for i in range(len(nodes)):
            assert node.read(f"every-{i}") == f"value-{i}".encode()


def test_lease_reads_see_every_acknowledged_write(tmp_path):
    _, nodes = start_cluster(tmp_path, lease_reads=True)
    try:
        leader, followers = leader_and_followers(nodes)
        for i in range(20):
            nodes[i % 3].write(b"lease", f"v{i}")
            assert leader.read(b"lease") == f"v{i}".encode()
            assert followers[i % 2].read(b"lease") == f"v{i}".encode()
    finally:
        for node in nodes:
            node.close()


def test_not_found(cluster):
    _, nodes = cluster
    for node in nodes:
        with pytest.raises(floyd.NotFoundError) as e:
            node.read(b"no-such-key")
        assert e.value.code == floyd.NOT_FOUND
        with pytest.raises(KeyError):
            node.read(b"no-such-key")


def test_delete(cluster):
    _, nodes = cluster
    nodes[0].write(b"doomed", b"x")
    assert nodes[1].read(b"doomed") == b"x"
    nodes[2].delete(b"doomed")
    for node in nodes:
        with pytest.raises(floyd.NotFoundError):
            node.read(b"doomed")
    nodes[1].delete(b"doomed")  # deleting a missing key succeeds


def test_dirty_read_converges(cluster):
    _, nodes = cluster
    nodes[0].write(b"dirty", b"v1")
    for node in nodes:

        def caught_up(node=node):
            try:
                return node.dirty_read(b"dirty") == b"v1"
            except floyd.NotFoundError:
                return False

        wait_until(caught_up, f"{node.name} to apply the write")
    with pytest.raises(floyd.NotFoundError):
        nodes[1].dirty_read(b"never-written")


def test_binary_values_round_trip(cluster):
    _, nodes = cluster
    values = [
        (b"\x00", b""),
        (b"bin\x00key", b"\x00\x01\x02\x00\xff\xfe\x00"),
        (b"nul-only", b"\x00" * 1000),
        ("unicode-\u00e9", "caf\u00e9 \u2603"),
        (b"all-bytes", bytes(range(256)) * 4),
        (bytearray(b"ba"), memoryview(b"mv\x00")),
    ]
    for k, v in values:
        nodes[1].write(k, v)
    for node in nodes:
        for k, v in values:
            expected = v.encode() if isinstance(v, str) else bytes(v)
            got = node.read(k)
            assert type(got) is bytes
            assert got == expected


def test_empty_key_is_invalid(cluster):
    _, nodes = cluster
    for call in (
        lambda: nodes[0].write(b"", b"v"),
        lambda: nodes[0].read(""),
        lambda: nodes[0].dirty_read(b""),
        lambda: nodes[0].delete(b""),
    ):
        with pytest.raises(floyd.InvalidArgumentError) as e:
            call()
        assert e.value.code == floyd.INVALID_ARGUMENT
        assert "key" in e.value.message
    with pytest.raises(TypeError):
        nodes[0].write(123, b"v")


def test_oversized_value_is_invalid(cluster):
    _, nodes = cluster
    with pytest.raises(floyd.InvalidArgumentError) as e:
        nodes[0].write(b"big", b"\x00" * (16 * 1024 * 1024 + 1))
    assert isinstance(e.value, ValueError)
    with pytest.raises(floyd.NotFoundError):
        nodes[0].read(b"big")


def test_leader_queries_are_consistent(cluster):
    members, nodes = cluster
    leader, followers = leader_and_followers(nodes)
    assert leader.is_leader() and leader.has_leader()
    assert leader.get_leader() == leader.name
    for f in followers:
        assert f.has_leader()
        assert not f.is_leader()
        assert f.get_leader() == leader.name
    assert leader.get_leader() in members


def test_server_status(cluster):
    _, nodes = cluster
    leader, followers = leader_and_followers(nodes)
    for node in nodes:
        text = node.server_status()
        header, row = text.splitlines()
        for column in ("Node", "Role", "Term", "Leader", "VoteFor", "CommitIndex", "LastApplied"):
            assert column in header
        assert node.name in row
    status = leader.server_status_json()
    for key in ("role", "term", "commit_index", "node", "leader", "last_applied"):
        assert key in status
    assert status["role"] == "leader"
    assert status["node"] == leader.name
    assert status["leader"] == leader.name
    assert isinstance(status["term"], int) and status["term"] >= 1
    assert followers[0].server_status_json()["role"] == "follower"


def test_all_servers(cluster):
    members, nodes = cluster
    for node in nodes:
        assert sorted(node.all_servers()) == sorted(members)


def test_concurrent_calls(cluster):
    _, nodes = cluster
    errors = []

    def worker(i):
        try:
            node = nodes[i % len(nodes)]
            for j in range(10):
                node.write(f"c-{i}-{j}", f"{i}:{j}")
                assert node.read(f"c-{i}-{j}") == f"{i}:{j}".encode()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


# -- nodes of their own --------------------------------------------------------


def test_single_member_leads_itself(tmp_path):
    (port,) = free_ports(1)
    member = f"127.0.0.1:{port}"
    with floyd.Floyd([member], "127.0.0.1", port, tmp_path, **FAST) as node:
        wait_until(node.is_leader, "the single node to lead")
        assert node.get_leader() == member
        assert node.all_servers() == [member]
        node.write(b"solo", b"yes")
        assert node.read(b"solo") == b"yes"
        assert node.dirty_read(b"solo") == b"yes"
    (port,) = free_ports(1)
    with floyd.Floyd(
        f"127.0.0.1:{port}", "127.0.0.1", port, tmp_path / "explicit", single_mode=True, **FAST
    ) as node:
        assert node.wait_for_leader(DEADLINE) == f"127.0.0.1:{port}"


def test_data_survives_reopen(tmp_path):
    (port,) = free_ports(1)
    member = f"127.0.0.1:{port}"
    with floyd.Floyd(member, "127.0.0.1", port, tmp_path, **FAST) as node:
        node.write(b"durable", b"\x00kept\x00")
    with floyd.Floyd(member, "127.0.0.1", port, tmp_path, **FAST) as node:
        assert node.read(b"durable") == b"\x00kept\x00"


def test_context_manager_closes(tmp_path):
    (port,) = free_ports(1)
    with floyd.Floyd(f"127.0.0.1:{port}", "127.0.0.1", port, tmp_path, **FAST) as node:
        assert not node.closed
        node.wait_for_leader(DEADLINE)
    assert node.closed
    node.close()  # idempotent
    for call in (
        lambda: node.write(b"k", b"v"),
        lambda: node.read(b"k"),
        lambda: node.dirty_read(b"k"),
        lambda: node.delete(b"k"),
        node.get_leader,
        node.has_leader,
        node.is_leader,
        node.server_status,
        node.server_status_json,
        node.all_servers,
        lambda: node.set_log_level(floyd.LOG_INFO),
    ):
        with pytest.raises(floyd.StoppedError) as e:
            call()
        assert e.value.code == floyd.STOPPED


def test_close_while_calls_are_in_flight(tmp_path):
    (port,) = free_ports(1)
    node = floyd.Floyd(f"127.0.0.1:{port}", "127.0.0.1", port, tmp_path, **FAST)
    node.wait_for_leader(DEADLINE)
    stop = threading.Event()
    outcomes = []

    def worker(i):
        j = 0
        while not stop.is_set():
            try:
                node.write(f"w{i}-{j}", b"v")
                node.read(f"w{i}-{j}")
            except floyd.StoppedError:
                outcomes.append("stopped")
                return
            except BaseException as e:  # pragma: no cover - reported below
                outcomes.append(e)
                return
            j += 1
        outcomes.append("done")  # pragma: no cover - close comes first

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    wait_until(lambda: _exists(node, b"w0-1"), "the workers to write")
    node.close()
    stop.set()
    for t in threads:
        t.join()
    assert outcomes == ["stopped"] * 4


def _exists(node, key):
    try:
        node.dirty_read(key)
        return True
    except floyd.NotFoundError:
        return False


def test_invalid_members_on_open(tmp_path):
    (port,) = free_ports(1)
    for members in ("not-an-address", "127.0.0.1:1,127.0.0.1:2", ""):
        with pytest.raises(floyd.InvalidArgumentError) as e:
            floyd.Floyd(members, "127.0.0.1", port, tmp_path, **FAST)
        assert e.value.message
    with pytest.raises(floyd.InvalidArgumentError):
        floyd.Floyd(f"127.0.0.1:{port}", "not-an-ip", port, tmp_path, **FAST)
    with pytest.raises(floyd.InvalidArgumentError):
        floyd.Floyd(f"127.0.0.1:{port}", "127.0.0.1", 70000, tmp_path, **FAST)
    with pytest.raises(floyd.InvalidArgumentError):  # heartbeat too slow for the election timeout
        floyd.Floyd(f"127.0.0.1:{port}", "127.0.0.1", port, tmp_path, heartbeat_us=300_000, check_leader_us=300_000)


def test_tls_options_are_checked(tmp_path):
    (port,) = free_ports(1)
    me = f"127.0.0.1:{port}"
    with pytest.raises(TypeError):
        floyd.Floyd(me, "127.0.0.1", port, tmp_path, tls="ca.pem", **FAST)
    with pytest.raises(floyd.InvalidArgumentError):
        floyd.Floyd(me, "127.0.0.1", port, tmp_path, tls=(tmp_path / "ca.pem", "", "key.pem"), **FAST)
    with pytest.raises(floyd.InvalidArgumentError) as e:
        floyd.Floyd(me, "127.0.0.1", port, tmp_path, tls=(tmp_path / "ca.pem", "c.pem", "k.pem"), **FAST)
    assert "ca.pem" in e.value.message


def test_unwritable_path_is_io_error():
    (port,) = free_ports(1)
    with pytest.raises(floyd.FloydIOError) as e:
        floyd.Floyd(f"127.0.0.1:{port}", "127.0.0.1", port, "/proc/floyd-x", **FAST)
    assert e.value.code == floyd.IO_ERROR
    assert "/proc/floyd-x" in e.value.message
    assert isinstance(e.value, OSError)


def test_log_callback_and_set_log_level(tmp_path):
    lock = threading.Lock()
    logs = {i: [] for i in range(3)}

    def collector(i):
        def cb(level, message):
            assert isinstance(level, int) and isinstance(message, str)
            with lock:
                logs[i].append((level, message, threading.get_ident()))

        return cb

    def lines(i):
        with lock:
            return [(level, message) for level, message, _ in logs[i]]

    members, nodes = start_cluster(
        tmp_path, per_node={i: {"log_callback": collector(i)} for i in range(3)}
    )
    try:
        leader, (quiet, loud) = leader_and_followers(nodes)
        for i in range(3):
            wait_until(
                lambda i=i: any(lvl == floyd.LOG_INFO and "leader changed" in m for lvl, m in lines(i)),
                f"node {i} to log the leader change",
            )
        with lock:  # the leader changes are logged on library threads, not this one
            idents = {t for i in logs for _, m, t in logs[i] if "leader changed" in m}
        assert idents and threading.get_ident() not in idents
        iq, il = nodes.index(quiet), nodes.index(loud)

        quiet.set_log_level(floyd.LOG_NONE)
        with lock:
            logs[iq].clear()
            logs[il].clear()
        old = leader.name
        leader.close()  # the other two elect a new leader
        wait_until(
            lambda: (lambda l: l is not None and l.name != old)(agreed_leader([quiet, loud])),
            "a new leader",
        )
        wait_until(lambda: any("leader changed" in m for _, m in lines(il)), "the loud node to log")
        assert lines(iq) == []

        quiet.set_log_level(floyd.LOG_INFO)
        with pytest.raises(floyd.InvalidArgumentError):
            quiet.set_log_level(42)
    finally:
        for node in nodes:
            node.close()


def test_log_level_option(tmp_path):
    logs = []
    (port,) = free_ports(1)
    with floyd.Floyd(
        f"127.0.0.1:{port}",
        "127.0.0.1",
        port,
        tmp_path,
        log_level=floyd.LOG_NONE,
        log_callback=lambda level, msg: logs.append(msg),
        **FAST,
    ) as node:
        wait_until(node.is_leader, "the single node to lead")
        node.write(b"k", b"v")
    assert logs == []


def test_log_callback_must_not_call_its_node(tmp_path):
    seen = []
    holder = {}

    def cb(level, message):
        node = holder.get("node")
        if node is not None:
            try:
                node.is_leader()
            except RuntimeError as e:
                seen.append(str(e))

    ports = free_ports(2)
    members = [f"127.0.0.1:{p}" for p in ports]
    # Two members, so the leader change is logged after open returns.
    a = floyd.Floyd(members, "127.0.0.1", ports[0], tmp_path / "a", log_callback=cb, **FAST)
    holder["node"] = a
    b = floyd.Floyd(members, "127.0.0.1", ports[1], tmp_path / "b", **FAST)
    try:
        wait_until(lambda: seen, "the callback to be refused")
        assert "must not call" in seen[0]
    finally:
        holder.clear()
        a.close()
        b.close()


def test_write_without_quorum_fails(tmp_path):
    members, nodes = start_cluster(tmp_path, request_timeout_ms=1000)
    try:
        leader, followers = leader_and_followers(nodes)
        leader.write(b"before", b"ok")
        for f in followers:
            f.close()
        with pytest.raises((floyd.FloydTimeoutError, floyd.NoLeaderError)) as e:
            leader.write(b"after", b"lost")
        assert e.value.code in (floyd.TIMEOUT, floyd.NO_LEADER)
    finally:
        for node in nodes:
            node.close()


# -- locks -----------------------------------------------------------------------


def test_lock_codes_map_to_their_exceptions():
    assert isinstance(floyd._errors.error_for(4, "x"), floyd.LockedError)
    assert isinstance(floyd._errors.error_for(5, "x"), floyd.NotHolderError)
    assert (floyd.LockedError.code, floyd.NotHolderError.code) == (4, 5)
    assert (floyd.LOCKED, floyd.NOT_HOLDER) == (4, 5)


def test_locks_through_leader_and_follower(cluster):
    _, nodes = cluster
    leader, followers = leader_and_followers(nodes)
    f = followers[0]
    t1 = f.try_lock(b"py-lock", b"alice", 10_000)
    assert isinstance(t1, int) and t1 > 0
    assert leader.try_lock("py-lock", "alice", 10_000) == t1  # a renewal keeps the token
    with pytest.raises(floyd.LockedError) as e:
        leader.try_lock(b"py-lock", b"bob", 10_000)
    assert e.value.code == floyd.LOCKED and e.value.message
    with pytest.raises(floyd.NotHolderError) as e:
        f.unlock(b"py-lock", b"bob")
    assert e.value.code == floyd.NOT_HOLDER
    leader.unlock(b"py-lock", b"alice")
    with pytest.raises(floyd.NotHolderError):
        leader.unlock(b"py-lock", b"alice")  # free now
    t2 = f.try_lock(b"py-lock", b"bob", 10_000)
    assert t2 > t1
    # Names and holders are bytes: NULs count.
    assert leader.try_lock(b"py\x00lock", b"h\x00x", 10_000) > t2
    with pytest.raises(floyd.LockedError):
        leader.try_lock(b"py\x00lock", b"h", 10_000)


def test_a_lease_runs_out(tmp_path):
    (port,) = free_ports(1)
    with floyd.Floyd(f"127.0.0.1:{port}", "127.0.0.1", port, tmp_path, **FAST) as node:
        t1 = node.try_lock(b"short", b"alice", 200)

        def taken_by_bob():
            try:
                return node.try_lock(b"short", b"bob", 10_000)
            except floyd.LockedError:
                return None

        t2 = wait_until(taken_by_bob, "the 200 ms lease to run out")
        assert t2 > t1
        with pytest.raises(floyd.NotHolderError):
            node.unlock(b"short", b"alice")
        assert node.server_status_json()["locks_held"] >= 1


def test_lock_arguments_are_checked(tmp_path):
    (port,) = free_ports(1)
    with floyd.Floyd(f"127.0.0.1:{port}", "127.0.0.1", port, tmp_path, **FAST) as node:
        for call in (
            lambda: node.try_lock(b"", b"h", 1000),
            lambda: node.try_lock(b"n", b"", 1000),
            lambda: node.try_lock(b"n", b"h", 0),
            lambda: node.try_lock(b"n", b"h", 24 * 3600 * 1000 + 1),
            lambda: node.try_lock(b"n", b"h", -1),
            lambda: node.unlock(b"", b"h"),
            lambda: node.unlock(b"n", b""),
        ):
            with pytest.raises(floyd.InvalidArgumentError) as e:
                call()
            assert e.value.message
        with pytest.raises(TypeError):
            node.try_lock(b"n", b"h", 1.5)
        with pytest.raises(TypeError):
            node.unlock(None, b"h")
        assert node.try_lock(b"n", b"h", 24 * 3600 * 1000) > 0  # a day is allowed
    with pytest.raises(floyd.StoppedError):
        node.try_lock(b"n", b"h", 1000)
    with pytest.raises(floyd.StoppedError):
        node.unlock(b"n", b"h")


# -- membership ------------------------------------------------------------------


def test_membership_of_a_single_node(tmp_path):
    (port,) = free_ports(1)
    me = f"127.0.0.1:{port}"
    with floyd.Floyd(me, "127.0.0.1", port, tmp_path, **FAST) as node:
        node.write(b"k", b"v")  # serving
        assert node.all_servers() == [me]
        node.add_server(me)  # already a voter: OK
        for bad in ("not-an-address", "127.0.0.1", "127.0.0.1:99999", ""):
            with pytest.raises(floyd.InvalidArgumentError):
                node.add_server(bad)
            with pytest.raises(floyd.InvalidArgumentError):
                node.remove_server(bad)
        with pytest.raises(floyd.InvalidArgumentError):
            node.remove_server("127.0.0.1:1")  # not a member
        with pytest.raises(floyd.InvalidArgumentError) as e:
            node.remove_server(me)  # the last voter
        assert e.value.message
        with pytest.raises(floyd.InvalidArgumentError):
            node.add_server("127.0.0.1:1\x00")
        assert node.all_servers() == [me]
        status = node.server_status_json()
        assert status["voters"] == [me]
        assert status["learners"] == []
        assert status["pending_change"] is None
        assert isinstance(status["config_index"], int)
        assert isinstance(status["peers"], list)
    with pytest.raises(floyd.StoppedError):
        node.add_server(me)


def test_transfer_leader(tmp_path):
    _, nodes = start_cluster(tmp_path)
    try:
        leader, followers = leader_and_followers(nodes)
        leader.transfer_leader(leader.name)  # to itself: nothing to do
        with pytest.raises(floyd.InvalidArgumentError):
            leader.transfer_leader("127.0.0.1:1")
        target, via = followers
        via.transfer_leader(target.name)  # forwarded to the leader
        assert target.is_leader()
        assert wait_until(lambda: agreed_leader(nodes), "the new leader") is target
        leader.write(b"moved", b"yes")
        assert target.read(b"moved") == b"yes"
    finally:
        for node in nodes:
            node.close()


def test_join_then_add_and_remove(tmp_path):
    a_port, b_port = free_ports(2)
    a_name, b_name = f"127.0.0.1:{a_port}", f"127.0.0.1:{b_port}"
    with floyd.Floyd(a_name, "127.0.0.1", a_port, tmp_path / "a", **FAST) as a:
        a.write(b"before", b"1")
        # The new node knows the existing member only.
        with floyd.Floyd([a_name], "127.0.0.1", b_port, tmp_path / "b", join=True, **FAST) as b:
            assert not b.is_leader()
            a.add_server(b_name)
            both = sorted([a_name, b_name])
            assert a.all_servers() == both
            wait_until(lambda: b.all_servers() == both, "the new member to learn the configuration")
            assert b.read(b"before") == b"1"
            b.write(b"joined", b"yes")
            a.remove_server(b_name)
            assert a.all_servers() == [a_name]
            assert a.read(b"joined") == b"yes"


def test_join_excludes_single_mode(tmp_path):
    (port,) = free_ports(1)
    with pytest.raises(floyd.InvalidArgumentError) as e:
        floyd.Floyd(f"127.0.0.1:{port}", "127.0.0.1", port, tmp_path, join=True, single_mode=True, **FAST)
    assert "join" in e.value.message


def test_new_node_started_with_members_and_itself_is_added(tmp_path):
    """Floyd's way: the new node lists the existing members and itself; then
    add_server on any member."""
    a_port, b_port = free_ports(2)
    a_name, b_name = f"127.0.0.1:{a_port}", f"127.0.0.1:{b_port}"
    with floyd.Floyd(a_name, "127.0.0.1", a_port, tmp_path / "a", **FAST) as a:
        a.write(b"k", b"v")
        with floyd.Floyd([a_name, b_name], "127.0.0.1", b_port, tmp_path / "b", **FAST) as b:
            a.add_server(b_name)
            wait_until(lambda: b.get_leader() == a_name, "the new member to follow the leader")
            assert b.read(b"k") == b"v"
            assert sorted(b.all_servers()) == sorted([a_name, b_name])
            assert b.server_status_json()["voters"] == sorted([a_name, b_name])
