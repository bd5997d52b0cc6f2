"""Leases on a 3-node cluster in this process: lease_grant (a short TTL
raised to twice the election timeout), write_with_lease, lease_keepalive,
lease_time_to_live (LeaseStatus), lease_revoke, KvMeta.lease (read_meta,
scan, a transaction's gets), Txn.put with lease=, expiry deleting the keys
on every node, keep-alives from many threads, and bad input for each; then
a closed node, a state-machine node and the groups of a Host. Calls that
are certainly not applied (NoLeaderError, BusyError) are retried until a
deadline; every wait is a condition polled against a deadline."""

import threading

import pytest

import floyd
from test_coordination import Echo, retrying
from test_floyd import (
    DEADLINE,
    FAST,
    agreed_leader,
    free_ports,
    leader_and_followers,
    start_cluster,
    wait_until,
)

# A short TTL is raised to twice the election timeout (check_leader_us).
MIN_TTL_MS = 2 * FAST["check_leader_us"] // 1000
YEAR_MS = 365 * 24 * 60 * 60 * 1000
UNKNOWN_LEASE = 1 << 60  # lease ids are the grants' log indexes: never this one here
EXPIRY_DEADLINE = 30.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    members, nodes = start_cluster(tmp_path_factory.mktemp("leases"))
    try:
        wait_until(lambda: agreed_leader(nodes), "a leader")
        yield members, nodes
    finally:
        for node in nodes:
            node.close()


def present(node, key):
    """Whether ``key`` is in ``node``'s own copy (dirty_read: no round trip)."""
    try:
        node.dirty_read(key)
        return True
    except floyd.NotFoundError:
        return False


def absent(node, key):
    with pytest.raises(floyd.NotFoundError):
        retrying(lambda: node.read(key))
    return True


# -- module-level API ----------------------------------------------------------


def test_lease_status_type():
    assert "LeaseStatus" in floyd.__all__
    s = floyd.LeaseStatus(id=7, ttl_ms=600, remaining_ms=599, keys=2)
    assert s == (7, 600, 599, 2)
    assert (s.id, s.ttl_ms, s.remaining_ms, s.keys) == (7, 600, 599, 2)
    assert floyd.LeaseStatus._fields == ("id", "ttl_ms", "remaining_ms", "keys")
    assert issubclass(floyd.NotFoundError, KeyError)


# -- expiry --------------------------------------------------------------------


def test_a_lease_left_alone_expires_on_every_node(cluster):
    _, nodes = cluster
    leader, (f, other) = leader_and_followers(nodes)

    lease = retrying(lambda: f.lease_grant(1))  # through a follower
    assert isinstance(lease, int) and lease != 0
    f.write_with_lease(b"svc/a", b"up", lease)
    other.write_with_lease("svc/b", b"u\x00p", lease)  # str key: UTF-8
    f.write(b"svc/c", b"kept")

    value, meta = other.read_meta(b"svc/a")
    assert value == b"up" and meta.lease == lease and meta.version == 1
    value, meta = leader.read_meta(b"svc/b")
    assert value == b"u\x00p" and meta.lease == lease
    assert leader.read_meta(b"svc/c")[1].lease == 0

    status = f.lease_time_to_live(lease)
    assert isinstance(status, floyd.LeaseStatus)
    assert status.id == lease and status.ttl_ms == MIN_TTL_MS  # 1 ms raised to 600 ms
    assert status.remaining_ms <= status.ttl_ms and status.keys == 2
    assert f.lease_keepalive(lease) == MIN_TTL_MS
    assert other.lease_keepalive(lease) == MIN_TTL_MS

    # Left alone now: the lease runs out and its keys go on every node.
    wait_until(
        lambda: all(not present(n, k) for n in nodes for k in (b"svc/a", b"svc/b")),
        "the leased keys to be gone on every node",
        timeout=EXPIRY_DEADLINE,
    )
    assert all(present(n, b"svc/c") for n in nodes)  # not on the lease: stays
    assert absent(leader, b"svc/a") and absent(other, b"svc/b")

    for call in (
        lambda: f.lease_keepalive(lease),
        lambda: other.lease_time_to_live(lease),
        lambda: leader.write_with_lease(b"svc/a", b"again", lease),
        lambda: f.lease_revoke(lease),
    ):
        with pytest.raises(floyd.NotFoundError) as e:
            call()
        assert e.value.code == floyd.NOT_FOUND and e.value.message
    assert absent(leader, b"svc/a")  # the refused write wrote nothing


# -- revoke, transactions --------------------------------------------------------


