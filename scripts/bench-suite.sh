#!/usr/bin/env bash
# The benchmark suite behind BENCHMARKS.md: in-process clusters (every node
# fsyncs its log before it acknowledges), one row per workload, printed as a
# Markdown table: throughput, latency percentiles and CPU per operation
# (the whole process's user and system time while the row ran, per op).
#
#   scripts/bench-suite.sh [quick|growth]
#       quick: the write rows of the issue's targets only
#       growth: throughput and memory against cluster size and value size
#
# `make bench` runs it. Numbers on a shared 2-core machine move by +-30%
# between runs: compare two builds in one run, not against old tables.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/floyd/target}"
cargo build -q --example bench --lib
BIN="$CARGO_TARGET_DIR/debug/examples/bench"
LIBDIR="$CARGO_TARGET_DIR/debug"
ln -sf libfloyd.so "$LIBDIR/libfloyd.so.0"
CPP_BENCH="$CARGO_TARGET_DIR/write_bench"
g++ -std=c++11 -O2 -Iinclude -Ibindings/cpp examples/cpp/write_bench.cpp -L"$LIBDIR" -lfloyd \
  -Wl,-rpath,"$LIBDIR" -lpthread -o "$CPP_BENCH"

# Enough items for ~2 s a row at the rates seen here.
items_for() { # threads
  case "$1" in 1) echo 2000 ;; 4) echo 2000 ;; 20) echo 1000 ;; *) echo 400 ;; esac
}

if [ "${1:-}" = growth ]; then
  # 20 threads writing ~32 MiB in all (at least 5 values each), per shape.
  echo "| nodes | value | writes/s | MiB/s | p50 | p99 | peak RSS | data |"
  echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for n in 1 3 5 7; do
    for v in 16 128 1024 16384 131072 1048576; do
      items=$(( (32 << 20) / (v * 20) ))
      items=$(( items < 5 ? 5 : (items > 1000 ? 1000 : items) ))
      out="$("$BIN" --nodes "$n" --threads 20 --items "$items" --value-size "$v" 2>&1)"
      line="$(grep '^write' <<<"$out")"
      mem="$(grep '^memory' <<<"$out")"
      rate="$(sed -E 's/.*= ([0-9]+) ops\/s.*/\1/' <<<"$line")"
      p50="$(sed -E 's/.*p50 ([^ ]+).*/\1/' <<<"$line")"
      p99="$(sed -E 's/.* p99 ([^ ]+).*/\1/' <<<"$line")"
      rss="$(sed -E 's/.*peak RSS ([0-9.]+) MiB.*/\1/' <<<"$mem")"
      data="$(sed -E 's/.*data ([0-9.]+) MiB.*/\1/' <<<"$mem")"
      mibs="$(awk -v r="$rate" -v v="$v" 'BEGIN { printf "%.1f", r * v / 1048576 }')"
      echo "| $n | $v B | $rate | $mibs | $p50 | $p99 | $rss MiB | $data MiB |"
    done
  done
  exit 0
fi

echo "| workload | ops/s | p50 | p99 | p99.9 | CPU per op |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
row() { # label, then bench arguments; one table row per result line
  local label="$1"
  shift
  "$BIN" "$@" 2>&1 | grep -E '^(write|read|dirty)' | while IFS= read -r line; do
    local what rate p50 p99 p999 cpu
    what="${line%%:*}"
    rate="$(sed -E 's/.*= ([0-9]+) ops\/s.*/\1/' <<<"$line")"
    p50="$(sed -E 's/.*p50 ([^ ]+).*/\1/' <<<"$line")"
    p99="$(sed -E 's/.* p99 ([^ ]+).*/\1/' <<<"$line")"
    p999="$(sed -E 's/.*p99\.9 ([^ ]+).*/\1/' <<<"$line")"
    cpu="$(sed -E 's/.*CPU ([0-9.]+) µs per op.*/\1 µs/' <<<"$line")"
    echo "| $label, $what | $rate | $p50 | $p99 | $p999 | $cpu |"
  done
}

cpp_row() { # threads value_size items: the C++ program through the C API (5 nodes)
  local out
  out="$("$CPP_BENCH" "$1" "$2" "$3" 2>&1 | tail -n 1)"
  local rate p50 p99
  rate="$(sed -E 's/.*: ([0-9]+) writes\/s.*/\1/' <<<"$out")"
  p50="$(sed -E 's/.*p50 ([^,]+),.*/\1/' <<<"$out")"
  p99="$(sed -E 's/.*p99 ([^,]+),.*/\1/' <<<"$out")"
  echo "| 5 nodes, $1 threads, $2 B, C++ write_bench | $rate | $p50 | $p99 | — | — |"
}

writes() { # nodes threads [extra args]
  local n="$1" t="$2"
  shift 2
  row "$n nodes, $t threads${*:+, $*}" --nodes "$n" --threads "$t" --items "$(items_for "$t")" "$@"
}

if [ "${1:-}" = quick ]; then
  writes 3 1
  writes 3 4
  writes 5 4
  writes 3 20
  writes 5 20
  row "3 nodes, 1 submitting thread" --nodes 3 --threads 1 --items 100000 --async
  exit 0
fi

for n in 3 5; do
  for t in 1 4 20 64; do writes "$n" "$t"; done
  writes "$n" 20 --value-size 4096
  writes "$n" 1 --via-follower
  writes "$n" 20 --via-follower
done
writes 3 1 --tls
writes 3 20 --tls
for t in 1 4 20 64; do cpp_row "$t" 128 "$(items_for "$t")"; done
cpp_row 20 4096 1000
row "3 nodes, 4 threads" --nodes 3 --threads 4 --items 2000 --reads --read-rounds 5
row "3 nodes, 20 threads" --nodes 3 --threads 20 --items 1000 --reads --read-rounds 5
row "3 nodes, 4 threads, lease" --nodes 3 --threads 4 --items 2000 --reads --read-rounds 5 --lease
for t in 1 4; do
  row "3 nodes, $t submitting threads" --nodes 3 --threads "$t" --items $((100000 / t)) --async
done
row "5 nodes, 1 submitting thread" --nodes 5 --threads 1 --items 100000 --async
