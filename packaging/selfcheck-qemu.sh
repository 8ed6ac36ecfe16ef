#!/usr/bin/env bash
# Run the static aarch64 binary under qemu-aarch64-static and check that it answers DNS (a local record, a blocked
# name) and /healthz. By hand (needs qemu-user-static, dig, curl):
#   packaging/build.sh --target aarch64 && packaging/selfcheck-qemu.sh dist/hearth-<version>-aarch64
set -euo pipefail
bin=${1:?usage: $0 dist/hearth-<version>-aarch64}
file "$bin" | grep -qE 'ARM aarch64.*(statically|static-pie) linked' || { echo "$bin is not a static aarch64 binary" >&2; exit 1; }
work=$(mktemp -d)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=$(port) dns=$(port)
echo "||ads.example^" > "$work/ads.txt"
cat > "$work/hearth.toml" <<TOML
[server]
http_listen = ["127.0.0.1:$http"]
https_listen = []
data_dir = "$work/data"
[dns]
listen = ["127.0.0.1:$dns"]
upstreams = ["udp://127.0.0.1:9"]
[[dns.records]]
name = "nas.home.arpa"
type = "A"
value = "192.168.1.10"
[[dns.lists]]
name = "ads"
kind = "block"
source = "$work/ads.txt"
TOML
qemu-aarch64-static "$bin" run --config "$work/hearth.toml" > "$work/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$http/readyz" >/dev/null && break
  sleep 0.2
done
fail() { echo "FAIL: $*" >&2; cat "$work/log" >&2; exit 1; }
curl -sf "http://127.0.0.1:$http/healthz" >/dev/null || fail "/healthz"
[ "$(dig @127.0.0.1 -p "$dns" nas.home.arpa +short +tries=1)" = 192.168.1.10 ] || fail "local record"
[ "$(dig @127.0.0.1 -p "$dns" tracker.ads.example +short +tries=1)" = 0.0.0.0 ] || fail "blocked name"
"$bin" --version 2>/dev/null || qemu-aarch64-static "$bin" --version
echo "ok: $bin answers DNS and /healthz under qemu-aarch64-static"
