#!/usr/bin/env bash
# Fuzzes Basin's parsers for a set time each: scripts/fuzz.sh [TARGET] [SECONDS]
# (default: every target, 60 s each). Targets: csv json iceberg_rest policy guard basin_toml.
#
# Each target mutates its checked-in corpus (fuzz/corpus/TARGET/) and checks properties;
# it is not coverage-guided (see crates/basin-fuzz). A failing input is minimized and saved
# into the corpus as crash-HASH, where `cargo test` replays it from then on; the script then
# exits non-zero. BASIN_FUZZ_SEED=N repeats a run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/env.sh"
cd "$ROOT"

TARGETS=(csv json iceberg_rest policy guard basin_toml)
if [ $# -ge 1 ] && [ "$1" != all ]; then
    if [[ ! " ${TARGETS[*]} " == *" $1 "* ]]; then
        echo "unknown target \`$1\`; targets: ${TARGETS[*]}" >&2
        exit 2
    fi
    TARGETS=("$1")
fi
export BASIN_FUZZ_SECONDS="${2:-60}"

echo "== building the fuzz targets" >&2
cargo test --quiet --workspace --lib --no-run

failed=()
for target in "${TARGETS[@]}"; do
    # Only one crate's test binary holds the target; the others run nothing.
    set +e
    cargo test --quiet --workspace --lib -- --ignored --exact "fuzz::${target}_mutations" \
        --nocapture 2>&1 | grep -E "^fuzz |input saved"
    status=${PIPESTATUS[0]}
    set -e
    if [ "$status" -ne 0 ]; then
        failed+=("$target")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "failing targets: ${failed[*]} (inputs saved under fuzz/corpus/)" >&2
    exit 1
fi
