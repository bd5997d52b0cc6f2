#!/usr/bin/env bash
# Installs the system packages floyd's build and tests need, if any is missing:
# clang/libclang-dev (RocksDB's bindings), gcc/g++ and pkg-config (the C/C++
# side), cmake and binutils (the CMake example, objdump/nm in the library
# checks), iptables and iproute2 (the fault harness's packet-filter
# partitions), redis-tools (redis-cli and redis-benchmark, raftis's Redis
# Cluster tests), pytest and prometheus-client (the Python binding's tests). Debian/Ubuntu.
set -euo pipefail
packages="clang libclang-dev pkg-config gcc g++ cmake binutils python3 python3-pip iptables iproute2 redis-tools"
if ! dpkg -s $packages >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $packages
fi
python3 -m pytest --version >/dev/null 2>&1 || python3 -m pip install -q pytest
# The Python tests parse floyd's metrics with Prometheus's own parser.
python3 -c 'import prometheus_client' >/dev/null 2>&1 || python3 -m pip install -q prometheus-client
