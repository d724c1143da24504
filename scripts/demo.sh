#!/usr/bin/env bash
# The main job, for now: the IEEE 802.1AE known-answer self test on every AES-GCM backend and
# the protect/validate rate of this machine. It becomes the two-site lab once links run.
# As root on a fresh Debian machine: ./scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh
bootstrap
cargo run --release --locked -q -p interlinkd -- self-test "$@"
