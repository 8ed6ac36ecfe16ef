#!/usr/bin/env bash
# DNS benchmark, run by hand: hearth vs Unbound (warm cache) vs dnsmasq, side by side on this machine.
#   benches/dns.sh [seconds]        (needs dnsperf, unbound, dnsmasq-base; ../shared blocklist for the blocked run)
# Each server is pinned to core 0 and dnsperf to core 1; all answer from a warm cache (a dnsmasq upstream serves
# the names once). Reports queries/s and CPU time per query (from /proc/PID/stat), and the ratios to Unbound.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/hearth-target}
cargo build --release --quiet
bin="$CARGO_TARGET_DIR/release/hearth"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# the upstream: 1000 names with a long TTL
up=$(port)
args=()
for i in $(seq 1 1000); do args+=("--host-record=name$i.bench.test,198.51.100.$((i % 250 + 1))"); done
dnsmasq -k --port="$up" --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts --conf-file=/dev/null \
  --pid-file= --user=root --local=/bench.test/ --local-ttl=3600 "${args[@]}" >/dev/null 2>&1 &
pids+=($!)
for i in $(seq 1 1000); do echo "name$i.bench.test A"; done > "$work/cached.txt"

# blocklist: 1M domains (207k real, padded) when ../shared is here
list="$work/block.txt"
real=../shared/data/blocklists/adguard-207k.domains
if [ -f "$real" ]; then
  python3 - "$real" "$list" "$work/blocked.txt" "$work/hosts.txt" <<'PY'
import sys
real = [l.strip() for l in open(sys.argv[1]) if l.strip()]
with open(sys.argv[2], "w") as f, open(sys.argv[4], "w") as h:
    for d in real:
        f.write(f"||{d}^\n"); h.write(f"0.0.0.0 {d}\n")
    i = 0
    while len(real) + i < 1_000_000:
        d = f"t{i:x}-{i % 97}.{real[i % len(real)]}"
        f.write(f"||{d}^\n"); h.write(f"0.0.0.0 {d}\n"); i += 1
with open(sys.argv[3], "w") as q:
    for d in real[:1000]:
        q.write(f"{d} A\n")
PY
else
  echo "note: $real is absent; skipping the blocked-answer runs"
  : > "$list"
fi

run() { # name pid port queryfile → prints "qps cpu_us_per_query"
  local name=$1 pid=$2 p=$3 q=$4
  taskset -c 1 dnsperf -s 127.0.0.1 -p "$p" -d "$q" -l 2 -c 8 -Q 500000 >/dev/null 2>&1 || true   # warm up
  local t0; t0=$(ticks "$pid")
  local out; out=$(taskset -c 1 dnsperf -s 127.0.0.1 -p "$p" -d "$q" -l "$secs" -c 8 -Q 500000 2>&1)
  local t1; t1=$(ticks "$pid")
  local done_q; done_q=$(echo "$out" | awk '/Queries completed:/ {print $3}')
  local qps; qps=$(echo "$out" | awk '/Queries per second:/ {print $4}')
  local cpu; cpu=$(python3 -c "print(f'{($t1-$t0)/$hz/max($done_q,1)*1e6:.2f}')")
  printf '%-28s %12s qps %8s µs CPU/query\n' "$name" "$qps" "$cpu" >&2
  echo "$qps $cpu"
}

wait_dns() { for _ in $(seq 1 100); do dig @127.0.0.1 -p "$1" name1.bench.test +short +tries=1 +time=1 | grep -q 198 && return; sleep 0.1; done; echo "server on $1 did not answer" >&2; exit 1; }

# hearth, twice: with the query log (the default: every query stored in SQLite) and without
start_hearth() { # name log_enabled → sets hp/hpid via globals
  local name=$1 log=$2 p; p=$(port)
  cat > "$work/$name.toml" <<TOML
[server]
http_listen = ["127.0.0.1:$(port)"]
https_listen = []
data_dir = "$work/$name-data"
[log]
level = "warn"
[dns]
listen = ["127.0.0.1:$p"]
upstreams = ["udp://127.0.0.1:$up"]
# the benchmark zone is unsigned and Unbound runs without its validator: compare like with like
dnssec = false
[[dns.lists]]
name = "bench"
kind = "block"
source = "$list"
[dns.querylog]
enabled = $log
TOML
  taskset -c 0 "$bin" run --config "$work/$name.toml" >"$work/$name.log" 2>&1 &
  pids+=($!)
  wait_dns "$p"
  hp=$p; hpid=${pids[-1]}
}
start_hearth hearth-log true; hp=$hp; hpid=${pids[-1]}
hlp=$hp; hlpid=$hpid
start_hearth hearth-nolog false
hp=$hp; hpid=${pids[-1]}

