#!/usr/bin/env bash
# README command 1: build Basin and run its demo on the embedded default (a lakehouse in a
# temporary folder: TPC-H import, a branch, a change, diff, merge, query).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/env.sh"
cd "$ROOT"
echo "== building basin (first build takes several minutes on 2 cores)" >&2
cargo build --quiet --bin basin --no-default-features
"$CARGO_TARGET_DIR/debug/basin" demo "$@"
