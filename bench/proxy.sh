#!/usr/bin/env bash
# `make bench`: tether against a straight-to-upstream baseline, bare Pingora, nginx and HAProxy,
# on the same four upstreams in one run, then tether's scaling figures. See bench/README.md.
#
# The proxy under test runs pinned to one core with one worker thread; wrk and the upstreams share
# the other core. Every figure comes from loopback traffic only; every process this script starts
# is remembered by pid and ended by pid, also on Ctrl-C.
#
# Knobs (environment): BENCH_ROUNDS (3), BENCH_SECONDS per row and round (5), BENCH_WARMUP seconds (1),
# BENCH_CONNECTIONS (32),
# BENCH_PROXY_CPU (0), BENCH_LOAD_CPU (1), BENCH_ROWS (a regex over row names; all by default),
# BENCH_SCALING (1; 0 skips the scaling section), BENCH_SKIP_BUILD (0), BENCH_BIN_DIR (target/release),
# BENCH_TETHER (the tether binary to measure, for A/B runs; $BENCH_BIN_DIR/tether),
# BENCH_OUT (target/bench: results.tsv and the chart proxies.svg); the TLS, HTTP/2 and pool rows
# (bench/tls.sh) add BENCH_H2_CONNECTIONS, BENCH_H2_STREAMS and BENCH_POOL.
set -uo pipefail
cd "$(dirname "$0")/.."

DUR=${BENCH_SECONDS:-5}
WARM=${BENCH_WARMUP:-1}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNECTIONS:-32}
PROXY_CPU=${BENCH_PROXY_CPU:-0}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
ROWS=${BENCH_ROWS:-.}
SCALING=${BENCH_SCALING:-1}
PORT=19080
UPSTREAMS=(127.0.0.1:19101 127.0.0.1:19102 127.0.0.1:19103 127.0.0.1:19104)
# The same upstreams over TLS (HTTP/1.1), for the origin-TLS row.
TLS_UPSTREAMS=(127.0.0.1:19111 127.0.0.1:19112 127.0.0.1:19113 127.0.0.1:19114)
URL="http://127.0.0.1:$PORT/"
SECRET="make-bench-cookie-secret-0123456789abcdef"
TICKS=$(getconf CLK_TCK)
REL=${BENCH_BIN_DIR:-target/release}
TETHER=${BENCH_TETHER:-$REL/tether}
WORK=$(mktemp -d /tmp/tether-bench.XXXXXX)
OUT=${BENCH_OUT:-target/bench}

# PIDS, the exit trap, say, wait_http, stop, forget.
source bench/lib.sh

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
APT_UPDATED=0
# Installs a Debian package for a missing command; returns non-zero when it cannot be had.
need() {
  local cmd=$1 pkg=$2
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] && return 0
  say "installing $pkg for $cmd ..."
  if [ $APT_UPDATED = 0 ]; then $SUDO apt-get update -qq >/dev/null 2>&1; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$pkg" >/dev/null 2>&1
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ]
}
export PATH="$PATH:/usr/sbin"

need wrk wrk || { say "wrk cannot be installed: no benchmark"; exit 1; }
HAVE_H2LOAD=1; need h2load nghttp2-client || { HAVE_H2LOAD=0; say "nghttp2-client cannot be installed: HTTP/2 rows skipped"; }
HAVE_NGINX=1; need nginx nginx-light || { HAVE_NGINX=0; say "nginx-light cannot be installed: nginx rows skipped"; }
HAVE_HAPROXY=1; need haproxy haproxy || { HAVE_HAPROXY=0; say "haproxy cannot be installed: HAProxy row skipped"; }
command -v taskset >/dev/null || { say "taskset (util-linux) is missing"; exit 1; }
[ "$(nproc)" -ge 2 ] || { PROXY_CPU=0; LOAD_CPU=0; say "one core only: proxy and load share it"; }

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  say "building (release) ..."
  cargo build --release --quiet --bin tether --example bench_upstream --example bare_pingora \
    --example bare_pingora_mimalloc --example bench_reload || exit 1
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# utime + stime of a process (all its threads), in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# wrk's latency figure (e.g. 812.00us, 1.20ms, 1.01s) in microseconds.
to_us() {
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else if (v ~ /s$/) print n * 1000000; else print n }'
}

