#!/usr/bin/env bash
# A local raftis cluster in the background: one raftis process per node on
# 127.0.0.1, free ports, data and logs under ./demo-data (FLOYD_DEMO_DIR).
#
#   scripts/demo.sh start [--nodes N]   build raftis, start N nodes (default 3),
#                                       wait for a leader, print how to use them
#   scripts/demo.sh status              every node's status
#   scripts/demo.sh stop                SIGTERM every node (pid files), then wait
#
# `make demo [NODES=5]` and `make demo-stop` run these.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR="${FLOYD_DEMO_DIR:-./demo-data}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/floyd/target}"
BIN="$CARGO_TARGET_DIR/debug/raftis"
WAIT_SECONDS=60

die() { echo "demo: $*" >&2; exit 1; }

# resp PORT WORD... : sends one inline command, prints the reply's payload
# (a bulk string's bytes, or a one-line reply without its type byte).
resp() {
  local port=$1 fd hdr
  shift
  exec {fd}<>"/dev/tcp/127.0.0.1/$port" || return 1
  printf '%s\r\n' "$*" >&"$fd"
  if ! IFS= read -r -t 5 hdr <&"$fd"; then
    exec {fd}>&-
    return 1
  fi
  hdr=${hdr%$'\r'}
  case $hdr in
    '$-1') ;;
    '$'*) timeout 5 head -c "${hdr#\$}" <&"$fd" ;;
    *) printf '%s' "${hdr#?}" ;;
  esac
  exec {fd}>&-
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

running_pids() {
  local f
  for f in "$DIR"/node*.pid; do
    [ -e "$f" ] || continue
    alive "$f" && echo "$f"
  done
  return 0
}

# n free ports on 127.0.0.1 (bound to port 0 together, so all distinct).
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

load() {
  [ -f "$DIR/cluster.env" ] || die "no demo cluster in $DIR (start one with: make demo)"
  # shellcheck disable=SC1091
  . "$DIR/cluster.env"
}

status() {
  load
  local i first=1 s
  for ((i = 1; i <= NODES; i++)); do
    if ! alive "$DIR/node$i.pid"; then
      echo "  node $i: not running"
      continue
    fi
    s=$(resp "${RESP_PORTS[i - 1]}" FLOYD.STATUS) || { echo "  node $i: no answer"; continue; }
    if [ $first = 1 ]; then
      printf '%s\n' "$s"
      first=0
    else
      printf '%s\n' "$s" | tail -n 1
    fi
  done
}

usage_lines() {
  load
  local r1=${RESP_PORTS[0]} h1=${HTTP_PORTS[0]}
  local r2=${RESP_PORTS[1]:-$r1} h2=${HTTP_PORTS[1]:-$h1}
  cat <<EOF

  node  redis-cli     HTTP                    raft address      pid file
EOF
  for ((i = 1; i <= NODES; i++)); do
    printf '  %-4s  -p %-10s http://127.0.0.1:%-6s %-17s %s\n' "$i" "${RESP_PORTS[i - 1]}" \
      "${HTTP_PORTS[i - 1]}" "${RAFT[i - 1]}" "$DIR/node$i.pid"
  done
  cat <<EOF

Talk to any node (a follower forwards to the leader; GET is linearizable):
  redis-cli -p $r1 SET greeting hello
  redis-cli -p $r2 GET greeting
  redis-cli -p $r1 INFO replication
  redis-cli -p $r2 FLOYD.TRYLOCK job worker-1 10000
  redis-cli -p $r1 FLOYD.LEADER
  curl -XPUT http://127.0.0.1:$h1/my-key -d hello
  curl http://127.0.0.1:$h2/my-key
  curl http://127.0.0.1:$h1/-/status
  curl http://127.0.0.1:$h1/-/leader
Kill a node (the leader, say) with kill -9 \$(cat $DIR/nodeN.pid) and ask another for FLOYD.LEADER.
Logs: $DIR/nodeN/LOG and $DIR/nodeN.stderr. Status again: scripts/demo.sh status. Stop: make demo-stop
EOF
  command -v redis-cli >/dev/null || echo "(redis-cli is in Debian's redis-tools package: apt-get install redis-tools)"
}

