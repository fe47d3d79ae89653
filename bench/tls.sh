# Sourced by bench/proxy.sh: the TLS, HTTP/2 and upstream-pool rows of `make bench` (issue 20).
# Uses proxy.sh's helpers (need, say, stop, forget, cpu_ticks, to_us, want, PIDS, SAMPLES, ORDER).
#
# Every proxy terminates TLS on TLS_PORT with the same certificate, made here by the openssl CLI
# (ECDSA P-256 and RSA-2048), and proxies to the same four plain upstreams, on the proxy core:
# - "tls keep-alive, X": wrk over https (HTTP/1.1, kept-alive), ECDSA: CPU per request;
# - "tls new|resumed, KEY, X": `openssl s_time` making a connection per request (`-new`: a full
#   handshake each; `-reuse`: resuming the first session each time), one `GET /` (HTTP/1.0) over
#   each: CPU per connection; req/s is connections per second (client-bound: s_time is sequential,
#   BENCH_TLS_CLIENTS of them run at once);
# - "h2 100 streams, X": h2load over TLS (ALPN h2), 4 connections x 100 concurrent streams:
#   CPU per request and p99 from h2load's per-request log;
# - "pool 1000, tether": KiB one pooled upstream connection holds (the CPU column), from RSS.
# Knobs: BENCH_H2_CONNECTIONS (4), BENCH_H2_STREAMS (100), BENCH_TLS_CLIENTS (4 s_time processes),
# BENCH_POOL (1000).

TLS_PORT=19443
TLS_URL="https://127.0.0.1:$TLS_PORT/"
H2_CONNS=${BENCH_H2_CONNECTIONS:-4}
H2_STREAMS=${BENCH_H2_STREAMS:-100}
POOL_N=${BENCH_POOL:-1000}
POOL_NOTE=""
TLS_CLIENTS=${BENCH_TLS_CLIENTS:-4}
# The rows of the first table (HTTP/1.1 in clear); the rest are this file's.
PLAIN_ROWS='^(upstream|bare|tether|nginx|haproxy)'
# Upstreams that answer after a delay, only for the pool row (so that POOL_N requests overlap).
SLOW_UPSTREAM=127.0.0.1:19121

# Makes $WORK/{ecdsa,rsa}.{crt,key} and HAProxy's key+chain files; false when openssl fails.
tls_certs() {
  local kind
  for kind in ecdsa rsa; do
    local alg=(-newkey ec -pkeyopt ec_paramgen_curve:P-256)
    [ $kind = rsa ] && alg=(-newkey rsa:2048)
    openssl req -x509 "${alg[@]}" -nodes -days 2 -subj /CN=bench.edge \
      -addext subjectAltName=DNS:bench.edge,IP:127.0.0.1 \
      -keyout "$WORK/$kind.key" -out "$WORK/$kind.crt" >>"$WORK/openssl.log" 2>&1 || return 1
    cat "$WORK/$kind.crt" "$WORK/$kind.key" >"$WORK/$kind.pem"
  done
}

PROXY_PID=""
# Starts proxy `$1` (tether|nginx|haproxy) terminating TLS with certificate `$2` (ecdsa|rsa) on
# TLS_PORT; PROXY_PID is its pid. Round robin over the four plain upstreams, no affinity.
tls_start() {
  local proxy=$1 kind=$2
  case $proxy in
    tether)
      local conf="$WORK/tether-tls-$kind.yaml"
      tether_conf none 4 "$conf"
      sed -i "s|^  - address: 127.0.0.1:$PORT|  - address: 127.0.0.1:$TLS_PORT\n    tls: { cert_path: $WORK/$kind.crt, key_path: $WORK/$kind.key }|" "$conf"
      RUST_LOG=info taskset -c "$PROXY_CPU" "$TETHER" --config "$conf" 2>"$WORK/tether-tls.log" &
      ;;
    nginx)
      [ $HAVE_NGINX = 1 ] || return 1
      {
        echo "worker_processes 1; daemon off; master_process off;"
        echo "pid $WORK/nginx.pid; error_log $WORK/nginx-error.log warn;"
        echo "events { worker_connections 20000; }"
        echo "http { access_log off;"
        echo "  client_body_temp_path $WORK/nginx-body; proxy_temp_path $WORK/nginx-proxy;"
        echo "  upstream bench { keepalive 128;"
        for u in "${UPSTREAMS[@]}"; do echo "    server $u;"; done
        echo "  }"
        echo "  server { listen 127.0.0.1:$TLS_PORT ssl http2;"
        echo "    ssl_certificate $WORK/$kind.crt; ssl_certificate_key $WORK/$kind.key;"
        echo "    http2_max_concurrent_streams $H2_STREAMS;"
        echo "    location / { proxy_pass http://bench; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
        echo "}"
      } >"$WORK/nginx-tls.conf"
      taskset -c "$PROXY_CPU" nginx -c "$WORK/nginx-tls.conf" -p "$WORK" >"$WORK/nginx.out" 2>&1 &
      ;;
    haproxy)
      [ $HAVE_HAPROXY = 1 ] || return 1
      local i=0
      {
        printf 'global\n  nbthread 1\n  maxconn 4000\n'
        printf 'defaults\n  mode http\n  option http-keep-alive\n'
        printf '  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n'
        printf 'frontend bench\n  bind 127.0.0.1:%s ssl crt %s alpn h2,http/1.1\n' "$TLS_PORT" "$WORK/$kind.pem"
        printf '  default_backend upstreams\n'
        printf 'backend upstreams\n  balance roundrobin\n'
        for u in "${UPSTREAMS[@]}"; do i=$((i + 1)); printf '  server u%s %s\n' $i "$u"; done
      } >"$WORK/haproxy-tls.cfg"
      taskset -c "$PROXY_CPU" haproxy -db -f "$WORK/haproxy-tls.cfg" >"$WORK/haproxy-tls.log" 2>&1 &
      ;;
  esac
  PROXY_PID=$!
  PIDS+=("$PROXY_PID")
  for _ in $(seq 100); do
    curl -sk -o /dev/null --max-time 1 "$TLS_URL" && return 0
    sleep 0.1
  done
  say "$proxy ($kind): no answer on $TLS_URL"
  stop "$PROXY_PID" "$(signal_for "$proxy")"
  return 1
}

