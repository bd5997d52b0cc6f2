"""Watches on a 3-node cluster in this process: Floyd.watch on every node
(every change once, in revision order, puts and deletes, a transaction's
changes at one revision, the same sequence on every node), a watch from a
past revision reading the history, CompactedError before it, unwatch (from
another thread and from the watch's own callback), a callback that raises
or calls its node, and bad input (wrong types); then, on nodes of their own,
the last call with StoppedError at close, the history_revisions option, a
watch again after a restart, a watcher ended as too slow (BusyError), the
groups of a Host and a state-machine node. Every wait is a condition waited
on against a deadline."""

import gc
import sys
import threading
import weakref

import pytest

import floyd
from test_coordination import Echo, protocol_6_cluster, retrying
from test_leases import present
from test_floyd import (
    DEADLINE,
    FAST,
    free_ports,
    leader_and_followers,
    wait_until,
)


class Recorder:
    """What one watch was told; callable as its callback."""

    def __init__(self, on_call=None):
        self.cond = threading.Condition()
        self.events = []
        self.calls = 0
        self.empty_calls = 0  # no events and no error: never expected
        self.errors = []  # the last calls' exceptions
        self.calls_after_end = 0
        self.on_call = on_call  # also called with (events, error), outside the lock

    def __call__(self, events, error):
        with self.cond:
            self.calls += 1
            if self.errors:
                self.calls_after_end += 1
            if error is not None:
                self.errors.append(error)
            elif not events:
                self.empty_calls += 1
            self.events.extend(events)
            self.cond.notify_all()
        if self.on_call is not None:
            self.on_call(events, error)

    def wait_events(self, n, timeout=DEADLINE):
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.events) >= n, timeout):
                raise AssertionError(f"timed out waiting for {n} events, have {self.described()}")
            return list(self.events)

    def wait_end(self, timeout=DEADLINE):
        with self.cond:
            if not self.cond.wait_for(lambda: self.errors, timeout):
                raise AssertionError("timed out waiting for the last call")
            return self.errors[0]

    def described(self):
        return [(e.type, e.key, e.mod_revision) for e in self.events]


class Forward:
    """A callback that forwards to a Recorder: a weak reference to it tells
    when the binding let go of it."""

    def __init__(self, recorder):
        self.recorder = recorder

    def __call__(self, events, error):
        self.recorder(events, error)


def released(ref):
    """Whether the callback behind the weak reference `ref` is gone."""

    def gone():
        gc.collect()
        return ref() is None

    return wait_until(gone, "the binding to let go of the callback")


def put(key, value):
    return (floyd.EVENT_PUT, key, value)


def delete(key):
    return (floyd.EVENT_DELETE, key, b"")


def changes(events):
    return [(e.type, e.key, e.value) for e in events]


def in_order(events):
    return all(a.mod_revision <= b.mod_revision for a, b in zip(events, events[1:]))


def revision_of(node):
    return retrying(lambda: node.scan(b"", b"", 1)).revision


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with protocol_6_cluster(tmp_path_factory.mktemp("watches")) as c:
        yield c


def solo(tmp_path, name="solo", port=None, **kw):
    """A node of its own (one member: it leads itself)."""
    if port is None:
        (port,) = free_ports(1)
    node = floyd.Floyd(f"127.0.0.1:{port}", "127.0.0.1", port, tmp_path / name, **FAST, **kw)
    node.wait_for_leader(DEADLINE)
    return node


# -- module-level API ----------------------------------------------------------


def test_types_and_constants():
    for name in ("WatchEvent", "EVENT_PUT", "EVENT_DELETE"):
        assert name in floyd.__all__
    assert (floyd.EVENT_PUT, floyd.EVENT_DELETE) == (0, 1)
    e = floyd.WatchEvent(type=floyd.EVENT_DELETE, key=b"k", value=b"", mod_revision=7)
    assert e == (1, b"k", b"", 7)
    assert floyd.WatchEvent._fields == ("type", "key", "value", "mod_revision")
    assert issubclass(floyd.CompactedError, floyd.FloydError)
    assert floyd.CompactedError.code == floyd.COMPACTED == 15


