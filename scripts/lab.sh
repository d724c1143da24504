#!/usr/bin/env bash
# The two-site lab, in network namespaces on this machine, with BGP across the encrypted link:
#
#   host-a --- gw-a ==== underlay (UDP, 802.1AE inside) ==== gw-b --- host-b
#   10.10.0.2   10.10.0.1  192.0.2.1               192.0.2.2  10.20.0.1   10.20.0.2
#
# interlinkd runs on both gateways with the configs written below: the link keyed by MKA from
# a fresh random CAK/CKN pair (GCM-AES-XPN-256), eBGP across it, metrics on 127.0.0.1:9477.
# As root on a fresh Debian machine:
#   ./scripts/lab.sh              build, bring the lab up, show it working
#   ./scripts/lab.sh --redundant  the same with two links over two underlays (a second pair
#                                 of wan2 interfaces, 198.51.100.0/24, and il1 across it),
#                                 BGP over each, ECMP across both; cut one underlay with
#                                 `ip -n il-lab-gw-a link set wan2 down` and traffic moves
#                                 to the other link within 3 probe intervals (600 ms)
#   ./scripts/lab.sh --bfd        the same with BFD on the BGP sessions (300 ms x 3): a cut
#                                 underlay ends the session within a second
#   ./scripts/lab.sh down         tear it all down
# The test of the lab (tests/lab.rs) sets IL_LAB_PREFIX and IL_LAB_RUN (namespace prefix and
# run directory of its own) and IL_LAB_BIN (the interlinkd it built: no release build then).
set -euo pipefail
cd "$(dirname "$0")/.."
P=${IL_LAB_PREFIX:-il-lab}
RUN=${IL_LAB_RUN:-/run/interlink-lab}

down() {
    for side in a b; do
        if [ -f "$RUN/gw-$side.pid" ]; then
            kill -TERM "$(cat "$RUN/gw-$side.pid")" 2>/dev/null || true
        fi
    done
    sleep 0.5
    for ns in host-a gw-a gw-b host-b; do
        ip netns del "$P-$ns" 2>/dev/null || true
    done
    rm -rf "$RUN"
}

if [ "${1:-up}" = down ]; then
    down
    echo "lab removed"
    exit 0
fi
REDUNDANT=
BFD=false
case "${1:-up}" in
    up) ;;
    --redundant) REDUNDANT=1 ;;
    --bfd) BFD=true ;;
    *) echo "usage: $0 [--redundant | --bfd | down]" >&2; exit 2 ;;
esac

. scripts/bootstrap.sh
bootstrap iproute2 iputils-ping
if [ -n "${IL_LAB_BIN:-}" ]; then
    BIN=$IL_LAB_BIN
else
    cargo build --release --locked -q -p interlinkd --bins
    BIN=$PWD/target/release/interlinkd
fi

down
mkdir -p "$RUN"
chmod 700 "$RUN"
for ns in host-a gw-a gw-b host-b; do
    ip netns add "$P-$ns"
    ip -n "$P-$ns" link set lo up
done
veth() { # ns-a if-a ns-b if-b
    ip -n "$P-$1" link add "$2" type veth peer name "$4" netns "$P-$3"
    ip -n "$P-$1" link set "$2" up
    ip -n "$P-$3" link set "$4" up
}
veth host-a eth0 gw-a lan
veth gw-a wan gw-b wan
veth gw-b lan host-b eth0
if [ -n "$REDUNDANT" ]; then
    veth gw-a wan2 gw-b wan2
    ip -n $P-gw-a addr add 198.51.100.1/24 dev wan2
    ip -n $P-gw-b addr add 198.51.100.2/24 dev wan2
fi
ip -n $P-host-a addr add 10.10.0.2/24 dev eth0
ip -n $P-gw-a addr add 10.10.0.1/24 dev lan
ip -n $P-gw-a addr add 192.0.2.1/24 dev wan
ip -n $P-gw-b addr add 192.0.2.2/24 dev wan
ip -n $P-gw-b addr add 10.20.0.1/24 dev lan
ip -n $P-host-b addr add 10.20.0.2/24 dev eth0
ip -n $P-host-a route add default via 10.10.0.1
ip -n $P-host-b route add default via 10.20.0.1
for gw in gw-a gw-b; do
    ip netns exec "$P-$gw" sysctl -qw net.ipv4.ip_forward=1
done

