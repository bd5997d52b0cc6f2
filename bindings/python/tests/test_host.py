"""floyd.Host: three hosts in this process (free ports, temporary
directories), each running several Raft groups. Every group elects, writes
and reads through its own Floyd and keeps apart from the others; a host lists
its groups and reports its status; a group closed and reopened keeps its
data, a closed group dropped everywhere comes back empty; a group runs a
StateMachine; bad input is refused; a closed host's groups raise
StoppedError and are still closed safely; an open group keeps its Host
alive. Every wait is a condition polled against a deadline."""

import gc
import socket
import threading
import weakref

import pytest

import floyd
from test_floyd import FAST, free_ports, wait_until

GROUPS = (1, 7, 2**40)  # ids need not be small or dense


class Hosts:
    """Three hosts on free ports; ``open(g)`` opens group g on every host."""

    def __init__(self, tmp_path, **kw):
        ports = free_ports(3)
        self.members = [f"127.0.0.1:{p}" for p in ports]
        self.lines = [[] for _ in ports]
        self.closed = [False for _ in ports]
        self.late = []  # log lines a host's callback got after its close() returned
        self.groups = {}  # group id -> [Floyd or None per host]
        self.hosts = []
        try:
            for i, p in enumerate(ports):
                self.hosts.append(
                    floyd.Host(
                        "127.0.0.1",
                        p,
                        tmp_path / f"host{i}",
                        workers=2,
                        cluster_id="py-host-test",
                        log_callback=lambda level, msg, i=i: self._log(i, msg),
                        **kw,
                    )
                )
        except BaseException:
            self.close()
            raise

    def _log(self, i, msg):
        self.lines[i].append(msg)
        if self.closed[i]:
            self.late.append((i, msg))

    def open_one(self, i, g, **kw):
        opts = dict(FAST)
        opts.update(kw)
        node = self.hosts[i].open_group(g, self.members, **opts)
        self.groups.setdefault(g, [None] * len(self.hosts))[i] = node
        return node

    def open(self, g, **kw):
        return [self.open_one(i, g, **kw) for i in range(len(self.hosts))]

    def close_one(self, i, g):
        self.groups[g][i].close()
        self.groups[g][i] = None

    def close_group(self, g):
        for i in range(len(self.hosts)):
            if self.groups[g][i] is not None:
                self.close_one(i, g)

    def replicas(self, g):
        return [n for n in self.groups[g] if n is not None]

    def leader(self, g):
        """The replica of group g every open replica agrees leads."""

        def agreed():
            nodes = self.groups[g]
            leaders = {n.get_leader() for n in nodes if n is not None}
            if len(leaders) != 1 or None in leaders:
                return None
            (leader,) = leaders
            i = self.members.index(leader)
            node = nodes[i]
            return node if node is not None and node.is_leader() else None

        return wait_until(agreed, f"a leader of group {g}")

    def write(self, g, key, value):
        """Writes through any open replica of group g, retrying until one takes it."""

        def attempt():
            for node in self.replicas(g):
                try:
                    node.write(key, value)
                    return True
                except (floyd.NoLeaderError, floyd.FloydTimeoutError, floyd.StoppedError):
                    pass
            return False

        wait_until(attempt, f"a write to group {g}")

    def close(self):
        for nodes in self.groups.values():
            for node in nodes:
                if node is not None:
                    node.close()
        for i, host in enumerate(self.hosts):
            host.close()
            self.closed[i] = True


@pytest.fixture
def hosts(tmp_path):
    h = Hosts(tmp_path)
    try:
        yield h
    finally:
        h.close()


def dirty_converges(node, key, want):
    def check():
        try:
            return node.dirty_read(key) == want
        except floyd.NotFoundError:
            return False

    return wait_until(check, f"{node} holding {key!r} = {want!r}")


def test_exported():
    assert "Host" in floyd.__all__
    assert floyd.Host.__name__ == "Host"


def test_groups_elect_write_read_and_keep_apart(hosts):
    for host in hosts.hosts:
        assert host.list_groups() == []
    for g in GROUPS:
        hosts.open(g)
    for host in hosts.hosts:
        assert host.list_groups() == sorted(GROUPS)
    for g in GROUPS:
        leader = hosts.leader(g)
        follower = next(n for n in hosts.replicas(g) if n is not leader)
        follower.write(b"k", f"value of {g}")  # a follower forwards to the leader
        leader.write(f"only-{g}", b"x")
    for g in GROUPS:
        for node in hosts.groups[g]:
            assert node.group_id == g and node.host is not None
            assert node.read(b"k") == f"value of {g}".encode()
            for other in GROUPS:
                if other != g:
                    with pytest.raises(floyd.NotFoundError):
                        node.read(f"only-{other}")
            dirty_converges(node, b"k", f"value of {g}".encode())
    # A group's Floyd is a Floyd: the rest of the API works on it.
    node = hosts.groups[GROUPS[0]][0]
    assert sorted(node.all_servers()) == sorted(hosts.members)
    token = node.try_lock(b"lock", b"me", 60_000)
    assert token > 0
    hosts.groups[GROUPS[0]][1].unlock(b"lock", b"me")
    assert node.server_status_json()["node"] == hosts.members[0]


