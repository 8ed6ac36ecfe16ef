#!/usr/bin/env bash
# Build the hearth .deb from a built binary, with nothing but dpkg-deb:
#   packaging/deb/build-deb.sh --binary dist/hearth-0.1.0-aarch64 --arch arm64 [--out dist]
# → dist/hearth_<version>_<arch>.deb. Installs /usr/bin/hearth, /etc/hearth/hearth.toml (a conffile: the production
# configuration), the hardened hearth.service, sysusers.d/hearth.conf; purge alone removes /var/lib/hearth.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
binary= arch= out="$root/dist"
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary=$2; shift 2 ;;
    --arch) arch=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: $0 --binary PATH --arch amd64|arm64 [--out DIR]" >&2; exit 2 ;;
  esac
done
[ -n "$binary" ] && [ -n "$arch" ] || { echo "usage: $0 --binary PATH --arch amd64|arm64 [--out DIR]" >&2; exit 2; }
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
date=$(date -R -u -d "@${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)}")
case "$arch" in
  amd64) strip=strip ;;
  arm64) strip=aarch64-linux-gnu-strip ;;
  *) echo "unknown Debian architecture $arch" >&2; exit 2 ;;
esac

pkg=$(mktemp -d)
trap 'rm -rf "$pkg"' EXIT
umask 022
chmod 0755 "$pkg"
install -D -m 0755 "$binary" "$pkg/usr/bin/hearth"
"$strip" --strip-unneeded --remove-section=.comment --remove-section=.note "$pkg/usr/bin/hearth"
install -D -m 0644 "$root/packaging/hearth.production.toml" "$pkg/etc/hearth/hearth.toml"
install -D -m 0644 "$here/hearth.service" "$pkg/lib/systemd/system/hearth.service"
install -D -m 0644 "$here/hearth-resolved.service" "$pkg/lib/systemd/system/hearth-resolved.service"
install -D -m 0644 "$here/hearth-resolved.path" "$pkg/lib/systemd/system/hearth-resolved.path"
install -D -m 0644 "$here/hearth.sysusers" "$pkg/usr/lib/sysusers.d/hearth.conf"
install -D -m 0644 "$root/README.md" "$pkg/usr/share/doc/hearth/README.md"
install -D -m 0644 "$here/copyright" "$pkg/usr/share/doc/hearth/copyright"
# the release binaries are static; a dynamically linked build (e.g. the debug one CI packages) needs glibc
if file -L "$binary" | grep -qE 'statically linked|static-pie linked'; then
  install -D -m 0644 "$here/lintian-overrides" "$pkg/usr/share/lintian/overrides/hearth"
  depends="adduser"
else
  depends="adduser, libc6 (>= $(ldd --version | sed -n '1s/.* \([0-9.]*\)$/\1/p'))"
fi
mkdir -p "$pkg/usr/share/man/man1"
"$here/hearth.1.sh" "$version" | gzip -9n > "$pkg/usr/share/man/man1/hearth.1.gz"
chmod 0644 "$pkg/usr/share/man/man1/hearth.1.gz"
printf 'hearth (%s) unstable; urgency=medium\n\n  * Release %s: see the README for what this version does.\n\n -- hearth developers <hearth@hearth-home.org>  %s\n' \
  "$version" "$version" "$date" | gzip -9n > "$pkg/usr/share/doc/hearth/changelog.gz"
chmod 0644 "$pkg/usr/share/doc/hearth/changelog.gz"

mkdir -p "$pkg/DEBIAN"
install -m 0755 "$here/postinst" "$here/prerm" "$here/postrm" "$pkg/DEBIAN/"
echo /etc/hearth/hearth.toml > "$pkg/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
cat > "$pkg/DEBIAN/control" <<CONTROL
Package: hearth
Version: $version
Architecture: $arch
Maintainer: hearth developers <hearth@hearth-home.org>
Installed-Size: $size
Depends: $depends
Recommends: systemd
Section: net
Priority: optional
Homepage: https://github.com/hearth-home/hearth
Description: one binary for the homelab: filtering DNS resolver and admin UI
 hearth replaces a homelab's container zoo with one statically linked binary:
 a DNS filtering resolver with DNSSEC validation (what the router's DNS points
 at), DNS over TLS and HTTPS, a query log with live tail, metrics, and a
 browser admin UI with a first-run wizard. More subsystems (HTTPS front, AI
 memory, backups) plug into the same binary.
 .
 The service runs as the hearth system user with CAP_NET_BIND_SERVICE only;
 state lives in /var/lib/hearth, configuration in /etc/hearth/hearth.toml.
CONTROL
(cd "$pkg" && find . -type f ! -path './DEBIAN/*' -printf '%P\n' | LC_ALL=C sort | xargs md5sum) > "$pkg/DEBIAN/md5sums"
chmod 0644 "$pkg/DEBIAN/md5sums" "$pkg/DEBIAN/control" "$pkg/DEBIAN/conffiles"
mkdir -p "$out"
deb="$out/hearth_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
echo "$deb"