# Records a sample "cpu rps p50 p99" for row `$1`: proxy pid `$2`, CPU ticks before `$3`,
# `$4` requests (or connections) in `$5` seconds, latencies `$6` `$7` in µs ("-" if unknown).
record() {
  local name=$1 pid=$2 t0=$3 n=$4 secs=$5 p50=$6 p99=$7 t1 cpu rps
  t1=$(cpu_ticks "$pid")
  if [ -z "$n" ] || [ "$n" = 0 ]; then
    say "$name: no request completed; see $WORK"
    return 1
  fi
  cpu=$(awk -v d=$((t1 - t0)) -v r="$n" -v t="$TICKS" 'BEGIN { printf "%.1f", d * 1e6 / t / r }')
  rps=$(awk -v n="$n" -v s="$secs" 'BEGIN { printf "%.1f", n / s }')
  [ -n "${SAMPLES[$name]:-}" ] || ORDER+=("$name")
  SAMPLES[$name]+="$cpu $rps $p50 $p99;"
  say "  $name: $cpu µs CPU each, $rps/s"
}

# wrk over https, kept-alive, against the running proxy.
tls_keepalive() {
  local name=$1 out="$WORK/wrk-tls.txt"
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${WARM}s" "$TLS_URL" >/dev/null 2>&1
  local t0 reqs
  t0=$(cpu_ticks "$PROXY_PID")
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "$TLS_URL" >"$out" 2>&1
  reqs=$(awk '/requests in/ { print $1 }' "$out")
  record "$name" "$PROXY_PID" "$t0" "$reqs" "$DUR" \
    "$(to_us "$(awk '$1 == "50%" { print $2 }' "$out")")" "$(to_us "$(awk '$1 == "99%" { print $2 }' "$out")")"
}

# `openssl s_time`: a new TCP connection and TLS handshake per `GET /` (`$2` = -new or -reuse),
# from TLS_CLIENTS processes at once (one s_time waits for each answer before it connects again).
tls_handshakes() {
  local name=$1 mode=$2 i
  local args=(-connect "127.0.0.1:$TLS_PORT" -www / "$mode")
  taskset -c "$LOAD_CPU" openssl s_time "${args[@]}" -time "$WARM" >/dev/null 2>&1
  local t0 conns=0 secs=0 n s
  t0=$(cpu_ticks "$PROXY_PID")
  for i in $(seq "$TLS_CLIENTS"); do
    taskset -c "$LOAD_CPU" openssl s_time "${args[@]}" -time "$DUR" >"$WORK/s_time.$i.txt" 2>&1 &
  done
  wait_load
  for i in $(seq "$TLS_CLIENTS"); do
    # "1234 connections in 5 real seconds, 3 bytes read per connection"
    read -r n s < <(awk '/connections in .* real seconds/ { print $1, $4 }' "$WORK/s_time.$i.txt")
    conns=$((conns + ${n:-0}))
    [ "${s:-0}" -gt "$secs" ] && secs=$s
  done
  record "$name" "$PROXY_PID" "$t0" "$conns" "$secs" - -
}

