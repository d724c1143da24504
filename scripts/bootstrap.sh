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
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
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
