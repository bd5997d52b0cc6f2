"""The async calls: futures that complete on a library thread, once each;
refusals raise at once; close fails what is still pending."""

import threading

import pytest

import floyd
from test_floyd import DEADLINE, FAST, Node, free_ports, leader_and_followers, start_cluster


def test_async_writes_reads_and_deletes(tmp_path):
    _, nodes = start_cluster(tmp_path)
    try:
        leader, (follower, _) = leader_and_followers(nodes)
        futures = [(leader if i % 2 else follower).write_async(f"k{i}", f"v{i}") for i in range(300)]
        for f in futures:
            assert f.result(timeout=DEADLINE) is None
        assert leader.async_in_flight() == 0
        reads = [(i, n.read_async(f"k{i}")) for i in range(0, 300, 13) for n in nodes]
        for i, f in reads:
            assert f.result(timeout=DEADLINE) == f"v{i}".encode()
        follower.delete_async(b"k0").result(timeout=DEADLINE)
        with pytest.raises(floyd.NotFoundError):
            leader.read_async(b"k0").result(timeout=DEADLINE)
        # A completion may call the API again.
        chained = threading.Event()
        leader.write_async(b"a", b"1").add_done_callback(
            lambda _: leader.write_async(b"b", b"2").add_done_callback(lambda _: chained.set())
        )
        assert chained.wait(DEADLINE)
        assert leader.read(b"b") == b"2"
    finally:
        for node in nodes:
            node.close()


def test_refused_async_calls_raise_at_once(tmp_path):
    (port,) = free_ports(1)
    with Node(f"127.0.0.1:{port}", port, tmp_path / "n", **FAST) as node:
        with pytest.raises(floyd.InvalidArgumentError):
            node.write_async(b"", b"v")
        with pytest.raises(floyd.InvalidArgumentError):
            node.read_async(b"")
        with pytest.raises(TypeError):
            node.delete_async(42)
    with pytest.raises(floyd.StoppedError):
        node.write_async(b"k", b"v")


def test_admission_control_and_close_fail_pending_futures(tmp_path):
    # One member of three, the others never started: no leader, ever.
    ports = free_ports(3)
    members = ",".join(f"127.0.0.1:{p}" for p in ports)
    node = Node(members, ports[0], tmp_path / "n", max_async_in_flight=2, **FAST)
    try:
        pending = [node.write_async(b"k1", b"v"), node.write_async(b"k2", b"v")]
        with pytest.raises(floyd.BusyError):
            node.write_async(b"k3", b"v")
        assert node.async_in_flight() == 2
        assert not any(f.done() for f in pending)
    finally:
        node.close()
    for f in pending:
        assert f.done(), "answered before close returned"
        with pytest.raises(floyd.StoppedError):
            f.result()
