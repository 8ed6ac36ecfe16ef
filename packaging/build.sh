#!/usr/bin/env bash
# Build a static hearth binary and its Debian package:
#   packaging/build.sh --target aarch64|x86_64  →  dist/hearth-<version>-<arch>, dist/hearth_<version>_<debarch>.deb
#
# aarch64 is cross-built on x86_64 Debian with Debian's rustc-web (it ships an arm64 std; rustup has none here):
#   dpkg --add-architecture arm64 && apt-get update
#   apt-get install rustc-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static \
#     protobuf-compiler libprotobuf-dev
# One generic binary for the Pi 4 (Cortex-A72, ARMv8.0) and the Pi 5: never pass -C target-cpu.
set -euo pipefail
cd "$(dirname "$0")/.."
arch=x86_64
while [ $# -gt 0 ]; do
  case "$1" in
    --target) arch="$2"; shift 2 ;;
    *) echo "usage: $0 --target aarch64|x86_64" >&2; exit 2 ;;
  esac
done
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
# Default: the day of the last commit, not its second. The cc crate asks cargo to rebuild every C dependency (ring,
# zstd, lz4, SQLite) when SOURCE_DATE_EPOCH changes, and nearly every crate depends on one of them, so a per-commit
# value made each build after a new commit a cold one (~1 h for aarch64). Commits of one day now share a cache.
commit_time=$(git log -1 --format=%ct 2>/dev/null || date +%s)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$((commit_time / 86400 * 86400))}
export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static"
case "$arch" in
  aarch64)
    triple=aarch64-unknown-linux-gnu
    export RUSTC=${RUSTC:-/usr/bin/rustc}
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
    export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
    export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR_AARCH64:-$HOME/.cache/hearth-target-aarch64}
    ;;
  x86_64)
    triple=x86_64-unknown-linux-gnu
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/hearth-target}
    ;;
  *) echo "unknown target $arch" >&2; exit 2 ;;
esac
cargo build --release --locked --target "$triple"
mkdir -p dist
out="dist/hearth-$version-$arch"
cp "$CARGO_TARGET_DIR/$triple/release/hearth" "$out"
file "$out"
ls -l "$out"
case "$arch" in aarch64) debarch=arm64 ;; x86_64) debarch=amd64 ;; esac
deb=$(packaging/deb/build-deb.sh --binary "$out" --arch "$debarch" --out dist)
ls -l "$deb"
