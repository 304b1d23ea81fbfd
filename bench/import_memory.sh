#!/bin/bash
# Peak memory and time of `basin import` of a CSV of wide rows (240 MB: 6,000 rows of 40 KB),
# for each binary given, in turn, twice: `bench/import_memory.sh OLD_BASIN NEW_BASIN`.
# Prints a table with the machine and the date (docs/benchmarks.md, "The front doors' third
# round").
set -euo pipefail
if [ $# -eq 0 ]; then
  echo "usage: bench/import_memory.sh BASIN [BASIN...]" >&2
  exit 2
fi
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
python3 - "$D/wide.csv" <<'PY'
import sys
wide = "w" * 40000
with open(sys.argv[1], "w") as f:
    f.write("id,text\n")
    for i in range(6000):
        f.write(f"{i},{wide}\n")
PY
echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "| binary | round | peak RSS [MB] | seconds |"
echo "| --- | ---: | ---: | ---: |"
for round in 1 2; do
  for bin in "$@"; do
    rm -rf "$D/lh"
    "$bin" --home "$D/lh" init > /dev/null 2>&1
    /usr/bin/time -f "%M %e" "$bin" --home "$D/lh" import "$D/wide.csv" --table s.wide \
      > /dev/null 2> "$D/time.txt" || { cat "$D/time.txt" >&2; exit 1; }
    read -r kb seconds < <(tail -1 "$D/time.txt")
    echo "| $bin | $round | $((kb / 1024)) | $seconds |"
  done
done