start() {
  local nodes=3
  while [ $# -gt 0 ]; do
    case $1 in
      --nodes) nodes=${2:?--nodes needs a number}; shift 2 ;;
      *) die "unknown argument $1" ;;
    esac
  done
  [[ $nodes =~ ^[1-9][0-9]?$ ]] || die "--nodes must be 1..99"
  if [ -n "$(running_pids)" ]; then
    echo "demo: a demo cluster is already running in $DIR (make demo-stop ends it):"
    usage_lines
    echo
    status
    return 0
  fi
  command -v python3 >/dev/null || die "python3 is needed to pick free ports (scripts/install-deps.sh installs it)"
  echo "demo: building raftis..."
  cargo build --bin raftis
  rm -rf "$DIR"
  mkdir -p "$DIR"
  echo '*' >"$DIR/.gitignore" # the demo's data is never part of the repository
  local ports i members
  read -r -a ports <<<"$(free_ports $((3 * nodes)))"
  RAFT=() RESP_PORTS=() HTTP_PORTS=()
  for ((i = 0; i < nodes; i++)); do
    RAFT+=("127.0.0.1:${ports[i]}")
    RESP_PORTS+=("${ports[nodes + i]}")
    HTTP_PORTS+=("${ports[2 * nodes + i]}")
  done
  members=$(IFS=,; echo "${RAFT[*]}")
  {
    echo "NODES=$nodes"
    echo "RAFT=(${RAFT[*]})"
    echo "RESP_PORTS=(${RESP_PORTS[*]})"
    echo "HTTP_PORTS=(${HTTP_PORTS[*]})"
  } >"$DIR/cluster.env"
  for ((i = 1; i <= nodes; i++)); do
    # setsid: the nodes outlive this script and the terminal's Ctrl-C.
    setsid "$BIN" --members "$members" --local "${RAFT[i - 1]}" --path "$DIR/node$i" \
      --port "${RESP_PORTS[i - 1]}" --http-port "${HTTP_PORTS[i - 1]}" \
      </dev/null >"$DIR/node$i.stderr" 2>&1 &
    echo $! >"$DIR/node$i.pid"
  done
  echo "demo: started $nodes raftis nodes; waiting for a leader (at most ${WAIT_SECONDS}s)..."
  local deadline=$((SECONDS + WAIT_SECONDS)) leader="" views v
  while :; do
    for ((i = 1; i <= nodes; i++)); do
      if ! alive "$DIR/node$i.pid"; then
        echo "demo: node $i exited; its stderr:" >&2
        tail -n 20 "$DIR/node$i.stderr" >&2
        stop >/dev/null
        exit 1
      fi
    done
    views=()
    for ((i = 1; i <= nodes; i++)); do
      v=$(resp "${RESP_PORTS[i - 1]}" FLOYD.LEADER 2>/dev/null) || v=""
      views+=("$v")
    done
    leader=${views[0]}
    if [ -n "$leader" ]; then
      for v in "${views[@]}"; do [ "$v" = "$leader" ] || leader=""; done
    fi
    [ -n "$leader" ] && break
    if [ $SECONDS -ge $deadline ]; then
      echo "demo: no leader after ${WAIT_SECONDS}s; see $DIR/node*.stderr" >&2
      stop >/dev/null
      exit 1
    fi
    sleep 0.2
  done
  local who=""
  for ((i = 1; i <= nodes; i++)); do [ "${RAFT[i - 1]}" = "$leader" ] && who=$i; done
  echo "demo: a $nodes-node raftis cluster is up; the leader is node $who ($leader)."
  # A first check: a write through the last node, read back through the first.
  local last=${RESP_PORTS[nodes - 1]} first=${RESP_PORTS[0]} set got
  set=$(resp "$last" SET demo:hello world) || set="no answer"
  got=$(resp "$first" GET demo:hello) || got="no answer"
  echo "demo: SET demo:hello world on node $nodes -> $set; GET demo:hello on node 1 -> $got"
  [ "$set" = OK ] && [ "$got" = world ] || die "the first write and read failed; see $DIR/node*.stderr"
  usage_lines
  echo
  status
}

stop() {
  local f pid any=0 deadline
  for f in "$DIR"/node*.pid; do
    [ -e "$f" ] || continue
    if alive "$f"; then
      kill -TERM "$(cat "$f")" 2>/dev/null || true
      any=1
    fi
  done
  deadline=$((SECONDS + 15))
  for f in "$DIR"/node*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "demo: node $pid did not stop on SIGTERM; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
  if [ $any = 1 ]; then
    echo "demo: stopped (data and logs kept in $DIR)"
  else
    echo "demo: no demo cluster running in $DIR"
  fi
}

case "${1:-start}" in
  start) shift || true; start "$@" ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: $0 start [--nodes N] | status | stop" ;;
esac
