#!/usr/bin/env bash
# Builds the Debian package: ./scripts/package.sh  ->  target/package/interlink_VERSION_ARCH.deb
#
# Holds interlinkd (/usr/sbin), interlinkctl (/usr/bin), the systemd unit and its Ethernet
# drop-in (an example), a sysusers.d entry for the group interlink, a tmpfiles.d entry for the
# state directory, /etc/iproute2/rt_protos.d/interlink.conf, the man pages interlinkd(8),
# interlinkctl(8) and interlink.toml(5), bash completion for interlinkctl, and under
# /usr/share/doc/interlink the commented example configuration and contrib/ (Grafana,
# Prometheus, Wireshark). Built with dpkg-deb alone (no debhelper, no cargo-deb): the few
# maintainer-script lines debhelper would generate are written here.
#
# Environment:
#   INTERLINK_PACKAGE_BIN  a directory that already holds interlinkd and interlinkctl (the
#                          package test passes its own build); default: a release build now
#   INTERLINK_PACKAGE_OUT  where the .deb goes (default target/package)
#   DEBFULLNAME, DEBEMAIL  the Maintainer field, as Debian's tools take them
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
arch=$(dpkg --print-architecture)
out=${INTERLINK_PACKAGE_OUT:-target/package}
maintainer="${DEBFULLNAME:-interlink developers} <${DEBEMAIL:-interlink-rs@users.noreply.github.com}>"

bin=${INTERLINK_PACKAGE_BIN:-}
if [ -z "$bin" ]; then
    . scripts/bootstrap.sh
    bootstrap binutils
    cargo build --release --locked -q -p interlinkd
    bin=target/release
fi
for b in interlinkd interlinkctl; do
    [ -x "$bin/$b" ] || { echo "package: no $bin/$b" >&2; exit 1; }
done

