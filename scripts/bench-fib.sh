#!/usr/bin/env bash
# Kernel FIB load against `ip -batch` and a minimal pipelined netlink writer, each in a fresh
# network namespace (see benches/fib.rs). As root: ./scripts/bench-fib.sh
# INTERLINK_FIB_BENCH_N=100000 ./scripts/bench-fib.sh for one size only.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh
bootstrap iproute2
cargo bench --locked -p interlink-benches --bench fib