def test_revoke_deletes_the_keys_and_a_txn_put_attaches(cluster):
    _, nodes = cluster
    leader, (f, other) = leader_and_followers(nodes)

    lease = retrying(lambda: leader.lease_grant(60_000))
    status = other.lease_time_to_live(lease)
    assert (status.id, status.ttl_ms, status.keys) == (lease, 60_000, 0)  # over the minimum: kept
    assert 0 < status.remaining_ms <= 60_000
    other.write_with_lease(b"job/1", b"a", lease)
    f.write_with_lease(b"job/2", b"b", lease)

    with floyd.Txn() as t:
        t.put(floyd.THEN, b"job/3", b"c", lease=lease).put(floyd.THEN, b"job/plain", b"d").get(floyd.THEN, b"job/3")
        r = retrying(lambda: f.txn(t))
    assert r.succeeded and [kv.meta.lease for kv in r.gets] == [lease]
    assert other.read_meta(b"job/3")[1].lease == lease
    assert other.read_meta(b"job/plain")[1].lease == 0
    assert leader.lease_time_to_live(lease).keys == 3

    # A write without the lease detaches the key.
    leader.write(b"job/2", b"detached")
    assert f.read_meta(b"job/2")[1].lease == 0
    assert f.lease_time_to_live(lease).keys == 2
    page = other.scan(b"job/", floyd.prefix_end(b"job/"))
    assert [(kv.key, kv.meta.lease) for kv in page.kvs] == [
        (b"job/1", lease),
        (b"job/2", 0),
        (b"job/3", lease),
        (b"job/plain", 0),
    ]

    # A transaction naming an unknown lease writes nothing, not even its other put.
    with floyd.Txn() as t:
        t.put(floyd.THEN, b"job/4", b"x", lease=UNKNOWN_LEASE).put(floyd.THEN, b"job/5", b"y")
        with pytest.raises(floyd.NotFoundError) as e:
            retrying(lambda: f.txn(t))
    assert e.value.code == floyd.NOT_FOUND
    assert absent(leader, b"job/4") and absent(leader, b"job/5")

    other.lease_revoke(lease)  # through a follower
    assert absent(leader, b"job/1") and absent(leader, b"job/3")
    assert leader.read(b"job/2") == b"detached" and leader.read(b"job/plain") == b"d"
    assert f.count(b"job/", floyd.prefix_end(b"job/")) == 2
    for call in (
        lambda: other.lease_revoke(lease),  # again
        lambda: f.lease_time_to_live(lease),
        lambda: leader.lease_keepalive(lease),
        lambda: f.write_with_lease(b"job/1", b"again", lease),
    ):
        with pytest.raises(floyd.NotFoundError):
            call()


def test_any_write_without_the_lease_detaches_the_key(cluster):
    _, nodes = cluster
    leader, (f, _) = leader_and_followers(nodes)
    lease = retrying(lambda: f.lease_grant(60_000))
    for k in (b"det/write", b"det/write_if", b"det/txn", b"det/delete", b"det/kept"):
        f.write_with_lease(k, b"v", lease)
    assert leader.lease_time_to_live(lease).keys == 5
    leader.write(b"det/write", b"plain")
    f.write_if(b"det/write_if", b"cas", f.read_meta(b"det/write_if")[1].mod_revision)
    with floyd.Txn() as t:
        retrying(lambda: f.txn(t.put(floyd.THEN, b"det/txn", b"txn")))
    f.delete(b"det/delete")
    page = f.scan(b"det/", floyd.prefix_end(b"det/"))
    assert [(kv.key, kv.meta.lease) for kv in page.kvs] == [
        (b"det/kept", lease),
        (b"det/txn", 0),
        (b"det/write", 0),
        (b"det/write_if", 0),
    ]
    assert f.lease_time_to_live(lease).keys == 1  # det/kept only
    leader.lease_revoke(lease)
    assert [kv.key for kv in f.scan(b"det/", floyd.prefix_end(b"det/")).kvs] == [
        b"det/txn",
        b"det/write",
        b"det/write_if",
    ]


def test_keepalives_from_many_threads(cluster):
    _, nodes = cluster
    lease = retrying(lambda: nodes[0].lease_grant(60_000))
    results, errors = [], []

    def worker(node):
        try:
            for _ in range(5):
                results.append(retrying(lambda: node.lease_keepalive(lease)))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(nodes[i % 3],)) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert results == [60_000] * 30
    nodes[1].lease_revoke(lease)


# -- bad input -------------------------------------------------------------------


