#!/usr/bin/env bash
# The benchmark entry point: builds Basin in release mode, installs DuckDB and tpchgen-cli
# into the bench environment, and prints a markdown table of every figure.
#   bench/run.sh [--scale 1] [--skip-queries] ...   (see bench/run.py --help)
#   bench/run.sh --tpch-ab [--repeat 3]             (A/B of the TPC-H levers: bench/tpch_ab.py)
#   bench/run.sh --tpch-scale [--scale 10] [--memory-limit 4GiB] [--executors 2]
#                                                   (TPC-H at scale under a memory limit: bench/tpch_scale.py)
#   bench/run.sh --query-processes --lakehouse DIR --binaries A=PATH,B=PATH
#                                                   (TPC-H through `basin query`, binaries in turn: bench/query_processes.py)
#   bench/run.sh --sql-engines [--scale 1] [--rounds 3] [--executors 2]
#                                                   (TPC-H local vs Ballista: the sql_engines example)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/env.sh"
cd "$ROOT"
# Measured as users run it: with RUST_BACKTRACE set, every error value iceberg-rust makes while
# planning a scan (one per column it checks against its metadata columns) captures a backtrace.
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
echo "== release build (the first one takes a long time on 2 cores)" >&2
if [ "${1:-}" = "--sql-engines" ]; then
    shift
    cargo build --release --quiet --workspace --example sql_engines
    exec "$CARGO_TARGET_DIR/release/examples/sql_engines" "$@"
fi
cargo build --release --quiet --workspace --bin basin
VENV="$HOME/.cache/basin/bench-venv"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet -r bench/requirements.txt
if [ "${1:-}" = "--tpch-ab" ]; then
    # The A/B runs of the TPC-H levers (issue #18): bench/tpch_ab.py --help.
    shift
    exec "$VENV/bin/python" bench/tpch_ab.py --basin "$CARGO_TARGET_DIR/release/basin" "$@"
fi
if [ "${1:-}" = "--tpch-scale" ]; then
    # TPC-H at scale 10 (by default) through `basin serve` under a memory limit, answers
    # checked against DuckDB's, peak RSS per query (issue #53): bench/tpch_scale.py --help.
    shift
    exec "$VENV/bin/python" bench/tpch_scale.py --basin "$CARGO_TARGET_DIR/release/basin" "$@"
fi
if [ "${1:-}" = "--query-processes" ]; then
    # TPC-H through a process per query, release builds in turn, kept columns removed before
    # each (issue #53): bench/query_processes.py --help.
    shift
    exec "$VENV/bin/python" bench/query_processes.py "$@"
fi
cargo build --release --quiet --workspace --example catalog_latency
cargo build --release --quiet --workspace --example runtime_bench
exec "$VENV/bin/python" bench/run.py \
    --basin "$CARGO_TARGET_DIR/release/basin" \
    --catalog-latency "$CARGO_TARGET_DIR/release/examples/catalog_latency" \
    --runtime-bench "$CARGO_TARGET_DIR/release/examples/runtime_bench" "$@"
