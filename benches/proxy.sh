#!/usr/bin/env bash
# HTTPS-front benchmark, run by hand: hearth vs nginx as TLS reverse proxies in front of the same nginx backend
# serving a small static file, side by side on this machine.
#   benches/proxy.sh [seconds] [connections]      (needs wrk, nginx, curl, openssl)
# Both proxies get one worker core (taskset core 0; nginx: 1 worker process; hearth: its runtime on that core),
# wrk runs on core 1 with keep-alive. Reports requests/s, p99 latency and the proxies' peak RSS, over HTTPS and
# plain HTTP, and the ratios hearth/nginx (goal: ≥ 1.0× requests/s, p99 ≤ nginx).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-32}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/hearth-target}
cargo build --release --quiet
bin="$CARGO_TARGET_DIR/release/hearth"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.3; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing on $1" >&2; exit 1; }

# the backend: nginx with a 612-byte static file (nginx's own index page size)
be=$(port)
mkdir -p "$work/be/www"
head -c 612 /dev/urandom | base64 | head -c 612 > "$work/be/www/index.html"
cat > "$work/be/nginx.conf" <<EOF
user root; worker_processes 1; pid $work/be/nginx.pid; error_log $work/be/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000;
  server { listen 127.0.0.1:$be backlog=4096; root $work/be/www; } }
EOF
taskset -c 1 nginx -p "$work/be" -c "$work/be/nginx.conf" -g 'daemon off;' &
pids+=($!)

# hearth: a route for bench.home.arpa with an internal-CA certificate
h_http=$(port); h_https=$(port); h_dns=$(port)
mkdir -p "$work/hearth"
cat > "$work/hearth/hearth.toml" <<EOF
[server]
http_listen = ["127.0.0.1:$h_http"]
https_listen = ["127.0.0.1:$h_https"]
data_dir = "$work/hearth/data"
[log]
level = "warn"
format = "json"
[dns]
listen = ["127.0.0.1:$h_dns"]
upstreams = ["udp://127.0.0.1:9"]
[dns.querylog]
enabled = false
[[proxy.routes]]
hosts = ["bench.home.arpa"]
upstreams = ["http://127.0.0.1:$be"]
tls = "none"
[[proxy.routes]]
hosts = ["secure.home.arpa"]
upstreams = ["http://127.0.0.1:$be"]
tls = "internal"
EOF
(cd "$work/hearth" && TOKIO_WORKER_THREADS=1 exec taskset -c 0 "$bin" run --config hearth.toml >"$work/hearth/log" 2>&1) &
pids+=($!)
wait_port "$h_https"
hpid=$(pgrep -n -f "hearth run --config hearth.toml")

# nginx as the proxy, with a certificate of the same kind (P-256 ECDSA) as hearth's internal-CA leaf
np_http=$(port); np_https=$(port)
mkdir -p "$work/np"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 -subj /CN=secure.home.arpa \
  -addext subjectAltName=DNS:secure.home.arpa -keyout "$work/np/key.pem" -out "$work/np/cert.pem" 2>/dev/null
cat > "$work/np/nginx.conf" <<EOF
user root; worker_processes 1; pid $work/np/nginx.pid; error_log $work/np/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000;
  upstream be { server 127.0.0.1:$be; keepalive 64; }
  server { listen 127.0.0.1:$np_http; listen 127.0.0.1:$np_https ssl;
    ssl_certificate $work/np/cert.pem; ssl_certificate_key $work/np/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host \$host; proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Forwarded-Proto \$scheme; add_header Strict-Transport-Security "max-age=31536000" always; } } }
EOF
taskset -c 0 nginx -p "$work/np" -c "$work/np/nginx.conf" -g 'daemon off;' &
pids+=($!)
wait_port "$np_https"; wait_port "$be"
npid=$(cat "$work/np/nginx.pid")
nworker=$(pgrep -P "$npid" | head -1)

rss_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
# wrk's latency report → "requests/s p99_ms"
run_wrk() {
  taskset -c 1 wrk -t1 -c"$conns" -d"${secs}s" --latency -H "Host: $2" "$1" > "$work/wrk.out"
  local rps p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")
  p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}' "$work/wrk.out")
  echo "$rps $p99"
}
curl -sf -o /dev/null -H "Host: bench.home.arpa" "http://127.0.0.1:$h_http/" || { echo "hearth does not proxy"; cat "$work/hearth/log"; exit 1; }
curl -sfk -o /dev/null "https://127.0.0.1:$np_https/" || { echo "nginx does not proxy"; exit 1; }

printf '%-8s %-7s %12s %10s %10s\n' proto proxy "requests/s" "p99 ms" "peak RSS"
declare -A R
for proto in https http; do
  for who in nginx hearth; do
    if [ "$who" = hearth ]; then
      if [ $proto = https ]; then url="https://127.0.0.1:$h_https/"; host=secure.home.arpa; else url="http://127.0.0.1:$h_http/"; host=bench.home.arpa; fi
      pid=$hpid
    else
      if [ $proto = https ]; then url="https://127.0.0.1:$np_https/"; else url="http://127.0.0.1:$np_http/"; fi
      host=secure.home.arpa; pid=$nworker
    fi
    # warm-up, then the measured run
    taskset -c 1 wrk -t1 -c"$conns" -d2s -H "Host: $host" "$url" >/dev/null
    read -r rps p99 < <(run_wrk "$url" "$host")
    R[$proto-$who-rps]=$rps; R[$proto-$who-p99]=$p99
    printf '%-8s %-7s %12.0f %10.2f %8s kB\n' $proto $who "$rps" "$p99" "$(rss_kb "$pid")"
  done
  awk -v a="${R[$proto-hearth-rps]}" -v b="${R[$proto-nginx-rps]}" -v c="${R[$proto-hearth-p99]}" -v d="${R[$proto-nginx-p99]}" -v p=$proto \
    'BEGIN { printf "%-8s hearth/nginx: %.2fx requests/s, p99 %.2fx\n", p, a/b, c/d }'
done
