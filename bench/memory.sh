#!/usr/bin/env bash
# The memory half of `make bench`: what a waiting client connection costs in each proxy, and what a
# header session costs in tether. See bench/README.md ("Memory").
#
# For tether, nginx, HAProxy and bare Pingora (the same configs as bench/proxy.sh, one worker
# thread, the same upstreams), bench/idle_clients.py opens connections and holds them:
#   idle        N kept-alive connections, each after one answered request  (RSS growth / N)
#   header      N connections, each with a request header started and never finished
#   15,000      15,000 idle kept-alive connections at once: the proxy's whole RSS
# then the header-session store's bytes per session at 1,000,000 sessions (bench_sessions).
# RSS is read from /proc/<pid>/status (VmRSS), after the clients are all in place.
#
# Knobs (environment): MEM_CONNECTIONS (5000, the per-connection rows), MEM_CROWD (15000),
# MEM_PROXIES (a regex over tether|bare pingora|nginx|haproxy; all by default),
# BENCH_SKIP_BUILD (0), BENCH_BIN_DIR (target/release), BENCH_TETHER ($BENCH_BIN_DIR/tether).
# Ports 19280 and 19301-19302, apart from bench/proxy.sh's, so both can run side by side.
set -uo pipefail
cd "$(dirname "$0")/.."

N=${MEM_CONNECTIONS:-5000}
CROWD=${MEM_CROWD:-15000}
PROXIES=${MEM_PROXIES:-.}
PORT=19280
UPSTREAMS=(127.0.0.1:19301 127.0.0.1:19302)
URL="http://127.0.0.1:$PORT/"
REL=${BENCH_BIN_DIR:-target/release}
TETHER=${BENCH_TETHER:-$REL/tether}
WORK=$(mktemp -d /tmp/tether-mem.XXXXXX)
SECRET="make-bench-cookie-secret-0123456789abcdef"

# PIDS, the exit trap, say, wait_http, stop, forget.
source bench/lib.sh
export PATH="$PATH:/usr/sbin"

# Every connection is a file descriptor in the proxy and in the client: raise the soft limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null
if [ "$(ulimit -n)" -lt $((CROWD + 500)) ]; then
  CROWD=$(($(ulimit -n) - 500))
  say "file limit $(ulimit -n): the crowd row holds $CROWD connections"
fi

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  say "building (release) ..."
  cargo build --release --quiet --bin tether --example bench_upstream --example bare_pingora \
    --example bench_sessions || exit 1
fi

rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

# Holds `n` connections in state `mode` (idle|header) against the proxy `pid`; sets BEFORE and
# AFTER to the proxy's RSS (KiB) without and with them ("-" when the client failed). The client
# is ended (closing them all) before returning.
hold() {
  local pid=$1 n=$2 mode=$3
  BEFORE=$(rss_kib "$pid")
  AFTER=-
  python3 bench/idle_clients.py "127.0.0.1:$PORT" "$n" "$mode" <"$WORK/never" >"$WORK/client.out" 2>&1 &
  local client=$!
  PIDS+=("$client")
  for _ in $(seq 600); do
    grep -q '^ready' "$WORK/client.out" && break
    kill -0 "$client" 2>/dev/null || break
    sleep 0.1
  done
  if grep -q '^ready' "$WORK/client.out"; then
    # Let the proxy finish what the last answers started (pool returns, log lines).
    sleep 1
    AFTER=$(rss_kib "$pid")
  else
    say "client did not get to $n $mode connections: $(tail -1 "$WORK/client.out")"
  fi
  stop "$client"
}

declare -A IDLE HEADER CROWD_MIB
ORDER=()

