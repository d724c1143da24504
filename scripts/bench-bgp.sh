#!/usr/bin/env bash
# BGP load: a million prefixes over one eBGP session into interlinkd and into BIRD 2, to the
# Loc-RIB and to the kernel (see benches/bgp.rs). As root: ./scripts/bench-bgp.sh
# INTERLINK_BGP_BENCH_N=100000 ./scripts/bench-bgp.sh for one size only.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh
bootstrap iproute2 bird2
cargo build --release --locked -q -p interlinkd
cargo bench --locked -p interlink-benches --bench bgp
