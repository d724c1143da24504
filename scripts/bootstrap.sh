# Sourced by the other scripts: makes sure the machine can build interlink.
#   bootstrap PACKAGE...   installs the Debian packages given (and a C toolchain), then a
#                          Rust toolchain through rustup if cargo is missing.
# Needs root on a fresh Debian machine; installs nothing that is already there.
set -euo pipefail

bootstrap() {
    local want=(gcc libc6-dev ca-certificates curl "$@") missing=() p
    for p in "${want[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "bootstrap: apt-get install ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        # Daemons the tests run themselves (bird2, ...) must not also start on the host as
        # services: policy-rc.d forbids it for the install, unless the machine has its own.
        local policy=/usr/sbin/policy-rc.d ours=""
        if [ ! -e "$policy" ]; then
            printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && ours=1
        fi
        local rc=0
        { apt-get update -qq &&
            apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } || rc=$?
        if [ -n "$ours" ]; then rm -f "$policy"; fi
        if [ "$rc" -ne 0 ]; then return "$rc"; fi
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        if [ -x "$HOME/.cargo/bin/cargo" ]; then
            export PATH="$HOME/.cargo/bin:$PATH"
        else
            echo "bootstrap: installing Rust with rustup" >&2
            curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
            export PATH="$HOME/.cargo/bin:$PATH"
        fi
    fi
}
