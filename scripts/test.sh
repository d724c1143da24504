#!/usr/bin/env bash
# Runs every test of interlink: installs what the tests need with apt-get, then builds and
# runs all tests of the workspace (unit tests, the fuzz corpus replay, and the end-to-end tests
# in network namespaces, which need root), and the pure-Rust build of the SecY.
# As root on a fresh Debian machine: ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh

# Debian packages the tests need: iproute2, ping, tcpdump, tshark and iperf3 for the network
# namespace tests, bird2, frr, gobgpd and openbgpd for BGP interop, prometheus for promtool
# (the lab's metrics), systemd for systemd-analyze (the unit), nfdump for nfcapd and nfdump
# (the IPFIX collector the flow logs are read by), lintian and binutils for the Debian package,
# nftables for a firewall that blocks a lane.
bootstrap iproute2 iputils-ping tcpdump tshark iperf3 bird2 frr gobgpd openbgpd prometheus systemd \
    nfdump lintian binutils nftables

cargo test --workspace --locked
# The RustCrypto backend alone: the build that compiles no C.
cargo test -p interlink-macsec --locked --no-default-features --features rustcrypto,selftest