def test_status(hosts):
    for g in GROUPS:
        hosts.open(g)
    leader = hosts.leader(GROUPS[1])
    for i, host in enumerate(hosts.hosts):
        status = host.status()
        assert status["host"] == host.address == hosts.members[i]
        assert sorted(s["group"] for s in status["groups"]) == sorted(GROUPS)
        assert status["threads"] and not status["failed"]
        mine = next(s for s in status["groups"] if s["group"] == GROUPS[1])
        assert mine["role"] in ("leader", "follower", "candidate", "pre-candidate")
    wait_until(
        lambda: all(
            next(s for s in h.status()["groups"] if s["group"] == GROUPS[1])["leader"]
            == hosts.members[hosts.groups[GROUPS[1]].index(leader)]
            for h in hosts.hosts
        ),
        "every host's status naming the leader",
    )


def test_metrics_parse_and_count_writes(hosts):
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    for g in GROUPS:
        hosts.open(g)
    g = GROUPS[1]
    leader = hosts.leader(g)
    for k in range(10):
        hosts.write(g, b"m%d" % k, b"v")
    i = hosts.groups[g].index(leader)

    def samples(text):
        # The OpenMetrics parser is strict: the text must parse whole.
        out = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out[(s.name, s.labels.get("group"))] = s.value
        return out

    host_side = samples(hosts.hosts[i].metrics())
    assert host_side[("floyd_applied_entries_total", str(g))] >= 10
    assert host_side[("floyd_is_leader", str(g))] == 1
    assert {str(x) for x in GROUPS} <= {gr for (name, gr) in host_side if name == "floyd_commit_index"}
    assert host_side[("floyd_fsync_duration_seconds_count", None)] >= 10
    # Each replica's handle counts the calls made on it (hosts.write uses
    # whichever replica takes the write).
    submitted = sum(samples(n.metrics())[("floyd_submitted_total", str(g))] for n in hosts.replicas(g))
    assert submitted >= 10
    own = samples(leader.metrics())
    assert {gr for (name, gr) in own if name == "floyd_commit_index"} == {str(g)}

    # A leader change is counted on every member, and the new leader's
    # election as won.
    def count(j, name):
        return samples(hosts.hosts[j].metrics()).get((name, str(g)), 0)

    seen = [count(j, "floyd_leader_changes_total") for j in range(3)]
    nxt = (i + 1) % 3
    leader.transfer_leader(hosts.members[nxt])
    wait_until(
        lambda: all(count(j, "floyd_leader_changes_total") > seen[j] for j in range(3)),
        "the leader change counted on every host",
    )
    assert count(nxt, "floyd_elections_won_total") >= 1

    # Garbage on the members' port is refused and counted by reason.
    def refused(j, reason):
        for family in text_string_to_metric_families(hosts.hosts[j].metrics()):
            for s in family.samples:
                if s.name == "floyd_refused_frames_total" and s.labels.get("reason") == reason:
                    return s.value
        return 0

    before = refused(nxt, "bad_handshake")
    host, port = hosts.members[nxt].rsplit(":", 1)
    with socket.create_connection((host, int(port))) as s:
        s.sendall(b"GET / HTTP/1.1\r\n\r\n")
    wait_until(lambda: refused(nxt, "bad_handshake") > before, "the garbage counted")


def test_idle_groups_go_quiet_and_a_write_wakes_one(hosts):
    """Issue 23: idle groups stop ticking on every host (the host status
    counts them, and each group's status says so); a write wakes its group
    and is answered; quiesce=False keeps a group awake."""
    quiet, awake = GROUPS[0], GROUPS[1]
    hosts.open(quiet)
    hosts.open(awake, quiesce=False)
    group_quiet = lambda h, g: next(s for s in h.status()["groups"] if s["group"] == g)["quiesced"]
    wait_until(
        lambda: all(group_quiet(h, quiet) for h in hosts.hosts),
        "the idle group quiet on every host",
    )
    for h in hosts.hosts:
        status = h.status()
        assert status["quiesced_groups"] == 1
        assert not group_quiet(h, awake)
        assert status["heartbeats_per_sec"] >= 0 and status["wakeups"] >= 0
    wakeups = sum(h.status()["wakeups"] for h in hosts.hosts)
    leader = hosts.leader(quiet)
    assert leader.server_status_json()["quiesced"] is True
    leader.write(b"k", b"v")
    assert leader.read(b"k") == b"v"
    assert sum(h.status()["wakeups"] for h in hosts.hosts) > wakeups
    wait_until(
        lambda: all(group_quiet(h, quiet) for h in hosts.hosts),
        "the group quiet again",
    )


