#!/usr/bin/env bash
# redis-benchmark against a fresh raftis cluster, started and stopped around it:
#
#   scripts/raftis-bench.sh [BIN] [redis-benchmark options...]
#
# BIN is a raftis binary (default: the dev build, built first); NODES (3),
# TESTS (set), KEYS (100000), REQUESTS (100000) and RAFTIS_ARGS (more raftis
# options) come from the environment. The cluster runs in a temporary
# directory on free ports; the benchmark targets the leader and prints
# redis-benchmark's CSV line. Giving two builds in turn compares them under
# the same conditions (BENCHMARKS.md).
#
# RAFTIS_GROUPS=N runs the nodes as a Redis Cluster of N groups (`--groups N
# --moved`): once every node leads a range, `redis-benchmark --cluster`
# sends each key to its range's leader, and the log syncs per second of
# each node (FLOYD.STATUS HOST's log_syncs) are printed after the CSV.
# (redis-benchmark refuses a cluster of one master: with RAFTIS_GROUPS=1 it
# runs without --cluster, against the leader.) Note that redis-benchmark
# --cluster gives each node's clients one hash tag, so it writes one slot,
# one group, per node.
#
# NOTIFY=KEA turns keyspace notifications on on every node, each with a
# subscriber to all of them: what a watched key costs the write path.
#
# The nodes stay in this script's session. Started each in a session of its
# own (as `make demo` does, with setsid), the kernel's autogroup scheduling
# splits the two cores evenly between the nodes, while a leader needs about
# three times a follower's CPU: -c 50 then drops from ~23,000 to ~16,000
# SET/s. On separate machines, as in production, the question does not arise.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/floyd/target}"
if [ $# -gt 0 ] && [ -x "$1" ] && [ "${1#-}" = "$1" ]; then
  bin=$1
  shift
else
  cargo build -q --bin raftis
  bin="$CARGO_TARGET_DIR/debug/raftis"
fi
command -v redis-benchmark >/dev/null || { echo "raftis-bench: needs redis-benchmark (apt-get install redis-tools)" >&2; exit 2; }
nodes=${NODES:-3}
dir=$(mktemp -d)
read -r -a ports <<<"$(python3 - "$nodes" <<'PY'
import socket, sys
n = int(sys.argv[1]) * 2
socks = [socket.socket() for _ in range(n)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)"
members=$(for ((i = 0; i < nodes; i++)); do printf '127.0.0.1:%s,' "${ports[i]}"; done)
members=${members%,}
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
cluster_args=""
[ -n "${RAFTIS_GROUPS:-}" ] && cluster_args="--groups $RAFTIS_GROUPS --moved"
for ((i = 0; i < nodes; i++)); do
  "$bin" --members "$members" --local "127.0.0.1:${ports[i]}" --path "$dir/n$i" \
    --port "${ports[nodes + i]}" --log-level warn $cluster_args ${RAFTIS_ARGS:-} </dev/null 2>"$dir/n$i.stderr" &
  pids+=($!)
done
if [ -n "${RAFTIS_GROUPS:-}" ]; then
  port0=${ports[nodes]}
  # Every node masters a range (with fewer groups than nodes: every group led).
  want=$(( RAFTIS_GROUPS < nodes ? RAFTIS_GROUPS : nodes ))
  for _ in $(seq 600); do
    masters=$(redis-cli -p "$port0" CLUSTER NODES 2>/dev/null | awk '$3 ~ /master/ && NF > 8' | wc -l)
    redis-cli -p "$port0" CLUSTER INFO 2>/dev/null | grep -q "cluster_state:ok" && [ "$masters" -ge "$want" ] && break
    sleep 0.1
  done
  # The balancer's last transfers settle.
  sleep 2
  syncs() {
    for ((i = 0; i < nodes; i++)); do
      redis-cli -p "${ports[nodes + i]}" FLOYD.STATUS HOST | python3 -c 'import json,sys
try: print(json.load(sys.stdin)["log_syncs"])
except Exception: print("float(\"nan\")")'
    done
  }
  before=($(syncs))
  t0=$(date +%s.%N)
  echo -n "$(basename "$bin") nodes=$nodes groups=$RAFTIS_GROUPS $*: "
  target=(--cluster -p "$port0")
  if [ "$RAFTIS_GROUPS" = 1 ]; then
    for ((i = 0; i < nodes; i++)); do
      redis-cli -p "${ports[nodes + i]}" INFO replication | grep -q "raft_role:leader" && target=(-p "${ports[nodes + i]}")
    done
  fi
  redis-benchmark "${target[@]}" -t "${TESTS:-set}" -r "${KEYS:-100000}" -n "${REQUESTS:-100000}" "$@" --csv 2>/dev/null | tail -n 1
  after=($(syncs))
  t1=$(date +%s.%N)
  echo -n "  log syncs/s per node:"
  for ((i = 0; i < nodes; i++)); do
    python3 -c "print(' %.0f' % ((${after[i]} - ${before[i]}) / ($t1 - $t0)), end='')"
  done
  echo
  exit 0
fi
leader=""
for _ in $(seq 200); do
  for ((i = 0; i < nodes; i++)); do
    if redis-cli -p "${ports[nodes + i]}" INFO replication 2>/dev/null | grep -q "raft_role:leader"; then
      leader=${ports[nodes + i]}
    fi
  done
  [ -n "$leader" ] && break
  sleep 0.1
done
[ -n "$leader" ] || { echo "raftis-bench: no leader" >&2; exit 1; }
if [ -n "${NOTIFY:-}" ]; then
  # Keyspace notifications on every node, and a subscriber to all of them
  # on each (reading them all, to /dev/null).
  for ((i = 0; i < nodes; i++)); do
    redis-cli -p "${ports[nodes + i]}" CONFIG SET notify-keyspace-events "$NOTIFY" >/dev/null
    redis-cli -p "${ports[nodes + i]}" PSUBSCRIBE '__key*@0__:*' >/dev/null &
    pids+=($!)
  done
fi
echo -n "$(basename "$bin") nodes=$nodes${NOTIFY:+ notify=$NOTIFY} $*: "
redis-benchmark -p "$leader" -t "${TESTS:-set}" -r "${KEYS:-100000}" -n "${REQUESTS:-100000}" "$@" --csv 2>/dev/null | tail -n 1
