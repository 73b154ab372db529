#!/usr/bin/env bash
# Installs the Durable Streams reference server (npm @durable-streams/server)
# into bench/durable-streams/node_modules for `tether-bench peer-ds`.
set -euo pipefail
cd "$(dirname "$0")/durable-streams"
npm ci --no-audit --no-fund