# -- the shared cluster ---------------------------------------------------------


def test_every_node_sees_every_change_once_in_order(cluster):
    _, nodes = cluster
    leader, (f, other) = leader_and_followers(nodes)
    # A change every node has applied: a watch from now on any node starts after it.
    retrying(lambda: leader.write(b"warm", b""))
    for n in nodes:
        wait_until(lambda n=n: present(n, b"warm"), "the first write everywhere")

    recorders = [Recorder() for _ in nodes]
    ids = [n.watch(b"w/", floyd.prefix_end(b"w/"), 0, r) for n, r in zip(nodes, recorders)]
    assert all(isinstance(i, int) and i > 0 for i in ids)
    tail = Recorder()
    tail_id = other.watch("w/5", None, 0, tail)  # str: UTF-8; None: to the last key

    want = []
    for k in range(10):
        key = f"w/{k}".encode()
        value = b"v\x00 4" if k == 4 else f"v{k}".encode()
        retrying(lambda: nodes[k % 3].write(key, value))
        want.append(put(key, value))
    leader.write(b"other", b"x")  # before the prefix
    leader.write(b"zz", b"z")  # after it
    f.delete(b"w/3")
    want.append(delete(b"w/3"))
    f.delete(b"w/never")  # a missing key: no change
    with floyd.Txn() as t:
        t.put(floyd.THEN, b"w/t1", b"1").put(floyd.THEN, b"w/t2", b"2").delete(floyd.THEN, b"w/0")
        r = retrying(lambda: other.txn(t))
    assert r.succeeded
    want += [put(b"w/t1", b"1"), put(b"w/t2", b"2"), delete(b"w/0")]

    first = None
    for rec in recorders:
        got = rec.wait_events(len(want))
        assert changes(got) == want
        assert all(isinstance(e, floyd.WatchEvent) for e in got)
        assert in_order(got)
        # The transaction's three changes share its revision; every other change has its own.
        assert [e.mod_revision for e in got[-3:]] == [r.revision] * 3
        revs = [e.mod_revision for e in got[:-3]]
        assert revs == sorted(set(revs)) and revs[-1] < r.revision
        if first is None:
            first = got
        else:
            assert got == first  # the same changes at the same revisions on every node
        assert rec.errors == [] and rec.empty_calls == 0
    assert f.read_meta(b"w/5")[1].mod_revision == first[5].mod_revision

    tail_want = want[5:10] + [put(b"zz", b"z"), put(b"w/t1", b"1"), put(b"w/t2", b"2")]
    assert changes(tail.wait_events(len(tail_want))) == tail_want
    other.unwatch(tail_id)
    for n, i in zip(nodes, ids):
        n.unwatch(i)


def test_a_watch_from_a_past_revision_reads_the_history(cluster):
    _, nodes = cluster
    leader, (f, _) = leader_and_followers(nodes)
    live = Recorder()
    live_id = leader.watch(b"p/", floyd.prefix_end(b"p/"), 0, live)
    for k in range(5):
        leader.write(f"p/{k}".encode(), b"v")
    leader.delete(b"p/1")
    with floyd.Txn() as t:
        rt = retrying(lambda: leader.txn(t.put(floyd.THEN, b"p/t", b"T").delete(floyd.THEN, b"p/2")))
    seen = live.wait_events(8)
    leader.unwatch(live_id)

    # From the revision of p/3 on a follower: the history, then live.
    hist = Recorder()
    hist_id = f.watch(b"p/", floyd.prefix_end(b"p/"), seen[3].mod_revision, hist)
    assert hist.wait_events(5) == seen[3:]
    leader.write(b"p/later", b"L")
    got = hist.wait_events(6)
    assert got[5].key == b"p/later" and got[5].mod_revision > rt.revision and len(got) == 6
    f.unwatch(hist_id)

    # From the transaction's revision: it comes whole, in its order.
    txn = Recorder()
    txn_id = f.watch(b"p/", floyd.prefix_end(b"p/"), rt.revision, txn)
    got = txn.wait_events(3)
    assert changes(got) == [put(b"p/t", b"T"), delete(b"p/2"), put(b"p/later", b"L")]
    assert got[0].mod_revision == got[1].mod_revision == rt.revision
    f.unwatch(txn_id)

    # From a revision to come: nothing before it.
    now = revision_of(leader)
    future = Recorder()
    future_id = f.watch(b"fut/", floyd.prefix_end(b"fut/"), now + 2, future)
    leader.write(b"fut/a", b"1")
    leader.write(b"fut/b", b"2")
    got = future.wait_events(1)
    assert changes(got) == [put(b"fut/b", b"2")] and got[0].mod_revision == now + 2
    f.unwatch(future_id)

    # Before the history (a fresh store's starts at revision 2): refused.
    refused = Recorder()
    cb = Forward(refused)
    ref = weakref.ref(cb)
    with pytest.raises(floyd.CompactedError) as e:
        f.watch(b"", b"", 1, cb)
    assert e.value.code == floyd.COMPACTED and "revision 1" in e.value.message
    del cb, e  # (the traceback holds watch()'s frame, and so the callback)
    assert released(ref) and refused.calls == 0


