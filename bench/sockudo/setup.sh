#!/usr/bin/env bash
# Builds Sockudo (crates.io `sockudo`, a Rust Pusher-protocol server) into
# bench/sockudo/install/bin/sockudo for `tether-bench peer-sockudo`.
# About 17 minutes on 2 idle cores; much longer on a busy machine, so it runs
# at low priority and logs to bench/sockudo/install.log.
#
# tether-bench starts it itself, bound to 127.0.0.1 on a free port, with one
# app configured through SOCKUDO_DEFAULT_APP_* and the rate limiter off.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v protoc >/dev/null 2>&1; then
  apt-get update && apt-get install -y protobuf-compiler
fi
nice -n 19 cargo install sockudo --locked --no-default-features \
  --features "local,v2,ai-transport" --root "$PWD/install" 2>&1 | tee install.log