# One row: `start` runs the proxy (setting PROXY_PID and PROXY_STOP, its stop signal), `n`
# connections in `mode` are held, and ROW is set to the RSS growth per connection (KiB, `per`)
# or the whole RSS (MiB, `total`). Each row gets a fresh process, so memory freed by an earlier
# row cannot hide the next row's.
row() {
  local start=$1 n=$2 mode=$3 how=$4
  ROW=-
  "$start" || return 0
  # A first small round warms up allocator arenas and the upstream pool, so the row measures
  # what each further connection adds.
  hold "$PROXY_PID" 100 idle
  hold "$PROXY_PID" "$n" "$mode"
  stop "$PROXY_PID" "$PROXY_STOP"
  [ "$AFTER" = - ] && return 0
  case $how in
    per) ROW=$(awk -v a="$BEFORE" -v b="$AFTER" -v n="$n" 'BEGIN { printf "%.1f", (b - a) / n }') ;;
    total) ROW=$(awk -v b="$AFTER" 'BEGIN { printf "%.1f", b / 1024 }') ;;
  esac
}

# The three connection rows of proxy `name`, started by function `start`.
measure() {
  local name=$1 start=$2
  want "$name" || return 0
  ORDER+=("$name")
  row "$start" "$N" idle per
  IDLE[$name]=$ROW
  row "$start" "$N" header per
  HEADER[$name]=$ROW
  row "$start" "$CROWD" idle total
  CROWD_MIB[$name]=$ROW
  say "  $name: idle ${IDLE[$name]} KiB/conn, unfinished header ${HEADER[$name]} KiB/conn, $CROWD idle: ${CROWD_MIB[$name]} MiB"
}

# Starts a proxy in the background: PROXY_PID, PROXY_STOP; fails when it does not answer.
launch() {
  local sig=$1 log=$2
  shift 2
  "$@" >"$log" 2>&1 &
  PROXY_PID=$!
  PROXY_STOP=$sig
  PIDS+=("$PROXY_PID")
  wait_http "$URL" || { stop "$PROXY_PID" KILL; return 1; }
}

want() { [[ $1 =~ $PROXIES ]]; }

tether_conf() {
  cat <<EOF
server:
  threads: 1
  work_stealing: false
  pid_file: $WORK/tether.pid
  upgrade_sock: $WORK/tether.sock
  grace_period_seconds: 0
  graceful_shutdown_timeout_seconds: 1
listeners:
  - address: 127.0.0.1:$PORT
limits:
  max_connections: $((CROWD + 1000))
cookie_secret: "$SECRET"
pools:
  - id: bench
    origin_steering: { policy: random }
    endpoints:
      - { name: e0, address: "${UPSTREAMS[0]}" }
      - { name: e1, address: "${UPSTREAMS[1]}" }
load_balancers:
  - name: "*"
    default_pools: [bench]
    session_affinity: cookie
EOF
}
start_tether() { RUST_LOG=info launch INT "$WORK/tether.log" "$TETHER" --config "$WORK/tether.yaml"; }

start_bare() { launch INT "$WORK/bare.log" "$REL/examples/bare_pingora" "127.0.0.1:$PORT" "${UPSTREAMS[@]}"; }

nginx_conf() {
  local u
  echo "worker_processes 1; daemon off; master_process off;"
  echo "pid $WORK/nginx.pid; error_log $WORK/nginx-error.log warn;"
  echo "worker_rlimit_nofile $((CROWD + 1000));"
  echo "events { worker_connections $((CROWD + 1000)); }"
  echo "http {"
  echo "  access_log off;"
  echo "  client_body_temp_path $WORK/nginx-body; proxy_temp_path $WORK/nginx-proxy;"
  echo "  upstream bench { hash \$cookie_srv consistent; keepalive 128;"
  for u in "${UPSTREAMS[@]}"; do echo "    server $u;"; done
  echo "  }"
  echo "  server { listen 127.0.0.1:$PORT;"
  echo "    location / { proxy_pass http://bench; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
  echo "}"
}
start_nginx() { launch TERM "$WORK/nginx.out" nginx -c "$WORK/nginx.conf" -p "$WORK"; }

