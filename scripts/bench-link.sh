#!/usr/bin/env bash
# Link throughput against the plain veth path and wireguard-go, on the namespace topology of
# the tests (see benches/link.rs). As root: ./scripts/bench-link.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh
bootstrap iproute2 iperf3 wireguard-go wireguard-tools
cargo build --release --locked -q -p interlinkd
cargo bench --locked -p interlink-benches --bench link
