"""Selective queries on a sorted table, with and without per-query file pruning (issue #18).

    python bench/pruning.py --before OLD_BASIN --after NEW_BASIN [--data DIR] [--repeat 5]

Imports TPC-H's lineitem (the CSV of `bench/run.py`'s data folder) with the --after binary,
compacts it sorted by l_shipdate into 8 MiB files (`basin table compact --sort-by`), then
runs each query with both binaries on that same lakehouse, alternating, best of --repeat
(the engine's own time, as `basin query` prints it). Both binaries must answer the same.
Prints a markdown table with the machine and the date.
"""

import argparse
import subprocess
import tempfile
from pathlib import Path

from run import basin, engine_seconds, header, log

QUERIES = [
    ("one day", "SELECT count(*) AS n, sum(l_extendedprice) AS s FROM tpch.lineitem "
                "WHERE l_shipdate = DATE '1995-06-17'"),
    ("one week", "SELECT count(*) AS n, sum(l_extendedprice) AS s FROM tpch.lineitem "
                 "WHERE l_shipdate BETWEEN DATE '1996-03-01' AND DATE '1996-03-07'"),
    ("one order", "SELECT count(*) AS n, sum(l_quantity) AS s FROM tpch.lineitem WHERE l_orderkey = 4242"),
    ("everything", "SELECT count(*) AS n, sum(l_extendedprice) AS s FROM tpch.lineitem"),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", required=True)
    p.add_argument("--after", required=True)
    p.add_argument("--data", default=str(Path.home() / ".cache/basin/bench-data/sf1"))
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    home = Path(tempfile.mkdtemp(prefix="basin-pruning-")) / "lh"
    subprocess.run([args.after, "init", str(home)], check=True, capture_output=True)
    log("== importing lineitem")
    basin(args.after, home, "import", str(Path(args.data) / "lineitem.csv"), "--table", "tpch.lineitem")
    log("== compacting, sorted by l_shipdate")
    report = basin(args.after, home, "table", "compact", "tpch.lineitem", "--sort-by", "l_shipdate",
                   "--target-file-size", "8MiB", "--format", "json").stdout
    files = basin(args.after, home, "table", "show", "tpch.lineitem", "--format", "json").stdout
    import json
    data_files = json.loads(files)["data_files"]
    log(f"   {data_files} files ({json.loads(report)['seconds']:.1f} s)")
    header(args, tpch=False)
    print(f"lineitem SF1, sorted by l_shipdate into {data_files} files; best of {args.repeat}, seconds  ")
    print()
    print("| query | without pruning | with pruning | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for name, sql in QUERIES:
        best = {"before": float("inf"), "after": float("inf")}
        answers = {}
        for _ in range(args.repeat):
            for side in ("before", "after"):
                out = basin(getattr(args, side), home, "query", sql, "--format", "csv")
                best[side] = min(best[side], engine_seconds(out.stderr))
                answers[side] = out.stdout
        assert answers["before"] == answers["after"], (name, answers)
        print(f"| {name} | {best['before']:.3f} | {best['after']:.3f} | {best['before'] / best['after']:.1f}x |")


if __name__ == "__main__":
    main()
