#!/usr/bin/env bash
# Failover of a full table to a backup peer when the preferred one stops answering (BGP PIC
# edge through nexthop objects, against next hops per route), see benches/pic.rs.
# As root: ./scripts/bench-pic.sh; INTERLINK_PIC_BENCH_N=100000 for one size only.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh
bootstrap iproute2
cargo build --release --locked -q -p interlinkd
cargo bench --locked -p interlink-benches --bench pic