declare -A RPS P50 P99 CPU SAMPLES
ORDER=()

# Loads `url` with wrk for DUR seconds after a warm-up; `pid` is the proxy (or "-").
# Extra arguments go to wrk (headers). Appends "cpu rps p50 p99" to the row's samples.
measure() {
  local name=$1 pid=$2; shift 2
  local out="$WORK/wrk-${name//[^a-zA-Z0-9]/_}.txt"
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${WARM}s" "$@" "$URL" >/dev/null 2>&1
  local t0=0
  [ "$pid" != - ] && t0=$(cpu_ticks "$pid")
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "$@" "$URL" >"$out" 2>&1
  local t1=0
  [ "$pid" != - ] && t1=$(cpu_ticks "$pid")
  local reqs rps p50 p99 bad cpu
  reqs=$(awk '/requests in/ { print $1 }' "$out")
  rps=$(awk '/^Requests\/sec/ { print $2 }' "$out")
  p50=$(to_us "$(awk '$1 == "50%" { print $2 }' "$out")")
  p99=$(to_us "$(awk '$1 == "99%" { print $2 }' "$out")")
  bad=$(awk '/Non-2xx|Socket errors/ { print }' "$out")
  if [ -z "$reqs" ] || [ "$reqs" = 0 ]; then
    say "$name: wrk made no request; see $out"
    return 1
  fi
  cpu=-
  [ "$pid" != - ] && cpu=$(awk -v d=$((t1 - t0)) -v r="$reqs" -v t="$TICKS" 'BEGIN { printf "%.1f", d * 1e6 / t / r }')
  [ -n "${SAMPLES[$name]:-}" ] || ORDER+=("$name")
  SAMPLES[$name]+="$cpu $rps $p50 $p99;"
  say "  $name: $cpu µs/req, $rps req/s"
  [ -n "$bad" ] && say "  $name: $bad"
  return 0
}

# The median of each column of a row's samples into CPU/RPS/P50/P99, and the CPU range.
summarise() {
  local name=$1 col v
  for col in 1 2 3 4; do
    v=$(tr ';' '\n' <<<"${SAMPLES[$name]}" | awk -v c=$col 'NF { print $c }' | sort -g |
      awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else if (a[1] == "-") print "-"; else printf "%.1f", (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
    case $col in 1) CPU[$name]=$v ;; 2) RPS[$name]=$v ;; 3) P50[$name]=$v ;; 4) P99[$name]=$v ;; esac
  done
  SPREAD=$(tr ';' '\n' <<<"${SAMPLES[$name]}" | awk 'NF && $1 != "-" { print $1 }' | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR > 1) printf "%s–%s", lo, hi; else print "-" }')
}

# Prints the table of the rows in ORDER whose names match `filter`.
table() {
  local filter=$1 r
  echo "| row                            |     req/s | p50 (µs) | p99 (µs) | CPU µs/req | CPU range |"
  echo "|--------------------------------|-----------|----------|----------|------------|-----------|"
  for r in "${ORDER[@]}"; do
    [[ $r =~ $filter ]] || continue
    summarise "$r"
    printf '| %-30s | %9s | %8s | %8s | %10s | %9s |\n' "$r" "$(int "${RPS[$r]}")" "$(int "${P50[$r]}")" \
      "$(int "${P99[$r]}")" "${CPU[$r]}" "$SPREAD"
  done
}

want() { [[ $1 =~ $ROWS ]]; }

# A figure rounded to an integer, or "-" as it is.
int() { [ "$1" = - ] && echo - || awk -v v="$1" 'BEGIN { printf "%.0f", v }'; }

# The chart block of a row (bench/chart.py's GROUPS).
group_of() {
  case $1 in
    "tls new"* | "tls resumed"*) echo handshake ;;
    "tls keep-alive"* | "h2 "*) echo tls ;;
    "pool "*) echo pool ;;
    *) echo http ;;
  esac
}