mkdir -p "$out"
stage=$(mktemp -d "$out/stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/interlink
doc=$root/usr/share/doc/interlink

install -d -m 0755 "$root/DEBIAN" "$root/usr/sbin" "$root/usr/bin" \
    "$root/lib/systemd/system" "$root/usr/lib/sysusers.d" "$root/usr/lib/tmpfiles.d" \
    "$root/etc/iproute2/rt_protos.d" "$root/usr/share/man/man8" "$root/usr/share/man/man5" \
    "$root/usr/share/bash-completion/completions" "$doc/examples" "$doc/contrib"

# Binaries, stripped as Debian ships them.
install -m 0755 "$bin/interlinkd" "$root/usr/sbin/interlinkd"
install -m 0755 "$bin/interlinkctl" "$root/usr/bin/interlinkctl"
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
    "$root/usr/sbin/interlinkd" "$root/usr/bin/interlinkctl"

# systemd: the unit (its paths are the package's); the Ethernet drop-in is the operator's
# choice, so it is an example.
install -m 0644 systemd/interlinkd.service "$root/lib/systemd/system/interlinkd.service"
install -m 0644 systemd/interlinkd-ethernet.conf "$doc/examples/interlinkd-ethernet.conf"
install -m 0644 systemd/interlink.sysusers "$root/usr/lib/sysusers.d/interlink.conf"
cat > "$root/usr/lib/tmpfiles.d/interlink.conf" <<'EOF'
# tmpfiles.d(5): interlinkd's state directory ([daemon] state_dir): the packet numbers of
# static keys, so that no restart reuses an AES-GCM nonce. The unit's StateDirectory= makes
# it too; this entry makes it for runs outside the unit.
d /var/lib/interlink 0700 root root -
EOF
install -m 0644 config/rt_protos.d/interlink.conf "$root/etc/iproute2/rt_protos.d/interlink.conf"

# Man pages and completion.
for m in man/*.[0-9]; do
    section=${m##*.}
    gzip -9n < "$m" > "$root/usr/share/man/man$section/$(basename "$m").gz"
done
install -m 0644 completions/interlinkctl.bash "$root/usr/share/bash-completion/completions/interlinkctl"

# Documentation: the example configuration, contrib/, the copyright and the changelog.
install -m 0644 config/interlink.toml "$doc/examples/interlink.toml"
cp -r contrib/. "$doc/contrib/"
find "$doc/contrib" -type d -exec chmod 0755 {} + && find "$doc/contrib" -type f -exec chmod 0644 {} +
gzip -9n < README.md > "$doc/README.md.gz"
cat > "$doc/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: interlink
Source: https://github.com/interlink-rs/interlink

Files: *
Copyright: 2026 interlink developers
License: GPL-3+

License: GPL-3+
 This program is free software: you can redistribute it and/or modify it under the terms
 of the GNU General Public License as published by the Free Software Foundation, either
 version 3 of the License, or (at your option) any later version.
 .
 This program is distributed in the hope that it will be useful, but WITHOUT ANY WARRANTY;
 without even the implied warranty of MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.
 See the GNU General Public License for more details.
 .
 On Debian systems, the complete text of the GNU General Public License version 3 can be
 found in "/usr/share/common-licenses/GPL-3".
EOF
date=$(date -R -u -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")
cat <<EOF | gzip -9n > "$doc/changelog.gz"
interlink ($version) unstable; urgency=medium

  * Built from $(git rev-parse --short HEAD 2>/dev/null || echo "a source tree") by scripts/package.sh.

 -- $maintainer  $date
EOF

# Dependencies: the shared libraries the binaries need, with the newest glibc symbol version
# they use (what dpkg-shlibdeps would find for these two libraries).
needed=$(objdump -p "$root/usr/sbin/interlinkd" "$root/usr/bin/interlinkctl" | awk '/NEEDED/ { print $2 }' | sort -u)
glibc=$(objdump -T "$root/usr/sbin/interlinkd" "$root/usr/bin/interlinkctl" |
    grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
depends="libc6 (>= $glibc)"
for lib in $needed; do
    case $lib in
        libc.so.6 | libm.so.6 | libpthread.so.0 | libdl.so.2 | librt.so.1 | ld-linux*) ;;
        libgcc_s.so.1) depends="$depends, libgcc-s1" ;;
        *) echo "package: $lib is needed and has no Debian package here" >&2; exit 1 ;;
    esac
done

cat > "$root/DEBIAN/control" <<EOF
Package: interlink
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: $depends
Recommends: iproute2
Section: net
Priority: optional
Homepage: https://github.com/interlink-rs/interlink
Description: encrypted private links with BGP for an interconnect edge
 interlinkd terminates private Layer-3 links between sites and clouds, as a
 router on a cloud interconnect does: each link is a TUN interface protected
 with IEEE 802.1AE (MACsec, GCM-AES and XPN suites) over UDP or an Ethernet
 underlay, keyed statically or by MKA from a CAK; a BGP speaker with BFD and
 graceful restart; routes installed in the kernel; Prometheus metrics; IPFIX
 flow logs. interlinkctl queries and controls it.
EOF
echo /etc/iproute2/rt_protos.d/interlink.conf > "$root/DEBIAN/conffiles"

cat > "$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    # The group whose members may use interlinkctl, and the state directory.
    systemd-sysusers ${DPKG_ROOT:+--root="$DPKG_ROOT"} interlink.conf
    systemd-tmpfiles ${DPKG_ROOT:+--root="$DPKG_ROOT"} --create interlink.conf || true
    if [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null || true
        # An upgrade restarts a running daemon, which attaches to its links and keeps
        # forwarding; a fresh install starts nothing: the configuration is the operator's.
        deb-systemd-invoke try-restart interlinkd.service >/dev/null || true
    fi
fi
EOF
cat > "$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    deb-systemd-invoke stop interlinkd.service >/dev/null || true
fi
EOF
cat > "$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = purge ]; then
    # The packet number state of static keys goes with the package.
    rm -rf /var/lib/interlink
fi
if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
fi
EOF
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
    xargs -0 md5sum) > "$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"

deb="$out/interlink_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