# HAProxy sizes its file limit as two per maxconn (client and server side); idle clients hold no
# server connection, so the limit is set outright (and its check made a warning).
haproxy_conf() {
  local i=0 u
  printf 'global\n  nbthread 1\n  maxconn %s\n  ulimit-n %s\n  no strict-limits\n' $((CROWD + 1000)) "$(ulimit -n)"
  printf 'defaults\n  mode http\n  option http-keep-alive\n'
  printf '  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n'
  printf 'frontend bench\n  bind 127.0.0.1:%s\n  default_backend upstreams\n' "$PORT"
  printf 'backend upstreams\n  balance roundrobin\n  cookie SRV insert indirect nocache\n'
  for u in "${UPSTREAMS[@]}"; do i=$((i + 1)); printf '  server u%s %s cookie u%s\n' $i "$u" $i; done
}
start_haproxy() { launch TERM "$WORK/haproxy.log" haproxy -db -f "$WORK/haproxy.cfg"; }

mkfifo "$WORK/never"
# A writer that never writes keeps the clients' stdin open until this script ends.
sleep infinity >"$WORK/never" &
PIDS+=($!)

"$REL/examples/bench_upstream" "${UPSTREAMS[@]}" >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)
wait_http "http://${UPSTREAMS[0]}/" || exit 1

say "memory: $N connections per row, $CROWD at once; logs in $WORK"
tether_conf >"$WORK/tether.yaml"
nginx_conf >"$WORK/nginx.conf"
haproxy_conf >"$WORK/haproxy.cfg"
measure tether start_tether
measure "bare pingora" start_bare
command -v nginx >/dev/null && measure nginx start_nginx || say "nginx: not installed (make bench installs it)"
command -v haproxy >/dev/null && measure haproxy start_haproxy || say "haproxy: not installed (make bench installs it)"

SESSION_B=-
if want tether; then
  SESSION_B=$("$REL/examples/bench_sessions" --memory-only 2>/dev/null | awk '/bytes per session/ { print $(NF - 3) }')
  [ -n "$SESSION_B" ] || SESSION_B=-
fi

echo
echo "## Memory: what a waiting client costs (one worker thread, RSS from /proc)"
echo
printf '| %-14s | %26s | %23s | %27s | %18s |\n' proxy "idle kept-alive conn (KiB)" "unfinished header (KiB)" \
  "$CROWD idle conns, RSS (MiB)" "header session (B)"
echo "|----------------|----------------------------|-------------------------|-----------------------------|--------------------|"
for r in "${ORDER[@]}"; do
  s=-
  [ "$r" = tether ] && s=$SESSION_B
  printf '| %-14s | %26s | %23s | %27s | %18s |\n' "$r" "${IDLE[$r]}" "${HEADER[$r]}" "${CROWD_MIB[$r]}" "$s"
done
echo
echo "Targets (issue 20): idle ≤ 4 KiB, unfinished header ≤ 16 KiB, $CROWD connections < 100 MiB, header session ≤ 64 B."

# The same figures as rows of make bench's chart (bench/chart.py's "memory" and "crowd" blocks),
# added to the results bench/proxy.sh wrote, and the chart drawn again with them.
OUT=${BENCH_OUT:-target/bench}
if [ -s "$OUT/results.tsv" ]; then
  grep -v -P '\t(memory|crowd)$' "$OUT/results.tsv" >"$WORK/results.tsv"
  for r in "${ORDER[@]}"; do
    printf '%s idle\t-\t-\t%s\t%s\t-\tmemory\n' "$r" "${HEADER[$r]}" "${IDLE[$r]}" >>"$WORK/results.tsv"
  done
  for r in "${ORDER[@]}"; do
    printf '%s, %s idle\t%s\t-\t-\t%s\t-\tcrowd\n' "$r" "$CROWD" "$CROWD" "${CROWD_MIB[$r]}" >>"$WORK/results.tsv"
  done
  cp "$WORK/results.tsv" "$OUT/results.tsv"
  python3 bench/chart.py "$OUT/results.tsv" "$OUT/proxies.svg" \
    "make bench, $(date -u +%Y-%m-%d): proxies head to head, and memory" &&
    echo "Chart with the memory rows: $OUT/proxies.svg."
fi