# Writes the rows in ORDER as a results file (`row req_s p50_us p99_us cpu_us cpu_range group`, tab
# separated) and draws it with bench/chart.py: the table at a glance.
results_and_chart() {
  local r
  mkdir -p "$OUT"
  printf 'row\treq_s\tp50_us\tp99_us\tcpu_us\tcpu_range\tgroup\n' >"$OUT/results.tsv"
  for r in "${ORDER[@]}"; do
    [[ $r =~ endpoints ]] && continue
    summarise "$r"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "${RPS[$r]}" "${P50[$r]}" "${P99[$r]}" "${CPU[$r]}" "$SPREAD" \
      "$(group_of "$r")" >>"$OUT/results.tsv"
  done
  if python3 bench/chart.py "$OUT/results.tsv" "$OUT/proxies.svg" \
    "make bench, $(date -u +%Y-%m-%d): proxies head to head"; then
    echo
    echo "Chart: $OUT/proxies.svg (figures: $OUT/results.tsv)."
  else
    say "python3 bench/chart.py failed: no chart (figures in $OUT/results.tsv)"
  fi
}

# A tether config: affinity `$1`, `$2` endpoints over the four upstreams, file `$3`; with
# ORIGIN_TLS=1 the endpoints are the TLS upstreams, verified against their certificate.
tether_conf() {
  local mode=$1 n=$2 file=$3 extra="" ups=("${UPSTREAMS[@]}") tls=""
  [ "$mode" = header ] && extra="    session_affinity_attributes: { headers: [x-user] }"
  if [ "${ORIGIN_TLS:-0}" = 1 ]; then
    ups=("${TLS_UPSTREAMS[@]}")
    tls=", tls: { enabled: true, sni: bench.origin, ca_path: $WORK/origin.crt }"
  fi
  {
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
cookie_secret: "$SECRET"
pools:
  - id: bench
    origin_steering: { policy: random }
    endpoints:
EOF
    for ((i = 0; i < n; i++)); do
      echo "      - { name: e$i, address: \"${ups[$((i % 4))]}\"$tls }"
    done
    cat <<EOF
load_balancers:
  - name: "*"
    default_pools: [bench]
    session_affinity: $mode
$extra
EOF
  } >"$file"
}

TETHER_PID=""
# Starts tether on a config; RUST_LOG as given (info by default, as in production).
start_tether() {
  local conf=$1 log=$2
  RUST_LOG=${3:-info} taskset -c "$PROXY_CPU" "$TETHER" --config "$conf" 2>"$log" &
  TETHER_PID=$!
  PIDS+=("$TETHER_PID")
  wait_http "$URL"
}

# The `__cflb` cookie the running proxy mints on a first visit.
minted_cookie() {
  curl -s -D - -o /dev/null "$URL" | tr -d '\r' | awk -F'[ ;]' 'tolower($1) == "set-cookie:" { print $2; exit }'
}

# One tether row: mode, endpoints, row name, RUST_LOG, and `replay` (send the minted cookie),
# `first` (no cookie) or a wrk header.
tether_row() {
  local mode=$1 n=$2 name=$3 level=$4 how=$5
  want "$name" || return 0
  local conf="$WORK/tether-$mode-$n${ORIGIN_TLS:+-tls$ORIGIN_TLS}.yaml"
  tether_conf "$mode" "$n" "$conf"
  start_tether "$conf" "$WORK/tether-${name//[^a-zA-Z0-9]/_}.log" "$level" || { stop "$TETHER_PID" INT; return 1; }
  local args=()
  case $how in
    replay)
      local c
      c=$(minted_cookie)
      [ -n "$c" ] || { say "$name: no cookie minted"; stop "$TETHER_PID" INT; return 1; }
      args=(-H "Cookie: $c")
      ;;
    first) ;;
    *) args=(-H "$how") ;;
  esac
  measure "$name" "$TETHER_PID" "${args[@]}"
  stop "$TETHER_PID" INT
}

bare_row() {
  local bin=$1 name=$2
  want "$name" || return 0
  taskset -c "$PROXY_CPU" "$REL/examples/$bin" "127.0.0.1:$PORT" "${UPSTREAMS[@]}" >"$WORK/$bin.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  wait_http "$URL" && measure "$name" "$pid"
  stop "$pid" INT
}

