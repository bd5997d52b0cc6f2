"""The coordination calls on a 3-node cluster in this process: revisions
(read_meta), compare-and-swap (write_if, delete_if), range scans paged with
prefix_end and ``more``, count, and transactions (both branches, gets,
comparisons of every kind), from the leader and the followers. Bad input is
refused; a Txn is freed deterministically. Calls that are certainly not
applied (NoLeaderError, BusyError: a transaction right after an election
waits until the members' links say they run this release) are retried until
a deadline; every wait is a condition polled against a deadline."""

import contextlib
import gc
import threading
import time

import pytest

import floyd
from test_floyd import (
    DEADLINE,
    FAST,
    agreed_leader,
    free_ports,
    leader_and_followers,
    start_cluster,
    wait_until,
)

MAX_TXN_OPS = 128


def retrying(call, timeout=DEADLINE):
    """``call()``, retried while it raises NoLeaderError or BusyError
    (certainly not applied) until the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except (floyd.NoLeaderError, floyd.BusyError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


@contextlib.contextmanager
def protocol_6_cluster(path):
    """A 3-node cluster that takes transactions: (members, nodes), closed after."""
    members, nodes = start_cluster(path)
    try:
        wait_until(lambda: agreed_leader(nodes), "a leader")
        # The first transaction may answer BUSY until the leader knows its
        # peers run this release: wait for one to go through.
        with floyd.Txn() as t:
            retrying(lambda: nodes[0].txn(t))
        yield members, nodes
    finally:
        for node in nodes:
            node.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with protocol_6_cluster(tmp_path_factory.mktemp("coordination")) as c:
        yield c


def scan_all(node, start, end, limit):
    """Every key of ``[start, end)``, ``limit`` at a time: (pages, keys)."""
    pages, kvs = [], []
    while True:
        page = retrying(lambda: node.scan(start, end, limit))
        pages.append(page)
        kvs.extend(page.kvs)
        if not page.more:
            return pages, kvs
        start = page.kvs[-1].key + b"\0"


# -- module-level API ----------------------------------------------------------


def test_constants_and_error_classes():
    assert (floyd.CMP_EQUAL, floyd.CMP_NOT_EQUAL, floyd.CMP_LESS, floyd.CMP_GREATER) == (0, 1, 2, 3)
    assert (floyd.TXN_ELSE, floyd.TXN_THEN) == (0, 1)
    assert (floyd.ELSE, floyd.THEN) == (floyd.TXN_ELSE, floyd.TXN_THEN)
    assert (floyd.CONFLICT, floyd.COMPACTED) == (14, 15)
    for cls, code, name in (
        (floyd.ConflictError, 14, "CONFLICT"),
        (floyd.CompactedError, 15, "COMPACTED"),
    ):
        assert issubclass(cls, floyd.FloydError)
        assert cls.code == code
        assert floyd.status_str(code) == name == cls("x").status
        e = floyd._errors.error_for(code, "why")
        assert type(e) is cls and e.message == "why" and str(e) == f"{name}: why"


def test_prefix_end():
    assert floyd.prefix_end(b"a/") == b"a0"
    assert floyd.prefix_end("a/") == b"a0"
    assert floyd.prefix_end(b"a\xff") == b"b"
    assert floyd.prefix_end(b"a\xff\xff") == b"b"
    assert floyd.prefix_end(b"\x00") == b"\x01"
    assert floyd.prefix_end(b"k\x00") == b"k\x01"
    assert floyd.prefix_end(b"\xff\xff") == b""
    assert floyd.prefix_end(b"") == b""
    assert type(floyd.prefix_end(bytearray(b"x"))) is bytes
    with pytest.raises(TypeError):
        floyd.prefix_end(1)


def test_result_types():
    meta = floyd.KvMeta(create_revision=1, mod_revision=2, version=3, lease=0)
    kv = floyd.KeyValue(b"k", b"v", meta)
    assert kv.meta.mod_revision == 2 and kv == (b"k", b"v", (1, 2, 3, 0))
    page = floyd.KvList([kv], False, 9)
    assert page.kvs[0] is kv and not page.more and page.revision == 9
    r = floyd.TxnResponse(True, 9, [kv])
    assert r.succeeded and r.revision == 9 and r.gets == [kv]


# -- compare-and-swap ------------------------------------------------------------


def test_compare_and_swap_from_any_node(cluster):
    _, nodes = cluster
    leader, (f, other) = leader_and_followers(nodes)

    created = retrying(lambda: f.write_if(b"cas/cfg", b"v1", 0))
    assert isinstance(created, int) and created > 0
    with pytest.raises(floyd.ConflictError) as e:
        retrying(lambda: other.write_if(b"cas/cfg", b"again", 0))  # exists already
    assert e.value.code == floyd.CONFLICT and e.value.message
    value, meta = other.read_meta(b"cas/cfg")
    assert value == b"v1" and type(value) is bytes
    assert isinstance(meta, floyd.KvMeta)
    assert meta == floyd.KvMeta(created, created, 1, 0)

    after = retrying(lambda: other.write_if("cas/cfg", "v2", created))  # str: UTF-8
    assert after > created
    with pytest.raises(floyd.ConflictError):
        retrying(lambda: f.write_if(b"cas/cfg", b"lost update", created))  # stale
    assert leader.read(b"cas/cfg") == b"v2"
    for node in nodes:
        value, meta = node.read_meta(b"cas/cfg")
        assert (value, meta) == (b"v2", floyd.KvMeta(created, after, 2, 0))

    # A plain write counts as a modification too.
    leader.write(b"cas/cfg", b"v3")
    _, meta = f.read_meta(b"cas/cfg")
    assert meta.mod_revision > after and meta.version == 3 and meta.create_revision == created
    with pytest.raises(floyd.ConflictError):
        retrying(lambda: f.write_if(b"cas/cfg", b"v4", after))


def test_delete_if(cluster):
    _, nodes = cluster
    leader, (f, other) = leader_and_followers(nodes)
    created = retrying(lambda: leader.write_if(b"del/k", b"\x00v\x00", 0))
    current = retrying(lambda: f.write_if(b"del/k", b"v2", created))

    with pytest.raises(floyd.ConflictError) as e:
        retrying(lambda: f.delete_if(b"del/k", created))  # stale
    assert e.value.code == floyd.CONFLICT
    assert other.read(b"del/k") == b"v2"  # a failed delete deletes nothing
    with pytest.raises(floyd.ConflictError):
        retrying(lambda: f.delete_if(b"del/k", 0))  # 0: only if absent
    retrying(lambda: f.delete_if(b"del/k", current))
    for node in nodes:
        with pytest.raises(floyd.NotFoundError) as e:
            node.read_meta(b"del/k")
        assert e.value.code == floyd.NOT_FOUND

    # Absent: 0 matches (and deletes nothing), any other revision conflicts.
    retrying(lambda: other.delete_if(b"del/k", 0))
    with pytest.raises(floyd.ConflictError):
        retrying(lambda: other.delete_if(b"del/k", current))
    # Created again: a new life at version 1.
    again = retrying(lambda: other.write_if(b"del/k", b"v3", 0))
    assert again > current
    assert f.read_meta(b"del/k") == (b"v3", floyd.KvMeta(again, again, 1, 0))


def test_a_counter_incremented_by_compare_and_swap_loses_nothing(cluster):
    _, nodes = cluster
    per_node = 10
    retrying(lambda: nodes[0].write_if(b"counter", b"0", 0))
    errors = []

    def increment(node):
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            try:
                value, meta = node.read_meta(b"counter")
                node.write_if(b"counter", str(int(value) + 1), meta.mod_revision)
                return
            except (floyd.ConflictError, floyd.NoLeaderError, floyd.BusyError):
                continue
        raise AssertionError("no increment got through")

    def worker(node):
        try:
            for _ in range(per_node):
                increment(node)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    value, meta = nodes[1].read_meta(b"counter")
    assert int(value) == 3 * per_node
    assert meta.version == 3 * per_node + 1


# -- transactions ----------------------------------------------------------------


def test_transaction_runs_then_or_else_with_gets(cluster):
    _, nodes = cluster
    leader, (f, _) = leader_and_followers(nodes)
    retrying(lambda: leader.write(b"tx/a", b"1"))
    _, a = leader.read_meta(b"tx/a")

    t = floyd.Txn()
    try:
        assert (
            t.if_value(b"tx/a", floyd.CMP_EQUAL, b"1")
            .if_version(b"tx/a", floyd.CMP_EQUAL, 1)
            .if_mod_revision(b"tx/a", floyd.CMP_EQUAL, a.mod_revision)
            .if_create_revision("tx/a", floyd.CMP_EQUAL, a.create_revision)
            .put(floyd.THEN, b"tx/a", b"2")
            .put(floyd.THEN, b"tx/b", b"\x00b\x00")
            .delete(floyd.THEN, b"tx/gone")
            .get(floyd.THEN, b"tx/a")  # sees the branch's put
            .get(floyd.THEN, b"tx/missing")  # left out
            .get(floyd.THEN, b"tx/b")
            .put(floyd.ELSE, b"tx/else", b"ran")
            .get(floyd.ELSE, b"tx/a")
        ) is t

        r = retrying(lambda: f.txn(t))  # forwarded to the leader
        assert isinstance(r, floyd.TxnResponse)
        assert r.succeeded is True
        assert r.revision > a.mod_revision
        assert [kv.key for kv in r.gets] == [b"tx/a", b"tx/b"]
        assert all(isinstance(kv, floyd.KeyValue) for kv in r.gets)
        assert r.gets[0].value == b"2" and r.gets[1].value == b"\x00b\x00"
        # One revision for the whole transaction.
        assert r.gets[0].meta == floyd.KvMeta(a.create_revision, r.revision, 2, 0)
        assert r.gets[1].meta == floyd.KvMeta(r.revision, r.revision, 1, 0)
        with pytest.raises(floyd.NotFoundError):
            leader.read(b"tx/else")

        # Committed again: tx/a is "2" now, so the ELSE branch runs.
        r2 = retrying(lambda: leader.txn(t))
        assert r2.succeeded is False
        assert r2.revision > r.revision
        assert r2.gets == [floyd.KeyValue(b"tx/a", b"2", floyd.KvMeta(a.create_revision, r.revision, 2, 0))]
        assert f.read_meta(b"tx/else") == (b"ran", floyd.KvMeta(r2.revision, r2.revision, 1, 0))
    finally:
        t.close()


def test_transaction_comparisons(cluster):
    _, nodes = cluster
    node = nodes[2]
    retrying(lambda: node.write(b"cmp/k", b"m"))
    _, meta = node.read_meta(b"cmp/k")

    def holds(build):
        with floyd.Txn() as t:
            build(t)
            return retrying(lambda: node.txn(t)).succeeded

    E, NE, LT, GT = floyd.CMP_EQUAL, floyd.CMP_NOT_EQUAL, floyd.CMP_LESS, floyd.CMP_GREATER
    assert holds(lambda t: t.if_value(b"cmp/k", LT, b"n").if_value(b"cmp/k", GT, b"l"))
    assert holds(lambda t: t.if_value(b"cmp/k", NE, b"x"))
    assert not holds(lambda t: t.if_value(b"cmp/k", GT, b"m"))
    assert holds(lambda t: t.if_version(b"cmp/k", GT, 0).if_version(b"cmp/k", LT, 2))
    assert holds(lambda t: t.if_mod_revision(b"cmp/k", NE, meta.mod_revision + 1))
    assert holds(lambda t: t.if_create_revision(b"cmp/k", LT, meta.create_revision + 1))
    assert not holds(lambda t: t.if_create_revision(b"cmp/k", GT, meta.create_revision))
    # A missing key: unequal to every value, neither less nor greater; its
    # version and revisions are 0.
    assert holds(lambda t: t.if_value(b"cmp/none", NE, b""))
    assert not holds(lambda t: t.if_value(b"cmp/none", LT, b"z"))
    assert not holds(lambda t: t.if_value(b"cmp/none", GT, b""))
    assert holds(
        lambda t: t.if_version(b"cmp/none", E, 0)
        .if_mod_revision(b"cmp/none", E, 0)
        .if_create_revision(b"cmp/none", E, 0)
    )
    # An empty transaction runs its THEN branch.
    with floyd.Txn() as t:
        r = retrying(lambda: node.txn(t))
    assert r.succeeded and r.gets == []


def test_one_transaction_committed_from_many_threads(cluster):
    _, nodes = cluster
    results, errors = [], []
    with floyd.Txn() as t:
        t.put(floyd.THEN, b"many/k", b"v").get(floyd.THEN, b"many/k")

        def worker(node):
            try:
                for _ in range(5):
                    results.append(retrying(lambda: node.txn(t)))
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(nodes[i % 3],)) for i in range(6)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    assert t.closed
    assert not errors, errors
    assert len(results) == 30
    assert len({r.revision for r in results}) == 30  # one revision each
    assert all(r.succeeded and r.gets[0].meta.mod_revision == r.revision for r in results)
    assert nodes[0].read_meta(b"many/k")[1].version == 30


# -- scans and counts --------------------------------------------------------------


def test_scan_pages_through_a_prefix(cluster):
    _, nodes = cluster
    leader, (reader, _) = leader_and_followers(nodes)
    keys = [b"scan/%04d" % i for i in range(60)] + [b"scan/\x00nul", b"scan/\xff"]
    with floyd.Txn() as t:
        for k in keys:
            t.put(floyd.THEN, k, k[::-1])
        written = retrying(lambda: leader.txn(t)).revision
    # Around the range: just before the prefix, and its end (excluded).
    for k in (b"scan.", b"scan0", b"scan"):
        retrying(lambda: leader.write(k, b"outside"))
    end = floyd.prefix_end(b"scan/")
    assert end == b"scan0"

    pages, kvs = scan_all(reader, b"scan/", end, 7)
    assert [kv.key for kv in kvs] == sorted(keys)
    assert [kv.value for kv in kvs] == [k[::-1] for k in sorted(keys)]
    assert all(len(p.kvs) <= 7 for p in pages)
    assert all(p.more for p in pages[:-1]) and not pages[-1].more
    assert len(pages) == -(-len(keys) // 7)
    assert all(p.revision >= written for p in pages)
    assert all(kv.meta == floyd.KvMeta(written, written, 1, 0) for kv in kvs)

    # Everything in one page: limit 0, from the leader too; `end` None or
    # b"" runs to the last key.
    whole = retrying(lambda: leader.scan(b"scan/", end))
    assert isinstance(whole, floyd.KvList) and not whole.more
    assert whole.kvs == kvs
    tail = retrying(lambda: reader.scan(b"scan/\xff", None))
    assert [kv.key for kv in tail.kvs[:2]] == [b"scan/\xff", b"scan0"]
    assert reader.scan(b"scan/\xff", b"").kvs == tail.kvs
    first = retrying(lambda: reader.scan(b"", b"", limit=1))
    assert len(first.kvs) == 1 and first.more
    # An empty range.
    empty = retrying(lambda: reader.scan(b"scan/\xff\x00", end))
    assert empty.kvs == [] and not empty.more and empty.revision >= written

    assert retrying(lambda: reader.count(b"scan/", end)) == len(keys)
    assert retrying(lambda: leader.count("scan/00", floyd.prefix_end("scan/00"))) == 60
    assert reader.count(b"scan", b"scan0") == len(keys) + 2
    assert reader.count(b"scan/\xff\x00", end) == 0
    assert reader.count(b"") >= len(keys) + 3
    assert reader.count(b"", None) == reader.count(b"", b"")


def test_scan_from_a_caught_up_node_after_a_delete(cluster):
    _, nodes = cluster
    leader, followers = leader_and_followers(nodes)
    with floyd.Txn() as t:
        for i in range(5):
            t.put(floyd.THEN, f"gone/{i}", b"x")
        retrying(lambda: leader.txn(t))
    with floyd.Txn() as t:
        t.delete(floyd.THEN, b"gone/1").delete(floyd.THEN, b"gone/3")
        r = retrying(lambda: followers[1].txn(t))
    for node in nodes:
        page = retrying(lambda: node.scan(b"gone/", floyd.prefix_end(b"gone/")))
        assert [kv.key for kv in page.kvs] == [b"gone/0", b"gone/2", b"gone/4"]
        assert page.revision >= r.revision
        assert node.count(b"gone/", b"gone0") == 3


# -- bad input -------------------------------------------------------------------


def test_empty_keys_and_bad_arguments_are_invalid(cluster):
    _, nodes = cluster
    node = nodes[0]
    for call in (
        lambda: node.read_meta(b""),
        lambda: node.write_if(b"", b"v", 0),
        lambda: node.delete_if("", 0),
    ):
        with pytest.raises(floyd.InvalidArgumentError) as e:
            call()
        assert e.value.code == floyd.INVALID_ARGUMENT
        assert "key" in e.value.message
    with pytest.raises(floyd.InvalidArgumentError):
        node.write_if(b"bad/k", b"v", -1)
    with pytest.raises(floyd.InvalidArgumentError):
        node.scan(b"", b"", limit=-1)
    with pytest.raises(floyd.InvalidArgumentError) as e:
        # A bound over 64 KiB (+ 1: the end of an exact-key range may be one byte longer).
        node.scan(b"x" * (64 * 1024 + 2), b"")
    assert e.value.message
    with pytest.raises(floyd.InvalidArgumentError):
        node.count(b"", b"x" * (64 * 1024 + 2))
    with pytest.raises(TypeError):
        node.write_if(1, b"v", 0)
    with pytest.raises(TypeError):
        node.write_if(b"k", b"v", 1.0)
    with pytest.raises(TypeError):
        node.scan(None)
    with pytest.raises(TypeError):
        node.txn(object())

    with floyd.Txn() as t:
        for build in (
            lambda: t.if_value(b"", floyd.CMP_EQUAL, b""),
            lambda: t.if_version(b"", floyd.CMP_EQUAL, 0),
            lambda: t.if_mod_revision(b"", floyd.CMP_EQUAL, 0),
            lambda: t.if_create_revision(b"", floyd.CMP_EQUAL, 0),
            lambda: t.put(floyd.THEN, b"", b"v"),
            lambda: t.delete(floyd.ELSE, b""),
            lambda: t.get(floyd.THEN, ""),
        ):
            with pytest.raises(floyd.InvalidArgumentError) as e:
                build()
            assert "key is empty" in e.value.message
        with pytest.raises(floyd.InvalidArgumentError):
            t.if_value(b"k", 4, b"v")  # no such comparison
        with pytest.raises(floyd.InvalidArgumentError):
            t.put(2, b"k", b"v")  # no such branch
        with pytest.raises(floyd.InvalidArgumentError):
            t.put(floyd.THEN, b"k", b"v", lease=-1)
        with pytest.raises(TypeError):
            t.get(True, b"k")
        with pytest.raises(TypeError):
            t.if_version(b"k", "=", 1)
        # Nothing was added: it still commits, running THEN.
        assert retrying(lambda: node.txn(t)).succeeded


def test_oversized_or_malformed_transactions_are_refused(cluster):
    _, nodes = cluster
    leader, (node, _) = leader_and_followers(nodes)

    def commit(build):
        with floyd.Txn() as t:
            build(t)
            return retrying(lambda: node.txn(t))

    def gets(n):
        return lambda t: [t.get(floyd.THEN, str(i)) for i in range(n)]

    def comparisons(n):
        return lambda t: [t.if_version(str(i), floyd.CMP_EQUAL, 0) for i in range(n)]

    assert commit(gets(MAX_TXN_OPS)).succeeded  # at the limit: fine
    assert commit(comparisons(MAX_TXN_OPS)).succeeded
    for build in (
        gets(MAX_TXN_OPS + 1),
        comparisons(MAX_TXN_OPS + 1),
        lambda t: [t.put(floyd.ELSE, f"bad/{i}", b"v") for i in range(MAX_TXN_OPS + 1)],
        lambda t: t.put(floyd.THEN, b"bad/twice", b"1").delete(floyd.THEN, b"bad/twice"),
        lambda t: t.put(floyd.ELSE, b"bad/twice", b"1").put(floyd.ELSE, b"bad/twice", b"2"),
    ):
        with pytest.raises(floyd.InvalidArgumentError) as e:
            commit(build)
        assert e.value.code == floyd.INVALID_ARGUMENT and e.value.message
    with pytest.raises(floyd.NotFoundError):
        leader.read(b"bad/twice")
    # The same key once in each branch is fine.
    r = commit(lambda t: t.put(floyd.THEN, b"bad/once", b"T").put(floyd.ELSE, b"bad/once", b"E"))
    assert r.succeeded and leader.read(b"bad/once") == b"T"

    # A put naming a lease that does not exist (none is granted here:
    # test_leases.py has leases): nothing written.
    with pytest.raises(floyd.NotFoundError) as e:
        commit(lambda t: t.put(floyd.THEN, b"lease/plain", b"1").put(floyd.THEN, b"lease/leased", b"1", lease=42))
    assert e.value.code == floyd.NOT_FOUND
    for k in (b"lease/plain", b"lease/leased"):
        with pytest.raises(floyd.NotFoundError):
            leader.read(k)


# -- lifecycles --------------------------------------------------------------------


def test_txn_is_freed_deterministically():
    t = floyd.Txn()
    assert not t.closed and repr(t) == "<floyd.Txn open>"
    t.put(floyd.THEN, b"k", b"v")
    t.close()
    assert t.closed and repr(t) == "<floyd.Txn closed>"
    t.close()  # idempotent
    with pytest.raises(floyd.InvalidArgumentError) as e:
        t.get(floyd.THEN, b"k")
    assert "closed" in e.value.message
    with floyd.Txn() as t2:
        t2.get(floyd.THEN, b"k")
    assert t2.closed
    # Garbage collection frees one never closed (nothing to observe but no crash).
    for _ in range(1000):
        floyd.Txn().put(floyd.THEN, b"k", b"v" * 100)
    gc.collect()


def test_closed_txn_and_closed_node(tmp_path):
    (port,) = free_ports(1)
    with floyd.Floyd(f"127.0.0.1:{port}", "127.0.0.1", port, tmp_path, **FAST) as node:
        node.wait_for_leader(DEADLINE)
        t = floyd.Txn()
        t.put(floyd.THEN, b"solo", b"1").get(floyd.THEN, b"solo")
        r = retrying(lambda: node.txn(t))
        assert r.succeeded and r.gets[0].value == b"1"
        assert node.read_meta(b"solo")[1].version == 1
        t.close()
        with pytest.raises(floyd.InvalidArgumentError):
            node.txn(t)
    with floyd.Txn() as t:
        for call in (
            lambda: node.read_meta(b"solo"),
            lambda: node.write_if(b"solo", b"2", 0),
            lambda: node.delete_if(b"solo", 0),
            lambda: node.scan(b"", b""),
            lambda: node.count(b""),
            lambda: node.txn(t),
        ):
            with pytest.raises(floyd.StoppedError):
                call()


def test_transactions_after_a_leader_change(tmp_path):
    _, nodes = start_cluster(tmp_path)
    try:
        leader, survivors = leader_and_followers(nodes)
        with floyd.Txn() as t:
            t.if_version(b"epoch", floyd.CMP_EQUAL, 0).put(floyd.THEN, b"epoch", b"1")
            t.get(floyd.ELSE, b"epoch")
            first = retrying(lambda: survivors[0].txn(t))
            assert first.succeeded
            leader.close()
            # Retried while the survivors elect (NoLeaderError) and the new
            # leader learns its peer's release (BusyError).
            again = retrying(lambda: survivors[1].txn(t))
        assert not again.succeeded and again.revision >= first.revision
        assert [(kv.key, kv.value, kv.meta.mod_revision) for kv in again.gets] == [(b"epoch", b"1", first.revision)]
        assert retrying(lambda: survivors[0].write_if(b"epoch", b"2", first.revision)) > first.revision
    finally:
        for node in nodes:
            node.close()


def test_host_groups_have_the_coordination_calls(tmp_path):
    (port,) = free_ports(1)
    with floyd.Host("127.0.0.1", port, tmp_path) as host:
        a = host.open_group(1, [host.address], **FAST)
        b = host.open_group(2, [host.address], **FAST)
        ra = retrying(lambda: a.write_if(b"k", b"a", 0))
        rb = retrying(lambda: b.write_if(b"k", b"b", 0))
        with pytest.raises(floyd.ConflictError):
            retrying(lambda: a.write_if(b"k", b"again", 0))
        assert a.read_meta(b"k") == (b"a", floyd.KvMeta(ra, ra, 1, 0))
        assert b.scan(b"", b"").kvs == [floyd.KeyValue(b"k", b"b", floyd.KvMeta(rb, rb, 1, 0))]
        assert a.count(b"") == b.count(b"") == 1
        a.close()
        b.close()


class Echo(floyd.StateMachine):
    def apply(self, index, data):
        return data

    def snapshot_save(self, directory):
        pass

    def snapshot_load(self, directory):
        pass


def test_a_state_machine_node_refuses_the_coordination_calls(tmp_path):
    (port,) = free_ports(1)
    with floyd.Floyd(
        f"127.0.0.1:{port}", "127.0.0.1", port, tmp_path, state_machine=Echo(), **FAST
    ) as node:
        node.wait_for_leader(DEADLINE)
        assert node.propose(b"hi") == b"hi"
        with floyd.Txn() as t:
            for call in (
                lambda: node.read_meta(b"k"),
                lambda: node.write_if(b"k", b"v", 0),
                lambda: node.delete_if(b"k", 0),
                lambda: node.scan(b"", b""),
                lambda: node.count(b""),
                lambda: node.txn(t),
            ):
                with pytest.raises(floyd.InvalidArgumentError):
                    retrying(call)
