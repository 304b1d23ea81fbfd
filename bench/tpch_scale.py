"""TPC-H at a larger scale on one node, under a memory limit (issue #53, part 2): the 22
queries through one warm `basin serve` whose `[sql] memory_limit` (all queries) and
`query_memory_limit` (one query) are both --memory-limit, against DuckDB in-process with the
same memory limit over the very Parquet files of Basin's tables. For each query: both times
(best of --repeat), the server's peak resident memory while it ran (its VmHWM, reset before
each query through /proc/PID/clear_refs), and whether the answers are equal (the same rows in
the same order; numbers equal to 1e-9 of their size, as the answers test compares them).

    python bench/tpch_scale.py --basin target/release/basin --scale 10 [--memory-limit 4GiB]

Prints one markdown table with the machine and the date; SF10's CSV files (about 11 GB) are
generated once into --data.
"""

import argparse
import datetime
import decimal
import http.client
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import duckdb

import serving
from run import QUERIES, TABLES, basin, duckdb_views, generate, header, log


def gib(text: str) -> float:
    units = {"GiB": 1 << 30, "MiB": 1 << 20}
    for unit, size in units.items():
        if text.endswith(unit):
            return float(text[: -len(unit)]) * size
    raise SystemExit(f"--memory-limit {text}: give it in GiB or MiB, e.g. 4GiB")


class Served:
    """One `basin serve` on a lakehouse: queries timed through its HTTP door, its peak RSS."""

    def __init__(self, binary: str, home: Path):
        self.proc, ports = serving.start(binary, home)
        self.http = http.client.HTTPConnection("127.0.0.1", ports["http"], timeout=3600)

    def post(self, sql: str, arrow: bool) -> tuple:
        accept = "application/vnd.apache.arrow.stream" if arrow else "application/json"
        body = json.dumps({"sql": sql, "namespace": "tpch"})
        started = time.perf_counter()
        self.http.request("POST", "/api/v1/query", body=body,
                          headers={"Content-Type": "application/json", "Accept": accept})
        response = self.http.getresponse()
        answer = response.read()
        seconds = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"basin serve answered {response.status}: {answer[:500]!r}")
        return seconds, answer

    def reset_peak(self) -> None:
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")

    def peak_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


def cell(value):
    """A value of either engine in one form: numbers as floats, the rest as text."""
    if isinstance(value, (int, float, decimal.Decimal)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-5 + 1e-9 * abs(b)
    return a == b


def answers_differ(basin_rows: list, duck_rows: list) -> str:
    """'' when equal, else the first difference."""
    if len(basin_rows) != len(duck_rows):
        return f"{len(basin_rows)} rows, DuckDB {len(duck_rows)}"
    for i, (a, b) in enumerate(zip(basin_rows, duck_rows)):
        if len(a) != len(b) or not all(same(x, y) for x, y in zip(a, b)):
            return f"row {i}: {a} != {b}"
    return ""


def duckdb_run(con, sql: str, repeat: int) -> tuple:
    """DuckDB's best time for a query script, and its query's rows."""
    statements = [s for s in sql.split(";") if s.strip()]
    best, rows = float("inf"), []
    for _ in range(repeat):
        started = time.perf_counter()
        for s in statements:
            result = con.execute(s).fetchall()
            # A script's answer is its query's (q15 creates and drops a view around it).
            code = " ".join(line for line in s.splitlines() if not line.strip().startswith("--"))
            if code.strip().lower().startswith(("select", "with")):
                rows = result
        best = min(best, time.perf_counter() - started)
    return best, [[cell(v) for v in row] for row in rows]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--basin", required=True, help="the release basin binary")
    p.add_argument("--scale", type=float, default=10)
    p.add_argument("--memory-limit", default="4GiB")
    p.add_argument("--repeat", type=int, default=1, help="runs per query (best is kept)")
    p.add_argument("--data", default=str(Path.home() / ".cache" / "basin" / "bench-data"))
    args = p.parse_args()
    limit = gib(args.memory_limit)
    csv_dir = generate(args.scale, Path(args.data))
    work = Path(tempfile.mkdtemp(prefix="basin-tpch-"))
    home = work / "lh"
    home.mkdir()
    try:
        subprocess.run([args.basin, "init", str(home)], check=True, capture_output=True)
        (home / "basin.toml").write_text(
            f'[sql]\nmemory_limit = "{args.memory_limit}"\nquery_memory_limit = "{args.memory_limit}"\n'
            'query_timeout = "off"\n')
        imported = 0.0
        for table in TABLES:
            started = time.perf_counter()
            basin(args.basin, home, "import", str(csv_dir / f"{table}.csv"), "--table", f"tpch.{table}")
            seconds = time.perf_counter() - started
            imported += seconds
            log(f"   imported {table} in {seconds:.1f}s")
        con = duckdb.connect()
        con.execute(f"SET memory_limit = '{int(limit) >> 20}MiB'")
        con.execute(f"SET temp_directory = '{work / 'duckdb-spill'}'")
        duckdb_views(args.basin, home, con)
        served = Served(args.basin, home)
        rows = []
        try:
            for q in range(1, 23):
                sql = (QUERIES / f"q{q:02}.sql").read_text()
                served.reset_peak()
                best_b = min(served.post(sql, arrow=True)[0] for _ in range(args.repeat))
                peak = served.peak_bytes()
                answer = json.loads(served.post(sql, arrow=False)[1])
                basin_rows = [[cell(v) for v in row.values()] for row in answer["rows"]]
                best_d, duck_rows = duckdb_run(con, sql, args.repeat)
                differ = answers_differ(basin_rows, duck_rows)
                rows.append((q, best_b, best_d, peak, differ))
                log(f"   q{q:02}: basin {best_b:.2f}s duckdb {best_d:.2f}s peak {peak / 2**30:.2f} GiB"
                    f"{' DIFFERENT: ' + differ if differ else ''}")
        finally:
            served.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    header(argparse.Namespace(scale=args.scale, repeat=args.repeat), tpch=True)
    print(f"Memory limit: {args.memory_limit} for Basin (`[sql] memory_limit`, `query_memory_limit`) "
          f"and DuckDB (`SET memory_limit`); all 8 tables imported in {imported:.0f} s  ")
    print()
    print("| query | Basin serve [s] | DuckDB [s] | Basin / DuckDB | peak RSS [GiB] | answers |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for q, b, d, peak, differ in rows:
        print(f"| q{q:02} | {b:.2f} | {d:.2f} | {b / d:.2f}x | {peak / 2**30:.2f} | {differ or 'equal'} |")
    total_b = sum(r[1] for r in rows)
    total_d = sum(r[2] for r in rows)
    equal = sum(1 for r in rows if not r[4])
    print(f"| **total** | **{total_b:.2f}** | **{total_d:.2f}** | **{total_b / total_d:.2f}x** | "
          f"{max(r[3] for r in rows) / 2**30:.2f} | {equal} of 22 equal |")


if __name__ == "__main__":
    os.environ.setdefault("RUST_LOG", "warn")
    main()