nginx_row() {
  local name=$1 access=$2
  want "$name" || return 0
  [ $HAVE_NGINX = 1 ] || { say "$name: skipped (nginx not installed)"; return 0; }
  local conf="$WORK/nginx.conf"
  {
    echo "worker_processes 1; daemon off; master_process off;"
    echo "pid $WORK/nginx.pid; error_log $WORK/nginx-error.log warn;"
    echo "events { worker_connections 20000; }"
    echo "http {"
    echo "  access_log $access;"
    echo "  client_body_temp_path $WORK/nginx-body; proxy_temp_path $WORK/nginx-proxy;"
    echo "  upstream bench { hash \$cookie_srv consistent; keepalive 128;"
    for u in "${UPSTREAMS[@]}"; do echo "    server $u;"; done
    echo "  }"
    echo "  server { listen 127.0.0.1:$PORT;"
    echo "    location / { proxy_pass http://bench; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
    echo "}"
  } >"$conf"
  taskset -c "$PROXY_CPU" nginx -c "$conf" -p "$WORK" >"$WORK/nginx.out" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  wait_http "$URL" && measure "$name" "$pid" -H "Cookie: srv=bench-session-1"
  stop "$pid" TERM
}

haproxy_row() {
  local name=$1
  want "$name" || return 0
  [ $HAVE_HAPROXY = 1 ] || { say "$name: skipped (haproxy not installed)"; return 0; }
  local conf="$WORK/haproxy.cfg" i=0
  {
    printf 'global\n  nbthread 1\n  maxconn 4000\n'
    printf 'defaults\n  mode http\n  option http-keep-alive\n'
    printf '  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n'
    printf 'frontend bench\n  bind 127.0.0.1:%s\n  default_backend upstreams\n' "$PORT"
    printf 'backend upstreams\n  balance roundrobin\n  cookie SRV insert indirect nocache\n'
    for u in "${UPSTREAMS[@]}"; do i=$((i + 1)); printf '  server u%s %s cookie u%s\n' $i "$u" $i; done
  } >"$conf"
  taskset -c "$PROXY_CPU" haproxy -db -f "$conf" >"$WORK/haproxy.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  wait_http "$URL" && measure "$name" "$pid" -H "Cookie: SRV=u2"
  stop "$pid" TERM
}

# "0.93" for a/b, or "-" when either is missing.
ratio() {
  local a=${CPU[$1]:-} b=${CPU[$2]:-}
  { [ -z "$a" ] || [ -z "$b" ] || [ "$a" = - ] || [ "$b" = - ]; } && { echo -; return; }
  awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a / b }'
}

# shellcheck source=bench/tls.sh
. bench/tls.sh

say "upstreams on cpu $LOAD_CPU, proxy on cpu $PROXY_CPU; ${DUR}s per row after ${WARM}s warm-up, $CONNS connections; logs in $WORK"
say "load average now: $(cut -d' ' -f1-3 /proc/loadavg) (figures are only comparable on an idle machine)"
# The TLS upstreams' certificate, which tether trusts as its own CA (verify on, as by default).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench.origin \
  -addext subjectAltName=DNS:bench.origin -keyout "$WORK/origin.key" -out "$WORK/origin.crt" \
  >"$WORK/openssl.log" 2>&1 || { say "openssl could not make the origin certificate; see $WORK/openssl.log"; exit 1; }
tls_certs || { say "openssl could not make the listener certificates; see $WORK/openssl.log"; exit 1; }
TLS_ARGS=()
for u in "${TLS_UPSTREAMS[@]}"; do TLS_ARGS+=("tls:$u"); done
taskset -c "$LOAD_CPU" "$REL/examples/bench_upstream" --cert "$WORK/origin.crt" --key "$WORK/origin.key" \
  "${UPSTREAMS[@]}" "${TLS_ARGS[@]}" >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)
wait_http "http://${UPSTREAMS[0]}/" || exit 1

