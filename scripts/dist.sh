#!/usr/bin/env bash
# Builds what Basin ships into dist/, and prints each file's size and sha256:
#   basin_lakehouse-VERSION-py3-none-manylinux_*.whl   `pip install` it: the `basin` binary
#                                                      and the `basin` Python SDK
#   basin-VERSION-ARCH-linux.tar.gz                    the binary, LICENSE and README
#
# Usage: scripts/dist.sh [--profile dist|release|dev] [--out DIR]
# The default profile, dist (Cargo.toml: fat LTO, no debug info, stripped), is what a release
# publishes; its first build takes long on two cores. `--profile dev` packages the dev build
# in seconds once `cargo build` has run (the install test does that).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/env.sh"

PROFILE=dist
OUT="$ROOT/dist"
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) PROFILE=${2:?--profile needs a value}; shift 2 ;;
        --out) OUT=${2:?--out needs a folder}; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "error: unknown argument \`$1\`" >&2
           echo "hint: scripts/dist.sh [--profile dist|release|dev] [--out DIR]" >&2; exit 2 ;;
    esac
done

basin_dist_env
VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml")
ARCH=$(uname -m)
# Cargo's folder for a profile: `dev` builds into debug/, every other profile into its name.
case "$PROFILE" in dev) PROFILE_DIR=debug ;; *) PROFILE_DIR=$PROFILE ;; esac
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
rm -f "$OUT"/basin_lakehouse-"$VERSION"-*.whl "$OUT/basin-$VERSION-$ARCH-linux.tar.gz"

echo "== building the wheel ($PROFILE profile)" >&2
# maturin checks the binary against the manylinux policies (auditwheel) and tags the wheel
# with the newest one it meets; a binary needing a system library beyond glibc fails here.
(cd "$ROOT" && "$BASIN_DIST_VENV/bin/maturin" build --profile "$PROFILE" --out "$OUT" --auditwheel check)
WHEEL=$(ls "$OUT"/basin_lakehouse-"$VERSION"-*.whl)

echo "== packing the tarball" >&2
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir "$STAGE/basin-$VERSION"
cp "$CARGO_TARGET_DIR/$PROFILE_DIR/basin" "$ROOT/LICENSE" "$ROOT/README.md" "$STAGE/basin-$VERSION/"
TARBALL="$OUT/basin-$VERSION-$ARCH-linux.tar.gz"
tar -C "$STAGE" -czf "$TARBALL" "basin-$VERSION"

printf '%-60s %10s  %s\n' file size sha256
for f in "$CARGO_TARGET_DIR/$PROFILE_DIR/basin" "$WHEEL" "$TARBALL"; do
    size=$(stat -c %s "$f")
    printf '%-60s %10s  %s\n' "$(basename "$f")" "$(numfmt --to=iec-i --suffix=B --format=%.1f "$size")" \
        "$(sha256sum "$f" | cut -d' ' -f1)"
done