def test_close_and_reopen_keeps_data(hosts):
    g = 5
    hosts.open(g)
    hosts.open(6)
    hosts.write(g, b"k", b"kept")
    # One replica closed and reopened catches up with what it missed.
    hosts.close_one(2, g)
    assert hosts.hosts[2].list_groups() == [6]
    hosts.write(g, b"missed", b"while closed")
    dirty_converges(hosts.open_one(2, g), b"missed", b"while closed")
    # Closed on every host, then reopened: the data was kept.
    hosts.close_group(g)
    for host in hosts.hosts:
        assert host.list_groups() == [6]
    hosts.write(6, b"during", b"the close")  # the other group serves on
    hosts.open(g)
    hosts.leader(g)
    for node in hosts.groups[g]:
        assert wait_until(lambda: node.read(b"k"), "a read of the reopened group") == b"kept"
        assert node.read(b"missed") == b"while closed"


def test_drop_closed_group(hosts):
    g = 9
    hosts.open(g)
    hosts.write(g, b"k", b"doomed")
    with pytest.raises(floyd.InvalidArgumentError):
        hosts.hosts[0].drop_group(g)  # open here
    hosts.close_group(g)
    for host in hosts.hosts:
        host.drop_group(g)
        assert host.list_groups() == []
    hosts.open(g)
    hosts.leader(g)
    for node in hosts.groups[g]:
        with pytest.raises(floyd.NotFoundError):
            node.read(b"k")  # the data is gone
    hosts.write(g, b"k", b"new life")


class Tally(floyd.StateMachine):
    """ "add N" answers the new total; "call" tries its host and groups from apply."""

    def __init__(self):
        self.total = 0
        self.host = None
        self.other = None
        self.refused = []

    def apply(self, index, data):
        if data == b"call":
            for call in (lambda: self.host.list_groups(), lambda: self.other.has_leader()):
                try:
                    call()
                except RuntimeError as e:
                    self.refused.append(str(e))
            return b""
        self.total += int(data.split(b" ")[1])
        return str(self.total)

    def snapshot_save(self, directory):
        with open(f"{directory}/total", "w") as f:
            f.write(str(self.total))

    def snapshot_load(self, directory):
        with open(f"{directory}/total") as f:
            self.total = int(f.read())


def test_state_machine_group(hosts):
    hosts.open(1)
    machines = [Tally() for _ in hosts.hosts]
    for i, m in enumerate(machines):
        hosts.open_one(i, 99, state_machine=m)
        m.host, m.other = hosts.hosts[i], hosts.groups[1][i]
    assert hosts.hosts[0].list_groups() == [1, 99]
    leader = hosts.leader(99)
    follower = next(n for n in hosts.replicas(99) if n is not leader)
    assert leader.propose(b"add 5") == b"5"
    assert follower.propose(b"add 2") == b"7"
    with pytest.raises(floyd.InvalidArgumentError):
        leader.write(b"k", b"v")
    # From a group's callback, neither its host nor the host's other groups may be called.
    assert follower.propose(b"call") == b""
    wait_until(lambda: all(len(m.refused) == 2 for m in machines), "every replica applying 'call'")
    assert all("must not call" in why for m in machines for why in m.refused)
    with pytest.raises(TypeError):
        hosts.hosts[0].open_group(100, hosts.members, state_machine=object())
    hosts.close_group(99)
    assert hosts.hosts[0].list_groups() == [1]


