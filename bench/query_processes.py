"""TPC-H through `basin query`, a process per query, with binaries in turn (issue #53, part 2).

Runs the 22 queries on a kept lakehouse (`--lakehouse`, tables `tpch.*` as `bench/run.sh`
imports them) through one `basin query` process each, every binary of --binaries in turn,
--rounds times (A, B, A, B, ...), so that this VM's drift hits all alike. Before each
binary's round the lakehouse's kept columns (`.basin/columns`, `[sql] column_cache_disk`) are
removed, so each round shows a query's *first* process (nothing kept on disk) and the best
of the --repeat - 1 after it. Per query it records the engine's time (what `basin query`
prints) and the process's whole time (start to exit, so a first process's wait to keep its
columns on disk counts), and checks each binary's answers equal the first binary's. DuckDB
runs the same queries in one warm connection over the very Parquet files, best of --repeat.

Prints one markdown table with the machine and the date: per query, each binary's best engine
and process times, its first process's time, DuckDB's, and the ratios to DuckDB.

  bench/run.sh --query-processes --lakehouse ~/.cache/basin/sf1-lh --binaries A=OLD,B=NEW
"""

import argparse
import shutil
import subprocess
import time
from pathlib import Path

import duckdb

from run import QUERIES, basin, duckdb_seconds, duckdb_views, engine_seconds, log, machine


def one(binary: str, home: Path, sql: str) -> tuple[float, float, str]:
    """A query's engine seconds, its process's seconds, and its answer (CSV lines, sorted)."""
    started = time.perf_counter()
    proc = basin(binary, home, "query", "-", "-n", "tpch", "--format", "csv", stdin=sql)
    wall = time.perf_counter() - started
    return engine_seconds(proc.stderr), wall, "\n".join(sorted(proc.stdout.splitlines()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lakehouse", required=True, help="a lakehouse holding tpch.* (kept between runs)")
    p.add_argument("--binaries", required=True, help="NAME=PATH,NAME=PATH: release builds to compare")
    p.add_argument("--repeat", type=int, default=4, help="processes per query and round (the first is shown apart)")
    p.add_argument("--rounds", type=int, default=2, help="rounds (each runs every binary once)")
    p.add_argument("--queries", default="1-22", help="e.g. 1-22 or 6,19")
    args = p.parse_args()
    home = Path(args.lakehouse).expanduser()
    binaries = [tuple(b.split("=", 1)) for b in args.binaries.split(",")]
    if "-" in args.queries:
        low, high = args.queries.split("-")
        queries = list(range(int(low), int(high) + 1))
    else:
        queries = [int(q) for q in args.queries.split(",")]
    texts = {q: (QUERIES / f"q{q:02}.sql").read_text() for q in queries}

    con = duckdb.connect()
    duckdb_views(binaries[0][1], home, con)
    # name -> query -> [first process, best engine, best process]; answers of the first binary
    best: dict = {name: {q: [float("inf")] * 3 for q in queries} for name, _ in binaries}
    duck = {q: float("inf") for q in queries}
    answers: dict = {}
    totals = []
    for round_ in range(args.rounds):
        for name, path in binaries:
            shutil.rmtree(home / ".basin" / "columns", ignore_errors=True)
            engine_total = process_total = 0.0
            for q in queries:
                runs = [one(path, home, texts[q]) for _ in range(args.repeat)]
                for engine, wall, answer in runs:
                    expected = answers.setdefault(q, answer)
                    if answer != expected:
                        raise SystemExit(f"q{q:02}: {name}'s answer differs from {binaries[0][0]}'s")
                mine = best[name][q]
                mine[0] = min(mine[0], runs[0][1])
                mine[1] = min([mine[1]] + [r[0] for r in runs[1:]])
                mine[2] = min([mine[2]] + [r[1] for r in runs[1:]])
                engine_total += min(r[0] for r in runs[1:])
                process_total += min(r[1] for r in runs[1:])
            totals.append((round_ + 1, name, engine_total, process_total))
            log(f"round {round_ + 1} {name}: engine {engine_total:.3f}s, processes {process_total:.3f}s")
        for q in queries:
            duck[q] = min(duck[q], duckdb_seconds(con, texts[q], args.repeat))
        log(f"round {round_ + 1} DuckDB: {sum(duck.values()):.3f}s")

    print(f"Machine: {machine()}  ")
    print(f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  ")
    print(f"Lakehouse: {home}; DuckDB {duckdb.__version__}; {args.rounds} rounds of {args.repeat} processes "
          f"per query; answers of every binary equal  ")
    print()
    cols = []
    for name, _ in binaries:
        cols += [f"{name} engine [s]", f"{name} process [s]", f"{name} first process [s]"]
    cols += ["DuckDB [s]"] + [f"{name} engine / DuckDB" for name, _ in binaries]
    print("| query | " + " | ".join(cols) + " |")
    print("| --- |" + " ---: |" * len(cols))
    sums = [0.0] * (3 * len(binaries) + 1)
    for q in queries:
        cells = []
        for name, _ in binaries:
            first, engine, process = best[name][q]
            cells += [engine, process, first]
        cells.append(duck[q])
        sums = [s + c for s, c in zip(sums, cells)]
        ratios = [cells[3 * i] / duck[q] for i in range(len(binaries))]
        print(f"| q{q:02} | " + " | ".join(f"{c:.3f}" for c in cells) + " | "
              + " | ".join(f"{r:.2f}x" for r in ratios) + " |")
    ratios = [sums[3 * i] / sums[-1] for i in range(len(binaries))]
    print("| **total** | " + " | ".join(f"**{c:.3f}**" for c in sums) + " | "
          + " | ".join(f"**{r:.2f}x**" for r in ratios) + " |")
    print()
    print("| round | binary | engine, best after the first [s] | processes, best after the first [s] |")
    print("| --- | --- | ---: | ---: |")
    for round_, name, engine, process in totals:
        print(f"| {round_} | {name} | {engine:.3f} | {process:.3f} |")


if __name__ == "__main__":
    main()