def test_bad_input(cluster):
    _, nodes = cluster
    leader, (f, _) = leader_and_followers(nodes)

    for call in (
        lambda: f.lease_grant(0),
        lambda: f.lease_grant(YEAR_MS + 1),
        lambda: f.lease_grant(2**64 - 1),
        lambda: f.lease_keepalive(0),
        lambda: f.lease_revoke(0),
        lambda: f.lease_time_to_live(0),
        lambda: f.write_with_lease(b"bad/k", b"v", 0),
    ):
        with pytest.raises(floyd.InvalidArgumentError) as e:
            call()
        assert e.value.code == floyd.INVALID_ARGUMENT and e.value.message

    year = retrying(lambda: f.lease_grant(YEAR_MS))  # exactly a year: kept
    assert leader.lease_time_to_live(year).ttl_ms == YEAR_MS
    with pytest.raises(floyd.InvalidArgumentError) as e:
        f.write_with_lease(b"", b"v", year)
    assert "key" in e.value.message
    with pytest.raises(floyd.InvalidArgumentError):
        f.write_with_lease(b"bad/big", b"x" * (16 * 1024 * 1024 + 1), year)

    # Checked by the binding: out of the uint64 range, or not an int.
    for call in (
        lambda: f.lease_grant(-1),
        lambda: f.lease_grant(2**64),
        lambda: f.lease_keepalive(-1),
        lambda: f.lease_revoke(2**64),
        lambda: f.lease_time_to_live(-5),
        lambda: f.write_with_lease(b"bad/k", b"v", -1),
    ):
        with pytest.raises(floyd.InvalidArgumentError):
            call()
    for call in (
        lambda: f.lease_grant(1.5),
        lambda: f.lease_grant(True),
        lambda: f.lease_keepalive("1"),
        lambda: f.lease_revoke(None),
        lambda: f.lease_time_to_live(1.0),
        lambda: f.write_with_lease(1, b"v", year),
        lambda: f.write_with_lease(b"k", b"v", str(year)),
    ):
        with pytest.raises(TypeError):
            call()
    with floyd.Txn() as t:
        with pytest.raises(floyd.InvalidArgumentError):
            t.put(floyd.THEN, b"k", b"v", lease=-1)
        with pytest.raises(TypeError):
            t.put(floyd.THEN, b"k", b"v", lease="1")

    for call in (
        lambda: f.lease_keepalive(UNKNOWN_LEASE),
        lambda: f.lease_revoke(UNKNOWN_LEASE),
        lambda: leader.lease_time_to_live(UNKNOWN_LEASE),
        lambda: f.write_with_lease(b"bad/k", b"v", UNKNOWN_LEASE),
    ):
        with pytest.raises(floyd.NotFoundError) as e:
            call()
        assert e.value.code == floyd.NOT_FOUND
    assert absent(leader, b"bad/k") and absent(leader, b"bad/big")
    leader.lease_revoke(year)


# -- lifecycles --------------------------------------------------------------------


def test_a_closed_node_raises_stopped(tmp_path):
    (port,) = free_ports(1)
    with floyd.Floyd(f"127.0.0.1:{port}", "127.0.0.1", port, tmp_path, **FAST) as node:
        node.wait_for_leader(DEADLINE)
        lease = retrying(lambda: node.lease_grant(60_000))
        node.write_with_lease(b"solo", b"1", lease)
        assert node.lease_time_to_live(lease).keys == 1
    for call in (
        lambda: node.lease_grant(1000),
        lambda: node.lease_keepalive(lease),
        lambda: node.lease_revoke(lease),
        lambda: node.lease_time_to_live(lease),
        lambda: node.write_with_lease(b"solo", b"2", lease),
    ):
        with pytest.raises(floyd.StoppedError):
            call()


def test_a_state_machine_node_refuses_the_lease_calls(tmp_path):
    (port,) = free_ports(1)
    with floyd.Floyd(
        f"127.0.0.1:{port}", "127.0.0.1", port, tmp_path, state_machine=Echo(), **FAST
    ) as node:
        node.wait_for_leader(DEADLINE)
        assert node.propose(b"hi") == b"hi"
        for call in (
            lambda: node.lease_grant(1000),
            lambda: node.lease_keepalive(1),
            lambda: node.lease_revoke(1),
            lambda: node.lease_time_to_live(1),
            lambda: node.write_with_lease(b"k", b"v", 1),
        ):
            with pytest.raises(floyd.InvalidArgumentError):
                retrying(call)


def test_host_groups_have_leases(tmp_path):
    (port,) = free_ports(1)
    with floyd.Host("127.0.0.1", port, tmp_path) as host:
        a = host.open_group(1, [host.address], **FAST)
        b = host.open_group(2, [host.address], **FAST)
        la = retrying(lambda: a.lease_grant(60_000))
        lb = retrying(lambda: b.lease_grant(1))
        a.write_with_lease(b"k", b"a", la)
        b.write_with_lease(b"k", b"b", lb)
        assert a.read_meta(b"k")[1].lease == la and b.read_meta(b"k")[1].lease == lb
        assert b.lease_time_to_live(lb).ttl_ms == MIN_TTL_MS
        # Group 2's lease runs out; group 1's key stays.
        wait_until(lambda: not present(b, b"k"), "group 2's leased key to go", timeout=EXPIRY_DEADLINE)
        assert a.read(b"k") == b"a"
        a.lease_revoke(la)
        with pytest.raises(floyd.NotFoundError):
            a.read(b"k")
        a.close()
        b.close()
