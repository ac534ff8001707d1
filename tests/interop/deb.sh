#!/usr/bin/env bash
# The Debian package: built by packaging/deb/build.sh from the release build, its contents and
# control fields checked, the unit checked by `systemd-analyze verify` (and its exposure
# measured), installed with dpkg (system user, data folder, man pages, completions), the installed
# binary serving a phone as the unprivileged user with the installed settings, then removed
# (data and settings kept) and purged (nothing kept). Installs into this machine: needs root.
# Usage: tests/interop/deb.sh   (after cargo build --release -p polyprov-cli)
set -uo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "needs root (dpkg -i)"; exit 2; }
for t in dpkg-deb systemd-analyze objcopy objdump curl runuser man; do
  command -v $t >/dev/null || { echo "$t is not installed"; exit 2; }
done
if dpkg -s polyprov >/dev/null 2>&1; then echo "polyprov is installed here already: not touching it"; exit 2; fi

WORK=$(mktemp -d)
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  dpkg -P polyprov >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
passed=0 failed=0
check() {
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok - $name"
  else failed=$((failed + 1)); echo "not ok - $name"; fi
}

DEB=$(SKIP_BUILD=1 packaging/deb/build.sh) || { echo "build failed"; exit 1; }
check "the package builds" [ -f "$DEB" ]
dpkg-deb -c "$DEB" | awk '{print $6}' >"$WORK/contents"
for f in ./usr/bin/polyprov ./usr/lib/systemd/system/polyprov.service ./etc/polyprov/polyprov.toml \
  ./usr/share/man/man1/polyprov.1.gz ./usr/share/man/man1/polyprov-serve.1.gz \
  ./usr/share/man/man1/polyprov-dhcp-snippet.1.gz ./usr/share/bash-completion/completions/polyprov \
  ./usr/share/zsh/vendor-completions/_polyprov ./usr/share/fish/vendor_completions.d/polyprov.fish \
  ./usr/share/doc/polyprov/copyright; do
  check "the package holds $f" grep -qx "$f" "$WORK/contents"
done
check "the settings are a conffile" sh -c "dpkg-deb --ctrl-tarfile '$DEB' | tar -xO ./conffiles | grep -qx /etc/polyprov/polyprov.toml"
check "the binary carries no debug info" sh -c "dpkg-deb --fsys-tarfile '$DEB' | tar -xO ./usr/bin/polyprov >'$WORK/bin' && ! objdump -h '$WORK/bin' | grep -q debug_info"
check "Depends names libc" sh -c "dpkg-deb -f '$DEB' Depends | grep -q libc6"

# A service manager on this machine would start the unit on install: mask it for the test.
[ -d /run/systemd/system ] && systemctl mask --runtime polyprov.service >/dev/null 2>&1
dpkg -i "$DEB" >"$WORK/install.log" 2>&1
check "dpkg -i installs it" sh -c "dpkg -s polyprov >/dev/null"
check "the system user exists, with no shell" sh -c "getent passwd polyprov | grep -q nologin"
check "the data folder belongs to it, private" sh -c "[ \"\$(stat -c %U:%a /var/lib/polyprov)\" = polyprov:700 ]"
check "systemd-analyze verify accepts the unit" systemd-analyze verify /usr/lib/systemd/system/polyprov.service
EXPOSURE=$(systemd-analyze security --offline=true /usr/lib/systemd/system/polyprov.service 2>/dev/null | sed -n 's/.*Overall exposure level for polyprov.service: \([0-9.]*\).*/\1/p')
echo "# systemd-analyze security: exposure $EXPOSURE (0 = most restricted, 10 = none)"
check "its exposure is low (< 2.5)" python3 -c "import sys; sys.exit(not (0 < float('${EXPOSURE:-99}') < 2.5))"
check "man finds its pages" sh -c "man -w polyprov-serve >/dev/null"

# The installed binary, as the unprivileged user, with the installed settings (the listeners
# moved to loopback ports by flags, which win over the file).
install -d -o polyprov -g polyprov -m 0700 "$WORK/data"
chmod 755 "$WORK"
runuser -u polyprov -- /usr/bin/polyprov serve --config /etc/polyprov/polyprov.toml --data "$WORK/data" \
  --http 127.0.0.1:0 --admin 127.0.0.1:0 --tftp 127.0.0.1:0 >"$WORK/summary" 2>"$WORK/log" &
PID=$!
for _ in $(seq 1 100); do grep -q '^  metrics' "$WORK/summary" 2>/dev/null && break; sleep 0.1; done
URL=$(awk '/provisioning URL/ {print $3}' "$WORK/summary")
PHONES=$(awk '/phones \(HTTP\)/ {print $3}' "$WORK/summary")
check "the installed binary serves a phone its master, as user polyprov" \
  sh -c "curl -sf -A 'PolycomVVX-VVX_500-UA/5.9.7.4477' -u \"PlcmSpIp:\$(cat '$WORK/data/provisioning.password')\" http://$PHONES/0004f2aa814c.cfg | grep -q APPLICATION"
check "its data files belong to polyprov" sh -c "[ \"\$(stat -c %U '$WORK/data/polyprov.db')\" = polyprov ]"
kill "$PID"; wait "$PID" 2>/dev/null; PID=

echo keep >/var/lib/polyprov/marker
echo "# changed" >>/etc/polyprov/polyprov.toml
dpkg -r polyprov >"$WORK/remove.log" 2>&1
check "dpkg -r removes the binary" [ ! -e /usr/bin/polyprov ]
check "and keeps the data" [ -f /var/lib/polyprov/marker ]
check "and the changed settings" grep -q "# changed" /etc/polyprov/polyprov.toml
dpkg -P polyprov >"$WORK/purge.log" 2>&1
check "dpkg -P keeps nothing: no data" [ ! -e /var/lib/polyprov ]
check "no settings" [ ! -e /etc/polyprov ]
check "no system user" sh -c "! getent passwd polyprov"
[ -d /run/systemd/system ] && systemctl unmask --runtime polyprov.service >/dev/null 2>&1

if [ "$failed" != 0 ]; then cat "$WORK/install.log" "$WORK/log" 2>/dev/null; fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
