#!/usr/bin/env bash
# The link bench on a lent multi-core machine (see the README's Development section), which
# receives a copy of this working tree but has no iproute2, iperf3 or wireguard:
#   ./scripts/device-bench.sh prepare   here: builds, and gathers in .device/ (kept out of git
#                                       by .git/info/exclude) the stripped interlinkd, the
#                                       bench binary and Debian's ip, iperf3, wg and
#                                       wireguard-go with the libraries ldd lists (glibc's own
#                                       left to the machine)
#   ./scripts/device-bench.sh run       there (carry .device): the bench, its tools on PATH
# INTERLINK_BENCH_ROUNDS and INTERLINK_LINK_BENCH_QUEUES pass through.
set -euo pipefail
cd "$(dirname "$0")/.."
D=.device
case "${1:-}" in
prepare)
    . scripts/bootstrap.sh
    bootstrap iproute2 iperf3 wireguard-go wireguard-tools jq binutils
    cargo build --release --locked -q -p interlinkd --bins
    bench=$(cargo bench --locked -q -p interlink-benches --bench link --no-run \
        --message-format=json | jq -r 'select(.executable != null) | .executable' | tail -1)
    rm -rf "$D"
    mkdir -p "$D/bin" "$D/lib" "$D/target/release"
    cp target/release/interlinkd target/release/interlinkctl "$D/target/release/"
    cp "$bench" "$D/bin/bench-link"
    strip "$D/target/release/"* "$D/bin/bench-link"
    for t in ip iperf3 wg wireguard-go; do
        p=$(command -v "$t")
        cp -L "$p" "$D/bin/"
        # glibc itself (libc, libm, the loader...) is the machine's: mixing two is worse.
        # (Go builds such as wireguard-go are static: ldd has nothing to say.)
        { ldd "$p" 2>/dev/null || true; } | awk '/=> \// { print $3 }' |
            grep -Ev '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*)\.so' |
            xargs -r -I{} cp -L {} "$D/lib/" || true
    done
    grep -qx "/$D/" .git/info/exclude 2>/dev/null || echo "/$D/" >> .git/info/exclude
    du -sh "$D"
    ;;
run)
    [ -x "$D/bin/bench-link" ] || { echo "no $D: run '$0 prepare' first" >&2; exit 2; }
    export PATH="$PWD/$D/bin:$PATH" LD_LIBRARY_PATH="$PWD/$D/lib" CARGO_TARGET_DIR="$PWD/$D/target"
    nproc
    "$D/bin/bench-link" --bench
    ;;
*)
    echo "usage: $0 prepare | run" >&2
    exit 2
    ;;
esac