umask 077
# One CAK/CKN pair shared by both sites, as a cloud provider hands it out; MKA derives the rest.
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$RUN/link.cak"
ckn=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
# Redundant: a second link over the second underlay and BGP across it too, probes every
# 200 ms (a dead link is left within 600 ms), ECMP over both.
PROBE=500ms
[ -n "$REDUNDANT" ] && PROBE=200ms
link_toml() { # name interface address local remote
    cat <<TOML
[[link]]
name = "$1"
interface = "$2"
addresses = ["$3"]
transport = "udp"
local = "$4:61440"
remote = "$5:61440"
probe_interval = "$PROBE"

[link.macsec]
cipher_suite = "gcm-aes-xpn-256"
keying = "mka"
ckn = "$ckn"
cak_file = "link.cak"
rekey_interval = "10m"
TOML
}
neighbor_toml() { # peer-tunnel-address peer-asn
    cat <<TOML
[[neighbor]]
address = "$1"
remote_asn = $2
bfd = $BFD
import = { prefixes = ["10.0.0.0/8 le 24"], max_prefixes = 100 }
export = { networks = true }
TOML
}
config() { # side me peer tunaddr (unused x4) own-site peer-tunnel-address asn peer-asn
           # [me2 peer2 tunaddr2 peer-tunnel-address2]
    cat > "$RUN/gw-$1.toml" <<TOML
# interlinkd on gw-$1 of the lab
$(link_toml "to-site-$2" il0 "$5" "$3" "$4")
$([ -n "$REDUNDANT" ] && printf '\n' && link_toml "to-site-$2-2" il1 "${16}" "${14}" "${15}")
# BGP across the encrypted link, with the other gateway's end of it: each site announces its
# prefix, and what it learns goes into the kernel with interlink's route protocol (77).
[router]
asn = ${12}
router_id = "$3"

$(neighbor_toml "${11}" "${13}")
$([ -n "$REDUNDANT" ] && printf '\n' && neighbor_toml "${17}" "${13}")

[bgp]
networks = ["${10}"]
multipath = $([ -n "$REDUNDANT" ] && echo true || echo false)

# Flow logs kept for interlinkctl show flows and the metrics (add collectors for IPFIX).
[flows]

[metrics]
listen = "127.0.0.1:9477"

# interlinkctl --socket $RUN/gw-$1.sock ...
[control]
socket = "gw-$1.sock"
TOML
}
config a b 192.0.2.1 192.0.2.2 169.254.0.1/30 a.sak b.sak 1 2 10.10.0.0/24 169.254.0.2 65010 65020 \
    198.51.100.1 198.51.100.2 169.254.0.5/30 169.254.0.6
config b a 192.0.2.2 192.0.2.1 169.254.0.2/30 b.sak a.sak 2 1 10.20.0.0/24 169.254.0.1 65020 65010 \
    198.51.100.2 198.51.100.1 169.254.0.6/30 169.254.0.5
for side in a b; do
    ip netns exec "$P-gw-$side" "$BIN" --config "$RUN/gw-$side.toml" > "$RUN/gw-$side.log" 2>&1 &
    echo $! > "$RUN/gw-$side.pid"
done
for side in a b; do
    for _ in $(seq 50); do
        ip -n "$P-gw-$side" -o link show il0 2>/dev/null | grep -q ',UP' && break
        sleep 0.1
    done
done
for side in a b; do
    for _ in $(seq 150); do
        r=$(ip -n "$P-gw-$side" route show proto 77)
        if [ -n "$REDUNDANT" ]; then
            # ECMP: both links' next hops.
            [ "$(grep -c 'nexthop via' <<< "$r")" -ge 2 ] && break
        else
            [ -n "$r" ] && break
        fi
        sleep 0.1
    done
done

LINKS=1
[ -n "$REDUNDANT" ] && LINKS=2
for side in a b; do
    for _ in $(seq 100); do
        [ "$(grep -c "mka: link .*: sending with key" "$RUN/gw-$side.log")" -ge $LINKS ] && break
        sleep 0.1
    done
done

echo "== interlinkd on gw-a"
cat "$RUN/gw-a.log"
echo
echo "== the other site in each gateway's kernel table, learnt over BGP across the link (proto 77)"
echo "gw-a: $(ip -n $P-gw-a route show proto 77)"
echo "gw-b: $(ip -n $P-gw-b route show proto 77)"
if [ -n "$REDUNDANT" ]; then
    echo "(ECMP over il0 and il1: each flow keeps to one link; a dead link is left within 600 ms)"
fi

echo
echo "== ping from host-a (10.10.0.2) to host-b (10.20.0.2), across the encrypted link"
ip netns exec $P-host-a ping -c 3 -i 0.2 10.20.0.2
echo
echo "== interlinkctl on gw-a"
CTL="$(dirname "$BIN")/interlinkctl --socket $RUN/gw-a.sock"
$CTL show links
echo
$CTL show neighbors
cat <<TXT

The lab is up. Things to try:
  ip netns exec $P-host-a ping 10.20.0.2                      # site to site
  ip netns exec $P-gw-a tcpdump -ni wan -X udp port 61440         # only ciphertext on the underlay
  ip -n $P-gw-a -s link show il0                               # the TUN interface and its counters
  ip -n $P-gw-a route show proto 77                            # interlinkd's routes
  ip netns exec $P-gw-a curl -s 127.0.0.1:9477/metrics         # Prometheus metrics of gw-a
  $CTL status                   # interlinkctl: also show routes, show fib, --json
  $CTL link to-site-b rekey     # a new SAK (on the key server's side)
  cat $RUN/gw-a.toml $RUN/gw-a.log                             # config and log of gw-a
  $BIN self-test   # known-answer test, crypto rates
Tear it down with: ./scripts/lab.sh down
TXT