for round in $(seq "$ROUNDS"); do
  say "round $round of $ROUNDS"
  if want "upstream direct"; then
    URL_PROXY=$URL URL="http://${UPSTREAMS[0]}/"
    measure "upstream direct" -
    URL=$URL_PROXY
  fi
  bare_row bare_pingora "bare pingora"
  bare_row bare_pingora_mimalloc "bare pingora + mimalloc"
  tether_row none 4 "tether none" info first
  tether_row cookie 4 "tether cookie" info replay
  ORIGIN_TLS=1 tether_row cookie 4 "tether cookie, TLS origin" info replay
  tether_row cookie 4 "tether cookie (RUST_LOG=warn)" warn replay
  tether_row cookie 4 "tether cookie first visit" info first
  tether_row ip_cookie 4 "tether ip_cookie" info replay
  tether_row header 4 "tether header" info "X-User: bench-session-1"
  nginx_row "nginx" off
  nginx_row "nginx + access log" "$WORK/nginx-access.log"
  haproxy_row "haproxy"
  tls_rows
  pool_row
done

echo
echo "## Proxies, one core, keep-alive, $CONNS connections, 3-byte body"
echo
echo "Median of $ROUNDS rounds of ${DUR}s (rows interleaved, so drift hits every row alike); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
echo
table "$PLAIN_ROWS"

echo
echo "### Proxy CPU per request, tether rows relative to the others (lower is better)"
echo
echo "| tether row                     | / nginx | / haproxy | / bare pingora | / bare + mimalloc |"
echo "|--------------------------------|---------|-----------|----------------|-------------------|"
for r in "${ORDER[@]}"; do
  [[ $r == tether* ]] || continue
  [[ $r =~ $PLAIN_ROWS ]] || continue
  printf '| %-30s | %7s | %9s | %14s | %17s |\n' "$r" "$(ratio "$r" nginx)" "$(ratio "$r" haproxy)" \
    "$(ratio "$r" "bare pingora")" "$(ratio "$r" "bare pingora + mimalloc")"
done
tls_report
results_and_chart

if [ -n "${CPU[tether cookie, TLS origin]:-}" ]; then
  echo
  echo "Origin TLS (kept-alive, HTTP/1.1, verified): tether cookie, TLS origin / tether cookie = $(ratio "tether cookie, TLS origin" "tether cookie") in CPU per request."
fi

if [ "$SCALING" = 1 ]; then
  echo
  echo "## Scaling"
  echo
  for round in $(seq "$ROUNDS"); do
    say "scaling, round $round of $ROUNDS"
    for n in 4 64 1024; do
      tether_row cookie "$n" "cookie, $n endpoints" info replay
      tether_row none "$n" "none, $n endpoints" info first
    done
  done
  table endpoints

  if want "10000 clients"; then
    conf="$WORK/tether-rss.yaml"
    tether_conf cookie 4 "$conf"
    start_tether "$conf" "$WORK/tether-rss.log" info
    idle=$(awk '/VmRSS/ { print $2 }' "/proc/$TETHER_PID/status")
    c=$(minted_cookie)
    taskset -c "$LOAD_CPU" wrk -t1 -c10000 -d8s -H "Cookie: $c" "$URL" >"$WORK/wrk-10k.txt" 2>&1 &
    WRK=$!
    PIDS+=("$WRK")
    sleep 6
    open=$(ls "/proc/$TETHER_PID/fd" | wc -l)
    busy=$(awk '/VmRSS/ { print $2 }' "/proc/$TETHER_PID/status")
    wait "$WRK"
    forget "$WRK"
    peak=$(awk '/VmHWM/ { print $2 }' "/proc/$TETHER_PID/status")
    echo
    echo "10,000 keep-alive clients (wrk -c10000, cookie replay): RSS idle $((idle / 1024)) MiB," \
      "under load $((busy / 1024)) MiB with $open open fds, peak $((peak / 1024)) MiB;" \
      "$(awk '/requests in/ { print $1 " requests" } /Socket errors/ { print "(" $0 ")" }' "$WORK/wrk-10k.txt" | tr '\n' ' ')"
    stop "$TETHER_PID" INT
  fi

  if want "reload"; then
    echo
    "$REL/examples/bench_reload" 1000
  fi
fi
echo
say "done; logs and wrk outputs in $WORK"