def test_unwatch(cluster):
    _, nodes = cluster
    leader, _ = leader_and_followers(nodes)
    u, sentinel = Recorder(), Recorder()
    cb = Forward(u)
    ref = weakref.ref(cb)
    wid = leader.watch(b"u/", floyd.prefix_end(b"u/"), 0, cb)
    del cb
    sid = leader.watch(b"u/", floyd.prefix_end(b"u/"), 0, sentinel)
    assert wid != sid
    leader.write(b"u/1", b"a")
    u.wait_events(1)
    assert leader.unwatch(wid) is None
    assert released(ref)  # the binding let go of the callback
    for bad in (wid, 987654321, 0):
        with pytest.raises(floyd.NotFoundError) as e:
            leader.unwatch(bad)
        assert e.value.code == floyd.NOT_FOUND
    leader.write(b"u/2", b"b")
    sentinel.wait_events(2)
    assert len(u.events) == 1 and u.calls == 1 and u.errors == []  # no call after unwatch, no last call
    leader.unwatch(sid)


def test_unwatch_from_the_callback_itself(cluster):
    _, nodes = cluster
    leader, _ = leader_and_followers(nodes)
    inner = []
    holder = {}

    def on_call(events, error):
        if not inner:
            try:
                leader.unwatch(holder["id"])
                inner.append("ok")
            except Exception as e:  # pragma: no cover - reported by the assert below
                inner.append(e)

    me, sentinel = Recorder(on_call), Recorder()
    holder["id"] = leader.watch(b"s/", floyd.prefix_end(b"s/"), 0, me)
    sid = leader.watch(b"s/", floyd.prefix_end(b"s/"), 0, sentinel)
    for k in range(3):
        leader.write(f"s/{k}".encode(), b"v")
    sentinel.wait_events(3)
    wait_until(lambda: inner, "the callback's unwatch")
    assert inner == ["ok"]
    assert len(me.events) == 1 and me.calls == 1 and me.errors == []
    with pytest.raises(floyd.NotFoundError):
        leader.unwatch(holder["id"])
    leader.unwatch(sid)


def test_a_callback_may_not_call_its_node_but_unwatch(cluster):
    _, nodes = cluster
    leader, _ = leader_and_followers(nodes)
    refusals = []

    def on_call(events, error):
        for call in (lambda: leader.read(b"k"), lambda: leader.watch(b"a", b"", 0, print), leader.close):
            try:
                call()
            except RuntimeError as e:
                refusals.append(str(e))

    rec = Recorder(on_call)
    wid = leader.watch(b"c/", floyd.prefix_end(b"c/"), 0, rec)
    leader.write(b"c/1", b"v")
    wait_until(lambda: len(refusals) == 3, "the callback's calls to be refused")
    assert all("must not" in r for r in refusals)
    assert not leader.closed
    leader.unwatch(wid)


