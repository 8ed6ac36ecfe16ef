#!/usr/bin/env bash
# Run the static aarch64 binary under qemu-aarch64-static and check that it answers DNS (a local record, a blocked
# name) and /healthz, that its embedding model matches sentence-transformers' reference vectors, and that a
# lancedb collection takes documents and answers hybrid and filtered queries. By hand
# (needs qemu-user-static, dig, curl, python3):
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
# The memory engine: the built-in model loads in the background; then the reference texts of tests/fixtures must
# embed to sentence-transformers' vectors (cosine >= 0.999), which runs gemm's and the encoder's NEON kernels.
j='content-type: application/json'
code=$(cat "$work/data/setup-code") || fail "no setup code in the data dir"
curl -sf -c "$work/jar" -H "$j" -d '{"username":"admin","password":"selfcheck password","setup_code":"'"$code"'"}' \
  "http://127.0.0.1:$http/api/v1/setup" >/dev/null || fail "setup"
csrf=$(curl -sf -c "$work/jar" -b "$work/jar" -H "$j" -d '{"username":"admin","password":"selfcheck password"}' \
  "http://127.0.0.1:$http/api/v1/auth/login" | python3 -c 'import json,sys; print(json.load(sys.stdin)["csrf_token"])')
token=$(curl -sf -b "$work/jar" -H "x-csrf-token: $csrf" -H "$j" -d '{"name":"selfcheck"}' \
  "http://127.0.0.1:$http/api/v1/tokens" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
fixture=$(dirname "$0")/../tests/fixtures/minilm_reference.json
python3 -c 'import json,sys; print(json.dumps({"inputs": [i["text"] for i in json.load(open(sys.argv[1]))["items"]], "truncate": True}))' \
  "$fixture" > "$work/embed.json"
for _ in $(seq 1 300); do
  code=$(curl -s -o "$work/vectors.json" -w '%{http_code}' -H "authorization: Bearer $token" -H "$j" \
    --data-binary @"$work/embed.json" "http://127.0.0.1:$http/api/v1/embed")
  [ "$code" = 503 ] || break
  sleep 1
done
[ "$code" = 200 ] || fail "/api/v1/embed answered $code: $(head -c 300 "$work/vectors.json")"
python3 - "$fixture" "$work/vectors.json" <<'PY' || fail "embeddings differ from sentence-transformers"
import json, math, sys
want = [i["vector"] for i in json.load(open(sys.argv[1]))["items"]]
got = json.load(open(sys.argv[2]))
def cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
worst = min(cos(g, w) for g, w in zip(got, want))
print(f"{len(got)} reference texts embedded; worst cosine against sentence-transformers {worst:.7f}")
sys.exit(0 if len(got) == len(want) and worst >= 0.999 else 1)
PY
# A collection in lancedb: upsert three documents, then a hybrid (BM25 + vector) and a filtered query
api() { curl -sf -H "authorization: Bearer $token" -H "$j" "$@"; }
api -d '{"name":"selfcheck"}' "http://127.0.0.1:$http/api/v1/collections" >/dev/null || fail "create a collection"
api -d '[{"id":"a","text":"The spare key is under the blue flower pot.","metadata":{"room":"garden"}},
         {"id":"b","text":"The router password is on a sticker in the hall cupboard.","metadata":{"room":"hall"}},
         {"id":"c","text":"Bread is baked on Sundays.","metadata":{"room":"kitchen"}}]' \
  "http://127.0.0.1:$http/api/v1/collections/selfcheck/documents" >/dev/null || fail "upsert documents"
top() { python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])'; }
[ "$(api -d '{"text":"where is the spare key?","k":2,"hybrid":true}' \
  "http://127.0.0.1:$http/api/v1/collections/selfcheck/query" | top)" = a ] || fail "hybrid query"
[ "$(api -d '{"text":"where is the spare key?","k":1,"filter":{"room":"hall"}}' \
  "http://127.0.0.1:$http/api/v1/collections/selfcheck/query" | top)" = b ] || fail "filtered query"
echo "collection: upsert, hybrid and filtered queries answer"
"$bin" --version 2>/dev/null || qemu-aarch64-static "$bin" --version
echo "ok: $bin answers DNS and /healthz, embeds like sentence-transformers and searches a collection under qemu-aarch64-static"
