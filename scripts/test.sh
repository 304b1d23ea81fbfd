#!/usr/bin/env bash
# README command 2: the whole test suite. Rust unit and integration tests, then the Python
# tests that drive the real binary with real clients (PyIceberg, an S3-protocol server,
# psql and psycopg, headless Chromium).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/env.sh"
cd "$ROOT"

basin_system_packages
basin_python_env
basin_node_env

# Everything the tests need was installed above: a test may not skip for want of it (the
# catalog suite's Postgres half, the Python tests' servers and clients).
export BASIN_FULL_SUITE=1

echo "== layers" >&2
# No import circle inside a crate, no crate importing a higher one, no file over 600 lines and
# no function over 120 (docs/architecture.md): a circle cannot come back unnoticed.
python3 scripts/check_layers.py

echo "== the quick build (scripts/demo.sh's, without default features)" >&2
# It shares every dependency with the full build (feature pins), so it costs Basin's crates
# only; tests/python/test_quick_build.py runs it as `basin-quick`.
python3 scripts/check_features.py
cargo build --quiet --bin basin --no-default-features
cp "$CARGO_TARGET_DIR/debug/basin" "$CARGO_TARGET_DIR/debug/basin-quick"
export BASIN_QUICK_BIN="$CARGO_TARGET_DIR/debug/basin-quick"

echo "== cargo build" >&2
# Also puts the full binary back at debug/basin.
cargo build --quiet --workspace --all-targets
echo "== cargo test" >&2
# The runtime's tests build real environments with the uv installed above.
PATH="$BASIN_VENV/bin:$PATH" cargo test --quiet --workspace

echo "== python tests" >&2
export BASIN_BIN="$CARGO_TARGET_DIR/debug/basin"
PATH="$BASIN_VENV/bin:$PATH" "$BASIN_VENV/bin/python" -m pytest -q -p no:cacheprovider tests/python
