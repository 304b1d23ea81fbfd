"""A table made of many one-row appends, scanned before and after `basin table compact`.

    python bench/compaction.py --basin target/release/basin [--appends 10000] [--repeat 5]

Prints a markdown table: the appends' time, the scan (`SELECT count(*), sum(amount)`) before
and after, best of --repeat, and the compaction's own time. Issue #15's figure is 10,000
appends; each append is one `basin import` (one process, one commit), so that takes minutes.

Every table commit writes a new metadata.json listing all of the table's snapshots, so
10,000 appends without expiry write about N^2/2 snapshot entries (14 GB by the 5,000th
append, seen 2026-11-23). As `basin serve`'s maintenance would, the bench expires the
snapshots and runs `basin gc` every --expire-every appends (0: never), which keeps the
table's 10,000 small files but not its 10,000 snapshots.
"""

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from run import basin, engine_seconds, header, log

SCAN = "SELECT count(*) AS n, sum(amount) AS total FROM bench.small"


def scan(binary: str, home: Path, repeat: int) -> float:
    return min(engine_seconds(basin(binary, home, "query", SCAN, "--format", "csv").stderr) for _ in range(repeat))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--basin", required=True)
    p.add_argument("--appends", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--expire-every", type=int, default=500)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="basin-compaction-"))
    home = work / "lh"
    subprocess.run([args.basin, "init", str(home)], check=True, capture_output=True)
    # History and snapshots go as soon as gc and expiry run (gc still keeps a minute's files).
    (home / "basin.toml").write_text('[maintenance]\nkeep_snapshots = "1ms"\nkeep_history = "1ms"\n')
    row = work / "row.csv"
    started = time.perf_counter()
    for i in range(args.appends):
        row.write_text(f"id,amount\n{i},{i % 100}.25\n")
        basin(args.basin, home, "import", str(row), "--table", "bench.small")
        if args.expire_every and (i + 1) % args.expire_every == 0:
            basin(args.basin, home, "table", "expire", "bench.small")
            basin(args.basin, home, "gc", "--grace", "1m")
        if (i + 1) % 1000 == 0:
            log(f"   {i + 1} appends")
    appending = time.perf_counter() - started
    before = scan(args.basin, home, args.repeat)
    answer = basin(args.basin, home, "query", SCAN, "--format", "csv").stdout
    started = time.perf_counter()
    basin(args.basin, home, "table", "compact", "bench.small")
    compacting = time.perf_counter() - started
    after = scan(args.basin, home, args.repeat)
    assert basin(args.basin, home, "query", SCAN, "--format", "csv").stdout == answer, "compaction changed the rows"
    header(args, tpch=False)
    print(f"| {args.appends:,} one-row appends, one table | seconds |")
    print("| --- | ---: |")
    expiry = f", expiry and gc every {args.expire_every}" if args.expire_every else ""
    print(f"| the appends (one `basin import` each{expiry}) | {appending:.1f} |")
    print(f"| scan before compaction, best of {args.repeat} | {before:.3f} |")
    print(f"| `basin table compact` | {compacting:.2f} |")
    print(f"| scan after compaction, best of {args.repeat} | {after:.3f} |")


if __name__ == "__main__":
    main()
