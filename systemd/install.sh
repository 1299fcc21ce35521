#!/bin/sh
# Installs streamlet: the four binaries, the systemd units, the sysusers and
# tmpfiles snippets, and the example configuration (kept if one is there).
#
#   cargo build --release && sudo systemd/install.sh
#   DESTDIR=/tmp/pkg PREFIX=/usr systemd/install.sh     # for a package
#
# DESTDIR (default empty) is prepended to every path; PREFIX (default
# /usr/local) holds the binaries; the units go where systemd looks for the
# system's own (UNITDIR, default $PREFIX/lib/systemd/system), the
# configuration to SYSCONFDIR (default /etc). BINDIR defaults to
# $PREFIX/bin; the unit's ExecStart= is rewritten to match. PROFILE
# (default release) is the cargo profile whose binaries are installed.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
destdir=${DESTDIR:-}
prefix=${PREFIX:-/usr/local}
bindir=${BINDIR:-$prefix/bin}
unitdir=${UNITDIR:-$prefix/lib/systemd/system}
sysusersdir=${SYSUSERSDIR:-$prefix/lib/sysusers.d}
tmpfilesdir=${TMPFILESDIR:-$prefix/lib/tmpfiles.d}
sysconfdir=${SYSCONFDIR:-/etc}
docdir=${DOCDIR:-$prefix/share/doc/streamlet}
mandir=${MANDIR:-$prefix/share/man}
bashcompdir=${BASHCOMPDIR:-$prefix/share/bash-completion/completions}
target=${CARGO_TARGET_DIR:-$root/target}/${PROFILE:-release}

for bin in streamletd streamletctl streamlet-worker streamlet-gateway; do
    if [ ! -x "$target/$bin" ]; then
        echo "install.sh: $target/$bin is missing: run cargo build --release first (or set PROFILE)" >&2
        exit 1
    fi
done

install -d "$destdir$bindir" "$destdir$unitdir" "$destdir$sysusersdir" "$destdir$tmpfilesdir" \
    "$destdir$sysconfdir/streamlet" "$destdir$docdir" "$destdir$mandir/man1" "$destdir$bashcompdir"
for bin in streamletd streamletctl streamlet-worker streamlet-gateway; do
    install -m 0755 "$target/$bin" "$destdir$bindir/$bin"
done
sed "s|/usr/bin/streamletd|$bindir/streamletd|; s|file:/usr/share/doc/streamlet/|file:$docdir/|" \
    "$root/systemd/streamletd.service" > "$destdir$unitdir/streamletd.service"
sed "s|file:/usr/share/doc/streamlet/|file:$docdir/|" "$root/systemd/streamletd.socket" \
    > "$destdir$unitdir/streamletd.socket"
chmod 0644 "$destdir$unitdir/streamletd.service" "$destdir$unitdir/streamletd.socket"
install -m 0644 "$root/systemd/streamlet.sysusers.conf" "$destdir$sysusersdir/streamlet.conf"
install -m 0644 "$root/systemd/streamlet.tmpfiles.conf" "$destdir$tmpfilesdir/streamlet.conf"
if [ -e "$destdir$sysconfdir/streamlet/streamletd.toml" ]; then
    echo "install.sh: keeping $destdir$sysconfdir/streamlet/streamletd.toml"
else
    install -m 0644 "$root/systemd/streamletd.toml" "$destdir$sysconfdir/streamlet/streamletd.toml"
fi
"$target/streamletctl" man > "$destdir$mandir/man1/streamletctl.1"
"$target/streamletctl" completions bash > "$destdir$bashcompdir/streamletctl"
for doc in README.md ARCHITECTURE.md PROTOCOL.md SECURITY.md; do
    install -m 0644 "$root/$doc" "$destdir$docdir/$doc"
done

if [ -z "$destdir" ]; then
    echo "installed. Next:"
    echo "  systemd-sysusers && systemd-tmpfiles --create $tmpfilesdir/streamlet.conf"
    echo "  systemctl daemon-reload && systemctl enable --now streamletd.socket streamletd.service"
fi