# Waits for the load processes started in the background (the proxies are in PIDS, not waited).
wait_load() {
  local p
  for p in $(jobs -p); do
    [[ " ${PIDS[*]} " == *" $p "* ]] || wait "$p" 2>/dev/null
  done
}

# h2load over TLS: H2_CONNS connections x H2_STREAMS concurrent streams; p50/p99 from its log.
tls_h2() {
  local name=$1 log="$WORK/h2load.log" out="$WORK/h2load.txt"
  local args=(-c "$H2_CONNS" -m "$H2_STREAMS" -t 1)
  taskset -c "$LOAD_CPU" h2load "${args[@]}" -D "$WARM" "$TLS_URL" >/dev/null 2>&1
  local t0 reqs
  t0=$(cpu_ticks "$PROXY_PID")
  taskset -c "$LOAD_CPU" h2load "${args[@]}" -D "$DUR" --log-file="$log" "$TLS_URL" >"$out" 2>&1
  grep -qi "application protocol: h2" "$out" || { say "$name: not HTTP/2 (see $out)"; return 1; }
  # "requests: 10000 total, 10000 started, 10000 done, 10000 succeeded, 0 failed, ..."
  reqs=$(awk '/^requests:/ { print $8 }' "$out")
  local p50 p99
  read -r p50 p99 < <(awk '{ print $3 }' "$log" | sort -n |
    awk '{ a[NR] = $1 } END { if (NR) print a[int(NR * 0.5) + 1], a[int(NR * 0.99) + 1]; else print "- -" }')
  record "$name" "$PROXY_PID" "$t0" "$reqs" "$DUR" "$p50" "$p99"
}

# True when BENCH_ROWS wants any of the rows named.
want_any() {
  local r
  for r in "$@"; do want "$r" && return 0; done
  return 1
}

# One round of the TLS and HTTP/2 rows, every proxy on each certificate.
tls_rows() {
  local proxy kind
  for proxy in tether nginx haproxy; do
    if want_any "tls keep-alive, $proxy" "h2 $H2_STREAMS streams, $proxy" "tls new, ecdsa, $proxy" \
      "tls resumed, ecdsa, $proxy"; then
      if tls_start $proxy ecdsa; then
        want "tls keep-alive, $proxy" && tls_keepalive "tls keep-alive, $proxy"
        want "h2 $H2_STREAMS streams, $proxy" && [ $HAVE_H2LOAD = 1 ] && tls_h2 "h2 $H2_STREAMS streams, $proxy"
        want "tls new, ecdsa, $proxy" && tls_handshakes "tls new, ecdsa, $proxy" -new
        want "tls resumed, ecdsa, $proxy" && tls_handshakes "tls resumed, ecdsa, $proxy" -reuse
        stop "$PROXY_PID" "$(signal_for $proxy)"
      fi
    fi
    for kind in rsa; do
      want_any "tls new, $kind, $proxy" "tls resumed, $kind, $proxy" || continue
      tls_start $proxy $kind || continue
      want "tls new, $kind, $proxy" && tls_handshakes "tls new, $kind, $proxy" -new
      want "tls resumed, $kind, $proxy" && tls_handshakes "tls resumed, $kind, $proxy" -reuse
      stop "$PROXY_PID" "$(signal_for $proxy)"
    done
  done
}

# tether stops at once on SIGINT (SIGTERM would wait out its graceful shutdown).
signal_for() { [ "$1" = tether ] && echo INT || echo TERM; }

# The TLS and HTTP/2 table, then tether over HAProxy and nginx for each kind of row.
tls_report() {
  local r kind any=0
  for r in "${ORDER[@]}"; do [[ $r =~ ^(tls|h2|pool) ]] && any=1; done
  [ $any = 1 ] || return 0
  echo
  echo "## TLS termination and HTTP/2, one core ($CONNS connections kept alive; s_time: one connection at a time; h2load: $H2_CONNS x $H2_STREAMS streams)"
  echo
  echo "CPU µs is per request, or per connection (handshake + one request) in the new/resumed rows, whose req/s is connections/s."
  echo
  table '^(tls|h2) '
  echo
  echo "| row kind (CPU ratio)           | tether / haproxy | tether / nginx |"
  echo "|--------------------------------|------------------|----------------|"
  for kind in "tls keep-alive" "tls new, ecdsa" "tls resumed, ecdsa" "tls new, rsa" "tls resumed, rsa" "h2 $H2_STREAMS streams"; do
    [ -n "${CPU[$kind, tether]:-}" ] || continue
    printf '| %-30s | %16s | %14s |\n' "$kind" "$(ratio "$kind, tether" "$kind, haproxy")" "$(ratio "$kind, tether" "$kind, nginx")"
  done
  local pool="pool $POOL_N, tether"
  if [ -n "${SAMPLES[$pool]:-}" ]; then
    summarise "$pool"
    echo
    echo "## Upstream pool memory"
    echo
    echo "One pooled upstream connection holds ${CPU[$pool]} KiB of tether's RSS (median of $ROUNDS; ${RPS[$pool]} pooled of $POOL_N wanted). Last round: ${POOL_NOTE:-}."
  fi
}

