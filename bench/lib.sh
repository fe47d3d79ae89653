# Shared by the `make bench` scripts (bench/proxy.sh, bench/memory.sh): every process a script
# starts is remembered by pid in PIDS and ended by pid, also on Ctrl-C; nothing else is touched.
# Source it after `cd` to the repository.

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '%s\n' "$*" >&2; }

# Blocks until `url` answers (any HTTP status), for at most 10 s.
wait_http() {
  local url=$1
  for _ in $(seq 100); do
    curl -s -o /dev/null --max-time 1 "$url" && return 0
    sleep 0.1
  done
  say "no answer from $url"
  return 1
}

# Ends one process this script started, by pid.
stop() {
  local pid=$1 sig=${2:-TERM}
  kill "-$sig" "$pid" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  forget "$pid"
}

# Drops a finished pid from PIDS, so that the exit trap never signals a pid the system reused.
forget() {
  local kept=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || kept+=("$p"); done
  PIDS=("${kept[@]}")
  return 0
}