def test_an_exception_in_the_callback_is_reported_and_the_watch_goes_on(cluster, monkeypatch):
    _, nodes = cluster
    leader, _ = leader_and_followers(nodes)
    reported = []
    monkeypatch.setattr(sys, "unraisablehook", lambda args: reported.append(args.exc_value))

    def on_call(events, error):
        raise ValueError("raised by the test")

    rec = Recorder(on_call)
    wid = leader.watch(b"x/", floyd.prefix_end(b"x/"), 0, rec)
    leader.write(b"x/1", b"1")
    rec.wait_events(1)
    leader.write(b"x/2", b"2")
    assert changes(rec.wait_events(2)) == [put(b"x/1", b"1"), put(b"x/2", b"2")]
    wait_until(lambda: len(reported) >= 2, "the exceptions to be reported")
    assert all(isinstance(e, ValueError) for e in reported)
    leader.unwatch(wid)


def test_bad_input(cluster):
    _, nodes = cluster
    leader, (f, _) = leader_and_followers(nodes)
    rec = Recorder()
    for call in (
        lambda: f.watch(1, b"", 0, rec),
        lambda: f.watch(b"a", 2, 0, rec),
        lambda: f.watch(b"a", b"", "0", rec),
        lambda: f.watch(b"a", b"", 1.0, rec),
        lambda: f.watch(b"a", b"", True, rec),
        lambda: f.watch(b"a", b"", None, rec),
        lambda: f.watch(b"a", b"", 0, None),
        lambda: f.watch(b"a", b"", 0, "not callable"),
        lambda: f.unwatch("1"),
        lambda: f.unwatch(None),
        lambda: f.unwatch(1.0),
    ):
        with pytest.raises(TypeError):
            call()
    for call in (
        lambda: f.watch(b"a", b"", -1, rec),
        lambda: f.watch(b"a", b"", 2**64, rec),
        lambda: f.unwatch(-1),
        lambda: f.unwatch(2**64),
    ):
        with pytest.raises(floyd.InvalidArgumentError):
            call()
    big = b"k" * (64 * 1024 + 2)
    for call in (lambda: f.watch(big, b"", 0, rec), lambda: f.watch(b"a", big, 0, rec)):
        with pytest.raises(floyd.InvalidArgumentError) as e:
            call()
        assert e.value.code == floyd.INVALID_ARGUMENT and e.value.message
    assert rec.calls == 0 and f._watches == {}
    # A bound of 64 KiB + 1 bytes (the prefix end of the longest key) is fine; so is bytearray/memoryview.
    wid = f.watch(bytearray(b"\0"), memoryview(b"\xff" * (64 * 1024 + 1)), 0, rec)
    f.unwatch(wid)


# -- nodes of their own --------------------------------------------------------


def test_close_ends_every_watch_with_stopped(tmp_path):
    node = solo(tmp_path)
    a, b = Recorder(), Recorder()
    cb = Forward(b)
    ref = weakref.ref(cb)
    node.watch(b"", None, 0, a)
    node.watch(b"k", b"l", 0, cb)
    del cb
    retrying(lambda: node.write(b"k", b"v"))
    a.wait_events(1)
    b.wait_events(1)
    node.close()  # the last calls are made before close returns
    for rec in (a, b):
        assert len(rec.errors) == 1 and rec.calls_after_end == 0
        assert isinstance(rec.errors[0], floyd.StoppedError) and rec.errors[0].code == floyd.STOPPED
        assert rec.events[-1].key == b"k"
    assert released(ref)
    assert node._watches == {}
    with pytest.raises(floyd.StoppedError):
        node.watch(b"", b"", 0, a)
    with pytest.raises(floyd.StoppedError):
        node.unwatch(1)


def test_history_revisions_option(tmp_path):
    node = solo(tmp_path, history_revisions=8)
    try:
        first = retrying(lambda: node.write_if(b"h/0", b"v", 0))
        for k in range(1, 30):
            node.write(f"h/{k:02}".encode(), b"v")
        now = revision_of(node)
        assert now == first + 29
        with pytest.raises(floyd.CompactedError):
            node.watch(b"h/", floyd.prefix_end(b"h/"), first, Recorder())
        rec = Recorder()
        node.watch(b"h/", floyd.prefix_end(b"h/"), now - 4, rec)  # within the 8 kept
        got = rec.wait_events(5)
        assert [e.key for e in got] == [f"h/{k:02}".encode() for k in range(25, 30)]
        assert [e.mod_revision for e in got] == list(range(now - 4, now + 1))
    finally:
        node.close()
    with pytest.raises(TypeError):
        solo(tmp_path, "bad", history_revisions="8")
    with pytest.raises(floyd.InvalidArgumentError):
        solo(tmp_path, "bad", history_revisions=-1)


