#!/usr/bin/env bash
# Instructions per request under callgrind: a figure that, unlike CPU time, does not move when
# other work shares the machine. `bench/instructions.sh [NAME=BINARY ...]` runs each proxy under
# `valgrind --tool=callgrind`, warms it up, zeroes the counters, counts instructions (user space
# only: the kernel's share is not seen) over a few seconds of wrk load, and prints Ir/request.
# Without arguments: bare Pingora (glibc, mimalloc) and tether (cookie replay, none).
# Columns: instructions per request; the same without sha2's software SHA-256 (valgrind hides
# SHA-NI, so HMAC costs ~7,000 instructions here and a few hundred on the hardware: the column
# subtracts `sha256::compress256` exactly, leaving the rest of the HMAC in); and that figure over
# the mimalloc floor's (the target is ≤ 1.10). BENCH_SECONDS (5) of load per proxy.
# Loopback only; ends only the processes it started.
set -uo pipefail
cd "$(dirname "$0")/.."
REL=${BENCH_BIN_DIR:-target/release}
SECS=${BENCH_SECONDS:-5}
PORT=19080
UPSTREAMS=(127.0.0.1:19101 127.0.0.1:19102 127.0.0.1:19103 127.0.0.1:19104)
URL="http://127.0.0.1:$PORT/"
WORK=$(mktemp -d /tmp/tether-instr.XXXXXX)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done' EXIT
command -v valgrind >/dev/null || { apt-get install -y -qq valgrind >/dev/null 2>&1 || { echo "valgrind missing"; exit 1; }; }

wait_http() {
  for _ in $(seq 300); do curl -s -o /dev/null --max-time 1 "$1" && return 0; sleep 0.1; done
  return 1
}

conf() {
  cat >"$WORK/$1.yaml" <<EOF
server: { threads: 1, work_stealing: false, pid_file: $WORK/t.pid, upgrade_sock: $WORK/t.sock, grace_period_seconds: 0, graceful_shutdown_timeout_seconds: 1 }
listeners: [{ address: "127.0.0.1:$PORT" }]
cookie_secret: "instructions-benchmark-secret-0123456789"
pools:
  - id: bench
    endpoints:
$(for i in 0 1 2 3; do echo "      - { name: e$i, address: \"${UPSTREAMS[$i]}\" }"; done)
load_balancers:
  - { name: "*", default_pools: [bench], session_affinity: $1 }
EOF
  echo "$WORK/$1.yaml"
}

# name, how (replay|first), command...
count() {
  local name=$1 how=$2; shift 2
  local out="$WORK/callgrind.${name//[^a-zA-Z0-9]/_}"
  RUST_LOG=${RUST_LOG:-info} valgrind --tool=callgrind --callgrind-out-file="$out" \
    "$@" >/dev/null 2>"$out.log" &
  local pid=$!
  PIDS+=("$pid")
  wait_http "$URL" || { echo "$name: did not start"; kill "$pid"; return 1; }
  local hdr=()
  if [ "$how" = replay ]; then
    hdr=(-H "Cookie: $(curl -s -D - -o /dev/null "$URL" | tr -d '\r' | awk -F'[ ;]' 'tolower($1) == "set-cookie:" { print $2; exit }')")
  fi
  wrk -t1 -c8 -d2s "${hdr[@]}" "$URL" >/dev/null 2>&1
  callgrind_control -z "$pid" >/dev/null 2>&1
  wrk -t1 -c8 -d"${SECS}s" "${hdr[@]}" "$URL" >"$out.wrk" 2>&1
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill -INT "$pid"
  wait "$pid" 2>/dev/null
  local reqs ir sha
  reqs=$(awk '/requests in/ { print $1 }' "$out.wrk")
  # The dump made right after the load holds only what ran since the zeroing.
  ir=$(awk '/^summary:/ { print $2; exit }' "$out.1" 2>/dev/null)
  sha=$(callgrind_annotate --auto=no --threshold=100 "$out.1" 2>/dev/null |
    awk '/sha256::compress256/ { gsub(",", "", $1); s += $1 } END { print s + 0 }')
  local per bare
  per=$(awk -v ir="$ir" -v s="$sha" -v r="$reqs" 'BEGIN { printf "%.0f", (ir - s) / r }')
  [[ $name == "bare pingora + mimalloc" ]] && FLOOR=$per
  bare=$(awk -v p="$per" -v f="${FLOOR:-0}" 'BEGIN { if (f > 0) printf "%.2f", p / f; else print "-" }')
  awk -v n="$name" -v ir="$ir" -v r="$reqs" -v p="$per" -v b="$bare" \
    'BEGIN { printf "| %-34s | %8d | %13.0f | %16s | %16s |\n", n, r, ir / r, p, b }'
}
FLOOR=""

"$REL/examples/bench_upstream" "${UPSTREAMS[@]}" >/dev/null 2>&1 &
PIDS+=($!)
wait_http "http://${UPSTREAMS[0]}/"
echo "| proxy                              | requests | instr/request | without SHA-256  | / mimalloc floor |"
echo "|------------------------------------|----------|---------------|------------------|------------------|"
if [ $# = 0 ]; then
  set -- "bare pingora + mimalloc=$REL/examples/bare_pingora_mimalloc" "bare pingora=$REL/examples/bare_pingora" \
    "tether cookie=$REL/tether" "tether none=$REL/tether"
fi
for spec in "$@"; do
  name=${spec%%=*} bin=${spec#*=}
  case $name in
    bare*) count "$name" first "$bin" "127.0.0.1:$PORT" "${UPSTREAMS[@]}" ;;
    *none*) count "$name" first "$bin" --config "$(conf none)" ;;
    *first*) count "$name" first "$bin" --config "$(conf cookie)" ;;
    *) count "$name" replay "$bin" --config "$(conf cookie)" ;;
  esac
done
