"""A floyd.StateMachine in Python on a 3-node cluster in this process: propose
through the leader and a follower, identical applies everywhere, refusals
and exceptions reported to the proposer, calls back into the node refused."""

import threading

import pytest

import floyd
from test_floyd import agreed_leader, start_cluster, wait_until


class Counter(floyd.StateMachine):
    """ "add N" answers the new total; "fail" raises; "reenter" calls its node."""

    def __init__(self):
        self.total = 0
        self.applied = []
        self.leading = None
        self.node = None
        self.reentry = None
        self.lock = threading.Lock()

    def apply(self, index, data):
        with self.lock:
            self.applied.append((index, data))
        if data == b"fail":
            raise ValueError("refused by the counter")
        if data == b"reenter":
            try:
                self.node.is_leader()
            except RuntimeError as e:
                self.reentry = str(e)
            return b""
        verb, n = data.split(b" ")
        assert verb == b"add"
        self.total += int(n)
        return str(self.total)

    def snapshot_save(self, directory):
        with open(f"{directory}/total", "w") as f:
            f.write(str(self.total))

    def snapshot_load(self, directory):
        with open(f"{directory}/total") as f:
            self.total = int(f.read())

    def on_leader_start(self, term):
        self.leading = term

    def on_leader_stop(self):
        self.leading = None


def test_state_machine_error_code():
    assert floyd.STATE_MACHINE == floyd.StateMachineError.code == 13
    assert floyd.status_str(floyd.STATE_MACHINE) == "STATE_MACHINE"
    assert isinstance(floyd._errors.error_for(13, "x"), floyd.StateMachineError)


def test_propose_through_leader_and_follower(tmp_path):
    machines = [Counter() for _ in range(3)]
    per_node = {i: {"state_machine": m} for i, m in enumerate(machines)}
    _, nodes = start_cluster(tmp_path, per_node=per_node)
    try:
        for node, m in zip(nodes, machines):
            m.node = node
        leader = wait_until(lambda: agreed_leader(nodes), "a leader")
        follower = next(n for n in nodes if n is not leader)
        wait_until(lambda: machines[nodes.index(leader)].leading, "on_leader_start")
        assert leader.propose(b"add 5") == b"5"
        assert follower.propose("add 2") == b"7"
        with pytest.raises(floyd.StateMachineError) as e:
            follower.propose(b"fail")
        assert "refused by the counter" in str(e.value)
        with pytest.raises(floyd.StateMachineError):
            leader.propose(b"add x")  # int() raises in apply: a refusal too
        assert follower.propose(b"reenter") == b""
        assert follower.propose(b"add 1") == b"8"
        with pytest.raises(floyd.InvalidArgumentError):
            leader.write(b"k", b"v")
        wait_until(lambda: all(len(m.applied) == 6 for m in machines), "every node applying everything")
        assert all(m.applied == machines[0].applied for m in machines)
        assert all("must not call" in m.reentry for m in machines)
    finally:
        for node in nodes:
            node.close()
    assert all(m.leading is None for m in machines)


def test_propose_on_a_key_value_node_is_invalid(tmp_path):
    _, (node,) = start_cluster(tmp_path, n=1)
    try:
        with pytest.raises(floyd.InvalidArgumentError):
            node.propose(b"x")
    finally:
        node.close()