def test_bad_input(hosts, tmp_path):
    hosts.open(1)
    with pytest.raises(floyd.InvalidArgumentError):
        hosts.hosts[0].open_group(1, hosts.members)  # open already
    for bad in (-1, 2**64):
        with pytest.raises(floyd.InvalidArgumentError):
            hosts.hosts[0].open_group(bad, hosts.members)
    with pytest.raises(TypeError):
        hosts.hosts[0].open_group("1", hosts.members)
    with pytest.raises(TypeError):
        hosts.hosts[0].open_group(2, hosts.members, cluster_id="x")  # the host's, not a group's
    with pytest.raises(floyd.InvalidArgumentError):
        hosts.hosts[0].open_group(2, "not an address")
    with pytest.raises(floyd.FloydIOError):
        floyd.Host("127.0.0.1", hosts.hosts[0]._port, tmp_path / "same-port")
    with pytest.raises(TypeError):
        floyd.Host("127.0.0.1", 1, tmp_path / "x", tls="ca.pem")
    with pytest.raises(floyd.InvalidArgumentError):
        floyd.Host("127.0.0.1", 70000, tmp_path / "x")
    with pytest.raises(floyd.InvalidArgumentError):
        floyd.Host("127.0.0.1", 1, tmp_path / "x", workers=2**32)
    with pytest.raises(floyd.InvalidArgumentError):
        floyd.Host("127.0.0.1\0", 1, tmp_path / "x")
    assert hosts.hosts[0].list_groups() == [1]


def test_host_close_group_raises_stopped(hosts):
    for g in GROUPS:
        hosts.open(g)
    for g in GROUPS:
        hosts.write(g, b"k", b"before")
    assert hosts.lines[0], "the log callback got the host's lines"
    host = hosts.hosts[0]
    host.close()
    hosts.closed[0] = True
    host.close()  # idempotent
    assert host.closed
    for call in (host.list_groups, host.status, lambda: host.drop_group(1), lambda: host.open_group(3, hosts.members)):
        with pytest.raises(floyd.StoppedError):
            call()
    for g in GROUPS:
        node = hosts.groups[g][0]
        assert not node.closed  # the handle is still the caller's to release
        with pytest.raises(floyd.StoppedError):
            node.write(b"k", b"x")
        with pytest.raises(floyd.StoppedError):
            node.read(b"k")
        hosts.close_one(0, g)
        with pytest.raises(floyd.StoppedError):
            node.read(b"k")  # closed on the Python side now
    for g in GROUPS:
        hosts.write(g, b"k", b"after")  # the two other hosts serve on
    assert hosts.late == [], "no log line after close() returned"


def test_context_manager(tmp_path):
    (port,) = free_ports(1)
    address = f"127.0.0.1:{port}"
    with floyd.Host("127.0.0.1", port, tmp_path) as host:
        node = host.open_group(3, [address], **FAST)
        node.wait_for_leader()
        node.write(b"k", b"v")
        assert node.read(b"k") == b"v"
    assert host.closed
    with pytest.raises(floyd.StoppedError):
        node.write(b"k", b"w")
    node.close()
    # Reopened on the same directory: the group's data is there.
    with floyd.Host("127.0.0.1", port, tmp_path) as host:
        with host.open_group(3, [address], **FAST) as node:
            node.wait_for_leader()
            assert node.read(b"k") == b"v"
        assert host.list_groups() == []


def test_an_open_group_keeps_its_host_alive(tmp_path):
    (port,) = free_ports(1)
    host = floyd.Host("127.0.0.1", port, tmp_path)
    gone = weakref.ref(host)
    node = host.open_group(1, [f"127.0.0.1:{port}"], **FAST)
    del host
    gc.collect()
    assert gone() is not None and node.host is gone()
    node.wait_for_leader()
    node.write(b"k", b"v")
    node.close()  # the last reference to the host goes: it closes
    gc.collect()
    assert gone() is None


def test_log_callback_must_not_call_its_host(tmp_path):
    (port,) = free_ports(1)
    box = {}
    refused = []

    def callback(level, msg):
        host = box.get("host")
        if host is not None and not refused:
            try:
                host.list_groups()
            except RuntimeError as e:
                refused.append(str(e))

    with floyd.Host("127.0.0.1", port, tmp_path, log_callback=callback) as host:
        box["host"] = host
        with host.open_group(1, [f"127.0.0.1:{port}"], **FAST) as node:
            node.wait_for_leader()
            wait_until(lambda: refused, "a log line calling the host")
        box.clear()
    assert "must not call its own host" in refused[0]


def test_groups_from_many_threads(hosts):
    for g in GROUPS:
        hosts.open(g)
        hosts.leader(g)
    errors = []

    def worker(t):
        try:
            g = GROUPS[t % len(GROUPS)]
            node = hosts.groups[g][t % len(hosts.hosts)]
            for k in range(10):
                node.write(f"t{t}-{k}", f"{g}")
            hosts.hosts[t % len(hosts.hosts)].list_groups()
        except Exception as e:  # noqa: BLE001 -- reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for t in range(6):
        g = GROUPS[t % len(GROUPS)]
        assert hosts.groups[g][0].read(f"t{t}-9") == f"{g}".encode()
