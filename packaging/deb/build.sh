#!/usr/bin/env bash
# Builds the Debian package from a release build: target/debian/polyprov_<version>_<arch>.deb
# (the binary without debug info, the systemd unit, /etc/polyprov/polyprov.toml as a conffile,
# man pages and bash/zsh/fish completions generated from the CLI, maintainer scripts).
# Usage: packaging/deb/build.sh        (SKIP_BUILD=1: use target/release/polyprov as it is)
# Needs: cargo, dpkg-deb, objcopy (binutils), gzip.
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=packaging/deb
[ "${SKIP_BUILD:-}" = 1 ] || cargo build --release -p polyprov-cli
BIN=target/release/polyprov
VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/ s/^version = "\(.*\)"/\1/p' Cargo.toml)
ARCH=$(dpkg --print-architecture)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
STAGE=$WORK/polyprov_${VERSION}_$ARCH

install -d "$STAGE/DEBIAN" "$STAGE/usr/bin" "$STAGE/usr/share/man/man1" "$STAGE/usr/share/doc/polyprov"
objcopy --strip-debug "$BIN" "$STAGE/usr/bin/polyprov"
chmod 0755 "$STAGE/usr/bin/polyprov"
install -D -m 0644 "$HERE/polyprov.service" "$STAGE/usr/lib/systemd/system/polyprov.service"
install -D -m 0644 "$HERE/polyprov.toml" "$STAGE/etc/polyprov/polyprov.toml"
"$BIN" assets "$WORK/assets"
for m in "$WORK"/assets/man/*.1; do gzip -9n <"$m" >"$STAGE/usr/share/man/man1/$(basename "$m").gz"; done
install -D -m 0644 "$WORK/assets/completions/polyprov.bash" "$STAGE/usr/share/bash-completion/completions/polyprov"
install -D -m 0644 "$WORK/assets/completions/_polyprov" "$STAGE/usr/share/zsh/vendor-completions/_polyprov"
install -D -m 0644 "$WORK/assets/completions/polyprov.fish" "$STAGE/usr/share/fish/vendor_completions.d/polyprov.fish"
gzip -9n <README.md >"$STAGE/usr/share/doc/polyprov/README.md.gz"
cat >"$STAGE/usr/share/doc/polyprov/copyright" <<COPY
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: polyprov

Files: *
License: MIT or Apache-2.0
COPY
for s in postinst prerm postrm; do install -m 0755 "$HERE/$s" "$STAGE/DEBIAN/$s"; done
echo /etc/polyprov/polyprov.toml >"$STAGE/DEBIAN/conffiles"
SIZE=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
cat >"$STAGE/DEBIAN/control" <<CONTROL
Package: polyprov
Version: $VERSION
Architecture: $ARCH
Maintainer: polyprov developers <polyprov@example.invalid>
Installed-Size: $SIZE
Depends: libc6 (>= 2.34), libgcc-s1, adduser
Section: net
Priority: optional
Description: provisioning server and fleet tool for Poly (Polycom) phones
 Serves Poly desk phones over HTTP, HTTPS, TFTP and FTP/FTPS from one inventory,
 keeps what phones upload per device, and gives each device a lifecycle so that a
 factory reset sticks. Includes a web console, remote resync/reboot, a doctor that
 explains what would re-provision a phone, and an emulated phone for load tests.
CONTROL
(cd "$STAGE" && find . -path ./DEBIAN -prune -o -type f -print0 | sort -z | xargs -0 md5sum | sed 's# \./# #') >"$STAGE/DEBIAN/md5sums"
mkdir -p target/debian
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "target/debian/polyprov_${VERSION}_$ARCH.deb" >/dev/null
echo "target/debian/polyprov_${VERSION}_$ARCH.deb"
