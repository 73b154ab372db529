#!/usr/bin/env bash
# Instructions per append, counted by valgrind's callgrind in the server
# process: the figure to compare on a noisy, shared machine (it does not
# move with load). Runs `tether-bench fixed` (an exact amount of work:
# STREAMS channels x APPENDS appends, one subscriber each) against a server
# under callgrind, once with the appends and once with none, and prints
# (Ir with - Ir without) / appends: the marginal user-space instructions
# of one append, its fan-out and its delivery.
#
#   bench/instructions.sh [STREAMS APPENDS]...   (default: 100 100 20 1000)
#
# TETHER_BIN / TETHER_BENCH pick the binaries (default: target/release).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${TETHER_BIN:-target/release/tether}"
BENCH="${TETHER_BENCH:-target/release/tether-bench}"
command -v valgrind >/dev/null || { echo "valgrind is needed" >&2; exit 1; }

# Instructions of one server run doing `fixed` with $1 streams x $2 appends.
count() {
  local streams="$1" appends="$2" dir port pid
  dir="$(mktemp -d)"
  port=$((20000 + RANDOM % 20000))
  TETHER_PUBLISH_RATE_PER_SEC=100000000 TETHER_PUBLISH_BURST=100000000 \
  TETHER_MAX_CONNECTIONS=1000000 TETHER_MAX_CONNECTIONS_PER_KEY=1000000 TETHER_LOG=warn \
    valgrind --tool=callgrind --callgrind-out-file="$dir/out" \
    "$BIN" serve --dev --listen "127.0.0.1:$port" --data-dir "$dir/data" \
    >"$dir/log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do
    curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  "$BENCH" --quiet --url "http://127.0.0.1:$port" \
    --channels "$streams" --appends "$appends" fixed >"$dir/bench" 2>&1 \
    || { cat "$dir/bench" >&2; kill "$pid"; exit 1; }
  kill -TERM "$pid"
  wait "$pid" || true
  # callgrind's totals line: "summary: <Ir>" (or "totals:").
  awk '/^(summary|totals):/ {print $2; exit}' "$dir/out"
  rm -rf "$dir"
}

set -- "${@:-100 100 20 1000}"
args=($*)
for ((i = 0; i < ${#args[@]}; i += 2)); do
  streams="${args[i]}" appends="${args[i+1]}"
  with="$(count "$streams" "$appends")"
  without="$(count "$streams" 0)"
  total=$((streams * appends))
  echo "$streams x $appends: $(( (with - without) / total )) instructions per append ($with with, $without without)"
done
