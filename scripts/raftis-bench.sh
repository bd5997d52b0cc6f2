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
for ((i = 0; i < nodes; i++)); do
  "$bin" --members "$members" --local "127.0.0.1:${ports[i]}" --path "$dir/n$i" \
    --port "${ports[nodes + i]}" --log-level warn ${RAFTIS_ARGS:-} </dev/null 2>"$dir/n$i.stderr" &
  pids+=($!)
done
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
echo -n "$(basename "$bin") nodes=$nodes $*: "
redis-benchmark -p "$leader" -t "${TESTS:-set}" -r "${KEYS:-100000}" -n "${REQUESTS:-100000}" "$@" --csv 2>/dev/null | tail -n 1