# unbound, forwarding to the same upstream
unp=$(port)
cat > "$work/unbound.conf" <<CONF
server:
  interface: 127.0.0.1@$unp
  port: $unp
  num-threads: 1
  username: ""
  chroot: ""
  directory: "$work"
  pidfile: "$work/unbound.pid"
  logfile: "$work/unbound.log"
  do-not-query-localhost: no
  local-zone: "test." nodefault
  domain-insecure: "test."
  module-config: "iterator"
  msg-cache-size: 32m
  rrset-cache-size: 64m
remote-control:
  control-enable: no
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@$up
CONF
taskset -c 0 unbound -d -c "$work/unbound.conf" &
upid=$!; pids+=($upid)
wait_dns "$unp"

# dnsmasq as a caching forwarder (Pi-hole's engine), with the same list as a hosts file
dmp=$(port)
hosts_arg=()
[ -s "$work/hosts.txt" ] && hosts_arg=("--addn-hosts=$work/hosts.txt")
taskset -c 0 dnsmasq -k --port="$dmp" --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts \
  --conf-file=/dev/null --pid-file= --user=root --server="127.0.0.1#$up" --cache-size=10000 "${hosts_arg[@]}" \
  >/dev/null 2>&1 &
dpid=$!; pids+=($dpid)
wait_dns "$dmp"

echo "== cached answers, ${secs}s each ==" >&2
read -r h_qps h_cpu < <(run "hearth (query log off)" "$hpid" "$hp" "$work/cached.txt")
read -r hl_qps hl_cpu < <(run "hearth (query log on)" "$hlpid" "$hlp" "$work/cached.txt")
read -r u_qps u_cpu < <(run unbound "$upid" "$unp" "$work/cached.txt")
read -r d_qps d_cpu < <(run dnsmasq "$dpid" "$dmp" "$work/cached.txt")
if [ -s "$work/blocked.txt" ]; then
  echo "== blocked answers (1M-domain list) ==" >&2
  read -r hb_qps hb_cpu < <(run "hearth (blocked, log off)" "$hpid" "$hp" "$work/blocked.txt")
  read -r hlb_qps hlb_cpu < <(run "hearth (blocked, log on)" "$hlpid" "$hlp" "$work/blocked.txt")
  read -r db_qps db_cpu < <(run "dnsmasq (blocked, hosts)" "$dpid" "$dmp" "$work/blocked.txt")
fi
rss() { awk '/VmRSS/ {printf "%.1f MB", $2/1024}' "/proc/$1/status"; }
echo "== ratios ==" >&2
python3 - <<PY >&2
hq, hc, uq, uc, dq, dc = float("$h_qps"), float("$h_cpu"), float("$u_qps"), float("$u_cpu"), float("$d_qps"), float("$d_cpu")
print(f"hearth cached QPS vs Unbound: {hq/uq:.2f}x   CPU/query vs Unbound: {hc/uc:.2f}x  (goal: >= 1.0x at <= 1.0x)")
print(f"hearth cached QPS vs dnsmasq: {hq/dq:.2f}x   CPU/query vs dnsmasq: {hc/dc:.2f}x")
lq, lc = float("$hl_qps"), float("$hl_cpu")
print(f"with the query log on: QPS vs Unbound {lq/uq:.2f}x, CPU/query vs Unbound {lc/uc:.2f}x (Unbound and dnsmasq log nothing here)")
b = "${hb_qps:-}"
if b:
    print(f"hearth blocked QPS vs own cached: {float(b)/hq:.2f}x  (goal: >= 0.95x); vs dnsmasq blocked: {float(b)/float('${db_qps:-1}'):.2f}x")
PY
echo "RSS: hearth $(rss "$hpid") (with the 1M list), unbound $(rss "$upid"), dnsmasq $(rss "$dpid")" >&2
dropped=$(curl -s "http://$(sed -n 's/^http_listen = \["\(.*\)"\]/\1/p' "$work/hearth-log.toml")/metrics" | awk '/^hearth_dns_querylog_dropped_total/ {print $2}')
echo "query log entries dropped under this load (never slowing answers): ${dropped:-0}" >&2