def test_watch_again_after_a_restart(tmp_path):
    (port,) = free_ports(1)
    node = solo(tmp_path, port=port)
    rec = Recorder()
    node.watch(b"r/", floyd.prefix_end(b"r/"), 0, rec)
    retrying(lambda: node.write(b"r/1", b"1"))
    last = rec.wait_events(1)[0].mod_revision
    node.close()
    node = solo(tmp_path, port=port)
    try:
        node.write(b"r/2", b"2")
        again = Recorder()
        node.watch(b"r/", floyd.prefix_end(b"r/"), last + 1, again)  # from the last revision seen + 1
        node.write(b"r/3", b"3")
        got = again.wait_events(2)
        assert changes(got) == [put(b"r/2", b"2"), put(b"r/3", b"3")] and got[0].mod_revision > last
    finally:
        node.close()


def test_a_watcher_too_slow_is_ended_busy(tmp_path):
    node = solo(tmp_path)
    try:
        entered, gate = threading.Event(), threading.Event()

        def on_call(events, error):
            entered.set()
            gate.wait(DEADLINE * 4)

        rec = Recorder(on_call)
        wid = node.watch(b"slow/", floyd.prefix_end(b"slow/"), 0, rec)
        retrying(lambda: node.write(b"slow/first", b"1"))
        assert entered.wait(DEADLINE)  # the callback is called, and blocks the watch thread
        # 782 transactions of 128 puts: 100,096 changes, past the 100,000 a watcher may queue.
        errors = []

        def worker(w):
            try:
                for t in range(w, 782, 4):
                    with floyd.Txn() as txn:
                        for i in range(128):
                            txn.put(floyd.THEN, f"slow/{t}/{i}".encode(), b"v")
                        retrying(lambda: node.txn(txn))
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors, errors
        gate.set()
        error = rec.wait_end()
        assert isinstance(error, floyd.BusyError) and error.code == floyd.BUSY
        assert [e.key for e in rec.events] == [b"slow/first"]  # nothing it fell behind on
        assert len(rec.errors) == 1 and rec.calls_after_end == 0
        with pytest.raises(floyd.NotFoundError):
            node.unwatch(wid)
        assert node._watches == {}
    finally:
        node.close()
    assert len(rec.errors) == 1 and rec.calls_after_end == 0


def test_host_groups_have_watches(tmp_path):
    (port,) = free_ports(1)
    host = floyd.Host("127.0.0.1", port, tmp_path)
    try:
        a = host.open_group(1, [host.address], history_revisions=100, **FAST)
        b = host.open_group(2, [host.address], **FAST)
        ra, rb = Recorder(), Recorder()
        a.watch(b"", b"", 0, ra)
        b.watch(b"", b"", 0, rb)
        retrying(lambda: a.write(b"k", b"a"))
        retrying(lambda: b.write(b"k", b"b"))
        assert changes(ra.wait_events(1)) == [put(b"k", b"a")]
        assert changes(rb.wait_events(1)) == [put(b"k", b"b")]
        host.close()  # ends every group's watches, with a last call
        for rec in (ra, rb):
            assert len(rec.errors) == 1 and isinstance(rec.errors[0], floyd.StoppedError)
            assert len(rec.events) == 1
        with pytest.raises(floyd.StoppedError):
            a.watch(b"", b"", 0, ra)
        a.close()
        b.close()
    finally:
        host.close()


def test_a_state_machine_node_refuses_watches(tmp_path):
    with solo(tmp_path, state_machine=Echo()) as node:
        with pytest.raises(floyd.InvalidArgumentError):
            node.watch(b"", b"", 0, Recorder())
        with pytest.raises(floyd.InvalidArgumentError):
            node.unwatch(1)
        assert node._watches == {}
