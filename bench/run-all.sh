#!/usr/bin/env bash
# Reproduces docs/benchmarks.md: builds the release binaries, runs every
# workload 3 times (medians), the latency-vs-load sweep and the peer
# comparisons, and writes JSON results and the SVG plot to bench/results/.
#
#   bench/run-all.sh                 # everything (about 25 minutes)
#   TETHER_BIN=/path/to/tether bench/run-all.sh   # measure another build
#   SKIP_BUILD=1 REPEAT=1 bench/run-all.sh         # quick, no rebuild
#
# Peers are optional: peer-ds needs bench/setup-durable-streams.sh, and
# peer-sockudo needs bench/sockudo/setup.sh; a missing peer is reported as
# skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=bench/results
mkdir -p "$OUT"
if [ -z "${SKIP_BUILD:-}" ]; then
  nice -n 10 cargo build --release --bin tether --bin tether-bench
fi
BIN=${TETHER_BIN:-target/release/tether}
BENCH="target/release/tether-bench --bin $BIN --repeat ${REPEAT:-3}"

$BENCH w1 w1-peak w2 w3 w4 w5 --out "$OUT/workloads.json" | tee "$OUT/workloads.txt"
$BENCH sweep --duration 6 --sweep-rates 2,5,10,20,40 --svg "$OUT/w1-latency-vs-load.svg" \
  --out "$OUT/sweep.json" | tee "$OUT/sweep.txt"
$BENCH peer-ds --out "$OUT/peer-ds.json" | tee "$OUT/peer-ds.txt"
$BENCH w2 --rollup-ms 40 --fanout-rate 1000 --out "$OUT/w2-rollup.json" | tee "$OUT/w2-rollup.txt"
$BENCH peer-sockudo --out "$OUT/peer-sockudo.json" | tee "$OUT/peer-sockudo.txt"
$BENCH peer-sockudo --fsync never --out "$OUT/peer-sockudo-never.json" | tee "$OUT/peer-sockudo-never.txt"