# A moment, then three requests one after another (their answers do not matter), so that the
# allocator runs and returns what is free before an RSS reading.
settle() {
  sleep 0.5
  for _ in 1 2 3; do curl -s -o /dev/null --max-time 1 "$URL"; done
  sleep 0.3
}

# kB of VmRSS of a process.
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

# Established connections from a process to `addr` (ip:port), by its socket inodes.
conns_to() {
  local pid=$1 addr=$2 inodes
  inodes=$(find "/proc/$pid/fd" -lname 'socket:*' -printf '%l\n' 2>/dev/null | tr -dc '0-9\n' | sort -u)
  ss -tnHe state established dst "$addr" 2>/dev/null |
    awk -v want="$inodes" 'BEGIN { n = split(want, a, "\n"); for (i = 1; i <= n; i++) ok[a[i]] = 1 }
      { for (i = 1; i <= NF; i++) if ($i ~ /^ino:/) { split($i, v, ":"); if (v[2] in ok) c++ } }
      END { print c + 0 }'
}

# "pool N, tether": tether with one endpoint whose answers take 300 ms and a pool of POOL_N;
# h2load sends one HTTP/1.1 request on each of POOL_N connections at once, so tether opens POOL_N
# upstream connections, and each goes to the pool when its answer is through (wrk would cut the
# requests in flight when it stops, and those connections would close instead). Then the
# upstream is stopped, every pooled connection closes, and the RSS that left with them, divided
# by their number, is what one pooled connection held. A few requests before each RSS reading
# make the allocator hand back what is already free (mimalloc returns freed pages lazily, on
# its next calls). The figure goes in the CPU column (KiB per pooled connection; req/s: the
# pooled count).
pool_row() {
  local name="pool $POOL_N, tether"
  want "$name" || return 0
  [ $HAVE_H2LOAD = 1 ] || { say "$name: skipped (no h2load)"; return 0; }
  taskset -c "$LOAD_CPU" "$REL/examples/bench_upstream" --delay-ms 300 "$SLOW_UPSTREAM" >"$WORK/slow.log" 2>&1 &
  local slow=$!
  PIDS+=("$slow")
  local conf="$WORK/tether-pool.yaml"
  tether_conf none 1 "$conf"
  sed -i "s|\"${UPSTREAMS[0]}\"|\"$SLOW_UPSTREAM\"|; s|^  graceful_shutdown_timeout_seconds: 1|&\n  upstream_keepalive_pool_size: $POOL_N|" "$conf"
  MIMALLOC_PURGE_DELAY=0 start_tether "$conf" "$WORK/tether-pool.log" warn || { stop "$TETHER_PID" INT; stop "$slow" TERM; return 1; }
  local before pooled held after gone
  settle
  before=$(rss_kb "$TETHER_PID")
  taskset -c "$LOAD_CPU" h2load --h1 -n "$POOL_N" -c "$POOL_N" -t 1 "$URL" >"$WORK/h2load-pool.txt" 2>&1
  settle
  pooled=$(conns_to "$TETHER_PID" "$SLOW_UPSTREAM")
  held=$(rss_kb "$TETHER_PID")
  stop "$slow" TERM
  for _ in $(seq 50); do [ "$(conns_to "$TETHER_PID" "$SLOW_UPSTREAM")" = 0 ] && break; sleep 0.1; done
  settle
  after=$(rss_kb "$TETHER_PID")
  gone=$((pooled - $(conns_to "$TETHER_PID" "$SLOW_UPSTREAM")))
  stop "$TETHER_PID" INT
  if [ "$gone" -le 0 ]; then
    say "$name: no pooled connection closed (pooled $pooled); see $WORK/h2load-pool.txt"
    return 1
  fi
  local per
  per=$(awk -v a="$held" -v b="$after" -v n="$gone" 'BEGIN { printf "%.2f", (a - b) / n }')
  [ -n "${SAMPLES[$name]:-}" ] || ORDER+=("$name")
  SAMPLES[$name]+="$per $pooled - -;"
  POOL_NOTE="RSS $((before / 1024)) MiB before, $((held / 1024)) MiB with $pooled pooled upstream connections, $((after / 1024)) MiB after they closed"
  say "  $name: $per KiB per pooled connection ($POOL_NOTE)"
}
